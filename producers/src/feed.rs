//! `chainflow feed`: the simulated market to market.underlying, market.option_quote and
//! market.option_chain, paced, optionally recorded to NDJSON.

use crate::pacing::Pace;
use crate::record::Recorder;
use crate::sender::{FeedSummary, Sender};
use crate::sim::{MarketEvent, Pricing, Scenario, SimOptions, Simulator};
use anyhow::Result;
use chainflow_config::Config;
use chainflow_kafka::StageStats;
use chainflow_schemas::Codec;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What to produce.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Stop after this many chain snapshots, with the ticks and quotes before them (`None`:
    /// until shutdown).
    pub chains: Option<u64>,
    /// Simulated start time, µs since the epoch.
    pub start_us: i64,
    /// Seed of the simulator.
    pub seed: u64,
    /// Market regime.
    pub scenario: Scenario,
    /// How fast messages go out.
    pub pace: Pace,
    /// Also write every produced message to this NDJSON file.
    pub record: Option<PathBuf>,
}

/// Sleeps until `due` after `started`; false when `shutdown` came first.
pub(crate) async fn wait_until(
    started: Instant,
    due: Option<std::time::Duration>,
    shutdown: &CancellationToken,
) -> bool {
    match due {
        None => !shutdown.is_cancelled(),
        Some(d) => tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep_until((started + d).into()) => true,
        },
    }
}

/// The feed stage.
pub struct Feed {
    sender: Sender,
    simulator: Simulator,
    stats: Arc<StageStats>,
}

impl Feed {
    /// A feed of the configured products.
    pub fn new(config: &Config, codec: Arc<Codec>, stats: Arc<StageStats>, options: &FeedOptions) -> Result<Self> {
        let simulator = Simulator::new(
            config.product_specs()?.into_values(),
            SimOptions {
                seed: options.seed,
                start_us: options.start_us,
                scenario: options.scenario,
                pricing: Pricing::Ticks,
            },
        );
        Ok(Self {
            sender: Sender::new(&config.kafka, codec)?,
            simulator,
            stats,
        })
    }

    /// Produces until `options.chains` snapshots are sent or `shutdown`, then waits for the
    /// broker to acknowledge everything sent.
    pub async fn run(mut self, options: &FeedOptions, shutdown: CancellationToken) -> Result<FeedSummary> {
        self.sender.register().await?;
        let mut recorder = options.record.as_deref().map(Recorder::create).transpose()?;
        let started = Instant::now();
        let (mut sent, mut chains) = (0u64, 0u64);
        while options.chains.is_none_or(|n| chains < n) {
            let event = self.simulator.next().expect("the simulator never ends");
            if !wait_until(
                started,
                options.pace.due(sent, event.event_time() - options.start_us),
                &shutdown,
            )
            .await
            {
                break;
            }
            let key = event.key();
            self.sender.send(&key, &event).await?;
            if let Some(r) = &mut recorder {
                r.write(&key, &event)?;
            }
            sent += 1;
            chains += matches!(event, MarketEvent::Chain(_)) as u64;
            StageStats::add(&self.stats.records_in, 1);
        }
        if let Some(r) = recorder {
            r.finish()?;
        }
        let summary = self.sender.finish().await?;
        StageStats::add(&self.stats.records_out, summary.total());
        Ok(summary)
    }
}
