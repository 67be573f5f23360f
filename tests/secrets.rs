//! Secrets never reach a terminal: each start-up path is run with a recognisable secret,
//! and everything the process prints (standard output and error, at the most verbose log
//! level) is searched for it, raw and base64-encoded as basic auth would carry it. Needs
//! nothing running: the services these paths talk to are loopback ports nobody listens on.

mod common;

use base64::Engine;
use common::chainflow;
use std::process::Output;

/// The secret, as a number: it used to be refused as "invalid type: integer", quoted.
const SECRET: &str = "918273645";

/// A port on loopback that nobody listens on.
const CLOSED: &str = "127.0.0.1:1";

/// Everything `out` printed.
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that nothing `out` printed holds the secret, in any form a client sends it.
fn assert_hidden(what: &str, out: &Output) {
    let text = printed(out);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("u:{SECRET}"));
    assert!(
        !text.contains(SECRET) && !text.contains(&basic),
        "{what} printed the secret:\n{text}"
    );
}

fn file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("chainflow-secrets-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).expect("writing the file");
    path
}

#[test]
fn numeric_and_boolean_passwords_are_taken_as_text_from_every_source() {
    // the environment and --set
    let out = chainflow(&["config", "check", "--print", "--set", "registry.password=true"])
        .env("CHAINFLOW_CLICKHOUSE__PASSWORD", SECRET)
        .env("CHAINFLOW_KAFKA__PROPERTIES__SASL_PASSWORD", SECRET)
        .env("RUST_LOG", "trace")
        .output();
    assert!(out.status.success(), "{}", printed(&out));
    assert_hidden("config check", &out);
    assert!(printed(&out).contains("password = \"***\""), "{}", printed(&out));
    // an integer in the file
    let toml = file("integer", &format!("[clickhouse]\npassword = {SECRET}\n"));
    let out = chainflow(&["config", "check", "--print"]).config(&toml).output();
    assert!(out.status.success(), "{}", printed(&out));
    assert_hidden("config check of an integer password", &out);
}

#[test]
fn configuration_errors_name_the_field_and_not_the_secret() {
    // an unknown field next to a secret
    let toml = file(
        "unknown",
        &format!("[clickhouse]\npassword = \"{SECRET}\"\npasword = \"{SECRET}\"\n"),
    );
    let out = chainflow(&["config", "check"]).config(&toml).output();
    assert_eq!(out.status.code(), Some(2));
    assert!(printed(&out).contains("pasword"), "{}", printed(&out));
    assert_hidden("an unknown field", &out);
    // a line the TOML parser cannot read
    let toml = file("syntax", &format!("[clickhouse]\npassword = {SECRET}x\n"));
    let out = chainflow(&["config", "check"]).config(&toml).output();
    assert_eq!(out.status.code(), Some(2));
    assert!(printed(&out).contains("line 2"), "{}", printed(&out));
    assert_hidden("a syntax error", &out);
    // credentials in URLs are refused, naming where they go instead
    for (set, field) in [
        (
            format!("clickhouse.url=http://default:{SECRET}@127.0.0.1:8123"),
            "clickhouse.password",
        ),
        (
            format!("registry.url=https://u:{SECRET}@127.0.0.1:8081"),
            "registry.password",
        ),
    ] {
        let out = chainflow(&["config", "check", "--set", &set]).output();
        assert_eq!(out.status.code(), Some(2), "{set}");
        assert!(printed(&out).contains(field), "{}", printed(&out));
        assert_hidden(&set, &out);
    }
}

#[test]
fn unreachable_services_are_reported_without_the_secret() {
    // ClickHouse
    let out = chainflow(&["migrate"])
        .env("CHAINFLOW_CLICKHOUSE__URL", format!("http://{CLOSED}"))
        .env("CHAINFLOW_CLICKHOUSE__PASSWORD", SECRET)
        .env("RUST_LOG", "trace")
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    assert!(printed(&out).contains("clickhouse.url"), "{}", printed(&out));
    assert_hidden("migrate", &out);
    // the Schema Registry, with basic auth
    let out = chainflow(&["feed", "--chains", "1"])
        .env("CHAINFLOW_KAFKA__BOOTSTRAP_SERVERS", CLOSED)
        .env("CHAINFLOW_REGISTRY__URL", format!("http://{CLOSED}"))
        .env("CHAINFLOW_REGISTRY__USERNAME", "u")
        .env("CHAINFLOW_REGISTRY__PASSWORD", SECRET)
        .env("CHAINFLOW_PIPELINE__STARTUP_TIMEOUT_MS", "2000")
        .env("RUST_LOG", "trace")
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    assert!(printed(&out).contains("Schema Registry"), "{}", printed(&out));
    assert_hidden("feed", &out);
    // Kafka, with a SASL password and librdkafka's own configuration dump
    let out = chainflow(&["topics"])
        .env("CHAINFLOW_KAFKA__BOOTSTRAP_SERVERS", CLOSED)
        .env("CHAINFLOW_KAFKA__PROPERTIES__SASL_PASSWORD", SECRET)
        .env("CHAINFLOW_KAFKA__PROPERTIES__DEBUG", "conf")
        .env("RUST_LOG", "debug")
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    assert!(
        printed(&out).contains("kafka client settings") && printed(&out).contains("sasl.password=***"),
        "the client's settings are logged, redacted:\n{}",
        printed(&out)
    );
    assert_hidden("topics", &out);
}
