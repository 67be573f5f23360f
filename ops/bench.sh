#!/usr/bin/env bash
# End-to-end benchmarks of chainflow (release build), on nisshi with memory:// storage
# started on a port of its own, and on the local stack's broker (nisshi with sqlite://):
#   - the feed alone, and feed → enrich → sink → queryable (`chainflow run`), chains/s and
#     options/s, with CPU seconds and peak RSS of the chainflow process; on memory://, enrich
#     and the chains sink alone on the feed's backlog;
#   - latency from the feed's produce stamp to ClickHouse's acknowledgement (p50/p95/p99,
#     from the sink's histogram) at 200 and 2,000 chains/s offered (15 s of each);
#   - on memory://, the baselines: enrich against a plain Python consumer doing the same work
#     (ops/bench/enrich_baseline.py: confluent-kafka, fastavro, vollib), and the chains sink
#     against clickhouse-client inserting the rows the sink wrote;
#   - in the full run, on memory://: latency under the simulator's spike profile (7 minutes),
#     and 2 and 4 instances each of enrich and the chains sink in one group (drain rate,
#     rebalance times, counts in ClickHouse).
# Prints one Markdown table (paste it into docs/benchmarks.md with the date and machine).
# Usage: ops/bench.sh [--quick]   (--quick: fewer chains, under 5 minutes after the build)
set -euo pipefail
# shellcheck source=ops/lib/bench-setup.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench-setup.sh" release
quick=0
[ "${1:-}" = "--quick" ] && quick=1
chains=$((quick ? 6000 : 20000))
python_chains=$((quick ? 300 : 1000))
scale_chains=30000
log() { printf '[bench] %s\n' "$*" >&2; }

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

ch() { clickhouse-client --host 127.0.0.1 --port "${CHAINFLOW_STACK_CLICKHOUSE_TCP_PORT:-9000}" "$@"; }

# seconds clickhouse-client takes to insert the rows of chain_options and chain_snapshots
# (as RowBinary, exported from this run's database) into a scratch copy of the tables
client_insert() {
  local scratch="${database}_client" started
  for t in chain_options chain_snapshots; do ch -q "SELECT * FROM $database.$t FORMAT RowBinary" >"$work/$t.bin"; done
  CHAINFLOW_CLICKHOUSE__DATABASE="$scratch" "$bin" migrate >/dev/null
  started=$(date +%s.%N)
  for t in chain_options chain_snapshots; do ch -q "INSERT INTO $scratch.$t FORMAT RowBinary" <"$work/$t.bin"; done
  echo "$(date +%s.%N) - $started" | bc
  ch -q "DROP DATABASE $scratch"
  rm -f "$work"/*.bin
}

# `chainflow run ARGS` against broker $1 (tag $2), scraping its metrics; a row labelled $3, $4
paced() {
  local broker="$1" tag="$2" label="$3" what="$4" achieved p50 p95 p99 n
  shift 4
  groups_at_end "$broker" "$tag"
  timed "$broker" "$tag" run "$@" &
  local runner=$!
  sleep 1
  scrape_until_done "$runner" "$work/$tag.metrics"
  wait "$runner"
  achieved=$(grep -m1 'chains/s end to end' "$work/$tag.out" | awk '{print $2}')
  read -r p50 p95 p99 n < <(quantiles "$work/$tag.metrics")
  row "$label" "$what" "achieved $achieved chains/s; latency p50 / p95 / p99 $p50 / $p95 / $p99 s ($n chains observed)" "$(cpu "$tag")"
}

# total lag of group $2 on topic $3 at broker $1
lag() { "$bin" groups lag "$2" --topic "$3" --set "kafka.bootstrap_servers=$1" | awk '/total lag/ {print $3}'; }

# the latest "partitions assigned" log line in files $2... at or after the instant $1 (s since
# the epoch), as seconds after it
last_assignment_after() {
  python3 - "$@" <<'PY'
import datetime, json, sys
since, last = float(sys.argv[1]), None
for path in sys.argv[2:]:
    for line in open(path):
        if '"partitions assigned"' not in line:
            continue
        t = datetime.datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()
        if t >= since and (last is None or t > last):
            last = t
print(f"{last - since:.1f}" if last is not None else "none")
PY
}

# $1 instances each of enrich and of the chains sink, in one group each, on a backlog of
# $scale_chains fresh chains of the memory:// broker; one instance of each is stopped (SIGTERM)
# after 3 s. Rows: the drain rate, how long the groups took to settle at the start and to
# hand the stopped members' partitions over, and the counts in ClickHouse.
scale() {
  local k="$1" broker="127.0.0.1:$mem_port" tag="x$1" db="${database}_x$1" i started stopped secs
  local eg="bench-$run_id-x$1-enrich" sg="bench-$run_id-x$1-sink" members=()
  CHAINFLOW_CLICKHOUSE__DATABASE="$db" "$bin" migrate >/dev/null
  "$bin" groups reset "$eg" --to latest --topic market.option_chain --set "kafka.bootstrap_servers=$broker" >/dev/null
  "$bin" groups reset "$sg-chains" --to latest --topic enriched.option_chain --set "kafka.bootstrap_servers=$broker" >/dev/null
  "$bin" feed --chains "$scale_chains" --set "kafka.bootstrap_servers=$broker" >/dev/null
  started=$(date +%s.%N)
  for i in $(seq 1 "$k"); do
    for stage in enrich sink; do
      RUST_LOG=info "$bin" $stage $([ $stage = sink ] && echo --stream chains) --set "kafka.bootstrap_servers=$broker" \
        --set "clickhouse.database=$db" --set "enrich.group_id=$eg" --set "sink.group_id=$sg" \
        --set "observability.metrics_listen=" >/dev/null 2>"$work/$tag-$stage-$i.log" &
      members+=("$!")
    done
  done
  sleep 3
  stopped=$(date +%s.%N)
  kill -TERM "${members[0]}" "${members[1]}"
  until [ "$(lag "$broker" "$eg" market.option_chain)" = 0 ] && [ "$(lag "$broker" "$sg-chains" enriched.option_chain)" = 0 ]; do
    if [ "$(echo "$(date +%s.%N) - $started > 300" | bc)" = 1 ]; then
      log "$k instances: not drained after 300 s (lag: enrich $(lag "$broker" "$eg" market.option_chain), sink $(lag "$broker" "$sg-chains" enriched.option_chain)); logs kept in target/bench-logs"
      mkdir -p target/bench-logs && cp "$work/$tag"-*.log target/bench-logs/
      break
    fi
    sleep 0.5
  done
  secs=$(echo "$(date +%s.%N) - $started" | bc)
  for p in "${members[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait "${members[@]}" 2>/dev/null || true
  local final plain
  final=$(ch -q "SELECT count() FROM $db.chain_snapshots FINAL")
  plain=$(ch -q "SELECT count() FROM $db.chain_snapshots")
  local settle handover
  settle=$(last_assignment_after "$started" "$work/$tag"-*-1.log "$work/$tag"-*-[2-9].log)
  handover=$(last_assignment_after "$stopped" "$work/$tag"-*-[2-9].log)
  row "nisshi 0.8.1 memory://" "$k × enrich and $k × chains sink (one of each stopped after 3 s), $scale_chains chains" \
    "$(awk -v n="$scale_chains" -v s="$secs" 'BEGIN {printf "%.0f chains/s", n / s}'); groups settled in $settle s, stopped members' partitions taken over in $handover s; chain_snapshots: $final of $scale_chains (FINAL), $plain rows before merges" "—"
  ch -q "DROP DATABASE $db"
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
    enrich_rate=$(awk -v n="$chains" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
    row "$label" "enrich alone (broker → broker), $chains chains" "$enrich_rate chains/s" "$(cpu iso-enrich)"
    log "$label: the Python baseline of enrich on $python_chains chains"
    python3 ops/bench/enrich_baseline.py "$broker" "$CHAINFLOW_REGISTRY__URL" "bench-$run_id-python" "$python_chains" \
      "bench.python.enriched" >"$work/python.out"
    python_rate=$(awk '{print $6}' "$work/python.out")
    row "$label" "Python baseline of enrich (confluent-kafka 2.16.1, fastavro 1.12.1, vollib 1.0.11), $python_chains chains" \
      "$python_rate chains/s; chainflow's enrich $(awk -v a="$enrich_rate" -v b="$python_rate" 'BEGIN {printf "%.0f", a / b}')× as fast" \
      "$(awk '{printf "%s s CPU (one Python process)", $8}' "$work/python.out")"
    log "$label: chains sink alone on $chains chains"
    "$bin" groups reset "bench-$run_id-iso-sink-chains" --to earliest --topic enriched.option_chain --set "kafka.bootstrap_servers=$broker" >/dev/null
    secs=$(drain "$broker" "bench-$run_id-iso-sink-chains" enriched.option_chain iso-sink sink --stream chains --set "sink.group_id=bench-$run_id-iso-sink")
    row "$label" "chains sink alone (broker → ClickHouse), $chains chains" "$(awk -v n="$chains" -v s="$secs" 'BEGIN {printf "%.0f chains/s", n / s}')" "$(cpu iso-sink)"
    log "clickhouse-client inserting the rows the chains sink wrote"
    client_secs=$(client_insert)
    row "ClickHouse only" "clickhouse-client inserting the same rows (RowBinary, one INSERT per table, native protocol)" \
      "$(awk -v n="$chains" -v s="$client_secs" 'BEGIN {printf "%.2f s, %.0f chains/s", s, n / s}'); the sink $(awk -v a="$client_secs" -v b="$secs" 'BEGIN {printf "%.2f", a / b}')× its rate" "—"
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
    n=$((offered * (quick ? 5 : 15)))
    log "$label: $offered chains/s offered, $n chains"
    paced "$broker" "paced$offered-$storage" "$label" "$offered chains/s offered, $n chains" --chains "$n" --rate "$((offered * 100 / 31))"
  done
  if [ "$storage" = memory ] && [ "$quick" = 0 ]; then
    log "$label: the simulator's spike profile (7 minutes)"
    # the profile's 7 minutes are about 498,000 messages, 154,000 of them chains; after it the
    # feed would go on at 200 msg/s
    paced "$broker" "spike-$storage" "$label" "spike profile: 200 → 2,000 msg/s (62 → 620 chains/s) and back, 150000 chains (7 minutes)" --profile spike --chains 150000
  fi
done

if [ "$quick" = 0 ]; then
  for k in 2 4; do
    log "nisshi 0.8.1 memory://: $k instances each of enrich and the chains sink, $scale_chains chains"
    scale "$k"
  done
fi

echo "| broker and storage | what | result | chainflow process |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
