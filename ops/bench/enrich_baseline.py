#!/usr/bin/env python3
"""The Python baseline of chainflow's enrich stage (ops/bench.sh, docs/benchmarks.md).

A plain consumer that does the enrich stage's work per raw chain, the way a Python team
would write it: confluent-kafka reads market.option_chain from the beginning, fastavro
decodes the Confluent-framed Avro (writer schemas fetched from the registry by id),
vollib (Let's Be Rational, analytical Black-Scholes-Merton) solves every option's implied
volatility and its Greeks, the chain metrics are computed (put-call ratios, ATM strike,
straddle and IV, max pain, OI and OTM build-up, 25-delta skew), and the enriched chain is
encoded with fastavro under enriched.option_chain's registered schema and produced to
OUT_TOPIC, offsets committed as it goes.

Usage: enrich_baseline.py BROKER REGISTRY_URL GROUP CHAINS OUT_TOPIC
Prints one line: chains, seconds, chains/s, CPU seconds of this process.
"""
import datetime as dt
import io
import json
import math
import struct
import sys
import time
import urllib.request
from zoneinfo import ZoneInfo

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition
from vollib.black_scholes_merton.greeks import analytical as greeks
from vollib.black_scholes_merton.implied_volatility import implied_volatility

RATE, DIVIDEND_YIELD = 0.065, 0.0  # chainflow's default product terms
CLOSE = dt.time(15, 30)
ZONE = ZoneInfo("Asia/Kolkata")
YEAR_SECONDS = 365.0 * 86400.0


def registry_get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


class Schemas:
    """Writer schemas by id, from the registry, parsed once."""

    def __init__(self, registry):
        self.registry, self.by_id = registry.rstrip("/"), {}

    def reader(self, schema_id):
        if schema_id not in self.by_id:
            text = registry_get(f"{self.registry}/schemas/ids/{schema_id}")["schema"]
            self.by_id[schema_id] = fastavro.parse_schema(json.loads(text))
        return self.by_id[schema_id]


def option_analytics(flag, quote, spot, strike, t):
    bid, ask, last = quote["bid"], quote["ask"], quote["last"]
    if bid > 0 and ask > 0:
        price, source = (bid + ask) / 2, "MID"
    elif last > 0:
        price, source = last, "LAST"
    else:
        price, source = None, "NONE"
    out = {k: quote[k] for k in ("bid", "ask", "last", "volume", "oi", "oi_change")}
    out.update(feed_iv=quote["iv"], price=price, price_source=source)
    sigma = None
    if price is not None and t > 0:
        try:
            sigma = implied_volatility(price, spot, strike, t, RATE, DIVIDEND_YIELD, flag)
        except Exception:  # below intrinsic, above the bound: no IV, as chainflow's None
            sigma = None
        if sigma is not None and not (0 < sigma < 5):
            sigma = None
    out["iv"] = sigma
    for name in ("delta", "gamma", "theta", "vega", "rho"):
        out[name] = getattr(greeks, name)(flag, spot, strike, t, RATE, sigma, DIVIDEND_YIELD) if sigma else None
    return out


def enrich(chain, partition, offset):
    spot = chain["spot"]
    expiry = chain["expiry"]
    close = dt.datetime.combine(expiry, CLOSE, ZONE)
    t = (close - chain["event_time"]).total_seconds() / YEAR_SECONDS
    strikes = []
    for s in chain["strikes"]:
        k = s["strike"]
        strikes.append({"strike": k, "call": option_analytics("c", s["call"], spot, k, t),
                        "put": option_analytics("p", s["put"], spot, k, t)})
    forward = spot * math.exp((RATE - DIVIDEND_YIELD) * max(t, 0))
    atm = min(strikes, key=lambda s: abs(s["strike"] - forward))
    call_oi = sum(s["call"]["oi"] for s in strikes)
    put_oi = sum(s["put"]["oi"] for s in strikes)
    call_vol = sum(s["call"]["volume"] for s in strikes)
    put_vol = sum(s["put"]["volume"] for s in strikes)
    pain = min(strikes, key=lambda c: sum(
        s["call"]["oi"] * max(c["strike"] - s["strike"], 0) + s["put"]["oi"] * max(s["strike"] - c["strike"], 0)
        for s in strikes))
    otm_calls = [s["call"] for s in strikes if s["strike"] > atm["strike"]]
    otm_puts = [s["put"] for s in strikes if s["strike"] < atm["strike"]]
    ivs = [o["iv"] for o in (atm["call"], atm["put"]) if o["iv"] is not None]
    c25 = [s["call"] for s in strikes if s["call"]["delta"] is not None]
    p25 = [s["put"] for s in strikes if s["put"]["delta"] is not None]
    skew = None
    if c25 and p25:
        skew = (min(p25, key=lambda o: abs(o["delta"] + 0.25))["iv"] - min(c25, key=lambda o: abs(o["delta"] - 0.25))["iv"])
    straddle = None
    if atm["call"]["price"] is not None and atm["put"]["price"] is not None:
        straddle = atm["call"]["price"] + atm["put"]["price"]
    return {
        **{k: chain[k] for k in ("product", "expiry", "lot_size", "spot", "event_time", "seq")},
        "strikes": strikes,
        "pcr_oi": put_oi / call_oi if call_oi else None,
        "pcr_volume": put_vol / call_vol if call_vol else None,
        "atm_strike": atm["strike"], "atm_straddle_price": straddle, "max_pain_strike": pain["strike"],
        "total_call_oi": call_oi, "total_put_oi": put_oi,
        "call_oi_otm": sum(o["oi"] for o in otm_calls), "put_oi_otm": sum(o["oi"] for o in otm_puts),
        "call_buildup_otm": sum(max(o["oi_change"], 0) for o in otm_calls),
        "put_buildup_otm": sum(max(o["oi_change"], 0) for o in otm_puts),
        "atm_iv": sum(ivs) / len(ivs) if ivs else None, "iv_skew_25d": skew,
        "rate": RATE, "dividend_yield": DIVIDEND_YIELD, "time_to_expiry": t,
        "analytics_version": "python-baseline", "source_topic": "market.option_chain",
        "source_partition": partition, "source_offset": offset,
        "processed_at": dt.datetime.now(dt.timezone.utc),
    }


def main():
    broker, registry, group, chains, out_topic = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    schemas = Schemas(registry)
    latest = registry_get(f"{registry.rstrip('/')}/subjects/enriched.option_chain-value/versions/latest")
    out_schema = fastavro.parse_schema(json.loads(latest["schema"]))
    out_frame = b"\0" + struct.pack(">I", latest["id"])
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "compression.type": "lz4"})
    consumer.subscribe(["market.option_chain"])
    done, started, cpu0, positions = 0, None, time.process_time(), {}
    while done < chains:
        for msg in consumer.consume(500, 1.0):
            if msg.error():
                continue
            started = started or time.time()
            payload = msg.value()
            chain = fastavro.schemaless_reader(io.BytesIO(payload[5:]), schemas.reader(struct.unpack(">I", payload[1:5])[0]), None)
            out = io.BytesIO()
            out.write(out_frame)
            fastavro.schemaless_writer(out, out_schema, enrich(chain, msg.partition(), msg.offset()))
            producer.produce(out_topic, out.getvalue(), key=msg.key(),
                             headers=[("chainflow.id", f"{chain['product']}|{chain['expiry']}|{msg.offset()}")])
            producer.poll(0)
            done += 1
            positions[msg.partition()] = msg.offset() + 1
            if done % 200 == 0:
                consumer.commit(offsets=[TopicPartition(msg.topic(), p, o) for p, o in positions.items()], asynchronous=True)
            if done >= chains:
                break
    producer.flush(30)
    seconds = time.time() - started
    consumer.commit(offsets=[TopicPartition("market.option_chain", p, o) for p, o in positions.items()], asynchronous=False)
    print(f"{done} chains in {seconds:.2f} s: {done / seconds:.1f} chains/s; {time.process_time() - cpu0:.1f} s CPU")
    consumer.close()


if __name__ == "__main__":
    main()
