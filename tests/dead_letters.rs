//! Bad input loses nothing: undecodable bytes and an invalid chain go to
//! dlq.market.option_chain with their original key, bytes and headers and the reason in
//! headers of their own, and the sink's dead-letters stream stores them in `dead_letters`.
//! Needs the local stack (ops/stack.sh up).

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_codec::{registry_settings, Codec};
use chainflow_contract::topics::{dlq, OPTION_CHAIN};
use chainflow_contract::{OptionChain, Quote, Record, StrikeQuotes};
use common::{chainflow, consumer, group_at_end, stack, Database, Names};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_and_invalid_chains_are_dead_lettered_with_the_reason() {
    let cfg = stack();
    let names = Names::new("dead_letters");
    let dlq_topic = dlq(OPTION_CHAIN);
    let consumer = consumer(&cfg, &names.group("reader"));
    let high = common::ends(&consumer, &dlq_topic, 1).await[0];

    // one record that is not Avro at all, one chain for a product nobody configured, read by
    // an enrich group of this test's own that starts after whatever the topic holds already
    let group = names.group("enrich");
    group_at_end(&cfg, &group, OPTION_CHAIN).await;
    let garbage_key = format!("GARBAGE|{}", names.tag());
    let garbage = b"not a confluent-framed avro record".to_vec();
    let codec = Codec::new(registry_settings(&cfg.registry).unwrap());
    let quote = Quote {
        bid: 1.0,
        ask: 1.1,
        last: 1.0,
        volume: 1,
        oi: 1,
        oi_change: 0,
        iv: None,
    };
    let chain = OptionChain {
        product: names.product("NOSUCH"),
        expiry: 30_000,
        lot_size: 1,
        spot: 100.0,
        event_time: 1_738_224_000_000_000,
        seq: 1,
        strikes: vec![StrikeQuotes {
            strike: 100.0,
            call: quote.clone(),
            put: quote,
        }],
    };
    let chain_bytes = codec.encode(&chain).await.unwrap();
    let producer: FutureProducer = chainflow_kafka::producer_config(&cfg.kafka).create().unwrap();
    // the sink's dead-letters stream, in a group of the test's own from the current end
    let db = Database::create(&names);
    let sink_group = names.group("sink");
    group_at_end(&cfg, &format!("{sink_group}-dead_letters"), &dlq_topic).await;
    let sink = chainflow(&["sink", "--stream", "dead_letters"])
        .env("CHAINFLOW_SINK__GROUP_ID", &sink_group)
        .env("CHAINFLOW_CLICKHOUSE__DATABASE", &db.name)
        .spawn();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (key, payload) in [(garbage_key.clone(), &garbage), (chain.key(), &chain_bytes)] {
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(traceparent),
        });
        producer
            .send(
                FutureRecord::to(OPTION_CHAIN)
                    .key(&key)
                    .payload(payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let enrich = chainflow(&["enrich"]).env("CHAINFLOW_ENRICH__GROUP_ID", &group).spawn();

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&dlq_topic, 0, Offset::Offset(high)).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut found: BTreeMap<String, (Vec<u8>, BTreeMap<String, String>)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while found.len() < 2 && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
        if key != garbage_key && key != chain.key() {
            continue;
        }
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.insert(key, (m.payload().unwrap_or_default().to_vec(), headers));
    }
    let ended = enrich.terminate(Duration::from_secs(35));
    assert!(
        ended.status.success(),
        "enrich exits cleanly on SIGTERM: {}",
        ended.stderr
    );
    assert_eq!(found.len(), 2, "both bad records reach {dlq_topic}: {:?}", found.keys());

    let (bytes, headers) = &found[&garbage_key];
    assert_eq!(bytes, &garbage, "the original bytes are kept");
    assert_eq!(headers["traceparent"], traceparent, "the original headers are kept");
    assert_eq!(headers["chainflow.error.stage"], "enrich");
    assert_eq!(headers["chainflow.error.kind"], "undecodable");
    assert!(headers["chainflow.error.message"].contains("magic byte"), "{headers:?}");
    assert_eq!(headers["chainflow.source.topic"], OPTION_CHAIN);
    assert!(headers["chainflow.source.offset"].parse::<i64>().is_ok());

    let (bytes, headers) = &found[&chain.key()];
    assert_eq!(bytes, &chain_bytes);
    assert_eq!(headers["chainflow.error.kind"], "unknown_product");
    assert!(
        headers["chainflow.error.message"].contains(&chain.product),
        "{headers:?}"
    );

    // both stored in dead_letters, with their reason, source, original bytes and headers
    let keys = format!("key IN ('{garbage_key}', '{}')", chain.key());
    db.wait_count("dead_letters", &keys, 2, 60).await;
    let rows: Vec<DeadRow> = db
        .client
        .query(&format!(
            "SELECT assumeNotNull(key) AS key, error_kind, stage, source_topic, hex(assumeNotNull(value)) AS value_hex, \
             traceparent FROM dead_letters FINAL WHERE {keys} ORDER BY key"
        ))
        .fetch_all()
        .await
        .unwrap();
    let ended = sink.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
    let by_key: BTreeMap<&str, &DeadRow> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().concat();
    for (key, kind, bytes) in [
        (garbage_key.as_str(), "undecodable", &garbage),
        (chain.key().as_str(), "unknown_product", &chain_bytes),
    ] {
        let row = by_key[key];
        assert_eq!(
            (row.error_kind.as_str(), row.stage.as_str(), row.source_topic.as_str()),
            (kind, "enrich", OPTION_CHAIN)
        );
        assert_eq!(row.value_hex, hex(bytes), "{key}: the original bytes");
        assert_eq!(row.traceparent, traceparent, "{key}: the original headers");
    }
}

/// A row of `dead_letters`, as this test reads it.
#[derive(Debug, serde::Deserialize, clickhouse::Row)]
struct DeadRow {
    key: String,
    error_kind: String,
    stage: String,
    source_topic: String,
    value_hex: String,
    traceparent: String,
}
