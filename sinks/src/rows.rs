//! ClickHouse rows of an enriched chain: one `chain_snapshots` row and one `chain_options`
//! row per option. Field order is the insert's column list.

use chainflow_schemas::keys::option_symbol;
use chainflow_schemas::{EnrichedOption, EnrichedOptionChain, OptionType, PriceSource};
use serde::Serialize;

/// A row of `chain_snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct SnapshotRow {
    pub product: String,
    /// Days since 1970-01-01 (ClickHouse `Date`).
    pub expiry: u16,
    pub event_time_us: i64,
    pub seq: i64,
    pub lot_size: i32,
    pub spot: f64,
    pub strike_count: u16,
    pub pcr_oi: Option<f64>,
    pub pcr_volume: Option<f64>,
    pub atm_strike: f64,
    pub atm_straddle_price: Option<f64>,
    pub max_pain_strike: Option<f64>,
    pub total_call_oi: i64,
    pub total_put_oi: i64,
    pub call_oi_otm: i64,
    pub put_oi_otm: i64,
    pub call_buildup_otm: i64,
    pub put_buildup_otm: i64,
    pub atm_iv: Option<f64>,
    pub iv_skew_25d: Option<f64>,
    pub rate: f64,
    pub dividend_yield: f64,
    pub time_to_expiry: f64,
    pub analytics_version: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub processed_at_us: i64,
    pub version: u64,
}

/// A row of `chain_options`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct OptionRow {
    pub product: String,
    pub expiry: u16,
    pub event_time_us: i64,
    pub strike: f64,
    /// Enum8: CALL = 1, PUT = 2.
    pub option_type: i8,
    pub symbol: String,
    pub spot: f64,
    pub bid: f64,
    pub ask: f64,
    pub last: f64,
    pub volume: i64,
    pub oi: i64,
    pub oi_change: i64,
    pub feed_iv: Option<f64>,
    pub price: Option<f64>,
    /// Enum8: MID = 1, LAST = 2, NONE = 3.
    pub price_source: i8,
    pub iv: Option<f64>,
    pub delta: Option<f64>,
    pub gamma: Option<f64>,
    pub theta: Option<f64>,
    pub vega: Option<f64>,
    pub rho: Option<f64>,
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
    days.clamp(0, u16::MAX as i32) as u16
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
