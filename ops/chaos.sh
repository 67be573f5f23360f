#!/usr/bin/env bash
# The fault-injection suite (docs/guarantees.md, "Under faults"): real faults in real
# processes on a private stack of its own (Kafka: three KRaft nodes, each in a network
# namespace of its own, at 10.213.0.11-13 on 29092, 29094, 29096; ClickHouse 28123, and
# toxiproxy in front of it on 28124; registry 28081; its own directory), then the natural
# keys stored against those produced. Prints one table; exits non-zero if any scenario
# fails. Runs as root (network namespaces).
# Usage: ops/chaos.sh            the short form (six scenarios; the test suite runs it)
#        ops/chaos.sh --full     every scenario at 100,000+ options (about 30 minutes)
#        ops/chaos.sh --scenario NAME [--options N] [--markdown FILE] ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ "$(id -u)" -eq 0 ] || { echo "ops/chaos.sh: runs as root: its Kafka nodes run in network namespaces it makes" >&2; exit 2; }
ops/install.sh >/dev/null
# shellcheck source=ops/lib/toxiproxy.sh
. "$ROOT/ops/lib/toxiproxy.sh"
cargo build --quiet --bins -p chainflow -p chainflow-chaos
exec target/debug/chainflow-chaos --root "$ROOT" --toxiproxy "$TOXIPROXY_BIN" "$@"
