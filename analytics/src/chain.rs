//! One raw chain in, its enriched form out: validation, analytics and provenance.

use crate::{analyze, validate, ChainParams, InvalidChain, ANALYTICS_VERSION};
use chainflow_contract::ProductTerms;
use chainflow_contract::{EnrichedOptionChain, OptionChain};
use std::collections::BTreeMap;

/// Where a raw chain was read from (recorded on the enriched chain).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Topic, or the file `chainflow analyze` read.
    pub topic: &'a str,
    /// Partition (-1 outside Kafka).
    pub partition: i32,
    /// Offset (-1 outside Kafka).
    pub offset: i64,
}

/// Turns one raw chain into its enriched form, with the terms of its product from
/// `products`. The same input always gives the same key, id and analytics; only
/// `processed_at` records when it happened.
pub fn enrich_chain(
    chain: &OptionChain,
    products: &BTreeMap<String, ProductTerms>,
    source: Source<'_>,
    processed_at: i64,
) -> Result<EnrichedOptionChain, InvalidChain> {
    let terms = validate(chain, products)?;
    let params = ChainParams::for_chain(terms, chain);
    let analytics = analyze(chain, &params);
    let m = analytics.metrics;
    Ok(
        chainflow_contract::chain_metrics!(chainflow_contract::literal_with_fields [
            EnrichedOptionChain,
            m,
            {
                product: chain.product.clone(),
                expiry: chain.expiry,
                lot_size: chain.lot_size,
                spot: chain.spot,
                event_time: chain.event_time,
                seq: chain.seq,
                strikes: analytics.strikes,
                rate: params.rate,
                dividend_yield: params.dividend_yield,
                time_to_expiry: params.time_to_expiry,
                analytics_version: ANALYTICS_VERSION.into(),
                source_topic: source.topic.into(),
                source_partition: source.partition,
                source_offset: source.offset,
                processed_at,
            }
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bsm;
    use chainflow_contract::{OptionType, PriceSource, Quote, StrikeQuotes};

    /// 2025-01-23 09:15 IST, a week before the 2025-01-30 expiry.
    const EVENT_US: i64 = 1_737_603_900_000_000;
    const EXPIRY: i32 = 20118;

    fn terms() -> BTreeMap<String, ProductTerms> {
        let nifty = ProductTerms {
            rate: 0.065,
            dividend_yield: 0.012,
            expiry_close: chrono::NaiveTime::from_hms_opt(15, 30, 0).unwrap(),
            time_zone: chrono_tz::Asia::Kolkata,
        };
        BTreeMap::from([("NIFTY".to_string(), nifty)])
    }

    /// Nine strikes priced at 14% volatility, with spreads and OI that differ by strike.
    fn chain() -> OptionChain {
        let spot = 21_543.25;
        let t = terms()["NIFTY"].time_to_expiry(EXPIRY, EVENT_US);
        let quote = |kind, k: f64, oi: i64| {
            let p = bsm::price(kind, spot, k, t, 0.065, 0.012, 0.14);
            Quote {
                bid: p - 0.5,
                ask: p + 0.5,
                last: p,
                volume: oi / 10,
                oi,
                oi_change: oi / 100,
                iv: Some(0.14),
            }
        };
        OptionChain {
            product: "NIFTY".into(),
            expiry: EXPIRY,
            lot_size: 50,
            spot,
            event_time: EVENT_US,
            seq: 17,
            strikes: (0..9)
                .map(|i| {
                    let k = 21_300.0 + 50.0 * f64::from(i);
                    StrikeQuotes {
                        strike: k,
                        call: quote(OptionType::Call, k, 1_000 * i64::from(i + 1)),
                        put: quote(OptionType::Put, k, 1_000 * i64::from(9 - i)),
                    }
                })
                .collect(),
        }
    }

    const SOURCE: Source<'static> = Source {
        topic: "market.option_chain",
        partition: 4,
        offset: 1234,
    };

    #[test]
    fn carries_every_input_field_and_its_provenance() {
        let c = chain();
        let e = enrich_chain(&c, &terms(), SOURCE, 99).unwrap();
        assert_eq!(
            (e.product.as_str(), e.expiry, e.lot_size, e.spot, e.event_time, e.seq),
            ("NIFTY", c.expiry, c.lot_size, c.spot, c.event_time, c.seq)
        );
        assert_eq!(e.strikes.len(), c.strikes.len());
        for (enriched, raw) in e.strikes.iter().zip(&c.strikes) {
            assert_eq!(enriched.strike, raw.strike);
            for (o, q) in [(&enriched.call, &raw.call), (&enriched.put, &raw.put)] {
                assert_eq!(
                    (o.bid, o.ask, o.last, o.volume, o.oi, o.oi_change),
                    (q.bid, q.ask, q.last, q.volume, q.oi, q.oi_change)
                );
                assert_eq!(o.feed_iv, q.iv);
                assert_eq!(o.price_source, PriceSource::Mid);
                let iv = o.iv.expect("every option here has an IV");
                assert!((iv - 0.14).abs() < 1e-9, "{}: {iv}", raw.strike);
            }
        }
        assert_eq!((e.rate, e.dividend_yield), (0.065, 0.012));
        assert_eq!(e.time_to_expiry, terms()["NIFTY"].time_to_expiry(EXPIRY, EVENT_US));
        assert!((e.time_to_expiry - (7.0 + 6.25 / 24.0) / 365.0).abs() < 1e-12);
        assert_eq!(e.analytics_version, ANALYTICS_VERSION);
        assert_eq!(
            (
                e.source_topic.as_str(),
                e.source_partition,
                e.source_offset,
                e.processed_at
            ),
            ("market.option_chain", 4, 1234, 99)
        );
        assert_eq!(e.id(), "NIFTY|2025-01-30|1737603900000000");
    }

    #[test]
    fn its_metrics_are_the_chains_metrics() {
        let c = chain();
        let e = enrich_chain(&c, &terms(), SOURCE, 0).unwrap();
        let m = analyze(&c, &ChainParams::for_chain(&terms()["NIFTY"], &c)).metrics;
        assert_eq!((e.total_call_oi, e.total_put_oi), (45_000, 45_000));
        assert_eq!(e.pcr_oi, Some(1.0));
        assert_eq!(e.atm_strike, 21_550.0);
        assert_eq!(
            (
                e.pcr_volume,
                e.atm_straddle_price,
                e.max_pain_strike,
                e.atm_iv,
                e.iv_skew_25d
            ),
            (
                m.pcr_volume,
                m.atm_straddle_price,
                m.max_pain_strike,
                m.atm_iv,
                m.iv_skew_25d
            )
        );
        assert_eq!(
            (e.call_oi_otm, e.put_oi_otm, e.call_buildup_otm, e.put_buildup_otm),
            (m.call_oi_otm, m.put_oi_otm, m.call_buildup_otm, m.put_buildup_otm)
        );
    }

    #[test]
    fn the_same_input_gives_the_same_output_but_for_the_processing_time() {
        let c = chain();
        let first = enrich_chain(&c, &terms(), SOURCE, 1).unwrap();
        let again = enrich_chain(&c, &terms(), SOURCE, 2).unwrap();
        assert_ne!(first, again);
        assert_eq!(
            EnrichedOptionChain {
                processed_at: 2,
                ..first
            },
            again
        );
    }

    #[test]
    fn an_invalid_chain_is_refused_with_its_reason() {
        let mut c = chain();
        c.product = "NOPE".into();
        let e = enrich_chain(&c, &terms(), SOURCE, 0).unwrap_err();
        assert_eq!(e, InvalidChain::UnknownProduct("NOPE".into()));
        let mut c = chain();
        c.strikes.swap(0, 1);
        assert_eq!(
            enrich_chain(&c, &terms(), SOURCE, 0).unwrap_err().kind(),
            "unsorted_strikes"
        );
    }
}
