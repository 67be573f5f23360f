//! The operator's tools on the local stack, run as a user runs them (the commands of
//! docs/operations.md): replay by offsets and by time, idempotent and restoring a
//! truncated table row for row; reprocessing raw chains that rewrites exactly its range and
//! writes nothing to the enriched topic unless asked; the tail with its filters and
//! undecodable records; group lag and resets; and a redrive of dead letters after a fix.
//! Needs the local stack (ops/stack.sh up).

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_config::default_products;
use chainflow_contract::topics::{dlq, ENRICHED_CHAIN, OPTION_CHAIN, UNDERLYING};
use chainflow_contract::Record;
use common::{chain, chainflow, consumer, ends, group_at_end, product_config, stack, tick, Database, Names, Producer};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::process::Output;
use std::time::{Duration, Instant};

/// Runs `chainflow ARGS` against `db`, expecting success; its standard output.
fn run(db: &str, args: &[&str]) -> String {
    let out = chainflow(args).env("CHAINFLOW_CLICKHOUSE__DATABASE", db).output();
    expect_success(args, &out)
}

fn expect_success(args: &[&str], out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chainflow {}: {stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One JSON value per line of `text`.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `SELECT query` as text (one value).
async fn scalar(db: &Database, query: &str) -> String {
    db.client
        .query(query)
        .fetch_one::<String>()
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// The rows of `product` in `underlying_ticks FINAL`: count and a checksum of every column.
async fn ticks_state(db: &Database, product: &str) -> String {
    scalar(
        db,
        &format!(
            "SELECT concat(toString(count()), '/', toString(groupBitXor(cityHash64(product, event_time_us, seq, \
             price, volume, source_partition, source_offset, version)))) FROM underlying_ticks FINAL \
             WHERE product = '{product}'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_by_offsets_and_time_is_idempotent_and_restores_a_truncated_table() {
    let cfg = stack();
    let names = Names::new("replay");
    let db = Database::create(&names);
    let product = names.product("RPL");
    let producer = Producer::new(&cfg);
    // batch A, then a moment later batch B: their Kafka timestamps are apart
    let mut sent = Vec::new();
    for seq in 1..=20 {
        let bytes = producer.encode(&tick(&product, seq, 100.0 + seq as f64)).await;
        sent.push(producer.send_raw(UNDERLYING, &product, &bytes).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for seq in 21..=40 {
        let bytes = producer.encode(&tick(&product, seq, 100.0 + seq as f64)).await;
        sent.push(producer.send_raw(UNDERLYING, &product, &bytes).await);
    }
    let p = sent[0].0;
    assert!(sent.iter().all(|s| s.0 == p), "one key, one partition");
    let (first, last) = (sent[0].1, sent[39].1);
    let in_db = |condition: &str| {
        let condition = format!("product = '{product}' AND {condition}");
        let db = &db;
        async move { db.count("underlying_ticks", true, &condition).await }
    };

    // by offsets: batch A only
    let a = format!("{p}:{first}");
    let a_end = format!("{p}:{}", sent[19].1 + 1);
    let out = run(&db.name, &["replay", UNDERLYING, "--from", &a, "--to", &a_end]);
    assert!(out.contains("wrote 20 record(s)"), "{out}");
    assert_eq!(in_db("seq BETWEEN 1 AND 20").await, 20);
    assert_eq!(in_db("1").await, 20, "nothing of batch B yet");

    // by time, on the partition: batch B (and whatever else followed it there: not ours)
    let t = between.to_rfc3339();
    let p_text = p.to_string();
    let out = run(&db.name, &["replay", UNDERLYING, "--from", &t, "--partition", &p_text]);
    assert!(out.contains(&format!("offsets {}..", sent[20].1)), "{out}");
    assert_eq!(in_db("seq BETWEEN 21 AND 40").await, 20);
    assert_eq!(in_db("1").await, 40);
    // an event-time filter keeps only its window
    let state = ticks_state(&db, &product).await;
    let window = run(
        &db.name,
        &[
            "replay",
            UNDERLYING,
            "--from",
            &a,
            "--to",
            &format!("{p}:{}", last + 1),
            "--event-from",
            "2025-01-30T09:15:05Z",
            "--event-to",
            "2025-01-30T09:15:10Z",
        ],
    );
    assert!(
        window.contains("wrote 5 record(s)") && window.contains("35 record(s) outside"),
        "{window}"
    );

    // replaying what is stored changes nothing a FINAL query sees
    let all_from = format!("{p}:{first}");
    let all_to = format!("{p}:{}", last + 1);
    run(&db.name, &["replay", UNDERLYING, "--from", &all_from, "--to", &all_to]);
    assert_eq!(ticks_state(&db, &product).await, state);
    assert!(state.starts_with("40/"), "{state}");

    // a lost table is restored row for row
    db.client
        .query("TRUNCATE TABLE underlying_ticks")
        .execute()
        .await
        .unwrap();
    assert_eq!(in_db("1").await, 0);
    run(&db.name, &["replay", UNDERLYING, "--from", &all_from, "--to", &all_to]);
    assert_eq!(
        ticks_state(&db, &product).await,
        state,
        "the same rows, the same checksum"
    );

    // a dry run says what it would read, and writes nothing
    db.client
        .query("TRUNCATE TABLE underlying_ticks")
        .execute()
        .await
        .unwrap();
    let dry = run(
        &db.name,
        &["replay", UNDERLYING, "--from", &all_from, "--to", &all_to, "--dry-run"],
    );
    assert!(
        dry.contains("40 record(s) in 1 partition(s)") && dry.contains("nothing written"),
        "{dry}"
    );
    assert_eq!(in_db("1").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_before_the_low_watermark_is_announced_and_bad_requests_say_why() {
    let cfg = stack();
    let names = Names::new("horizon");
    let topic = dlq(&names.topic("horizon"));
    let admin: AdminClient<DefaultClientContext> = chainflow_kafka::producer_config(&cfg.kafka).create().unwrap();
    admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let producer = Producer::new(&cfg);
    for i in 0..10 {
        producer.send_raw(&topic, "k", format!("letter {i}").as_bytes()).await;
    }
    let mut cut = TopicPartitionList::new();
    cut.add_partition_offset(&topic, 0, Offset::Offset(4)).unwrap();
    admin.delete_records(&cut, &AdminOptions::new()).await.unwrap();
    let out = chainflow(&["replay", &topic, "--dry-run"]).output();
    let stdout = expect_success(&["replay"], &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("offsets 4..10 (6 records"), "{stdout}");
    assert!(
        stderr.contains("warning: partition 0") && stderr.contains("deleted"),
        "{stderr}"
    );
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;

    // mistakes are usage errors that say what to do
    for (args, says) in [
        (vec!["replay", OPTION_CHAIN], "--reprocess"),
        (vec!["replay", UNDERLYING, "--reprocess"], "--reprocess applies to"),
        (vec!["replay", "_schemas"], "not _schemas"),
        (vec!["replay", UNDERLYING, "--from", "yesterday"], "RFC 3339"),
        (vec!["replay", UNDERLYING, "--partition", "999"], "no partition 999"),
    ] {
        let out = chainflow(&args).output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// The rows of `product` in `chain_snapshots FINAL`, by second after [`EVENT_US`]: the
/// rate used and the version.
async fn chain_rates(db: &Database, product: &str) -> Vec<(i64, f64, u64, String)> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct R {
        seq: i64,
        rate: f64,
        version: u64,
        analytics_version: String,
    }
    db.client
        .query(&format!(
            "SELECT seq, rate, version, analytics_version FROM chain_snapshots FINAL WHERE product = '{product}' \
             ORDER BY seq"
        ))
        .fetch_all::<R>()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, r.rate, r.version, r.analytics_version))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reprocessing_rewrites_exactly_its_range_and_the_enriched_topic_only_when_asked() {
    let cfg = stack();
    let names = Names::new("reprocess");
    let db = Database::create(&names);
    let product = names.product("RPR");
    let mut params = default_products().remove("NIFTY").unwrap();
    params.rate = 0.065;
    let config = product_config(&product, &params);
    let config_text = config.display().to_string();
    let producer = Producer::new(&cfg);
    let mut sent = Vec::new();
    for seq in 0..10 {
        let c = chain(&product, seq, 11);
        let bytes = producer.encode(&c).await;
        sent.push(producer.send_raw(OPTION_CHAIN, &c.key(), &bytes).await);
    }
    let p = sent[0].0;
    assert!(sent.iter().all(|s| s.0 == p), "one key, one partition");
    let reader = consumer(&cfg, "reprocess-test");
    let partitions = 6;
    let enriched_before = ends(&reader, ENRICHED_CHAIN, partitions).await;
    let from = format!("{p}:{}", sent[0].1);
    let to = format!("{p}:{}", sent[9].1 + 1);
    let cf = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            config_text.as_str(),
            "replay",
            OPTION_CHAIN,
            "--reprocess",
            "--from",
        ];
        args.extend([from.as_str(), "--to", to.as_str()]);
        args.extend(extra);
        args.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()
    };
    let args = cf(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&db.name, &args);
    assert!(out.contains("wrote 10 record(s) as 230 row(s)"), "{out}");
    let before = chain_rates(&db, &product).await;
    assert_eq!(before.len(), 10);
    assert!(before.iter().all(|r| r.1 == 0.065 && !r.3.is_empty()), "{before:?}");
    assert_eq!(
        db.count("chain_options", true, &format!("product = '{product}'")).await,
        220
    );

    // another rate, on seconds 3 to 6 only: those rows change, no others
    let args = cf(&[
        "--event-from",
        "2025-01-23T03:45:03Z",
        "--event-to",
        "2025-01-23T03:45:07Z",
        "--set",
        &format!("products.{product}.rate=0.09"),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&db.name, &args);
    assert!(
        out.contains("wrote 4 record(s)") && out.contains("6 record(s) outside"),
        "{out}"
    );
    let after = chain_rates(&db, &product).await;
    assert_eq!(after.len(), 10, "replaced, not added");
    for (old, new) in before.iter().zip(&after) {
        if (3..7).contains(&new.0) {
            assert_eq!(new.1, 0.09, "{new:?}");
            assert!(
                new.2 > old.2,
                "the reprocess time is the newer version: {old:?} {new:?}"
            );
        } else {
            assert_eq!(old, new, "outside the range nothing changes");
        }
    }
    assert_eq!(
        db.count("chain_options", true, &format!("product = '{product}'")).await,
        220
    );
    assert_eq!(
        ends(&reader, ENRICHED_CHAIN, partitions).await,
        enriched_before,
        "nothing was sent to {ENRICHED_CHAIN}"
    );

    // with --to-topic the enriched chains go to the topic as well; replaying them into
    // another database gives the same rows
    let args = cf(&["--to-topic"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&db.name, &args);
    let enriched_after = ends(&reader, ENRICHED_CHAIN, partitions).await;
    assert_eq!(
        enriched_after[p as usize],
        enriched_before[p as usize] + 10,
        "to the raw chains' partition"
    );
    let other = Database::create(&Names::new("reprocess_copy"));
    let from_e = format!("{p}:{}", enriched_before[p as usize]);
    let to_e = format!("{p}:{}", enriched_after[p as usize]);
    let out = run(
        &other.name,
        &["replay", ENRICHED_CHAIN, "--from", &from_e, "--to", &to_e],
    );
    assert!(out.contains("wrote 10 record(s) as 230 row(s)"), "{out}");
    assert_eq!(chain_rates(&other, &product).await, chain_rates(&db, &product).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_filters_by_key_and_prints_undecodable_records_with_their_bytes() {
    let cfg = stack();
    let names = Names::new("tail");
    let (one, two) = (names.product("TLA"), names.product("TLB"));
    let producer = Producer::new(&cfg);
    let mut first = None;
    for seq in 1..=4 {
        for p in [&one, &two] {
            let bytes = producer.encode(&tick(p, seq, 50.0)).await;
            let at = producer.send_raw(UNDERLYING, &one, &bytes).await; // one key: one partition
            first.get_or_insert(at);
        }
    }
    let garbage = producer.send_raw(UNDERLYING, &one, b"not avro").await;
    let (p, start) = first.unwrap();
    let from = format!("{p}:{start}");
    let out = run("default", &["tail", UNDERLYING, "--from", &from]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 9, "{out}");
    let products: Vec<&str> = lines[..8].iter().map(|l| l["product"].as_str().unwrap()).collect();
    assert_eq!(products.iter().filter(|p| **p == two).count(), 4);
    assert_eq!(lines[0]["event_time"], "2025-01-30T09:15:01.000000Z");
    let bad = &lines[8];
    assert!(bad["undecodable"].as_str().unwrap().contains("magic byte"), "{bad}");
    assert_eq!(bad["value_base64"], "bm90IGF2cm8=");

    // --max, --with-meta: where each record is
    let out = run(
        "default",
        &["tail", UNDERLYING, "--from", &from, "--max", "3", "--with-meta"],
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["partition"].as_i64(), Some(i64::from(p)));
        assert_eq!(l["offset"].as_i64(), Some(start + i as i64));
        assert_eq!(l["key"], one.as_str());
        assert!(l["value"]["price"].is_number() && l["timestamp"].is_string(), "{l}");
    }
    let last = run(
        "default",
        &[
            "tail",
            UNDERLYING,
            "--from",
            &format!("{p}:{}", garbage.1),
            "--with-meta",
        ],
    );
    assert_eq!(json_lines(&last)[0]["offset"].as_i64(), Some(garbage.1));

    // --follow prints what arrives after it started
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_chainflow"))
        .args([
            "tail",
            UNDERLYING,
            "--from",
            "latest",
            "--partition",
            &p.to_string(),
            "--follow",
            "--max",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bytes = producer.encode(&tick(&two, 99, 51.0)).await;
    producer.send_raw(UNDERLYING, &one, &bytes).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while follower.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tail --follow printed nothing within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = follower.wait_with_output().unwrap();
    let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!((lines.len(), lines[0]["seq"].as_i64()), (1, Some(99)));
}

/// The total lag `chainflow groups lag` prints for `group` on `topic`.
fn total_lag(group: &str, topic: &str) -> i64 {
    let out = run("default", &["groups", "lag", group, "--topic", topic]);
    out.lines()
        .find_map(|l| l.strip_prefix("total lag "))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn group_lag_balances_and_a_reset_is_refused_while_the_group_has_members() {
    let cfg = stack();
    let names = Names::new("groups");
    let db = Database::create(&names);
    let prefix = names.group("sink");
    let group = format!("{prefix}-ticks");
    group_at_end(&cfg, &group, UNDERLYING).await;
    assert_eq!(total_lag(&group, UNDERLYING), 0);
    let product = names.product("GRP");
    let producer = Producer::new(&cfg);
    let before = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for seq in 1..=30 {
        producer.send(&tick(&product, seq, 10.0)).await;
    }
    assert_eq!(total_lag(&group, UNDERLYING), 30, "produced minus committed");
    let listed = run("default", &["groups", "list"]);
    assert!(
        listed.lines().any(|l| l.starts_with(&group) && l.contains("Empty")),
        "{listed}"
    );

    // a member: the reset is refused, and the member stores and commits everything
    let sink = chainflow(&["sink", "--stream", "ticks"])
        .env("CHAINFLOW_CLICKHOUSE__DATABASE", &db.name)
        .env("CHAINFLOW_SINK__GROUP_ID", &prefix)
        .spawn();
    db.wait_count("underlying_ticks", &format!("product = '{product}'"), 30, 120)
        .await;
    let refused = chainflow(&["groups", "reset", &group, "--to", "earliest"]).output();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("member") && stderr.contains("stop them first"),
        "{stderr}"
    );
    let ended = sink.terminate(Duration::from_secs(60));
    assert!(ended.status.success(), "{}", ended.stderr);
    assert_eq!(total_lag(&group, UNDERLYING), 0);

    // without members: back to a time before the ticks, then to the end
    let t = before.to_rfc3339();
    let dry = run("default", &["groups", "reset", &group, "--to", &t, "--dry-run"]);
    assert!(dry.contains("would move"), "{dry}");
    assert_eq!(total_lag(&group, UNDERLYING), 0, "a dry run commits nothing");
    let moved = run("default", &["groups", "reset", &group, "--to", &t]);
    assert!(moved.contains(&format!("moved group {group}")), "{moved}");
    assert_eq!(total_lag(&group, UNDERLYING), 30);
    run("default", &["groups", "reset", &group, "--to", "latest"]);
    assert_eq!(total_lag(&group, UNDERLYING), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_redriven_after_a_fix_are_enriched_with_their_headers() {
    let cfg = stack();
    let names = Names::new("redrive");
    let product = names.product("RDV");
    let group = names.group("enrich");
    group_at_end(&cfg, &group, OPTION_CHAIN).await;
    let reader = consumer(&cfg, "redrive-test");
    let dlq_topic = dlq(OPTION_CHAIN);
    let dlq_start = ends(&reader, &dlq_topic, 1).await[0];
    let enriched_start = ends(&reader, ENRICHED_CHAIN, 6).await;
    let producer = Producer::new(&cfg);
    for seq in 0..5 {
        producer.send(&chain(&product, seq, 11)).await;
    }
    // an enricher that does not know the product: five dead letters
    let unrelated = names.product("OTHER");
    let params = default_products().remove("NIFTY").unwrap();
    let enrich = |config: &std::path::Path| {
        chainflow(&["enrich"])
            .config(config)
            .env("CHAINFLOW_ENRICH__GROUP_ID", &group)
            .spawn()
    };
    let wrong = enrich(&product_config(&unrelated, &params));
    let deadline = Instant::now() + Duration::from_secs(90);
    while ends(&reader, &dlq_topic, 1).await[0] < dlq_start + 5 {
        assert!(Instant::now() < deadline, "no dead letters within 90 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ended = wrong.terminate(Duration::from_secs(60));
    assert!(ended.status.success(), "{}", ended.stderr);
    let from = format!("0:{dlq_start}");
    let letters = json_lines(&run("default", &["tail", &dlq_topic, "--from", &from, "--with-meta"]));
    assert_eq!(letters.len(), 5);
    assert!(
        letters
            .iter()
            .all(|l| l["undecodable"].as_str().unwrap().contains("unknown_product")
                && l["headers"]["chainflow.source.topic"] == OPTION_CHAIN),
        "{letters:?}"
    );

    // the fix: an enricher that knows it; a dry run, a filter that matches nothing, the redrive
    let fixed = enrich(&product_config(&product, &params));
    let redrive = |topic: &str, extra: &[&str]| {
        let mut args = vec!["dlq", "redrive", topic, "--from", from.as_str()];
        args.extend(extra);
        run("default", &args)
    };
    let dry = redrive(OPTION_CHAIN, &["--dry-run"]);
    assert!(
        dry.contains("would send back 5") && dry.contains("5 to market.option_chain (unknown_product)"),
        "{dry}"
    );
    let none = redrive(&dlq_topic, &["--kind", "too_many_strikes"]);
    assert!(
        none.contains("sent back 0") && none.contains("5 left out by --kind"),
        "{none}"
    );
    let out = redrive(&dlq_topic, &["--kind", "unknown_product"]);
    assert!(out.contains("sent back 5"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let enriched = loop {
        let mut found = Vec::new();
        for (p, start) in enriched_start.iter().enumerate() {
            let from = format!("{p}:{start}");
            let out = run("default", &["tail", ENRICHED_CHAIN, "--from", &from, "--with-meta"]);
            found.extend(
                json_lines(&out)
                    .into_iter()
                    .filter(|l| l["value"]["product"] == product.as_str()),
            );
        }
        if found.len() >= 5 || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ended = fixed.terminate(Duration::from_secs(60));
    assert!(ended.status.success(), "{}", ended.stderr);
    assert_eq!(enriched.len(), 5, "every redriven chain enriched once");
    for e in &enriched {
        assert_eq!(e["headers"]["chainflow.redrive.count"], "1", "{e}");
        assert!(e["headers"].get("chainflow.error.kind").is_none(), "{e}");
    }
    assert_eq!(
        ends(&reader, &dlq_topic, 1).await[0],
        dlq_start + 5,
        "nothing dead-lettered again"
    );
}
