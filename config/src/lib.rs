//! chainflow configuration.
//!
//! One TOML file, overlaid by `CHAINFLOW_*` environment variables, overlaid by `--set`
//! flags. Defaults point at the local stack (`ops/stack.sh`). Every error names the field.
//!
//! The configuration is a set of typed sections: the connections every stage shares
//! (`[kafka]`, `[registry]`, `[clickhouse]`), one section per stage (`[feed]`, `[enrich]`,
//! `[sink]`, `[serve]`), the process as a whole (`[pipeline]`, `[observability]`) and the products.
//! Each stage is built from its own section and the shared ones, never from the whole.

mod connections;
mod product;
mod secret;
mod sources;
mod stages;

pub use connections::{
    ClickHouseConfig, GroupProtocol, KafkaConfig, RegistryConfig, RegistryRole, RegistryTls, RegistryUser,
    CLASSIC_GROUP_ONLY,
};
pub use product::{check_rate, default_products, parse_close, parse_time_zone, Product, ProductSpec};
pub use secret::{is_secret_field, is_secret_property, Properties, Secret};
pub use sources::ConfigError;
pub use stages::{
    default_metrics_port, EnrichConfig, FeedConfig, LogFormat, ObservabilityConfig, OtelConfig, PipelineConfig,
    RetryConfig, ServeConfig, SinkConfig,
};

use chainflow_contract::ProductTerms;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The whole configuration of every chainflow component.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka brokers and client properties.
    pub kafka: KafkaConfig,
    /// Schema Registry: client settings and the listen address of `chainflow registry`.
    pub registry: RegistryConfig,
    /// ClickHouse connection.
    pub clickhouse: ClickHouseConfig,
    /// The feed stage.
    pub feed: FeedConfig,
    /// The enrich stage.
    pub enrich: EnrichConfig,
    /// The sink stage.
    pub sink: SinkConfig,
    /// The live view.
    pub serve: ServeConfig,
    /// How the stages of one process run together.
    pub pipeline: PipelineConfig,
    /// Logs and metrics.
    pub observability: ObservabilityConfig,
    /// Traces.
    pub otel: OtelConfig,
    /// Products by name; the eight of [`default_products`] when the file has none.
    pub products: BTreeMap<String, Product>,
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
        config.validate().map_err(ConfigError::Invalid)?;
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

    /// The valuation terms of every product, by name: what the analytics need.
    pub fn product_terms(&self) -> Result<BTreeMap<String, ProductTerms>, ConfigError> {
        Ok(self
            .product_specs()?
            .into_iter()
            .map(|(name, spec)| (name, spec.terms))
            .collect())
    }

    /// The effective configuration as TOML, every secret shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serializes to TOML")
    }

    fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.registry.validate()?;
        self.clickhouse.validate()?;
        self.feed.validate()?;
        self.enrich.validate()?;
        self.sink.validate()?;
        self.serve.validate()?;
        self.pipeline.validate()?;
        self.otel.validate()?;
        if self.products.is_empty() {
            return Err("products: at least one [products.<NAME>] table is needed".into());
        }
        self.products
            .iter()
            .try_for_each(|(name, p)| ProductSpec::new(name, p.clone()).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)], sets: &[&str]) -> Result<Config, ConfigError> {
        // one file per call: tests run in parallel
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("chainflow-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{n}.toml"));
        std::fs::write(&path, toml).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let sets: Vec<String> = sets.iter().map(std::string::ToString::to_string).collect();
        Config::load(Some(&path), env, &sets)
    }

    #[test]
    fn defaults_point_at_the_local_stack() {
        let c = Config::load(None, Vec::new(), &[]).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(c.registry.url, "http://127.0.0.1:8081");
        assert_eq!(c.clickhouse.url, "http://127.0.0.1:8123");
        assert_eq!(c.products.len(), 8);
        assert_eq!(c.observability.log_format, LogFormat::Auto);
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
        assert_eq!(c.kafka.properties.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
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
    fn the_live_views_settings_are_checked_and_its_token_never_shown() {
        let c = load("[serve]\ntoken = 12345678\n", &[], &["serve.max_clients=5"]).unwrap();
        assert_eq!(c.serve.token.expose(), "12345678", "a token is its text");
        assert_eq!(c.serve.max_clients, 5);
        assert_eq!(c.serve.listen, "127.0.0.1:8090", "loopback by default");
        assert!(!c.to_redacted_toml().contains("12345678"));
        assert!(!format!("{c:?}").contains("12345678"));
        let env = load("", &[("CHAINFLOW_SERVE__TOKEN", "true")], &[]).unwrap();
        assert_eq!(
            env.serve.token.expose(),
            "true",
            "a token from the environment stays text"
        );
        for (toml, field) in [
            ("[serve]\nlisten = \"8090\"\n", "serve.listen"),
            ("[serve]\nmax_subscriptions = 0\n", "serve.max_subscriptions"),
            (
                "[serve]\nallowed_origins = [\"desk.example.com\"]\n",
                "serve.allowed_origins",
            ),
            (
                "[serve]\nallowed_origins = [\"https://desk.example.com/app\"]\n",
                "serve.allowed_origins",
            ),
        ] {
            let e = load(toml, &[], &[]).unwrap_err().to_string();
            assert!(e.contains(field), "{toml}: {e}");
        }
        let e = load("[serve]\ntoken = \"hunter2\"\nlisten = \"nowhere\"\n", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("serve.listen") && !e.contains("hunter2"), "{e}");
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

    #[test]
    fn the_printed_configuration_redacts_every_secret_and_reads_back() {
        let c = load(
            "[clickhouse]\npassword = \"s3cr3t\"\n[kafka.properties]\n\"sasl.password\" = \"k4fk4\"\n",
            &[("CHAINFLOW_REGISTRY__PASSWORD", "t0ken")],
            &[],
        )
        .unwrap();
        let printed = c.to_redacted_toml();
        for secret in ["s3cr3t", "k4fk4", "t0ken"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("password = \"***\""), "{printed}");
        // the printed form is a configuration file itself
        let path = std::env::temp_dir().join(format!("chainflow-printed-{}.toml", std::process::id()));
        std::fs::write(&path, &printed).unwrap();
        let back = Config::load(Some(&path), Vec::new(), &[]).unwrap();
        assert_eq!(back.products, c.products);
        assert_eq!(back.kafka.partitions, c.kafka.partitions);
    }

    #[test]
    fn secrets_are_text_from_every_source_and_never_echoed() {
        let c = load("[clickhouse]\npassword = 918273645\n", &[], &[]).unwrap();
        assert_eq!(c.clickhouse.password.expose(), "918273645");
        let c = load(
            "",
            &[("CHAINFLOW_CLICKHOUSE__PASSWORD", "918273645")],
            &["registry.password=true"],
        )
        .unwrap();
        assert_eq!(c.clickhouse.password.expose(), "918273645");
        assert_eq!(c.registry.password.expose(), "true");
        let c = load("", &[("CHAINFLOW_KAFKA__PROPERTIES__SASL_PASSWORD", "0042")], &[]).unwrap();
        assert_eq!(c.kafka.properties.get("sasl.password"), Some("0042"));
        for (file, sets) in [
            ("[clickhouse]\npassword = \"918273645\"\npasword = 1\n", vec![]),
            ("", vec!["clickhouse.url=http://default:918273645@127.0.0.1:8123"]),
            ("", vec!["registry.url=https://u:918273645@registry:8081/x"]),
            ("", vec!["registry.url=u:918273645@registry:8081"]),
        ] {
            let e = load(file, &[], &sets).unwrap_err().to_string();
            assert!(!e.contains("918273645"), "{e}");
        }
        let e = load("", &[], &["clickhouse.url=http://default:pw@127.0.0.1:8123"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("clickhouse.url") && e.contains("clickhouse.password"), "{e}");
    }

    #[test]
    fn registry_users_need_an_argon2id_hash() {
        let e = load(
            "[registry.users.alice]\nrole = \"read-write\"\npassword_hash = \"hunter2\"\n",
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("registry.users.alice.password_hash") && e.contains("hash-password") && !e.contains("hunter2"),
            "{e}"
        );
        let e = load(
            "[registry.users.bob]\nrole = \"admin\"\npassword_hash = \"$argon2id$x\"\n",
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("registry.users.bob.role") && e.contains("read-only"), "{e}");
        let c = load(
            "[registry.users.carol]\nrole = \"read-only\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\"\n",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.registry.users["carol"].role, RegistryRole::ReadOnly);
    }

    #[test]
    fn each_component_has_its_own_metrics_port_unless_configured() {
        let c = load("", &[], &[]).unwrap();
        let at = |cmd| c.observability.metrics_address(cmd);
        assert_eq!(
            (at("feed"), at("enrich"), at("sink"), at("run")),
            (
                Some("127.0.0.1:9464".into()),
                Some("127.0.0.1:9465".into()),
                Some("127.0.0.1:9466".into()),
                Some("127.0.0.1:9464".into())
            )
        );
        let c = load("", &[("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", "0.0.0.0:9999")], &[]).unwrap();
        assert_eq!(c.observability.metrics_address("sink").as_deref(), Some("0.0.0.0:9999"));
        let c = load("", &[("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", "")], &[]).unwrap();
        assert_eq!(c.observability.metrics_address("sink"), None);
    }

    #[test]
    fn log_formats_are_named() {
        let c = load("", &[("CHAINFLOW_OBSERVABILITY__LOG_FORMAT", "json")], &[]).unwrap();
        assert_eq!(c.observability.log_format, LogFormat::Json);
        let e = load("[observability]\nlog_format = \"xml\"\n", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("observability.log_format") && e.contains("auto"), "{e}");
    }

    #[test]
    fn every_setting_the_deployment_guide_names_exists() {
        // a setting given where the configuration has none is refused as an unknown field
        let unknown = load("[kafka]\nno_such_setting = 0\n", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown field"), "{unknown}");
        let sections = [
            "kafka",
            "registry",
            "clickhouse",
            "enrich",
            "sink",
            "feed",
            "observability",
            "pipeline",
            "otel",
        ];
        let mut named = 0;
        for token in include_str!("../../docs/deploy.md").split('`').skip(1).step_by(2) {
            let token = token.split('=').next().unwrap_or_default().trim();
            let Some((section, rest)) = token.split_once('.') else {
                continue;
            };
            if !sections.contains(&section) || !rest.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.') {
                continue;
            }
            let (table, key) = token.rsplit_once('.').unwrap_or_default();
            let e = load(&format!("[{table}]\n{key} = 0\n"), &[], &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                !e.contains("unknown field"),
                "docs/deploy.md names `{token}`, which the configuration does not have: {e}"
            );
            named += 1;
        }
        assert!(named >= 15, "only {named} settings found in docs/deploy.md");
    }

    #[test]
    fn each_section_is_validated_by_name() {
        for (set, field) in [
            ("pipeline.shutdown_timeout_ms=0", "pipeline.shutdown_timeout_ms"),
            ("enrich.group_id=", "enrich.group_id"),
            ("sink.retry.budget_ms=1", "sink.retry.budget_ms"),
            ("enrich.max_strikes=0", "enrich.max_strikes"),
            ("registry.topic= ", "registry.topic"),
            ("kafka.replication_factor=0", "kafka.replication_factor"),
            ("kafka.min_insync_replicas=2", "kafka.min_insync_replicas"),
            ("clickhouse.cluster=a b", "clickhouse.cluster"),
            ("registry.max_schema_bytes=10", "registry.max_schema_bytes"),
            ("registry.tls.cert_file=/x.pem", "registry.tls"),
            ("enrich.transaction_timeout_ms=100", "enrich.transaction_timeout_ms"),
            ("enrich.instance_id= ", "enrich.instance_id"),
            ("kafka.group_protocol=cooperative", "kafka.group_protocol"),
        ] {
            let e = load("", &[], &[set]).unwrap_err().to_string();
            assert!(e.contains(field), "{set}: {e}");
        }
    }

    #[test]
    fn names_that_look_like_numbers_are_names() {
        let env = [
            ("CHAINFLOW_ENRICH__INSTANCE_ID", "0"),
            ("CHAINFLOW_SINK__GROUP_ID", "42"),
        ];
        let c = load("", &env, &["enrich.group_id=7"]).unwrap();
        assert_eq!(
            (
                c.enrich.instance_id.as_str(),
                c.enrich.group_id.as_str(),
                c.sink.group_id.as_str()
            ),
            ("0", "7", "42")
        );
    }

    #[test]
    fn the_consumer_group_protocol_refuses_the_classic_only_properties() {
        let sets = ["kafka.group_protocol=consumer"];
        assert!(load("", &[], &sets).is_ok());
        let env = [("CHAINFLOW_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "45000")];
        let e = load("", &env, &sets).unwrap_err().to_string();
        assert!(
            e.contains("kafka.properties.\"session.timeout.ms\"") && e.contains("classic"),
            "{e}"
        );
        assert!(load("", &env, &[]).is_ok(), "the classic protocol takes it");
    }
}
