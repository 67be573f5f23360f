//! Retry: transient failures tried again with backoff, the assignment paused and polled
//! meanwhile (`chainflow_kafka::paused`), within the retry budget and, when the stage is
//! stopping, its share of the shutdown timeout.

use super::Worker;
use crate::rebalance::Tp;
use crate::stream::Stream;
use anyhow::{anyhow, Context, Result};
use chainflow_clickhouse::Failure;
use chainflow_kafka::paused::Waited;
use chainflow_kafka::{blocking, paused, OFFSETS_TIMEOUT};
use chainflow_runtime::{Backoff, StageContext};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use std::future::Future;
use tokio::time::Instant;

/// What a retry does when the stage is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnStop {
    /// Gives up at once: nothing depends on it (reading, decoding), and what was not taken
    /// is read again at the next start.
    Abandon,
    /// Keeps trying until most of the shutdown timeout is spent (writing what was read),
    /// then fails the stage: nothing it holds is committed.
    Finish,
}

/// Share of the shutdown timeout a stopping sink spends retrying its last writes.
pub(super) const STOPPING_SHARE: f64 = 0.8;

impl<S: Stream> Worker<S> {
    /// Tries `attempt` until it succeeds; transient failures are retried with backoff, the
    /// assignment paused and the consumer polled meanwhile. `None` when `tp` was revoked
    /// before success, or the stage is stopping and `on_stop` abandons; an error when the
    /// retry budget is spent, or a stopping stage's share of the shutdown timeout.
    pub(super) async fn retry<T, F, Fut>(
        &mut self,
        ctx: &StageContext,
        what: &str,
        tp: Option<&Tp>,
        on_stop: OnStop,
        mut attempt: F,
    ) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut backoff: Option<Backoff> = None;
        loop {
            let failure = match attempt().await {
                Ok(v) => {
                    if backoff.is_some() {
                        self.resume(ctx).await?;
                        tracing::info!(stream = S::NAME, what, "recovered: partitions resumed");
                    }
                    return Ok(Some(v));
                }
                Err(f) => f,
            };
            if ctx.is_stopping() {
                let deadline = *self
                    .stop_deadline
                    .get_or_insert_with(|| Instant::now() + ctx.shutdown_timeout().mul_f64(STOPPING_SHARE));
                if on_stop == OnStop::Abandon {
                    return Ok(None);
                }
                if Instant::now() >= deadline {
                    return Err(anyhow!(failure).context(format!(
                        "{what} still failing when the shutdown timeout ran out; what the stream held was not \
                         committed and will be read again"
                    )));
                }
            }
            let backoff = backoff.get_or_insert_with(|| self.io.retry.backoff());
            if !self.paused {
                self.pause(ctx)?;
            }
            metrics::counter!("chainflow_sink_retries_total", "stream" => S::NAME).increment(1);
            let Some(delay) = backoff.delay() else {
                return Err(anyhow!(failure).context(format!(
                    "{what} kept failing for {} ms (sink.retry.budget_ms)",
                    self.io.retry.budget.as_millis()
                )));
            };
            tracing::warn!(stream = S::NAME, what, error = %failure, retry_in_ms = delay.as_millis() as u64, "transient failure; partitions paused");
            let consumer = self.consumer.clone();
            let abandon = async {
                match on_stop {
                    OnStop::Abandon => ctx.stopped().await,
                    OnStop::Finish => std::future::pending().await,
                }
            };
            let waited = paused::wait(&consumer, delay, abandon, || {
                self.apply_changes();
                tp.is_some_and(|tp| !self.is_assigned(tp))
            })
            .await;
            match waited {
                Waited::Slept => {}
                Waited::Stopped => return Ok(None),
                Waited::Ended => {
                    self.resume(ctx).await?;
                    return Ok(None);
                }
            }
        }
    }

    pub(super) fn is_assigned(&self, tp: &Tp) -> bool {
        self.consumer
            .assignment()
            .is_ok_and(|a| a.elements().iter().any(|e| e.topic() == tp.0 && e.partition() == tp.1))
    }

    /// Pauses every assigned partition.
    pub(super) fn pause(&mut self, ctx: &StageContext) -> Result<()> {
        let count = paused::pause(&*self.consumer)?;
        self.paused = true;
        ctx.set_ready(false);
        metrics::gauge!("chainflow_sink_paused_partitions", "stream" => S::NAME).set(count as f64);
        Ok(())
    }

    /// Moves every assigned partition back to the record after the last one taken (what
    /// arrived while paused was dropped), and resumes them.
    pub(super) async fn resume(&mut self, ctx: &StageContext) -> Result<()> {
        if !self.paused {
            return Ok(());
        }
        let assignment = self.consumer.assignment().context("reading the assignment")?;
        let committed = blocking::committed(&self.consumer, OFFSETS_TIMEOUT)
            .await
            .context("reading committed offsets to resume")?;
        let mut positions = TopicPartitionList::new();
        for e in assignment.elements() {
            let tp: Tp = (e.topic().to_string(), e.partition());
            let at = match self.next.get(&tp) {
                Some(&n) => Offset::Offset(n),
                None => committed
                    .find_partition(e.topic(), e.partition())
                    .map(|c| c.offset())
                    .filter(|o| matches!(o, Offset::Offset(_)))
                    .unwrap_or(Offset::Beginning),
            };
            positions.add_partition_offset(e.topic(), e.partition(), at)?;
        }
        paused::resume(&self.consumer, positions, &self.holds).await?;
        self.paused = false;
        ctx.set_ready(!self.stalled);
        metrics::gauge!("chainflow_sink_paused_partitions", "stream" => S::NAME).set(0.0);
        Ok(())
    }
}
