//! `chainflow migrate`: applies `schemas/clickhouse` migrations once each, in order.

use crate::client::{execute_all, ServerVersion};
use anyhow::{bail, Context, Result};
use chainflow_contract::clickhouse::{Migration, MIGRATIONS};
use clickhouse::Client;
use serde::Deserialize;

/// What happened to one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationOutcome {
    /// Applied now.
    Applied,
    /// Applied earlier, unchanged.
    AlreadyApplied,
    /// Needs a newer server.
    Skipped(String),
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct AppliedRow {
    version: u32,
    checksum: String,
}

/// Statements of `migration` for `database` (on `cluster`, unless empty: see
/// `Migration::cluster_statements`), or why it does not run on `server`.
pub fn plan(
    migration: &Migration,
    database: &str,
    cluster: &str,
    server: ServerVersion,
) -> Result<Vec<String>, String> {
    match migration.min_server_version() {
        Some((major, minor)) if server < ServerVersion(major, minor) => {
            Err(format!("needs ClickHouse {major}.{minor}+, server is {server}"))
        }
        _ if cluster.is_empty() => Ok(migration.statements(database)),
        _ => migration.cluster_statements(database, cluster),
    }
}

/// The statements that create `database` and its `schema_migrations` (on `cluster`, unless
/// empty: one table replicated to every node, whichever shard `migrate` talks to).
pub fn preamble(database: &str, cluster: &str) -> [String; 2] {
    let columns = "(version UInt32, name String, checksum String, applied_at DateTime DEFAULT now())";
    if cluster.is_empty() {
        [
            format!("CREATE DATABASE IF NOT EXISTS {database}"),
            format!("CREATE TABLE IF NOT EXISTS {database}.schema_migrations {columns} ENGINE = ReplacingMergeTree ORDER BY version"),
        ]
    } else {
        [
            format!("CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {database}.schema_migrations ON CLUSTER {cluster} {columns} \
                 ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{database}/schema_migrations', '{{replica}}') ORDER BY version"
            ),
        ]
    }
}

/// Creates the database and applies every pending migration (on `cluster`, unless empty);
/// idempotent.
pub async fn migrate(
    client: &Client,
    database: &str,
    cluster: &str,
) -> Result<(ServerVersion, Vec<(&'static str, MigrationOutcome)>)> {
    let server = ServerVersion::detect(client).await?;
    execute_all(
        client,
        &preamble(database, cluster),
        &format!("creating database {database} and its schema_migrations"),
    )
    .await?;
    let applied: Vec<AppliedRow> = client
        .query(&format!(
            "SELECT version, checksum FROM {database}.schema_migrations FINAL"
        ))
        .fetch_all()
        .await
        .context("reading schema_migrations")?;
    let mut out = Vec::new();
    for m in MIGRATIONS {
        if let Some(row) = applied.iter().find(|r| r.version == m.version) {
            if row.checksum != m.checksum() {
                bail!(
                    "migration {} changed after it was applied (checksum {} in {database}.schema_migrations, {} now): \
                     add a new migration instead of editing an applied one",
                    m.name,
                    row.checksum,
                    m.checksum()
                );
            }
            out.push((m.name, MigrationOutcome::AlreadyApplied));
            continue;
        }
        let statements = match plan(m, database, cluster, server) {
            Ok(s) => s,
            Err(why) => {
                out.push((m.name, MigrationOutcome::Skipped(why)));
                continue;
            }
        };
        execute_all(client, &statements, &format!("migration {}", m.name)).await?;
        client
            .query(&format!(
                "INSERT INTO {database}.schema_migrations (version, name, checksum) VALUES (?, ?, ?)"
            ))
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .execute()
            .await
            .with_context(|| format!("recording migration {}", m.name))?;
        tracing::info!(migration = m.name, "migration applied");
        out.push((m.name, MigrationOutcome::Applied));
    }
    Ok((server, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(name: &str) -> &'static Migration {
        MIGRATIONS.iter().find(|m| m.name == name).expect("a shipped migration")
    }

    #[test]
    fn statements_name_the_configured_database() {
        let statements = plan(
            migration("0001_chain_tables.sql"),
            "analytics_db",
            "",
            ServerVersion(18, 16),
        )
        .unwrap();
        assert_eq!(statements.len(), 2);
        assert!(statements[0].starts_with("CREATE TABLE IF NOT EXISTS analytics_db.chain_snapshots"));
        assert!(statements[1].starts_with("CREATE TABLE IF NOT EXISTS analytics_db.chain_options"));
        assert!(statements.iter().all(|s| !s.contains("{database}")));
    }

    #[test]
    fn a_migration_for_newer_servers_is_skipped_on_older_ones_with_the_reason() {
        let dedup = migration("0002_insert_deduplication.sql");
        assert_eq!(
            plan(dedup, "db", "", ServerVersion(18, 16)),
            Err("needs ClickHouse 22.2+, server is 18.16".to_string())
        );
        assert_eq!(
            plan(dedup, "db", "", ServerVersion(22, 1)),
            Err("needs ClickHouse 22.2+, server is 22.1".to_string())
        );
        for server in [ServerVersion(22, 2), ServerVersion(24, 8), ServerVersion(26, 1)] {
            let statements = plan(dedup, "db", "", server).unwrap();
            assert!(
                !statements.is_empty() && statements.iter().all(|s| s.contains("db.")),
                "{server}"
            );
        }
    }

    #[test]
    fn every_migration_runs_on_a_current_server() {
        for m in MIGRATIONS {
            assert!(plan(m, "db", "", ServerVersion(26, 1)).is_ok(), "{}", m.name);
            assert!(plan(m, "db", "prod", ServerVersion(26, 1)).is_ok(), "{}", m.name);
        }
    }
}
