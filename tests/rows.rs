//! The row types of `chainflow_clickhouse::rows`, one per table, round-tripped through the
//! local ClickHouse: each row inserted as the sink inserts it and read back with
//! `SELECT ?fields` as the readers read it comes back equal, field for field. A field out
//! of its column's order, or of a type the column does not hold (the `expiry` and
//! `option_type` that once drifted between the sink and the live view), fails here.
//! Needs the local stack (ops/stack.sh up).

mod common;

use chainflow_clickhouse::insert;
use chainflow_clickhouse::rows::{
    option_type_code, option_type_of, price_source_code, price_source_of, Bytes, DeadLetterRow, OptionRow, QuoteRow,
    SnapshotRow, TickRow,
};
use chainflow_contract::{OptionType, PriceSource};
use clickhouse::{Row, RowOwned, RowRead, RowWrite};
use common::{Database, Names};
use serde::Serialize;
use std::fmt::Debug;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Inserts `rows` into `table` and reads the table back, in `order`.
async fn round_trip<T>(db: &Database, table: &str, rows: &[T], order: &str) -> Vec<T>
where
    T: Row + RowWrite + RowRead + RowOwned + Serialize + Sync + Debug + for<'b> Row<Value<'b> = T>,
{
    insert(&db.client, table, rows.iter(), None, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("inserting into {table}: {e}"));
    db.client
        .query(&format!("SELECT ?fields FROM {table} ORDER BY {order}"))
        .fetch_all()
        .await
        .unwrap_or_else(|e| panic!("reading {table}: {e}"))
}

fn snapshot(seq: i64, some: bool) -> SnapshotRow {
    let opt = |v: f64| some.then_some(v);
    SnapshotRow {
        product: "ROWS".into(),
        expiry: 20118,
        event_time_us: 1_737_603_900_000_001 + seq,
        seq,
        lot_size: 75,
        spot: 21_543.25,
        strike_count: 3,
        pcr_oi: opt(0.91),
        pcr_volume: opt(1.07),
        atm_strike: 21_550.0,
        atm_straddle_price: opt(412.5),
        max_pain_strike: opt(21_500.0),
        total_call_oi: 1_000_000,
        total_put_oi: 910_000,
        call_oi_otm: 600_000,
        put_oi_otm: 500_000,
        call_buildup_otm: -1_200,
        put_buildup_otm: 3_400,
        atm_iv: opt(0.1432),
        iv_skew_25d: opt(-0.0123),
        rate: 0.065,
        dividend_yield: 0.012,
        time_to_expiry: 0.0191,
        analytics_version: "rows-test".into(),
        source_topic: "market.option_chain".into(),
        source_partition: 5,
        source_offset: 1 << 40,
        processed_at_us: 1_737_603_900_500_000,
        version: 1_737_603_900_500_000,
    }
}

fn option(strike: f64, kind: OptionType, source: PriceSource) -> OptionRow {
    let some = source != PriceSource::None;
    let opt = |v: f64| some.then_some(v);
    OptionRow {
        product: "ROWS".into(),
        expiry: 20118,
        event_time_us: 1_737_603_900_000_001,
        strike,
        option_type: option_type_code(kind),
        symbol: format!(
            "ROWS20250130{}{strike}",
            if kind == OptionType::Call { 'C' } else { 'P' }
        ),
        spot: 21_543.25,
        bid: 101.5,
        ask: 102.0,
        last: 0.0,
        volume: 7,
        oi: 1_500,
        oi_change: -50,
        feed_iv: None,
        price: opt(101.75),
        price_source: price_source_code(source),
        iv: opt(0.15),
        delta: opt(if kind == OptionType::Call { 0.52 } else { -0.48 }),
        gamma: opt(0.0004),
        theta: opt(-12.5),
        vega: opt(11.2),
        rho: opt(3.1),
        version: 42,
    }
}

#[tokio::test]
async fn every_row_type_reads_back_what_it_wrote_on_the_local_server() {
    let db = Database::create(&Names::new("rows"));

    let snapshots = vec![snapshot(1, true), snapshot(2, false)];
    assert_eq!(round_trip(&db, "chain_snapshots", &snapshots, "seq").await, snapshots);

    let options = vec![
        option(21_500.0, OptionType::Call, PriceSource::Mid),
        option(21_500.0, OptionType::Put, PriceSource::Last),
        option(21_550.5, OptionType::Call, PriceSource::None),
    ];
    let back = round_trip(&db, "chain_options", &options, "strike, option_type").await;
    assert_eq!(back, options);
    let decoded: Vec<(Option<OptionType>, PriceSource)> = back
        .iter()
        .map(|o| (option_type_of(o.option_type), price_source_of(o.price_source)))
        .collect();
    assert_eq!(
        decoded,
        [
            (Some(OptionType::Call), PriceSource::Mid),
            (Some(OptionType::Put), PriceSource::Last),
            (Some(OptionType::Call), PriceSource::None),
        ]
    );

    let ticks = vec![TickRow {
        product: "ROWS".into(),
        event_time_us: 1_737_603_900_000_001,
        seq: 9,
        price: 21_543.25,
        volume: 123_456,
        source_partition: 2,
        source_offset: 40,
        version: 1_700_000_000_000,
    }];
    assert_eq!(round_trip(&db, "underlying_ticks", &ticks, "seq").await, ticks);

    let quotes = vec![QuoteRow {
        product: "ROWS".into(),
        expiry: 20118,
        strike: 21_500.0,
        option_type: option_type_code(OptionType::Put),
        event_time_us: 1_737_603_900_000_001,
        seq: 6,
        symbol: "ROWS20250130P21500".into(),
        bid: 1.0,
        ask: 1.5,
        last: 1.2,
        volume: 3,
        oi: 4,
        oi_change: -1,
        iv: Some(0.2),
        source_partition: 1,
        source_offset: 77,
        version: 5,
    }];
    assert_eq!(round_trip(&db, "option_quotes", &quotes, "seq").await, quotes);

    let letters = vec![DeadLetterRow {
        source_topic: "market.option_chain".into(),
        source_partition: 3,
        source_offset: 77,
        error_kind: "undecodable".into(),
        error_message: "not Avro: \"ünïcode\" kept".into(),
        stage: "enrich".into(),
        error_time_us: 1_738_228_500_000_001,
        key: Some(Bytes(b"X|2025-01-30".to_vec())),
        // not UTF-8: a String column holds any bytes, and gives them back as they were
        value: Some(Bytes(vec![0, 0, 0, 0, 9, 0xff, 0xfe])),
        header_names: vec!["traceparent".into(), "chainflow.error.kind".into()],
        header_values: vec!["00-abc-def-01".into(), "undecodable".into()],
        dlq_topic: "dlq.market.option_chain".into(),
        dlq_partition: 0,
        dlq_offset: 12,
        version: 1_738_228_500_123,
    }];
    assert_eq!(round_trip(&db, "dead_letters", &letters, "dlq_offset").await, letters);
}
