//! The long-running services: `chainflow enrich`, `chainflow sink`, `chainflow registry`.

use crate::wiring::{self, Process};
use anyhow::Result;
use chainflow_config::Config;
use chainflow_runtime::{Role, StageStats};
use std::sync::Arc;

/// Runs the enrich stage until SIGINT or SIGTERM.
pub async fn enrich(config: &Config) -> Result<()> {
    let mut process = Process::new(config).await?;
    process.spawn(wiring::enrich(config, Arc::new(StageStats::default()))?, Role::Worker);
    process.run().await
}

/// Runs the sink stage until SIGINT or SIGTERM.
pub async fn sink(config: &Config) -> Result<()> {
    let mut process = Process::new(config).await?;
    process.spawn(wiring::sink(config, Arc::new(StageStats::default()))?, Role::Worker);
    process.run().await
}

/// Serves the Schema Registry, with /metrics, /healthz and /readyz on its own port.
pub async fn registry(config: &Config) -> Result<()> {
    let mut process = Process::without_endpoint(config);
    let registry = process.registry(config)?;
    process.spawn(registry, Role::Worker);
    process.run().await
}
