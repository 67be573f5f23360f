//! The librdkafka calls that block their thread on the network (commits, seeks, committed
//! offsets, metadata, watermarks, offsets for times, group lists, transactions, flush), run on tokio's
//! blocking pool so that the async workers never wait on a broker. `clippy.toml` forbids
//! calling them anywhere else.
#![allow(
    clippy::disallowed_methods,
    reason = "this module is where the blocking librdkafka calls are allowed"
)]

use rdkafka::admin::AdminClient;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::future_producer::FutureProducerContext;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::TopicPartitionList;
use std::sync::Arc;
use std::time::Duration;

/// Runs `f` on the blocking pool and returns what it returns (a panic in it is re-raised).
/// When the runtime is shutting down, the blocking task is cancelled before it runs: the
/// caller then waits for ever, which is until the runtime drops it.
async fn off_the_workers<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_cancelled() => std::future::pending().await,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A librdkafka handle that can ask the cluster for metadata.
pub trait Handle: Send + Sync + 'static {
    /// The handle's client context.
    type Context: ClientContext + 'static;
    /// The underlying client.
    fn client(&self) -> &Client<Self::Context>;
}

impl<C: ClientContext + 'static> Handle for AdminClient<C> {
    type Context = C;
    fn client(&self) -> &Client<C> {
        self.inner()
    }
}

impl<C: ConsumerContext + 'static> Handle for StreamConsumer<C> {
    type Context = C;
    fn client(&self) -> &Client<C> {
        Consumer::client(self)
    }
}

impl<C: ConsumerContext + 'static> Handle for BaseConsumer<C> {
    type Context = C;
    fn client(&self) -> &Client<C> {
        Consumer::client(self)
    }
}

impl<C: ClientContext + 'static> Handle for FutureProducer<C> {
    type Context = FutureProducerContext<C>;
    fn client(&self) -> &Client<FutureProducerContext<C>> {
        Producer::client(self)
    }
}

/// Metadata of `topic`, or of every topic.
pub async fn fetch_metadata<H: Handle>(
    handle: &Arc<H>,
    topic: Option<&str>,
    timeout: Duration,
) -> KafkaResult<Metadata> {
    let (handle, topic) = (handle.clone(), topic.map(str::to_string));
    off_the_workers(move || handle.client().fetch_metadata(topic.as_deref(), timeout)).await
}

/// The low and high watermarks of one partition.
///
/// librdkafka asks the partition's leader as its metadata cache names it, and when that
/// node is one it has since dropped (it was missing from a Metadata answer while it was
/// down) it answers "Unknown partition" without asking the cluster again, for as long as
/// the cache keeps the entry (minutes for a client that follows no topic: the fault suite's
/// and the tools' readers after a broker was killed). So that answer is met by one metadata
/// request for the topic, which renews the cache and the broker list, and the question is
/// asked again.
pub async fn fetch_watermarks<H: Handle>(
    handle: &Arc<H>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> KafkaResult<(i64, i64)> {
    let (handle, topic) = (handle.clone(), topic.to_string());
    off_the_workers(move || {
        let client = handle.client();
        match client.fetch_watermarks(&topic, partition, timeout) {
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition)) => {
                client.fetch_metadata(Some(&topic), timeout)?;
                client.fetch_watermarks(&topic, partition, timeout)
            }
            answer => answer,
        }
    })
    .await
}

/// Commits `offsets` for the consumer's group and waits for the broker's answer.
pub async fn commit<K, X>(consumer: &Arc<K>, offsets: TopicPartitionList) -> KafkaResult<()>
where
    K: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let consumer = consumer.clone();
    off_the_workers(move || consumer.commit(&offsets, CommitMode::Sync)).await
}

/// The group's committed offsets of the consumer's assigned partitions.
pub async fn committed<K, X>(consumer: &Arc<K>, timeout: Duration) -> KafkaResult<TopicPartitionList>
where
    K: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let consumer = consumer.clone();
    off_the_workers(move || consumer.committed(timeout)).await
}

/// The committed offsets of `partitions` for the consumer's group (`group.id`), whether or
/// not the consumer is a member of it.
pub async fn committed_offsets<K, X>(
    consumer: &Arc<K>,
    partitions: TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList>
where
    K: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let consumer = consumer.clone();
    off_the_workers(move || consumer.committed_offsets(partitions, timeout)).await
}

/// Moves the consumer to the offsets in `positions`; per-partition errors are in the result.
pub async fn seek_partitions<K, X>(
    consumer: &Arc<K>,
    positions: TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList>
where
    K: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let consumer = consumer.clone();
    off_the_workers(move || consumer.seek_partitions(positions, timeout)).await
}

/// For each partition of `times` (whose offsets are timestamps in ms), the first offset
/// whose record timestamp is at or after it (`Offset::End` when there is none).
pub async fn offsets_for_times<K, X>(
    consumer: &Arc<K>,
    times: TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList>
where
    K: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let consumer = consumer.clone();
    off_the_workers(move || consumer.offsets_for_times(times, timeout)).await
}

/// A consumer group as the cluster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group id.
    pub name: String,
    /// `Stable`, `Empty`, `PreparingRebalance`, `Dead`...
    pub state: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// Its members, as `client_id@host`.
    pub members: Vec<String>,
}

/// The consumer groups the cluster knows (or only `group`), with their state and members.
pub async fn fetch_group_list<H: Handle>(
    handle: &Arc<H>,
    group: Option<&str>,
    timeout: Duration,
) -> KafkaResult<Vec<Group>> {
    let (handle, group) = (handle.clone(), group.map(str::to_string));
    off_the_workers(move || {
        let list = handle.client().fetch_group_list(group.as_deref(), timeout)?;
        Ok(list
            .groups()
            .iter()
            .map(|g| Group {
                name: g.name().to_string(),
                state: g.state().to_string(),
                protocol_type: g.protocol_type().to_string(),
                members: g
                    .members()
                    .iter()
                    .map(|m| format!("{}@{}", m.client_id(), m.client_host()))
                    .collect(),
            })
            .collect())
    })
    .await
}

/// Waits until every record the producer holds is delivered (or `timeout`).
pub async fn flush<C: ClientContext + 'static>(producer: &FutureProducer<C>, timeout: Duration) -> KafkaResult<()> {
    let producer = producer.clone();
    off_the_workers(move || producer.flush(timeout)).await
}

/// Registers the producer's transactional id with the broker, fencing older instances.
pub async fn init_transactions<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    let producer = producer.clone();
    off_the_workers(move || producer.init_transactions(timeout)).await
}

/// Adds the consumer's `positions` to the open transaction, with the group's metadata
/// (KIP-447: a member whose generation has moved on is refused).
pub async fn send_offsets_to_transaction<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    positions: TopicPartitionList,
    group: Arc<ConsumerGroupMetadata>,
    timeout: Duration,
) -> KafkaResult<()> {
    let producer = producer.clone();
    off_the_workers(move || producer.send_offsets_to_transaction(&positions, &group, timeout)).await
}

/// Commits the open transaction. A timeout leaves the commit in progress in librdkafka:
/// it is to be called again, not followed by an abort.
pub async fn commit_transaction<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    let producer = producer.clone();
    off_the_workers(move || producer.commit_transaction(timeout)).await
}

/// Aborts the open transaction: nothing produced in it becomes visible to read_committed
/// consumers.
pub async fn abort_transaction<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    let producer = producer.clone();
    off_the_workers(move || producer.abort_transaction(timeout)).await
}
