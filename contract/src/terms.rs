//! A product's valuation terms (rate, dividend yield, expiry close and time zone) and the
//! one year fraction every option price and every simulated move is measured in: part of
//! the contract (what a product is), shared by the configuration that reads them and the
//! analytics that price with them.

use crate::keys::date_from_days;
use chrono::{NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;

/// Seconds in the 365-day year that T, theta and simulated diffusion are measured in.
pub const YEAR_SECONDS: f64 = 365.0 * 86_400.0;

/// Years of 365 days from `from_us` to `to_us` (µs since the epoch); negative when `to_us`
/// is earlier.
pub fn year_fraction(from_us: i64, to_us: i64) -> f64 {
    (to_us as f64 - from_us as f64) / 1e6 / YEAR_SECONDS
}

/// What the analytics need to know of a product: how its options are discounted and when
/// they expire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProductTerms {
    /// Risk-free rate, continuously compounded decimal.
    pub rate: f64,
    /// Dividend yield, continuously compounded decimal.
    pub dividend_yield: f64,
    /// Local time at which the options expire.
    pub expiry_close: NaiveTime,
    /// The exchange's time zone.
    pub time_zone: Tz,
}

impl ProductTerms {
    /// The UTC instant (µs since the epoch) at which an option expiring on `expiry` stops
    /// trading.
    pub fn expiry_instant_us(&self, expiry: NaiveDate) -> i64 {
        let local = expiry.and_time(self.expiry_close);
        let instant = self
            .time_zone
            .from_local_datetime(&local)
            .earliest()
            // A close time inside a DST gap does not exist locally: take the UTC reading.
            .unwrap_or_else(|| self.time_zone.from_utc_datetime(&local));
        instant.timestamp_micros()
    }

    /// Years from `event_time_us` to the close of the expiry day `expiry` (days since
    /// 1970-01-01): the option's T, from the event's own time and never the wall clock, so
    /// replays and recordings give the same answer as live data.
    pub fn time_to_expiry(&self, expiry: i32, event_time_us: i64) -> f64 {
        year_fraction(event_time_us, self.expiry_instant_us(date_from_days(expiry)))
    }

    /// The exchange's calendar date at `t_us`, when `t_us` is a representable instant.
    pub fn exchange_date(&self, t_us: i64) -> Option<NaiveDate> {
        chrono::DateTime::from_timestamp_micros(t_us).map(|t| t.with_timezone(&self.time_zone).date_naive())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nifty() -> ProductTerms {
        ProductTerms {
            rate: 0.065,
            dividend_yield: 0.012,
            expiry_close: NaiveTime::from_hms_opt(15, 30, 0).unwrap(),
            time_zone: chrono_tz::Asia::Kolkata,
        }
    }

    #[test]
    fn expiry_instant_is_the_local_close_in_utc() {
        let expiry = NaiveDate::from_ymd_opt(2025, 1, 30).unwrap();
        // 15:30 IST = 10:00 UTC
        let want = expiry.and_hms_opt(10, 0, 0).unwrap().and_utc().timestamp_micros();
        assert_eq!(nifty().expiry_instant_us(expiry), want);
    }

    #[test]
    fn a_close_inside_a_daylight_saving_gap_reads_as_utc() {
        // New York skips 02:00-03:00 on 2025-03-09
        let terms = ProductTerms {
            expiry_close: NaiveTime::from_hms_opt(2, 30, 0).unwrap(),
            time_zone: chrono_tz::America::New_York,
            ..nifty()
        };
        let day = NaiveDate::from_ymd_opt(2025, 3, 9).unwrap();
        let want = day.and_hms_opt(2, 30, 0).unwrap().and_utc().timestamp_micros();
        assert_eq!(terms.expiry_instant_us(day), want);
    }

    #[test]
    fn time_to_expiry_runs_from_the_event_to_the_local_close() {
        // 2025-01-30 09:15 IST = 03:45 UTC; the close is 15:30 IST = 10:00 UTC: 6.25 hours
        let t = nifty().time_to_expiry(20118, 1_738_208_700_000_000);
        assert!((t - 6.25 / (365.0 * 24.0)).abs() < 1e-15, "{t}");
        assert_eq!(year_fraction(0, 365 * 86_400_000_000), 1.0);
        assert_eq!(year_fraction(86_400_000_000, 0), -1.0 / 365.0);
    }

    #[test]
    fn the_exchange_date_is_local() {
        // 2025-01-29 20:00 UTC is already the 30th in India
        let t = NaiveDate::from_ymd_opt(2025, 1, 29)
            .unwrap()
            .and_hms_opt(20, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        assert_eq!(nifty().exchange_date(t), NaiveDate::from_ymd_opt(2025, 1, 30));
        assert_eq!(nifty().exchange_date(i64::MAX), None);
    }
}
