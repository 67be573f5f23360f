//! Waiting out a failure with the partitions paused, written once for the sink and enrich:
//! [`pause`] the assignment, [`wait`] each of the backoff's delays while polling (so the
//! group keeps the member and runs its rebalance callbacks; what arrives meanwhile is
//! dropped and read again), then [`resume`] at the positions the caller chose (the sink's
//! next records, or none when the caller rewinds to the committed offsets itself), with the
//! held partitions paused again. The delays are `chainflow_runtime::Backoff`'s.

use crate::{blocking, Holds};
use anyhow::{Context, Result};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::TopicPartitionList;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a question to the broker about offsets (committed offsets, seeks, watermarks,
/// offsets for times) may take, for every consumer of the project: a broker that answers
/// does so well within it; one that does not is the caller's failure to retry.
pub const OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The delay passed.
    Slept,
    /// The stop future completed first.
    Stopped,
    /// The caller's check after a poll ended it.
    Ended,
}

/// Pauses every assigned partition; how many there are.
pub fn pause<K: Consumer<X>, X: ConsumerContext>(consumer: &K) -> Result<usize> {
    let assignment = consumer.assignment().context("reading the assignment")?;
    consumer.pause(&assignment).context("pausing the partitions")?;
    Ok(assignment.count())
}

/// Sleeps `delay` while polling `consumer`, whose partitions are paused, until `stop`
/// completes, or `polled` (run after each poll, where the rebalance callbacks have run)
/// returns true.
pub async fn wait<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    delay: Duration,
    stop: impl Future<Output = ()>,
    mut polled: impl FnMut() -> bool,
) -> Waited {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep, stop);
    loop {
        tokio::select! {
            () = &mut sleep => return Waited::Slept,
            () = &mut stop => return Waited::Stopped,
            m = consumer.recv() => if let Err(e) = m {
                tracing::debug!(error = %e, "read error while paused");
            },
        }
        if polled() {
            return Waited::Ended;
        }
    }
}

/// Moves the partitions of `positions` there (a paused consumer dropped what it read
/// meanwhile), resumes the assignment and pauses the partitions `holds` keeps again.
pub async fn resume<K, X>(consumer: &Arc<K>, positions: TopicPartitionList, holds: &Holds) -> Result<()>
where
    K: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    if positions.count() > 0 {
        blocking::seek_partitions(consumer, positions, OFFSETS_TIMEOUT)
            .await
            .context("seeking back before resuming")?;
    }
    let assignment = consumer.assignment().context("reading the assignment")?;
    consumer.resume(&assignment).context("resuming the partitions")?;
    holds.repause(&**consumer);
    Ok(())
}
