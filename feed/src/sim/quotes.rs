//! Quotes of one expiry from fair prices: rounded to the tick so that, after rounding, mid
//! prices still fall (calls) or rise (puts) with strike and stay convex in strike, every
//! bid is positive, and bid-ask spreads widen away from the money.

use chainflow_contract::Quote;

/// Price tick of option quotes.
pub const TICK: f64 = 1.0 / TICKS_PER_POINT;
/// Ticks per point: a tick count over this is the price, correctly rounded (3 ticks are
/// 0.15, not 0.15000000000000002).
const TICKS_PER_POINT: f64 = 20.0;

fn price(ticks: i64) -> f64 {
    ticks as f64 / TICKS_PER_POINT
}

/// Tick counts for a sequence of target prices (in ticks) that is meant to be convex and
/// non-increasing: each step is the rounded target step, but never steeper than the one
/// before (convexity), never upward (monotonicity), and never below one tick (positivity).
/// The result tracks the targets within a tick or two, wherever they are themselves convex.
pub fn convex_ticks(targets: impl IntoIterator<Item = f64>, out: &mut Vec<i64>) {
    out.clear();
    let mut step = i64::MIN;
    for target in targets {
        let wanted = (target.round() as i64).max(1);
        match out.last().copied() {
            None => out.push(wanted),
            Some(last) => {
                step = (wanted - last).max(step).max(1 - last).min(0);
                out.push(last + step);
            }
        }
    }
}

/// How one option's quote is drawn around its mid.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// Half-spread relative to the mid (already widened for the distance from the money).
    pub relative: f64,
}

/// The quote of an option whose mid is `mid` ticks: bid and ask at least two ticks either
/// side (a relative spread capped at a quarter of the mid), the bid never below one tick.
pub fn quote(mid: i64, spread: Spread, volume: i64, oi: i64, oi_change: i64, iv: f64) -> Quote {
    let half = ((spread.relative.min(0.25) * mid as f64).round() as i64).max(2);
    Quote {
        bid: price((mid - half).max(1)),
        ask: price(mid + half),
        last: price(mid),
        volume,
        oi,
        oi_change,
        iv: Some(iv),
    }
}

/// The quote of an option at its exact fair price (no tick, no spread): for checking the
/// analytics against the simulator's own surface.
pub fn exact(fair: f64, volume: i64, oi: i64, oi_change: i64, iv: f64) -> Quote {
    Quote {
        bid: fair,
        ask: fair,
        last: fair,
        volume,
        oi,
        oi_change,
        iv: Some(iv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second_differences(v: &[i64]) -> Vec<i64> {
        v.windows(3).map(|w| w[0] - 2 * w[1] + w[2]).collect()
    }

    #[test]
    fn rounding_keeps_a_convex_decreasing_sequence_convex_decreasing_and_close() {
        // a call-price curve that flattens into the minimum tick, with rounding ties
        let fair: Vec<f64> = (0..41)
            .map(|i| 900.0 * (-f64::from(i) / 4.0).exp() + 0.3 * f64::from((20 - i).max(0)))
            .collect();
        let mut ticks = Vec::new();
        convex_ticks(fair.iter().map(|p| p / TICK), &mut ticks);
        assert!(second_differences(&ticks).iter().all(|&d| d >= 0), "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[1] <= w[0]) && ticks.iter().all(|&t| t >= 1));
        for (t, f) in ticks.iter().zip(&fair) {
            assert!((*t as f64 * TICK - f.max(TICK)).abs() <= 2.0 * TICK, "{t} vs {f}");
        }
    }

    #[test]
    fn a_non_convex_target_is_made_convex() {
        let mut ticks = Vec::new();
        convex_ticks([100.0, 90.0, 89.6, 70.0, 69.0, 1.0, 3.0], &mut ticks);
        assert!(second_differences(&ticks).iter().all(|&d| d >= 0), "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn quotes_keep_a_positive_bid_and_a_convex_mid() {
        let spread = Spread { relative: 0.01 };
        let q = quote(1, spread, 0, 0, 0, 0.2);
        assert_eq!((q.bid, q.ask, q.last), (0.05, 0.15, 0.05));
        let q = quote(10_000, spread, 0, 0, 0, 0.2);
        assert_eq!((q.bid / TICK, q.ask / TICK), (9_900.0, 10_100.0));
        // the mids of consecutive tick counts stay convex through the bid floor
        let mids: Vec<f64> = (1..8)
            .map(|m| quote(m, spread, 0, 0, 0, 0.2))
            .map(|q| f64::midpoint(q.bid, q.ask))
            .collect();
        assert!(mids.windows(3).all(|w| w[0] - 2.0 * w[1] + w[2] >= -1e-12), "{mids:?}");
    }
}
