//! Channel names, as clients write them: `chain:<PRODUCT>:<EXPIRY>` (one option chain),
//! `metrics:<PRODUCT>` (PCR, max pain, ATM IV and skew per expiry) and
//! `underlying:<PRODUCT>` (the latest tick with its current candles).

use chrono::NaiveDate;
use std::fmt;
use std::str::FromStr;

/// Longest product name a channel may carry.
const MAX_PRODUCT: usize = 64;

/// One channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// The latest enriched chain of a product and expiry.
    Chain {
        /// The product (`NIFTY`).
        product: String,
        /// The expiry date.
        expiry: NaiveDate,
    },
    /// The chain metrics of every expiry of a product.
    Metrics {
        /// The product.
        product: String,
    },
    /// The latest tick of an underlying and its current 1-, 5- and 15-minute candles.
    Underlying {
        /// The product.
        product: String,
    },
}

impl Channel {
    /// The product the channel is about.
    pub fn product(&self) -> &str {
        match self {
            Channel::Chain { product, .. } | Channel::Metrics { product } | Channel::Underlying { product } => product,
        }
    }
}

/// A product name a channel may carry: letters, digits, `_`, `-` and `.`, 1 to 64 of them.
pub fn valid_product(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_PRODUCT
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let product = |p: &str| -> Result<String, String> {
            if valid_product(p) {
                Ok(p.to_string())
            } else {
                Err(format!(
                    "{s:?}: a product is 1 to {MAX_PRODUCT} letters, digits, '_', '-' or '.'"
                ))
            }
        };
        let mut parts = s.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("chain"), Some(p), Some(e)) => {
                let expiry = NaiveDate::parse_from_str(e, "%Y-%m-%d")
                    .map_err(|_| format!("{s:?}: the expiry is a date, YYYY-MM-DD"))?;
                Ok(Channel::Chain {
                    product: product(p)?,
                    expiry,
                })
            }
            (Some("metrics"), Some(p), None) => Ok(Channel::Metrics { product: product(p)? }),
            (Some("underlying"), Some(p), None) => Ok(Channel::Underlying { product: product(p)? }),
            _ => Err(format!(
                "{s:?}: expected chain:<PRODUCT>:<YYYY-MM-DD>, metrics:<PRODUCT> or underlying:<PRODUCT>"
            )),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Chain { product, expiry } => write!(f, "chain:{product}:{}", expiry.format("%Y-%m-%d")),
            Channel::Metrics { product } => write!(f, "metrics:{product}"),
            Channel::Underlying { product } => write!(f, "underlying:{product}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for name in ["chain:NIFTY:2026-12-31", "metrics:BANKNIFTY", "underlying:SPX.W"] {
            let c: Channel = name.parse().unwrap();
            assert_eq!(c.to_string(), name);
        }
        assert_eq!(
            "chain:NIFTY:2026-12-31".parse::<Channel>().unwrap(),
            Channel::Chain {
                product: "NIFTY".into(),
                expiry: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
            }
        );
    }

    #[test]
    fn bad_names_say_what_is_expected() {
        for (name, says) in [
            ("chain:NIFTY", "expected chain:<PRODUCT>:<YYYY-MM-DD>"),
            ("chain:NIFTY:2026-13-01", "the expiry is a date"),
            ("chain:NIFTY:31/12/2026", "the expiry is a date"),
            ("metrics:", "a product is 1 to 64"),
            ("metrics:NIFTY:2026-12-31", "expected chain"),
            ("underlying:NI FTY", "a product is"),
            ("underlying:<script>", "a product is"),
            ("ticks:NIFTY", "expected chain"),
            ("", "expected chain"),
        ] {
            let e = name.parse::<Channel>().unwrap_err();
            assert!(e.contains(says), "{name}: {e}");
        }
        assert!("metrics:".to_string().parse::<Channel>().is_err());
        let long = format!("metrics:{}", "A".repeat(65));
        assert!(long.parse::<Channel>().is_err());
    }
}
