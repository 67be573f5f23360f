#!/usr/bin/env bash
# The live view (release build), on the local stack's broker (Apache Kafka, one node):
# `chainflow run` offering 200 chains/s (feed → enrich → sink) and `chainflow serve`
# following it, then
#   - produce → browser: the page in headless Chromium for --seconds; the latencies it
#     measured from the feed's production stamp to its receipt (window.chainflowState),
#     with the gateway's own produce → socket histogram;
#   - concurrent clients: --clients WebSocket clients (ops/bench/live_clients.py), each on
#     one chain, its product's metrics and underlying, for --seconds: how many stayed
#     connected, what they got, the gateway's peak RSS and CPU, conflated updates.
# Prints one Markdown table (paste it into docs/benchmarks.md with the date and machine).
# Usage: ops/bench-live.sh [--clients N] [--seconds S] [--chains-per-s R]
set -euo pipefail
# shellcheck source=ops/lib/bench-setup.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench-setup.sh" release
clients=1000
seconds=30
offered=200
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --chains-per-s) offered="$2"; shift 2 ;;
    *) echo "usage: ops/bench-live.sh [--clients N] [--seconds S] [--chains-per-s R]" >&2; exit 2 ;;
  esac
done
log() { printf '[bench-live] %s\n' "$*" >&2; }

run_id="$(date +%s)"
work="$(mktemp -d)"
serve_port="${CHAINFLOW_BENCH_SERVE_PORT:-29090}"
devtools="${CHAINFLOW_BENCH_DEVTOOLS_PORT:-29222}"
database="chainflow_bench_live_$run_id"
pids=()
cleanup() {
  if [ -n "${serve_pid:-}" ] && ! kill -0 "$serve_pid" 2>/dev/null; then
    log "chainflow serve ended early:"
    tail -20 "$work/serve.err" >&2
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  curl -s "${CHAINFLOW_CLICKHOUSE__URL:-http://127.0.0.1:8123}" --data-binary "DROP DATABASE IF EXISTS $database" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export CHAINFLOW_CLICKHOUSE__DATABASE="$database"
# shellcheck source=ops/lib/kafka.sh
. "$ROOT/ops/lib/kafka.sh"
"$bin" topics >/dev/null
"$bin" migrate >/dev/null

# the feed's --rate counts every message; chain snapshots are about 31 % of them
# the run's own groups, from the end of the topics: it reads only what it feeds
for g in "bench-live-$run_id-enrich:market.option_chain" "bench-live-$run_id-sink-chains:enriched.option_chain" \
  "bench-live-$run_id-sink-ticks:market.underlying" "bench-live-$run_id-sink-quotes:market.option_quote" \
  "bench-live-$run_id-sink-dead_letters:dlq.market.option_chain"; do
  "$bin" groups reset "${g%%:*}" --to latest --topic "${g#*:}" >/dev/null
done
export CHAINFLOW_ENRICH__GROUP_ID="bench-live-$run_id-enrich" CHAINFLOW_SINK__GROUP_ID="bench-live-$run_id-sink"
log "chainflow run at $offered chains/s offered, on the stack's Apache Kafka"
"$bin" run --rate "$((offered * 100 / 31))" --set "observability.metrics_listen=127.0.0.1:29464" \
  >"$work/run.out" 2>"$work/run.err" &
pids+=("$!")
sleep 5
"$bin" serve --set "serve.listen=127.0.0.1:$serve_port" --set serve.max_clients=$((clients + 10)) \
  >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
pids+=("$serve_pid")
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$serve_port/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$serve_port/readyz" >/dev/null || { cat "$work/serve.err" >&2; exit 1; }

# samples the gateway's RSS (KB) and CPU ticks every 0.5 s into $1 until $2 exists
sample() {
  while [ ! -e "$2" ]; do
    [ -e "/proc/$serve_pid/stat" ] || return 0
    echo "$(ps -o rss= -p "$serve_pid") $(awk '{print $14 + $15}' "/proc/$serve_pid/stat")" >>"$1"
    sleep 0.5
  done
}
summary() { # peak RSS (MB) and CPU (cores) over a sample file
  awk 'NR == 1 {t0 = $2} {if ($1 > m) m = $1; t = $2; n++} END {printf "%.0f %.2f", m / 1024, (t - t0) / 100 / ((n - 1) * 0.5)}' "$1"
}
scrape() { curl -sf "http://127.0.0.1:$serve_port/metrics"; }
counter() { scrape | awk -v s="$1" '$1 == s {print $2}'; }

log "produce → browser: the page in headless Chromium for $seconds s"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --window-size=1280,1400 --remote-debugging-port="$devtools" \
  --user-data-dir="$work/chromium" "http://127.0.0.1:$serve_port/" >/dev/null 2>&1 &
chromium_pid=$!
pids+=("$chromium_pid")
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$devtools/json/list" >/dev/null && break; sleep 0.2; done
sample "$work/page.samples" "$work/page.done" &
python3 ops/bench/live_clients.py page --devtools "$devtools" --seconds "$seconds" >"$work/page.json"
touch "$work/page.done"
kill "$chromium_pid" 2>/dev/null || true
read -r page_rss page_cpu <<<"$(summary "$work/page.samples")"
scrape >"$work/page.metrics"

log "$clients concurrent clients for $seconds s"
conflated0=$(counter chainflow_live_conflated_total)
sample "$work/clients.samples" "$work/clients.done" &
python3 ops/bench/live_clients.py clients --url "ws://127.0.0.1:$serve_port/ws" --clients "$clients" \
  --seconds "$seconds" >"$work/clients.json"
touch "$work/clients.done"
read -r clients_rss clients_cpu <<<"$(summary "$work/clients.samples")"
conflated1=$(counter chainflow_live_conflated_total)
stored=$(curl -s "${CHAINFLOW_CLICKHOUSE__URL:-http://127.0.0.1:8123}" --data-binary "SELECT count() FROM $database.chain_snapshots")

python3 - "$work" "$offered" "$seconds" "$page_rss" "$page_cpu" "$clients_rss" "$clients_cpu" \
  "${conflated0:-0}" "${conflated1:-0}" "$stored" "Apache Kafka $KAFKA_VERSION, 1 node, local disk" <<'PY'
import json, re, sys
work, offered, seconds, page_rss, page_cpu, clients_rss, clients_cpu, c0, c1, stored, broker = sys.argv[1:]
page = json.load(open(f"{work}/page.json"))
cl = json.load(open(f"{work}/clients.json"))
buckets = []
for line in open(f"{work}/page.metrics"):
    m = re.match(r'chainflow_live_latency_seconds_bucket\{at="sent",le="([^"]+)"\} (\S+)', line)
    if m:
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
buckets.sort()
total = buckets[-1][1] if buckets else 0
def q(p):
    rank, lo, below = p * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            return lo if le == float("inf") else lo + (le - lo) * (rank - below) / max(n - below, 1e-9)
        lo, below = le, n
    return lo
print("| broker | what | result |")
print("|---|---|---|")
print(f"| {broker} | produce → browser, {offered} chains/s offered, {seconds} s, headless Chromium on the page ({page['channel']}) | "
      f"{page['samples']} updates: p50 {page.get('p50_ms')} ms, p95 {page.get('p95_ms')} ms, p99 {page.get('p99_ms')} ms, max {page.get('max_ms')} ms; gateway peak RSS {page_rss} MB, {page_cpu} cores |")
if total:
    print(f"| {broker} | produce → written to a client's socket (gateway histogram, every client so far) | "
          f"{int(total)} updates: p50 {q(0.5) * 1000:.0f} ms, p99 {q(0.99) * 1000:.0f} ms (interpolated in buckets) |")
lat = cl["latency"]
print(f"| {broker} | {cl['clients']} concurrent WebSocket clients (chain, metrics, underlying each), {seconds} s | "
      f"{cl['connected_at_end']} connected at the end, {cl['errors']} errors; {cl['messages_per_s']} messages/s, {cl['mb_per_s']} MB/s; "
      f"{int(float(c1) - float(c0))} updates conflated; gateway peak RSS {clients_rss} MB, {clients_cpu} cores; "
      f"produce → client p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms (Python clients on the same 2 cores) |")
print(f"| {broker} | chains stored by the sink meanwhile | {stored.strip()} |")
PY
