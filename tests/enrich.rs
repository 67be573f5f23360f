//! The enricher on the local stack: the default configuration works in a plain shell;
//! every kind of bad input is answered record by record while the good chains behind it
//! flow (and a registry that is away is waited out, never dead-lettered); two enrichers
//! in one group share the work, under both group protocols. Transactions are
//! tests/transactions.rs's. Needs the local stack (ops/stack.sh up).

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_codec::{registry_settings, Codec};
use chainflow_config::{default_products, Config, RegistryConfig};
use chainflow_contract::topics::{dlq, ENRICHED_CHAIN, OPTION_CHAIN};
use chainflow_contract::{EnrichedOptionChain, OptionChain, Quote, Record};
use common::{
    chain, chainflow, consumer, ends, free_port, group_at_end, kill, metric, product_config, stack, stack_pid,
    stack_up, status, tick, wait_http, Names, Producer, CHAIN_EXPIRY,
};
use rdkafka::consumer::Consumer;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A configuration file with the product `name` only.
fn config_for(name: &str) -> PathBuf {
    product_config(name, &default_products().remove("NIFTY").unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn run_works_in_a_plain_shell() {
    // the stack's environment is not loaded: only what differs from the defaults (none on
    // the conventional ports) and the names that keep this run apart are given
    let cfg = stack();
    let defaults = Config::default();
    let names = Names::new("plain");
    let mut args: Vec<String> = ["run", "--chains", "200"].map(String::from).to_vec();
    let mut set = |k: &str, v: &str| args.extend(["--set".to_string(), format!("{k}={v}")]);
    for (key, now, default) in [
        (
            "kafka.bootstrap_servers",
            &cfg.kafka.bootstrap_servers,
            &defaults.kafka.bootstrap_servers,
        ),
        ("registry.url", &cfg.registry.url, &defaults.registry.url),
        ("clickhouse.url", &cfg.clickhouse.url, &defaults.clickhouse.url),
    ] {
        if now != default {
            set(key, now);
        }
    }
    set("clickhouse.database", &names.database());
    set("enrich.group_id", &names.group("enrich"));
    set("sink.group_id", &names.group("sink"));
    // groups of the run's own, from the end of the topics: it reads only what it feeds
    group_at_end(&cfg, &names.group("enrich"), OPTION_CHAIN).await;
    common::sink_groups_at_end(&cfg, &names.group("sink")).await;
    set("observability.metrics_listen", "");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chainflow"))
        .args(&args)
        .env_clear()
        .output()
        .unwrap();
    let _ = std::process::Command::new("curl")
        .args([
            "-s",
            &cfg.clickhouse.url,
            "--data-binary",
            &format!("DROP DATABASE IF EXISTS {}", names.database()),
        ])
        .status();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("200 chains produced, enriched and stored"), "{stdout}");
}

/// What one record of the poison mix is, and what should become of it.
struct Sent {
    offset: i64,
    /// The dead-letter kind, or `None` for a chain that is enriched.
    kind: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_bad_input_is_dead_lettered_once_and_the_good_chains_flow() {
    let cfg = stack();
    let names = Names::new("poison");
    let product = names.product("POISON");
    let key = chain(&product, 0, 1).key();
    let group = names.group("enrich");
    group_at_end(&cfg, &group, OPTION_CHAIN).await;
    let reader = consumer(&cfg, &names.group("reader"));
    let dlq_start = ends(&reader, &dlq(OPTION_CHAIN), 1).await[0];
    let enriched_start = ends(&reader, ENRICHED_CHAIN, cfg.kafka.partitions).await;
    let port = free_port();
    let enrich = chainflow(&["enrich"])
        .config(&config_for(&product))
        .env("CHAINFLOW_ENRICH__GROUP_ID", &group)
        .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", format!("127.0.0.1:{port}"))
        // enriched chains over 150 kB are too large for this enricher's producer
        .env("CHAINFLOW_KAFKA__PROPERTIES__MESSAGE_MAX_BYTES", "150000")
        // an unknown schema id is waited for 2 s (10 s by default), then dead-lettered
        .env("CHAINFLOW_REGISTRY__UNKNOWN_ID_GRACE_MS", "2000")
        .spawn();
    wait_http(&format!("http://127.0.0.1:{port}/readyz"), 60).await;
    let producer = Producer::new(&cfg);
    let mut seq = 0;
    let mut good = |n: usize| {
        seq += 1;
        chain(&product, seq, n)
    };

    // the registry away while the first chain arrives: waited out, never dead-lettered
    let first = producer.encode(&good(21)).await;
    let registry = stack_pid("registry");
    kill("TERM", registry);
    let (partition, offset) = producer.send_raw(OPTION_CHAIN, &key, &first).await;
    let mut sent = vec![Sent { offset, kind: None }];
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        status(&format!("http://127.0.0.1:{port}/readyz")).await,
        503,
        "unready while it waits"
    );
    stack_up();

    // each bad record followed by a good chain with the same key
    let mut nan_spot = good(21);
    nan_spot.spot = f64::NAN;
    let mut expired = good(21);
    expired.expiry = CHAIN_EXPIRY - 10;
    let empty = good(0);
    let mut duplicated = good(21);
    duplicated.strikes[4].strike = duplicated.strikes[3].strike;
    let mut bad_quotes = good(21);
    bad_quotes.strikes[2].call.bid = f64::NAN;
    bad_quotes.strikes[3].put.ask = -5.0;
    bad_quotes.strikes[4].call = Quote {
        bid: 1e300,
        ask: 1e301,
        last: 1e300,
        ..bad_quotes.strikes[4].call.clone()
    };
    let mut unknown_schema = producer.encode(&good(21)).await;
    unknown_schema[1..5].copy_from_slice(&0x7fff_fff0_u32.to_be_bytes());
    let records: Vec<(Vec<u8>, Option<&'static str>)> = vec![
        (b"not a confluent-framed avro record".to_vec(), Some("undecodable")),
        (unknown_schema, Some("unknown_schema")),
        (
            producer.encode(&tick(&product, 1, 21_500.0)).await,
            Some("wrong_record"),
        ),
        (producer.encode(&nan_spot).await, Some("bad_spot")),
        (producer.encode(&expired).await, Some("expired")),
        (producer.encode(&empty).await, Some("no_strikes")),
        (producer.encode(&duplicated).await, Some("unsorted_strikes")),
        (producer.encode(&good(5_000)).await, Some("too_many_strikes")),
        (producer.encode(&good(900)).await, Some("too_large")),
        // NaN, negative and absurd quotes cost only their own options
        (producer.encode(&bad_quotes).await, None),
    ];
    for (bytes, kind) in records {
        let (p, offset) = producer.send_raw(OPTION_CHAIN, &key, &bytes).await;
        assert_eq!(p, partition, "one key, one partition");
        sent.push(Sent { offset, kind });
        let chain = producer.encode(&good(21)).await;
        let (_, offset) = producer.send_raw(OPTION_CHAIN, &key, &chain).await;
        sent.push(Sent { offset, kind: None });
    }

    // every bad record dead-lettered once, with its kind; every good one enriched once
    let dead = read_dead_letters(&reader, dlq_start, &sent);
    let enriched = read_enriched(
        &reader,
        &cfg.registry,
        partition,
        enriched_start[partition as usize],
        &sent,
    )
    .await;
    let series = "chainflow_unknown_schema_waits_total{stage=\"enrich\"}";
    assert!(metric(port, series).await >= 1.0, "the unknown id was waited for first");
    let ended = enrich.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
    let mut stored = 0;
    for s in &sent {
        if let Some(kind) = s.kind {
            let found = dead.get(&s.offset).map(|d| d.0.as_str());
            assert_eq!(found, Some(kind), "offset {}", s.offset);
            assert!(
                !enriched.contains_key(&s.offset),
                "offset {} both dead-lettered and enriched",
                s.offset
            );
        } else {
            assert_eq!(enriched.get(&s.offset), Some(&1), "offset {} enriched once", s.offset);
            assert!(!dead.contains_key(&s.offset), "offset {} dead-lettered", s.offset);
            stored += 1;
        }
    }
    assert_eq!(stored + dead.len(), sent.len(), "produced = enriched + dead-lettered");
    let too_many = sent.iter().find(|s| s.kind == Some("too_many_strikes")).unwrap();
    assert!(
        dead[&too_many.offset].1,
        "a dead letter larger than the producer may send keeps no value"
    );
}

/// The dead letters of `dlq.market.option_chain` from `start` whose source is one of
/// `sent`: per source offset, the kind and whether the value was omitted.
fn read_dead_letters(
    reader: &std::sync::Arc<rdkafka::consumer::BaseConsumer>,
    start: i64,
    sent: &[Sent],
) -> BTreeMap<i64, (String, bool)> {
    let wanted = sent.iter().filter(|s| s.kind.is_some()).count();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&dlq(OPTION_CHAIN), 0, Offset::Offset(start))
        .unwrap();
    reader.assign(&tpl).unwrap();
    let offsets: Vec<i64> = sent.iter().map(|s| s.offset).collect();
    let mut found = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while found.len() < wanted && Instant::now() < deadline {
        let Some(m) = reader.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
        };
        let Some(offset) = header("chainflow.source.offset").and_then(|o| o.parse::<i64>().ok()) else {
            continue;
        };
        if header("chainflow.source.topic").as_deref() != Some(OPTION_CHAIN) || !offsets.contains(&offset) {
            continue;
        }
        let kind = header("chainflow.error.kind").unwrap_or_default();
        let omitted = header("chainflow.error.value_omitted").is_some() && m.payload().is_none();
        if let Some((first, _)) = found.insert(offset, (kind.clone(), omitted)) {
            panic!("offset {offset} dead-lettered twice: {first}, then {kind}");
        }
    }
    found
}

/// How many enriched chains of `partition` from `start` come from each offset of `sent`.
async fn read_enriched(
    reader: &std::sync::Arc<rdkafka::consumer::BaseConsumer>,
    registry: &RegistryConfig,
    partition: i32,
    start: i64,
    sent: &[Sent],
) -> BTreeMap<i64, u32> {
    let wanted = sent.iter().filter(|s| s.kind.is_none()).count();
    let codec = Codec::new(registry_settings(registry).unwrap());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(ENRICHED_CHAIN, partition, Offset::Offset(start))
        .unwrap();
    reader.assign(&tpl).unwrap();
    let offsets: Vec<i64> = sent.iter().map(|s| s.offset).collect();
    let mut found: BTreeMap<i64, u32> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while found.len() < wanted && Instant::now() < deadline {
        let Some(m) = reader.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let chain: EnrichedOptionChain = codec.decode(m.payload().unwrap_or_default()).await.unwrap();
        if chain.source_topic == OPTION_CHAIN && offsets.contains(&chain.source_offset) {
            *found.entry(chain.source_offset).or_default() += 1;
        }
    }
    // anything repeated arrives right behind: a last look
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let chain: EnrichedOptionChain = codec.decode(m.payload().unwrap_or_default()).await.unwrap();
            if offsets.contains(&chain.source_offset) {
                *found.entry(chain.source_offset).or_default() += 1;
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_id_assigned_after_its_record_arrived_is_waited_for() {
    let cfg = stack();
    let names = Names::new("late_id");
    let product = names.product("LATE");
    // a registry of its own, on a topic of its own
    let registry = RegistryConfig {
        url: format!("http://127.0.0.1:{}", free_port()),
        ..cfg.registry.clone()
    };
    let state = std::env::temp_dir().join(format!("chainflow-{}", names.tag()));
    let _registry = chainflow(&["registry"])
        .env("CHAINFLOW_REGISTRY__LISTEN", registry.url.trim_start_matches("http://"))
        .env("CHAINFLOW_REGISTRY__TOPIC", names.topic("_schemas"))
        .env("CHAINFLOW_REGISTRY__STATE_DIR", &state)
        .spawn();
    wait_http(&format!("{}/subjects", registry.url), 60).await;
    let group = names.group("enrich");
    group_at_end(&cfg, &group, OPTION_CHAIN).await;
    let reader = consumer(&cfg, &names.group("reader"));
    let enriched_start = ends(&reader, ENRICHED_CHAIN, cfg.kafka.partitions).await;
    let port = free_port();
    let enrich = chainflow(&["enrich"])
        .config(&config_for(&product))
        .env("CHAINFLOW_ENRICH__GROUP_ID", &group)
        .env("CHAINFLOW_REGISTRY__URL", &registry.url)
        .env("CHAINFLOW_REGISTRY__UNKNOWN_ID_GRACE_MS", "30000")
        .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .spawn();
    wait_http(&format!("http://127.0.0.1:{port}/readyz"), 60).await;

    // a chain written with the next schema id, which the registry has not assigned yet (as
    // when another registry instance has just assigned it)
    let mut next_id: u32 = 1;
    while reqwest::get(format!("{}/schemas/ids/{next_id}", registry.url))
        .await
        .unwrap()
        .status()
        .is_success()
    {
        next_id += 1;
    }
    let late = chain(&product, 1, 21);
    let schema = apache_avro::Schema::parse_str(OptionChain::SCHEMA).unwrap();
    let mut payload = vec![0];
    payload.extend_from_slice(&next_id.to_be_bytes());
    chainflow_codec::write_body(&schema, &late, &mut payload).unwrap();
    let (partition, offset) = Producer::new(&cfg).send_raw(OPTION_CHAIN, &late.key(), &payload).await;
    let series = "chainflow_unknown_schema_waits_total{stage=\"enrich\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(port, series).await < 1.0 {
        assert!(Instant::now() < deadline, "the record was never waited for");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // now the schema is registered, and gets id 1
    let codec = Codec::new(registry_settings(&registry).unwrap());
    assert_eq!(codec.register::<OptionChain>().await.unwrap(), next_id);

    // the held record is enriched, once
    let sent = [Sent { offset, kind: None }];
    let enriched = read_enriched(&reader, &registry, partition, enriched_start[partition as usize], &sent).await;
    assert_eq!(enriched.get(&offset), Some(&1), "enriched once after the wait");
    let ended = enrich.terminate(Duration::from_secs(35));
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(ended.stderr.contains("not known to the registry"), "{}", ended.stderr);
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_enrichers_in_one_group_share_the_work_and_neither_is_fenced_classic() {
    two_enrichers_share_the_work("classic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_enrichers_in_one_group_share_the_work_and_neither_is_fenced_consumer_protocol() {
    two_enrichers_share_the_work("consumer").await;
}

/// Two enrichers in one group of `protocol` (`kafka.group_protocol`): each takes a share,
/// each chain is enriched once, and both stop cleanly.
async fn two_enrichers_share_the_work(protocol: &str) {
    let cfg = stack();
    let names = Names::new("two");
    let group = names.group("enrich");
    group_at_end(&cfg, &group, OPTION_CHAIN).await;
    // products whose chain keys fall on several partitions
    let products: Vec<String> = (0..12).map(|i| format!("{}{i}", names.product("TWO"))).collect();
    let mut file = toml::Table::new();
    let params = toml::Value::try_from(default_products().remove("NIFTY").unwrap()).unwrap();
    file.insert(
        "products".into(),
        toml::Value::Table(products.iter().map(|p| (p.clone(), params.clone())).collect()),
    );
    let path = std::env::temp_dir().join(format!("chainflow-{}.toml", names.tag()));
    std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
    let ports = [free_port(), free_port()];
    let start = |port: u16| {
        chainflow(&["enrich"])
            .config(&path)
            .env("CHAINFLOW_ENRICH__GROUP_ID", &group)
            .env("CHAINFLOW_KAFKA__GROUP_PROTOCOL", protocol)
            .env("CHAINFLOW_OBSERVABILITY__METRICS_LISTEN", format!("127.0.0.1:{port}"))
            .spawn()
    };
    let (a, b) = (start(ports[0]), start(ports[1]));
    for port in ports {
        wait_http(&format!("http://127.0.0.1:{port}/readyz"), 60).await;
    }
    let producer = Producer::new(&cfg);
    let mut partitions = std::collections::BTreeSet::new();
    for round in 1..=10 {
        for p in &products {
            let c = chain(p, round, 11);
            let (partition, _) = producer
                .send_raw(OPTION_CHAIN, &c.key(), &producer.encode(&c).await)
                .await;
            partitions.insert(partition);
        }
    }
    assert!(partitions.len() > 1, "the keys fall on several partitions");
    let total = (products.len() * 10) as f64;
    let series = "chainflow_enrich_records_total{outcome=\"enriched\"}";
    let deadline = Instant::now() + Duration::from_secs(90);
    let counts = loop {
        let counts = [
            common::metric(ports[0], series).await,
            common::metric(ports[1], series).await,
        ];
        if counts[0] + counts[1] >= total {
            break counts;
        }
        assert!(Instant::now() < deadline, "enriched {counts:?} of {total}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(counts[0] + counts[1], total, "each chain enriched once");
    assert!(counts[0] > 0.0 && counts[1] > 0.0, "both took a share: {counts:?}");
    for p in [a, b] {
        let ended = p.terminate(Duration::from_secs(35));
        assert!(ended.status.success(), "neither was fenced or failed: {}", ended.stderr);
    }
}
