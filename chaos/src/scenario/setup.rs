//! One scenario's run: its product, database and groups, its supervised enrichers and
//! sinks, and its seeded feed, whose totals are known before it starts.

use super::expect::Effects;
use super::{Scenario, START};
use crate::observe::{self, Group, Keys};
use crate::procs::{Component, Launch};
use crate::stack::PrivateStack;
use anyhow::{bail, Context, Result};
use chainflow_config::{default_products, ProductSpec};
use chainflow_contract::topics::{dead_letter_topics, ENRICHED_CHAIN, OPTION_CHAIN, OPTION_QUOTE, UNDERLYING};
use chainflow_feed::sim::{MarketEvent, Pricing, Scenario as Regime, SimOptions, Simulator};
use rand::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// The run of one scenario on `stack`.
pub struct Run<'a> {
    pub stack: &'a PrivateStack,
    pub bin: PathBuf,
    tag: String,
    pub product: String,
    pub spec: ProductSpec,
    config_file: PathBuf,
    pub database: String,
    pub db: clickhouse::Client,
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
        run.chainflow("migrate")?;
        run.groups_at_end().await?;
        Ok(run)
    }

    /// Runs `chainflow COMMAND` (migrate, topics) to its end.
    pub fn chainflow(&self, command: &str) -> Result<()> {
        let out = std::process::Command::new(&self.bin)
            .arg(command)
            .envs(self.env())
            .output()
            .with_context(|| format!("chainflow {command}"))?;
        if !out.status.success() {
            bail!("chainflow {command}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
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
    pub fn groups(&self) -> Result<Vec<Group>> {
        let kafka = &self.stack.config.kafka;
        let n = kafka.partitions;
        let sink = |stream: &str| format!("{}-{stream}", self.sink_prefix);
        let dlq: Vec<(String, i32)> = dead_letter_topics().into_iter().map(|t| (t, 1)).collect();
        Ok(vec![
            Group::new(kafka, &self.enrich_group, &[(OPTION_CHAIN.into(), n)])?,
            Group::new(kafka, &sink("chains"), &[(ENRICHED_CHAIN.into(), n)])?,
            Group::new(kafka, &sink("ticks"), &[(UNDERLYING.into(), n)])?,
            Group::new(kafka, &sink("quotes"), &[(OPTION_QUOTE.into(), n)])?,
            Group::new(kafka, &sink("dead_letters"), &dlq)?,
        ])
    }

    /// Commits the current end of every topic for the scenario's groups: they read only
    /// what the scenario sends.
    async fn groups_at_end(&self) -> Result<()> {
        for g in self.groups()? {
            g.commit_at_end().await?;
        }
        Ok(())
    }

    /// A supervised service `chainflow ARGS` with its own metrics port, `extra` environment,
    /// and `first` environment for its first start only.
    pub fn component(
        &mut self,
        name: &str,
        args: &[&str],
        extra: &[(&str, &str)],
        first: &[(String, String)],
    ) -> (Component, u16) {
        self.next_port += 1;
        let port = self.next_port;
        let mut launch = self.launch(name, args, false);
        launch.env.push((
            "CHAINFLOW_OBSERVABILITY__METRICS_LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ));
        launch
            .env
            .extend(extra.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
        launch.first_env = first.to_vec();
        (Component::start(name, launch), port)
    }

    /// How to start `chainflow ARGS` named `name` (its log `<tag>-<name>.log`), as a `job`
    /// or a service.
    fn launch(&self, name: &str, args: &[&str], job: bool) -> Launch {
        Launch {
            bin: self.bin.clone(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
            env: self.env(),
            first_env: Vec::new(),
            log: self.stack.logs().join(format!("{}-{name}.log", self.tag)),
            job,
        }
    }

    /// The log of the process named `name`.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.stack.logs().join(format!("{}-{name}.log", self.tag))).unwrap_or_default()
    }
}

/// The enrichers and sinks of a run, each with its metrics port.
pub struct Cast {
    /// The sinks.
    pub sinks: Vec<(Component, u16)>,
    /// The enrichers.
    pub enrichers: Vec<(Component, u16)>,
    /// The sinks' extra environment (the scenario's).
    pub sink_env: Vec<(&'static str, &'static str)>,
    /// The enrichers' extra environment (the scenario's).
    pub enrich_env: Vec<(&'static str, &'static str)>,
}

/// `CHAINFLOW_FAULTS` for the first start of component number `index` of `stage` (`sink`,
/// `enrich`): armed for the first one when `fault` aborts one at a point of that stage, or
/// stops the first sink once its ledger row is recorded (to lose the acknowledgement of the
/// insert that follows).
fn first_env(fault: super::Fault, stage: &str, index: usize) -> Vec<(String, String)> {
    let armed = match fault {
        super::Fault::AbortAt(point) if point.starts_with(&format!("{stage}.")) => format!("{point}=abort"),
        super::Fault::ClickHouseAckLost(_) if stage == "sink" => "sink.recorded=stop".into(),
        _ => return Vec::new(),
    };
    if index == 0 {
        vec![("CHAINFLOW_FAULTS".into(), armed)]
    } else {
        Vec::new()
    }
}

impl Cast {
    /// Starts `sinks` sinks and `enrichers` enrichers and waits until each is ready.
    pub async fn start(run: &mut Run<'_>, sc: &Scenario, sinks: usize, enrichers: usize) -> Result<Self> {
        let mut cast = Self {
            sinks: Vec::new(),
            enrichers: Vec::new(),
            sink_env: sc.sink_env.clone(),
            enrich_env: sc.enrich_env.clone(),
        };
        for i in 0..sinks {
            cast.add_sink(run, &format!("sink{i}"), &first_env(sc.fault, "sink", i));
        }
        for i in 0..enrichers {
            cast.add_enricher(run, &format!("enrich{i}"), &first_env(sc.fault, "enrich", i));
        }
        for (_, port) in cast.sinks.iter().chain(cast.enrichers.iter()) {
            ready(*port, Duration::from_secs(90)).await?;
        }
        Ok(cast)
    }

    /// Starts one more sink, named `name`, with `first` environment for its first start.
    pub fn add_sink(&mut self, run: &mut Run<'_>, name: &str, first: &[(String, String)]) {
        let sink = run.component(name, &["sink"], &self.sink_env, first);
        self.sinks.push(sink);
    }

    /// Starts one more enricher, named `name`, with `first` environment for its first start.
    pub fn add_enricher(&mut self, run: &mut Run<'_>, name: &str, first: &[(String, String)]) {
        let enricher = run.component(name, &["enrich"], &self.enrich_env, first);
        self.enrichers.push(enricher);
    }

    /// Their restarts, in all.
    pub fn restarts(&self) -> u64 {
        self.sinks
            .iter()
            .chain(self.enrichers.iter())
            .map(|c| c.0.restarts())
            .sum()
    }

    /// What the supervisor and the sinks and enrichers running now saw (their counters
    /// start at 0 with each process); the feed's restarts are the caller's.
    pub async fn effects(&self) -> Result<Effects> {
        let mut seen = Effects {
            restarts: self.restarts(),
            ..Effects::default()
        };
        for (_, port) in &self.sinks {
            let text = observe::scrape(*port).await?;
            seen.rebalances += observe::sum(&text, "chainflow_sink_rebalances_total", "change=\"revoked\"");
            seen.sink_retries += observe::sum(&text, "chainflow_sink_retries_total", "");
            seen.commit_errors += observe::sum(&text, "chainflow_sink_commit_errors_total", "");
            seen.stalls += observe::sum(&text, "chainflow_sink_stalls_total", "");
        }
        for (_, port) in &self.enrichers {
            let text = observe::scrape(*port).await?;
            seen.rebalances += observe::sum(&text, "chainflow_enrich_rebalances_total", "change=\"revoked\"");
            seen.enrich_retries += observe::sum(&text, "chainflow_enrich_retries_total", "");
        }
        Ok(seen)
    }

    /// The sinks' peak resident memory, MB.
    pub fn peak_sink_rss_mb(&self) -> f64 {
        self.sinks.iter().map(|s| s.0.peak_rss()).max().unwrap_or(0) as f64 / 1_048_576.0
    }

    /// Stops every one (SIGTERM); the longest a sink took to exit.
    pub async fn terminate(self) -> Result<Duration> {
        let mut exit = Duration::ZERO;
        for (c, _) in self.sinks {
            exit = exit.max(c.terminate(Duration::from_secs(35)).await?);
        }
        for (c, _) in self.enrichers {
            c.terminate(Duration::from_secs(35)).await?;
        }
        Ok(exit)
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

/// How long the feed may take to be done, restarts included.
const FEED_LIMIT: Duration = Duration::from_mins(15);

/// The scenario's feed: `chainflow feed` paced to last the scenario's `feed_secs`, in one
/// part or more (around a recreated topic), each part a job under the suite's supervisor
/// (started again from its start when it fails, as a process manager would: it resends
/// everything, which `FINAL` collapses), with the rows each part produces.
pub struct Feed {
    seed: u64,
    rate: f64,
    /// Chains of all the parts.
    total: u64,
    /// The running (or last) part.
    part: Component,
    /// Restarts of the parts before it.
    earlier_restarts: u64,
    /// The natural keys of what the parts started so far produce.
    pub expect: Keys,
    /// The parts started so far: (start, µs since the epoch; chains).
    pub parts: Vec<(i64, u64)>,
}

impl Feed {
    /// Starts the first part, of `chains` chains from [`START`], paced so that the whole
    /// feed of `total` chains lasts the scenario's `feed_secs`.
    pub fn start(run: &Run<'_>, sc: &Scenario, seed: u64, chains: u64, total: u64) -> Result<Self> {
        let start_us = chrono::DateTime::parse_from_rfc3339(START)?.timestamp_micros();
        let all = expected(&run.spec, seed, start_us, total);
        let counts = all.counts();
        let messages = counts.rows[0] + counts.rows[2] + counts.rows[3];
        let rate = (messages as f64 / sc.feed_secs.max(1) as f64).max(1.0);
        Ok(Self {
            seed,
            rate,
            total,
            part: part(run, 0, seed, rate, chains, start_us)?,
            earlier_restarts: 0,
            // the first part is the whole feed but around a recreated topic
            expect: if chains == total {
                all
            } else {
                expected(&run.spec, seed, start_us, chains)
            },
            parts: vec![(start_us, chains)],
        })
    }

    /// Starts another part, of `chains` chains from `start_us`, once the last one is done.
    pub fn then(&mut self, run: &Run<'_>, chains: u64, start_us: i64) -> Result<()> {
        let next = part(run, self.parts.len(), self.seed, self.rate, chains, start_us)?;
        self.earlier_restarts += std::mem::replace(&mut self.part, next).restarts();
        self.expect.extend(expected(&run.spec, self.seed, start_us, chains));
        self.parts.push((start_us, chains));
        Ok(())
    }

    /// SIGKILLs the running part (what it had not had acknowledged is lost with it); its
    /// supervisor starts it again from its start.
    pub async fn kill(&self) -> Result<()> {
        if self.part.done() {
            bail!("fault not observed: the feed had ended before it was killed");
        }
        self.part.running(Duration::from_secs(30)).await?;
        self.part.signal("KILL")
    }

    /// Whether the running part is still at work.
    pub fn running(&self) -> bool {
        !self.part.done()
    }

    /// The chains of the parts not started yet.
    pub fn left(&self) -> u64 {
        self.total - self.parts.iter().map(|(_, chains)| chains).sum::<u64>()
    }

    /// Waits for the running part to be done (restarts included).
    pub async fn wait(&mut self) -> Result<()> {
        self.part.finished(FEED_LIMIT).await
    }

    /// Times a part was started again, in all.
    pub fn restarts(&self) -> u64 {
        self.earlier_restarts + self.part.restarts()
    }
}

/// Part number `index` of the feed: `chains` chains from `start_us`, a supervised job.
fn part(run: &Run<'_>, index: usize, seed: u64, rate: f64, chains: u64, start_us: i64) -> Result<Component> {
    let start = chrono::DateTime::from_timestamp_micros(start_us)
        .context("the part's start")?
        .to_rfc3339();
    let (chains, seed, rate) = (chains.to_string(), seed.to_string(), format!("{rate:.1}"));
    let args = [
        "feed", "--chains", &chains, "--seed", &seed, "--start", &start, "--rate", &rate,
    ];
    let name = format!("feed{index}");
    let mut launch = run.launch(&name, &args, true);
    launch
        .env
        .push(("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN".into(), String::new()));
    Ok(Component::start(&name, launch))
}

/// The natural keys of the rows the feed will produce from `start_us`.
pub fn expected(spec: &ProductSpec, seed: u64, start_us: i64, chains: u64) -> Keys {
    let mut keys = Keys::default();
    for e in simulated(spec, seed, start_us, chains) {
        match e {
            MarketEvent::Chain(c) => keys.add_chain(&c),
            MarketEvent::Tick(t) => keys.add_tick(&t),
            MarketEvent::Quote(q) => keys.add_quote(&q),
        }
    }
    keys
}

/// The events of the feed from `start_us` up to its `chains`-th chain (ticks and quotes
/// between chains included).
fn simulated(spec: &ProductSpec, seed: u64, start_us: i64, chains: u64) -> impl Iterator<Item = MarketEvent> {
    let options = SimOptions {
        seed,
        start_us,
        scenario: Regime::Normal,
        pricing: Pricing::Ticks,
    };
    let mut seen = 0;
    Simulator::new([spec.clone()], options).take_while(move |e| {
        let more = seen < chains;
        seen += u64::from(matches!(e, MarketEvent::Chain(_)));
        more
    })
}
