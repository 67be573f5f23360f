//! `chainflow feed` and `chainflow feed play` against the real broker and registry: a real
//! consumer reads every market topic back and finds exactly the simulated events, under
//! their keys, on the partitions Java clients would choose, in the registered schemas.
//! Needs the local stack (ops/stack.sh up).

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_codec::{registry_settings, schema_id, Codec};
use chainflow_config::{default_products, ProductSpec};
use chainflow_contract::topics::{OPTION_CHAIN, OPTION_QUOTE, UNDERLYING};
use chainflow_contract::{OptionChain, OptionQuote, UnderlyingTick};
use chainflow_feed::recording::{csv_rows, Forms, CSV_HEADER};
use chainflow_feed::sim::{MarketEvent, Pricing, Scenario, SimOptions, Simulator};
use common::{chainflow, consumer, product_config, stack, Names};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPICS: [&str; 3] = [UNDERLYING, OPTION_QUOTE, OPTION_CHAIN];
const START: &str = "2025-01-27T03:45:00Z";
const SEED: u64 = 11;
const CHAINS: usize = 60;

/// Kafka's murmur2 (the Java client's default partitioner), as an independent reference.
fn murmur2(data: &[u8]) -> u32 {
    let (m, r) = (0x5bd1_e995u32, 24);
    let mut h = 0x9747_b28cu32 ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m) ^ k;
    }
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^ (h >> 15)
}

fn java_partition(key: &str, partitions: i32) -> i32 {
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions as u32) as i32
}

/// A configuration file with one product of this test's own, and its name.
fn own_product(names: &Names) -> (PathBuf, String, ProductSpec) {
    let name = names.product("FEED");
    let mut params = default_products().remove("NIFTY").unwrap();
    params.strikes = 11;
    let path = product_config(&name, &params);
    (path, name.clone(), ProductSpec::new(&name, params).unwrap())
}

/// `chainflow ARGS` with the configuration file `config`.
fn run(config: &Path, args: &[&str]) -> Output {
    chainflow(args).config(config).output()
}

/// High watermarks of every partition of the market topics.
async fn ends(consumer: &Arc<BaseConsumer>) -> BTreeMap<(String, i32), i64> {
    let partitions = stack().kafka.partitions;
    let mut out = BTreeMap::new();
    for topic in TOPICS {
        for (p, high) in common::ends(consumer, topic, partitions).await.into_iter().enumerate() {
            out.insert((topic.to_string(), p as i32), high);
        }
    }
    out
}

/// One message as read back: topic, partition, key, payload.
type Read = (String, i32, String, Vec<u8>);

/// Every message between `from` and `to` whose key starts with `prefix`.
fn read_back(
    consumer: &BaseConsumer,
    from: &BTreeMap<(String, i32), i64>,
    to: &BTreeMap<(String, i32), i64>,
    prefix: &str,
) -> Vec<Read> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, p), offset) in from {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset)).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut remaining: usize = to.iter().map(|(k, end)| (end - from[k]) as usize).sum();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while remaining > 0 {
        assert!(Instant::now() < deadline, "{remaining} messages not read back");
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        if m.offset() >= to[&(m.topic().to_string(), m.partition())] {
            continue;
        }
        remaining -= 1;
        let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).expect("UTF-8 keys");
        if key.starts_with(prefix) {
            out.push((
                m.topic().to_string(),
                m.partition(),
                key,
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// The events of the run, as the simulator gives them for the same seed, start and product.
fn expected(spec: &ProductSpec) -> Vec<MarketEvent> {
    let start_us = chrono::DateTime::parse_from_rfc3339(START).unwrap().timestamp_micros();
    let options = SimOptions {
        seed: SEED,
        start_us,
        scenario: Scenario::Normal,
        pricing: Pricing::Ticks,
    };
    let mut chains = 0;
    Simulator::new([spec.clone()], options)
        .take_while(|e| {
            let more = chains < CHAINS;
            chains += usize::from(matches!(e, MarketEvent::Chain(_)));
            more
        })
        .collect()
}

/// Decodes what was read, checking keys, partitions and schema ids on the way, and groups
/// the events by topic in partition order.
async fn decode(read: &[Read]) -> BTreeMap<String, Vec<MarketEvent>> {
    let cfg = stack();
    let codec = Codec::new(registry_settings(&cfg.registry).unwrap());
    // the id of the contract's schema (not the subject's latest: another producer may
    // have registered a newer, compatible version, as tests/contracts.rs does)
    let ids = BTreeMap::from([
        (
            UNDERLYING.to_string(),
            codec.register::<UnderlyingTick>().await.unwrap(),
        ),
        (OPTION_QUOTE.to_string(), codec.register::<OptionQuote>().await.unwrap()),
        (OPTION_CHAIN.to_string(), codec.register::<OptionChain>().await.unwrap()),
    ]);
    let mut out: BTreeMap<String, Vec<MarketEvent>> = BTreeMap::new();
    for (topic, partition, key, payload) in read {
        assert_eq!(*partition, java_partition(key, cfg.kafka.partitions), "{topic} {key}");
        assert_eq!(schema_id(payload).unwrap(), ids[topic], "{topic} {key}: schema id");
        let event = match topic.as_str() {
            UNDERLYING => MarketEvent::Tick(codec.decode::<UnderlyingTick>(payload).await.unwrap()),
            OPTION_QUOTE => MarketEvent::Quote(codec.decode::<OptionQuote>(payload).await.unwrap()),
            _ => MarketEvent::Chain(codec.decode::<OptionChain>(payload).await.unwrap()),
        };
        assert_eq!(&event.key(), key, "{topic}: the key is the contract's");
        out.entry(topic.clone()).or_default().push(event);
    }
    out
}

/// `events` by topic, each topic in key-then-time order (the order within a partition is
/// the order per key).
fn by_topic(events: impl IntoIterator<Item = MarketEvent>) -> BTreeMap<String, Vec<MarketEvent>> {
    let mut out: BTreeMap<String, Vec<MarketEvent>> = BTreeMap::new();
    for e in events {
        out.entry(e.topic().to_string()).or_default().push(e);
    }
    for v in out.values_mut() {
        v.sort_by_key(|e| (e.key(), e.event_time()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_produces_the_simulated_market_and_play_reproduces_a_recording() {
    let names = Names::new("feed");
    let (config_file, product, spec) = own_product(&names);
    let consumer = consumer(&stack(), &names.group("reader"));
    let before = ends(&consumer).await;
    let recording = std::env::temp_dir().join(format!("chainflow-{product}.ndjson"));
    let out = run(
        &config_file,
        &[
            "feed",
            "--chains",
            &CHAINS.to_string(),
            "--seed",
            &SEED.to_string(),
            "--start",
            START,
            "--record",
            recording.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let want = by_topic(expected(&spec));
    let after_feed = ends(&consumer).await;
    let fed = read_back(&consumer, &before, &after_feed, &product);
    let got = decode(&fed).await;
    // same events, same counts per topic, and the summary printed the same counts
    for topic in TOPICS {
        let mut got = got.get(topic).cloned().unwrap_or_default();
        got.sort_by_key(|e| (e.key(), e.event_time()));
        assert_eq!(got.len(), want[topic].len(), "{topic}: count");
        assert_eq!(got, want[topic], "{topic}: values");
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(topic) && l.contains(&format!(" {} ", got.len()))),
            "{topic}: {stdout}"
        );
    }
    assert_eq!(want[OPTION_CHAIN].len(), CHAINS);
    // the recording holds the same messages
    let lines = std::fs::read_to_string(&recording).unwrap();
    assert_eq!(lines.lines().count(), fed.len());

    // playing the recording (as fast as possible) sends the same messages again
    let out = run(
        &config_file,
        &["feed", "play", recording.to_str().unwrap(), "--speed", "0"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let played = read_back(&consumer, &after_feed, &ends(&consumer).await, &product);
    let key_value = |r: &Vec<Read>| {
        let mut v: Vec<(String, i32, String, Vec<u8>)> = r.clone();
        v.sort();
        v
    };
    // byte for byte: the JSON form round-trips every value exactly
    assert_eq!(
        key_value(&played),
        key_value(&fed),
        "played messages equal the recorded ones"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn play_reports_exactly_the_bad_lines() {
    let names = Names::new("play");
    let (config_file, product, spec) = own_product(&names);
    let events = expected(&spec);
    let forms = Forms::default();
    let good: Vec<String> = events.iter().take(6).map(|e| forms.line(&e.key(), e)).collect();
    let lines = [
        good[0].clone(),
        good[1].clone(),
        "{not json".to_string(),
        good[2].clone(),
        good[3].replace("\"product\":", "\"product_name\":"),
        r#"{"topic": "market.nope", "key": "x", "value": {}}"#.to_string(),
        good[4].clone(),
        good[5].clone(),
    ];
    let file = std::env::temp_dir().join(format!("chainflow-bad-{}.ndjson", names.tag()));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = run(&config_file, &["feed", "play", file.to_str().unwrap(), "--speed", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let reported: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("line ")).collect();
    assert_eq!(reported.len(), 3, "{stdout}");
    assert!(
        reported[0].contains("line 3:") && reported[0].contains("not valid JSON"),
        "{stdout}"
    );
    assert!(
        reported[1].contains("line 5:") && reported[1].contains("product"),
        "{stdout}"
    );
    assert!(
        reported[2].contains("line 6:") && reported[2].contains("unknown topic"),
        "{stdout}"
    );
    assert!(stdout.contains("3 bad lines skipped"), "{stdout}");
    let sent: u64 = ["market.underlying", "market.option_quote", "market.option_chain"]
        .iter()
        .map(|t| {
            stdout
                .lines()
                .find(|l| l.contains(t))
                .and_then(|l| l.split_whitespace().nth(1))
                .map_or(0, |n| n.parse::<u64>().unwrap())
        })
        .sum();
    assert_eq!(sent, 5, "the five good lines are sent: {stdout}");

    // --strict stops at the first one
    let out = run(
        &config_file,
        &["feed", "play", file.to_str().unwrap(), "--speed", "0", "--strict"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3:"));

    // the CSV layout: a bad row spoils only its own snapshot
    let chains: Vec<&OptionChain> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Chain(c) => Some(c),
            _ => None,
        })
        .take(3)
        .collect();
    let mut csv = format!("{CSV_HEADER}\n");
    for c in &chains {
        csv.push_str(&csv_rows(c));
    }
    let rows_per_chain = chains[0].strikes.len();
    let mut rows: Vec<String> = csv.lines().map(str::to_string).collect();
    // line numbers count the header: the second chain's third row
    let bad_line = 1 + rows_per_chain + 3;
    rows[bad_line - 1] = rows[bad_line - 1].replacen(',', ",20250130,", 1);
    let file = std::env::temp_dir().join(format!("chainflow-bad-{}.csv", names.tag()));
    std::fs::write(&file, rows.join("\n") + "\n").unwrap();
    let out = run(&config_file, &["feed", "play", file.to_str().unwrap(), "--speed", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("line {bad_line}:")) && stdout.contains("1 bad lines skipped"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("market.option_chain") && l.contains(" 2 chain snapshots")),
        "{stdout}"
    );
    assert!(product.starts_with("FEED"));
}
