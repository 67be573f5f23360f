//! What a product lists: weekly expiries (Thursdays) plus a monthly one (the month's last
//! Thursday), and strikes centred on spot, re-centred as spot moves.

use chainflow_config::ProductSpec;
use chainflow_contract::keys::days_from_date;
use chrono::{Datelike, Days, NaiveDate, Weekday};

/// The last Thursday of `date`'s month.
fn last_thursday(date: NaiveDate) -> NaiveDate {
    let next_month = if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
    .expect("valid date");
    let last = next_month.pred_opt().expect("valid date");
    let back = (last.weekday().num_days_from_monday() + 7 - Weekday::Thu.num_days_from_monday()) % 7;
    last - Days::new(u64::from(back))
}

/// The expiries listed at `t_us` (µs since the epoch), as days since the epoch, ascending:
/// the next `expiries` weekly Thursdays whose close has not passed, then the monthly expiry
/// (the first month-end Thursday that is later than every weekly).
pub fn expiries(spec: &ProductSpec, t_us: i64) -> Vec<i32> {
    let today = spec.terms.exchange_date(t_us).expect("valid time");
    let ahead = (Weekday::Thu.num_days_from_monday() + 7 - today.weekday().num_days_from_monday()) % 7;
    let mut first = today + Days::new(u64::from(ahead));
    if spec.terms.expiry_instant_us(first) <= t_us {
        first = first + Days::new(7);
    }
    let weeklies: Vec<NaiveDate> = (0..u64::from(spec.params.expiries))
        .map(|w| first + Days::new(7 * w))
        .collect();
    let last_weekly = *weeklies.last().expect("at least one weekly expiry");
    let mut monthly = last_thursday(first);
    while monthly <= last_weekly {
        monthly = last_thursday(monthly + Days::new(7));
    }
    weeklies.into_iter().chain([monthly]).map(days_from_date).collect()
}

/// The listed strikes around `spot`: `count` strikes `step` apart, centred on the strike
/// nearest spot.
pub fn strikes(spot: f64, step: f64, count: u32) -> impl Iterator<Item = f64> {
    let centre = (spot / step).round();
    let half = i64::from(count / 2);
    (-half..=half).map(move |j| (centre + j as f64) * step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_config::default_products;
    use chainflow_contract::keys::date_from_days;

    fn nifty() -> ProductSpec {
        ProductSpec::new("NIFTY", default_products().remove("NIFTY").unwrap()).unwrap()
    }

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    fn dates(v: Vec<i32>) -> Vec<String> {
        v.into_iter().map(|d| date_from_days(d).to_string()).collect()
    }

    #[test]
    fn weeklies_then_the_monthly() {
        // Monday 2025-01-13: Thursdays 16th and 23rd, monthly the 30th
        assert_eq!(
            dates(expiries(&nifty(), utc("2025-01-13T04:00:00Z"))),
            ["2025-01-16", "2025-01-23", "2025-01-30"]
        );
        // expiry day before the close (15:30 IST = 10:00 UTC): today's expiry still trades;
        // the month's last Thursday is among the weeklies, so the monthly is February's
        assert_eq!(
            dates(expiries(&nifty(), utc("2025-01-23T09:59:59Z"))),
            ["2025-01-23", "2025-01-30", "2025-02-27"]
        );
        // after the close it is gone
        assert_eq!(
            dates(expiries(&nifty(), utc("2025-01-23T10:00:00Z"))),
            ["2025-01-30", "2025-02-06", "2025-02-27"]
        );
        // December rolls into the next year
        assert_eq!(
            last_thursday(NaiveDate::from_ymd_opt(2025, 12, 3).unwrap()).to_string(),
            "2025-12-25"
        );
    }

    #[test]
    fn strikes_are_centred_on_the_nearest_strike() {
        let s: Vec<f64> = strikes(21_543.25, 50.0, 5).collect();
        assert_eq!(s, [21_450.0, 21_500.0, 21_550.0, 21_600.0, 21_650.0]);
        assert_eq!(strikes(100.0, 10.0, 41).count(), 41);
    }
}
