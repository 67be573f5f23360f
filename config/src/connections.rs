//! What the stages share: the Kafka, Schema Registry and ClickHouse connections.

use crate::secret::{Properties, Secret};
use serde::{Deserialize, Serialize};

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
    /// `retention.ms` of created topics: how far back a replay can go.
    pub retention_ms: i64,
}

/// Schema Registry: the client settings every stage uses, and where `chainflow registry`
/// serves (`[registry]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL the serializers use.
    pub url: String,
    /// Basic-auth user (empty: no auth).
    pub username: String,
    /// Basic-auth password.
    pub password: Secret,
    /// Address `chainflow registry` listens on.
    pub listen: String,
    /// Topic `chainflow registry` keeps its state in (one partition).
    pub topic: String,
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
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            properties: Properties::default(),
            partitions: 6,
            replication_factor: 1,
            retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081".into(),
            username: String::new(),
            password: Secret::default(),
            listen: "127.0.0.1:8081".into(),
            topic: "_schemas".into(),
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
        }
    }
}

/// An `http://` or `https://` URL, for `field`.
fn check_url(field: &str, url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{field}: expected an http:// or https:// URL, got {url:?}"))
    }
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
        if self.retention_ms < -1 || self.retention_ms == 0 {
            return Err(format!(
                "kafka.retention_ms: must be positive or -1 (forever), got {}",
                self.retention_ms
            ));
        }
        Ok(())
    }
}

impl RegistryConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        check_url("registry.url", &self.url)?;
        if self.topic.trim().is_empty() {
            return Err("registry.topic: must not be empty".into());
        }
        Ok(())
    }
}

impl ClickHouseConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        check_url("clickhouse.url", &self.url)?;
        let identifier = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier(&self.database) {
            return Err(format!(
                "clickhouse.database: letters, digits and '_' only, got {:?}",
                self.database
            ));
        }
        Ok(())
    }
}
