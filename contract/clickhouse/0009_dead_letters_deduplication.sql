-- min_server_version: 22.2
-- The dead_letters of 0008 drop a repeated insert of the same batch too, as 0004 set for
-- the table it replaced.

ALTER TABLE {database}.dead_letters MODIFY SETTING non_replicated_deduplication_window = 1000
