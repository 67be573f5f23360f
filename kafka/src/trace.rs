//! W3C trace context (`traceparent`, `tracestate`) in Kafka headers, so that one trace
//! follows a record from the feed through enrich to the sink. Spans are `tracing` spans;
//! when no OpenTelemetry exporter is installed (no `OTEL_EXPORTER_OTLP_*ENDPOINT`), their
//! contexts are empty and nothing is written to the headers.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use std::collections::BTreeMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The headers the trace context travels in.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// A record's headers, read for the propagator.
struct Reader(BTreeMap<String, String>);

impl Extractor for Reader {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Headers being written by the propagator.
struct Writer(Vec<(String, String)>);

impl Injector for Writer {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// The trace context `msg` carries (empty when it carries none).
pub fn context_of<M: Message>(msg: &M) -> opentelemetry::Context {
    let mut found = BTreeMap::new();
    if let Some(hs) = msg.headers() {
        for h in hs.iter().filter(|h| TRACE_HEADERS.contains(&h.key)) {
            if let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok()) {
                found.insert(h.key.to_string(), v.to_string());
            }
        }
    }
    let reader = Reader(found);
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&reader))
}

/// Whether `msg`'s trace is sampled (its `traceparent` says so).
pub fn is_sampled<M: Message>(msg: &M) -> bool {
    context_of(msg).span().span_context().is_sampled()
}

/// Makes `span` a child of the trace `msg` carries, and records the trace id in its
/// `trace_id` field (declared `tracing::field::Empty`) so that log lines show it.
pub fn continue_trace<M: Message>(span: &tracing::Span, msg: &M) {
    let parent = context_of(msg);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

/// Records `span`'s trace id in its `trace_id` field, when it has one.
fn record_trace_id(span: &tracing::Span) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// Links `span` to the traces of `msgs` (at most `max` of them).
pub fn link_all<'a, M: Message + 'a>(span: &tracing::Span, msgs: impl Iterator<Item = &'a M>, max: usize) {
    for msg in msgs.take(max) {
        let cx = context_of(msg);
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            span.add_link(sc);
        }
    }
}

/// `headers` with the trace context of `span` in place of any they carried, its trace id
/// recorded in the span's `trace_id` field; `headers` as they are when `span` has no trace
/// (traces are not exported).
pub fn with_context_of(span: &tracing::Span, headers: OwnedHeaders) -> OwnedHeaders {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return headers;
    }
    span.record("trace_id", tracing::field::display(sc.trace_id()));
    let mut out = crate::headers::copied(Some(&headers), |k| !TRACE_HEADERS.contains(&k));
    let mut written = Writer(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut written));
    for (key, value) in &written.0 {
        out = out.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    out
}
