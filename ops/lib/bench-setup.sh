# Sourced by the ops/bench*.sh scripts, with the build profile as its argument (`release`
# or `debug`): from the repository's root, builds chainflow, starts the local stack if it is
# not running and takes its addresses, and quiets the logs. Sets ROOT and bin.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ "$1" = release ]; then
  cargo build --release --quiet --bin chainflow
else
  cargo build --quiet --bin chainflow
fi
bin="$ROOT/target/$1/chainflow"
ops/stack.sh up >/dev/null
eval "$(ops/stack.sh env)"
export RUST_LOG="${RUST_LOG:-warn}"
