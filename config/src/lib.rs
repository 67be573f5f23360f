//! chainflow configuration.
//!
//! One TOML file, overlaid by `CHAINFLOW_*` environment variables, overlaid by `--set`
//! flags. Defaults point at the local stack (`ops/stack.sh`). Every error names the field.

mod product;
mod secret;
mod sources;

pub use product::{check_rate, default_products, parse_close, parse_time_zone, Product, ProductSpec};
pub use secret::{is_secret_property, Secret};
pub use sources::ConfigError;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The whole configuration of every chainflow component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka brokers and client properties.
    pub kafka: KafkaConfig,
    /// Schema Registry: client settings and the listen address of `chainflow registry`.
    pub registry: RegistryConfig,
    /// ClickHouse connection.
    pub clickhouse: ClickHouseConfig,
    /// The feed producer.
    pub feed: FeedConfig,
    /// The enrich processor.
    pub enrich: EnrichConfig,
    /// The ClickHouse sink.
    pub sink: SinkConfig,
    /// Logs and metrics.
    pub observability: ObservabilityConfig,
    /// Products by name; defaults to [`default_products`] when the file has none.
    pub products: BTreeMap<String, Product>,
}

/// Kafka connection and topic provisioning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Any librdkafka property, passed through unchanged (SASL, TLS, tuning).
    /// Values of credential properties are never logged.
    pub properties: BTreeMap<String, String>,
    /// Partitions of the market and enriched topics (the unit of parallelism).
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication_factor: i32,
    /// `retention.ms` of created topics: how far back a replay can go.
    pub retention_ms: i64,
}

/// Schema Registry.
#[derive(Debug, Clone, Deserialize)]
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

/// ClickHouse over HTTP(S).
#[derive(Debug, Clone, Deserialize)]
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
}

/// `chainflow feed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Messages per second over the three market topics; 0 = as fast as the broker takes them.
    pub rate: f64,
    /// Seed of the simulator, for reproducible runs.
    pub seed: u64,
}

/// `chainflow enrich`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Consumer group.
    pub group_id: String,
    /// Kafka transactions (exactly-once). Off: enriched records are produced idempotently
    /// and offsets committed after the broker acknowledged them (at-least-once; the
    /// `chainflow.id` header and ClickHouse's natural keys absorb repeats). The local
    /// Tansu broker has no transaction commit, so the stack turns this off.
    pub transactions: bool,
    /// Input records per Kafka transaction (or batch), at most.
    pub transaction_max_records: usize,
    /// Milliseconds a transaction stays open, at most.
    pub transaction_max_ms: u64,
}

/// `chainflow sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Consumer group.
    pub group_id: String,
    /// Flush when a batch holds this many chains.
    pub batch_chains: usize,
    /// Flush when the oldest chain of a batch is this old.
    pub batch_ms: u64,
    /// First retry delay after a failed insert; doubles up to `retry_max_ms`, with jitter.
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
}

/// Logs and metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Address of the /metrics, /healthz and /readyz endpoint ("" to disable).
    pub metrics_listen: String,
    /// `json` (default) or `text`.
    pub log_format: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::default(),
            registry: RegistryConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            feed: FeedConfig::default(),
            enrich: EnrichConfig::default(),
            sink: SinkConfig::default(),
            observability: ObservabilityConfig::default(),
            products: default_products(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            properties: BTreeMap::new(),
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
        }
    }
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self { rate: 0.0, seed: 42 }
    }
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            group_id: "chainflow-enrich".into(),
            transactions: true,
            transaction_max_records: 1000,
            transaction_max_ms: 100,
        }
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            group_id: "chainflow-sink".into(),
            batch_chains: 2000,
            batch_ms: 500,
            retry_initial_ms: 200,
            retry_max_ms: 30_000,
        }
    }
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            metrics_listen: "127.0.0.1:9464".into(),
            log_format: "json".into(),
        }
    }
}

impl Config {
    /// Loads the configuration: `file` (if any), then `CHAINFLOW_*` variables from `env`,
    /// then `key.path=value` overrides, then validates every field.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let table = sources::merge(file, env, overrides)?;
        let config: Config = sources::deserialize(table)?;
        config.validate()?;
        Ok(config)
    }

    /// The products, validated and parsed, by name.
    pub fn product_specs(&self) -> Result<BTreeMap<String, ProductSpec>, ConfigError> {
        self.products
            .iter()
            .map(|(name, p)| {
                ProductSpec::new(name, p.clone())
                    .map(|s| (name.clone(), s))
                    .map_err(ConfigError::Invalid)
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return invalid("kafka.bootstrap_servers: must not be empty".into());
        }
        if self.kafka.partitions < 1 {
            return invalid(format!(
                "kafka.partitions: must be at least 1, got {}",
                self.kafka.partitions
            ));
        }
        if self.kafka.replication_factor < 1 {
            return invalid(format!(
                "kafka.replication_factor: must be at least 1, got {}",
                self.kafka.replication_factor
            ));
        }
        if self.kafka.retention_ms < -1 || self.kafka.retention_ms == 0 {
            return invalid(format!(
                "kafka.retention_ms: must be positive or -1 (forever), got {}",
                self.kafka.retention_ms
            ));
        }
        for (field, url) in [
            ("registry.url", &self.registry.url),
            ("clickhouse.url", &self.clickhouse.url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(format!("{field}: expected an http:// or https:// URL, got {url:?}"));
            }
        }
        if self.clickhouse.database.is_empty()
            || !self
                .clickhouse
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return invalid(format!(
                "clickhouse.database: letters, digits and '_' only, got {:?}",
                self.clickhouse.database
            ));
        }
        if !self.feed.rate.is_finite() || self.feed.rate < 0.0 {
            return invalid(format!(
                "feed.rate: must be 0 (unthrottled) or positive, got {}",
                self.feed.rate
            ));
        }
        for (field, v) in [
            (
                "enrich.transaction_max_records",
                self.enrich.transaction_max_records as u64,
            ),
            ("enrich.transaction_max_ms", self.enrich.transaction_max_ms),
            ("sink.batch_chains", self.sink.batch_chains as u64),
            ("sink.batch_ms", self.sink.batch_ms),
            ("sink.retry_initial_ms", self.sink.retry_initial_ms),
        ] {
            if v == 0 {
                return invalid(format!("{field}: must be at least 1"));
            }
        }
        if self.sink.retry_max_ms < self.sink.retry_initial_ms {
            return invalid("sink.retry_max_ms: must not be below sink.retry_initial_ms".into());
        }
        if !matches!(self.observability.log_format.as_str(), "json" | "text") {
            return invalid(format!(
                "observability.log_format: expected \"json\" or \"text\", got {:?}",
                self.observability.log_format
            ));
        }
        if self.products.is_empty() {
            return invalid("products: at least one [products.<NAME>] table is needed".into());
        }
        self.product_specs().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)], sets: &[&str]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("chainflow-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.toml", toml.len() * 31 + env.len() * 7 + sets.len()));
        std::fs::write(&path, toml).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(Some(&path), env, &sets)
    }

    #[test]
    fn defaults_point_at_the_local_stack() {
        let c = Config::load(None, Vec::new(), &[]).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(c.registry.url, "http://127.0.0.1:8081");
        assert_eq!(c.clickhouse.url, "http://127.0.0.1:8123");
        assert_eq!(c.products.len(), 8);
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let c = load(
            "[kafka]\nbootstrap_servers = \"file:9092\"\npartitions = 3\n",
            &[
                ("CHAINFLOW_KAFKA__BOOTSTRAP_SERVERS", "env:9092"),
                ("CHAINFLOW_KAFKA__PARTITIONS", "4"),
            ],
            &["kafka.partitions=5"],
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "env:9092");
        assert_eq!(c.kafka.partitions, 5);
    }

    #[test]
    fn librdkafka_properties_pass_through_from_env() {
        let c = load(
            "",
            &[("CHAINFLOW_KAFKA__PROPERTIES__SASL_MECHANISM", "SCRAM-SHA-512")],
            &[],
        )
        .unwrap();
        assert_eq!(
            c.kafka.properties.get("sasl.mechanism").map(String::as_str),
            Some("SCRAM-SHA-512")
        );
    }

    #[test]
    fn product_tables_replace_the_defaults_and_keep_their_case() {
        let toml = "[products.NIFTY]\nspot = 21500.0\nstrike_step = 50.0\nlot_size = 50\nrate = 0.065\n\
                    dividend_yield = 0.01\nexpiry_close = \"15:30\"\ntime_zone = \"Asia/Kolkata\"\n";
        let c = load(toml, &[("CHAINFLOW_PRODUCTS__NIFTY__RATE", "0.07")], &[]).unwrap();
        assert_eq!(c.products.len(), 1);
        assert_eq!(c.products["NIFTY"].rate, 0.07);
    }

    #[test]
    fn env_changes_one_field_of_a_default_product() {
        let c = Config::load(
            None,
            vec![("CHAINFLOW_PRODUCTS__NIFTY__RATE".to_string(), "0.07".to_string())],
            &[],
        )
        .unwrap();
        assert_eq!(c.products.len(), 8);
        assert_eq!(c.products["NIFTY"].rate, 0.07);
        assert_eq!(c.products["NIFTY"].strike_step, 50.0);
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let e = load("[kafka]\npartitions = \"many\"\n", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka.partitions"), "{e}");
    }

    #[test]
    fn an_unknown_field_names_the_field() {
        let e = load("[sink]\nbatch_rowz = 5\n", &[], &[]).unwrap_err().to_string();
        assert!(e.contains("batch_rowz"), "{e}");
    }

    #[test]
    fn an_invalid_value_names_the_field() {
        let e = load("", &[], &["clickhouse.url=localhost:8123"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid configuration: clickhouse.url:"), "{e}");
        let e = load("", &[("CHAINFLOW_SINK__BATCH_MS", "0")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sink.batch_ms"), "{e}");
    }

    #[test]
    fn a_malformed_override_is_refused() {
        let e = load("", &[], &["kafka.partitions"]).unwrap_err().to_string();
        assert!(e.contains("kafka.partitions") && e.contains("key=value"), "{e}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let c = load(
            "[clickhouse]\npassword = \"s3cr3t\"\n",
            &[("CHAINFLOW_REGISTRY__PASSWORD", "t0ken")],
            &[],
        )
        .unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("s3cr3t") && !dump.contains("t0ken"), "{dump}");
        assert_eq!(c.clickhouse.password.expose(), "s3cr3t");
    }
}
