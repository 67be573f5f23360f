//! Retries of transient failures, one policy for every stage: exponential backoff with
//! jitter, within a budget of time after which the stage gives up loudly.

use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

/// Whether a failure is worth another attempt: the one classification every retry loop
/// reads (ClickHouse's answers are classified in `chainflow-clickhouse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// The same work may succeed later: retry with backoff (a stage pauses its partitions).
    Transient,
    /// The work itself is refused: retrying cannot help.
    Permanent,
}

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// How long to keep trying before giving up.
    pub budget: Duration,
}

impl RetryPolicy {
    /// A policy from milliseconds, as configured.
    pub fn from_millis(initial: u64, max: u64, budget: u64) -> Self {
        Self {
            initial: Duration::from_millis(initial),
            max: Duration::from_millis(max),
            budget: Duration::from_millis(budget),
        }
    }

    /// A backoff that starts now.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial, self.max, self.budget)
    }
}

/// Exponential backoff with ±25 % jitter, within a budget of time.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`, and gives up `budget` from now.
    pub fn new(initial: Duration, max: Duration, budget: Duration) -> Self {
        Self {
            next: initial,
            max,
            deadline: Instant::now() + budget,
        }
    }

    /// The delay before the next attempt, or `None` once the budget is spent.
    pub fn delay(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if now >= self.deadline {
            return None;
        }
        let jittered = self.next.mul_f64(rand::rng().random_range(0.75..1.25));
        self.next = (self.next * 2).min(self.max);
        Some(jittered.min(self.deadline - now))
    }
}

/// A run of failures of something that heals by itself: a consumer's reads, which
/// librdkafka keeps trying on its own (it reconnects, and finds a partition's new leader
/// after a failover). Each failure is followed by the policy's first delay, never a longer
/// one, so that the first record after the fault is read at once (a backoff grown to its
/// longest delay by a burst of connection errors left an enricher asleep 30 s per queued
/// error after a broker came back); the run is given up only once nothing but failures
/// came for the policy's budget.
#[derive(Debug, Default)]
pub struct Streak {
    since: Option<Instant>,
}

impl Streak {
    /// Something succeeded: the run is over.
    pub fn ended(&mut self) {
        self.since = None;
    }

    /// Notes one more failure: how long to wait before trying again, or `None` once the
    /// failures have lasted `policy.budget`.
    pub fn failed(&mut self, policy: &RetryPolicy) -> Option<Duration> {
        let since = *self.since.get_or_insert_with(Instant::now);
        (since.elapsed() <= policy.budget).then_some(policy.initial)
    }
}

/// Sleeps until `deadline`, or for ever when there is none (a `select!` branch that fires
/// only when something is due).
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_with_jitter_and_stops_at_the_budget() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(400),
            Duration::from_secs(1),
        );
        let first = b.delay().unwrap();
        assert!((75..=125).contains(&first.as_millis()), "{first:?}");
        let second = b.delay().unwrap();
        assert!((150..=250).contains(&second.as_millis()), "{second:?}");
        let third = b.delay().unwrap();
        assert!((300..=500).contains(&third.as_millis()), "{third:?}");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.delay(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_streak_waits_the_first_delay_each_time_until_its_budget_and_ends_on_success() {
        let policy = RetryPolicy::from_millis(200, 30_000, 60_000);
        let mut streak = Streak::default();
        for _ in 0..20 {
            assert_eq!(streak.failed(&policy), Some(Duration::from_millis(200)), "never longer");
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(streak.failed(&policy), None, "a minute of nothing but failures");
        streak.ended();
        assert_eq!(streak.failed(&policy), Some(Duration::from_millis(200)), "a new run");
    }
}
