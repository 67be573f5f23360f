//! The operator's tools, built from the stages' own parts:
//! - [`replay`]: a range of a topic written to ClickHouse through the sink's streams, and
//!   [`reprocess`]: raw chains enriched again on the way;
//! - [`tail`]: a topic decoded to JSON lines;
//! - [`groups`]: consumer groups listed, their lag, and resets of their offsets;
//! - [`redrive`]: dead letters sent back to their source topic.
//!
//! None of them joins a consumer group or moves a live group's offsets, except
//! `groups reset`, which refuses a group that has members. Ranges are
//! `chainflow_kafka::range` spans.

pub mod groups;
pub mod redrive;
pub mod replay;
pub mod reprocess;
pub mod tail;

use anyhow::Result;
use chainflow_kafka::RangeReader;
use rdkafka::message::OwnedMessage;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

/// What a long-running tool has read so far, for its progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records read.
    pub records: AtomicU64,
    /// Bytes read (keys and values).
    pub bytes: AtomicU64,
}

impl Progress {
    /// Counts one record of `bytes`.
    pub fn add(&self, bytes: usize) {
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Records and bytes so far.
    pub fn get(&self) -> (u64, u64) {
        (self.records.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// Bytes of a record's key and value.
pub fn record_bytes<M: rdkafka::Message>(m: &M) -> usize {
    m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len)
}

/// The next record of `reader`, counted in `progress`; `None` at the end of the range or
/// once `stop` is cancelled (`stop.is_cancelled()` tells which).
pub async fn next(
    reader: &mut RangeReader,
    stop: &CancellationToken,
    progress: &Progress,
) -> Result<Option<OwnedMessage>> {
    tokio::select! {
        biased;
        () = stop.cancelled() => Ok(None),
        m = reader.next() => {
            let m = m?;
            if let Some(m) = &m {
                progress.add(record_bytes(m));
            }
            Ok(m)
        }
    }
}
