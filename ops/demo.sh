#!/usr/bin/env bash
# The main job: starts the local stack if needed, then runs the whole pipeline
# (feed → enrich → sink) for CHAINS chains and prints what happened.
# Usage: ops/demo.sh [CHAINS]   (default 10000)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/ops/stack.sh" up
eval "$("$ROOT/ops/stack.sh" env)"
export RUST_LOG="${RUST_LOG:-error}"  # per-record warnings (dead letters) are counted in the summary
exec "$ROOT/target/debug/chainflow" run --chains "${1:-10000}"
