//! Command-line interface.

use chainflow_config::{Config, ConfigError};
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
