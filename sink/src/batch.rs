//! A partition's batch: the records read since the last write, in offset order, bounded by
//! rows, bytes and age, and identified by a token that is the same whenever the same records
//! form it again (after a crash they are re-formed from the ledger) and different for any
//! other records at the same offsets (a topic deleted and recreated).

use rdkafka::message::{Message, OwnedMessage};
use std::hash::Hasher;
use std::time::Duration;
use tokio::time::Instant;
use twox_hash::XxHash64;

/// When a batch is written.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rows (ClickHouse rows, over every table of the stream).
    pub rows: usize,
    /// Bytes of decoded rows, estimated.
    pub bytes: usize,
    /// Age of the oldest record.
    pub age: Duration,
}

/// One record of a batch.
#[derive(Debug)]
pub struct Entry<R> {
    /// The record as read, kept to dead-letter it if ClickHouse refuses its rows.
    pub message: OwnedMessage,
    /// Its rows; `None` when it was dead-lettered on the way in (it still belongs to the
    /// batch's offset range).
    pub rows: Option<R>,
}

/// The records of one partition waiting to be written.
#[derive(Debug)]
pub struct Batch<R> {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    entries: Vec<Entry<R>>,
    rows: usize,
    bytes: usize,
    opened: Instant,
    digest: XxHash64,
    /// The digest of the first record alone (`record_digest`).
    first_digest: u64,
    /// The last offset of a batch re-formed from the ledger: it is written when it reaches it,
    /// or sooner when it reaches today's limits.
    end: Option<i64>,
}

/// Feeds what identifies a record (key, value, timestamp) to `digest`.
fn feed(digest: &mut XxHash64, m: &OwnedMessage) {
    for part in [m.key(), m.payload()] {
        let part = part.unwrap_or_default();
        digest.write_u64(part.len() as u64);
        digest.write(part);
    }
    digest.write_i64(m.timestamp().to_millis().unwrap_or(0));
}

/// The digest of one record: the ledger keeps the first record's of each batch, so that a
/// batch recorded over other records at the same offsets (a topic deleted and created
/// again) is known as such the moment its first offset is read again.
pub fn record_digest(m: &OwnedMessage) -> u64 {
    let mut digest = XxHash64::with_seed(0);
    feed(&mut digest, m);
    digest.finish()
}

impl<R> Batch<R> {
    /// An empty batch of `topic`/`partition`; `end`: the last offset of the batch the ledger
    /// recorded there, if it is re-formed.
    pub fn new(topic: &str, partition: i32, end: Option<i64>) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            entries: Vec::new(),
            rows: 0,
            bytes: 0,
            opened: Instant::now(),
            digest: XxHash64::with_seed(0),
            first_digest: 0,
            end,
        }
    }

    /// Adds a record with `rows` rows of `bytes` bytes.
    pub fn push(&mut self, entry: Entry<R>, rows: usize, bytes: usize) {
        if self.entries.is_empty() {
            self.opened = Instant::now();
            self.first_digest = record_digest(&entry.message);
        }
        feed(&mut self.digest, &entry.message);
        self.entries.push(entry);
        self.rows += rows;
        self.bytes += bytes;
    }

    /// The records, in offset order.
    pub fn entries(&self) -> &[Entry<R>] {
        &self.entries
    }

    /// No records yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Offset of the first record.
    pub fn first_offset(&self) -> Option<i64> {
        self.entries.first().map(|e| e.message.offset())
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> Option<i64> {
        self.entries.last().map(|e| e.message.offset())
    }

    /// The offset to commit once the batch is written.
    pub fn next_offset(&self) -> Option<i64> {
        self.last_offset().map(|o| o + 1)
    }

    /// Whether the batch holds `m` itself (the same record at its offset, by
    /// `record_digest`): a record read twice, not another at an offset read before.
    pub fn holds(&self, m: &OwnedMessage) -> bool {
        self.entries
            .iter()
            .find(|e| e.message.offset() == m.offset())
            .is_some_and(|e| record_digest(&e.message) == record_digest(m))
    }

    /// Whether the batch re-forms one the ledger recorded.
    pub fn is_reformed(&self) -> bool {
        self.end.is_some()
    }

    /// Whether the batch re-forms one the ledger recorded, exactly: it reached the recorded
    /// end (and not today's limits first).
    pub fn is_whole_reform(&self) -> bool {
        self.end.is_some_and(|end| self.last_offset() == Some(end))
    }

    /// The digest of the batch's first record (`record_digest`); 0 when it is empty.
    pub fn first_digest(&self) -> u64 {
        self.first_digest
    }

    /// Whether the batch must be written now: it holds `limits` rows or bytes, its oldest
    /// record is `limits.age` old, or it has reached the end of the batch it re-forms. A
    /// re-formed batch waits for its records rather than for its age, but never grows past
    /// today's limits (a batch recorded under larger ones is written in pieces, each recorded
    /// in the ledger before its insert).
    pub fn is_due(&self, limits: &Limits, now: Instant) -> bool {
        let Some(last) = self.last_offset() else {
            return false;
        };
        let full = self.rows >= limits.rows || self.bytes >= limits.bytes;
        match self.end {
            Some(end) => last >= end || full,
            None => full || now >= self.opened + limits.age,
        }
    }

    /// When the batch will be due by age (a re-formed batch waits for its records instead).
    pub fn due_at(&self, limits: &Limits) -> Option<Instant> {
        (!self.entries.is_empty() && self.end.is_none()).then(|| self.opened + limits.age)
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Estimated bytes in the batch.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The deduplication token: topic, partition, offset range and a digest of the records
    /// (keys, values, timestamps). The same records give the same token; a recreated topic's
    /// records at the same offsets give another.
    pub fn token(&self) -> String {
        format!(
            "{}/{}/{}-{}/{:016x}",
            self.topic,
            self.partition,
            self.first_offset().unwrap_or(-1),
            self.last_offset().unwrap_or(-1),
            self.digest.finish()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Timestamp;

    fn message(topic: &str, partition: i32, offset: i64, value: &str) -> OwnedMessage {
        OwnedMessage::new(
            Some(value.as_bytes().to_vec()),
            Some(b"NIFTY|2025-01-30".to_vec()),
            topic.into(),
            Timestamp::CreateTime(1_738_228_500_000 + offset),
            partition,
            offset,
            None,
        )
    }

    /// Pushes `value` at `offset` of `b`'s topic and partition, as a record of `rows` rows
    /// (none: dead-lettered on the way in) of its length in bytes each.
    fn push(b: &mut Batch<()>, offset: i64, value: &str, rows: usize) {
        let message = message(&b.topic, b.partition, offset, value);
        let entry = Entry {
            message,
            rows: (rows > 0).then_some(()),
        };
        b.push(entry, rows, rows * value.len());
    }

    fn batch(topic: &str, values: &[(i64, &str)]) -> Batch<()> {
        let mut b = Batch::new(topic, 3, None);
        for (offset, v) in values {
            push(&mut b, *offset, v, 1);
        }
        b
    }

    #[test]
    fn a_batch_holds_a_record_read_twice_not_another_at_its_offset() {
        let b = batch("market.underlying", &[(10, "a"), (11, "b")]);
        assert!(b.holds(&message("market.underlying", 3, 11, "b")));
        assert!(
            !b.holds(&message("market.underlying", 3, 11, "x")),
            "the topic was recreated"
        );
        assert!(
            !b.holds(&message("market.underlying", 3, 0, "a")),
            "an offset it never held"
        );
    }

    #[test]
    fn a_token_names_the_topic_the_partition_and_the_offset_range() {
        let b = batch("enriched.option_chain", &[(10, "a"), (11, "b"), (12, "c")]);
        let token = b.token();
        assert!(token.starts_with("enriched.option_chain/3/10-12/"), "{token}");
        assert_eq!((b.first_offset(), b.next_offset()), (Some(10), Some(13)));
    }

    #[test]
    fn the_same_records_give_the_same_token() {
        let a = batch("t", &[(10, "a"), (11, "b")]);
        let again = batch("t", &[(10, "a"), (11, "b")]);
        assert_eq!(a.token(), again.token());
    }

    #[test]
    fn other_records_at_the_same_offsets_give_another_token() {
        // a topic deleted and recreated: the offsets start again, the records are new
        let before = batch("t", &[(0, "old chain"), (1, "old chain 2")]);
        let after = batch("t", &[(0, "new chain"), (1, "old chain 2")]);
        assert_ne!(before.token(), after.token());
        assert_ne!(batch("t", &[(0, "a")]).token(), batch("u", &[(0, "a")]).token());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_due_by_rows_bytes_or_age() {
        let limits = Limits {
            rows: 3,
            bytes: 10,
            age: Duration::from_secs(1),
        };
        let now = Instant::now();
        assert!(!batch("t", &[]).is_due(&limits, now), "an empty batch is never due");
        assert!(!batch("t", &[(1, "a"), (2, "b")]).is_due(&limits, now));
        assert!(batch("t", &[(1, "a"), (2, "b"), (3, "c")]).is_due(&limits, now));
        assert!(batch("t", &[(1, "0123456789")]).is_due(&limits, now));
        let young = batch("t", &[(1, "a")]);
        assert!(young.is_due(&limits, now + Duration::from_secs(1)));
        assert_eq!(young.due_at(&limits), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn a_reformed_batch_is_due_exactly_at_its_recorded_end() {
        let limits = Limits {
            rows: 1,
            bytes: 1,
            age: Duration::ZERO,
        };
        let mut b: Batch<()> = Batch::new("t", 0, Some(12));
        for offset in 10..=12 {
            assert!(!b.is_due(&limits, Instant::now()), "not before offset 12");
            push(&mut b, offset, "x", 0);
        }
        assert!(b.is_due(&limits, Instant::now()) && b.is_whole_reform());
        assert_eq!(b.due_at(&limits), None);
    }

    #[test]
    fn a_reformed_batch_never_grows_past_todays_limits() {
        let limits = Limits {
            rows: 2,
            bytes: 1 << 20,
            age: Duration::ZERO,
        };
        let mut b: Batch<()> = Batch::new("t", 0, Some(12));
        for offset in 10..=11 {
            assert!(!b.is_due(&limits, Instant::now()), "not by age, not below the rows");
            push(&mut b, offset, "x", 1);
        }
        assert!(b.is_due(&limits, Instant::now()), "two rows: today's limit");
        assert!(b.is_reformed() && !b.is_whole_reform(), "a piece of the recorded batch");
        assert_eq!(b.first_digest(), record_digest(&message("t", 0, 10, "x")));
    }

    /// The token of a fixed batch, digit for digit: `ops/check_sql.py` inserts under this
    /// exact token (plus the table) on a current engine, so a change of the format shows there.
    pub const GOLDEN: &str = "enriched.option_chain/3/10-12/9cf76e760d42792c";

    #[test]
    fn the_token_format_is_stable() {
        let b = batch("enriched.option_chain", &[(10, "a"), (11, "b"), (12, "c")]);
        assert_eq!(b.token(), GOLDEN);
    }
}
