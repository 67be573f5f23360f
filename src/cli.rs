//! Command-line interface.

use chainflow_config::{Config, ConfigError};
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
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Schema Registry (Confluent REST API), persisted in the _schemas topic.
    Registry,
    /// Create the ClickHouse database and tables (idempotent).
    Migrate {
        /// Print the statements for a server version instead of applying them.
        #[arg(long, value_name = "MAJOR.MINOR")]
        print_for: Option<String>,
    },
    /// Create the Kafka topics with their partitions and retention (idempotent).
    Topics,
    /// Produce option-chain snapshots to market.option_chain.
    Feed(FeedArgs),
    /// Enrich market.option_chain into enriched.option_chain (consumer group, transactional).
    Enrich,
    /// Write enriched.option_chain to ClickHouse in batches (consumer group).
    Sink,
    /// Run feed, enrich and sink in one process against the stack.
    Run(RunArgs),
    /// Enrich one option chain given as JSON (FILE or standard input) and print it as JSON.
    Analyze(AnalyzeArgs),
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

/// A rate flag: a decimal between -1 and 1.
fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("expected a decimal such as 0.065, got {s:?}"))?;
    chainflow_config::check_rate(v)
}

/// Options of `chainflow feed`.
#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    /// Stop after this many chains (default: run until Ctrl-C).
    #[arg(long)]
    pub chains: Option<u64>,
    /// Chains per second (0 = as fast as the broker takes them; default feed.rate).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Generator seed (default feed.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Simulated start time, RFC 3339 (default: now).
    #[arg(long)]
    pub start: Option<String>,
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
    /// Loads the configuration: file, then CHAINFLOW_* variables, then --set.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), std::env::vars(), &self.overrides)
    }
}
