//! Topic provisioning: nothing relies on broker auto-creation.

use anyhow::{bail, Context, Result};
use chainflow_config::KafkaConfig;
use chainflow_contract::topics::TopicSpec;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long the broker has to answer at all.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// What `ensure_topics` did with one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// Created with the given partition count.
    Created(i32),
    /// Already there with the given partition count.
    Exists(i32),
}

/// Creates every topic in `specs` that does not exist yet, with its partition count and
/// `retention.ms` (or compacted and kept forever), and reports what is there. An existing topic with another partition
/// count is an error: keys would move between partitions.
pub async fn ensure_topics(kafka: &KafkaConfig, specs: &[TopicSpec]) -> Result<Vec<(TopicSpec, TopicOutcome)>> {
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        crate::client::producer_config(kafka)
            .create()
            .context("creating the Kafka admin client")?,
    );
    // a broker that does not answer is an error in bounded time, not a wait for ever
    crate::blocking::fetch_metadata(&admin, None, REACH_TIMEOUT)
        .await
        .with_context(|| {
            format!(
                "cannot reach Kafka at {} within {} s (kafka.bootstrap_servers)",
                kafka.bootstrap_servers,
                REACH_TIMEOUT.as_secs()
            )
        })?;
    let retention = kafka.retention_ms.to_string();
    let min_insync = kafka.min_insync_replicas.to_string();
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            let topic = NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(kafka.replication_factor))
                .set("min.insync.replicas", &min_insync);
            if s.compacted {
                topic.set("cleanup.policy", "compact").set("retention.ms", "-1")
            } else {
                topic.set("retention.ms", &retention)
            }
        })
        .collect();
    let (created, listed) = create_until_listed(&admin, &new, kafka).await?;
    let mut out = Vec::new();
    for spec in specs {
        let found = listed[&spec.name];
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

/// How long the cluster has to list the topics once they are created.
const LISTED_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates the topics of `new` that do not exist and waits until the cluster's metadata
/// lists every one: the names created, and each topic's partition count. On a cluster the
/// node that answers the metadata request may not have applied a creation yet (KRaft
/// propagates it to each broker in turn), so a topic missing from the answer is created
/// again (its creation may not have been taken) and asked for again, for up to
/// [`LISTED_TIMEOUT`].
async fn create_until_listed(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    new: &[NewTopic<'_>],
    kafka: &KafkaConfig,
) -> Result<(Vec<String>, BTreeMap<String, i32>)> {
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let deadline = tokio::time::Instant::now() + LISTED_TIMEOUT;
    let mut created = Vec::new();
    let mut missing: Vec<&NewTopic<'_>> = new.iter().collect();
    loop {
        let results = admin
            .create_topics(missing.iter().copied(), &opts)
            .await
            .with_context(|| format!("creating topics on {}", kafka.bootstrap_servers))?;
        for r in results {
            match r {
                Ok(name) => created.push(name),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => bail!("cannot create topic {name}: {code}"),
            }
        }
        let metadata = crate::blocking::fetch_metadata(admin, None, Duration::from_secs(30))
            .await
            .context("reading topic metadata")?;
        let listed: BTreeMap<String, i32> = metadata
            .topics()
            .iter()
            .filter(|t| !t.partitions().is_empty())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect();
        missing.retain(|t| !listed.contains_key(t.name));
        if missing.is_empty() {
            return Ok((created, listed));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("topic {} missing after creation", missing[0].name);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The configuration of `topic` as the broker describes it: every entry it reports (Apache
/// Kafka lists defaults too; Tansu and nisshi only what was set).
pub async fn topic_config(kafka: &KafkaConfig, topic: &str) -> Result<BTreeMap<String, String>> {
    let admin: AdminClient<DefaultClientContext> = crate::client::producer_config(kafka)
        .create()
        .context("creating the Kafka admin client")?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
        .with_context(|| format!("describing topic {topic}"))?;
    let resource = results
        .into_iter()
        .next()
        .with_context(|| format!("no description of topic {topic}"))?
        .with_context(|| format!("describing topic {topic}"))?;
    Ok(resource
        .entries
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect())
}
