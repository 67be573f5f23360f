//! `chainflow run`: feed, enrich and sink in one process against the stack, with a watcher
//! that ends the run once every chain the feed produced is queryable in ClickHouse.

use super::feed::{now_second_us, simulated};
use crate::cli::RunArgs;
use crate::progress::{bar, PipelineStats};
use crate::wiring::{self, Process};
use anyhow::{bail, Context, Result};
use chainflow_config::Config;
use chainflow_contract::streams::{self, Source};
use chainflow_contract::topics::{provisioned, OPTION_CHAIN, OPTION_QUOTE, UNDERLYING};
use chainflow_feed::{FeedReport, FeedSummary};
use chainflow_kafka::ensure_topics;
use chainflow_runtime::{Class, Role, Stage, StageContext, StageStats};
use clickhouse::Client;
use indicatif::ProgressBar;
use serde::Deserialize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The topics the feed writes.
const FEED_TOPICS: [&str; 3] = [UNDERLYING, OPTION_QUOTE, OPTION_CHAIN];

/// How often the watcher counts what is queryable.
const POLL: Duration = Duration::from_millis(200);

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

/// Rows of `w` queryable in `table` (`FINAL`: each once).
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

/// Watches the run: until the feed is done (N chains, or a shutdown request) it shows
/// progress; then it waits until every chain the feed produced is queryable, within
/// `--timeout` (from the start with `--chains`, else from the feed's end), and ends the
/// pipeline.
struct Watch {
    db: Client,
    window: Window,
    chains: Option<u64>,
    timeout: Duration,
    report: watch::Receiver<Option<FeedReport>>,
    stats: PipelineStats,
    progress: ProgressBar,
    /// When every chain was queryable, from the start.
    done: Arc<OnceLock<Duration>>,
    /// The sink's streams of the feed's own records, which the watch waits for too.
    streams: Vec<Fed>,
}

impl Watch {
    /// Whether the ticks and quotes the feed produced are queryable too (false until the
    /// feed is done).
    async fn rest_stored(&self) -> Result<bool> {
        let Some(report) = self.report.borrow().clone() else {
            return Ok(false);
        };
        let (from_us, to_us) = report.sent.chain_times.unwrap_or((0, -1));
        let window = Window {
            products: self.window.products.clone(),
            from_us: self.window.from_us.min(from_us),
            to_us,
        };
        for fed in &self.streams {
            if count(&self.db, fed.table, &window).await? < report.sent.on(fed.topic) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Counts the queryable chains (and shows them) and, once `expected` are, the rest.
    async fn poll(&self, expected: Option<u64>) -> Result<Progress> {
        let stored = count(&self.db, "chain_snapshots", &self.window).await?;
        self.progress.set_position(stored);
        // ticks and quotes are stored by streams of their own: done when they are too
        match expected {
            Some(n) if stored >= n && self.rest_stored().await? => Ok(Progress::Done),
            _ => Ok(Progress::Stored(stored)),
        }
    }
}

impl Stage for Watch {
    fn name(&self) -> &'static str {
        "watch"
    }

    async fn run(self, ctx: StageContext) -> Result<()> {
        ctx.set_ready(true);
        let started = Instant::now();
        let mut deadline = started + self.timeout;
        let mut produced: Option<u64> = None;
        loop {
            self.progress
                .set_message(format!("chains queryable · {}", self.stats.line()));
            if produced.is_none() {
                if let Some(report) = self.report.borrow().as_ref() {
                    produced = Some(report.sent.chains());
                    if self.chains.is_none() {
                        deadline = Instant::now() + self.timeout;
                    }
                }
            }
            match self.poll(produced.or(self.chains)).await {
                Ok(Progress::Done) => {
                    self.done.get_or_init(|| started.elapsed());
                    return Ok(());
                }
                Ok(Progress::Stored(stored)) => {
                    if let Some(n) = produced.or(self.chains).filter(|_| Instant::now() > deadline) {
                        bail!(
                            "timed out after {} s: {stored} of {n} chains queryable ({})",
                            self.timeout.as_secs(),
                            self.stats.line()
                        );
                    }
                }
                // a count is only a look: ClickHouse closing a kept-alive connection under
                // it, say, is asked again at the next poll, not a failed run
                Err(e) if is_transient(&e) && Instant::now() <= deadline => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "ClickHouse did not answer the watch; asking again"
                    );
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                () = ctx.stopped() => return Ok(()),
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// What one look at ClickHouse saw.
enum Progress {
    /// This many chains are queryable, not yet all.
    Stored(u64),
    /// Every chain, tick and quote the feed produced is queryable.
    Done,
}

/// Whether `e` is a ClickHouse failure that a later attempt can outlive.
fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<clickhouse::error::Error>()
        .is_some_and(|e| chainflow_clickhouse::error::classify(e).class == Class::Transient)
}

/// A stream that stores one of the feed's topics as it is (ticks, quotes), one row per
/// record: `run` counts its rows besides the chains'.
#[derive(Debug, Clone, Copy)]
struct Fed {
    name: &'static str,
    topic: &'static str,
    table: &'static str,
}

/// The configured streams of the feed's own records.
fn fed_streams(config: &Config) -> Vec<Fed> {
    config
        .sink
        .streams
        .iter()
        .filter_map(|name| streams::named(name))
        .filter_map(|spec| match (spec.source, spec.tables) {
            (Source::Topic(topic), [table]) if FEED_TOPICS.contains(&topic) => Some(Fed {
                name: spec.name,
                topic,
                table,
            }),
            _ => None,
        })
        .collect()
}

/// Creates the tables (with their retention) and the topics.
async fn set_up(config: &Config, client: &Client) -> Result<()> {
    let ch = &config.clickhouse;
    let (server, _) = chainflow_clickhouse::migrate::migrate(client, &ch.database, &ch.cluster)
        .await
        .with_context(|| format!("setting up ClickHouse at {}", ch.url))?;
    chainflow_clickhouse::prune::apply_retention(client, &ch.database, server, ch.retention_days).await?;
    ensure_topics(
        &config.kafka,
        &provisioned(config.kafka.partitions, &config.registry.topic),
    )
    .await
    .with_context(|| format!("setting up the topics on Kafka at {}", config.kafka.bootstrap_servers))?;
    Ok(())
}

/// Runs the pipeline; with `--chains N`, until all N are queryable in ClickHouse.
pub async fn run(config: &Config, args: &RunArgs) -> Result<()> {
    let client = chainflow_clickhouse::client(&config.clickhouse);
    set_up(config, &client).await?;
    let db = client.with_database(&config.clickhouse.database);
    // Continue the simulated market after the last stored chain, so this run's chains are
    // exactly those from its start time on.
    let last_stored: i64 = db
        .query("SELECT max(event_time_us) FROM chain_snapshots")
        .fetch_one()
        .await
        .context("reading the last stored chain")?;
    let default_start_us = now_second_us().max(last_stored + 1_000_000);
    let start_us = args.feed.start.unwrap_or(default_start_us);
    let stats = PipelineStats::default();
    let feed = simulated(config, &args.feed, default_start_us, stats.feed.clone())?;
    let report = feed.report();
    let products: Vec<String> = config.products.keys().cloned().collect();
    let progress = bar(args.feed.chains, "");
    let done = Arc::new(OnceLock::new());
    let watch = Watch {
        db: db.clone(),
        window: Window {
            products: products.clone(),
            from_us: start_us,
            to_us: i64::MAX,
        },
        chains: args.feed.chains,
        timeout: Duration::from_secs(args.timeout),
        report: report.clone(),
        stats: stats.clone(),
        progress: progress.clone(),
        done: done.clone(),
        streams: fed_streams(config),
    };
    let mut process = Process::new(config, "run").await?;
    process.spawn(wiring::enrich(config, stats.enrich.clone())?, Role::Drain);
    for stream in wiring::sinks(config, &stats.sink)? {
        process.spawn(stream, Role::Drain);
    }
    process.spawn(feed, Role::Worker);
    process.spawn(watch, Role::Monitor);
    let outcome = process.run().await;
    progress.finish_and_clear();
    outcome?;
    let summary = report.borrow().as_ref().map(|r| r.sent.clone()).unwrap_or_default();
    let elapsed = done.get().copied().unwrap_or_default();
    print_summary(&db, &summary, &stats, products, start_us, elapsed, &fed_streams(config)).await
}

/// Prints what the run produced, enriched and stored, and fails when the counts do not
/// balance.
async fn print_summary(
    db: &Client,
    summary: &FeedSummary,
    stats: &PipelineStats,
    products: Vec<String>,
    start_us: i64,
    elapsed: Duration,
    fed: &[Fed],
) -> Result<()> {
    let (from_us, to_us) = summary.chain_times.unwrap_or((0, -1));
    let window = Window {
        products,
        from_us,
        to_us,
    };
    let snapshots = count(db, "chain_snapshots", &window).await?;
    let options_stored = count(db, "chain_options", &window).await?;
    let since_start = Window {
        from_us: start_us.min(from_us),
        ..window
    };
    let mut unbalanced = Vec::new();
    let mut stored_lines = Vec::new();
    for &Fed { name, topic, table } in fed {
        let n = count(db, table, &since_start).await?;
        stored_lines.push(format!(
            "  chainflow.{table:<16} {n} rows (FINAL, this run; {} {name} produced)",
            summary.on(topic)
        ));
        if n != summary.on(topic) {
            unbalanced.push(format!("{} {name} produced, {n} stored", summary.on(topic)));
        }
    }
    let window = since_start;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let chains = summary.chains();
    println!("chainflow run: {chains} chains produced, enriched and stored in {secs:.1} s");
    println!(
        "  rate                      {:.0} chains/s end to end ({:.0} options/s)",
        chains as f64 / secs,
        summary.options as f64 / secs
    );
    println!("  market.underlying         {} ticks produced", summary.on(UNDERLYING));
    println!(
        "  market.option_quote       {} quotes produced",
        summary.on(OPTION_QUOTE)
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
    for line in &stored_lines {
        println!("{line}");
    }
    if snapshots != chains || options_stored != summary.options {
        unbalanced.push(format!(
            "{chains} chains / {} options produced, {snapshots} / {options_stored} stored",
            summary.options
        ));
    }
    if !unbalanced.is_empty() {
        bail!("counts do not balance: {}", unbalanced.join("; "));
    }
    print_latest(db, &window).await
}

/// Prints the metrics of the latest chains of the run (at most four).
async fn print_latest(db: &Client, window: &Window) -> Result<()> {
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
        let expiry = chainflow_contract::keys::date_from_days(i32::from(l.expiry));
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

#[cfg(test)]
mod tests {
    use super::is_transient;
    use anyhow::Context;

    fn failed(e: clickhouse::error::Error) -> anyhow::Error {
        Err::<(), _>(e).context("counting chain_snapshots").unwrap_err()
    }

    #[test]
    fn the_watch_asks_again_after_a_network_failure_or_timeout_only() {
        let closed = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection closed");
        assert!(is_transient(&failed(clickhouse::error::Error::Network(Box::new(
            closed
        )))));
        assert!(is_transient(&failed(clickhouse::error::Error::TimedOut)));
        let bad = "Code: 6, e.displayText() = DB::Exception: Cannot parse string";
        assert!(!is_transient(&failed(clickhouse::error::Error::BadResponse(
            bad.into()
        ))));
        assert!(!is_transient(&anyhow::anyhow!("the feed failed")));
    }
}
