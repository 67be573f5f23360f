//! Enriched option chains produced by `chainflow enrich`.

use crate::fields::{ChainMetrics, OptionAnalytics};
use crate::record::Record;
use crate::{keys, topics};
use serde::{Deserialize, Serialize};

/// Which price the analytics of an option used (`docs/analytics.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PriceSource {
    /// (bid + ask) / 2, when 0 < bid ≤ ask.
    Mid,
    /// The last trade, when there is no usable mid.
    Last,
    /// No usable price: analytics are null.
    None,
}

crate::option_quote!(crate::then [crate::option_analytics, crate::struct_with_two_lists [
    /// One option with its quote and analytics.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct EnrichedOption {
        // the quote of crate::option_quote!, then:
    } {
        /// Implied volatility published by the feed.
        #[serde(default)]
        pub feed_iv: Option<f64>,
        /// Price the analytics used.
        #[serde(default)]
        pub price: Option<f64>,
        /// Where `price` came from.
        pub price_source: PriceSource,
        // then the analytics of crate::option_analytics!
    } {}
]]);

impl EnrichedOption {
    /// Its analytics.
    pub fn analytics(&self) -> OptionAnalytics {
        let o = self;
        crate::option_analytics!(crate::literal_with_fields [OptionAnalytics, o, {}])
    }
}

/// One strike with its enriched call and put.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedStrike {
    /// Strike price.
    pub strike: f64,
    /// The call.
    pub call: EnrichedOption,
    /// The put.
    pub put: EnrichedOption,
}

crate::chain_metrics!(crate::struct_with_fields [
    /// An option-chain snapshot with analytics, chain metrics and provenance.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct EnrichedOptionChain {
        /// Product name.
        pub product: String,
        /// Expiry date, days since 1970-01-01.
        pub expiry: i32,
        /// Contract multiplier.
        pub lot_size: i32,
        /// Underlying price at `event_time`.
        pub spot: f64,
        /// Event time, µs since the Unix epoch (UTC).
        pub event_time: i64,
        /// Sequence number of the raw snapshot.
        pub seq: i64,
        /// Strikes, sorted and unique.
        pub strikes: Vec<EnrichedStrike>,
        // then the metrics of crate::chain_metrics!
    } {
        /// Risk-free rate used.
        pub rate: f64,
        /// Dividend yield used.
        pub dividend_yield: f64,
        /// Time to expiry in years (365-day).
        pub time_to_expiry: f64,
        /// Version of the analytics code that produced this record.
        pub analytics_version: String,
        /// Topic of the raw snapshot.
        pub source_topic: String,
        /// Partition of the raw snapshot.
        pub source_partition: i32,
        /// Offset of the raw snapshot.
        pub source_offset: i64,
        /// When the processor produced this record, µs since the epoch.
        pub processed_at: i64,
    }
]);

impl EnrichedOptionChain {
    /// Its chain metrics.
    pub fn metrics(&self) -> ChainMetrics {
        let c = self;
        crate::chain_metrics!(crate::literal_with_fields [ChainMetrics, c, {}])
    }

    /// The idempotency id `product|expiry|event_time_µs` (header `chainflow.id`).
    pub fn id(&self) -> String {
        keys::chain_id(&self.product, self.expiry, self.event_time)
    }
}

impl Record for EnrichedOptionChain {
    const TOPIC: &'static str = topics::ENRICHED_CHAIN;
    const SCHEMA: &'static str = include_str!("../avro/enriched_option_chain.avsc");
    const NAME: &'static str = "io.chainflow.enriched.EnrichedOptionChain";
    fn key(&self) -> String {
        keys::chain_key(&self.product, self.expiry)
    }
}
