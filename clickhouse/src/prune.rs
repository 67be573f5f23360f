//! Retention. Servers with TTL (19.6+) get one from `clickhouse.retention_days` at every
//! `chainflow migrate`; on older ones (18.16) `chainflow prune --before DATE` drops the
//! monthly partitions whose rows are all older than DATE (whole months only).

use crate::client::{execute_all, ServerVersion};
use anyhow::{Context, Result};
use chainflow_contract::clickhouse::{local_table, DATA_TABLES};
use chrono::{Datelike, NaiveDate};
use clickhouse::Client;
use serde::Deserialize;

/// The first server version with table TTL.
pub const TTL_SINCE: ServerVersion = ServerVersion(19, 6);

/// A monthly partition of a table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct Partition {
    /// Table.
    pub table: String,
    /// Partition id, `YYYYMM`.
    pub partition: String,
    /// Rows in it.
    pub rows: u64,
}

/// `YYYYMM` of the month of `date`.
pub fn month_of(date: NaiveDate) -> u32 {
    date.year().unsigned_abs() * 100 + date.month()
}

/// The partitions of chainflow's tables in `database` whose month ends before `before`'s;
/// on a cluster (`cluster` not empty), of the local tables the connected server holds.
pub async fn partitions_before(
    client: &Client,
    database: &str,
    cluster: &str,
    before: NaiveDate,
) -> Result<Vec<Partition>> {
    let tables: Vec<String> = DATA_TABLES
        .iter()
        .map(|(t, _)| {
            if cluster.is_empty() {
                t.to_string()
            } else {
                local_table(t)
            }
        })
        .collect();
    client
        .query(
            "SELECT table, partition, sum(rows) AS rows FROM system.parts \
             WHERE active AND database = ? AND has(?, table) AND toUInt32(partition) < ? \
             GROUP BY table, partition ORDER BY table, partition",
        )
        .bind(database)
        .bind(&tables)
        .bind(month_of(before))
        .fetch_all()
        .await
        .context("listing partitions in system.parts")
}

/// Drops `partitions` from `database` (on every node of `cluster`, unless empty).
pub async fn drop_partitions(client: &Client, database: &str, cluster: &str, partitions: &[Partition]) -> Result<()> {
    let on_cluster = if cluster.is_empty() {
        String::new()
    } else {
        format!(" ON CLUSTER {cluster}")
    };
    for p in partitions {
        // the partition id comes from system.parts: digits only
        client
            .query(&format!(
                "ALTER TABLE {database}.{}{on_cluster} DROP PARTITION {}",
                p.table, p.partition
            ))
            .execute()
            .await
            .with_context(|| format!("dropping partition {} of {database}.{}", p.partition, p.table))?;
    }
    Ok(())
}

/// What `chainflow migrate` did about retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retention {
    /// Everything is kept (`clickhouse.retention_days = 0`).
    KeepAll,
    /// A TTL of this many days was set on every table.
    Ttl(u32),
    /// The server has no TTL: `chainflow prune` does it.
    NoTtl(u32),
}

/// Sets a TTL of `days` on every table of `database` when the server has TTL.
pub async fn apply_retention(client: &Client, database: &str, server: ServerVersion, days: u32) -> Result<Retention> {
    if days == 0 {
        return Ok(Retention::KeepAll);
    }
    if server < TTL_SINCE {
        return Ok(Retention::NoTtl(days));
    }
    execute_all(client, &ttl_statements(database, days), "setting retention").await?;
    Ok(Retention::Ttl(days))
}

/// The TTL statements for `days` of retention in `database`.
pub fn ttl_statements(database: &str, days: u32) -> Vec<String> {
    DATA_TABLES
        .iter()
        .map(|(table, time)| format!("ALTER TABLE {database}.{table} MODIFY TTL {time} + toIntervalDay({days})"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_yyyymm() {
        assert_eq!(month_of(NaiveDate::from_ymd_opt(2025, 1, 30).unwrap()), 202_501);
        assert_eq!(month_of(NaiveDate::from_ymd_opt(2024, 12, 1).unwrap()), 202_412);
    }

    #[test]
    fn every_growing_table_gets_a_ttl_on_its_time() {
        let statements = ttl_statements("db", 90);
        assert_eq!(statements.len(), DATA_TABLES.len());
        assert!(
            statements.contains(&"ALTER TABLE db.chain_options MODIFY TTL event_time + toIntervalDay(90)".to_string())
        );
        assert!(
            statements.contains(&"ALTER TABLE db.dead_letters MODIFY TTL error_time + toIntervalDay(90)".to_string())
        );
    }
}
