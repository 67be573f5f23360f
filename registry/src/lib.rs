//! `chainflow registry`: a Confluent-compatible Schema Registry (Avro) whose state lives in
//! the `_schemas` topic and is rebuilt by reading that topic at start, so ids survive
//! restarts. One instance at a time writes to the topic. [`RegistryServer`] is the stage.

mod api;
mod compat;
mod error;
mod log;
mod store;
mod topic;

pub use api::{router, Registry, CONTENT_TYPE};
pub use compat::Level;
pub use error::RegistryError;
pub use topic::SchemaTopic;

use anyhow::{Context, Result};
use axum::Router;
use chainflow_config::{KafkaConfig, RegistryConfig};
use chainflow_runtime::{http, Stage, StageContext};
use std::sync::Arc;

/// The registry as a stage: it replays its topic, then serves the REST API and the
/// process's own routes (`/metrics`, `/healthz`, `/readyz`) on `registry.listen` until
/// stopped.
pub struct RegistryServer {
    section: RegistryConfig,
    kafka: KafkaConfig,
    routes: Router,
}

impl RegistryServer {
    /// The stage, serving `routes` beside the API; nothing connects until it runs.
    pub fn new(section: &RegistryConfig, kafka: &KafkaConfig, routes: Router) -> Self {
        Self {
            section: section.clone(),
            kafka: kafka.clone(),
            routes,
        }
    }
}

impl Stage for RegistryServer {
    fn name(&self) -> &'static str {
        "registry"
    }

    async fn run(self, ctx: StageContext) -> Result<()> {
        let listener = http::bind(&self.section.listen).await?;
        let broker = format!("Kafka at {}", self.kafka.bootstrap_servers);
        let opened = ctx
            .connect(&broker, || SchemaTopic::open(&self.kafka, &self.section.topic))
            .await?;
        let Some((topic, store)) = opened else {
            return Ok(());
        };
        let app = router(Arc::new(Registry::new(topic, store))).merge(self.routes);
        ctx.set_ready(true);
        http::serve(listener, app, ctx.stop_token().clone())
            .await
            .context("the registry's HTTP server")
    }
}
