//! The rows of chainflow's tables, one type per table, used both to write (the sink) and
//! to read (the live view, the tools, the tests): field order is the table's column list
//! for an insert and for `SELECT ?fields`. The Enum8 and Date encodings are here too, both
//! ways. Building rows from records is the sink's; records from rows, the readers'.

use chainflow_contract::{OptionType, PriceSource};
use serde::{Deserialize, Serialize};

chainflow_contract::chain_metrics!(chainflow_contract::struct_with_fields [
    /// A row of `chain_snapshots`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
    pub struct SnapshotRow {
        /// Product name, e.g. `NIFTY`.
        pub product: String,
        /// Days since 1970-01-01 (ClickHouse `Date`).
        pub expiry: u16,
        /// Event time, µs since the Unix epoch (UTC); a DateTime `event_time` is derived from it.
        pub event_time_us: i64,
        /// Sequence number of the raw snapshot.
        pub seq: i64,
        /// Contract multiplier.
        pub lot_size: i32,
        /// Underlying price at `event_time`.
        pub spot: f64,
        /// Number of strikes in the snapshot.
        pub strike_count: u16,
        // then the metrics of chainflow_contract::chain_metrics!
    } {
        /// Risk-free rate used.
        pub rate: f64,
        /// Dividend yield used.
        pub dividend_yield: f64,
        /// Time to expiry in years (365-day).
        pub time_to_expiry: f64,
        /// Version of the analytics code that produced this record.
        pub analytics_version: String,
        /// Topic of the raw snapshot.
        pub source_topic: String,
        /// Partition of the raw snapshot.
        pub source_partition: i32,
        /// Offset of the raw snapshot.
        pub source_offset: i64,
        /// When the processor produced the record, µs since the epoch.
        pub processed_at_us: i64,
        /// ReplacingMergeTree version: the processing time, so a chain processed again replaces the older row.
        pub version: u64,
    }
]);

chainflow_contract::option_quote!(chainflow_contract::then [chainflow_contract::option_analytics, chainflow_contract::struct_with_two_lists [
    /// A row of `chain_options`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
    pub struct OptionRow {
        /// Product name, e.g. `NIFTY`.
        pub product: String,
        /// Expiry date, days since 1970-01-01.
        pub expiry: u16,
        /// Event time, µs since the Unix epoch (UTC); a DateTime `event_time` is derived from it.
        pub event_time_us: i64,
        /// Strike price.
        pub strike: f64,
        /// Enum8: CALL = 1, PUT = 2.
        pub option_type: i8,
        /// Option symbol, e.g. `NIFTY20250130C21500`.
        pub symbol: String,
        /// Underlying price at `event_time`.
        pub spot: f64,
        // then the quote of chainflow_contract::option_quote!
    } {
        /// Implied volatility published by the feed.
        pub feed_iv: Option<f64>,
        /// Price the analytics used.
        pub price: Option<f64>,
        /// Enum8: MID = 1, LAST = 2, NONE = 3.
        pub price_source: i8,
        // then the analytics of chainflow_contract::option_analytics!
    } {
        /// ReplacingMergeTree version: the processing time, so a chain processed again replaces the older row.
        pub version: u64,
    }
]]);

/// A row of `underlying_ticks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct TickRow {
    /// Product name.
    pub product: String,
    /// Event time, µs since the Unix epoch (UTC).
    pub event_time_us: i64,
    /// Sequence number, strictly increasing per product.
    pub seq: i64,
    /// Last traded price.
    pub price: f64,
    /// Cumulative day volume.
    pub volume: i64,
    /// Partition of the Kafka record.
    pub source_partition: i32,
    /// Offset of the Kafka record.
    pub source_offset: i64,
    /// ReplacingMergeTree version: the Kafka record's timestamp, ms.
    pub version: u64,
}

chainflow_contract::option_quote!(chainflow_contract::struct_with_fields [
    /// A row of `option_quotes`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
    pub struct QuoteRow {
        /// Product name.
        pub product: String,
        /// Days since 1970-01-01 (ClickHouse `Date`).
        pub expiry: u16,
        /// Strike price.
        pub strike: f64,
        /// Enum8: CALL = 1, PUT = 2.
        pub option_type: i8,
        /// Event time, µs since the Unix epoch (UTC).
        pub event_time_us: i64,
        /// Sequence number, strictly increasing per symbol.
        pub seq: i64,
        /// Option symbol, e.g. `NIFTY20250130C21500`.
        pub symbol: String,
        // then the quote of chainflow_contract::option_quote!
    } {
        /// Implied volatility published by the feed.
        pub iv: Option<f64>,
        /// Partition of the Kafka record.
        pub source_partition: i32,
        /// Offset of the Kafka record.
        pub source_offset: i64,
        /// ReplacingMergeTree version: the Kafka record's timestamp, ms.
        pub version: u64,
    }
]);

/// A row of `dead_letters`: one record of a `dlq.*` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct DeadLetterRow {
    /// The topic the record was read from before it was dead-lettered.
    pub source_topic: String,
    /// Its partition there.
    pub source_partition: i32,
    /// Its offset there.
    pub source_offset: i64,
    /// Machine-readable reason (`undecodable`, `unknown_product`, `clickhouse_refused`, ...).
    pub error_kind: String,
    /// Human-readable reason.
    pub error_message: String,
    /// The stage that dead-lettered it.
    pub stage: String,
    /// When it was dead-lettered, µs since the epoch.
    pub error_time_us: i64,
    /// The original key.
    pub key: Option<Bytes>,
    /// The original bytes (ClickHouse Strings hold any bytes).
    pub value: Option<Bytes>,
    /// Names of the original headers and the dead-letter headers, in order.
    pub header_names: Vec<String>,
    /// Their values (lossy UTF-8).
    pub header_values: Vec<String>,
    /// The dead-letter topic.
    pub dlq_topic: String,
    /// Its partition.
    pub dlq_partition: i32,
    /// Its offset: with the topic and partition, the natural key.
    pub dlq_offset: i64,
    /// ReplacingMergeTree version: the dead-letter record's Kafka timestamp, ms.
    pub version: u64,
}

/// Enum8 code of an option type.
pub fn option_type_code(t: OptionType) -> i8 {
    match t {
        OptionType::Call => 1,
        OptionType::Put => 2,
    }
}

/// Enum8 code of a price source.
pub fn price_source_code(s: PriceSource) -> i8 {
    match s {
        PriceSource::Mid => 1,
        PriceSource::Last => 2,
        PriceSource::None => 3,
    }
}

/// The option type of an Enum8 code; `None` for a code the table does not define.
pub fn option_type_of(code: i8) -> Option<OptionType> {
    match code {
        1 => Some(OptionType::Call),
        2 => Some(OptionType::Put),
        _ => None,
    }
}

/// The price source of an Enum8 code (`NONE` for a code the table does not define).
pub fn price_source_of(code: i8) -> PriceSource {
    match code {
        1 => PriceSource::Mid,
        2 => PriceSource::Last,
        _ => PriceSource::None,
    }
}

/// ClickHouse `Date` (days since the epoch) of an Avro date, clamped to its range.
pub fn date(days: i32) -> u16 {
    days.clamp(0, i32::from(u16::MAX)) as u16
}

/// Bytes written as a ClickHouse `String`, which holds any bytes (RowBinary writes
/// `serialize_bytes` as a String; a `Vec<u8>` would be an `Array(UInt8)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a ClickHouse String")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Bytes(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}
