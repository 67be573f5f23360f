//! The enrich stage: a consumer group on `market.option_chain` that writes each chain's
//! enriched form (`chainflow_analytics::enrich_chain`) to `enriched.option_chain` under the
//! same key and partition, or the raw record to `dlq.market.option_chain` with the reason.
//! With transactions (`enrich.transactions`), each raw chain yields exactly one enriched
//! chain or one dead letter; without, at least one, deduplicated downstream by its id.

use anyhow::{Context, Result};
use chainflow_analytics::{enrich_chain, ProductTerms, Source};
use chainflow_codec::{Codec, CodecError};
use chainflow_config::{EnrichConfig, KafkaConfig};
use chainflow_contract::topics::{ENRICHED_CHAIN, HEADER_ID, OPTION_CHAIN};
use chainflow_contract::{EnrichedOptionChain, OptionChain, Record};
use chainflow_kafka::consumer::{hostname, rewind};
use chainflow_kafka::{blocking, consumer_config, producer_config, transactional_producer_config, DeadLetter};
use chainflow_runtime::{Stage, StageContext, StageStats};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a start-up check of the broker waits for an answer.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long transaction calls wait for the broker.
const TRANSACTION_TIMEOUT: Duration = Duration::from_mins(1);
/// First delay after a failed batch; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay after failed batches.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The enrich stage, built from `[enrich]`, the Kafka connection, a registry codec and the
/// products' valuation terms.
pub struct Enrich {
    section: EnrichConfig,
    kafka: KafkaConfig,
    codec: Arc<Codec>,
    products: BTreeMap<String, ProductTerms>,
    stats: Arc<StageStats>,
}

impl Enrich {
    /// The stage; nothing connects until it runs.
    pub fn new(
        section: &EnrichConfig,
        kafka: &KafkaConfig,
        codec: Arc<Codec>,
        products: BTreeMap<String, ProductTerms>,
        stats: Arc<StageStats>,
    ) -> Self {
        Self {
            section: section.clone(),
            kafka: kafka.clone(),
            codec,
            products,
            stats,
        }
    }

    /// Connects the consumer and the producer, and checks that the broker and the registry
    /// answer; `None` when asked to stop first.
    async fn connect(self, ctx: &StageContext) -> Result<Option<Worker>> {
        let group = &self.section.group_id;
        let consumer: Arc<StreamConsumer> = Arc::new(
            consumer_config(&self.kafka, group)
                .create()
                .context("creating the enrich consumer")?,
        );
        let broker = format!("Kafka at {}", self.kafka.bootstrap_servers);
        let reached = ctx
            .connect(&broker, || async {
                blocking::fetch_metadata(&consumer, Some(OPTION_CHAIN), METADATA_TIMEOUT)
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await?;
        if reached.is_none() {
            return Ok(None);
        }
        if ctx
            .connect("the Schema Registry", || async {
                self.codec
                    .register::<EnrichedOptionChain>()
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let transactions = self.section.transactions;
        let producer: FutureProducer = if transactions {
            let txn_id = format!("{group}-{}", hostname());
            let producer: FutureProducer = transactional_producer_config(&self.kafka, &txn_id)
                .create()
                .context("creating the enrich producer")?;
            blocking::init_transactions(&producer, TRANSACTION_TIMEOUT)
                .await
                .with_context(|| format!("initialising transactions (transactional.id {txn_id})"))?;
            producer
        } else {
            producer_config(&self.kafka)
                .create()
                .context("creating the enrich producer")?
        };
        consumer
            .subscribe(&[OPTION_CHAIN])
            .context("subscribing to market.option_chain")?;
        tracing::info!(group = %group, transactions, "enrich ready");
        Ok(Some(Worker {
            consumer,
            producer,
            codec: self.codec,
            products: self.products,
            transactions,
            pending: std::sync::Mutex::new(Vec::new()),
            max_records: self.section.transaction_max_records,
            max_wait: Duration::from_millis(self.section.transaction_max_ms),
            stats: self.stats,
        }))
    }
}

impl Stage for Enrich {
    fn name(&self) -> &'static str {
        "enrich"
    }

    /// Runs until stopped; the open transaction (or batch) is finished before returning.
    async fn run(self, ctx: StageContext) -> Result<()> {
        let Some(worker) = self.connect(&ctx).await? else {
            return Ok(());
        };
        ctx.set_ready(true);
        worker.run(&ctx).await
    }
}

/// What became of one input record.
#[derive(Clone, Copy)]
enum Outcome {
    Enriched,
    DeadLettered,
}

/// Outcomes of one transaction.
#[derive(Default)]
struct Tally {
    enriched: u64,
    dead: u64,
}

impl Tally {
    fn count(&mut self, o: Outcome) {
        match o {
            Outcome::Enriched => self.enriched += 1,
            Outcome::DeadLettered => self.dead += 1,
        }
    }

    fn total(&self) -> u64 {
        self.enriched + self.dead
    }
}

/// The connected stage: consumer, producer, codec and products.
struct Worker {
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    codec: Arc<Codec>,
    products: BTreeMap<String, ProductTerms>,
    transactions: bool,
    /// Deliveries of the open batch, awaited before its offsets are committed (no transactions).
    pending: std::sync::Mutex<Vec<DeliveryFuture>>,
    max_records: usize,
    max_wait: Duration,
    stats: Arc<StageStats>,
}

impl Worker {
    /// Runs until `ctx` says stop.
    async fn run(self, ctx: &StageContext) -> Result<()> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let first = tokio::select! {
                biased;
                () = ctx.stopped() => break,
                m = self.consumer.recv() => m.context("consuming market.option_chain")?,
            };
            match self.transaction(first).await {
                Ok(()) => backoff = FIRST_BACKOFF,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "enrich transaction aborted; rewinding");
                    metrics::counter!("chainflow_enrich_aborted_transactions_total").increment(1);
                    if self.transactions {
                        blocking::abort_transaction(&self.producer, TRANSACTION_TIMEOUT)
                            .await
                            .context("aborting the transaction")?;
                    }
                    self.pending.lock().expect("pending deliveries").clear();
                    rewind(&self.consumer).await?;
                    tokio::select! {
                        () = ctx.stopped() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::info!("enrich stopped");
        Ok(())
    }

    /// One transaction (or batch): `first` and whatever follows within the size and time
    /// limits. Offsets are committed with the transaction, or after every record produced
    /// in the batch was acknowledged.
    async fn transaction(&self, first: BorrowedMessage<'_>) -> Result<()> {
        let started = Instant::now();
        if self.transactions {
            rdkafka::producer::Producer::begin_transaction(&self.producer).context("beginning a transaction")?;
        }
        let mut tally = Tally::default();
        tally.count(self.process(&first).await?);
        drop(first);
        let deadline = tokio::time::Instant::now() + self.max_wait;
        while tally.total() < self.max_records as u64 {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(m) => {
                    let m = m.context("consuming market.option_chain")?;
                    tally.count(self.process(&m).await?);
                }
                Err(_) => break,
            }
        }
        let positions = self.consumer.position().context("reading consumer positions")?;
        if self.transactions {
            let metadata = self.consumer.group_metadata().context("no consumer group metadata")?;
            blocking::commit_transaction(&self.producer, positions, metadata, TRANSACTION_TIMEOUT)
                .await
                .context("committing the transaction with its offsets")?;
        } else {
            let deliveries = std::mem::take(&mut *self.pending.lock().expect("pending deliveries"));
            for delivery in deliveries {
                delivery
                    .await
                    .map_err(|_| anyhow::anyhow!("delivery report lost"))?
                    .map_err(|(e, _)| anyhow::Error::new(e).context("the broker refused an enriched record"))?;
            }
            blocking::commit(&self.consumer, positions)
                .await
                .context("committing enrich offsets")?;
        }
        StageStats::add(&self.stats.records_in, tally.total());
        StageStats::add(&self.stats.records_out, tally.enriched);
        StageStats::add(&self.stats.dead_letters, tally.dead);
        metrics::counter!("chainflow_enrich_records_total", "outcome" => "enriched").increment(tally.enriched);
        metrics::counter!("chainflow_enrich_records_total", "outcome" => "dead_letter").increment(tally.dead);
        metrics::histogram!("chainflow_enrich_transaction_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Decodes, enriches and produces one record inside the open transaction.
    async fn process(&self, msg: &BorrowedMessage<'_>) -> Result<Outcome> {
        let payload = msg.payload().unwrap_or_default();
        let verdict = match self.codec.decode::<OptionChain>(payload).await {
            Ok(chain) => {
                let source = Source {
                    topic: msg.topic(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                };
                let now = chrono::Utc::now().timestamp_micros();
                enrich_chain(&chain, &self.products, source, now).map_err(|e| (e.kind(), e.to_string()))
            }
            Err(e) if e.is_transient() => return Err(anyhow::Error::new(e).context("decoding a chain")),
            Err(e) => Err((e.kind(), e.to_string())),
        };
        match verdict {
            Ok(enriched) => {
                let bytes = self
                    .codec
                    .encode(&enriched)
                    .await
                    .map_err(|e: CodecError| anyhow::Error::new(e))?;
                let key = enriched.key();
                let id = enriched.id();
                let headers = OwnedHeaders::new().insert(Header {
                    key: HEADER_ID,
                    value: Some(&id),
                });
                let record = FutureRecord::to(ENRICHED_CHAIN)
                    .key(&key)
                    .payload(&bytes)
                    .partition(msg.partition())
                    .headers(headers);
                self.send(record).await?;
                Ok(Outcome::Enriched)
            }
            Err((kind, message)) => {
                tracing::warn!(kind, %message, partition = msg.partition(), offset = msg.offset(), "chain dead-lettered");
                let letter = DeadLetter::new(msg, "enrich", kind, &message);
                self.send(letter.record()).await?;
                Ok(Outcome::DeadLettered)
            }
        }
    }

    /// Enqueues a record in the transaction, waiting while the local queue is full.
    async fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(&self, mut record: FutureRecord<'_, K, P>) -> Result<()> {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    if !self.transactions {
                        self.pending.lock().expect("pending deliveries").push(delivery);
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err((e, _)) => return Err(anyhow::Error::new(e).context("producing an enriched chain")),
            }
        }
    }
}
