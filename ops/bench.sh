#!/usr/bin/env bash
# End-to-end benchmarks of chainflow (release build), on nisshi with memory:// storage
# started on a port of its own, and on the local stack's broker (nisshi with sqlite://):
#   - the feed alone, and feed → enrich → sink → queryable (`chainflow run`), chains/s and
#     options/s, with CPU seconds and peak RSS of the chainflow process; on memory://, enrich
#     and the chains sink alone on the feed's backlog;
#   - latency from the feed's produce stamp to ClickHouse's acknowledgement (p50/p95/p99,
#     from the sink's histogram) at 200 and 2,000 chains/s offered.
# Prints one Markdown table (paste it into docs/benchmarks.md with the date and machine).
# Usage: ops/bench.sh [--quick]   (--quick: fewer chains, under 5 minutes after the build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
chains=$((quick ? 6000 : 20000))
paced_chains=$((quick ? 1500 : 6000))
log() { printf '[bench] %s\n' "$*" >&2; }

cargo build --release --quiet --bin chainflow
ops/stack.sh up >/dev/null
eval "$(ops/stack.sh env)"
export RUST_LOG="${RUST_LOG:-warn}"
bin="$ROOT/target/release/chainflow"
run_id="$(date +%s)"
work="$(mktemp -d)"
mem_port="${CHAINFLOW_BENCH_BROKER_PORT:-29192}"
metrics_port="${CHAINFLOW_BENCH_METRICS_PORT:-29464}"
database="chainflow_bench_$run_id"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  curl -s "${CHAINFLOW_CLICKHOUSE__URL:-http://127.0.0.1:8123}" --data-binary "DROP DATABASE IF EXISTS $database" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# a broker of our own on memory://, whatever the stack's is
nisshi broker --listener-url "tcp://127.0.0.1:$mem_port" --advertised-listener-url "tcp://127.0.0.1:$mem_port" \
  --storage-engine "memory://bench$run_id/" --group-initial-rebalance-delay 0s >"$work/nisshi.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$mem_port") 2>/dev/null && break; sleep 0.1; done
CHAINFLOW_CLICKHOUSE__DATABASE="$database" "$bin" migrate >/dev/null

# chainflow ARGS against broker $1, in this run's database and groups, timed
timed() {
  local broker="$1" tag="$2"
  shift 2
  /usr/bin/time -f "%e %U %S %M" -o "$work/$tag.time" "$bin" "$@" \
    --set "kafka.bootstrap_servers=$broker" --set "clickhouse.database=$database" \
    --set "enrich.group_id=bench-$run_id-$tag-enrich" --set "sink.group_id=bench-$run_id-$tag-sink" \
    --set "observability.metrics_listen=127.0.0.1:$metrics_port" >"$work/$tag.out" 2>"$work/$tag.err"
}

# the run's consumer groups at the end of their topics, so that it reads only its own chains
groups_at_end() {
  local broker="$1" tag="$2" g
  for g in "bench-$run_id-$tag-enrich:market.option_chain" "bench-$run_id-$tag-sink-chains:enriched.option_chain" \
    "bench-$run_id-$tag-sink-ticks:market.underlying" "bench-$run_id-$tag-sink-quotes:market.option_quote" \
    "bench-$run_id-$tag-sink-dead_letters:dlq.market.option_chain"; do
    "$bin" groups reset "${g%%:*}" --to latest --topic "${g#*:}" --set "kafka.bootstrap_servers=$broker" >/dev/null
  done
}

# the latency quantiles of the last scrape of the sink's histogram (stream chains)
quantiles() {
  python3 - "$1" <<'PY'
import re, sys
buckets = []
for line in open(sys.argv[1]):
    m = re.match(r'chainflow_pipeline_latency_seconds_bucket\{stream="chains",le="([^"]+)"\} (\S+)', line)
    if m:
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
buckets.sort()
total = buckets[-1][1] if buckets else 0
def q(p):
    if not total:
        return float("nan")
    rank, lo, below = p * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * (rank - below) / max(n - below, 1e-9)
        lo, below = le, n
    return lo
print(*(f"{q(p):.2f}" for p in (0.5, 0.95, 0.99)), int(total))
PY
}

# scrapes the run's /metrics until it ends, keeping the last answer
scrape_until_done() {
  local pid="$1" out="$2"
  while kill -0 "$pid" 2>/dev/null; do
    curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$out.new" 2>/dev/null && mv "$out.new" "$out"
    sleep 0.5
  done
}

# seconds until `group`'s lag on `topic` is 0 while chainflow ARGS runs (polled every 0.5 s)
drain() {
  local broker="$1" group="$2" topic="$3" tag="$4"
  shift 4
  /usr/bin/time -f "%e %U %S %M" -o "$work/$tag.time" "$bin" "$@" --set "kafka.bootstrap_servers=$broker" \
    --set "clickhouse.database=$database" --set "observability.metrics_listen=" >"$work/$tag.out" 2>"$work/$tag.err" &
  local runner=$! started
  started=$(date +%s.%N)
  sleep 0.5
  until [ "$("$bin" groups lag "$group" --topic "$topic" --set "kafka.bootstrap_servers=$broker" | awk '/total lag/ {print $3}')" = 0 ]; do
    sleep 0.5
  done
  echo "$(date +%s.%N) - $started" | bc
  pkill -TERM -P "$runner" 2>/dev/null || true
  wait "$runner" 2>/dev/null || true
}

rows=()
row() {
  local line="|" cell
  for cell in "$@"; do line+=" $cell |"; done
  rows+=("$line")
}
cpu() { awk '{printf "%.1f s CPU (%.0f %% of one core), peak RSS %.0f MB", $2 + $3, 100 * ($2 + $3) / $1, $4 / 1024}' "$work/$1.time"; }

for target in "memory:127.0.0.1:$mem_port" "sqlite:${CHAINFLOW_KAFKA__BOOTSTRAP_SERVERS:-127.0.0.1:9092}"; do
  storage="${target%%:*}"
  broker="${target#*:}"
  label="nisshi 0.8.1 $storage://"
  "$bin" topics --set "kafka.bootstrap_servers=$broker" >/dev/null
  log "$label: feed alone, $chains chains"
  timed "$broker" "feed-$storage" feed --chains "$chains"
  feed_rate=$(awk '/market.option_chain/ {print $NF; exit}' "$work/feed-$storage.out" | tr -d '/s')
  row "$label" "feed alone, $chains chains" "${feed_rate} chains/s" "$(cpu "feed-$storage")"
  if [ "$storage" = memory ]; then
    # each stage alone on the backlog the feed just wrote
    log "$label: enrich alone on $chains chains"
    "$bin" groups reset "bench-$run_id-iso-enrich" --to earliest --topic market.option_chain --set "kafka.bootstrap_servers=$broker" >/dev/null
    secs=$(drain "$broker" "bench-$run_id-iso-enrich" market.option_chain iso-enrich enrich --set "enrich.group_id=bench-$run_id-iso-enrich")
    row "$label" "enrich alone (broker → broker), $chains chains" "$(awk -v n="$chains" -v s="$secs" 'BEGIN {printf "%.0f chains/s", n / s}')" "$(cpu iso-enrich)"
    log "$label: chains sink alone on $chains chains"
    "$bin" groups reset "bench-$run_id-iso-sink-chains" --to earliest --topic enriched.option_chain --set "kafka.bootstrap_servers=$broker" >/dev/null
    secs=$(drain "$broker" "bench-$run_id-iso-sink-chains" enriched.option_chain iso-sink sink --stream chains --set "sink.group_id=bench-$run_id-iso-sink")
    row "$label" "chains sink alone (broker → ClickHouse), $chains chains" "$(awk -v n="$chains" -v s="$secs" 'BEGIN {printf "%.0f chains/s", n / s}')" "$(cpu iso-sink)"
  fi
  log "$label: end to end, $chains chains"
  groups_at_end "$broker" "e2e-$storage"
  timed "$broker" "e2e-$storage" run --chains "$chains"
  e2e=$(grep -m1 'chains/s end to end' "$work/e2e-$storage.out" | sed -E 's/ +rate +//')
  e2e_rate=$(echo "$e2e" | awk '{print $1}')
  ratio=$(awk -v a="$e2e_rate" -v b="$feed_rate" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
  row "$label" "end to end (run), $chains chains" "$e2e; ${ratio}× the feed alone" "$(cpu "e2e-$storage")"
  for offered in 200 2000; do
    # the feed's --rate counts every message; chain snapshots are about 31 % of them
    msgs=$((offered * 100 / 31))
    log "$label: $offered chains/s offered ($msgs msg/s), $paced_chains chains"
    groups_at_end "$broker" "paced$offered-$storage"
    timed "$broker" "paced$offered-$storage" run --chains "$paced_chains" --rate "$msgs" &
    runner=$!
    sleep 1
    scrape_until_done "$runner" "$work/paced$offered-$storage.metrics"
    wait "$runner"
    achieved=$(grep -m1 'chains/s end to end' "$work/paced$offered-$storage.out" | awk '{print $2}')
    read -r p50 p95 p99 n < <(quantiles "$work/paced$offered-$storage.metrics")
    row "$label" "$offered chains/s offered, $paced_chains chains" "achieved $achieved chains/s; latency p50 / p95 / p99 $p50 / $p95 / $p99 s ($n chains observed)" "$(cpu "paced$offered-$storage")"
  done
done

echo "| broker and storage | what | result | chainflow process |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
