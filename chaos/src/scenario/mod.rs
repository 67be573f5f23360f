//! The scenarios: what is broken, when, and what must be true afterwards. A scenario's
//! [`run`] prepares a product, a database and groups of its own, starts its enrichers and
//! sinks and a seeded feed whose totals are known (`setup`), injects its fault while the
//! feed runs (`faults`, `poison`), and once everything is stored and every lag is 0 (or
//! the recovery limit passed) counts what was stored against what was produced.

mod expect;
mod faults;
mod poison;
mod setup;

use crate::observe::{self, Group, Keys};
use anyhow::{bail, Result};
pub use expect::Effects;
use expect::Expect;
use setup::{Cast, Feed, Run};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a scenario breaks.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// SIGKILL a sink every 3–8 s, `times` times (the supervisor restarts it).
    KillSink(u32),
    /// SIGKILL an enricher every 3–8 s, `times` times.
    KillEnrich(u32),
    /// ClickHouse killed, started again after so many seconds.
    ClickHouseDown(u64),
    /// ClickHouse frozen (SIGSTOP) for so many seconds.
    ClickHouseFrozen(u64),
    /// `chain_options` detached for so many seconds.
    TableDetached(u64),
    /// Every Kafka node killed, started again after so many seconds (the feed runs with
    /// the default `message.timeout.ms`, 60 s: outlived, it exits and is started again).
    BrokerDown(u64),
    /// For so many seconds, one of 3 sinks and 2 enrichers replaced every 10 s.
    RebalanceStorm(u64),
    /// ClickHouse down, then SIGTERM to the sink, then a second SIGTERM.
    DoubleSigterm,
    /// The registry killed for so many seconds while a sink starts cold.
    RegistryDown(u64),
    /// Bad records on the raw and the enriched topics, each followed by a good one.
    Poison,
    /// `market.underlying` deleted and recreated between two halves of the feed.
    TopicRecreated,
    /// The Kafka node leading the busiest partition SIGKILLed, started again so many
    /// seconds later.
    LeaderKilled(u64),
    /// Two of the three Kafka nodes killed for so many seconds (below `min.insync.replicas`:
    /// producers wait).
    TwoBrokersDown(u64),
    /// The node leading the busiest partition frozen (SIGSTOP) for so many seconds: the ISR
    /// shrinks, and grows back.
    BrokerFrozen(u64),
    /// Every Kafka node stopped (SIGTERM) and started again in turn, each once the
    /// partitions are fully replicated again.
    RollingRestart,
    /// The node leading the KRaft quorum SIGKILLed, started again so many seconds later.
    QuorumLeaderKilled(u64),
    /// The node leading the busiest partition cut off from the other nodes and from every
    /// client (its network namespace's link down) for so many seconds.
    BrokerIsolated(u64),
    /// ClickHouse's answers to the sinks delayed 8 s (past their 5 s insert timeout) for so
    /// many seconds, by toxiproxy.
    ClickHouseSlow(u64),
    /// ClickHouse's answers to the sinks dropped for so many seconds (toxiproxy): the
    /// inserts are applied, their acknowledgements lost, and the sinks write them again.
    ClickHouseAckLost(u64),
    /// The feed SIGKILLed 8 s in; its supervisor starts it again (it resends from its start).
    FeedKilled,
    /// The first sink's or enricher's first process aborts at this fault point (the poison
    /// mix is sent too, so that dead letters pass it); the supervisor restarts it without.
    AbortAt(&'static str),
}

/// One scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name in the table.
    pub name: &'static str,
    /// Options to produce, at least (whole chains of 82).
    pub options: u64,
    /// What is broken.
    pub fault: Fault,
    /// How long the feed takes, seconds (it is paced to last that long).
    pub feed_secs: u64,
    /// Extra environment of the sinks (`max.poll.interval.ms`, ...).
    pub sink_env: Vec<(&'static str, &'static str)>,
    /// Extra environment of the enrichers (transactions, ...).
    pub enrich_env: Vec<(&'static str, &'static str)>,
}

/// One line of the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Scenario.
    pub name: String,
    /// Rows produced (chains, options, ticks, quotes).
    pub produced: u64,
    /// Rows stored, with `FINAL`.
    pub stored_final: u64,
    /// Dead letters of the scenario's records.
    pub dead_lettered: u64,
    /// Dead letters expected.
    pub dead_expected: u64,
    /// Natural keys produced and not stored (`FINAL`).
    pub missing_keys: u64,
    /// Natural keys stored and never produced.
    pub extra_keys: u64,
    /// Plain minus `FINAL`, before `OPTIMIZE ... FINAL`.
    pub duplicates_before: u64,
    /// The same after.
    pub duplicates_after: u64,
    /// Restarts, re-joins, retries, commit errors and stalls.
    pub effects: Effects,
    /// From the fault's end to lag 0 with every row queryable, seconds.
    pub recovery: f64,
    /// The highest total lag seen.
    pub max_lag: i64,
    /// The sinks' peak resident memory, MB.
    pub peak_sink_rss_mb: f64,
    /// From SIGTERM to the sink's exit, seconds.
    pub sigterm_exit: f64,
    /// What went wrong, if anything.
    pub failure: Option<String>,
}

/// The simulation's start, for every scenario.
const START: &str = "2025-01-27T03:45:00Z";
/// Options per chain of the scenario's product (41 strikes).
const OPTIONS_PER_CHAIN: u64 = 82;
/// How long the suite waits for a scenario to recover after its fault.
const RECOVERY_LIMIT: Duration = Duration::from_mins(5);

/// Runs `scenario` (number `index`) on `stack` with the binary `bin`.
pub async fn run(stack: &crate::stack::PrivateStack, bin: &Path, index: usize, scenario: &Scenario, seed: u64) -> Row {
    let mut row = Row {
        name: scenario.name.to_string(),
        ..Row::default()
    };
    if let Err(e) = run_inner(stack, bin, index, scenario, seed, &mut row).await {
        row.failure = Some(format!("{e:#}"));
    }
    row
}

async fn run_inner(
    stack: &crate::stack::PrivateStack,
    bin: &Path,
    index: usize,
    sc: &Scenario,
    seed: u64,
    row: &mut Row,
) -> Result<()> {
    let mut run = Run::new(stack, bin, index, sc).await?;
    let (sinks, enrichers) = match sc.fault {
        Fault::RebalanceStorm(_) => (3, 2),
        _ => (1, 1),
    };
    let mut cast = Cast::start(&mut run, sc, sinks, enrichers).await?;
    let chains = sc.options.div_ceil(OPTIONS_PER_CHAIN);
    // in two halves around a recreated topic
    let first = match sc.fault {
        Fault::TopicRecreated => chains / 2,
        _ => chains,
    };
    let mut feed = Feed::start(&run, sc, seed, first, chains)?;
    let groups = Arc::new(run.groups()?);
    let lag = LagSampler::start(groups.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let added = faults::inject(sc.fault, &mut run, &mut cast, &mut feed, &groups, row).await?;
    let fault_end = Instant::now();
    feed.wait().await?;
    let mut expect = feed.expect.clone();
    expect.extend(added.keys);
    row.produced = expect.counts().total();
    row.dead_expected = added.dead_letters;
    let recovered = wait_stored(&run, &expect, &groups, RECOVERY_LIMIT).await;
    row.recovery = fault_end.elapsed().as_secs_f64();
    row.max_lag = lag.stop();
    row.peak_sink_rss_mb = cast.peak_sink_rss_mb();
    let effects = cast.effects().await;
    let exit = cast.terminate().await?;
    if !matches!(sc.fault, Fault::DoubleSigterm) {
        row.sigterm_exit = exit.as_secs_f64();
    }
    let mut problems = tally(&run, sc.fault, &expect, row).await?;
    problems.extend(added.unobserved);
    match effects {
        Ok(effects) => {
            row.effects = Effects {
                feed_restarts: feed.restarts(),
                ..effects
            };
            problems.extend(Expect::of(sc.fault).check(&row.effects));
        }
        Err(e) => problems.push(format!("{e:#}")),
    }
    if let Err(e) = recovered {
        problems.push(format!("{e:#}"));
        problems.extend(lagging(&groups).await);
    }
    if !problems.is_empty() {
        row.failure = Some(problems.join("; "));
    }
    let _ = run
        .db
        .query(&format!("DROP DATABASE IF EXISTS {}", run.database))
        .execute()
        .await;
    Ok(())
}

/// The highest total lag of a run's groups, sampled every 2 s.
struct LagSampler {
    max: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl LagSampler {
    fn start(groups: Arc<Vec<Group>>) -> Self {
        let max = Arc::new(AtomicI64::new(0));
        let seen = max.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut total = 0;
                for g in groups.iter() {
                    if let Ok((lag, _)) = g.lag().await {
                        total += lag;
                    }
                }
                seen.fetch_max(total, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        Self { max, task }
    }

    /// Stops sampling; the highest total lag seen.
    fn stop(self) -> i64 {
        self.task.abort();
        self.max.load(Ordering::Relaxed)
    }
}

/// Counts what was stored into `row` (rows with and without `FINAL`, the natural keys
/// missing and extra against `expect`, dead letters, the duplicates before and after
/// `OPTIMIZE ... FINAL`); what does not balance, naming the first keys that do not, and
/// after `fault` lost ClickHouse's answers, rows stored twice on a server that takes
/// deduplication tokens.
async fn tally(run: &Run<'_>, fault: Fault, expect: &Keys, row: &mut Row) -> Result<Vec<String>> {
    let final_ = observe::counts(&run.db, &run.product, true).await?;
    let plain = observe::counts(&run.db, &run.product, false).await?;
    row.stored_final = final_.total();
    row.dead_lettered = observe::dead_letters(&run.db, &poison::poison_key(&run.product)).await?;
    let (missing, extra, which) = expect.compare(&observe::stored_keys(&run.db, &run.product).await?);
    (row.missing_keys, row.extra_keys) = (missing, extra);
    row.duplicates_before = plain.total().saturating_sub(final_.total());
    observe::optimize(&run.db).await?;
    row.duplicates_after = observe::counts(&run.db, &run.product, false)
        .await?
        .total()
        .saturating_sub(final_.total());
    let mut problems = Vec::new();
    if !which.is_empty() {
        problems.push(which);
    }
    // an insert written again after its acknowledgement was lost carries the same token: a
    // server that takes tokens drops it (an older one keeps it until FINAL or a merge)
    if matches!(fault, Fault::ClickHouseAckLost(_) | Fault::ClickHouseSlow(_))
        && row.duplicates_before > 0
        && chainflow_clickhouse::ServerVersion::detect(&run.db)
            .await?
            .has_dedup_token()
    {
        problems.push(format!(
            "{} rows stored twice although the server drops repeats by token",
            row.duplicates_before
        ));
    }
    if row.dead_lettered != row.dead_expected {
        problems.push(format!(
            "{} dead letters, expected {}",
            row.dead_lettered, row.dead_expected
        ));
    }
    if row.duplicates_after != 0 {
        problems.push(format!("{} duplicates survive OPTIMIZE FINAL", row.duplicates_after));
    }
    Ok(problems)
}

/// The groups still behind, with the partitions.
async fn lagging(groups: &[Group]) -> Vec<String> {
    let mut out = Vec::new();
    for g in groups {
        if let Ok((lag, parts)) = g.lag().await {
            if lag > 0 {
                out.push(format!("{} {lag} behind on {}", g.id, parts.join(", ")));
            }
        }
    }
    out
}

/// Waits until the expected rows are queryable and every group's lag is 0.
async fn wait_stored(run: &Run<'_>, expect: &Keys, groups: &[Group], limit: Duration) -> Result<()> {
    let expect = expect.counts();
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    let mut report = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if Instant::now() >= report {
            eprintln!("[chaos]   waiting: {last}");
            report += Duration::from_secs(30);
        }
        match observe::counts(&run.db, &run.product, true).await {
            Ok(c) if c == expect => {
                let mut lagging = Vec::new();
                for g in groups {
                    match g.lag().await {
                        Ok((0, _)) => {}
                        Ok((lag, parts)) => lagging.push(format!("{}: {lag} behind on {}", g.id, parts.join(", "))),
                        Err(e) => lagging.push(format!("{}: {e:#}", g.id)),
                    }
                }
                if lagging.is_empty() {
                    return Ok(());
                }
                last = lagging.join("; ");
            }
            Ok(c) => last = format!("rows by table {:?} of {:?}", c.rows, expect.rows),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("not recovered within {limit:?}: {last}")
}
