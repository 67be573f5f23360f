//! Intake: a record read becomes an entry of its partition's batch (decoded,
//! dead-lettered, or its partition held), the rebalance callbacks' changes are applied,
//! and the batches the ledger recorded are re-formed.

use super::retry::OnStop;
use super::Worker;
use crate::batch::{record_digest, Batch, Entry};
use crate::ledger::Recorded;
use crate::rebalance::{Change, Tp};
use crate::stream::{Reject, Stream};
use anyhow::Result;
use chainflow_clickhouse::Failure;
use chainflow_kafka::{blocking, OFFSETS_TIMEOUT};
use chainflow_runtime::{Class, StageContext, StageStats};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use tokio::time::Instant;

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

impl<S: Stream> Worker<S> {
    /// Tries the held records again; releases the partitions whose record can now be
    /// decoded (or, its grace over, dead-lettered), so that it is read again.
    pub(super) async fn check_holds(&mut self) -> Result<()> {
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
    pub(super) fn apply_changes(&mut self) {
        for change in self.consumer.context().take_changes() {
            match change {
                Change::Revoked(tps) => {
                    metrics::counter!("chainflow_sink_rebalances_total", "stream" => S::NAME, "change" => "revoked")
                        .increment(1);
                    for tp in &tps {
                        let unwritten = self.forget(tp);
                        if unwritten > 0 {
                            tracing::info!(stream = S::NAME, topic = %tp.0, partition = tp.1, records = unwritten, "partition revoked: its unwritten records are left to the new owner");
                        }
                        metrics::gauge!("chainflow_sink_consumer_lag", "stream" => S::NAME, "topic" => tp.0.clone(), "partition" => tp.1.to_string()).set(0.0);
                    }
                }
                Change::Assigned(tps) => {
                    metrics::counter!("chainflow_sink_rebalances_total", "stream" => S::NAME, "change" => "assigned")
                        .increment(1);
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

    /// Forgets what the worker holds of `tp` (its unwritten batch, where it is, the ledger's
    /// batches to re-form, a hold): the partition was revoked, or moved back. How many
    /// records were unwritten.
    pub(super) fn forget(&mut self, tp: &Tp) -> usize {
        self.flying.remove(tp);
        self.own_commits.remove(tp);
        let unwritten = self.batches.remove(tp).map_or(0, |b| b.entries().len());
        self.recorded.remove(tp);
        self.next.remove(tp);
        self.holds.forget(&tp.0, tp.1);
        unwritten
    }

    /// Adds one record to its partition's batch (decoding it, or dead-lettering it).
    pub(super) async fn take(&mut self, msg: OwnedMessage, ctx: &StageContext) -> Result<()> {
        // the poll that returned `msg` may have run rebalance callbacks: what they changed
        // applies before it (a re-assigned partition starts again from its committed offset)
        self.apply_changes();
        let tp: Tp = (msg.topic().to_string(), msg.partition());
        let offset = msg.offset();
        if let Some(&next) = self.next.get(&tp).filter(|&&n| offset < n) {
            if self.batches.get(&tp).is_some_and(|b| b.holds(&msg)) {
                return Ok(()); // read twice: a fetch that raced a seek
            }
            // The consumer moved back past what was read: librdkafka resets a position the
            // partition no longer has (its topic deleted and created again, with fewer
            // records) to its beginning. What is held of the partition's former records is
            // forgotten, as on a revocation, and the partition read as if newly assigned (the
            // ledger then learns that its records are others); skipping the records below
            // `next`, as before, stalled the partition until the group was re-joined.
            let unwritten = self.forget(&tp);
            self.consumer.context().forget_written(&tp);
            tracing::warn!(stream = S::NAME, topic = %tp.0, partition = tp.1, from = next, to = offset, unwritten, "the partition moved back (its topic was recreated?): read again from there");
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
        if !self.batches.contains_key(&tp) {
            self.drop_stale(&tp, &msg, ctx).await?;
        }
        let Some(decoded) = self.decode(&tp, &msg, ctx).await? else {
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
            Err(Reject::Transient(_)) => unreachable!("transient rejections are retried in decode"),
        };
        if let Some((key, seq)) = rows.as_ref().and_then(S::sequence) {
            if let Some(expected) = self.sequences.gap(&key, seq) {
                metrics::counter!("chainflow_sequence_gaps_total", "topic" => tp.0.clone()).increment(1);
                tracing::warn!(stream = S::NAME, topic = %tp.0, key = %key, expected, seq, offset, "sequence gap: records of this key are missing upstream");
            }
        }
        self.append(tp, msg, rows);
        Ok(())
    }

    /// `msg` decoded into rows, or why not; a registry that does not answer is waited for
    /// (the partition paused). None when the partition was revoked meanwhile.
    async fn decode(
        &mut self,
        tp: &Tp,
        msg: &OwnedMessage,
        ctx: &StageContext,
    ) -> Result<Option<Result<S::Rows, Reject>>> {
        let io = self.io.clone();
        let (io, message) = (&io, msg);
        self.retry(
            ctx,
            "decoding through the Schema Registry",
            Some(tp),
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
        .await
    }

    /// Appends `msg` (with its rows, none when it was dead-lettered) to its partition's
    /// batch, which is formed as the ledger recorded it when one starts at `msg` (the
    /// recorded batches it has passed were dropped by `drop_stale`).
    fn append(&mut self, tp: Tp, msg: OwnedMessage, rows: Option<S::Rows>) {
        let offset = msg.offset();
        let recorded = self.recorded.entry(tp.clone()).or_default();
        let batch = self.batches.entry(tp.clone()).or_insert_with(|| {
            // a batch the ledger recorded starting here is formed again exactly
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
    }

    /// The batches the ledger recorded for `tp` from `msg` on (the first record read since
    /// the partition was assigned), to be re-formed; none when they cannot describe the
    /// partition's records, and then the partition's ledger is marked restarted, so that
    /// they are never re-formed later either. That is the case when the partition is read
    /// from below the group's committed offset (offsets moved back, or a broker that keeps
    /// a deleted topic's offsets), or when a recorded batch ends at or past the partition's
    /// end: its records were read once, so they are below the end unless the topic was
    /// deleted and created again (Apache Kafka deletes the group's offsets with it). A
    /// recreated topic that already holds as many records is caught by the first record of
    /// each recorded batch instead (`drop_stale`).
    pub(super) async fn recorded_batches(
        &mut self,
        tp: &Tp,
        msg: &OwnedMessage,
        ctx: &StageContext,
    ) -> Result<Vec<Recorded>> {
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
        let end = blocking::fetch_watermarks(&self.consumer, topic, partition, OFFSETS_TIMEOUT)
            .await
            .ok()
            .map(|(_, high)| high);
        let last = pending.iter().map(|r| r.last_offset).max().unwrap_or(-1);
        let why = if committed.is_some_and(|c| offset < c) {
            "the partition is read from below its committed offset (its offsets moved back, or the topic was recreated)"
        } else if end.is_some_and(|end| last >= end) {
            "a batch recorded there ends past the partition's end: the topic was recreated"
        } else {
            tracing::info!(
                stream = S::NAME,
                topic,
                partition,
                batches = pending.len(),
                "re-forming batches recorded but not committed"
            );
            return Ok(pending);
        };
        tracing::warn!(
            stream = S::NAME,
            topic,
            partition,
            offset,
            ?committed,
            ?end,
            last,
            "{why}: the batches recorded before are not re-formed"
        );
        self.mark_restarted(tp, ctx).await?;
        Ok(Vec::new())
    }

    /// Before a batch of `tp` starts at `msg`: forgets the recorded batches it has passed,
    /// and every one if the batch recorded to start here started with another record (the
    /// topic was deleted and created again), marking the partition's ledger restarted.
    pub(super) async fn drop_stale(&mut self, tp: &Tp, msg: &OwnedMessage, ctx: &StageContext) -> Result<()> {
        let Some(recorded) = self.recorded.get_mut(tp) else {
            return Ok(());
        };
        let offset = msg.offset();
        while recorded.front().is_some_and(|r| r.first_offset < offset) {
            recorded.pop_front();
        }
        if !recorded
            .front()
            .is_some_and(|r| r.first_offset == offset && !r.describes(record_digest(msg)))
        {
            return Ok(());
        }
        recorded.clear();
        tracing::warn!(
            stream = S::NAME,
            topic = %tp.0,
            partition = tp.1,
            offset,
            "the record at a recorded batch's first offset is another (the partition was recreated): the batches recorded before are not re-formed"
        );
        self.mark_restarted(tp, ctx).await
    }

    /// Marks `tp`'s ledger restarted: what it recorded until now is never re-formed.
    async fn mark_restarted(&mut self, tp: &Tp, ctx: &StageContext) -> Result<()> {
        let ledger = self.io.ledger.clone();
        let (ledger, topic, partition) = (&ledger, tp.0.as_str(), tp.1);
        self.retry(ctx, "marking the ledger restarted", None, OnStop::Abandon, || {
            ledger.restart(topic, partition)
        })
        .await?;
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
