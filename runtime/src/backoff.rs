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
}
