//! One trace per record across the three processes: feed, enrich and sink export their
//! spans over OTLP/HTTP (JSON) to a receiver this test runs on loopback; a sampled chain's
//! trace holds spans of all three services, and the `traceparent` headers on the raw and
//! the enriched topic carry its trace id. Needs the local stack (ops/stack.sh up).

mod common;

use chainflow_config::default_products;
use chainflow_contract::topics::{ENRICHED_CHAIN, OPTION_CHAIN};
use common::{chainflow, consumer, ends, stack, Isolated};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An OTLP/HTTP receiver on loopback: keeps the JSON body of every request.
fn receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut reader = BufReader::new(stream.try_clone().expect("a stream"));
                let mut stream = stream;
                loop {
                    // one request: headers, then Content-Length bytes of body
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if let Ok(v) = serde_json::from_slice(&body) {
                        kept.lock().unwrap().push(v);
                    }
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, bodies)
}

/// Every span received: (trace id, service, span name, linked trace ids).
fn spans(bodies: &[Value]) -> Vec<(String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    for body in bodies {
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let links = span["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l["traceId"].as_str().map(str::to_lowercase))
                        .collect();
                    out.push((
                        span["traceId"].as_str().unwrap_or_default().to_lowercase(),
                        service.clone(),
                        span["name"].as_str().unwrap_or_default().to_string(),
                        links,
                    ));
                }
            }
        }
    }
    out
}

/// The `traceparent` trace ids of `product`'s chains on `topic` from `from`, by expiry and
/// event time.
fn trace_ids(topic: &str, from: &[i64], product: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (p, o) in from.iter().enumerate() {
        let out_ = chainflow(&["tail", topic, "--from", &format!("{p}:{o}"), "--with-meta"]).output();
        assert!(out_.status.success(), "{}", String::from_utf8_lossy(&out_.stderr));
        for line in String::from_utf8_lossy(&out_.stdout).lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["value"]["product"] == product {
                let tp = v["headers"]["traceparent"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no traceparent: {v}"));
                let id = tp.split('-').nth(1).expect("version-traceid-spanid-flags").to_string();
                out.insert(format!("{}|{}", v["value"]["expiry"], v["value"]["event_time"]), id);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_follows_a_chain_through_feed_enrich_and_sink() {
    let cfg = stack();
    let run = Isolated::new("traces", "TRC", &default_products().remove("NIFTY").unwrap()).await;
    let product = &run.product;
    let reader = consumer(&cfg, "traces-test");
    let partitions = cfg.kafka.partitions;
    let (raw_from, enriched_from) = (
        ends(&reader, OPTION_CHAIN, partitions).await,
        ends(&reader, ENRICHED_CHAIN, partitions).await,
    );
    let (port, bodies) = receiver();
    let endpoint = format!("http://127.0.0.1:{port}");
    let traced = |args: &[&str]| {
        run.chainflow(args)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_TRACES_SAMPLER", "always_on")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
    };
    let enrich = traced(&["enrich"]).spawn();
    let sink = traced(&["sink"]).spawn();
    let fed = traced(&["feed", "--chains", "6"]).output();
    assert!(fed.status.success(), "{}", String::from_utf8_lossy(&fed.stderr));
    run.db
        .wait_count("chain_snapshots", &format!("product = '{product}'"), 6, 120)
        .await;
    for p in [enrich, sink] {
        let ended = p.terminate(Duration::from_secs(60));
        assert!(ended.status.success(), "{}", ended.stderr);
    }

    // the headers on both topics name the same trace per chain
    let raw = trace_ids(OPTION_CHAIN, &raw_from, product);
    let enriched = trace_ids(ENRICHED_CHAIN, &enriched_from, product);
    assert_eq!(raw.len(), 6, "{raw:?}");
    assert_eq!(raw, enriched, "the enriched chain continues its raw chain's trace");

    // and the receiver holds each of those traces' spans from all three services
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = spans(&bodies.lock().unwrap());
        let mut missing = Vec::new();
        for id in raw.values() {
            let services: BTreeSet<&str> = got
                .iter()
                .filter(|(t, ..)| t == id)
                .map(|(_, s, ..)| s.as_str())
                .collect();
            for want in ["chainflow-feed", "chainflow-enrich", "chainflow-sink"] {
                if !services.contains(want) {
                    missing.push(format!("{id}: no span of {want} (has {services:?})"));
                }
            }
            let linked = got
                .iter()
                .any(|(_, s, name, links)| s == "chainflow-sink" && name == "sink.batch" && links.contains(id));
            if !linked {
                missing.push(format!("{id}: no sink.batch span links it"));
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{missing:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
