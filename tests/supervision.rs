//! One supervisor for every command, on the real stack: a stage that fails stops `chainflow
//! run` with exit code 1 naming it, a SIGTERM drains and exits 0 within the shutdown
//! timeout, and a second signal exits 130 at once. Needs the local stack (ops/stack.sh up).

mod common;

use chainflow_contract::topics::OPTION_CHAIN;
use common::{chainflow, free_port, group_at_end, stack, wait_http, Names};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn run_exits_1_naming_the_stage_that_cannot_reach_the_registry() {
    let names = Names::new("registry_down");
    let registry = format!("http://127.0.0.1:{}", free_port());
    let ended = chainflow(&["run", "--chains", "10"])
        .env("CHAINFLOW_REGISTRY__URL", &registry)
        .env("CHAINFLOW_CLICKHOUSE__DATABASE", names.database())
        .env("CHAINFLOW_ENRICH__GROUP_ID", names.group("enrich"))
        .env("CHAINFLOW_SINK__GROUP_ID", names.group("sink"))
        .env("CHAINFLOW_PIPELINE__STARTUP_TIMEOUT_MS", "2000")
        .spawn()
        .wait(Duration::from_secs(60));
    drop_database(&names).await;
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    let error = ended
        .stderr
        .lines()
        .find(|l| l.starts_with("chainflow: error:"))
        .unwrap_or_else(|| panic!("no error line: {}", ended.stderr));
    // the feed and enrich both need the registry at start; whichever gives up first is named
    let named = ["feed", "enrich"].iter().any(|s| {
        error.starts_with(&format!(
            "chainflow: error: stage {s} failed: the Schema Registry: not reachable within 2000 ms"
        ))
    });
    assert!(named, "{error}");
    assert!(ended.took < Duration::from_secs(20), "took {:?}", ended.took);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_a_ready_stage_and_exits_0() {
    let cfg = stack();
    let names = Names::new("sigterm");
    let group = names.group("enrich");
    group_at_end(&cfg, &group, OPTION_CHAIN).await;
    let port = free_port();
    let enrich = chainflow(&["enrich"])
        .env("CHAINFLOW_ENRICH__GROUP_ID", &group)
        .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .spawn();
    wait_http(&format!("http://127.0.0.1:{port}/readyz"), 60).await;
    let ended = enrich.terminate(Duration::from_secs(35));
    assert_eq!(ended.status.code(), Some(0), "{}", ended.stderr);
    assert!(ended.took < Duration::from_secs(30), "shutdown took {:?}", ended.took);
    assert!(!ended.stderr.contains("chainflow: error"), "{}", ended.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_130_at_once() {
    let names = Names::new("second_signal");
    let cfg = stack();
    group_at_end(&cfg, &names.group("enrich"), OPTION_CHAIN).await;
    common::sink_groups_at_end(&cfg, &names.group("sink")).await;
    let port = free_port();
    // unbounded, with a sink that holds what it reads until it is stopped: after the first
    // Ctrl-C the run waits for chains that cannot become queryable
    let run = chainflow(&["run", "--rate", "50"])
        .args(&[
            "--set",
            "sink.batch_ms=600000",
            "--set",
            "sink.batch_rows=100000000",
            "--set",
            "sink.batch_bytes=1000000000",
            "--set",
            "sink.stall_after_ms=1200000",
        ])
        .env("CHAINFLOW_CLICKHOUSE__DATABASE", names.database())
        .env("CHAINFLOW_ENRICH__GROUP_ID", names.group("enrich"))
        .env("CHAINFLOW_SINK__GROUP_ID", names.group("sink"))
        .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .spawn();
    wait_http(&format!("http://127.0.0.1:{port}/readyz"), 60).await;
    run.signal("INT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.signal("INT");
    let ended = run.wait(Duration::from_secs(10));
    drop_database(&names).await;
    assert_eq!(ended.status.code(), Some(130), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("stopping at once, without committing"),
        "{}",
        ended.stderr
    );
}

/// Drops the test's database, if the run created it.
async fn drop_database(names: &Names) {
    let cfg = stack();
    chainflow_clickhouse::client(&cfg.clickhouse)
        .query(&format!("DROP DATABASE IF EXISTS {}", names.database()))
        .execute()
        .await
        .expect("dropping the test database");
}
