//! `chainflow replay`: a bounded range of a topic written to ClickHouse through the sink's
//! own streams ([`Stream::decode`] and [`Stream::insert`]), without a consumer group.
//!
//! Replays are idempotent because the rows are: a record always becomes the same rows with
//! the same `version`, and the tables are `ReplacingMergeTree(version)`, so a replayed range
//! leaves every `FINAL` query unchanged, and a truncated table is restored row for row.
//! Inserts carry a deduplication token of their own run (servers 22.2+), so that a retried
//! insert is not stored twice but a later replay is never mistaken for an earlier one.

use crate::{record_bytes, Progress};
use anyhow::{anyhow, Result};
use chainflow_kafka::RangeReader;
use chainflow_runtime::Class;
use chainflow_runtime::RetryPolicy;
use chainflow_sink::stream::{Reject, Stream, WithStream};
use clickhouse::Client;
use futures::future::BoxFuture;
use rdkafka::message::{Message, OwnedMessage};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The event times a replay keeps, µs since the epoch: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventWindow {
    /// Records whose event is earlier are skipped.
    pub from: Option<i64>,
    /// Records whose event is at or after it are skipped.
    pub to: Option<i64>,
}

impl EventWindow {
    /// Whether an event at `t` (or a record without an event time) is kept.
    pub fn keeps(&self, t: Option<i64>) -> bool {
        let Some(t) = t else { return true };
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|e| t < e)
    }

    /// Whether the window keeps everything.
    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

/// How a replay writes.
#[derive(Debug, Clone)]
pub struct Writes {
    /// ClickHouse, in the configured database.
    pub client: Client,
    /// Whether the server takes deduplication tokens (22.2+).
    pub tokens: bool,
    /// Rows per insert, at most (`sink.batch_rows`).
    pub batch_rows: usize,
    /// Bytes read per insert, at most (`sink.batch_bytes`).
    pub batch_bytes: usize,
    /// Timeout of one insert (`sink.insert_timeout_ms`).
    pub insert_timeout: Duration,
    /// Retries of transient failures (`sink.retry`).
    pub retry: RetryPolicy,
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Records read, per partition.
    pub read: BTreeMap<i32, u64>,
    /// Records written.
    pub written: u64,
    /// ClickHouse rows written.
    pub rows: u64,
    /// Inserts made.
    pub inserts: u64,
    /// Records outside the event window.
    pub filtered: u64,
    /// Records that cannot become rows, by kind (the live stages dead-lettered them).
    pub skipped: BTreeMap<String, u64>,
    /// Event times of the records written, first and last (µs).
    pub events: Option<(i64, i64)>,
    /// Stopped by a signal before the end of the range.
    pub interrupted: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl Summary {
    /// Records read in all.
    pub fn total_read(&self) -> u64 {
        self.read.values().sum()
    }
}

/// A replay of one range, into whichever stream stores it
/// ([`chainflow_sink::stream::with_stream`]).
pub struct Replay<'a> {
    /// What it reads.
    pub reader: RangeReader,
    /// How it writes.
    pub writes: &'a Writes,
    /// The events it keeps.
    pub window: EventWindow,
    /// What it has read, for a progress bar.
    pub progress: &'a Arc<Progress>,
    /// Ends it early.
    pub stop: &'a CancellationToken,
}

impl<'a> WithStream for Replay<'a> {
    type Output = BoxFuture<'a, Result<Summary>>;

    fn with<S: Stream>(self, stream: S) -> Self::Output {
        Box::pin(async move { replay(&stream, self.reader, self.writes, self.window, self.progress, self.stop).await })
    }
}

/// Replays what `reader` reads through `stream`, keeping the events of `window`, until the
/// end of the range or `stop`.
pub async fn replay<S: Stream>(
    stream: &S,
    mut reader: RangeReader,
    writes: &Writes,
    window: EventWindow,
    progress: &Arc<Progress>,
    stop: &CancellationToken,
) -> Result<Summary> {
    let started = Instant::now();
    let run = chrono::Utc::now().timestamp_micros();
    let mut summary = Summary::default();
    let mut pending: Vec<(OwnedMessage, S::Rows)> = Vec::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    while let Some(msg) = crate::next(&mut reader, stop, progress).await? {
        *summary.read.entry(msg.partition()).or_default() += 1;
        let Some(decoded) = decode(stream, &msg, writes, stop).await? else {
            break; // stopped while the registry was away
        };
        let r = match decoded {
            Ok(r) => r,
            Err((kind, why)) => {
                tracing::debug!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), kind, reason = %why,
                    "record skipped: it cannot become rows");
                *summary.skipped.entry(kind).or_default() += 1;
                continue;
            }
        };
        if !window.keeps(S::event_time_us(&r)) {
            summary.filtered += 1;
            continue;
        }
        rows += S::row_count(&r);
        bytes += record_bytes(&msg);
        pending.push((msg, r));
        if rows >= writes.batch_rows || bytes >= writes.batch_bytes {
            write(stream, &mut pending, writes, run, &mut summary).await?;
            (rows, bytes) = (0, 0);
        }
    }
    write(stream, &mut pending, writes, run, &mut summary).await?;
    summary.interrupted = stop.is_cancelled();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The rows of `msg`, or why it has none; the registry's outages are waited out within the
/// retry budget. `None` when stopped meanwhile.
async fn decode<S: Stream>(
    stream: &S,
    msg: &OwnedMessage,
    writes: &Writes,
    stop: &CancellationToken,
) -> Result<Option<Result<S::Rows, (String, String)>>> {
    let mut backoff = writes.retry.backoff();
    loop {
        let why = match stream.decode(msg).await {
            Ok(r) => return Ok(Some(Ok(r))),
            Err(Reject::Permanent { kind, message }) => return Ok(Some(Err((kind.to_string(), message)))),
            Err(Reject::Held(id)) => {
                return Ok(Some(Err((
                    "unknown_schema".into(),
                    format!("schema id {id} is not known to the registry"),
                ))))
            }
            Err(Reject::Transient(why)) => why,
        };
        let Some(delay) = backoff.delay() else {
            return Err(anyhow!(
                "decoding {} partition {} offset {}: the Schema Registry kept failing for {} ms \
                 (sink.retry.budget_ms): {why}",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                writes.retry.budget.as_millis()
            ));
        };
        tracing::warn!(reason = %why, retry_in_ms = delay.as_millis() as u64, "the Schema Registry failed; retrying");
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Inserts `pending` (and empties it), retrying transient failures within the budget.
async fn write<S: Stream>(
    stream: &S,
    pending: &mut Vec<(OwnedMessage, S::Rows)>,
    writes: &Writes,
    run: i64,
    summary: &mut Summary,
) -> Result<()> {
    let Some((first, last)) = pending.first().zip(pending.last()) else {
        return Ok(());
    };
    let what = format!(
        "{} from partition {} offset {} to partition {} offset {}",
        first.0.topic(),
        first.0.partition(),
        first.0.offset(),
        last.0.partition(),
        last.0.offset()
    );
    let token = format!("replay/{run}/{}/{}", first.0.topic(), summary.inserts);
    let records: Vec<&S::Rows> = pending.iter().map(|(_, r)| r).collect();
    let mut backoff = writes.retry.backoff();
    loop {
        match stream
            .insert(
                &writes.client,
                &records,
                writes.tokens.then_some(token.as_str()),
                writes.insert_timeout,
            )
            .await
        {
            Ok(()) => break,
            Err(f) if f.class == Class::Permanent => {
                return Err(anyhow!("ClickHouse refused the rows of {what}: {f}"));
            }
            Err(f) => {
                let Some(delay) = backoff.delay() else {
                    return Err(anyhow!(
                        "writing the rows of {what} kept failing for {} ms (sink.retry.budget_ms): {f}",
                        writes.retry.budget.as_millis()
                    ));
                };
                tracing::warn!(error = %f, retry_in_ms = delay.as_millis() as u64, "insert failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
    summary.inserts += 1;
    summary.written += records.len() as u64;
    summary.rows += records.iter().map(|r| S::row_count(r) as u64).sum::<u64>();
    for t in records.iter().filter_map(|r| S::event_time_us(r)) {
        summary.events = Some(summary.events.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
    }
    pending.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_window_keeps_from_inclusive_to_exclusive() {
        let w = EventWindow {
            from: Some(10),
            to: Some(20),
        };
        assert!(!w.keeps(Some(9)));
        assert!(w.keeps(Some(10)));
        assert!(w.keeps(Some(19)));
        assert!(!w.keeps(Some(20)));
        assert!(w.keeps(None), "records without an event time are never filtered");
        assert!(EventWindow::default().keeps(Some(i64::MIN)));
        assert!(EventWindow::default().is_open() && !w.is_open());
    }
}
