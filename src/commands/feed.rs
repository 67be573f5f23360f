//! `chainflow feed`.

use crate::cli::FeedArgs;
use crate::progress::bar;
use crate::shutdown::on_signal;
use crate::telemetry::{serve_metrics, Readiness};
use anyhow::{Context, Result};
use chainflow_config::Config;
use chainflow_kafka::StageStats;
use chainflow_producers::{Feed, FeedOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resolves the feed flags against the configuration; `default_start_us` when no --start.
pub fn options(config: &Config, args: &FeedArgs, default_start_us: i64) -> Result<FeedOptions> {
    let start_us = match &args.start {
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .with_context(|| format!("--start: expected an RFC 3339 time such as 2025-01-30T09:15:00Z, got {s:?}"))?
            .timestamp_micros(),
        None => default_start_us,
    };
    let rate = args.rate.unwrap_or(config.feed.rate);
    if !rate.is_finite() || rate < 0.0 {
        anyhow::bail!("--rate: must be 0 (unthrottled) or positive, got {rate}");
    }
    Ok(FeedOptions {
        chains: args.chains,
        start_us,
        rate,
        seed: args.seed.unwrap_or(config.feed.seed),
    })
}

/// The current time rounded down to the second, µs.
pub fn now_second_us() -> i64 {
    chrono::Utc::now().timestamp() * 1_000_000
}

/// Produces chains with a progress bar, then prints what was produced.
pub async fn feed(config: &Config, args: &FeedArgs) -> Result<()> {
    let shutdown = on_signal();
    let ready = Readiness::default();
    serve_metrics(&config.observability.metrics_listen, ready.clone(), shutdown.clone()).await?;
    let opts = options(config, args, now_second_us())?;
    let stats = Arc::new(StageStats::default());
    let feed = Feed::new(config, super::codec(config)?, stats.clone(), opts.seed, opts.start_us)?;
    ready.set_ready();
    let progress = bar(opts.chains, "chains produced");
    let ticker = {
        let (progress, stats) = (progress.clone(), stats.clone());
        tokio::spawn(async move {
            loop {
                progress.set_position(StageStats::get(&stats.records_in));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let summary = feed.run(&opts, shutdown).await;
    ticker.abort();
    progress.finish_and_clear();
    let summary = summary?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {} chains ({} options) to market.option_chain in {secs:.1} s ({:.0} chains/s)",
        summary.chains,
        summary.options,
        summary.chains as f64 / secs.max(1e-9)
    );
    Ok(())
}
