//! Structured logs, and the /metrics, /healthz and /readyz endpoints.

use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// JSON (default) or text logs on stderr; level from RUST_LOG (default info).
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// Whether the component has finished starting.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the component ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Installs the Prometheus recorder and returns the health and metrics routes.
pub fn routes(ready: Readiness) -> Result<Router> {
    let handle: PrometheusHandle = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        .context("configuring histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    Ok(Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ok = ready.0.load(Ordering::Relaxed);
                std::future::ready(if ok {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                })
            }),
        ))
}

/// Serves `router` on `listen` until `shutdown`; an address in use is a clear error.
pub async fn serve(listen: &str, router: Router, shutdown: CancellationToken) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (in use by another program?)"))?;
    tracing::info!(%listen, "serving HTTP");
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}

/// Starts /metrics, /healthz and /readyz on `observability.metrics_listen` (if set).
pub async fn serve_metrics(listen: &str, ready: Readiness, shutdown: CancellationToken) -> Result<()> {
    if listen.is_empty() {
        return Ok(());
    }
    serve(listen, routes(ready)?, shutdown).await.map(|_| ())
}
