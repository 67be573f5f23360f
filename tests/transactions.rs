//! Exactly-once on the topics (`enrich.transactions = true`) on the local stack's Apache
//! Kafka, checked the way a read_committed consumer downstream sees it: every raw chain's
//! `chainflow.id` on `enriched.option_chain` exactly once while enrich is killed, while a
//! frozen member is fenced, while a commit times out against a frozen broker, after a
//! rewind that failed, and with chains the broker refuses as too large; an idle pipeline
//! after transactional writes stays ready with lag 0; a broker that refuses transactions
//! stops enrich with exit code 2 naming the setting. Needs the local stack (ops/stack.sh up).

mod common;

use chainflow_codec::{registry_settings, Codec};
use chainflow_config::{default_products, Config, GroupProtocol};
use chainflow_contract::keys::chain_id;
use chainflow_contract::topics::{dlq, ENRICHED_CHAIN, HEADER_ID, OPTION_CHAIN};
use chainflow_contract::{OptionChain, Record};
use common::{
    chain, chainflow, ends, free_port, group_at_end, kill, metric, stack, stack_pid, status, try_metric, wait_http,
    Database, Names, Proc, Producer,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A configuration file with `n` products of the test's own (NIFTY's parameters), whose
/// chain keys fall on several partitions; the file and the names.
fn products(names: &Names, n: usize) -> (PathBuf, Vec<String>) {
    let products: Vec<String> = (0..n).map(|i| format!("{}{i}", names.product("TX"))).collect();
    let params = toml::Value::try_from(default_products().remove("NIFTY").unwrap()).unwrap();
    let mut file = toml::Table::new();
    file.insert(
        "products".into(),
        toml::Value::Table(products.iter().map(|p| (p.clone(), params.clone())).collect()),
    );
    let path = std::env::temp_dir().join(format!("chainflow-{}.toml", names.tag()));
    std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
    (path, products)
}

/// One test's enrich group, on products of its own, and where `enriched.option_chain`
/// ended (for read_committed readers) when the test began.
struct Case {
    cfg: Config,
    names: Names,
    group: String,
    path: PathBuf,
    products: Vec<String>,
    enriched_starts: Vec<i64>,
}

impl Case {
    /// The case of test `test`, with `n` products; its group at the end of the raw topic.
    async fn new(test: &str, n: usize) -> Self {
        let cfg = stack();
        let names = Names::new(test);
        let group = names.group("enrich");
        group_at_end(&cfg, &group, OPTION_CHAIN).await;
        let (path, products) = products(&names, n);
        let enriched_starts = committed_ends(&cfg, ENRICHED_CHAIN).await;
        Self {
            cfg,
            names,
            group,
            path,
            products,
            enriched_starts,
        }
    }

    /// A transactional enricher of the case's group, instance `instance`, metrics on
    /// `port`, with `env` on top; once it is ready.
    async fn enricher(&self, instance: &str, port: u16, env: &[(&str, &str)]) -> Proc {
        let mut cmd = chainflow(&["enrich"])
            .config(&self.path)
            .env("CHAINFLOW_ENRICH__GROUP_ID", &self.group)
            .env("CHAINFLOW_ENRICH__TRANSACTIONS", "true")
            .env("CHAINFLOW_ENRICH__INSTANCE_ID", instance)
            .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", format!("127.0.0.1:{port}"));
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let p = cmd.spawn();
        wait_http(&format!("http://127.0.0.1:{port}/readyz"), 60).await;
        p
    }

    /// How many times a read_committed reader of `enriched.option_chain` sees each of the
    /// case's chains, until `want` are seen (or `secs` pass).
    fn enriched(&self, want: usize, secs: u64) -> BTreeMap<String, u32> {
        let reader = committed_reader(&self.cfg, ENRICHED_CHAIN, &self.enriched_starts);
        count_ids(&reader, want, secs, |m| enriched_id(m, &self.products))
    }

    /// Sends a chain of each of `products` for each of `rounds`; their ids.
    async fn send(&self, products: &[String], rounds: std::ops::RangeInclusive<i64>) -> Vec<String> {
        send_chains(&self.cfg, products, rounds).await
    }
}

/// A read_committed reader of `topic` from `starts` (one offset per partition), as a
/// downstream consumer reads what enrich commits.
fn committed_reader(cfg: &Config, topic: &str, starts: &[i64]) -> Arc<BaseConsumer> {
    let reader: BaseConsumer = chainflow_kafka::consumer_config(&cfg.kafka, "test-transactions-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, start) in starts.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(*start))
            .unwrap();
    }
    reader.assign(&tpl).unwrap();
    Arc::new(reader)
}

/// How many times each id `id_of` finds appears in what `reader` reads, until `want` ids
/// are seen (or `secs` pass), and 3 s more for repeats.
fn count_ids(
    reader: &BaseConsumer,
    want: usize,
    secs: u64,
    mut id_of: impl FnMut(&BorrowedMessage<'_>) -> Option<String>,
) -> BTreeMap<String, u32> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut settle: Option<Instant> = None;
    while Instant::now() < settle.unwrap_or(deadline) {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            if let Some(id) = id_of(&m) {
                *seen.entry(id).or_default() += 1;
            }
        }
        if settle.is_none() && seen.len() >= want {
            settle = Some(Instant::now() + Duration::from_secs(3));
        }
    }
    seen
}

/// The `chainflow.id` of an enriched record of `products`.
fn enriched_id(m: &BorrowedMessage<'_>, products: &[String]) -> Option<String> {
    let id = m
        .headers()?
        .iter()
        .find(|h| h.key == HEADER_ID)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())?;
    let product = id.split('|').next()?;
    products.iter().any(|p| p == product).then_some(id)
}

/// Where every partition of `topic` ends now, as read_committed consumers see it.
async fn committed_ends(cfg: &Config, topic: &str) -> Vec<i64> {
    let probe = Arc::new(
        chainflow_kafka::consumer_config(&cfg.kafka, "test-transactions-ends")
            .create::<BaseConsumer>()
            .unwrap(),
    );
    let partitions = chainflow_kafka::range::partitions(&probe, topic).await.unwrap();
    ends(&probe, topic, partitions.len() as i32).await
}

/// The ids of the raw chains of `products` on `market.option_chain` from `starts`: `want`
/// of them, decoded through the registry.
async fn raw_ids(cfg: &Config, starts: &[i64], products: &[String], want: usize) -> Vec<String> {
    let codec = Codec::new(registry_settings(&cfg.registry).unwrap());
    let reader = committed_reader(cfg, OPTION_CHAIN, starts);
    let mut payloads = Vec::new();
    count_ids(&reader, want, 60, |m| {
        let key = String::from_utf8_lossy(m.key()?).into_owned();
        let product = key.split('|').next()?;
        products.iter().any(|p| p == product).then(|| {
            payloads.push(m.payload().unwrap_or_default().to_vec());
            key
        })
    });
    let mut ids = Vec::new();
    for p in payloads {
        let c: OptionChain = codec.decode(&p).await.unwrap();
        ids.push(chain_id(&c.product, c.expiry, c.event_time));
    }
    ids
}

/// Asserts that `seen` holds every one of `expected` exactly once and nothing else.
fn exactly_once(expected: &[String], seen: &BTreeMap<String, u32>) {
    exactly_once_or(expected, seen, "");
}

/// [`exactly_once`], with `context` (a process's log) in the failure message.
fn exactly_once_or(expected: &[String], seen: &BTreeMap<String, u32>, context: &str) {
    let missing: Vec<&String> = expected.iter().filter(|id| !seen.contains_key(*id)).collect();
    let twice: Vec<(&String, &u32)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<&String> = seen.keys().filter(|id| !expected.contains(id)).collect();
    assert!(
        missing.is_empty() && twice.is_empty() && extra.is_empty(),
        "{} expected: {} missing ({:?}...), {} more than once ({:?}...), {} never sent ({:?}...)\n{}",
        expected.len(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        twice.len(),
        twice.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>(),
        context
    );
}

/// Waits until process `pid` is stopped (SIGSTOP: state `T`), for at most `secs`.
fn wait_stopped(pid: u32, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // the state follows the command name in parentheses
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        if state == Some('T') {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} did not stop within {secs} s (state {state:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a chain of each of `products` (11 strikes) for each of `rounds` (its second)
/// straight to `market.option_chain`; their ids.
async fn send_chains(cfg: &Config, products: &[String], rounds: std::ops::RangeInclusive<i64>) -> Vec<String> {
    let producer = Producer::new(cfg);
    let mut ids = Vec::new();
    for round in rounds {
        for p in products {
            let c = chain(p, round, 11);
            producer
                .send_raw(OPTION_CHAIN, &c.key(), &producer.encode(&c).await)
                .await;
            ids.push(chain_id(&c.product, c.expiry, c.event_time));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_refuses_transactions_stops_enrich_with_exit_2_naming_the_setting() {
    let cfg = stack();
    let names = Names::new("refused");
    let group = names.group("enrich");
    // as a managed cluster refuses a client it has not granted transactions
    let acl = |action: &str| {
        let out = std::process::Command::new("python3")
            .args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka_acl.py"),
                &cfg.kafka.bootstrap_servers,
                action,
                &group,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kafka_acl.py {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    acl("deny");
    let ended = chainflow(&["enrich", "--set", "enrich.transactions=true"])
        .env("CHAINFLOW_ENRICH__GROUP_ID", &group)
        .spawn()
        .wait(Duration::from_secs(60));
    acl("allow");
    assert_eq!(ended.status.code(), Some(2), "{}", ended.stderr);
    let error = ended
        .stderr
        .lines()
        .find(|l| l.starts_with("chainflow: error:"))
        .unwrap_or_else(|| panic!("{}", ended.stderr));
    assert!(
        error.contains("enrich.transactions: the broker at")
            && error.contains("refused a transactional id")
            && error.contains("Transactional Id authorization failed")
            && error.contains("set enrich.transactions = false"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_chain_is_enriched_exactly_once_while_enrich_is_killed_five_times() {
    let case = Case::new("killed", 12).await;
    let raw_starts = committed_ends(&case.cfg, OPTION_CHAIN).await;
    let port = free_port();
    let mut enrich = case.enricher("killed-0", port, &[]).await;
    // 3,000 chains over about a minute (with 12 products, chains are about 35 % of the
    // feed's messages)
    let mut feed = chainflow(&["feed", "--chains", "3000", "--rate", "150", "--seed", "26"])
        .config(&case.path)
        .spawn();
    for kill in 1..=5 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(feed.running(), "the feed is still writing at kill {kill}");
        enrich.signal("KILL");
        drop(enrich);
        enrich = case.enricher("killed-0", port, &[]).await;
    }
    let fed = feed.wait(Duration::from_secs(120));
    assert!(fed.status.success(), "{}", fed.stderr);
    let expected = raw_ids(&case.cfg, &raw_starts, &case.products, 3000).await;
    assert_eq!(
        expected.len(),
        3000,
        "the feed wrote 3,000 chains of the test's products"
    );
    exactly_once(&expected, &case.enriched(expected.len(), 120));
    let ended = enrich.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
}

/// Two transactional enrichers share a group's work; a third stops itself with a
/// transaction open, just before it adds its offsets to it, and stays frozen past its
/// session timeout: the group gives its partitions to the others. Resumed, it is refused
/// (its generation is gone) and aborts: nothing it sent becomes visible, every chain is
/// there once.
async fn a_frozen_member_is_fenced(protocol: GroupProtocol) {
    let case = Case::new("fenced", 12).await;
    let protocol = match protocol {
        GroupProtocol::Classic => "classic",
        GroupProtocol::Consumer => "consumer",
    };
    let env = [("CHAINFLOW_KAFKA__GROUP_PROTOCOL", protocol)];
    let ports = [free_port(), free_port(), free_port()];
    let a = case.enricher("a", ports[0], &env).await;
    let b = case.enricher("b", ports[1], &env).await;
    // c's transaction outlives its freeze: with the default timeout (10 s) the transaction
    // coordinator may abort it first, and c is then fenced as an instance (the next test)
    let frozen_env = [
        env[0],
        ("CHAINFLOW_FAULTS", "enrich.send_offsets=stop"),
        ("CHAINFLOW_ENRICH__TRANSACTION_TIMEOUT_MS", "60000"),
    ];
    let mut c = case.enricher("c", ports[2], &frozen_env).await;
    // every member has partitions before the chains arrive
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut expected = case.send(&case.products, 1..=5).await;
    wait_stopped(c.pid(), 60);
    // past the session timeout (6 s): the group moves c's partitions to a and b
    tokio::time::sleep(Duration::from_secs(10)).await;
    expected.extend(case.send(&case.products[..6], 6..=6).await);
    kill("CONT", c.pid());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !c.running() {
            let ended = c.wait(Duration::from_secs(1));
            panic!("c exited ({}) after it resumed: {}", ended.status, ended.stderr);
        }
        match try_metric(ports[2], "chainflow_enrich_fenced_total{by=\"group\"}").await {
            Ok(fenced) if fenced >= 1.0 => break,
            Ok(_) => {}
            Err(e) => {
                let ended = c.wait(Duration::from_secs(40));
                panic!(
                    "c stopped answering /metrics ({e}) after it resumed; it ended ({}): {}",
                    ended.status, ended.stderr
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "c was not refused by its group after it resumed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        metric(ports[2], "chainflow_enrich_transactions_total{outcome=\"aborted\"}").await >= 1.0,
        "c aborted the transaction it held"
    );
    exactly_once(&expected, &case.enriched(expected.len(), 90));
    for p in [a, b, c] {
        let ended = p.terminate(Duration::from_secs(35));
        assert!(ended.status.success(), "{}", ended.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_member_is_fenced_and_nothing_it_sent_becomes_visible_classic() {
    a_frozen_member_is_fenced(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_member_is_fenced_and_nothing_it_sent_becomes_visible_consumer_protocol() {
    a_frozen_member_is_fenced(GroupProtocol::Consumer).await;
}

/// An enricher frozen with a transaction open past its transaction timeout: the
/// coordinator aborts the transaction and fences the producer. Resumed, it stops with an
/// error naming the timeout; restarted, it sends every chain once.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_frozen_past_its_transaction_timeout_stops_saying_so_and_its_restart_loses_nothing() {
    let case = Case::new("txntimeout", 4).await;
    let port = free_port();
    let faults = [
        ("CHAINFLOW_FAULTS", "enrich.send_offsets=stop"),
        ("CHAINFLOW_ENRICH__TRANSACTION_TIMEOUT_MS", "2000"),
    ];
    let mut enrich = case.enricher("0", port, &faults).await;
    let mut expected = case.send(&case.products, 1..=3).await;
    wait_stopped(enrich.pid(), 60);
    // the coordinator looks for timed-out transactions every 10 s
    // (transaction.abort.timed.out.transaction.cleanup.interval.ms)
    tokio::time::sleep(Duration::from_secs(16)).await;
    kill("CONT", enrich.pid());
    let ended = enrich.wait(Duration::from_secs(40));
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("fenced") && ended.stderr.contains("enrich.transaction_timeout_ms (2000 ms"),
        "{}",
        ended.stderr
    );
    enrich = case.enricher("0", port, &[]).await;
    expected.extend(case.send(&case.products, 4..=4).await);
    exactly_once(&expected, &case.enriched(expected.len(), 90));
    let ended = enrich.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_that_times_out_against_a_frozen_broker_is_called_again_and_lands_once() {
    let case = Case::new("committimeout", 4).await;
    let port = free_port();
    // the enricher stops itself with the offsets in the transaction, about to commit it
    let faults = [
        ("CHAINFLOW_FAULTS", "enrich.commit_transaction=stop"),
        ("CHAINFLOW_ENRICH__TRANSACTION_TIMEOUT_MS", "60000"),
    ];
    let enrich = case.enricher("0", port, &faults).await;
    let mut expected = case.send(&case.products, 1..=3).await;
    wait_stopped(enrich.pid(), 60);
    // the broker freezes; the commit runs against it and times out (5 s a call), twice
    let broker = stack_pid("broker");
    kill("STOP", broker);
    kill("CONT", enrich.pid());
    tokio::time::sleep(Duration::from_secs(12)).await;
    kill("CONT", broker);
    expected.extend(case.send(&case.products, 4..=4).await);
    exactly_once(&expected, &case.enriched(expected.len(), 90));
    let retried = metric(port, "chainflow_enrich_transaction_retries_total{call=\"commit\"}").await;
    assert!(retried >= 1.0, "the timed-out commit was called again ({retried})");
    let ended = enrich.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "enrich lived through it: {}", ended.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_failed_rewind_enrich_reads_nothing_past_the_aborted_records() {
    let case = Case::new("rewind", 4).await;
    let port = free_port();
    // the first transaction fails before its commit (and is aborted), and the rewind to the
    // committed offsets fails three times after it, as with a broker that does not answer
    let faults = [(
        "CHAINFLOW_FAULTS",
        "enrich.commit_transaction=fail,enrich.rewind=fail*3",
    )];
    let enrich = case.enricher("0", port, &faults).await;
    let mut expected = case.send(&case.products, 1..=3).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(port, "chainflow_enrich_transactions_total{outcome=\"aborted\"}").await < 1.0 {
        assert!(Instant::now() < deadline, "the first transaction was not aborted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expected.extend(case.send(&case.products, 4..=6).await);
    exactly_once(&expected, &case.enriched(expected.len(), 90));
    let ended = enrich.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
}

/// A chain whose enriched form the broker refuses (larger than the topic's
/// `max.message.bytes`, though within the producer's `message.max.bytes`) between good
/// chains: dead-lettered once, the good chains enriched once.
async fn a_chain_the_broker_refuses(transactions: bool) {
    let case = Case::new(if transactions { "refusedtx" } else { "refusedplain" }, 1).await;
    let dlq_starts = committed_ends(&case.cfg, &dlq(OPTION_CHAIN)).await;
    let port = free_port();
    let transactions = transactions.to_string();
    let env = [
        ("CHAINFLOW_ENRICH__TRANSACTIONS", transactions.as_str()),
        ("CHAINFLOW_ENRICH__MAX_STRIKES", "10000"),
        // sent as it is: the broker sees the enriched chain's full size
        ("CHAINFLOW_KAFKA__PROPERTIES__MESSAGE_MAX_BYTES", "8000000"),
        ("CHAINFLOW_KAFKA__PROPERTIES__COMPRESSION_TYPE", "none"),
    ];
    let enrich = case.enricher("0", port, &env).await;
    let producer = Producer::new(&case.cfg);
    let mut expected = Vec::new();
    let mut big_id = String::new();
    for (seq, strikes) in [(1, 11), (2, 11), (3, 6000), (4, 11), (5, 11)] {
        let c = chain(&case.products[0], seq, strikes);
        producer
            .send_raw(OPTION_CHAIN, &c.key(), &producer.encode(&c).await)
            .await;
        let id = chain_id(&c.product, c.expiry, c.event_time);
        if strikes > 11 {
            big_id = id;
        } else {
            expected.push(id);
        }
    }
    let seen = case.enriched(expected.len(), 90);
    let letters = committed_reader(&case.cfg, &dlq(OPTION_CHAIN), &dlq_starts);
    let dead = count_ids(&letters, 1, 30, |m| {
        let header = |name: &str| {
            m.headers()?
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let key = String::from_utf8_lossy(m.key()?).into_owned();
        (key.starts_with(&case.products[0]) && header("chainflow.error.kind").as_deref() == Some("too_large"))
            .then(|| header("chainflow.error.message").unwrap_or_default())
    });
    let ended = enrich.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
    exactly_once_or(&expected, &seen, &ended.stderr);
    assert_eq!(
        dead.len(),
        1,
        "one dead letter for {big_id}: {dead:?}\n{}",
        ended.stderr
    );
    let (message, times) = dead.iter().next().unwrap();
    assert_eq!(*times, 1, "dead-lettered once");
    assert!(
        message.contains("the broker refused the enriched chain as too large"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_the_broker_refuses_as_too_large_is_dead_lettered_with_transactions() {
    a_chain_the_broker_refuses(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_the_broker_refuses_as_too_large_is_dead_lettered_without_transactions() {
    a_chain_the_broker_refuses(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_transactional_writes_an_idle_pipeline_stays_ready_with_lag_0() {
    let case = Case::new("idle", 4).await;
    let sink_group = case.names.group("sink");
    group_at_end(&case.cfg, &format!("{sink_group}-chains"), ENRICHED_CHAIN).await;
    let db = Database::create(&case.names);
    let (enrich_port, sink_port) = (free_port(), free_port());
    let enrich = case.enricher("0", enrich_port, &[]).await;
    let stall_after_ms: u64 = 2000;
    let sink = chainflow(&["sink", "--stream", "chains"])
        .config(&case.path)
        .env("CHAINFLOW_SINK__GROUP_ID", &sink_group)
        .env("CHAINFLOW_SINK__STALL_AFTER_MS", stall_after_ms.to_string())
        .env("CHAINFLOW_CLICKHOUSE__DATABASE", &db.name)
        .env(
            "CHAINFLOW_OBSERVABILITY__METRICS_LISTEN",
            format!("127.0.0.1:{sink_port}"),
        )
        .spawn();
    wait_http(&format!("http://127.0.0.1:{sink_port}/readyz"), 60).await;
    let sent = case.send(&case.products, 1..=10).await;
    db.wait_count("chain_snapshots", "1", sent.len() as u64, 60).await;
    // idle for three stall thresholds: ready all along, no stall, no lag
    let readyz = format!("http://127.0.0.1:{sink_port}/readyz");
    let idle_until = Instant::now() + Duration::from_millis(3 * stall_after_ms + 1000);
    while Instant::now() < idle_until {
        assert_eq!(status(&readyz).await, 200, "the sink turned unready while idle");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        metric(sink_port, "chainflow_sink_stalls_total{stream=\"chains\"}").await,
        0.0
    );
    let lags = common::scrape(sink_port).await;
    let lag: f64 = lags
        .lines()
        .filter(|l| l.starts_with("chainflow_sink_consumer_lag{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(lag, 0.0, "{lags}");
    // and as the group's offsets say, read by the operator's tool
    let out = chainflow(&[
        "groups",
        "lag",
        &format!("{sink_group}-chains"),
        "--topic",
        ENRICHED_CHAIN,
    ])
    .output();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("total lag 0"), "{text}");
    for p in [enrich, sink] {
        let ended = p.terminate(Duration::from_secs(35));
        assert!(ended.status.success(), "{}", ended.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tools_read_committed_records_only_unless_asked() {
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
    let cfg = stack();
    let names = Names::new("isolation");
    let topic = chainflow_contract::topics::UNDERLYING;
    // ticks 1 and 3 in committed transactions, tick 2 in an aborted one
    let codec = Producer::new(&cfg);
    let producer: Arc<FutureProducer> = Arc::new(
        chainflow_kafka::transactional_producer_config(&cfg.kafka, &names.group("isolation"), Duration::from_secs(10))
            .create()
            .unwrap(),
    );
    let timeout = Duration::from_secs(30);
    chainflow_kafka::blocking::init_transactions(&producer, timeout)
        .await
        .unwrap();
    let product = names.product("ISO");
    let mut first = None;
    for seq in 1..=3 {
        let bytes = codec.encode(&common::tick(&product, seq, 50.0)).await;
        producer.begin_transaction().unwrap();
        let delivered = producer
            .send(FutureRecord::to(topic).key(&product).payload(&bytes), timeout)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        first.get_or_insert(delivered);
        if seq == 2 {
            chainflow_kafka::blocking::abort_transaction(&producer, timeout)
                .await
                .unwrap();
        } else {
            chainflow_kafka::blocking::commit_transaction(&producer, timeout)
                .await
                .unwrap();
        }
    }
    let first = first.unwrap();
    let from = format!("{}:{}", first.partition, first.offset);
    let seqs = |extra: &[&str]| {
        let mut args = vec!["tail", topic, "--from", &from, "--key", &product];
        args.extend_from_slice(extra);
        let out = chainflow(&args).output();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_i64()
                    .unwrap()
            })
            .collect::<Vec<i64>>()
    };
    assert_eq!(seqs(&[]), vec![1, 3], "the aborted tick is not shown");
    assert_eq!(seqs(&["--read-uncommitted"]), vec![1, 2, 3], "asked, it is");
    // a replay's plan says how it reads
    let out = chainflow(&["replay", "market.underlying", "--from", "latest", "--dry-run"]).output();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().next().is_some_and(|l| l.ends_with(", read_committed")),
        "{text}"
    );
}
