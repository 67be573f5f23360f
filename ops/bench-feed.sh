#!/usr/bin/env bash
# The highest rate the simulator sustains to the local broker: `chainflow feed` (release
# build), unthrottled, for CHAINS chain snapshots with their ticks and quotes; prints the
# messages acknowledged per topic and per second. Starts the stack if needed.
# Usage: ops/bench-feed.sh [CHAINS] [SCENARIO]   (defaults: 24000 normal)
# The messages stay in the market topics: the next `chainflow run` (or ops/demo.sh) in the
# default consumer groups enriches and stores these chains as well before reaching its own.
set -euo pipefail
# shellcheck source=ops/lib/bench-setup.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench-setup.sh" release
echo "[bench-feed] broker: Apache Kafka, log $(du -sh "${CHAINFLOW_STACK_DIR:-$ROOT/.stack}/kafka/data" | cut -f1)"
exec "$bin" feed --chains "${1:-24000}" --scenario "${2:-normal}" \
  --start 2025-01-27T03:45:00Z --set observability.metrics_listen=
