//! The scenarios: what is broken, when, and what must be true afterwards.

use crate::observe::{self, Counts, Group};
use crate::procs::{Component, Launch};
use crate::stack::{self, PrivateStack};
use anyhow::{bail, Context, Result};
use chainflow_analytics::{enrich_chain, Source};
use chainflow_codec::{registry_settings, Codec};
use chainflow_config::{default_products, ProductSpec};
use chainflow_contract::topics::{
    dead_letter_topics, ENRICHED_CHAIN, HEADER_ID, OPTION_CHAIN, OPTION_QUOTE, UNDERLYING,
};
use chainflow_contract::{OptionChain, Quote, Record, StrikeQuotes, UnderlyingTick};
use chainflow_feed::sim::{MarketEvent, Pricing, Scenario as Regime, SimOptions, Simulator};
use rand::Rng;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// The broker killed, started again after so many seconds.
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
    /// Rows stored, plain.
    pub stored_plain: u64,
    /// Dead letters of the scenario's records.
    pub dead_lettered: u64,
    /// Dead letters expected.
    pub dead_expected: u64,
    /// Rows produced and not stored.
    pub lost: u64,
    /// Plain minus `FINAL`, before `OPTIMIZE ... FINAL`.
    pub duplicates_before: u64,
    /// The same after.
    pub duplicates_after: u64,
    /// Restarts of the components.
    pub restarts: u64,
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

/// Options per chain of the scenario's product (41 strikes).
const OPTIONS_PER_CHAIN: u64 = 82;
/// The simulation's start, for every scenario.
const START: &str = "2025-01-27T03:45:00Z";
/// How long the suite waits for a scenario to recover after its fault.
const RECOVERY_LIMIT: Duration = Duration::from_mins(5);

/// What the feed will produce: chain, option, tick and quote rows.
fn expected(spec: &ProductSpec, seed: u64, start_us: i64, chains: u64) -> Counts {
    let options = SimOptions {
        seed,
        start_us,
        scenario: Regime::Normal,
        pricing: Pricing::Ticks,
    };
    let mut seen = 0;
    let mut c = Counts::default();
    for e in Simulator::new([spec.clone()], options).take_while(|e| {
        let more = seen < chains;
        seen += u64::from(matches!(e, MarketEvent::Chain(_)));
        more
    }) {
        match e {
            MarketEvent::Chain(ch) => {
                c.rows[0] += 1;
                c.rows[1] += ch.option_count() as u64;
            }
            MarketEvent::Tick(_) => c.rows[2] += 1,
            MarketEvent::Quote(_) => c.rows[3] += 1,
        }
    }
    c
}

/// The run of one scenario on `stack`.
pub struct Run<'a> {
    stack: &'a PrivateStack,
    bin: PathBuf,
    tag: String,
    product: String,
    spec: ProductSpec,
    config_file: PathBuf,
    database: String,
    db: clickhouse::Client,
    enrich_group: String,
    sink_prefix: String,
    next_port: u16,
}

impl<'a> Run<'a> {
    /// Prepares `scenario` (number `index`): a product, a database and groups of its own.
    pub async fn new(stack: &'a PrivateStack, bin: &Path, index: usize, scenario: &Scenario) -> Result<Self> {
        let tag = format!(
            "{}{}",
            scenario.name.replace('-', "_"),
            rand::rng().random_range(1000..10_000)
        );
        let product = format!("CHAOS{index}X{}", rand::rng().random_range(100_000..1_000_000));
        let params = default_products().remove("NIFTY").expect("a default product");
        let spec = ProductSpec::new(&product, params.clone()).map_err(|e| anyhow::anyhow!(e))?;
        let config_file = stack.logs().join(format!("{tag}.toml"));
        let mut file = toml::Table::new();
        file.insert(
            "products".into(),
            toml::Value::try_from(BTreeMap::from([(product.clone(), params)]))?,
        );
        std::fs::write(&config_file, toml::to_string(&file)?)?;
        let database = format!("chaos_{tag}");
        let run = Self {
            stack,
            bin: bin.to_path_buf(),
            db: chainflow_clickhouse::client(&stack.config.clickhouse).with_database(&database),
            tag: tag.clone(),
            product,
            spec,
            config_file,
            database,
            enrich_group: format!("chaos-{tag}-enrich"),
            sink_prefix: format!("chaos-{tag}-sink"),
            next_port: 30_000 + (index as u16) * 20,
        };
        let out = std::process::Command::new(&run.bin)
            .arg("migrate")
            .envs(run.env())
            .output()
            .context("chainflow migrate")?;
        if !out.status.success() {
            bail!("migrate: {}", String::from_utf8_lossy(&out.stderr));
        }
        run.groups_at_end().await?;
        Ok(run)
    }

    /// The environment of the scenario's processes.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.stack.env.clone();
        env.extend([
            ("CHAINFLOW_CONFIG".into(), self.config_file.display().to_string()),
            ("CHAINFLOW_CLICKHOUSE__DATABASE".into(), self.database.clone()),
            ("CHAINFLOW_ENRICH__GROUP_ID".into(), self.enrich_group.clone()),
            ("CHAINFLOW_SINK__GROUP_ID".into(), self.sink_prefix.clone()),
            ("CHAINFLOW_OBSERVABILITY__LOG_FORMAT".into(), "json".into()),
            ("RUST_LOG".into(), "warn".into()),
        ]);
        env
    }

    /// The groups the scenario's enrichers and sinks read in, with their topics.
    fn groups(&self) -> Result<Vec<Group>> {
        let kafka = &self.stack.config.kafka;
        let n = kafka.partitions;
        let mut out = vec![
            Group::new(kafka, &self.enrich_group, &[(OPTION_CHAIN.into(), n)])?,
            Group::new(
                kafka,
                &format!("{}-chains", self.sink_prefix),
                &[(ENRICHED_CHAIN.into(), n)],
            )?,
            Group::new(kafka, &format!("{}-ticks", self.sink_prefix), &[(UNDERLYING.into(), n)])?,
            Group::new(
                kafka,
                &format!("{}-quotes", self.sink_prefix),
                &[(OPTION_QUOTE.into(), n)],
            )?,
        ];
        let dlq: Vec<(String, i32)> = dead_letter_topics().into_iter().map(|t| (t, 1)).collect();
        out.push(Group::new(kafka, &format!("{}-dead_letters", self.sink_prefix), &dlq)?);
        Ok(out)
    }

    /// Commits the current end of every topic for the scenario's groups: they read only
    /// what the scenario sends.
    async fn groups_at_end(&self) -> Result<()> {
        for g in self.groups()? {
            g.commit_at_end().await?;
        }
        Ok(())
    }

    fn port(&mut self) -> u16 {
        self.next_port += 1;
        self.next_port
    }

    /// A supervised `chainflow ARGS` with its own metrics port.
    fn component(&mut self, name: &str, args: &[&str], extra: &[(&str, &str)]) -> (Component, u16) {
        let port = self.port();
        let mut env = self.env();
        env.push((
            "CHAINFLOW_OBSERVABILITY__METRICS_LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ));
        env.extend(extra.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
        let launch = Launch {
            bin: self.bin.clone(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
            env,
            log: self.stack.logs().join(format!("{}-{name}.log", self.tag)),
        };
        (Component::start(name, launch), port)
    }
}

/// Waits until `127.0.0.1:port/readyz` answers 200.
async fn ready(port: u16, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the component on port {port} was not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A sleep of 3–8 s between kills.
fn between_kills() -> Duration {
    Duration::from_millis(rand::rng().random_range(3_000..=8_000))
}

/// A chain of `product` with 21 strikes, for poison and its good neighbours.
fn small_chain(product: &str, seq: i64) -> OptionChain {
    let quote = |mid: f64| Quote {
        bid: mid - 0.5,
        ask: mid + 0.5,
        last: mid,
        volume: 100,
        oi: 1_000,
        oi_change: 10,
        iv: None,
    };
    OptionChain {
        product: product.into(),
        expiry: 20_118,
        lot_size: 50,
        spot: 21_500.0,
        // well after the feed's chains, so that they never share a key and time
        event_time: 1_737_603_900_000_000 + seq * 1_000_000,
        seq,
        strikes: (0..21)
            .map(|i| {
                let k = 21_000.0 + 50.0 * f64::from(i);
                StrikeQuotes {
                    strike: k,
                    call: quote((21_600.0 - k).max(5.0)),
                    put: quote((k - 21_400.0).max(5.0)),
                }
            })
            .collect(),
    }
}

/// Runs `scenario` (number `index`) on `stack` with the binary `bin`.
pub async fn run(stack: &PrivateStack, bin: &Path, index: usize, scenario: &Scenario, seed: u64) -> Row {
    let mut row = Row {
        name: scenario.name.to_string(),
        ..Row::default()
    };
    if let Err(e) = run_inner(stack, bin, index, scenario, seed, &mut row).await {
        row.failure = Some(format!("{e:#}"));
    }
    row
}

#[allow(
    clippy::too_many_lines,
    reason = "one scenario, from start to measurement, reads best in order"
)]
async fn run_inner(
    stack: &PrivateStack,
    bin: &Path,
    index: usize,
    sc: &Scenario,
    seed: u64,
    row: &mut Row,
) -> Result<()> {
    let mut run = Run::new(stack, bin, index, sc).await?;
    let start_us = chrono::DateTime::parse_from_rfc3339(START)?.timestamp_micros();
    let chains = sc.options.div_ceil(OPTIONS_PER_CHAIN);
    let halves = matches!(sc.fault, Fault::TopicRecreated);
    let mut expect = expected(&run.spec, seed, start_us, chains);
    let (sinks, enrichers) = if matches!(sc.fault, Fault::RebalanceStorm(_)) {
        (3, 2)
    } else {
        (1, 1)
    };
    let sink_env: Vec<(&str, &str)> = sc.sink_env.clone();
    let mut sink_list: Vec<(Component, u16)> = (0..sinks)
        .map(|i| run.component(&format!("sink{i}"), &["sink"], &sink_env))
        .collect();
    let mut enrich_list: Vec<(Component, u16)> = (0..enrichers)
        .map(|i| run.component(&format!("enrich{i}"), &["enrich"], &[]))
        .collect();
    for (_, port) in sink_list.iter().chain(enrich_list.iter()) {
        ready(*port, Duration::from_secs(90)).await?;
    }

    // the feed, paced to last `feed_secs` (in two halves around a recreated topic)
    let messages = expect.rows[0] + expect.rows[2] + expect.rows[3];
    let rate = (messages as f64 / sc.feed_secs.max(1) as f64).max(1.0);
    let broker_fault = matches!(sc.fault, Fault::BrokerDown(_));
    let feed = |run: &Run, chains: u64, start: &str| {
        let mut cmd = tokio::process::Command::new(&run.bin);
        cmd.args([
            "feed",
            "--chains",
            &chains.to_string(),
            "--seed",
            &seed.to_string(),
            "--start",
            start,
            "--rate",
            &format!("{rate:.1}"),
        ])
        .envs(run.env())
        .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", "")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        if broker_fault {
            // the feed rides out the broker's absence instead of failing its deliveries
            cmd.env("CHAINFLOW_KAFKA__PROPERTIES__MESSAGE_TIMEOUT_MS", "300000");
        }
        cmd.kill_on_drop(true).spawn()
    };
    let first_half = if halves { chains / 2 } else { chains };
    if halves {
        expect = expected(&run.spec, seed, start_us, first_half);
    }
    let mut feeding = feed(&run, first_half, START).context("starting the feed")?;
    let mut feeds = vec![(start_us, first_half)];

    // the lag, sampled all along
    let groups = Arc::new(run.groups()?);
    let max_lag = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let sampler = {
        let (groups, max_lag) = (groups.clone(), max_lag.clone());
        tokio::spawn(async move {
            loop {
                let mut total = 0;
                for g in groups.iter() {
                    if let Ok((lag, _)) = g.lag().await {
                        total += lag;
                    }
                }
                max_lag.fetch_max(total, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut dead_expected = 0;
    let poison_key = small_chain(&run.product, 0).key();
    match sc.fault {
        Fault::KillSink(times) => {
            for _ in 0..times {
                tokio::time::sleep(between_kills()).await;
                sink_list[0].0.running(Duration::from_secs(30)).await?;
                sink_list[0].0.signal("KILL")?;
            }
        }
        Fault::KillEnrich(times) => {
            for _ in 0..times {
                tokio::time::sleep(between_kills()).await;
                enrich_list[0].0.running(Duration::from_secs(30)).await?;
                enrich_list[0].0.signal("KILL")?;
            }
        }
        Fault::ClickHouseDown(secs) => {
            stack::kill_and_wait(stack.pid("clickhouse")?).await?;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stack.start_missing()?;
        }
        Fault::ClickHouseFrozen(secs) => {
            let pid = stack.pid("clickhouse")?;
            stack::signal("STOP", pid)?;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stack::signal("CONT", pid)?;
        }
        Fault::TableDetached(secs) => {
            run.db.query("DETACH TABLE chain_options").execute().await?;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            run.db.query("ATTACH TABLE chain_options").execute().await?;
        }
        Fault::BrokerDown(secs) => {
            stack::kill_and_wait(stack.pid("broker")?).await?;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stack.start_missing()?;
        }
        Fault::RebalanceStorm(secs) => {
            let until = Instant::now() + Duration::from_secs(secs);
            let mut i = 0usize;
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let name = format!("replacement{i}");
                if i.is_multiple_of(2) {
                    let old = sink_list.remove(0);
                    old.0.terminate(Duration::from_secs(35)).await?;
                    let new = run.component(&name, &["sink"], &sink_env);
                    sink_list.push(new);
                } else {
                    let old = enrich_list.remove(0);
                    old.0.terminate(Duration::from_secs(35)).await?;
                    let new = run.component(&name, &["enrich"], &[]);
                    enrich_list.push(new);
                }
                row.restarts += 1;
                i += 1;
            }
        }
        Fault::DoubleSigterm => {
            stack::kill_and_wait(stack.pid("clickhouse")?).await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let sink = &sink_list[0].0;
            let pid = sink.running(Duration::from_secs(30)).await?;
            let t0 = Instant::now();
            sink.signal("TERM")?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            sink.signal("TERM")?;
            while stack::alive(pid) && sink.pid() == pid && t0.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            row.sigterm_exit = t0.elapsed().as_secs_f64();
            if row.sigterm_exit > 5.0 {
                bail!("the sink took {:.1} s to exit after a second SIGTERM", row.sigterm_exit);
            }
            stack.start_missing()?;
        }
        Fault::RegistryDown(secs) => {
            // every sink stops; the registry goes; a new sink starts with an empty cache
            for s in sink_list.drain(..) {
                s.0.terminate(Duration::from_secs(35)).await?;
            }
            stack::kill_and_wait(stack.pid("registry")?).await?;
            // it starts (ClickHouse and Kafka answer) but is not ready: it cannot decode
            sink_list.push(run.component("cold-sink", &["sink"], &sink_env));
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stack.start_missing()?;
        }
        Fault::Poison => {
            let (extra, dead) = poison(&run, &poison_key).await?;
            for (e, x) in expect.rows.iter_mut().zip(extra.rows) {
                *e += x;
            }
            dead_expected = dead;
        }
        Fault::TopicRecreated => {
            let status = feeding.wait().await?;
            if !status.success() {
                bail!("the first half of the feed failed: {status}");
            }
            wait_stored(&run, &expect, &groups, RECOVERY_LIMIT).await?;
            delete_topic(stack, UNDERLYING).await?;
            let out = std::process::Command::new(&run.bin)
                .arg("topics")
                .envs(run.env())
                .output()?;
            if !out.status.success() {
                bail!("recreating the topics: {}", String::from_utf8_lossy(&out.stderr));
            }
            let second_start = chrono::DateTime::parse_from_rfc3339(START)? + chrono::Duration::hours(12);
            let second = second_start.to_rfc3339();
            let second_expect = expected(&run.spec, seed, second_start.timestamp_micros(), chains - first_half);
            for (e, x) in expect.rows.iter_mut().zip(second_expect.rows) {
                *e += x;
            }
            feeding = feed(&run, chains - first_half, &second).context("starting the second half")?;
            feeds.push((second_start.timestamp_micros(), chains - first_half));
        }
    }
    let fault_end = Instant::now();
    let status = feeding.wait().await?;
    if !status.success() {
        bail!("the feed failed: {status}");
    }
    row.produced = expect.total();
    row.dead_expected = dead_expected;
    let recovered = wait_stored(&run, &expect, &groups, RECOVERY_LIMIT).await;
    row.recovery = fault_end.elapsed().as_secs_f64();
    sampler.abort();
    row.max_lag = max_lag.load(std::sync::atomic::Ordering::Relaxed);
    row.peak_sink_rss_mb = sink_list.iter().map(|s| s.0.peak_rss()).max().unwrap_or(0) as f64 / 1_048_576.0;
    row.restarts += sink_list
        .iter()
        .chain(enrich_list.iter())
        .map(|c| c.0.restarts())
        .sum::<u64>();
    let mut exit = 0.0f64;
    for (c, _) in sink_list {
        exit = exit.max(c.terminate(Duration::from_secs(35)).await?.as_secs_f64());
    }
    if !matches!(sc.fault, Fault::DoubleSigterm) {
        row.sigterm_exit = exit;
    }
    for (c, _) in enrich_list {
        c.terminate(Duration::from_secs(35)).await?;
    }
    let final_ = observe::counts(&run.db, &run.product, true).await?;
    let plain = observe::counts(&run.db, &run.product, false).await?;
    row.stored_final = final_.total();
    row.stored_plain = plain.total();
    row.dead_lettered = observe::dead_letters(&run.db, &poison_key).await?;
    row.lost = row.produced.saturating_sub(row.stored_final);
    row.duplicates_before = plain.total().saturating_sub(final_.total());
    observe::optimize(&run.db).await?;
    row.duplicates_after = observe::counts(&run.db, &run.product, false)
        .await?
        .total()
        .saturating_sub(final_.total());
    let mut problems = Vec::new();
    if let Err(e) = recovered {
        problems.push(format!("{e:#}"));
        for g in groups.iter() {
            if let Ok((lag, parts)) = g.lag().await {
                if lag > 0 {
                    problems.push(format!("{} {lag} behind on {}", g.id, parts.join(", ")));
                }
            }
        }
    }
    if final_ != expect {
        problems.push(format!("rows by table {:?}, expected {:?}", final_.rows, expect.rows));
        problems.extend(missing_chains(&run, seed, &feeds).await);
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

/// Waits until the expected rows are queryable and every group's lag is 0.
async fn wait_stored(run: &Run<'_>, expect: &Counts, groups: &[Group], limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match observe::counts(&run.db, &run.product, true).await {
            Ok(c) if c == *expect => {
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

/// The chains the feeds `feeds` (start, chains) produced that are not queryable: the first
/// few, by key and event time.
async fn missing_chains(run: &Run<'_>, seed: u64, feeds: &[(i64, u64)]) -> Vec<String> {
    #[derive(serde::Deserialize, clickhouse::Row)]
    struct Key {
        expiry: u16,
        event_time_us: i64,
    }
    let Ok(stored) = run
        .db
        .query("SELECT expiry, event_time_us FROM chain_snapshots FINAL WHERE product = ?")
        .bind(&run.product)
        .fetch_all::<Key>()
        .await
    else {
        return vec!["the stored chains could not be read".into()];
    };
    let stored: std::collections::BTreeSet<(i32, i64)> = stored
        .into_iter()
        .map(|k| (i32::from(k.expiry), k.event_time_us))
        .collect();
    let mut missing = Vec::new();
    for &(start_us, chains) in feeds {
        let options = SimOptions {
            seed,
            start_us,
            scenario: Regime::Normal,
            pricing: Pricing::Ticks,
        };
        let produced = Simulator::new([run.spec.clone()], options)
            .filter_map(|e| match e {
                MarketEvent::Chain(c) => Some(c),
                _ => None,
            })
            .take(chains as usize);
        for c in produced.filter(|c| !stored.contains(&(c.expiry, c.event_time))) {
            missing.push(format!("{}@{}", c.key(), c.event_time));
        }
    }
    let count = missing.len();
    missing.truncate(10);
    if count == 0 {
        Vec::new()
    } else {
        vec![format!("{count} chains missing, first: {}", missing.join(", "))]
    }
}

/// Sends the poison mix: bad records on the raw and enriched topics, each followed by a
/// good one with the same key. Returns the extra rows the good ones add, and how many
/// dead letters are due.
async fn poison(run: &Run<'_>, key: &str) -> Result<(Counts, u64)> {
    let cfg = &run.stack.config;
    let codec = Codec::new(registry_settings(&cfg.registry)?);
    let producer: FutureProducer = chainflow_kafka::producer_config(&cfg.kafka).create()?;
    let send = |topic: &'static str, payload: Vec<u8>, id: Option<String>| {
        let producer = producer.clone();
        let key = key.to_string();
        async move {
            let mut record = FutureRecord::to(topic).key(&key).payload(&payload);
            if let Some(id) = &id {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: HEADER_ID,
                    value: Some(id.as_str()),
                }));
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map(|_| ())
                .map_err(|(e, _)| anyhow::Error::new(e).context(format!("producing to {topic}")))
        }
    };
    let mut seq = 0;
    let mut good = || {
        seq += 1;
        small_chain(&run.product, seq)
    };
    let mut extra = Counts::default();
    let mut dead = 0;
    let tick = UnderlyingTick {
        product: run.product.clone(),
        price: 21_500.0,
        volume: 1,
        event_time: 1,
        seq: 1,
    };
    let mut nan_spot = good();
    nan_spot.spot = f64::NAN;
    let mut unsorted = good();
    unsorted.strikes.swap(0, 1);
    let empty = OptionChain {
        strikes: Vec::new(),
        ..good()
    };
    let mut unknown = codec.encode(&good()).await?;
    unknown[1..5].copy_from_slice(&0x7fff_ff00_u32.to_be_bytes());
    let raw_bad: Vec<Vec<u8>> = vec![
        b"garbage, not avro".to_vec(),
        unknown.clone(),
        codec.encode(&tick).await?,
        codec.encode(&nan_spot).await?,
        codec.encode(&unsorted).await?,
        codec.encode(&empty).await?,
    ];
    for bad in raw_bad {
        send(OPTION_CHAIN, bad, None).await?;
        dead += 1;
        let g = good();
        extra.rows[0] += 1;
        extra.rows[1] += g.option_count() as u64;
        send(OPTION_CHAIN, codec.encode(&g).await?, None).await?;
    }
    let terms = run.stack.config.clone().product_terms();
    let mut terms = terms.map_err(|e| anyhow::anyhow!("{e}"))?;
    terms.insert(run.product.clone(), run.spec.terms);
    let enriched_bad: Vec<Vec<u8>> = vec![
        b"garbage on the enriched topic".to_vec(),
        unknown,
        codec.encode(&tick).await?,
    ];
    for bad in enriched_bad {
        send(ENRICHED_CHAIN, bad, None).await?;
        dead += 1;
        let g = good();
        let source = Source {
            topic: OPTION_CHAIN,
            partition: 0,
            offset: 0,
        };
        let e = enrich_chain(&g, &terms, source, 1).map_err(|e| anyhow::anyhow!("{e}"))?;
        extra.rows[0] += 1;
        extra.rows[1] += g.option_count() as u64;
        send(ENRICHED_CHAIN, codec.encode(&e).await?, Some(e.id())).await?;
    }
    Ok((extra, dead))
}

/// Deletes `topic` and waits until the broker no longer lists it.
async fn delete_topic(stack: &PrivateStack, topic: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = chainflow_kafka::producer_config(&stack.config.kafka).create()?;
    let results = admin
        .delete_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("deleting {t}: {e}"))?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}
