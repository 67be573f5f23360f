//! The topic contract as downstream teams use it (docs/topics.md): the example consumers in
//! Rust and Python print what was produced; a v2 schema with one optional field more and
//! the v1 schema read each other's records, with chainflow's registry and Confluent's
//! Python client, and the sink stores what it knows of a v2 record; `chainflow schemas
//! check` passes on the contract and fails, naming the subject and the field, on an
//! incompatible change. Needs the local stack (ops/stack.sh up), `cargo build --example
//! consume` (ops/test.sh does it) and the Python tools of ops/install.sh.

mod common;

use chainflow_contract::topics::{OPTION_CHAIN, UNDERLYING};
use chainflow_contract::Record;
use common::{chain, chainflow, stack, tick, Database, Names, Producer};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The example consumer built by `cargo build --example consume`, beside this test's binary.
fn rust_example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("examples/consume");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --example consume`",
        path.display()
    );
    path
}

/// The JSON lines of a successful run.
fn lines(what: &str, out: &Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {e}: {l}")))
        .collect()
}

/// The arguments both example consumers take: the stack, where to start, how many.
fn consumer_args(topic: &str, partition: i32, offset: i64, count: usize) -> Vec<String> {
    let cfg = stack();
    [
        "--bootstrap",
        &cfg.kafka.bootstrap_servers,
        "--registry",
        &cfg.registry.url,
        "--partition",
        &partition.to_string(),
        "--offset",
        &offset.to_string(),
        "--count",
        &count.to_string(),
        topic,
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `examples/consume.py` on `count` records of `topic` from `partition:offset`.
fn python(topic: &str, partition: i32, offset: i64, count: usize, reader: Option<&str>) -> Vec<Value> {
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{ROOT}/examples/consume.py"))
        .args(consumer_args(topic, partition, offset, count));
    if let Some(r) = reader {
        cmd.args(["--reader-schema", r]);
    }
    lines("examples/consume.py", &cmd.output().expect("python3 runs"))
}

/// Runs the Rust example on `count` records of `topic` from `partition:offset`.
fn rust(topic: &str, partition: i32, offset: i64, count: usize) -> Vec<Value> {
    let out = Command::new(rust_example())
        .args(consumer_args(topic, partition, offset, count))
        .output()
        .expect("the example runs");
    lines("examples/consume", &out)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_consumers_in_rust_and_python_print_what_was_produced() {
    let cfg = stack();
    let names = Names::new("consumers");
    let product = names.product("CON");
    let producer = Producer::new(&cfg);
    let mut at = Vec::new();
    for seq in 1..=3 {
        let t = tick(&product, seq, 100.0 + seq as f64 / 4.0);
        let bytes = producer.encode(&t).await;
        at.push(producer.send_raw(UNDERLYING, &t.key(), &bytes).await);
    }
    let c = chain(&product, 7, 3);
    let bytes = producer.encode(&c).await;
    let (cp, co) = producer.send_raw(OPTION_CHAIN, &c.key(), &bytes).await;

    let (p, o) = at[0];
    for (who, got) in [
        ("rust", rust(UNDERLYING, p, o, 3)),
        ("python", python(UNDERLYING, p, o, 3, None)),
    ] {
        assert_eq!(got.len(), 3, "{who}");
        for (i, v) in got.iter().enumerate() {
            let seq = i as i64 + 1;
            assert_eq!(v["product"], product.as_str(), "{who}: {v}");
            assert_eq!(v["seq"].as_i64(), Some(seq), "{who}: {v}");
            assert_eq!(v["price"].as_f64(), Some(100.0 + seq as f64 / 4.0), "{who}: {v}");
            assert_eq!(v["volume"].as_i64(), Some(seq * 100), "{who}: {v}");
            assert_eq!(
                v["event_time"],
                format!("2025-01-30T09:15:0{seq}.000000Z"),
                "{who}: {v}"
            );
        }
    }
    // a nested record, with a date: the same in both languages and in `chainflow tail`
    let rust_chain = rust(OPTION_CHAIN, cp, co, 1).remove(0);
    let python_chain = python(OPTION_CHAIN, cp, co, 1, None).remove(0);
    assert_eq!(rust_chain, python_chain);
    assert_eq!(rust_chain["expiry"], "2025-01-30");
    assert_eq!(rust_chain["strikes"].as_array().map(Vec::len), Some(3));
    let strike = &rust_chain["strikes"][1];
    assert_eq!(strike["strike"].as_f64(), Some(c.strikes[1].strike));
    assert_eq!(strike["call"]["bid"].as_f64(), Some(c.strikes[1].call.bid));
    let from = format!("{cp}:{co}");
    let tail = chainflow(&["tail", OPTION_CHAIN, "--from", &from, "--max", "1"]).output();
    assert_eq!(lines("chainflow tail", &tail)[0]["strikes"], rust_chain["strikes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v2_schema_and_v1_read_each_other_and_the_sink_stores_what_it_knows() {
    let cfg = stack();
    let names = Names::new("evolution");
    let db = Database::create(&names);
    let product = names.product("EVO");
    let v1 = format!("{ROOT}/contract/avro/underlying_tick.avsc");
    let v2 = format!("{ROOT}/tests/fixtures/avro/v2/underlying_tick.avsc");

    // another team's producer, on v2 (registered under market.underlying-value as it goes)
    let value = serde_json::json!({
        "product": product, "price": 101.5, "volume": 700, "event_time": 1_738_228_501_000_000_i64,
        "seq": 1, "venue": "NSE",
    })
    .to_string();
    let out = Command::new("python3")
        .arg(format!("{ROOT}/tests/produce_avro.py"))
        .args([
            &cfg.kafka.bootstrap_servers,
            &cfg.registry.url,
            UNDERLYING,
            &product,
            &v2,
            &value,
        ])
        .output()
        .expect("python3 runs");
    let at = &lines("tests/produce_avro.py", &out)[0];
    let (p, o) = (at["partition"].as_i64().unwrap() as i32, at["offset"].as_i64().unwrap());

    // v1 readers: chainflow itself, and Confluent's client given the v1 schema
    let from = format!("{p}:{o}");
    let tail = chainflow(&["tail", UNDERLYING, "--from", &from, "--max", "1"]).output();
    let seen = lines("chainflow tail", &tail).remove(0);
    assert_eq!(
        (seen["price"].as_f64(), seen.get("venue")),
        (Some(101.5), None),
        "{seen}"
    );
    let seen = python(UNDERLYING, p, o, 1, Some(&v1)).remove(0);
    assert_eq!(
        (seen["price"].as_f64(), seen.get("venue")),
        (Some(101.5), None),
        "{seen}"
    );
    // the writer's schema, as a reader that follows the registry sees it
    assert_eq!(rust(UNDERLYING, p, o, 1)[0]["venue"], "NSE");

    // the reverse: a v1 record (chainflow's producer) read with v2 gets the default
    let t = tick(&product, 2, 102.0);
    let bytes = Producer::new(&cfg).encode(&t).await;
    let (p1, o1) = Producer::new(&cfg).send_raw(UNDERLYING, &t.key(), &bytes).await;
    let seen = python(UNDERLYING, p1, o1, 1, Some(&v2)).remove(0);
    assert_eq!(
        (seen["seq"].as_i64(), &seen["venue"]),
        (Some(2), &Value::Null),
        "{seen}"
    );

    // the sink stores the fields its table has and ignores the new one
    let to = format!("{p}:{}", o + 1);
    let out = chainflow(&["replay", UNDERLYING, "--from", &from, "--to", &to])
        .env("CHAINFLOW_CLICKHOUSE__DATABASE", &db.name)
        .output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = db
        .count(
            "underlying_ticks",
            true,
            &format!("product = '{product}' AND seq = 1 AND price = 101.5 AND volume = 700"),
        )
        .await;
    assert_eq!(stored, 1);

    // and the registry holds both versions, the contract's still compatible with the latest
    let check = chainflow(&["schemas", "check"]).output();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains("market.underlying-value (FULL): compatible with the registry's latest"),
        "{stdout}"
    );
}

#[test]
fn schemas_check_passes_on_the_contract_and_names_the_subject_and_field_of_a_breaking_change() {
    let ok = chainflow(&["schemas", "check", "--offline"]).output();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    for topic in [
        "market.underlying",
        "market.option_quote",
        "market.option_chain",
        "enriched.option_chain",
    ] {
        assert!(
            stdout.contains(&format!("{topic}-value (FULL): compatible with the released schema")),
            "{stdout}"
        );
    }
    // one optional field more: fine both ways
    let v2 = format!("{ROOT}/tests/fixtures/avro/v2");
    let out = chainflow(&["schemas", "check", "--offline", "--schemas", &v2]).output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // a field without a default dropped: readers of the released schema would fail
    let bad = format!("{ROOT}/tests/fixtures/avro/incompatible");
    let out = chainflow(&["schemas", "check", "--offline", "--schemas", &bad]).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("market.underlying-value") && stderr.contains("'volume'") && stderr.contains("default"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("market.option_quote"),
        "only the changed subject: {stderr}"
    );
}
