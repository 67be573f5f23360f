"""Clients of the live view for ops/bench-live.sh; prints one JSON object.

  page     reads the latencies the page measured (window.chainflowState.latency.recent_ms)
           from a headless Chromium through its DevTools protocol, after --seconds
  clients  opens --clients WebSocket clients, each subscribed to one chain (round robin
           over the live chains), its product's metrics and underlying, for --seconds:
           how many stayed connected, the messages and bytes they got, and the latency from
           the feed's production stamp to their receipt (this machine's clock)

Loopback only: the URLs are the gateway's and Chromium's on 127.0.0.1.
"""

import argparse
import asyncio
import json
import re
import time
import urllib.request

import websockets

PRODUCED = re.compile(rb'"produced_us":(\d+)')


def percentiles(values):
    if not values:
        return {"samples": 0}
    s = sorted(values)
    at = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 1)
    return {"samples": len(s), "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(s[-1], 1)}


async def page(devtools, seconds):
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{devtools}/json/list", timeout=10))
    url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    await asyncio.sleep(seconds)
    async with websockets.connect(url, max_size=None) as cdp:
        expression = "JSON.stringify({latency: window.chainflowState.latency, updates: window.chainflowState.updates, channel: window.chainflowState.channel})"
        await cdp.send(json.dumps({"id": 1, "method": "Runtime.evaluate", "params": {"expression": expression, "returnByValue": True}}))
        while True:
            reply = json.loads(await cdp.recv())
            if reply.get("id") == 1:
                break
    state = json.loads(reply["result"]["result"]["value"])
    out = percentiles(state["latency"]["recent_ms"])
    out.update(updates=state["updates"], channel=state["channel"])
    return out


async def client(url, channels, until, stats, latencies):
    try:
        async with websockets.connect(url, max_size=None, open_timeout=30) as ws:
            await ws.send(json.dumps({"subscribe": channels}))
            while time.time() < until:
                try:
                    text = await asyncio.wait_for(ws.recv(decode=False), timeout=max(0.1, until - time.time()))
                except asyncio.TimeoutError:
                    break
                now_us = time.time() * 1e6
                stats["messages"] += 1
                stats["bytes"] += len(text)
                m = PRODUCED.search(text, 0, 300)
                if m and b'"kind":"update"' in text[:200]:
                    latencies.append((now_us - int(m.group(1))) / 1000)
            stats["connected_at_end"] += 1
    except Exception as e:  # noqa: BLE001 - counted and reported
        stats["errors"] += 1
        stats["last_error"] = repr(e)


async def clients(url, n, seconds):
    with urllib.request.urlopen(url.replace("ws://", "http://").replace("/ws", "/api/channels"), timeout=10) as r:
        chains = [c["channel"] for c in json.load(r)["channels"] if c["channel"].startswith("chain:")]
    stats = {"clients": n, "connected_at_end": 0, "messages": 0, "bytes": 0, "errors": 0}
    latencies = []
    until = time.time() + seconds
    tasks = []
    for i in range(n):
        chain = chains[i % len(chains)]
        product = chain.split(":")[1]
        tasks.append(client(url, [chain, f"metrics:{product}", f"underlying:{product}"], until, stats, latencies))
    await asyncio.gather(*tasks)
    stats["messages_per_s"] = round(stats["messages"] / seconds)
    stats["mb_per_s"] = round(stats["bytes"] / seconds / 1e6, 1)
    stats["latency"] = percentiles(latencies)
    return stats


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["page", "clients"])
    p.add_argument("--url", default="ws://127.0.0.1:8090/ws")
    p.add_argument("--devtools", type=int)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=30)
    a = p.parse_args()
    result = asyncio.run(page(a.devtools, a.seconds) if a.mode == "page" else clients(a.url, a.clients, a.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
