//! `enrich` and `sink` as standalone services.

use crate::shutdown::on_signal;
use crate::telemetry::{serve_metrics, Readiness};
use anyhow::Result;
use chainflow_config::Config;
use chainflow_kafka::StageStats;
use chainflow_processors::enrich::Enrich;
use chainflow_sinks::sink::ChainSink;
use std::sync::Arc;

/// Runs the enrich processor until SIGINT/SIGTERM.
pub async fn enrich(config: &Config) -> Result<()> {
    let shutdown = on_signal();
    let ready = Readiness::default();
    serve_metrics(&config.observability.metrics_listen, ready.clone(), shutdown.clone()).await?;
    let stage = Enrich::new(config, super::codec(config)?, Arc::new(StageStats::default()))?;
    ready.set_ready();
    stage.run(shutdown).await
}

/// Runs the ClickHouse sink until SIGINT/SIGTERM.
pub async fn sink(config: &Config) -> Result<()> {
    let shutdown = on_signal();
    let ready = Readiness::default();
    serve_metrics(&config.observability.metrics_listen, ready.clone(), shutdown.clone()).await?;
    let stage = ChainSink::new(config, super::codec(config)?, Arc::new(StageStats::default())).await?;
    ready.set_ready();
    stage.run(shutdown).await
}
