//! Commit and stall: the offsets ClickHouse acknowledged are committed; lag is measured,
//! positions past transaction markers committed, and a stall healed by re-joining the group.

use super::Worker;
use crate::rebalance::commit_list;
use crate::stall::{offsets_gone, Measurement};
use crate::stream::Stream;
use anyhow::{Context, Result};
use chainflow_kafka::blocking;
use chainflow_runtime::StageContext;
use rdkafka::consumer::Consumer;
use rdkafka::Offset;
use std::collections::BTreeMap;
use tokio::time::Instant;

impl<S: Stream> Worker<S> {
    /// Commits what ClickHouse acknowledged; a failure is retried at the next flush, and
    /// fails the stage once it has lasted the retry budget.
    pub(super) async fn commit(&mut self) -> Result<()> {
        let offsets = self.consumer.context().to_commit();
        if offsets.is_empty() {
            return Ok(());
        }
        match blocking::commit(&self.consumer, commit_list(&offsets)).await {
            Ok(()) => {
                self.consumer.context().committed(&offsets);
                self.note_commits(&offsets);
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
    pub(super) async fn past_control_records(&mut self, m: &Measurement) -> Measurement {
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
                self.note_commits(&advanced);
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

    /// Notes the offsets this worker committed, acknowledged now.
    fn note_commits(&mut self, offsets: &BTreeMap<crate::rebalance::Tp, i64>) {
        let now = Instant::now();
        for (tp, &next) in offsets {
            let own = self.own_commits.entry(tp.clone()).or_insert((next, now));
            *own = (own.0.max(next), now);
        }
    }

    /// Takes a measurement in: each partition's lag as a metric; a partition with lag and no
    /// progress for `sink.stall_after_ms` (not paused by the sink itself) is a stall: the
    /// stream turns unready, counts and logs it, writes what it holds and re-joins its group.
    /// A partition whose committed offset went below what this worker committed had its
    /// offsets deleted with its topic: the worker writes what it holds and takes a new
    /// consumer (`renew_consumer`).
    pub(super) async fn check_lag(&mut self, m: &Measurement, ctx: &StageContext) -> Result<Measured> {
        let deleted = offsets_gone(&self.own_commits, m);
        if !deleted.is_empty() && !self.paused {
            tracing::warn!(stream = S::NAME, partitions = ?deleted, "the group's offsets of these partitions went back below what this sink committed: their topic was deleted (and perhaps created again); a new consumer reads them afresh");
            self.flush(false, ctx).await?;
            self.renew_consumer()?;
            return Ok(Measured::Renewed);
        }
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
            return Ok(Measured::Taken);
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
        Ok(Measured::Taken)
    }

    /// Replaces the consumer with a new one, subscribed to the stream's topics, after the
    /// worker wrote what it held: librdkafka keeps what it learnt of a topic (its partitions'
    /// leader epochs, the positions in them) for as long as the client lives, so a topic
    /// deleted and created again under the same name is fetched from at the old positions
    /// (the new records below them skipped) or with the old leader epochs (refused with
    /// UNKNOWN_LEADER_EPOCH, for ever); a re-join keeps the client, a new one starts afresh
    /// from the group's committed offsets.
    fn renew_consumer(&mut self) -> Result<()> {
        let known: Vec<_> = self.next.keys().chain(self.batches.keys()).cloned().collect();
        for tp in &known {
            self.forget(tp);
        }
        self.own_commits.clear();
        self.consumer.unsubscribe();
        let consumer = (self.io.renew)()?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .with_context(|| format!("subscribing to {}", topics.join(", ")))?;
        self.consumer = consumer;
        self.stalls.reset();
        Ok(())
    }
}

/// What a measurement led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measured {
    /// It was taken in.
    Taken,
    /// The consumer was replaced: measure the new one.
    Renewed,
}
