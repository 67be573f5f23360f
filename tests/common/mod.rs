//! The one harness of the integration tests: the `chainflow` binary run as a user runs it,
//! names that belong to one test (consumer groups, databases, topics, products), and the
//! local stack's configuration (`eval "$(ops/stack.sh env)"`).

#![allow(dead_code, reason = "each test file uses its part of the harness")]

use chainflow_config::{Config, Product};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The configuration the stack's environment describes.
pub fn stack() -> Config {
    Config::load(None, std::env::vars(), &[]).expect("configuration from the environment")
}

/// A `chainflow` command line, with no metrics endpoint and text logs unless the test says
/// otherwise.
pub struct Chainflow(Command);

/// Runs `cmd` to the end with `input` on its standard input, capturing standard output and
/// error.
fn output_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} starts: {e}"));
    child
        .stdin
        .take()
        .expect("a standard input")
        .write_all(input)
        .expect("the command reads its input");
    child.wait_with_output().expect("the command ends")
}

/// `chainflow ARGS...`.
pub fn chainflow(args: &[&str]) -> Chainflow {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chainflow"));
    cmd.args(args)
        .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", "")
        .env("CHAINFLOW_OBSERVABILITY__LOG_FORMAT", "text")
        .stdin(Stdio::null());
    Chainflow(cmd)
}

impl Chainflow {
    /// Sets an environment variable.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.0.env(name, value);
        self
    }

    /// Removes an environment variable (to see a default).
    pub fn env_remove(mut self, name: &str) -> Self {
        self.0.env_remove(name);
        self
    }

    /// `--config FILE`.
    pub fn config(mut self, file: &Path) -> Self {
        self.0.arg("--config").arg(file);
        self
    }

    /// More arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.0.args(args);
        self
    }

    /// Runs to the end, capturing standard output and error.
    pub fn output(mut self) -> Output {
        self.0.output().expect("chainflow starts")
    }

    /// Runs to the end with `input` on standard input, capturing standard output and error.
    pub fn output_with_input(mut self, input: &str) -> Output {
        output_with_input(&mut self.0, input.as_bytes())
    }

    /// Starts in the background, standard output discarded, standard error collected (read
    /// as it comes, so that a chatty process never blocks on a full pipe).
    pub fn spawn(mut self) -> Proc {
        let mut child = self
            .0
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chainflow starts");
        let mut pipe = child.stderr.take().expect("standard error is piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        });
        Proc {
            child,
            stderr: Some(stderr),
        }
    }
}

/// A `chainflow` process in the background, killed when dropped.
pub struct Proc {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// How a background process ended, and what it printed on standard error.
pub struct Ended {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard error.
    pub stderr: String,
    /// From the signal (or the start) to the end.
    pub took: Duration,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while it has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its peak resident memory so far (VmHWM), bytes.
    pub fn peak_rss(&self) -> u64 {
        self.memory("VmHWM")
    }

    /// Its resident memory now (VmRSS), bytes.
    pub fn rss(&self) -> u64 {
        self.memory("VmRSS")
    }

    /// A memory field of its `/proc/PID/status` (kB there), bytes; 0 once it has exited.
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits at most `limit` for the process to end on its own.
    pub fn wait(mut self, limit: Duration) -> Ended {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for chainflow") {
                let stderr = self
                    .stderr
                    .take()
                    .map(|reader| reader.join().expect("reading standard error"))
                    .unwrap_or_default();
                return Ended {
                    status,
                    stderr,
                    took: started.elapsed(),
                };
            }
            assert!(started.elapsed() < limit, "chainflow did not end within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the process to stop (SIGTERM: flush and commit) and waits at most `limit`.
    pub fn terminate(self, limit: Duration) -> Ended {
        self.signal("TERM");
        self.wait(limit)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Names that belong to one test: its consumer groups, database, topics and products never
/// collide with another test's or another run's.
pub struct Names {
    tag: String,
}

impl Names {
    /// Names for the test `test`.
    pub fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        Self {
            tag: format!("{test}_{}_{}", std::process::id(), nanos % 1_000_000_000),
        }
    }

    /// A tag unique to this test run (letters, digits and '_').
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The consumer group of `stage`.
    pub fn group(&self, stage: &str) -> String {
        format!("test-{stage}-{}", self.tag)
    }

    /// A ClickHouse database.
    pub fn database(&self) -> String {
        format!("chainflow_test_{}", self.tag)
    }

    /// A topic named after `base`.
    pub fn topic(&self, base: &str) -> String {
        format!("{base}_test_{}", self.tag)
    }

    /// A product name (upper case letters, digits and '_').
    pub fn product(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.tag.to_ascii_uppercase())
    }
}

/// A configuration file holding only the product `name` (so a run touches nothing else).
pub fn product_config(name: &str, params: &Product) -> PathBuf {
    let path = std::env::temp_dir().join(format!("chainflow-{name}.toml"));
    let mut table = toml::Table::new();
    table.insert(
        "products".into(),
        toml::Value::try_from(BTreeMap::from([(name.to_string(), params.clone())])).expect("a product serializes"),
    );
    std::fs::write(&path, toml::to_string(&table).expect("a table serializes")).expect("writing the file");
    path
}

/// A consumer of the stack's cluster outside any group's work (`group` only names it).
pub fn consumer(cfg: &Config, group: &str) -> Arc<rdkafka::consumer::BaseConsumer> {
    Arc::new(
        chainflow_kafka::consumer_config(&cfg.kafka, group)
            .set("isolation.level", "read_uncommitted")
            .create()
            .expect("a consumer"),
    )
}

/// The high watermark of every partition of `topic`.
pub async fn ends(consumer: &Arc<rdkafka::consumer::BaseConsumer>, topic: &str, partitions: i32) -> Vec<i64> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let (_, high) = chainflow_kafka::blocking::fetch_watermarks(consumer, topic, p, Duration::from_secs(10))
            .await
            .expect("watermarks");
        out.push(high);
    }
    out
}

/// A new consumer group `group` whose committed offsets are the current end of every
/// partition of `topic`: a stage started in it reads only what arrives from now on, however
/// much older data the shared stack holds.
pub async fn group_at_end(cfg: &Config, group: &str, topic: &str) {
    let consumer = consumer(cfg, group);
    let metadata = chainflow_kafka::blocking::fetch_metadata(&consumer, Some(topic), Duration::from_secs(10))
        .await
        .expect("topic metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, high) in ends(&consumer, topic, partitions).await.into_iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Offset(high))
            .expect("a partition");
    }
    chainflow_kafka::blocking::commit(&consumer, tpl)
        .await
        .expect("committing");
}

/// Waits until `url` answers 200, for at most `secs` seconds.
pub async fn wait_http(url: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} did not answer within {secs}s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Produces records of the contract to their topics, encoded through the stack's registry.
pub struct Producer {
    producer: rdkafka::producer::FutureProducer,
    codec: chainflow_codec::Codec,
}

impl Producer {
    /// A producer for the stack of `cfg`.
    pub fn new(cfg: &Config) -> Self {
        Self {
            producer: chainflow_kafka::producer_config(&cfg.kafka)
                .create()
                .expect("a producer"),
            codec: chainflow_codec::Codec::new(
                chainflow_codec::registry_settings(&cfg.registry).expect("registry settings"),
            ),
        }
    }

    /// Sends `record` under its key; returns its encoded bytes.
    pub async fn send<R: chainflow_contract::Record>(&self, record: &R) -> Vec<u8> {
        let bytes = self.encode(record).await;
        self.send_raw(R::TOPIC, &record.key(), &bytes).await;
        bytes
    }

    /// `record` in the wire format, its schema registered.
    pub async fn encode<R: chainflow_contract::Record>(&self, record: &R) -> Vec<u8> {
        self.codec.encode(record).await.expect("encoding through the registry")
    }

    /// Sends `payload` under `key` to `topic` as it is; returns its partition and offset.
    pub async fn send_raw(&self, topic: &str, key: &str, payload: &[u8]) -> (i32, i64) {
        self.producer
            .send(
                rdkafka::producer::FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e)
            .expect("the broker takes the record")
    }
}

/// A tick of `product` with sequence number `seq` at `price`.
pub fn tick(product: &str, seq: i64, price: f64) -> chainflow_contract::UnderlyingTick {
    chainflow_contract::UnderlyingTick {
        product: product.to_string(),
        price,
        volume: seq * 100,
        event_time: 1_738_228_500_000_000 + seq * 1_000_000,
        seq,
    }
}

/// A ClickHouse database of a test's own, with chainflow's tables, dropped when dropped.
pub struct Database {
    /// Its name.
    pub name: String,
    /// A client in it.
    pub client: clickhouse::Client,
}

impl Database {
    /// Creates `names`' database with `chainflow migrate`.
    pub fn create(names: &Names) -> Self {
        let name = names.database();
        let out = chainflow(&["migrate"])
            .env("CHAINFLOW_CLICKHOUSE__DATABASE", &name)
            .output();
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let client = chainflow_clickhouse::client(&stack().clickhouse).with_database(&name);
        Self { name, client }
    }

    /// `SELECT count() FROM table [FINAL] WHERE condition`.
    pub async fn count(&self, table: &str, final_: bool, condition: &str) -> u64 {
        let f = if final_ { "FINAL" } else { "" };
        self.client
            .query(&format!("SELECT count() FROM {table} {f} WHERE {condition}"))
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("counting {table}: {e}"))
    }

    /// Waits until `count(table, FINAL, condition)` reaches `n`, for at most `secs`.
    pub async fn wait_count(&self, table: &str, condition: &str, n: u64, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.count(table, true, condition).await;
            if got >= n {
                assert_eq!(got, n, "{table} where {condition}: more rows than expected");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{table} where {condition}: {got} of {n} rows after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Database {
    /// `sql` (a SELECT) as JSON rows, 64-bit integers as numbers.
    pub async fn rows(&self, sql: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let body = reqwest::Client::new()
            .post(format!(
                "{}/?database={}&output_format_json_quote_64bit_integers=0",
                stack().clickhouse.url.trim_end_matches('/'),
                self.name
            ))
            .body(format!("{sql} FORMAT JSONEachRow"))
            .send()
            .await
            .expect("ClickHouse answers")
            .text()
            .await
            .expect("a body");
        body.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("{sql}\n{body}")))
            .collect()
    }

    /// The answers of `queries` on a current ClickHouse engine (chdb, `tests/current_engine.py`)
    /// holding this database's rows of `tables`, with chainflow's schema for 26.1 (its
    /// materialized views fill as the rows are loaded).
    pub async fn on_current_engine(
        &self,
        tables: &[&str],
        queries: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>> {
        let schema = chainflow(&["migrate", "--print-for", "26.1"]).output();
        let mut rows = BTreeMap::new();
        for t in tables {
            let lines: Vec<String> = self
                .rows(&format!("SELECT * FROM {t}"))
                .await
                .into_iter()
                .map(|r| serde_json::Value::Object(r).to_string())
                .collect();
            rows.insert(*t, lines.join("\n"));
        }
        let spec = serde_json::json!({
            "schema": String::from_utf8_lossy(&schema.stdout), "database": "chainflow", "tables": rows,
            "queries": queries,
        });
        let mut python = Command::new("python3");
        python
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/current_engine.py"))
            .env("TZ", "UTC");
        let out = output_with_input(&mut python, spec.to_string().as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("answers as JSON")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let url = stack().clickhouse.url;
        let _ = Command::new("curl")
            .args([
                "-s",
                &url,
                "--data-binary",
                &format!("DROP DATABASE IF EXISTS {}", self.name),
            ])
            .status();
    }
}

/// The text of `127.0.0.1:port/metrics`.
pub async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body")
}

/// The value of the Prometheus series `series` (name and labels, as printed) at
/// `127.0.0.1:port/metrics`, 0 when absent.
pub async fn metric(port: u16, series: &str) -> f64 {
    try_metric(port, series).await.expect("/metrics answers")
}

/// [`metric`], or the error of a `/metrics` that does not answer.
pub async fn try_metric(port: u16, series: &str) -> Result<f64, reqwest::Error> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0))
}

/// The HTTP status of `url`.
pub async fn status(url: &str) -> u16 {
    reqwest::get(url).await.map_or(0, |r| r.status().as_u16())
}

/// The pid of the stack's component `name` (`clickhouse`, `broker`, `registry`).
pub fn stack_pid(name: &str) -> u32 {
    let dir = std::env::var("CHAINFLOW_STACK_DIR").unwrap_or_else(|_| format!("{}/.stack", env!("CARGO_MANIFEST_DIR")));
    std::fs::read_to_string(format!("{dir}/pids/{name}.pid"))
        .expect("the stack's pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// Starts what of the stack is not running (`ops/stack.sh up`).
pub fn stack_up() {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/stack.sh"))
        .arg("up")
        .output()
        .expect("ops/stack.sh runs");
    assert!(
        out.status.success(),
        "ops/stack.sh up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `signal` to process `pid`.
pub fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Positions the sink's consumer groups of `prefix` (`sink.group_id`) at the current end of
/// every stream's topics, so that a sink started with it stores only what arrives from now.
pub async fn sink_groups_at_end(cfg: &Config, prefix: &str) {
    use chainflow_contract::topics::{dead_letter_topics, ENRICHED_CHAIN, OPTION_QUOTE, UNDERLYING};
    group_at_end(cfg, &format!("{prefix}-chains"), ENRICHED_CHAIN).await;
    group_at_end(cfg, &format!("{prefix}-ticks"), UNDERLYING).await;
    group_at_end(cfg, &format!("{prefix}-quotes"), OPTION_QUOTE).await;
    for topic in dead_letter_topics() {
        group_at_end(cfg, &format!("{prefix}-dead_letters"), &topic).await;
    }
}

/// 2025-01-23 09:15 IST (03:45 UTC), a week before the 2025-01-30 expiry: when
/// [`chain`]'s second 0 is.
pub const CHAIN_EVENT_US: i64 = 1_737_603_900_000_000;
/// The 2025-01-30 expiry (days since 1970-01-01) of [`chain`].
pub const CHAIN_EXPIRY: i32 = 20118;

/// A raw chain of `product` with `strikes` strikes around 21,500, `seq` seconds after
/// [`CHAIN_EVENT_US`].
pub fn chain(product: &str, seq: i64, strikes: usize) -> chainflow_contract::OptionChain {
    use chainflow_contract::{OptionChain, Quote, StrikeQuotes};
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
        expiry: CHAIN_EXPIRY,
        lot_size: 50,
        spot: 21_500.0,
        event_time: CHAIN_EVENT_US + seq * 1_000_000,
        seq,
        strikes: (0..strikes)
            .map(|i| {
                // 50 points apart, or closer for long chains, so every strike stays positive
                let step = (20_000.0 / strikes as f64).min(50.0);
                let k = 21_500.0 + step * (i as f64 - (strikes / 2) as f64);
                StrikeQuotes {
                    strike: k,
                    call: quote((21_600.0 - k).max(5.0)),
                    put: quote((k - 21_400.0).max(5.0)),
                }
            })
            .collect(),
    }
}

/// A pipeline of a test's own on the shared stack: a database, a product no other test
/// feeds (in a configuration file of its own), and enrich and sink groups positioned at the
/// end of their topics, so that the run sees only what it produces.
pub struct Isolated {
    /// The test's names.
    pub names: Names,
    /// Its database, with chainflow's tables.
    pub db: Database,
    /// Its product.
    pub product: String,
    /// A configuration file holding only that product.
    pub config: PathBuf,
    /// `enrich.group_id`.
    pub enrich_group: String,
    /// `sink.group_id`.
    pub sink_group: String,
}

impl Isolated {
    /// A run named after `test`, whose product (named with `prefix`) has `params`.
    pub async fn new(test: &str, prefix: &str, params: &Product) -> Self {
        let cfg = stack();
        let names = Names::new(test);
        let db = Database::create(&names);
        let product = names.product(prefix);
        let config = product_config(&product, params);
        let (enrich_group, sink_group) = (names.group("enrich"), names.group("sink"));
        group_at_end(&cfg, &enrich_group, chainflow_contract::topics::OPTION_CHAIN).await;
        sink_groups_at_end(&cfg, &sink_group).await;
        Self {
            names,
            db,
            product,
            config,
            enrich_group,
            sink_group,
        }
    }

    /// `chainflow ARGS` with this run's configuration file, database and groups.
    pub fn chainflow(&self, args: &[&str]) -> Chainflow {
        chainflow(args)
            .config(&self.config)
            .env("CHAINFLOW_CLICKHOUSE__DATABASE", &self.db.name)
            .env("CHAINFLOW_ENRICH__GROUP_ID", &self.enrich_group)
            .env("CHAINFLOW_SINK__GROUP_ID", &self.sink_group)
    }
}
