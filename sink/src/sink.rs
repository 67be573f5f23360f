//! The sink as stages, one per stream: each connects to ClickHouse and Kafka, joins its
//! own consumer group (`<sink.group_id>-<stream>`) and runs a [`Worker`].

use crate::batch::Limits;
use crate::ledger::Ledger;
use crate::rebalance::SinkContext;
use crate::stream::{with_stream, Avro, Chains, Stream, WithStream};
use crate::worker::{ConsumerFactory, Io, Worker};
use anyhow::{Context, Result};
use chainflow_clickhouse::ServerVersion;
use chainflow_codec::Codec;
use chainflow_config::{ClickHouseConfig, KafkaConfig, SinkConfig};
use chainflow_contract::streams;
use chainflow_kafka::{blocking, consumer_config, producer_config};
use chainflow_runtime::{RetryPolicy, Stage, StageContext, StageStats};
use futures::future::BoxFuture;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use std::sync::Arc;
use std::time::Duration;

/// How long a start-up check of the broker waits for an answer.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The sink of one stream, built from `[sink]`, the Kafka and ClickHouse connections.
pub struct StreamSink<S: Stream> {
    stream: S,
    section: SinkConfig,
    kafka: KafkaConfig,
    clickhouse: ClickHouseConfig,
    stats: Arc<StageStats>,
    max_links: usize,
}

impl<S: Stream> StreamSink<S> {
    /// The stage; nothing connects until it runs.
    pub fn new(
        stream: S,
        section: &SinkConfig,
        kafka: &KafkaConfig,
        clickhouse: &ClickHouseConfig,
        stats: Arc<StageStats>,
    ) -> Self {
        Self {
            stream,
            section: section.clone(),
            kafka: kafka.clone(),
            clickhouse: clickhouse.clone(),
            stats,
            max_links: 128,
        }
    }

    /// Links at most `max` records' traces from a batch's span (`otel.max_links`).
    #[must_use]
    pub fn max_links(mut self, max: usize) -> Self {
        self.max_links = max;
        self
    }

    /// The stream's consumer group.
    pub fn group(&self) -> String {
        format!("{}-{}", self.section.group_id, S::NAME)
    }

    /// Connects and subscribes; `None` when asked to stop first.
    async fn connect(self, ctx: &StageContext) -> Result<Option<Worker<S>>> {
        let client = chainflow_clickhouse::client(&self.clickhouse).with_database(&self.clickhouse.database);
        let clickhouse = format!("ClickHouse at {}", self.clickhouse.url);
        let Some(server) = ctx.connect(&clickhouse, || ServerVersion::detect(&client)).await? else {
            return Ok(None);
        };
        let group = self.group();
        let renew: ConsumerFactory = {
            let (kafka, group) = (self.kafka.clone(), group.clone());
            Box::new(move || new_consumer(&kafka, &group))
        };
        let consumer = renew()?;
        let topics = self.stream.topics();
        let broker = format!("Kafka at {}", self.kafka.bootstrap_servers);
        let reached = ctx
            .connect(&broker, || async {
                for topic in &topics {
                    blocking::fetch_metadata(&consumer, Some(topic), METADATA_TIMEOUT).await?;
                }
                Ok(())
            })
            .await?;
        if reached.is_none() {
            return Ok(None);
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .with_context(|| format!("subscribing to {}", names.join(", ")))?;
        let dlq: FutureProducer = producer_config(&self.kafka)
            .create()
            .context("creating the dead-letter producer")?;
        tracing::info!(stream = S::NAME, group = %group, clickhouse = %server, "sink stream ready");
        let s = &self.section;
        let io = Io {
            stream: self.stream,
            renew,
            ledger: Ledger::new(client.clone(), &group, Duration::from_millis(s.insert_timeout_ms)),
            client,
            dlq,
            tokens: server.has_dedup_token(),
            insert_timeout: Duration::from_millis(s.insert_timeout_ms),
            retry: RetryPolicy::from_millis(s.retry.initial_ms, s.retry.max_ms, s.retry.budget_ms),
            max_links: self.max_links,
        };
        let limits = Limits {
            rows: s.batch_rows,
            bytes: s.batch_bytes,
            age: Duration::from_millis(s.batch_ms),
        };
        Ok(Some(Worker::new(
            io,
            consumer,
            limits,
            Duration::from_millis(s.stall_after_ms),
            self.stats,
        )))
    }
}

/// A consumer of `group`, not subscribed yet.
fn new_consumer(kafka: &KafkaConfig, group: &str) -> Result<Arc<StreamConsumer<SinkContext>>> {
    Ok(Arc::new(
        consumer_config(kafka, group)
            // bounded prefetch: what a paused partition holds is dropped and read again
            .set("queued.max.messages.kbytes", "16384")
            .create_with_context(SinkContext::default())
            .context("creating the sink consumer")?,
    ))
}

impl<S: Stream> Stage for StreamSink<S> {
    fn name(&self) -> &'static str {
        S::STAGE
    }

    /// Runs until stopped, then writes and commits what it holds.
    async fn run(self, ctx: StageContext) -> Result<()> {
        let Some(worker) = self.connect(&ctx).await? else {
            return Ok(());
        };
        ctx.set_ready(true);
        worker.run(&ctx).await
    }
}

/// One of the sink's streams, as a stage (its type erased: a stream added to the
/// contract's list needs no variant here).
pub struct Sink {
    name: &'static str,
    run: Box<dyn FnOnce(StageContext) -> BoxFuture<'static, Result<()>> + Send>,
}

impl Sink {
    /// The stages of the streams `section.streams` names, decoding through `codec` and
    /// waiting `unknown_id_grace` for schema ids the registry does not know yet; the chains
    /// stream counts into `chain_stats` (what `chainflow run` shows); a batch's span links at
    /// most `max_links` records' traces.
    pub fn streams(
        section: &SinkConfig,
        kafka: &KafkaConfig,
        clickhouse: &ClickHouseConfig,
        codec: &Arc<Codec>,
        unknown_id_grace: Duration,
        chain_stats: &Arc<StageStats>,
        max_links: usize,
    ) -> Vec<Sink> {
        section
            .streams
            .iter()
            // the configuration was validated against the same list
            .filter_map(|name| streams::named(name))
            .map(|spec| {
                let build = Build {
                    section,
                    kafka,
                    clickhouse,
                    chain_stats,
                    max_links,
                };
                with_stream(spec, Avro::new(codec.clone(), unknown_id_grace, spec.stage), build)
            })
            .collect()
    }
}

/// Builds the stage of one stream.
struct Build<'a> {
    section: &'a SinkConfig,
    kafka: &'a KafkaConfig,
    clickhouse: &'a ClickHouseConfig,
    chain_stats: &'a Arc<StageStats>,
    max_links: usize,
}

impl WithStream for Build<'_> {
    type Output = Sink;

    fn with<S: Stream>(self, stream: S) -> Sink {
        let stats = if S::NAME == Chains::NAME {
            self.chain_stats.clone()
        } else {
            Arc::default()
        };
        let stage = StreamSink::new(stream, self.section, self.kafka, self.clickhouse, stats).max_links(self.max_links);
        Sink {
            name: S::STAGE,
            run: Box::new(move |ctx| Box::pin(stage.run(ctx))),
        }
    }
}

impl Stage for Sink {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(self, ctx: StageContext) -> Result<()> {
        (self.run)(ctx).await
    }
}
