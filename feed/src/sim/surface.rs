//! The implied-volatility surface the simulator prices options on: an ATM term structure
//! from a mean-reverting forward variance, plus a skewed smile in total variance that
//! grows with expiry. Both parts of the total variance w(x, τ) are non-decreasing in τ at
//! fixed log-moneyness x = ln(K/F), so the surface is free of calendar arbitrage, and the
//! smile's wings grow at most linearly in x (SVI-like), within Lee's moment bound.

/// Long-run ATM volatility relative to a product's normal level.
const LONG_RUN: f64 = 0.17 / 0.15;
/// Years over which forward variance reverts from the short-term level to the long run.
const REVERSION_YEARS: f64 = 30.0 / 365.0;
/// Smile amplitude (total variance per unit of h(x)) at long expiries, for a normal market.
const SMILE: f64 = 0.027;
/// Skew: the correlation-like parameter of the SVI wings (negative: puts dearer).
const RHO: f64 = -0.6;
/// Smoothness of the smile at the money, in log-moneyness.
const ROUNDNESS: f64 = 0.01;

/// The surface of one product at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Surface {
    /// Short-term ATM volatility (the volatility index times the product's beta).
    short: f64,
    /// Long-run ATM volatility.
    long: f64,
    /// Smile amplitude.
    smile: f64,
}

/// The smile's shape: ≥ 0 everywhere, 0 at its minimum, linear wings (slopes 1 ± ρ).
fn wings(x: f64) -> f64 {
    RHO * x + (x * x + ROUNDNESS * ROUNDNESS).sqrt() - ROUNDNESS * (1.0 - RHO * RHO).sqrt()
}

impl Surface {
    /// The surface when the volatility index is `vol_index` (0.15 = 15) for a product that
    /// moves `beta` times the index. Stress steepens the smile with the index.
    pub fn new(vol_index: f64, beta: f64) -> Self {
        Self {
            short: vol_index * beta,
            long: 0.15 * LONG_RUN * beta,
            smile: SMILE * (vol_index / 0.15),
        }
    }

    /// ATM total variance σ²τ at `tau` years: ∫₀^τ of a forward variance that reverts from
    /// the short-term level to the long run.
    pub fn atm_total_variance(&self, tau: f64) -> f64 {
        let (s2, l2) = (self.short * self.short, self.long * self.long);
        l2 * tau + (s2 - l2) * REVERSION_YEARS * (1.0 - (-tau / REVERSION_YEARS).exp())
    }

    /// Total variance at log-moneyness `x` = ln(K/F) and `tau` years.
    pub fn total_variance(&self, x: f64, tau: f64) -> f64 {
        let grown = self.smile * (1.0 - (-tau / REVERSION_YEARS).exp());
        self.atm_total_variance(tau) + grown * wings(x)
    }

    /// Implied volatility at log-moneyness `x` and `tau` years (> 0).
    pub fn vol(&self, x: f64, tau: f64) -> f64 {
        (self.total_variance(x, tau) / tau).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_variance_never_falls_with_expiry_in_any_regime() {
        for vol_index in [0.10, 0.15, 0.40, 0.80] {
            let s = Surface::new(vol_index, 1.3);
            for i in -60..=60 {
                let x = f64::from(i) * 0.01;
                let mut previous = 0.0;
                for day in 1..=730 {
                    let tau = f64::from(day) / 365.0 / 24.0 * 6.0; // 6-hour steps out to six months
                    let w = s.total_variance(x, tau);
                    assert!(
                        w >= previous && w > 0.0,
                        "vix {vol_index} x {x} τ {tau}: {w} < {previous}"
                    );
                    previous = w;
                }
            }
        }
    }

    #[test]
    fn the_smile_is_skewed_to_puts_and_the_term_structure_inverts_in_stress() {
        let calm = Surface::new(0.15, 1.0);
        let tau = 7.0 / 365.0;
        let (put, atm, call) = (calm.vol(-0.05, tau), calm.vol(0.0, tau), calm.vol(0.05, tau));
        assert!(put > call && call > atm * 0.95 && put > atm, "{put} {atm} {call}");
        assert!((atm - 0.15).abs() < 0.01, "{atm}");
        // calm: upward sloping; stressed: short expiries far above long ones
        assert!(calm.vol(0.0, 1.0) > calm.vol(0.0, 1.0 / 365.0));
        let stressed = Surface::new(0.80, 1.0);
        assert!(stressed.vol(0.0, 1.0 / 365.0) > 0.75 && stressed.vol(0.0, 1.0) < 0.5);
    }
}
