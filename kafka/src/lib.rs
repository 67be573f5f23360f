//! Kafka plumbing shared by the stages: client settings built from the configuration, the
//! blocking librdkafka calls moved off the async workers, topic provisioning, dead-letter
//! records, consumer helpers, ranges of a topic read without a group (the tools), and the
//! trace context in Kafka headers.

pub mod admin;
pub mod blocking;
pub mod client;
pub mod consumer;
pub mod dlq;
pub mod headers;
pub mod hold;
pub mod paused;
pub mod range;
pub mod trace;

pub use admin::{ensure_topics, topic_config, TopicOutcome};
pub use client::{consumer_config, producer_config, transactional_producer_config, Isolation};
pub use consumer::partitions;
pub use dlq::DeadLetter;
pub use headers::{copied, header};
pub use hold::Holds;
pub use paused::OFFSETS_TIMEOUT;
pub use range::{Bound, RangeReader, Span};
