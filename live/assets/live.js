// The live page: one WebSocket to the gateway, subscribed to the selected chain, its
// product's metrics and its underlying; the session charts from /api/session. Everything
// it shows is kept in window.chainflowState (tests read it).
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const withToken = (path) => (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);

const state = (window.chainflowState = {
  connection: "connecting",
  channel: null,
  chain: null, // the latest `data` of the chain channel
  snapshots: 0, // snapshots of the selected chain received
  updates: 0, // updates of the selected chain received
  received: [], // the last 50 chain messages: {kind, version, event_time, produced_us, at_ms, ivs}
  metrics: null,
  underlying: null,
  session: null,
  latency: { last_ms: null, p50_ms: null, p99_ms: null, samples: 0, recent_ms: [] },
  errors: [],
});

const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(2)} %`);

// ---- charts -------------------------------------------------------------------------
function chart(el, title, series, opts = {}) {
  const width = Math.min(560, Math.max(320, (window.innerWidth - 60) / (opts.perRow || 2)));
  return new uPlot(
    {
      title,
      width,
      height: opts.height || 260,
      // a lone point gets five minutes either side, not an axis of years
      scales: { x: { time: opts.time || false, range: (u, min, max) => (min === max ? [min - 300, max + 300] : [min, max]) } },
      series: [{ label: opts.x || "strike" }, ...series],
      axes: [{}, { size: 60 }],
    },
    [[], ...series.map(() => [])],
    el
  );
}
const bars = (align) => uPlot.paths.bars({ size: [0.4, 40], align });
const charts = {
  smile: chart($("smile"), "IV smile", [
    { label: "call IV", stroke: "#2a7d55", width: 2, value: (u, v) => pct(v) },
    { label: "put IV", stroke: "#b33a3a", width: 2, dash: [6, 4], value: (u, v) => pct(v) },
  ]),
  oi: chart($("oi"), "open interest by strike", [
    { label: "call OI", stroke: "#2a7d55", fill: "rgba(42,125,85,.35)", paths: bars(-1) },
    { label: "put OI", stroke: "#b33a3a", fill: "rgba(179,58,58,.35)", paths: bars(1) },
  ]),
  pcr: chart($("s-pcr"), "PCR (OI)", [{ label: "PCR", stroke: "#3557a8", width: 2 }], { time: true, x: "time", height: 200, perRow: 3 }),
  atmIv: chart($("s-atm-iv"), "ATM IV", [{ label: "ATM IV", stroke: "#8a4fb0", width: 2, value: (u, v) => pct(v) }], { time: true, x: "time", height: 200, perRow: 3 }),
  maxPain: chart($("s-max-pain"), "max pain", [{ label: "max pain", stroke: "#b3772a", width: 2 }], { time: true, x: "time", height: 200, perRow: 3 }),
};

// ---- what is shown ------------------------------------------------------------------
function showChain(data) {
  const strikes = data.strikes.map((s) => s.strike);
  charts.smile.setData([strikes, data.strikes.map((s) => s.call.iv), data.strikes.map((s) => s.put.iv)]);
  charts.oi.setData([strikes, data.strikes.map((s) => s.call.oi), data.strikes.map((s) => s.put.oi)]);
  $("spot").textContent = fmt(data.spot);
  $("atm-iv").textContent = pct(data.atm_iv);
  $("pcr").textContent = fmt(data.pcr_oi, 3);
  $("max-pain").textContent = fmt(data.max_pain_strike);
  $("straddle").textContent = fmt(data.atm_straddle_price);
  $("skew").textContent = pct(data.iv_skew_25d);
  $("event-time").textContent = data.event_time;
}

function showMetrics(data) {
  $("expiries").tBodies[0].innerHTML = data.expiries
    .map(
      (e) =>
        `<tr><td>${e.expiry}</td><td>${pct(e.atm_iv)}</td><td>${fmt(e.pcr_oi, 3)}</td>` +
        `<td>${fmt(e.max_pain_strike)}</td><td>${pct(e.iv_skew_25d)}</td><td>${e.event_time}</td></tr>`
    )
    .join("");
}

function showUnderlying(data) {
  $("tick").textContent = `${fmt(data.price)} at ${data.event_time}`;
  $("candles").innerHTML = ["1m", "5m", "15m"]
    .filter((k) => data.candles && data.candles[k])
    .map((k) => {
      const c = data.candles[k];
      return `<tr><th>${k}</th><td>${fmt(c.open)}</td><td>${fmt(c.high)}</td><td>${fmt(c.low)}</td><td>${fmt(c.close)}</td><td>${c.volume}</td></tr>`;
    })
    .join("");
}

// ---- latency: the feed's production stamp to here -----------------------------------
const latencies = [];
let unreported = [];
function noteLatency(producedUs) {
  if (producedUs === null || producedUs === undefined) return;
  const ms = Date.now() - producedUs / 1000;
  latencies.push(ms);
  if (latencies.length > 1000) latencies.shift();
  unreported.push(Math.round(ms * 10) / 10);
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  state.latency = { last_ms: ms, p50_ms: at(0.5), p99_ms: at(0.99), samples: sorted.length, recent_ms: latencies };
  $("latency").textContent = `latency ${ms.toFixed(0)} ms (p50 ${at(0.5).toFixed(0)}, p99 ${at(0.99).toFixed(0)})`;
}

// ---- the connection -----------------------------------------------------------------
let socket = null;
let lastUpdate = null;

function subscriptions(channel) {
  const [, product] = channel.split(":");
  return [channel, `metrics:${product}`, `underlying:${product}`];
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${withToken("/ws")}`;
  socket = new WebSocket(url);
  state.connection = "connecting";
  showConnection();
  socket.onopen = () => {
    state.connection = "open";
    showConnection();
    if (state.channel) socket.send(JSON.stringify({ subscribe: subscriptions(state.channel) }));
  };
  socket.onclose = () => {
    state.connection = "closed";
    showConnection();
    setTimeout(connect, 2000);
  };
  socket.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.errors || msg.error) {
      state.errors.push(msg);
      return;
    }
    if (msg.channel === state.channel) {
      state.chain = msg.data;
      msg.kind === "snapshot" ? state.snapshots++ : state.updates++;
      state.received.push({
        kind: msg.kind,
        version: msg.version,
        event_time: msg.data.event_time,
        produced_us: msg.produced_us,
        at_ms: Date.now(),
        ivs: msg.data.strikes.map((s) => [s.strike, s.call.iv, s.put.iv]),
      });
      if (state.received.length > 50) state.received.shift();
      lastUpdate = Date.now();
      if (msg.kind === "update") noteLatency(msg.produced_us);
      showChain(msg.data);
    } else if (msg.channel.startsWith("metrics:")) {
      state.metrics = msg.data;
      showMetrics(msg.data);
    } else if (msg.channel.startsWith("underlying:")) {
      state.underlying = msg.data;
      showUnderlying(msg.data);
    }
  };
}

function showConnection() {
  const el = $("connection");
  el.textContent = state.connection;
  el.className = `state ${state.connection}`;
}

// every second: the age of the last update; every two: the latencies measured, to the gateway
setInterval(() => {
  $("age").textContent = lastUpdate === null ? "no update yet" : `last update ${((Date.now() - lastUpdate) / 1000).toFixed(1)} s ago`;
}, 1000);
setInterval(() => {
  if (unreported.length && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ latency_ms: unreported.slice(0, 100) }));
  }
  unreported = [];
}, 2000);

// ---- choosing a chain ---------------------------------------------------------------
let chainChannels = [];

async function loadChannels(wanted) {
  const r = await fetch(withToken("/api/channels"));
  const body = await r.json();
  chainChannels = body.channels.map((c) => c.channel).filter((c) => c.startsWith("chain:"));
  const chosen = wanted || state.channel;
  if (chosen && !chainChannels.includes(chosen)) chainChannels.push(chosen);
  const products = [...new Set(chainChannels.map((c) => c.split(":")[1]))].sort();
  const selected = chosen ? chosen.split(":")[1] : products[0];
  fill($("product"), products, selected);
  fillExpiries(chosen);
}

function fill(select, values, selected) {
  select.innerHTML = values.map((v) => `<option${v === selected ? " selected" : ""}>${v}</option>`).join("");
}

function fillExpiries(wanted) {
  const product = $("product").value;
  const expiries = chainChannels.filter((c) => c.split(":")[1] === product).map((c) => c.split(":")[2]).sort();
  const chosen = wanted || state.channel;
  const current = chosen && chosen.split(":")[1] === product ? chosen.split(":")[2] : expiries[0];
  fill($("expiry"), expiries, current);
}

function select(channel) {
  if (!channel || channel === state.channel) return;
  if (socket && socket.readyState === WebSocket.OPEN) {
    if (state.channel) socket.send(JSON.stringify({ unsubscribe: subscriptions(state.channel) }));
    socket.send(JSON.stringify({ subscribe: subscriptions(channel) }));
  }
  Object.assign(state, { channel, chain: null, snapshots: 0, updates: 0, received: [], session: null });
  const url = new URL(location);
  url.searchParams.set("channel", channel);
  history.replaceState(null, "", url);
  loadSession();
}

async function loadSession() {
  if (!state.channel) return;
  const [, product, expiry] = state.channel.split(":");
  const r = await fetch(withToken(`/api/session/${encodeURIComponent(product)}/${expiry}`));
  const body = await r.json();
  if (!r.ok) {
    $("session-note").textContent = body.error;
    return;
  }
  state.session = body;
  const m = body.minutes;
  const t = m.map((x) => x.minute);
  charts.pcr.setData([t, m.map((x) => x.pcr_oi)]);
  charts.atmIv.setData([t, m.map((x) => x.atm_iv)]);
  charts.maxPain.setData([t, m.map((x) => x.max_pain_strike)]);
  $("session-note").textContent = `${m.length} minutes since ${new Date(body.since * 1000).toISOString()}`;
}

$("product").onchange = () => {
  fillExpiries();
  select(`chain:${$("product").value}:${$("expiry").value}`);
};
$("expiry").onchange = () => select(`chain:${$("product").value}:${$("expiry").value}`);

(async () => {
  connect();
  const wanted = params.get("channel");
  await loadChannels(wanted).catch((e) => state.errors.push(String(e)));
  select(wanted || (chainChannels.length ? `chain:${$("product").value}:${$("expiry").value}` : null));
  setInterval(() => loadChannels().catch(() => {}), 10000);
  setInterval(() => loadSession().catch(() => {}), 15000);
})();
