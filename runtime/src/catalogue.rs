//! Every metric chainflow exports: its name, type, labels, unit and meaning, and for
//! histograms the buckets that fit it. The recorder describes each one (`# HELP`) and
//! gives each histogram its own buckets; `docs/metrics.md` lists the same entries (a test
//! keeps the two equal).

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram(&'static [f64]),
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Its name; the unit is its suffix (`_seconds`, `_bytes`, `_total` for counts).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its labels, comma-separated.
    pub labels: &'static str,
    /// What it measures (the `# HELP` text).
    pub help: &'static str,
}

/// Seconds, from a millisecond to a minute: batches, flushes, requests.
const DURATION: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Seconds from a record's production to its storage: tens of milliseconds to minutes,
/// finest around the batching defaults (a second), so a p99 of 1.5 s can be told from 2.
const LATENCY: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Seconds from a record's production to a live viewer: milliseconds to seconds, finest
/// under the live view's target of 250 ms.
const LIVE: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Rows in a batch: one to half a million.
const ROWS: &[f64] = &[
    1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 50_000.0, 100_000.0, 500_000.0,
];
/// Bytes in a batch: a kilobyte to 64 MB.
const BYTES: &[f64] = &[1e3, 1e4, 1e5, 1e6, 4e6, 16e6, 64e6];

/// Every metric, by component.
pub const METRICS: &[Metric] = &[
    // every stage
    Metric {
        name: "chainflow_records_in_total",
        kind: Kind::Counter,
        labels: "stage, topic",
        help: "Records a stage read from a Kafka topic (the feed: generated for it).",
    },
    Metric {
        name: "chainflow_records_out_total",
        kind: Kind::Counter,
        labels: "stage, topic",
        help: "Records a stage finished: acknowledged by the broker on this topic (feed, enrich), or stored in ClickHouse from this topic (sink).",
    },
    Metric {
        name: "chainflow_dead_letters_total",
        kind: Kind::Counter,
        labels: "topic, kind, stage",
        help: "Records sent to a dead-letter topic, by source topic, reason and stage.",
    },
    Metric {
        name: "chainflow_unknown_schema_waits_total",
        kind: Kind::Counter,
        labels: "stage",
        help: "Records whose schema id the registry did not know yet, held for registry.unknown_id_grace_ms.",
    },
    // enrich
    Metric {
        name: "chainflow_enrich_records_total",
        kind: Kind::Counter,
        labels: "outcome",
        help: "Raw chains enrich finished, by outcome (enriched, dead_letter).",
    },
    Metric {
        name: "chainflow_enrich_batch_seconds",
        kind: Kind::Histogram(DURATION),
        labels: "",
        help: "Time to enrich, produce and commit one batch, seconds.",
    },
    Metric {
        name: "chainflow_enrich_retries_total",
        kind: Kind::Counter,
        labels: "",
        help: "Transient failures enrich retried (registry, Kafka read, commit, produce).",
    },
    Metric {
        name: "chainflow_enrich_registry_waits_total",
        kind: Kind::Counter,
        labels: "",
        help: "Times enrich paused its partitions because the Schema Registry could not be reached.",
    },
    Metric {
        name: "chainflow_enrich_aborted_batches_total",
        kind: Kind::Counter,
        labels: "",
        help: "Batches enrich undid after a failure (a refused record, a failed commit) and read again from the committed offsets.",
    },
    Metric {
        name: "chainflow_enrich_transactions_total",
        kind: Kind::Counter,
        labels: "outcome",
        help: "Transactions enrich ended, by outcome (committed, aborted); enrich.transactions only.",
    },
    Metric {
        name: "chainflow_enrich_transaction_retries_total",
        kind: Kind::Counter,
        labels: "call",
        help: "Transactional calls enrich called again because they did not complete (a timeout leaves them in progress in librdkafka).",
    },
    Metric {
        name: "chainflow_enrich_fenced_total",
        kind: Kind::Counter,
        labels: "by",
        help: "Transactions refused because enrich was fenced: by a newer instance with its transactional id (instance), or by its group's newer generation (group).",
    },
    Metric {
        name: "chainflow_enrich_rebalances_total",
        kind: Kind::Counter,
        labels: "change",
        help: "Rebalances of enrich's consumer, by change (assigned, revoked): after the first assignment, each revocation is a member joining or leaving, or this one re-joining after it was dropped from its group.",
    },
    Metric {
        name: "chainflow_iv_solves_total",
        kind: Kind::Counter,
        labels: "outcome",
        help: "Implied volatilities enrich tried to solve for options with a price, by outcome (solved, failed: outside the no-arbitrage bounds or expired).",
    },
    Metric {
        name: "chainflow_last_chain_timestamp_seconds",
        kind: Kind::Gauge,
        labels: "product",
        help: "Wall-clock time enrich last enriched a chain of the product, seconds since the epoch.",
    },
    // sink
    Metric {
        name: "chainflow_sink_records_total",
        kind: Kind::Counter,
        labels: "stream, outcome",
        help: "Records a sink stream finished, by outcome (stored, dead_letter, skipped).",
    },
    Metric {
        name: "chainflow_sink_rows_total",
        kind: Kind::Counter,
        labels: "stream",
        help: "ClickHouse rows a sink stream inserted.",
    },
    Metric {
        name: "chainflow_sink_batch_rows",
        kind: Kind::Histogram(ROWS),
        labels: "stream",
        help: "Rows per batch a sink stream wrote.",
    },
    Metric {
        name: "chainflow_sink_batch_bytes",
        kind: Kind::Histogram(BYTES),
        labels: "stream",
        help: "Bytes read from Kafka per batch a sink stream wrote.",
    },
    Metric {
        name: "chainflow_sink_flush_seconds",
        kind: Kind::Histogram(DURATION),
        labels: "stream",
        help: "Time to record, insert and acknowledge one batch, seconds.",
    },
    Metric {
        name: "chainflow_pipeline_latency_seconds",
        kind: Kind::Histogram(LATENCY),
        labels: "stream",
        help: "Seconds from a record's production by the feed (header chainflow.produced_at_us) to ClickHouse's acknowledgement of its rows.",
    },
    Metric {
        name: "chainflow_event_time_lag_seconds",
        kind: Kind::Gauge,
        labels: "stream",
        help: "Wall clock minus the event time of the last record stored, seconds: meaningful for live feeds only (simulated and recorded feeds have their own clocks).",
    },
    Metric {
        name: "chainflow_sink_consumer_lag",
        kind: Kind::Gauge,
        labels: "stream, topic, partition",
        help: "Records between a sink stream's position and the partition's end.",
    },
    Metric {
        name: "chainflow_sink_paused_partitions",
        kind: Kind::Gauge,
        labels: "stream",
        help: "Partitions a sink stream holds paused while it retries a transient failure.",
    },
    Metric {
        name: "chainflow_sink_stalls_total",
        kind: Kind::Counter,
        labels: "stream",
        help: "Stalls detected (lag without progress for sink.stall_after_ms), each healed by re-joining the group.",
    },
    Metric {
        name: "chainflow_sink_rebalances_total",
        kind: Kind::Counter,
        labels: "stream, change",
        help: "Rebalances of a sink stream's consumer, by change (assigned, revoked): after the first assignment, each revocation is a member joining or leaving, or this one re-joining after it was dropped from its group (a stall healed, max.poll.interval.ms exceeded).",
    },
    Metric {
        name: "chainflow_sink_retries_total",
        kind: Kind::Counter,
        labels: "stream",
        help: "Transient failures a sink stream retried (ClickHouse, registry, dead-letter producer).",
    },
    Metric {
        name: "chainflow_sink_memory_splits_total",
        kind: Kind::Counter,
        labels: "stream",
        help: "Inserts halved after ClickHouse's memory limit (code 241) failed them twice.",
    },
    Metric {
        name: "chainflow_sink_kafka_errors_total",
        kind: Kind::Counter,
        labels: "stream, operation",
        help: "Errors reading from Kafka, retried.",
    },
    Metric {
        name: "chainflow_sink_commit_errors_total",
        kind: Kind::Counter,
        labels: "",
        help: "Offset commits that failed, retried after the next batch.",
    },
    Metric {
        name: "chainflow_sequence_gaps_total",
        kind: Kind::Counter,
        labels: "topic",
        help: "Records whose seq skipped ahead of the key's previous one (the key is in the log line).",
    },
    // registry
    Metric {
        name: "chainflow_registry_requests_total",
        kind: Kind::Counter,
        labels: "method, status",
        help: "Requests the Schema Registry answered, by HTTP method and status.",
    },
    Metric {
        name: "chainflow_registry_claims_lost_total",
        kind: Kind::Counter,
        labels: "",
        help: "Id claims another registry instance won first, retried.",
    },
    Metric {
        name: "chainflow_registry_refused_records_total",
        kind: Kind::Counter,
        labels: "",
        help: "Records of the registry's topic that were not understood, skipped.",
    },
    Metric {
        name: "chainflow_registry_lost_ids_detected_total",
        kind: Kind::Counter,
        labels: "",
        help: "Starts that found the topic below the highest id served (registry.state_dir): ids lost.",
    },
    Metric {
        name: "chainflow_registry_auth_failures_total",
        kind: Kind::Counter,
        labels: "",
        help: "Requests refused for missing or wrong credentials.",
    },
    // the live view
    Metric {
        name: "chainflow_live_clients",
        kind: Kind::Gauge,
        labels: "",
        help: "WebSocket clients connected to the live view.",
    },
    Metric {
        name: "chainflow_live_subscriptions",
        kind: Kind::Gauge,
        labels: "",
        help: "Channel subscriptions of the connected clients.",
    },
    Metric {
        name: "chainflow_live_channels",
        kind: Kind::Gauge,
        labels: "",
        help: "Channels the live view holds a state for.",
    },
    Metric {
        name: "chainflow_live_messages_total",
        kind: Kind::Counter,
        labels: "kind",
        help: "Messages sent to WebSocket clients, by kind (snapshot, update).",
    },
    Metric {
        name: "chainflow_live_conflated_total",
        kind: Kind::Counter,
        labels: "",
        help: "Updates a client never got because a newer state of the channel replaced them while it was slow (conflation).",
    },
    Metric {
        name: "chainflow_live_refused_total",
        kind: Kind::Counter,
        labels: "reason",
        help: "Connections, subscriptions and requests the live view refused, by reason (clients, subscriptions, channel, origin, token, slow).",
    },
    Metric {
        name: "chainflow_live_skipped_total",
        kind: Kind::Counter,
        labels: "topic, reason",
        help: "Records the live view read but could not show (undecodable), by topic and reason.",
    },
    Metric {
        name: "chainflow_live_query_errors_total",
        kind: Kind::Counter,
        labels: "query",
        help: "ClickHouse queries of the live view that failed (seed, candles, history).",
    },
    Metric {
        name: "chainflow_live_latency_seconds",
        kind: Kind::Histogram(LIVE),
        labels: "at",
        help: "Seconds from a record's production by the feed (header chainflow.produced_at_us) to its update being written to a client's socket (at=sent, the gateway's clock) or shown by the page (at=browser, reported by the page, its clock).",
    },
];

/// Describes every metric to the installed recorder (the `# HELP` lines).
pub fn describe() {
    for m in METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram(_) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_say_their_unit() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        for m in METRICS {
            assert!(m.name.starts_with("chainflow_"), "{}", m.name);
            if m.kind == Kind::Counter {
                assert!(m.name.ends_with("_total"), "a counter ends in _total: {}", m.name);
            }
            if let Kind::Histogram(b) = m.kind {
                assert!(b.windows(2).all(|w| w[0] < w[1]), "{}: buckets increase", m.name);
            }
            assert!(!m.help.is_empty());
        }
    }

    #[test]
    fn docs_metrics_md_lists_exactly_these() {
        let doc = include_str!("../../docs/metrics.md");
        let listed: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `chainflow_"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let mut documented: Vec<String> = listed.iter().map(|n| format!("chainflow_{n}")).collect();
        let mut ours: Vec<String> = METRICS.iter().map(|m| m.name.to_string()).collect();
        documented.sort();
        ours.sort();
        assert_eq!(documented, ours, "docs/metrics.md and METRICS differ");
    }
}
