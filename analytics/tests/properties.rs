//! Property tests of the analytics: round trips, put-call relations, and chain metrics
//! against straightforward evaluations of their definitions (`docs/analytics.md`).

use chainflow_analytics::{analyze, bsm, chain_metrics, enrich_options, max_pain, ChainParams, Valuation};
use chainflow_contract::{OptionChain, OptionType, Quote, StrikeQuotes};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// A market: spot, years, rate, dividend yield.
fn market() -> impl Strategy<Value = (f64, f64, f64, f64)> {
    (
        10.0..100_000.0f64,
        prop_oneof![1e-5..0.01f64, 0.01..2.0f64],
        -0.01..0.12f64,
        0.0..0.06f64,
    )
}

fn kind() -> impl Strategy<Value = OptionType> {
    prop_oneof![Just(OptionType::Call), Just(OptionType::Put)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    #[test]
    fn implied_vol_round_trips(
        (spot, t, r, q) in market(),
        moneyness in 0.5..2.0f64,
        sigma in 0.01..3.0f64,
        kind in kind(),
    ) {
        let strike = spot * moneyness;
        let v = Valuation::new(spot, t, r, q);
        let p = bsm::price(kind, spot, strike, t, r, q, sigma);
        let time_value = p - v.bounds(kind, strike).0;
        // a time value below the price's own resolution carries no volatility information
        prop_assume!(time_value > 1e-10 * p.max(1.0) && p < v.bounds(kind, strike).1);
        let iv = v.implied_vol(kind, strike, p);
        prop_assert!(iv.is_some(), "no IV for price {}", p);
        let back = bsm::price(kind, spot, strike, t, r, q, iv.unwrap());
        // 1e-9 of the time value, or 1e-12; deep in the money neither the input price nor the
        // recomputation can resolve less than a few ulps of the formula's terms S·e^(−qT), K·e^(−rT)
        let terms = spot * (-q * t).exp() + strike * (-r * t).exp();
        let tolerance = (1e-9 * time_value).max(1e-12).max(4.0 * f64::EPSILON * terms);
        prop_assert!((back - p).abs() <= tolerance, "σ={} solved {:?}: {} vs {}", sigma, iv, back, p);
    }

    #[test]
    fn put_call_parity_of_prices_and_greeks(
        (spot, t, r, q) in market(),
        moneyness in 0.5..2.0f64,
        sigma in 0.01..3.0f64,
    ) {
        let strike = spot * moneyness;
        let c = bsm::price(OptionType::Call, spot, strike, t, r, q, sigma);
        let p = bsm::price(OptionType::Put, spot, strike, t, r, q, sigma);
        let (df_q, df_r) = ((-q * t).exp(), (-r * t).exp());
        prop_assert!((c - p - (spot * df_q - strike * df_r)).abs() <= 1e-12 * spot.max(strike) * 8.0);
        let v = Valuation::new(spot, t, r, q);
        let (gc, gp) = (v.greeks(OptionType::Call, strike, sigma), v.greeks(OptionType::Put, strike, sigma));
        prop_assert!((gc.delta - gp.delta - df_q).abs() <= 1e-14);
        prop_assert!((gc.gamma - gp.gamma).abs() <= 1e-14 * gc.gamma.abs());
        prop_assert!((gc.vega - gp.vega).abs() <= 1e-14 * gc.vega.abs());
        // ∂(C − P)/∂r = K·T·e^(−rT), per 1%
        prop_assert!((gc.rho - gp.rho - strike * t * df_r * 0.01).abs() <= 1e-12 * strike * t);
    }
}

/// The round trip's first failure (kept in properties.proptest-regressions too): a deep
/// in-the-money call whose time value is a few ulps of the formula's terms.
#[test]
fn deep_in_the_money_round_trip_within_the_formulas_resolution() {
    let (spot, t, r, q) = (56185.927641210874, 0.5236157462923418, 0.0, 0.004881894946443839);
    let (strike, sigma) = (spot * 0.9026284363179087, 0.02527462131851981);
    let p = bsm::price(OptionType::Call, spot, strike, t, r, q, sigma);
    let iv = Valuation::new(spot, t, r, q)
        .implied_vol(OptionType::Call, strike, p)
        .unwrap();
    let back = bsm::price(OptionType::Call, spot, strike, t, r, q, iv);
    assert!(
        (back - p).abs() <= 4.0 * f64::EPSILON * (spot + strike),
        "{back} vs {p}"
    );
}

/// A chain of `n` strikes around `spot` with quotes from a smile and random OI.
fn chain_strategy() -> impl Strategy<Value = (OptionChain, ChainParams)> {
    (
        1usize..42,
        1_000.0..50_000.0f64,
        prop_oneof![0.0005..0.01f64, 0.01..0.5f64],
        0.05..0.6f64,
        -0.3..0.3f64,
        prop::collection::vec((0i64..100_000, 0i64..100_000, -500i64..500, 0i64..10_000), 41),
    )
        .prop_map(|(n, spot, t, atm_vol, skew, oi)| {
            let (r, q) = (0.065, 0.012);
            let step = (spot * 0.005).round().max(1.0);
            let first = (spot / step).round() * step - step * (n / 2) as f64;
            let forward = spot * ((r - q) * t).exp();
            let strikes = (0..n)
                .map(|i| {
                    let k = first + step * i as f64;
                    let m = (k / forward).ln();
                    let sigma = (atm_vol + skew * m + 2.0 * m * m).max(0.02);
                    let (call_oi, put_oi, change, volume) = oi[i];
                    let quote = |kind, oi| {
                        let fair = bsm::price(kind, spot, k, t, r, q, sigma);
                        Quote {
                            bid: fair * 0.999,
                            ask: fair * 1.001,
                            last: fair,
                            volume,
                            oi,
                            oi_change: change,
                            iv: None,
                        }
                    };
                    StrikeQuotes {
                        strike: k,
                        call: quote(OptionType::Call, call_oi),
                        put: quote(OptionType::Put, put_oi),
                    }
                })
                .collect();
            let chain = OptionChain {
                product: "X".into(),
                expiry: 0,
                lot_size: 1,
                spot,
                event_time: 0,
                seq: 1,
                strikes,
            };
            (
                chain,
                ChainParams {
                    rate: r,
                    dividend_yield: q,
                    time_to_expiry: t,
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    #[test]
    fn the_chain_walk_solves_every_option_like_a_cold_solve((chain, params) in chain_strategy()) {
        let v = params.valuation(chain.spot);
        let walked = enrich_options(&v, &chain.strikes);
        for s in &walked {
            for (kind, o) in [(OptionType::Call, &s.call), (OptionType::Put, &s.put)] {
                let cold = o.price.and_then(|p| v.implied_vol(kind, s.strike, p));
                prop_assert_eq!(o.iv.is_some(), cold.is_some(), "{:?} {}", kind, s.strike);
                if let (Some(a), Some(b)) = (o.iv, cold) {
                    // both meet the price to 1e-12 relative; the vols agree to what that allows
                    let vega = v.greeks(kind, s.strike, b).vega * 100.0;
                    let tolerance = 1e-9 * b + 4e-12 * o.price.unwrap() / vega;
                    prop_assert!((a - b).abs() <= tolerance, "{:?} {}: {} vs {}", kind, s.strike, a, b);
                }
            }
        }
    }

    #[test]
    fn metrics_match_their_definitions((chain, params) in chain_strategy()) {
        let a = analyze(&chain, &params);
        let m = &a.metrics;
        let sum = |f: &dyn Fn(&StrikeQuotes) -> i64| chain.strikes.iter().map(f).sum::<i64>();
        let (call_oi, put_oi) = (sum(&|s| s.call.oi), sum(&|s| s.put.oi));
        prop_assert_eq!(m.total_call_oi, call_oi);
        prop_assert_eq!(m.total_put_oi, put_oi);
        prop_assert_eq!(m.pcr_oi, (call_oi != 0).then(|| put_oi as f64 / call_oi as f64));
        let (call_vol, put_vol) = (sum(&|s| s.call.volume), sum(&|s| s.put.volume));
        prop_assert_eq!(m.pcr_volume, (call_vol != 0).then(|| put_vol as f64 / call_vol as f64));
        let spot = chain.spot;
        prop_assert_eq!(m.call_oi_otm, sum(&|s| if s.strike > spot { s.call.oi } else { 0 }));
        prop_assert_eq!(m.put_oi_otm, sum(&|s| if s.strike < spot { s.put.oi } else { 0 }));
        prop_assert_eq!(m.call_buildup_otm, sum(&|s| if s.strike > spot { s.call.oi_change } else { 0 }));
        prop_assert_eq!(m.put_buildup_otm, sum(&|s| if s.strike < spot { s.put.oi_change } else { 0 }));
        // ATM: nearest strike, the lower on a tie
        let nearest = chain.strikes.iter().map(|s| s.strike).fold(f64::NAN, |best, k| {
            if best.is_nan() || (k - spot).abs() < (best - spot).abs() { k } else { best }
        });
        prop_assert_eq!(m.atm_strike, nearest);
        // max pain by brute force, O(n²)
        let pain = |k: f64| chain.strikes.iter().map(|s| {
            s.call.oi as f64 * (k - s.strike).max(0.0) + s.put.oi as f64 * (s.strike - k).max(0.0)
        }).sum::<f64>();
        let brute = chain.strikes.iter().map(|s| s.strike).fold(None, |best: Option<(f64, f64)>, k| {
            let p = pain(k);
            match best { Some((_, b)) if b <= p => best, _ => Some((k, p)) }
        });
        let all_zero = call_oi == 0 && put_oi == 0;
        prop_assert_eq!(max_pain(&a.strikes), if all_zero { None } else { brute.map(|b| b.0) });
        prop_assert_eq!(m.max_pain_strike, max_pain(&a.strikes));
        // the metrics are a function of the enriched strikes alone
        let again = chain_metrics(spot, params.valuation(spot).forward(), &a.strikes);
        prop_assert_eq!(&again, m);
    }
}
