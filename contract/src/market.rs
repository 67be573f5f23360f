//! Raw market events produced by the feeds.

use crate::record::Record;
use crate::{keys, topics};
use serde::{Deserialize, Serialize};

/// `CALL` or `PUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OptionType {
    /// The right to buy.
    Call,
    /// The right to sell.
    Put,
}

/// One trade print of an underlying (`market.underlying`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnderlyingTick {
    /// Product name, e.g. `NIFTY`.
    pub product: String,
    /// Last traded price.
    pub price: f64,
    /// Cumulative day volume.
    pub volume: i64,
    /// Event time, µs since the Unix epoch (UTC).
    pub event_time: i64,
    /// Strictly increasing per key.
    pub seq: i64,
}

crate::option_quote!(crate::struct_with_fields [
    /// One option's quote (`market.option_quote`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OptionQuote {
        /// Exchange-style symbol, e.g. `NIFTY20250130C21500` ([`keys::option_symbol`]).
        pub symbol: String,
        /// Product name.
        pub product: String,
        /// Expiry date, days since 1970-01-01.
        pub expiry: i32,
        /// Strike price.
        pub strike: f64,
        /// Call or put.
        pub option_type: OptionType,
        // then the quote of crate::option_quote!
    } {
        /// Implied volatility published by the feed.
        #[serde(default)]
        pub iv: Option<f64>,
        /// Event time, µs since the Unix epoch (UTC).
        pub event_time: i64,
        /// Strictly increasing per key.
        pub seq: i64,
    }
]);

crate::option_quote!(crate::struct_with_fields [
    /// The quote of one side (call or put) of one strike inside a chain snapshot.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Quote {
        // the quote of crate::option_quote!, then:
    } {
        /// Implied volatility published by the feed.
        #[serde(default)]
        pub iv: Option<f64>,
    }
]);

/// One strike of a chain with its call and put.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrikeQuotes {
    /// Strike price.
    pub strike: f64,
    /// The call at this strike.
    pub call: Quote,
    /// The put at this strike.
    pub put: Quote,
}

/// A snapshot of one product's options for one expiry (`market.option_chain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionChain {
    /// Product name.
    pub product: String,
    /// Expiry date, days since 1970-01-01 (the exchange's calendar date).
    pub expiry: i32,
    /// Contract multiplier.
    pub lot_size: i32,
    /// Underlying price at `event_time`.
    pub spot: f64,
    /// Event time, µs since the Unix epoch (UTC).
    pub event_time: i64,
    /// Strictly increasing per key.
    pub seq: i64,
    /// Strikes, sorted and unique.
    pub strikes: Vec<StrikeQuotes>,
}

impl OptionChain {
    /// Number of options (two per strike).
    pub fn option_count(&self) -> usize {
        self.strikes.len() * 2
    }
}

impl Record for UnderlyingTick {
    const TOPIC: &'static str = topics::UNDERLYING;
    const SCHEMA: &'static str = include_str!("../avro/underlying_tick.avsc");
    const NAME: &'static str = "io.chainflow.market.UnderlyingTick";
    fn key(&self) -> String {
        self.product.clone()
    }
}

impl Record for OptionQuote {
    const TOPIC: &'static str = topics::OPTION_QUOTE;
    const SCHEMA: &'static str = include_str!("../avro/option_quote.avsc");
    const NAME: &'static str = "io.chainflow.market.OptionQuote";
    fn key(&self) -> String {
        self.symbol.clone()
    }
}

impl Record for OptionChain {
    const TOPIC: &'static str = topics::OPTION_CHAIN;
    const SCHEMA: &'static str = include_str!("../avro/option_chain.avsc");
    const NAME: &'static str = "io.chainflow.market.OptionChain";
    fn key(&self) -> String {
        keys::chain_key(&self.product, self.expiry)
    }
}
