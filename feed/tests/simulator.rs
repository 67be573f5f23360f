//! The simulated market: reproducible, coherent across topics, and free of static
//! arbitrage after tick rounding over long runs of every scenario.

use chainflow_analytics::{analyze, ChainParams};
use chainflow_config::{default_products, ProductSpec};
use chainflow_contract::keys::option_symbol;
use chainflow_contract::{OptionChain, OptionType};
use chainflow_feed::sim::{MarketEvent, Pricing, Scenario, SimOptions, Simulator};
use std::collections::BTreeMap;

/// 2025-01-27 09:15 IST (a Monday), as µs.
const START: i64 = 1_737_949_500_000_000;

fn specs() -> BTreeMap<String, ProductSpec> {
    default_products()
        .into_iter()
        .map(|(n, p)| (n.clone(), ProductSpec::new(&n, p).unwrap()))
        .collect()
}

fn simulator(seed: u64, scenario: Scenario, pricing: Pricing) -> Simulator {
    Simulator::new(
        specs().into_values(),
        SimOptions {
            seed,
            start_us: START,
            scenario,
            pricing,
        },
    )
}

/// The events of the first `seconds` simulated seconds.
fn run(seed: u64, scenario: Scenario, pricing: Pricing, seconds: i64) -> Vec<MarketEvent> {
    simulator(seed, scenario, pricing)
        .take_while(|e| e.event_time() <= START + seconds * 1_000_000)
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_others() {
    let a = run(1, Scenario::Normal, Pricing::Ticks, 20);
    assert_eq!(a, run(1, Scenario::Normal, Pricing::Ticks, 20));
    assert_ne!(a, run(2, Scenario::Normal, Pricing::Ticks, 20));
    assert_ne!(a, run(1, Scenario::Crash, Pricing::Ticks, 20));
}

#[test]
fn rates_and_listings_follow_the_seed_system() {
    let seconds = 60;
    let events = run(3, Scenario::Normal, Pricing::Ticks, seconds);
    let count = |f: fn(&MarketEvent) -> bool| events.iter().filter(|e| f(e)).count() as f64 / seconds as f64;
    let ticks = count(|e| matches!(e, MarketEvent::Tick(_)));
    let quotes = count(|e| matches!(e, MarketEvent::Quote(_)));
    let chains = count(|e| matches!(e, MarketEvent::Chain(_)));
    // 8 products × 1–5 ticks/s, 10–50 quotes/s, one snapshot per product, expiry and second
    assert!((8.0..=40.0).contains(&ticks) && ticks > 16.0, "{ticks} ticks/s");
    assert!((10.0..=50.0).contains(&quotes), "{quotes} quotes/s");
    assert_eq!(chains, 8.0 * 3.0);
    // time order
    assert!(events.windows(2).all(|w| w[0].event_time() <= w[1].event_time()));
    let specs = specs();
    for e in &events {
        if let MarketEvent::Chain(c) = e {
            let p = &specs[&c.product].params;
            assert_eq!(c.strikes.len(), p.strikes as usize);
            assert!((21..=41).contains(&c.strikes.len()));
            // centred on spot: the middle strike is the one nearest spot
            let middle = c.strikes[c.strikes.len() / 2].strike;
            assert!(
                (middle - c.spot).abs() <= p.strike_step / 2.0 + 1e-9,
                "{} {middle} vs {}",
                c.product,
                c.spot
            );
        }
    }
}

/// Sequence numbers increase by one per key on every topic.
#[test]
fn sequences_count_up_per_key() {
    let mut last: BTreeMap<(&str, String), i64> = BTreeMap::new();
    for e in run(4, Scenario::Crash, Pricing::Ticks, 30) {
        let seq = match &e {
            MarketEvent::Tick(t) => t.seq,
            MarketEvent::Quote(q) => q.seq,
            MarketEvent::Chain(c) => c.seq,
        };
        let previous = last.insert((e.topic(), e.key()), seq).unwrap_or(0);
        assert_eq!(seq, previous + 1, "{} {}", e.topic(), e.key());
    }
}

/// Static arbitrage checks on one tick-rounded chain snapshot.
fn assert_arbitrage_free(c: &OptionChain, spec: &ProductSpec) {
    let at = format!("{} {} at {}", c.product, c.expiry, c.event_time);
    let p = ChainParams::for_chain(&spec.terms, c);
    let (t, r, q) = (p.time_to_expiry, p.rate, p.dividend_yield);
    assert!(t > 0.0, "{at}: listed after its expiry");
    let mid = |b: f64, a: f64| f64::midpoint(b, a);
    for s in &c.strikes {
        for o in [&s.call, &s.put] {
            assert!(
                o.bid > 0.0 && o.bid <= o.ask && o.last > 0.0,
                "{at} {}: {o:?}",
                s.strike
            );
        }
        // put-call parity within the spread: no riskless profit at the quoted prices
        let forward_value = c.spot * (-q * t).exp() - s.strike * (-r * t).exp();
        let tolerance = 1e-9 * c.spot;
        assert!(
            s.call.bid - s.put.ask <= forward_value + tolerance && s.call.ask - s.put.bid >= forward_value - tolerance,
            "{at} {}: parity {forward_value} outside [{}, {}]",
            s.strike,
            s.call.bid - s.put.ask,
            s.call.ask - s.put.bid
        );
    }
    let calls: Vec<f64> = c.strikes.iter().map(|s| mid(s.call.bid, s.call.ask)).collect();
    let puts: Vec<f64> = c.strikes.iter().map(|s| mid(s.put.bid, s.put.ask)).collect();
    for w in calls.windows(2) {
        assert!(w[1] <= w[0], "{at}: call mids rise with strike: {calls:?}");
    }
    for w in puts.windows(2) {
        assert!(w[1] >= w[0], "{at}: put mids fall with strike: {puts:?}");
    }
    for side in [&calls, &puts] {
        for w in side.windows(3) {
            assert!(
                w[0] - 2.0 * w[1] + w[2] >= -1e-9,
                "{at}: not convex in strike: {side:?}"
            );
        }
    }
}

fn arbitrage_free_over_a_long_run(scenario: Scenario, seconds: i64) {
    type Variances = (f64, f64, Vec<(f64, f64)>);
    let specs = specs();
    let mut chains = 0;
    let mut by_time: BTreeMap<(String, i64), Vec<Variances>> = BTreeMap::new();
    for e in run(5, scenario, Pricing::Ticks, seconds) {
        let MarketEvent::Chain(c) = e else { continue };
        let spec = &specs[&c.product];
        assert_arbitrage_free(&c, spec);
        chains += 1;
        // every tenth second: total variance at the money, and at every strike with a
        // well-determined out-of-the-money price (20 ticks or more), from the analytics' own IVs
        if c.event_time % 10_000_000 == 0 {
            let p = ChainParams::for_chain(&spec.terms, &c);
            let a = analyze(&c, &p);
            let iv = a.metrics.atm_iv.expect("an ATM IV");
            let t = p.time_to_expiry;
            let forward = p.valuation(c.spot).forward();
            let by_strike: Vec<(f64, f64)> = a
                .strikes
                .iter()
                .filter_map(|s| {
                    let otm = if s.strike >= forward { &s.call } else { &s.put };
                    (otm.price? >= 1.0).then_some((s.strike, otm.iv? * otm.iv? * t))
                })
                .collect();
            by_time
                .entry((c.product.clone(), c.event_time))
                .or_default()
                .push((t, iv * iv * t, by_strike));
        }
    }
    assert_eq!(chains, 24 * seconds);
    let mut compared = 0;
    for ((product, time), mut w) in by_time {
        w.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(w.len(), 3);
        for pair in w.windows(2) {
            let (near, far) = (&pair[0], &pair[1]);
            assert!(
                far.1 >= near.1,
                "{product} at {time}: ATM total variance falls with expiry"
            );
            for (k, w_near) in &near.2 {
                if let Some((_, w_far)) = far.2.iter().find(|(k2, _)| k2 == k) {
                    assert!(w_far >= w_near, "{product} at {time} K={k}: {w_far} < {w_near}");
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 1_000, "{compared}");
}

#[test]
fn normal_markets_are_free_of_static_arbitrage_after_rounding() {
    arbitrage_free_over_a_long_run(Scenario::Normal, 1_800);
}

#[test]
fn crashing_markets_are_free_of_static_arbitrage_after_rounding() {
    arbitrage_free_over_a_long_run(Scenario::Crash, 2_400);
}

/// Contracts traded per second in NIFTY's five options of the nearest expiry nearest the
/// money, from `from` to `to` seconds after the start (strikes listed at both times).
fn option_volume_per_second(events: &[MarketEvent], from: i64, to: i64) -> f64 {
    let nifty: Vec<&OptionChain> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Chain(c) if c.product == "NIFTY" => Some(c),
            _ => None,
        })
        .collect();
    let expiry = nifty[0].expiry;
    let at = |s: i64| {
        *nifty
            .iter()
            .find(|c| c.expiry == expiry && c.event_time == START + s * 1_000_000)
            .expect("a snapshot at that second")
    };
    let (first, last) = (at(from), at(to));
    let mut near: Vec<_> = last.strikes.iter().collect();
    near.sort_by(|a, b| (a.strike - last.spot).abs().total_cmp(&(b.strike - last.spot).abs()));
    let traded: i64 = near
        .iter()
        .take(5)
        .filter_map(|s| {
            let before = first.strikes.iter().find(|b| b.strike == s.strike)?;
            Some(s.call.volume + s.put.volume - before.call.volume - before.put.volume)
        })
        .sum();
    traded as f64 / (to - from) as f64
}

#[test]
fn the_crash_lifts_volatility_to_about_80_and_volume_tenfold() {
    let crash = run(6, Scenario::Crash, Pricing::Ticks, 2_100);
    let specs = specs();
    let mean_atm_iv = |from: i64, to: i64| {
        let ivs: Vec<f64> = crash
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Chain(c)
                    if c.product == "NIFTY" && (from..to).contains(&((c.event_time - START) / 1_000_000)) =>
                {
                    analyze(c, &ChainParams::for_chain(&specs["NIFTY"].terms, c))
                        .metrics
                        .atm_iv
                }
                _ => None,
            })
            .collect();
        ivs.iter().sum::<f64>() / ivs.len() as f64
    };
    let (early, late) = (mean_atm_iv(0, 60), mean_atm_iv(2_000, 2_100));
    assert!(early < 0.25 && late > 0.55, "ATM IV {early} → {late}");
    let normal = run(6, Scenario::Normal, Pricing::Ticks, 2_100);
    let (calm, crashed) = (
        option_volume_per_second(&normal, 2_000, 2_100),
        option_volume_per_second(&crash, 2_000, 2_100),
    );
    assert!(
        crashed > 6.0 * calm && crashed < 15.0 * calm,
        "volume {calm}/s → {crashed}/s"
    );
}

#[test]
fn quotes_and_snapshots_describe_the_same_market() {
    let events = run(7, Scenario::Normal, Pricing::Ticks, 120);
    let mut chains: BTreeMap<(String, i32, i64), &OptionChain> = BTreeMap::new();
    for e in &events {
        if let MarketEvent::Chain(c) = e {
            chains.insert((c.product.clone(), c.expiry, c.event_time), c);
        }
    }
    let mut matched = 0;
    for e in &events {
        match e {
            MarketEvent::Quote(q) => {
                // the snapshot at the end of the quote's second lists the option with the same
                // positions and volume (trading is booked once per second)
                let second_end = (q.event_time / 1_000_000 + 1) * 1_000_000;
                let Some(c) = chains.get(&(q.product.clone(), q.expiry, second_end)) else {
                    continue;
                };
                let Some(s) = c.strikes.iter().find(|s| s.strike == q.strike) else {
                    continue;
                };
                let o = match q.option_type {
                    OptionType::Call => &s.call,
                    OptionType::Put => &s.put,
                };
                assert_eq!(
                    (q.oi, q.volume, q.oi_change),
                    (o.oi, o.volume, o.oi_change),
                    "{}",
                    q.symbol
                );
                assert_eq!(q.symbol, option_symbol(&q.product, q.expiry, q.strike, q.option_type));
                matched += 1;
            }
            MarketEvent::Tick(t) => {
                // an underlying tick and the next snapshot of its product are a fraction of a
                // second apart on one price path
                let second_end = (t.event_time / 1_000_000 + 1) * 1_000_000;
                let c = chains
                    .iter()
                    .find(|((p, _, time), _)| *p == t.product && *time == second_end);
                if let Some((_, c)) = c {
                    assert!(
                        (c.spot / t.price - 1.0).abs() < 0.01,
                        "{} {} vs {}",
                        t.product,
                        t.price,
                        c.spot
                    );
                }
            }
            MarketEvent::Chain(_) => {}
        }
    }
    assert!(matched > 1_000, "{matched}");
}

#[test]
fn enriching_unrounded_chains_recovers_the_simulators_own_surface() {
    let specs = specs();
    let mut checked = 0;
    for e in run(8, Scenario::Crash, Pricing::Exact, 30) {
        let MarketEvent::Chain(c) = e else { continue };
        let params = ChainParams::for_chain(&specs[&c.product].terms, &c);
        let v = params.valuation(c.spot);
        let a = analyze(&c, &params);
        for (s, raw) in a.strikes.iter().zip(&c.strikes) {
            for (kind, o, q) in [
                (OptionType::Call, &s.call, &raw.call),
                (OptionType::Put, &s.put, &raw.put),
            ] {
                let surface = q.iv.expect("the simulator publishes its surface vol");
                let Some(iv) = o.iv else {
                    // only a price indistinguishable from its no-arbitrage bound loses its IV
                    let time_value = o.price.unwrap() - v.bounds(kind, s.strike).0;
                    assert!(
                        time_value <= 1e-9 * o.price.unwrap().max(1.0),
                        "{} {}: no IV",
                        c.product,
                        s.strike
                    );
                    continue;
                };
                assert!(
                    (iv - surface).abs() < 1e-7,
                    "{} {} {}: {iv} vs {surface}",
                    c.product,
                    c.expiry,
                    s.strike
                );
                checked += 1;
            }
        }
    }
    // the eight default products list 21–41 strikes: 59.5 options per chain
    assert!(checked > 30 * 24 * 55, "{checked}");
}
