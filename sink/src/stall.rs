//! Lag and stalls. The lag of a partition is its high watermark minus the group's committed
//! offset, as Kafka's tools count it; progress is the committed offset moving. A partition
//! with lag that makes no progress for `sink.stall_after_ms` is stalled (unless the sink
//! paused it itself, waiting out a failure).

use crate::rebalance::Tp;
use chainflow_kafka::{blocking, OFFSETS_TIMEOUT};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::Offset;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One partition's offsets, as measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offsets {
    /// The partition.
    pub tp: Tp,
    /// Its high watermark.
    pub high: i64,
    /// The group's committed offset (none when nothing is committed).
    pub committed: Option<i64>,
}

/// The offsets of every assigned partition at one moment.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// When the committed offsets were asked for.
    pub asked: Instant,
    /// When they were measured.
    pub at: Instant,
    /// Per partition.
    pub partitions: Vec<Offsets>,
}

/// Measures the assigned partitions' offsets every `every`, off the worker's loop (a
/// measurement is a few round trips to the broker); measurements the worker has not taken
/// yet are replaced, not queued.
pub fn measure<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    every: Duration,
) -> mpsc::Receiver<Measurement> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let Ok(assignment) = consumer.assignment() else {
                continue;
            };
            let tps: Vec<Tp> = assignment
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            if tps.is_empty() {
                continue;
            }
            let asked = Instant::now();
            let Ok(committed) = blocking::committed(&consumer, OFFSETS_TIMEOUT).await else {
                continue;
            };
            let highs = futures::future::join_all(
                tps.iter()
                    .map(|(t, p)| blocking::fetch_watermarks(&consumer, t, *p, OFFSETS_TIMEOUT)),
            )
            .await;
            let partitions = tps
                .into_iter()
                .zip(highs)
                .filter_map(|(tp, high)| {
                    let (_, high) = high.ok()?;
                    let committed = committed.find_partition(&tp.0, tp.1).and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                    Some(Offsets { tp, high, committed })
                })
                .collect();
            let _ = tx.try_send(Measurement {
                asked,
                at: Instant::now(),
                partitions,
            });
        }
    });
    rx
}

/// The partitions whose group's committed offset (none counts as -1) is below the offset
/// this worker had committed, and the broker acknowledged, before the measurement asked
/// for it (`own`: per partition, the highest offset committed and when): Apache Kafka
/// deletes a group's offsets with their topic, so a topic deleted (and perhaps created
/// again) shows so. A commit acknowledged after the question is not held against it.
pub(crate) fn offsets_gone(own: &HashMap<Tp, (i64, Instant)>, m: &Measurement) -> Vec<(Tp, Option<i64>)> {
    m.partitions
        .iter()
        .filter(|o| {
            own.get(&o.tp)
                .is_some_and(|&(offset, acked)| acked < m.asked && o.committed.unwrap_or(-1) < offset)
        })
        .map(|o| (o.tp.clone(), o.committed))
        .collect()
}

/// A partition found stalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    /// The partition.
    pub tp: Tp,
    /// Its lag.
    pub lag: i64,
    /// How long it has made no progress.
    pub for_: Duration,
}

/// Tracks progress per partition.
#[derive(Debug, Default)]
pub struct StallTracker {
    /// Per partition: the committed offset last seen move, and since when.
    since: HashMap<Tp, (Option<i64>, Instant)>,
}

impl StallTracker {
    /// Takes a measurement in: each partition's lag, and those stalled for `stall_after`.
    /// With `paused`, nothing is stalled (the sink waits out a failure on purpose).
    pub fn observe(&mut self, m: &Measurement, paused: bool, stall_after: Duration) -> (Vec<(Tp, i64)>, Vec<Stalled>) {
        let mut lags = Vec::new();
        let mut stalled = Vec::new();
        for o in &m.partitions {
            // without a committed offset the group has not started here: count from 0
            let lag = (o.high - o.committed.unwrap_or(0)).max(0);
            lags.push((o.tp.clone(), lag));
            let entry = self.since.entry(o.tp.clone()).or_insert((o.committed, m.at));
            if entry.0 != o.committed || lag == 0 || paused {
                *entry = (o.committed, m.at);
            } else if m.at.duration_since(entry.1) >= stall_after {
                stalled.push(Stalled {
                    tp: o.tp.clone(),
                    lag,
                    for_: m.at.duration_since(entry.1),
                });
            }
        }
        self.since.retain(|tp, _| m.partitions.iter().any(|o| &o.tp == tp));
        (lags, stalled)
    }

    /// Forgets everything (after re-joining the group).
    pub fn reset(&mut self) {
        self.since.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_mins(1);

    fn at(t0: Instant, secs: u64, high: i64, committed: i64) -> Measurement {
        Measurement {
            asked: t0 + Duration::from_secs(secs),
            at: t0 + Duration::from_secs(secs),
            partitions: vec![Offsets {
                tp: ("t".into(), 0),
                high,
                committed: Some(committed),
            }],
        }
    }

    #[test]
    fn offsets_below_what_the_worker_committed_are_gone_unless_the_commit_came_later() {
        let t0 = Instant::now();
        let tp: Tp = ("t".into(), 0);
        let mut own = HashMap::from([(tp.clone(), (65, t0))]);
        assert!(offsets_gone(&own, &at(t0, 5, 65, 65)).is_empty(), "as committed");
        assert!(
            offsets_gone(&own, &at(t0, 5, 80, 70)).is_empty(),
            "another member moved on"
        );
        let mut deleted = at(t0, 5, 65, 0);
        deleted.partitions[0].committed = None;
        assert_eq!(
            offsets_gone(&own, &deleted),
            vec![(tp.clone(), None)],
            "deleted with its topic"
        );
        assert_eq!(offsets_gone(&own, &at(t0, 5, 10, 3)), vec![(tp.clone(), Some(3))]);
        own.insert(tp, (65, t0 + Duration::from_secs(6)));
        assert!(
            offsets_gone(&own, &at(t0, 5, 65, 0)).is_empty(),
            "a measurement asked before the commit was acknowledged"
        );
    }

    #[test]
    fn lag_without_progress_for_the_threshold_is_a_stall() {
        let t0 = Instant::now();
        let mut t = StallTracker::default();
        assert!(t.observe(&at(t0, 0, 100, 100), false, AFTER).1.is_empty(), "caught up");
        assert!(
            t.observe(&at(t0, 30, 150, 100), false, AFTER).1.is_empty(),
            "30 s without progress"
        );
        let (lags, stalled) = t.observe(&at(t0, 61, 180, 100), false, AFTER);
        assert_eq!(lags, vec![(("t".into(), 0), 80)]);
        assert_eq!(stalled.len(), 1);
        assert_eq!(stalled[0].for_, Duration::from_secs(61));
    }

    #[test]
    fn progress_or_a_pause_is_not_a_stall() {
        let t0 = Instant::now();
        let mut t = StallTracker::default();
        t.observe(&at(t0, 0, 150, 100), false, AFTER);
        assert!(
            t.observe(&at(t0, 50, 200, 120), false, AFTER).1.is_empty(),
            "committed moved"
        );
        assert!(
            t.observe(&at(t0, 100, 250, 120), false, AFTER).1.is_empty(),
            "50 s since it moved"
        );
        assert!(
            t.observe(&at(t0, 200, 250, 120), true, AFTER).1.is_empty(),
            "paused by the sink"
        );
        assert!(
            t.observe(&at(t0, 230, 250, 120), false, AFTER).1.is_empty(),
            "the pause restarted the clock"
        );
    }

    #[test]
    fn a_partition_that_goes_and_comes_back_starts_afresh() {
        let t0 = Instant::now();
        let mut t = StallTracker::default();
        t.observe(&at(t0, 0, 150, 100), false, AFTER);
        t.observe(
            &Measurement {
                asked: t0 + Duration::from_secs(10),
                at: t0 + Duration::from_secs(10),
                partitions: vec![],
            },
            false,
            AFTER,
        );
        assert!(t.observe(&at(t0, 65, 150, 100), false, AFTER).1.is_empty());
        t.reset();
        assert!(t.observe(&at(t0, 200, 150, 100), false, AFTER).1.is_empty());
    }
}
