//! One INSERT of a batch of rows: a deduplication token per table (servers 22.2+) and a
//! timeout on the whole exchange, its failure classified.

use crate::error::{classify, timed_out, Failure};
use clickhouse::{Client, Row, RowWrite};
use serde::Serialize;
use std::time::Duration;

/// One INSERT of `rows` into `table`, with a deduplication token (servers 22.2+) and a
/// timeout on the whole exchange.
pub async fn insert<'a, T>(
    client: &Client,
    table: &str,
    rows: impl Iterator<Item = &'a T> + Send,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(), Failure>
where
    T: Row + RowWrite + Serialize + Sync + 'a + for<'b> Row<Value<'b> = T>,
{
    let work = async {
        let mut ins = client
            .insert::<T>(table)
            .await
            .map_err(|e| classify(&e))?
            .with_timeouts(Some(timeout), Some(timeout));
        if let Some(t) = token {
            ins = ins.with_setting("insert_deduplication_token", format!("{t}/{table}"));
        }
        let mut any = false;
        for r in rows {
            ins.write(r).await.map_err(|e| classify(&e))?;
            any = true;
        }
        if any {
            ins.end().await.map_err(|e| classify(&e))
        } else {
            Ok(())
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(timed_out(timeout)))
}
