//! Market scenarios: how the volatility index, the drift, price jumps and trading activity
//! evolve over simulated time.

use std::fmt;
use std::str::FromStr;

/// A simulated market regime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A calm market: volatility index around 15, no drift, seed message rates.
    Normal,
    /// A crash like March 2020: the volatility index climbs from about 15 to 80 over the
    /// first half hour while the index falls with fast swings, and volume is ten times normal.
    Crash,
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(Self::Normal),
            "crash" => Ok(Self::Crash),
            other => Err(format!("unknown scenario {other:?}: expected normal or crash")),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Normal => "normal",
            Self::Crash => "crash",
        })
    }
}

/// The market's parameters at one simulated moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Regime {
    /// Level the volatility index reverts to (annualised, 0.15 = 15).
    pub vol_index: f64,
    /// Drift of the underlyings' log-price per simulated second.
    pub drift_per_second: f64,
    /// Price jumps per simulated second, per product.
    pub jumps_per_second: f64,
    /// Mean and standard deviation of a jump in log-price.
    pub jump: (f64, f64),
    /// Trading activity relative to a normal day (volume multiplier).
    pub activity: f64,
    /// Half the bid-ask spread at the money, relative to the price (it widens away from it).
    pub spread: f64,
    /// Underlying ticks per second per product, inclusive range.
    pub ticks_per_second: (u32, u32),
    /// Option quote updates per second over all products, inclusive range.
    pub quotes_per_second: (u32, u32),
}

/// Simulated seconds over which the crash unfolds.
const CRASH_SECONDS: f64 = 1800.0;

impl Scenario {
    /// The regime `elapsed` simulated seconds after the start.
    pub fn regime(self, elapsed: f64) -> Regime {
        match self {
            Self::Normal => Regime {
                vol_index: 0.15,
                drift_per_second: 0.0,
                jumps_per_second: 0.0,
                jump: (0.0, 0.0),
                activity: 1.0,
                spread: 0.002,
                ticks_per_second: (1, 5),
                quotes_per_second: (10, 50),
            },
            Self::Crash => {
                let progress = (elapsed / CRASH_SECONDS).clamp(0.0, 1.0);
                Regime {
                    vol_index: 0.15 + (0.80 - 0.15) * progress,
                    // about −12% over the half hour while it unfolds, then sideways
                    drift_per_second: if progress < 1.0 { -0.12 / CRASH_SECONDS } else { 0.0 },
                    jumps_per_second: 1.0 / 30.0,
                    // fast swings both ways: the fall itself is the drift
                    jump: (0.0, 0.008),
                    activity: 1.0 + 9.0 * progress,
                    spread: 0.002 + 0.004 * progress,
                    ticks_per_second: (4, 5),
                    quotes_per_second: (40, 50),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_takes_the_vol_index_from_15_to_80_and_volume_tenfold() {
        let start = Scenario::Crash.regime(0.0);
        let end = Scenario::Crash.regime(CRASH_SECONDS * 2.0);
        assert!((start.vol_index - 0.15).abs() < 1e-12 && (end.vol_index - 0.80).abs() < 1e-12);
        assert_eq!(end.activity, 10.0);
        assert!(Scenario::Normal.regime(1e6).vol_index == 0.15);
        assert_eq!("crash".parse::<Scenario>(), Ok(Scenario::Crash));
        assert!("boom".parse::<Scenario>().unwrap_err().contains("normal or crash"));
    }
}
