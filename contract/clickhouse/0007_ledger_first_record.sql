-- Each recorded batch keeps the digest of its first record, so that a row recorded before a
-- topic was deleted and created again (its offsets start over, under other records) is never
-- used to form batches of the new records. Rows recorded before have 0: too old to say.
ALTER TABLE {database}.sink_batches ADD COLUMN first_digest UInt64 DEFAULT 0 AFTER token
