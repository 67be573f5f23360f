//! Flush: the batches that are ready, recorded in the ledger and inserted by a first
//! attempt in a task of its own while the loop reads on; what that attempt could not do,
//! the loop writes again itself.

use super::report::{batch_span, stored};
use super::retry::OnStop;
use super::write::Written;
use super::{Io, Worker};
use crate::batch::Batch;
use crate::ledger::{LedgerRow, Recorded};
use crate::rebalance::Tp;
use crate::stream::Stream;
use anyhow::{Context, Result};
use chainflow_clickhouse::Failure;
use chainflow_runtime::{fault, StageContext, StageStats};
use rdkafka::consumer::Consumer;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a flush's first attempt did: the batches recorded in the ledger, then inserted once
/// (`first_attempt`).
pub(super) struct Attempt<R> {
    /// The ledger rows of the batches (a batch re-formed exactly as recorded has none: its
    /// row is there).
    rows: Vec<LedgerRow>,
    /// Whether the ledger took them; when not, nothing was inserted.
    recorded: bool,
    /// Each batch, in order.
    batches: Vec<Tried<R>>,
}

/// A batch of a flush's first attempt.
pub(super) struct Tried<R> {
    batch: Batch<R>,
    /// ClickHouse acknowledged it; if not, it was not tried (the ledger or an earlier insert
    /// failed) or its insert failed.
    stored: bool,
    /// How long its insert took, failed or not.
    took: Duration,
}

/// Waits for the flush in flight and clears it; never ready when there is none.
pub(super) async fn landed<R>(in_flight: &mut Option<JoinHandle<Attempt<R>>>) -> Result<Attempt<R>> {
    let Some(task) = in_flight else {
        return std::future::pending().await;
    };
    let attempt = task.await.context("a flush's task failed");
    *in_flight = None;
    attempt
}

/// Inserts the records of `batches` in one insert per table (under the batch's token when
/// there is one batch and the server takes tokens), then counts them as stored, per batch.
pub(super) async fn insert_together<S: Stream>(
    io: &Io<S>,
    stats: &StageStats,
    batches: &[Batch<S::Rows>],
) -> Result<(), Failure> {
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
pub(super) async fn first_attempt<S: Stream>(
    io: Arc<Io<S>>,
    stats: Arc<StageStats>,
    rows: Vec<LedgerRow>,
    batches: Vec<Batch<S::Rows>>,
) -> Attempt<S::Rows> {
    // a `fail` at the fault point is an acknowledgement lost: the rows are recorded again
    let recorded = io.ledger.record(&rows).await.is_ok() && fault::point("sink.recorded").is_ok();
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

/// Whether `batch` re-forms exactly `recorded`, the ledger's row it started at (the same
/// records up to the recorded end): then the row is there already. Logs how it re-forms it.
fn reforms_exactly<S: Stream>(batch: &Batch<S::Rows>, recorded: Option<&Recorded>) -> bool {
    let (topic, partition) = (&batch.topic, batch.partition);
    match recorded {
        Some(r) if batch.is_whole_reform() && r.token == batch.token() => {
            tracing::info!(stream = S::NAME, topic = %topic, partition, token = %batch.token(), next = batch.next_offset(), "re-formed batch written again");
            return true;
        }
        Some(r) if batch.is_whole_reform() => {
            tracing::warn!(stream = S::NAME, topic = %topic, partition, recorded = %r.token, now = %batch.token(),
                "the records of a re-formed batch differ from those recorded: written under the new token");
        }
        Some(r) => {
            tracing::info!(stream = S::NAME, topic = %topic, partition, recorded = %r.token, piece = %batch.token(), rows = batch.rows(), bytes = batch.bytes(),
                "a batch recorded under larger limits than today's is written in pieces within them, each recorded first");
        }
        None => {}
    }
    false
}

impl<S: Stream> Worker<S> {
    /// Lands the flush in flight, then starts one of every batch but re-formed ones that have
    /// not reached their end: when one of them is due, or always with `due_only` false (the
    /// worker is stopping or re-joining its group), and then lands that one too.
    pub(super) async fn flush(&mut self, due_only: bool, ctx: &StageContext) -> Result<()> {
        self.land(ctx).await?;
        self.start(due_only).await?;
        if !due_only {
            self.land(ctx).await?;
        }
        Ok(())
    }

    /// Waits for the flush in flight, if any, and finishes it.
    pub(super) async fn land(&mut self, ctx: &StageContext) -> Result<()> {
        if self.in_flight.is_none() {
            return Ok(());
        }
        let attempt = landed(&mut self.in_flight).await?;
        self.finish(attempt, ctx).await
    }

    /// Starts the first attempt of a flush of the batches that are ready (see `flush`); only
    /// commits when there is none.
    pub(super) async fn start(&mut self, due_only: bool) -> Result<()> {
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
        let mut rows = Vec::new();
        for batch in &batches {
            let tp: Tp = (batch.topic.clone(), batch.partition);
            let recorded = batch
                .is_reformed()
                .then(|| self.recorded.get_mut(&tp).and_then(VecDeque::pop_front))
                .flatten();
            let exact = reforms_exactly::<S>(batch, recorded.as_ref());
            if !exact {
                rows.push(self.ledger_row(batch, recorded_at_us));
            }
            self.flying.insert(tp);
        }
        let work = first_attempt(self.io.clone(), self.stats.clone(), rows, batches);
        self.in_flight = Some(tokio::spawn(work));
        Ok(())
    }

    /// The ledger row of `batch`, recorded before its insert.
    fn ledger_row(&self, batch: &Batch<S::Rows>, recorded_at_us: u64) -> LedgerRow {
        LedgerRow {
            group_id: self.io.ledger.group().to_string(),
            topic: batch.topic.clone(),
            partition: batch.partition,
            first_offset: batch.first_offset().unwrap_or(-1),
            last_offset: batch.last_offset().unwrap_or(-1),
            records: batch.entries().len() as u32,
            token: batch.token(),
            first_digest: batch.first_digest(),
            recorded_at_us,
        }
    }

    /// Finishes a flush whose first attempt has landed: writes, with retries, what it could
    /// not (the ledger rows, then every batch from the one that failed); marks the batches of
    /// partitions still assigned written, and commits.
    pub(super) async fn finish(&mut self, attempt: Attempt<S::Rows>, ctx: &StageContext) -> Result<()> {
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
        fault::point("sink.inserted")?;
        self.commit().await
    }
}
