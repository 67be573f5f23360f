//! Which price an option's analytics use.

use chainflow_contract::{PriceSource, Quote};

/// The chosen price and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceChoice {
    /// The price, when there is one.
    pub price: Option<f64>,
    /// MID, LAST or NONE.
    pub source: PriceSource,
}

/// mid = (bid + ask)/2 when 0 < bid ≤ ask; else last when last > 0; else none.
/// Non-finite values never qualify, so a NaN quote yields NONE instead of a NaN price.
pub fn select_price(q: &Quote) -> PriceChoice {
    let finite = |v: f64| v.is_finite();
    if finite(q.bid) && finite(q.ask) && q.bid > 0.0 && q.bid <= q.ask {
        PriceChoice {
            price: Some(f64::midpoint(q.bid, q.ask)),
            source: PriceSource::Mid,
        }
    } else if finite(q.last) && q.last > 0.0 {
        PriceChoice {
            price: Some(q.last),
            source: PriceSource::Last,
        }
    } else {
        PriceChoice {
            price: None,
            source: PriceSource::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(bid: f64, ask: f64, last: f64) -> Quote {
        Quote {
            bid,
            ask,
            last,
            volume: 0,
            oi: 0,
            oi_change: 0,
            iv: None,
        }
    }

    #[test]
    fn mid_then_last_then_none() {
        assert_eq!(
            select_price(&quote(10.0, 11.0, 9.0)),
            PriceChoice {
                price: Some(10.5),
                source: PriceSource::Mid
            }
        );
        assert_eq!(select_price(&quote(10.0, 10.0, 0.0)).source, PriceSource::Mid);
        // crossed, zero bid, or NaN quotes fall back to last
        assert_eq!(
            select_price(&quote(11.0, 10.0, 9.0)),
            PriceChoice {
                price: Some(9.0),
                source: PriceSource::Last
            }
        );
        assert_eq!(select_price(&quote(0.0, 10.0, 9.0)).source, PriceSource::Last);
        assert_eq!(select_price(&quote(f64::NAN, 10.0, 9.0)).source, PriceSource::Last);
        assert_eq!(
            select_price(&quote(0.0, 0.0, 0.0)),
            PriceChoice {
                price: None,
                source: PriceSource::None
            }
        );
        assert_eq!(select_price(&quote(-1.0, 2.0, -3.0)).source, PriceSource::None);
    }
}
