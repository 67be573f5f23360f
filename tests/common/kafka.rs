//! Kafka for the tests: consumers outside any group's work, groups positioned at the end of
//! their topics, and a producer of contract records.

use chainflow_config::Config;
use std::sync::Arc;
use std::time::Duration;

/// A consumer of the stack's cluster outside any group's work (`group` only names it).
pub fn consumer(cfg: &Config, group: &str) -> Arc<rdkafka::consumer::BaseConsumer> {
    Arc::new(
        chainflow_kafka::consumer_config(&cfg.kafka, group)
            .set("isolation.level", "read_uncommitted")
            .create()
            .expect("a consumer"),
    )
}

/// The high watermark of every partition of `topic`.
pub async fn ends(consumer: &Arc<rdkafka::consumer::BaseConsumer>, topic: &str, partitions: i32) -> Vec<i64> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let (_, high) = chainflow_kafka::blocking::fetch_watermarks(consumer, topic, p, Duration::from_secs(10))
            .await
            .expect("watermarks");
        out.push(high);
    }
    out
}

/// A new consumer group `group` whose committed offsets are the current end of every
/// partition of `topic`: a stage started in it reads only what arrives from now on, however
/// much older data the shared stack holds.
pub async fn group_at_end(cfg: &Config, group: &str, topic: &str) {
    let consumer = consumer(cfg, group);
    let metadata = chainflow_kafka::blocking::fetch_metadata(&consumer, Some(topic), Duration::from_secs(10))
        .await
        .expect("topic metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, high) in ends(&consumer, topic, partitions).await.into_iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Offset(high))
            .expect("a partition");
    }
    chainflow_kafka::blocking::commit(&consumer, tpl)
        .await
        .expect("committing");
}

/// Positions the sink's consumer groups of `prefix` (`sink.group_id`) at the current end of
/// every stream's topics, so that a sink started with it stores only what arrives from now.
pub async fn sink_groups_at_end(cfg: &Config, prefix: &str) {
    for stream in chainflow_contract::streams::STREAMS {
        for topic in stream.topics() {
            group_at_end(cfg, &format!("{prefix}-{}", stream.name), &topic).await;
        }
    }
}

/// Produces records of the contract to their topics, encoded through the stack's registry.
pub struct Producer {
    producer: rdkafka::producer::FutureProducer,
    codec: chainflow_codec::Codec,
}

impl Producer {
    /// A producer for the stack of `cfg`.
    pub fn new(cfg: &Config) -> Self {
        Self {
            producer: chainflow_kafka::producer_config(&cfg.kafka)
                .create()
                .expect("a producer"),
            codec: chainflow_codec::Codec::new(
                chainflow_codec::registry_settings(&cfg.registry).expect("registry settings"),
            ),
        }
    }

    /// Sends `record` under its key; returns its encoded bytes.
    pub async fn send<R: chainflow_contract::Record>(&self, record: &R) -> Vec<u8> {
        let bytes = self.encode(record).await;
        self.send_raw(R::TOPIC, &record.key(), &bytes).await;
        bytes
    }

    /// Sends `record` under its key with the Kafka timestamp `timestamp_ms` (a record
    /// copied from another cluster keeps its source's, as MirrorMaker does).
    pub async fn send_dated<R: chainflow_contract::Record>(&self, record: &R, timestamp_ms: i64) {
        let bytes = self.encode(record).await;
        let key = record.key();
        let record = rdkafka::producer::FutureRecord::to(R::TOPIC)
            .key(key.as_str())
            .payload(bytes.as_slice())
            .timestamp(timestamp_ms);
        self.deliver(record).await;
    }

    /// `record` in the wire format, its schema registered.
    pub async fn encode<R: chainflow_contract::Record>(&self, record: &R) -> Vec<u8> {
        self.codec.encode(record).await.expect("encoding through the registry")
    }

    /// Sends `payload` under `key` to `topic` as it is; returns its partition and offset.
    pub async fn send_raw(&self, topic: &str, key: &str, payload: &[u8]) -> (i32, i64) {
        self.deliver(rdkafka::producer::FutureRecord::to(topic).key(key).payload(payload))
            .await
    }

    /// Sends `record` and waits for the broker's acknowledgement; its partition and offset.
    async fn deliver(&self, record: rdkafka::producer::FutureRecord<'_, str, [u8]>) -> (i32, i64) {
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e)
            .expect("the broker takes the record")
    }
}
