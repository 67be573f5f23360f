//! The candles and chain-metric views, and every query of docs/cookbook.md, checked on the
//! local stack: candles of hand-made ticks sent out of order, repeated and replayed match
//! hand-computed OHLC and volume; after a pipeline run, each cookbook query returns what
//! the records read back from Kafka say it must, on the local ClickHouse (18.16) and, with
//! the same rows, on a current engine (chdb, tests/current_engine.py).
//! Needs the local stack (ops/stack.sh up) and the Python tools of ops/install.sh.

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_codec::{registry_settings, Codec};
use chainflow_config::default_products;
use chainflow_contract::topics::{ENRICHED_CHAIN, UNDERLYING};
use chainflow_contract::{EnrichedOptionChain, Record, UnderlyingTick};
use chainflow_kafka::range::{resolve, tool_consumer};
use chainflow_kafka::{Bound, RangeReader};
use common::{chainflow, consumer, ends, stack, Database, Isolated, Names, Producer};
use rdkafka::Message;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// 2025-01-23 03:45:00 UTC (09:15 in Mumbai), in seconds.
const DAY_START: i64 = 1_737_603_900;

type Row = Map<String, Value>;

/// A candle as computed by hand: seconds after [`DAY_START`], open, high, low, close,
/// volume, day volume, ticks.
type HandCandle = (i64, f64, f64, f64, f64, i64, i64, usize);

/// Whether two answers agree: the same rows, columns and values (numbers within 1e-9,
/// relative: the engines print doubles each their own way).
fn same(a: &[Row], b: &[Row]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} rows against {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let (mut kx, mut ky) = (x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
        kx.sort();
        ky.sort();
        if kx != ky {
            return Err(format!("row {i}: columns {x:?} against {y:?}"));
        }
        for (k, v) in x {
            let w = &y[k];
            let equal = match (v.as_f64(), w.as_f64()) {
                (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
                _ => v == w,
            };
            if !equal {
                return Err(format!("row {i}, {k}: {v} against {w}\n{x:?}\n{y:?}"));
            }
        }
    }
    Ok(())
}

/// `secs` as ClickHouse prints a UTC DateTime.
fn datetime(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("a time")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `days` since 1970-01-01 as ClickHouse prints a Date.
fn date(days: i32) -> String {
    (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(days as u64)).to_string()
}

/// One candle, computed from ticks.
#[derive(Debug, Default, Clone)]
struct Candle {
    open: (i64, i64, f64),
    close: (i64, i64, f64),
    high: f64,
    low: f64,
    day_volume: i64,
    ticks: std::collections::BTreeSet<(i64, i64)>,
}

/// The candles of `ticks` at `minutes`, as rows of `SELECT bucket, open, high, low, close,
/// volume, day_volume, ticks`, by bucket (a tick repeated counts once).
fn candles(ticks: &[UnderlyingTick], minutes: i64) -> Vec<Row> {
    let mut by_bucket: BTreeMap<i64, Candle> = BTreeMap::new();
    for t in ticks {
        let secs = t.event_time.div_euclid(1_000_000);
        let c = by_bucket
            .entry(secs - secs.rem_euclid(minutes * 60))
            .or_insert_with(|| Candle {
                open: (i64::MAX, i64::MAX, 0.0),
                close: (i64::MIN, i64::MIN, 0.0),
                high: f64::MIN,
                low: f64::MAX,
                ..Candle::default()
            });
        let at = (t.event_time, t.seq, t.price);
        if (at.0, at.1) < (c.open.0, c.open.1) {
            c.open = at;
        }
        if (at.0, at.1) > (c.close.0, c.close.1) {
            c.close = at;
        }
        c.high = c.high.max(t.price);
        c.low = c.low.min(t.price);
        c.day_volume = c.day_volume.max(t.volume);
        c.ticks.insert((t.event_time, t.seq));
    }
    let mut previous: Option<(i64, i64)> = None; // (day, day_volume)
    by_bucket
        .into_iter()
        .map(|(bucket, c)| {
            let day = bucket.div_euclid(86_400);
            let before = previous.filter(|(d, _)| *d == day).map_or(0, |(_, v)| v);
            previous = Some((day, c.day_volume));
            let row = json!({
                "bucket": datetime(bucket), "open": c.open.2, "high": c.high, "low": c.low, "close": c.close.2,
                "volume": c.day_volume - before, "day_volume": c.day_volume, "ticks": c.ticks.len(),
            });
            row.as_object().unwrap().clone()
        })
        .collect()
}

/// `rows` with only `columns`.
fn only(rows: &[Row], columns: &[&str]) -> Vec<Row> {
    rows.iter()
        .map(|r| columns.iter().map(|c| ((*c).to_string(), r[*c].clone())).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn candles_of_out_of_order_repeated_and_replayed_ticks_are_as_computed_by_hand() {
    let cfg = stack();
    let names = Names::new("candles");
    let db = Database::create(&names);
    let product = names.product("CDL");
    let tick = |seq: i64, after: i64, price: f64, volume: i64| UnderlyingTick {
        product: product.clone(),
        price,
        volume,
        event_time: (DAY_START + after) * 1_000_000,
        seq,
    };
    let day = [
        tick(1, 0, 100.0, 10),
        tick(2, 20, 104.0, 25),
        tick(3, 50, 98.0, 30),
        tick(4, 70, 101.0, 42),
        tick(5, 130, 103.0, 60),
        tick(6, 310, 107.0, 75),
        tick(7, 1000, 95.0, 90),
        tick(8, 86_400, 200.0, 5), // the next day: its volume starts again
    ];
    // sent out of order, one of them twice
    let producer = Producer::new(&cfg);
    let mut at = Vec::new();
    for i in [2, 0, 4, 1, 6, 3, 7, 5, 1] {
        let t = &day[i];
        let bytes = producer.encode(t).await;
        at.push(producer.send_raw(UNDERLYING, &t.key(), &bytes).await);
    }
    let p = at[0].0;
    let from = format!("{p}:{}", at.iter().map(|a| a.1).min().unwrap());
    let to = format!("{p}:{}", at.iter().map(|a| a.1).max().unwrap() + 1);
    let query = format!(
        "SELECT interval_minutes, bucket, open, high, low, close, volume, day_volume, ticks FROM candles \
         WHERE product = '{product}' ORDER BY interval_minutes, bucket"
    );
    let hand = |m: i64, rows: &[HandCandle]| -> Vec<Row> {
        rows.iter()
            .map(|&(after, open, high, low, close, volume, day_volume, ticks)| {
                json!({"interval_minutes": m, "bucket": datetime(DAY_START + after), "open": open, "high": high,
                       "low": low, "close": close, "volume": volume, "day_volume": day_volume, "ticks": ticks})
                .as_object()
                .unwrap()
                .clone()
            })
            .collect()
    };
    let mut expected = hand(
        1,
        &[
            (0, 100.0, 104.0, 98.0, 98.0, 30, 30, 3),
            (60, 101.0, 101.0, 101.0, 101.0, 12, 42, 1),
            (120, 103.0, 103.0, 103.0, 103.0, 18, 60, 1),
            (300, 107.0, 107.0, 107.0, 107.0, 15, 75, 1),
            (960, 95.0, 95.0, 95.0, 95.0, 15, 90, 1),
            (86_400, 200.0, 200.0, 200.0, 200.0, 5, 5, 1),
        ],
    );
    expected.extend(hand(
        5,
        &[
            (0, 100.0, 104.0, 98.0, 103.0, 60, 60, 5),
            (300, 107.0, 107.0, 107.0, 107.0, 15, 75, 1),
            (900, 95.0, 95.0, 95.0, 95.0, 15, 90, 1),
            (86_400, 200.0, 200.0, 200.0, 200.0, 5, 5, 1),
        ],
    ));
    expected.extend(hand(
        15,
        &[
            (0, 100.0, 107.0, 98.0, 107.0, 75, 75, 6),
            (900, 95.0, 95.0, 95.0, 95.0, 15, 90, 1),
            (86_400, 200.0, 200.0, 200.0, 200.0, 5, 5, 1),
        ],
    ));
    // the same from the ticks, by the test's own computation
    let mut computed = Vec::new();
    for m in [1, 5, 15] {
        for mut r in candles(&day, m) {
            r.insert("interval_minutes".into(), json!(m));
            computed.push(r);
        }
    }
    let columns = [
        "interval_minutes",
        "bucket",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "day_volume",
        "ticks",
    ];
    same(&only(&computed, &columns), &expected).expect("the hand-computed candles are the computed ones");

    // stored through the sink's code (a replay), then replayed again: the same candles
    for round in ["stored", "replayed"] {
        let out = chainflow(&["replay", UNDERLYING, "--from", &from, "--to", &to])
            .env("CHAINFLOW_CLICKHOUSE__DATABASE", &db.name)
            .output();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got = db.rows(&query).await;
        same(&only(&got, &columns), &expected).unwrap_or_else(|e| panic!("{round}: {e}"));
    }
}

/// The cookbook's queries, by name (`<!-- query: NAME -->` before each `sql` block).
fn cookbook() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/cookbook.md")).expect("docs/cookbook.md");
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("<!-- query: ").and_then(|l| l.strip_suffix(" -->")) else {
            continue;
        };
        assert_eq!(lines.next(), Some("```sql"), "{name}: a sql block follows its marker");
        let sql: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.insert(name.to_string(), sql.join("\n"));
    }
    out
}

/// Reads `topic` from `from` to its end and decodes the records of `product` as `R`.
async fn read_back<R: Record>(topic: &str, from: &[i64], product: &str, of: impl Fn(&R) -> &str) -> Vec<R> {
    let cfg = stack();
    let codec = Codec::new(registry_settings(&cfg.registry).unwrap());
    let reader = tool_consumer(&cfg.kafka, chainflow_kafka::Isolation::ReadCommitted).unwrap();
    let offsets = from.iter().enumerate().map(|(p, o)| (p as i32, *o)).collect();
    let spans = resolve(&reader, topic, &[], &Bound::Offsets(offsets), &Bound::Latest)
        .await
        .unwrap();
    let mut reader = RangeReader::open(reader, topic, &spans, false).unwrap();
    let mut out = Vec::new();
    while let Some(m) = reader.next().await.unwrap() {
        if let Ok(r) = codec.decode::<R>(m.payload().unwrap_or_default()).await {
            if of(&r) == product {
                out.push(r);
            }
        }
    }
    out
}

/// An optional number as JSON.
fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |x| json!(x))
}

/// The answers the cookbook's queries must give, from the chains and ticks read back.
fn answers(
    chains: &[EnrichedOptionChain],
    ticks: &[UnderlyingTick],
    expiry: i32,
    moment: i64,
) -> BTreeMap<&'static str, Vec<Row>> {
    // what FINAL keeps: per chain, the newest processing
    let mut latest: BTreeMap<(i32, i64), &EnrichedOptionChain> = BTreeMap::new();
    for c in chains {
        let e = latest.entry((c.expiry, c.event_time)).or_insert(c);
        if c.processed_at > e.processed_at {
            *e = c;
        }
    }
    let secs = |c: &EnrichedOptionChain| c.event_time.div_euclid(1_000_000);
    let row = |v: Value| v.as_object().unwrap().clone();
    let day = DAY_START.div_euclid(86_400);
    let of_expiry: Vec<&EnrichedOptionChain> = latest.values().copied().filter(|c| c.expiry == expiry).collect();
    let last_before = |limit: i64| *of_expiry.iter().rfind(|c| secs(c) <= limit).expect("a chain before");
    let per_minute = |f: &dyn Fn(&EnrichedOptionChain) -> Value| -> Vec<Row> {
        let mut minutes: BTreeMap<i64, &EnrichedOptionChain> = BTreeMap::new();
        for c in &of_expiry {
            minutes.insert(secs(c) - secs(c).rem_euclid(60), c); // in time order: the last stays
        }
        minutes
            .into_iter()
            .map(|(m, c)| {
                let mut r = row(f(c));
                r.insert("minute".into(), json!(datetime(m)));
                r
            })
            .collect()
    };
    let mut out = BTreeMap::new();
    let mut last_by_expiry: BTreeMap<i32, &EnrichedOptionChain> = BTreeMap::new();
    for c in latest.values().copied() {
        last_by_expiry.insert(c.expiry, c);
    }
    out.insert(
        "latest_chain",
        last_by_expiry
            .values()
            .map(|c| {
                row(
                    json!({"product": c.product, "expiry": date(c.expiry), "event_time": datetime(secs(c)),
                    "spot": c.spot, "atm_strike": c.atm_strike, "atm_iv": opt(c.atm_iv), "pcr_oi": opt(c.pcr_oi),
                    "max_pain_strike": opt(c.max_pain_strike), "iv_skew_25d": opt(c.iv_skew_25d)}),
                )
            })
            .collect(),
    );
    out.insert(
        "pcr_max_pain_day",
        per_minute(&|c| {
            json!({"spot": c.spot, "pcr_oi": opt(c.pcr_oi), "pcr_volume": opt(c.pcr_volume),
                "max_pain_strike": opt(c.max_pain_strike)})
        }),
    );
    out.insert(
        "skew_history",
        per_minute(&|c| json!({"atm_iv": opt(c.atm_iv), "iv_skew_25d": opt(c.iv_skew_25d)})),
    );
    let at = last_before(moment);
    out.insert(
        "iv_smile",
        at.strikes
            .iter()
            .flat_map(|s| {
                [("CALL", &s.call), ("PUT", &s.put)].map(|(side, o)| {
                    row(
                        json!({"strike": s.strike, "option_type": side, "price": opt(o.price), "iv": opt(o.iv),
                        "delta": opt(o.delta)}),
                    )
                })
            })
            .collect(),
    );
    let mut term: BTreeMap<i32, &EnrichedOptionChain> = BTreeMap::new();
    for c in latest
        .values()
        .copied()
        .filter(|c| secs(c).div_euclid(86_400) == day && secs(c) <= moment)
    {
        term.insert(c.expiry, c);
    }
    out.insert(
        "atm_iv_term_structure",
        term.values()
            .map(|c| {
                row(json!({"expiry": date(c.expiry), "event_time": datetime(secs(c)),
                    "time_to_expiry": c.time_to_expiry, "atm_iv": opt(c.atm_iv)}))
            })
            .collect(),
    );
    let end_of_day = last_before((day + 1) * 86_400 - 1);
    out.insert(
        "oi_buildup_by_strike",
        end_of_day
            .strikes
            .iter()
            .map(|s| {
                row(
                    json!({"strike": s.strike, "call_oi": s.call.oi, "call_oi_change": s.call.oi_change,
                    "put_oi": s.put.oi, "put_oi_change": s.put.oi_change}),
                )
            })
            .collect(),
    );
    let five = candles(ticks, 5);
    out.insert("candles", five.clone());
    out.insert(
        "candles_direct",
        only(
            &five,
            &["bucket", "open", "high", "low", "close", "day_volume", "ticks"],
        ),
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_cookbook_query_answers_what_the_records_say_on_both_engines() {
    let cfg = stack();
    let mut params = default_products().remove("NIFTY").unwrap();
    (params.strikes, params.expiries) = (11, 1);
    let run = Isolated::new("cookbook", "CBK", &params).await;
    let (db, product) = (&run.db, &run.product);
    let reader = consumer(&cfg, "cookbook-test");
    let partitions = cfg.kafka.partitions;
    let (ticks_from, chains_from) = (
        ends(&reader, UNDERLYING, partitions).await,
        ends(&reader, ENRICHED_CHAIN, partitions).await,
    );
    // seven and a half minutes of market: two expiries, a chain of each every second
    let out = run
        .chainflow(&[
            "run",
            "--chains",
            "900",
            "--start",
            "2025-01-23T03:45:00Z",
            "--seed",
            "11",
        ])
        .output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let chains: Vec<EnrichedOptionChain> =
        read_back(ENRICHED_CHAIN, &chains_from, product, |c: &EnrichedOptionChain| {
            &c.product
        })
        .await;
    let ticks: Vec<UnderlyingTick> = read_back(UNDERLYING, &ticks_from, product, |t: &UnderlyingTick| &t.product).await;
    let distinct: std::collections::BTreeSet<(i32, i64)> = chains.iter().map(|c| (c.expiry, c.event_time)).collect();
    assert_eq!(distinct.len(), 900, "every chain read back");
    assert!(ticks.len() > 300, "{} ticks", ticks.len());
    let expiry = chains.iter().map(|c| c.expiry).min().unwrap();
    let moment = DAY_START + 200;
    let expected = answers(&chains, &ticks, expiry, moment);

    // the cookbook, for this run's product, expiry and moment
    let queries: BTreeMap<String, String> = cookbook()
        .into_iter()
        .map(|(name, sql)| {
            let sql = sql
                .replace("'NIFTY'", &format!("'{product}'"))
                .replace("'2025-01-30'", &format!("'{}'", date(expiry)))
                .replace("'2025-01-23 05:00:00'", &format!("'{}'", datetime(moment)))
                .replace(
                    "'2025-01-23'",
                    &format!("'{}'", date(DAY_START.div_euclid(86_400) as i32)),
                );
            (name, sql)
        })
        .collect();
    assert_eq!(
        queries.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "every query of the cookbook has its check"
    );
    let mut answered = BTreeMap::new();
    for (name, sql) in &queries {
        let got = db.rows(sql).await;
        assert!(!got.is_empty(), "{name}: no rows");
        same(&got, &expected[name.as_str()]).unwrap_or_else(|e| panic!("{name} on ClickHouse 18.16: {e}\n{sql}"));
        answered.insert(name.clone(), got);
    }

    // the same rows in a current engine: the same answers
    let current = db
        .on_current_engine(&["chain_snapshots", "chain_options", "underlying_ticks"], &queries)
        .await;
    for (name, got) in &answered {
        same(&current[name], got).unwrap_or_else(|e| panic!("{name} on chdb against 18.16: {e}"));
    }
}
