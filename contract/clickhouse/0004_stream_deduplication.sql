-- min_server_version: 22.2
-- The tables of 0003 drop a repeated insert of the same batch too (insert_deduplication_token).

ALTER TABLE {database}.underlying_ticks MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE {database}.option_quotes MODIFY SETTING non_replicated_deduplication_window = 1000;

ALTER TABLE {database}.dead_letters MODIFY SETTING non_replicated_deduplication_window = 1000;
