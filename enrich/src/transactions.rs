//! Kafka transactions, opt-in (`enrich.transactions`): a transactional id unique to this
//! process, and a probe at start that commits one marker record, so that a broker without
//! transactions is found out at once (exit code 2 naming the setting) instead of failing
//! every batch.

use anyhow::{Context, Result};
use chainflow_config::{ConfigError, KafkaConfig};
use chainflow_contract::topics::{TopicSpec, TRANSACTION_PROBE};
use chainflow_kafka::consumer::hostname;
use chainflow_kafka::{blocking, ensure_topics, transactional_producer_config};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::time::Duration;

/// How long transaction calls wait for the broker.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_mins(1);

/// A transactional id unique to this process: two enrichers on one host never fence each
/// other. With offsets sent through the consumer group's metadata (KIP-447), a zombie is
/// fenced by the group generation, so the id need not be tied to partitions.
pub fn transactional_id(group: &str) -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{group}-{}-{}-{:x}",
        hostname(),
        std::process::id(),
        started & 0xffff_ffff
    )
}

/// The refusal of a broker without transactions, as a configuration error (exit code 2).
fn refused(kafka: &KafkaConfig, what: &str, cause: &anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(ConfigError::Invalid(format!(
        "enrich.transactions: the broker at {} refused {what} ({cause:#}); set enrich.transactions = false \
         (the default), which works on any Kafka-compatible broker",
        kafka.bootstrap_servers
    )))
}

/// A transactional producer whose broker has just committed a transaction: the marker
/// record on `_chainflow_enrich_probe`.
pub async fn producer(kafka: &KafkaConfig, group: &str) -> Result<FutureProducer> {
    let id = transactional_id(group);
    let producer: FutureProducer = transactional_producer_config(kafka, &id)
        .create()
        .context("creating the transactional producer")?;
    blocking::init_transactions(&producer, TRANSACTION_TIMEOUT)
        .await
        .map_err(|e| refused(kafka, "a transactional id", &e.into()))?;
    ensure_topics(
        kafka,
        &[TopicSpec {
            name: TRANSACTION_PROBE.into(),
            partitions: 1,
            compacted: false,
        }],
    )
    .await?;
    let probe = async {
        producer.begin_transaction()?;
        producer
            .send_result(FutureRecord::<str, str>::to(TRANSACTION_PROBE).payload(&id))
            .map_err(|(e, _)| e)?;
        blocking::commit_transaction_only(&producer, TRANSACTION_TIMEOUT).await
    };
    probe
        .await
        .map_err(|e| refused(kafka, "to commit a transaction", &e.into()))?;
    tracing::info!(transactional_id = %id, "Kafka transactions: the broker committed the probe");
    Ok(producer)
}
