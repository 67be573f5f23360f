//! Write: a batch inserted with retries and split until the records ClickHouse refuses are
//! isolated; those are dead-lettered.

use super::report::{batch_span, stored};
use super::retry::OnStop;
use super::Worker;
use crate::batch::Batch;
use crate::rebalance::Tp;
use crate::stream::Stream;
use anyhow::Result;
use chainflow_clickhouse::error::MEMORY_LIMIT;
use chainflow_clickhouse::Failure;
use chainflow_kafka::DeadLetter;
use chainflow_runtime::{fault, Class, StageContext, StageStats};
use rdkafka::message::{Message, OwnedMessage};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long producing a dead letter may take before it is retried.
pub(super) const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one insert, retried.
pub(super) enum Inserted {
    /// ClickHouse acknowledged it.
    Stored,
    /// Refused for good (a permanent failure): its records are isolated by halving.
    Refused(Failure),
    /// Too big for the server's memory (`split_for_memory`): halved, never dead-lettered.
    TooBig(Failure),
}

/// Whether an insert of `records` records that has failed `memory_failures` times with
/// ClickHouse's memory limit is halved rather than tried whole again: from its second such
/// failure (the first retry), when there is more than one record. A lone record that gets
/// it is retried within the budget like any transient failure.
pub(super) fn split_for_memory(failure: &Failure, memory_failures: u32, records: usize) -> bool {
    failure.code == Some(MEMORY_LIMIT) && memory_failures >= 2 && records > 1
}

/// Puts the two halves of the piece `from..to` on `pieces`, the first half to be written
/// first.
fn halve(pieces: &mut Vec<(usize, usize)>, from: usize, to: usize) {
    let mid = from + (to - from) / 2;
    pieces.push((mid, to));
    pieces.push((from, mid));
}

/// What became of a batch.
pub(super) enum Written {
    /// Stored (or refused records dead-lettered): its offsets can be committed.
    Done,
    /// Its partition was revoked first: nothing of it is committed.
    Abandoned,
}

impl<S: Stream> Worker<S> {
    /// Inserts `batch`; transient failures are retried, permanent ones isolate the refused
    /// records by halving, and those are dead-lettered (or, for dead letters, skipped); an
    /// insert that keeps hitting the server's memory limit is halved until its pieces fit.
    /// Each piece has a token of its own, derived from the batch's, so that the same batch
    /// halved again after a crash carries the same tokens.
    pub(super) async fn write(&mut self, batch: &Batch<S::Rows>, ctx: &StageContext) -> Result<Written> {
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
            let outcome = self.retry_insert(ctx, &tp, to - from, attempt).await?;
            match outcome {
                None => return Ok(Written::Abandoned),
                Some(Inserted::Stored) => stored::<S>(&self.stats, &span, &tp.0, &entries[from..to], records),
                Some(Inserted::TooBig(failure)) => {
                    tracing::warn!(stream = S::NAME, topic = %tp.0, partition = tp.1, records = to - from, error = %failure, "ClickHouse's memory limit, again: the batch is halved");
                    metrics::counter!("chainflow_sink_memory_splits_total", "stream" => S::NAME).increment(1);
                    halve(&mut pieces, from, to);
                }
                Some(Inserted::Refused(refused)) if to - from > 1 => {
                    tracing::warn!(stream = S::NAME, topic = %tp.0, partition = tp.1, records = to - from, error = %refused, "ClickHouse refused a batch: splitting it to isolate the refused records");
                    halve(&mut pieces, from, to);
                }
                Some(Inserted::Refused(refused)) => {
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

    /// Runs an insert of `records` records until it is stored, refused for good, or too big
    /// for the server (`split_for_memory`); `None` when its partition is revoked meanwhile.
    pub(super) async fn retry_insert<F, Fut>(
        &mut self,
        ctx: &StageContext,
        tp: &Tp,
        records: usize,
        mut attempt: F,
    ) -> Result<Option<Inserted>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let memory_failures = AtomicU32::new(0);
        let memory_failures = &memory_failures;
        let outcome = self
            .retry(ctx, "inserting into ClickHouse", Some(tp), OnStop::Finish, || {
                let work = attempt();
                async move {
                    match work.await {
                        Ok(()) => Ok(Inserted::Stored),
                        Err(f) if f.class == Class::Permanent => Ok(Inserted::Refused(f)),
                        Err(f) => {
                            let memory = u32::from(f.code == Some(MEMORY_LIMIT));
                            let seen = memory_failures.fetch_add(memory, Ordering::Relaxed) + memory;
                            if split_for_memory(&f, seen, records) {
                                Ok(Inserted::TooBig(f))
                            } else {
                                Err(f)
                            }
                        }
                    }
                }
            })
            .await?;
        Ok(outcome)
    }

    /// Sends `msg` to its dead-letter topic, retrying a broker that refuses.
    pub(super) async fn dead_letter(
        &mut self,
        msg: &OwnedMessage,
        kind: &str,
        message: &str,
        ctx: &StageContext,
    ) -> Result<()> {
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
            fault::point("sink.dead_lettered")?;
            StageStats::add(&self.stats.dead_letters, 1);
            metrics::counter!("chainflow_sink_records_total", "stream" => S::NAME, "outcome" => "dead_letter")
                .increment(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::split_for_memory;
    use chainflow_clickhouse::error::MEMORY_LIMIT;
    use chainflow_clickhouse::Failure;
    use chainflow_runtime::Class;

    fn failure(code: u32) -> Failure {
        Failure {
            class: Class::Transient,
            code: Some(code),
            message: format!("Code: {code}"),
        }
    }

    #[test]
    fn the_memory_limit_halves_an_insert_from_its_first_retry_on() {
        let memory = failure(MEMORY_LIMIT);
        assert!(
            !split_for_memory(&memory, 1, 1000),
            "the first attempt is retried whole"
        );
        assert!(
            split_for_memory(&memory, 2, 1000),
            "the first retry failed the same way"
        );
        assert!(
            !split_for_memory(&memory, 5, 1),
            "a lone record is retried, never dead-lettered"
        );
        assert!(!split_for_memory(&failure(159), 9, 1000), "a timeout is not a size");
    }
}
