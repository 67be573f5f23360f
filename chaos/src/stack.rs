//! The suite's own stack: `ops/stack.sh` with a directory and ports of its own, so that
//! faults never touch the developer's stack, and Kafka as a cluster of [`BROKERS`] nodes
//! (replication factor 3, `min.insync.replicas` 2).

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
}

impl PrivateStack {
    /// Starts a stack in `dir` (fresh stores), from the repository at `root`.
    pub fn up(root: &Path, dir: &Path) -> Result<Self> {
        let mut stack = Self {
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            config: Config::default(),
            env: Vec::new(),
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
        cmd.arg(action)
            .env("CHAINFLOW_STACK_DIR", &self.dir)
            .env("CHAINFLOW_STACK_BROKERS", BROKERS.to_string());
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

/// Kills `pid` and waits until it is gone.
pub async fn kill_and_wait(pid: u32) -> Result<()> {
    signal("KILL", pid)?;
    while alive(pid) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}
