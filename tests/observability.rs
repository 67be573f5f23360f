//! What operators watch, on the local stack: every metric of docs/metrics.md served with
//! its `# HELP` by the component that owns it, during and after a run of feed, enrich and
//! sink as three processes; the record counters balancing with what the feed produced; lag
//! back to 0; the pipeline latency observed once per stored record.
//! Needs the local stack (ops/stack.sh up).

#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario on the real stack, read top to bottom: its steps and checks stay together"
)]

mod common;

use chainflow_config::default_products;
use chainflow_contract::topics::{dlq, ENRICHED_CHAIN, OPTION_CHAIN, OPTION_QUOTE, UNDERLYING};
use common::{chain, chainflow, free_port, stack, wait_http, Isolated, Producer};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The metric names docs/metrics.md lists.
fn documented() -> BTreeSet<String> {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

/// One scrape: the names with a `# HELP` line, and every sample by series.
struct Scrape {
    helped: BTreeSet<String>,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    async fn of(port: u16) -> Self {
        let text = common::scrape(port).await;
        let mut helped = BTreeSet::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap_or_default().to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                if let Some((series, value)) = line.rsplit_once(' ') {
                    samples.insert(series.to_string(), value.parse().unwrap_or(f64::NAN));
                }
            }
        }
        Self { helped, samples }
    }

    /// The sum of the samples of `name` whose labels contain every one of `labels`.
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(s, _)| s.split('{').next() == Some(name) && labels.iter().all(|l| s.contains(l)))
            .map(|(_, v)| v)
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_metric_is_served_and_the_counts_balance() {
    let cfg = stack();
    let run = Isolated::new("metrics", "MET", &default_products().remove("NIFTY").unwrap()).await;
    let names = &run.names;
    let ports: BTreeMap<&str, u16> = ["feed", "enrich", "sink", "registry", "serve"]
        .into_iter()
        .map(|c| (c, free_port()))
        .collect();
    let service = |command: &str| {
        run.chainflow(&[command])
            .env(
                "CHAINFLOW_OBSERVABILITY__METRICS_LISTEN",
                format!("127.0.0.1:{}", ports[command]),
            )
            .spawn()
    };
    let enrich = service("enrich");
    let sink = service("sink");
    // a registry of its own, for its metrics (the stack's may run an older binary)
    let registry_listen = format!("127.0.0.1:{}", ports["registry"]);
    let registry = chainflow(&["registry"])
        .env("CHAINFLOW_REGISTRY__LISTEN", &registry_listen)
        .env("CHAINFLOW_REGISTRY__TOPIC", names.topic("_schemas"))
        .env(
            "CHAINFLOW_REGISTRY__STATE_DIR",
            std::env::temp_dir().join(format!("chainflow-metrics-{}", names.tag())),
        )
        .spawn();
    // the live view serves its metrics beside the page
    let serve = run
        .chainflow(&["serve"])
        .env("CHAINFLOW_SERVE__LISTEN", format!("127.0.0.1:{}", ports["serve"]))
        .spawn();
    for c in ["enrich", "sink", "registry", "serve"] {
        wait_http(&format!("http://127.0.0.1:{}/readyz", ports[c]), 90).await;
    }
    reqwest::get(format!("http://{registry_listen}/subjects"))
        .await
        .unwrap();

    // one chain of a product enrich does not know: a dead letter
    let poison = chain(&names.product("UNKNOWN"), 1, 3);
    Producer::new(&cfg).send(&poison).await;

    // the feed, slow enough to be scraped while it runs
    let feed = std::process::Command::new(env!("CARGO_BIN_EXE_chainflow"))
        .args([
            "--config",
            &run.config.display().to_string(),
            "feed",
            "--chains",
            "150",
            "--rate",
            "150",
        ])
        .env(
            "CHAINFLOW_OBSERVABILITY__METRICS_LISTEN",
            format!("127.0.0.1:{}", ports["feed"]),
        )
        .env("CHAINFLOW_OBSERVABILITY__LOG_FORMAT", "text")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_http(&format!("http://127.0.0.1:{}/healthz", ports["feed"]), 30).await;
    let mut feed = feed;
    let during = loop {
        let s = Scrape::of(ports["feed"]).await;
        if s.sum("chainflow_records_out_total", &["stage=\"feed\""]) > 0.0 {
            break s;
        }
        assert!(
            feed.try_wait().unwrap().is_none(),
            "the feed ended before it was seen counting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = feed.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let produced: BTreeMap<String, f64> = stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let topic = words.next()?;
            let n = words.next()?.parse().ok()?;
            topic.starts_with("market.").then(|| (topic.to_string(), n))
        })
        .collect();
    assert_eq!(produced.get(OPTION_CHAIN), Some(&150.0), "{stdout}");

    // after the run: everything stored, lag back to 0
    let deadline = Instant::now() + Duration::from_secs(120);
    let (enriched, stored) = loop {
        let (e, s) = (Scrape::of(ports["enrich"]).await, Scrape::of(ports["sink"]).await);
        let done = s.sum("chainflow_records_out_total", &[&format!("topic=\"{ENRICHED_CHAIN}\"")]) >= 150.0
            && s.sum("chainflow_records_out_total", &[&format!("topic=\"{UNDERLYING}\"")]) >= produced[UNDERLYING]
            && s.sum("chainflow_records_out_total", &[&format!("topic=\"{OPTION_QUOTE}\"")]) >= produced[OPTION_QUOTE]
            && s.sum("chainflow_sink_consumer_lag", &[]) == 0.0
            && s.samples.keys().any(|k| k.starts_with("chainflow_sink_consumer_lag"));
        if done || Instant::now() > deadline {
            break (e, s);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let registry_scrape = Scrape::of(ports["registry"]).await;
    let serve_scrape = Scrape::of(ports["serve"]).await;

    // every documented metric, with its HELP, from the component that serves it
    let served: BTreeSet<&String> = [&during, &enriched, &stored, &registry_scrape, &serve_scrape]
        .iter()
        .flat_map(|s| s.helped.iter())
        .collect();
    let missing: Vec<String> = documented().into_iter().filter(|m| !served.contains(m)).collect();
    assert!(missing.is_empty(), "documented but not served with # HELP: {missing:?}");

    // the counts balance: what the feed produced is what enrich and the sink took
    let topic = |t: &str| format!("topic=\"{t}\"");
    assert_eq!(
        enriched.sum("chainflow_records_in_total", &["stage=\"enrich\""]),
        151.0,
        "150 chains and the poison"
    );
    assert_eq!(
        enriched.sum("chainflow_records_out_total", &["stage=\"enrich\""]),
        150.0
    );
    assert_eq!(
        enriched.sum(
            "chainflow_dead_letters_total",
            &[&topic(OPTION_CHAIN), "kind=\"unknown_product\""]
        ),
        1.0
    );
    for (t, n) in &produced {
        let stored_from = if t == OPTION_CHAIN { ENRICHED_CHAIN } else { t.as_str() };
        assert_eq!(
            stored.sum("chainflow_records_out_total", &[&topic(stored_from)]),
            *n,
            "{t}: produced {n}"
        );
        assert_eq!(
            stored.sum("chainflow_records_in_total", &[&topic(stored_from)]),
            *n,
            "{t}"
        );
    }
    assert_eq!(
        stored.sum("chainflow_records_in_total", &[&topic(&dlq(OPTION_CHAIN))]),
        1.0
    );
    assert_eq!(stored.sum("chainflow_sink_consumer_lag", &[]), 0.0, "lag back to 0");
    // one latency observation per stored record the feed stamped (the poison has no stamp)
    for (stream, t) in [
        ("chains", OPTION_CHAIN),
        ("ticks", UNDERLYING),
        ("quotes", OPTION_QUOTE),
    ] {
        assert_eq!(
            stored.sum(
                "chainflow_pipeline_latency_seconds_count",
                &[&format!("stream=\"{stream}\"")]
            ),
            produced[t],
            "{stream}"
        );
    }
    assert_eq!(
        stored.sum("chainflow_sequence_gaps_total", &[]),
        0.0,
        "a fault-free run has no gaps"
    );
    assert!(registry_scrape.sum("chainflow_registry_requests_total", &["status=\"200\""]) >= 1.0);

    for p in [enrich, sink, registry, serve] {
        let ended = p.terminate(Duration::from_secs(60));
        assert!(ended.status.success(), "{}", ended.stderr);
    }
}
