//! `chainflow run`: feed, enrich and sink in one process against the stack.

use super::feed::{now_second_us, options};
use crate::cli::RunArgs;
use crate::progress::{bar, PipelineStats};
use crate::shutdown::on_signal;
use crate::telemetry::{serve_metrics, Readiness};
use anyhow::{bail, Context, Result};
use chainflow_config::Config;
use chainflow_kafka::{ensure_topics, StageStats};
use chainflow_processors::enrich::Enrich;
use chainflow_producers::{Feed, FeedSummary};
use chainflow_schemas::topics::provisioned;
use chainflow_sinks::sink::ChainSink;
use clickhouse::Client;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// This run's chains: the configured products within an event-time window.
struct Window {
    products: Vec<String>,
    from_us: i64,
    to_us: i64,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Latest {
    product: String,
    expiry: u16,
    spot: f64,
    pcr_oi: Option<f64>,
    atm_strike: f64,
    max_pain_strike: Option<f64>,
}

/// Runs the pipeline; with `--chains N`, until all N are queryable in ClickHouse.
pub async fn run(config: &Config, args: &RunArgs) -> Result<()> {
    let shutdown = on_signal();
    let ready = Readiness::default();
    serve_metrics(&config.observability.metrics_listen, ready.clone(), shutdown.clone()).await?;
    let client = chainflow_sinks::client(&config.clickhouse);
    chainflow_sinks::migrate::migrate(&client, &config.clickhouse.database).await?;
    ensure_topics(
        &config.kafka,
        &provisioned(config.kafka.partitions, &config.registry.topic),
    )
    .await?;
    let db = client.clone().with_database(&config.clickhouse.database);
    // Continue the simulated market after the last stored chain, so this run's chains are
    // exactly those from its start time on.
    let last_stored: i64 = db
        .query("SELECT max(event_time_us) FROM chain_snapshots")
        .fetch_one()
        .await?;
    let opts = options(config, &args.feed, now_second_us().max(last_stored + 1_000_000))?;
    let codec = super::codec(config)?;
    let stats = PipelineStats::default();

    let stages = CancellationToken::new();
    let enrich = Enrich::new(config, codec.clone(), stats.enrich.clone())?;
    let sink = ChainSink::new(config, codec.clone(), stats.sink.clone()).await?;
    let enrich_task = tokio::spawn(enrich.run(stages.clone()));
    let sink_task = tokio::spawn(sink.run(stages.clone()));
    let feed = Feed::new(config, codec, stats.feed.clone(), &opts)?;
    ready.set_ready();

    let started = Instant::now();
    let feed_token = shutdown.clone();
    let feed_opts = opts.clone();
    let mut feed_task = tokio::spawn(async move { feed.run(&feed_opts, feed_token).await });
    let progress = bar(opts.chains, "");
    let products: Vec<String> = config.products.keys().cloned().collect();
    let window = Window {
        products: products.clone(),
        from_us: opts.start_us,
        to_us: i64::MAX,
    };
    // Until the feed is done (N chains, or Ctrl-C), show progress; then wait until every
    // chain it produced is queryable, so stopping never leaves work behind. With --chains the
    // timeout runs from the start; otherwise it bounds the drain after Ctrl-C.
    let mut summary = None;
    let mut deadline = started + Duration::from_secs(args.timeout);
    let outcome: Result<()> = loop {
        progress.set_message(format!("chains queryable · {}", stats.line()));
        if summary.is_none() && feed_task.is_finished() {
            summary = Some((&mut feed_task).await.context("feed task")??);
            if opts.chains.is_none() {
                deadline = Instant::now() + Duration::from_secs(args.timeout);
            }
        }
        let stored = count(&db, "chain_snapshots", &window).await?;
        progress.set_position(stored);
        if let Some(n) = summary.as_ref().map(FeedSummary::chains).or(opts.chains) {
            if stored >= n {
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!(
                    "timed out after {} s: {stored} of {n} chains queryable ({})",
                    args.timeout,
                    stats.line()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let summary = match summary {
        Some(s) => s,
        None => feed_task.await.context("feed task")??,
    };
    stages.cancel();
    enrich_task.await.context("enrich task")??;
    sink_task.await.context("sink task")??;
    outcome?;

    let (from_us, to_us) = summary.chain_times.unwrap_or((0, -1));
    let window = Window {
        products,
        from_us,
        to_us,
    };
    let snapshots = count(&db, "chain_snapshots", &window).await?;
    let options_stored = count(&db, "chain_options", &window).await?;
    let secs = elapsed.as_secs_f64();
    let chains = summary.chains();
    println!("chainflow run: {chains} chains produced, enriched and stored in {secs:.1} s");
    println!(
        "  rate                      {:.0} chains/s end to end ({:.0} options/s)",
        chains as f64 / secs,
        summary.options as f64 / secs
    );
    println!(
        "  market.underlying         {} ticks produced",
        summary.on(chainflow_schemas::topics::UNDERLYING)
    );
    println!(
        "  market.option_quote       {} quotes produced",
        summary.on(chainflow_schemas::topics::OPTION_QUOTE)
    );
    println!("  market.option_chain       {chains} chains produced");
    println!(
        "  enriched.option_chain     {} enriched, {} dead-lettered",
        StageStats::get(&stats.enrich.records_out),
        StageStats::get(&stats.enrich.dead_letters)
    );
    println!("  chainflow.chain_snapshots {snapshots} rows (FINAL, this run)");
    println!(
        "  chainflow.chain_options   {options_stored} rows (FINAL, this run; {} options produced)",
        summary.options
    );
    if snapshots != chains || options_stored != summary.options {
        bail!(
            "counts do not balance: {chains} chains / {} options produced, {snapshots} / {options_stored} stored",
            summary.options
        );
    }
    let latest: Vec<Latest> = db
        .query(
            "SELECT product, expiry, spot, pcr_oi, atm_strike, max_pain_strike FROM chain_snapshots FINAL \
             WHERE has(?, product) AND event_time_us = ? ORDER BY product, expiry LIMIT 4",
        )
        .bind(&window.products)
        .bind(window.to_us)
        .fetch_all()
        .await?;
    println!("  latest chains:");
    for l in latest {
        let expiry = chainflow_schemas::keys::date_from_days(l.expiry as i32);
        println!(
            "    {:<11} {expiry}  spot {:>10.2}  pcr_oi {:>6}  atm {:>8}  max pain {:>8}",
            l.product,
            l.spot,
            l.pcr_oi.map_or("-".into(), |v| format!("{v:.4}")),
            l.atm_strike,
            l.max_pain_strike.map_or("-".into(), |v| v.to_string()),
        );
    }
    Ok(())
}

async fn count(db: &Client, table: &str, w: &Window) -> Result<u64> {
    db.query(&format!(
        "SELECT count() FROM {table} FINAL WHERE has(?, product) AND event_time_us >= ? AND event_time_us <= ?"
    ))
    .bind(&w.products)
    .bind(w.from_us)
    .bind(w.to_us)
    .fetch_one()
    .await
    .with_context(|| format!("counting {table}"))
}
