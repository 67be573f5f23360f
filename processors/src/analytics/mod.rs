//! Option analytics for one chain snapshot, as defined in DESIGN.md §3.

pub mod bsm;
pub mod iv;
mod metrics;
mod price;
mod validate;

pub use metrics::{chain_metrics, ChainMetrics};
pub use price::{select_price, PriceChoice};
pub use validate::{validate, InvalidChain};

use chainflow_config::ProductSpec;
use chainflow_schemas::{EnrichedOption, EnrichedStrike, OptionChain, OptionType, Quote};

/// Version of these definitions, recorded on every enriched chain.
pub const ANALYTICS_VERSION: &str = "1";

/// Seconds in the 365-day year T is measured in.
const YEAR_SECONDS: f64 = 365.0 * 86_400.0;

/// Valuation inputs shared by every option of one chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainParams {
    /// Risk-free rate, continuously compounded.
    pub rate: f64,
    /// Dividend yield, continuously compounded.
    pub dividend_yield: f64,
    /// Time to expiry in years; ≤ 0 once the option has expired.
    pub time_to_expiry: f64,
}

impl ChainParams {
    /// The product's rate and yield, and T from the expiry close to `event_time` (never the
    /// wall clock, so replays give the same answer).
    pub fn for_chain(product: &ProductSpec, chain: &OptionChain) -> Self {
        let expiry = chainflow_schemas::keys::date_from_days(chain.expiry);
        let seconds = (product.expiry_instant_us(expiry) - chain.event_time) as f64 / 1e6;
        Self {
            rate: product.params.rate,
            dividend_yield: product.params.dividend_yield,
            time_to_expiry: seconds / YEAR_SECONDS,
        }
    }
}

/// A chain's per-option analytics and its chain metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainAnalytics {
    /// Strikes with enriched calls and puts, in the snapshot's order.
    pub strikes: Vec<EnrichedStrike>,
    /// Chain-level metrics.
    pub metrics: ChainMetrics,
}

/// Enriches a validated chain.
pub fn analyze(chain: &OptionChain, params: &ChainParams) -> ChainAnalytics {
    let inputs = |kind, strike| iv::OptionInputs {
        kind,
        spot: chain.spot,
        strike,
        t: params.time_to_expiry,
        rate: params.rate,
        dividend_yield: params.dividend_yield,
    };
    let strikes: Vec<EnrichedStrike> = chain
        .strikes
        .iter()
        .map(|s| EnrichedStrike {
            strike: s.strike,
            call: option(&s.call, &inputs(OptionType::Call, s.strike)),
            put: option(&s.put, &inputs(OptionType::Put, s.strike)),
        })
        .collect();
    let metrics = chain_metrics(chain.spot, &strikes);
    ChainAnalytics { strikes, metrics }
}

/// One option's price choice, implied volatility and Greeks (all null without a price or
/// outside the no-arbitrage bounds).
fn option(q: &Quote, inputs: &iv::OptionInputs) -> EnrichedOption {
    let choice = select_price(q);
    let vol = choice.price.and_then(|p| iv::implied_vol(inputs, p));
    let g = vol.map(|v| iv::greeks(inputs, v));
    EnrichedOption {
        bid: q.bid,
        ask: q.ask,
        last: q.last,
        volume: q.volume,
        oi: q.oi,
        oi_change: q.oi_change,
        feed_iv: q.iv,
        price: choice.price,
        price_source: choice.source,
        iv: vol,
        delta: g.map(|g| g.delta),
        gamma: g.map(|g| g.gamma),
        theta: g.map(|g| g.theta),
        vega: g.map(|g| g.vega),
        rho: g.map(|g| g.rho),
    }
}
