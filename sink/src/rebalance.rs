//! Partition movement, handled explicitly (the rust-rdkafka at-least-once example is the
//! model): before partitions are revoked, the offsets of batches ClickHouse already
//! acknowledged are committed; the worker then drops whatever it still holds of them (the
//! new owner reads it again, and re-forms the batches the ledger recorded).

use chainflow_kafka::partitions;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A partition of a topic.
pub type Tp = (String, i32);

/// A change of the assignment, for the worker to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These partitions were assigned.
    Assigned(Vec<Tp>),
    /// These partitions were revoked.
    Revoked(Vec<Tp>),
}

/// The sink's consumer context.
#[derive(Default)]
pub struct SinkContext {
    /// Next offsets of batches ClickHouse acknowledged that are not committed yet.
    written: Mutex<BTreeMap<Tp, i64>>,
    /// Assignment changes the worker has not applied yet, in order.
    changes: Mutex<Vec<Change>>,
}

/// `offsets` as a list to commit.
pub fn commit_list(offsets: &BTreeMap<Tp, i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
            .expect("a valid offset");
    }
    tpl
}

impl SinkContext {
    /// Notes that ClickHouse acknowledged the batch of `tp` ending before `next`.
    pub fn written(&self, tp: Tp, next: i64) {
        self.written.lock().expect("written lock").insert(tp, next);
    }

    /// The acknowledged offsets not committed yet.
    pub fn to_commit(&self) -> BTreeMap<Tp, i64> {
        self.written.lock().expect("written lock").clone()
    }

    /// Forgets `committed` offsets once the broker has them (unless a later batch replaced them).
    pub fn committed(&self, committed: &BTreeMap<Tp, i64>) {
        let mut written = self.written.lock().expect("written lock");
        for (tp, next) in committed {
            if written.get(tp) == Some(next) {
                written.remove(tp);
            }
        }
    }

    /// Forgets what was written of `tp` and not committed: its records are others now (the
    /// partition moved back to an offset it had passed).
    pub fn forget_written(&self, tp: &Tp) {
        self.written.lock().expect("written lock").remove(tp);
    }

    /// The changes of the assignment since the last call.
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().expect("changes lock"))
    }
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked = partitions(tpl);
        let offsets: BTreeMap<Tp, i64> = {
            let mut written = self.written.lock().expect("written lock");
            revoked.iter().filter_map(|tp| written.remove_entry(tp)).collect()
        };
        if !offsets.is_empty() {
            // librdkafka runs this callback inside the consumer's poll and lets the partitions
            // go when it returns: the commit has to happen here, and it may block
            #[allow(
                clippy::disallowed_methods,
                reason = "a commit before revocation must finish inside the callback"
            )]
            let committed = consumer.commit(&commit_list(&offsets), CommitMode::Sync);
            match committed {
                Ok(()) => {
                    tracing::info!(partitions = ?offsets, "committed what was written before the partitions were revoked");
                }
                // not fatal: the new owner reads those batches again, and their tokens (or
                // FINAL) absorb the repeat
                Err(e) => {
                    metrics::counter!("chainflow_sink_commit_errors_total").increment(1);
                    tracing::warn!(error = %e, partitions = ?offsets, "commit before revocation failed; the new owner reads those batches again");
                }
            }
        }
        self.changes
            .lock()
            .expect("changes lock")
            .push(Change::Revoked(revoked));
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self
                .changes
                .lock()
                .expect("changes lock")
                .push(Change::Assigned(partitions(tpl))),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_offsets_are_forgotten_only_once_committed_as_they_were() {
        let ctx = SinkContext::default();
        ctx.written(("t".into(), 0), 10);
        ctx.written(("t".into(), 1), 20);
        let pending = ctx.to_commit();
        ctx.written(("t".into(), 0), 15);
        ctx.committed(&pending);
        assert_eq!(ctx.to_commit(), BTreeMap::from([(("t".into(), 0), 15)]));
        let tpl = commit_list(&ctx.to_commit());
        assert_eq!(tpl.elements()[0].offset(), Offset::Offset(15));
    }
}
