//! The chainflow data contract: the Avro schemas (`contract/avro`) and the Rust types that
//! match them, Kafka keys and idempotency ids, topic names and headers, the JSON form of
//! records, compatibility levels and checks, and the ClickHouse tables (`contract/clickhouse`).
//!
//! Downstream teams depend on what is here (docs/topics.md): change a schema only in ways
//! its subject's level allows ([`schemas`]: FULL, so only optional fields with defaults
//! come or go; `chainflow schemas check` enforces it), and keep keys and topic names stable. This crate does
//! no I/O; the wire-format codec is `chainflow-codec`.

pub mod clickhouse;
pub mod compat;
pub mod enriched;
pub mod fields;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod json;
pub mod keys;
pub mod market;
pub mod record;
pub mod schemas;
pub mod streams;
pub mod terms;
pub mod topics;

pub use enriched::{EnrichedOption, EnrichedOptionChain, EnrichedStrike, PriceSource};
pub use fields::{ChainMetrics, OptionAnalytics};
pub use json::{JsonError, JsonForm};
pub use market::{OptionChain, OptionQuote, OptionType, Quote, StrikeQuotes, UnderlyingTick};
pub use record::Record;
pub use terms::{year_fraction, ProductTerms, YEAR_SECONDS};
