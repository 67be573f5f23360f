//! Feed producers: the option-chain generator and the loop that writes it to Kafka.

pub mod feed;
pub mod generator;

pub use feed::{Feed, FeedOptions, FeedSummary};
pub use generator::ChainGenerator;
