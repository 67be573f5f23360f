#!/usr/bin/env bash
# Installs everything the local stack and the build need, on a fresh Debian machine.
# Idempotent: every step checks before it installs, so a second run takes seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

APT_PACKAGES=(
  # librdkafka built by the rdkafka crate (cmake-build) and its codecs/security
  cmake libcurl4-openssl-dev libsasl2-dev libssl-dev libzstd-dev zlib1g-dev pkg-config
  # the local stack: Apache Kafka runs on the JVM, its jars fetched by Maven (below)
  openjdk-17-jre-headless maven clickhouse-server clickhouse-client prometheus
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

# The local stack's broker: Apache Kafka, the version pinned in ops/kafka/pom.xml, its
# runtime jars copied from Maven Central into a cache shared by every checkout
# (ops/stack.sh runs it from there; docs/brokers.md).
# shellcheck source=ops/lib/kafka.sh
. "$ROOT/ops/lib/kafka.sh"
if [ -f "$KAFKA_LIBS/.complete" ]; then
  log "apache kafka $KAFKA_VERSION: already installed ($KAFKA_LIBS)"
else
  log "apache kafka $KAFKA_VERSION: fetching its jars from Maven Central into $KAFKA_LIBS"
  partial="$KAFKA_LIBS.partial"
  rm -rf "$partial"
  mvn_log="$(mktemp)"
  if ! mvn -B -q -f "$ROOT/ops/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$partial" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -f "$mvn_log"
    echo "[install] error: fetching Apache Kafka's jars from Maven Central failed (above)" >&2
    exit 1
  fi
  rm -f "$mvn_log"
  rm -rf "$KAFKA_LIBS"
  mv "$partial" "$KAFKA_LIBS"
  touch "$KAFKA_LIBS/.complete"
fi

# The fault suite's TCP proxy (docs/guarantees.md, "Under faults"): toxiproxy's server,
# built with the machine's Go from the Go module proxy into the cache.
# shellcheck source=ops/lib/toxiproxy.sh
. "$ROOT/ops/lib/toxiproxy.sh"
if [ -x "$TOXIPROXY_BIN" ]; then
  log "toxiproxy $TOXIPROXY_VERSION: already installed ($TOXIPROXY_BIN)"
else
  # the machines' Go lives in /usr/local/go, which a non-login shell may not have on its PATH
  command -v go >/dev/null || PATH="/usr/local/go/bin:$PATH"
  command -v go >/dev/null || { echo "[install] error: toxiproxy is built with Go, which is not on this machine's PATH nor in /usr/local/go" >&2; exit 1; }
  log "toxiproxy $TOXIPROXY_VERSION: building it from the Go module proxy into $(dirname "$TOXIPROXY_BIN")"
  go_log="$(mktemp)"
  if ! GOBIN="$(dirname "$TOXIPROXY_BIN").partial" go install "github.com/Shopify/toxiproxy/v2/cmd/server@v$TOXIPROXY_VERSION" >"$go_log" 2>&1; then
    cat "$go_log" >&2
    rm -f "$go_log"
    echo "[install] error: building toxiproxy failed (above)" >&2
    exit 1
  fi
  rm -f "$go_log"
  mkdir -p "$(dirname "$TOXIPROXY_BIN")"
  mv "$(dirname "$TOXIPROXY_BIN").partial/server" "$TOXIPROXY_BIN"
  rm -rf "$(dirname "$TOXIPROXY_BIN").partial"
fi

# Test tools: Confluent's Python client (an independent client for the registry, and the
# Kafka admin calls the tests need: ACLs), fastavro (Avro for the Python consumer example),
# chdb (an in-process current ClickHouse, to check the shipped SQL), vollib (the option
# maths of ops/bench.sh's Python baseline) and websockets (the clients of ops/bench-live.sh).
if python3 -c 'import confluent_kafka, authlib, httpx, cachetools, attrs, fastavro, chdb, vollib, websockets' >/dev/null 2>&1; then
  log "python test tools: already installed"
else
  log "python test tools: confluent-kafka, fastavro, chdb-core, vollib, websockets"
  python3 -m pip install -q --disable-pip-version-check 'confluent-kafka==2.16.1' authlib httpx cachetools attrs 'fastavro==1.12.1' \
    'chdb-core==26.9.0' 'vollib==1.0.11' 'websockets==15.0.1'
fi
