//! Open interest and volume of each listed option: trades arrive at a rate peaked at the
//! money and scaled by the regime's activity; part of each trade opens positions and part
//! closes them, tilted by a slowly wandering sentiment per product and side, so open
//! interest builds up and unwinds. Volume and the change in open interest count from the
//! start of the product's local trading day.

use super::SimRng;
use chainflow_contract::OptionType;
use rand::Rng;
use std::collections::BTreeMap;

/// Contracts an at-the-money option trades per simulated second on a normal day.
const ATM_CONTRACTS_PER_SECOND: f64 = 4.0;
/// Open interest of a fresh at-the-money listing, contracts.
const ATM_OPEN_INTEREST: f64 = 60_000.0;

/// Identifies an option of a product: expiry (days), strike (hundredths), call or put.
pub type OptionKey = (i32, i64, OptionType);

/// The key of an option.
pub fn key(expiry: i32, strike: f64, kind: OptionType) -> OptionKey {
    (expiry, (strike * 100.0).round() as i64, kind)
}

/// One option's positions and trading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activity {
    /// Open interest, contracts.
    pub oi: i64,
    /// Open interest at the start of the trading day.
    pub day_open_oi: i64,
    /// Contracts traded since the start of the trading day.
    pub volume: i64,
}

impl Activity {
    /// Change in open interest since the start of the day.
    pub fn oi_change(&self) -> i64 {
        self.oi - self.day_open_oi
    }
}

/// Open interest and volume of one product's options.
#[derive(Debug, Clone, Default)]
pub struct Book {
    options: BTreeMap<OptionKey, Activity>,
    /// Sentiment of call and put traders in [−1, 1]: positive builds positions up.
    sentiment: [f64; 2],
    day: Option<chrono::NaiveDate>,
}

/// Weight of an option `distance` (strike − spot, in units of a quarter of the listed
/// range) from the money, higher on its out-of-the-money side, as real books are.
fn weight(kind: OptionType, distance: f64) -> f64 {
    let otm = match kind {
        OptionType::Call => distance > 0.0,
        OptionType::Put => distance < 0.0,
    };
    (-distance * distance).exp() * if otm { 1.5 } else { 1.0 }
}

impl Book {
    /// The option's activity, listing it (with open interest drawn around its weight) the
    /// first time it is seen.
    pub fn get(&mut self, rng: &mut SimRng, k: OptionKey, distance: f64) -> Activity {
        *self.options.entry(k).or_insert_with(|| {
            let oi = (ATM_OPEN_INTEREST * weight(k.2, distance) * rng.random_range(0.5..1.5)) as i64;
            Activity {
                oi,
                day_open_oi: oi,
                volume: 0,
            }
        })
    }

    /// Starts a new trading day when `day` differs from the last one: volume back to zero,
    /// today's open interest the new baseline. True when a day ended.
    pub fn roll_day(&mut self, day: chrono::NaiveDate) -> bool {
        let ended = self.day.is_some_and(|d| d != day);
        if ended {
            for a in self.options.values_mut() {
                a.volume = 0;
                a.day_open_oi = a.oi;
            }
        }
        self.day = Some(day);
        ended
    }

    /// One simulated second of trading in the option `k`.
    pub fn trade(&mut self, rng: &mut SimRng, k: OptionKey, distance: f64, activity: f64) {
        let side = usize::from(matches!(k.2, OptionType::Put));
        let sentiment = self.sentiment[side];
        let mut a = self.get(rng, k, distance);
        let expected = ATM_CONTRACTS_PER_SECOND * activity * weight(k.2, distance);
        let traded = (expected * rng.random_range(0.0..2.0)).round() as i64;
        // the opening share of the trade: half on average, tilted by sentiment
        let opening = (0.5 + 0.4 * sentiment + rng.random_range(-0.1..0.1)).clamp(0.0, 1.0);
        let change = (traded as f64 * (2.0 * opening - 1.0)).round() as i64;
        a.volume += traded;
        a.oi = (a.oi + change).max(0);
        self.options.insert(k, a);
    }

    /// Lets the sentiment of both sides wander (once per simulated second).
    pub fn drift_sentiment(&mut self, rng: &mut SimRng) {
        for s in &mut self.sentiment {
            *s = (*s * 0.999 + rng.random_range(-0.05..0.05)).clamp(-1.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn volume_accumulates_and_resets_daily_while_oi_moves_from_its_day_open() {
        let mut rng = SimRng::seed_from_u64(1);
        let mut book = Book::default();
        let day = chrono::NaiveDate::from_ymd_opt(2025, 1, 30).unwrap();
        assert!(!book.roll_day(day));
        let k = key(20118, 21500.0, OptionType::Call);
        let first = book.get(&mut rng, k, 0.0);
        assert!(first.oi > 0 && first.volume == 0 && first.oi_change() == 0);
        for _ in 0..600 {
            book.drift_sentiment(&mut rng);
            book.trade(&mut rng, k, 0.0, 1.0);
        }
        let later = book.get(&mut rng, k, 0.0);
        assert!(later.volume > 1000, "{later:?}");
        assert_eq!(later.oi_change(), later.oi - first.oi);
        assert!(!book.roll_day(day));
        assert!(book.roll_day(day.succ_opt().unwrap()));
        let next_day = book.get(&mut rng, k, 0.0);
        assert_eq!((next_day.volume, next_day.oi_change(), next_day.oi), (0, 0, later.oi));
    }

    #[test]
    fn fresh_listings_hold_most_open_interest_near_the_money() {
        let mut rng = SimRng::seed_from_u64(2);
        let mut book = Book::default();
        let near = book.get(&mut rng, key(1, 100.0, OptionType::Put), 0.1).oi;
        let far = book.get(&mut rng, key(1, 50.0, OptionType::Put), -2.5).oi;
        assert!(near > 10 * far, "{near} vs {far}");
    }
}
