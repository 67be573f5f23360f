//! What the stages share: the Kafka, Schema Registry and ClickHouse connections.

use crate::secret::{Properties, Secret};
use chainflow_contract::compat::Level;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Kafka connection and topic provisioning (`[kafka]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Any librdkafka property, passed through unchanged (SASL, TLS, tuning).
    /// Values of credential properties are never logged or printed.
    pub properties: Properties,
    /// Partitions of the market and enriched topics (the unit of parallelism).
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication_factor: i32,
    /// `min.insync.replicas` of created topics: replicas that must have a record before an
    /// `acks=all` produce succeeds (at most the replication factor).
    pub min_insync_replicas: i32,
    /// `retention.ms` of created topics: how far back a replay can go.
    pub retention_ms: i64,
    /// The consumer group protocol of every group member chainflow runs: `classic` (the
    /// default, any broker) or `consumer` (KIP-848, Apache Kafka 4.0+: the broker assigns
    /// partitions, incrementally).
    pub group_protocol: GroupProtocol,
}

/// Consumer properties of the classic group protocol only: with the `consumer` protocol
/// (KIP-848) the broker owns them, and `kafka.properties` may not set them.
pub const CLASSIC_GROUP_ONLY: [&str; 3] = [
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
];

/// A consumer group protocol (`kafka.group_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// The classic protocol: the members' leader assigns partitions (`range` here), with
    /// the session and heartbeat settings on the client.
    #[default]
    Classic,
    /// KIP-848's protocol: the group coordinator assigns partitions, and the session and
    /// heartbeat settings are the broker's (`group.consumer.*`).
    Consumer,
}

/// Schema Registry: the client settings every stage uses, and how `chainflow registry`
/// serves (`[registry]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL the serializers use.
    pub url: String,
    /// Basic-auth user the stages present (empty: none).
    pub username: String,
    /// Basic-auth password the stages present.
    pub password: Secret,
    /// PEM file of a CA the stages trust for an `https://` registry (empty: the system's).
    pub ca_file: String,
    /// How long a stage waits for a schema id the registry does not know yet (another
    /// instance may have just assigned it) before dead-lettering the record, per partition,
    /// with the partition paused.
    pub unknown_id_grace_ms: u64,
    /// Address `chainflow registry` listens on.
    pub listen: String,
    /// Topic `chainflow registry` keeps its state in (one partition, compacted, kept forever).
    pub topic: String,
    /// Directory where `chainflow registry` keeps the highest id it ever served, so that a
    /// wiped topic never makes it hand out an old id again (empty: not kept on disk).
    pub state_dir: String,
    /// Serve reads only: every change is refused (422, error code 42205).
    pub read_only: bool,
    /// Largest request body accepted, bytes (larger: 413).
    pub max_request_bytes: usize,
    /// Largest schema accepted, bytes of its text (larger: 413).
    pub max_schema_bytes: usize,
    /// TLS for `chainflow registry` (both files, or neither for plain HTTP).
    pub tls: RegistryTls,
    /// Users of `chainflow registry`, by name; none: no authentication.
    pub users: BTreeMap<String, RegistryUser>,
    /// The global compatibility level of `chainflow registry` until one is set through its
    /// API (`PUT /config`): FULL, the level of chainflow's contract (docs/topics.md);
    /// Confluent's registry defaults to BACKWARD.
    pub compatibility: Level,
}

/// The registry's certificate and key (`[registry.tls]`), PEM files.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryTls {
    /// Certificate chain, leaf first.
    pub cert_file: String,
    /// Private key (PKCS#8, PKCS#1 or SEC1; not encrypted).
    pub key_file: String,
}

/// What a registry user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistryRole {
    /// Reads, lookups and compatibility checks.
    ReadOnly,
    /// Everything, registrations and deletions included.
    ReadWrite,
}

/// One user of `chainflow registry` (`[registry.users.NAME]`), authenticated with HTTP
/// basic auth.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryUser {
    /// What the user may do.
    pub role: RegistryRole,
    /// The password's argon2id hash in PHC form (`chainflow registry hash-password`);
    /// plaintext is refused.
    pub password_hash: String,
}

/// ClickHouse over HTTP(S) (`[clickhouse]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// `http://` or `https://` URL of the HTTP interface.
    pub url: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: Secret,
    /// Database holding chainflow's tables.
    pub database: String,
    /// Days of data kept: a TTL on every table on servers that have one (19.6+), applied by
    /// `chainflow migrate`; 0 keeps everything. On older servers, `chainflow prune`.
    pub retention_days: u32,
    /// The ClickHouse cluster the tables live on (`remote_servers`), empty for one server:
    /// `chainflow migrate` creates replicated local tables and distributed ones `ON CLUSTER`,
    /// and the sink's inserts into the distributed tables are acknowledged once every shard
    /// has its rows (`insert_distributed_sync`).
    pub cluster: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            properties: Properties::default(),
            partitions: 6,
            replication_factor: 1,
            min_insync_replicas: 1,
            retention_ms: 7 * 24 * 3600 * 1000,
            group_protocol: GroupProtocol::Classic,
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081".into(),
            username: String::new(),
            password: Secret::default(),
            ca_file: String::new(),
            unknown_id_grace_ms: 10_000,
            listen: "127.0.0.1:8081".into(),
            topic: "_schemas".into(),
            state_dir: ".chainflow/registry".into(),
            read_only: false,
            max_request_bytes: 1 << 20,
            max_schema_bytes: 256 << 10,
            tls: RegistryTls::default(),
            users: BTreeMap::new(),
            compatibility: Level::Full,
        }
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: Secret::default(),
            database: "chainflow".into(),
            retention_days: 0,
            cluster: String::new(),
        }
    }
}

/// An `http://` or `https://` URL without credentials, for `field`; `user` and `password`
/// name the fields credentials go in instead. The URL is never quoted when it carries
/// credentials.
fn check_url(field: &str, url: &str, user: &str, password: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        if url.contains('@') {
            return Err(format!("{field}: expected an http:// or https:// URL"));
        }
        return Err(format!("{field}: expected an http:// or https:// URL, got {url:?}"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{field}: credentials in the URL (user:password@) are refused; set {user} and {password}"
        ));
    }
    Ok(())
}

impl KafkaConfig {
    /// Checks every field; the error names it (`kafka.partitions: ...`).
    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("kafka.bootstrap_servers: must not be empty".into());
        }
        if self.partitions < 1 {
            return Err(format!("kafka.partitions: must be at least 1, got {}", self.partitions));
        }
        if self.replication_factor < 1 {
            return Err(format!(
                "kafka.replication_factor: must be at least 1, got {}",
                self.replication_factor
            ));
        }
        if self.min_insync_replicas < 1 || self.min_insync_replicas > self.replication_factor {
            return Err(format!(
                "kafka.min_insync_replicas: must be between 1 and kafka.replication_factor ({}), got {}",
                self.replication_factor, self.min_insync_replicas
            ));
        }
        if self.retention_ms < -1 || self.retention_ms == 0 {
            return Err(format!(
                "kafka.retention_ms: must be positive or -1 (forever), got {}",
                self.retention_ms
            ));
        }
        if self.group_protocol == GroupProtocol::Consumer {
            if let Some(p) = CLASSIC_GROUP_ONLY.iter().find(|p| self.properties.get(p).is_some()) {
                return Err(format!(
                    "kafka.properties.\"{p}\": a setting of the classic group protocol; with \
                     kafka.group_protocol = \"consumer\" the broker's group.consumer.* settings apply"
                ));
            }
        }
        Ok(())
    }
}

impl RegistryConfig {
    /// `unknown_id_grace_ms` as a duration.
    pub fn unknown_id_grace(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.unknown_id_grace_ms)
    }

    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        check_url("registry.url", &self.url, "registry.username", "registry.password")?;
        if self.topic.trim().is_empty() {
            return Err("registry.topic: must not be empty".into());
        }
        if self.max_request_bytes < 1024 {
            return Err(format!(
                "registry.max_request_bytes: at least 1024, got {}",
                self.max_request_bytes
            ));
        }
        if self.max_schema_bytes < 64 || self.max_schema_bytes > self.max_request_bytes {
            return Err(format!(
                "registry.max_schema_bytes: from 64 to registry.max_request_bytes ({}), got {}",
                self.max_request_bytes, self.max_schema_bytes
            ));
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            return Err("registry.tls: set both cert_file and key_file, or neither".into());
        }
        for (name, user) in &self.users {
            if name.is_empty() || name.contains(':') {
                return Err(format!(
                    "registry.users.{name}: a user name is not empty and has no ':'"
                ));
            }
            if !user.password_hash.starts_with("$argon2id$") {
                return Err(format!(
                    "registry.users.{name}.password_hash: expected an argon2id hash ($argon2id$...) as \
                     printed by `chainflow registry hash-password`; plaintext passwords are refused"
                ));
            }
        }
        Ok(())
    }
}

impl ClickHouseConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        check_url("clickhouse.url", &self.url, "clickhouse.user", "clickhouse.password")?;
        let identifier = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier(&self.database) {
            return Err(format!(
                "clickhouse.database: letters, digits and '_' only, got {:?}",
                self.database
            ));
        }
        if !self.cluster.is_empty() && !identifier(&self.cluster) {
            return Err(format!(
                "clickhouse.cluster: letters, digits and '_' only, got {:?}",
                self.cluster
            ));
        }
        if !self.cluster.is_empty() && self.retention_days > 0 {
            return Err(
                "clickhouse.retention_days: not applied on a cluster yet (clickhouse.cluster is set); \
                 keep 0 and drop old partitions with `chainflow prune`"
                    .into(),
            );
        }
        Ok(())
    }
}
