//! Per-option analytics of a whole chain: prices chosen, then implied volatilities and
//! Greeks solved outward from the forward, each strike starting from what its neighbours
//! gave, so that most options need one or two evaluations of the normal CDF pair.

use super::price::select_price;
use crate::iv::{Solution, Start, Valuation};
use chainflow_contract::{EnrichedOption, EnrichedStrike, OptionAnalytics, OptionType, Quote, StrikeQuotes};

/// The enriched form of `q` with its price choice and no analytics yet.
fn priced(q: &Quote) -> EnrichedOption {
    let choice = select_price(q);
    let none = OptionAnalytics::default();
    chainflow_contract::option_quote!(chainflow_contract::then [chainflow_contract::option_analytics, chainflow_contract::literal_with_two_lists [
        EnrichedOption,
        q,
        none,
        {
            feed_iv: q.iv,
            price: choice.price,
            price_source: choice.source,
        }
    ]])
}

fn fill(o: &mut EnrichedOption, s: &Solution) {
    o.iv = Some(s.sigma);
    o.delta = Some(s.greeks.delta);
    o.gamma = Some(s.greeks.gamma);
    o.theta = Some(s.greeks.theta);
    o.vega = Some(s.greeks.vega);
    o.rho = Some(s.greeks.rho);
}

/// The last two solved strikes of a walk, as (log-moneyness, total vol), nearest first.
#[derive(Debug, Clone, Copy, Default)]
struct Trail {
    near: Option<(f64, f64)>,
    far: Option<(f64, f64)>,
}

impl Trail {
    /// The total vol to start from at log-moneyness `x`: the smile extrapolated linearly
    /// from the last two solutions (kept within a factor of two of the nearest), or the
    /// nearest one; none before the first solution.
    fn guess(&self, x: f64) -> Option<f64> {
        match (self.near, self.far) {
            (Some((x1, s1)), Some((x0, s0))) if x1 != x0 => {
                Some((s1 + (s1 - s0) / (x1 - x0) * (x - x1)).clamp(0.5 * s1, 2.0 * s1))
            }
            (Some((_, s1)), _) => Some(s1),
            _ => None,
        }
    }

    /// The same two points seen from the other side.
    fn reversed(self) -> Self {
        match self.far {
            Some(_) => Self {
                near: self.far,
                far: self.near,
            },
            None => self,
        }
    }

    /// Solves `strike` from this trail and extends the trail with its solution.
    fn advance(&mut self, v: &Valuation, strike: &mut EnrichedStrike) {
        if let Some((x, total_vol)) = solve_strike(v, strike, self) {
            self.push(x, total_vol);
        }
    }

    fn push(&mut self, x: f64, s: f64) {
        self.far = self.near;
        self.near = Some((x, s));
    }
}

fn side(o: &mut EnrichedStrike, kind: OptionType) -> &mut EnrichedOption {
    match kind {
        OptionType::Call => &mut o.call,
        OptionType::Put => &mut o.put,
    }
}

/// Solves both options of one strike. With a guess from the neighbours, both start from
/// one shared evaluation and go on independently (the processor overlaps the two); the
/// first strike of a walk solves the out-of-the-money option from a closed-form guess and
/// starts the other from its solution. Returns the point to continue the walk from:
/// (log-moneyness, total vol of the out-of-the-money option, or else the other one).
fn solve_strike(v: &Valuation, out: &mut EnrichedStrike, trail: &Trail) -> Option<(f64, f64)> {
    let k = v.strike(out.strike);
    let x = k.log_moneyness();
    let (otm, itm) = if x <= 0.0 {
        (OptionType::Call, OptionType::Put)
    } else {
        (OptionType::Put, OptionType::Call)
    };
    let (a, b) = if let Some(s) = trail.guess(x) {
        let start = Start::At(v.evaluate(&k, s));
        let a = side(out, otm).price.and_then(|p| v.solve(otm, &k, p, start));
        let b = side(out, itm).price.and_then(|p| v.solve(itm, &k, p, start));
        (a, b)
    } else {
        let a = side(out, otm).price.and_then(|p| v.solve(otm, &k, p, Start::Cold));
        let start = a.map_or(Start::Cold, |s| Start::At(s.point));
        (a, side(out, itm).price.and_then(|p| v.solve(itm, &k, p, start)))
    };
    for (kind, solution) in [(otm, &a), (itm, &b)] {
        if let Some(s) = solution {
            fill(side(out, kind), s);
        }
    }
    a.or(b).map(|s| (x, s.point.total_vol()))
}

/// The enriched strikes of `strikes` under `v`: prices chosen, and implied volatility and
/// Greeks for every option with a price inside the no-arbitrage bounds.
pub fn enrich_options(v: &Valuation, strikes: &[StrikeQuotes]) -> Vec<EnrichedStrike> {
    let mut out: Vec<EnrichedStrike> = strikes
        .iter()
        .map(|s| EnrichedStrike {
            strike: s.strike,
            call: priced(&s.call),
            put: priced(&s.put),
        })
        .collect();
    if out.is_empty() {
        return out;
    }
    // outward from the strike at or above the forward; once the first two strikes above it
    // are solved (they seed the walk below it), one strike each way in turn: the two walks
    // are independent, so the processor overlaps them
    let first_up = out.partition_point(|s| s.strike < v.forward()).min(out.len() - 1);
    let (below, above) = out.split_at_mut(first_up);
    let (mut above, mut below) = (above.iter_mut(), below.iter_mut().rev());
    let mut up = Trail::default();
    while up.far.is_none() {
        match above.next() {
            Some(s) => up.advance(v, s),
            None => break,
        }
    }
    let mut down = up.reversed();
    loop {
        match (above.next(), below.next()) {
            (None, None) => break,
            (a, b) => {
                if let Some(s) = a {
                    up.advance(v, s);
                }
                if let Some(s) = b {
                    down.advance(v, s);
                }
            }
        }
    }
    out
}
