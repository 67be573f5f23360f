#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts the local stack if needed, then
# runs unit tests, integration tests against the real broker, registry and ClickHouse,
# and checks the shipped SQL on a current ClickHouse engine (chdb).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
phase() { printf '\n[test] %s\n' "$*"; }
t0=$SECONDS
phase "install"
ops/install.sh
t1=$SECONDS
phase "build"
cargo build --workspace --all-targets --quiet
t2=$SECONDS
phase "stack"
ops/stack.sh up
eval "$(ops/stack.sh env)"
t3=$SECONDS
phase "tests"
export CHAINFLOW_OBSERVABILITY__LOG_FORMAT=text RUST_LOG="${RUST_LOG:-warn}"
log="$(mktemp)"
cargo test --workspace --quiet -- --test-threads=1 2>&1 | tee "$log"
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
rm -f "$log"
phase "docker-compose.kafka.yml"
docker-compose -f docker-compose.kafka.yml config -q && echo "docker-compose.kafka.yml: valid"
phase "SQL on a current ClickHouse engine (chdb)"
target/debug/chainflow migrate --print-for 26.1 | python3 ops/check_sql.py
t4=$SECONDS
printf '\n[test] phases: install %ds, build %ds, stack %ds, tests %ds, total %ds\n' \
  $((t1 - t0)) $((t2 - t1)) $((t3 - t2)) $((t4 - t3)) $((t4 - t0))
echo "cargo: $passed passed, $failed failed"
