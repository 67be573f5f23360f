//! ClickHouse rows of an enriched chain: one `chain_snapshots` row and one `chain_options`
//! row per option. Field order is the insert's column list.

use chainflow_contract::keys::option_symbol;
use chainflow_contract::{EnrichedOption, EnrichedOptionChain, OptionType, PriceSource};
use serde::Serialize;

/// A row of `chain_snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct SnapshotRow {
    /// Product name, e.g. `NIFTY`.
    pub product: String,
    /// Days since 1970-01-01 (ClickHouse `Date`).
    pub expiry: u16,
    /// Event time, µs since the Unix epoch (UTC); a DateTime `event_time` is derived from it.
    pub event_time_us: i64,
    /// Sequence number of the raw snapshot.
    pub seq: i64,
    /// Contract multiplier.
    pub lot_size: i32,
    /// Underlying price at `event_time`.
    pub spot: f64,
    /// Number of strikes in the snapshot.
    pub strike_count: u16,
    /// Σ put OI / Σ call OI.
    pub pcr_oi: Option<f64>,
    /// Σ put volume / Σ call volume.
    pub pcr_volume: Option<f64>,
    /// Strike nearest to spot (tie → lower).
    pub atm_strike: f64,
    /// Call + put price at the ATM strike.
    pub atm_straddle_price: Option<f64>,
    /// Strike minimising option writers' payout.
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
    pub atm_iv: Option<f64>,
    /// σ(25Δ put) − σ(25Δ call).
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
    /// When the processor produced the record, µs since the epoch.
    pub processed_at_us: i64,
    /// ReplacingMergeTree version: the processing time, so a chain processed again replaces the older row.
    pub version: u64,
}

/// A row of `chain_options`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct OptionRow {
    /// Product name, e.g. `NIFTY`.
    pub product: String,
    /// Expiry date, days since 1970-01-01.
    pub expiry: u16,
    /// Event time, µs since the Unix epoch (UTC); a DateTime `event_time` is derived from it.
    pub event_time_us: i64,
    /// Strike price.
    pub strike: f64,
    /// Enum8: CALL = 1, PUT = 2.
    pub option_type: i8,
    /// Option symbol, e.g. `NIFTY20250130C21500`.
    pub symbol: String,
    /// Underlying price at `event_time`.
    pub spot: f64,
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
    pub feed_iv: Option<f64>,
    /// Price the analytics used.
    pub price: Option<f64>,
    /// Enum8: MID = 1, LAST = 2, NONE = 3.
    pub price_source: i8,
    /// Black–Scholes–Merton implied volatility.
    pub iv: Option<f64>,
    /// ∂V/∂S.
    pub delta: Option<f64>,
    /// ∂²V/∂S², per 1 point of the underlying.
    pub gamma: Option<f64>,
    /// −∂V/∂T per calendar day.
    pub theta: Option<f64>,
    /// ∂V/∂σ per vol point.
    pub vega: Option<f64>,
    /// ∂V/∂r per 1% of rate.
    pub rho: Option<f64>,
    /// ReplacingMergeTree version: the processing time, so a chain processed again replaces the older row.
    pub version: u64,
}

/// Enum8 code of an option type.
pub fn option_type_code(t: OptionType) -> i8 {
    match t {
        OptionType::Call => 1,
        OptionType::Put => 2,
    }
}

fn price_source_code(s: PriceSource) -> i8 {
    match s {
        PriceSource::Mid => 1,
        PriceSource::Last => 2,
        PriceSource::None => 3,
    }
}

/// ClickHouse `Date` (days since the epoch) of an Avro date, clamped to its range.
fn date(days: i32) -> u16 {
    days.clamp(0, i32::from(u16::MAX)) as u16
}

/// The snapshot row of `c`. The version is the processing time: a chain processed again
/// replaces the earlier row.
pub fn snapshot_row(c: &EnrichedOptionChain) -> SnapshotRow {
    SnapshotRow {
        product: c.product.clone(),
        expiry: date(c.expiry),
        event_time_us: c.event_time,
        seq: c.seq,
        lot_size: c.lot_size,
        spot: c.spot,
        strike_count: c.strikes.len().min(u16::MAX as usize) as u16,
        pcr_oi: c.pcr_oi,
        pcr_volume: c.pcr_volume,
        atm_strike: c.atm_strike,
        atm_straddle_price: c.atm_straddle_price,
        max_pain_strike: c.max_pain_strike,
        total_call_oi: c.total_call_oi,
        total_put_oi: c.total_put_oi,
        call_oi_otm: c.call_oi_otm,
        put_oi_otm: c.put_oi_otm,
        call_buildup_otm: c.call_buildup_otm,
        put_buildup_otm: c.put_buildup_otm,
        atm_iv: c.atm_iv,
        iv_skew_25d: c.iv_skew_25d,
        rate: c.rate,
        dividend_yield: c.dividend_yield,
        time_to_expiry: c.time_to_expiry,
        analytics_version: c.analytics_version.clone(),
        source_topic: c.source_topic.clone(),
        source_partition: c.source_partition,
        source_offset: c.source_offset,
        processed_at_us: c.processed_at,
        version: c.processed_at.max(0) as u64,
    }
}

/// Appends the option rows of `c` (calls and puts, by strike) to `out`.
pub fn option_rows(c: &EnrichedOptionChain, out: &mut Vec<OptionRow>) {
    let version = c.processed_at.max(0) as u64;
    for s in &c.strikes {
        for (kind, o) in [(OptionType::Call, &s.call), (OptionType::Put, &s.put)] {
            out.push(option_row(c, s.strike, kind, o, version));
        }
    }
}

fn option_row(c: &EnrichedOptionChain, strike: f64, kind: OptionType, o: &EnrichedOption, version: u64) -> OptionRow {
    OptionRow {
        product: c.product.clone(),
        expiry: date(c.expiry),
        event_time_us: c.event_time,
        strike,
        option_type: option_type_code(kind),
        symbol: option_symbol(&c.product, c.expiry, strike, kind),
        spot: c.spot,
        bid: o.bid,
        ask: o.ask,
        last: o.last,
        volume: o.volume,
        oi: o.oi,
        oi_change: o.oi_change,
        feed_iv: o.feed_iv,
        price: o.price,
        price_source: price_source_code(o.price_source),
        iv: o.iv,
        delta: o.delta,
        gamma: o.gamma,
        theta: o.theta,
        vega: o.vega,
        rho: o.rho,
        version,
    }
}
