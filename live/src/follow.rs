//! Following the topics without a consumer group: every partition assigned from a little
//! before now (`serve.rewind_ms`), nothing committed, so that every replica of the gateway
//! sees every channel and the consumer groups of the stages that store history never see
//! the gateway at all.

use crate::board::Board;
use anyhow::{Context, Result};
use chainflow_codec::Codec;
use chainflow_config::KafkaConfig;
use chainflow_contract::topics::HEADER_PRODUCED_AT;
use chainflow_contract::{EnrichedOptionChain, Record, UnderlyingTick};
use chainflow_kafka::range::{self, Bound};
use chainflow_kafka::{Isolation, RangeReader};
use rdkafka::message::{Message, OwnedMessage};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often an undecodable record is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A record type the live view shows, and what it does with one.
pub trait Shown: Record + Send + 'static {
    /// Shows `self` on the board.
    fn show(&self, board: &mut Board, produced_us: Option<i64>);
}

impl Shown for EnrichedOptionChain {
    fn show(&self, board: &mut Board, produced_us: Option<i64>) {
        board.chain(self, produced_us);
    }
}

impl Shown for UnderlyingTick {
    fn show(&self, board: &mut Board, produced_us: Option<i64>) {
        board.tick(self, produced_us);
    }
}

/// Assigns every partition of `topic` from `rewind` ago to a consumer of its own, which
/// reads committed records only.
pub async fn open(kafka: &KafkaConfig, topic: &str, rewind: Duration) -> Result<RangeReader> {
    let consumer = range::follower(kafka)?;
    let from = chrono::Utc::now() - chrono::Duration::from_std(rewind).unwrap_or_default();
    let spans = range::resolve(&consumer, topic, &[], &Bound::Time(from), &Bound::Latest)
        .await
        .with_context(|| format!("finding where to start reading {topic}"))?;
    tracing::info!(topic, isolation = %Isolation::ReadCommitted, "following");
    RangeReader::open(consumer, topic, &spans, true)
}

/// Shows every record of `reader` (records of type `R`) on `board` until `stop`.
pub async fn follow<R: Shown>(
    mut reader: RangeReader,
    topic: &'static str,
    codec: Arc<Codec>,
    board: Arc<Mutex<Board>>,
    stop: CancellationToken,
) -> Result<()> {
    let read = metrics::counter!("chainflow_records_in_total", "stage" => "serve", "topic" => topic);
    let mut warned: Option<Instant> = None;
    loop {
        let msg: OwnedMessage = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            m = reader.next() => match m? {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        read.increment(1);
        let Some(payload) = msg.payload() else {
            continue; // a tombstone: nothing to show
        };
        match codec.decode::<R>(payload).await {
            Ok(record) => {
                let produced_us = chainflow_kafka::header(&msg, HEADER_PRODUCED_AT).and_then(|v| v.parse().ok());
                record.show(&mut board.lock().expect("the board's lock"), produced_us);
            }
            Err(e) => {
                metrics::counter!("chainflow_live_skipped_total", "topic" => topic, "reason" => e.kind()).increment(1);
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(topic, partition = msg.partition(), offset = msg.offset(), error = %e,
                        "a record the live view cannot show (the sink dead-letters it; the view skips it)");
                }
            }
        }
    }
}
