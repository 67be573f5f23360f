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
        let mut child = self
            .0
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chainflow starts");
        child
            .stdin
            .take()
            .expect("a standard input")
            .write_all(input.as_bytes())
            .expect("chainflow reads its input");
        child.wait_with_output().expect("chainflow ends")
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
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, high) in ends(&consumer, topic, cfg.kafka.partitions)
        .await
        .into_iter()
        .enumerate()
    {
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
