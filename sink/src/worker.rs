//! The loop of one stream: read, decode, batch per partition, record each batch in the
//! ledger, insert it, commit. A flush's first attempt runs in a task of its own while the
//! loop reads on and the next batches form (one flush in flight at a time: a batch that
//! comes due meanwhile waits for it). What that attempt could not do, the loop does itself:
//! transient failures are retried with backoff while the partitions are paused and the
//! consumer keeps polling (so the group keeps it); permanent ones split the batch until the
//! refused records are isolated and dead-lettered; an assigned partition that lags without
//! progress is a stall, healed by re-joining the group.

use crate::batch::{Batch, Entry, Limits};
use crate::ledger::{Ledger, LedgerRow, Recorded};
use crate::rebalance::{commit_list, Change, SinkContext, Tp};
use crate::stall::{measure, Measurement, StallTracker};
use crate::stream::{Reject, Stream};
use anyhow::{anyhow, Context, Result};
use chainflow_clickhouse::Failure;
use chainflow_contract::topics::HEADER_PRODUCED_AT;
use chainflow_kafka::{blocking, trace, DeadLetter, Holds};
use chainflow_runtime::Class;
use chainflow_runtime::{sleep_until, Backoff, RetryPolicy, StageContext, StageStats};
use clickhouse::Client;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often lag is measured and stalls are looked for, at most (more often when
/// `sink.stall_after_ms` is short).
const LAG_CHECK: Duration = Duration::from_secs(5);
/// How long a question to the broker about offsets may take.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long producing a dead letter may take before it is retried.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the worker needs that never changes while it runs.
pub struct Io<S> {
    /// The stream.
    pub stream: S,
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

/// What a flush's first attempt did: the batches recorded in the ledger, then inserted once
/// (`first_attempt`).
struct Attempt<R> {
    /// The ledger rows of the batches (re-formed batches have none).
    rows: Vec<LedgerRow>,
    /// Whether the ledger took them; when not, nothing was inserted.
    recorded: bool,
    /// Each batch, in order.
    batches: Vec<Tried<R>>,
}

/// A batch of a flush's first attempt.
struct Tried<R> {
    batch: Batch<R>,
    /// ClickHouse acknowledged it; if not, it was not tried (the ledger or an earlier insert
    /// failed) or its insert failed.
    stored: bool,
    /// How long its insert took, failed or not.
    took: Duration,
}

/// Waits for the flush in flight and clears it; never ready when there is none.
async fn landed<R>(in_flight: &mut Option<JoinHandle<Attempt<R>>>) -> Result<Attempt<R>> {
    let Some(task) = in_flight else {
        return std::future::pending().await;
    };
    let attempt = task.await.context("a flush's task failed");
    *in_flight = None;
    attempt
}

/// What a retry does when the stage is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnStop {
    /// Gives up at once: nothing depends on it (reading, decoding), and what was not taken
    /// is read again at the next start.
    Abandon,
    /// Keeps trying until most of the shutdown timeout is spent (writing what was read),
    /// then fails the stage: nothing it holds is committed.
    Finish,
}

/// Counts records ClickHouse acknowledged: out of their topic, the pipeline latency from
/// their production stamp, how far behind the market the newest one is, and their rows; and
/// continues the trace of each sampled one under the batch's `span`.
fn stored<S: Stream>(
    stats: &StageStats,
    span: &tracing::Span,
    topic: &str,
    entries: &[&Entry<S::Rows>],
    rows: &[&S::Rows],
) {
    StageStats::add(&stats.records_out, entries.len() as u64);
    metrics::counter!("chainflow_records_out_total", "stage" => S::STAGE, "topic" => topic.to_string())
        .increment(entries.len() as u64);
    metrics::counter!("chainflow_sink_records_total", "stream" => S::NAME, "outcome" => "stored")
        .increment(entries.len() as u64);
    let count: usize = rows.iter().map(|r| S::row_count(r)).sum();
    metrics::counter!("chainflow_sink_rows_total", "stream" => S::NAME).increment(count as u64);
    for e in entries.iter().filter(|e| trace::is_sampled(&e.message)) {
        let stored = tracing::info_span!(parent: span, "sink.store", offset = e.message.offset(), trace_id = tracing::field::Empty);
        trace::continue_trace(&stored, &e.message);
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    let latency = metrics::histogram!("chainflow_pipeline_latency_seconds", "stream" => S::NAME);
    for e in entries {
        if let Some(at) = produced_at(&e.message) {
            latency.record((now_us - at).max(0) as f64 / 1e6);
        }
    }
    if let Some(newest) = rows.iter().filter_map(|r| S::event_time_us(r)).max() {
        metrics::gauge!("chainflow_event_time_lag_seconds", "stream" => S::NAME).set((now_us - newest) as f64 / 1e6);
    }
}

/// The records of `batch` that have rows (the others were dead-lettered on the way in), and
/// the batch's span, linked to the traces of its records (when traces are exported).
fn batch_span<'a, R>(stream: &str, batch: &'a Batch<R>, max_links: usize) -> (Vec<&'a Entry<R>>, tracing::Span) {
    let entries: Vec<&Entry<R>> = batch.entries().iter().filter(|e| e.rows.is_some()).collect();
    let span = tracing::info_span!("sink.batch", stream, topic = %batch.topic, partition = batch.partition, records = entries.len());
    trace::link_all(&span, entries.iter().map(|e| &e.message), max_links);
    (entries, span)
}

/// Inserts the records of `batches` in one insert per table (under the batch's token when
/// there is one batch and the server takes tokens), then counts them as stored, per batch.
async fn insert_together<S: Stream>(io: &Io<S>, stats: &StageStats, batches: &[Batch<S::Rows>]) -> Result<(), Failure> {
    let parts: Vec<_> = batches
        .iter()
        .map(|b| {
            let (entries, span) = batch_span(S::NAME, b, io.max_links);
            let rows: Vec<&S::Rows> = entries.iter().filter_map(|e| e.rows.as_ref()).collect();
            (entries, span, rows)
        })
        .collect();
    let records: Vec<&S::Rows> = parts.iter().flat_map(|(_, _, rows)| rows.iter().copied()).collect();
    let token = match batches {
        [one] if io.tokens => Some(one.token()),
        _ => None,
    };
    io.stream
        .insert(&io.client, &records, token.as_deref(), io.insert_timeout)
        .await?;
    for ((entries, span, rows), batch) in parts.iter().zip(batches) {
        stored::<S>(stats, span, &batch.topic, entries, rows);
    }
    Ok(())
}

/// A flush's first attempt, run in a task of its own: records `rows` in the ledger, then
/// inserts the batches. A server that takes deduplication tokens (22.2+) gets one insert per
/// batch, under its token, until one fails; an older one gets all of them in one insert per
/// table (it cannot deduplicate by token anyway, `FINAL` absorbs repeats, and each insert
/// costs it a part per table). What failed, the loop writes again itself, batch by batch,
/// with retries.
async fn first_attempt<S: Stream>(
    io: Arc<Io<S>>,
    stats: Arc<StageStats>,
    rows: Vec<LedgerRow>,
    batches: Vec<Batch<S::Rows>>,
) -> Attempt<S::Rows> {
    let recorded = io.ledger.record(&rows).await.is_ok();
    let inserts: Vec<Vec<Batch<S::Rows>>> = if io.tokens {
        batches.into_iter().map(|b| vec![b]).collect()
    } else {
        vec![batches]
    };
    let mut failed = !recorded;
    let mut out = Vec::new();
    for batches in inserts {
        let started = Instant::now();
        let stored = !failed
            && match insert_together(&io, &stats, &batches).await {
                Ok(()) => true,
                Err(failure) => {
                    tracing::debug!(stream = S::NAME, error = %failure, "the flush's first insert failed: written again with retries");
                    false
                }
            };
        failed = !stored;
        let took = started.elapsed();
        out.extend(batches.into_iter().map(|batch| Tried { batch, stored, took }));
    }
    Attempt {
        rows,
        recorded,
        batches: out,
    }
}

/// The feed's production stamp of `msg` (`chainflow.produced_at_us`), µs.
fn produced_at(msg: &OwnedMessage) -> Option<i64> {
    chainflow_kafka::header(msg, HEADER_PRODUCED_AT)?.parse().ok()
}

/// The highest `seq` seen per key: a record that skips ahead of it is a gap. A key starting
/// again at 1 is a feed that restarted; anything else at or below it is a redelivery or a
/// replay, not a gap.
#[derive(Debug, Default)]
pub struct Sequences(HashMap<String, i64>);

impl Sequences {
    /// Notes `seq` for `key`; `Some(expected)` when records between were never seen.
    pub fn gap(&mut self, key: &str, seq: i64) -> Option<i64> {
        let Some(last) = self.0.get_mut(key) else {
            self.0.insert(key.to_string(), seq);
            return None;
        };
        let expected = *last + 1;
        if seq == 1 || seq > *last {
            *last = seq;
        }
        (seq > expected).then_some(expected)
    }
}

/// Share of the shutdown timeout a stopping sink spends retrying its last writes.
const STOPPING_SHARE: f64 = 0.8;

/// What became of a batch.
enum Written {
    /// Stored (or refused records dead-lettered): its offsets can be committed.
    Done,
    /// Its partition was revoked first: nothing of it is committed.
    Abandoned,
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
        let mut read_failing: Option<Instant> = None;
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
                Some(m) = measurements.recv() => self.check_lag(&m, ctx).await?,
                m = self.consumer.recv() => match m {
                    Ok(m) => {
                        read_failing = None;
                        let m = m.detach();
                        self.take(m, ctx).await?;
                        if self.batches.values().any(|b| b.is_due(&self.limits, Instant::now())) {
                            self.flush(true, ctx).await?;
                        }
                    }
                    Err(e) => {
                        let since = *read_failing.get_or_insert_with(Instant::now);
                        metrics::counter!("chainflow_sink_kafka_errors_total", "stream" => S::NAME, "operation" => "read").increment(1);
                        tracing::warn!(stream = S::NAME, error = %e, "reading from Kafka failed; retrying");
                        if since.elapsed() > self.io.retry.budget {
                            return Err(anyhow::Error::new(e).context(format!(
                                "reading {} kept failing for {} ms (sink.retry.budget_ms)",
                                self.topics.join(", "),
                                self.io.retry.budget.as_millis()
                            )));
                        }
                        tokio::time::sleep(self.io.retry.initial).await;
                    }
                },
            }
        }
        self.apply_changes();
        self.flush(false, ctx).await?;
        tracing::info!(stream = S::NAME, "sink stream stopped");
        Ok(())
    }

    /// Shows the stream's event counters at 0 from the start (a rate needs a first sample).
    fn announce_metrics(&self) {
        let stream = S::NAME;
        metrics::counter!("chainflow_sink_retries_total", "stream" => stream).increment(0);
        metrics::counter!("chainflow_sink_stalls_total", "stream" => stream).increment(0);
        metrics::counter!("chainflow_sink_kafka_errors_total", "stream" => stream, "operation" => "read").increment(0);
        metrics::counter!("chainflow_sink_commit_errors_total").increment(0);
        metrics::counter!("chainflow_unknown_schema_waits_total", "stage" => S::STAGE).increment(0);
        metrics::gauge!("chainflow_sink_paused_partitions", "stream" => stream).set(0.0);
        for topic in &self.topics {
            metrics::counter!("chainflow_records_in_total", "stage" => S::STAGE, "topic" => topic.clone()).increment(0);
            metrics::counter!("chainflow_records_out_total", "stage" => S::STAGE, "topic" => topic.clone())
                .increment(0);
            metrics::counter!("chainflow_sequence_gaps_total", "topic" => topic.clone()).increment(0);
        }
    }

    /// Tries the held records again; releases the partitions whose record can now be
    /// decoded (or, its grace over, dead-lettered), so that it is read again.
    async fn check_holds(&mut self) -> Result<()> {
        for msg in self.holds.due(Instant::now()) {
            if !matches!(
                self.io.stream.decode(&msg).await,
                Err(Reject::Held(_) | Reject::Transient(_))
            ) {
                tracing::info!(
                    stream = S::NAME,
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "held partition released"
                );
                self.holds.release(&self.consumer, &msg).await?;
            }
        }
        Ok(())
    }

    /// Applies the assignment changes the rebalance callbacks noted.
    fn apply_changes(&mut self) {
        for change in self.consumer.context().take_changes() {
            match change {
                Change::Revoked(tps) => {
                    for tp in &tps {
                        self.flying.remove(tp);
                        if let Some(b) = self.batches.remove(tp) {
                            if !b.is_empty() {
                                tracing::info!(stream = S::NAME, topic = %tp.0, partition = tp.1, records = b.entries().len(), "partition revoked: its unwritten records are left to the new owner");
                            }
                        }
                        self.recorded.remove(tp);
                        self.next.remove(tp);
                        self.holds.forget(&tp.0, tp.1);
                        metrics::gauge!("chainflow_sink_consumer_lag", "stream" => S::NAME, "topic" => tp.0.clone(), "partition" => tp.1.to_string()).set(0.0);
                    }
                }
                Change::Assigned(tps) => {
                    tracing::info!(stream = S::NAME, partitions = ?tps, "partitions assigned");
                    for tp in &tps {
                        self.recorded.remove(tp);
                    }
                    if self.paused {
                        let mut tpl = TopicPartitionList::new();
                        for (t, p) in &tps {
                            tpl.add_partition(t, *p);
                        }
                        if let Err(e) = self.consumer.pause(&tpl) {
                            tracing::warn!(error = %e, "pausing newly assigned partitions failed");
                        }
                    }
                }
            }
        }
    }

    /// Adds one record to its partition's batch (decoding it, or dead-lettering it).
    async fn take(&mut self, msg: OwnedMessage, ctx: &StageContext) -> Result<()> {
        // the poll that returned `msg` may have run rebalance callbacks: what they changed
        // applies before it (a re-assigned partition starts again from its committed offset)
        self.apply_changes();
        let tp: Tp = (msg.topic().to_string(), msg.partition());
        let offset = msg.offset();
        if self.next.get(&tp).is_some_and(|&n| offset < n) {
            return Ok(()); // already read: a fetch that raced a seek
        }
        if self.holds.skips(&msg) {
            return Ok(()); // its partition is held at an earlier record
        }
        StageStats::add(&self.stats.records_in, 1);
        metrics::counter!("chainflow_records_in_total", "stage" => S::STAGE, "topic" => tp.0.clone()).increment(1);
        if !self.recorded.contains_key(&tp) {
            let pending = self.recorded_batches(&tp, &msg, ctx).await?;
            self.recorded.insert(tp.clone(), pending.into());
        }
        let io = self.io.clone();
        let (io, message) = (&io, &msg);
        let decoded = self
            .retry(
                ctx,
                "decoding through the Schema Registry",
                Some(&tp),
                OnStop::Abandon,
                || async move {
                    match io.stream.decode(message).await {
                        Err(Reject::Transient(why)) => Err(Failure {
                            class: Class::Transient,
                            code: None,
                            message: why,
                        }),
                        other => Ok(other),
                    }
                },
            )
            .await?;
        let Some(decoded) = decoded else {
            return Ok(()); // revoked while the registry was away
        };
        let rows = match decoded {
            Ok(rows) => Some(rows),
            Err(Reject::Permanent { kind, message }) => {
                self.dead_letter(&msg, kind, &message, ctx).await?;
                None
            }
            Err(Reject::Held(id)) => {
                tracing::warn!(
                    stream = S::NAME,
                    id,
                    topic = %tp.0,
                    partition = tp.1,
                    offset,
                    "schema id {id} is not known to the registry (yet): partition held, for up to \
                     registry.unknown_id_grace_ms"
                );
                self.holds.hold(&*self.consumer, msg);
                return Ok(());
            }
            Err(Reject::Transient(_)) => unreachable!("transient rejections are retried above"),
        };
        if let Some((key, seq)) = rows.as_ref().and_then(S::sequence) {
            if let Some(expected) = self.sequences.gap(&key, seq) {
                metrics::counter!("chainflow_sequence_gaps_total", "topic" => tp.0.clone()).increment(1);
                tracing::warn!(stream = S::NAME, topic = %tp.0, key = %key, expected, seq, offset, "sequence gap: records of this key are missing upstream");
            }
        }
        let recorded = self.recorded.entry(tp.clone()).or_default();
        let batch = self.batches.entry(tp.clone()).or_insert_with(|| {
            // a batch the ledger recorded starting here is formed again exactly
            while recorded.front().is_some_and(|r| r.first_offset < offset) {
                recorded.pop_front();
            }
            let end = recorded
                .front()
                .filter(|r| r.first_offset == offset)
                .map(|r| r.last_offset);
            Batch::new(&tp.0, tp.1, end)
        });
        let (count, bytes) = (
            rows.as_ref().map_or(0, S::row_count),
            msg.key().map_or(0, <[u8]>::len) + msg.payload().map_or(0, <[u8]>::len),
        );
        batch.push(Entry { message: msg, rows }, count, bytes);
        self.next.insert(tp, offset + 1);
        Ok(())
    }

    /// The batches the ledger recorded for `tp` from `msg` on (the first record read since
    /// the partition was assigned), to be re-formed; none when they belong to a topic that
    /// was deleted and created again (its offsets start over, under other records), and
    /// then the partition's ledger is marked restarted, so that they are never re-formed
    /// later either. Recreation is seen two ways: the partition is read from below the
    /// group's committed offset (a broker that keeps a deleted topic's offsets, or offsets
    /// moved back), or, the group having no committed offset (Apache Kafka deletes them
    /// with the topic), the record was written after every recorded batch was recorded.
    async fn recorded_batches(&mut self, tp: &Tp, msg: &OwnedMessage, ctx: &StageContext) -> Result<Vec<Recorded>> {
        let ledger = self.io.ledger.clone();
        let (ledger, topic, partition, offset) = (&ledger, tp.0.as_str(), tp.1, msg.offset());
        let pending = self
            .retry(ctx, "reading the ledger", None, OnStop::Abandon, || {
                ledger.pending(topic, partition, offset)
            })
            .await?
            .unwrap_or_default();
        if pending.is_empty() {
            return Ok(pending);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let committed = blocking::committed_offsets(&self.consumer, tpl, OFFSETS_TIMEOUT)
            .await
            .ok()
            .and_then(|c| match c.find_partition(topic, partition)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let written_us = msg.timestamp().to_millis().map(|ms| ms.saturating_mul(1000));
        let newest_us = pending.iter().map(|r| r.recorded_at_us).max().unwrap_or(0);
        let recreated = match committed {
            Some(c) => offset < c,
            None => written_us.is_some_and(|w| w > newest_us as i64),
        };
        if !recreated {
            tracing::info!(
                stream = S::NAME,
                topic,
                partition,
                batches = pending.len(),
                "re-forming batches recorded but not committed"
            );
            return Ok(pending);
        }
        tracing::warn!(
            stream = S::NAME,
            topic,
            partition,
            offset,
            ?committed,
            "the partition was recreated (or its offsets moved back): the batches recorded before are not re-formed"
        );
        self.retry(ctx, "marking the ledger restarted", None, OnStop::Abandon, || {
            ledger.restart(topic, partition)
        })
        .await?;
        Ok(Vec::new())
    }

    /// Lands the flush in flight, then starts one of every batch but re-formed ones that have
    /// not reached their end: when one of them is due, or always with `due_only` false (the
    /// worker is stopping or re-joining its group), and then lands that one too.
    async fn flush(&mut self, due_only: bool, ctx: &StageContext) -> Result<()> {
        self.land(ctx).await?;
        self.start(due_only).await?;
        if !due_only {
            self.land(ctx).await?;
        }
        Ok(())
    }

    /// Waits for the flush in flight, if any, and finishes it.
    async fn land(&mut self, ctx: &StageContext) -> Result<()> {
        if self.in_flight.is_none() {
            return Ok(());
        }
        let attempt = landed(&mut self.in_flight).await?;
        self.finish(attempt, ctx).await
    }

    /// Starts the first attempt of a flush of the batches that are ready (see `flush`); only
    /// commits when there is none.
    async fn start(&mut self, due_only: bool) -> Result<()> {
        let now = Instant::now();
        if due_only && !self.batches.values().any(|b| b.is_due(&self.limits, now)) {
            return self.commit().await;
        }
        // every partition's batch goes with the one that is due: one ledger insert (and, on
        // servers without tokens, one insert per table) per flush rather than per partition
        let ready: Vec<Tp> = self
            .batches
            .iter()
            .filter(|(_, b)| !b.is_empty() && (!b.is_reformed() || b.is_due(&self.limits, now)))
            .map(|(tp, _)| tp.clone())
            .collect();
        if ready.is_empty() {
            return self.commit().await;
        }
        let batches: Vec<Batch<S::Rows>> = ready.iter().filter_map(|tp| self.batches.remove(tp)).collect();
        let recorded_at_us = chrono::Utc::now().timestamp_micros().max(0) as u64;
        let rows: Vec<LedgerRow> = batches
            .iter()
            .filter(|b| !b.is_reformed())
            .map(|b| LedgerRow {
                group_id: self.io.ledger.group().to_string(),
                topic: b.topic.clone(),
                partition: b.partition,
                first_offset: b.first_offset().unwrap_or(-1),
                last_offset: b.last_offset().unwrap_or(-1),
                records: b.entries().len() as u32,
                token: b.token(),
                recorded_at_us,
            })
            .collect();
        for batch in &batches {
            let tp: Tp = (batch.topic.clone(), batch.partition);
            if let Some(end) = batch.is_reformed().then(|| batch.next_offset()).flatten() {
                let recorded = self.recorded.get_mut(&tp).and_then(VecDeque::pop_front);
                if let Some(r) = recorded.filter(|r| r.token != batch.token()) {
                    tracing::warn!(stream = S::NAME, topic = %tp.0, partition = tp.1, recorded = %r.token, now = %batch.token(),
                        "the records of a re-formed batch differ from those recorded (topic recreated?): written under the new token");
                }
                tracing::info!(stream = S::NAME, topic = %tp.0, partition = tp.1, token = %batch.token(), next = end, "re-formed batch written again");
            }
            self.flying.insert(tp);
        }
        let work = first_attempt(self.io.clone(), self.stats.clone(), rows, batches);
        self.in_flight = Some(tokio::spawn(work));
        Ok(())
    }

    /// Finishes a flush whose first attempt has landed: writes, with retries, what it could
    /// not (the ledger rows, then every batch from the one that failed); marks the batches of
    /// partitions still assigned written, and commits.
    async fn finish(&mut self, attempt: Attempt<S::Rows>, ctx: &StageContext) -> Result<()> {
        // revocations noted while it was in flight take effect first
        self.apply_changes();
        let Attempt {
            rows,
            recorded,
            batches,
        } = attempt;
        if !recorded {
            let ledger = self.io.ledger.clone();
            let (ledger, rows) = (&ledger, &rows);
            if self
                .retry(ctx, "recording batches in the ledger", None, OnStop::Finish, || {
                    ledger.record(rows)
                })
                .await?
                .is_none()
            {
                self.flying.clear();
                return Ok(());
            }
        }
        for Tried { batch, stored, took } in batches {
            let tp: Tp = (batch.topic.clone(), batch.partition);
            if !self.flying.contains(&tp) {
                continue; // revoked meanwhile: the new owner reads it again
            }
            let took = if stored {
                took
            } else {
                let started = Instant::now();
                match self.write(&batch, ctx).await? {
                    Written::Done => took + started.elapsed(),
                    Written::Abandoned => continue,
                }
            };
            if let Some(next) = batch.next_offset() {
                self.consumer.context().written(tp, next);
            }
            metrics::histogram!("chainflow_sink_batch_rows", "stream" => S::NAME).record(batch.rows() as f64);
            metrics::histogram!("chainflow_sink_batch_bytes", "stream" => S::NAME).record(batch.bytes() as f64);
            metrics::histogram!("chainflow_sink_flush_seconds", "stream" => S::NAME).record(took.as_secs_f64());
        }
        self.flying.clear();
        self.commit().await
    }

    /// Inserts `batch`; transient failures are retried, permanent ones isolate the refused
    /// records by halving, and those are dead-lettered (or, for dead letters, skipped).
    async fn write(&mut self, batch: &Batch<S::Rows>, ctx: &StageContext) -> Result<Written> {
        let tp: Tp = (batch.topic.clone(), batch.partition);
        let token = batch.token();
        let (entries, span) = batch_span(S::NAME, batch, self.io.max_links);
        let mut pieces: Vec<(usize, usize)> = vec![(0, entries.len())];
        while let Some((from, to)) = pieces.pop() {
            if from == to {
                continue;
            }
            let records: Vec<&S::Rows> = entries[from..to].iter().filter_map(|e| e.rows.as_ref()).collect();
            let piece_token = if (from, to) == (0, entries.len()) {
                token.clone()
            } else {
                format!(
                    "{token}/{}-{}",
                    entries[from].message.offset(),
                    entries[to - 1].message.offset()
                )
            };
            let io = self.io.clone();
            let (io, records, piece_token) = (&io, &records, &piece_token);
            let attempt = || {
                io.stream.insert(
                    &io.client,
                    records,
                    io.tokens.then_some(piece_token.as_str()),
                    io.insert_timeout,
                )
            };
            let outcome = self.retry_insert(ctx, &tp, attempt).await?;
            match outcome {
                None => return Ok(Written::Abandoned),
                Some(Ok(())) => stored::<S>(&self.stats, &span, &tp.0, &entries[from..to], records),
                Some(Err(refused)) if to - from > 1 => {
                    tracing::warn!(stream = S::NAME, topic = %tp.0, partition = tp.1, records = to - from, error = %refused, "ClickHouse refused a batch: splitting it to isolate the refused records");
                    let mid = from + (to - from) / 2;
                    pieces.push((mid, to));
                    pieces.push((from, mid));
                }
                Some(Err(refused)) => {
                    let msg = &entries[from].message;
                    if S::DEAD_LETTERS_REFUSED {
                        self.dead_letter(msg, "clickhouse_refused", &refused.message, ctx)
                            .await?;
                    } else {
                        metrics::counter!("chainflow_sink_records_total", "stream" => S::NAME, "outcome" => "skipped")
                            .increment(1);
                        tracing::error!(stream = S::NAME, topic = %tp.0, partition = tp.1, offset = msg.offset(), error = %refused,
                            "ClickHouse refused a dead letter: skipped (a dead letter is never dead-lettered again)");
                    }
                }
            }
        }
        Ok(Written::Done)
    }

    /// Runs an insert until it succeeds (`Some(Ok)`), is refused for good (`Some(Err)`), or
    /// its partition is revoked meanwhile (`None`).
    async fn retry_insert<F, Fut>(
        &mut self,
        ctx: &StageContext,
        tp: &Tp,
        mut attempt: F,
    ) -> Result<Option<Result<(), Failure>>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let outcome = self
            .retry(ctx, "inserting into ClickHouse", Some(tp), OnStop::Finish, || {
                let work = attempt();
                async move {
                    match work.await {
                        Err(f) if f.class == Class::Permanent => Ok(Err(f)),
                        other => other.map(Ok),
                    }
                }
            })
            .await?;
        Ok(outcome)
    }

    /// Tries `attempt` until it succeeds; transient failures are retried with backoff, the
    /// assignment paused and the consumer polled meanwhile. `None` when `tp` was revoked
    /// before success, or the stage is stopping and `on_stop` abandons; an error when the
    /// retry budget is spent, or a stopping stage's share of the shutdown timeout.
    async fn retry<T, F, Fut>(
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
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    () = ctx.stopped(), if on_stop == OnStop::Abandon => return Ok(None),
                    // polling keeps the group membership and runs the rebalance callbacks;
                    // what arrives while paused is dropped and read again after the resume
                    m = self.consumer.recv() => if let Err(e) = m {
                        tracing::debug!(error = %e, "read error while paused");
                    },
                }
                self.apply_changes();
                if let Some(tp) = tp {
                    if !self.is_assigned(tp) {
                        self.resume(ctx).await?;
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn is_assigned(&self, tp: &Tp) -> bool {
        self.consumer
            .assignment()
            .is_ok_and(|a| a.elements().iter().any(|e| e.topic() == tp.0 && e.partition() == tp.1))
    }

    /// Pauses every assigned partition.
    fn pause(&mut self, ctx: &StageContext) -> Result<()> {
        let assignment = self.consumer.assignment().context("reading the assignment")?;
        self.consumer.pause(&assignment).context("pausing the partitions")?;
        self.paused = true;
        ctx.set_ready(false);
        metrics::gauge!("chainflow_sink_paused_partitions", "stream" => S::NAME).set(assignment.count() as f64);
        Ok(())
    }

    /// Moves every assigned partition back to the record after the last one taken (what
    /// arrived while paused was dropped), and resumes them.
    async fn resume(&mut self, ctx: &StageContext) -> Result<()> {
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
        if positions.count() > 0 {
            blocking::seek_partitions(&self.consumer, positions, OFFSETS_TIMEOUT)
                .await
                .context("seeking back before resuming")?;
        }
        self.consumer.resume(&assignment).context("resuming the partitions")?;
        self.holds.repause(&*self.consumer);
        self.paused = false;
        ctx.set_ready(!self.stalled);
        metrics::gauge!("chainflow_sink_paused_partitions", "stream" => S::NAME).set(0.0);
        Ok(())
    }

    /// Sends `msg` to its dead-letter topic, retrying a broker that refuses.
    async fn dead_letter(&mut self, msg: &OwnedMessage, kind: &str, message: &str, ctx: &StageContext) -> Result<()> {
        tracing::warn!(stream = S::NAME, kind, %message, topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), "record dead-lettered");
        let letter = DeadLetter::new(msg, "sink", kind, message);
        let dlq = self.io.dlq.clone();
        let sent = self
            .retry(ctx, "producing a dead letter", None, OnStop::Finish, || {
                let (dlq, letter) = (dlq.clone(), letter.clone());
                async move {
                    dlq.send(letter.record(), DEAD_LETTER_TIMEOUT)
                        .await
                        .map(|_| ())
                        .map_err(|(e, _)| Failure {
                            class: Class::Transient,
                            code: None,
                            message: format!("producing to {}: {e}", letter.topic),
                        })
                }
            })
            .await?;
        if sent.is_some() {
            StageStats::add(&self.stats.dead_letters, 1);
            metrics::counter!("chainflow_sink_records_total", "stream" => S::NAME, "outcome" => "dead_letter")
                .increment(1);
        }
        Ok(())
    }

    /// Commits what ClickHouse acknowledged; a failure is retried at the next flush, and
    /// fails the stage once it has lasted the retry budget.
    async fn commit(&mut self) -> Result<()> {
        let offsets = self.consumer.context().to_commit();
        if offsets.is_empty() {
            return Ok(());
        }
        match blocking::commit(&self.consumer, commit_list(&offsets)).await {
            Ok(()) => {
                self.consumer.context().committed(&offsets);
                self.commits_failing = None;
                Ok(())
            }
            Err(e) => {
                metrics::counter!("chainflow_sink_commit_errors_total").increment(1);
                let since = *self.commits_failing.get_or_insert_with(Instant::now);
                if since.elapsed() > self.io.retry.budget {
                    return Err(anyhow::Error::new(e).context(format!(
                        "committing offsets kept failing for {} ms (sink.retry.budget_ms)",
                        self.io.retry.budget.as_millis()
                    )));
                }
                tracing::warn!(stream = S::NAME, error = %e, "commit failed; retried after the next batch");
                Ok(())
            }
        }
    }

    /// Commits the consumer's position of the partitions that hold nothing unwritten and
    /// whose position is past their committed offset: between the two lie only records a
    /// read_committed consumer never returns (transaction markers, aborted records). A
    /// partition of a transactional topic ends in a commit marker, so without this its lag
    /// would stay 1 with no progress: a stall every `sink.stall_after_ms` of an idle market.
    /// The measurement as it stands after.
    async fn past_control_records(&mut self, m: &Measurement) -> Measurement {
        let mut m = m.clone();
        let Ok(positions) = self.consumer.position() else {
            return m;
        };
        let unwritten = self.consumer.context().to_commit();
        let mut advanced = BTreeMap::new();
        for o in &m.partitions {
            let Some(committed) = o.committed else { continue };
            let holds_records = self.batches.get(&o.tp).is_some_and(|b| !b.is_empty())
                || self.flying.contains(&o.tp)
                || unwritten.contains_key(&o.tp)
                || self.holds.is_held(&o.tp.0, o.tp.1);
            let position = positions
                .find_partition(&o.tp.0, o.tp.1)
                .and_then(|e| match e.offset() {
                    Offset::Offset(p) => Some(p),
                    _ => None,
                });
            if let Some(p) = position.filter(|&p| !holds_records && p > committed && p <= o.high) {
                advanced.insert(o.tp.clone(), p);
            }
        }
        if advanced.is_empty() || self.paused {
            return m;
        }
        match blocking::commit(&self.consumer, commit_list(&advanced)).await {
            Ok(()) => {
                tracing::debug!(stream = S::NAME, partitions = ?advanced, "committed positions past transaction markers");
                for o in &mut m.partitions {
                    if let Some(&p) = advanced.get(&o.tp) {
                        o.committed = Some(p);
                    }
                }
            }
            Err(e) => {
                metrics::counter!("chainflow_sink_commit_errors_total").increment(1);
                tracing::warn!(stream = S::NAME, error = %e, "committing positions past transaction markers failed; tried again at the next measurement");
            }
        }
        m
    }

    /// Takes a measurement in: each partition's lag as a metric; a partition with lag and no
    /// progress for `sink.stall_after_ms` (not paused by the sink itself) is a stall: the
    /// stream turns unready, counts and logs it, writes what it holds and re-joins its group.
    async fn check_lag(&mut self, m: &Measurement, ctx: &StageContext) -> Result<()> {
        let m = &self.past_control_records(m).await;
        let (lags, stalled) = self.stalls.observe(m, self.paused, self.stall_after);
        tracing::debug!(stream = S::NAME, ?lags, "lag measured");
        for ((topic, partition), lag) in lags {
            metrics::gauge!("chainflow_sink_consumer_lag", "stream" => S::NAME, "topic" => topic, "partition" => partition.to_string())
                .set(lag as f64);
        }
        if self.stalled && stalled.is_empty() && !self.paused {
            self.stalled = false;
            ctx.set_ready(true);
            tracing::info!(stream = S::NAME, "stall healed: consuming again");
        }
        if stalled.is_empty() {
            return Ok(());
        }
        metrics::counter!("chainflow_sink_stalls_total", "stream" => S::NAME).increment(1);
        tracing::warn!(stream = S::NAME, partitions = ?stalled, stall_after_ms = self.stall_after.as_millis() as u64,
            "stall: assigned partitions with lag and no progress; re-joining the group");
        self.stalled = true;
        ctx.set_ready(false);
        self.flush(false, ctx).await?;
        self.consumer.unsubscribe();
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .with_context(|| format!("re-subscribing to {}", topics.join(", ")))?;
        self.stalls.reset();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Sequences;

    #[test]
    fn a_gap_is_a_seq_that_skips_ahead_and_nothing_else() {
        let mut s = Sequences::default();
        assert_eq!(s.gap("NIFTY", 5), None, "the first record of a key");
        assert_eq!(s.gap("NIFTY", 6), None);
        assert_eq!(s.gap("NIFTY", 9), Some(7), "7 and 8 never came");
        assert_eq!(s.gap("NIFTY", 8), None, "late, or redelivered: not a gap");
        assert_eq!(s.gap("NIFTY", 10), None);
        assert_eq!(s.gap("NIFTY", 1), None, "the feed restarted");
        assert_eq!(s.gap("NIFTY", 2), None);
        assert_eq!(s.gap("BANKNIFTY", 3), None, "keys are apart");
    }
}
