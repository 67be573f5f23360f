//! One wiring for every command: each stage is built here from its own configuration
//! section and the connections it shares with the others, and a command's stages run in one
//! supervised [`Process`] with the process's health and metrics endpoints.

use anyhow::Result;
use chainflow_codec::{registry_settings, Codec};
use chainflow_config::Config;
use chainflow_enrich::Enrich;
use chainflow_live::{Live, Store};
use chainflow_registry::RegistryServer;
use chainflow_runtime::{http, signals, Health, Pipeline, Role, Stage, StageStats, Timeouts};
use chainflow_sink::Sink;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A codec for the configured Schema Registry.
pub fn codec(config: &Config) -> Result<Arc<Codec>> {
    Ok(Arc::new(Codec::new(registry_settings(&config.registry)?)))
}

/// The enrich stage.
pub fn enrich(config: &Config, stats: Arc<StageStats>) -> Result<Enrich> {
    Ok(Enrich::new(
        &config.enrich,
        &config.kafka,
        codec(config)?,
        config.registry.unknown_id_grace(),
        config.product_terms()?,
        stats,
    ))
}

/// The sink's stages, one per stream of `sink.streams`; the chains stream counts into `stats`.
pub fn sinks(config: &Config, stats: &Arc<StageStats>) -> Result<Vec<Sink>> {
    Ok(Sink::streams(
        &config.sink,
        &config.kafka,
        &config.clickhouse,
        &codec(config)?,
        config.registry.unknown_id_grace(),
        stats,
        config.otel.max_links,
    ))
}

/// The stages of one process, supervised together: the first SIGINT or SIGTERM asks them
/// to stop, a second one exits at once; `/metrics`, `/healthz` and `/readyz` are served
/// while they run.
pub struct Process {
    pipeline: Pipeline,
    health: Health,
    metrics: Option<TcpListener>,
}

impl Process {
    /// A process of `command`, serving its endpoints on `observability.metrics_listen` or
    /// the command's own port.
    pub async fn new(config: &Config, command: &str) -> Result<Self> {
        let metrics = match config.observability.metrics_address(command) {
            Some(listen) => Some(http::bind(&listen).await?),
            None => None,
        };
        Ok(Self::with_endpoint(config, metrics))
    }

    /// A process whose endpoints a stage serves itself (the registry, on its own port).
    pub fn without_endpoint(config: &Config) -> Self {
        Self::with_endpoint(config, None)
    }

    fn with_endpoint(config: &Config, metrics: Option<TcpListener>) -> Self {
        let health = Health::default();
        let p = &config.pipeline;
        let timeouts = Timeouts {
            startup: Duration::from_millis(p.startup_timeout_ms),
            shutdown: Duration::from_millis(p.shutdown_timeout_ms),
        };
        let pipeline = Pipeline::new(signals::shutdown_request(), health.clone(), timeouts);
        Self {
            pipeline,
            health,
            metrics,
        }
    }

    /// The registry stage, serving this process's endpoints beside its API.
    pub fn registry(&self, config: &Config) -> Result<RegistryServer> {
        Ok(RegistryServer::new(
            &config.registry,
            &config.kafka,
            http::routes(self.health.clone())?,
        ))
    }

    /// The live view's stage, serving this process's endpoints beside the gateway.
    pub fn live(&self, config: &Config) -> Result<Live> {
        let zones = config
            .product_specs()?
            .into_iter()
            .map(|(name, spec)| (name, spec.terms.time_zone))
            .collect();
        let store = Store::new(
            chainflow_clickhouse::client(&config.clickhouse),
            &config.clickhouse.database,
        );
        Ok(Live::new(
            &config.serve,
            &config.kafka,
            codec(config)?,
            store,
            zones,
            http::routes(self.health.clone())?,
        ))
    }

    /// Adds a stage.
    pub fn spawn<S: Stage>(&mut self, stage: S, role: Role) {
        self.pipeline.spawn(stage, role);
    }

    /// Runs the stages to the pipeline's end, serving the endpoints meanwhile.
    pub async fn run(self) -> Result<()> {
        let stop = CancellationToken::new();
        let server = match self.metrics {
            Some(listener) => Some(tokio::spawn(http::serve(
                listener,
                http::routes(self.health.clone())?,
                stop.clone(),
            ))),
            None => None,
        };
        let outcome = self.pipeline.run().await;
        stop.cancel();
        if let Some(server) = server {
            if let Ok(Err(e)) = server.await {
                tracing::warn!(error = %format!("{e:#}"), "the metrics endpoint failed");
            }
        }
        outcome
    }
}
