//! A simple, seeded option-chain generator: a random-walk spot per product, weekly
//! expiries, strikes centred on spot, quotes priced with Black–Scholes–Merton on a
//! smiling volatility, and open interest peaked at the money. Reproducible per seed.

use chainflow_config::ProductSpec;
use chainflow_processors::analytics::bsm;
use chainflow_schemas::keys::days_from_date;
use chainflow_schemas::{OptionChain, OptionType, Quote, StrikeQuotes};
use chrono::{Datelike, Duration as Days, Weekday};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// Price tick of option quotes.
const TICK: f64 = 0.05;
/// Simulated time between two snapshots of the same chain.
const STEP_US: i64 = 1_000_000;

struct ProductState {
    spec: ProductSpec,
    spot: f64,
    volume: BTreeMap<(i32, u64), i64>,
}

/// Yields chain snapshots round by round: every product, every listed expiry, then the
/// simulated clock moves one second.
pub struct ChainGenerator {
    products: Vec<ProductState>,
    rng: SmallRng,
    clock_us: i64,
    seq: BTreeMap<(usize, i32), i64>,
    pending: Vec<OptionChain>,
}

impl ChainGenerator {
    /// A generator over `products` starting at `start_us` (µs since the epoch).
    pub fn new(products: impl IntoIterator<Item = ProductSpec>, seed: u64, start_us: i64) -> Self {
        let products = products
            .into_iter()
            .map(|spec| ProductState {
                spot: spec.params.spot,
                spec,
                volume: BTreeMap::new(),
            })
            .collect();
        Self {
            products,
            rng: SmallRng::seed_from_u64(seed),
            clock_us: start_us,
            seq: BTreeMap::new(),
            pending: Vec::new(),
        }
    }

    fn round(&mut self) {
        let t = self.clock_us;
        for i in 0..self.products.len() {
            // ~1% daily volatility, scaled to one second of a 6.25-hour session
            let shock: f64 = self.rng.random_range(-1.0..1.0) * 0.01 / (22_500f64).sqrt() * 3f64.sqrt();
            self.products[i].spot *= 1.0 + shock;
            let expiries = weekly_expiries(&self.products[i].spec, t);
            for expiry in expiries {
                let seq = self.seq.entry((i, expiry)).or_insert(0);
                *seq += 1;
                let seq = *seq;
                let chain = self.chain(i, expiry, t, seq);
                self.pending.push(chain);
            }
        }
        self.clock_us += STEP_US;
        self.pending.reverse();
    }

    fn chain(&mut self, i: usize, expiry: i32, t: i64, seq: i64) -> OptionChain {
        let (spot, step, n, rate, div, lot) = {
            let p = &self.products[i];
            let a = &p.spec.params;
            (
                p.spot,
                a.strike_step,
                a.strikes as i64,
                a.rate,
                a.dividend_yield,
                a.lot_size,
            )
        };
        let expiry_us = self.products[i]
            .spec
            .expiry_instant_us(chainflow_schemas::keys::date_from_days(expiry));
        let years = ((expiry_us - t) as f64 / 1e6 / (365.0 * 86_400.0)).max(1.0 / (365.0 * 24.0));
        let atm = (spot / step).round() * step;
        let forward = spot * ((rate - div) * years).exp();
        let strikes = (-(n / 2)..=n / 2)
            .map(|j| {
                let k = atm + j as f64 * step;
                let m = (k / forward).ln();
                let sigma = 0.14 + 0.8 * m * m - 0.15 * m;
                let distance = (k - spot).abs() / (step * 10.0);
                let mut side = |kind| {
                    let fair = bsm::price(kind, spot, k, years, rate, div, sigma);
                    self.quote(i, expiry, k, kind, fair, distance, lot)
                };
                let call = side(OptionType::Call);
                let put = side(OptionType::Put);
                StrikeQuotes { strike: k, call, put }
            })
            .collect();
        OptionChain {
            product: self.products[i].spec.name.clone(),
            expiry,
            lot_size: lot as i32,
            spot,
            event_time: t,
            seq,
            strikes,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn quote(
        &mut self,
        i: usize,
        expiry: i32,
        strike: f64,
        kind: OptionType,
        fair: f64,
        distance: f64,
        lot: u32,
    ) -> Quote {
        let spread = (fair * 0.004 * (1.0 + distance)).max(TICK);
        let bid = ((fair - spread / 2.0) / TICK).floor() * TICK;
        let ask = ((fair + spread / 2.0) / TICK).ceil().max(1.0) * TICK;
        let peak = (-distance * distance).exp();
        let oi = ((self.rng.random_range(0.5..1.5) * 40_000.0 * peak) as i64 + 1) * lot as i64;
        let oi_change = (self.rng.random_range(-0.05..0.1) * oi as f64) as i64 / lot as i64 * lot as i64;
        let key = (
            expiry,
            (strike * 100.0) as u64 * 2 + matches!(kind, OptionType::Put) as u64,
        );
        let volume = self.products[i].volume.entry(key).or_insert(0);
        *volume += self.rng.random_range(0..50) * lot as i64;
        Quote {
            bid: bid.max(0.0),
            ask,
            last: ((fair / TICK).round() * TICK).max(TICK),
            volume: *volume,
            oi,
            oi_change,
            iv: None,
        }
    }
}

impl Iterator for ChainGenerator {
    type Item = OptionChain;

    fn next(&mut self) -> Option<OptionChain> {
        if self.pending.is_empty() {
            self.round();
        }
        self.pending.pop()
    }
}

/// The product's listed weekly expiries (Thursdays) on or after the event's exchange date,
/// skipping today's once the close has passed.
fn weekly_expiries(spec: &ProductSpec, t_us: i64) -> Vec<i32> {
    let local = chrono::DateTime::from_timestamp_micros(t_us)
        .expect("valid time")
        .with_timezone(&spec.tz);
    let today = local.date_naive();
    let mut first = today
        + Days::days(((Weekday::Thu.num_days_from_monday() + 7 - today.weekday().num_days_from_monday()) % 7) as i64);
    if spec.expiry_instant_us(first) <= t_us {
        first += Days::days(7);
    }
    (0..spec.params.expiries as i64)
        .map(|w| days_from_date(first + Days::days(7 * w)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_config::default_products;

    fn specs() -> Vec<ProductSpec> {
        default_products()
            .into_iter()
            .map(|(n, p)| ProductSpec::new(&n, p).unwrap())
            .collect()
    }

    const START: i64 = 1_738_224_000_000_000; // 2025-01-30 08:00 UTC

    #[test]
    fn same_seed_same_chains_different_seed_different_chains() {
        let a: Vec<OptionChain> = ChainGenerator::new(specs(), 1, START).take(40).collect();
        let b: Vec<OptionChain> = ChainGenerator::new(specs(), 1, START).take(40).collect();
        let c: Vec<OptionChain> = ChainGenerator::new(specs(), 2, START).take(40).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn chains_are_valid_and_sequenced() {
        let products = specs();
        let n = products.len() * 2;
        let chains: Vec<OptionChain> = ChainGenerator::new(products, 3, START).take(n * 3).collect();
        for c in &chains {
            assert_eq!(c.strikes.len(), 21);
            assert!(c.strikes.windows(2).all(|w| w[0].strike < w[1].strike));
            for s in &c.strikes {
                for q in [&s.call, &s.put] {
                    assert!(q.bid >= 0.0 && q.bid <= q.ask && q.oi > 0, "{q:?}");
                }
            }
        }
        // one snapshot per product and expiry per simulated second, seq counting up per key
        let nifty: Vec<&OptionChain> = chains.iter().filter(|c| c.product == "NIFTY").collect();
        assert_eq!(nifty.len(), 6);
        let first_expiry = nifty[0].expiry;
        let seqs: Vec<i64> = nifty
            .iter()
            .filter(|c| c.expiry == first_expiry)
            .map(|c| c.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        // on expiry day before the close, today's expiry is listed
        assert_eq!(
            chainflow_schemas::keys::chain_key("NIFTY", first_expiry),
            "NIFTY|2025-01-30"
        );
    }
}
