//! The sink stage: a consumer group on enriched.option_chain that batches chains (by
//! count and by age), writes them to `chain_options` and `chain_snapshots`, and commits
//! offsets only after ClickHouse acknowledged both inserts (at-least-once; the tables'
//! ReplacingMergeTree natural keys make redelivered rows replace, not add).

use crate::rows::{option_rows, snapshot_row, OptionRow, SnapshotRow};
use crate::server::ServerVersion;
use anyhow::{Context, Result};
use chainflow_codec::Codec;
use chainflow_config::{ClickHouseConfig, KafkaConfig, SinkConfig};
use chainflow_contract::topics::ENRICHED_CHAIN;
use chainflow_contract::EnrichedOptionChain;
use chainflow_kafka::{blocking, consumer_config, producer_config, DeadLetter};
use chainflow_runtime::{Stage, StageContext, StageStats};
use clickhouse::{Client, Row, RowWrite};
use rand::Rng;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a start-up check of the broker waits for an answer.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows waiting to be written, and the offsets they cover.
#[derive(Default)]
struct Batch {
    snapshots: Vec<SnapshotRow>,
    options: Vec<OptionRow>,
    /// Next offset to commit, per partition.
    next_offsets: BTreeMap<i32, i64>,
    /// First offset of the batch, per partition (for the deduplication token).
    first_offsets: BTreeMap<i32, i64>,
    started: Option<Instant>,
    dead_letters: u64,
}

impl Batch {
    fn cover(&mut self, partition: i32, offset: i64) {
        self.started.get_or_insert_with(Instant::now);
        self.first_offsets.entry(partition).or_insert(offset);
        self.next_offsets.insert(partition, offset + 1);
    }

    fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    /// Identifies the batch by the offsets it covers: inserting it again is a no-op on
    /// servers with deduplication tokens.
    fn token(&self, table: &str) -> String {
        let ranges: Vec<String> = self
            .first_offsets
            .iter()
            .map(|(p, first)| format!("{p}:{first}-{}", self.next_offsets[p] - 1))
            .collect();
        format!("{ENRICHED_CHAIN}/{table}/{}", ranges.join(","))
    }
}

/// The sink stage, built from `[sink]`, the Kafka and ClickHouse connections and a
/// registry codec.
pub struct Sink {
    section: SinkConfig,
    kafka: KafkaConfig,
    clickhouse: ClickHouseConfig,
    codec: Arc<Codec>,
    stats: Arc<StageStats>,
}

impl Sink {
    /// The stage; nothing connects until it runs.
    pub fn new(
        section: &SinkConfig,
        kafka: &KafkaConfig,
        clickhouse: &ClickHouseConfig,
        codec: Arc<Codec>,
        stats: Arc<StageStats>,
    ) -> Self {
        Self {
            section: section.clone(),
            kafka: kafka.clone(),
            clickhouse: clickhouse.clone(),
            codec,
            stats,
        }
    }

    /// Connects to ClickHouse and Kafka and subscribes; `None` when asked to stop first.
    async fn connect(self, ctx: &StageContext) -> Result<Option<Writer>> {
        let client = crate::server::client(&self.clickhouse).with_database(&self.clickhouse.database);
        let clickhouse = format!("ClickHouse at {}", self.clickhouse.url);
        let Some(server) = ctx.connect(&clickhouse, || ServerVersion::detect(&client)).await? else {
            return Ok(None);
        };
        let consumer: Arc<StreamConsumer> = Arc::new(
            consumer_config(&self.kafka, &self.section.group_id)
                .create()
                .context("creating the sink consumer")?,
        );
        let broker = format!("Kafka at {}", self.kafka.bootstrap_servers);
        let reached = ctx
            .connect(&broker, || async {
                blocking::fetch_metadata(&consumer, Some(ENRICHED_CHAIN), METADATA_TIMEOUT)
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await?;
        if reached.is_none() {
            return Ok(None);
        }
        consumer
            .subscribe(&[ENRICHED_CHAIN])
            .context("subscribing to enriched.option_chain")?;
        let dlq: FutureProducer = producer_config(&self.kafka)
            .create()
            .context("creating the dead-letter producer")?;
        tracing::info!(group = %self.section.group_id, clickhouse = %server, "sink ready");
        Ok(Some(Writer {
            consumer,
            dlq,
            codec: self.codec,
            client,
            server,
            batch_chains: self.section.batch_chains,
            batch_age: Duration::from_millis(self.section.batch_ms),
            retry_initial: Duration::from_millis(self.section.retry_initial_ms),
            retry_max: Duration::from_millis(self.section.retry_max_ms),
            stats: self.stats,
        }))
    }
}

impl Stage for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }

    /// Runs until stopped, then writes and commits what it holds.
    async fn run(self, ctx: StageContext) -> Result<()> {
        let Some(writer) = self.connect(&ctx).await? else {
            return Ok(());
        };
        ctx.set_ready(true);
        writer.run(ctx.stop_token()).await
    }
}

/// The connected sink.
struct Writer {
    consumer: Arc<StreamConsumer>,
    dlq: FutureProducer,
    codec: Arc<Codec>,
    client: Client,
    server: ServerVersion,
    batch_chains: usize,
    batch_age: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    stats: Arc<StageStats>,
}

impl Writer {
    /// Runs until `shutdown`, then writes and commits what it holds.
    async fn run(self, shutdown: &CancellationToken) -> Result<()> {
        let mut batch = Batch::default();
        loop {
            let deadline = batch.started.map(|s| s + self.batch_age);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = sleep_until(deadline) => self.flush(&mut batch, shutdown).await?,
                m = self.consumer.recv() => {
                    let m = m.context("consuming enriched.option_chain")?;
                    self.add(&m, &mut batch, shutdown).await?;
                    if batch.snapshots.len() >= self.batch_chains {
                        self.flush(&mut batch, shutdown).await?;
                    }
                }
            }
        }
        self.flush(&mut batch, &CancellationToken::new()).await?;
        tracing::info!("sink stopped");
        Ok(())
    }

    /// Decodes one record into rows, or dead-letters it.
    async fn add(&self, m: &BorrowedMessage<'_>, batch: &mut Batch, shutdown: &CancellationToken) -> Result<()> {
        let payload = m.payload().unwrap_or_default();
        let mut delay = self.retry_initial;
        let decoded = loop {
            match self.codec.decode::<EnrichedOptionChain>(payload).await {
                Err(e) if e.is_transient() => {
                    if shutdown.is_cancelled() {
                        // not dead-lettered and not committed: the record is read again
                        return Err(anyhow::Error::new(e).context("schema registry unavailable during shutdown"));
                    }
                    tracing::warn!(error = %e, "schema registry unavailable; retrying");
                    delay = self.backoff(delay).await;
                }
                other => break other,
            }
        };
        match decoded {
            Ok(chain) => {
                option_rows(&chain, &mut batch.options);
                batch.snapshots.push(snapshot_row(&chain));
            }
            Err(e) => {
                tracing::warn!(kind = e.kind(), error = %e, partition = m.partition(), offset = m.offset(), "enriched chain dead-lettered");
                let letter = DeadLetter::new(m, e.kind(), &e.to_string());
                self.dlq
                    .send(letter.record(), Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| anyhow::Error::new(e).context("producing a dead letter"))?;
                batch.dead_letters += 1;
            }
        }
        batch.cover(m.partition(), m.offset());
        Ok(())
    }

    /// Writes the batch (retrying with backoff and jitter until ClickHouse takes it), then
    /// commits its offsets.
    async fn flush(&self, batch: &mut Batch, shutdown: &CancellationToken) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut delay = self.retry_initial;
        loop {
            match self.write(batch).await {
                Ok(()) => break,
                Err(e) if shutdown.is_cancelled() => return Err(e.context("ClickHouse insert failed during shutdown")),
                Err(e) => {
                    metrics::counter!("chainflow_sink_retries_total").increment(1);
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "ClickHouse insert failed; consumption paused");
                    delay = self.backoff(delay).await;
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, next) in &batch.next_offsets {
            tpl.add_partition_offset(ENRICHED_CHAIN, *p, Offset::Offset(*next))?;
        }
        blocking::commit(&self.consumer, tpl)
            .await
            .context("committing sink offsets")?;
        let now_us = chrono::Utc::now().timestamp_micros();
        for s in &batch.snapshots {
            metrics::histogram!("chainflow_sink_event_to_clickhouse_seconds")
                .record((now_us - s.event_time_us) as f64 / 1e6);
        }
        metrics::histogram!("chainflow_sink_batch_chains").record(batch.snapshots.len() as f64);
        metrics::histogram!("chainflow_sink_flush_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("chainflow_sink_rows_total", "table" => "chain_snapshots")
            .increment(batch.snapshots.len() as u64);
        metrics::counter!("chainflow_sink_rows_total", "table" => "chain_options")
            .increment(batch.options.len() as u64);
        let records: u64 = batch.snapshots.len() as u64 + batch.dead_letters;
        StageStats::add(&self.stats.records_in, records);
        StageStats::add(&self.stats.records_out, batch.snapshots.len() as u64);
        StageStats::add(&self.stats.dead_letters, batch.dead_letters);
        *batch = Batch::default();
        Ok(())
    }

    /// Options first, so a chain visible in `chain_snapshots` always has its options.
    async fn write(&self, batch: &Batch) -> Result<()> {
        insert(
            &self.client,
            "chain_options",
            &batch.options,
            self.token(batch, "chain_options"),
        )
        .await?;
        insert(
            &self.client,
            "chain_snapshots",
            &batch.snapshots,
            self.token(batch, "chain_snapshots"),
        )
        .await
    }

    fn token(&self, batch: &Batch, table: &str) -> Option<String> {
        self.server.has_dedup_token().then(|| batch.token(table))
    }

    /// Sleeps `delay` with ±25% jitter and returns the next delay.
    async fn backoff(&self, delay: Duration) -> Duration {
        let jitter = rand::rng().random_range(0.75..1.25);
        tokio::time::sleep(delay.mul_f64(jitter)).await;
        (delay * 2).min(self.retry_max)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// One INSERT of `rows` into `table`.
async fn insert<T>(client: &Client, table: &str, rows: &[T], token: Option<String>) -> Result<()>
where
    T: Row + RowWrite + Serialize + for<'a> Row<Value<'a> = T>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut ins = client
        .insert::<T>(table)
        .await
        .with_context(|| format!("starting INSERT into {table}"))?;
    if let Some(t) = token {
        ins = ins.with_setting("insert_deduplication_token", t);
    }
    for r in rows {
        ins.write(r)
            .await
            .with_context(|| format!("writing a row to {table}"))?;
    }
    ins.end().await.with_context(|| format!("INSERT into {table}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[(i32, i64)]) -> Batch {
        let mut b = Batch::default();
        for &(p, o) in records {
            b.cover(p, o);
        }
        b
    }

    #[test]
    fn a_token_names_the_topic_the_table_and_each_partitions_offset_range() {
        let b = batch(&[(0, 10), (3, 7), (0, 11), (0, 12), (3, 8)]);
        assert_eq!(
            b.token("chain_options"),
            "enriched.option_chain/chain_options/0:10-12,3:7-8"
        );
        assert_eq!(
            b.token("chain_snapshots"),
            "enriched.option_chain/chain_snapshots/0:10-12,3:7-8"
        );
    }

    #[test]
    fn the_same_records_give_the_same_token_in_any_arrival_order() {
        let a = batch(&[(1, 5), (2, 9), (1, 6)]);
        let b = batch(&[(2, 9), (1, 5), (1, 6)]);
        assert_eq!(a.token("t"), b.token("t"));
        assert_ne!(a.token("t"), batch(&[(1, 5), (2, 9)]).token("t"));
        assert!(Batch::default().is_empty() && !a.is_empty());
    }
}
