#!/usr/bin/env bash
# Compares the brokers the local stack can run (Tansu 0.6.0, nisshi 0.8.1, both with
# SQLite storage) on what decides the choice: the integration tests, and a sink killed
# (SIGKILL) five times while a feed runs, then restarted each time. Each broker gets a
# private stack (own directory and ports, fresh store); the figures go to docs/brokers.md.
# Usage: ops/compare-brokers.sh [ROUNDS]   (default 2 sink-kill rounds per broker)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-2}"
CHAINS=6000
BIN="$ROOT/target/debug/chainflow"
cargo build --quiet --bin chainflow
log() { printf '[compare] %s\n' "$*"; }

# Chains of $1 queryable in ClickHouse database $2.
stored() {
  curl -s "$CHAINFLOW_CLICKHOUSE__URL/?database=$2" --data-binary \
    "SELECT count() FROM chain_snapshots FINAL WHERE product = '$1'"
}

# One round: feed CHAINS chains of a product of its own; enrich and sink as processes of
# their own; the sink SIGKILLed every 3 s five times and restarted; prints the seconds from
# the feed's end until every chain is stored, or how many are missing after 300 s.
kill_round() {
  local tag="$1" product db cfg
  product="CMP$(date +%s%N | tail -c 9)"
  db="cmp_$tag"
  cfg="$(mktemp --suffix .toml)"
  cat >"$cfg" <<TOML
[products.$product]
spot = 21500.0
strike_step = 50.0
lot_size = 50
rate = 0.065
dividend_yield = 0.012
expiry_close = "15:30"
time_zone = "Asia/Kolkata"
TOML
  export CHAINFLOW_CLICKHOUSE__DATABASE="$db" CHAINFLOW_ENRICH__GROUP_ID="cmp-enrich-$tag" \
    CHAINFLOW_SINK__GROUP_ID="cmp-sink-$tag" CHAINFLOW_OBSERVABILITY__METRICS_LISTEN="" RUST_LOG=error
  "$BIN" --config "$cfg" migrate >/dev/null
  "$BIN" --config "$cfg" enrich >/dev/null 2>&1 &
  local enrich=$!
  "$BIN" --config "$cfg" sink >/dev/null 2>&1 &
  local sink=$!
  "$BIN" --config "$cfg" feed --chains "$CHAINS" --rate 1500 >/dev/null 2>&1 &
  local feed=$!
  for _ in 1 2 3 4 5; do
    sleep 3
    kill -KILL "$sink" 2>/dev/null || true
    wait "$sink" 2>/dev/null || true
    "$BIN" --config "$cfg" sink >/dev/null 2>&1 &
    sink=$!
  done
  wait "$feed"
  local t0=$SECONDS n=0
  while [ $((SECONDS - t0)) -lt 300 ]; do
    n="$(stored "$product" "$db")"
    [ "$n" -ge "$CHAINS" ] && break
    sleep 1
  done
  kill -TERM "$sink" "$enrich" 2>/dev/null || true
  wait "$sink" "$enrich" 2>/dev/null || true
  if [ "$n" -ge "$CHAINS" ]; then
    echo "all $CHAINS stored $((SECONDS - t0)) s after the feed ended"
  else
    echo "STALLED: $((CHAINS - n)) of $CHAINS missing 300 s after the feed ended"
  fi
  rm -f "$cfg"
}

for broker in tansu nisshi; do
  dir="$(mktemp -d /tmp/chainflow-compare-$broker.XXXX)"
  export CHAINFLOW_STACK_DIR="$dir" CHAINFLOW_STACK_BROKER="$broker" \
    CHAINFLOW_STACK_KAFKA_PORT=19092 CHAINFLOW_STACK_CLICKHOUSE_HTTP_PORT=18123 \
    CHAINFLOW_STACK_CLICKHOUSE_TCP_PORT=19000 CHAINFLOW_STACK_REGISTRY_PORT=18081 \
    CHAINFLOW_STACK_PROMETHEUS_PORT=19090
  ops/stack.sh up >/dev/null
  eval "$(ops/stack.sh env)"
  log "$broker: integration tests"
  start=$SECONDS
  if cargo test --quiet --workspace --features stack --test dead_letters --test feed --test pipeline --test sink \
    --test registry --test supervision -- --test-threads=1 >"$dir/tests.log" 2>&1; then
    log "$broker: integration tests passed in $((SECONDS - start)) s"
  else
    log "$broker: integration tests FAILED ($dir/tests.log)"
  fi
  for round in $(seq "$ROUNDS"); do
    log "$broker: sink SIGKILL x5 during a feed of $CHAINS chains, round $round: $(kill_round "${broker}_$round")"
  done
  ops/stack.sh down >/dev/null
done
