//! `chainflow analyze` as a user runs it: a JSON chain in, the enriched chain out, no Kafka.

mod common;

use serde_json::Value;
use std::process::Output;

const CHAIN: &str = include_str!("fixtures/nifty_chain.json");

/// `chainflow analyze ARGS` with `stdin` on its standard input.
fn analyze(args: &[&str], stdin: Option<&str>) -> Output {
    common::chainflow(&["analyze"])
        .args(args)
        .output_with_input(stdin.unwrap_or(""))
}

fn fixture_path() -> String {
    format!("{}/tests/fixtures/nifty_chain.json", env!("CARGO_MANIFEST_DIR"))
}

fn analyzed(args: &[&str]) -> Value {
    let out = analyze(args, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the output is JSON")
}

/// A file with `text` in it, for one test.
fn file_with(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("chainflow-analyze-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn prints_every_input_field_with_analytics_and_metrics() {
    let input: Value = serde_json::from_str(CHAIN).unwrap();
    let out = analyzed(&[&fixture_path()]);
    for field in ["product", "expiry", "lot_size", "spot", "event_time", "seq"] {
        assert_eq!(out[field], input[field], "{field}");
    }
    let strikes = out["strikes"].as_array().unwrap();
    assert_eq!(strikes.len(), input["strikes"].as_array().unwrap().len());
    for (s, raw) in strikes.iter().zip(input["strikes"].as_array().unwrap()) {
        for side in ["call", "put"] {
            let (o, q) = (&s[side], &raw[side]);
            for f in ["bid", "ask", "last", "volume", "oi", "oi_change"] {
                assert_eq!(o[f], q[f], "{side} {f}");
            }
            assert_eq!(o["feed_iv"], q["iv"]);
            assert_eq!(o["price_source"], "MID");
            // the quotes were priced (by an independent script) at the feed's IV
            let (iv, want) = (o["iv"].as_f64().unwrap(), q["iv"].as_f64().unwrap());
            assert!((iv - want).abs() < 1e-9, "{} {side}: iv {iv} vs {want}", s["strike"]);
            for g in ["delta", "gamma", "theta", "vega", "rho"] {
                assert!(o[g].is_f64(), "{} {side} {g}", s["strike"]);
            }
        }
    }
    assert_eq!(out["atm_strike"], 21550.0);
    for metric in [
        "pcr_oi",
        "pcr_volume",
        "atm_straddle_price",
        "max_pain_strike",
        "atm_iv",
        "iv_skew_25d",
    ] {
        assert!(out[metric].is_f64(), "{metric}: {}", out[metric]);
    }
    for metric in [
        "total_call_oi",
        "total_put_oi",
        "call_oi_otm",
        "put_oi_otm",
        "call_buildup_otm",
        "put_buildup_otm",
    ] {
        assert!(out[metric].is_i64(), "{metric}");
    }
    // a put skew: 25-delta puts are dearer than 25-delta calls
    assert!(out["iv_skew_25d"].as_f64().unwrap() > 0.0);
    // provenance: NIFTY's configured parameters; 7 days 6¼ hours to the 15:30 IST close
    assert_eq!(
        (out["rate"].as_f64(), out["dividend_yield"].as_f64()),
        (Some(0.065), Some(0.012))
    );
    let t = out["time_to_expiry"].as_f64().unwrap();
    assert!((t - (7.0 + 6.25 / 24.0) / 365.0).abs() < 1e-15, "{t}");
    assert_eq!(out["analytics_version"], "2");
    assert!(out["processed_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn reads_standard_input() {
    let out = analyze(&[], Some(CHAIN));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_stdin: Value = serde_json::from_slice(&out.stdout).unwrap();
    let from_file = analyzed(&[&fixture_path()]);
    assert_eq!(from_stdin["strikes"], from_file["strikes"]);
    assert_eq!(from_stdin["atm_iv"], from_file["atm_iv"]);
    assert_eq!(from_stdin["source_topic"], "-");
}

#[test]
fn flags_override_the_products_parameters() {
    let base = analyzed(&[&fixture_path()]);
    let out = analyzed(&[&fixture_path(), "--rate", "0.08", "--dividend-yield", "0.0"]);
    assert_eq!(
        (out["rate"].as_f64(), out["dividend_yield"].as_f64()),
        (Some(0.08), Some(0.0))
    );
    assert_ne!(out["strikes"][0]["call"]["iv"], base["strikes"][0]["call"]["iv"]);
    // closing at 09:15 the same local time as the event: exactly 7 days
    let out = analyzed(&[&fixture_path(), "--expiry-close", "09:15"]);
    assert!((out["time_to_expiry"].as_f64().unwrap() - 7.0 / 365.0).abs() < 1e-15);
    // 15:30 in UTC is 5½ hours later than 15:30 in India
    let out = analyzed(&[&fixture_path(), "--time-zone", "UTC"]);
    let t = out["time_to_expiry"].as_f64().unwrap();
    assert!((t - (7.0 + 11.75 / 24.0) / 365.0).abs() < 1e-15, "{t}");
}

#[test]
fn malformed_input_is_refused_with_the_problem_named() {
    let cases = [
        ("not-json", "{\"product\": \"NIFTY\",\n \"spot\": }", "line 2 column"),
        (
            "bad-field",
            &CHAIN.replacen("\"bid\": 535.4853712864788", "\"bid\": \"cheap\"", 1),
            "strikes[0].call.bid",
        ),
        (
            "bad-time",
            &CHAIN.replace("2025-01-23T03:45:00.000000Z", "tomorrow"),
            "event_time",
        ),
        (
            "unknown-product",
            &CHAIN.replace("\"NIFTY\"", "\"NOPE\""),
            "unknown product \"NOPE\"",
        ),
        (
            "expired",
            &CHAIN.replace("\"expiry\": \"2025-01-30\"", "\"expiry\": \"2025-01-20\""),
            "expiry 2025-01-20 is before the event date 2025-01-23",
        ),
    ];
    for (name, text, expected) in cases {
        let out = analyze(&[&file_with(name, text)], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: accepted");
        assert!(out.stdout.is_empty(), "{name}: printed output");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    let out = analyze(&[&fixture_path(), "--expiry-close", "25:99"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--expiry-close"));
    let out = analyze(&["/nonexistent/chain.json"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/chain.json"));
}

#[test]
fn any_product_is_analyzed_when_the_flags_give_every_parameter() {
    let renamed = CHAIN.replace("\"NIFTY\"", "\"ACME\"");
    let file = file_with("acme", &renamed);
    let flags = [
        "--rate",
        "0.065",
        "--dividend-yield",
        "0.012",
        "--expiry-close",
        "15:30",
        "--time-zone",
        "Asia/Kolkata",
    ];
    let mut args = vec![file.as_str()];
    args.extend(flags);
    let out = analyzed(&args);
    let nifty = analyzed(&[&fixture_path()]);
    assert_eq!(out["product"], "ACME");
    // the same parameters as the configured NIFTY: the same analytics
    for field in ["strikes", "atm_iv", "iv_skew_25d", "max_pain_strike", "time_to_expiry"] {
        assert_eq!(out[field], nifty[field], "{field}");
    }
    // without some of them, the error says which are missing
    let out = analyze(&[&file, "--rate", "0.065", "--time-zone", "UTC"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown product \"ACME\"") && stderr.contains("missing: --dividend-yield, --expiry-close"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "the error is printed once: {stderr}");
}
