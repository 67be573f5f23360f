//! End to end on the real stack: `chainflow run --chains N` for a product of its own, into a
//! database of its own, then ClickHouse must hold exactly those chains and options, with
//! metrics equal to values recomputed here from the raw chains, and exactly the ticks and
//! quotes the simulator produced. Needs the local stack (ops/stack.sh up).

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_analytics::{analyze, ChainParams};
use chainflow_config::{Product, ProductSpec};
use chainflow_contract::topics::OPTION_CHAIN;
use chainflow_contract::OptionChain;
use chainflow_feed::sim::{MarketEvent, Pricing, Scenario, SimOptions, Simulator};
use common::{chainflow, group_at_end, product_config, sink_groups_at_end, stack, Names};
use serde::Deserialize;
use std::collections::BTreeMap;

const CHAINS: usize = 300;
const SEED: u64 = 7;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Stored {
    expiry: u16,
    event_time_us: i64,
    spot: f64,
    strike_count: u16,
    pcr_oi: Option<f64>,
    pcr_volume: Option<f64>,
    atm_strike: f64,
    total_call_oi: i64,
    total_put_oi: i64,
    max_pain_strike: Option<f64>,
    atm_iv: Option<f64>,
    iv_skew_25d: Option<f64>,
    time_to_expiry: f64,
}

/// What the test expects of one chain, computed by plain sums over the raw quotes.
struct Expected {
    spot: f64,
    strikes: usize,
    call_oi: i64,
    put_oi: i64,
    pcr_oi: Option<f64>,
    pcr_volume: Option<f64>,
    atm_strike: f64,
}

fn expected(c: &OptionChain) -> Expected {
    let call_oi: i64 = c.strikes.iter().map(|s| s.call.oi).sum();
    let put_oi: i64 = c.strikes.iter().map(|s| s.put.oi).sum();
    let call_vol: i64 = c.strikes.iter().map(|s| s.call.volume).sum();
    let put_vol: i64 = c.strikes.iter().map(|s| s.put.volume).sum();
    // nearest strike to spot, the lower one on a tie
    let mut atm = c.strikes[0].strike;
    for s in &c.strikes {
        if (s.strike - c.spot).abs() < (atm - c.spot).abs() {
            atm = s.strike;
        }
    }
    Expected {
        spot: c.spot,
        strikes: c.strikes.len(),
        call_oi,
        put_oi,
        pcr_oi: (call_oi != 0).then(|| put_oi as f64 / call_oi as f64),
        pcr_volume: (call_vol != 0).then(|| put_vol as f64 / call_vol as f64),
        atm_strike: atm,
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * y.abs().max(1.0),
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_stores_every_chain_once_with_recomputed_metrics() {
    let cfg = stack();
    let names = Names::new("pipeline");
    let product = names.product("E2E");
    let database = names.database();
    let params = Product {
        spot: 21_543.25,
        strike_step: 50.0,
        lot_size: 50,
        rate: 0.065,
        dividend_yield: 0.012,
        expiry_close: "15:30".into(),
        time_zone: "Asia/Kolkata".into(),
        strikes: 21,
        expiries: 2,
        vol_beta: 1.0,
    };
    let start_us = chrono_now_s() * 1_000_000;
    let start = format!("{}", start_us / 1_000_000);
    let file = product_config(&product, &params);
    // enrich and sink groups of this run's own, starting after whatever the topics hold
    let (enrich_group, sink_group) = (names.group("enrich"), names.group("sink"));
    group_at_end(&cfg, &enrich_group, OPTION_CHAIN).await;
    sink_groups_at_end(&cfg, &sink_group).await;
    let out = chainflow(&[
        "run",
        "--chains",
        &CHAINS.to_string(),
        "--seed",
        &SEED.to_string(),
        "--timeout",
        "300",
    ])
    .args(&["--start", &rfc3339(start.parse().unwrap())])
    .config(&file)
    .env("CHAINFLOW_CLICKHOUSE__DATABASE", &database)
    .env("CHAINFLOW_ENRICH__GROUP_ID", &enrich_group)
    .env("CHAINFLOW_SINK__GROUP_ID", &sink_group)
    .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chainflow run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("{CHAINS} chains produced")), "{stdout}");

    // the chains the run produced, regenerated from the same seed, product and start
    let spec = ProductSpec::new(&product, params).unwrap();
    let options = SimOptions {
        seed: SEED,
        start_us,
        scenario: Scenario::Normal,
        pricing: Pricing::Ticks,
    };
    let mut chains = 0;
    let events: Vec<MarketEvent> = Simulator::new([spec.clone()], options)
        .take_while(|e| {
            let more = chains < CHAINS;
            chains += usize::from(matches!(e, MarketEvent::Chain(_)));
            more
        })
        .collect();
    let raw: Vec<OptionChain> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Chain(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let options: usize = raw.iter().map(OptionChain::option_count).sum();
    let ticks = events.iter().filter(|e| matches!(e, MarketEvent::Tick(_))).count();
    let quotes = events.iter().filter(|e| matches!(e, MarketEvent::Quote(_))).count();

    let db = chainflow_clickhouse::client(&cfg.clickhouse).with_database(&database);
    let count = |table: &'static str| {
        db.query(&format!("SELECT count() FROM {table} FINAL WHERE product = ?"))
            .bind(&product)
            .fetch_one::<u64>()
    };
    assert_eq!(count("chain_snapshots").await.unwrap(), CHAINS as u64);
    assert_eq!(count("chain_options").await.unwrap(), options as u64);
    // the raw streams too: every tick and quote the feed sent before the last chain
    assert_eq!(count("underlying_ticks").await.unwrap(), ticks as u64);
    assert_eq!(count("option_quotes").await.unwrap(), quotes as u64);

    let rows: Vec<Stored> = db
        .query(
            "SELECT expiry, event_time_us, spot, strike_count, pcr_oi, pcr_volume, atm_strike, total_call_oi, \
             total_put_oi, max_pain_strike, atm_iv, iv_skew_25d, time_to_expiry FROM chain_snapshots FINAL \
             WHERE product = ?",
        )
        .bind(&product)
        .fetch_all()
        .await
        .unwrap();
    let by_key: BTreeMap<(i32, i64), &Stored> = rows
        .iter()
        .map(|r| ((i32::from(r.expiry), r.event_time_us), r))
        .collect();
    assert_eq!(by_key.len(), CHAINS);
    for c in &raw {
        let row = by_key
            .get(&(c.expiry, c.event_time))
            .unwrap_or_else(|| panic!("chain {}|{} missing", c.expiry, c.event_time));
        let e = expected(c);
        assert_eq!(row.spot, e.spot);
        assert_eq!(row.strike_count as usize, e.strikes);
        assert_eq!((row.total_call_oi, row.total_put_oi), (e.call_oi, e.put_oi));
        assert!(close(row.pcr_oi, e.pcr_oi), "pcr_oi {:?} vs {:?}", row.pcr_oi, e.pcr_oi);
        assert!(
            close(row.pcr_volume, e.pcr_volume),
            "pcr_volume {:?} vs {:?}",
            row.pcr_volume,
            e.pcr_volume
        );
        assert_eq!(row.atm_strike, e.atm_strike);
        // the IV-based metrics travel through Kafka and ClickHouse unchanged
        let a = analyze(c, &ChainParams::for_chain(&spec.terms, c));
        assert_eq!(
            row.time_to_expiry,
            ChainParams::for_chain(&spec.terms, c).time_to_expiry
        );
        assert_eq!(
            (row.max_pain_strike, row.atm_iv, row.iv_skew_25d),
            (a.metrics.max_pain_strike, a.metrics.atm_iv, a.metrics.iv_skew_25d)
        );
        assert!(row.atm_iv.is_some(), "a generated chain has an ATM IV");
    }
    // every priced option inside the bounds has its analytics stored
    let missing: u64 = db
        .query("SELECT count() FROM chain_options FINAL WHERE product = ? AND price_source != 'NONE' AND iv IS NULL")
        .bind(&product)
        .fetch_one()
        .await
        .unwrap();
    let solved: usize = raw
        .iter()
        .map(|c| {
            let a = analyze(c, &ChainParams::for_chain(&spec.terms, c));
            a.strikes
                .iter()
                .flat_map(|s| [&s.call, &s.put])
                .filter(|o| o.price.is_some() && o.iv.is_none())
                .count()
        })
        .sum();
    assert_eq!(missing as usize, solved);
    db.query(&format!("DROP DATABASE {database}")).execute().await.unwrap();
}

fn chrono_now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 3339 of a Unix time in seconds (UTC).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let date = chainflow_contract::keys::date_from_days(days as i32);
    format!("{date}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}
