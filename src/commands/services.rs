//! The long-running services: `chainflow enrich`, `chainflow sink`, `chainflow registry`.

use crate::cli::SinkArgs;
use crate::wiring::{self, Process};
use anyhow::Result;
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

/// Serves the Schema Registry, with /metrics, /healthz and /readyz on its own port.
pub async fn registry(config: &Config) -> Result<()> {
    let mut process = Process::without_endpoint(config);
    let registry = process.registry(config)?;
    process.spawn(registry, Role::Worker);
    process.run().await
}
