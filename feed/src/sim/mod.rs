//! The market simulator behind `chainflow feed`: coherent underlying ticks, option quotes
//! and option-chain snapshots for the configured products, reproducible per seed.
//!
//! The simulated clock advances one second at a time in ten 100 ms steps. Each step moves
//! every underlying (correlated log-normal moves at the volatility index times the
//! product's beta on the 365-day clock the options are priced on, with an intraday pattern
//! whose mean is 1, and the scenario's drift and jumps); ticks and
//! quote updates fall on random steps; at the end of each second every product publishes
//! a chain snapshot per listed expiry. Options are priced with Black–Scholes–Merton on the
//! product's [`Surface`] at the same spot and time the snapshot or quote reports.

mod activity;
mod listing;
mod quotes;
mod scenario;
mod surface;

pub use listing::{expiries, strikes};
pub use quotes::{convex_ticks, TICK};
pub use scenario::{Regime, Scenario};
pub use surface::Surface;

use activity::Book;
use chainflow_analytics::bsm;
use chainflow_config::ProductSpec;
use chainflow_contract::keys::{chain_key, option_symbol};
use chainflow_contract::year_fraction;
use chainflow_contract::{OptionChain, OptionQuote, OptionType, Record, StrikeQuotes, UnderlyingTick};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::collections::{BTreeMap, VecDeque};

/// Steps per simulated second.
const STEPS: i64 = 10;
/// µs per step.
const STEP_US: i64 = 1_000_000 / STEPS;
/// Correlation of each underlying with the market factor.
const MARKET_CORRELATION: f64 = 0.8;
/// Length of a trading session, µs: it ends at the product's expiry close time.
const SESSION_US: i64 = 22_500_000_000;
/// Tick of underlying prices.
const SPOT_TICK: f64 = 0.05;

/// One event of the simulated market, for its topic.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    /// A trade of an underlying (`market.underlying`).
    Tick(UnderlyingTick),
    /// One option's quote (`market.option_quote`).
    Quote(OptionQuote),
    /// A chain snapshot (`market.option_chain`).
    Chain(OptionChain),
}

impl MarketEvent {
    /// When it happened, µs since the epoch.
    pub fn event_time(&self) -> i64 {
        match self {
            Self::Tick(t) => t.event_time,
            Self::Quote(q) => q.event_time,
            Self::Chain(c) => c.event_time,
        }
    }

    /// The topic it belongs to.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::Tick(_) => UnderlyingTick::TOPIC,
            Self::Quote(_) => OptionQuote::TOPIC,
            Self::Chain(_) => OptionChain::TOPIC,
        }
    }

    /// Its Kafka key.
    pub fn key(&self) -> String {
        match self {
            Self::Tick(t) => t.key(),
            Self::Quote(q) => q.key(),
            Self::Chain(c) => c.key(),
        }
    }
}

/// How quotes relate to the model's fair prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing {
    /// Market-like: tick-rounded mids (arbitrage-free after rounding) with bid-ask spreads.
    Ticks,
    /// bid = ask = last = the fair price, unrounded (to check analytics against the surface).
    Exact,
}

/// What to simulate.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// Seed of every random draw: the same seed and start give the same events.
    pub seed: u64,
    /// Simulated start, µs since the epoch.
    pub start_us: i64,
    /// Market regime over time.
    pub scenario: Scenario,
    /// Quote construction.
    pub pricing: Pricing,
}

/// One product's state.
struct Product {
    spec: ProductSpec,
    /// Unrounded log-price.
    ln_spot: f64,
    /// Last published (tick-rounded) price.
    spot: f64,
    /// Cumulative day volume of the underlying.
    volume: i64,
    tick_seq: i64,
    book: Book,
}

/// The simulated market: an endless, time-ordered stream of [`MarketEvent`]s.
pub struct Simulator {
    products: Vec<Product>,
    options: SimOptions,
    rng: SimRng,
    /// Start of the next simulated second, µs.
    clock_us: i64,
    /// Log deviation of the volatility index from its regime level.
    vol_noise: f64,
    /// Sequence numbers per chain key and per option symbol.
    seqs: BTreeMap<String, i64>,
    pending: VecDeque<MarketEvent>,
}

/// The simulator's random numbers: ChaCha8, whose stream is the same on every platform and
/// release, so a seed reproduces a run anywhere.
pub type SimRng = rand_chacha::ChaCha8Rng;

/// Rounds a price to `tick`, as the nearest double to its decimal value.
fn round_to(price: f64, tick: f64) -> f64 {
    (price / tick).round() / (1.0 / tick).round()
}

impl Simulator {
    /// A market of `products` (in this order) starting at `options.start_us`.
    pub fn new(products: impl IntoIterator<Item = ProductSpec>, options: SimOptions) -> Self {
        let products = products
            .into_iter()
            .map(|spec| Product {
                ln_spot: spec.params.spot.ln(),
                spot: round_to(spec.params.spot, SPOT_TICK),
                volume: 0,
                tick_seq: 0,
                book: Book::default(),
                spec,
            })
            .collect();
        Self {
            products,
            options,
            rng: SimRng::seed_from_u64(options.seed),
            clock_us: options.start_us,
            vol_noise: 0.0,
            seqs: BTreeMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// The regime of the second starting at `t_us`.
    fn regime(&self, t_us: i64) -> Regime {
        self.options
            .scenario
            .regime((t_us - self.options.start_us) as f64 / 1e6)
    }

    /// The volatility index now.
    fn vol_index(&self, regime: &Regime) -> f64 {
        regime.vol_index * self.vol_noise.exp()
    }

    fn next_seq(&mut self, key: &str) -> i64 {
        let seq = self.seqs.entry(key.to_string()).or_insert(0);
        *seq += 1;
        *seq
    }

    /// Intraday volatility pattern: high at the open and the close, low at midday (1 outside
    /// the session).
    fn intraday(spec: &ProductSpec, t_us: i64) -> f64 {
        let local = spec.terms.exchange_date(t_us).expect("valid time");
        let to_close = spec.terms.expiry_instant_us(local) - t_us;
        if !(0..=SESSION_US).contains(&to_close) {
            return 1.0;
        }
        let u = 1.0 - to_close as f64 / SESSION_US as f64;
        0.8 + 0.6 * (2.0 * u - 1.0).powi(2)
    }

    /// Simulates the second starting at `clock_us` into `pending`.
    fn second(&mut self) {
        let t0 = self.clock_us;
        let regime = self.regime(t0);
        // the volatility index wanders around its regime level (reverting over ~10 minutes)
        let z: f64 = self.rng.sample(StandardNormal);
        self.vol_noise = self.vol_noise * (1.0 - 1.0 / 600.0) + 0.004 * z;
        let vol_index = self.vol_index(&regime);
        for i in 0..self.products.len() {
            let day = self.products[i].spec.terms.exchange_date(t0).expect("valid time");
            let p = &mut self.products[i];
            if p.book.roll_day(day) {
                p.volume = 0;
            }
            p.book.drift_sentiment(&mut self.rng);
            self.trade(i, t0, &regime);
        }
        // which steps carry a tick of which product, and which carry quote updates
        let mut events = Vec::new();
        let mut tick_steps = Vec::with_capacity(self.products.len());
        for _ in 0..self.products.len() {
            let (lo, hi) = regime.ticks_per_second;
            let n = self.rng.random_range(lo..=hi).min(STEPS as u32);
            let mut steps: u32 = 0;
            while steps.count_ones() < n {
                steps |= 1 << self.rng.random_range(0..STEPS as u32);
            }
            tick_steps.push(steps);
        }
        let (lo, hi) = regime.quotes_per_second;
        let quotes = self.rng.random_range(lo..=hi);
        let mut quote_at: Vec<(i64, usize)> = (0..quotes)
            .map(|_| {
                (
                    self.rng.random_range(0..STEPS),
                    self.rng.random_range(0..self.products.len()),
                )
            })
            .collect();
        quote_at.sort_unstable();
        let dt = STEP_US as f64 / 1e6;
        // underlyings diffuse on the 365-day clock the options are priced on, so realised
        // volatility matches the surface's level
        let years = year_fraction(0, STEP_US);
        for step in 0..STEPS {
            let market: f64 = self.rng.sample(StandardNormal);
            let step_start = t0 + step * STEP_US;
            for (i, ticks) in tick_steps.iter().enumerate() {
                let own: f64 = self.rng.sample(StandardNormal);
                let jump = if self.rng.random_bool((regime.jumps_per_second * dt).min(1.0)) {
                    let z: f64 = self.rng.sample(StandardNormal);
                    regime.jump.0 + regime.jump.1 * z
                } else {
                    0.0
                };
                let p = &mut self.products[i];
                let sigma = vol_index * p.spec.params.vol_beta * Self::intraday(&p.spec, step_start);
                let shock = MARKET_CORRELATION * market + (1.0 - MARKET_CORRELATION.powi(2)).sqrt() * own;
                p.ln_spot +=
                    regime.drift_per_second * dt - 0.5 * sigma * sigma * years + sigma * years.sqrt() * shock + jump;
                p.spot = round_to(p.ln_spot.exp(), SPOT_TICK);
                if ticks & (1 << step) != 0 {
                    let at = step_start + self.rng.random_range(1..STEP_US);
                    events.push(self.tick(i, at, &regime));
                }
            }
            // this step's quotes, generated in time order so seq rises with event time per key
            let mut here: Vec<(i64, usize)> = quote_at
                .iter()
                .filter(|(s, _)| *s == step)
                .map(|&(_, i)| (step_start + self.rng.random_range(1..STEP_US), i))
                .collect();
            here.sort_unstable();
            for (at, i) in here {
                events.push(MarketEvent::Quote(self.quote(i, at, vol_index, &regime)));
            }
        }
        let t1 = t0 + 1_000_000;
        for i in 0..self.products.len() {
            for expiry in expiries(&self.products[i].spec, t1) {
                events.push(MarketEvent::Chain(self.chain(i, expiry, t1, vol_index, &regime)));
            }
        }
        // stable: events at the same µs keep their order of creation
        events.sort_by_key(MarketEvent::event_time);
        self.pending.extend(events);
        self.clock_us = t1;
    }

    fn tick(&mut self, i: usize, at: i64, regime: &Regime) -> MarketEvent {
        let traded = (self.rng.random_range(50.0..150.0) * regime.activity) as i64;
        let p = &mut self.products[i];
        p.volume += traded;
        p.tick_seq += 1;
        MarketEvent::Tick(UnderlyingTick {
            product: p.spec.name.clone(),
            price: p.spot,
            volume: p.volume,
            event_time: at,
            seq: p.tick_seq,
        })
    }

    /// Distance of `strike` from spot in quarters of the listed range (for activity).
    fn distance(p: &Product, strike: f64) -> f64 {
        let a = &p.spec.params;
        (strike - p.spot) / (a.strike_step * f64::from(a.strikes) / 4.0)
    }

    /// One second of trading in every listed option of product `i`.
    fn trade(&mut self, i: usize, t: i64, regime: &Regime) {
        let (spot, step, count) = {
            let a = &self.products[i].spec.params;
            (self.products[i].spot, a.strike_step, a.strikes)
        };
        for expiry in expiries(&self.products[i].spec, t) {
            for k in strikes(spot, step, count) {
                for kind in [OptionType::Call, OptionType::Put] {
                    let p = &mut self.products[i];
                    let d = Self::distance(p, k);
                    p.book
                        .trade(&mut self.rng, activity::key(expiry, k, kind), d, regime.activity);
                }
            }
        }
    }

    /// Every strike of product `i`'s `expiry` at time `t`, quoted.
    fn expiry_quotes(&mut self, i: usize, expiry: i32, t: i64, vol_index: f64, regime: &Regime) -> Vec<StrikeQuotes> {
        let p = &self.products[i];
        let a = &p.spec.params;
        let (spot, rate, div) = (p.spot, a.rate, a.dividend_yield);
        let tau = p.spec.terms.time_to_expiry(expiry, t);
        let forward = spot * ((rate - div) * tau).exp();
        let surface = Surface::new(vol_index, a.vol_beta);
        let atm_sd = surface.atm_total_variance(tau).sqrt();
        let listed: Vec<(f64, f64, f64, f64, f64)> = strikes(spot, a.strike_step, a.strikes)
            .map(|k| {
                let x = (k / forward).ln();
                let sigma = surface.vol(x, tau);
                let call = bsm::price(OptionType::Call, spot, k, tau, rate, div, sigma);
                let put = bsm::price(OptionType::Put, spot, k, tau, rate, div, sigma);
                (k, x, sigma, call, put)
            })
            .collect();
        let (mut calls, mut puts) = (Vec::new(), Vec::new());
        if self.options.pricing == Pricing::Ticks {
            convex_ticks(listed.iter().map(|l| l.3 / TICK), &mut calls);
            convex_ticks(listed.iter().rev().map(|l| l.4 / TICK), &mut puts);
            puts.reverse();
        }
        let mut out = Vec::with_capacity(listed.len());
        for (j, &(k, x, sigma, call, put)) in listed.iter().enumerate() {
            let spread = quotes::Spread {
                relative: regime.spread * (1.0 + x.abs() / atm_sd.max(1e-9)),
            };
            let mut side = |kind: OptionType, fair: f64, ticks: Option<&i64>| {
                let p = &mut self.products[i];
                let d = Self::distance(p, k);
                let act = p.book.get(&mut self.rng, activity::key(expiry, k, kind), d);
                match ticks {
                    Some(&m) => quotes::quote(m, spread, act.volume, act.oi, act.oi_change(), sigma),
                    None => quotes::exact(fair, act.volume, act.oi, act.oi_change(), sigma),
                }
            };
            let call = side(OptionType::Call, call, calls.get(j));
            let put = side(OptionType::Put, put, puts.get(j));
            out.push(StrikeQuotes { strike: k, call, put });
        }
        out
    }

    fn chain(&mut self, i: usize, expiry: i32, t: i64, vol_index: f64, regime: &Regime) -> OptionChain {
        let strikes = self.expiry_quotes(i, expiry, t, vol_index, regime);
        let p = &self.products[i];
        let (product, spot, lot) = (p.spec.name.clone(), p.spot, p.spec.params.lot_size as i32);
        let seq = self.next_seq(&chain_key(&product, expiry));
        OptionChain {
            product,
            expiry,
            lot_size: lot,
            spot,
            event_time: t,
            seq,
            strikes,
        }
    }

    /// A quote update of a random option of product `i`, nearer the money more often.
    fn quote(&mut self, i: usize, t: i64, vol_index: f64, regime: &Regime) -> OptionQuote {
        let listed = expiries(&self.products[i].spec, t);
        let expiry = listed[self.rng.random_range(0..listed.len())];
        let strikes = self.expiry_quotes(i, expiry, t, vol_index, regime);
        let n = strikes.len();
        // a triangular draw centred on the middle strike
        let j = (self.rng.random_range(0..n) + self.rng.random_range(0..n))
            .div_ceil(2)
            .min(n - 1);
        let kind = if self.rng.random_bool(0.5) {
            OptionType::Call
        } else {
            OptionType::Put
        };
        let s = &strikes[j];
        let q = match kind {
            OptionType::Call => &s.call,
            OptionType::Put => &s.put,
        };
        let product = self.products[i].spec.name.clone();
        let symbol = option_symbol(&product, expiry, s.strike, kind);
        let seq = self.next_seq(&symbol);
        chainflow_contract::option_quote!(chainflow_contract::literal_with_fields [
            OptionQuote,
            q,
            {
                symbol,
                product,
                expiry,
                strike: s.strike,
                option_type: kind,
                iv: q.iv,
                event_time: t,
                seq,
            }
        ])
    }
}

impl Iterator for Simulator {
    type Item = MarketEvent;

    fn next(&mut self) -> Option<MarketEvent> {
        while self.pending.is_empty() {
            self.second();
        }
        self.pending.pop_front()
    }
}
