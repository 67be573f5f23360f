//! `chainflow replay market.option_chain --reprocess`: raw chains enriched again with the
//! enrich stage's own [`Processor`] (this run's products, rates and analytics), written to
//! `chain_snapshots` and `chain_options` through the sink's [`Chains`] stream. Each row's
//! `version` is the reprocess time, so it replaces the row of the earlier processing under
//! `FINAL`, and `analytics_version` says which analytics made it. Nothing goes to
//! `enriched.option_chain` unless asked (`--to-topic`).

use chainflow_clickhouse::Failure;
use chainflow_contract::streams::{self, Source, StreamSpec};
use chainflow_contract::topics::{ENRICHED_CHAIN, OPTION_CHAIN};
use chainflow_enrich::process::{NotYet, Output, Processor};
use chainflow_runtime::Class;
use chainflow_sink::stream::{Chains, Reject, Stream};
use clickhouse::Client;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// Where reprocessed chains are also sent.
pub struct Forward {
    /// The producer.
    pub producer: FutureProducer,
    /// The topic (`enriched.option_chain`, or another).
    pub topic: String,
}

impl Forward {
    /// A producer to `topic`.
    pub fn new(kafka: &chainflow_config::KafkaConfig, topic: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        Ok(Self {
            producer: chainflow_kafka::producer_config(kafka)
                .create()
                .context("creating a Kafka producer")?,
            topic: topic.to_string(),
        })
    }
}

/// Raw chains in, the rows of their enriched form out.
pub struct Reprocess {
    processor: Processor,
    chains: Chains,
    processed_at: i64,
    forward: Option<Forward>,
}

impl Reprocess {
    /// Enriches with `processor` at `processed_at` (µs: the rows' version), storing through
    /// `chains`, and sending each enriched chain to `forward` when given.
    pub fn new(processor: Processor, chains: Chains, processed_at: i64, forward: Option<Forward>) -> Self {
        Self {
            processor,
            chains,
            processed_at,
            forward,
        }
    }
}

/// An enriched chain as a record, for `--to-topic`.
pub struct Enriched {
    key: String,
    headers: OwnedHeaders,
    value: Vec<u8>,
    partition: i32,
}

/// The rows of one reprocessed chain, and its record when it is also sent.
pub struct Reprocessed {
    rows: <Chains as Stream>::Rows,
    record: Option<Enriched>,
}

/// How long sending one reprocessed chain may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Not a stream of the sink's list: the raw chains, stored in the chains' tables.
const REPROCESS: StreamSpec = StreamSpec {
    name: "reprocess",
    stage: "replay.reprocess",
    source: Source::Topic(OPTION_CHAIN),
    tables: streams::CHAINS.tables,
};

impl Stream for Reprocess {
    type Rows = Reprocessed;
    const SPEC: &'static StreamSpec = &REPROCESS;

    async fn decode(&self, msg: &OwnedMessage) -> Result<Self::Rows, Reject> {
        let (key, headers, value) = match self.processor.process(msg, self.processed_at).await {
            Ok(Output::Enriched { key, headers, value }) => (key, headers, value),
            Ok(Output::DeadLetter { kind, message }) => return Err(Reject::Permanent { kind, message }),
            Err(NotYet::Unavailable(why)) => return Err(Reject::Transient(why)),
            Err(NotYet::UnknownId(id)) => return Err(Reject::Held(id)),
        };
        // the enriched record, as the live enrich stage would have produced it
        let enriched = OwnedMessage::new(
            Some(value),
            Some(key.clone().into_bytes()),
            ENRICHED_CHAIN.into(),
            msg.timestamp(),
            msg.partition(),
            msg.offset(),
            Some(headers.clone()),
        );
        let rows = self.chains.decode(&enriched).await?;
        let record = self.forward.as_ref().map(|_| Enriched {
            key,
            headers,
            value: enriched.payload().unwrap_or_default().to_vec(),
            partition: msg.partition(),
        });
        Ok(Reprocessed { rows, record })
    }

    fn row_count(rows: &Self::Rows) -> usize {
        Chains::row_count(&rows.rows)
    }

    fn event_time_us(rows: &Self::Rows) -> Option<i64> {
        Chains::event_time_us(&rows.rows)
    }

    /// The rows first; then, with a forward topic, the enriched chains, each to the
    /// partition of its raw chain (as enrich does).
    async fn insert(
        &self,
        client: &Client,
        records: &[&Self::Rows],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let rows: Vec<&<Chains as Stream>::Rows> = records.iter().map(|r| &r.rows).collect();
        self.chains.insert(client, &rows, token, timeout).await?;
        let Some(forward) = &self.forward else {
            return Ok(());
        };
        let sends = records.iter().filter_map(|r| r.record.as_ref()).map(|e| {
            forward.producer.send(
                FutureRecord::to(&forward.topic)
                    .key(e.key.as_str())
                    .payload(e.value.as_slice())
                    .headers(e.headers.clone())
                    .partition(e.partition),
                SEND_TIMEOUT,
            )
        });
        for sent in futures::future::join_all(sends).await {
            sent.map_err(|(e, _)| Failure {
                class: Class::Transient,
                code: None,
                message: format!("sending a reprocessed chain to {}: {e}", forward.topic),
            })?;
        }
        Ok(())
    }
}
