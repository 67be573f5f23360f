//! One supervisor for every command: the stages of a process run together, and stop
//! together.

use crate::stage::{Health, Role, Stage, Timeouts};
use anyhow::{anyhow, Error, Result};
use std::collections::HashMap;
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// How a stage's task ended.
struct Ended {
    name: &'static str,
    role: Role,
    result: Result<()>,
}

/// Stages running together. [`Pipeline::run`] waits until
/// - every stage has ended: success;
/// - a [`Role::Monitor`] stage has ended: the others are stopped, success;
/// - a stage failed (or panicked): the others are stopped, and the error names the stage;
/// - a shutdown request came: workers are stopped at once, the others when the monitors are
///   done (or at once when there are none), success.
///
/// Once stopping, the stages have the shutdown timeout to return; a stage still running
/// then is abandoned and named in the error.
pub struct Pipeline {
    tasks: JoinSet<Ended>,
    names: HashMap<Id, &'static str>,
    /// A shutdown request (SIGINT, SIGTERM).
    request: CancellationToken,
    /// Stops workers and monitors (on a request, or with everything).
    workers: CancellationToken,
    /// Stops every stage.
    stop: CancellationToken,
    health: Health,
    timeouts: Timeouts,
    monitors: usize,
}

impl Pipeline {
    /// An empty pipeline that treats `request` as the request to shut down, reports
    /// readiness in `health`, and gives its stages `timeouts` to start and to stop.
    pub fn new(request: CancellationToken, health: Health, timeouts: Timeouts) -> Self {
        let stop = CancellationToken::new();
        Self {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            request,
            workers: stop.child_token(),
            stop,
            health,
            timeouts,
            monitors: 0,
        }
    }

    /// Starts `stage` in `role`.
    pub fn spawn<S: Stage>(&mut self, stage: S, role: Role) {
        let name = stage.name();
        let token = match role {
            Role::Worker => self.workers.clone(),
            Role::Drain | Role::Monitor => self.stop.child_token(),
        };
        if role == Role::Monitor {
            self.monitors += 1;
        }
        let ctx = self.health.context(name, token, self.timeouts);
        let handle = self.tasks.spawn(async move {
            let result = stage.run(ctx).await;
            Ended { name, role, result }
        });
        self.names.insert(handle.id(), name);
    }

    /// Runs the stages to the pipeline's end (see [`Pipeline`]).
    pub async fn run(mut self) -> Result<()> {
        let mut requested = false;
        let failure = loop {
            tokio::select! {
                () = self.request.cancelled(), if !requested => {
                    requested = true;
                    tracing::info!("shutdown requested: stages flush, commit and stop (a second signal stops at once)");
                    self.workers.cancel();
                    if self.monitors == 0 {
                        break None;
                    }
                }
                joined = self.tasks.join_next_with_id() => match joined {
                    None => return Ok(()),
                    Some(joined) => match self.settle(joined) {
                        Err(e) => break Some(e),
                        Ok(Role::Monitor) => break None,
                        Ok(_) => {}
                    },
                },
            }
        };
        let stopping = self.stop_all().await;
        match failure {
            Some(e) => Err(e),
            None => stopping,
        }
    }

    /// Takes note of a stage's end: its role, or its error naming it.
    fn settle(&mut self, joined: Result<(Id, Ended), JoinError>) -> Result<Role> {
        match joined {
            Ok((id, Ended { name, role, result })) => {
                self.names.remove(&id);
                tracing::debug!(stage = name, ok = result.is_ok(), "stage ended");
                result
                    .map(|()| role)
                    .map_err(|e| e.context(format!("stage {name} failed")))
            }
            Err(e) => {
                let name = self.names.remove(&e.id()).unwrap_or("a stage");
                Err(anyhow!("stage {name} panicked: {e}"))
            }
        }
    }

    /// Stops every stage and waits for them within the shutdown timeout: the first failure
    /// while stopping, or the stages that did not stop in time, is an error.
    async fn stop_all(&mut self) -> Result<()> {
        self.health.stopping();
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + self.timeouts.shutdown;
        let mut failure: Option<Error> = None;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(None) => break,
                Ok(Some(joined)) => {
                    if let Err(e) = self.settle(joined) {
                        if failure.is_some() {
                            // the first failure is the cause; what follows is reported once, here
                            tracing::warn!(error = %format!("{e:#}"), "another stage failed while stopping");
                        } else {
                            failure = Some(e);
                        }
                    }
                }
                Err(_) => {
                    let mut late: Vec<&str> = self.names.values().copied().collect();
                    late.sort_unstable();
                    self.tasks.abort_all();
                    failure.get_or_insert_with(|| {
                        anyhow!(
                            "stage {} did not stop within {} ms of the request to stop \
                             (pipeline.shutdown_timeout_ms); what it held was not committed and will be read again",
                            late.join(", "),
                            self.timeouts.shutdown.as_millis()
                        )
                    });
                    break;
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StageContext;
    use std::time::Duration;

    /// A stage whose behaviour the test chooses.
    enum Act {
        /// Runs until stopped, then takes this long to flush.
        UntilStopped(Duration),
        /// Works this long, then ends (with an error message, if given).
        For(Duration, Option<&'static str>),
        /// Panics at once.
        Panic,
        /// Runs until stopped, then marks the token.
        Drain(CancellationToken),
    }

    struct TestStage(&'static str, Act);

    impl Stage for TestStage {
        fn name(&self) -> &'static str {
            self.0
        }

        async fn run(self, ctx: StageContext) -> Result<()> {
            ctx.set_ready(true);
            match self.1 {
                Act::UntilStopped(flush) => {
                    ctx.stopped().await;
                    tokio::time::sleep(flush).await;
                    Ok(())
                }
                Act::For(d, error) => {
                    tokio::time::sleep(d).await;
                    error.map_or(Ok(()), |m| Err(anyhow!(m).context("doing its work")))
                }
                Act::Panic => panic!("boom"),
                Act::Drain(done) => {
                    ctx.stopped().await;
                    done.cancel();
                    Ok(())
                }
            }
        }
    }

    const SECOND: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn pipeline(request: &CancellationToken, stages: Vec<(TestStage, Role)>) -> Pipeline {
        let timeouts = Timeouts {
            startup: SECOND,
            shutdown: SECOND,
        };
        let mut p = Pipeline::new(request.clone(), Health::default(), timeouts);
        for (stage, role) in stages {
            p.spawn(stage, role);
        }
        p
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_stage_stops_the_others_and_is_named_with_its_cause() {
        let request = CancellationToken::new();
        let p = pipeline(
            &request,
            vec![
                (TestStage("enrich", Act::UntilStopped(10 * MS)), Role::Worker),
                (
                    TestStage("sink", Act::For(5 * MS, Some("ClickHouse refused"))),
                    Role::Drain,
                ),
            ],
        );
        let e = p.run().await.unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "stage sink failed: doing its work: ClickHouse refused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_request_stops_workers_and_succeeds() {
        let request = CancellationToken::new();
        let p = pipeline(
            &request,
            vec![(TestStage("enrich", Act::UntilStopped(10 * MS)), Role::Worker)],
        );
        request.cancel();
        p.run().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_that_does_not_stop_in_time_is_named() {
        let request = CancellationToken::new();
        let p = pipeline(
            &request,
            vec![
                (TestStage("sink", Act::UntilStopped(10 * SECOND)), Role::Worker),
                (TestStage("enrich", Act::UntilStopped(MS)), Role::Worker),
            ],
        );
        request.cancel();
        let e = p.run().await.unwrap_err().to_string();
        assert!(e.starts_with("stage sink did not stop within 1000 ms"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn drains_outlive_a_request_until_the_monitor_ends() {
        let request = CancellationToken::new();
        let drained = CancellationToken::new();
        let p = pipeline(
            &request,
            vec![
                (TestStage("feed", Act::UntilStopped(MS)), Role::Worker),
                (TestStage("sink", Act::Drain(drained.clone())), Role::Drain),
                (TestStage("watch", Act::For(SECOND / 2, None)), Role::Monitor),
            ],
        );
        request.cancel();
        let run = tokio::spawn(p.run());
        tokio::time::sleep(SECOND / 4).await;
        assert!(!drained.is_cancelled(), "the sink drains while the monitor waits");
        run.await.unwrap().unwrap();
        assert!(drained.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_finishes_leaves_the_others_running_and_the_pipeline_ends_with_the_last() {
        let request = CancellationToken::new();
        let p = pipeline(
            &request,
            vec![
                (TestStage("feed", Act::For(MS, None)), Role::Worker),
                (TestStage("enrich", Act::For(SECOND / 2, None)), Role::Worker),
            ],
        );
        let started = tokio::time::Instant::now();
        p.run().await.unwrap();
        assert!(started.elapsed() >= SECOND / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_is_a_failure_of_its_stage() {
        let request = CancellationToken::new();
        let p = pipeline(
            &request,
            vec![
                (TestStage("feed", Act::Panic), Role::Worker),
                (TestStage("sink", Act::UntilStopped(MS)), Role::Worker),
            ],
        );
        let e = p.run().await.unwrap_err().to_string();
        assert!(e.starts_with("stage feed panicked"), "{e}");
    }
}
