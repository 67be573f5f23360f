//! Black–Scholes–Merton prices with a continuous dividend yield.

use super::normal::norm_cdf;
use chainflow_contract::OptionType;

/// +1 for a call, −1 for a put.
#[inline]
pub fn sign(kind: OptionType) -> f64 {
    match kind {
        OptionType::Call => 1.0,
        OptionType::Put => -1.0,
    }
}

/// Price of a European option: spot `s`, strike `k`, years `t`, rate `r`, dividend
/// yield `q`, volatility `sigma`. At `t ≤ 0` or `sigma ≤ 0` it is the discounted
/// intrinsic value of the forward.
pub fn price(kind: OptionType, s: f64, k: f64, t: f64, r: f64, q: f64, sigma: f64) -> f64 {
    let (df_q, df_r) = ((-q * t.max(0.0)).exp(), (-r * t.max(0.0)).exp());
    let w = sign(kind);
    if t <= 0.0 || sigma <= 0.0 {
        return (w * (s * df_q - k * df_r)).max(0.0);
    }
    let vol = sigma * t.sqrt();
    let d1 = ((s / k).ln() + (r - q + 0.5 * sigma * sigma) * t) / vol;
    let d2 = d1 - vol;
    w * (s * df_q * norm_cdf(w * d1) - k * df_r * norm_cdf(w * d2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_value_and_put_call_parity() {
        // Hull, Options, Futures and Other Derivatives: S=42, K=40, r=10%, σ=20%, T=0.5 → c=4.76, p=0.81
        let c = price(OptionType::Call, 42.0, 40.0, 0.5, 0.1, 0.0, 0.2);
        let p = price(OptionType::Put, 42.0, 40.0, 0.5, 0.1, 0.0, 0.2);
        assert!((c - 4.7594).abs() < 1e-4, "{c}");
        assert!((p - 0.8086).abs() < 1e-4, "{p}");
        let (s, k, t, r, q) = (21_543.25, 21_600.0, 0.02, 0.065, 0.012);
        let c = price(OptionType::Call, s, k, t, r, q, 0.14);
        let p = price(OptionType::Put, s, k, t, r, q, 0.14);
        assert!((c - p - (s * (-q * t).exp() - k * (-r * t).exp())).abs() < 1e-9);
    }
}
