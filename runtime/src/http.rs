//! The endpoints every component serves: `/metrics` (Prometheus text format), `/healthz`
//! (the process is alive) and `/readyz` (every stage can do its work).

use crate::catalogue::{Kind, METRICS};
use crate::Health;
use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The process's metrics recorder, installed on first use.
fn recorder() -> Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for m in METRICS {
        if let Kind::Histogram(buckets) = m.kind {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(m.name.to_string()), buckets)
                .with_context(|| format!("configuring the buckets of {}", m.name))?;
        }
    }
    let handle = builder.install_recorder().context("installing the metrics recorder")?;
    crate::catalogue::describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// `/metrics`, `/healthz` and `/readyz` for the stages of `health`.
pub fn routes(health: Health) -> Result<Router> {
    let handle = recorder()?;
    Ok(Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let waiting = health.not_ready();
                std::future::ready(if waiting.is_empty() {
                    (StatusCode::OK, "ready".to_string())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {}", waiting.join(", ")),
                    )
                })
            }),
        ))
}

/// Binds `listen`; an address in use is a clear error.
pub async fn bind(listen: &str) -> Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (in use by another program?)"))
}

/// Serves `router` on `listener` until `stop`.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) -> Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "serving HTTP");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .context("serving HTTP")
}
