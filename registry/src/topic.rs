//! The `_schemas` topic: created compacted and kept forever, checked at start for anything
//! that would lose records, replayed from its first offset, and then followed for as long
//! as the registry runs, so that every instance sees every other instance's changes.

use crate::log::Entry;
use anyhow::{Context, Result};
use chainflow_config::KafkaConfig;
use chainflow_contract::topics::TopicSpec;
use chainflow_kafka::{blocking, consumer_config, ensure_topics, producer_config, topic_config, OFFSETS_TIMEOUT};
use chainflow_runtime::Refused;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long writing one record may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the topic's configuration would lose records, if it would: a `delete` cleanup
/// policy with a finite `retention.ms` or `retention.bytes`. Entries the broker does not
/// report take Kafka's defaults (`delete`, 7 days, unlimited bytes).
pub fn would_lose_records(config: &BTreeMap<String, String>) -> Option<String> {
    let get = |k: &str, default: &'static str| config.get(k).map_or(default, String::as_str);
    let policy = get("cleanup.policy", "delete");
    if !policy.split(',').any(|p| p.trim() == "delete") {
        return None;
    }
    let (ms, bytes) = (get("retention.ms", "604800000"), get("retention.bytes", "-1"));
    let finite = |v: &str| v.trim() != "-1";
    if !finite(ms) && !finite(bytes) {
        return None;
    }
    Some(format!(
        "cleanup.policy={policy} with retention.ms={ms} and retention.bytes={bytes}: the broker would \
         delete old records, and the schema ids in them with them"
    ))
}

/// A record read from the topic.
pub struct Read {
    /// Its offset.
    pub offset: i64,
    /// What it says; `None` for records of other kinds (Confluent's NOOP...).
    pub entry: Option<Entry>,
}

/// Reads the topic: from its first offset at start, then on as records arrive.
pub struct Reader {
    consumer: Arc<StreamConsumer>,
    topic: String,
}

/// Appends records to the topic.
pub struct Writer {
    producer: FutureProducer,
    topic: String,
}

/// Opens `topic` for the registry: creates it compacted if it does not exist, refuses a
/// configuration or a log that would lose (or has lost) records, and returns a reader
/// positioned at its first offset and the offset where the log ends now.
pub async fn open(kafka: &KafkaConfig, topic: &str) -> Result<(Reader, i64)> {
    ensure_topics(
        kafka,
        &[TopicSpec {
            name: topic.into(),
            partitions: 1,
            compacted: true,
        }],
    )
    .await?;
    let config = topic_config(kafka, topic).await?;
    if let Some(why) = would_lose_records(&config) {
        return Err(Refused(format!(
            "the schema topic {topic} is not safe to keep ids in: {why}. Make it compacted and kept \
             forever, for example `kafka-configs.sh --bootstrap-server {} --alter --entity-type topics \
             --entity-name {topic} --add-config cleanup.policy=compact,retention.ms=-1` (docs/security.md)",
            kafka.bootstrap_servers
        ))
        .into());
    }
    let consumer: Arc<StreamConsumer> = Arc::new(
        consumer_config(kafka, "chainflow-registry-reader")
            .set("isolation.level", "read_uncommitted")
            .set("fetch.wait.max.ms", "50")
            .create()
            .context("creating the registry reader")?,
    );
    let (low, high) = blocking::fetch_watermarks(&consumer, topic, 0, OFFSETS_TIMEOUT)
        .await
        .with_context(|| format!("reading the offsets of {topic}"))?;
    if low > 0 {
        return Err(Refused(format!(
            "the schema topic {topic} begins at offset {low}, not 0: records before it were deleted \
             (retention or DeleteRecords), and the schemas and ids in them are lost. The registry will \
             not serve from a truncated log; restore the topic from a backup (docs/security.md)"
        ))
        .into());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    Ok((
        Reader {
            consumer,
            topic: topic.to_string(),
        },
        high,
    ))
}

impl Reader {
    /// The next record; waits for one to arrive.
    pub async fn next(&self) -> Result<Read> {
        let msg = self
            .consumer
            .recv()
            .await
            .with_context(|| format!("reading {}", self.topic))?;
        let entry = match msg.key() {
            None => None,
            Some(key) => match Entry::parse(key, msg.payload()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(offset = msg.offset(), error = %e, "skipping an unreadable {} record", self.topic);
                    None
                }
            },
        };
        Ok(Read {
            offset: msg.offset(),
            entry,
        })
    }

    /// Where the log ends now (the offset the next record will get).
    pub async fn end(&self) -> Result<i64> {
        let (_, high) = blocking::fetch_watermarks(&self.consumer, &self.topic, 0, OFFSETS_TIMEOUT)
            .await
            .with_context(|| format!("reading the offsets of {}", self.topic))?;
        Ok(high)
    }
}

impl Writer {
    /// A writer of `topic`.
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Result<Self> {
        Ok(Self {
            producer: producer_config(kafka)
                .create()
                .context("creating the registry producer")?,
            topic: topic.to_string(),
        })
    }

    /// Appends `entries` in order, waits until the broker has them all, and returns the
    /// offset of the last.
    pub async fn append(&self, entries: &[Entry]) -> Result<i64> {
        let mut last = -1;
        for entry in entries {
            let key = entry.key();
            let value = entry.value();
            let mut record = FutureRecord::to(&self.topic).partition(0).key(&key);
            if let Some(v) = &value {
                record = record.payload(v);
            }
            let delivery = self
                .producer
                .send(record, WRITE_TIMEOUT)
                .await
                .map_err(|(e, _)| anyhow::anyhow!("writing to {}: {e}", self.topic))?;
            last = delivery.offset;
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn only_a_log_that_keeps_every_record_is_accepted() {
        assert_eq!(would_lose_records(&config(&[("cleanup.policy", "compact")])), None);
        assert_eq!(
            would_lose_records(&config(&[("cleanup.policy", "delete"), ("retention.ms", "-1")])),
            None
        );
        // what older chainflow versions created, and a broker's defaults
        let old = would_lose_records(&config(&[("retention.ms", "604800000")])).unwrap();
        assert!(
            old.contains("cleanup.policy=delete") && old.contains("604800000"),
            "{old}"
        );
        assert!(would_lose_records(&config(&[])).is_some());
        assert!(would_lose_records(&config(&[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "-1"),
            ("retention.bytes", "1000000")
        ]))
        .is_some());
    }
}
