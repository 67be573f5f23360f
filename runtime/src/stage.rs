//! What a stage is, and what the runtime gives it.

use anyhow::{anyhow, Result};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First delay between attempts to reach a dependency at start; it doubles up to
/// [`CONNECT_MAX_DELAY`].
const CONNECT_FIRST_DELAY: Duration = Duration::from_millis(200);
/// Longest delay between attempts to reach a dependency at start.
const CONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

/// One stage of a pipeline (feed, enrich, sink, registry, ...): built beforehand from its
/// configuration section without I/O, it connects in [`Stage::run`], reports itself ready,
/// works until its work is done or its context asks it to stop, and then returns after
/// flushing and committing what it holds.
pub trait Stage: Send + 'static {
    /// The stage's name in logs, errors and `/readyz`.
    fn name(&self) -> &'static str;

    /// Runs the stage to its end. An error stops the whole pipeline and is reported with
    /// the stage's name.
    fn run(self, ctx: StageContext) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// How a stage takes part in its pipeline's stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Stopped by a shutdown request; when it ends of its own accord (a feed that produced
    /// all it was asked to), the others go on.
    Worker,
    /// Left running after a shutdown request until the pipeline stops, so that it drains
    /// what the workers upstream of it have already produced.
    Drain,
    /// Left running after a shutdown request like a drain stage; its end stops the
    /// pipeline. `chainflow run`'s watcher is one: it ends once everything the feed produced
    /// (until it finished, or was stopped by the request) is stored.
    Monitor,
}

/// How long stages may take to start and to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a stage keeps trying to reach its dependencies at start.
    pub startup: Duration,
    /// How long stages have to flush and commit once asked to stop.
    pub shutdown: Duration,
}

/// What the runtime gives a running stage.
#[derive(Debug, Clone)]
pub struct StageContext {
    name: &'static str,
    stop: CancellationToken,
    ready: Arc<AtomicBool>,
    timeouts: Timeouts,
}

impl StageContext {
    /// A context of its own, for running a stage outside a [`Pipeline`](crate::Pipeline)
    /// (tests, tools): it stops when `stop` is cancelled, within `timeouts`.
    pub fn standalone(name: &'static str, stop: CancellationToken, timeouts: Timeouts) -> Self {
        Self {
            name,
            stop,
            ready: Arc::new(AtomicBool::new(false)),
            timeouts,
        }
    }

    /// How long the stage has to flush and commit once asked to stop; past it the pipeline
    /// abandons the stage.
    pub fn shutdown_timeout(&self) -> Duration {
        self.timeouts.shutdown
    }

    /// The stage's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Cancelled when the stage should flush, commit and return.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Completes when the stage should flush, commit and return.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    /// Whether the stage has been asked to stop.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Reports whether the stage can do its work now (`/readyz`): true once connected,
    /// false while it cannot make progress.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Tries `attempt` until it succeeds, retrying with backoff while a dependency (`what`:
    /// "ClickHouse at http://...") is not reachable yet, for at most the startup timeout;
    /// then the last error is returned, naming `what` and the timeout. A [`Refused`] error
    /// is returned at once. `None` when the stage was asked to stop first.
    pub async fn connect<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.timeouts.startup;
        let mut delay = CONNECT_FIRST_DELAY;
        loop {
            let outcome = tokio::select! {
                biased;
                () = self.stop.cancelled() => return Ok(None),
                outcome = tokio::time::timeout_at(deadline, attempt()) => outcome,
            };
            let error = match outcome {
                Ok(Ok(v)) => return Ok(Some(v)),
                Ok(Err(e)) if e.downcast_ref::<Refused>().is_some() => return Err(e.context(what.to_string())),
                Ok(Err(e)) => e,
                Err(_) => anyhow!("no answer"),
            };
            if Instant::now() + delay >= deadline {
                return Err(error.context(format!(
                    "{what}: not reachable within {} ms of start (pipeline.startup_timeout_ms)",
                    self.timeouts.startup.as_millis()
                )));
            }
            tracing::warn!(stage = self.name, %what, error = %format!("{error:#}"), retry_in_ms = delay.as_millis() as u64, "not reachable yet; retrying");
            tokio::select! {
                () = self.stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(CONNECT_MAX_DELAY);
        }
    }
}

/// What a dependency answered that retrying cannot change (a topic configured to lose
/// records, a log already truncated): [`StageContext::connect`] returns it at once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Each stage's name and readiness flag.
type Readiness = Vec<(&'static str, Arc<AtomicBool>)>;

/// The readiness of every stage of a process: ready when all are.
#[derive(Debug, Clone, Default)]
pub struct Health {
    stages: Arc<Mutex<Readiness>>,
}

impl Health {
    /// A context for stage `name` whose readiness this health reports.
    pub(crate) fn context(&self, name: &'static str, stop: CancellationToken, timeouts: Timeouts) -> StageContext {
        let ctx = StageContext::standalone(name, stop, timeouts);
        self.stages.lock().expect("health lock").push((name, ctx.ready.clone()));
        ctx
    }

    /// The stages that are not ready; empty when the process is ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        self.stages
            .lock()
            .expect("health lock")
            .iter()
            .filter(|(_, ready)| !ready.load(Ordering::Relaxed))
            .map(|(name, _)| *name)
            .collect()
    }

    /// Marks every stage not ready: the process is stopping.
    pub(crate) fn stopping(&self) {
        for (_, ready) in self.stages.lock().expect("health lock").iter() {
            ready.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(startup_secs: u64) -> Timeouts {
        Timeouts {
            startup: Duration::from_secs(startup_secs),
            shutdown: Duration::from_secs(30),
        }
    }

    #[test]
    fn ready_when_every_stage_is() {
        let health = Health::default();
        let a = health.context("a", CancellationToken::new(), timeouts(0));
        let b = health.context("b", CancellationToken::new(), timeouts(0));
        assert_eq!(health.not_ready(), ["a", "b"]);
        a.set_ready(true);
        assert_eq!(health.not_ready(), ["b"]);
        b.set_ready(true);
        assert!(health.not_ready().is_empty());
        b.set_ready(false);
        assert_eq!(health.not_ready(), ["b"]);
        health.stopping();
        assert_eq!(health.not_ready(), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn connect_retries_until_the_dependency_answers() {
        let ctx = StageContext::standalone("sink", CancellationToken::new(), timeouts(30));
        let mut attempts = 0;
        let got = ctx
            .connect("ClickHouse", || {
                attempts += 1;
                let n = attempts;
                async move {
                    if n < 4 {
                        Err(anyhow!("connection refused"))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(got, Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn connect_gives_up_after_the_startup_timeout_naming_what_it_waited_for() {
        let ctx = StageContext::standalone("sink", CancellationToken::new(), timeouts(3));
        let started = Instant::now();
        let e = ctx
            .connect("ClickHouse at http://127.0.0.1:1", || async {
                Err::<(), _>(anyhow!("connection refused"))
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() <= Duration::from_secs(3));
        assert_eq!(
            format!("{e:#}"),
            "ClickHouse at http://127.0.0.1:1: not reachable within 3000 ms of start (pipeline.startup_timeout_ms): \
             connection refused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn connect_ends_quietly_when_the_stage_is_stopped() {
        let stop = CancellationToken::new();
        let ctx = StageContext::standalone("sink", stop.clone(), timeouts(30));
        stop.cancel();
        let got = ctx
            .connect("ClickHouse", || async { Err::<(), _>(anyhow!("refused")) })
            .await
            .unwrap();
        assert_eq!(got, None);
    }
}
