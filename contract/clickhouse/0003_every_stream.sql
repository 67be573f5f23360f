-- Every stream stored: underlying ticks, option quotes and dead letters, as the feed and
-- the stages publish them, and the sink's bookkeeping of its batches.
-- Natural keys are the ORDER BY; ReplacingMergeTree(version) keeps one row per key, so
-- redelivered records never double-count (query with FINAL, or argMax by version). For
-- the raw streams the version is the record's Kafka timestamp (ms): a record sent again
-- (a replay to the topic, a redrive) replaces the older copy.
-- Runs on ClickHouse 18.16 and current releases: time is Int64 µs with a derived DateTime.

CREATE TABLE IF NOT EXISTS {database}.underlying_ticks
(
    product String,
    event_time_us Int64,
    event_time DateTime MATERIALIZED toDateTime(intDiv(event_time_us, 1000000)),
    seq Int64,
    price Float64,
    volume Int64,
    source_partition Int32,
    source_offset Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (product, event_time_us, seq);

CREATE TABLE IF NOT EXISTS {database}.option_quotes
(
    product String,
    expiry Date,
    strike Float64,
    option_type Enum8('CALL' = 1, 'PUT' = 2),
    event_time_us Int64,
    event_time DateTime MATERIALIZED toDateTime(intDiv(event_time_us, 1000000)),
    seq Int64,
    symbol String,
    bid Float64,
    ask Float64,
    last Float64,
    volume Int64,
    oi Int64,
    oi_change Int64,
    iv Nullable(Float64),
    source_partition Int32,
    source_offset Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (product, expiry, strike, option_type, event_time_us, seq);

-- One row per record of a dlq.* topic: where it came from, why, and its original bytes.
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    error_kind String,
    error_message String,
    stage String,
    error_time_us Int64,
    error_time DateTime MATERIALIZED toDateTime(intDiv(error_time_us, 1000000)),
    key Nullable(String),
    value Nullable(String),
    header_names Array(String),
    header_values Array(String),
    chainflow_id String MATERIALIZED header_values[indexOf(header_names, 'chainflow.id')],
    traceparent String MATERIALIZED header_values[indexOf(header_names, 'traceparent')],
    dlq_topic String,
    dlq_partition Int32,
    dlq_offset Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(error_time)
ORDER BY (dlq_topic, dlq_partition, dlq_offset);

-- The sink's batches, recorded before each insert: after a crash the uncommitted ranges are
-- read again as the same batches, so a retried insert carries the same deduplication token.
CREATE TABLE IF NOT EXISTS {database}.sink_batches
(
    group_id String,
    topic String,
    partition Int32,
    first_offset Int64,
    last_offset Int64,
    records UInt32,
    token String,
    recorded_at_us UInt64,
    recorded_at DateTime MATERIALIZED toDateTime(intDiv(recorded_at_us, 1000000))
)
ENGINE = ReplacingMergeTree(recorded_at_us)
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (group_id, topic, partition, first_offset);
