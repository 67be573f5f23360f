//! Option analytics for one chain snapshot, as defined in DESIGN.md §3.

pub mod bsm;
mod metrics;
mod price;
mod validate;

pub use metrics::{chain_metrics, ChainMetrics};
pub use price::{select_price, PriceChoice};
pub use validate::{validate, InvalidChain};

use chainflow_config::ProductSpec;
use chainflow_schemas::{EnrichedOption, EnrichedStrike, OptionChain, Quote};

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
pub fn analyze(chain: &OptionChain) -> ChainAnalytics {
    let strikes: Vec<EnrichedStrike> = chain
        .strikes
        .iter()
        .map(|s| EnrichedStrike {
            strike: s.strike,
            call: option(&s.call),
            put: option(&s.put),
        })
        .collect();
    let metrics = chain_metrics(chain.spot, &strikes);
    ChainAnalytics { strikes, metrics }
}

fn option(q: &Quote) -> EnrichedOption {
    let choice = select_price(q);
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
        iv: None,
        delta: None,
        gamma: None,
        theta: None,
        vega: None,
        rho: None,
    }
}
