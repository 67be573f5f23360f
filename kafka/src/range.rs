//! Ranges of a topic, for the operator's tools (replay, tail, redrive, group resets): a
//! [`Bound`] as the user writes it (`earliest`, `latest`, an RFC 3339 time, or
//! `PARTITION:OFFSET,...`), resolved against the broker into one [`Span`] per partition,
//! and a [`RangeReader`] that reads the spans without a consumer group and stops at their
//! end. A start is inclusive and an end exclusive, so adjacent ranges never overlap.

use crate::client::{base, Isolation, FETCH_QUEUE_BACKOFF_MS, FETCH_WAIT_MAX_MS};
use crate::{blocking, OFFSETS_TIMEOUT};
use anyhow::{anyhow, bail, Context, Result};
use chainflow_config::KafkaConfig;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long a reader waits without a record before it looks at its positions.
const IDLE: Duration = Duration::from_secs(2);

/// One end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The partition's low watermark: the oldest record the broker still has.
    Earliest,
    /// The partition's high watermark when the range is resolved: the next record.
    Latest,
    /// The first record whose Kafka timestamp is at or after this time.
    Time(DateTime<Utc>),
    /// Per partition, an offset; partitions not named are left out of a start and run to
    /// their high watermark at an end.
    Offsets(BTreeMap<i32, i64>),
}

impl FromStr for Bound {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => return Ok(Bound::Earliest),
            "latest" => return Ok(Bound::Latest),
            _ => {}
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Bound::Time(t.with_timezone(&Utc)));
        }
        let mut offsets = BTreeMap::new();
        for part in s.split(',') {
            let parsed = part.split_once(':').and_then(|(p, o)| {
                let (p, o) = (p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?);
                (p >= 0 && o >= 0).then_some((p, o))
            });
            let Some((p, o)) = parsed else {
                return Err(format!(
                    "expected earliest, latest, an RFC 3339 time (2025-01-30T09:15:00Z) or \
                     PARTITION:OFFSET,... (0:120,1:98), got {s:?}"
                ));
            };
            if offsets.insert(p, o).is_some() {
                return Err(format!("partition {p} is named twice in {s:?}"));
            }
        }
        Ok(Bound::Offsets(offsets))
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Earliest => f.write_str("earliest"),
            Bound::Latest => f.write_str("latest"),
            Bound::Time(t) => write!(f, "{}", t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            Bound::Offsets(o) => {
                let parts: Vec<String> = o.iter().map(|(p, o)| format!("{p}:{o}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// The part of one partition a range covers, `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// Offset after the last one read.
    pub end: i64,
    /// The partition's low watermark when resolved.
    pub low: i64,
    /// The partition's high watermark when resolved.
    pub high: i64,
    /// The range asked for records before the low watermark: retention (or a deletion)
    /// removed them, and the span starts at the oldest record left.
    pub before_horizon: bool,
}

impl Span {
    /// Records in the span (the offsets; on a compacted topic some may be gone).
    pub fn records(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }
}

/// Where a bound falls in one partition, before clamping to its watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// This offset.
    At(i64),
    /// The partition is not part of the range.
    Excluded,
}

/// The span of a partition with watermarks `low..high`, from `start` to `end`: both are
/// clamped to the watermarks, and a start below the low watermark (or at it, when records
/// before it were deleted and the start asked for them) marks the span `before_horizon`.
pub fn span(partition: i32, start: i64, end: i64, low: i64, high: i64, asked_for_oldest: bool) -> Span {
    let clamped_start = start.clamp(low, high);
    let clamped_end = end.clamp(clamped_start, high);
    Span {
        partition,
        start: clamped_start,
        end: clamped_end,
        low,
        high,
        before_horizon: start < low || (asked_for_oldest && low > 0 && clamped_start == low),
    }
}

/// The offset `bound` names in `partition`; `times` holds the offsets a time resolved to.
/// `is_start` decides what an unnamed partition of an offsets bound means.
fn position(bound: &Bound, partition: i32, low: i64, high: i64, times: &HashMap<i32, i64>, is_start: bool) -> Position {
    match bound {
        Bound::Earliest => Position::At(low),
        Bound::Latest => Position::At(high),
        Bound::Time(_) => Position::At(times.get(&partition).copied().unwrap_or(high)),
        Bound::Offsets(o) => match o.get(&partition) {
            Some(&at) => Position::At(at),
            None if is_start => Position::Excluded,
            None => Position::At(high),
        },
    }
}

/// A consumer for the tools: no group membership, nothing committed, reading with
/// `isolation` (read_committed unless a tool is asked otherwise: records of aborted
/// transactions are never replayed or redriven). With read_committed, a partition's end is
/// its last stable offset: what is readable.
pub fn tool_consumer(kafka: &KafkaConfig, isolation: Isolation) -> Result<Arc<StreamConsumer>> {
    groupless(kafka, &[("isolation.level", isolation.level())])
}

/// A consumer that follows topics for a live view (`chainflow serve`): no group
/// membership, nothing committed, only committed transactions read. A fetch waits at most
/// 50 ms for records (`fetch.wait.max.ms`, 500 by default): brokers that answer a waiting
/// fetch only when its time is up, as nisshi does, would otherwise hold a record that
/// arrives meanwhile for up to half a second (docs/benchmarks.md, "Live view").
pub fn follower(kafka: &KafkaConfig) -> Result<Arc<StreamConsumer>> {
    groupless(
        kafka,
        &[
            ("isolation.level", Isolation::ReadCommitted.level()),
            ("fetch.wait.max.ms", "50"),
        ],
    )
}

fn groupless(kafka: &KafkaConfig, settings: &[(&str, &str)]) -> Result<Arc<StreamConsumer>> {
    let mut defaults = vec![
        FETCH_QUEUE_BACKOFF_MS,
        FETCH_WAIT_MAX_MS,
        ("group.id", "chainflow-tools"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("enable.partition.eof", "false"),
    ];
    defaults.extend_from_slice(settings);
    let consumer: StreamConsumer = base(kafka, &defaults).create().context("creating a Kafka consumer")?;
    Ok(Arc::new(consumer))
}

/// The partitions of `topic`, in order; an error naming the topic when it does not exist.
pub async fn partitions<H: blocking::Handle>(handle: &Arc<H>, topic: &str) -> Result<Vec<i32>> {
    let metadata = blocking::fetch_metadata(handle, Some(topic), OFFSETS_TIMEOUT)
        .await
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("the broker does not know topic {topic}"))?;
    if t.error().is_some() || t.partitions().is_empty() {
        bail!("topic {topic} does not exist");
    }
    let mut ps: Vec<i32> = t
        .partitions()
        .iter()
        .map(rdkafka::metadata::MetadataPartition::id)
        .collect();
    ps.sort_unstable();
    Ok(ps)
}

/// Where `bound` falls in each of `parts` of `topic` (a time through offsets-for-times).
async fn times(consumer: &Arc<StreamConsumer>, topic: &str, parts: &[i32], bound: &Bound) -> Result<HashMap<i32, i64>> {
    let Bound::Time(t) = bound else {
        return Ok(HashMap::new());
    };
    let mut tpl = TopicPartitionList::new();
    for &p in parts {
        tpl.add_partition_offset(topic, p, Offset::Offset(t.timestamp_millis()))?;
    }
    let found = blocking::offsets_for_times(consumer, tpl, OFFSETS_TIMEOUT)
        .await
        .with_context(|| format!("looking up the offsets of {topic} at {t}"))?;
    Ok(found
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None, // no record at or after the time: the high watermark
        })
        .collect())
}

/// The spans of `topic` from `from` to `to`, over `only` (or every partition); partitions
/// an offsets start leaves out are not returned.
pub async fn resolve(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    only: &[i32],
    from: &Bound,
    to: &Bound,
) -> Result<Vec<Span>> {
    let all = partitions(consumer, topic).await?;
    if let Some(p) = only.iter().find(|p| !all.contains(p)) {
        bail!("topic {topic} has no partition {p} (it has {})", all.len());
    }
    let parts: Vec<i32> = all
        .into_iter()
        .filter(|p| only.is_empty() || only.contains(p))
        .collect();
    let (from_times, to_times) = (
        times(consumer, topic, &parts, from).await?,
        times(consumer, topic, &parts, to).await?,
    );
    let mut spans = Vec::with_capacity(parts.len());
    for p in parts {
        let (low, high) = blocking::fetch_watermarks(consumer, topic, p, OFFSETS_TIMEOUT)
            .await
            .with_context(|| format!("reading the watermarks of {topic} partition {p}"))?;
        let Position::At(start) = position(from, p, low, high, &from_times, true) else {
            continue;
        };
        let Position::At(end) = position(to, p, low, high, &to_times, false) else {
            continue;
        };
        spans.push(span(p, start, end, low, high, !matches!(from, Bound::Offsets(_))));
    }
    Ok(spans)
}

/// Reads spans of one topic, partition by partition in offset order, without a group.
pub struct RangeReader {
    consumer: Arc<StreamConsumer>,
    /// Per partition still being read, the offset it ends at (`None`: follows for ever).
    open: HashMap<i32, Option<i64>>,
    topic: String,
}

impl RangeReader {
    /// Starts reading `spans` of `topic` (empty spans are skipped); with `follow`, the
    /// partitions are read past their end as records arrive.
    pub fn open(consumer: Arc<StreamConsumer>, topic: &str, spans: &[Span], follow: bool) -> Result<Self> {
        let mut tpl = TopicPartitionList::new();
        let mut open = HashMap::new();
        for s in spans.iter().filter(|s| follow || s.end > s.start) {
            tpl.add_partition_offset(topic, s.partition, Offset::Offset(s.start))?;
            open.insert(s.partition, (!follow).then_some(s.end));
        }
        consumer
            .assign(&tpl)
            .with_context(|| format!("assigning the partitions of {topic}"))?;
        Ok(Self {
            consumer,
            open,
            topic: topic.to_string(),
        })
    }

    /// The next record of the range, `None` once every span is read.
    pub async fn next(&mut self) -> Result<Option<OwnedMessage>> {
        loop {
            if self.open.is_empty() {
                return Ok(None);
            }
            let Ok(m) = tokio::time::timeout(IDLE, self.consumer.recv()).await else {
                self.close_finished()?;
                continue;
            };
            let m = m.with_context(|| format!("reading {}", self.topic))?.detach();
            let Some(end) = self.open.get(&m.partition()).copied() else {
                continue; // a partition already read to its end
            };
            match end {
                Some(end) if m.offset() >= end => {
                    self.open.remove(&m.partition());
                }
                Some(end) => {
                    if m.offset() + 1 >= end {
                        self.open.remove(&m.partition());
                    }
                    return Ok(Some(m));
                }
                None => return Ok(Some(m)),
            }
        }
    }

    /// Closes the partitions whose position reached their end without a record at the end
    /// (gaps left by compaction or transaction markers).
    fn close_finished(&mut self) -> Result<()> {
        let positions = self.consumer.position().context("reading the consumer's positions")?;
        for e in positions.elements_for_topic(&self.topic) {
            if let (Offset::Offset(at), Some(Some(end))) = (e.offset(), self.open.get(&e.partition())) {
                if at >= *end {
                    self.open.remove(&e.partition());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_as_users_write_them() {
        assert_eq!("earliest".parse::<Bound>(), Ok(Bound::Earliest));
        assert_eq!("latest".parse::<Bound>(), Ok(Bound::Latest));
        let Ok(Bound::Time(t)) = "2025-01-30T09:15:00+05:30".parse::<Bound>() else {
            panic!("a time parses")
        };
        assert_eq!(t.to_rfc3339(), "2025-01-30T03:45:00+00:00");
        assert_eq!(
            "0:120, 3:98".parse::<Bound>(),
            Ok(Bound::Offsets(BTreeMap::from([(0, 120), (3, 98)])))
        );
        for bad in [
            "",
            "soon",
            "0:",
            "x:1",
            "0:-1",
            "-1:4",
            "1:2,1:3",
            "2025-13-01T00:00:00Z",
        ] {
            let e = bad.parse::<Bound>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert_eq!(Bound::Offsets(BTreeMap::from([(0, 1), (2, 5)])).to_string(), "0:1,2:5");
    }

    #[test]
    fn spans_are_clamped_to_the_watermarks_and_say_when_history_is_gone() {
        // inside the log
        let s = span(0, 10, 20, 0, 100, false);
        assert_eq!((s.start, s.end, s.records(), s.before_horizon), (10, 20, 10, false));
        // beyond the end, and an end before the start
        let s = span(1, 90, 500, 0, 100, false);
        assert_eq!((s.start, s.end, s.records()), (90, 100, 10));
        assert_eq!(span(1, 50, 40, 0, 100, false).records(), 0);
        // an offset below the low watermark: retention removed some
        let s = span(2, 5, 60, 30, 100, false);
        assert_eq!((s.start, s.end, s.before_horizon), (30, 60, true));
        // earliest (or a time) on a partition whose first records were deleted
        assert!(span(3, 30, 60, 30, 100, true).before_horizon);
        assert!(!span(3, 30, 60, 0, 100, true).before_horizon);
        assert!(!span(3, 40, 60, 30, 100, true).before_horizon);
    }

    #[test]
    fn offsets_bounds_leave_unnamed_partitions_out_of_a_start_and_open_at_an_end() {
        let b = Bound::Offsets(BTreeMap::from([(1, 7)]));
        let none = HashMap::new();
        assert_eq!(position(&b, 0, 0, 50, &none, true), Position::Excluded);
        assert_eq!(position(&b, 0, 0, 50, &none, false), Position::At(50));
        assert_eq!(position(&b, 1, 0, 50, &none, true), Position::At(7));
        let t = Bound::Time(Utc::now());
        assert_eq!(
            position(&t, 2, 0, 50, &HashMap::from([(2, 12)]), true),
            Position::At(12)
        );
        assert_eq!(position(&t, 3, 0, 50, &HashMap::new(), true), Position::At(50));
        assert_eq!(position(&Bound::Earliest, 0, 4, 9, &none, true), Position::At(4));
        assert_eq!(position(&Bound::Latest, 0, 4, 9, &none, false), Position::At(9));
    }
}
