//! The command line's manners, with nothing else running: exit codes (0 clean stop, 1
//! runtime error, 2 usage or configuration error), each error printed once with its causes,
//! log formats, and `config check`.

mod common;

use common::{chainflow, free_port};
use std::time::Duration;

/// The lines of standard error that report the command's error.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("chainflow: ")).collect()
}

#[test]
fn an_invalid_setting_exits_2_naming_the_field_once() {
    let out = chainflow(&["sink"]).env("CHAINFLOW_SINK__BATCH_MS", "0").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        error_lines(&stderr),
        ["chainflow: invalid configuration: sink.batch_ms: must be at least 1"]
    );
    let out = chainflow(&["config", "check"])
        .args(&["--set", "kafka.partitions=many"])
        .output();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kafka.partitions"));
}

#[test]
fn a_usage_error_exits_2() {
    let out = chainflow(&["feed", "--speed", "0"]).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--speed"), "{stderr}");
    let out = chainflow(&["migrate", "--print-for", "latest"]).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        error_lines(&stderr),
        ["chainflow: error: --print-for: expected MAJOR.MINOR, got \"latest\""]
    );
}

#[test]
fn a_stage_that_cannot_reach_its_dependency_exits_1_within_the_startup_timeout_naming_it() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let ended = chainflow(&["sink"])
        .env("CHAINFLOW_CLICKHOUSE__URL", &url)
        .env("CHAINFLOW_PIPELINE__STARTUP_TIMEOUT_MS", "1500")
        .spawn()
        .wait(Duration::from_secs(20));
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    // the sink is a stage per stream; whichever gives up first is named
    let expected = format!(
        " failed: ClickHouse at {url}: not reachable within 1500 ms of start \
         (pipeline.startup_timeout_ms): asking ClickHouse for its version"
    );
    let errors = error_lines(&ended.stderr);
    assert_eq!(errors.len(), 1, "the error is printed once: {}", ended.stderr);
    let stream = errors[0]
        .strip_prefix("chainflow: error: stage sink.")
        .and_then(|rest| rest.split_once(' '))
        .map(|(stream, _)| stream);
    assert!(
        matches!(stream, Some("chains" | "ticks" | "quotes" | "dead_letters")),
        "{}",
        ended.stderr
    );
    assert!(errors[0].contains(&expected), "{}", ended.stderr);
    assert!(ended.took < Duration::from_secs(10), "took {:?}", ended.took);
}

#[test]
fn a_shutdown_request_while_connecting_exits_0() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let sink = chainflow(&["sink"])
        .env("CHAINFLOW_CLICKHOUSE__URL", &url)
        .env("CHAINFLOW_PIPELINE__STARTUP_TIMEOUT_MS", "60000")
        .spawn();
    std::thread::sleep(Duration::from_millis(700));
    let ended = sink.terminate(Duration::from_secs(10));
    assert_eq!(ended.status.code(), Some(0), "{}", ended.stderr);
    assert!(error_lines(&ended.stderr).is_empty(), "{}", ended.stderr);
}

/// The log lines of a sink that cannot reach ClickHouse, with `flag` and `env` setting the
/// format.
fn log_lines(flag: Option<&str>, env: Option<&str>) -> Vec<String> {
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = chainflow(&["sink"])
        .env("CHAINFLOW_CLICKHOUSE__URL", &url)
        .env("CHAINFLOW_PIPELINE__STARTUP_TIMEOUT_MS", "700")
        .env_remove("CHAINFLOW_OBSERVABILITY__LOG_FORMAT");
    if let Some(f) = flag {
        cmd = cmd.args(&["--log-format", f]);
    }
    if let Some(e) = env {
        cmd = cmd.env("CHAINFLOW_OBSERVABILITY__LOG_FORMAT", e);
    }
    let ended = cmd.spawn().wait(Duration::from_secs(20));
    let lines: Vec<String> = ended
        .stderr
        .lines()
        .filter(|l| !l.starts_with("chainflow: error:"))
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "no log lines: {}", ended.stderr);
    lines
}

fn all_json(lines: &[String]) -> bool {
    lines
        .iter()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
}

#[test]
fn logs_are_json_off_a_terminal_and_the_flag_wins_over_the_environment() {
    // auto, with standard error a pipe
    assert!(all_json(&log_lines(None, None)));
    assert!(!all_json(&log_lines(None, Some("text"))));
    assert!(all_json(&log_lines(Some("json"), Some("text"))));
    assert!(!all_json(&log_lines(Some("text"), Some("json"))));
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let out = chainflow(&["config", "check", "--print"])
        .env("CHAINFLOW_CLICKHOUSE__PASSWORD", "ch-s3cr3t")
        .env("CHAINFLOW_KAFKA__PROPERTIES__SASL_PASSWORD", "sasl-s3cr3t")
        .env("CHAINFLOW_REGISTRY__PASSWORD", "reg-s3cr3t")
        .args(&["--set", "sink.batch_rows=77"])
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("configuration is valid"), "{stdout}");
    assert!(stdout.contains("batch_rows = 77"), "{stdout}");
    assert!(stdout.contains("\"sasl.password\" = \"***\""), "{stdout}");
    for secret in ["ch-s3cr3t", "sasl-s3cr3t", "reg-s3cr3t"] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
}

#[test]
fn every_command_the_deployment_guide_names_exists_with_its_flags() {
    let mut named = 0;
    for token in include_str!("../docs/deploy.md").split('`').skip(1).step_by(2) {
        let Some(rest) = token.strip_prefix("chainflow ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let mut args: Vec<&str> = words
            .iter()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            .copied()
            .collect();
        args.push("--help");
        let out = chainflow(&args).output();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{token}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            assert!(
                help.contains(flag),
                "docs/deploy.md: `{token}`: `chainflow {}` has no {flag}",
                args.join(" ")
            );
        }
        named += 1;
    }
    assert!(named >= 5, "only {named} commands found in docs/deploy.md");
}
