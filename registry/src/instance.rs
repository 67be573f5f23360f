//! One registry instance: its state, rebuilt from the `_schemas` topic and kept current by
//! following it, and the protocol by which it writes changes next to other instances.
//!
//! A change is planned on the latest state (the instance first reads up to the log's
//! end), appended to the topic, and answered only once the instance has read it back, so
//! that an answer never runs ahead of the log. A new id is claimed first; the claim is
//! resolved in log order ([`Store::apply`]); a lost claim is planned again, a won one is
//! recorded in `registry.state_dir` and completed with its `SCHEMA` record.

use crate::error::RegistryError;
use crate::floor::Floor;
use crate::log::Entry;
use crate::store::{Applied, Plan, Store, StoredSchema};
use crate::topic::{self, Read, Reader, Writer};
use anyhow::Result;
use chainflow_config::{KafkaConfig, RegistryConfig};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex, RwLock, RwLockReadGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long replaying the whole topic may take at start.
const REPLAY_TIMEOUT: Duration = Duration::from_mins(2);
/// How long reading back a record this instance wrote may take.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read of an unknown id waits for the instance to reach the log's end.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a registration waits for another instance to complete a version of the same
/// subject before claiming the next version anyway.
const PENDING_WAIT: Duration = Duration::from_secs(5);
/// Claims one registration may lose to other instances before it gives up.
const MAX_CLAIMS: u32 = 20;

/// One running registry instance.
pub struct Instance {
    store: RwLock<Store>,
    reader: Arc<Reader>,
    /// `None` in read-only mode.
    writer: Option<Writer>,
    /// One change at a time from this instance.
    writing: Mutex<()>,
    /// The offset after the last record applied.
    applied: watch::Sender<i64>,
    /// Claims of this instance that won, not yet taken by their registration.
    won: std::sync::Mutex<HashSet<String>>,
    /// Prefix of this instance's claimants.
    name: String,
    claims: AtomicU64,
    floor: Option<Floor>,
}

impl Instance {
    /// Opens the topic, replays it, checks it against the id floor, and follows it until
    /// `stop` is cancelled.
    pub async fn start(section: &RegistryConfig, kafka: &KafkaConfig, stop: CancellationToken) -> Result<Arc<Self>> {
        let (reader, end) = topic::open(kafka, &section.topic).await?;
        let floor = if section.state_dir.is_empty() {
            None
        } else {
            Some(Floor::open(Path::new(&section.state_dir), &section.topic)?)
        };
        let writer = if section.read_only {
            None
        } else {
            Some(Writer::new(kafka, &section.topic)?)
        };
        let name = format!(
            "{}-{}-{:x}",
            chainflow_kafka::consumer::hostname(),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let instance = Arc::new(Self {
            store: RwLock::new(Store::with_default_level(section.compatibility)),
            reader: Arc::new(reader),
            writer,
            writing: Mutex::new(()),
            applied: watch::Sender::new(0),
            won: std::sync::Mutex::new(HashSet::new()),
            name,
            claims: AtomicU64::new(0),
            floor,
        });
        let records = instance.replay(end).await?;
        instance.check_floor(&section.topic).await?;
        {
            let store = instance.store.read().await;
            tracing::info!(
                records,
                subjects = store.subjects(true).len(),
                highest_id = store.highest_id(),
                topic = section.topic,
                "schema registry state rebuilt from its topic; following it"
            );
        }
        let follower = instance.clone();
        tokio::spawn(async move { follower.follow(stop).await });
        Ok(instance)
    }

    /// Applies the topic's records up to `end` (exclusive); returns how many there were.
    async fn replay(&self, end: i64) -> Result<i64> {
        let deadline = Instant::now() + REPLAY_TIMEOUT;
        let mut next = 0;
        while next < end {
            let Ok(read) = tokio::time::timeout_at(deadline, self.reader.next()).await else {
                anyhow::bail!("timed out replaying the schema topic: at offset {next} of {end}");
            };
            let read = read?;
            next = read.offset + 1;
            self.take(read).await;
        }
        Ok(end)
    }

    /// Compares the log with the floor on disk: a log whose ids end below it lost records
    /// (the topic was wiped or recreated). New ids go above the floor either way.
    async fn check_floor(&self, topic: &str) -> Result<()> {
        let Some(floor) = &self.floor else { return Ok(()) };
        let recorded = floor.read()?;
        let mut store = self.store.write().await;
        let highest = store.highest_id();
        if recorded > highest {
            tracing::error!(
                topic,
                highest_in_topic = highest,
                highest_served = recorded,
                state = %floor.path().display(),
                "the schema topic holds ids up to {highest}, but this registry served ids up to {recorded}: \
                 records were lost (was the topic deleted or recreated?). Ids up to {recorded} will not be \
                 assigned again; the schemas lost with them are not served"
            );
            metrics::counter!("chainflow_registry_lost_ids_detected_total").increment(1);
        }
        store.raise_floor(recorded);
        drop(store);
        floor.raise(highest)?;
        Ok(())
    }

    /// Applies records as they arrive until `stop`.
    async fn follow(self: Arc<Self>, stop: CancellationToken) {
        let mut failing = false;
        loop {
            let read = tokio::select! {
                () = stop.cancelled() => return,
                r = self.reader.next() => r,
            };
            match read {
                Ok(read) => {
                    failing = false;
                    let before = self.store.read().await.highest_id();
                    let offset = read.offset;
                    self.take(read).await;
                    let after = self.store.read().await.highest_id();
                    if after > before {
                        self.record_floor(after).await;
                    }
                    self.applied.send_replace(offset + 1);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %format!("{e:#}"), "following the schema topic failed; retrying");
                    }
                    failing = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Applies one record and notes this instance's won claims.
    async fn take(&self, read: Read) {
        let Some(entry) = read.entry else {
            self.applied.send_replace(read.offset + 1);
            return;
        };
        let applied = self.store.write().await.apply(&entry);
        match applied {
            Ok(Applied::Won) => {
                if let Entry::Claim(c) = &entry {
                    if c.claimant.starts_with(&self.name) {
                        self.won.lock().expect("not poisoned").insert(c.claimant.clone());
                    }
                }
            }
            Ok(Applied::Refused(why)) => {
                tracing::debug!(offset = read.offset, reason = %why, "schema topic record not applied");
                metrics::counter!("chainflow_registry_refused_records_total").increment(1);
            }
            Ok(Applied::Done) => {}
            Err(e) => tracing::warn!(offset = read.offset, error = %e, "skipping an unreadable schema topic record"),
        }
        self.applied.send_replace(read.offset + 1);
    }

    /// Raises the floor on disk to `id` (ids other instances assigned and this one serves).
    async fn record_floor(&self, id: u32) {
        if let Some(floor) = self.floor.clone() {
            let raised = tokio::task::spawn_blocking(move || floor.raise(id)).await;
            if let Ok(Err(e)) | Err(e) = raised.map_err(anyhow::Error::from) {
                tracing::warn!(error = %format!("{e:#}"), "recording the highest id in registry.state_dir failed");
            }
        }
    }

    /// Waits until the record at `offset` has been applied.
    async fn read_back(&self, offset: i64, limit: Duration) -> Result<(), RegistryError> {
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(limit, applied.wait_for(|next| *next > offset))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(RegistryError::store(format!(
                "the registry could not read its topic up to offset {offset} within {limit:?}"
            )))
        }
    }

    /// Reads up to the log's end as it is now.
    async fn catch_up(&self, limit: Duration) -> Result<(), RegistryError> {
        let end = self
            .reader
            .end()
            .await
            .map_err(|e| RegistryError::store(format!("{e:#}")))?;
        if end > 0 {
            self.read_back(end - 1, limit).await?;
        }
        Ok(())
    }

    fn writer(&self) -> Result<&Writer, RegistryError> {
        self.writer.as_ref().ok_or_else(RegistryError::read_only)
    }

    /// The state, for reads.
    pub async fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().await
    }

    /// The schema with id `id`; an id this instance does not know yet is looked for up to
    /// the log's end first (another instance may have just assigned it).
    pub async fn schema(&self, id: u32) -> Option<StoredSchema> {
        if let Some(s) = self.store.read().await.schema(id) {
            return Some(s.clone());
        }
        if let Err(e) = self.catch_up(CATCH_UP_TIMEOUT).await {
            tracing::debug!(id, error = %e.message, "catching up for an unknown id failed");
        }
        self.store.read().await.schema(id).cloned()
    }

    /// Registers `raw` under `subject`; returns its id and whether it is a new version.
    pub async fn register(&self, subject: &str, raw: &str) -> Result<(u32, bool), RegistryError> {
        let writer = self.writer()?;
        let _one = self.writing.lock().await;
        self.catch_up(READ_BACK_TIMEOUT).await?;
        let started = Instant::now();
        let mut lost = 0;
        while lost < MAX_CLAIMS {
            let plan = self
                .store
                .read()
                .await
                .register(subject, raw, started.elapsed() > PENDING_WAIT)?;
            let mut claim = match plan {
                Plan::Existing(id) => return Ok((id, false)),
                Plan::Wait => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Plan::Claim(c) => c,
            };
            claim.claimant = format!("{}/{}", self.name, self.claims.fetch_add(1, Ordering::Relaxed));
            let at = writer
                .append(&[Entry::Claim(claim.clone())])
                .await
                .map_err(|e| RegistryError::store(format!("{e:#}")))?;
            self.read_back(at, READ_BACK_TIMEOUT).await?;
            if !self.won.lock().expect("not poisoned").remove(&claim.claimant) {
                lost += 1;
                metrics::counter!("chainflow_registry_claims_lost_total").increment(1);
                tracing::debug!(
                    subject,
                    id = claim.id,
                    version = claim.version,
                    "claim lost to another instance"
                );
                continue;
            }
            if let Some(floor) = self.floor.clone() {
                let id = claim.id;
                tokio::task::spawn_blocking(move || floor.raise(id))
                    .await
                    .map_err(|e| RegistryError::store(e.to_string()))?
                    .map_err(|e| RegistryError::store(format!("recording id {id} in registry.state_dir: {e:#}")))?;
            }
            let at = writer
                .append(&[Store::completion(&claim)])
                .await
                .map_err(|e| RegistryError::store(format!("{e:#}")))?;
            self.read_back(at, READ_BACK_TIMEOUT).await?;
            return Ok((claim.id, true));
        }
        Err(RegistryError::store(format!(
            "registering under {subject} lost {MAX_CLAIMS} claims in a row to other instances; try again"
        )))
    }

    /// Plans a change on the latest state, writes it, and answers once it is read back.
    pub async fn change<T>(
        &self,
        plan: impl FnOnce(&Store) -> Result<(T, Vec<Entry>), RegistryError>,
    ) -> Result<T, RegistryError> {
        let writer = self.writer()?;
        let _one = self.writing.lock().await;
        self.catch_up(READ_BACK_TIMEOUT).await?;
        let (answer, entries) = plan(&*self.store.read().await)?;
        if !entries.is_empty() {
            let at = writer
                .append(&entries)
                .await
                .map_err(|e| RegistryError::store(format!("{e:#}")))?;
            self.read_back(at, READ_BACK_TIMEOUT).await?;
        }
        Ok(answer)
    }
}
