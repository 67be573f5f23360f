//! The ClickHouse client and what the connected server supports.

use anyhow::{Context, Result};
use chainflow_config::ClickHouseConfig;
use clickhouse::Client;
use std::fmt;

/// A client for the configured server and database. Validation is off: ClickHouse 18.16
/// has no RowBinaryWithNamesAndTypes, so rows go as plain RowBinary (with LZ4). On a
/// cluster (`clickhouse.cluster`), inserts into distributed tables are synchronous.
pub fn client(cfg: &ClickHouseConfig) -> Client {
    let mut c = Client::default()
        .with_url(&cfg.url)
        .with_user(&cfg.user)
        .with_validation(false);
    if !cfg.password.is_empty() {
        c = c.with_password(cfg.password.expose());
    }
    if !cfg.cluster.is_empty() {
        // an insert into a distributed table is acknowledged once every shard has its rows:
        // only then may the sink commit the offsets
        c = c.with_setting("insert_distributed_sync", "1");
    }
    c
}

/// Runs `statements` in order, stopping at the first that fails; its error names `what`
/// and the statement.
pub async fn execute_all(client: &Client, statements: &[String], what: &str) -> Result<()> {
    for s in statements {
        client
            .query(s)
            .execute()
            .await
            .with_context(|| format!("{what}: {s}"))?;
    }
    Ok(())
}

/// A server version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion(pub u32, pub u32);

impl ServerVersion {
    /// Asks the server.
    pub async fn detect(client: &Client) -> Result<Self> {
        let text: String = client
            .query("SELECT version()")
            .fetch_one()
            .await
            .context("asking ClickHouse for its version (is it running? see clickhouse.url)")?;
        Self::parse(&text).with_context(|| format!("unrecognised ClickHouse version {text:?}"))
    }

    /// Parses `18.16.1` or `26.1.2.3`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        Some(Self(
            parts.next()?.trim().parse().ok()?,
            parts.next()?.trim().parse().ok()?,
        ))
    }

    /// Whether inserts accept `insert_deduplication_token` (22.2+).
    pub fn has_dedup_token(self) -> bool {
        self >= ServerVersion(22, 2)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(ServerVersion::parse("18.16.1"), Some(ServerVersion(18, 16)));
        assert_eq!(ServerVersion::parse("26.1.2.3"), Some(ServerVersion(26, 1)));
        assert_eq!(ServerVersion::parse("x"), None);
        assert!(!ServerVersion(18, 16).has_dedup_token());
        assert!(ServerVersion(24, 8).has_dedup_token());
    }
}
