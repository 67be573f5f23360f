#!/usr/bin/env bash
# The whole test suite, in phases, each timed:
#   install      what is missing on this machine (ops/install.sh, idempotent)
#   format       cargo fmt --check
#   lint         cargo clippy on every target, warnings are errors
#   layering     the crates' dependency rules of docs/architecture.md (tests/layering.rs,
#                on cargo metadata): floors, no I/O under the analytics, the option maths
#                only in the stages that price
#   unit         cargo test --workspace: unit and pure tests, nothing started
#   stack        the local stack (ops/stack.sh up), started if needed
#   integration  the tests behind the `stack` feature, against the real broker, registry
#                and ClickHouse (the example consumers included); fails when none ran
#   schemas      the contract's schemas against the released ones and the registry
#   alerts       the Prometheus alert rules check, and their unit tests (promtool)
#   chaos        the short fault-injection suite on a private stack (ops/chaos.sh)
#   compose      docker-compose.kafka.yml validates
#   sql          the shipped SQL on a current ClickHouse engine (chdb), the cluster DDL parsed
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RUST_LOG="${RUST_LOG:-warn}"

declare -a PHASES=()
phase_start=$SECONDS
phase() {
  if [ -n "${current:-}" ]; then PHASES+=("$current $((SECONDS - phase_start))s"); fi
  current="$1"
  phase_start=$SECONDS
  printf '\n[test] %s\n' "$1"
}

# Runs cargo test with "$@", echoing its output; sets $passed and $failed.
run_tests() {
  local log
  log="$(mktemp)"
  local rc=0
  cargo test "$@" 2>&1 | tee "$log" || rc=$?
  passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
  failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
  rm -f "$log"
  return $rc
}

t0=$SECONDS
phase install
ops/install.sh

phase format
cargo fmt --all --check

phase lint
cargo clippy --workspace --all-targets --features stack --quiet -- -D warnings

phase layering
cargo test --quiet --test layering

phase unit
run_tests --workspace --quiet
unit_passed=$passed

phase stack
ops/stack.sh up
eval "$(ops/stack.sh env)"

phase integration
stack_tests=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "stack" in (t.get("required-features") or []):
            print("--test", t["name"])')
cargo build --quiet --example consume  # run by tests/contracts.rs
# shellcheck disable=SC2086
run_tests --workspace --features stack $stack_tests --quiet -- --test-threads=1
stack_passed=$passed
if [ "$stack_passed" -eq 0 ]; then
  echo "no integration test ran" >&2
  exit 1
fi

phase schemas
target/debug/chainflow schemas check

phase alerts
promtool check rules ops/prometheus/alerts.yml
promtool test rules ops/prometheus/alerts.test.yml

phase chaos
ops/chaos.sh

phase compose
docker-compose -f docker-compose.kafka.yml config -q && echo "docker-compose.kafka.yml: valid"

phase sql
target/debug/chainflow migrate --print-for 26.1 | python3 ops/check_sql.py
# with retention: the TTL statements too (a century, so the check's 2025 rows stay)
target/debug/chainflow migrate --print-for 26.1 --set clickhouse.retention_days=36500 | python3 ops/check_sql.py
# on a cluster: replicated local tables, distributed ones, views to match (parsed only)
target/debug/chainflow migrate --print-for 26.1 --cluster chainflow | python3 ops/check_sql.py --parse-only

phase done
printf '\n[test] phases: %s\n' "${PHASES[*]}"
printf '[test] total %ds; unit and pure tests: %d passed; integration tests on the stack: %d passed\n' \
  $((SECONDS - t0)) "$unit_passed" "$stack_passed"
