//! ClickHouse migrations (`contract/clickhouse/*.sql`), embedded in the binary.
//!
//! A file is a list of statements separated by `;` at the end of a line, with
//! `{database}` standing for the configured database. A first line
//! `-- min_server_version: X.Y` skips the file on older servers.

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Ordinal, from the file name's prefix.
    pub version: u32,
    /// File name.
    pub name: &'static str,
    /// File text.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_chain_tables.sql",
        sql: include_str!("../clickhouse/0001_chain_tables.sql"),
    },
    Migration {
        version: 2,
        name: "0002_insert_deduplication.sql",
        sql: include_str!("../clickhouse/0002_insert_deduplication.sql"),
    },
    Migration {
        version: 3,
        name: "0003_every_stream.sql",
        sql: include_str!("../clickhouse/0003_every_stream.sql"),
    },
    Migration {
        version: 4,
        name: "0004_stream_deduplication.sql",
        sql: include_str!("../clickhouse/0004_stream_deduplication.sql"),
    },
    Migration {
        version: 5,
        name: "0005_candles_and_chain_metrics.sql",
        sql: include_str!("../clickhouse/0005_candles_and_chain_metrics.sql"),
    },
    Migration {
        version: 6,
        name: "0006_view_deduplication.sql",
        sql: include_str!("../clickhouse/0006_view_deduplication.sql"),
    },
];

/// The tables that grow with the data, each with the DateTime column its monthly
/// partitions (`toYYYYMM`) and its retention are measured on.
pub const DATA_TABLES: &[(&str, &str)] = &[
    ("chain_snapshots", "event_time"),
    ("chain_options", "event_time"),
    ("underlying_ticks", "event_time"),
    ("option_quotes", "event_time"),
    ("dead_letters", "error_time"),
    ("sink_batches", "recorded_at"),
    ("candles_state", "bucket"),
    ("chain_metrics_state", "minute"),
];

impl Migration {
    /// The oldest server version (major, minor) the file runs on.
    pub fn min_server_version(&self) -> Option<(u32, u32)> {
        let line = self.sql.lines().next()?.strip_prefix("-- min_server_version:")?.trim();
        let (major, minor) = line.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    /// The statements with `{database}` replaced, comments and blank lines removed.
    pub fn statements(&self, database: &str) -> Vec<String> {
        let body: String = self
            .sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        body.split(";\n")
            .chain(std::iter::once(""))
            .map(|s| s.trim().trim_end_matches(';').trim().replace("{database}", database))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// FNV-1a of the file text: a changed file after it was applied is an error.
    pub fn checksum(&self) -> String {
        let hash = self.sql.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_split_into_statements() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
        let first = MIGRATIONS[0].statements("db");
        assert_eq!(first.len(), 2);
        assert!(first[0].starts_with("CREATE TABLE IF NOT EXISTS db.chain_snapshots"));
        assert!(!first[1].ends_with(';'));
        assert_eq!(MIGRATIONS[0].min_server_version(), None);
        assert_eq!(MIGRATIONS[1].min_server_version(), Some((22, 2)));
    }
}
