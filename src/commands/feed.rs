//! `chainflow feed` and `chainflow feed play`.

use crate::cli::{FeedArgs, PlayArgs};
use crate::progress::{bar, follow};
use crate::wiring::{self, Process};
use anyhow::Result;
use chainflow_config::Config;
use chainflow_contract::{OptionChain, OptionQuote, Record, UnderlyingTick};
use chainflow_feed::sim::{Pricing, SimOptions};
use chainflow_feed::{Feed, FeedReport, FeedSummary, Pace, Simulator, Source};
use chainflow_runtime::{Role, StageStats};
use std::sync::Arc;
use std::time::Instant;

/// The current time rounded down to the second, µs.
pub fn now_second_us() -> i64 {
    chrono::Utc::now().timestamp() * 1_000_000
}

/// How fast the flags ask the feed to go.
fn pace(config: &Config, args: &FeedArgs) -> Pace {
    match (&args.profile, args.speed, args.rate.unwrap_or(config.feed.rate)) {
        (Some(_), _, _) => Pace::Spike,
        (None, Some(x), _) => Pace::Speed(x),
        (None, None, 0.0) => Pace::Unthrottled,
        (None, None, r) => Pace::Rate(r),
    }
}

/// The simulated feed the flags describe, starting at --start or else `default_start_us`.
pub fn simulated(config: &Config, args: &FeedArgs, default_start_us: i64, stats: Arc<StageStats>) -> Result<Feed> {
    let start_us = args.start.unwrap_or(default_start_us);
    let simulator = Simulator::new(
        config.product_specs()?.into_values(),
        SimOptions {
            seed: args.seed.unwrap_or(config.feed.seed),
            start_us,
            scenario: args.scenario,
            pricing: Pricing::Ticks,
        },
    );
    let source = Source::Simulated {
        simulator: Box::new(simulator),
        chains: args.chains,
        start_us,
    };
    Ok(Feed::new(
        &config.kafka,
        wiring::codec(config)?,
        source,
        pace(config, args),
        args.record.clone(),
        stats,
    ))
}

/// Prints what the broker acknowledged, per topic, with rates.
fn print_summary(verb: &str, s: &FeedSummary, secs: f64) {
    let rate = |n: u64| n as f64 / secs.max(1e-9);
    println!(
        "{verb} {} messages in {secs:.1} s ({:.0} msg/s), acknowledged by the broker:",
        s.total(),
        rate(s.total())
    );
    for (topic, what) in [
        (UnderlyingTick::TOPIC, "ticks"),
        (OptionQuote::TOPIC, "quotes"),
        (OptionChain::TOPIC, "chain snapshots"),
    ] {
        let n = s.on(topic);
        println!("  {topic:<22} {n:>9} {what:<16} {:>9.0}/s", rate(n));
    }
    println!("  ({} options in the chain snapshots)", s.options);
}

/// Runs `feed` alone with a progress spinner; its report once it is done.
async fn run_alone(config: &Config, feed: Feed, stats: &Arc<StageStats>, what: &str) -> Result<(FeedReport, f64)> {
    let report = feed.report();
    let mut process = Process::new(config, "feed").await?;
    process.spawn(feed, Role::Worker);
    let progress = bar(None, what);
    let ticker = follow(&progress, stats);
    let started = Instant::now();
    let outcome = process.run().await;
    ticker.abort();
    progress.finish_and_clear();
    outcome?;
    let report = report.borrow().clone().unwrap_or_default();
    Ok((report, started.elapsed().as_secs_f64()))
}

/// Produces the simulated market with a progress spinner, then prints what was produced.
pub async fn feed(config: &Config, args: &FeedArgs) -> Result<()> {
    let stats = Arc::new(StageStats::default());
    let feed = simulated(config, args, now_second_us(), stats.clone())?;
    let pace = pace(config, args);
    tracing::info!(scenario = %args.scenario, %pace, "feed started");
    let (report, secs) = run_alone(
        config,
        feed,
        &stats,
        &format!("messages produced ({}, {pace})", args.scenario),
    )
    .await?;
    print_summary("produced", &report.sent, secs);
    if let Some(path) = &args.record {
        println!("recorded to {}", path.display());
    }
    Ok(())
}

/// Plays a recording, then prints what was sent and every bad line.
pub async fn play(config: &Config, args: &PlayArgs) -> Result<()> {
    let stats = Arc::new(StageStats::default());
    let pace = if args.speed > 0.0 {
        Pace::Speed(args.speed)
    } else {
        Pace::Unthrottled
    };
    let source = Source::Recording {
        path: args.file.clone(),
        strict: args.strict,
    };
    let feed = Feed::new(&config.kafka, wiring::codec(config)?, source, pace, None, stats.clone());
    let what = format!("messages sent from {}", args.file.display());
    let (report, secs) = run_alone(config, feed, &stats, &what).await?;
    print_summary("sent", &report.sent, secs);
    if !report.bad.is_empty() {
        println!("{} bad lines skipped:", report.bad.len());
        for b in &report.bad {
            println!("  line {}: {}", b.line, b.message);
        }
    }
    Ok(())
}
