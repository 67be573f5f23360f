//! Stateless processors. [`analytics`] is pure (no I/O, no async) so it can be tested and
//! benchmarked on its own; [`enrich`] is the consumer group that applies it to Kafka.

pub mod analytics;
pub mod enrich;
