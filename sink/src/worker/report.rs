//! Report: what the stream counts of the records it stored (metrics and trace spans), and
//! the series it shows from the start.

use super::Worker;
use crate::batch::{Batch, Entry};
use crate::stream::Stream;
use chainflow_contract::topics::HEADER_PRODUCED_AT;
use chainflow_kafka::trace;
use chainflow_runtime::StageStats;
use rdkafka::message::{Message, OwnedMessage};

/// Counts records ClickHouse acknowledged: out of their topic, the pipeline latency from
/// their production stamp, how far behind the market the newest one is, and their rows; and
/// continues the trace of each sampled one under the batch's `span`.
pub(super) fn stored<S: Stream>(
    stats: &StageStats,
    span: &tracing::Span,
    topic: &str,
    entries: &[&Entry<S::Rows>],
    rows: &[&S::Rows],
) {
    StageStats::add(&stats.records_out, entries.len() as u64);
    metrics::counter!("chainflow_records_out_total", "stage" => S::STAGE, "topic" => topic.to_string())
        .increment(entries.len() as u64);
    metrics::counter!("chainflow_sink_records_total", "stream" => S::NAME, "outcome" => "stored")
        .increment(entries.len() as u64);
    let count: usize = rows.iter().map(|r| S::row_count(r)).sum();
    metrics::counter!("chainflow_sink_rows_total", "stream" => S::NAME).increment(count as u64);
    for e in entries.iter().filter(|e| trace::is_sampled(&e.message)) {
        let stored = tracing::info_span!(parent: span, "sink.store", offset = e.message.offset(), trace_id = tracing::field::Empty);
        trace::continue_trace(&stored, &e.message);
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    let latency = metrics::histogram!("chainflow_pipeline_latency_seconds", "stream" => S::NAME);
    for e in entries {
        if let Some(at) = produced_at(&e.message) {
            latency.record((now_us - at).max(0) as f64 / 1e6);
        }
    }
    if let Some(newest) = rows.iter().filter_map(|r| S::event_time_us(r)).max() {
        metrics::gauge!("chainflow_event_time_lag_seconds", "stream" => S::NAME).set((now_us - newest) as f64 / 1e6);
    }
}

/// The records of `batch` that have rows (the others were dead-lettered on the way in), and
/// the batch's span, linked to the traces of its records (when traces are exported).
pub(super) fn batch_span<'a, R>(
    stream: &str,
    batch: &'a Batch<R>,
    max_links: usize,
) -> (Vec<&'a Entry<R>>, tracing::Span) {
    let entries: Vec<&Entry<R>> = batch.entries().iter().filter(|e| e.rows.is_some()).collect();
    let span = tracing::info_span!("sink.batch", stream, topic = %batch.topic, partition = batch.partition, records = entries.len());
    trace::link_all(&span, entries.iter().map(|e| &e.message), max_links);
    (entries, span)
}

/// The feed's production stamp of `msg` (`chainflow.produced_at_us`), µs.
pub(super) fn produced_at(msg: &OwnedMessage) -> Option<i64> {
    chainflow_kafka::header(msg, HEADER_PRODUCED_AT)?.parse().ok()
}

impl<S: Stream> Worker<S> {
    /// Shows the stream's event counters at 0 from the start (a rate needs a first sample).
    pub(super) fn announce_metrics(&self) {
        let stream = S::NAME;
        metrics::counter!("chainflow_sink_retries_total", "stream" => stream).increment(0);
        metrics::counter!("chainflow_sink_memory_splits_total", "stream" => stream).increment(0);
        metrics::counter!("chainflow_sink_stalls_total", "stream" => stream).increment(0);
        for change in ["assigned", "revoked"] {
            metrics::counter!("chainflow_sink_rebalances_total", "stream" => stream, "change" => change).increment(0);
        }
        metrics::counter!("chainflow_sink_kafka_errors_total", "stream" => stream, "operation" => "read").increment(0);
        metrics::counter!("chainflow_sink_commit_errors_total").increment(0);
        metrics::counter!("chainflow_unknown_schema_waits_total", "stage" => S::STAGE).increment(0);
        metrics::gauge!("chainflow_sink_paused_partitions", "stream" => stream).set(0.0);
        for topic in &self.topics {
            metrics::counter!("chainflow_records_in_total", "stage" => S::STAGE, "topic" => topic.clone()).increment(0);
            metrics::counter!("chainflow_records_out_total", "stage" => S::STAGE, "topic" => topic.clone())
                .increment(0);
            metrics::counter!("chainflow_sequence_gaps_total", "topic" => topic.clone()).increment(0);
        }
    }
}
