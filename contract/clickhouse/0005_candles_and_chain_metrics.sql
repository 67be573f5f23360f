-- Candles of the underlyings (1, 5 and 15 minutes) and the chain metrics per minute, kept
-- by materialized views as rows arrive. Only aggregates a duplicate cannot change are kept
-- (min, max, argMin, argMax, uniq), so redelivered, replayed and late rows leave every
-- answer as it would be with each row once, in any order (docs/cookbook.md). The views see
-- rows inserted after they exist: for older rows, replay the topics (docs/operations.md).
-- Runs on ClickHouse 18.16 (no toStartOfInterval, no window functions) and current releases.

-- One row of state per product, interval and bucket; read it through the view `candles`.
CREATE TABLE IF NOT EXISTS {database}.candles_state
(
    product String,
    interval_minutes UInt8,
    bucket DateTime,
    open AggregateFunction(argMin, Float64, Tuple(Int64, Int64)),
    high AggregateFunction(max, Float64),
    low AggregateFunction(min, Float64),
    close AggregateFunction(argMax, Float64, Tuple(Int64, Int64)),
    day_volume AggregateFunction(max, Int64),
    ticks AggregateFunction(uniq, Tuple(Int64, Int64))
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (product, interval_minutes, bucket);

-- Ticks are ordered by (event_time_us, seq): the first is the open, the last the close.
-- The feed's volume is cumulative over the trading day, so the last of a candle is its
-- largest (max: a late or repeated tick cannot lower it). One view feeds all three
-- intervals (18.16 has no toStartOfInterval).
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.candles_mv TO {database}.candles_state AS
SELECT product, arrayJoin([toUInt8(1), toUInt8(5), toUInt8(15)]) AS interval_minutes,
    multiIf(interval_minutes = 1, toStartOfMinute(toDateTime(intDiv(event_time_us, 1000000))),
        interval_minutes = 5, toStartOfFiveMinute(toDateTime(intDiv(event_time_us, 1000000))),
        toStartOfFifteenMinutes(toDateTime(intDiv(event_time_us, 1000000)))) AS bucket,
    argMinState(price, (event_time_us, seq)) AS open, maxState(price) AS high, minState(price) AS low,
    argMaxState(price, (event_time_us, seq)) AS close, maxState(volume) AS day_volume,
    uniqState((event_time_us, seq)) AS ticks
FROM {database}.underlying_ticks
GROUP BY product, interval_minutes, bucket;

-- Candles: OHLC, the candle's volume (the day's cumulative volume at its end less that at
-- the end of the day's previous candle; the first candle of a day counts from 0) and the
-- number of distinct ticks. The trading day is the bucket's date in the server's time zone.
CREATE VIEW IF NOT EXISTS {database}.candles AS
SELECT product, interval_minutes, bucket, open, high, low, close,
    day_volume - if(i = 1, toInt64(0), tupleElement(sorted[i - 1], 2)) AS volume, day_volume, ticks
FROM
(
    SELECT product, interval_minutes, toDate(bucket) AS day,
        arraySort(groupArray((bucket, day_volume, open, high, low, close, ticks))) AS sorted
    FROM
    (
        SELECT product, interval_minutes, bucket, argMinMerge(open) AS open, maxMerge(high) AS high,
            minMerge(low) AS low, argMaxMerge(close) AS close, maxMerge(day_volume) AS day_volume,
            uniqMerge(ticks) AS ticks
        FROM {database}.candles_state
        GROUP BY product, interval_minutes, bucket
    )
    GROUP BY product, interval_minutes, day
)
ARRAY JOIN
    arrayEnumerate(sorted) AS i,
    arrayMap(t -> tupleElement(t, 1), sorted) AS bucket,
    arrayMap(t -> tupleElement(t, 2), sorted) AS day_volume,
    arrayMap(t -> tupleElement(t, 3), sorted) AS open,
    arrayMap(t -> tupleElement(t, 4), sorted) AS high,
    arrayMap(t -> tupleElement(t, 5), sorted) AS low,
    arrayMap(t -> tupleElement(t, 6), sorted) AS close,
    arrayMap(t -> tupleElement(t, 7), sorted) AS ticks;

-- The last chain of each minute per product and expiry (the latest event; of a chain
-- processed again, the newest processing). Nullable metrics travel as NaN inside the state
-- (18.16 cannot keep a Nullable inside a tuple state) and come back as NULL in the view.
CREATE TABLE IF NOT EXISTS {database}.chain_metrics_state
(
    product String,
    expiry Date,
    minute DateTime,
    last AggregateFunction(argMax,
        Tuple(Int64, Float64, Float64, Float64, Float64, Float64, Float64, Int64, Int64, Int64, Int64, Int64, Int64, Float64, Float64, Float64),
        Tuple(Int64, UInt64))
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (product, expiry, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.chain_metrics_mv TO {database}.chain_metrics_state AS
SELECT product, expiry, toStartOfMinute(toDateTime(intDiv(event_time_us, 1000000))) AS minute,
    argMaxState((event_time_us, spot, ifNull(pcr_oi, nan), ifNull(pcr_volume, nan), atm_strike,
        ifNull(atm_straddle_price, nan), ifNull(max_pain_strike, nan), total_call_oi, total_put_oi,
        call_oi_otm, put_oi_otm, call_buildup_otm, put_buildup_otm, ifNull(atm_iv, nan),
        ifNull(iv_skew_25d, nan), time_to_expiry), (event_time_us, version)) AS last
FROM {database}.chain_snapshots GROUP BY product, expiry, minute;

-- Chain metrics per product, expiry and minute, from the minute's last chain.
CREATE VIEW IF NOT EXISTS {database}.chain_metrics_1m AS
SELECT product, expiry, minute,
    tupleElement(l, 1) AS event_time_us,
    tupleElement(l, 2) AS spot,
    if(isNaN(tupleElement(l, 3)), NULL, tupleElement(l, 3)) AS pcr_oi,
    if(isNaN(tupleElement(l, 4)), NULL, tupleElement(l, 4)) AS pcr_volume,
    tupleElement(l, 5) AS atm_strike,
    if(isNaN(tupleElement(l, 6)), NULL, tupleElement(l, 6)) AS atm_straddle_price,
    if(isNaN(tupleElement(l, 7)), NULL, tupleElement(l, 7)) AS max_pain_strike,
    tupleElement(l, 8) AS total_call_oi,
    tupleElement(l, 9) AS total_put_oi,
    tupleElement(l, 10) AS call_oi_otm,
    tupleElement(l, 11) AS put_oi_otm,
    tupleElement(l, 12) AS call_buildup_otm,
    tupleElement(l, 13) AS put_buildup_otm,
    if(isNaN(tupleElement(l, 14)), NULL, tupleElement(l, 14)) AS atm_iv,
    if(isNaN(tupleElement(l, 15)), NULL, tupleElement(l, 15)) AS iv_skew_25d,
    tupleElement(l, 16) AS time_to_expiry
FROM
(
    SELECT product, expiry, minute, argMaxMerge(last) AS l
    FROM {database}.chain_metrics_state
    GROUP BY product, expiry, minute
);
