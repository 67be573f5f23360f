#!/usr/bin/env bash
# End-to-end benchmarks of chainflow (release build), on the local stack's broker: Apache
# Kafka (one KRaft node, its log on the local disk; ops/stack.sh), with the broker's own CPU
# and memory beside chainflow's in every row:
#   - the feed alone, and feed → enrich → sink → queryable (`chainflow run`), chains/s and
#     options/s, with CPU seconds and peak RSS of the chainflow process; `run` again with
#     enrich.transactions = true (exactly-once on the topics); enrich and the chains sink
#     alone on the feed's backlog;
#   - latency from the feed's produce stamp to ClickHouse's acknowledgement (p50/p95/p99,
#     from the sink's histogram) at 200 and 2,000 chains/s offered (15 s of each);
#   - the baselines: enrich against a plain Python consumer doing the same work
#     (ops/bench/enrich_baseline.py: confluent-kafka, fastavro, vollib), and the chains sink
#     against clickhouse-client inserting the rows the sink wrote;
#   - in the full run: latency under the simulator's spike profile (7 minutes), and 2 and 4
#     instances each of enrich and the chains sink in one group (drain rate, rebalance
#     times, counts in ClickHouse).
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
broker="$CHAINFLOW_KAFKA__BOOTSTRAP_SERVERS"
# shellcheck source=ops/lib/kafka.sh
. "$ROOT/ops/lib/kafka.sh"
label="Apache Kafka $KAFKA_VERSION, 1 node, local disk"
broker_pid="$(cat "${CHAINFLOW_STACK_DIR:-$ROOT/.stack}/pids/broker.pid")"
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

CHAINFLOW_CLICKHOUSE__DATABASE="$database" "$bin" migrate >/dev/null

# The broker's CPU (user + system clock ticks) so far.
broker_ticks() { awk '{print $14 + $15}' "/proc/$broker_pid/stat"; }
# Starts measuring the broker for row $1.
broker_from() { broker_ticks >"$work/$1.broker0"; date +%s.%N >>"$work/$1.broker0"; }
# The broker's CPU and resident memory since broker_from $1.
broker_cell() {
  local t0 s0 ticks rss
  { read -r t0; read -r s0; } <"$work/$1.broker0"
  ticks=$(broker_ticks)
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$broker_pid/status")
  awk -v t="$((ticks - t0))" -v hz="$(getconf CLK_TCK)" -v s="$(echo "$(date +%s.%N) - $s0" | bc)" -v rss="$rss" \
    'BEGIN {printf "%.1f s CPU (%.0f %% of one core), RSS %.0f MB", t / hz, 100 * t / hz / s, rss / 1024}'
}

# chainflow ARGS against the broker, in this run's database and groups, timed
timed() {
  local tag="$1"
  shift
  broker_from "$tag"
  /usr/bin/time -f "%e %U %S %M" -o "$work/$tag.time" "$bin" "$@" \
    --set "clickhouse.database=$database" \
    --set "enrich.group_id=bench-$run_id-$tag-enrich" --set "sink.group_id=bench-$run_id-$tag-sink" \
    --set "observability.metrics_listen=127.0.0.1:$metrics_port" >"$work/$tag.out" 2>"$work/$tag.err"
}

# the run's consumer groups at the end of their topics, so that it reads only its own chains
groups_at_end() {
  local tag="$1" g
  for g in "bench-$run_id-$tag-enrich:market.option_chain" "bench-$run_id-$tag-sink-chains:enriched.option_chain" \
    "bench-$run_id-$tag-sink-ticks:market.underlying" "bench-$run_id-$tag-sink-quotes:market.option_quote" \
    "bench-$run_id-$tag-sink-dead_letters:dlq.market.option_chain"; do
    "$bin" groups reset "${g%%:*}" --to latest --topic "${g#*:}" >/dev/null
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
  local group="$1" topic="$2" tag="$3"
  shift 3
  broker_from "$tag"
  /usr/bin/time -f "%e %U %S %M" -o "$work/$tag.time" "$bin" "$@" \
    --set "clickhouse.database=$database" --set "observability.metrics_listen=" >"$work/$tag.out" 2>"$work/$tag.err" &
  local runner=$! started
  started=$(date +%s.%N)
  sleep 0.5
  until [ "$(lag "$group" "$topic")" = 0 ]; do
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

# `chainflow run ARGS` (tag $1), scraping its metrics; a row saying $2
paced() {
  local tag="$1" what="$2" achieved p50 p95 p99 n
  shift 2
  groups_at_end "$tag"
  timed "$tag" run "$@" &
  local runner=$!
  sleep 1
  scrape_until_done "$runner" "$work/$tag.metrics"
  wait "$runner"
  achieved=$(grep -m1 'chains/s end to end' "$work/$tag.out" | awk '{print $2}')
  read -r p50 p95 p99 n < <(quantiles "$work/$tag.metrics")
  row "$what" "achieved $achieved chains/s; latency p50 / p95 / p99 $p50 / $p95 / $p99 s ($n chains observed)" "$(cpu "$tag")" "$(broker_cell "$tag")"
}

# total lag of group $1 on topic $2
lag() { "$bin" groups lag "$1" --topic "$2" | awk '/total lag/ {print $3}'; }

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
# $scale_chains fresh chains; one instance of each is stopped (SIGTERM)
# after 3 s. Rows: the drain rate, how long the groups took to settle at the start and to
# hand the stopped members' partitions over, and the counts in ClickHouse.
scale() {
  local k="$1" tag="x$1" db="${database}_x$1" i started stopped secs
  local eg="bench-$run_id-x$1-enrich" sg="bench-$run_id-x$1-sink" members=()
  CHAINFLOW_CLICKHOUSE__DATABASE="$db" "$bin" migrate >/dev/null
  "$bin" groups reset "$eg" --to latest --topic market.option_chain >/dev/null
  "$bin" groups reset "$sg-chains" --to latest --topic enriched.option_chain >/dev/null
  "$bin" feed --chains "$scale_chains" >/dev/null
  broker_from "$tag"
  started=$(date +%s.%N)
  for i in $(seq 1 "$k"); do
    for stage in enrich sink; do
      RUST_LOG=info "$bin" $stage $([ $stage = sink ] && echo --stream chains) \
        --set "clickhouse.database=$db" --set "enrich.group_id=$eg" --set "sink.group_id=$sg" \
        --set "observability.metrics_listen=" >/dev/null 2>"$work/$tag-$stage-$i.log" &
      members+=("$!")
    done
  done
  sleep 3
  stopped=$(date +%s.%N)
  kill -TERM "${members[0]}" "${members[1]}"
  until [ "$(lag "$eg" market.option_chain)" = 0 ] && [ "$(lag "$sg-chains" enriched.option_chain)" = 0 ]; do
    if [ "$(echo "$(date +%s.%N) - $started > 300" | bc)" = 1 ]; then
      log "$k instances: not drained after 300 s (lag: enrich $(lag "$eg" market.option_chain), sink $(lag "$sg-chains" enriched.option_chain)); logs kept in target/bench-logs"
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
  row "$k × enrich and $k × chains sink (one of each stopped after 3 s), $scale_chains chains" \
    "$(awk -v n="$scale_chains" -v s="$secs" 'BEGIN {printf "%.0f chains/s", n / s}'); groups settled in $settle s, stopped members' partitions taken over in $handover s; chain_snapshots: $final of $scale_chains (FINAL), $plain rows before merges" "—" "$(broker_cell "$tag")"
  ch -q "DROP DATABASE $db"
}

rows=()
row() {
  local line="| $label |" cell
  for cell in "$@"; do line+=" $cell |"; done
  rows+=("$line")
}
cpu() { awk '{printf "%.1f s CPU (%.0f %% of one core), peak RSS %.0f MB", $2 + $3, 100 * ($2 + $3) / $1, $4 / 1024}' "$work/$1.time"; }

"$bin" topics >/dev/null
# the groups of each stage alone start where the topics end now: they read this run's
# backlog only, whatever the stack's topics already hold
"$bin" groups reset "bench-$run_id-iso-enrich" --to latest --topic market.option_chain >/dev/null
"$bin" groups reset "bench-$run_id-iso-sink-chains" --to latest --topic enriched.option_chain >/dev/null
"$bin" groups reset "bench-$run_id-python" --to latest --topic market.option_chain >/dev/null
log "$label: feed alone, $chains chains"
timed feed feed --chains "$chains"
feed_rate=$(awk '/market.option_chain/ {print $NF; exit}' "$work/feed.out" | tr -d '/s')
row "feed alone, $chains chains" "${feed_rate} chains/s" "$(cpu feed)" "$(broker_cell feed)"

# each stage alone on the backlog the feed just wrote
log "$label: enrich alone on $chains chains"
secs=$(drain "bench-$run_id-iso-enrich" market.option_chain iso-enrich enrich --set "enrich.group_id=bench-$run_id-iso-enrich")
enrich_rate=$(awk -v n="$chains" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
row "enrich alone (broker → broker), $chains chains" "$enrich_rate chains/s" "$(cpu iso-enrich)" "$(broker_cell iso-enrich)"
log "$label: the Python baseline of enrich on $python_chains chains"
python3 ops/bench/enrich_baseline.py "$broker" "$CHAINFLOW_REGISTRY__URL" "bench-$run_id-python" "$python_chains" \
  "bench.python.enriched" >"$work/python.out"
python_rate=$(awk '{print $6}' "$work/python.out")
row "Python baseline of enrich (confluent-kafka 2.16.1, fastavro 1.12.1, vollib 1.0.11), $python_chains chains" \
  "$python_rate chains/s; chainflow's enrich $(awk -v a="$enrich_rate" -v b="$python_rate" 'BEGIN {printf "%.0f", a / b}')× as fast" \
  "$(awk '{printf "%s s CPU (one Python process)", $8}' "$work/python.out")" "—"
log "$label: chains sink alone on $chains chains"
secs=$(drain "bench-$run_id-iso-sink-chains" enriched.option_chain iso-sink sink --stream chains --set "sink.group_id=bench-$run_id-iso-sink")
row "chains sink alone (broker → ClickHouse), $chains chains" "$(awk -v n="$chains" -v s="$secs" 'BEGIN {printf "%.0f chains/s", n / s}')" "$(cpu iso-sink)" "$(broker_cell iso-sink)"
log "clickhouse-client inserting the rows the chains sink wrote"
client_secs=$(client_insert)
row "clickhouse-client inserting the same rows (RowBinary, one INSERT per table, native protocol)" \
  "$(awk -v n="$chains" -v s="$client_secs" 'BEGIN {printf "%.2f s, %.0f chains/s", s, n / s}'); the sink $(awk -v a="$client_secs" -v b="$secs" 'BEGIN {printf "%.2f", a / b}')× its rate" "—" "—"

for mode in at-least-once exactly-once; do
  tag="e2e-$mode"
  extra=()
  [ "$mode" = exactly-once ] && extra=(--set enrich.transactions=true)
  log "$label: end to end ($mode), $chains chains"
  groups_at_end "$tag"
  timed "$tag" run --chains "$chains" "${extra[@]}"
  e2e=$(grep -m1 'chains/s end to end' "$work/$tag.out" | sed -E 's/ +rate +//')
  e2e_rate=$(echo "$e2e" | awk '{print $1}')
  ratio=$(awk -v a="$e2e_rate" -v b="$feed_rate" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
  what="end to end (run), $chains chains"
  [ "$mode" = exactly-once ] && what="end to end (run) with enrich.transactions = true, $chains chains"
  row "$what" "$e2e; ${ratio}× the feed alone" "$(cpu "$tag")" "$(broker_cell "$tag")"
done
for offered in 200 2000; do
  # the feed's --rate counts every message; chain snapshots are about 31 % of them
  n=$((offered * (quick ? 5 : 15)))
  log "$label: $offered chains/s offered, $n chains"
  paced "paced$offered" "$offered chains/s offered, $n chains" --chains "$n" --rate "$((offered * 100 / 31))"
done
if [ "$quick" = 0 ]; then
  log "$label: the simulator's spike profile (7 minutes)"
  # the profile's 7 minutes are about 498,000 messages, 154,000 of them chains; after it the
  # feed would go on at 200 msg/s
  paced spike "spike profile: 200 → 2,000 msg/s (62 → 620 chains/s) and back, 150000 chains (7 minutes)" --profile spike --chains 150000
  for k in 2 4; do
    log "$label: $k instances each of enrich and the chains sink, $scale_chains chains"
    scale "$k"
  done
fi

echo "| broker and storage | what | result | chainflow process | broker process |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
