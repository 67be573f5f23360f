//! Implied volatility under Black–Scholes–Merton with a continuous dividend yield, and the
//! Greeks at that volatility (units in `docs/analytics.md`).
//!
//! Everything is solved on the out-of-the-money side of the strike (its undiscounted price
//! is the option's time value; the in-the-money side follows by put-call parity), in total
//! volatility s = σ√T. From a good starting point (the neighbouring strike's solution, or
//! the other option of the same strike) third-order Householder steps converge in one or
//! two evaluations; anything else falls back to Newton on log-price inside a bracket that
//! tightens on every evaluation, which converges for deep wings and minute expiries too.
//! Every answer is checked against the target price before it is returned.

use super::bsm::sign;
use super::normal::{norm_cdf_with_pdf, norm_pdf};
use chainflow_contract::OptionType;

/// Relative accuracy, in time value, at which a solution is accepted.
const TOLERANCE: f64 = 1e-12;
/// Householder steps tried from a starting point before the bracketed solver takes over.
const FAST_STEPS: usize = 6;
/// Years per calendar day: theta is quoted per day.
const PER_DAY: f64 = 1.0 / 365.0;
/// Evaluations of the bracketed solver, at most.
const SAFE_STEPS: usize = 100;

/// Greeks in the units of `docs/analytics.md`: per unit of underlying, theta per calendar day, vega per vol
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

/// An implied volatility with the Greeks at it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Solution {
    /// Implied volatility (annualised).
    pub sigma: f64,
    /// Greeks at `sigma`.
    pub greeks: Greeks,
    /// The evaluation the solution was accepted at (a start for the other option of the strike).
    pub point: Point,
}

/// The market of one chain: spot, time, rates and what follows from them, shared by every
/// option of the chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Valuation {
    spot: f64,
    t: f64,
    rate: f64,
    dividend_yield: f64,
    sqrt_t: f64,
    inv_sqrt_t: f64,
    inv_spot: f64,
    df_q: f64,
    df_r: f64,
    forward: f64,
}

/// One strike under a [`Valuation`]: the strike, its log-moneyness and which side is out of
/// the money.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Strike {
    /// K.
    k: f64,
    /// ln(F/K).
    x: f64,
    /// F/K, which turns φ(d1) into φ(d2).
    ratio: f64,
    /// +1 when the call is out of the money (K ≥ F), −1 when the put is.
    theta: f64,
}

impl Strike {
    /// ln(F/K), the log-moneyness.
    pub fn log_moneyness(&self) -> f64 {
        self.x
    }
}

/// The out-of-the-money option of a strike evaluated at total volatility `s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    s: f64,
    d1: f64,
    d2: f64,
    /// N(θ·d1).
    n1: f64,
    /// N(θ·d2).
    n2: f64,
    /// φ(d1).
    pdf: f64,
    /// Undiscounted price.
    price: f64,
}

impl Point {
    /// Total volatility σ√T of this point.
    pub fn total_vol(&self) -> f64 {
        self.s
    }
}

/// Where the solver starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Nothing known: a closed-form guess.
    Cold,
    /// An evaluation of the same strike: the other option's solution, or a guess from the
    /// neighbouring strikes ([`Valuation::evaluate`]).
    At(Point),
}

impl Valuation {
    /// The valuation of spot `spot` with `t` years to expiry at rate `rate` and dividend
    /// yield `dividend_yield` (both continuously compounded).
    pub fn new(spot: f64, t: f64, rate: f64, dividend_yield: f64) -> Self {
        let (df_q, df_r) = ((-dividend_yield * t).exp(), (-rate * t).exp());
        Self {
            spot,
            t,
            rate,
            dividend_yield,
            sqrt_t: t.max(0.0).sqrt(),
            inv_sqrt_t: 1.0 / t.max(0.0).sqrt(),
            inv_spot: 1.0 / spot,
            df_q,
            df_r,
            forward: spot * df_q / df_r,
        }
    }

    /// The forward F = S·e^((r−q)T).
    pub fn forward(&self) -> f64 {
        self.forward
    }

    /// The strike `k` under this valuation.
    pub fn strike(&self, k: f64) -> Strike {
        let ratio = self.forward / k;
        let x = ratio.ln();
        Strike {
            k,
            x,
            ratio,
            theta: if x <= 0.0 { 1.0 } else { -1.0 },
        }
    }

    /// The open interval of prices a `kind` option at strike `k` can have without arbitrage.
    pub fn bounds(&self, kind: OptionType, k: f64) -> (f64, f64) {
        let (carry, strike) = (self.spot * self.df_q, k * self.df_r);
        match kind {
            OptionType::Call => ((carry - strike).max(0.0), carry),
            OptionType::Put => ((strike - carry).max(0.0), strike),
        }
    }

    /// The volatility at which BSM reproduces `price`; `None` without time to expiry or when
    /// the price is at or beyond the no-arbitrage bounds.
    pub fn implied_vol(&self, kind: OptionType, k: f64, price: f64) -> Option<f64> {
        self.solve(kind, &self.strike(k), price, Start::Cold).map(|s| s.sigma)
    }

    /// The implied volatility of `price` and the Greeks at it, starting from `start`.
    pub fn solve(&self, kind: OptionType, k: &Strike, price: f64, start: Start) -> Option<Solution> {
        if !(self.t > 0.0 && price.is_finite() && self.spot > 0.0 && k.k > 0.0 && k.x.is_finite()) {
            return None;
        }
        let (lower, upper) = self.bounds(kind, k.k);
        if !(price > lower && price < upper) {
            return None;
        }
        // the out-of-the-money option's undiscounted price is the time value
        let target = (price - lower) / self.df_r;
        let point = self
            .householder(k, target, start)
            .or_else(|| self.bracketed(k, target))?;
        Some(Solution {
            sigma: point.s * self.inv_sqrt_t,
            greeks: self.greeks_at(kind, k, &point),
            point,
        })
    }

    /// Greeks of a `kind` option at strike `k` and volatility `sigma`.
    pub fn greeks(&self, kind: OptionType, k: f64, sigma: f64) -> Greeks {
        let k = self.strike(k);
        self.greeks_at(kind, &k, &self.evaluate(&k, sigma * self.sqrt_t))
    }

    /// The out-of-the-money option of `k` at total volatility `s` (σ√T): a starting point
    /// both options of the strike can share. One `exp` in all: φ(d2) = φ(d1)·F/K.
    #[inline]
    pub fn evaluate(&self, k: &Strike, s: f64) -> Point {
        let d1 = k.x / s + 0.5 * s;
        let d2 = d1 - s;
        let pdf = norm_pdf(d1);
        let n1 = norm_cdf_with_pdf(k.theta * d1, pdf);
        let n2 = norm_cdf_with_pdf(k.theta * d2, pdf * k.ratio);
        Point {
            s,
            d1,
            d2,
            n1,
            n2,
            pdf,
            price: k.theta * (self.forward * n1 - k.k * n2),
        }
    }

    /// Third-order Householder steps from `start`; `None` when they do not reach the target
    /// within [`FAST_STEPS`] evaluations. From a neighbour's solution the objective is the
    /// price itself; from a cold start it is ln(price), which stays nearly linear in the
    /// wings where the price is not.
    fn householder(&self, k: &Strike, target: f64, start: Start) -> Option<Point> {
        let (mut p, log) = match start {
            Start::At(p) if p.s.is_finite() && p.s > 0.0 => (p, false),
            _ => (self.evaluate(k, cold_guess(self.forward, k, target)), true),
        };
        let ln_target = if log { target.ln() } else { 0.0 };
        for _ in 0..FAST_STEPS {
            let err = p.price - target;
            if err.abs() <= TOLERANCE * target {
                return Some(p);
            }
            let vega = self.forward * p.pdf;
            // v'/v and v''/v of the price's derivative v in s
            let a = p.d1 * p.d2 / p.s;
            let b = a * a - 3.0 * k.x * k.x / (p.s * p.s * p.s * p.s) - 0.25;
            // the Newton step h, and the objective's second and third derivatives over its first
            let (h, gamma, delta) = if log {
                let g = vega / p.price;
                ((ln_target - p.price.ln()) / g, a - g, b - 3.0 * g * a + 2.0 * g * g)
            } else {
                (-err / vega, a, b)
            };
            let step = h * (1.0 + 0.5 * gamma * h) / (1.0 + h * (gamma + delta * h / 6.0));
            let next = p.s + step;
            if !(next.is_finite() && next > 0.0) {
                return None;
            }
            p = self.evaluate(k, next);
        }
        None
    }

    /// Newton on ln(price) inside a bracket that tightens on every evaluation: slower, but
    /// converges from anywhere.
    fn bracketed(&self, k: &Strike, target: f64) -> Option<Point> {
        let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
        let ln_target = target.ln();
        let mut s = cold_guess(self.forward, k, target);
        for _ in 0..SAFE_STEPS {
            let p = self.evaluate(k, s);
            let err = p.price - target;
            if err.abs() <= TOLERANCE * target {
                return Some(p);
            }
            if (hi - lo) <= 1e-15 * s {
                // the bracket cannot shrink further: accept only what the contract allows
                return (err.abs() <= 1e-9 * target).then_some(p);
            }
            if err > 0.0 {
                hi = s;
            } else {
                lo = s;
            }
            // ln p is close to linear in s far in the wings, where the price itself is not
            let vega = self.forward * p.pdf;
            let mut next = if p.price > 0.0 && vega > 0.0 {
                s - (p.price.ln() - ln_target) * p.price / vega
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
        let p = self.evaluate(k, s);
        ((p.price - target).abs() <= 1e-9 * target).then_some(p)
    }

    /// Greeks of a `kind` option at strike `k` from the evaluation `p` of that strike.
    fn greeks_at(&self, kind: OptionType, k: &Strike, p: &Point) -> Greeks {
        let w = sign(kind);
        // N(w·d1), N(w·d2): the evaluated side, or its complement
        let (nd1, nd2) = if w == k.theta {
            (p.n1, p.n2)
        } else {
            (1.0 - p.n1, 1.0 - p.n2)
        };
        let sigma = p.s * self.inv_sqrt_t;
        let carry = self.spot * self.df_q;
        let decay = -0.5 * carry * p.pdf * sigma * self.inv_sqrt_t;
        let strike_df = k.k * self.df_r;
        Greeks {
            delta: w * self.df_q * nd1,
            gamma: self.df_q * p.pdf * self.inv_spot / p.s,
            theta: (decay - w * self.rate * strike_df * nd2 + w * self.dividend_yield * carry * nd1) * PER_DAY,
            vega: carry * p.pdf * self.sqrt_t * 0.01,
            rho: w * strike_df * self.t * nd2 * 0.01,
        }
    }
}

/// A starting total volatility for an undiscounted out-of-the-money price `target`:
/// Corrado–Miller (on the call price, by parity) near the money; far in a wing, where its
/// square root has no real value, the leading order of ln(price) ≈ −x²/(2s²).
fn cold_guess(forward: f64, k: &Strike, target: f64) -> f64 {
    let (f, strike) = (forward, k.k);
    let call = if k.theta > 0.0 { target } else { target + f - strike };
    let a = call - 0.5 * (f - strike);
    let disc = a * a - (f - strike) * (f - strike) / std::f64::consts::PI;
    let near = (2.0 * std::f64::consts::PI).sqrt() / (f + strike) * (a + disc.max(0.0).sqrt());
    let guess = if disc >= 0.0 && near > 0.0 {
        near
    } else {
        k.x.abs() / (2.0 * ((f * strike).sqrt() / target).ln()).sqrt()
    };
    if guess.is_finite() && guess > 0.0 {
        guess.clamp(1e-8, 20.0)
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bsm::price;

    const R: f64 = 0.065;
    const Q: f64 = 0.012;

    fn value(kind: OptionType, spot: f64, strike: f64, t: f64, sigma: f64) -> f64 {
        price(kind, spot, strike, t, R, Q, sigma)
    }

    #[test]
    fn round_trip_across_moneyness_expiry_and_vol() {
        let mut checked = 0;
        for kind in [OptionType::Call, OptionType::Put] {
            for moneyness in [0.5, 0.8, 0.95, 1.0, 1.05, 1.25, 2.0] {
                for t in [10.0 / (365.0 * 24.0 * 60.0), 1.0 / 365.0, 0.02, 0.25, 1.0, 2.0] {
                    let v = Valuation::new(21_500.0, t, R, Q);
                    let strike = 21_500.0 * moneyness;
                    for sigma in [0.01, 0.05, 0.15, 0.4, 1.0, 3.0] {
                        let p = value(kind, 21_500.0, strike, t, sigma);
                        let time_value = p - v.bounds(kind, strike).0;
                        // prices indistinguishable from the bounds carry no volatility information
                        if time_value <= 1e-10 * p.max(1.0) {
                            continue;
                        }
                        let iv = v
                            .implied_vol(kind, strike, p)
                            .unwrap_or_else(|| panic!("no IV for {kind:?} K={strike} T={t} σ={sigma}, p={p}"));
                        let back = value(kind, 21_500.0, strike, t, iv);
                        // 1e-9 of the time value, or 1e-12, but never below a few ulps of the
                        // formula's terms: neither the input nor the recomputation resolves more
                        let terms = 21_500.0 * (-Q * t).exp() + strike * (-R * t).exp();
                        let tolerance = (1e-9 * time_value).max(1e-12).max(4.0 * f64::EPSILON * terms);
                        assert!(
                            (back - p).abs() <= tolerance,
                            "{kind:?} K={strike} T={t} σ={sigma}: solved {iv}, price {back} vs {p} (time value {time_value})"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 300, "{checked}");
    }

    #[test]
    fn every_start_reaches_the_same_solution() {
        let v = Valuation::new(21_500.0, 0.05, R, Q);
        let k = v.strike(22_400.0);
        let p = value(OptionType::Call, 21_500.0, 22_400.0, 0.05, 0.23);
        let cold = v.solve(OptionType::Call, &k, p, Start::Cold).unwrap();
        for start in [
            Start::At(v.evaluate(&k, 0.2 * 0.05f64.sqrt())),
            Start::At(v.evaluate(&k, 1e-6)),
            Start::At(v.evaluate(&k, 50.0)),
            Start::At(cold.point),
        ] {
            let s = v.solve(OptionType::Call, &k, p, start).unwrap();
            assert!((s.sigma - 0.23).abs() < 1e-10, "{start:?}: {}", s.sigma);
            assert!((s.sigma - cold.sigma).abs() < 1e-10);
        }
        // the put of the same strike from the call's solution: parity-consistent prices
        // give the same volatility
        let put = value(OptionType::Put, 21_500.0, 22_400.0, 0.05, 0.23);
        let s = v.solve(OptionType::Put, &k, put, Start::At(cold.point)).unwrap();
        assert!((s.sigma - 0.23).abs() < 1e-10, "{}", s.sigma);
    }

    #[test]
    fn prices_at_or_beyond_the_bounds_have_no_iv() {
        let v = Valuation::new(100.0, 0.5, R, Q);
        let upper = 100.0 * (-Q * 0.5).exp();
        assert_eq!(v.implied_vol(OptionType::Call, 100.0, upper), None);
        assert_eq!(v.implied_vol(OptionType::Call, 100.0, upper + 1.0), None);
        assert_eq!(v.implied_vol(OptionType::Call, 100.0, 0.0), None);
        assert_eq!(v.implied_vol(OptionType::Call, 100.0, -1.0), None);
        assert_eq!(v.implied_vol(OptionType::Call, 100.0, f64::NAN), None);
        let lower = 150.0 * (-R * 0.5).exp() - 100.0 * (-Q * 0.5).exp();
        assert_eq!(v.implied_vol(OptionType::Put, 150.0, lower), None);
        assert_eq!(v.implied_vol(OptionType::Put, 150.0, 150.0), None);
        for t in [0.0, -0.1] {
            assert_eq!(
                Valuation::new(100.0, t, R, Q).implied_vol(OptionType::Call, 100.0, 5.0),
                None
            );
        }
    }

    #[test]
    fn greeks_match_finite_differences_of_the_price() {
        for kind in [OptionType::Call, OptionType::Put] {
            for strike in [18_000.0, 21_500.0, 25_000.0] {
                let (s, t, sigma) = (21_500.0, 0.1, 0.2);
                let g = Valuation::new(s, t, R, Q).greeks(kind, strike, sigma);
                let v = |s: f64, t: f64, r: f64, sigma: f64| price(kind, s, strike, t, r, Q, sigma);
                let h = 0.5;
                let delta = (v(s + h, t, R, sigma) - v(s - h, t, R, sigma)) / (2.0 * h);
                let gamma = (v(s + h, t, R, sigma) - 2.0 * v(s, t, R, sigma) + v(s - h, t, R, sigma)) / (h * h);
                let vega = (v(s, t, R, sigma + 1e-5) - v(s, t, R, sigma - 1e-5)) / 2e-5 * 0.01;
                let rho = (v(s, t, R + 1e-6, sigma) - v(s, t, R - 1e-6, sigma)) / 2e-6 * 0.01;
                let theta = -(v(s, t + 1e-6, R, sigma) - v(s, t - 1e-6, R, sigma)) / 2e-6 / 365.0;
                let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1e-3);
                let at = format!("{kind:?} {strike}");
                assert!(close(g.delta, delta, 1e-6), "{at}: delta {} vs {delta}", g.delta);
                assert!(close(g.gamma, gamma, 1e-3), "{at}: gamma {} vs {gamma}", g.gamma);
                assert!(close(g.vega, vega, 1e-6), "{at}: vega {} vs {vega}", g.vega);
                assert!(close(g.rho, rho, 1e-5), "{at}: rho {} vs {rho}", g.rho);
                assert!(close(g.theta, theta, 1e-4), "{at}: theta {} vs {theta}", g.theta);
            }
        }
    }

    #[test]
    fn the_solution_carries_the_greeks_at_the_solved_vol() {
        let v = Valuation::new(21_500.0, 0.05, R, Q);
        for (kind, strike) in [
            (OptionType::Call, 21_000.0),
            (OptionType::Put, 21_000.0),
            (OptionType::Call, 23_000.0),
        ] {
            let p = value(kind, 21_500.0, strike, 0.05, 0.18);
            let s = v.solve(kind, &v.strike(strike), p, Start::Cold).unwrap();
            let g = v.greeks(kind, strike, s.sigma);
            for (a, b) in [
                (s.greeks.delta, g.delta),
                (s.greeks.gamma, g.gamma),
                (s.greeks.theta, g.theta),
                (s.greeks.vega, g.vega),
                (s.greeks.rho, g.rho),
            ] {
                assert!(
                    (a - b).abs() <= 1e-13 * b.abs().max(1e-6),
                    "{kind:?} {strike}: {a} vs {b}"
                );
            }
        }
    }
}
