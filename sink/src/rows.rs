//! Records to rows (`chainflow_clickhouse::rows`), without I/O: an enriched chain gives one
//! `chain_snapshots` row and one `chain_options` row per option, a tick one
//! `underlying_ticks` row, a quote one `option_quotes` row, a dead letter one `dead_letters`
//! row.

use chainflow_clickhouse::rows::{
    date, option_type_code, price_source_code, Bytes, DeadLetterRow, OptionRow, QuoteRow, SnapshotRow, TickRow,
};
use chainflow_contract::keys::option_symbol;
use chainflow_contract::topics;
use chainflow_contract::{EnrichedOption, EnrichedOptionChain, OptionQuote, OptionType, UnderlyingTick};
use rdkafka::message::{Headers, Message};

/// The snapshot row of `c`. The version is the processing time: a chain processed again
/// replaces the earlier row.
pub fn snapshot_row(c: &EnrichedOptionChain) -> SnapshotRow {
    chainflow_contract::chain_metrics!(chainflow_contract::literal_with_fields [
        SnapshotRow,
        c,
        {
            product: c.product.clone(),
            expiry: date(c.expiry),
            event_time_us: c.event_time,
            seq: c.seq,
            lot_size: c.lot_size,
            spot: c.spot,
            strike_count: c.strikes.len().min(u16::MAX as usize) as u16,
            rate: c.rate,
            dividend_yield: c.dividend_yield,
            time_to_expiry: c.time_to_expiry,
            analytics_version: c.analytics_version.clone(),
            source_topic: c.source_topic.clone(),
            source_partition: c.source_partition,
            source_offset: c.source_offset,
            processed_at_us: c.processed_at,
            version: c.processed_at.max(0) as u64,
        }
    ])
}

/// Appends the option rows of `c` (calls and puts, by strike) to `out`.
pub fn option_rows(c: &EnrichedOptionChain, out: &mut Vec<OptionRow>) {
    let version = c.processed_at.max(0) as u64;
    for s in &c.strikes {
        for (kind, o) in [(OptionType::Call, &s.call), (OptionType::Put, &s.put)] {
            out.push(option_row(c, s.strike, kind, o, version));
        }
    }
}

fn option_row(c: &EnrichedOptionChain, strike: f64, kind: OptionType, o: &EnrichedOption, version: u64) -> OptionRow {
    chainflow_contract::option_quote!(chainflow_contract::then [chainflow_contract::option_analytics, chainflow_contract::literal_with_two_lists [
        OptionRow,
        o,
        o,
        {
            product: c.product.clone(),
            expiry: date(c.expiry),
            event_time_us: c.event_time,
            strike,
            option_type: option_type_code(kind),
            symbol: option_symbol(&c.product, c.expiry, strike, kind),
            spot: c.spot,
            feed_iv: o.feed_iv,
            price: o.price,
            price_source: price_source_code(o.price_source),
            version,
        }
    ]])
}

/// Where a record was read: its partition, offset and Kafka timestamp (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record's Kafka timestamp, ms (0 when it has none).
    pub timestamp_ms: i64,
}

impl Origin {
    /// Where `msg` was read.
    pub fn of<M: Message>(msg: &M) -> Self {
        Self {
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis().unwrap_or(0),
        }
    }

    fn version(self) -> u64 {
        self.timestamp_ms.max(0) as u64
    }
}

/// The `underlying_ticks` row of `t`.
pub fn tick_row(t: &UnderlyingTick, origin: Origin) -> TickRow {
    TickRow {
        product: t.product.clone(),
        event_time_us: t.event_time,
        seq: t.seq,
        price: t.price,
        volume: t.volume,
        source_partition: origin.partition,
        source_offset: origin.offset,
        version: origin.version(),
    }
}

/// The `option_quotes` row of `q`.
pub fn quote_row(q: &OptionQuote, origin: Origin) -> QuoteRow {
    chainflow_contract::option_quote!(chainflow_contract::literal_with_fields [
        QuoteRow,
        q,
        {
            product: q.product.clone(),
            expiry: date(q.expiry),
            strike: q.strike,
            option_type: option_type_code(q.option_type),
            event_time_us: q.event_time,
            seq: q.seq,
            symbol: q.symbol.clone(),
            iv: q.iv,
            source_partition: origin.partition,
            source_offset: origin.offset,
            version: origin.version(),
        }
    ])
}

/// The `dead_letters` row of `msg`, a record of a `dlq.*` topic: the reason and the source
/// come from its headers (a header that is missing or unreadable leaves its column empty).
pub fn dead_letter_row<M: Message>(msg: &M) -> DeadLetterRow {
    let mut names = Vec::new();
    let mut values = Vec::new();
    if let Some(headers) = msg.headers() {
        for h in headers.iter() {
            names.push(h.key.to_string());
            values.push(String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned());
        }
    }
    let header = |name: &str| {
        names
            .iter()
            .rposition(|n| n == name)
            .map(|i| values[i].clone())
            .unwrap_or_default()
    };
    let error_time_us =
        chrono::DateTime::parse_from_rfc3339(&header(topics::HEADER_ERROR_TIME)).map_or(0, |t| t.timestamp_micros());
    let origin = Origin::of(msg);
    DeadLetterRow {
        source_topic: header(topics::HEADER_SOURCE_TOPIC),
        source_partition: header(topics::HEADER_SOURCE_PARTITION).parse().unwrap_or(-1),
        source_offset: header(topics::HEADER_SOURCE_OFFSET).parse().unwrap_or(-1),
        error_kind: header(topics::HEADER_ERROR_KIND),
        error_message: header(topics::HEADER_ERROR_MESSAGE),
        stage: header(topics::HEADER_ERROR_STAGE),
        error_time_us,
        key: msg.key().map(|k| Bytes(k.to_vec())),
        value: msg.payload().map(|v| Bytes(v.to_vec())),
        header_names: names,
        header_values: values,
        dlq_topic: msg.topic().to_string(),
        dlq_partition: origin.partition,
        dlq_offset: origin.offset,
        version: origin.version(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    #[test]
    fn a_dead_letter_row_keeps_the_original_headers_and_reads_the_reason() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "chainflow.id",
                value: Some("NIFTY|2025-01-30|1"),
            })
            .insert(Header {
                key: "traceparent",
                value: Some("00-abc-def-01"),
            })
            .insert(Header {
                key: topics::HEADER_ERROR_KIND,
                value: Some("unknown_product"),
            })
            .insert(Header {
                key: topics::HEADER_ERROR_MESSAGE,
                value: Some("unknown product \"X\""),
            })
            .insert(Header {
                key: topics::HEADER_ERROR_STAGE,
                value: Some("enrich"),
            })
            .insert(Header {
                key: topics::HEADER_SOURCE_TOPIC,
                value: Some("market.option_chain"),
            })
            .insert(Header {
                key: topics::HEADER_SOURCE_PARTITION,
                value: Some("3"),
            })
            .insert(Header {
                key: topics::HEADER_SOURCE_OFFSET,
                value: Some("77"),
            })
            .insert(Header {
                key: topics::HEADER_ERROR_TIME,
                value: Some("2025-01-30T09:15:00.000001Z"),
            });
        let msg = OwnedMessage::new(
            Some(vec![0, 0, 0, 0, 9, 0xff]),
            Some(b"X|2025-01-30".to_vec()),
            "dlq.market.option_chain".into(),
            Timestamp::CreateTime(1_738_228_500_123),
            0,
            12,
            Some(headers),
        );
        let row = dead_letter_row(&msg);
        assert_eq!(
            (row.source_topic.as_str(), row.source_partition, row.source_offset),
            ("market.option_chain", 3, 77)
        );
        assert_eq!(
            (row.error_kind.as_str(), row.stage.as_str()),
            ("unknown_product", "enrich")
        );
        assert_eq!(row.error_message, "unknown product \"X\"");
        assert_eq!(row.error_time_us, 1_738_228_500_000_001);
        assert_eq!(
            row.value,
            Some(Bytes(vec![0, 0, 0, 0, 9, 0xff])),
            "the original bytes, as they were"
        );
        assert_eq!(row.key, Some(Bytes(b"X|2025-01-30".to_vec())));
        assert_eq!(row.header_names[..2], ["chainflow.id", "traceparent"]);
        assert_eq!(row.header_values[1], "00-abc-def-01");
        assert_eq!(
            (row.dlq_partition, row.dlq_offset, row.version),
            (0, 12, 1_738_228_500_123)
        );
    }

    #[test]
    fn a_dead_letter_without_headers_still_has_a_row() {
        let msg = OwnedMessage::new(
            None,
            None,
            "dlq.market.underlying".into(),
            Timestamp::NotAvailable,
            0,
            5,
            None,
        );
        let row = dead_letter_row(&msg);
        assert_eq!(
            (row.source_partition, row.source_offset, row.error_time_us),
            (-1, -1, 0)
        );
        assert_eq!((row.key, row.value, row.version), (None, None, 0));
    }

    #[test]
    fn ticks_and_quotes_carry_their_origin_and_version() {
        let origin = Origin {
            partition: 2,
            offset: 40,
            timestamp_ms: 1_700_000_000_000,
        };
        let tick = UnderlyingTick {
            product: "NIFTY".into(),
            price: 21_543.25,
            volume: 1_000,
            event_time: 1_738_228_500_000_000,
            seq: 9,
        };
        let row = tick_row(&tick, origin);
        assert_eq!(
            (row.seq, row.price, row.source_offset, row.version),
            (9, 21_543.25, 40, 1_700_000_000_000)
        );
        let quote = OptionQuote {
            symbol: "NIFTY20250130P21500".into(),
            product: "NIFTY".into(),
            expiry: 20118,
            strike: 21_500.0,
            option_type: OptionType::Put,
            bid: 1.0,
            ask: 1.5,
            last: 1.2,
            volume: 3,
            oi: 4,
            oi_change: -1,
            iv: None,
            event_time: 5,
            seq: 6,
        };
        let row = quote_row(&quote, origin);
        assert_eq!((row.option_type, row.expiry, row.source_partition), (2, 20118, 2));
    }
}
