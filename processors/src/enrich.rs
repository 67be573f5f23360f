//! `chainflow enrich`: a consumer group on market.option_chain that writes enriched chains
//! to enriched.option_chain (same key, same partition) with Kafka transactions, so each raw
//! chain yields exactly one enriched chain or one dead letter.

use crate::analytics::{analyze, validate, ChainParams, InvalidChain, ANALYTICS_VERSION};
use anyhow::{Context, Result};
use chainflow_config::{Config, ProductSpec};
use chainflow_kafka::consumer::{hostname, rewind};
use chainflow_kafka::{consumer_config, producer_config, transactional_producer_config, DeadLetter, StageStats};
use chainflow_schemas::topics::{ENRICHED_CHAIN, HEADER_ID, OPTION_CHAIN};
use chainflow_schemas::{Codec, CodecError, EnrichedOptionChain, OptionChain, Record};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Where a raw chain was read from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Turns one raw chain into its enriched form: the same input always gives the same key,
/// id and analytics; only `processed_at` records when it happened.
pub fn enrich_chain(
    chain: &OptionChain,
    products: &BTreeMap<String, ProductSpec>,
    source: Source<'_>,
    processed_at: i64,
) -> Result<EnrichedOptionChain, InvalidChain> {
    let product = validate(chain, products)?;
    let params = ChainParams::for_chain(product, chain);
    let analytics = analyze(chain, &params);
    let m = analytics.metrics;
    Ok(EnrichedOptionChain {
        product: chain.product.clone(),
        expiry: chain.expiry,
        lot_size: chain.lot_size,
        spot: chain.spot,
        event_time: chain.event_time,
        seq: chain.seq,
        strikes: analytics.strikes,
        pcr_oi: m.pcr_oi,
        pcr_volume: m.pcr_volume,
        atm_strike: m.atm_strike,
        atm_straddle_price: m.atm_straddle_price,
        max_pain_strike: m.max_pain_strike,
        total_call_oi: m.total_call_oi,
        total_put_oi: m.total_put_oi,
        call_oi_otm: m.call_oi_otm,
        put_oi_otm: m.put_oi_otm,
        call_buildup_otm: m.call_buildup_otm,
        put_buildup_otm: m.put_buildup_otm,
        atm_iv: m.atm_iv,
        iv_skew_25d: m.iv_skew_25d,
        rate: params.rate,
        dividend_yield: params.dividend_yield,
        time_to_expiry: params.time_to_expiry,
        analytics_version: ANALYTICS_VERSION.into(),
        source_topic: source.topic.into(),
        source_partition: source.partition,
        source_offset: source.offset,
        processed_at,
    })
}

/// What became of one input record.
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

/// The enrich stage: consumer, transactional producer, codec and products.
pub struct Enrich {
    consumer: StreamConsumer,
    producer: FutureProducer,
    codec: Arc<Codec>,
    products: BTreeMap<String, ProductSpec>,
    transactions: bool,
    /// Deliveries of the open batch, awaited before its offsets are committed (no transactions).
    pending: std::sync::Mutex<Vec<DeliveryFuture>>,
    max_records: usize,
    max_wait: Duration,
    stats: Arc<StageStats>,
}

impl Enrich {
    /// Connects, subscribes and initialises transactions.
    pub fn new(config: &Config, codec: Arc<Codec>, stats: Arc<StageStats>) -> Result<Self> {
        let group = &config.enrich.group_id;
        let consumer: StreamConsumer = consumer_config(&config.kafka, group)
            .create()
            .context("creating the enrich consumer")?;
        consumer
            .subscribe(&[OPTION_CHAIN])
            .context("subscribing to market.option_chain")?;
        let transactions = config.enrich.transactions;
        let producer: FutureProducer = if transactions {
            let txn_id = format!("{group}-{}", hostname());
            let producer: FutureProducer = transactional_producer_config(&config.kafka, &txn_id)
                .create()
                .context("creating the enrich producer")?;
            producer
                .init_transactions(Duration::from_secs(30))
                .with_context(|| format!("initialising transactions (transactional.id {txn_id})"))?;
            producer
        } else {
            producer_config(&config.kafka)
                .create()
                .context("creating the enrich producer")?
        };
        tracing::info!(group = %group, transactions, "enrich ready");
        Ok(Self {
            consumer,
            producer,
            codec,
            products: config.product_specs()?,
            transactions,
            pending: std::sync::Mutex::new(Vec::new()),
            max_records: config.enrich.transaction_max_records,
            max_wait: Duration::from_millis(config.enrich.transaction_max_ms),
            stats,
        })
    }

    /// Runs until `shutdown`; the open transaction is committed before returning.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                m = self.consumer.recv() => m.context("consuming market.option_chain")?,
            };
            match self.transaction(first).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "enrich transaction aborted; rewinding");
                    metrics::counter!("chainflow_enrich_aborted_transactions_total").increment(1);
                    if self.transactions {
                        tokio::task::block_in_place(|| self.producer.abort_transaction(Duration::from_secs(30)))
                            .context("aborting the transaction")?;
                    }
                    self.pending.lock().expect("pending deliveries").clear();
                    rewind(&self.consumer)?;
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
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
            self.producer.begin_transaction().context("beginning a transaction")?;
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
            tokio::task::block_in_place(|| -> Result<()> {
                self.producer
                    .send_offsets_to_transaction(&positions, &metadata, Duration::from_secs(30))
                    .context("adding offsets to the transaction")?;
                self.producer
                    .commit_transaction(Duration::from_secs(60))
                    .context("committing the transaction")
            })?;
        } else {
            let deliveries = std::mem::take(&mut *self.pending.lock().expect("pending deliveries"));
            for delivery in deliveries {
                delivery
                    .await
                    .map_err(|_| anyhow::anyhow!("delivery report lost"))?
                    .map_err(|(e, _)| anyhow::Error::new(e).context("the broker refused an enriched record"))?;
            }
            self.consumer
                .commit(&positions, CommitMode::Sync)
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
                let letter = DeadLetter::new(msg, kind, &message);
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
