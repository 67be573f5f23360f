//! librdkafka client settings: the configured bootstrap servers and pass-through
//! properties, plus the settings each role needs for its delivery guarantee (README, "Delivery").

use chainflow_config::{is_secret_property, GroupProtocol, KafkaConfig};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;
use std::time::Duration;

/// How long a request may go unanswered before librdkafka gives up on it and on its
/// connection (`socket.timeout.ms`, 60 s by default; the Java clients' `request.timeout.ms`
/// is 30 s). A frozen broker (a long GC pause, a VM stopped) keeps its connections open, so
/// a request sent to it is abandoned only at this timeout; at 60 s, the producer's records
/// in flight to a frozen leader reached `message.timeout.ms` (also 60 s) at the same moment
/// and the feed exited, although the other nodes had taken over the partitions 9 s in
/// (`chaos` `broker-sigstop-60s`). At 30 s they are sent again to the new leader in time.
pub(crate) const SOCKET_TIMEOUT_MS: (&str, &str) = ("socket.timeout.ms", "30000");

/// Base settings shared by every client; user properties win over chainflow's defaults.
/// librdkafka's warnings and errors are logged; its debug lines too when the `debug`
/// property asks for some (`kafka.properties.debug = "cgrp,fetch"`: without the level they
/// would be dropped).
pub(crate) fn base(kafka: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers);
    c.set_log_level(if kafka.properties.get("debug").is_some() {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    });
    c.set(SOCKET_TIMEOUT_MS.0, SOCKET_TIMEOUT_MS.1);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in kafka.properties.iter() {
        c.set(k, v);
    }
    tracing::debug!(settings = %describe(&c), "kafka client settings");
    c
}

/// The settings as `key=value` pairs with credentials masked, for logs.
pub fn describe(c: &ClientConfig) -> String {
    let mut pairs: Vec<String> = c
        .config_map()
        .iter()
        .map(|(k, v)| {
            if is_secret_property(k) {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    pairs.sort();
    pairs.join(" ")
}

/// An idempotent producer (acks=all) that places keys as Java clients do (`murmur2_random`).
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    base(
        kafka,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("partitioner", "murmur2_random"),
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
            ("message.timeout.ms", "60000"),
        ],
    )
}

/// A transactional producer for consume-transform-produce (exactly-once), whose open
/// transaction the broker aborts after `timeout` (`transaction.timeout.ms`). librdkafka
/// refuses a `message.timeout.ms` or a `socket.timeout.ms` above it, so those are lowered to
/// it where they are higher: a record not delivered by then, or a request not answered,
/// belongs to a transaction that has failed anyway.
pub fn transactional_producer_config(kafka: &KafkaConfig, transactional_id: &str, timeout: Duration) -> ClientConfig {
    let mut c = producer_config(kafka);
    let limit = timeout.as_millis();
    let timeout = limit.to_string();
    for setting in ["message.timeout.ms", SOCKET_TIMEOUT_MS.0] {
        let value = c.get(setting).and_then(|v| v.parse::<u128>().ok());
        if value.is_none_or(|v| v > limit) {
            c.set(setting, &timeout);
        }
    }
    c.set("transactional.id", transactional_id);
    c.set("transaction.timeout.ms", &timeout);
    c
}

/// How long librdkafka postpones the next fetch of a partition once its local queue is
/// full (`fetch.queue.backoff.ms`, 1000 by default). A consumer drains a full queue in a
/// fraction of a second, then waited out the rest of that second with nothing to read: the
/// sink's 16 MB queue of enriched chains (about 2,500 records) halved its throughput
/// (docs/benchmarks.md, "Where the time goes").
pub(crate) const FETCH_QUEUE_BACKOFF_MS: (&str, &str) = ("fetch.queue.backoff.ms", "10");

/// How long a fetch waits for records at most (`fetch.wait.max.ms`, 500 by default).
/// Kafka answers a waiting fetch as soon as records arrive; nisshi answers it only when its
/// time is up, so a record that arrived meanwhile waited up to half a second at each hop
/// (feed → enrich → live view: produce → browser p50 176 ms, p99 266 ms at 200 chains/s;
/// with 100 ms, docs/benchmarks.md "Live view"). An idle consumer asks ten times a second.
pub(crate) const FETCH_WAIT_MAX_MS: (&str, &str) = ("fetch.wait.max.ms", "100");

/// A group consumer that commits explicitly and reads only committed transactions, in the
/// group protocol `kafka.group_protocol` names. The classic protocol gets chainflow's
/// session, heartbeat and assignment settings; the `consumer` protocol (KIP-848) must get
/// none of them (the broker owns them, and librdkafka refuses a consumer that sets them).
pub fn consumer_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut defaults = vec![
        FETCH_QUEUE_BACKOFF_MS,
        FETCH_WAIT_MAX_MS,
        ("group.id", group_id),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", Isolation::ReadCommitted.level()),
    ];
    match kafka.group_protocol {
        GroupProtocol::Classic => defaults.extend_from_slice(&[
            ("group.protocol", "classic"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "1000"),
            ("partition.assignment.strategy", "range"),
        ]),
        GroupProtocol::Consumer => defaults.push(("group.protocol", "consumer")),
    }
    // kafka.properties cannot set a classic-only property with the consumer protocol: the
    // configuration refuses it (chainflow_config::CLASSIC_GROUP_ONLY)
    base(kafka, &defaults)
}

/// Which records of a transactional topic a consumer reads (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Records of committed transactions and records written without one, never those of
    /// open or aborted transactions: what every chainflow consumer reads by default.
    #[default]
    ReadCommitted,
    /// Every record, those of open and aborted transactions included (`chainflow tail
    /// --read-uncommitted`: what a transaction in progress has written so far).
    ReadUncommitted,
}

impl Isolation {
    /// The `isolation.level` value.
    pub fn level(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.level())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_config::CLASSIC_GROUP_ONLY;

    #[test]
    fn pass_through_properties_win_and_secrets_are_masked() {
        let mut kafka = KafkaConfig::default();
        kafka.properties.insert("acks", "all");
        kafka.properties.insert("sasl.password", "hunter2");
        kafka.properties.insert("linger.ms", "50");
        let c = producer_config(&kafka);
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("sasl.password"), Some("hunter2"));
        let text = describe(&c);
        assert!(
            text.contains("sasl.password=***") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn consumers_read_committed_and_commit_explicitly() {
        let c = consumer_config(&KafkaConfig::default(), "g");
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(
            c.get("fetch.queue.backoff.ms"),
            Some("10"),
            "a full queue must not stop reading for a second"
        );
        assert_eq!(
            c.get("fetch.wait.max.ms"),
            Some("100"),
            "a broker that answers a fetch only at its deadline must not hold records for half a second"
        );
    }

    #[test]
    fn a_transactional_producer_delivers_within_its_transaction_timeout() {
        let mut kafka = KafkaConfig::default();
        let c = transactional_producer_config(&kafka, "t", Duration::from_secs(10));
        assert_eq!(c.get("transaction.timeout.ms"), Some("10000"));
        assert_eq!(c.get("message.timeout.ms"), Some("10000"), "60 s by default, lowered");
        assert_eq!(c.get("socket.timeout.ms"), Some("10000"), "30 s by default, lowered");
        kafka.properties.insert("message.timeout.ms", "5000");
        let c = transactional_producer_config(&kafka, "t", Duration::from_secs(10));
        assert_eq!(c.get("message.timeout.ms"), Some("5000"), "a lower one is kept");
    }

    #[test]
    fn a_request_to_a_frozen_broker_is_given_up_well_within_the_delivery_timeout() {
        let c = producer_config(&KafkaConfig::default());
        let socket: u64 = c.get("socket.timeout.ms").unwrap().parse().unwrap();
        let delivery: u64 = c.get("message.timeout.ms").unwrap().parse().unwrap();
        assert!(2 * socket <= delivery, "socket {socket} ms, delivery {delivery} ms");
        let consumer = consumer_config(&KafkaConfig::default(), "g");
        assert_eq!(consumer.get("socket.timeout.ms"), Some("30000"));
    }

    #[test]
    fn the_consumer_protocol_sends_no_classic_only_property() {
        let mut kafka = KafkaConfig::default();
        let classic = consumer_config(&kafka, "g");
        assert_eq!(classic.get("group.protocol"), Some("classic"));
        for p in CLASSIC_GROUP_ONLY {
            assert!(classic.get(p).is_some(), "classic sets {p}");
        }
        kafka.group_protocol = GroupProtocol::Consumer;
        let consumer = consumer_config(&kafka, "g");
        assert_eq!(consumer.get("group.protocol"), Some("consumer"));
        for p in CLASSIC_GROUP_ONLY {
            assert_eq!(consumer.get(p), None, "{p} is classic-only");
        }
        assert_eq!(consumer.get("isolation.level"), Some("read_committed"));
    }
}
