//! Bad input loses nothing: undecodable bytes and an invalid chain go to
//! dlq.market.option_chain with their original key and bytes and the reason in headers.
//! Needs the local stack (ops/stack.sh up).

mod common;

use chainflow_codec::{registry_settings, Codec};
use chainflow_contract::topics::{dlq, OPTION_CHAIN};
use chainflow_contract::{OptionChain, Quote, Record, StrikeQuotes};
use common::{chainflow, consumer, group_at_end, stack, Names};
use rdkafka::consumer::Consumer;
use rdkafka::message::Headers;
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
    let codec = Codec::new(registry_settings(&cfg.registry.url, "", "").unwrap());
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
    for (key, payload) in [(garbage_key.clone(), &garbage), (chain.key(), &chain_bytes)] {
        producer
            .send(
                FutureRecord::to(OPTION_CHAIN).key(&key).payload(payload),
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
}
