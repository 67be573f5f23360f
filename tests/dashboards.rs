//! The Grafana dashboards (ops/grafana/dashboards) checked without Grafana: after a
//! pipeline run, every ClickHouse panel and variable query, its macros expanded as the
//! pinned plugin (grafana-clickhouse-datasource 4.5.1) expands them, returns rows on the
//! local ClickHouse (18.16) and on a current engine (chdb) with the same rows; every PromQL
//! expression returns a non-empty vector from the stack's Prometheus, which scraped the run.
//! Needs the local stack (ops/stack.sh up) with Prometheus.

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_config::default_products;
use common::{chain, stack, Isolated, Names, Producer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What a panel's time range and interval are, for the macros.
struct Range {
    from: i64,
    to: i64,
    interval_s: i64,
}

/// `sql` with the plugin's macros and the dashboard's variables expanded, as Grafana and
/// grafana-clickhouse-datasource 4.5.1 expand them (`pkg/macros/macros.go`).
fn expand(sql: &str, range: &Range, vars: &BTreeMap<&str, String>) -> String {
    let mut out = sql.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    // $__timeFilter(column): column >= toDateTime(from) AND column <= toDateTime(to)
    while let Some(at) = out.find("$__timeFilter(") {
        let rest = &out[at + "$__timeFilter(".len()..];
        let close = rest.find(')').expect("a closing parenthesis");
        let column = rest[..close].trim().to_string();
        let expanded = format!(
            "{column} >= toDateTime({}) AND {column} <= toDateTime({})",
            range.from, range.to
        );
        let end = at + "$__timeFilter(".len() + close; // the closing parenthesis
        out.replace_range(at..=end, &expanded);
    }
    out.replace("$__fromTime", &format!("toDateTime({})", range.from))
        .replace("$__toTime", &format!("toDateTime({})", range.to))
        .replace("$__interval_s", &range.interval_s.max(1).to_string())
}

/// Every query of a dashboard: (where, datasource type, text).
fn queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        out.push((
            format!("variable {}", v["name"]),
            v["datasource"]["type"].as_str().unwrap_or_default().to_string(),
            v["query"].as_str().unwrap_or_default().to_string(),
        ));
    }
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let text = t["rawSql"].as_str().or_else(|| t["expr"].as_str()).unwrap_or_default();
            out.push((
                format!("panel {:?}", p["title"].as_str().unwrap_or_default()),
                t["datasource"]["type"].as_str().unwrap_or_default().to_string(),
                text.to_string(),
            ));
        }
    }
    out
}

/// `text` percent-encoded for a form body.
fn form_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant PromQL query against the stack's Prometheus: the result vector.
async fn promql(expr: &str) -> Vec<Value> {
    let port = std::env::var("CHAINFLOW_STACK_PROMETHEUS_PORT").unwrap_or_else(|_| "9090".into());
    let body: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("query={}", form_encoded(expr)))
        .send()
        .await
        .expect("Prometheus answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_returns_data_on_both_engines_and_from_prometheus() {
    let cfg = stack();
    let began = Instant::now();
    let mut params = default_products().remove("NIFTY").unwrap();
    (params.strikes, params.expiries) = (11, 1);
    let run = Isolated::new("dashboards", "DSH", &params).await;
    // a dead letter, so that the dead-letter panel has a series
    Producer::new(&cfg)
        .send(&chain(&Names::new("dashboards").product("UNKNOWN"), 1, 3))
        .await;
    // the components on the ports the stack's Prometheus scrapes (feed 9464, enrich 9465,
    // sink 9466), enrich and the sink left running while Prometheus is asked
    let service = |command: &str, port: u16| {
        run.chainflow(&[command])
            .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", format!("127.0.0.1:{port}"))
            .spawn()
    };
    let (enrich, sink) = (service("enrich", 9465), service("sink", 9466));
    let start = chrono::Utc::now().timestamp() - 1800;
    let start_text = chrono::DateTime::from_timestamp(start, 0).unwrap().to_rfc3339();
    let out = run
        .chainflow(&["feed", "--chains", "400", "--rate", "500", "--start", &start_text])
        .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", "127.0.0.1:9464")
        .output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run.db
        .wait_count("chain_snapshots", &format!("product = '{}'", run.product), 400, 120)
        .await;

    let expiry = run
        .db
        .rows(&format!(
            "SELECT toString(min(expiry)) AS e FROM chain_snapshots WHERE product = '{}'",
            run.product
        ))
        .await[0]["e"]
        .as_str()
        .unwrap()
        .to_string();
    let vars = BTreeMap::from([("product", run.product.clone()), ("expiry", expiry)]);
    let range = Range {
        from: start - 3600,
        to: start + 3600,
        interval_s: 60,
    };
    let mut sql = BTreeMap::new();
    let mut prom = Vec::new();
    for file in ["market-overview", "chain-explorer", "pipeline-health"] {
        let text = std::fs::read_to_string(format!("{ROOT}/ops/grafana/dashboards/{file}.json")).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}.json: {e}"));
        for (at, kind, text) in queries(&dashboard) {
            match kind.as_str() {
                "grafana-clickhouse-datasource" => {
                    sql.insert(format!("{file}: {at}"), expand(&text, &range, &vars));
                }
                "prometheus" => prom.push((format!("{file}: {at}"), text)),
                other => panic!("{file}: {at}: unknown datasource {other:?}"),
            }
        }
    }
    assert!(
        sql.len() >= 11 && prom.len() >= 10,
        "{} SQL, {} PromQL",
        sql.len(),
        prom.len()
    );

    // ClickHouse 18.16, then the current engine with the same rows
    let mut counts = BTreeMap::new();
    for (name, q) in &sql {
        let rows = run.db.rows(q).await;
        assert!(!rows.is_empty(), "{name}: no rows on ClickHouse 18.16\n{q}");
        counts.insert(name.clone(), rows.len());
    }
    let current = run
        .db
        .on_current_engine(&["chain_snapshots", "chain_options", "underlying_ticks"], &sql)
        .await;
    for (name, n) in &counts {
        assert_eq!(
            current[name].len(),
            *n,
            "{name}: rows on chdb against 18.16\n{}",
            sql[name]
        );
    }

    // Prometheus scraped the run: every expression has a series; a panel's range
    // (`$__range`, as Grafana expands it) is this test's time, so older runs do not count
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, expr) in &prom {
        loop {
            let range = format!("{}s", began.elapsed().as_secs() + 1);
            if !promql(&expr.replace("$__range", &range)).await.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no series from Prometheus for {expr}"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    for p in [enrich, sink] {
        let ended = p.terminate(Duration::from_secs(60));
        assert!(ended.status.success(), "{}", ended.stderr);
    }
}

#[test]
fn macros_expand_as_the_plugin_does() {
    let range = Range {
        from: 1_700_000_000,
        to: 1_700_003_600,
        interval_s: 30,
    };
    let vars = BTreeMap::from([("product", "NIFTY".to_string())]);
    assert_eq!(
        expand(
            "SELECT intDiv(toUInt32(t), $__interval_s) FROM x WHERE p = '${product}' AND $__timeFilter(t) AND u <= $__toTime AND u >= $__fromTime",
            &range,
            &vars
        ),
        "SELECT intDiv(toUInt32(t), 30) FROM x WHERE p = 'NIFTY' AND t >= toDateTime(1700000000) AND t <= \
         toDateTime(1700003600) AND u <= toDateTime(1700003600) AND u >= toDateTime(1700000000)"
    );
}
