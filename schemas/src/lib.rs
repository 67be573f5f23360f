//! The chainflow data contract: Avro schemas (`schemas/avro`), the Rust types that match
//! them, the Confluent wire-format codec, topic names and key functions.
//!
//! Downstream teams depend on what is here: change a schema only in BACKWARD-compatible
//! ways (add fields with defaults), and keep keys and topic names stable.

pub mod clickhouse;
pub mod codec;
pub mod enriched;
pub mod json;
pub mod keys;
pub mod market;
pub mod topics;

pub use codec::{Codec, CodecError, Record};
pub use enriched::{EnrichedOption, EnrichedOptionChain, EnrichedStrike, PriceSource};
pub use json::{JsonError, JsonForm};
pub use market::{OptionChain, OptionQuote, OptionType, Quote, StrikeQuotes, UnderlyingTick};
