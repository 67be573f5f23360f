//! Command-line interface.

use chainflow_config::{Config, ConfigError, LogFormat};
use chainflow_feed::Scenario;
use chainflow_kafka::Bound;
use chrono::NaiveTime;
use chrono_tz::Tz;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Options market data pipeline on Kafka and ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "chainflow", version, about)]
pub struct Cli {
    /// TOML configuration file (defaults point at the local stack of ops/stack.sh).
    #[arg(long, global = true, env = "CHAINFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set kafka.bootstrap_servers=127.0.0.1:9093` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Log lines on standard error: `auto` (text on a terminal, JSON otherwise), `text` or
    /// `json`; wins over observability.log_format from the environment or the file.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(a: LogFormatArg) -> Self {
        match a {
            LogFormatArg::Auto => LogFormat::Auto,
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Schema Registry (Confluent REST API), persisted in the _schemas topic, or
    /// hash a password for one of its users.
    Registry(RegistryCommand),
    /// Create the ClickHouse database and tables (idempotent).
    Migrate {
        /// Print the statements for a server version instead of applying them.
        #[arg(long, value_name = "MAJOR.MINOR")]
        print_for: Option<String>,
        /// Create the tables on this ClickHouse cluster: replicated local tables and
        /// distributed ones, `ON CLUSTER` (sets clickhouse.cluster for this command).
        #[arg(long, value_name = "NAME")]
        cluster: Option<String>,
    },
    /// Create the Kafka topics with their partitions and retention (idempotent).
    Topics,
    /// Produce the simulated market (ticks, quotes, chain snapshots), or play a recorded feed.
    Feed(FeedCommand),
    /// Enrich market.option_chain into enriched.option_chain (consumer group).
    Enrich,
    /// Write every stream to ClickHouse in batches: enriched chains, underlying ticks,
    /// option quotes and dead letters (a consumer group per stream).
    Sink(SinkArgs),
    /// Drop the monthly partitions whose rows are all older than a date (retention on
    /// servers without TTL).
    Prune(PruneArgs),
    /// Run feed, enrich and sink in one process against the stack.
    Run(RunArgs),
    /// Serve the live view: the page, a WebSocket of chains, chain metrics and underlyings
    /// as they change, and its API, on serve.listen (docs/live.md).
    Serve,
    /// Write a range of a topic to ClickHouse again (restore, backfill), without a consumer
    /// group; raw chains with --reprocess are enriched again on the way.
    Replay(ReplayArgs),
    /// Print the records of a topic as JSON lines, decoded through the Schema Registry.
    Tail(TailArgs),
    /// Consumer groups: list them, show a group's lag, reset its offsets.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Dead letters: send them back to their source topic after a fix.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The contract's Avro schemas.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Enrich one option chain given as JSON (FILE or standard input) and print it as JSON.
    Analyze(AnalyzeArgs),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

impl Command {
    /// The command's name, as typed (`feed`, `sink`, ...): the service name of its traces.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Registry(_) => "registry",
            Command::Migrate { .. } => "migrate",
            Command::Topics => "topics",
            Command::Feed(_) => "feed",
            Command::Enrich => "enrich",
            Command::Sink(_) => "sink",
            Command::Prune(_) => "prune",
            Command::Run(_) => "run",
            Command::Serve => "serve",
            Command::Replay(_) => "replay",
            Command::Tail(_) => "tail",
            Command::Groups(_) => "groups",
            Command::Dlq(_) => "dlq",
            Command::Schemas(_) => "schemas",
            Command::Analyze(_) => "analyze",
            Command::Config(_) => "config",
        }
    }
}

/// `chainflow registry [hash-password]`.
#[derive(Debug, clap::Args)]
pub struct RegistryCommand {
    /// Without a subcommand: serve.
    #[command(subcommand)]
    pub action: Option<RegistrySubcommand>,
}

/// What `chainflow registry` can do besides serving.
#[derive(Debug, Subcommand)]
pub enum RegistrySubcommand {
    /// Print the argon2id hash of a password for `[registry.users.NAME].password_hash`. The
    /// password is read from standard input (first line), or asked for without echo on a
    /// terminal.
    HashPassword,
}

/// Options of `chainflow sink`.
#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Write only this stream (repeatable; default sink.streams, all of them).
    #[arg(long = "stream", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(chainflow_contract::streams::names()))]
    pub streams: Vec<String>,
}

/// Options of `chainflow prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Drop the months that end before this date's month, YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub before: chrono::NaiveDate,
    /// Print what would be dropped without dropping it.
    #[arg(long)]
    pub dry_run: bool,
}

/// `chainflow schemas`.
#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Check every subject's schema against its released copy and the registry's latest
    /// version, under the subject's compatibility level; fails naming the subject and field.
    Check(SchemasCheckArgs),
}

/// Options of `chainflow schemas check`.
#[derive(Debug, clap::Args)]
pub struct SchemasCheckArgs {
    /// Directory of new schemas (`underlying_tick.avsc`, ...); files it lacks are the
    /// contract's own (default: the contract's schemas, contract/avro/).
    #[arg(long, value_name = "DIR")]
    pub schemas: Option<PathBuf>,
    /// Directory of released schemas (default: the contract's, contract/avro/released/).
    #[arg(long, value_name = "DIR")]
    pub released: Option<PathBuf>,
    /// Do not ask the Schema Registry.
    #[arg(long)]
    pub offline: bool,
}

/// A range of a topic: `--from`, `--to` and `--partition`.
#[derive(Debug, Clone, clap::Args)]
pub struct RangeArgs {
    /// First record: `earliest`, `latest`, an RFC 3339 time (the records' Kafka timestamps)
    /// or PARTITION:OFFSET,... (partitions not named are left out).
    #[arg(long, default_value = "earliest", value_name = "BOUND")]
    pub from: Bound,
    /// End of the range, not included: `latest` (the end when the command starts), a time or
    /// PARTITION:OFFSET,... (partitions not named run to their end).
    #[arg(long, default_value = "latest", value_name = "BOUND")]
    pub to: Bound,
    /// Only these partitions (repeatable, or comma-separated).
    #[arg(long = "partition", value_name = "N", value_delimiter = ',')]
    pub partitions: Vec<i32>,
}

/// Options of `chainflow replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The topic: enriched.option_chain, market.underlying, market.option_quote, a dlq.*
    /// topic, or market.option_chain with --reprocess.
    pub topic: String,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Only records whose event happened at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = rfc3339_us)]
    pub event_from: Option<i64>,
    /// Only records whose event happened before this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = rfc3339_us)]
    pub event_to: Option<i64>,
    /// Enrich raw chains (market.option_chain) again with this run's configuration; the rows'
    /// version is the reprocess time, so they replace the earlier ones.
    #[arg(long)]
    pub reprocess: bool,
    /// With --reprocess, also send the enriched chains to this topic (default
    /// enriched.option_chain); without it they go to ClickHouse only.
    #[arg(long, value_name = "TOPIC", num_args = 0..=1, default_missing_value = "enriched.option_chain", requires = "reprocess")]
    pub to_topic: Option<String>,
    /// Print the resolved range per partition and its size, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `chainflow tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The topic.
    pub topic: String,
    /// First record: `earliest`, `latest`, an RFC 3339 time or PARTITION:OFFSET,...
    #[arg(long, default_value = "earliest", value_name = "BOUND")]
    pub from: Bound,
    /// Only these partitions (repeatable, or comma-separated).
    #[arg(long = "partition", value_name = "N", value_delimiter = ',')]
    pub partitions: Vec<i32>,
    /// Only records with this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Stop after printing this many records.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Keep printing records as they arrive (until Ctrl-C) instead of stopping at the end.
    #[arg(long)]
    pub follow: bool,
    /// Print each record as {"value": ..., "topic", "partition", "offset", "timestamp", "key",
    /// "headers"}.
    #[arg(long)]
    pub with_meta: bool,
    /// Also print records of open and aborted transactions (read_uncommitted); by default
    /// only what read_committed consumers see.
    #[arg(long)]
    pub read_uncommitted: bool,
}

/// `chainflow groups`.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// The consumer groups, with their state and members.
    List,
    /// A group's committed offset, high watermark and lag per partition.
    Lag {
        /// The group.
        group: String,
        /// Only these topics (default: those the group has committed offsets on).
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Move a group's committed offsets (refused while the group has members).
    Reset {
        /// The group.
        group: String,
        /// `earliest`, `latest`, an RFC 3339 time or PARTITION:OFFSET,...
        #[arg(long, value_name = "BOUND")]
        to: Bound,
        /// Only these topics (default: those the group has committed offsets on).
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
        /// Print the moves without committing them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `chainflow dlq`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Send the dead letters of a range back to their source topic, with their original key
    /// and headers and a redrive count (`chainflow.redrive.count`).
    Redrive(RedriveArgs),
}

/// Options of `chainflow dlq redrive`.
#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// The dead-letter topic (dlq.market.option_chain), or its source topic.
    pub topic: String,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Only dead letters of this error kind (repeatable).
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Print what would be sent back, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `chainflow config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (file, environment, --set) and say what it points at.
    Check {
        /// Also print the effective configuration as TOML, every secret redacted.
        #[arg(long)]
        print: bool,
    },
}

/// Options of `chainflow analyze`: the product's parameters can be overridden for the run.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// JSON file holding one option chain (default: standard input).
    pub file: Option<PathBuf>,
    /// Risk-free rate, continuously compounded decimal (0.065 for 6.5%).
    #[arg(long, value_parser = rate)]
    pub rate: Option<f64>,
    /// Dividend yield, continuously compounded decimal.
    #[arg(long, value_parser = rate)]
    pub dividend_yield: Option<f64>,
    /// Local time at which the options expire.
    #[arg(long, value_name = "HH:MM", value_parser = chainflow_config::parse_close)]
    pub expiry_close: Option<NaiveTime>,
    /// IANA time zone of the exchange, e.g. Asia/Kolkata.
    #[arg(long, value_name = "TZ", value_parser = chainflow_config::parse_time_zone)]
    pub time_zone: Option<Tz>,
}

/// The slowest --rate or --speed accepted (slower would mean waiting for ever).
const MIN_PACE: f64 = 0.001;

/// A pace flag (`--speed`): a number of at least [`MIN_PACE`].
fn pace(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= MIN_PACE => Ok(v),
        _ => Err(format!("must be a number of at least {MIN_PACE}, got {s:?}")),
    }
}

/// A pace flag where 0 means as fast as possible (`--rate`, `feed play --speed`).
fn pace_or_zero(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v == 0.0 => Ok(v),
        _ => pace(s).map_err(|e| format!("{e} (or 0: as fast as possible)")),
    }
}

/// An RFC 3339 time, as µs since the epoch.
fn rfc3339_us(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("expected an RFC 3339 time such as 2025-01-30T09:15:00Z ({e})"))
}

/// A rate flag: a decimal between -1 and 1.
fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("expected a decimal such as 0.065, got {s:?}"))?;
    chainflow_config::check_rate(v)
}

/// `chainflow feed`: the simulator, or `feed play FILE`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FeedCommand {
    /// Play a recording instead of simulating.
    #[command(subcommand)]
    pub play: Option<FeedSubcommand>,
    #[command(flatten)]
    pub args: FeedArgs,
}

/// Subcommands of `chainflow feed`.
#[derive(Debug, Subcommand)]
pub enum FeedSubcommand {
    /// Send a recorded feed (NDJSON, or CSV chain snapshots) to the market topics with the
    /// original keys, its timing scaled by --speed.
    Play(PlayArgs),
}

/// Options of `chainflow feed play`.
#[derive(Debug, clap::Args)]
pub struct PlayArgs {
    /// NDJSON recording (as `feed --record` writes), or a `.csv` file of chain snapshots.
    pub file: PathBuf,
    /// Recorded seconds per real second (2 = twice as fast; 0 = as fast as the broker takes them).
    #[arg(long, default_value_t = 1.0, value_parser = pace_or_zero)]
    pub speed: f64,
    /// Stop at the first bad line instead of reporting and skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// Options of the simulated feed (`chainflow feed`, `chainflow run`).
#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    /// Stop after this many chain snapshots, with their ticks and quotes (default: until Ctrl-C).
    #[arg(long)]
    pub chains: Option<u64>,
    /// Messages per second over all topics (0 = as fast as the broker takes them; default feed.rate).
    #[arg(long, conflicts_with_all = ["profile", "speed"], value_parser = pace_or_zero)]
    pub rate: Option<f64>,
    /// Load profile instead of a constant rate: `spike` (200 msg/s rising by 100 every 10 s to
    /// 2,000, held for a minute, ramped down the same way).
    #[arg(long, value_parser = ["spike"], conflicts_with = "speed")]
    pub profile: Option<String>,
    /// Simulated seconds per real second (1 = real time; 60 = a minute of market per second).
    #[arg(long, value_parser = pace)]
    pub speed: Option<f64>,
    /// Market scenario: `normal`, or `crash` (volatility index 15 → 80, volume ×10, fast swings).
    #[arg(long, default_value = "normal")]
    pub scenario: Scenario,
    /// Simulator seed (default feed.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Simulated start time, RFC 3339 (default: now).
    #[arg(long, value_name = "TIME", value_parser = rfc3339_us)]
    pub start: Option<i64>,
    /// Also write every produced message to this NDJSON file (replay it with `feed play`).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// Options of `chainflow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub feed: FeedArgs,
    /// Give up waiting for ClickHouse after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

impl Cli {
    /// Loads the configuration: file, then CHAINFLOW_* variables, then --set, then
    /// --log-format.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut overrides = self.overrides.clone();
        if let Some(f) = self.log_format {
            let name = match LogFormat::from(f) {
                LogFormat::Auto => "auto",
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            };
            overrides.push(format!("observability.log_format={name}"));
        }
        Config::load(self.config.as_deref(), std::env::vars(), &overrides)
    }
}
