//! Log lines on standard error: human-readable on a terminal, JSON otherwise (or as
//! configured); traces exported with OpenTelemetry when an OTLP endpoint is configured by
//! the standard variables; and the one report of the error a command ends with.
//!
//! Traces are off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is not `true`. They
//! go over OTLP/HTTP, protobuf or JSON as `OTEL_EXPORTER_OTLP_PROTOCOL` says
//! (`http/protobuf` by default, `http/json`); sampling follows `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`; the service is `OTEL_SERVICE_NAME`, or `chainflow-<command>`.

use anyhow::{bail, Context, Result};
use chainflow_config::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::io::IsTerminal;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The trace exporter, flushed when the command ends.
pub struct Telemetry(Option<SdkTracerProvider>);

impl Telemetry {
    /// Exports the spans still held (at most a few seconds).
    pub fn shutdown(self) {
        if let Some(provider) = self.0 {
            if let Err(e) = provider.shutdown() {
                eprintln!("chainflow: exporting the last traces failed: {e}");
            }
        }
    }
}

/// Whether the environment asks for traces.
fn traces_wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracer provider the `OTEL_*` variables describe, for `command`.
fn provider(command: &str) -> Result<SdkTracerProvider> {
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        Err(_) | Ok("http/protobuf") => Protocol::HttpBinary,
        Ok("http/json") => Protocol::HttpJson,
        Ok(other) => bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL: chainflow exports over OTLP/HTTP, `http/protobuf` or `http/json`, not {other:?}"
        ),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .context("configuring the OTLP trace exporter (OTEL_EXPORTER_OTLP_*)")?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(format!("chainflow-{command}"));
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Installs the log subscriber (level from RUST_LOG, default info) writing `format` —
/// `auto` is text when standard error is a terminal, JSON otherwise — and, when asked for,
/// the trace exporter of `command` (spans at info and above, whatever RUST_LOG says).
pub fn init(format: LogFormat, command: &str) -> Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let text = match format {
        LogFormat::Text => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::stderr().is_terminal(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if text {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed()
    };
    let provider = if traces_wanted() {
        Some(provider(command)?)
    } else {
        None
    };
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("chainflow"))
            .with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .init();
    Ok(Telemetry(provider))
}

/// Reports the error a command failed with: once, as one plain line with its chain of
/// causes (`chainflow: error: stage sink failed: ...: connection refused`), whatever the
/// log format, so that people and scripts read the same line.
pub fn report(error: &anyhow::Error) {
    eprintln!("chainflow: error: {error:#}");
}
