//! The long-running services: `chainflow enrich`, `chainflow sink`, `chainflow registry`
//! (and `chainflow registry hash-password`).

use crate::cli::SinkArgs;
use crate::wiring::{self, Process};
use crate::UsageError;
use anyhow::{Context, Result};
use chainflow_config::Config;
use chainflow_runtime::{Role, StageStats};
use std::sync::Arc;

/// Runs the enrich stage until SIGINT or SIGTERM.
pub async fn enrich(config: &Config) -> Result<()> {
    let mut process = Process::new(config, "enrich").await?;
    process.spawn(wiring::enrich(config, Arc::new(StageStats::default()))?, Role::Worker);
    process.run().await
}

/// Runs the sink's streams (those of `--stream`, else `sink.streams`) until SIGINT or
/// SIGTERM.
pub async fn sink(config: &Config, args: &SinkArgs) -> Result<()> {
    let mut config = config.clone();
    if !args.streams.is_empty() {
        config.sink.streams.clone_from(&args.streams);
    }
    let config = &config;
    let mut process = Process::new(config, "sink").await?;
    for stream in wiring::sinks(config, &Arc::new(StageStats::default()))? {
        process.spawn(stream, Role::Worker);
    }
    process.run().await
}

/// Prints the argon2id hash of the password on standard input (its first line), or of one
/// asked for without echo when standard input is a terminal.
pub fn hash_password() -> Result<()> {
    use std::io::{BufRead, IsTerminal};
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password: ").context("reading the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(UsageError("hash-password: the password is empty".into()).into());
    }
    println!("{}", chainflow_registry::hash_password(&password)?);
    Ok(())
}

/// Serves the Schema Registry, with /metrics, /healthz and /readyz on its own port.
pub async fn registry(config: &Config) -> Result<()> {
    let mut process = Process::without_endpoint(config);
    let registry = process.registry(config)?;
    process.spawn(registry, Role::Worker);
    process.run().await
}

/// Serves the live view, with /metrics, /healthz and /readyz on its own port.
pub async fn serve(config: &Config) -> Result<()> {
    let mut process = Process::without_endpoint(config);
    let live = process.live(config)?;
    process.spawn(live, Role::Worker);
    process.run().await
}
