//! Topic provisioning: nothing relies on broker auto-creation.

use anyhow::{bail, Context, Result};
use chainflow_config::KafkaConfig;
use chainflow_contract::topics::TopicSpec;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::Duration;

/// What `ensure_topics` did with one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// Created with the given partition count.
    Created(i32),
    /// Already there with the given partition count.
    Exists(i32),
}

/// Creates every topic in `specs` that does not exist yet, with its partition count and
/// `retention.ms`, and reports what is there. An existing topic with another partition
/// count is an error: keys would move between partitions.
pub async fn ensure_topics(kafka: &KafkaConfig, specs: &[TopicSpec]) -> Result<Vec<(TopicSpec, TopicOutcome)>> {
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        crate::client::producer_config(kafka)
            .create()
            .context("creating the Kafka admin client")?,
    );
    let retention = kafka.retention_ms.to_string();
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(kafka.replication_factor))
                .set("retention.ms", &retention)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .with_context(|| format!("creating topics on {}", kafka.bootstrap_servers))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name}: {code}"),
        }
    }
    let metadata = crate::blocking::fetch_metadata(&admin, None, Duration::from_secs(30))
        .await
        .context("reading topic metadata")?;
    let mut out = Vec::new();
    for spec in specs {
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == spec.name)
            .map(|t| t.partitions().len() as i32)
            .with_context(|| format!("topic {} missing after creation", spec.name))?;
        if found != spec.partitions {
            bail!(
                "topic {} has {found} partitions, the configuration asks for {} (kafka.partitions); \
                 repartitioning moves keys, so chainflow will not change it: recreate the topic or set kafka.partitions = {found}",
                spec.name,
                spec.partitions
            );
        }
        let outcome = if created.contains(&spec.name) {
            TopicOutcome::Created(found)
        } else {
            TopicOutcome::Exists(found)
        };
        out.push((spec.clone(), outcome));
    }
    Ok(out)
}
