//! One section per stage, read only by that stage, and the sections of the process as a
//! whole (`[pipeline]`, `[observability]`).

use crate::secret::Secret;
use chainflow_contract::streams;
use serde::{Deserialize, Serialize};

/// `chainflow feed` (`[feed]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Messages per second over the three market topics; 0 = as fast as the broker takes them.
    pub rate: f64,
    /// Seed of the simulator, for reproducible runs.
    pub seed: u64,
}

/// `chainflow serve` (`[serve]`): the live view, a WebSocket gateway over the topics and
/// the page that shows it (docs/live.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address of the page, the WebSocket, the API and /metrics, /healthz, /readyz.
    /// Loopback by default: serve elsewhere behind a proxy, with `token` set.
    pub listen: String,
    /// WebSocket clients at once, at most; the next one is refused (503).
    pub max_clients: usize,
    /// Channels one client may subscribe to, at most.
    pub max_subscriptions: usize,
    /// Origins (`https://host:port`) whose pages may open the WebSocket, besides the
    /// gateway's own; a browser from any other is refused (403). Clients that send no
    /// `Origin` (not browsers) are not affected.
    pub allowed_origins: Vec<String>,
    /// When set, `/ws` and `/api/*` require it (`Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`); the page passes on the `token` of its own address.
    pub token: Secret,
    /// At start, the topics are read from this long ago, so that records ClickHouse did
    /// not have yet when the channels were seeded are not missed, ms.
    pub rewind_ms: u64,
    /// Channels are seeded from ClickHouse with chains and ticks of the last this many hours.
    pub seed_hours: u64,
    /// How often the current candles are read from ClickHouse, ms.
    pub candles_ms: u64,
    /// A client that has taken no message for this long is disconnected, ms.
    pub send_timeout_ms: u64,
}

/// How a stage retries transient failures (`[enrich.retry]`, `[sink.retry]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First delay after a transient failure; doubles up to `max_ms`, with jitter.
    pub initial_ms: u64,
    /// Longest delay.
    pub max_ms: u64,
    /// How long a transient failure is retried (the partitions paused) before the stage
    /// fails.
    pub budget_ms: u64,
}

/// `chainflow enrich` (`[enrich]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Consumer group.
    #[serde(deserialize_with = "crate::sources::text")]
    pub group_id: String,
    /// Kafka transactions (exactly-once for read_committed consumers), for brokers that
    /// support them (Apache Kafka); the enricher checks at start and exits naming this
    /// setting if the broker refuses. Off (the default, for any Kafka-compatible broker):
    /// enriched records are produced idempotently and offsets committed after the broker
    /// acknowledged them (at-least-once; the `chainflow.id` header and ClickHouse's natural
    /// keys absorb repeats).
    pub transactions: bool,
    /// With transactions: this enricher's name within its group, stable across its
    /// restarts and unique among the group's members (empty: the host name, which a pod of
    /// a StatefulSet or a restarted container keeps). The transactional id is
    /// `<group_id>-<instance_id>`, so a restarted member fences its predecessor's open
    /// transaction at once; two running enrichers with one name fence each other, and the
    /// one fenced stops with an error naming this setting.
    #[serde(deserialize_with = "crate::sources::text")]
    pub instance_id: String,
    /// With transactions: `transaction.timeout.ms`, how long the broker lets a transaction
    /// stay open. It bounds what read_committed readers wait after an enricher dies
    /// mid-transaction and nothing with its transactional id starts again (at most the
    /// broker's `transaction.max.timeout.ms`, 15 minutes by default).
    pub transaction_timeout_ms: u64,
    /// Input records per batch (or transaction), at most.
    pub batch_records: usize,
    /// Milliseconds a batch (or transaction) stays open, at most.
    pub batch_ms: u64,
    /// Chains with more strikes are dead-lettered (`too_many_strikes`).
    pub max_strikes: usize,
    /// Retries of registry, Kafka read, commit and produce failures.
    pub retry: RetryConfig,
}

/// `chainflow sink` (`[sink]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Consumer groups: each stream reads in `<group_id>-<stream>` (`chainflow-sink-chains`).
    #[serde(deserialize_with = "crate::sources::text")]
    pub group_id: String,
    /// The streams written: `chains` (enriched.option_chain), `ticks` (market.underlying),
    /// `quotes` (market.option_quote), `dead_letters` (every dlq.* topic).
    pub streams: Vec<String>,
    /// A partition's batch is written when it holds this many ClickHouse rows ...
    pub batch_rows: usize,
    /// ... or this many bytes read from Kafka (keys and values) ...
    pub batch_bytes: usize,
    /// ... or its first record is this old.
    pub batch_ms: u64,
    /// An insert that has not been answered by then is abandoned and retried.
    pub insert_timeout_ms: u64,
    /// Retries of transient failures (ClickHouse, Kafka reads and commits, dead-letter
    /// produces), the partitions paused meanwhile.
    pub retry: RetryConfig,
    /// An assigned partition with lag and no progress for this long is a stall: the stream
    /// turns unready, counts and logs it, and re-joins its group.
    pub stall_after_ms: u64,
}

/// How the stages of one process are run together (`[pipeline]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Milliseconds a stage keeps trying to reach its dependencies (Kafka, the registry,
    /// ClickHouse) at start before it fails, and the pipeline with it.
    pub startup_timeout_ms: u64,
    /// Milliseconds the stages have to flush and commit once they are asked to stop (a
    /// SIGINT or SIGTERM, or another stage's failure); a stage still running then is
    /// abandoned and the process exits with an error naming it.
    pub shutdown_timeout_ms: u64,
}

/// Logs and metrics (`[observability]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Address of the /metrics, /healthz and /readyz endpoint; "" disables it. Unset, each
    /// command listens on its own port of 127.0.0.1 ([`default_metrics_port`]), so that
    /// several components run side by side on one host.
    pub metrics_listen: Option<String>,
    /// `auto` (text on a terminal, JSON otherwise), `text` or `json`.
    pub log_format: LogFormat,
}

/// The form of log lines on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text when standard error is a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
            transactions: false,
            instance_id: String::new(),
            transaction_timeout_ms: 10_000,
            batch_records: 1000,
            batch_ms: 100,
            max_strikes: 1000,
            retry: RetryConfig::default(),
        }
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            group_id: "chainflow-sink".into(),
            streams: streams::names().into_iter().map(String::from).collect(),
            batch_rows: 150_000,
            batch_bytes: 8 << 20,
            batch_ms: 1000,
            insert_timeout_ms: 30_000,
            retry: RetryConfig::default(),
            stall_after_ms: 60_000,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
            max_clients: 1000,
            max_subscriptions: 64,
            allowed_origins: Vec::new(),
            token: Secret::default(),
            rewind_ms: 10_000,
            seed_hours: 24,
            candles_ms: 1000,
            send_timeout_ms: 10_000,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_ms: 200,
            max_ms: 30_000,
            budget_ms: 600_000,
        }
    }
}

impl RetryConfig {
    /// Checks every field; errors name them under `section` (`sink.retry.max_ms`).
    pub fn validate(&self, section: &str) -> Result<(), String> {
        at_least_one(&format!("{section}.retry.initial_ms"), self.initial_ms)?;
        if self.max_ms < self.initial_ms {
            return Err(format!(
                "{section}.retry.max_ms: must not be below {section}.retry.initial_ms"
            ));
        }
        if self.budget_ms < self.max_ms {
            return Err(format!(
                "{section}.retry.budget_ms: must not be below {section}.retry.max_ms"
            ));
        }
        Ok(())
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            startup_timeout_ms: 30_000,
            shutdown_timeout_ms: 30_000,
        }
    }
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            log_format: LogFormat::Auto,
        }
    }
}

/// Traces (`[otel]`); where they go is the standard `OTEL_*` variables' business.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelConfig {
    /// Links from a sink batch's span to the traces of its records, at most.
    pub max_links: usize,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self { max_links: 128 }
    }
}

impl OtelConfig {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_links > 10_000 {
            return Err(format!("otel.max_links: at most 10000, got {}", self.max_links));
        }
        Ok(())
    }
}

/// The metrics port of each command when `observability.metrics_listen` is unset, as
/// `ops/prometheus/prometheus.yml` scrapes them: feed and run 9464, enrich 9465, sink 9466.
pub fn default_metrics_port(command: &str) -> Option<u16> {
    match command {
        "feed" | "run" => Some(9464),
        "enrich" => Some(9465),
        "sink" => Some(9466),
        _ => None,
    }
}

impl ObservabilityConfig {
    /// Where `command` serves its endpoints: the configured address, else its default port
    /// on loopback; `None` when disabled.
    pub fn metrics_address(&self, command: &str) -> Option<String> {
        match &self.metrics_listen {
            Some(a) if a.trim().is_empty() => None,
            Some(a) => Some(a.clone()),
            None => default_metrics_port(command).map(|p| format!("127.0.0.1:{p}")),
        }
    }
}

/// `field` must be at least 1.
fn at_least_one(field: &str, v: u64) -> Result<(), String> {
    if v == 0 {
        Err(format!("{field}: must be at least 1"))
    } else {
        Ok(())
    }
}

/// A consumer group id, for `field`.
fn check_group(field: &str, group: &str) -> Result<(), String> {
    if group.trim().is_empty() {
        Err(format!("{field}: must not be empty"))
    } else {
        Ok(())
    }
}

impl FeedConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(format!(
                "feed.rate: must be 0 (unthrottled) or positive, got {}",
                self.rate
            ));
        }
        Ok(())
    }
}

impl EnrichConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        check_group("enrich.group_id", &self.group_id)?;
        at_least_one("enrich.batch_records", self.batch_records as u64)?;
        at_least_one("enrich.batch_ms", self.batch_ms)?;
        at_least_one("enrich.max_strikes", self.max_strikes as u64)?;
        if !self.instance_id.is_empty() {
            check_group("enrich.instance_id", &self.instance_id)?;
        }
        if self.transaction_timeout_ms < 1000 || self.transaction_timeout_ms <= self.batch_ms {
            return Err(format!(
                "enrich.transaction_timeout_ms: at least 1000 and more than enrich.batch_ms ({}), got {}",
                self.batch_ms, self.transaction_timeout_ms
            ));
        }
        self.retry.validate("enrich")
    }
}

impl SinkConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        check_group("sink.group_id", &self.group_id)?;
        if self.streams.is_empty() {
            return Err(format!(
                "sink.streams: name at least one of {}",
                streams::names().join(", ")
            ));
        }
        if let Some(s) = self.streams.iter().find(|s| streams::named(s).is_none()) {
            return Err(format!(
                "sink.streams: unknown stream {s:?}, expected {}",
                streams::names().join(", ")
            ));
        }
        at_least_one("sink.batch_rows", self.batch_rows as u64)?;
        at_least_one("sink.batch_bytes", self.batch_bytes as u64)?;
        at_least_one("sink.batch_ms", self.batch_ms)?;
        at_least_one("sink.insert_timeout_ms", self.insert_timeout_ms)?;
        at_least_one("sink.stall_after_ms", self.stall_after_ms)?;
        if self.stall_after_ms <= self.batch_ms {
            return Err(format!(
                "sink.stall_after_ms: must exceed sink.batch_ms ({}): a batch waiting for its age is not a stall",
                self.batch_ms
            ));
        }
        self.retry.validate("sink")
    }
}

impl ServeConfig {
    /// Checks every field; the error names it (never the token).
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "serve.listen: expected an address and port (127.0.0.1:8090), got {:?}",
                self.listen
            ));
        }
        at_least_one("serve.max_clients", self.max_clients as u64)?;
        at_least_one("serve.max_subscriptions", self.max_subscriptions as u64)?;
        at_least_one("serve.seed_hours", self.seed_hours)?;
        at_least_one("serve.candles_ms", self.candles_ms)?;
        at_least_one("serve.send_timeout_ms", self.send_timeout_ms)?;
        if let Some(o) = self.allowed_origins.iter().find(|o| {
            !(o.starts_with("http://") || o.starts_with("https://"))
                || o.trim_end_matches('/').matches('/').count() != 2
        }) {
            return Err(format!(
                "serve.allowed_origins: expected origins as browsers send them (https://host[:port]), got {o:?}"
            ));
        }
        Ok(())
    }
}

impl PipelineConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        at_least_one("pipeline.startup_timeout_ms", self.startup_timeout_ms)?;
        at_least_one("pipeline.shutdown_timeout_ms", self.shutdown_timeout_ms)
    }
}
