//! The poison mix: bad records on the raw and the enriched topics, each followed by a good
//! one with the same key, which must be stored while the bad ones are dead-lettered.

use super::faults::Added;
use super::setup::Run;
use anyhow::Result;
use chainflow_analytics::{enrich_chain, Source};
use chainflow_codec::{registry_settings, Codec};
use chainflow_contract::fixtures::chain;
use chainflow_contract::topics::{ENRICHED_CHAIN, HEADER_ID, OPTION_CHAIN};
use chainflow_contract::{OptionChain, Record, UnderlyingTick};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// Strikes of the poison's chains.
const STRIKES: usize = 21;

/// The key of the poison's records (its dead letters are counted by it).
pub fn poison_key(product: &str) -> String {
    chain(product, 0, STRIKES).key()
}

/// The poison's chains, seconds 1, 2, ... of the fixture's day, days before the feed's
/// (from 2025-01-27): they never share an id with them.
struct Good<'a> {
    product: &'a str,
    seq: i64,
}

impl Good<'_> {
    fn next(&mut self) -> OptionChain {
        self.seq += 1;
        chain(self.product, self.seq, STRIKES)
    }
}

/// Sends one record to `topic` under the poison's key, with a `chainflow.id` if given.
async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8], id: Option<&str>) -> Result<()> {
    let mut record = FutureRecord::to(topic).key(key).payload(payload);
    if let Some(id) = id {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: HEADER_ID,
            value: Some(id),
        }));
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow::Error::new(e).context(format!("producing to {topic}")))
}

/// Sends the poison mix. Returns the rows the good records add and the dead letters due.
pub async fn poison(run: &Run<'_>) -> Result<Added> {
    let cfg = &run.stack.config;
    let codec = Codec::new(registry_settings(&cfg.registry)?);
    let producer: FutureProducer = chainflow_kafka::producer_config(&cfg.kafka).create()?;
    let key = poison_key(&run.product);
    let mut good = Good {
        product: &run.product,
        seq: 0,
    };
    let mut added = Added::default();
    let tick = UnderlyingTick {
        product: run.product.clone(),
        price: 21_500.0,
        volume: 1,
        event_time: 1,
        seq: 1,
    };
    let mut nan_spot = good.next();
    nan_spot.spot = f64::NAN;
    let mut unsorted = good.next();
    unsorted.strikes.swap(0, 1);
    let empty = OptionChain {
        strikes: Vec::new(),
        ..good.next()
    };
    let mut unknown = codec.encode(&good.next()).await?;
    unknown[1..5].copy_from_slice(&0x7fff_ff00_u32.to_be_bytes());
    let raw_bad: Vec<Vec<u8>> = vec![
        b"garbage, not avro".to_vec(),
        unknown.clone(),
        codec.encode(&tick).await?,
        codec.encode(&nan_spot).await?,
        codec.encode(&unsorted).await?,
        codec.encode(&empty).await?,
    ];
    for bad in raw_bad {
        send(&producer, OPTION_CHAIN, &key, &bad, None).await?;
        let g = good.next();
        send(&producer, OPTION_CHAIN, &key, &codec.encode(&g).await?, None).await?;
        added.dead_letters += 1;
        added.keys.add_chain(&g);
    }
    let mut terms = cfg.clone().product_terms().map_err(|e| anyhow::anyhow!("{e}"))?;
    terms.insert(run.product.clone(), run.spec.terms);
    let enriched_bad: Vec<Vec<u8>> = vec![
        b"garbage on the enriched topic".to_vec(),
        unknown,
        codec.encode(&tick).await?,
    ];
    for bad in enriched_bad {
        send(&producer, ENRICHED_CHAIN, &key, &bad, None).await?;
        let g = good.next();
        let source = Source {
            topic: OPTION_CHAIN,
            partition: 0,
            offset: 0,
        };
        let e = enrich_chain(&g, &terms, source, 1).map_err(|e| anyhow::anyhow!("{e}"))?;
        send(&producer, ENRICHED_CHAIN, &key, &codec.encode(&e).await?, Some(&e.id())).await?;
        added.dead_letters += 1;
        added.keys.add_chain(&g);
    }
    Ok(added)
}
