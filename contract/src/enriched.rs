//! Enriched option chains produced by `chainflow enrich`.

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

/// One option with its quote and analytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedOption {
    /// Best bid (0 = none).
    pub bid: f64,
    /// Best offer (0 = none).
    pub ask: f64,
    /// Last traded price (0 = none).
    pub last: f64,
    /// Cumulative day volume, contracts.
    pub volume: i64,
    /// Open interest, contracts.
    pub oi: i64,
    /// Change in open interest since the previous close.
    pub oi_change: i64,
    /// Implied volatility published by the feed.
    #[serde(default)]
    pub feed_iv: Option<f64>,
    /// Price the analytics used.
    #[serde(default)]
    pub price: Option<f64>,
    /// Where `price` came from.
    pub price_source: PriceSource,
    /// Black–Scholes–Merton implied volatility.
    #[serde(default)]
    pub iv: Option<f64>,
    /// ∂V/∂S.
    #[serde(default)]
    pub delta: Option<f64>,
    /// ∂²V/∂S², per 1 point of the underlying.
    #[serde(default)]
    pub gamma: Option<f64>,
    /// −∂V/∂T per calendar day.
    #[serde(default)]
    pub theta: Option<f64>,
    /// ∂V/∂σ per vol point.
    #[serde(default)]
    pub vega: Option<f64>,
    /// ∂V/∂r per 1% of rate.
    #[serde(default)]
    pub rho: Option<f64>,
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
    /// Σ put OI / Σ call OI.
    #[serde(default)]
    pub pcr_oi: Option<f64>,
    /// Σ put volume / Σ call volume.
    #[serde(default)]
    pub pcr_volume: Option<f64>,
    /// Strike nearest to spot (tie → lower).
    pub atm_strike: f64,
    /// Call + put price at the ATM strike.
    #[serde(default)]
    pub atm_straddle_price: Option<f64>,
    /// Strike minimising option writers' payout.
    #[serde(default)]
    pub max_pain_strike: Option<f64>,
    /// Σ call OI.
    pub total_call_oi: i64,
    /// Σ put OI.
    pub total_put_oi: i64,
    /// Σ call OI over strikes above spot.
    pub call_oi_otm: i64,
    /// Σ put OI over strikes below spot.
    pub put_oi_otm: i64,
    /// Σ call OI change over strikes above spot.
    pub call_buildup_otm: i64,
    /// Σ put OI change over strikes below spot.
    pub put_buildup_otm: i64,
    /// IV at the forward, interpolated in strike.
    #[serde(default)]
    pub atm_iv: Option<f64>,
    /// σ(25Δ put) − σ(25Δ call).
    #[serde(default)]
    pub iv_skew_25d: Option<f64>,
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

impl EnrichedOptionChain {
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
