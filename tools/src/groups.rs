//! `chainflow groups`: the consumer groups the broker knows, a group's lag per partition, and
//! resets of a group's committed offsets (refused while the group has members: a member
//! would overwrite them with its next commit).

use anyhow::{bail, Context, Result};
use chainflow_config::KafkaConfig;
use chainflow_kafka::blocking::{self, Group};
use chainflow_kafka::range::{partitions, resolve, tool_consumer};
use chainflow_kafka::Isolation;
use chainflow_kafka::{consumer_config, Bound};
use rdkafka::consumer::StreamConsumer;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

/// How long a question to the broker may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One partition of a group's lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed).
    pub committed: Option<i64>,
    /// The partition's high watermark.
    pub high: i64,
    /// Records after the committed offset (from the low watermark when nothing is committed).
    pub lag: i64,
}

/// The lag of a partition: records from the committed offset (or, with none, from the low
/// watermark, where the group would start) to the high watermark.
pub fn lag_of(committed: Option<i64>, low: i64, high: i64) -> i64 {
    (high - committed.unwrap_or(low).max(low)).max(0)
}

/// The groups the broker knows, by name.
pub async fn list(kafka: &KafkaConfig) -> Result<Vec<Group>> {
    let consumer = tool_consumer(kafka, Isolation::ReadCommitted)?;
    let mut groups = blocking::fetch_group_list(&consumer, None, TIMEOUT)
        .await
        .context("listing the consumer groups")?;
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(groups)
}

/// `group` as the broker describes it (an empty, member-less group when unknown).
pub async fn describe(kafka: &KafkaConfig, group: &str) -> Result<Group> {
    let consumer = tool_consumer(kafka, Isolation::ReadCommitted)?;
    let found = blocking::fetch_group_list(&consumer, Some(group), TIMEOUT)
        .await
        .with_context(|| format!("describing group {group}"))?;
    Ok(found.into_iter().find(|g| g.name == group).unwrap_or_else(|| Group {
        name: group.to_string(),
        state: "Dead".into(),
        protocol_type: String::new(),
        members: Vec::new(),
    }))
}

/// A consumer in `group`'s name that never joins it: for reading and committing offsets.
fn group_handle(kafka: &KafkaConfig, group: &str) -> Result<Arc<StreamConsumer>> {
    let c: StreamConsumer = consumer_config(kafka, group)
        .create()
        .context("creating a Kafka consumer")?;
    Ok(Arc::new(c))
}

/// The topics `group` has committed offsets on, among the broker's topics (internal ones,
/// starting with `_`, left out).
async fn committed_topics(consumer: &Arc<StreamConsumer>) -> Result<Vec<String>> {
    let metadata = blocking::fetch_metadata(consumer, None, TIMEOUT)
        .await
        .context("reading the broker's topics")?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| !t.name().starts_with('_')) {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = blocking::committed_offsets(consumer, tpl, TIMEOUT)
        .await
        .context("reading committed offsets")?;
    let mut topics: Vec<String> = committed
        .elements()
        .iter()
        .filter(|e| matches!(e.offset(), Offset::Offset(_)))
        .map(|e| e.topic().to_string())
        .collect();
    topics.sort();
    topics.dedup();
    Ok(topics)
}

/// The lag of `group` on `topics` (or on every topic it has committed offsets on).
pub async fn lag(kafka: &KafkaConfig, group: &str, topics: &[String]) -> Result<Vec<Lag>> {
    let consumer = group_handle(kafka, group)?;
    let topics = if topics.is_empty() {
        committed_topics(&consumer).await?
    } else {
        topics.to_vec()
    };
    let mut tpl = TopicPartitionList::new();
    let mut parts = Vec::new();
    for t in &topics {
        for p in partitions(&consumer, t).await? {
            tpl.add_partition(t, p);
            parts.push((t.clone(), p));
        }
    }
    let committed = blocking::committed_offsets(&consumer, tpl, TIMEOUT)
        .await
        .with_context(|| format!("reading the committed offsets of {group}"))?;
    let mut out = Vec::with_capacity(parts.len());
    for (topic, partition) in parts {
        let (low, high) = blocking::fetch_watermarks(&consumer, &topic, partition, TIMEOUT)
            .await
            .with_context(|| format!("reading the watermarks of {topic} partition {partition}"))?;
        let c = committed
            .find_partition(&topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        out.push(Lag {
            lag: lag_of(c, low, high),
            topic,
            partition,
            committed: c,
            high,
        });
    }
    Ok(out)
}

/// One partition of a reset: from where to where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset before.
    pub before: Option<i64>,
    /// The offset committed.
    pub after: i64,
}

/// Moves `group`'s committed offsets on `topics` (or on every topic it has offsets on) to
/// `to`; with `dry_run`, only says where. Refused while the group has members.
pub async fn reset(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    to: &Bound,
    dry_run: bool,
) -> Result<Vec<Move>> {
    let described = describe(kafka, group).await?;
    if !described.members.is_empty() {
        bail!(
            "group {group} has {} member(s) ({}; state {}): stop them first, or they overwrite the \
             reset with their next commit",
            described.members.len(),
            described.members.join(", "),
            described.state
        );
    }
    let before = lag(kafka, group, topics).await?;
    if before.is_empty() {
        bail!("group {group} has no committed offsets: name the topics to reset with --topic");
    }
    let consumer = group_handle(kafka, group)?;
    let reader = tool_consumer(kafka, Isolation::ReadCommitted)?;
    let mut tpl = TopicPartitionList::new();
    let mut moves = Vec::new();
    let mut names: Vec<&str> = before.iter().map(|l| l.topic.as_str()).collect();
    names.dedup();
    for topic in names {
        for span in resolve(&reader, topic, &[], to, &Bound::Latest).await? {
            let was = before
                .iter()
                .find(|l| l.topic == topic && l.partition == span.partition)
                .and_then(|l| l.committed);
            tpl.add_partition_offset(topic, span.partition, Offset::Offset(span.start))?;
            moves.push(Move {
                topic: topic.to_string(),
                partition: span.partition,
                before: was,
                after: span.start,
            });
        }
    }
    if !dry_run && tpl.count() > 0 {
        blocking::commit(&consumer, tpl)
            .await
            .with_context(|| format!("committing the new offsets of {group}"))?;
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::lag_of;

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_oldest_record() {
        assert_eq!(lag_of(Some(40), 0, 100), 60);
        assert_eq!(lag_of(Some(100), 0, 100), 0);
        assert_eq!(lag_of(None, 0, 100), 100);
        assert_eq!(
            lag_of(None, 30, 100),
            70,
            "nothing committed: the group starts at the oldest record"
        );
        assert_eq!(
            lag_of(Some(10), 30, 100),
            70,
            "records before the low watermark are gone"
        );
        assert_eq!(lag_of(Some(120), 0, 100), 0);
    }
}
