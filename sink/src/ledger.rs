//! The sink's bookkeeping (`sink_batches`): each batch's offset range is recorded before its
//! insert, so that after a crash the ranges not yet committed are read again as the same
//! batches, and a retried insert carries the same deduplication token.

use chainflow_clickhouse::{classify, insert, timed_out, Failure};
use clickhouse::Client;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A row of `sink_batches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct LedgerRow {
    /// Consumer group of the stream.
    pub group_id: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset of the batch.
    pub first_offset: i64,
    /// Last offset of the batch.
    pub last_offset: i64,
    /// Records in the batch.
    pub records: u32,
    /// Its deduplication token.
    pub token: String,
    /// The digest of its first record (`batch::record_digest`): which records the row
    /// describes, so that it is never used for others at the same offsets.
    pub first_digest: u64,
    /// When it was recorded, µs since the epoch (the ReplacingMergeTree version).
    pub recorded_at_us: u64,
}

/// The `first_offset` of a partition's restart mark: batches recorded before the latest
/// mark are never re-formed (the records at their offsets are others now).
pub const RESTART_MARK: i64 = -1;

/// A batch recorded but not committed: it is re-formed before anything else is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct Recorded {
    /// First offset.
    pub first_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// The token it was recorded with.
    pub token: String,
    /// The digest of its first record; 0 in rows recorded before the column was added.
    pub first_digest: u64,
}

impl Recorded {
    /// Whether the row describes `first`, the record now at its first offset: the same
    /// record, or a row too old to say.
    pub fn describes(&self, first: u64) -> bool {
        self.first_digest == 0 || self.first_digest == first
    }
}

/// The ledger of one consumer group.
#[derive(Clone)]
pub struct Ledger {
    client: Client,
    group: String,
    /// How long one exchange with ClickHouse may take (`sink.insert_timeout_ms`): a server
    /// that stops answering (frozen, or its answers lost) fails the ledger's calls as it
    /// fails an insert, so that they are retried with the partitions paused, instead of
    /// holding the flush until it answers again.
    timeout: Duration,
}

impl Ledger {
    /// The ledger of `group` in the database of `client`, each call given up after `timeout`.
    pub fn new(client: Client, group: &str, timeout: Duration) -> Self {
        Self {
            client,
            group: group.to_string(),
            timeout,
        }
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Records `rows` (one insert for all).
    pub async fn record(&self, rows: &[LedgerRow]) -> Result<(), Failure> {
        insert(&self.client, "sink_batches", rows.iter(), None, self.timeout).await
    }

    /// The batches of `topic`/`partition` recorded at or after `from` (the committed offset)
    /// since the partition's latest restart mark, in offset order.
    pub async fn pending(&self, topic: &str, partition: i32, from: i64) -> Result<Vec<Recorded>, Failure> {
        let query = self
            .client
            .query(
                "SELECT first_offset, last_offset, token, first_digest FROM sink_batches FINAL \
                 WHERE group_id = ? AND topic = ? AND partition = ? AND first_offset >= ? \
                 AND recorded_at_us > (SELECT max(recorded_at_us) FROM sink_batches \
                     WHERE group_id = ? AND topic = ? AND partition = ? AND first_offset = ?) \
                 ORDER BY first_offset",
            )
            .bind(&self.group)
            .bind(topic)
            .bind(partition)
            .bind(from)
            .bind(&self.group)
            .bind(topic)
            .bind(partition)
            .bind(RESTART_MARK)
            .fetch_all();
        match tokio::time::timeout(self.timeout, query).await {
            Ok(answer) => answer.map_err(|e| classify(&e)),
            Err(_) => Err(timed_out(self.timeout)),
        }
    }

    /// Marks `topic`/`partition` restarted: every batch recorded until now is left alone
    /// for good. For a partition read from below its group's committed offset: the topic
    /// was deleted and created again (its offsets start over, under other records), or the
    /// group's offsets were moved back.
    pub async fn restart(&self, topic: &str, partition: i32) -> Result<(), Failure> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.record(&[LedgerRow {
            group_id: self.group.clone(),
            topic: topic.to_string(),
            partition,
            first_offset: RESTART_MARK,
            last_offset: RESTART_MARK,
            records: 0,
            token: String::new(),
            first_digest: 0,
            recorded_at_us: now,
        }])
        .await
    }
}
