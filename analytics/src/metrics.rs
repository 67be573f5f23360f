//! Chain-level metrics: put-call ratios, ATM, straddle, max pain, OI totals and build-up.

use chainflow_contract::{ChainMetrics, EnrichedOption, EnrichedStrike};

fn ratio(num: i64, den: i64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

/// Computes the metrics of a non-empty chain whose strikes are sorted and unique, with its
/// spot and forward.
pub fn chain_metrics(spot: f64, forward: f64, strikes: &[EnrichedStrike]) -> ChainMetrics {
    let (mut call_oi, mut put_oi, mut call_vol, mut put_vol) = (0i64, 0i64, 0i64, 0i64);
    let (mut call_otm, mut put_otm, mut call_build, mut put_build) = (0i64, 0i64, 0i64, 0i64);
    // saturating: counts come from the feed, and absurd ones must not wrap or panic
    for s in strikes {
        call_oi = call_oi.saturating_add(s.call.oi);
        put_oi = put_oi.saturating_add(s.put.oi);
        call_vol = call_vol.saturating_add(s.call.volume);
        put_vol = put_vol.saturating_add(s.put.volume);
        if s.strike > spot {
            call_otm = call_otm.saturating_add(s.call.oi);
            call_build = call_build.saturating_add(s.call.oi_change);
        } else if s.strike < spot {
            put_otm = put_otm.saturating_add(s.put.oi);
            put_build = put_build.saturating_add(s.put.oi_change);
        }
    }
    let atm = atm_index(spot, strikes);
    let straddle = match (strikes[atm].call.price, strikes[atm].put.price) {
        (Some(c), Some(p)) => Some(c + p),
        _ => None,
    };
    ChainMetrics {
        pcr_oi: ratio(put_oi, call_oi),
        pcr_volume: ratio(put_vol, call_vol),
        atm_strike: strikes[atm].strike,
        atm_straddle_price: straddle,
        max_pain_strike: max_pain(strikes),
        total_call_oi: call_oi,
        total_put_oi: put_oi,
        call_oi_otm: call_otm,
        put_oi_otm: put_otm,
        call_buildup_otm: call_build,
        put_buildup_otm: put_build,
        atm_iv: atm_iv(forward, strikes),
        iv_skew_25d: skew_25d(spot, strikes),
    }
}

/// A strike's IV: the mean of its call and put IVs, or the one there is.
fn strike_iv(s: &EnrichedStrike) -> Option<f64> {
    match (s.call.iv, s.put.iv) {
        (Some(c), Some(p)) => Some(0.5 * (c + p)),
        (c, p) => c.or(p),
    }
}

/// Linear interpolation at `x` between (x0, y0) and (x1, y1).
fn lerp(x: f64, (x0, y0): (f64, f64), (x1, y1): (f64, f64)) -> f64 {
    if x1 == x0 {
        y0
    } else {
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }
}

/// IV at `forward`, linear in strike between the nearest strikes with an IV at or below
/// and at or above it; none outside the strikes that have one.
pub fn atm_iv(forward: f64, strikes: &[EnrichedStrike]) -> Option<f64> {
    let split = strikes.partition_point(|s| s.strike <= forward);
    let below = strikes[..split]
        .iter()
        .rev()
        .find_map(|s| strike_iv(s).map(|iv| (s.strike, iv)))?;
    if below.0 == forward {
        return Some(below.1);
    }
    let above = strikes[split..]
        .iter()
        .find_map(|s| strike_iv(s).map(|iv| (s.strike, iv)))?;
    Some(lerp(forward, below, above))
}

/// σ at `target` delta, linear in delta between the first two consecutive options of
/// `options` (delta, iv), ordered from the money outward, whose deltas bracket it.
fn vol_at_delta(target: f64, options: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let mut previous: Option<(f64, f64)> = None;
    for point in options {
        if let Some(p) = previous {
            if (p.0 - target) * (point.0 - target) <= 0.0 {
                return Some(lerp(target, p, point));
            }
        }
        previous = Some(point);
    }
    None
}

/// σ(25Δ put) − σ(25Δ call) over the out-of-the-money options (puts below spot, calls
/// above) that have a delta and an IV.
pub fn skew_25d(spot: f64, strikes: &[EnrichedStrike]) -> Option<f64> {
    let greeks = |o: &EnrichedOption| o.delta.zip(o.iv);
    let split = strikes.partition_point(|s| s.strike < spot);
    let put = vol_at_delta(-0.25, strikes[..split].iter().rev().filter_map(|s| greeks(&s.put)))?;
    let above = strikes[split..].iter().skip_while(|s| s.strike == spot);
    let call = vol_at_delta(0.25, above.filter_map(|s| greeks(&s.call)))?;
    Some(put - call)
}

/// Index of the strike nearest to `spot` (tie → the lower strike).
pub fn atm_index(spot: f64, strikes: &[EnrichedStrike]) -> usize {
    let upper = strikes.partition_point(|s| s.strike < spot);
    if upper == 0 {
        return 0;
    }
    if upper == strikes.len() {
        return strikes.len() - 1;
    }
    let lower = upper - 1;
    if strikes[upper].strike - spot < spot - strikes[lower].strike {
        upper
    } else {
        lower
    }
}

/// The strike K minimising Σ callOI·max(0, K − Kᵢ) + putOI·max(0, Kᵢ − K), in O(n) with
/// prefix sums; the lower strike on a tie; none when all OI is zero.
pub fn max_pain(strikes: &[EnrichedStrike]) -> Option<f64> {
    if strikes.iter().all(|s| s.call.oi == 0 && s.put.oi == 0) {
        return None;
    }
    // Puts above K pay Σ putOIᵢ·Kᵢ − K·Σ putOIᵢ over i > j: start from the full sums.
    let (mut put_oi_above, mut put_value_above) = strikes.iter().fold((0.0, 0.0), |(n, v), s| {
        (n + s.put.oi as f64, v + s.put.oi as f64 * s.strike)
    });
    let (mut call_oi_below, mut call_value_below) = (0.0, 0.0);
    let mut best: Option<(f64, f64)> = None;
    for s in strikes {
        let k = s.strike;
        put_oi_above -= s.put.oi as f64;
        put_value_above -= s.put.oi as f64 * k;
        let pain = (k * call_oi_below - call_value_below) + (put_value_above - k * put_oi_above);
        if best.is_none_or(|(_, p)| pain < p) {
            best = Some((k, pain));
        }
        call_oi_below += s.call.oi as f64;
        call_value_below += s.call.oi as f64 * k;
    }
    best.map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_contract::{OptionAnalytics, PriceSource};

    fn opt(oi: i64, volume: i64, oi_change: i64, price: Option<f64>) -> EnrichedOption {
        let none = OptionAnalytics::default();
        chainflow_contract::option_analytics!(chainflow_contract::literal_with_fields [
            EnrichedOption,
            none,
            {
                bid: 0.0,
                ask: 0.0,
                last: 0.0,
                volume,
                oi,
                oi_change,
                feed_iv: None,
                price,
                price_source: if price.is_some() {
                    PriceSource::Mid
                } else {
                    PriceSource::None
                },
            }
        ])
    }

    fn strike(k: f64, call_oi: i64, put_oi: i64) -> EnrichedStrike {
        EnrichedStrike {
            strike: k,
            call: opt(call_oi, 0, 0, Some(1.0)),
            put: opt(put_oi, 0, 0, Some(2.0)),
        }
    }

    /// Straightforward O(n²) evaluation of the max-pain definition.
    fn brute_force_max_pain(strikes: &[EnrichedStrike]) -> Option<f64> {
        let pain = |k: f64| -> f64 {
            strikes
                .iter()
                .map(|s| s.call.oi as f64 * (k - s.strike).max(0.0) + s.put.oi as f64 * (s.strike - k).max(0.0))
                .sum()
        };
        let mut best: Option<(f64, f64)> = None;
        for s in strikes {
            let p = pain(s.strike);
            if best.is_none_or(|(_, b)| p < b) {
                best = Some((s.strike, p));
            }
        }
        strikes
            .iter()
            .any(|s| s.call.oi + s.put.oi > 0)
            .then(|| best.unwrap().0)
    }

    #[test]
    fn seed_worked_example() {
        // the worked example of docs/analytics.md: total_put_oi 5,117,000 / total_call_oi 5,000,000 → 1.0234;
        // spot 21,543.25 with 50-point strikes → ATM 21,550.
        let strikes: Vec<EnrichedStrike> = (0..5)
            .map(|i| {
                strike(
                    21_450.0 + 50.0 * f64::from(i),
                    1_000_000,
                    if i == 0 { 1_117_000 } else { 1_000_000 },
                )
            })
            .collect();
        let m = chain_metrics(21_543.25, 21_543.25, &strikes);
        assert_eq!(m.total_call_oi, 5_000_000);
        assert_eq!(m.total_put_oi, 5_117_000);
        assert!((m.pcr_oi.unwrap() - 1.0234).abs() < 1e-12);
        assert_eq!(m.atm_strike, 21_550.0);
        assert_eq!(m.atm_straddle_price, Some(3.0));
    }

    #[test]
    fn atm_tie_takes_the_lower_strike_and_ends_clamp() {
        let strikes: Vec<EnrichedStrike> = [100.0, 110.0, 120.0].iter().map(|&k| strike(k, 1, 1)).collect();
        assert_eq!(atm_index(105.0, &strikes), 0);
        assert_eq!(atm_index(105.1, &strikes), 1);
        assert_eq!(atm_index(50.0, &strikes), 0);
        assert_eq!(atm_index(500.0, &strikes), 2);
        assert_eq!(atm_index(110.0, &strikes), 1);
    }

    #[test]
    fn otm_sums_and_buildup_use_strikes_beyond_spot() {
        let mut strikes: Vec<EnrichedStrike> = [90.0, 100.0, 110.0].iter().map(|&k| strike(k, 10, 20)).collect();
        strikes[0].put.oi_change = -5;
        strikes[2].call.oi_change = 7;
        strikes[1].call.oi_change = 1000; // at the money: neither side's OTM
        let m = chain_metrics(100.0, 100.0, &strikes);
        assert_eq!((m.call_oi_otm, m.put_oi_otm), (10, 20));
        assert_eq!((m.call_buildup_otm, m.put_buildup_otm), (7, -5));
    }

    #[test]
    fn absurd_counts_saturate_instead_of_wrapping() {
        let strikes = vec![strike(100.0, i64::MAX, 1), strike(110.0, i64::MAX, 1)];
        let m = chain_metrics(100.0, 100.0, &strikes);
        assert_eq!(m.total_call_oi, i64::MAX);
        assert_eq!(m.call_oi_otm, i64::MAX);
    }

    #[test]
    fn zero_denominators_and_zero_oi_give_none() {
        let strikes = vec![strike(100.0, 0, 0)];
        let m = chain_metrics(100.0, 100.0, &strikes);
        assert_eq!((m.pcr_oi, m.pcr_volume, m.max_pain_strike), (None, None, None));
    }

    #[test]
    fn max_pain_matches_brute_force_and_breaks_ties_low() {
        let strikes: Vec<EnrichedStrike> = [(100.0, 5, 0), (110.0, 0, 0), (120.0, 0, 5)]
            .iter()
            .map(|&(k, c, p)| strike(k, c, p))
            .collect();
        // pain(100)=50·... symmetric: 100 → 100, 110 → 100, 120 → 100: tie → lowest
        assert_eq!(max_pain(&strikes), brute_force_max_pain(&strikes));
        assert_eq!(max_pain(&strikes), Some(100.0));
        let mut seed = 7u64;
        for _ in 0..200 {
            let n = 1 + (seed % 41) as usize;
            let strikes: Vec<EnrichedStrike> = (0..n)
                .map(|i| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    strike(
                        1000.0 + 50.0 * i as f64,
                        ((seed >> 20) % 1000) as i64,
                        ((seed >> 40) % 1000) as i64,
                    )
                })
                .collect();
            assert_eq!(max_pain(&strikes), brute_force_max_pain(&strikes));
        }
    }

    fn with_vol(k: f64, call: Option<(f64, f64)>, put: Option<(f64, f64)>) -> EnrichedStrike {
        let mut s = strike(k, 1, 1);
        (s.call.delta, s.call.iv) = call.unzip();
        (s.put.delta, s.put.iv) = put.unzip();
        s
    }

    #[test]
    fn atm_iv_interpolates_in_strike_at_the_forward() {
        let strikes = vec![
            with_vol(100.0, Some((0.6, 0.20)), Some((-0.4, 0.22))), // strike IV 0.21
            with_vol(110.0, None, None),                            // no IV: skipped
            with_vol(120.0, Some((0.3, 0.18)), None),               // strike IV 0.18
        ];
        // F = 105 is a quarter of the way from 100 to 120
        assert!((atm_iv(105.0, &strikes).unwrap() - (0.21 - 0.03 * 0.25)).abs() < 1e-15);
        assert_eq!(atm_iv(100.0, &strikes), Some(0.5 * (0.20 + 0.22)));
        assert_eq!(atm_iv(120.0, &strikes), Some(0.18));
        assert_eq!(atm_iv(99.0, &strikes), None);
        assert_eq!(atm_iv(121.0, &strikes), None);
    }

    #[test]
    fn skew_interpolates_in_delta_over_out_of_the_money_options() {
        let strikes = vec![
            with_vol(80.0, None, Some((-0.10, 0.30))),
            with_vol(90.0, None, Some((-0.20, 0.26))),
            with_vol(95.0, None, Some((-0.30, 0.24))),
            // at the money: neither side counts, whatever its deltas
            with_vol(100.0, Some((0.25, 0.90)), Some((-0.25, 0.90))),
            with_vol(105.0, Some((0.35, 0.19)), None),
            with_vol(110.0, Some((0.15, 0.17)), None),
        ];
        // put: halfway between -0.20 (0.26) and -0.30 (0.24) → 0.25;
        // call: halfway between 0.35 (0.19) and 0.15 (0.17) → 0.18
        let skew = skew_25d(100.0, &strikes).unwrap();
        assert!((skew - 0.07).abs() < 1e-15, "{skew}");
        // no call reaches 0.25 delta: not bracketed
        assert_eq!(skew_25d(100.0, &strikes[..5]), None);
    }
}
