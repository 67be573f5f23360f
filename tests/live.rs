//! The live view on the real stack: `chainflow serve` seeded from ClickHouse and following
//! the topics, a WebSocket client that compares what it gets with the enriched records in
//! Kafka, slow clients that must get conflated updates without the gateway's memory
//! growing, and the page in headless Chromium. Needs the local stack (ops/stack.sh up) and
//! Chromium (ops/install.sh).

mod common;

use chainflow_config::{default_products, Product};
use chainflow_contract::topics::ENRICHED_CHAIN;
use common::{chainflow, free_port, wait_http, Isolated, Proc};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn params(strikes: u32) -> Product {
    let mut p = default_products().remove("NIFTY").unwrap();
    (p.strikes, p.expiries) = (strikes, 1);
    p
}

/// `chainflow serve` for `run` on a port of its own, with `settings`, once ready.
async fn serve(run: &Isolated, settings: &[(&str, &str)]) -> (Proc, u16) {
    let port = free_port();
    let mut command = run
        .chainflow(&["serve"])
        .env("CHAINFLOW_SERVE__LISTEN", format!("127.0.0.1:{port}"));
    for (name, value) in settings {
        command = command.env(name, value);
    }
    let proc = command.spawn();
    wait_http(&format!("http://127.0.0.1:{port}/readyz"), 60).await;
    (proc, port)
}

/// `chainflow run --chains N` for `run`, to its end.
fn feed(run: &Isolated, chains: usize, rate: u32) {
    let out = run
        .chainflow(&["run", "--chains", &chains.to_string(), "--rate", &rate.to_string()])
        .output();
    assert!(out.status.success(), "run: {}", String::from_utf8_lossy(&out.stderr));
}

/// The enriched chains of `run`'s product (of `expiry`, if given) in Kafka since `from`, in
/// their JSON form (`chainflow tail`), oldest first.
fn enriched(run: &Isolated, from: &str, expiry: Option<&str>) -> Vec<Value> {
    let out = chainflow(&["tail", ENRICHED_CHAIN, "--from", from]).output();
    assert!(out.status.success(), "tail: {}", String::from_utf8_lossy(&out.stderr));
    let mut chains: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("tail prints JSON lines"))
        .filter(|c| c["product"] == run.product.as_str() && expiry.is_none_or(|e| c["expiry"] == e))
        .collect();
    chains.sort_by_key(|c| {
        (
            c["event_time"].as_str().unwrap_or("").to_string(),
            c["processed_at"].as_str().unwrap_or("").to_string(),
        )
    });
    chains
}

async fn connect(port: u16) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .expect("the WebSocket opens");
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::text(message.to_string())).await.expect("sent");
}

/// The next JSON message within `limit`, if any.
async fn next(socket: &mut Socket, limit: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(limit, socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).expect("JSON messages")),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("the WebSocket failed: {e}"),
            Ok(None) | Err(_) => return None,
        }
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn metric(port: u16, series: &str) -> f64 {
    common::metric(port, series).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_gets_the_stored_chain_then_updates_equal_to_the_enriched_records() {
    let run = Isolated::new("live", "LIV", &params(11)).await;
    let began = now_rfc3339();
    feed(&run, 20, 0);
    let stored = enriched(&run, &began, None);
    assert_eq!(stored.len(), 20, "20 enriched chains in Kafka");
    let expiry = stored.last().unwrap()["expiry"].as_str().unwrap().to_string();
    let latest = enriched(&run, &began, Some(&expiry)).pop().unwrap();
    let channel = format!("chain:{}:{expiry}", run.product);

    let (gateway, port) = serve(&run, &[]).await;
    let mut ws = connect(port).await;
    // a bad channel is refused with the reason, the others served
    send(&mut ws, json!({ "subscribe": [channel, "chain:X:31-12-2026"] })).await;
    let mut got = Vec::new();
    while let Some(m) = next(&mut ws, Duration::from_secs(2)).await {
        got.push(m);
    }
    let errors: Vec<&Value> = got.iter().filter(|m| m.get("errors").is_some()).collect();
    assert_eq!(errors.len(), 1, "{got:?}");
    assert!(
        errors[0]["errors"][0]["error"].as_str().unwrap().contains("YYYY-MM-DD"),
        "{errors:?}"
    );
    let snapshots: Vec<&Value> = got.iter().filter(|m| m["channel"] == channel.as_str()).collect();
    assert_eq!(snapshots.len(), 1, "one message for the channel at once: {got:?}");
    assert_eq!(snapshots[0]["kind"], "snapshot");
    // seeded from ClickHouse, it is the latest enriched record as Kafka has it
    assert_eq!(
        snapshots[0]["data"], latest,
        "the snapshot is the latest enriched chain"
    );
    let api: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/latest/{channel}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api, latest, "GET /api/latest/{channel}");

    // the feed goes on: every update is an enriched record, the last one the newest
    let more_from = now_rfc3339();
    let mut feeder = run.chainflow(&["run", "--chains", "10", "--rate", "200"]).spawn();
    let mut updates = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let newest = loop {
        if Instant::now() >= deadline {
            let scraped = common::scrape(port).await;
            let seen: Vec<&str> = scraped
                .lines()
                .filter(|l| l.starts_with("chainflow_records_in") || l.starts_with("chainflow_live"))
                .collect();
            panic!("no update with the newest chain within 120 s: {updates:?}; the gateway: {seen:?}");
        }
        if let Some(m) = next(&mut ws, Duration::from_secs(1)).await {
            assert_eq!(m["kind"], "update", "{m}");
            updates.push(m);
        }
        let produced = enriched(&run, &more_from, Some(&expiry));
        if updates.last().is_some_and(|u| Some(&u["data"]) == produced.last()) && !feeder.running() {
            break produced;
        }
    };
    let ended = feeder.wait(Duration::from_secs(60));
    assert!(ended.status.success(), "{}", ended.stderr);
    for u in &updates {
        assert!(newest.contains(&u["data"]), "an update that is no enriched record: {u}");
        assert!(
            u["produced_us"].as_i64().is_some(),
            "updates carry the production stamp: {u}"
        );
    }
    let versions: Vec<i64> = updates.iter().map(|u| u["version"].as_i64().unwrap()).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions increase: {versions:?}"
    );
    assert!(
        metric(port, "chainflow_live_messages_total{kind=\"update\"}").await >= updates.len() as f64,
        "updates are counted"
    );
    gateway.terminate(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_get_the_newest_chain_not_a_queue_and_memory_stays_bounded() {
    const SLOW: usize = 40;
    const CHAINS: usize = 400;
    let run = Isolated::new("live_slow", "LSL", &params(41)).await;
    let began = now_rfc3339();
    feed(&run, 2, 0);
    let expiry = enriched(&run, &began, None)[0]["expiry"].as_str().unwrap().to_string();
    let channel = format!("chain:{}:{expiry}", run.product);
    // clients that read nothing for the whole feed are not disconnected meanwhile
    let (gateway, port) = serve(&run, &[("CHAINFLOW_SERVE__SEND_TIMEOUT_MS", "300000")]).await;

    // clients with small receive buffers that read nothing while the chains arrive
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), MaybeTlsStream::Plain(stream))
                .await
                .unwrap();
        send(&mut ws, json!({ "subscribe": [channel] })).await;
        slow.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = gateway.rss();
    let more_from = now_rfc3339();
    feed(&run, CHAINS, 0);
    assert_eq!(enriched(&run, &more_from, None).len(), CHAINS);
    let produced = enriched(&run, &more_from, Some(&expiry));
    let sent_before_reading = metric(port, "chainflow_live_messages_total{kind=\"update\"}").await;
    let peak = gateway.peak_rss();

    // now they read: each ends at the newest chain, having got far fewer than were produced
    let newest = produced.last().unwrap();
    for ws in &mut slow {
        let mut chain_messages = 0;
        loop {
            let m = next(ws, Duration::from_secs(10))
                .await
                .expect("a slow client gets to the newest chain");
            chain_messages += 1;
            if &m["data"] == newest {
                break;
            }
        }
        // what the socket buffers hold (a few MB), then the newest: fewer than were produced
        assert!(
            chain_messages < produced.len(),
            "{chain_messages} messages for {} chains: not conflated",
            produced.len()
        );
    }
    let conflated = metric(port, "chainflow_live_conflated_total").await;
    assert!(conflated > 0.0, "conflated updates are counted");
    // had every update been queued for every slow client, the gateway would hold them all
    let queued_bytes: usize = SLOW * produced.iter().map(|c| c.to_string().len()).sum::<usize>();
    let grew = peak.saturating_sub(rss_before);
    assert!(
        grew < 64 << 20,
        "the gateway grew by {} MB while {SLOW} slow clients were offered {} MB (sent before reading: {sent_before_reading})",
        grew >> 20,
        queued_bytes >> 20
    );
    assert!(
        queued_bytes > 2 * (64 << 20),
        "the test offers far more than the bound: {} MB",
        queued_bytes >> 20
    );
    eprintln!(
        "{SLOW} slow clients offered {} MB; the gateway grew by {} MB",
        queued_bytes >> 20,
        grew >> 20
    );
    gateway.terminate(Duration::from_secs(30));
}

/// A DevTools-protocol client: commands by id, events ignored.
struct Cdp {
    socket: Socket,
    id: u64,
}

impl Cdp {
    /// Connects to the first page of the Chromium listening on `port`.
    async fn attach(port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await {
                let targets: Vec<Value> = r.json().await.unwrap_or_default();
                if let Some(t) = targets.iter().find(|t| t["type"] == "page") {
                    break t["webSocketDebuggerUrl"].as_str().unwrap().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "Chromium's DevTools did not answer on port {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("DevTools WebSocket");
        Self { socket, id: 0 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        send(
            &mut self.socket,
            json!({ "id": id, "method": method, "params": params }),
        )
        .await;
        loop {
            let m = next(&mut self.socket, Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("{method}: no answer from Chromium"));
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
        }
    }

    /// `expression` evaluated in the page, by value.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }
}

/// The IVs of a chain in its JSON form, per strike: (strike, call, put).
fn ivs(chain: &Value) -> Vec<(f64, Option<f64>, Option<f64>)> {
    chain["strikes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["strike"].as_f64().unwrap(),
                s["call"]["iv"].as_f64(),
                s["put"]["iv"].as_f64(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_in_chromium_shows_the_latest_chain_as_it_changes() {
    let run = Isolated::new("live_page", "LPG", &params(21)).await;
    let began = now_rfc3339();
    feed(&run, 2, 0);
    let expiry = enriched(&run, &began, None)[0]["expiry"].as_str().unwrap().to_string();
    let channel = format!("chain:{}:{expiry}", run.product);
    let (gateway, port) = serve(&run, &[]).await;

    let devtools = free_port();
    let profile = std::env::temp_dir().join(format!("chainflow-chromium-{}", run.names.tag()));
    let chromium = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1500",
            &format!("--remote-debugging-port={devtools}"),
            &format!("--user-data-dir={}", profile.display()),
            "about:blank",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium (Debian's package, installed by ops/install.sh)");
    let mut cdp = Cdp::attach(devtools).await;
    cdp.call("Runtime.enable", json!({})).await;
    cdp.call(
        "Page.navigate",
        json!({ "url": format!("http://127.0.0.1:{port}/?channel={channel}") }),
    )
    .await;
    let loaded = Instant::now();

    let more_from = now_rfc3339();
    let feeder = run.chainflow(&["run", "--chains", "20", "--rate", "200"]).spawn();
    let mut state = Value::Null;
    let mut matched = false;
    while loaded.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        state = cdp.eval("JSON.stringify(window.chainflowState || null)").await;
        state = serde_json::from_str(state.as_str().unwrap_or("null")).unwrap();
        let updates = state["updates"].as_i64().unwrap_or(0);
        if updates >= 2 {
            let produced = enriched(&run, &more_from, Some(&expiry));
            if let Some(newest) = produced.last() {
                if state["chain"]["event_time"] == newest["event_time"] {
                    assert_eq!(
                        ivs(&state["chain"]),
                        ivs(newest),
                        "the page's IVs are the newest enriched chain's"
                    );
                    matched = true;
                    break;
                }
            }
        }
    }
    let shot = cdp.call("Page.captureScreenshot", json!({ "format": "png" })).await;
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().unwrap(),
    )
    .unwrap();
    let path = format!("{}/target/live-page.png", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&path, png).unwrap();
    let mut chromium = chromium;
    let _ = chromium.kill();
    let _ = chromium.wait();
    let _ = std::fs::remove_dir_all(&profile);
    let ended = feeder.wait(Duration::from_secs(60));
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(
        matched,
        "within 20 s the page had no two updates ending at the newest enriched chain; its state: {state} (screenshot: {path})"
    );
    assert_eq!(state["connection"], "open");
    assert!(state["latency"]["samples"].as_i64().unwrap() >= 2, "{state}");
    gateway.terminate(Duration::from_secs(30));
}
