//! Analytics benchmarks (figures in docs/benchmarks.md): one option (implied volatility plus Greeks) and one
//! 2×41-option chain (every IV, Greeks and chain metric), beside the `implied-vol` crate
//! (Let's Be Rational) solving the same prices.
//!
//! `cargo bench -p chainflow-analytics --bench analytics`

#![allow(missing_docs, reason = "criterion_group! generates the undocumented entry point")]

use chainflow_analytics::{analyze, bsm, ChainParams, Valuation};
use chainflow_contract::ProductTerms;
use chainflow_contract::{OptionChain, OptionType, Quote, StrikeQuotes};
use criterion::{criterion_group, criterion_main, Criterion};
use implied_vol::{DefaultSpecialFn, ImpliedBlackVolatility};
use std::hint::black_box;

const SPOT: f64 = 21_543.25;
const STRIKES: i32 = 41;

/// A NIFTY chain 6 days before expiry: 41 strikes 50 points apart, quotes from a skewed
/// smile rounded to the 0.05 tick, with a spread, like the feed's.
fn chain() -> (OptionChain, ChainParams) {
    let product = ProductTerms {
        rate: 0.065,
        dividend_yield: 0.012,
        expiry_close: chrono::NaiveTime::from_hms_opt(15, 30, 0).expect("a time"),
        time_zone: chrono_tz::Asia::Kolkata,
    };
    let expiry = 20118; // 2025-01-30
    let event_time = product.expiry_instant_us(chainflow_contract::keys::date_from_days(expiry)) - 6 * 86_400_000_000;
    let chain = OptionChain {
        product: "NIFTY".into(),
        expiry,
        lot_size: 50,
        spot: SPOT,
        event_time,
        seq: 1,
        strikes: Vec::new(),
    };
    let params = ChainParams::for_chain(&product, &chain);
    let (t, r, q) = (params.time_to_expiry, params.rate, params.dividend_yield);
    let forward = SPOT * ((r - q) * t).exp();
    let strikes = (-STRIKES / 2..=STRIKES / 2)
        .map(|j| {
            let k = 21_550.0 + 50.0 * f64::from(j);
            let m = (k / forward).ln();
            let sigma = 0.14 + 0.8 * m * m - 0.15 * m;
            let quote = |kind| {
                let fair = bsm::price(kind, SPOT, k, t, r, q, sigma);
                let half_spread = (fair * 0.002).max(0.05);
                Quote {
                    bid: (((fair - half_spread) / 0.05).floor() * 0.05).max(0.0),
                    ask: ((fair + half_spread) / 0.05).ceil() * 0.05,
                    last: (fair / 0.05).round() * 0.05,
                    volume: 1000,
                    oi: 50_000,
                    oi_change: 500,
                    iv: None,
                }
            };
            StrikeQuotes {
                strike: k,
                call: quote(OptionType::Call),
                put: quote(OptionType::Put),
            }
        })
        .collect();
    (OptionChain { strikes, ..chain }, params)
}

/// The mid prices of the chain, as the analytics choose them.
fn mids(chain: &OptionChain) -> Vec<(OptionType, f64, f64)> {
    chain
        .strikes
        .iter()
        .flat_map(|s| {
            [(OptionType::Call, &s.call), (OptionType::Put, &s.put)]
                .map(|(kind, q)| (kind, s.strike, f64::midpoint(q.bid, q.ask)))
        })
        .collect()
}

/// Let's Be Rational on the undiscounted price and the forward.
fn lets_be_rational(v: &Valuation, t: f64, r: f64, kind: OptionType, strike: f64, price: f64) -> Option<f64> {
    ImpliedBlackVolatility::builder()
        .option_price(price * (r * t).exp())
        .forward(v.forward())
        .strike(strike)
        .expiry(t)
        .is_call(kind == OptionType::Call)
        .build()?
        .calculate::<DefaultSpecialFn>()
}

fn one_option(c: &mut Criterion) {
    let (chain, params) = chain();
    let v = params.valuation(chain.spot);
    let (t, r) = (params.time_to_expiry, params.rate);
    // an out-of-the-money call 2% above spot
    let s = &chain.strikes[(STRIKES / 2 + 9) as usize];
    let price = f64::midpoint(s.call.bid, s.call.ask);
    let mut group = c.benchmark_group("option");
    group.bench_function("chainflow iv+greeks (cold start)", |b| {
        b.iter(|| {
            let k = v.strike(black_box(s.strike));
            v.solve(
                OptionType::Call,
                &k,
                black_box(price),
                chainflow_analytics::iv::Start::Cold,
            )
        });
    });
    group.bench_function("chainflow iv only", |b| {
        b.iter(|| v.implied_vol(OptionType::Call, black_box(s.strike), black_box(price)));
    });
    group.bench_function("implied-vol iv only", |b| {
        b.iter(|| lets_be_rational(&v, t, r, OptionType::Call, black_box(s.strike), black_box(price)));
    });
    group.finish();
}

fn one_chain(c: &mut Criterion) {
    let (chain, params) = chain();
    let v = params.valuation(chain.spot);
    let (t, r) = (params.time_to_expiry, params.rate);
    let prices = mids(&chain);
    let mut group = c.benchmark_group("chain 2x41");
    group.bench_function("chainflow analyze (all IVs, Greeks, metrics)", |b| {
        b.iter(|| analyze(black_box(&chain), black_box(&params)));
    });
    group.bench_function("chainflow iv only, each option cold", |b| {
        b.iter(|| {
            prices
                .iter()
                .filter_map(|&(kind, k, p)| v.implied_vol(kind, k, black_box(p)))
                .sum::<f64>()
        });
    });
    group.bench_function("implied-vol iv only", |b| {
        b.iter(|| {
            prices
                .iter()
                .filter_map(|&(kind, k, p)| lets_be_rational(&v, t, r, kind, k, black_box(p)))
                .sum::<f64>()
        });
    });
    group.finish();
}

criterion_group!(benches, one_option, one_chain);
criterion_main!(benches);
