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
    Migration {
        version: 7,
        name: "0007_ledger_first_record.sql",
        sql: include_str!("../clickhouse/0007_ledger_first_record.sql"),
    },
    Migration {
        version: 8,
        name: "0008_dead_letters_by_source.sql",
        sql: include_str!("../clickhouse/0008_dead_letters_by_source.sql"),
    },
    Migration {
        version: 9,
        name: "0009_dead_letters_deduplication.sql",
        sql: include_str!("../clickhouse/0009_dead_letters_deduplication.sql"),
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

/// Statement openings `cluster_statements` knows.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS ";
const CREATE_MV: &str = "CREATE MATERIALIZED VIEW IF NOT EXISTS ";
const CREATE_VIEW: &str = "CREATE VIEW IF NOT EXISTS ";

impl Migration {
    /// The statements for the ClickHouse cluster `cluster`, each `ON CLUSTER`: a table
    /// becomes `<table>_local`, of the replicated kind of its engine with its Keeper path per
    /// shard (`/clickhouse/tables/{shard}/<database>/<table>_local`, replica `{replica}`),
    /// and a `Distributed` table under its own name, sharded by a hash of its sorting key (the
    /// rows a ReplacingMergeTree or AggregatingMergeTree merges always meet on one shard); a
    /// materialized view reads and writes the local tables of its shard; a plain view reads
    /// the distributed ones. `non_replicated_deduplication_window` settings are left out:
    /// replicated tables deduplicate inserts by default. A table made again under another
    /// key is copied, renamed and dropped as `table_moved` says. An error names a statement
    /// of a kind it does not know.
    pub fn cluster_statements(&self, database: &str, cluster: &str) -> Result<Vec<String>, String> {
        let tables = created_tables(database);
        let mut out = Vec::new();
        for s in self.statements(database) {
            out.extend(on_cluster(&s, database, cluster, &tables).map_err(|e| format!("{}: {e}", self.name))?);
        }
        Ok(out)
    }
}

/// The name of `table`'s local part on a cluster: the replicated table each server holds,
/// under the distributed table of `table`'s own name.
pub fn local_table(table: &str) -> String {
    format!("{table}_local")
}

/// The tables every migration creates, by name.
fn created_tables(database: &str) -> Vec<String> {
    MIGRATIONS
        .iter()
        .flat_map(|m| m.statements(database))
        .filter_map(|s| {
            let name = s.strip_prefix(CREATE_TABLE)?.split_whitespace().next()?;
            Some(name.strip_prefix(&format!("{database}."))?.to_string())
        })
        .collect()
}

/// `s` with every whole name `from` (not followed by a letter, digit or `_`) replaced by `to`.
fn replace_name(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        let whole = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// One statement for the cluster (see `Migration::cluster_statements`).
fn on_cluster(s: &str, db: &str, cluster: &str, tables: &[String]) -> Result<Vec<String>, String> {
    let first_line = s.lines().next().unwrap_or_default();
    let split_name = |rest: &str| -> Result<(String, String), String> {
        let (name, body) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("no body after the name: {first_line}"))?;
        Ok((name.to_string(), body.to_string()))
    };
    if let Some(rest) = s.strip_prefix(CREATE_TABLE) {
        let (name, body) = split_name(rest)?;
        let table = local_table(name.strip_prefix(&format!("{db}.")).unwrap_or(&name));
        let engine_at = body
            .find("ENGINE = ")
            .ok_or_else(|| format!("no ENGINE: {first_line}"))?
            + "ENGINE = ".len();
        let open = engine_at
            + body[engine_at..]
                .find('(')
                .ok_or_else(|| format!("no engine arguments: {first_line}"))?;
        let close = open
            + body[open..]
                .find(')')
                .ok_or_else(|| format!("unclosed engine arguments: {first_line}"))?;
        let (engine, args) = (&body[engine_at..open], body[open + 1..close].trim());
        let keeper = format!("'/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'");
        let args = if args.is_empty() {
            keeper
        } else {
            format!("{keeper}, {args}")
        };
        let key = body
            .split("ORDER BY ")
            .nth(1)
            .and_then(|k| k.lines().next())
            .map(|k| k.split(" SETTINGS").next().unwrap_or(k).trim())
            .ok_or_else(|| format!("no ORDER BY: {first_line}"))?;
        let key = if key.starts_with('(') {
            key.to_string()
        } else {
            format!("({key})")
        };
        let local_body = format!("{}Replicated{engine}({args}){}", &body[..engine_at], &body[close + 1..]);
        return Ok(vec![
            format!("{CREATE_TABLE}{db}.{table} ON CLUSTER {cluster} {local_body}"),
            format!(
                "{CREATE_TABLE}{name} ON CLUSTER {cluster} AS {db}.{table} ENGINE = Distributed({cluster}, {db}, {table}, cityHash64{key})"
            ),
        ]);
    }
    if let Some(rest) = s.strip_prefix(CREATE_MV) {
        let (name, mut body) = split_name(rest)?;
        for t in tables {
            body = replace_name(&body, &format!("{db}.{t}"), &format!("{db}.{}", local_table(t)));
        }
        return Ok(vec![format!("{CREATE_MV}{name} ON CLUSTER {cluster} {body}")]);
    }
    if let Some(rest) = s.strip_prefix(CREATE_VIEW) {
        let (name, body) = split_name(rest)?;
        return Ok(vec![format!("{CREATE_VIEW}{name} ON CLUSTER {cluster} {body}")]);
    }
    if let Some(moved) = table_moved(s, cluster) {
        return moved;
    }
    if s.starts_with("ALTER TABLE ") && s.contains("MODIFY SETTING non_replicated_deduplication_window") {
        return Ok(Vec::new());
    }
    if let Some(rest) = s.strip_prefix("ALTER TABLE ") {
        // a column added: to the local tables, then to the distributed one over them
        let (name, body) = split_name(rest)?;
        if body.starts_with("ADD COLUMN ") {
            let table = name.strip_prefix(&format!("{db}.")).unwrap_or(&name);
            return Ok(vec![
                format!("ALTER TABLE {db}.{} ON CLUSTER {cluster} {body}", local_table(table)),
                format!("ALTER TABLE {name} ON CLUSTER {cluster} {body}"),
            ]);
        }
    }
    Err(format!("no cluster form for this kind of statement: {first_line}"))
}

/// The cluster form of a statement that moves a table's rows (made again under another
/// key): a copy runs once, through the distributed tables and synchronously (a rename
/// follows); a rename renames the local tables only (a distributed table reads whichever
/// local table bears its local name); a table is dropped in both parts. `None` for other
/// kinds of statement.
fn table_moved(s: &str, cluster: &str) -> Option<Result<Vec<String>, String>> {
    if s.starts_with("INSERT INTO ") && s.contains(" SELECT ") {
        return Some(Ok(vec![format!("{s} SETTINGS insert_distributed_sync = 1")]));
    }
    if let Some(rest) = s.strip_prefix("RENAME TABLE ") {
        let pairs = rest.split(", ").map(|pair| {
            let (from, to) = pair.split_once(" TO ").ok_or_else(|| format!("no TO in {pair}"))?;
            Ok(format!("{from}_local TO {to}_local"))
        });
        return Some(
            pairs
                .collect::<Result<Vec<_>, String>>()
                .map(|pairs| vec![format!("RENAME TABLE {} ON CLUSTER {cluster}", pairs.join(", "))]),
        );
    }
    let name = s.strip_prefix("DROP TABLE IF EXISTS ")?;
    Some(Ok(vec![
        format!("DROP TABLE IF EXISTS {name}_local ON CLUSTER {cluster}"),
        format!("DROP TABLE IF EXISTS {name} ON CLUSTER {cluster}"),
    ]))
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

    #[test]
    fn every_statement_has_a_cluster_form_on_replicated_and_distributed_tables() {
        let all: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|m| m.cluster_statements("db", "prod").unwrap())
            .collect();
        for s in &all {
            // a copy between tables runs once, through the distributed tables
            assert!(
                s.contains(" ON CLUSTER prod") || s.starts_with("INSERT INTO db.dead_letters_by_source SELECT"),
                "{s}"
            );
            assert!(
                !s.contains("ENGINE = ReplacingMergeTree") && !s.contains("ENGINE = AggregatingMergeTree"),
                "{s}"
            );
        }
        for added in ["db.sink_batches_local", "db.sink_batches"] {
            let alter =
                format!("ALTER TABLE {added} ON CLUSTER prod ADD COLUMN first_digest UInt64 DEFAULT 0 AFTER token");
            assert!(all.contains(&alter), "{alter}");
        }
        for (table, _) in DATA_TABLES {
            let local = format!("CREATE TABLE IF NOT EXISTS db.{table}_local ON CLUSTER prod ");
            let local = all
                .iter()
                .find(|s| s.starts_with(&local))
                .unwrap_or_else(|| panic!("{table}_local"));
            assert!(
                local.contains("Replicated")
                    && local.contains(&format!(
                        "('/clickhouse/tables/{{shard}}/db/{table}_local', '{{replica}}'"
                    )),
                "{local}"
            );
            let distributed = format!("CREATE TABLE IF NOT EXISTS db.{table} ON CLUSTER prod AS db.{table}_local ENGINE = Distributed(prod, db, {table}_local, cityHash64(");
            assert!(all.iter().any(|s| s.starts_with(&distributed)), "{distributed}");
        }
        let snapshots = all
            .iter()
            .find(|s| s.contains("db.chain_snapshots ON CLUSTER prod AS"))
            .unwrap();
        assert!(
            snapshots.ends_with("cityHash64(product, expiry, event_time_us))"),
            "{snapshots}"
        );
        let local = all
            .iter()
            .find(|s| s.starts_with("CREATE TABLE IF NOT EXISTS db.chain_snapshots_local"))
            .unwrap();
        assert!(local.contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/chain_snapshots_local', '{replica}', version)"), "{local}");
        // a shard's materialized view reads the rows inserted on that shard and keeps its state there
        let mv = all
            .iter()
            .find(|s| s.contains("db.chain_metrics_mv ON CLUSTER"))
            .unwrap();
        assert!(
            mv.contains("TO db.chain_metrics_state_local AS") && mv.contains("FROM db.chain_snapshots_local GROUP BY"),
            "{mv}"
        );
        // views read the distributed tables
        let view = all
            .iter()
            .find(|s| s.contains("db.chain_metrics_1m ON CLUSTER"))
            .unwrap();
        assert!(
            view.contains("FROM db.chain_metrics_state") && !view.contains("_local"),
            "{view}"
        );
        assert!(
            MIGRATIONS[1].cluster_statements("db", "prod").unwrap().is_empty(),
            "dedup windows are replicated tables' default"
        );
    }

    #[test]
    fn a_table_made_again_under_another_key_swaps_its_local_parts_on_a_cluster() {
        let m = MIGRATIONS
            .iter()
            .find(|m| m.name == "0008_dead_letters_by_source.sql")
            .unwrap();
        let all = m.cluster_statements("db", "prod").unwrap();
        let at = |prefix: &str| {
            all.iter()
                .position(|s| s.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix}: {all:#?}"))
        };
        let created = at("CREATE TABLE IF NOT EXISTS db.dead_letters_by_source_local ON CLUSTER prod");
        let copied = at(
            "INSERT INTO db.dead_letters_by_source SELECT * FROM db.dead_letters SETTINGS insert_distributed_sync = 1",
        );
        let renamed = at("RENAME TABLE db.dead_letters_local TO db.dead_letters_by_dlq_offset_local, db.dead_letters_by_source_local TO db.dead_letters_local ON CLUSTER prod");
        let dropped = all
            .iter()
            .rposition(|s| s == "DROP TABLE IF EXISTS db.dead_letters_by_dlq_offset_local ON CLUSTER prod")
            .unwrap();
        assert!(created < copied && copied < renamed && renamed < dropped);
        assert!(
            all.iter()
                .any(|s| s == "DROP TABLE IF EXISTS db.dead_letters_by_source ON CLUSTER prod"),
            "the distributed table over the renamed local one goes: {all:#?}"
        );
        assert!(
            !all.iter().any(|s| s.starts_with("RENAME TABLE db.dead_letters TO")),
            "the distributed dead_letters keeps its name and reads the new local table"
        );
    }

    #[test]
    fn names_are_replaced_whole() {
        assert_eq!(
            replace_name("FROM d.t GROUP BY, d.t_x, d.t", "d.t", "d.t_local"),
            "FROM d.t_local GROUP BY, d.t_x, d.t_local"
        );
    }
}
