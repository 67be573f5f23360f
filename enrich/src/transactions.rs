//! Kafka transactions, opt-in (`enrich.transactions`): a transactional id stable across a
//! member's restarts, a probe at start that commits one marker record (so that a broker
//! that refuses transactions is found out at once, exit code 2 naming the setting), and the
//! calls of a transaction with librdkafka's rules for their failures:
//! - a retriable failure (a timeout) leaves the call in progress: it is called again,
//!   never followed by an abort or a new transaction;
//! - an abortable one (a refused record, the group's generation moved on) aborts the
//!   transaction, and the batch is read again;
//! - a fatal one (fenced by a newer instance with the same id) ends the stage.

use anyhow::{Context, Result};
use chainflow_config::{ConfigError, EnrichConfig, KafkaConfig};
use chainflow_contract::topics::{TopicSpec, TRANSACTION_PROBE};
use chainflow_kafka::consumer::hostname;
use chainflow_kafka::{blocking, ensure_topics, transactional_producer_config};
use chainflow_runtime::{fault, RetryPolicy};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::TopicPartitionList;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long one transactional call waits for the broker before it is called again (a
/// commit or an abort that times out is still in progress in librdkafka).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the start-up calls (registering the id, the probe) may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The transactional id of enricher `instance_id` (the host name when empty) in `group`:
/// stable across the member's restarts, so that a restarted member fences its
/// predecessor's open transaction as soon as it registers the id.
pub fn transactional_id(group: &str, instance_id: &str) -> String {
    if instance_id.is_empty() {
        format!("{group}-{}", hostname())
    } else {
        format!("{group}-{instance_id}")
    }
}

/// What to do after a transactional call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Call it again: the call is still in progress (librdkafka's retriable errors).
    Retry,
    /// Abort the transaction and read the batch again.
    Abort,
    /// The producer can no longer be used.
    Fatal,
}

/// librdkafka's class of a transactional call's error. A flush that timed out inside
/// rust-rdkafka's `commit_transaction` comes before librdkafka's commit, and is retried too.
pub fn verdict(e: &KafkaError) -> Verdict {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => Verdict::Fatal,
        KafkaError::Transaction(t) if t.txn_requires_abort() => Verdict::Abort,
        KafkaError::Transaction(t) if t.is_retriable() => Verdict::Retry,
        KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::MessageTimedOut) => Verdict::Retry,
        _ => Verdict::Abort,
    }
}

/// Who refused a transaction, when it was a fencing (counted in `chainflow_enrich_fenced_total`).
fn fenced_by(e: &KafkaError) -> Option<&'static str> {
    match e.rdkafka_error_code()? {
        RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch => {
            Some("instance")
        }
        RDKafkaErrorCode::IllegalGeneration
        | RDKafkaErrorCode::UnknownMemberId
        | RDKafkaErrorCode::FencedInstanceId
        | RDKafkaErrorCode::FencedMemberEpoch
        | RDKafkaErrorCode::StaleMemberEpoch => Some("group"),
        _ => None,
    }
}

/// A transaction that could not be completed.
#[derive(Debug)]
pub enum Failed {
    /// Aborted (or to be aborted): nothing of it is visible; the batch is read again.
    Abort(anyhow::Error),
    /// The producer is unusable, or the failures outlasted the retry budget: the stage ends.
    Fatal(anyhow::Error),
}

impl Failed {
    /// The error, whatever the class.
    pub fn into_error(self) -> anyhow::Error {
        match self {
            Failed::Abort(e) | Failed::Fatal(e) => e,
        }
    }
}

/// The transactional producer and how its calls are retried.
pub struct Transactions {
    producer: FutureProducer,
    id: String,
    /// `enrich.transaction_timeout_ms`: the coordinator aborts a transaction open longer.
    timeout: Duration,
    retry: RetryPolicy,
}

impl Transactions {
    /// The producer the records of a transaction are sent with.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Opens a transaction.
    pub fn begin(&self) -> Result<(), Failed> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.failed("beginning a transaction", e))
    }

    /// Adds `offsets` (the consumer group's, KIP-447) to the open transaction and commits
    /// it, calling again each call that timed out.
    pub async fn commit(&self, offsets: TopicPartitionList, group: ConsumerGroupMetadata) -> Result<(), Failed> {
        let group = Arc::new(group);
        fault::point("enrich.send_offsets").map_err(|e| Failed::Abort(e.into()))?;
        self.call("send_offsets", "adding the offsets to the transaction", || {
            blocking::send_offsets_to_transaction(&self.producer, offsets.clone(), group.clone(), CALL_TIMEOUT)
        })
        .await?;
        fault::point("enrich.commit_transaction").map_err(|e| Failed::Abort(e.into()))?;
        self.call("commit", "committing the transaction", || {
            blocking::commit_transaction(&self.producer, CALL_TIMEOUT)
        })
        .await?;
        metrics::counter!("chainflow_enrich_transactions_total", "outcome" => "committed").increment(1);
        Ok(())
    }

    /// Aborts the open transaction (calling again while it times out); an error only when
    /// the producer can no longer be used.
    pub async fn abort(&self) -> Result<()> {
        let aborted = self
            .call("abort", "aborting the transaction", || {
                blocking::abort_transaction(&self.producer, CALL_TIMEOUT)
            })
            .await;
        match aborted {
            Ok(()) => {
                metrics::counter!("chainflow_enrich_transactions_total", "outcome" => "aborted").increment(1);
                Ok(())
            }
            // an abort that itself needs an abort: the transaction was already rolled back
            Err(Failed::Abort(e)) => {
                tracing::info!(error = %format!("{e:#}"), "the transaction was already aborted");
                Ok(())
            }
            Err(Failed::Fatal(e)) => Err(e),
        }
    }

    /// Runs `call` (`what`, counted as `label`) until it succeeds or fails for a reason
    /// retrying cannot fix; a retriable failure is called again (librdkafka keeps the call
    /// in progress) within the budget.
    async fn call<F, Fut>(&self, label: &'static str, what: &'static str, call: F) -> Result<(), Failed>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = KafkaResult<()>>,
    {
        let mut backoff = self.retry.backoff();
        loop {
            let e = match call().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if verdict(&e) != Verdict::Retry {
                return Err(self.failed(what, e));
            }
            metrics::counter!("chainflow_enrich_transaction_retries_total", "call" => label).increment(1);
            let Some(delay) = backoff.delay() else {
                return Err(Failed::Fatal(anyhow::Error::new(e).context(format!(
                    "{what} kept timing out for {} ms (enrich.retry.budget_ms)",
                    self.retry.budget.as_millis()
                ))));
            };
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                "{what} did not complete; calling it again (it stays in progress in librdkafka)");
            tokio::time::sleep(delay).await;
        }
    }

    /// `e`, a failure of `what`, classified; a fencing is counted and says what to check.
    fn failed(&self, what: &str, e: KafkaError) -> Failed {
        let fenced = fenced_by(&e);
        if let Some(by) = fenced {
            metrics::counter!("chainflow_enrich_fenced_total", "by" => by).increment(1);
        }
        let fatal = verdict(&e) == Verdict::Fatal;
        let mut error = anyhow::Error::new(e).context(what.to_string());
        if fenced == Some("instance") {
            error = error.context(format!(
                "fenced: an enricher with the transactional id {} started after this one (a restart \
                 of this member, or another member with the same enrich.instance_id), or this \
                 transaction was open longer than enrich.transaction_timeout_ms ({} ms; the process \
                 was paused that long) and the transaction coordinator aborted it",
                self.id,
                self.timeout.as_millis()
            ));
        }
        if fatal {
            Failed::Fatal(error)
        } else {
            Failed::Abort(error)
        }
    }
}

/// The refusal of a broker without transactions, as a configuration error (exit code 2).
fn refused(kafka: &KafkaConfig, id: &str, what: &str, cause: &KafkaError) -> anyhow::Error {
    let fix = if cause.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidTransactionTimeout) {
        "lower enrich.transaction_timeout_ms to at most the broker's transaction.max.timeout.ms".to_string()
    } else {
        format!(
            "set enrich.transactions = false (the default), which works on any Kafka-compatible broker, or let \
             this client write transactional id {id}"
        )
    };
    anyhow::Error::new(ConfigError::Invalid(format!(
        "enrich.transactions: the broker at {} refused {what} ({cause}); {fix}",
        kafka.bootstrap_servers
    )))
}

/// The transactional producer, its id registered (which fences the predecessor's open
/// transaction), once its broker has committed a transaction: the marker record on
/// `_chainflow_enrich_probe`.
pub async fn open(kafka: &KafkaConfig, section: &EnrichConfig, retry: RetryPolicy) -> Result<Transactions> {
    let id = transactional_id(&section.group_id, &section.instance_id);
    let timeout = Duration::from_millis(section.transaction_timeout_ms);
    let producer: FutureProducer = transactional_producer_config(kafka, &id, timeout)
        .create()
        .context("creating the transactional producer")?;
    blocking::init_transactions(&producer, START_TIMEOUT)
        .await
        .map_err(|e| refused(kafka, &id, "a transactional id", &e))?;
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
        blocking::commit_transaction(&producer, START_TIMEOUT).await
    };
    probe
        .await
        .map_err(|e| refused(kafka, &id, "to commit a transaction", &e))?;
    tracing::info!(transactional_id = %id, transaction_timeout_ms = section.transaction_timeout_ms,
        "Kafka transactions: the broker committed the probe");
    Ok(Transactions {
        producer,
        id,
        timeout,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_the_group_and_the_instance_or_the_host() {
        assert_eq!(
            transactional_id("chainflow-enrich", "enrich-0"),
            "chainflow-enrich-enrich-0"
        );
        let host = transactional_id("g", "");
        assert_eq!(host, format!("g-{}", hostname()));
        assert_eq!(host, transactional_id("g", ""), "the same across restarts");
    }

    #[test]
    fn a_flush_that_timed_out_is_called_again_and_other_errors_abort() {
        assert_eq!(
            verdict(&KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)),
            Verdict::Retry
        );
        assert_eq!(
            verdict(&KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)),
            Verdict::Abort
        );
    }

    #[test]
    fn fencings_say_by_whom() {
        let by = |c| fenced_by(&KafkaError::MessageProduction(c));
        assert_eq!(by(RDKafkaErrorCode::ProducerFenced), Some("instance"));
        assert_eq!(by(RDKafkaErrorCode::IllegalGeneration), Some("group"));
        assert_eq!(by(RDKafkaErrorCode::StaleMemberEpoch), Some("group"));
        assert_eq!(by(RDKafkaErrorCode::RequestTimedOut), None);
    }
}
