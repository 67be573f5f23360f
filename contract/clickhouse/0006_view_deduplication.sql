-- min_server_version: 22.2
-- On servers that drop a repeated insert by its token, an insert dropped in the source table
-- still reaches the materialized views: their tables drop it by the same token. (The views
-- keep only aggregates a repeat cannot change, so this saves merges, not correctness.)

ALTER TABLE {database}.candles_state MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE {database}.chain_metrics_state MODIFY SETTING non_replicated_deduplication_window = 1000;
