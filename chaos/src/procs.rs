//! The suite's supervisor: each component is a `chainflow` process started again when it
//! exits, as a process manager would: a service (an enricher, a sink) whenever it exits
//! before the scenario ends, a job (the feed) only when it fails. Restarts and peak memory
//! are counted.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long the supervisor waits before starting an exited component again.
const RESTART_DELAY: Duration = Duration::from_millis(500);

/// How to start a component.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `chainflow` binary.
    pub bin: PathBuf,
    /// Its arguments (`enrich`, `sink`, ...).
    pub args: Vec<String>,
    /// Its environment, beyond the suite's own.
    pub env: Vec<(String, String)>,
    /// More environment for its first start only (a fault point armed once: the restart
    /// runs without it).
    pub first_env: Vec<(String, String)>,
    /// Where its standard error goes (appended).
    pub log: PathBuf,
    /// A job: done once it exits with status 0 (and started again only when it fails).
    pub job: bool,
}

/// A supervised component.
pub struct Component {
    /// Its name in the table and the logs.
    pub name: String,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU64>,
    peak_rss: Arc<AtomicU64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

impl Component {
    /// Starts `launch` under supervision.
    pub fn start(name: &str, launch: Launch) -> Self {
        let pid = Arc::new(AtomicU32::new(0));
        let restarts = Arc::new(AtomicU64::new(0));
        let peak_rss = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(
            launch,
            pid.clone(),
            restarts.clone(),
            peak_rss.clone(),
            stop.clone(),
        ));
        Self {
            name: name.to_string(),
            pid,
            restarts,
            peak_rss,
            stop,
            task,
        }
    }

    /// The pid of the running process (0 between a exit and its restart).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Acquire)
    }

    /// Times it was started again.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Its highest resident memory over every run so far, bytes.
    pub fn peak_rss(&self) -> u64 {
        let now = rss_of(self.pid());
        self.peak_rss.fetch_max(now, Ordering::Relaxed).max(now)
    }

    /// Sends `signal` to the running process (none when it is between runs).
    pub fn signal(&self, signal: &str) -> Result<()> {
        match self.pid() {
            0 => Ok(()),
            pid => crate::stack::signal(signal, pid),
        }
    }

    /// Whether it is done: a job that exited with status 0.
    pub fn done(&self) -> bool {
        self.task.is_finished() && !self.stop.is_cancelled()
    }

    /// Waits for a job to be done, for at most `limit`.
    pub async fn finished(&mut self, limit: Duration) -> Result<()> {
        tokio::time::timeout(limit, &mut self.task)
            .await
            .map_err(|_| anyhow::anyhow!("{} was not done within {limit:?}", self.name))?
            .context("its supervisor failed")
    }

    /// Waits until a process runs (after a restart), for at most `limit`.
    pub async fn running(&self, limit: Duration) -> Result<u32> {
        let deadline = Instant::now() + limit;
        loop {
            match self.pid() {
                0 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                0 => anyhow::bail!("{} is not running", self.name),
                pid => return Ok(pid),
            }
        }
    }

    /// Stops supervising and asks the process to stop (SIGTERM); how long it took to exit
    /// (killed after `limit`).
    pub async fn terminate(mut self, limit: Duration) -> Result<Duration> {
        self.stop.cancel();
        let started = Instant::now();
        self.signal("TERM")?;
        let pid = self.pid();
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            if pid != 0 {
                let _ = crate::stack::signal("KILL", pid);
            }
            let _ = (&mut self.task).await;
        }
        Ok(started.elapsed())
    }
}

impl Drop for Component {
    /// A component dropped (its scenario failed half-way) stops being supervised, and its
    /// process is killed with the supervising task.
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

async fn supervise(
    launch: Launch,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU64>,
    peak_rss: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut first = true;
    while !stop.is_cancelled() {
        let first_start = std::mem::replace(&mut first, false);
        if !first_start {
            restarts.fetch_add(1, Ordering::Relaxed);
        }
        let child = match spawn(&launch, first_start) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("[chaos] cannot start {:?}: {e:#}", launch.args);
                tokio::time::sleep(RESTART_DELAY).await;
                continue;
            }
        };
        pid.store(child.id().unwrap_or(0), Ordering::Release);
        let mut child = child;
        let mut sample = tokio::time::interval(Duration::from_millis(500));
        let running = child.id().unwrap_or(0);
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = sample.tick() => { peak_rss.fetch_max(rss_of(running), Ordering::Relaxed); }
            }
        };
        pid.store(0, Ordering::Release);
        if launch.job && status.is_ok_and(|s| s.success()) {
            return;
        }
        if !stop.is_cancelled() {
            tokio::time::sleep(RESTART_DELAY).await;
        }
    }
}

fn spawn(launch: &Launch, first: bool) -> Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("opening {}", launch.log.display()))?;
    Command::new(&launch.bin)
        .args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(
            launch
                .first_env
                .iter()
                .filter(|_| first)
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", launch.bin.display()))
}
