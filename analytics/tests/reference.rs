//! Prices, implied volatilities and Greeks against independent reference values:
//! `fixtures/bsm_reference.csv`, made by QuantLib's `BlackCalculator` with
//! `fixtures/make_bsm_reference.py` over a grid of moneyness, expiry (10 minutes to two
//! years), volatility (1% to 300%), rate and dividend yield.
//!
//! QuantLib's own normal CDF is accurate to ~1e-8 relative far in the tails, so each
//! comparison allows 1e-9 relative plus a small absolute floor (the script measured
//! QuantLib's worst absolute errors against 50-digit arithmetic: 5.3e-12 in price,
//! 1.3e-13 in rho).

use chainflow_analytics::{bsm, Valuation};
use chainflow_contract::OptionType;

struct Row {
    kind: OptionType,
    spot: f64,
    strike: f64,
    t: f64,
    rate: f64,
    dividend_yield: f64,
    sigma: f64,
    price: f64,
    greeks: [f64; 5],
}

fn rows() -> Vec<Row> {
    let text = include_str!("fixtures/bsm_reference.csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("kind,spot,strike,t,rate,dividend_yield,sigma,price,delta,gamma,theta,vega,rho")
    );
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let n = |i: usize| {
                f[i].parse::<f64>()
                    .unwrap_or_else(|e| panic!("{line}: column {i}: {e}"))
            };
            Row {
                kind: match f[0] {
                    "CALL" => OptionType::Call,
                    "PUT" => OptionType::Put,
                    other => panic!("{line}: kind {other}"),
                },
                spot: n(1),
                strike: n(2),
                t: n(3),
                rate: n(4),
                dividend_yield: n(5),
                sigma: n(6),
                price: n(7),
                greeks: [n(8), n(9), n(10), n(11), n(12)],
            }
        })
        .collect()
}

fn describe(r: &Row) -> String {
    format!(
        "{:?} S={} K={} T={} r={} q={} σ={}",
        r.kind, r.spot, r.strike, r.t, r.rate, r.dividend_yield, r.sigma
    )
}

#[test]
fn the_fixture_covers_the_domain() {
    let rows = rows();
    assert!(rows.len() > 3000, "{} rows", rows.len());
    let has = |f: &dyn Fn(&Row) -> bool| rows.iter().any(f);
    assert!(has(&|r| r.t < 1e-4) && has(&|r| r.t >= 2.0));
    assert!(has(&|r| r.sigma <= 0.01) && has(&|r| r.sigma >= 3.0));
    assert!(has(&|r| r.strike / r.spot <= 0.5) && has(&|r| r.strike / r.spot >= 2.0));
    assert!(has(&|r| r.dividend_yield > 0.0) && has(&|r| r.rate < 0.0));
}

#[test]
fn prices_match_quantlib() {
    for r in rows() {
        let p = bsm::price(r.kind, r.spot, r.strike, r.t, r.rate, r.dividend_yield, r.sigma);
        assert!(
            (p - r.price).abs() <= 1e-9 * r.price + 1e-11,
            "{}: {p} vs QuantLib {}",
            describe(&r),
            r.price
        );
    }
}

#[test]
fn greeks_match_quantlib() {
    let names = ["delta", "gamma", "theta", "vega", "rho"];
    for r in rows() {
        let g = Valuation::new(r.spot, r.t, r.rate, r.dividend_yield).greeks(r.kind, r.strike, r.sigma);
        for (i, ours) in [g.delta, g.gamma, g.theta, g.vega, g.rho].into_iter().enumerate() {
            let want = r.greeks[i];
            assert!(
                (ours - want).abs() <= 1e-9 * want.abs() + 1e-12,
                "{}: {} {ours} vs QuantLib {want}",
                describe(&r),
                names[i]
            );
        }
    }
}

#[test]
fn implied_vols_recover_the_volatility_quantlib_priced() {
    let mut solved = 0;
    for r in rows() {
        let v = Valuation::new(r.spot, r.t, r.rate, r.dividend_yield);
        let iv = v
            .implied_vol(r.kind, r.strike, r.price)
            .unwrap_or_else(|| panic!("{}: no IV for price {}", describe(&r), r.price));
        // repriced at the solved volatility, the option is worth what QuantLib said to 1e-9
        // of its time value, or QuantLib's own absolute accuracy (5.3e-12) and the formula's
        // resolution (a few ulps of S·e^(−qT) + K·e^(−rT))
        let time_value = r.price - v.bounds(r.kind, r.strike).0;
        let back = bsm::price(r.kind, r.spot, r.strike, r.t, r.rate, r.dividend_yield, iv);
        let floor = 1e-11_f64.max(8.0 * f64::EPSILON * (r.spot + r.strike));
        assert!(
            (back - r.price).abs() <= 1e-9 * time_value + floor,
            "{}: solved {iv}, repriced {back} vs {} (time value {time_value})",
            describe(&r),
            r.price
        );
        // and the volatility is the one QuantLib priced at, as far as the price pins it down:
        // the price's uncertainty over vega (per unit of σ), plus the solver's own 1e-9
        let vega = v.greeks(r.kind, r.strike, r.sigma).vega * 100.0;
        let tolerance = 1e-9 * r.sigma + (1e-9 * r.price + 1e-11) / vega;
        assert!(
            (iv - r.sigma).abs() <= tolerance,
            "{}: solved {iv}, off by {:e} (tolerance {tolerance:e})",
            describe(&r),
            iv - r.sigma
        );
        solved += 1;
    }
    assert!(solved > 3000);
}
