//! Consumer helpers shared by the stages.

use crate::{blocking, OFFSETS_TIMEOUT};
use anyhow::{Context, Result};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;

/// Moves every assigned partition back to its committed offset (or the beginning when
/// nothing is committed yet), so records after an aborted transaction or a failed write
/// are read again. A partition revoked meanwhile is left alone: its next owner (this
/// consumer too, after an eager rebalance) starts at the committed offset anyway; a seek
/// that fails because a rebalance moved the assignment under it is not an error.
pub async fn rewind<K, X>(consumer: &Arc<K>) -> Result<()>
where
    K: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let committed = blocking::committed(consumer, OFFSETS_TIMEOUT)
        .await
        .context("reading committed offsets")?;
    let assigned = consumer.assignment().context("reading the assignment")?;
    let mut positions = TopicPartitionList::new();
    for elem in committed.elements() {
        if assigned.find_partition(elem.topic(), elem.partition()).is_none() {
            continue;
        }
        let offset = match elem.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        positions.add_partition_offset(elem.topic(), elem.partition(), offset)?;
    }
    if positions.count() == 0 {
        return Ok(());
    }
    let moved = blocking::seek_partitions(consumer, positions, OFFSETS_TIMEOUT).await;
    let now = consumer.assignment().context("reading the assignment")?;
    let reassigned = partitions(&now) != partitions(&assigned);
    let moved = match moved {
        Ok(moved) => moved,
        Err(e) if reassigned => {
            tracing::info!(error = %e, "a rebalance moved the partitions during the rewind: they start at their committed offsets");
            return Ok(());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("seeking to the committed offsets")),
    };
    for elem in moved.elements() {
        if let Err(e) = elem.error() {
            if now.find_partition(elem.topic(), elem.partition()).is_none() {
                continue; // revoked during the seek
            }
            return Err(anyhow::Error::new(e).context(format!("seeking {}[{}]", elem.topic(), elem.partition())));
        }
    }
    Ok(())
}

/// The partitions of `tpl`, as (topic, partition), sorted.
pub fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    let mut all: Vec<(String, i32)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    all.sort();
    all
}

/// This machine's host name, for client and transactional ids.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
