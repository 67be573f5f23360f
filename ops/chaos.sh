#!/usr/bin/env bash
# The fault-injection suite (docs/guarantees.md, "Under faults"): real faults in real
# processes on a private stack of its own (Kafka: three KRaft nodes on 29092, 29094, 29096;
# ClickHouse 28123; registry 28081; its own directory), then the natural keys stored
# against those produced. Prints one table; exits non-zero if any scenario fails.
# Usage: ops/chaos.sh            the short form (six scenarios; the test suite runs it)
#        ops/chaos.sh --full     every scenario at 100,000+ options (about 20 minutes)
#        ops/chaos.sh --scenario NAME [--options N] [--markdown FILE] ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ops/install.sh >/dev/null
cargo build --quiet --bins -p chainflow -p chainflow-chaos
exec target/debug/chainflow-chaos --root "$ROOT" "$@"
