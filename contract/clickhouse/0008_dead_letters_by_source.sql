-- A dead letter is the fate of one source record: keyed by where that record was read
-- (source topic, partition, offset) and a digest of its key and value, so that a dead letter
-- sent again after a crash (a stage stopped between the dead letter's acknowledgement and
-- its offsets' commit reads the record again and dead-letters it again, at another offset of
-- the dlq topic) replaces its first copy under FINAL instead of standing beside it. The
-- digest keeps apart the records of a topic deleted and created again (its offsets start
-- over, under other records). A dead letter without chainflow's source headers (written by
-- another producer) has source offset -1 and is keyed by its own place in the dlq topic.
-- ClickHouse cannot change a table's sorting key: the table is made again under the new key,
-- its rows copied, and the two swapped. Each step can be run again: a migration stopped
-- half-way is finished by the next `chainflow migrate`.

DROP TABLE IF EXISTS {database}.dead_letters_by_dlq_offset;

CREATE TABLE IF NOT EXISTS {database}.dead_letters_by_source
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
    version UInt64,
    record_digest UInt64 MATERIALIZED if(source_offset >= 0, cityHash64(ifNull(key, ''), ifNull(value, '')), cityHash64(dlq_topic, dlq_partition, dlq_offset))
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(error_time)
ORDER BY (source_topic, source_partition, source_offset, record_digest);

INSERT INTO {database}.dead_letters_by_source SELECT * FROM {database}.dead_letters;

RENAME TABLE {database}.dead_letters TO {database}.dead_letters_by_dlq_offset, {database}.dead_letters_by_source TO {database}.dead_letters;

DROP TABLE IF EXISTS {database}.dead_letters_by_dlq_offset;

DROP TABLE IF EXISTS {database}.dead_letters_by_source
