-- Enriched option chains: one row per chain (chain_snapshots) and one row per option
-- (chain_options). Natural keys are the ORDER BY; ReplacingMergeTree(version) keeps the
-- newest processing of a chain, so replays and redeliveries never double-count
-- (query with FINAL, or argMax by version).
-- Runs on ClickHouse 18.16 and current releases: time is Int64 µs with a derived DateTime.

CREATE TABLE IF NOT EXISTS {database}.chain_snapshots
(
    product String,
    expiry Date,
    event_time_us Int64,
    event_time DateTime MATERIALIZED toDateTime(intDiv(event_time_us, 1000000)),
    seq Int64,
    lot_size Int32,
    spot Float64,
    strike_count UInt16,
    pcr_oi Nullable(Float64),
    pcr_volume Nullable(Float64),
    atm_strike Float64,
    atm_straddle_price Nullable(Float64),
    max_pain_strike Nullable(Float64),
    total_call_oi Int64,
    total_put_oi Int64,
    call_oi_otm Int64,
    put_oi_otm Int64,
    call_buildup_otm Int64,
    put_buildup_otm Int64,
    atm_iv Nullable(Float64),
    iv_skew_25d Nullable(Float64),
    rate Float64,
    dividend_yield Float64,
    time_to_expiry Float64,
    analytics_version String,
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    processed_at_us Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (product, expiry, event_time_us);

CREATE TABLE IF NOT EXISTS {database}.chain_options
(
    product String,
    expiry Date,
    event_time_us Int64,
    event_time DateTime MATERIALIZED toDateTime(intDiv(event_time_us, 1000000)),
    strike Float64,
    option_type Enum8('CALL' = 1, 'PUT' = 2),
    symbol String,
    spot Float64,
    bid Float64,
    ask Float64,
    last Float64,
    volume Int64,
    oi Int64,
    oi_change Int64,
    feed_iv Nullable(Float64),
    price Nullable(Float64),
    price_source Enum8('MID' = 1, 'LAST' = 2, 'NONE' = 3),
    iv Nullable(Float64),
    delta Nullable(Float64),
    gamma Nullable(Float64),
    theta Nullable(Float64),
    vega Nullable(Float64),
    rho Nullable(Float64),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (product, expiry, event_time_us, strike, option_type);
