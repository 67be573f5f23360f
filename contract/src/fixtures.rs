//! Records for tests and the fault suite (feature `fixtures`): one raw chain whose values
//! every suite can reason about, so that the integration tests and chaos send the same
//! thing.

use crate::{OptionChain, Quote, StrikeQuotes};

/// 2025-01-23 09:15 IST (03:45 UTC), a week before the 2025-01-30 expiry: when
/// [`chain`]'s second 0 is.
pub const CHAIN_EVENT_US: i64 = 1_737_603_900_000_000;
/// The 2025-01-30 expiry (days since 1970-01-01) of [`chain`].
pub const CHAIN_EXPIRY: i32 = 20118;

/// A raw chain of `product` with `strikes` strikes around a spot of 21,500 (50 points
/// apart, closer for long chains, so every strike stays positive), `seq` seconds after
/// [`CHAIN_EVENT_US`]. Every option is quoted a point wide around a mid of at least 5.
pub fn chain(product: &str, seq: i64, strikes: usize) -> OptionChain {
    let quote = |mid: f64| Quote {
        bid: mid - 0.5,
        ask: mid + 0.5,
        last: mid,
        volume: 100,
        oi: 1_000,
        oi_change: 10,
        iv: None,
    };
    let step = (20_000.0 / strikes.max(1) as f64).min(50.0);
    OptionChain {
        product: product.into(),
        expiry: CHAIN_EXPIRY,
        lot_size: 50,
        spot: 21_500.0,
        event_time: CHAIN_EVENT_US + seq * 1_000_000,
        seq,
        strikes: (0..strikes)
            .map(|i| {
                let k = 21_500.0 + step * (i as f64 - (strikes / 2) as f64);
                StrikeQuotes {
                    strike: k,
                    call: quote((21_600.0 - k).max(5.0)),
                    put: quote((k - 21_400.0).max(5.0)),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_sorted_positive_and_centred_on_the_spot() {
        let c = chain("NIFTY", 3, 21);
        assert_eq!(c.event_time, CHAIN_EVENT_US + 3_000_000);
        let strikes: Vec<f64> = c.strikes.iter().map(|s| s.strike).collect();
        assert_eq!((strikes[0], strikes[10], strikes[20]), (21_000.0, 21_500.0, 22_000.0));
        let long = chain("NIFTY", 0, 1_000);
        assert!(long.strikes.windows(2).all(|w| w[0].strike < w[1].strike));
        assert!(long.strikes[0].strike > 0.0);
    }
}
