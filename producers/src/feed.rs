//! `chainflow feed`: writes generated chain snapshots to market.option_chain with an
//! idempotent producer (acks=all), keyed `PRODUCT|YYYY-MM-DD`.

use crate::generator::ChainGenerator;
use anyhow::{Context, Result};
use chainflow_config::Config;
use chainflow_kafka::{producer_config, StageStats};
use chainflow_schemas::{Codec, OptionChain, Record};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Deliveries awaited at once; beyond this the feed waits for the broker.
const IN_FLIGHT: usize = 20_000;

/// What to produce.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Stop after this many chains (`None`: until shutdown).
    pub chains: Option<u64>,
    /// Simulated start time, µs since the epoch.
    pub start_us: i64,
    /// Chains per second (0: as fast as the broker takes them).
    pub rate: f64,
    /// Generator seed.
    pub seed: u64,
}

/// What was produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedSummary {
    /// Chains acknowledged by the broker.
    pub chains: u64,
    /// Options in those chains.
    pub options: u64,
    /// Event time of the first chain, µs.
    pub first_event_us: i64,
    /// Event time of the last chain, µs.
    pub last_event_us: i64,
}

/// The feed stage.
pub struct Feed {
    producer: FutureProducer,
    codec: Arc<Codec>,
    generator: ChainGenerator,
    stats: Arc<StageStats>,
}

impl Feed {
    /// A feed over the configured products.
    pub fn new(config: &Config, codec: Arc<Codec>, stats: Arc<StageStats>, seed: u64, start_us: i64) -> Result<Self> {
        let producer: FutureProducer = producer_config(&config.kafka)
            .create()
            .context("creating the feed producer")?;
        let generator = ChainGenerator::new(config.product_specs()?.into_values(), seed, start_us);
        Ok(Self {
            producer,
            codec,
            generator,
            stats,
        })
    }

    /// Produces until `options.chains` are acknowledged or `shutdown`.
    pub async fn run(mut self, options: &FeedOptions, shutdown: CancellationToken) -> Result<FeedSummary> {
        let mut summary = FeedSummary::default();
        let mut in_flight = FuturesUnordered::new();
        let started = Instant::now();
        let mut sent = 0u64;
        while options.chains.is_none_or(|n| sent < n) && !shutdown.is_cancelled() {
            if options.rate > 0.0 {
                let due = started + Duration::from_secs_f64(sent as f64 / options.rate);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
            }
            let chain = self.generator.next().expect("the generator never ends");
            let payload = self.codec.encode(&chain).await.context("encoding a chain")?;
            let key = chain.key();
            let mut record = FutureRecord::to(OptionChain::TOPIC).key(&key).payload(&payload);
            let delivery = loop {
                match self.producer.send_result(record) {
                    Ok(d) => break d,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        if let Some(done) = in_flight.next().await {
                            summary.count(done)?;
                        }
                    }
                    Err((e, _)) => return Err(anyhow::Error::new(e).context("producing a chain")),
                }
            };
            sent += 1;
            if summary.first_event_us == 0 {
                summary.first_event_us = chain.event_time;
            }
            summary.last_event_us = chain.event_time;
            let options_in_chain = chain.option_count() as u64;
            in_flight.push(async move { delivery.await.map(|r| r.map(|_| options_in_chain).map_err(|(e, _)| e)) });
            while in_flight.len() >= IN_FLIGHT {
                if let Some(done) = in_flight.next().await {
                    summary.count(done)?;
                }
            }
            // reap deliveries that are already acknowledged, so counts stay current
            while let Some(Some(done)) = in_flight.next().now_or_never() {
                summary.count(done)?;
            }
            StageStats::add(&self.stats.records_in, 1);
        }
        while let Some(done) = in_flight.next().await {
            summary.count(done)?;
        }
        self.producer
            .flush(Duration::from_secs(30))
            .context("flushing the feed producer")?;
        StageStats::add(&self.stats.records_out, summary.chains);
        Ok(summary)
    }
}

type Delivery = Result<Result<u64, KafkaError>, futures::channel::oneshot::Canceled>;

impl FeedSummary {
    fn count(&mut self, done: Delivery) -> Result<()> {
        match done {
            Ok(Ok(options)) => {
                self.chains += 1;
                self.options += options;
                metrics::counter!("chainflow_feed_records_total", "topic" => OptionChain::TOPIC).increment(1);
                Ok(())
            }
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the broker refused a chain")),
            Err(_) => Err(anyhow::anyhow!("a delivery report was lost (producer closed)")),
        }
    }
}
