#!/usr/bin/env bash
# Installs everything the local stack and the build need, on a fresh Debian machine.
# Idempotent: every step checks before it installs, so a second run takes seconds.
set -euo pipefail

# The local stack's broker (docs/brokers.md says why nisshi): CHAINFLOW_STACK_BROKER=tansu
# installs its predecessor instead.
BROKER="${CHAINFLOW_STACK_BROKER:-nisshi}"
TANSU_VERSION="0.6.0"
NISSHI_VERSION="0.8.1"
APT_PACKAGES=(
  # librdkafka built by the rdkafka crate (cmake-build) and its codecs/security
  cmake libcurl4-openssl-dev libsasl2-dev libssl-dev libzstd-dev zlib1g-dev pkg-config
  # the local stack
  clickhouse-server clickhouse-client prometheus
  # validation of docker-compose.kafka.yml
  docker-compose
  # port checks in ops/stack.sh
  iproute2 curl
  # the live page's browser test and benchmark (tests/live.rs, ops/bench-live.sh), with a font
  chromium fonts-dejavu-core
)

log() { printf '[install] %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Debian's clickhouse-server package starts its system service; the stack runs its own.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now clickhouse-server prometheus >/dev/null 2>&1 || true
  fi
  $SUDO service clickhouse-server stop >/dev/null 2>&1 || true
  $SUDO service prometheus stop >/dev/null 2>&1 || true
else
  log "apt packages: already installed"
fi

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
case "$BROKER" in
  nisshi)
    if [ -x "$CARGO_BIN/nisshi" ] && "$CARGO_BIN/nisshi" --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
      log "nisshi $NISSHI_VERSION: already installed"
    else
      log "nisshi $NISSHI_VERSION: building (about 11 minutes on 2 cores)"
      # it declares a newer rustc than the machines' 1.95, and builds with it
      cargo install --locked --ignore-rust-version nisshi --version "$NISSHI_VERSION" \
        --no-default-features --features libsql,dynostore
    fi
    ;;
  tansu)
    if [ -x "$CARGO_BIN/tansu" ] && "$CARGO_BIN/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
      log "tansu $TANSU_VERSION: already installed"
    else
      log "tansu $TANSU_VERSION: building (about 10 minutes on 2 cores)"
      cargo install --locked tansu --version "$TANSU_VERSION" --features libsql
    fi
    ;;
  *) echo "CHAINFLOW_STACK_BROKER: nisshi or tansu, got $BROKER" >&2; exit 2 ;;
esac

# Test tools: Confluent's Schema Registry client (an independent client for the registry),
# fastavro (Avro for the Python consumer example), chdb (an in-process current ClickHouse,
# to check the shipped SQL), vollib (the option maths of ops/bench.sh's Python baseline) and
# websockets (the clients of ops/bench-live.sh).
if python3 -c 'import confluent_kafka, authlib, httpx, cachetools, attrs, fastavro, chdb, vollib, websockets' >/dev/null 2>&1; then
  log "python test tools: already installed"
else
  log "python test tools: confluent-kafka, fastavro, chdb-core, vollib, websockets"
  python3 -m pip install -q --disable-pip-version-check 'confluent-kafka==2.16.1' authlib httpx cachetools attrs 'fastavro==1.12.1' \
    'chdb-core==26.9.0' 'vollib==1.0.11' 'websockets==15.0.1'
fi
