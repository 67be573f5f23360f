-- min_server_version: 22.2
-- Newer servers also drop a repeated insert of the same batch (insert_deduplication_token),
-- which needs a deduplication window on non-replicated MergeTree tables.

ALTER TABLE {database}.chain_snapshots MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE {database}.chain_options MODIFY SETTING non_replicated_deduplication_window = 1000;
