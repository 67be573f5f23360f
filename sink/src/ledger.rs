//! The sink's bookkeeping (`sink_batches`): each batch's offset range is recorded before its
//! insert, so that after a crash the ranges not yet committed are read again as the same
//! batches, and a retried insert carries the same deduplication token.

use crate::retry::{classify, Failure};
use clickhouse::Client;
use serde::{Deserialize, Serialize};

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
    /// When it was recorded, µs since the epoch (the ReplacingMergeTree version).
    pub recorded_at_us: u64,
}

/// A batch recorded but not committed: it is re-formed before anything else is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct Recorded {
    /// First offset.
    pub first_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// The token it was recorded with.
    pub token: String,
}

/// The ledger of one consumer group.
#[derive(Clone)]
pub struct Ledger {
    client: Client,
    group: String,
}

impl Ledger {
    /// The ledger of `group` in the database of `client`.
    pub fn new(client: Client, group: &str) -> Self {
        Self {
            client,
            group: group.to_string(),
        }
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Records `rows` (one insert for all).
    pub async fn record(&self, rows: &[LedgerRow]) -> Result<(), Failure> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert::<LedgerRow>("sink_batches")
            .await
            .map_err(|e| classify(&e))?;
        for row in rows {
            insert.write(row).await.map_err(|e| classify(&e))?;
        }
        insert.end().await.map_err(|e| classify(&e))
    }

    /// The batches of `topic`/`partition` recorded at or after `from` (the committed offset),
    /// in offset order.
    pub async fn pending(&self, topic: &str, partition: i32, from: i64) -> Result<Vec<Recorded>, Failure> {
        self.client
            .query(
                "SELECT first_offset, last_offset, token FROM sink_batches FINAL \
                 WHERE group_id = ? AND topic = ? AND partition = ? AND first_offset >= ? ORDER BY first_offset",
            )
            .bind(&self.group)
            .bind(topic)
            .bind(partition)
            .bind(from)
            .fetch_all()
            .await
            .map_err(|e| classify(&e))
    }
}
