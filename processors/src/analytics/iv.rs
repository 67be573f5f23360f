//! Implied volatility under Black–Scholes–Merton with a continuous dividend yield, and the
//! Greeks at that volatility (DESIGN.md §3 units).
//!
//! The solver works on the out-of-the-money side (its price is the time value; the other
//! side follows by put-call parity), in total volatility s = σ√T, with Newton steps on
//! log-price kept inside a bracket that tightens on every evaluation, so it converges for
//! deep wings and short expiries where plain Newton overshoots.

use super::bsm::norm_cdf;
use chainflow_schemas::OptionType;

/// Standard normal density.
fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Market inputs of one option.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionInputs {
    /// Call or put.
    pub kind: OptionType,
    /// Spot.
    pub spot: f64,
    /// Strike.
    pub strike: f64,
    /// Years to expiry.
    pub t: f64,
    /// Rate, continuously compounded.
    pub rate: f64,
    /// Dividend yield, continuously compounded.
    pub dividend_yield: f64,
}

/// Greeks per DESIGN.md §3: per unit of underlying, theta per calendar day, vega per vol
/// point, rho per 1% of rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Greeks {
    /// ∂V/∂S.
    pub delta: f64,
    /// ∂²V/∂S².
    pub gamma: f64,
    /// −∂V/∂T / 365.
    pub theta: f64,
    /// ∂V/∂σ × 0.01.
    pub vega: f64,
    /// ∂V/∂r × 0.01.
    pub rho: f64,
}

/// Undiscounted Black price of the out-of-the-money option (a call when K ≥ F) at total
/// volatility `s`, with its derivative in `s`.
fn otm_black(forward: f64, strike: f64, s: f64) -> (f64, f64) {
    let d1 = (forward / strike).ln() / s + 0.5 * s;
    let d2 = d1 - s;
    let price = if strike >= forward {
        forward * norm_cdf(d1) - strike * norm_cdf(d2)
    } else {
        strike * norm_cdf(-d2) - forward * norm_cdf(-d1)
    };
    (price, forward * norm_pdf(d1))
}

/// The volatility at which BSM reproduces `price`; `None` without time to expiry or when the
/// price is at or beyond the no-arbitrage bounds.
pub fn implied_vol(o: &OptionInputs, price: f64) -> Option<f64> {
    let OptionInputs {
        kind,
        spot,
        strike,
        t,
        rate,
        dividend_yield,
    } = *o;
    if !(t > 0.0 && price.is_finite() && spot > 0.0 && strike > 0.0) {
        return None;
    }
    let (df_q, df_r) = ((-dividend_yield * t).exp(), (-rate * t).exp());
    let (lower, upper) = match kind {
        OptionType::Call => ((spot * df_q - strike * df_r).max(0.0), spot * df_q),
        OptionType::Put => ((strike * df_r - spot * df_q).max(0.0), strike * df_r),
    };
    if !(price > lower && price < upper) {
        return None;
    }
    let forward = spot * df_q / df_r;
    // the out-of-the-money option's undiscounted price is the time value
    let target = (price - lower) / df_r;
    let s = solve_total_vol(forward, strike, target)?;
    Some(s / t.sqrt())
}

/// Total volatility s with `otm_black(F, K, s) = target`.
fn solve_total_vol(forward: f64, strike: f64, target: f64) -> Option<f64> {
    let x = (forward / strike).ln().abs();
    // Brenner–Subrahmanyam near the money, the wing's scale away from it
    let mut s = ((2.0 * std::f64::consts::PI).sqrt() * target / (forward * strike).sqrt()).max((2.0 * x).sqrt() * 0.5);
    s = s.clamp(1e-8, 20.0);
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    let ln_target = target.ln();
    for _ in 0..100 {
        let (p, vega) = otm_black(forward, strike, s);
        let err = p - target;
        if err.abs() <= 1e-12 * target || (hi - lo) <= 1e-15 * s {
            return Some(s);
        }
        if err > 0.0 {
            hi = s;
        } else {
            lo = s;
        }
        // Newton on ln(price): ln p is close to linear far in the wings
        let mut next = if p > 0.0 && vega > 0.0 {
            s - (p.ln() - ln_target) * p / vega
        } else {
            f64::NAN
        };
        if !(next > lo && next < hi) {
            next = if hi.is_finite() {
                0.5 * (lo + hi)
            } else {
                2.0 * s.max(lo)
            };
        }
        s = next;
    }
    let (p, _) = otm_black(forward, strike, s);
    ((p - target).abs() <= 1e-9 * target).then_some(s)
}

/// Greeks of `o` at volatility `sigma`.
pub fn greeks(o: &OptionInputs, sigma: f64) -> Greeks {
    let OptionInputs {
        kind,
        spot: s,
        strike: k,
        t,
        rate: r,
        dividend_yield: q,
    } = *o;
    let sqrt_t = t.sqrt();
    let (df_q, df_r) = ((-q * t).exp(), (-r * t).exp());
    let d1 = ((s / k).ln() + (r - q + 0.5 * sigma * sigma) * t) / (sigma * sqrt_t);
    let d2 = d1 - sigma * sqrt_t;
    let pdf = norm_pdf(d1);
    let gamma = df_q * pdf / (s * sigma * sqrt_t);
    let vega = s * df_q * pdf * sqrt_t * 0.01;
    let decay = -s * df_q * pdf * sigma / (2.0 * sqrt_t);
    let (delta, theta_year, rho) = match kind {
        OptionType::Call => (
            df_q * norm_cdf(d1),
            decay - r * k * df_r * norm_cdf(d2) + q * s * df_q * norm_cdf(d1),
            k * t * df_r * norm_cdf(d2),
        ),
        OptionType::Put => (
            -df_q * norm_cdf(-d1),
            decay + r * k * df_r * norm_cdf(-d2) - q * s * df_q * norm_cdf(-d1),
            -k * t * df_r * norm_cdf(-d2),
        ),
    };
    Greeks {
        delta,
        gamma,
        theta: theta_year / 365.0,
        vega,
        rho: rho * 0.01,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::bsm::price;

    fn inputs(kind: OptionType, spot: f64, strike: f64, t: f64) -> OptionInputs {
        OptionInputs {
            kind,
            spot,
            strike,
            t,
            rate: 0.065,
            dividend_yield: 0.012,
        }
    }

    fn value(o: &OptionInputs, sigma: f64) -> f64 {
        price(o.kind, o.spot, o.strike, o.t, o.rate, o.dividend_yield, sigma)
    }

    #[test]
    fn round_trip_across_moneyness_expiry_and_vol() {
        let mut checked = 0;
        for kind in [OptionType::Call, OptionType::Put] {
            for moneyness in [0.5, 0.8, 0.95, 1.0, 1.05, 1.25, 2.0] {
                for t in [10.0 / (365.0 * 24.0 * 60.0), 1.0 / 365.0, 0.02, 0.25, 1.0, 2.0] {
                    for sigma in [0.01, 0.05, 0.15, 0.4, 1.0, 3.0] {
                        let o = inputs(kind, 21_500.0, 21_500.0 * moneyness, t);
                        let p = value(&o, sigma);
                        let intrinsic = match kind {
                            OptionType::Call => {
                                (o.spot * (-o.dividend_yield * t).exp() - o.strike * (-o.rate * t).exp()).max(0.0)
                            }
                            OptionType::Put => {
                                (o.strike * (-o.rate * t).exp() - o.spot * (-o.dividend_yield * t).exp()).max(0.0)
                            }
                        };
                        let time_value = p - intrinsic;
                        // prices indistinguishable from the bounds carry no volatility information
                        if time_value <= 1e-10 * p.max(1.0) {
                            continue;
                        }
                        let iv = implied_vol(&o, p).unwrap_or_else(|| panic!("no IV for {o:?} at σ={sigma}, p={p}"));
                        let back = value(&o, iv);
                        // 1e-9 of the time value, or 1e-12, but never below a few ulps of the
                        // price itself: the input cannot carry more precision than that
                        let tolerance = (1e-9 * time_value).max(1e-12).max(4.0 * f64::EPSILON * p);
                        assert!(
                            (back - p).abs() <= tolerance,
                            "{o:?} σ={sigma}: solved {iv}, price {back} vs {p} (time value {time_value})"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 300, "{checked}");
    }

    #[test]
    fn prices_at_or_beyond_the_bounds_have_no_iv() {
        let o = inputs(OptionType::Call, 100.0, 100.0, 0.5);
        let upper = 100.0 * (-0.012f64 * 0.5).exp();
        assert_eq!(implied_vol(&o, upper), None);
        assert_eq!(implied_vol(&o, upper + 1.0), None);
        assert_eq!(implied_vol(&o, 0.0), None);
        assert_eq!(implied_vol(&o, f64::NAN), None);
        let deep_put = inputs(OptionType::Put, 100.0, 150.0, 0.5);
        let lower = 150.0 * (-0.065f64 * 0.5).exp() - 100.0 * (-0.012f64 * 0.5).exp();
        assert_eq!(implied_vol(&deep_put, lower), None);
        assert_eq!(implied_vol(&inputs(OptionType::Call, 100.0, 100.0, 0.0), 5.0), None);
        assert_eq!(implied_vol(&inputs(OptionType::Call, 100.0, 100.0, -0.1), 5.0), None);
    }

    #[test]
    fn greeks_match_finite_differences_of_the_price() {
        for kind in [OptionType::Call, OptionType::Put] {
            for strike in [18_000.0, 21_500.0, 25_000.0] {
                let o = inputs(kind, 21_500.0, strike, 0.1);
                let sigma = 0.2;
                let g = greeks(&o, sigma);
                let h = 0.5;
                let v = |x: &OptionInputs, s: f64| value(x, s);
                let (mut up, mut dn) = (o, o);
                up.spot += h;
                dn.spot -= h;
                let delta = (v(&up, sigma) - v(&dn, sigma)) / (2.0 * h);
                let gamma = (v(&up, sigma) - 2.0 * v(&o, sigma) + v(&dn, sigma)) / (h * h);
                let vega = (v(&o, sigma + 1e-5) - v(&o, sigma - 1e-5)) / 2e-5 * 0.01;
                let (mut up, mut dn) = (o, o);
                up.rate += 1e-6;
                dn.rate -= 1e-6;
                let rho = (v(&up, sigma) - v(&dn, sigma)) / 2e-6 * 0.01;
                let (mut later, mut sooner) = (o, o);
                later.t += 1e-6;
                sooner.t -= 1e-6;
                let theta = -(v(&later, sigma) - v(&sooner, sigma)) / 2e-6 / 365.0;
                let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1e-3);
                assert!(
                    close(g.delta, delta, 1e-6),
                    "{kind:?} {strike}: delta {} vs {delta}",
                    g.delta
                );
                assert!(
                    close(g.gamma, gamma, 1e-3),
                    "{kind:?} {strike}: gamma {} vs {gamma}",
                    g.gamma
                );
                assert!(
                    close(g.vega, vega, 1e-6),
                    "{kind:?} {strike}: vega {} vs {vega}",
                    g.vega
                );
                assert!(close(g.rho, rho, 1e-5), "{kind:?} {strike}: rho {} vs {rho}", g.rho);
                assert!(
                    close(g.theta, theta, 1e-4),
                    "{kind:?} {strike}: theta {} vs {theta}",
                    g.theta
                );
            }
        }
    }

    #[test]
    fn put_call_relations_hold() {
        let (call, put) = (
            inputs(OptionType::Call, 21_500.0, 21_600.0, 0.05),
            inputs(OptionType::Put, 21_500.0, 21_600.0, 0.05),
        );
        let (gc, gp) = (greeks(&call, 0.17), greeks(&put, 0.17));
        assert!((gc.delta - gp.delta - (-0.012f64 * 0.05).exp()).abs() < 1e-12);
        assert!((gc.gamma - gp.gamma).abs() < 1e-15);
        assert!((gc.vega - gp.vega).abs() < 1e-12);
    }
}
