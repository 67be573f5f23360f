# Sourced by ops/install.sh and ops/chaos.sh: the fault suite's TCP proxy (Shopify's
# toxiproxy, MIT, built from the Go module proxy) that stands between the sinks and
# ClickHouse in the network scenarios, and where its binary is cached.
TOXIPROXY_VERSION=2.12.0
TOXIPROXY_BIN="${CHAINFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chainflow}/toxiproxy-$TOXIPROXY_VERSION/toxiproxy-server"
