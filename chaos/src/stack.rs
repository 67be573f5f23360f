//! The suite's own stack: `ops/stack.sh` with a directory and ports of its own, so that
//! faults never touch the developer's stack, and Kafka as a cluster of [`BROKERS`] nodes
//! (replication factor 3, `min.insync.replicas` 2), each in a network namespace of its own
//! (so that one can be cut off from the others and from the clients); and toxiproxy between
//! the network scenarios' sinks and ClickHouse ([`Proxy`]).

use anyhow::{bail, Context, Result};
use chainflow_config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Ports of the private stack, away from the conventional ones.
const PORTS: [(&str, u16); 6] = [
    ("CHAINFLOW_STACK_KAFKA_PORT", 29_092),
    ("CHAINFLOW_STACK_KAFKA_CONTROLLER_PORT", 29_093),
    ("CHAINFLOW_STACK_CLICKHOUSE_HTTP_PORT", 28_123),
    ("CHAINFLOW_STACK_CLICKHOUSE_TCP_PORT", 29_001),
    ("CHAINFLOW_STACK_REGISTRY_PORT", 28_081),
    ("CHAINFLOW_STACK_PROMETHEUS_PORT", 29_090),
];

/// Kafka nodes of the private stack.
pub const BROKERS: i32 = 3;

/// The prefix of the private stack's network namespaces, links and bridge.
const NETNS: &str = "cfchaos";

/// Where the network scenarios' sinks reach ClickHouse: toxiproxy's listener, in front of
/// the stack's ClickHouse.
pub const CLICKHOUSE_PROXY: &str = "http://127.0.0.1:28124";
/// toxiproxy's API.
const PROXY_API: &str = "127.0.0.1:28474";

/// The stack's name of Kafka node `node` (`broker`, `broker-2`, ...).
pub fn broker_name(node: i32) -> String {
    if node == 1 {
        "broker".to_string()
    } else {
        format!("broker-{node}")
    }
}

/// A running private stack.
pub struct PrivateStack {
    root: PathBuf,
    dir: PathBuf,
    /// The configuration that points at it.
    pub config: Config,
    /// `CHAINFLOW_*` variables that point a `chainflow` process at it.
    pub env: Vec<(String, String)>,
    /// toxiproxy in front of its ClickHouse.
    pub proxy: Proxy,
}

impl PrivateStack {
    /// Starts a stack in `dir` (fresh stores), from the repository at `root`, with
    /// toxiproxy's server `toxiproxy` in front of its ClickHouse.
    pub async fn up(root: &Path, dir: &Path, toxiproxy: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let mut stack = Self {
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            config: Config::default(),
            env: Vec::new(),
            proxy: Proxy::start(toxiproxy, &dir.join("logs")).await?,
        };
        stack.script("up")?;
        let out = stack.command("env").output().context("ops/stack.sh env")?;
        stack.env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        stack.config = Config::load(None, stack.env.clone(), &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(stack)
    }

    fn command(&self, action: &str) -> Command {
        let mut cmd = Command::new(self.root.join("ops/stack.sh"));
        cmd.args(action.split(' '))
            .env("CHAINFLOW_STACK_DIR", &self.dir)
            .env("CHAINFLOW_STACK_BROKERS", BROKERS.to_string())
            .env("CHAINFLOW_STACK_NETNS", NETNS);
        for (k, v) in PORTS {
            cmd.env(k, v.to_string());
        }
        cmd
    }

    fn script(&self, action: &str) -> Result<()> {
        let out = self
            .command(action)
            .output()
            .with_context(|| format!("ops/stack.sh {action}"))?;
        if !out.status.success() {
            bail!(
                "ops/stack.sh {action} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts whatever of the stack is not running.
    pub fn start_missing(&self) -> Result<()> {
        self.script("up")
    }

    /// Stops the stack.
    pub fn down(&self) -> Result<()> {
        self.script("down")
    }

    /// Cuts Kafka node `node` off from the other nodes and from every client (its network
    /// namespace's link down), or joins it again.
    pub fn isolate(&self, node: i32, cut: bool) -> Result<()> {
        self.script(&format!("{} {node}", if cut { "isolate" } else { "reconnect" }))
    }

    /// The pid of component `name` (`broker`, `broker-2`, `clickhouse`, `registry`).
    pub fn pid(&self, name: &str) -> Result<u32> {
        let path = self.dir.join(format!("pids/{name}.pid"));
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} holds no pid", path.display()))
    }

    /// The node that leads the KRaft quorum now: of the nodes' logs, the one that last
    /// became leader, at the highest epoch.
    pub fn quorum_leader(&self) -> Result<i32> {
        let mut best: Option<(u64, i32)> = None;
        for node in 1..=BROKERS {
            let path = self.logs().join(format!("{}.log", broker_name(node)));
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            for line in text.lines().filter(|l| l.contains("Completed transition to Leader")) {
                let epoch = line
                    .split("epoch=")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|d| d.parse::<u64>().ok());
                if let Some(epoch) = epoch {
                    best = best.max(Some((epoch, node)));
                }
            }
        }
        best.map(|(_, node)| node)
            .context("no node's log says it became the quorum's leader")
    }

    /// Where logs of the suite's processes go.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// Sends `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to `pid`.
pub fn signal(signal: &str, pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

/// Whether process `pid` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` is stopped (SIGSTOP: state `T` in `/proc/PID/stat`).
pub fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
        .unwrap_or(false)
}

/// Kills `pid` and waits until it is gone.
pub async fn kill_and_wait(pid: u32) -> Result<()> {
    signal("KILL", pid)?;
    while alive(pid) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// toxiproxy in front of ClickHouse: what the network scenarios' sinks talk to, with the
/// faults ("toxics") they add and remove through its API.
pub struct Proxy {
    _server: tokio::process::Child,
    http: reqwest::Client,
}

impl Proxy {
    /// Starts toxiproxy's server `bin` (its log in `logs`) with one proxy, `clickhouse`, from
    /// [`CLICKHOUSE_PROXY`] to ClickHouse's HTTP port.
    pub async fn start(bin: &Path, logs: &Path) -> Result<Self> {
        let (host, port) = PROXY_API.split_once(':').expect("host:port");
        let log = std::fs::File::create(logs.join("toxiproxy.log"))?;
        let server = tokio::process::Command::new(bin)
            .args(["-host", host, "-port", port])
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} (ops/install.sh builds it)", bin.display()))?;
        let proxy = Self {
            _server: server,
            http: reqwest::Client::new(),
        };
        let upstream = format!("127.0.0.1:{}", PORTS[2].1);
        let listen = CLICKHOUSE_PROXY.trim_start_matches("http://");
        let body = serde_json::json!({"name": "clickhouse", "listen": listen, "upstream": upstream, "enabled": true});
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match proxy.call(reqwest::Method::POST, "/proxies", Some(&body)).await {
                Ok(()) => return Ok(proxy),
                Err(e) if std::time::Instant::now() > deadline => return Err(e.context("toxiproxy did not answer")),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }

    /// Adds the toxic `name` of `kind` (`latency`, `timeout`, ...) with `attributes` to the
    /// data ClickHouse sends back (downstream): the requests pass, the answers suffer.
    pub async fn add(&self, name: &str, kind: &str, attributes: serde_json::Value) -> Result<()> {
        let body = serde_json::json!({"name": name, "type": kind, "stream": "downstream", "toxicity": 1.0, "attributes": attributes});
        self.call(reqwest::Method::POST, "/proxies/clickhouse/toxics", Some(&body))
            .await
    }

    /// Removes the toxic `name`.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/proxies/clickhouse/toxics/{name}"),
            None,
        )
        .await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&serde_json::Value>) -> Result<()> {
        let mut request = self.http.request(method, format!("http://{PROXY_API}{path}"));
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.with_context(|| format!("toxiproxy {path}"))?;
        if !answer.status().is_success() {
            bail!(
                "toxiproxy {path}: {} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}
