//! A ClickHouse database of a test's own, with chainflow's tables.

use super::fixtures::Names;
use super::processes::{chainflow, output_with_input};
use super::stack;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// A ClickHouse database of a test's own, with chainflow's tables, dropped when dropped.
pub struct Database {
    /// Its name.
    pub name: String,
    /// A client in it.
    pub client: clickhouse::Client,
}

impl Database {
    /// Creates `names`' database with `chainflow migrate`.
    pub fn create(names: &Names) -> Self {
        let name = names.database();
        let out = chainflow(&["migrate"])
            .env("CHAINFLOW_CLICKHOUSE__DATABASE", &name)
            .output();
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let client = chainflow_clickhouse::client(&stack().clickhouse).with_database(&name);
        Self { name, client }
    }

    /// `SELECT count() FROM table [FINAL] WHERE condition`.
    pub async fn count(&self, table: &str, final_: bool, condition: &str) -> u64 {
        let f = if final_ { "FINAL" } else { "" };
        self.client
            .query(&format!("SELECT count() FROM {table} {f} WHERE {condition}"))
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("counting {table}: {e}"))
    }

    /// Waits until `count(table, FINAL, condition)` reaches `n`, for at most `secs`.
    pub async fn wait_count(&self, table: &str, condition: &str, n: u64, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.count(table, true, condition).await;
            if got >= n {
                assert_eq!(got, n, "{table} where {condition}: more rows than expected");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{table} where {condition}: {got} of {n} rows after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Database {
    /// `sql` (a SELECT) as JSON rows, 64-bit integers as numbers.
    pub async fn rows(&self, sql: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let body = reqwest::Client::new()
            .post(format!(
                "{}/?database={}&output_format_json_quote_64bit_integers=0",
                stack().clickhouse.url.trim_end_matches('/'),
                self.name
            ))
            .body(format!("{sql} FORMAT JSONEachRow"))
            .send()
            .await
            .expect("ClickHouse answers")
            .text()
            .await
            .expect("a body");
        body.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("{sql}\n{body}")))
            .collect()
    }

    /// The answers of `queries` on a current ClickHouse engine (chdb, `tests/current_engine.py`)
    /// holding this database's rows of `tables`, with chainflow's schema for 26.1 (its
    /// materialized views fill as the rows are loaded).
    pub async fn on_current_engine(
        &self,
        tables: &[&str],
        queries: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>> {
        let schema = chainflow(&["migrate", "--print-for", "26.1"]).output();
        let mut rows = BTreeMap::new();
        for t in tables {
            let lines: Vec<String> = self
                .rows(&format!("SELECT * FROM {t}"))
                .await
                .into_iter()
                .map(|r| serde_json::Value::Object(r).to_string())
                .collect();
            rows.insert(*t, lines.join("\n"));
        }
        let spec = serde_json::json!({
            "schema": String::from_utf8_lossy(&schema.stdout), "database": "chainflow", "tables": rows,
            "queries": queries,
        });
        let mut python = Command::new("python3");
        python
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/current_engine.py"))
            .env("TZ", "UTC");
        let out = output_with_input(&mut python, spec.to_string().as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("answers as JSON")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let url = stack().clickhouse.url;
        let _ = Command::new("curl")
            .args([
                "-s",
                &url,
                "--data-binary",
                &format!("DROP DATABASE IF EXISTS {}", self.name),
            ])
            .status();
    }
}
