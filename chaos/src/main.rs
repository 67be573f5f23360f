//! `chainflow-chaos`: the fault-injection suite. Each scenario runs on a private stack (its
//! own directory and ports) with real processes — enrich and sink as separate processes in
//! groups of their own, each with its own metrics port, under a supervisor that restarts
//! what exits — and a seeded feed whose totals are known in advance; a fault is injected,
//! and afterwards the counts must balance: nothing lost, duplicates only in a form that
//! `FINAL` collapses, every group's lag 0. One table says what happened.
//!
//! `ops/chaos.sh` builds it and runs the short form (the test suite runs that) or `--full`.

mod observe;
mod procs;
mod scenario;
mod stack;

use anyhow::{Context, Result};
use clap::Parser;
use scenario::{Fault, Row, Scenario};
use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The fault-injection suite.
#[derive(Debug, Parser)]
#[command(name = "chainflow-chaos")]
struct Args {
    /// Every scenario at full size (at least 100,000 options each); default: the short form.
    #[arg(long)]
    full: bool,
    /// Only the scenarios with these names (repeatable).
    #[arg(long = "scenario", value_name = "NAME")]
    only: Vec<String>,
    /// The chainflow binary.
    #[arg(long, default_value = "target/debug/chainflow")]
    bin: PathBuf,
    /// The repository (for ops/stack.sh).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Where the private stack lives (default: a new directory under /tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of the feed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// More environment for every sink, `KEY=VALUE` (repeatable): to see a scenario fail
    /// with a part of the sink's fault handling turned off (a very long
    /// `CHAINFLOW_SINK__INSERT_TIMEOUT_MS`, say).
    #[arg(long = "sink-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    sink_env: Vec<(&'static str, &'static str)>,
    /// Options per scenario, in place of the form's (a quick try of a full scenario).
    #[arg(long, value_name = "N")]
    options: Option<u64>,
    /// toxiproxy's server (ops/chaos.sh passes the one ops/install.sh built).
    #[arg(long, value_name = "PATH")]
    toxiproxy: PathBuf,
    /// Also write the table, as Markdown, to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

/// A `KEY=VALUE` of `--sink-env`, kept for the whole run.
fn parse_env(pair: &str) -> Result<(&'static str, &'static str), String> {
    let (k, v) = pair
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {pair:?}"))?;
    Ok((String::leak(k.to_string()), String::leak(v.to_string())))
}

fn scenario(name: &'static str, options: u64, fault: Fault, feed_secs: u64) -> Scenario {
    Scenario {
        name,
        options,
        fault,
        feed_secs,
        sink_env: Vec::new(),
        enrich_env: Vec::new(),
    }
}

/// A scenario whose sinks reach ClickHouse through toxiproxy, with an insert timeout of 5 s.
fn through_proxy(mut sc: Scenario) -> Scenario {
    sc.sink_env = vec![
        ("CHAINFLOW_CLICKHOUSE__URL", stack::CLICKHOUSE_PROXY),
        ("CHAINFLOW_SINK__INSERT_TIMEOUT_MS", "5000"),
    ];
    sc
}

/// A scenario whose enrichers write in transactions (exactly-once).
fn transactional(mut sc: Scenario) -> Scenario {
    sc.enrich_env = vec![("CHAINFLOW_ENRICH__TRANSACTIONS", "true")];
    sc
}

/// The short form: seven scenarios of about 10,000 options, one of them a replication fault
/// and one a kill at an exact point, within minutes.
fn short() -> Vec<Scenario> {
    vec![
        scenario("sink-sigkill-x3", 10_000, Fault::KillSink(3), 20),
        scenario("clickhouse-down-30s", 10_000, Fault::ClickHouseDown(30), 20),
        scenario("poison-mix", 10_000, Fault::Poison, 10),
        scenario("double-sigterm", 10_000, Fault::DoubleSigterm, 15),
        scenario("registry-down-20s", 10_000, Fault::RegistryDown(20), 15),
        scenario("leader-sigkill-20s", 10_000, Fault::LeaderKilled(20), 40),
        scenario("sink-abort-after-insert", 10_000, Fault::AbortAt("sink.inserted"), 15),
    ]
}

/// The full suite: every scenario, at least 100,000 options each.
fn full() -> Vec<Scenario> {
    let n = 100_000;
    let mut long_poll = scenario("clickhouse-down-45s-poll-30s", n, Fault::ClickHouseDown(45), 60);
    long_poll.sink_env = vec![("CHAINFLOW_KAFKA__PROPERTIES__MAX_POLL_INTERVAL_MS", "30000")];
    vec![
        scenario("sink-sigkill-x10", n, Fault::KillSink(10), 60),
        scenario("enrich-sigkill-x10", n, Fault::KillEnrich(10), 60),
        scenario("clickhouse-down-30s", n, Fault::ClickHouseDown(30), 45),
        long_poll,
        scenario("clickhouse-sigstop-90s", n, Fault::ClickHouseFrozen(90), 100),
        scenario("table-detached-30s", n, Fault::TableDetached(30), 45),
        scenario("broker-down-10s", n, Fault::BrokerDown(10), 30),
        scenario("broker-down-90s", n, Fault::BrokerDown(90), 100),
        scenario("rebalance-storm-60s", n, Fault::RebalanceStorm(60), 70),
        scenario("double-sigterm", n, Fault::DoubleSigterm, 30),
        scenario("registry-down-60s-cold-sink", n, Fault::RegistryDown(60), 70),
        scenario("poison-mix", n, Fault::Poison, 30),
        scenario("topic-recreated", n, Fault::TopicRecreated, 20),
        scenario("leader-sigkill-20s", n, Fault::LeaderKilled(20), 60),
        scenario("two-brokers-down-30s", n, Fault::TwoBrokersDown(30), 60),
        scenario("broker-sigstop-60s", n, Fault::BrokerFrozen(60), 90),
        scenario("rolling-restart", n, Fault::RollingRestart, 90),
        scenario("quorum-leader-sigkill-20s", n, Fault::QuorumLeaderKilled(20), 60),
        scenario("broker-isolated-30s", n, Fault::BrokerIsolated(30), 60),
        through_proxy(scenario("clickhouse-slow-30s", n, Fault::ClickHouseSlow(30), 45)),
        through_proxy(scenario("clickhouse-ack-lost-20s", n, Fault::ClickHouseAckLost(20), 45)),
        scenario("feed-sigkill", n, Fault::FeedKilled, 40),
        scenario("sink-abort-after-ledger", n, Fault::AbortAt("sink.recorded"), 30),
        scenario("sink-abort-after-insert", n, Fault::AbortAt("sink.inserted"), 30),
        scenario(
            "sink-abort-after-dead-letter",
            n,
            Fault::AbortAt("sink.dead_lettered"),
            30,
        ),
        transactional(scenario(
            "enrich-abort-before-commit",
            n,
            Fault::AbortAt("enrich.commit_transaction"),
            30,
        )),
    ]
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | produced | stored FINAL | dead-lettered | keys missing / extra | dups before / after OPTIMIZE | restarts: sink+enrich / feed | re-joins | retries: sink / enrich | commit errors | stalls | recovery s | max lag | peak sink RSS MB | SIGTERM→exit s | result |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let e = &r.effects;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} of {} | {} / {} | {} / {} | {} / {} | {} | {} / {} | {} | {} | {:.1} | {} | {:.0} | {:.2} | {} |",
            r.name,
            r.produced,
            r.stored_final,
            r.dead_lettered,
            r.dead_expected,
            r.missing_keys,
            r.extra_keys,
            r.duplicates_before,
            r.duplicates_after,
            e.restarts,
            e.feed_restarts,
            e.rebalances,
            e.sink_retries,
            e.enrich_retries,
            e.commit_errors,
            e.stalls,
            r.recovery,
            r.max_lag,
            r.peak_sink_rss_mb,
            r.sigterm_exit,
            r.failure
                .as_deref()
                .map_or("ok".to_string(), |f| format!("FAILED: {f}")),
        );
    }
    out
}

async fn suite(args: &Args) -> Result<bool> {
    let root = args.root.canonicalize().context("the repository")?;
    let bin = root.join(&args.bin);
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("chainflow-chaos-{}", std::process::id())),
    };
    let scenarios: Vec<Scenario> = (if args.full { full() } else { short() })
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s.name))
        .map(|mut s| {
            s.sink_env.extend(args.sink_env.iter().copied());
            Scenario {
                options: args.options.unwrap_or(s.options),
                ..s
            }
        })
        .collect();
    eprintln!(
        "[chaos] private stack in {} (Kafka: {} nodes on 29092, 29094, 29096; ClickHouse 28123; registry 28081)",
        dir.display(),
        stack::BROKERS
    );
    let stack = stack::PrivateStack::up(&root, &dir, &args.toxiproxy).await?;
    let mut rows = Vec::new();
    for (i, sc) in scenarios.iter().enumerate() {
        eprintln!("[chaos] {} ({} options, {:?})", sc.name, sc.options, sc.fault);
        let started = std::time::Instant::now();
        let row = scenario::run(&stack, &bin, i, sc, args.seed).await;
        eprintln!(
            "[chaos] {}: {} in {:.0} s",
            sc.name,
            row.failure.as_deref().unwrap_or("ok"),
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    let text = table(&rows);
    println!("{text}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    stack.down()?;
    Ok(rows.iter().all(|r| r.failure.is_none()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match suite(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chainflow-chaos: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
