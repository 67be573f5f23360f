//! A downstream consumer of chainflow's topics in Rust, with nothing of chainflow but its
//! topic contract (docs/topics.md): rdkafka reads, schema_registry_converter decodes each
//! record with the writer's schema from the Schema Registry (its id is in the record), and
//! each value is printed as one JSON line, in the form `chainflow tail` prints (times RFC
//! 3339 UTC with microseconds, dates YYYY-MM-DD).
//!
//! ```sh
//! cargo run --example consume -- market.underlying --partition 0 --offset 120 --count 10
//! cargo run --example consume -- enriched.option_chain --group my-team --count 100
//! ```
//!
//! With `--partition` and `--offset` it reads from there without a consumer group;
//! otherwise it joins `--group` and commits as it goes.

use anyhow::{bail, Context, Result};
use apache_avro::types::Value as Avro;
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Prints records of a chainflow topic as JSON lines.
#[derive(Parser)]
struct Args {
    /// The topic.
    topic: String,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Schema Registry URL.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    registry: String,
    /// Consumer group, when no --partition is given.
    #[arg(long, default_value = "example-rust")]
    group: String,
    /// Read this partition from --offset, without a group.
    #[arg(long, requires = "offset")]
    partition: Option<i32>,
    /// First offset read in --partition.
    #[arg(long)]
    offset: Option<i64>,
    /// Stop after this many records.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Give up after this many seconds without a record.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// The JSON form of an Avro value: records as objects, times and dates as text.
fn json_of(value: Avro) -> Value {
    match value {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => b.into(),
        Avro::Int(i) => i.into(),
        Avro::Long(l) => l.into(),
        Avro::Float(f) => f.into(),
        Avro::Double(d) => d.into(),
        Avro::String(s) | Avro::Enum(_, s) => s.into(),
        Avro::Union(_, inner) => json_of(*inner),
        Avro::Array(items) => items.into_iter().map(json_of).collect(),
        Avro::Map(entries) => entries
            .into_iter()
            .map(|(k, v)| (k, json_of(v)))
            .collect::<Map<_, _>>()
            .into(),
        Avro::Record(fields) => fields
            .into_iter()
            .map(|(k, v)| (k, json_of(v)))
            .collect::<Map<_, _>>()
            .into(),
        Avro::TimestampMicros(us) => chrono::DateTime::from_timestamp_micros(us)
            .map_or_else(|| us.into(), |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string().into()),
        Avro::Date(days) => chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
            .map_or_else(|| days.into(), |d| d.to_string().into()),
        other => json!(format!("{other:?}")),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .set(
            "enable.auto.commit",
            if args.partition.is_some() { "false" } else { "true" },
        );
    let consumer: StreamConsumer = config.create().context("creating the consumer")?;
    match (args.partition, args.offset) {
        (Some(p), Some(o)) => {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&args.topic, p, Offset::Offset(o))?;
            consumer.assign(&tpl)?;
        }
        _ => consumer.subscribe(&[&args.topic])?,
    }
    let decoder = AvroDecoder::new(SrSettings::new(args.registry.clone()));
    for _ in 0..args.count {
        let Ok(msg) = tokio::time::timeout(Duration::from_secs(args.timeout), consumer.recv()).await else {
            bail!("no record within {} s", args.timeout);
        };
        let msg = msg.with_context(|| format!("reading {}", args.topic))?;
        let decoded = decoder
            .decode(msg.payload())
            .await
            .with_context(|| format!("decoding partition {} offset {}", msg.partition(), msg.offset()))?;
        println!("{}", json_of(decoded.value));
    }
    Ok(())
}
