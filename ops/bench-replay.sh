#!/usr/bin/env bash
# Replay throughput (release build): the whole of enriched.option_chain replayed into a
# scratch database, then the whole of market.option_chain reprocessed into it (records the
# configured products do not know are skipped and counted). Starts the stack if needed;
# the live tables and groups are not touched.
# Usage: ops/bench-replay.sh [FROM]   (default: earliest; any --from bound of chainflow replay)
set -euo pipefail
# shellcheck source=ops/lib/bench-setup.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench-setup.sh" release
export CHAINFLOW_CLICKHOUSE__DATABASE="chainflow_bench_replay"
trap 'curl -s "${CHAINFLOW_CLICKHOUSE__URL:-http://127.0.0.1:8123}" --data-binary "DROP DATABASE IF EXISTS $CHAINFLOW_CLICKHOUSE__DATABASE" >/dev/null' EXIT
"$bin" migrate >/dev/null
echo "[bench-replay] broker store: $(du -sh "${CHAINFLOW_STACK_DIR:-$ROOT/.stack}" 2>/dev/null | cut -f1); $(nproc) cores"
for args in "enriched.option_chain" "market.option_chain --reprocess"; do
  echo "[bench-replay] chainflow replay $args --from ${1:-earliest}"
  # shellcheck disable=SC2086
  /usr/bin/time -f "[bench-replay] %e s wall, %P CPU, peak RSS %M KB" "$bin" replay $args --from "${1:-earliest}" | grep -v "^  partition"
done
