//! The `chainflow` binary run as a user runs it (to the end, or in the background, killed
//! when dropped), its HTTP endpoints, and the stack's processes, for fault tests.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A `chainflow` command line, with no metrics endpoint and text logs unless the test says
/// otherwise.
pub struct Chainflow(Command);

/// Runs `cmd` to the end with `input` on its standard input, capturing standard output and
/// error.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> Output {
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

/// The text of `127.0.0.1:port/metrics`.
pub async fn scrape(port: u16) -> String {
    try_scrape(port).await.expect("/metrics answers")
}

/// [`scrape`], or the error of a `/metrics` that does not answer.
pub async fn try_scrape(port: u16) -> Result<String, reqwest::Error> {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await
}

/// The value of the Prometheus series `series` (name and labels, as printed) at
/// `127.0.0.1:port/metrics`, 0 when absent.
pub async fn metric(port: u16, series: &str) -> f64 {
    try_metric(port, series).await.expect("/metrics answers")
}

/// [`metric`], or the error of a `/metrics` that does not answer.
pub async fn try_metric(port: u16, series: &str) -> Result<f64, reqwest::Error> {
    Ok(try_scrape(port)
        .await?
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
