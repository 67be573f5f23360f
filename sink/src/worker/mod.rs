//! The loop of one stream: read, decode, batch per partition, record each batch in the
//! ledger, insert it, commit. A flush's first attempt runs in a task of its own while the
//! loop reads on and the next batches form (one flush in flight at a time: a batch that
//! comes due meanwhile waits for it). What that attempt could not do, the loop does itself:
//! transient failures are retried with backoff while the partitions are paused and the
//! consumer keeps polling (so the group keeps it); permanent ones split the batch until the
//! refused records are isolated and dead-lettered; an assigned partition that lags without
//! progress is a stall, healed by re-joining the group.
//!
//! This file is the loop; each concern is a file of its own, all `impl Worker`: `intake`
//! (a record into its batch), `flush` (batches to the ledger and ClickHouse), `write`
//! (split-and-isolate, dead letters), `retry` (paused retries), `commit` (commits, lag and
//! stalls), `report` (metrics and spans of what was stored).

mod commit;
mod flush;
mod intake;
mod report;
mod retry;
mod write;

use crate::batch::{Batch, Limits};
use crate::ledger::{Ledger, Recorded};
use crate::rebalance::{SinkContext, Tp};
use crate::stall::{measure, StallTracker};
use crate::stream::Stream;
use anyhow::Result;
use chainflow_kafka::Holds;
use chainflow_runtime::{sleep_until, RetryPolicy, StageContext, StageStats, Streak};
use clickhouse::Client;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use commit::Measured;
use flush::{landed, Attempt};
pub use intake::Sequences;

/// How often lag is measured and stalls are looked for, at most (more often when
/// `sink.stall_after_ms` is short).
const LAG_CHECK: Duration = Duration::from_secs(5);
/// Makes a new consumer of the stream's group (not subscribed yet).
pub type ConsumerFactory = Box<dyn Fn() -> Result<Arc<StreamConsumer<SinkContext>>> + Send + Sync>;

/// What the worker needs that never changes while it runs.
pub struct Io<S> {
    /// The stream.
    pub stream: S,
    /// A new consumer, in place of one that holds what a deleted topic left in it.
    pub renew: ConsumerFactory,
    /// ClickHouse, in the configured database.
    pub client: Client,
    /// Producer of dead letters.
    pub dlq: FutureProducer,
    /// The bookkeeping of batches.
    pub ledger: Ledger,
    /// Whether the server takes deduplication tokens (22.2+).
    pub tokens: bool,
    /// Timeout of one insert.
    pub insert_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Links from a batch's span to its records' traces, at most (`otel.max_links`).
    pub max_links: usize,
}

/// One stream's worker.
pub struct Worker<S: Stream> {
    io: Arc<Io<S>>,
    consumer: Arc<StreamConsumer<SinkContext>>,
    topics: Vec<String>,
    limits: Limits,
    stall_after: Duration,
    stats: Arc<StageStats>,
    batches: BTreeMap<Tp, Batch<S::Rows>>,
    /// Per partition, the ledger's batches still to re-form (looked up at its first record
    /// after an assignment).
    recorded: HashMap<Tp, VecDeque<Recorded>>,
    /// Per partition, the offset after the last record read.
    next: HashMap<Tp, i64>,
    /// Progress per partition, for stalls.
    stalls: StallTracker,
    /// Partitions held at a record whose schema id the registry does not know yet.
    holds: Holds,
    /// The assignment is paused while a transient failure is retried.
    paused: bool,
    /// A stall was detected and the group re-joined; ready again on progress.
    stalled: bool,
    /// Since when commits have failed.
    commits_failing: Option<Instant>,
    /// Per partition, the highest offset this worker committed, and when the broker
    /// acknowledged it: the group's committed offset found below it means the partition's
    /// offsets were deleted (its topic deleted, perhaps created again).
    own_commits: HashMap<Tp, (i64, Instant)>,
    /// Until when a stopping worker retries its last writes.
    stop_deadline: Option<Instant>,
    /// The highest `seq` seen per key, for sequence gaps.
    sequences: Sequences,
    /// The first attempt of the flush in flight, if any.
    in_flight: Option<JoinHandle<Attempt<S::Rows>>>,
    /// The partitions of the flush in flight still assigned: one revoked meanwhile is not
    /// marked written when the flush lands (the new owner reads its records again).
    flying: HashSet<Tp>,
}

impl<S: Stream> Worker<S> {
    /// A worker over a subscribed `consumer`.
    pub fn new(
        io: Io<S>,
        consumer: Arc<StreamConsumer<SinkContext>>,
        limits: Limits,
        stall_after: Duration,
        stats: Arc<StageStats>,
    ) -> Self {
        let topics = io.stream.topics();
        Self {
            io: Arc::new(io),
            consumer,
            topics,
            limits,
            stall_after,
            stats,
            batches: BTreeMap::new(),
            recorded: HashMap::new(),
            next: HashMap::new(),
            stalls: StallTracker::default(),
            holds: Holds::default(),
            paused: false,
            stalled: false,
            commits_failing: None,
            own_commits: HashMap::new(),
            stop_deadline: None,
            sequences: Sequences::default(),
            in_flight: None,
            flying: HashSet::new(),
        }
    }

    /// Runs until `ctx` says stop, then writes and commits what it holds.
    pub async fn run(mut self, ctx: &StageContext) -> Result<()> {
        self.announce_metrics();
        // often enough that a stall is seen within the threshold and a half
        let every = LAG_CHECK.min(self.stall_after / 2).max(Duration::from_millis(100));
        let mut measurements = measure(self.consumer.clone(), every);
        let mut read_failing = Streak::default();
        loop {
            self.apply_changes();
            let due = self.batches.values().filter_map(|b| b.due_at(&self.limits)).min();
            let held = self.holds.next_check().filter(|_| !self.paused);
            tokio::select! {
                biased;
                () = ctx.stopped() => break,
                landed = landed(&mut self.in_flight) => self.finish(landed?, ctx).await?,
                () = sleep_until(due), if self.in_flight.is_none() => self.flush(true, ctx).await?,
                () = sleep_until(held) => self.check_holds().await?,
                Some(m) = measurements.recv() => {
                    if self.check_lag(&m, ctx).await? == Measured::Renewed {
                        measurements = measure(self.consumer.clone(), every);
                    }
                }
                m = self.consumer.recv() => match m {
                    Ok(m) => {
                        read_failing.ended();
                        let m = m.detach();
                        self.take(m, ctx).await?;
                        if self.batches.values().any(|b| b.is_due(&self.limits, Instant::now())) {
                            self.flush(true, ctx).await?;
                        }
                    }
                    Err(e) => {
                        metrics::counter!("chainflow_sink_kafka_errors_total", "stream" => S::NAME, "operation" => "read").increment(1);
                        tracing::warn!(stream = S::NAME, error = %e, "reading from Kafka failed; retrying");
                        let Some(pause) = read_failing.failed(&self.io.retry) else {
                            return Err(anyhow::Error::new(e).context(format!(
                                "reading {} kept failing for {} ms (sink.retry.budget_ms)",
                                self.topics.join(", "),
                                self.io.retry.budget.as_millis()
                            )));
                        };
                        tokio::time::sleep(pause).await;
                    }
                },
            }
        }
        self.apply_changes();
        self.flush(false, ctx).await?;
        tracing::info!(stream = S::NAME, "sink stream stopped");
        Ok(())
    }
}
