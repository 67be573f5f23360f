//! The enrich stage: a consumer group on `market.option_chain` that writes each chain's
//! enriched form (`chainflow_analytics::enrich_chain`) to `enriched.option_chain` under the
//! same key and partition, or the raw record to `dlq.market.option_chain` with the reason.
//!
//! By default it works on any Kafka-compatible broker: an idempotent producer, offsets
//! committed only after the broker acknowledged every record of a batch, each enriched
//! chain carrying its id (`chainflow.id`) for downstream deduplication (at least once).
//! With `enrich.transactions` (Apache Kafka), each raw chain yields exactly one enriched
//! chain or one dead letter for `read_committed` consumers.
//!
//! [`process`] turns one record into its output; [`worker`] is the loop;
//! [`transactions`] the opt-in mode and its probe; [`context`] the rebalance notes.

pub mod context;
pub mod process;
pub mod transactions;
pub mod worker;

use anyhow::{Context, Result};
use chainflow_codec::{Codec, UnknownIdGrace};
use chainflow_config::{EnrichConfig, KafkaConfig};
use chainflow_contract::topics::{ENRICHED_CHAIN, OPTION_CHAIN};
use chainflow_contract::{EnrichedOptionChain, ProductTerms};
use chainflow_kafka::{blocking, consumer_config, producer_config, Holds, Isolation};
use chainflow_runtime::{RetryPolicy, Stage, StageContext, StageStats};
use context::EnrichContext;
use process::{Limits, Processor};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use worker::Worker;

/// How long a start-up check of the broker waits for an answer.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// librdkafka's default `message.max.bytes`, when `kafka.properties` does not set it.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The enrich stage, built from `[enrich]`, the Kafka connection, a registry codec (and how
/// long it waits for an unknown schema id) and the products' valuation terms.
pub struct Enrich {
    section: EnrichConfig,
    kafka: KafkaConfig,
    codec: Arc<Codec>,
    unknown_id_grace: Duration,
    products: BTreeMap<String, ProductTerms>,
    stats: Arc<StageStats>,
}

impl Enrich {
    /// The stage; nothing connects until it runs.
    pub fn new(
        section: &EnrichConfig,
        kafka: &KafkaConfig,
        codec: Arc<Codec>,
        unknown_id_grace: Duration,
        products: BTreeMap<String, ProductTerms>,
        stats: Arc<StageStats>,
    ) -> Self {
        Self {
            section: section.clone(),
            kafka: kafka.clone(),
            codec,
            unknown_id_grace,
            products,
            stats,
        }
    }

    /// The producer's `message.max.bytes`, as configured or librdkafka's default.
    fn max_bytes(&self) -> usize {
        self.kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
    }

    /// Connects the consumer and the producer, and checks that the broker and the registry
    /// answer (and, with transactions, that the broker commits one); `None` when asked to
    /// stop first.
    async fn connect(self, ctx: &StageContext) -> Result<Option<Worker>> {
        let group = &self.section.group_id;
        let consumer: Arc<StreamConsumer<EnrichContext>> = Arc::new(
            consumer_config(&self.kafka, group)
                .create_with_context(EnrichContext::default())
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
        let codec = &self.codec;
        if ctx
            .connect("the Schema Registry", || async {
                codec
                    .register::<EnrichedOptionChain>()
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let r = &self.section.retry;
        let retry = RetryPolicy::from_millis(r.initial_ms, r.max_ms, r.budget_ms);
        let transactions = if self.section.transactions {
            Some(transactions::open(&self.kafka, &self.section, retry).await?)
        } else {
            None
        };
        let producer: FutureProducer = match &transactions {
            Some(t) => t.producer().clone(),
            None => producer_config(&self.kafka)
                .create()
                .context("creating the enrich producer")?,
        };
        consumer
            .subscribe(&[OPTION_CHAIN])
            .context("subscribing to market.option_chain")?;
        tracing::info!(group = %group, transactions = transactions.is_some(), group_protocol = ?self.kafka.group_protocol,
            isolation = %Isolation::ReadCommitted, "enrich ready");
        Ok(Some(Worker {
            consumer,
            producer,
            transactions,
            processor: self.processor(),
            holds: Holds::default(),
            batch_records: self.section.batch_records,
            max_bytes: self.max_bytes(),
            batch_wait: Duration::from_millis(self.section.batch_ms),
            retry,
            stats: self.stats,
            open: false,
            rewind_due: false,
            refused: HashSet::new(),
        }))
    }
}

impl Enrich {
    /// What the stage turns each raw chain into, with its products, limits and the grace
    /// for unknown schema ids: also what `chainflow replay --reprocess` runs.
    pub fn processor(&self) -> Processor {
        Processor::new(
            self.codec.clone(),
            UnknownIdGrace::new(self.unknown_id_grace, "enrich"),
            self.products.clone(),
            Limits {
                max_strikes: self.section.max_strikes,
                max_bytes: self.max_bytes(),
            },
        )
    }
}

/// Shows enrich's counters at 0 from the start (a rate needs a first sample).
fn announce_metrics() {
    metrics::counter!("chainflow_records_in_total", "stage" => "enrich", "topic" => OPTION_CHAIN).increment(0);
    metrics::counter!("chainflow_records_out_total", "stage" => "enrich", "topic" => ENRICHED_CHAIN).increment(0);
    for outcome in ["enriched", "dead_letter"] {
        metrics::counter!("chainflow_enrich_records_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["solved", "failed"] {
        metrics::counter!("chainflow_iv_solves_total", "outcome" => outcome).increment(0);
    }
    metrics::counter!("chainflow_enrich_retries_total").increment(0);
    for change in ["assigned", "revoked"] {
        metrics::counter!("chainflow_enrich_rebalances_total", "change" => change).increment(0);
    }
    metrics::counter!("chainflow_enrich_registry_waits_total").increment(0);
    metrics::counter!("chainflow_enrich_aborted_batches_total").increment(0);
    for outcome in ["committed", "aborted"] {
        metrics::counter!("chainflow_enrich_transactions_total", "outcome" => outcome).increment(0);
    }
    for call in ["send_offsets", "commit", "abort"] {
        metrics::counter!("chainflow_enrich_transaction_retries_total", "call" => call).increment(0);
    }
    for by in ["instance", "group"] {
        metrics::counter!("chainflow_enrich_fenced_total", "by" => by).increment(0);
    }
    metrics::counter!("chainflow_unknown_schema_waits_total", "stage" => "enrich").increment(0);
}

impl Stage for Enrich {
    fn name(&self) -> &'static str {
        "enrich"
    }

    /// Runs until stopped; the batch (or transaction) in progress is finished first.
    async fn run(self, ctx: StageContext) -> Result<()> {
        let Some(worker) = self.connect(&ctx).await? else {
            return Ok(());
        };
        announce_metrics();
        ctx.set_ready(true);
        worker.run(&ctx).await
    }
}
