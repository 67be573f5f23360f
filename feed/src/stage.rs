//! The feed as a stage: one send loop for the simulated market and for recordings.

use crate::pacing::Pace;
use crate::recording::{self, BadLine, Recorded, Recorder};
use crate::sender::{register_schemas, FeedSummary, Sender};
use crate::sim::{MarketEvent, Simulator};
use anyhow::{bail, Result};
use chainflow_codec::Codec;
use chainflow_config::KafkaConfig;
use chainflow_runtime::{Stage, StageContext, StageStats};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where the feed's messages come from.
pub enum Source {
    /// The simulated market, from its start; `chains`: stop after that many chain snapshots
    /// (with the ticks and quotes before them), else run until stopped.
    Simulated {
        /// The simulator, positioned at its start.
        simulator: Box<Simulator>,
        /// Chain snapshots to send, at most.
        chains: Option<u64>,
        /// The simulated start, µs: the pacing's origin.
        start_us: i64,
    },
    /// A recording (NDJSON, or CSV chain snapshots); `strict`: stop at the first bad line
    /// instead of reporting and skipping it.
    Recording {
        /// The file.
        path: PathBuf,
        /// Stop at the first bad line.
        strict: bool,
    },
}

/// What the feed did, once it is done: what the broker acknowledged, and the lines of a
/// recording that could not be read.
#[derive(Debug, Clone, Default)]
pub struct FeedReport {
    /// What the broker acknowledged.
    pub sent: FeedSummary,
    /// Bad lines of a recording, in file order.
    pub bad: Vec<BadLine>,
}

/// The feed stage.
pub struct Feed {
    kafka: KafkaConfig,
    codec: Arc<Codec>,
    source: Source,
    pace: Pace,
    record: Option<PathBuf>,
    stats: Arc<StageStats>,
    report: watch::Sender<Option<FeedReport>>,
}

impl Feed {
    /// A feed of `source` to the cluster of `kafka`, paced by `pace`, also written to the
    /// NDJSON file `record` if given; its counters go to `stats`.
    pub fn new(
        kafka: &KafkaConfig,
        codec: Arc<Codec>,
        source: Source,
        pace: Pace,
        record: Option<PathBuf>,
        stats: Arc<StageStats>,
    ) -> Self {
        Self {
            kafka: kafka.clone(),
            codec,
            source,
            pace,
            record,
            stats,
            report: watch::Sender::new(None),
        }
    }

    /// The feed's report: `None` until it is done, then what it sent.
    pub fn report(&self) -> watch::Receiver<Option<FeedReport>> {
        self.report.subscribe()
    }
}

/// Messages to send, or the lines of a recording that could not be read.
type Messages = Box<dyn Iterator<Item = Result<Recorded, BadLine>> + Send>;

/// A source, ready to read.
struct Opened {
    messages: Messages,
    /// Event time the pacing counts from: the simulated start, or else the first message's.
    origin: Option<i64>,
    /// The recording, when a bad line in it stops the feed (`--strict`).
    strict: Option<PathBuf>,
}

impl Source {
    fn open(self) -> Result<Opened> {
        Ok(match self {
            Source::Simulated {
                simulator,
                chains,
                start_us,
            } => Opened {
                messages: Box::new(simulated(*simulator, chains)),
                origin: Some(start_us),
                strict: None,
            },
            Source::Recording { path, strict } => Opened {
                messages: recording::read(&path)?,
                origin: None,
                strict: strict.then_some(path),
            },
        })
    }
}

/// The simulator's events up to the `chains`-th chain snapshot, as recorded messages.
fn simulated(simulator: Simulator, chains: Option<u64>) -> impl Iterator<Item = Result<Recorded, BadLine>> {
    let mut seen = 0u64;
    simulator
        .take_while(move |event| {
            let more = chains.is_none_or(|n| seen < n);
            seen += u64::from(matches!(event, MarketEvent::Chain(_)));
            more
        })
        .map(|event| {
            Ok(Recorded {
                key: event.key(),
                event,
            })
        })
}

impl Stage for Feed {
    fn name(&self) -> &'static str {
        "feed"
    }

    async fn run(self, ctx: StageContext) -> Result<()> {
        let codec = &self.codec;
        if ctx
            .connect("the Schema Registry", || register_schemas(codec))
            .await?
            .is_none()
        {
            return Ok(());
        }
        let mut sender = Sender::new(&self.kafka, self.codec.clone())?;
        ctx.set_ready(true);
        let Opened {
            messages,
            origin,
            strict,
        } = self.source.open()?;
        let mut recorder = self.record.as_deref().map(Recorder::create).transpose()?;
        let mut bad = Vec::new();
        let started = Instant::now();
        let mut first = origin;
        let mut sent = 0u64;
        for item in messages {
            let message = match (item, &strict) {
                (Ok(m), _) => m,
                (Err(b), Some(path)) => bail!(
                    "{}: line {}: {} (--strict stops at the first bad line)",
                    path.display(),
                    b.line,
                    b.message
                ),
                (Err(b), None) => {
                    tracing::warn!(line = b.line, message = %b.message, "bad line skipped");
                    bad.push(b);
                    continue;
                }
            };
            let t = message.event.event_time();
            let due = self.pace.due(sent, t - *first.get_or_insert(t));
            if !wait_until(started, due, &ctx).await {
                break;
            }
            sender.send(&message.key, &message.event).await?;
            if let Some(r) = &mut recorder {
                r.write(&message.key, &message.event)?;
            }
            sent += 1;
            StageStats::add(&self.stats.records_in, 1);
        }
        if let Some(r) = recorder {
            r.finish()?;
        }
        let summary = sender.finish().await?;
        StageStats::add(&self.stats.records_out, summary.total());
        self.report.send_replace(Some(FeedReport { sent: summary, bad }));
        Ok(())
    }
}

/// Sleeps until `due` after `started`; false when the stage is asked to stop first.
async fn wait_until(started: Instant, due: Option<Duration>, ctx: &StageContext) -> bool {
    match due {
        None => !ctx.is_stopping(),
        Some(d) => tokio::select! {
            () = ctx.stopped() => false,
            () = tokio::time::sleep_until((started + d).into()) => true,
        },
    }
}
