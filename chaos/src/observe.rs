//! What the suite measures: rows stored (with and without `FINAL`), dead letters, and the
//! consumer groups' lag.

use anyhow::{Context, Result};
use chainflow_kafka::blocking;
use clickhouse::Client;
use rdkafka::consumer::BaseConsumer;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

/// How long one question to the broker may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The tables a scenario's records land in, with the column that names the product.
pub const TABLES: [&str; 4] = ["chain_snapshots", "chain_options", "underlying_ticks", "option_quotes"];

/// Row counts of one product per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `chain_snapshots`, `chain_options`, `underlying_ticks`, `option_quotes`.
    pub rows: [u64; 4],
}

impl Counts {
    /// The sum over the tables.
    pub fn total(&self) -> u64 {
        self.rows.iter().sum()
    }
}

/// Rows of `product` in each table, with `FINAL` or without.
pub async fn counts(db: &Client, product: &str, final_: bool) -> Result<Counts> {
    let mut out = Counts::default();
    for (i, table) in TABLES.iter().enumerate() {
        let f = if final_ { "FINAL" } else { "" };
        out.rows[i] = db
            .query(&format!("SELECT count() FROM {table} {f} WHERE product = ?"))
            .bind(product)
            .fetch_one()
            .await
            .with_context(|| format!("counting {table}"))?;
    }
    Ok(out)
}

/// Dead letters of records keyed `key`, with `FINAL`.
pub async fn dead_letters(db: &Client, key: &str) -> Result<u64> {
    db.query("SELECT count() FROM dead_letters FINAL WHERE key = ?")
        .bind(key)
        .fetch_one()
        .await
        .context("counting dead_letters")
}

/// Merges every part of the tables (`OPTIMIZE ... FINAL`), after which duplicates are gone.
pub async fn optimize(db: &Client) -> Result<()> {
    for table in TABLES {
        db.query(&format!("OPTIMIZE TABLE {table} FINAL"))
            .execute()
            .await
            .with_context(|| format!("optimizing {table}"))?;
    }
    Ok(())
}

/// A consumer group and the topics it reads.
pub struct Group {
    /// Its id.
    pub id: String,
    consumer: Arc<BaseConsumer>,
    partitions: TopicPartitionList,
}

impl Group {
    /// `id` over `topics` (with their partition counts).
    pub fn new(kafka: &chainflow_config::KafkaConfig, id: &str, topics: &[(String, i32)]) -> Result<Self> {
        let consumer: BaseConsumer = chainflow_kafka::consumer_config(kafka, id)
            .create()
            .context("a consumer for offsets")?;
        let mut partitions = TopicPartitionList::new();
        for (topic, n) in topics {
            for p in 0..*n {
                partitions.add_partition(topic, p);
            }
        }
        Ok(Self {
            id: id.to_string(),
            consumer: Arc::new(consumer),
            partitions,
        })
    }

    /// Commits the current end of every partition: the group reads only what comes next.
    pub async fn commit_at_end(&self) -> Result<()> {
        let mut at_end = TopicPartitionList::new();
        for e in self.partitions.elements() {
            let (_, high) = blocking::fetch_watermarks(&self.consumer, e.topic(), e.partition(), TIMEOUT)
                .await
                .with_context(|| format!("watermarks of {}[{}]", e.topic(), e.partition()))?;
            at_end.add_partition_offset(e.topic(), e.partition(), Offset::Offset(high))?;
        }
        blocking::commit(&self.consumer, at_end)
            .await
            .with_context(|| format!("positioning {} at the end", self.id))
    }

    /// Its lag: high watermarks minus committed offsets, over its partitions; partitions with
    /// lag are listed as `topic[partition]`.
    pub async fn lag(&self) -> Result<(i64, Vec<String>)> {
        let committed = blocking::committed_offsets(&self.consumer, self.partitions.clone(), TIMEOUT)
            .await
            .with_context(|| format!("committed offsets of {}", self.id))?;
        let elements: Vec<(String, i32, Offset)> = committed
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition(), e.offset()))
            .collect();
        let highs = futures::future::join_all(
            elements
                .iter()
                .map(|(t, p, _)| blocking::fetch_watermarks(&self.consumer, t, *p, TIMEOUT)),
        )
        .await;
        let mut total = 0;
        let mut lagging = Vec::new();
        for ((topic, partition, committed), high) in elements.into_iter().zip(highs) {
            let (_, high) = high.with_context(|| format!("watermarks of {topic}[{partition}]"))?;
            let at = match committed {
                Offset::Offset(o) => o,
                _ => 0,
            };
            let lag = (high - at).max(0);
            if lag > 0 {
                lagging.push(format!("{topic}[{partition}]"));
            }
            total += lag;
        }
        Ok((total, lagging))
    }
}
