# Sourced by ops/install.sh and ops/stack.sh: the pinned Apache Kafka version (read from
# ops/kafka/pom.xml, the one place it is written) and where its jars are cached.
KAFKA_VERSION="$(sed -n 's#.*<kafka.version>\(.*\)</kafka.version>.*#\1#p' "$ROOT/ops/kafka/pom.xml")"
KAFKA_LIBS="${CHAINFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chainflow}/kafka-$KAFKA_VERSION/libs"
