//! Products (`[products.<NAME>]`): the market parameters shared by the feed and the analytics.

use chainflow_contract::ProductTerms;
use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One tradable underlying and how its options are listed and valued.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Reference spot level the feed starts from.
    pub spot: f64,
    /// Distance between listed strikes, in index points.
    pub strike_step: f64,
    /// Contract multiplier (units of underlying per lot).
    pub lot_size: u32,
    /// Risk-free rate, continuously compounded decimal.
    pub rate: f64,
    /// Dividend yield, continuously compounded decimal.
    pub dividend_yield: f64,
    /// Local time at which options expire, `HH:MM`.
    pub expiry_close: String,
    /// IANA time zone of the exchange, e.g. `Asia/Kolkata`.
    pub time_zone: String,
    /// Strikes per expiry listed by the feed (odd, centred on spot).
    #[serde(default = "default_strikes")]
    pub strikes: u32,
    /// Weekly expiries listed by the feed (a monthly one is listed as well).
    #[serde(default = "default_expiries")]
    pub expiries: u32,
    /// The simulated underlying's volatility relative to the volatility index.
    #[serde(default = "default_vol_beta")]
    pub vol_beta: f64,
}

fn default_vol_beta() -> f64 {
    1.0
}

fn default_strikes() -> u32 {
    21
}

fn default_expiries() -> u32 {
    2
}

/// A validated product: its configured parameters and the valuation terms parsed from them.
#[derive(Debug, Clone)]
pub struct ProductSpec {
    /// The product's name, e.g. `NIFTY`.
    pub name: String,
    /// The configured parameters.
    pub params: Product,
    /// Rate, dividend yield, parsed expiry close and time zone: what the analytics use.
    pub terms: ProductTerms,
}

impl ProductSpec {
    /// Validates `params`, naming the offending field (`products.<name>.<field>`) on error.
    pub fn new(name: &str, params: Product) -> Result<Self, String> {
        let field = |f: &str| format!("products.{name}.{f}");
        let positive = |v: f64, f: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{}: must be a positive number, got {v}", field(f)))
            }
        };
        positive(params.spot, "spot")?;
        positive(params.strike_step, "strike_step")?;
        positive(params.vol_beta, "vol_beta")?;
        if params.lot_size == 0 {
            return Err(format!("{}: must be at least 1", field("lot_size")));
        }
        for (v, f) in [(params.rate, "rate"), (params.dividend_yield, "dividend_yield")] {
            check_rate(v).map_err(|e| format!("{}: {e}", field(f)))?;
        }
        if params.strikes == 0 || params.strikes.is_multiple_of(2) {
            return Err(format!(
                "{}: must be an odd number of strikes, got {}",
                field("strikes"),
                params.strikes
            ));
        }
        if params.expiries == 0 {
            return Err(format!("{}: must be at least 1", field("expiries")));
        }
        let close = parse_close(&params.expiry_close).map_err(|e| format!("{}: {e}", field("expiry_close")))?;
        let tz = parse_time_zone(&params.time_zone).map_err(|e| format!("{}: {e}", field("time_zone")))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("products.{name:?}: product names are letters, digits and '_'"));
        }
        let terms = ProductTerms {
            rate: params.rate,
            dividend_yield: params.dividend_yield,
            expiry_close: close,
            time_zone: tz,
        };
        Ok(Self {
            name: name.to_string(),
            params,
            terms,
        })
    }
}

/// Checks a continuously compounded rate or yield given as a decimal.
pub fn check_rate(v: f64) -> Result<f64, String> {
    if v.is_finite() && v.abs() <= 1.0 {
        Ok(v)
    } else {
        Err(format!(
            "must be a decimal rate between -1 and 1 (0.065 for 6.5%), got {v}"
        ))
    }
}

/// Parses an expiry close time `HH:MM`.
pub fn parse_close(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("expected HH:MM, got {s:?}"))
}

/// Parses an IANA time zone name such as `Asia/Kolkata`.
pub fn parse_time_zone(s: &str) -> Result<Tz, String> {
    s.parse().map_err(|_| format!("unknown IANA time zone {s:?}"))
}

/// The default market: eight index-like products on one exchange calendar.
pub fn default_products() -> BTreeMap<String, Product> {
    let p = |spot: f64, strike_step: f64, lot_size: u32, strikes: u32, vol_beta: f64| Product {
        spot,
        strike_step,
        lot_size,
        rate: 0.065,
        dividend_yield: 0.012,
        expiry_close: "15:30".into(),
        time_zone: "Asia/Kolkata".into(),
        strikes,
        expiries: default_expiries(),
        vol_beta,
    };
    [
        ("NIFTY", p(21_500.0, 50.0, 50, 41, 1.0)),
        ("BANKNIFTY", p(46_000.0, 100.0, 15, 41, 1.3)),
        ("FINNIFTY", p(20_500.0, 50.0, 40, 31, 1.2)),
        ("MIDCPNIFTY", p(10_500.0, 25.0, 75, 31, 1.4)),
        ("NIFTYNXT50", p(58_000.0, 100.0, 25, 21, 1.15)),
        ("SENSEX", p(71_000.0, 100.0, 10, 31, 0.95)),
        ("BANKEX", p(52_000.0, 100.0, 15, 21, 1.3)),
        ("SX40", p(8_600.0, 10.0, 100, 21, 1.1)),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nifty() -> Product {
        default_products().remove("NIFTY").unwrap()
    }

    #[test]
    fn terms_are_parsed_from_the_parameters() {
        let spec = ProductSpec::new("NIFTY", nifty()).unwrap();
        assert_eq!(spec.terms.expiry_close, NaiveTime::from_hms_opt(15, 30, 0).unwrap());
        assert_eq!(spec.terms.time_zone, chrono_tz::Asia::Kolkata);
        assert_eq!((spec.terms.rate, spec.terms.dividend_yield), (0.065, 0.012));
    }

    #[test]
    fn errors_name_the_field() {
        let mut p = nifty();
        p.time_zone = "Asia/Kolkta".into();
        let e = ProductSpec::new("NIFTY", p).unwrap_err();
        assert!(e.starts_with("products.NIFTY.time_zone:"), "{e}");

        let mut p = nifty();
        p.expiry_close = "25:99".into();
        assert!(ProductSpec::new("NIFTY", p)
            .unwrap_err()
            .starts_with("products.NIFTY.expiry_close:"));

        let mut p = nifty();
        p.strike_step = 0.0;
        assert!(ProductSpec::new("NIFTY", p)
            .unwrap_err()
            .starts_with("products.NIFTY.strike_step:"));

        let mut p = nifty();
        p.rate = 6.5;
        assert!(ProductSpec::new("NIFTY", p)
            .unwrap_err()
            .starts_with("products.NIFTY.rate:"));
    }
}
