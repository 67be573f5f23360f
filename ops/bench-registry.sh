#!/usr/bin/env bash
# Registration and lookup latency of `chainflow registry`: one instance registering
# sequentially, then three instances on one topic registering concurrently (ids settled
# by claims in the topic), then lookups by id. Each run uses a fresh `_schemas_bench_*`
# topic and state directories, so it never touches the stack's registry.
# Usage: ops/bench-registry.sh [PROFILE]   (default: release; `debug` uses target/debug)
set -euo pipefail
# shellcheck source=ops/lib/bench-setup.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench-setup.sh" "${1:-release}"
run="$(date +%s)"
topic="_schemas_bench_$run"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
urls=()
for i in 1 2 3; do
  port=$((18180 + i))
  CHAINFLOW_REGISTRY__LISTEN="127.0.0.1:$port" CHAINFLOW_REGISTRY__TOPIC="$topic" \
    CHAINFLOW_REGISTRY__STATE_DIR="$work/$i" "$bin" registry >"$work/$i.log" 2>&1 &
  pids+=("$!")
  urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do
  for _ in $(seq 1 300); do curl -sf "$u/readyz" >/dev/null && break; sleep 0.2; done
  curl -sf "$u/readyz" >/dev/null || { echo "[bench-registry] $u not ready; logs in $work" >&2; cat "$work"/*.log >&2; exit 1; }
done
echo "[bench-registry] $bin, topic $topic, broker at ${CHAINFLOW_KAFKA__BROKERS:-127.0.0.1:9092}"
python3 - "$run" "${urls[@]}" <<'PY'
import json, statistics, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

run, urls = sys.argv[1], sys.argv[2:]
CT = "application/vnd.schemaregistry.v1+json"

def call(url, body=None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": CT})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.load(r)
    return (time.perf_counter() - t) * 1000, out

def register(base, name):
    schema = {"type": "record", "name": name, "fields": [{"name": "x", "type": "long"}]}
    return call(f"{base}/subjects/bench-{run}-{name}-value/versions", {"schema": json.dumps(schema)})

def show(what, ms, wall=None):
    ms = sorted(ms)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    extra = f", {len(ms)} in {wall:.2f} s" if wall else ""
    print(f"{what}: median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, max {ms[-1]:.1f} ms{extra}")

seq = [register(urls[0], f"S{i}")[0] for i in range(50)]
show("one instance, 50 sequential registrations", seq)

t = time.perf_counter()
with ThreadPoolExecutor(12) as pool:
    res = list(pool.map(lambda i: register(urls[i % 3], f"C{i}"), range(60)))
wall = time.perf_counter() - t
ids = [r[1]["id"] for r in res]
assert len(set(ids)) == 60, f"distinct schemas must get distinct ids: {ids}"
show("three instances, 12 concurrent clients, 60 registrations", [r[0] for r in res], wall)

reads = [call(f"{urls[i % 3]}/schemas/ids/{ids[i % 60]}")[0] for i in range(300)]
show("lookups by id (GET /schemas/ids/N), 300 over three instances", reads)

lost = 0.0
for u in urls:
    for line in urllib.request.urlopen(f"{u}/metrics", timeout=10).read().decode().splitlines():
        if line.startswith("chainflow_registry_claims_lost_total"):
            lost += float(line.split()[-1])
print(f"claims lost to another instance (retried): {lost:.0f}")
PY
