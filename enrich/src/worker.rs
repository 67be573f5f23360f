//! The enrich loop: batches of raw chains read, enriched and produced, then committed —
//! the offsets only once the broker acknowledged every record of the batch (or, with
//! transactions, with the transaction). Nothing stops a partition: a record that cannot be
//! enriched goes to the dead-letter topic; a registry that cannot be reached is waited out
//! with the partitions paused; Kafka read, commit and produce failures are retried within
//! the retry budget. After a batch that did not commit, the worker reads nothing until its
//! positions are back at the committed offsets: the next commit never covers records that
//! were not produced.

use crate::context::EnrichContext;
use crate::process::{NotYet, Output, Processor, RECORD_OVERHEAD};
use crate::transactions::{Failed, Transactions};
use anyhow::{anyhow, Result};
use chainflow_contract::topics::{ENRICHED_CHAIN, OPTION_CHAIN};
use chainflow_kafka::consumer::rewind;
use chainflow_kafka::paused::{self, Waited};
use chainflow_kafka::trace;
use chainflow_kafka::{blocking, DeadLetter, Holds};
use chainflow_runtime::{fault, sleep_until, Backoff, RetryPolicy, StageContext, StageStats, Streak};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// How long the producer's local queue is given to drain when it is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(20);
/// How long producing a dead letter may take.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(30);

/// A partition of a topic.
type Tp = (String, i32);
/// A record's place: its partition of `market.option_chain` and its offset.
type At = (i32, i64);

/// What the broker said when it refused an enriched chain as too large.
const REFUSED_TOO_LARGE: &str = "the broker refused the enriched chain as too large (message.max.bytes)";

/// One produced record, awaited before the batch is committed.
struct Sent {
    delivery: DeliveryFuture,
    /// The raw chain, for an enriched record: dead-lettered if the broker refuses the record
    /// as too large.
    raw: Option<OwnedMessage>,
}

/// What a batch took and produced.
#[derive(Default)]
struct Batch {
    next: BTreeMap<Tp, i64>,
    sent: Vec<Sent>,
    enriched: u64,
    dead: u64,
    /// Records the broker had refused before, dead-lettered in this batch.
    letters_for_refused: Vec<At>,
}

impl Batch {
    fn records(&self) -> u64 {
        self.enriched + self.dead
    }

    fn offsets(&self) -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &self.next {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        Ok(tpl)
    }
}

/// How a batch ended.
enum Ended {
    /// Committed.
    Committed(Batch),
    /// Partitions were revoked meanwhile: nothing of it was committed.
    Abandoned,
    /// With transactions, the broker refused enriched chains as too large: the transaction
    /// cannot commit, and the batch is read again with those chains dead-lettered.
    Refused,
}

/// The connected enricher.
pub struct Worker {
    /// The consumer of `market.option_chain`.
    pub consumer: Arc<StreamConsumer<EnrichContext>>,
    /// The producer (the transactional one with transactions).
    pub producer: FutureProducer,
    /// Kafka transactions, when `enrich.transactions` is on.
    pub transactions: Option<Transactions>,
    /// Raw chains to enriched ones.
    pub processor: Processor,
    /// Partitions held at a record whose schema id the registry does not know yet.
    pub holds: Holds,
    /// Records per batch, at most.
    pub batch_records: usize,
    /// The producer's `message.max.bytes`.
    pub max_bytes: usize,
    /// How long a batch stays open, at most.
    pub batch_wait: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Counters shown by `chainflow run`.
    pub stats: Arc<StageStats>,
    /// A transaction is open.
    pub(crate) open: bool,
    /// A batch did not commit: the positions go back to the committed offsets before
    /// anything more is read.
    pub(crate) rewind_due: bool,
    /// Raw chains whose enriched form the broker refused as too large, dead-lettered when
    /// they are read again (with transactions, the refusal aborts the transaction).
    pub(crate) refused: HashSet<At>,
}

impl Worker {
    /// Runs until `ctx` says stop; a batch in progress is finished first.
    pub async fn run(mut self, ctx: &StageContext) -> Result<()> {
        let mut failing: Option<(Instant, Backoff)> = None;
        let mut reads_failing = Streak::default();
        loop {
            if self.rewind_due {
                if let Err(e) = self.rewind().await {
                    self.failed(&mut failing, "rewinding to the committed offsets", &e)
                        .await?;
                    continue; // nothing is read past records that were not produced
                }
            }
            let check = self.holds.next_check();
            let first = tokio::select! {
                biased;
                () = ctx.stopped() => break,
                () = sleep_until(check), if check.is_some() => {
                    self.check_holds().await?;
                    continue;
                }
                m = self.consumer.recv() => m,
            };
            let first = match first {
                Ok(m) => {
                    reads_failing.ended();
                    m.detach()
                }
                Err(e) => {
                    self.read_failed(&mut reads_failing, e).await?;
                    continue;
                }
            };
            if self.consumer.context().take_revoked() {
                // between batches, nothing to undo; the holds went with the partitions
                self.holds.clear(&*self.consumer);
            }
            if self.holds.skips(&first) {
                continue;
            }
            let started = Instant::now();
            match self.batch(first).await {
                Ok((Ended::Committed(batch), waiting)) => {
                    failing = None;
                    self.count(&batch, started);
                    if let Some((msg, why)) = waiting {
                        self.wait_for_registry(&msg, &why, ctx).await?;
                    }
                }
                Ok((Ended::Abandoned | Ended::Refused, _)) => self.undo().await?,
                Err(Failed::Fatal(e)) => return Err(e),
                Err(Failed::Abort(e)) => {
                    self.undo().await?;
                    metrics::counter!("chainflow_enrich_aborted_batches_total").increment(1);
                    self.failed(&mut failing, "a batch", &e).await?;
                }
            }
        }
        if self.open {
            self.undo().await?; // what the open transaction holds is read again at the next start
        }
        tracing::info!("enrich stopped");
        Ok(())
    }

    /// Undoes a batch that did not commit: its transaction aborted, and a rewind due before
    /// the next read.
    async fn undo(&mut self) -> Result<()> {
        if let (Some(t), true) = (&self.transactions, self.open) {
            t.abort().await?;
        }
        self.open = false;
        self.rewind_due = true;
        Ok(())
    }

    /// Moves every assigned partition back to its committed offset.
    async fn rewind(&mut self) -> Result<()> {
        fault::point("enrich.rewind")?;
        rewind(&self.consumer).await?;
        self.holds.clear(&*self.consumer);
        self.rewind_due = false;
        Ok(())
    }

    /// Tries the held records again; releases the partitions whose record can now be
    /// processed (or, its grace over, dead-lettered), so that it is read again.
    async fn check_holds(&mut self) -> Result<()> {
        for msg in self.holds.due(Instant::now()) {
            if self.processor.process(&msg, 0).await.is_ok() {
                tracing::info!(
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "held partition released"
                );
                self.holds.release(&self.consumer, &msg).await?;
            }
        }
        Ok(())
    }

    /// Notes a transient failure of `what` and sleeps before the next attempt; an error
    /// once failures have lasted the retry budget.
    async fn failed(&self, failing: &mut Option<(Instant, Backoff)>, what: &str, e: &anyhow::Error) -> Result<()> {
        let (_, backoff) = failing.get_or_insert_with(|| (Instant::now(), self.retry.backoff()));
        metrics::counter!("chainflow_enrich_retries_total").increment(1);
        let Some(delay) = backoff.delay() else {
            return Err(anyhow!("{e:#}").context(format!(
                "{what} kept failing for {} ms (enrich.retry.budget_ms)",
                self.retry.budget.as_millis()
            )));
        };
        tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Notes a failed read and waits the retry policy's first delay (librdkafka retries on
    /// its own: a longer wait only delays the first record after the fault); an error once
    /// reads have failed for the retry budget.
    async fn read_failed(&self, streak: &mut Streak, e: KafkaError) -> Result<()> {
        metrics::counter!("chainflow_enrich_retries_total").increment(1);
        tracing::warn!(error = %e, "reading market.option_chain failed; retrying");
        let Some(pause) = streak.failed(&self.retry) else {
            return Err(anyhow::Error::new(e).context(format!(
                "reading market.option_chain kept failing for {} ms (enrich.retry.budget_ms)",
                self.retry.budget.as_millis()
            )));
        };
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// One batch: `first` and what follows within the size and time limits, up to a record
    /// the registry cannot serve (returned, to be waited out once the rest is committed).
    async fn batch(&mut self, first: OwnedMessage) -> Result<(Ended, Option<(OwnedMessage, String)>), Failed> {
        let mut batch = Batch::default();
        let deadline = Instant::now() + self.batch_wait;
        let mut next = Some(first);
        let mut waiting = None;
        while let Some(msg) = next.take() {
            if !self.holds.skips(&msg) {
                if let Some(why) = self.take(msg, &mut batch).await? {
                    waiting = Some(why);
                    break;
                }
            }
            if self.consumer.context().take_revoked() {
                return Ok((Ended::Abandoned, None));
            }
            if batch.records() >= self.batch_records as u64 {
                break;
            }
            next = match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => Some(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading market.option_chain failed; the batch ends here");
                    None
                }
                Err(_) => None,
            };
            if next.is_some() && self.consumer.context().take_revoked() {
                return Ok((Ended::Abandoned, None));
            }
        }
        if batch.next.is_empty() {
            return Ok((Ended::Committed(batch), waiting));
        }
        let ended = self.commit(batch).await?;
        Ok((ended, waiting))
    }

    /// Processes one record into the batch; the record back, with the reason, when the
    /// registry cannot serve it.
    async fn take(&mut self, msg: OwnedMessage, batch: &mut Batch) -> Result<Option<(OwnedMessage, String)>, Failed> {
        let processed_at = chrono::Utc::now().timestamp_micros();
        // the chain's span, in the trace its raw record carries
        let span = tracing::info_span!(
            "enrich.chain",
            partition = msg.partition(),
            offset = msg.offset(),
            trace_id = tracing::field::Empty
        );
        trace::continue_trace(&span, &msg);
        match self
            .processor
            .process(&msg, processed_at)
            .instrument(span.clone())
            .await
        {
            Err(NotYet::Unavailable(why)) => return Ok(Some((msg, why))),
            Err(NotYet::UnknownId(id)) => {
                tracing::warn!(
                    id,
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "schema id {id} is not known to the registry (yet): partition held, for up to \
                     registry.unknown_id_grace_ms"
                );
                self.holds.hold(&*self.consumer, msg);
            }
            Ok(out) => {
                self.produce(&msg, out, batch).instrument(span).await?;
                batch
                    .next
                    .insert((msg.topic().to_string(), msg.partition()), msg.offset() + 1);
            }
        }
        Ok(None)
    }

    /// Enqueues what one record became (opening the transaction at the batch's first
    /// record); a chain the broker refused before becomes its dead letter.
    async fn produce(&mut self, msg: &OwnedMessage, out: Output, batch: &mut Batch) -> Result<(), Failed> {
        if let (Some(t), false) = (&self.transactions, self.open) {
            t.begin()?;
            self.open = true;
        }
        let at = (msg.partition(), msg.offset());
        let out = match out {
            Output::Enriched { .. } if self.refused.contains(&at) => {
                batch.letters_for_refused.push(at);
                Output::DeadLetter {
                    kind: "too_large",
                    message: REFUSED_TOO_LARGE.into(),
                }
            }
            out => out,
        };
        match out {
            Output::Enriched { key, headers, value } => {
                let record = FutureRecord::to(ENRICHED_CHAIN)
                    .key(&key)
                    .payload(&value)
                    .partition(msg.partition())
                    .headers(headers);
                let delivery = self.send(record).await?;
                batch.sent.push(Sent {
                    delivery,
                    raw: Some(msg.clone()),
                });
                batch.enriched += 1;
            }
            Output::DeadLetter { kind, message } => {
                tracing::warn!(kind, %message, partition = msg.partition(), offset = msg.offset(), "chain dead-lettered");
                let mut letter = DeadLetter::new(msg, "enrich", kind, &message);
                if letter.size() + RECORD_OVERHEAD > self.max_bytes {
                    letter = letter.without_value("larger than the producer's message.max.bytes");
                }
                let delivery = self.send(letter.record()).await?;
                batch.sent.push(Sent { delivery, raw: None });
                batch.dead += 1;
            }
        }
        Ok(())
    }

    /// Commits the batch once the broker acknowledged every record: with the transaction,
    /// or the offsets. An enriched chain the broker refuses as too large is dead-lettered:
    /// at once without transactions; with them, when the batch is read again (the refusal
    /// dooms the transaction).
    async fn commit(&mut self, mut batch: Batch) -> Result<Ended, Failed> {
        let refused = self.delivered(std::mem::take(&mut batch.sent)).await?;
        if !refused.is_empty() && self.transactions.is_some() {
            tracing::warn!(
                records = refused.len(),
                "{REFUSED_TOO_LARGE}: the transaction is aborted, and the batch read again with them dead-lettered"
            );
            self.refused
                .extend(refused.iter().map(|raw| (raw.partition(), raw.offset())));
            return Ok(Ended::Refused);
        }
        for raw in &refused {
            tracing::warn!(
                partition = raw.partition(),
                offset = raw.offset(),
                "{REFUSED_TOO_LARGE}: dead-lettered"
            );
            let letter = DeadLetter::new(raw, "enrich", "too_large", REFUSED_TOO_LARGE);
            self.producer
                .send(letter.record(), DEAD_LETTER_TIMEOUT)
                .await
                .map_err(|(e, _)| Failed::Abort(anyhow::Error::new(e).context("producing a dead letter")))?;
            batch.enriched -= 1;
            batch.dead += 1;
        }
        let offsets = batch.offsets().map_err(Failed::Fatal)?;
        if let Some(t) = &self.transactions {
            let group = self
                .consumer
                .group_metadata()
                .ok_or_else(|| Failed::Fatal(anyhow!("the enrich consumer has no consumer group metadata")))?;
            t.commit(offsets, group).await?;
            self.open = false;
            for at in &batch.letters_for_refused {
                self.refused.remove(at);
            }
            return Ok(Ended::Committed(batch));
        }
        if self.consumer.context().take_revoked() {
            return Ok(Ended::Abandoned);
        }
        blocking::commit(&self.consumer, offsets)
            .await
            .map_err(|e| Failed::Abort(anyhow::Error::new(e).context("committing enrich offsets")))?;
        for at in &batch.letters_for_refused {
            self.refused.remove(at);
        }
        Ok(Ended::Committed(batch))
    }

    /// Waits for every delivery; the raw chains whose enriched form the broker refused as
    /// too large, or the first other refusal when there was one and no size refusal. With
    /// transactions a size refusal fails the whole transaction, so the other records'
    /// deliveries fail too (purged, timed out): every report is awaited, and the size
    /// refusals are what the batch is read again for.
    async fn delivered(&self, sent: Vec<Sent>) -> Result<Vec<OwnedMessage>, Failed> {
        let mut refused = Vec::new();
        let mut other = None;
        for sent in sent {
            match sent.delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)))
                    if sent.raw.is_some() =>
                {
                    refused.push(sent.raw.expect("an enriched record's raw chain"));
                }
                Ok(Err((e, _))) => {
                    other.get_or_insert_with(|| anyhow::Error::new(e).context("the broker refused a record"));
                }
                Err(_) => {
                    other.get_or_insert_with(|| anyhow!("a delivery report was lost (producer closed)"));
                }
            }
        }
        match other {
            Some(e) if refused.is_empty() || self.transactions.is_none() => Err(Failed::Abort(e)),
            _ => Ok(refused),
        }
    }

    /// Waits, the partitions paused and the consumer polled, until the registry serves
    /// `msg` again; then moves back to the committed offsets (`msg` first) and resumes.
    async fn wait_for_registry(&mut self, msg: &OwnedMessage, why: &str, ctx: &StageContext) -> Result<()> {
        paused::pause(&*self.consumer)?;
        ctx.set_ready(false);
        tracing::warn!(error = %why, "the Schema Registry is unavailable: partitions paused until it answers");
        let mut backoff = self.retry.backoff();
        loop {
            metrics::counter!("chainflow_enrich_registry_waits_total").increment(1);
            let Some(delay) = backoff.delay() else {
                return Err(anyhow!("{why}").context(format!(
                    "the Schema Registry was unavailable for {} ms (enrich.retry.budget_ms)",
                    self.retry.budget.as_millis()
                )));
            };
            if paused::wait(&self.consumer, delay, ctx.stopped(), || false).await == Waited::Stopped {
                return Ok(()); // not committed: read again at the next start
            }
            if self.consumer.context().take_revoked() {
                break; // the new assignment starts from its committed offsets anyway
            }
            if self.processor.process(msg, 0).await.is_ok() {
                break;
            }
        }
        // what arrived meanwhile is read again, `msg` first: the loop rewinds before it reads
        self.rewind_due = true;
        paused::resume(&self.consumer, TopicPartitionList::new(), &self.holds).await?;
        ctx.set_ready(true);
        tracing::info!("the Schema Registry answers again: partitions resumed");
        Ok(())
    }

    /// Enqueues `record`, waiting while the producer's local queue is full.
    async fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
        &self,
        mut record: FutureRecord<'_, K, P>,
    ) -> Result<DeliveryFuture, Failed> {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((e, _)) => return Err(Failed::Abort(anyhow::Error::new(e).context("producing a record"))),
            }
        }
    }

    fn count(&self, batch: &Batch, started: Instant) {
        StageStats::add(&self.stats.records_in, batch.records());
        StageStats::add(&self.stats.records_out, batch.enriched);
        StageStats::add(&self.stats.dead_letters, batch.dead);
        metrics::counter!("chainflow_records_in_total", "stage" => "enrich", "topic" => OPTION_CHAIN)
            .increment(batch.records());
        metrics::counter!("chainflow_records_out_total", "stage" => "enrich", "topic" => ENRICHED_CHAIN)
            .increment(batch.enriched);
        metrics::counter!("chainflow_enrich_records_total", "outcome" => "enriched").increment(batch.enriched);
        metrics::counter!("chainflow_enrich_records_total", "outcome" => "dead_letter").increment(batch.dead);
        metrics::histogram!("chainflow_enrich_batch_seconds").record(started.elapsed().as_secs_f64());
    }
}
