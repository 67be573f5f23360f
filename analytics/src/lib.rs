//! Option analytics for one chain snapshot, as defined in `docs/analytics.md`: prices,
//! implied volatilities and Greeks per option, and the chain's metrics.
//!
//! Pure: no I/O, no async runtime, no clock (T comes from the event's own time), so the
//! same chain always gives the same answer and every function can be tested and benchmarked
//! on its own. The feed's simulator prices with [`bsm`]; the enrich stage applies
//! [`enrich_chain`] to every chain it reads.

pub mod bsm;
mod chain;
pub mod iv;
mod metrics;
pub mod normal;
mod options;
mod price;
mod validate;

pub use chain::{enrich_chain, Source};
pub use chainflow_contract::ChainMetrics;
pub use iv::{Greeks, Valuation};
pub use metrics::{atm_iv, chain_metrics, max_pain, skew_25d};
pub use options::enrich_options;
pub use price::{select_price, PriceChoice};
pub use validate::{validate, InvalidChain};

use chainflow_contract::{EnrichedStrike, OptionChain, ProductTerms};

/// Version of these definitions, recorded on every enriched chain.
pub const ANALYTICS_VERSION: &str = "2";

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
    pub fn for_chain(terms: &ProductTerms, chain: &OptionChain) -> Self {
        Self {
            rate: terms.rate,
            dividend_yield: terms.dividend_yield,
            time_to_expiry: terms.time_to_expiry(chain.expiry, chain.event_time),
        }
    }

    /// The valuation of a chain with spot `spot` under these parameters.
    pub fn valuation(&self, spot: f64) -> Valuation {
        Valuation::new(spot, self.time_to_expiry, self.rate, self.dividend_yield)
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

/// Enriches a validated chain: every option's price choice, implied volatility and Greeks,
/// and the chain metrics.
pub fn analyze(chain: &OptionChain, params: &ChainParams) -> ChainAnalytics {
    let valuation = params.valuation(chain.spot);
    let strikes = enrich_options(&valuation, &chain.strikes);
    let metrics = chain_metrics(chain.spot, valuation.forward(), &strikes);
    ChainAnalytics { strikes, metrics }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_contract::{OptionType, PriceSource, Quote, StrikeQuotes};

    const PARAMS: ChainParams = ChainParams {
        rate: 0.065,
        dividend_yield: 0.012,
        time_to_expiry: 7.0 / 365.0,
    };

    fn quote(bid: f64, ask: f64, last: f64, oi: i64) -> Quote {
        Quote {
            bid,
            ask,
            last,
            volume: 0,
            oi,
            oi_change: 0,
            iv: None,
        }
    }

    /// A fair quote from a flat 15% volatility, with a 0.1% spread.
    fn fair(kind: OptionType, spot: f64, k: f64, oi: i64) -> Quote {
        let p = bsm::price(
            kind,
            spot,
            k,
            PARAMS.time_to_expiry,
            PARAMS.rate,
            PARAMS.dividend_yield,
            0.15,
        );
        quote(p * 0.9995, p * 1.0005, p, oi)
    }

    fn chain(spot: f64, strikes: &[f64]) -> OptionChain {
        OptionChain {
            product: "NIFTY".into(),
            expiry: 20118,
            lot_size: 50,
            spot,
            event_time: 0,
            seq: 1,
            strikes: strikes
                .iter()
                .map(|&k| StrikeQuotes {
                    strike: k,
                    call: fair(OptionType::Call, spot, k, 100),
                    put: fair(OptionType::Put, spot, k, 100),
                })
                .collect(),
        }
    }

    fn strikes(from: f64, step: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| from + step * i as f64).collect()
    }

    #[test]
    fn a_flat_smile_gives_its_volatility_everywhere() {
        let c = chain(21_543.25, &strikes(21_000.0, 50.0, 21));
        let a = analyze(&c, &PARAMS);
        for s in &a.strikes {
            for o in [&s.call, &s.put] {
                assert_eq!(o.price_source, PriceSource::Mid);
                let iv = o.iv.unwrap_or_else(|| panic!("no IV at {}", s.strike));
                assert!((iv - 0.15).abs() < 1e-9, "{}: {iv}", s.strike);
            }
        }
        let atm = a.metrics.atm_iv.unwrap();
        assert!((atm - 0.15).abs() < 1e-9, "{atm}");
        assert!(a.metrics.iv_skew_25d.unwrap().abs() < 1e-9);
    }

    #[test]
    fn the_seed_worked_example() {
        // the worked example of docs/analytics.md: put OI 5,117,000 / call OI 5,000,000 → pcr_oi 1.0234;
        // spot 21,543.25 with 50-point strikes → ATM 21,550
        let mut c = chain(21_543.25, &strikes(21_450.0, 50.0, 5));
        for (i, s) in c.strikes.iter_mut().enumerate() {
            s.call.oi = 1_000_000;
            s.put.oi = if i == 0 { 1_117_000 } else { 1_000_000 };
        }
        let m = analyze(&c, &PARAMS).metrics;
        assert_eq!((m.total_call_oi, m.total_put_oi), (5_000_000, 5_117_000));
        assert!((m.pcr_oi.unwrap() - 1.0234).abs() < 1e-12);
        assert_eq!(m.atm_strike, 21_550.0);
    }

    #[test]
    fn missing_crossed_zero_and_bad_quotes_lose_only_their_option() {
        let spot = 21_543.25;
        let mut c = chain(spot, &strikes(21_400.0, 50.0, 7));
        c.strikes[0].call = quote(0.0, 0.0, 0.0, 10); // no quote at all
        c.strikes[1].call = quote(120.0, 110.0, 0.0, 10); // crossed, never traded
        c.strikes[2].put = quote(f64::NAN, f64::NAN, -1.0, 10); // garbage
        c.strikes[3].put.bid = 0.0; // zero bid: falls back to the last trade
        c.strikes[4].call = quote(1e9, 1e9 + 1.0, 0.0, 10); // above the no-arbitrage bound
        let a = analyze(&c, &PARAMS);
        let s = &a.strikes;
        assert_eq!(
            (s[0].call.price_source, s[0].call.price, s[0].call.iv),
            (PriceSource::None, None, None)
        );
        assert_eq!((s[1].call.price_source, s[1].call.iv), (PriceSource::None, None));
        assert_eq!(
            (s[2].put.price_source, s[2].put.iv, s[2].put.delta),
            (PriceSource::None, None, None)
        );
        assert_eq!(s[3].put.price_source, PriceSource::Last);
        assert!(s[3].put.iv.is_some());
        assert_eq!(s[4].call.price_source, PriceSource::Mid);
        assert_eq!((s[4].call.iv, s[4].call.gamma), (None, None));
        // everything else is enriched
        let solved = s
            .iter()
            .flat_map(|s| [&s.call, &s.put])
            .filter(|o| o.iv.is_some())
            .count();
        assert_eq!(solved, 14 - 4);
        assert_eq!(a.metrics.total_call_oi, 10 * 3 + 100 * 4);
    }

    #[test]
    fn one_strike_and_zero_open_interest() {
        let mut c = chain(100.0, &[100.0]);
        c.strikes[0].call.oi = 0;
        c.strikes[0].put.oi = 0;
        let a = analyze(&c, &PARAMS);
        let m = &a.metrics;
        assert_eq!(m.atm_strike, 100.0);
        assert_eq!((m.pcr_oi, m.max_pain_strike), (None, None));
        assert!(m.atm_straddle_price.is_some());
        // one strike: the forward is above it, so there is nothing to interpolate to
        assert_eq!(m.atm_iv, None);
        assert_eq!(m.iv_skew_25d, None);
        assert!(a.strikes[0].call.iv.is_some() && a.strikes[0].put.iv.is_some());
    }

    #[test]
    fn ties_take_the_lower_strike() {
        // spot exactly between two strikes
        let c = chain(21_525.0, &strikes(21_400.0, 50.0, 6));
        assert_eq!(analyze(&c, &PARAMS).metrics.atm_strike, 21_500.0);
        // equal pain at 100 and 110 (and 120): the lowest
        let mut c = chain(110.0, &[100.0, 110.0, 120.0]);
        for (s, (call, put)) in c.strikes.iter_mut().zip([(5, 0), (0, 0), (0, 5)]) {
            s.call.oi = call;
            s.put.oi = put;
        }
        assert_eq!(analyze(&c, &PARAMS).metrics.max_pain_strike, Some(100.0));
    }

    #[test]
    fn an_expired_chain_has_metrics_but_no_volatility() {
        let c = chain(21_543.25, &strikes(21_400.0, 50.0, 7));
        for t in [0.0, -1.0 / 365.0] {
            let a = analyze(
                &c,
                &ChainParams {
                    time_to_expiry: t,
                    ..PARAMS
                },
            );
            assert!(a.strikes.iter().all(|s| s.call.iv.is_none() && s.put.delta.is_none()));
            assert_eq!((a.metrics.atm_iv, a.metrics.iv_skew_25d), (None, None));
            assert_eq!(a.metrics.atm_strike, 21_550.0);
            assert!(a.metrics.atm_straddle_price.is_some());
        }
    }
}
