//! The `_schemas` topic: the registry appends every change there before applying it, and
//! rebuilds its state at start by reading the whole topic.

use crate::log::Entry;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use chainflow_config::KafkaConfig;
use chainflow_contract::topics::TopicSpec;
use chainflow_kafka::{blocking, consumer_config, ensure_topics, producer_config};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

/// How long the broker may take to answer a question about offsets.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long replaying the whole topic may take at start.
const REPLAY_TIMEOUT: Duration = Duration::from_mins(2);

/// Appends entries to `_schemas`.
pub struct SchemaTopic {
    producer: FutureProducer,
    topic: String,
}

impl SchemaTopic {
    /// Creates the topic (`_schemas` by default) if needed, with one partition, and replays
    /// it into a [`Store`].
    pub async fn open(kafka: &KafkaConfig, topic: &str) -> Result<(Self, Store)> {
        ensure_topics(
            kafka,
            &[TopicSpec {
                name: topic.into(),
                partitions: 1,
            }],
        )
        .await?;
        let entries = read_all(kafka, topic).await?;
        let mut store = Store::default();
        for (offset, entry) in &entries {
            store
                .apply(entry)
                .map_err(|e| anyhow::anyhow!("{topic} offset {offset}: {e}"))?;
        }
        tracing::info!(
            records = entries.len(),
            subjects = store.subjects(true).len(),
            topic,
            "schema registry state rebuilt from its topic"
        );
        let producer: FutureProducer = producer_config(kafka)
            .create()
            .context("creating the registry producer")?;
        Ok((
            Self {
                producer,
                topic: topic.to_string(),
            },
            store,
        ))
    }

    /// Appends `entries` in order and waits until the broker has them all.
    pub async fn append(&self, entries: &[Entry]) -> Result<()> {
        for entry in entries {
            let key = entry.key();
            let value = entry.value();
            let mut record = FutureRecord::to(&self.topic).partition(0).key(&key);
            if let Some(v) = &value {
                record = record.payload(v);
            }
            self.producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("writing to {}: {e}", self.topic))?;
        }
        Ok(())
    }
}

/// Reads every record of `_schemas`, from the beginning to the high watermark.
async fn read_all(kafka: &KafkaConfig, topic: &str) -> Result<Vec<(i64, Entry)>> {
    let consumer: Arc<StreamConsumer> = Arc::new(
        consumer_config(kafka, "chainflow-registry-replay")
            .set("isolation.level", "read_uncommitted")
            .create()
            .context("creating the registry reader")?,
    );
    let (low, high) = blocking::fetch_watermarks(&consumer, topic, 0, OFFSETS_TIMEOUT)
        .await
        .with_context(|| format!("reading the offsets of {topic}"))?;
    let mut out = Vec::new();
    if high <= low {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    let deadline = tokio::time::Instant::now() + REPLAY_TIMEOUT;
    let mut next = low;
    while next < high {
        let Ok(msg) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            bail!("timed out reading {topic}: at offset {next} of {high}");
        };
        let msg = msg.with_context(|| format!("reading {topic}"))?;
        next = msg.offset() + 1;
        let Some(key) = msg.key() else { continue };
        match Entry::parse(key, msg.payload()) {
            Ok(Some(entry)) => out.push((msg.offset(), entry)),
            Ok(None) => {}
            Err(e) => tracing::warn!(offset = msg.offset(), error = %e, "skipping unreadable {topic} record"),
        }
    }
    Ok(out)
}
