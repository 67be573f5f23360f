//! Consumer helpers shared by the processors and sinks.

use anyhow::{Context, Result};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::Offset;
use std::time::Duration;

/// Moves every assigned partition back to its committed offset (or the beginning when
/// nothing is committed yet), so records after an aborted transaction or a failed write
/// are read again.
pub fn rewind<C: ConsumerContext, K: Consumer<C>>(consumer: &K) -> Result<()> {
    let committed = consumer
        .committed(Duration::from_secs(30))
        .context("reading committed offsets")?;
    for elem in committed.elements() {
        let offset = match elem.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        consumer
            .seek(elem.topic(), elem.partition(), offset, Duration::from_secs(30))
            .with_context(|| format!("seeking {}[{}] to {offset:?}", elem.topic(), elem.partition()))?;
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
