//! What makes a chain invalid (`docs/analytics.md`): such chains go to the dead-letter topic.

use chainflow_contract::keys::date_from_days;
use chainflow_contract::OptionChain;
use chainflow_contract::ProductTerms;
use std::collections::BTreeMap;
use thiserror::Error;

/// 9999-12-31T23:59:59.999999Z, µs since the epoch.
const LAST_EVENT_US: i64 = 253_402_300_799_999_999;

/// Why a chain cannot be enriched.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InvalidChain {
    /// The product has no `[products.<NAME>]` configuration.
    #[error("unknown product {0:?}")]
    UnknownProduct(String),
    /// Spot ≤ 0, NaN or infinite.
    #[error("spot {0} is not a positive finite price")]
    BadSpot(f64),
    /// The snapshot has no strikes.
    #[error("the chain has no strikes")]
    NoStrikes,
    /// A strike ≤ 0 or not finite.
    #[error("strike {0} is not a positive finite price")]
    BadStrike(f64),
    /// Strikes out of order or repeated.
    #[error("strikes are not sorted and unique: {0} follows {1}")]
    Unsorted(f64, f64),
    /// An expiry outside the dates ClickHouse stores (1970-01-01 to 2149-06-06).
    #[error("expiry day {0} is outside 1970-01-01..2149-06-06")]
    BadExpiry(i32),
    /// An event time outside the instants the pipeline handles (years 1970 to 9999).
    #[error("event_time {0} µs is outside 1970..9999")]
    BadEventTime(i64),
    /// Expiry before the event's exchange date.
    #[error("expiry {expiry} is before the event date {event_date}")]
    Expired {
        /// Expiry date.
        expiry: String,
        /// Exchange date of the event.
        event_date: String,
    },
}

impl InvalidChain {
    /// Short machine-readable kind for dead-letter headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InvalidChain::UnknownProduct(_) => "unknown_product",
            InvalidChain::BadSpot(_) => "bad_spot",
            InvalidChain::NoStrikes => "no_strikes",
            InvalidChain::BadStrike(_) => "bad_strike",
            InvalidChain::Unsorted(..) => "unsorted_strikes",
            InvalidChain::BadExpiry(_) => "bad_expiry",
            InvalidChain::BadEventTime(_) => "bad_event_time",
            InvalidChain::Expired { .. } => "expired",
        }
    }
}

/// Checks `chain` and returns its product's terms from `products`.
pub fn validate<'a>(
    chain: &OptionChain,
    products: &'a BTreeMap<String, ProductTerms>,
) -> Result<&'a ProductTerms, InvalidChain> {
    let product = products
        .get(&chain.product)
        .ok_or_else(|| InvalidChain::UnknownProduct(chain.product.clone()))?;
    if !(chain.spot.is_finite() && chain.spot > 0.0) {
        return Err(InvalidChain::BadSpot(chain.spot));
    }
    if chain.strikes.is_empty() {
        return Err(InvalidChain::NoStrikes);
    }
    let mut previous: Option<f64> = None;
    for s in &chain.strikes {
        if !(s.strike.is_finite() && s.strike > 0.0) {
            return Err(InvalidChain::BadStrike(s.strike));
        }
        if let Some(p) = previous {
            if s.strike <= p {
                return Err(InvalidChain::Unsorted(s.strike, p));
            }
        }
        previous = Some(s.strike);
    }
    if !(0..=i32::from(u16::MAX)).contains(&chain.expiry) {
        return Err(InvalidChain::BadExpiry(chain.expiry));
    }
    let expiry = date_from_days(chain.expiry);
    if !(0..=LAST_EVENT_US).contains(&chain.event_time) {
        return Err(InvalidChain::BadEventTime(chain.event_time));
    }
    let event_date = product
        .exchange_date(chain.event_time)
        .expect("an instant within 1970..9999");
    if expiry < event_date {
        return Err(InvalidChain::Expired {
            expiry: expiry.to_string(),
            event_date: event_date.to_string(),
        });
    }
    Ok(product)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_contract::{Quote, StrikeQuotes};

    fn products() -> BTreeMap<String, ProductTerms> {
        let nifty = ProductTerms {
            rate: 0.065,
            dividend_yield: 0.012,
            expiry_close: chrono::NaiveTime::from_hms_opt(15, 30, 0).unwrap(),
            time_zone: chrono_tz::Asia::Kolkata,
        };
        BTreeMap::from([("NIFTY".to_string(), nifty)])
    }

    fn chain(strikes: &[f64]) -> OptionChain {
        let q = Quote {
            bid: 1.0,
            ask: 1.1,
            last: 1.0,
            volume: 1,
            oi: 1,
            oi_change: 0,
            iv: None,
        };
        OptionChain {
            product: "NIFTY".into(),
            expiry: 20118, // 2025-01-30
            lot_size: 50,
            spot: 21543.25,
            event_time: 1_738_200_000_000_000, // 2025-01-30 01:20 UTC
            seq: 1,
            strikes: strikes
                .iter()
                .map(|&k| StrikeQuotes {
                    strike: k,
                    call: q.clone(),
                    put: q.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_good_chain_passes() {
        assert!(validate(&chain(&[21500.0, 21550.0]), &products()).is_ok());
    }

    #[test]
    fn each_rule_is_enforced() {
        let p = products();
        let mut c = chain(&[21500.0]);
        c.product = "NOPE".into();
        assert_eq!(validate(&c, &p).unwrap_err().kind(), "unknown_product");
        let mut c = chain(&[21500.0]);
        c.spot = f64::NAN;
        assert_eq!(validate(&c, &p).unwrap_err().kind(), "bad_spot");
        assert_eq!(validate(&chain(&[]), &p).unwrap_err(), InvalidChain::NoStrikes);
        assert_eq!(validate(&chain(&[0.0, 50.0]), &p).unwrap_err().kind(), "bad_strike");
        assert_eq!(
            validate(&chain(&[100.0, 50.0]), &p).unwrap_err(),
            InvalidChain::Unsorted(50.0, 100.0)
        );
        assert_eq!(
            validate(&chain(&[50.0, 50.0]), &p).unwrap_err().kind(),
            "unsorted_strikes"
        );
        for expiry in [-1, 70_000, i32::MAX, i32::MIN] {
            let mut c = chain(&[21500.0]);
            c.expiry = expiry;
            assert_eq!(validate(&c, &p).unwrap_err(), InvalidChain::BadExpiry(expiry));
        }
        for t in [-1, i64::MAX, i64::MIN, LAST_EVENT_US + 1] {
            let mut c = chain(&[21500.0]);
            c.event_time = t;
            assert_eq!(validate(&c, &p).unwrap_err(), InvalidChain::BadEventTime(t));
        }
        let mut c = chain(&[21500.0]);
        c.expiry -= 1;
        let e = validate(&c, &p).unwrap_err();
        assert_eq!(e.to_string(), "expiry 2025-01-29 is before the event date 2025-01-30");
    }
}
