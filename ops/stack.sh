#!/usr/bin/env bash
# The local stack, on loopback only, with its data under .stack/ (git-ignored):
#   Apache Kafka (one KRaft node, broker and controller, or a cluster of them, from the
#   jars ops/install.sh fetched; docs/brokers.md) · ClickHouse (Debian's server, the project's config) ·
#   chainflow registry (Schema Registry) · Prometheus.
# Usage: ops/stack.sh up | down | status | env | isolate N | reconnect N
# Ports (defaults are the conventional ones): CHAINFLOW_STACK_KAFKA_PORT=9092,
# CHAINFLOW_STACK_KAFKA_CONTROLLER_PORT=9093, CHAINFLOW_STACK_CLICKHOUSE_HTTP_PORT=8123,
# CHAINFLOW_STACK_CLICKHOUSE_TCP_PORT=9000, CHAINFLOW_STACK_REGISTRY_PORT=8081,
# CHAINFLOW_STACK_PROMETHEUS_PORT=9090. The broker's heap: CHAINFLOW_STACK_KAFKA_HEAP
# (512m).
# CHAINFLOW_STACK_BROKERS=3 makes Kafka a cluster of three KRaft nodes (each broker and
# controller; node N on the Kafka ports + 2(N-1): 9092/9093, 9094/9095, 9096/9097), whose
# topics get replication factor 3 and min.insync.replicas 2 (docs/brokers.md). One node by
# default. A stack keeps the shape it was made with (.stack/kafka-brokers) until its Kafka
# data is removed.
# CHAINFLOW_STACK_NETNS=NAME (the fault suite's; root only) runs each Kafka node in a network
# namespace of its own, NAME-kN, at 10.213.0.(10+N) on a bridge NAME-br (10.213.0.1) that the
# clients reach from the host; `ops/stack.sh isolate N` cuts node N off from the other nodes
# and from every client (its link to the bridge down) and `ops/stack.sh reconnect N` puts it
# back: a network partition that a TCP proxy cannot make, since every peer reaches a node at
# the one address it advertises (docs/guarantees.md, "Under faults").
# `up` is idempotent: what already runs is kept; a port held by another program is an error.
# `down` stops only what `up` started (by pid file).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${CHAINFLOW_STACK_DIR:-$ROOT/.stack}"
KAFKA_PORT="${CHAINFLOW_STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${CHAINFLOW_STACK_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${CHAINFLOW_STACK_KAFKA_HEAP:-512m}"
CH_HTTP_PORT="${CHAINFLOW_STACK_CLICKHOUSE_HTTP_PORT:-8123}"
CH_TCP_PORT="${CHAINFLOW_STACK_CLICKHOUSE_TCP_PORT:-9000}"
REGISTRY_PORT="${CHAINFLOW_STACK_REGISTRY_PORT:-8081}"
PROMETHEUS_PORT="${CHAINFLOW_STACK_PROMETHEUS_PORT:-9090}"
CHAINFLOW_BIN="${CHAINFLOW_BIN:-$ROOT/target/debug/chainflow}"
# shellcheck source=ops/lib/kafka.sh
. "$ROOT/ops/lib/kafka.sh"

log() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# The Kafka nodes: the shape the stack was made with, else CHAINFLOW_STACK_BROKERS, else 1.
SHAPE_FILE="$STACK/kafka-brokers"
BROKERS="$(cat "$SHAPE_FILE" 2>/dev/null || echo "${CHAINFLOW_STACK_BROKERS:-1}")"
if [ -n "${CHAINFLOW_STACK_BROKERS:-}" ] && [ "$CHAINFLOW_STACK_BROKERS" != "$BROKERS" ]; then
  die "CHAINFLOW_STACK_BROKERS=$CHAINFLOW_STACK_BROKERS, but the stack in $STACK was made with $BROKERS Kafka node(s); to change its shape: ops/stack.sh down && rm -rf $STACK/kafka* (its topics are lost)"
fi
[[ "$BROKERS" =~ ^[1-9]$ ]] || die "CHAINFLOW_STACK_BROKERS: expected 1 to 9 Kafka nodes, got '$BROKERS'"
# replication factor: every node, at most 3; min.insync.replicas: one fewer (at least 1)
REPLICATION=$((BROKERS < 3 ? BROKERS : 3))
MIN_ISR=$((REPLICATION > 1 ? REPLICATION - 1 : 1))
# a node fenced by its own controller on a one-node cluster loses librdkafka clients for
# good (ops/kafka/server.properties): 30 s there, Kafka's 9 s on a cluster
BROKER_SESSION_TIMEOUT_MS=$((BROKERS > 1 ? 9000 : 30000))

# Node $1's component name, address, client port, controller port and directory.
broker_name() { if [ "$1" = 1 ]; then echo broker; else echo "broker-$1"; fi; }
NETNS="${CHAINFLOW_STACK_NETNS:-}"
broker_host() { if [ -n "$NETNS" ]; then echo "10.213.0.$((10 + $1))"; else echo 127.0.0.1; fi; }
broker_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
controller_port() { echo $((KAFKA_CONTROLLER_PORT + 2 * ($1 - 1))); }
broker_dir() { if [ "$1" = 1 ]; then echo "$STACK/kafka"; else echo "$STACK/kafka-$1"; fi; }
# Every node's client address (bootstrap) or controller address (voters), joined by commas.
node_list() {
  local kind="$1" i out=""
  for ((i = 1; i <= BROKERS; i++)); do
    case "$kind" in
      bootstrap) out+="${out:+,}$(broker_host "$i"):$(broker_port "$i")" ;;
      voters) out+="${out:+,}$i@$(broker_host "$i"):$(controller_port "$i")" ;;
    esac
  done
  echo "$out"
}

# The environment that points chainflow at this stack.
stack_env() {
  echo "export CHAINFLOW_KAFKA__BOOTSTRAP_SERVERS=$(node_list bootstrap)"
  if ((BROKERS > 1)); then
    echo "export CHAINFLOW_KAFKA__REPLICATION_FACTOR=$REPLICATION"
    echo "export CHAINFLOW_KAFKA__MIN_INSYNC_REPLICAS=$MIN_ISR"
  fi
  cat <<EOF
export CHAINFLOW_REGISTRY__URL=http://127.0.0.1:$REGISTRY_PORT
export CHAINFLOW_REGISTRY__LISTEN=127.0.0.1:$REGISTRY_PORT
export CHAINFLOW_CLICKHOUSE__URL=http://127.0.0.1:$CH_HTTP_PORT
EOF
}
eval "$(stack_env)"

pid_of() { cat "$STACK/pids/$1.pid" 2>/dev/null || true; }
running() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# Fails when the port is held by a program this stack did not start.
claim_port() {
  local name="$1" port="$2"
  if port_busy "$port"; then
    die "port $port (for $name) is in use by another program, not one this stack started; stop it or choose another port (see the top of ops/stack.sh)"
  fi
}

# Waits up to $3 seconds for "$2" (a command) to succeed.
wait_for() {
  local name="$1" probe="$2" secs="${3:-60}" i
  for ((i = 0; i < secs * 4; i++)); do
    if eval "$probe" >/dev/null 2>&1; then return 0; fi
    if ! running "$name"; then
      die "$name exited during start-up; its log: $STACK/logs/$name.log
$(tail -n 20 "$STACK/logs/$name.log" 2>/dev/null)"
    fi
    sleep 0.25
  done
  die "$name did not answer within ${secs}s; its log: $STACK/logs/$name.log"
}

# Starts "$@" in the background as component $name, in directory $dir.
launch() {
  local name="$1" dir="$2"; shift 2
  mkdir -p "$STACK/logs" "$STACK/pids" "$dir"
  local pidfile="$STACK/pids/$name.pid"
  rm -f "$pidfile"
  # The service records its own pid (after setsid's fork), then becomes the service.
  # The whole background subshell is redirected and execs, so nothing keeps the caller's
  # stdout open (`ops/stack.sh up | tee` ends).
  (cd "$dir" && exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@") >>"$STACK/logs/$name.log" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 40; i++)); do [ -s "$pidfile" ] && return 0; sleep 0.05; done
  die "$name did not start (no pid file); its log: $STACK/logs/$name.log"
}

# Whether node $1 answers on its client port.
kafka_probe() { timeout 1 bash -c "</dev/tcp/$(broker_host "${1:-1}")/$(broker_port "${1:-1}")"; }
clickhouse_probe="curl -sf http://127.0.0.1:$CH_HTTP_PORT/ping"
registry_probe="curl -sf http://127.0.0.1:$REGISTRY_PORT/subjects"
prometheus_probe="curl -sf http://127.0.0.1:$PROMETHEUS_PORT/-/ready"

# Node $1's settings: ops/kafka/server.properties with its id, ports and directory, the
# quorum's voters and the replication filled in.
kafka_config() {
  local node="$1" dir
  dir="$(broker_dir "$node")"
  sed -e "s#@NODE_ID@#$node#g" -e "s#@VOTERS@#$(node_list voters)#g" \
    -e "s#@HOST@#$(broker_host "$node")#g" \
    -e "s#@PORT@#$(broker_port "$node")#g" -e "s#@CONTROLLER_PORT@#$(controller_port "$node")#g" \
    -e "s#@DATA@#$dir/data#g" -e "s#@REPLICATION@#$REPLICATION#g" -e "s#@MIN_ISR@#$MIN_ISR#g" \
    -e "s#@BROKER_SESSION_TIMEOUT_MS@#$BROKER_SESSION_TIMEOUT_MS#g" \
    "$ROOT/ops/kafka/server.properties" >"$dir/server.properties"
  if ((BROKERS > 1)); then cat "$ROOT/ops/kafka/cluster.properties" >>"$dir/server.properties"; fi
}

# Sets KAFKA_CMD to the command that runs Kafka's class $1 (then "$@") with the cached jars,
# the stack's logging and the heap $KAFKA_HEAP, with the options Kafka's own scripts give.
kafka_command() {
  local main="$1"; shift
  KAFKA_CMD=(java "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$ROOT/ops/kafka/log4j2.yaml" "-Dkafka.logs.dir=$STACK/logs"
    -cp "$KAFKA_LIBS/*" "$main" "$@")
}

# Starts node $1 (formatting its log first if it is new) without waiting for it: a node
# of a quorum answers only once a majority of the voters runs.
launch_broker() {
  local node="$1" name dir
  name="$(broker_name "$node")"
  dir="$(broker_dir "$node")"
  if running "$name"; then log "$name: running (pid $(pid_of "$name"))"; return; fi
  claim_port "$name" "$(broker_port "$node")"
  claim_port "$name (controller)" "$(controller_port "$node")"
  mkdir -p "$dir/data" "$STACK/logs"
  kafka_config "$node"
  if [ ! -f "$dir/data/meta.properties" ]; then
    # a new log, formatted once with the cluster's id (static voters: no --standalone)
    if [ ! -s "$STACK/kafka-cluster-id" ]; then
      kafka_command kafka.tools.StorageTool random-uuid
      "${KAFKA_CMD[@]}" >"$STACK/kafka-cluster-id" 2>>"$STACK/logs/$name.log"
    fi
    kafka_command kafka.tools.StorageTool format -t "$(cat "$STACK/kafka-cluster-id")" -c "$dir/server.properties"
    "${KAFKA_CMD[@]}" >>"$STACK/logs/$name.log" 2>&1 || die "formatting $name's log failed; its log: $STACK/logs/$name.log"
  fi
  kafka_command kafka.Kafka "$dir/server.properties"
  if [ -n "$NETNS" ]; then KAFKA_CMD=(ip netns exec "$NETNS-k$node" "${KAFKA_CMD[@]}"); fi
  launch "$name" "$dir" "${KAFKA_CMD[@]}"
}

# With CHAINFLOW_STACK_NETNS: the bridge and each node's namespace and link, made once
# (and every link up: a run cut short may have left one isolated).
netns_up() {
  [ -n "$NETNS" ] || return 0
  [ "$(id -u)" -eq 0 ] || die "CHAINFLOW_STACK_NETNS needs root (network namespaces)"
  if ! ip link show "$NETNS-br" >/dev/null 2>&1; then
    ip link add "$NETNS-br" type bridge
    ip addr add 10.213.0.1/24 dev "$NETNS-br"
  fi
  ip link set "$NETNS-br" up
  local node ns
  for ((node = 1; node <= BROKERS; node++)); do
    ns="$NETNS-k$node"
    if ! ip netns list | grep -qw "$ns"; then
      ip netns add "$ns"
      ip link add "$NETNS-v$node" type veth peer name eth0 netns "$ns"
      ip link set "$NETNS-v$node" master "$NETNS-br"
      ip -n "$ns" addr add "$(broker_host "$node")/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
    fi
    ip link set "$NETNS-v$node" up
  done
}

netns_down() {
  [ -n "$NETNS" ] || return 0
  local node
  for ((node = 1; node <= BROKERS; node++)); do ip netns del "$NETNS-k$node" 2>/dev/null || true; done
  ip link del "$NETNS-br" 2>/dev/null || true
}

# Node $2's link to the bridge $1 (up or down): the node joined to, or cut off from, the
# other nodes and every client.
node_link() {
  [ -n "$NETNS" ] || die "isolating a node needs CHAINFLOW_STACK_NETNS (its own network namespace)"
  [[ "${2:-}" =~ ^[1-9]$ ]] && ((${2} <= BROKERS)) || die "expected a node number from 1 to $BROKERS, got '${2:-}'"
  ip link set "$NETNS-v$2" "$1"
  log "$(broker_name "$2"): link $1"
}

start_kafka() {
  [ -f "$KAFKA_LIBS/.complete" ] || die "Apache Kafka $KAFKA_VERSION is not installed in $KAFKA_LIBS (run ops/install.sh)"
  mkdir -p "$STACK"
  echo "$BROKERS" >"$SHAPE_FILE"
  netns_up
  local node
  for ((node = 1; node <= BROKERS; node++)); do launch_broker "$node"; done
  # a port opens once its node has joined the quorum and is admitted as a broker
  for ((node = 1; node <= BROKERS; node++)); do
    wait_for "$(broker_name "$node")" "kafka_probe $node" 90
  done
  log "kafka: Apache Kafka $KAFKA_VERSION, $BROKERS KRaft node(s) on $(node_list bootstrap) (controllers $(node_list voters)), replication factor $REPLICATION, min.insync.replicas $MIN_ISR, heap $KAFKA_HEAP each, logs in $STACK/kafka*"
}

start_clickhouse() {
  if running clickhouse; then log "clickhouse: running (pid $(pid_of clickhouse))"; return; fi
  claim_port clickhouse "$CH_HTTP_PORT"
  claim_port clickhouse "$CH_TCP_PORT"
  local dir="$STACK/clickhouse"
  mkdir -p "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/etc"
  sed -e "s#@DATA@#$dir#g" -e "s#@HTTP_PORT@#$CH_HTTP_PORT#g" -e "s#@TCP_PORT@#$CH_TCP_PORT#g" \
    "$ROOT/ops/clickhouse/config.xml" >"$dir/etc/config.xml"
  cp "$ROOT/ops/clickhouse/users.xml" "$dir/etc/users.xml"
  launch clickhouse "$dir" /usr/sbin/clickhouse-server --config-file="$dir/etc/config.xml"
  wait_for clickhouse "$clickhouse_probe" 60
  log "clickhouse: started on 127.0.0.1:$CH_HTTP_PORT (http) and :$CH_TCP_PORT (native), data in $dir"
}

build_chainflow() {
  if [ ! -x "$CHAINFLOW_BIN" ] || [ -n "$(find "$ROOT/src" "$ROOT"/*/src "$ROOT/Cargo.toml" -newer "$CHAINFLOW_BIN" -print -quit 2>/dev/null)" ]; then
    log "building chainflow (debug)"
    (cd "$ROOT" && cargo build --quiet --bin chainflow)
  fi
}

start_registry() {
  if running registry; then log "registry: running (pid $(pid_of registry))"; return; fi
  claim_port registry "$REGISTRY_PORT"
  launch registry "$STACK" "$CHAINFLOW_BIN" registry
  wait_for registry "$registry_probe" 90
  log "registry: started on 127.0.0.1:$REGISTRY_PORT (state in the _schemas topic)"
}

start_prometheus() {
  if running prometheus; then log "prometheus: running (pid $(pid_of prometheus))"; return; fi
  if ! command -v prometheus >/dev/null; then log "prometheus: not installed, skipped"; return; fi
  claim_port prometheus "$PROMETHEUS_PORT"
  local dir="$STACK/prometheus"
  mkdir -p "$dir/data"
  sed -e "s#@REGISTRY_PORT@#$REGISTRY_PORT#g" "$ROOT/ops/prometheus/prometheus.yml" >"$dir/prometheus.yml"
  cp "$ROOT/ops/prometheus/alerts.yml" "$dir/alerts.yml"
  launch prometheus "$dir" prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
  wait_for prometheus "$prometheus_probe" 60
  log "prometheus: started on 127.0.0.1:$PROMETHEUS_PORT"
}

up() {
  local t0=$SECONDS
  "$ROOT/ops/install.sh"
  build_chainflow
  start_kafka
  start_clickhouse
  # a broker just started may still be opening its storage: a few tries
  local try
  for try in 1 2 3; do
    if "$CHAINFLOW_BIN" topics; then break; fi
    [ "$try" = 3 ] && die "creating the topics failed (see above)"
    log "creating the topics failed; trying again in 5 s"
    sleep 5
  done
  start_registry
  start_prometheus
  "$CHAINFLOW_BIN" migrate
  log "stack up in $((SECONDS - t0)) s"
}

stop_one() {
  local name="$1" pid i
  pid="$(pid_of "$name")"
  if [ -z "$pid" ]; then return; fi
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
    log "$name: stopped"
  fi
  rm -f "$STACK/pids/$name.pid"
}

down() {
  for name in prometheus registry clickhouse; do stop_one "$name"; done
  # the nodes together: a quorum's last nodes would wait for each other one by one
  local node
  for ((node = 1; node <= BROKERS; node++)); do stop_one "$(broker_name "$node")" & done
  wait
  netns_down
}

status() {
  local rc=0
  row() {
    local name="$1" port="$2" probe="$3" state
    if running "$name"; then
      if eval "$probe" >/dev/null 2>&1; then state="up (pid $(pid_of "$name"))"; else state="starting or unhealthy (pid $(pid_of "$name"))"; rc=1; fi
    elif port_busy "$port"; then state="port in use by another program"; rc=1
    else state="down"; rc=1; fi
    printf '  %-11s %s:%-6s %s\n' "$name" "${4:-127.0.0.1}" "$port" "$state"
  }
  # Apache Kafka: each KRaft node, its controller port and the partitions it leads
  local node leaders
  leaders="$(python3 "$ROOT/ops/lib/leaders.py" "$(node_list bootstrap)" 2>/dev/null || true)"
  for ((node = 1; node <= BROKERS; node++)); do
    row "$(broker_name "$node")" "$(broker_port "$node")" "kafka_probe $node" "$(broker_host "$node")"
    printf '  %-11s node %s, controller %s:%s, leads %s\n' "" "$node" "$(broker_host "$node")" "$(controller_port "$node")" \
      "$(sed -n "s/^$node //p" <<<"$leaders" | grep . || echo "nothing it could report (the cluster did not answer)")"
  done
  row clickhouse "$CH_HTTP_PORT" "$clickhouse_probe"
  row registry "$REGISTRY_PORT" "$registry_probe"
  row prometheus "$PROMETHEUS_PORT" "$prometheus_probe"
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) stack_env ;;
  isolate) node_link down "${2:-}" ;;
  reconnect) node_link up "${2:-}" ;;
  *) echo "usage: $0 up|down|status|env|isolate N|reconnect N" >&2; exit 2 ;;
esac
