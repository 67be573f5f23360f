//! `chainflow feed` and `chainflow feed play`.

use crate::cli::{FeedArgs, PlayArgs};
use crate::progress::bar;
use crate::shutdown::on_signal;
use crate::telemetry::{serve_metrics, Readiness};
use anyhow::{Context, Result};
use chainflow_config::Config;
use chainflow_kafka::StageStats;
use chainflow_producers::{Feed, FeedOptions, FeedSummary, Pace};
use chainflow_schemas::{OptionChain, OptionQuote, Record, UnderlyingTick};
use indicatif::ProgressBar;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The slowest --rate or --speed accepted (slower would mean waiting for ever).
const MIN_PACE: f64 = 0.001;

/// Resolves the feed flags against the configuration; `default_start_us` when no --start.
pub fn options(config: &Config, args: &FeedArgs, default_start_us: i64) -> Result<FeedOptions> {
    let start_us = match &args.start {
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .with_context(|| format!("--start: expected an RFC 3339 time such as 2025-01-30T09:15:00Z, got {s:?}"))?
            .timestamp_micros(),
        None => default_start_us,
    };
    let positive = |v: f64, flag: &str| {
        if v.is_finite() && v >= MIN_PACE {
            Ok(v)
        } else {
            Err(anyhow::anyhow!(
                "{flag}: must be a number of at least {MIN_PACE}, got {v}"
            ))
        }
    };
    let pace = match (&args.profile, args.speed, args.rate.unwrap_or(config.feed.rate)) {
        (Some(_), _, _) => Pace::Spike,
        (None, Some(x), _) => Pace::Speed(positive(x, "--speed")?),
        (None, None, 0.0) => Pace::Unthrottled,
        (None, None, r) => Pace::Rate(positive(r, "--rate")?),
    };
    Ok(FeedOptions {
        chains: args.chains,
        start_us,
        seed: args.seed.unwrap_or(config.feed.seed),
        scenario: args.scenario,
        pace,
        record: args.record.clone(),
    })
}

/// The current time rounded down to the second, µs.
pub fn now_second_us() -> i64 {
    chrono::Utc::now().timestamp() * 1_000_000
}

/// Redraws `progress` from the stage's counter until aborted.
fn follow(progress: &ProgressBar, stats: &Arc<StageStats>) -> tokio::task::JoinHandle<()> {
    let (progress, stats) = (progress.clone(), stats.clone());
    tokio::spawn(async move {
        loop {
            progress.set_position(StageStats::get(&stats.records_in));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
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

/// Produces the simulated market with a progress bar, then prints what was produced.
pub async fn feed(config: &Config, args: &FeedArgs) -> Result<()> {
    let shutdown = on_signal();
    let ready = Readiness::default();
    serve_metrics(&config.observability.metrics_listen, ready.clone(), shutdown.clone()).await?;
    let opts = options(config, args, now_second_us())?;
    let stats = Arc::new(StageStats::default());
    let feed = Feed::new(config, super::codec(config)?, stats.clone(), &opts)?;
    ready.set_ready();
    tracing::info!(scenario = %opts.scenario, pace = %opts.pace, seed = opts.seed, "feed started");
    // with --chains the bar counts messages towards an estimate, so it shows a spinner
    let progress = bar(None, &format!("messages produced ({}, {})", opts.scenario, opts.pace));
    let ticker = follow(&progress, &stats);
    let started = Instant::now();
    let summary = feed.run(&opts, shutdown).await;
    ticker.abort();
    progress.finish_and_clear();
    print_summary("produced", &summary?, started.elapsed().as_secs_f64());
    if let Some(path) = &opts.record {
        println!("recorded to {}", path.display());
    }
    Ok(())
}

/// Plays a recording, then prints what was sent and every bad line.
pub async fn play(config: &Config, args: &PlayArgs) -> Result<()> {
    if !(args.speed == 0.0 || args.speed.is_finite() && args.speed >= MIN_PACE) {
        anyhow::bail!(
            "--speed: must be 0 (as fast as possible) or at least {MIN_PACE}, got {}",
            args.speed
        );
    }
    let shutdown = on_signal();
    let stats = Arc::new(StageStats::default());
    let progress = bar(None, &format!("messages sent from {}", args.file.display()));
    let ticker = follow(&progress, &stats);
    let started = Instant::now();
    let outcome = chainflow_producers::play::play(
        &config.kafka,
        super::codec(config)?,
        &args.file,
        args.speed,
        args.strict,
        stats,
        shutdown,
    )
    .await;
    ticker.abort();
    progress.finish_and_clear();
    let summary = outcome?;
    print_summary("sent", &summary.sent, started.elapsed().as_secs_f64());
    if !summary.bad.is_empty() {
        println!("{} bad lines skipped:", summary.bad.len());
        for b in &summary.bad {
            println!("  line {}: {}", b.line, b.message);
        }
    }
    Ok(())
}
