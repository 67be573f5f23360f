//! Partitions held at a record that cannot be processed yet (a schema id the registry does
//! not know, which another registry instance may have just assigned): the partition is
//! paused and its later records skipped, while the rest of the assignment flows. Releasing
//! it seeks back to the record and resumes it, so the record is read again.

use crate::{blocking, OFFSETS_TIMEOUT};
use anyhow::{Context, Result};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the held records are tried again.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A topic and partition.
type Tp = (String, i32);

/// The partitions a consumer holds, each at its first record not processed.
#[derive(Default)]
pub struct Holds {
    held: BTreeMap<Tp, OwnedMessage>,
    next_check: Option<Instant>,
}

fn tpl_of(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

impl Holds {
    /// Holds `msg`'s partition at `msg`: pauses it; its records from `msg` on are skipped
    /// until [`Holds::release`].
    pub fn hold<K: Consumer<X>, X: ConsumerContext>(&mut self, consumer: &K, msg: OwnedMessage) {
        if let Err(e) = consumer.pause(&tpl_of(msg.topic(), msg.partition())) {
            tracing::warn!(error = %e, topic = msg.topic(), partition = msg.partition(), "pausing a held partition failed");
        }
        self.next_check.get_or_insert_with(|| Instant::now() + CHECK_EVERY);
        self.held.insert((msg.topic().to_string(), msg.partition()), msg);
    }

    /// True when `msg` is at or after the record its partition is held at: skip it.
    pub fn skips(&self, msg: &OwnedMessage) -> bool {
        self.held
            .get(&(msg.topic().to_string(), msg.partition()))
            .is_some_and(|h| msg.offset() >= h.offset())
    }

    /// True when `partition` of `topic` is held.
    pub fn is_held(&self, topic: &str, partition: i32) -> bool {
        self.held.contains_key(&(topic.to_string(), partition))
    }

    /// When the held records are due to be tried again; `None` when nothing is held.
    pub fn next_check(&self) -> Option<Instant> {
        self.next_check
    }

    /// The held records to try again now (empty until [`Holds::next_check`]).
    pub fn due(&mut self, now: Instant) -> Vec<OwnedMessage> {
        match self.next_check {
            Some(at) if now >= at => {
                self.next_check = (!self.held.is_empty()).then(|| now + CHECK_EVERY);
                self.held.values().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Releases `msg`'s partition: seeks it back to the held record and resumes it.
    pub async fn release<K, X>(&mut self, consumer: &Arc<K>, msg: &OwnedMessage) -> Result<()>
    where
        K: Consumer<X> + Send + Sync + 'static,
        X: ConsumerContext + 'static,
    {
        let tp = (msg.topic().to_string(), msg.partition());
        let Some(held) = self.held.remove(&tp) else {
            return Ok(());
        };
        if self.held.is_empty() {
            self.next_check = None;
        }
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(&tp.0, tp.1, Offset::Offset(held.offset()))?;
        blocking::seek_partitions(consumer, at, OFFSETS_TIMEOUT)
            .await
            .with_context(|| format!("seeking {}[{}] back to offset {}", tp.0, tp.1, held.offset()))?;
        consumer
            .resume(&tpl_of(&tp.0, tp.1))
            .with_context(|| format!("resuming {}[{}]", tp.0, tp.1))?;
        Ok(())
    }

    /// Forgets the hold of a revoked partition (its new owner starts from the committed
    /// offset).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.held.remove(&(topic.to_string(), partition));
        if self.held.is_empty() {
            self.next_check = None;
        }
    }

    /// Forgets every hold and resumes the partitions (after a rewind to the committed
    /// offsets: the held records are read again, and held again if they still wait).
    pub fn clear<K: Consumer<X>, X: ConsumerContext>(&mut self, consumer: &K) {
        for (topic, partition) in std::mem::take(&mut self.held).into_keys() {
            // a partition no longer assigned cannot be resumed, and need not be
            let _ = consumer.resume(&tpl_of(&topic, partition));
        }
        self.next_check = None;
    }

    /// Pauses the held partitions again (after the whole assignment was resumed).
    pub fn repause<K: Consumer<X>, X: ConsumerContext>(&self, consumer: &K) {
        for (topic, partition) in self.held.keys() {
            if let Err(e) = consumer.pause(&tpl_of(topic, *partition)) {
                tracing::warn!(error = %e, topic, partition, "pausing a held partition failed");
            }
        }
    }
}
