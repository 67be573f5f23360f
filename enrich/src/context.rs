//! The enricher's consumer context: it notes that partitions were revoked, so that the
//! batch (or transaction) in progress is abandoned instead of committed for partitions
//! another member now owns.

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use std::sync::atomic::{AtomicBool, Ordering};

/// Notes revocations for the worker.
#[derive(Debug, Default)]
pub struct EnrichContext {
    revoked: AtomicBool,
}

impl EnrichContext {
    /// Whether partitions were revoked since the last call.
    pub fn take_revoked(&self) -> bool {
        self.revoked.swap(false, Ordering::AcqRel)
    }
}

impl ClientContext for EnrichContext {}

impl ConsumerContext for EnrichContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            metrics::counter!("chainflow_enrich_rebalances_total", "change" => "revoked").increment(1);
            if tpl.count() > 0 {
                tracing::info!(
                    partitions = tpl.count(),
                    "partitions revoked: the open batch is abandoned"
                );
                self.revoked.store(true, Ordering::Release);
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            metrics::counter!("chainflow_enrich_rebalances_total", "change" => "assigned").increment(1);
            tracing::info!(partitions = ?chainflow_kafka::partitions(tpl), "partitions assigned");
        }
    }
}
