//! `chainflow feed play`: sends a recorded feed (NDJSON, or CSV chain snapshots) to the
//! market topics with the original keys, its timing scaled by a speed factor.

use crate::feed::wait_until;
use crate::pacing::Pace;
use crate::record::{read, BadLine};
use crate::sender::{FeedSummary, Sender};
use anyhow::{bail, Result};
use chainflow_config::KafkaConfig;
use chainflow_kafka::StageStats;
use chainflow_schemas::Codec;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a playback did.
#[derive(Debug, Default)]
pub struct PlaySummary {
    /// What the broker acknowledged.
    pub sent: FeedSummary,
    /// Lines that could not be read, in file order.
    pub bad: Vec<BadLine>,
}

/// Sends the recording at `path`; `speed` = recorded seconds per real second (0: as fast
/// as the broker takes them); `strict` stops at the first bad line.
pub async fn play(
    kafka: &KafkaConfig,
    codec: Arc<Codec>,
    path: &Path,
    speed: f64,
    strict: bool,
    stats: Arc<StageStats>,
    shutdown: CancellationToken,
) -> Result<PlaySummary> {
    let mut sender = Sender::new(kafka, codec)?;
    sender.register().await?;
    let pace = if speed > 0.0 {
        Pace::Speed(speed)
    } else {
        Pace::Unthrottled
    };
    let mut bad = Vec::new();
    let started = Instant::now();
    let mut first_event: Option<i64> = None;
    let mut sent = 0u64;
    for item in read(path)? {
        let recorded = match item {
            Ok(r) => r,
            Err(b) => {
                if strict {
                    bail!(
                        "{}: line {}: {} (--strict stops at the first bad line)",
                        path.display(),
                        b.line,
                        b.message
                    );
                }
                tracing::warn!(line = b.line, message = %b.message, "bad line skipped");
                bad.push(b);
                continue;
            }
        };
        let t = recorded.event.event_time();
        let offset = t - *first_event.get_or_insert(t);
        if !wait_until(started, pace.due(sent, offset), &shutdown).await {
            break;
        }
        sender.send(&recorded.key, &recorded.event).await?;
        sent += 1;
        StageStats::add(&stats.records_in, 1);
    }
    let summary = sender.finish().await?;
    StageStats::add(&stats.records_out, summary.total());
    Ok(PlaySummary { sent: summary, bad })
}
