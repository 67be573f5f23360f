//! Consumer helpers shared by the stages.

use crate::blocking;
use anyhow::{Context, Result};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

/// How long a consumer waits for the broker's answer about offsets.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

/// Moves every assigned partition back to its committed offset (or the beginning when
/// nothing is committed yet), so records after an aborted transaction or a failed write
/// are read again.
pub async fn rewind<K, X>(consumer: &Arc<K>) -> Result<()>
where
    K: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let committed = blocking::committed(consumer, OFFSETS_TIMEOUT)
        .await
        .context("reading committed offsets")?;
    let mut positions = TopicPartitionList::new();
    for elem in committed.elements() {
        let offset = match elem.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        positions.add_partition_offset(elem.topic(), elem.partition(), offset)?;
    }
    let moved = blocking::seek_partitions(consumer, positions, OFFSETS_TIMEOUT)
        .await
        .context("seeking to the committed offsets")?;
    for elem in moved.elements() {
        if let Err(e) = elem.error() {
            return Err(anyhow::Error::new(e).context(format!("seeking {}[{}]", elem.topic(), elem.partition())));
        }
    }
    Ok(())
}

/// This machine's host name, for client and transactional ids.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
