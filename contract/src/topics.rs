//! Topic names, the headers chainflow sets, and the topics the project provisions.

/// Underlying ticks.
pub const UNDERLYING: &str = "market.underlying";
/// Single-option quotes.
pub const OPTION_QUOTE: &str = "market.option_quote";
/// Option-chain snapshots.
pub const OPTION_CHAIN: &str = "market.option_chain";
/// Enriched option chains.
pub const ENRICHED_CHAIN: &str = "enriched.option_chain";

/// The topic where enrich, with transactions on, commits a marker at start to find out
/// whether the broker supports transactions.
pub const TRANSACTION_PROBE: &str = "_chainflow_enrich_probe";

/// Header carrying an enriched chain's idempotency id.
pub const HEADER_ID: &str = "chainflow.id";
/// Dead-letter headers.
pub const HEADER_ERROR_KIND: &str = "chainflow.error.kind";
/// Human-readable reason a record was dead-lettered.
pub const HEADER_ERROR_MESSAGE: &str = "chainflow.error.message";
/// Topic the dead-lettered record came from.
pub const HEADER_SOURCE_TOPIC: &str = "chainflow.source.topic";
/// Partition the dead-lettered record came from.
pub const HEADER_SOURCE_PARTITION: &str = "chainflow.source.partition";
/// Offset of the dead-lettered record.
pub const HEADER_SOURCE_OFFSET: &str = "chainflow.source.offset";
/// When the record was dead-lettered (RFC 3339, UTC).
pub const HEADER_ERROR_TIME: &str = "chainflow.error.time";
/// Set when a dead letter does not carry the original value (it was larger than the
/// producer may send): the value stays readable at `chainflow.source.*` while the source
/// topic retains it.
pub const HEADER_VALUE_OMITTED: &str = "chainflow.error.value_omitted";
/// The stage that dead-lettered the record (`enrich`, `sink`).
pub const HEADER_ERROR_STAGE: &str = "chainflow.error.stage";

/// When the feed produced the record, µs since the epoch (wall clock): carried by enrich,
/// it is where the pipeline latency is measured from.
pub const HEADER_PRODUCED_AT: &str = "chainflow.produced_at_us";

/// How many times a record was sent back from a dead-letter topic (`chainflow dlq
/// redrive`); kept when the record is dead-lettered again.
pub const HEADER_REDRIVE_COUNT: &str = "chainflow.redrive.count";

/// True for the headers a dead letter gets from chainflow (error and source), which a
/// record dead-lettered again replaces rather than repeats.
pub fn is_dead_letter_header(name: &str) -> bool {
    name.starts_with("chainflow.error.") || name.starts_with("chainflow.source.")
}

/// The dead-letter topic of `source`.
pub fn dlq(source: &str) -> String {
    format!("dlq.{source}")
}

/// A topic the project creates, with how it is partitioned and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Compacted and kept forever (`cleanup.policy=compact`, `retention.ms=-1`: the
    /// registry's state) rather than deleted after `kafka.retention_ms`.
    pub compacted: bool,
}

/// The dead-letter topics of the data topics, in the order [`provisioned`] lists them.
pub fn dead_letter_topics() -> Vec<String> {
    [UNDERLYING, OPTION_QUOTE, OPTION_CHAIN, ENRICHED_CHAIN]
        .iter()
        .map(|t| dlq(t))
        .collect()
}

/// Every topic chainflow uses; market and enriched topics get `partitions` partitions, dead
/// letters and the registry's topic (`registry.topic`, `_schemas` by default) exactly one;
/// the registry's topic is compacted and kept forever.
/// Enriched chains share the raw chain's partition count so that a chain key lands on the
/// same partition number in both topics.
pub fn provisioned(partitions: i32, registry_topic: &str) -> Vec<TopicSpec> {
    let data = [UNDERLYING, OPTION_QUOTE, OPTION_CHAIN, ENRICHED_CHAIN];
    let mut specs: Vec<TopicSpec> = data
        .iter()
        .map(|t| TopicSpec {
            name: t.to_string(),
            partitions,
            compacted: false,
        })
        .chain(data.iter().map(|t| TopicSpec {
            name: dlq(t),
            partitions: 1,
            compacted: false,
        }))
        .collect();
    specs.push(TopicSpec {
        name: registry_topic.into(),
        partitions: 1,
        compacted: true,
    });
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_topic_has_one_partition_and_data_topics_many() {
        let specs = provisioned(6, "_schemas");
        let get = |n: &str| specs.iter().find(|s| s.name == n).unwrap().partitions;
        assert_eq!(get("_schemas"), 1);
        let compacted: Vec<&str> = specs.iter().filter(|s| s.compacted).map(|s| s.name.as_str()).collect();
        assert_eq!(compacted, ["_schemas"]);
        assert_eq!(get(OPTION_CHAIN), 6);
        assert_eq!(get(ENRICHED_CHAIN), 6);
        assert_eq!(get("dlq.market.option_chain"), 1);
        assert_eq!(get("dlq.enriched.option_chain"), 1);
    }
}
