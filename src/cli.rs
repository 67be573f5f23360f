//! Command-line interface.

use chainflow_config::{Config, ConfigError, LogFormat};
use chainflow_feed::Scenario;
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
    /// Enrich one option chain given as JSON (FILE or standard input) and print it as JSON.
    Analyze(AnalyzeArgs),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    #[arg(long = "stream", value_name = "NAME", value_parser = ["chains", "ticks", "quotes", "dead_letters"])]
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
