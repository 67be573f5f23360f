//! Kafka keys and idempotency ids. Keys are UTF-8 strings.

use chrono::{Datelike, NaiveDate};

use crate::market::OptionType;

/// The Unix epoch as a calendar date.
fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")
}

/// Days since 1970-01-01 (Avro `date`) → calendar date, when chrono can represent it
/// (about ±262,000 years).
pub fn checked_date_from_days(days: i32) -> Option<NaiveDate> {
    epoch().checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
}

/// Days since 1970-01-01 (Avro `date`) → calendar date; beyond chrono's range, its first or
/// last date (validation rejects such expiries before they are used).
pub fn date_from_days(days: i32) -> NaiveDate {
    checked_date_from_days(days).unwrap_or(if days < 0 { NaiveDate::MIN } else { NaiveDate::MAX })
}

/// Calendar date → days since 1970-01-01 (Avro `date`).
pub fn days_from_date(date: NaiveDate) -> i32 {
    (date - epoch()).num_days() as i32
}

/// Key of a chain snapshot: `NIFTY|2025-01-30`.
pub fn chain_key(product: &str, expiry_days: i32) -> String {
    format!("{product}|{}", date_from_days(expiry_days).format("%Y-%m-%d"))
}

/// Idempotency id of an enriched chain: `NIFTY|2025-01-30|1738224000000000`.
pub fn chain_id(product: &str, expiry_days: i32, event_time_us: i64) -> String {
    format!("{}|{event_time_us}", chain_key(product, expiry_days))
}

/// Option symbol, e.g. `NIFTY20250130C21500` (strike without trailing zeros).
pub fn option_symbol(product: &str, expiry_days: i32, strike: f64, kind: OptionType) -> String {
    let d = date_from_days(expiry_days);
    let side = match kind {
        OptionType::Call => 'C',
        OptionType::Put => 'P',
    };
    format!("{product}{:04}{:02}{:02}{side}{strike}", d.year(), d.month(), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jan30() -> i32 {
        days_from_date(NaiveDate::from_ymd_opt(2025, 1, 30).unwrap())
    }

    #[test]
    fn chain_key_and_id_follow_the_contract() {
        assert_eq!(chain_key("NIFTY", jan30()), "NIFTY|2025-01-30");
        assert_eq!(
            chain_id("NIFTY", jan30(), 1_738_224_000_000_000),
            "NIFTY|2025-01-30|1738224000000000"
        );
    }

    #[test]
    fn option_symbol_drops_trailing_zeros() {
        assert_eq!(
            option_symbol("NIFTY", jan30(), 21500.0, OptionType::Call),
            "NIFTY20250130C21500"
        );
        assert_eq!(
            option_symbol("NIFTY", jan30(), 21512.5, OptionType::Put),
            "NIFTY20250130P21512.5"
        );
    }

    #[test]
    fn dates_beyond_chronos_range_do_not_panic() {
        assert_eq!(checked_date_from_days(i32::MAX), None);
        assert_eq!(date_from_days(i32::MAX), NaiveDate::MAX);
        assert_eq!(date_from_days(i32::MIN), NaiveDate::MIN);
        assert!(chain_key("NIFTY", i32::MAX).starts_with("NIFTY|"));
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(date_from_days(jan30()), NaiveDate::from_ymd_opt(2025, 1, 30).unwrap());
        assert_eq!(days_from_date(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()), 0);
    }
}
