//! `chainflow registry`: a Confluent-compatible Schema Registry (Avro) whose state lives in
//! the `_schemas` topic and is rebuilt by reading that topic at start, so ids survive
//! restarts. One instance at a time writes to the topic.

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

use chainflow_config::KafkaConfig;
use std::sync::Arc;

/// Replays the registry's topic and returns its routes, ready to serve.
pub async fn open(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<axum::Router> {
    let (topic, store) = SchemaTopic::open(kafka, topic).await?;
    Ok(router(Arc::new(Registry::new(topic, store))))
}
