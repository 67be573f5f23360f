//! The sink's contract under faults, on the real stack, each test in a database and consumer
//! groups of its own: a batch interrupted by a crash is re-formed with the same token; a
//! detached table is retried, never dead-lettered; a refused row is dead-lettered while its
//! batch-mates are stored; ClickHouse away for 30 s loses nothing and pauses the partitions;
//! SIGTERM flushes within the bound; a stalled stream is detected and heals. The ticks
//! stream (market.underlying → underlying_ticks) carries the records: one product, one
//! partition. Needs the local stack (ops/stack.sh up).

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_contract::topics::{dlq, UNDERLYING};
use common::{
    chainflow, consumer, ends, free_port, group_at_end, kill, stack, stack_pid, stack_up, status, tick, wait_http,
    Chainflow, Database, Names, Proc, Producer,
};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Positions the test's ticks group (and, with `dead_letters`, its dead-letters group) at
/// the end of their topics, so that the test's sinks read only what it sends.
async fn groups_at_end(names: &Names, dead_letters: bool) {
    let cfg = stack();
    group_at_end(&cfg, &format!("{}-ticks", names.group("sink")), UNDERLYING).await;
    if dead_letters {
        group_at_end(&cfg, &format!("{}-dead_letters", names.group("sink")), &dlq(UNDERLYING)).await;
    }
}

/// The command of a sink of the ticks stream (and, with `dead_letters`, of the dead
/// letters) in the test's own groups and database, with `settings`, serving on `port`.
fn sink_command(names: &Names, db: &Database, port: u16, dead_letters: bool, settings: &[&str]) -> Chainflow {
    let mut args = vec!["sink", "--stream", "ticks"];
    if dead_letters {
        args.extend(["--stream", "dead_letters"]);
    }
    for s in settings {
        args.extend(["--set", s]);
    }
    chainflow(&args)
        .env("CHAINFLOW_SINK__GROUP_ID", names.group("sink"))
        .env("CHAINFLOW_CLICKHOUSE__DATABASE", &db.name)
        .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info") // the tests read what the sink reports
}

/// A sink (`sink_command`), once it is ready.
async fn sink(names: &Names, db: &Database, port: u16, dead_letters: bool, settings: &[&str]) -> Proc {
    let p = sink_command(names, db, port, dead_letters, settings).spawn();
    wait_http(&format!("http://127.0.0.1:{port}/readyz"), 60).await;
    p
}

/// Sends ticks `seqs` of `product`.
async fn send_ticks(producer: &Producer, product: &str, seqs: std::ops::RangeInclusive<i64>) {
    for seq in seqs {
        producer.send(&tick(product, seq, 21_500.0 + seq as f64)).await;
    }
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct LedgerEntry {
    first_offset: i64,
    last_offset: i64,
    token: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_interrupted_by_a_crash_is_re_formed_with_the_same_token_and_a_detached_table_is_retried() {
    let names = Names::new("reform");
    let db = Database::create(&names);
    let product = names.product("TICK");
    let port = free_port();
    let producer = Producer::new(&stack());
    let dlq_reader = consumer(&stack(), &names.group("reader"));
    let dead_before = ends(&dlq_reader, &dlq(UNDERLYING), 1).await;
    let where_ = format!("product = '{product}'");
    groups_at_end(&names, false).await;
    let first = sink(&names, &db, port, false, &[]).await;
    send_ticks(&producer, &product, 1..=10).await;
    db.wait_count("underlying_ticks", &where_, 10, 60).await;
    let ledger = |from: i64| {
        db.client
            .query("SELECT first_offset, last_offset, token FROM sink_batches FINAL WHERE topic = ? AND first_offset > ? ORDER BY first_offset")
            .bind(UNDERLYING)
            .bind(from)
            .fetch_all::<LedgerEntry>()
    };
    let before = ledger(-1).await.unwrap().iter().map(|r| r.last_offset).max().unwrap();

    // the table goes away: the next batches are recorded in the ledger, their inserts fail,
    // and they are retried (code 60 is transient), never dead-lettered
    db.client
        .query("DETACH TABLE underlying_ticks")
        .execute()
        .await
        .unwrap();
    send_ticks(&producer, &product, 11..=40).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let pending = loop {
        let rows = ledger(before).await.unwrap();
        if rows.last().is_some_and(|r| r.last_offset == before + 30) {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the batches after the detach were not recorded: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await; // a few retries
    assert_eq!(
        common::status(&format!("http://127.0.0.1:{port}/readyz")).await,
        503,
        "unready while retrying"
    );
    first.signal("KILL");
    let _ = first.wait(Duration::from_secs(10));
    assert_eq!(
        ends(&dlq_reader, &dlq(UNDERLYING), 1).await,
        dead_before,
        "nothing was dead-lettered"
    );

    // the table is back; a new sink re-forms exactly that batch, under the same token
    db.client
        .query("ATTACH TABLE underlying_ticks")
        .execute()
        .await
        .unwrap();
    let second = sink(&names, &db, port, false, &[]).await;
    db.wait_count("underlying_ticks", &where_, 40, 60).await;
    let ended = second.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
    for recorded in &pending {
        assert!(
            ended
                .stderr
                .lines()
                .any(|l| l.contains("re-formed batch written again") && l.contains(&recorded.token)),
            "batch {recorded:?} was not re-formed under its token:\n{}",
            ended.stderr
        );
    }
    let after: Vec<(i64, i64, String)> = ledger(before)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.first_offset, r.last_offset, r.token))
        .collect();
    let recorded: Vec<(i64, i64, String)> = pending
        .into_iter()
        .map(|r| (r.first_offset, r.last_offset, r.token))
        .collect();
    assert_eq!(after, recorded, "the same batches, not others over the same records");
    assert_eq!(
        db.count("underlying_ticks", false, &where_).await,
        40,
        "each tick stored once"
    );
}

/// A row of `dead_letters`, as the refused-row test reads it.
#[derive(Debug, Deserialize, clickhouse::Row)]
struct Dead {
    error_kind: String,
    stage: String,
    error_message: String,
    value_hex: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_row_is_dead_lettered_while_its_batch_mates_are_stored() {
    let names = Names::new("refused");
    let db = Database::create(&names);
    let product = names.product("TICK");
    // ClickHouse refuses any tick priced 666 (Code 395, a permanent error)
    db.client
        .query("ALTER TABLE underlying_ticks ADD COLUMN guard UInt8 MATERIALIZED throwIf(price = 666.0)")
        .execute()
        .await
        .unwrap();
    let cfg = stack();
    groups_at_end(&names, true).await;
    let port = free_port();
    let sink = sink(&names, &db, port, true, &["sink.batch_ms=2000"]).await;
    let producer = Producer::new(&cfg);
    let mut refused = Vec::new();
    for seq in 1..=20 {
        let price = if seq == 7 { 666.0 } else { 21_500.0 };
        let bytes = producer.send(&tick(&product, seq, price)).await;
        if seq == 7 {
            refused = bytes;
        }
    }
    let where_ = format!("product = '{product}'");
    db.wait_count("underlying_ticks", &where_, 19, 60).await;
    let dead = format!("source_topic = '{UNDERLYING}' AND key = '{product}'");
    db.wait_count("dead_letters", &dead, 1, 60).await;
    let row: Dead = db
        .client
        .query(&format!(
            "SELECT error_kind, stage, error_message, hex(assumeNotNull(value)) AS value_hex FROM dead_letters FINAL \
             WHERE {dead}"
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (row.error_kind.as_str(), row.stage.as_str()),
        ("clickhouse_refused", "sink")
    );
    assert!(row.error_message.contains("Code: 395"), "{}", row.error_message);
    let hex = refused.iter().fold(String::new(), |mut h, b| {
        use std::fmt::Write;
        write!(h, "{b:02X}").expect("writing to a String");
        h
    });
    assert_eq!(row.value_hex, hex, "the original bytes");
    assert_eq!(
        db.count("underlying_ticks", true, &format!("{where_} AND seq = 7"))
            .await,
        0
    );
    let ended = sink.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_away_for_30_s_loses_nothing_and_pauses_the_partitions() {
    let names = Names::new("outage");
    let db = Database::create(&names);
    let product = names.product("TICK");
    let port = free_port();
    groups_at_end(&names, false).await;
    let sink = sink(&names, &db, port, false, &["sink.insert_timeout_ms=5000"]).await;
    let producer = Producer::new(&stack());
    let where_ = format!("product = '{product}'");
    send_ticks(&producer, &product, 1..=50).await;
    db.wait_count("underlying_ticks", &where_, 50, 60).await;

    let clickhouse = stack_pid("clickhouse");
    kill("TERM", clickhouse);
    let stopped = Instant::now();
    while std::path::Path::new(&format!("/proc/{clickhouse}")).exists() {
        assert!(stopped.elapsed() < Duration::from_secs(60), "ClickHouse did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let down = Instant::now();
    for chunk in 0..10 {
        send_ticks(&producer, &product, 51 + chunk * 100..=150 + chunk * 100).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let paused = common::metric(port, "chainflow_sink_paused_partitions{stream=\"ticks\"}").await;
    assert!(paused >= 1.0, "partitions paused during the outage: {paused}");
    assert_eq!(
        status(&format!("http://127.0.0.1:{port}/readyz")).await,
        503,
        "unready during the outage"
    );
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    stack_up();
    db.wait_count("underlying_ticks", &where_, 1050, 120).await;
    assert_eq!(
        db.count("underlying_ticks", false, &where_).await,
        1050,
        "no tick stored twice"
    );
    let peak = sink.peak_rss();
    assert!(peak < 300 << 20, "peak RSS {peak} bytes");
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&format!("http://127.0.0.1:{port}/readyz")).await != 200 {
        assert!(Instant::now() < deadline, "not ready again after the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        common::metric(port, "chainflow_sink_paused_partitions{stream=\"ticks\"}").await,
        0.0
    );
    let ended = sink.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_writes_what_the_sink_holds_and_exits_within_the_bound() {
    let names = Names::new("sigterm_sink");
    let db = Database::create(&names);
    let product = names.product("TICK");
    let port = free_port();
    // batches that would wait ten minutes: only the stop writes them
    groups_at_end(&names, false).await;
    let sink = sink(
        &names,
        &db,
        port,
        false,
        &["sink.batch_ms=600000", "sink.stall_after_ms=1200000"],
    )
    .await;
    let producer = Producer::new(&stack());
    send_ticks(&producer, &product, 1..=30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let where_ = format!("product = '{product}'");
    assert_eq!(
        db.count("underlying_ticks", true, &where_).await,
        0,
        "held in the batch"
    );
    let ended = sink.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(ended.took < Duration::from_secs(10), "took {:?}", ended.took);
    assert_eq!(db.count("underlying_ticks", true, &where_).await, 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_stream_is_detected_and_heals() {
    let names = Names::new("stall");
    let db = Database::create(&names);
    let product = names.product("TICK");
    let port = free_port();
    groups_at_end(&names, false).await;
    let sink = sink(&names, &db, port, false, &["sink.stall_after_ms=2000"]).await;
    let producer = Producer::new(&stack());
    let where_ = format!("product = '{product}'");
    // consuming (partitions assigned) before the freeze
    send_ticks(&producer, &product, 1..=1).await;
    db.wait_count("underlying_ticks", &where_, 1, 60).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // measured caught up (lag 0)
                                                      // frozen (SIGSTOP) while records arrive: lag and no progress for longer than the stall
                                                      // threshold, shorter than the group's session timeout (6 s)
    sink.signal("STOP");
    send_ticks(&producer, &product, 2..=20).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    sink.signal("CONT");
    db.wait_count("underlying_ticks", &where_, 20, 60).await;
    let stalls = common::metric(port, "chainflow_sink_stalls_total{stream=\"ticks\"}").await;
    let ended = sink.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(stalls >= 1.0, "no stall counted:\n{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains("stall: assigned partitions with lag and no progress"),
        "{}",
        ended.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_drops_the_whole_months_before_the_date() {
    let names = Names::new("prune");
    let db = Database::create(&names);
    // a tick of January 2020 and one of January 2025
    for (seq, event_time_us) in [(1, 1_579_046_400_000_000_i64), (2, 1_736_899_200_000_000)] {
        db.client
            .query(
                "INSERT INTO underlying_ticks (product, event_time_us, seq, price, volume, source_partition, \
                 source_offset, version) VALUES ('OLD', ?, ?, 1.0, 1, 0, 0, 1)",
            )
            .bind(event_time_us)
            .bind(seq)
            .execute()
            .await
            .unwrap();
    }
    let prune = |dry: bool| {
        let mut args = vec!["prune", "--before", "2024-06-01"];
        if dry {
            args.push("--dry-run");
        }
        chainflow(&args)
            .env("CHAINFLOW_CLICKHOUSE__DATABASE", &db.name)
            .output()
    };
    let out = prune(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // the tick's month, in its table and in the candles the view made of it
    assert!(stdout.starts_with("would drop 2 partition(s)"), "{stdout}");
    for table in ["underlying_ticks", "candles_state"] {
        assert!(
            stdout.lines().any(|l| l.contains(table) && l.contains("202001")),
            "{table}: {stdout}"
        );
    }
    assert_eq!(
        db.count("underlying_ticks", false, "1").await,
        2,
        "a dry run drops nothing"
    );
    let out = prune(false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        db.count("underlying_ticks", false, "seq = 1").await,
        0,
        "January 2020 dropped"
    );
    assert_eq!(
        db.count("underlying_ticks", false, "seq = 2").await,
        1,
        "January 2025 kept"
    );
}

/// Deletes `market.underlying` and creates it again (`chainflow topics`): its offsets start
/// over at 0.
async fn recreate_underlying(cfg: &chainflow_config::Config) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = chainflow_kafka::producer_config(&cfg.kafka).create().unwrap();
    for r in admin
        .delete_topics(
            &[UNDERLYING],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = chainflow(&["topics"]).output();
        let recreated = ends(&consumer(cfg, "test-recreated"), UNDERLYING, cfg.kafka.partitions).await;
        if out.status.success() && recreated.iter().all(|&h| h == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{UNDERLYING} was not recreated: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends ticks `seqs` of `product` with their event times as Kafka timestamps, as a topic
/// copied from another cluster keeps its source's (older than anything recorded here).
async fn send_copied_ticks(producer: &Producer, product: &str, seqs: std::ops::RangeInclusive<i64>) {
    for seq in seqs {
        let t = tick(product, seq, 21_500.0 + seq as f64);
        producer.send_dated(&t, t.event_time / 1000).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_its_topic_is_recreated_a_partition_is_not_held_to_batches_recorded_before() {
    let cfg = stack();
    let names = Names::new("recreated");
    let db = Database::create(&names);
    groups_at_end(&names, false).await;
    let product = names.product("REC");
    let condition = format!("product = '{product}'");
    let producer = Producer::new(&cfg);
    let port = free_port();
    let stored_within = |n: u64, s: Proc| {
        let (db, condition) = (&db, &condition);
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while db.count("underlying_ticks", true, condition).await < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let stored = db.count("underlying_ticks", true, condition).await;
            let ended = s.terminate(Duration::from_secs(35));
            assert_eq!(
                stored, n,
                "the new ticks were not stored within 30 s:\n{}",
                ended.stderr
            );
            assert!(ended.status.success(), "{}", ended.stderr);
            ended.stderr
        }
    };
    // 1,000 ticks of one key, stored in batches the ledger recorded
    let s = sink(&names, &db, port, false, &[]).await;
    send_ticks(&producer, &product, 1..=1000).await;
    stored_within(1000, s).await;

    // recreated; ten new ticks, fewer than any batch recorded before: stored, not held to
    // the old ends
    recreate_underlying(&cfg).await;
    let s = sink(&names, &db, port, false, &[]).await;
    send_copied_ticks(&producer, &product, 1001..=1010).await;
    let stderr = stored_within(1010, s).await;
    assert!(
        stderr.contains("ends past the partition's end: the topic was recreated"),
        "{stderr}"
    );

    // recreated again, and holding more records than before by the time the sink starts:
    // the batches recorded over the ten are known by their first record, not re-formed
    recreate_underlying(&cfg).await;
    send_copied_ticks(&producer, &product, 2001..=3000).await;
    let s = sink(&names, &db, port, false, &[]).await;
    let stderr = stored_within(2010, s).await;
    assert!(
        stderr.contains("the record at a recorded batch's first offset is another"),
        "{stderr}"
    );
    assert!(!stderr.contains("re-formed batch"), "{stderr}");
}

/// A row of `sink_batches`, as the oversized-batch test reads it.
#[derive(Debug, Deserialize, clickhouse::Row)]
struct Piece {
    first_offset: i64,
    last_offset: i64,
    records: u32,
    token: String,
}

/// A sink of the ticks stream that stops itself at the fault point `fault`, with `settings`;
/// waits for its end (it aborts there).
fn aborting_sink(names: &Names, db: &Database, fault: &str, settings: &[&str]) -> common::Ended {
    let ended = sink_command(names, db, free_port(), false, settings)
        .env("CHAINFLOW_FAULTS", format!("{fault}=abort"))
        .spawn()
        .wait(Duration::from_secs(60));
    assert!(
        ended.stderr.contains(&format!("fault point {fault} reached")),
        "the sink did not stop at {fault}: {}\n{}",
        ended.status,
        ended.stderr
    );
    ended
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_re_formed_under_lower_limits_is_written_within_them_and_a_second_crash_re_forms_the_pieces() {
    let cfg = stack();
    let names = Names::new("oversized");
    let db = Database::create(&names);
    groups_at_end(&names, false).await;
    let product = names.product("BIG");
    let where_ = format!("product = '{product}'");
    send_ticks(&Producer::new(&cfg), &product, 1..=1000).await;
    let ledger = || async {
        db.client
            .query("SELECT first_offset, last_offset, records, token FROM sink_batches FINAL WHERE first_offset >= 0 ORDER BY first_offset")
            .fetch_all::<Piece>()
            .await
            .unwrap()
    };
    // one batch of the 1,000 ticks recorded; the sink dies before its insert
    aborting_sink(
        &names,
        &db,
        "sink.recorded",
        &["sink.batch_rows=1000", "sink.batch_ms=20000"],
    );
    let recorded = ledger().await;
    assert!(
        recorded.len() == 1 && recorded[0].records == 1000,
        "one batch of 1,000 recorded: {recorded:?}"
    );
    assert_eq!(db.count("underlying_ticks", true, &where_).await, 0, "nothing inserted");

    // restarted with a tenth of the rows: the first 100 are re-formed, recorded in place of
    // the batch of 1,000 and inserted; the sink dies before it commits
    let limits = ["sink.batch_rows=100", "sink.batch_ms=20000"];
    aborting_sink(&names, &db, "sink.inserted", &limits);
    let first = ledger().await;
    assert_eq!(
        first
            .iter()
            .map(|p| (p.first_offset, p.last_offset, p.records))
            .collect::<Vec<_>>(),
        vec![(recorded[0].first_offset, recorded[0].first_offset + 99, 100)],
        "the batch of 1,000 re-formed within today's limits and the piece recorded before its insert"
    );

    // a third start re-forms that piece under the same token, and writes the rest within
    // the limits, each batch recorded before its insert
    let s = sink(&names, &db, free_port(), false, &limits).await;
    db.wait_count("underlying_ticks", &where_, 1000, 60).await;
    let ended = s.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(
        ended
            .stderr
            .lines()
            .any(|l| l.contains("re-formed batch written again") && l.contains(&first[0].token)),
        "the recorded piece {:?} was not re-formed under its token:\n{}",
        first[0],
        ended.stderr
    );
    let pieces = ledger().await;
    assert!(pieces.iter().all(|p| p.records <= 100), "{pieces:?}");
    for pair in pieces.windows(2) {
        assert_eq!(pair[1].first_offset, pair[0].last_offset + 1, "{pieces:?}");
    }
    assert_eq!(
        (pieces[0].first_offset, pieces.last().unwrap().last_offset),
        (recorded[0].first_offset, recorded[0].last_offset),
        "{pieces:?}"
    );
    assert_eq!(db.count("underlying_ticks", true, &where_).await, 1000);
}
