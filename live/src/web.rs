//! The gateway's HTTP side: the page (`/`, embedded), the WebSocket (`/ws`), and the API
//! (`/api/channels`, `/api/latest/{channel}`, `/api/session/{product}/{expiry}`), with its
//! limits: clients at once, subscriptions per client, origins, an optional token, and a
//! time limit on each send so that a client that stopped reading is let go.

use crate::channel::{valid_product, Channel};
use crate::hub::{Hub, State, Watch};
use crate::store::Store;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as Shared};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chainflow_config::{Secret, ServeConfig};
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{StreamExt, StreamMap};

/// Latencies a page may report in one message, at most.
const MAX_REPORTED: usize = 100;
/// A reported latency above this is not a latency (a clock off by minutes), ms.
const MAX_LATENCY_MS: f64 = 600_000.0;
/// The largest message a client may send (subscriptions, latency reports).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// A client's read buffer: its messages are small (tungstenite's default is 128 KiB a
/// connection, which made a thousand clients cost 250 MB).
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// How long a question to ClickHouse from the API may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the routes share.
pub struct Gateway {
    /// Every channel's state.
    pub hub: Arc<Hub>,
    /// ClickHouse, for the session charts.
    pub store: Store,
    /// Each configured product's time zone (its session is its calendar day there).
    pub zones: BTreeMap<String, Tz>,
    token: Secret,
    origins: Vec<String>,
    max_clients: usize,
    max_subscriptions: usize,
    send_timeout: Duration,
    clients: AtomicUsize,
}

impl Gateway {
    /// A gateway with the limits of `section`.
    pub fn new(section: &ServeConfig, hub: Arc<Hub>, store: Store, zones: BTreeMap<String, Tz>) -> Self {
        Self {
            hub,
            store,
            zones,
            token: section.token.clone(),
            origins: section
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            max_clients: section.max_clients,
            max_subscriptions: section.max_subscriptions,
            send_timeout: Duration::from_millis(section.send_timeout_ms),
            clients: AtomicUsize::new(0),
        }
    }

    /// True when no token is configured, or the request carries it (`Authorization: Bearer`
    /// or `?token=`), compared in constant time.
    fn authorized(&self, headers: &HeaderMap, query: &Auth) -> bool {
        if self.token.is_empty() {
            return true;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let given = bearer.or(query.token.as_deref()).unwrap_or("");
        same(given.as_bytes(), self.token.expose().as_bytes())
    }

    /// True for a request without `Origin` (not a browser), from the gateway's own origin,
    /// or from one of `serve.allowed_origins`.
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        (authority.is_some() && authority == host) || self.origins.iter().any(|o| o == origin)
    }

    /// A place for one more client, if there is one.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let taken = self.clients.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.max_clients).then_some(n + 1)
        });
        let n = taken.ok()? + 1;
        metrics::gauge!("chainflow_live_clients").set(n as f64);
        Some(Slot(self.clone()))
    }
}

/// One client's place; given back when the client goes.
struct Slot(Arc<Gateway>);

impl Drop for Slot {
    fn drop(&mut self) {
        let n = self.0.clients.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("chainflow_live_clients").set(n as f64);
    }
}

/// Byte strings compared without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `token` query parameter.
#[derive(Deserialize)]
pub struct Auth {
    token: Option<String>,
}

fn refuse(reason: &'static str, status: StatusCode, message: &str) -> Response {
    metrics::counter!("chainflow_live_refused_total", "reason" => reason).increment(1);
    (status, Json(json!({ "error": message }))).into_response()
}

fn unauthorized() -> Response {
    refuse(
        "token",
        StatusCode::UNAUTHORIZED,
        "a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)",
    )
}

/// The page, its script and style, uPlot and its licence, embedded in the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../assets/index.html")),
    (
        "/live.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/live.js"),
    ),
    (
        "/live.css",
        "text/css; charset=utf-8",
        include_str!("../assets/live.css"),
    ),
    (
        "/vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "/vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../assets/vendor/uPlot.min.css"),
    ),
    (
        "/vendor/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_str!("../assets/vendor/uPlot.LICENSE"),
    ),
];

/// Every route of the gateway.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(ws))
        .route("/api/channels", get(channels))
        .route("/api/latest/{channel}", get(latest))
        .route("/api/session/{product}/{expiry}", get(session));
    for &(path, kind, body) in ASSETS {
        router = router.route(path, get(move || async move { ([(header::CONTENT_TYPE, kind)], body) }));
    }
    router.with_state(gateway)
}

async fn ws(
    Shared(gw): Shared<Arc<Gateway>>,
    headers: HeaderMap,
    Query(auth): Query<Auth>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !gw.authorized(&headers, &auth) {
        return unauthorized();
    }
    if !gw.origin_allowed(&headers) {
        return refuse(
            "origin",
            StatusCode::FORBIDDEN,
            "this origin may not open the live view's WebSocket (serve.allowed_origins)",
        );
    }
    let Some(slot) = gw.admit() else {
        return refuse(
            "clients",
            StatusCode::SERVICE_UNAVAILABLE,
            "the live view serves as many clients as it may (serve.max_clients); try again later",
        );
    };
    // each message is written and flushed as it is sent: no write buffer to fill first
    let upgrade = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_REQUEST_BYTES)
        .max_frame_size(MAX_REQUEST_BYTES);
    upgrade.on_upgrade(move |socket| async move {
        Client::new(gw).run(socket).await;
        drop(slot);
    })
}

/// What a client sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    unsubscribe: Vec<String>,
    /// Produce → shown latencies the page measured, ms.
    #[serde(default)]
    latency_ms: Vec<f64>,
}

/// One WebSocket client: its subscriptions and the version of each channel it last got.
struct Client {
    gw: Arc<Gateway>,
    watching: StreamMap<String, WatchStream<Option<Arc<State>>>>,
    channels: HashMap<String, Channel>,
    sent: HashMap<String, u64>,
}

impl Client {
    fn new(gw: Arc<Gateway>) -> Self {
        Self {
            gw,
            watching: StreamMap::new(),
            channels: HashMap::new(),
            sent: HashMap::new(),
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        loop {
            tokio::select! {
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reply) = self.request(&text) {
                            if !self.send(&mut socket, reply).await {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {} // pings are answered by the library; binary is ignored
                },
                Some((name, state)) = self.watching.next(), if !self.watching.is_empty() => {
                    let Some(state) = state else { continue };
                    if !self.deliver(&mut socket, &name, &state).await {
                        break;
                    }
                }
            }
        }
        metrics::gauge!("chainflow_live_subscriptions").decrement(self.channels.len() as f64);
        for (name, channel) in self.channels.drain() {
            self.watching.remove(&name);
            self.gw.hub.release(&channel);
        }
    }

    /// Acts on a client's message; the reply, if any.
    fn request(&mut self, text: &str) -> Option<String> {
        let req: Request = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                return Some(
                    json!({ "error": format!(
                        "expected {{\"subscribe\": [CHANNEL, ...]}} or {{\"unsubscribe\": [...]}}: {e}"
                    ) })
                    .to_string(),
                )
            }
        };
        let browser = metrics::histogram!("chainflow_live_latency_seconds", "at" => "browser");
        for ms in req.latency_ms.iter().take(MAX_REPORTED) {
            if ms.is_finite() && (0.0..MAX_LATENCY_MS).contains(ms) {
                browser.record(ms / 1000.0);
            }
        }
        for name in &req.unsubscribe {
            if let Some(channel) = self.channels.remove(name) {
                self.watching.remove(name);
                self.sent.remove(name);
                metrics::gauge!("chainflow_live_subscriptions").decrement(1.0);
                self.gw.hub.release(&channel);
            }
        }
        let mut errors = Vec::new();
        for name in &req.subscribe {
            let channel: Channel = match name.parse() {
                Ok(c) => c,
                Err(e) => {
                    metrics::counter!("chainflow_live_refused_total", "reason" => "channel").increment(1);
                    errors.push(json!({ "channel": name, "error": e }));
                    continue;
                }
            };
            if !self.channels.contains_key(name) && self.channels.len() >= self.gw.max_subscriptions {
                metrics::counter!("chainflow_live_refused_total", "reason" => "subscriptions").increment(1);
                errors.push(json!({ "channel": name, "error": format!(
                    "at most {} subscriptions per client (serve.max_subscriptions)", self.gw.max_subscriptions
                ) }));
                continue;
            }
            // subscribing again gets the snapshot again
            let watch: Watch = self.gw.hub.subscribe(&channel);
            self.watching.insert(name.clone(), WatchStream::new(watch));
            self.sent.remove(name);
            if self.channels.insert(name.clone(), channel).is_none() {
                metrics::gauge!("chainflow_live_subscriptions").increment(1.0);
            }
        }
        (!errors.is_empty()).then(|| json!({ "errors": errors }).to_string())
    }

    /// Sends `state` of channel `name`: the first of a subscription is its snapshot, the
    /// others updates; versions skipped since the last one sent were conflated.
    async fn deliver(&mut self, socket: &mut WebSocket, name: &str, state: &State) -> bool {
        let kind = match self.sent.get(name) {
            None => "snapshot",
            Some(&last) if state.version > last => {
                let skipped = state.version - last - 1;
                if skipped > 0 {
                    metrics::counter!("chainflow_live_conflated_total").increment(skipped);
                }
                "update"
            }
            Some(_) => return true, // already sent
        };
        let now_us = chrono::Utc::now().timestamp_micros();
        let produced = state.produced_us.map_or("null".to_string(), |p| p.to_string());
        let text = format!(
            r#"{{"channel":{},"kind":"{kind}","version":{},"produced_us":{produced},"sent_us":{now_us},"data":{}}}"#,
            Value::String(name.to_string()),
            state.version,
            state.data
        );
        if !self.send(socket, text).await {
            return false;
        }
        self.sent.insert(name.to_string(), state.version);
        metrics::counter!("chainflow_live_messages_total", "kind" => kind).increment(1);
        if let (Some(p), "update") = (state.produced_us, kind) {
            let seconds = (chrono::Utc::now().timestamp_micros() - p).max(0) as f64 / 1e6;
            metrics::histogram!("chainflow_live_latency_seconds", "at" => "sent").record(seconds);
        }
        true
    }

    /// Sends `text`; false when the client is gone or took nothing for the send timeout.
    async fn send(&self, socket: &mut WebSocket, text: String) -> bool {
        match tokio::time::timeout(self.gw.send_timeout, socket.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                metrics::counter!("chainflow_live_refused_total", "reason" => "slow").increment(1);
                tracing::info!(
                    timeout_ms = self.gw.send_timeout.as_millis() as u64,
                    "a client took nothing for serve.send_timeout_ms; disconnected"
                );
                false
            }
        }
    }
}

async fn channels(Shared(gw): Shared<Arc<Gateway>>, headers: HeaderMap, Query(auth): Query<Auth>) -> Response {
    if !gw.authorized(&headers, &auth) {
        return unauthorized();
    }
    let list: Vec<Value> = gw
        .hub
        .channels()
        .into_iter()
        .map(|(c, s)| json!({ "channel": c.to_string(), "version": s.version }))
        .collect();
    Json(json!({ "channels": list })).into_response()
}

async fn latest(
    Shared(gw): Shared<Arc<Gateway>>,
    headers: HeaderMap,
    Query(auth): Query<Auth>,
    Path(name): Path<String>,
) -> Response {
    if !gw.authorized(&headers, &auth) {
        return unauthorized();
    }
    let channel: Channel = match name.parse() {
        Ok(c) => c,
        Err(e) => return refuse("channel", StatusCode::BAD_REQUEST, &e),
    };
    match gw.hub.latest(&channel) {
        Some(state) => ([(header::CONTENT_TYPE, "application/json")], state.data.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("{name}: no state yet (GET /api/channels lists the live channels)") })),
        )
            .into_response(),
    }
}

async fn session(
    Shared(gw): Shared<Arc<Gateway>>,
    headers: HeaderMap,
    Query(auth): Query<Auth>,
    Path((product, expiry)): Path<(String, String)>,
) -> Response {
    if !gw.authorized(&headers, &auth) {
        return unauthorized();
    }
    let expiry = NaiveDate::parse_from_str(&expiry, "%Y-%m-%d");
    let (true, Ok(expiry)) = (valid_product(&product), expiry) else {
        return refuse(
            "channel",
            StatusCode::BAD_REQUEST,
            "expected /api/session/<PRODUCT>/<YYYY-MM-DD>, the product 1 to 64 letters, digits, '_', '-' or '.'",
        );
    };
    let channel = Channel::Chain {
        product: product.clone(),
        expiry,
    };
    let Some(state) = gw.hub.latest(&channel) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("{channel}: no chain yet (GET /api/channels lists the live channels)") })),
        )
            .into_response();
    };
    let Some((event_us, _)) = state.order else {
        unreachable!("chain states are ordered")
    };
    let since = session_start(event_us, gw.zones.get(&product).copied().unwrap_or(chrono_tz::UTC));
    match tokio::time::timeout(QUERY_TIMEOUT, gw.store.session(&product, expiry, since)).await {
        Ok(Ok(minutes)) => Json(json!({
            "channel": channel.to_string(),
            "since": since,
            "minutes": minutes,
        }))
        .into_response(),
        outcome => {
            metrics::counter!("chainflow_live_query_errors_total", "query" => "session").increment(1);
            let error = match outcome {
                Ok(Err(e)) => format!("{e:#}"),
                _ => format!("ClickHouse did not answer within {} s", QUERY_TIMEOUT.as_secs()),
            };
            tracing::warn!(%channel, %error, "the session query failed");
            (StatusCode::BAD_GATEWAY, Json(json!({ "error": error }))).into_response()
        }
    }
}

/// The start of the calendar day, in `zone`, of the event at `event_us`: seconds since the
/// epoch.
pub fn session_start(event_us: i64, zone: Tz) -> i64 {
    let at = chrono::DateTime::from_timestamp_micros(event_us)
        .unwrap_or_default()
        .with_timezone(&zone);
    let midnight = at.date_naive().and_hms_opt(0, 0, 0).expect("midnight exists");
    zone.from_local_datetime(&midnight)
        .earliest()
        .map_or(event_us / 1_000_000, |t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_starts_at_midnight_where_the_product_trades() {
        // 2025-01-30 09:15 in Kolkata (03:45 UTC): that day began at 2025-01-29 18:30 UTC
        let event = 1_738_208_700_000_000;
        assert_eq!(session_start(event, chrono_tz::Asia::Kolkata), 1_738_175_400);
        assert_eq!(session_start(event, chrono_tz::UTC), 1_738_195_200);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3cre"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"", b"x"));
    }

    fn gateway(section: &ServeConfig) -> Gateway {
        let client = clickhouse::Client::default();
        Gateway::new(
            section,
            Arc::new(Hub::default()),
            Store::new(client, "db"),
            BTreeMap::new(),
        )
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), v.parse().unwrap())).collect()
    }

    #[test]
    fn origins_are_the_gateways_own_or_allowed_ones() {
        let section = ServeConfig {
            allowed_origins: vec!["https://desk.example.com/".into()],
            ..ServeConfig::default()
        };
        let gw = gateway(&section);
        let host = (header::HOST, "127.0.0.1:8090");
        assert!(
            gw.origin_allowed(&headers(std::slice::from_ref(&host))),
            "no Origin: not a browser"
        );
        assert!(gw.origin_allowed(&headers(&[host.clone(), (header::ORIGIN, "http://127.0.0.1:8090")])));
        assert!(gw.origin_allowed(&headers(&[host.clone(), (header::ORIGIN, "https://desk.example.com")])));
        assert!(!gw.origin_allowed(&headers(&[host.clone(), (header::ORIGIN, "http://evil.example")])));
        assert!(!gw.origin_allowed(&headers(&[host, (header::ORIGIN, "http://127.0.0.1:8091")])));
    }

    #[test]
    fn a_token_is_asked_for_only_when_configured() {
        let open = gateway(&ServeConfig::default());
        let none = Auth { token: None };
        assert!(open.authorized(&HeaderMap::new(), &none));
        let closed = gateway(&ServeConfig {
            token: Secret::new("s3cret"),
            ..ServeConfig::default()
        });
        assert!(!closed.authorized(&HeaderMap::new(), &none));
        assert!(closed.authorized(&headers(&[(header::AUTHORIZATION, "Bearer s3cret")]), &none));
        assert!(!closed.authorized(&headers(&[(header::AUTHORIZATION, "Bearer wrong")]), &none));
        let query = Auth {
            token: Some("s3cret".into()),
        };
        assert!(closed.authorized(&HeaderMap::new(), &query));
    }

    #[test]
    fn clients_beyond_the_limit_are_refused_and_places_come_back() {
        let gw = Arc::new(gateway(&ServeConfig {
            max_clients: 2,
            ..ServeConfig::default()
        }));
        let (a, b) = (gw.admit().unwrap(), gw.admit().unwrap());
        assert!(gw.admit().is_none());
        drop(a);
        assert!(gw.admit().is_some());
        drop(b);
    }
}
