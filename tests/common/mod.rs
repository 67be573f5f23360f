//! Helpers for integration tests against the local stack (ops/stack.sh up).

#![allow(dead_code)]

use chainflow_config::{Config, Product};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The configuration the stack's environment describes (`eval "$(ops/stack.sh env)"`).
pub fn config() -> Config {
    Config::load(None, std::env::vars(), &[]).expect("configuration from the environment")
}

/// A configuration file holding only the product `name` (so a run touches nothing else).
pub fn product_config(name: &str, params: &Product) -> PathBuf {
    let path = std::env::temp_dir().join(format!("chainflow-{name}.toml"));
    let mut table = toml::Table::new();
    table.insert(
        "products".into(),
        toml::Value::try_from(BTreeMap::from([(name.to_string(), params.clone())])).unwrap(),
    );
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    path
}

/// A new consumer group `group` whose committed offsets are the current end of every
/// partition of `topic`: a stage started in it reads only what arrives from now on, however
/// much older data the shared stack holds.
pub fn group_at_end(cfg: &Config, group: &str, topic: &str) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = chainflow_kafka::consumer_config(&cfg.kafka, group).create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..cfg.kafka.partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(high))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// A unique, identifier-safe suffix for names this test run creates.
pub fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}{}", std::process::id(), nanos % 1_000_000_000)
}

/// A `chainflow` child process, killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// Asks the process to stop (SIGTERM: flush and commit) and waits for it.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        self.0.wait().expect("waiting for chainflow")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the chainflow binary with `args` and extra environment.
pub fn chainflow(args: &[&str], env: &[(&str, String)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chainflow"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().expect("starting chainflow"))
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
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
