//! Sending market events to Kafka: Avro through the registry, an idempotent producer
//! (acks=all, `murmur2_random`), a bounded number of deliveries in flight, and counts of what
//! the broker acknowledged, per topic.

use crate::sim::MarketEvent;
use anyhow::{Context, Result};
use chainflow_codec::Codec;
use chainflow_config::KafkaConfig;
use chainflow_contract::topics::HEADER_PRODUCED_AT;
use chainflow_contract::{OptionChain, OptionQuote, Record, UnderlyingTick};
use chainflow_kafka::trace;
use chainflow_kafka::{blocking, producer_config};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Deliveries awaited at once; beyond this the sender waits for the broker.
const IN_FLIGHT: usize = 20_000;

/// What the broker acknowledged of a feed or a playback.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedSummary {
    /// Messages per topic.
    pub messages: BTreeMap<&'static str, u64>,
    /// Options in the acknowledged chain snapshots.
    pub options: u64,
    /// Event time of the first and the last acknowledged chain snapshot, µs.
    pub chain_times: Option<(i64, i64)>,
}

impl FeedSummary {
    /// Messages acknowledged on `topic`.
    pub fn on(&self, topic: &str) -> u64 {
        self.messages.get(topic).copied().unwrap_or(0)
    }

    /// Messages acknowledged on every topic.
    pub fn total(&self) -> u64 {
        self.messages.values().sum()
    }

    /// Chain snapshots acknowledged.
    pub fn chains(&self) -> u64 {
        self.on(OptionChain::TOPIC)
    }

    fn count(&mut self, d: &Delivered) {
        *self.messages.entry(d.topic).or_insert(0) += 1;
        if let Some((options, time)) = d.chain {
            self.options += options;
            self.chain_times = Some(match self.chain_times {
                Some((first, last)) => (first.min(time), last.max(time)),
                None => (time, time),
            });
        }
    }
}

/// What one acknowledged message was.
struct Delivered {
    topic: &'static str,
    /// Options and event time, for a chain snapshot.
    chain: Option<(u64, i64)>,
}

type Pending = Pin<Box<dyn Future<Output = Result<Delivered>> + Send>>;

/// A Kafka producer for market events.
pub struct Sender {
    producer: FutureProducer,
    codec: Arc<Codec>,
    in_flight: FuturesUnordered<Pending>,
    acked: FeedSummary,
}

/// Registers the three market schemas (idempotent), so that the first messages do not wait.
pub async fn register_schemas(codec: &Codec) -> Result<()> {
    codec.register::<UnderlyingTick>().await?;
    codec.register::<OptionQuote>().await?;
    codec.register::<OptionChain>().await?;
    Ok(())
}

/// Encodes `event` in the Confluent wire format of its topic.
async fn encode(codec: &Codec, event: &MarketEvent) -> Result<Vec<u8>> {
    match event {
        MarketEvent::Tick(t) => codec.encode::<UnderlyingTick>(t).await,
        MarketEvent::Quote(q) => codec.encode::<OptionQuote>(q).await,
        MarketEvent::Chain(c) => codec.encode::<OptionChain>(c).await,
    }
    .with_context(|| format!("encoding a {} record", event.topic()))
}

fn wait(delivery: DeliveryFuture, topic: &'static str, chain: Option<(u64, i64)>) -> Pending {
    Box::pin(async move {
        match delivery.await {
            Ok(Ok(_)) => Ok(Delivered { topic, chain }),
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _))) => Err(anyhow::anyhow!(
                "a {topic} record was not acknowledged within message.timeout.ms (60 s unless \
                 kafka.properties sets it): the brokers were unreachable, or had fewer in-sync replicas than \
                 min.insync.replicas, for that long; what was acknowledged before is kept"
            )),
            Ok(Err((e, _))) => Err(anyhow::Error::new(e).context(format!("the broker refused a {topic} record"))),
            Err(_) => Err(anyhow::anyhow!("a delivery report was lost (producer closed)")),
        }
    })
}

impl Sender {
    /// An idempotent producer (acks=all, murmur2_random) for `kafka`.
    pub fn new(kafka: &KafkaConfig, codec: Arc<Codec>) -> Result<Self> {
        let producer = producer_config(kafka).create().context("creating the feed producer")?;
        Ok(Self {
            producer,
            codec,
            in_flight: FuturesUnordered::new(),
            acked: FeedSummary::default(),
        })
    }

    fn reap(&mut self, done: Result<Delivered>) -> Result<()> {
        let d = done?;
        metrics::counter!("chainflow_records_out_total", "stage" => "feed", "topic" => d.topic).increment(1);
        self.acked.count(&d);
        Ok(())
    }

    /// Enqueues `event` under `key`; waits while too many deliveries are outstanding.
    pub async fn send(&mut self, key: &str, event: &MarketEvent) -> Result<()> {
        let payload = encode(&self.codec, event).await?;
        let topic = event.topic();
        let chain = match event {
            MarketEvent::Chain(c) => Some((c.option_count() as u64, c.event_time)),
            _ => None,
        };
        let produced_at = chrono::Utc::now().timestamp_micros().to_string();
        // a trace per record, continued by enrich and the sink (when traces are exported)
        let span = tracing::info_span!("feed.produce", topic, key, trace_id = tracing::field::Empty);
        let headers = trace::with_context_of(
            &span,
            OwnedHeaders::new().insert(Header {
                key: HEADER_PRODUCED_AT,
                value: Some(&produced_at),
            }),
        );
        let mut record = FutureRecord::to(topic).key(key).payload(&payload).headers(headers);
        let delivery = loop {
            match self.producer.send_result(record) {
                Ok(d) => break d,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    match self.in_flight.next().await {
                        Some(done) => self.reap(done)?,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => return Err(anyhow::Error::new(e).context(format!("producing to {topic}"))),
            }
        };
        self.in_flight.push(wait(delivery, topic, chain));
        while self.in_flight.len() >= IN_FLIGHT {
            if let Some(done) = self.in_flight.next().await {
                self.reap(done)?;
            }
        }
        // count deliveries that are already acknowledged, so progress stays current
        while let Some(Some(done)) = self.in_flight.next().now_or_never() {
            self.reap(done)?;
        }
        Ok(())
    }

    /// Waits for every outstanding delivery and returns the counts.
    pub async fn finish(mut self) -> Result<FeedSummary> {
        while let Some(done) = self.in_flight.next().await {
            self.reap(done)?;
        }
        blocking::flush(&self.producer, Duration::from_secs(30))
            .await
            .context("flushing the feed producer")?;
        Ok(self.acked)
    }
}
