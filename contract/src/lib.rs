//! The chainflow data contract: the Avro schemas (`contract/avro`) and the Rust types that
//! match them, Kafka keys and idempotency ids, topic names and headers, the JSON form of
//! records, and the ClickHouse tables (`contract/clickhouse`).
//!
//! Downstream teams depend on what is here: change a schema only in BACKWARD-compatible
//! ways (add fields with defaults), and keep keys and topic names stable. This crate does
//! no I/O; the wire-format codec is `chainflow-codec`.

pub mod clickhouse;
pub mod enriched;
pub mod json;
pub mod keys;
pub mod market;
pub mod record;
pub mod topics;

pub use enriched::{EnrichedOption, EnrichedOptionChain, EnrichedStrike, PriceSource};
pub use json::{JsonError, JsonForm};
pub use market::{OptionChain, OptionQuote, OptionType, Quote, StrikeQuotes, UnderlyingTick};
pub use record::Record;
