//! When each message is due: as fast as the broker takes them, at a constant rate, along
//! the spike load profile, or at a multiple of the events' own timing.

use std::fmt;
use std::time::Duration;

/// Seconds each step of the spike profile lasts.
const SPIKE_STEP_SECONDS: f64 = 10.0;
/// Steps the spike stays at its peak after the ramp reaches it (with that step: a minute).
const SPIKE_HOLD_STEPS: usize = 5;

/// How fast messages go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the broker acknowledges them.
    Unthrottled,
    /// A constant number of messages per second.
    Rate(f64),
    /// The seed system's spike: 200 msg/s, rising by 100 every 10 s to 2,000, held for a
    /// minute, ramped down the same way, then 200 msg/s.
    Spike,
    /// Following the events' timestamps, `x` simulated seconds per real second.
    Speed(f64),
}

impl fmt::Display for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pace::Unthrottled => write!(f, "unthrottled"),
            Pace::Rate(r) => write!(f, "{r} msg/s"),
            Pace::Spike => write!(f, "spike profile (200 → 2,000 → 200 msg/s)"),
            Pace::Speed(x) => write!(f, "{x}× the events' own timing"),
        }
    }
}

/// Messages per second during each step of the spike profile; after the last, 200.
fn spike_rates() -> impl Iterator<Item = f64> {
    let up = (0..=18).map(|k| 200.0 + 100.0 * f64::from(k));
    let hold = std::iter::repeat_n(2_000.0, SPIKE_HOLD_STEPS);
    let down = (1..=18).map(|k| 2_000.0 - 100.0 * f64::from(k));
    up.chain(hold).chain(down)
}

impl Pace {
    /// The rate the spike profile asks for `elapsed` seconds after the start.
    pub fn spike_rate(elapsed: f64) -> f64 {
        let step = (elapsed / SPIKE_STEP_SECONDS).floor().max(0.0) as usize;
        spike_rates().nth(step).unwrap_or(200.0)
    }

    /// When message `n` (counting from 0), whose event happened `event_offset_us` after the
    /// first event, is due, from the start of sending; `None` when it can go at once.
    pub fn due(&self, n: u64, event_offset_us: i64) -> Option<Duration> {
        let n = n as f64;
        let secs = match *self {
            Pace::Unthrottled => return None,
            Pace::Rate(r) => n / r,
            Pace::Speed(x) => event_offset_us.max(0) as f64 / 1e6 / x,
            Pace::Spike => {
                let mut sent_before = 0.0;
                let mut start = 0.0;
                let mut found = None;
                for rate in spike_rates() {
                    let in_step = rate * SPIKE_STEP_SECONDS;
                    if n < sent_before + in_step {
                        found = Some(start + (n - sent_before) / rate);
                        break;
                    }
                    sent_before += in_step;
                    start += SPIKE_STEP_SECONDS;
                }
                found.unwrap_or(start + (n - sent_before) / 200.0)
            }
        };
        Some(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spike_rises_by_100_every_10_s_to_2000_holds_and_ramps_down() {
        assert_eq!(Pace::spike_rate(0.0), 200.0);
        assert_eq!(Pace::spike_rate(10.0), 300.0);
        // reached at 180 s, held for a minute
        assert_eq!(Pace::spike_rate(175.0), 1_900.0);
        assert_eq!(Pace::spike_rate(185.0), 2_000.0);
        assert_eq!(Pace::spike_rate(235.0), 2_000.0);
        assert_eq!(Pace::spike_rate(245.0), 1_900.0);
        assert_eq!(Pace::spike_rate(405.0), 300.0);
        assert_eq!(Pace::spike_rate(415.0), 200.0);
        assert_eq!(Pace::spike_rate(10_000.0), 200.0);
        // 2,000 messages in the first 10 s, the next 3,000 by 20 s
        let due = |n| Pace::Spike.due(n, 0).unwrap().as_secs_f64();
        assert!((due(2_000) - 10.0).abs() < 1e-9 && (due(5_000) - 20.0).abs() < 1e-9);
        assert!((due(100) - 0.5).abs() < 1e-9);
        // the messages sent by t equal the integral of the rate
        let total: f64 = (0..44).map(|k| Pace::spike_rate(f64::from(k) * 10.0) * 10.0).sum();
        assert!((due(total as u64) - 440.0).abs() < 1e-9);
    }

    #[test]
    fn constant_rate_and_speed() {
        assert_eq!(Pace::Rate(100.0).due(50, 0), Some(Duration::from_millis(500)));
        assert_eq!(Pace::Speed(10.0).due(7, 5_000_000), Some(Duration::from_millis(500)));
        assert_eq!(Pace::Unthrottled.due(7, 5_000_000), None);
    }
}
