//! Shared Kafka plumbing: client settings built from the configuration, topic
//! provisioning, and dead-letter records.

pub mod admin;
pub mod client;
pub mod consumer;
pub mod dlq;
pub mod stats;

pub use admin::{ensure_topics, TopicOutcome};
pub use client::{consumer_config, producer_config, transactional_producer_config};
pub use dlq::DeadLetter;
pub use stats::StageStats;
