//! `chainflow registry`: a Confluent-compatible Schema Registry (Avro) whose state lives in
//! the `_schemas` topic. Every instance replays the topic at start and follows it after;
//! new ids are agreed through claims resolved in log order, so several instances can serve
//! one topic, and an id is never handed to a second schema: not after a restart, a
//! hard delete, or (with `registry.state_dir`) a wiped topic. Optional basic auth with
//! read-only and read-write users, TLS, size limits and a read-only mode.
//! [`RegistryServer`] is the stage.

mod api;
mod auth;
mod error;
mod floor;
mod instance;
mod log;
mod store;
mod topic;

pub use api::{router, Api, CONTENT_TYPE};
pub use auth::hash_password;
pub use chainflow_contract::compat::Level;
pub use error::RegistryError;
pub use instance::Instance;
pub use topic::would_lose_records;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::Router;
use axum_server::tls_openssl::{OpenSSLAcceptor, OpenSSLConfig};
use chainflow_config::{KafkaConfig, RegistryConfig};
use chainflow_runtime::{http, Stage, StageContext};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long open requests may finish after a stop, over TLS.
const TLS_DRAIN: Duration = Duration::from_secs(10);

/// The registry as a stage: it replays its topic, then serves the REST API and the
/// process's own routes (`/metrics`, `/healthz`, `/readyz`) on `registry.listen` until
/// stopped, following the topic meanwhile.
pub struct RegistryServer {
    section: RegistryConfig,
    kafka: KafkaConfig,
    routes: Router,
}

impl RegistryServer {
    /// The stage, serving `routes` beside the API; nothing connects until it runs.
    pub fn new(section: &RegistryConfig, kafka: &KafkaConfig, routes: Router) -> Self {
        Self {
            section: section.clone(),
            kafka: kafka.clone(),
            routes,
        }
    }
}

impl Stage for RegistryServer {
    fn name(&self) -> &'static str {
        "registry"
    }

    async fn run(self, ctx: StageContext) -> Result<()> {
        api::announce_metrics();
        let gate = Arc::new(auth::Gate::new(&self.section)?);
        let tls = tls_config(&self.section)?;
        let listener = http::bind(&self.section.listen).await?;
        let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        if !gate.authenticates() && !loopback {
            tracing::warn!(
                listen = self.section.listen,
                "the registry serves without authentication on an address other than loopback; \
                 configure [registry.users] (docs/security.md)"
            );
        }
        let broker = format!("Kafka at {}", self.kafka.bootstrap_servers);
        let stop = ctx.stop_token().clone();
        let opened = ctx
            .connect(&broker, || Instance::start(&self.section, &self.kafka, stop.clone()))
            .await?;
        let Some(instance) = opened else {
            return Ok(());
        };
        let api = router(Arc::new(Api {
            instance,
            max_schema_bytes: self.section.max_schema_bytes,
        }))
        .layer(axum::middleware::from_fn_with_state(gate, auth::check))
        .layer(DefaultBodyLimit::max(self.section.max_request_bytes));
        let app = api.merge(self.routes);
        ctx.set_ready(true);
        match tls {
            None => http::serve(listener, app, stop).await,
            Some(config) => serve_tls(listener, app, stop, config).await,
        }
        .context("the registry's HTTP server")
    }
}

/// The TLS configuration of `[registry.tls]`, if any; an unreadable file or a key that
/// does not match its certificate is an error naming the fields.
fn tls_config(section: &RegistryConfig) -> Result<Option<OpenSSLConfig>> {
    let tls = &section.tls;
    if tls.cert_file.is_empty() {
        return Ok(None);
    }
    OpenSSLConfig::from_pem_chain_file(&tls.cert_file, &tls.key_file)
        .map(Some)
        .with_context(|| {
            format!(
                "registry.tls: cannot use cert_file {} with key_file {} (PEM, the key unencrypted and matching)",
                tls.cert_file, tls.key_file
            )
        })
}

/// Serves `app` over TLS on `listener` until `stop`, then lets open requests finish.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: CancellationToken,
    config: OpenSSLConfig,
) -> Result<()> {
    let listener = listener.into_std().context("the registry's listener")?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "serving HTTPS");
    }
    let handle = axum_server::Handle::new();
    let on_stop = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        on_stop.graceful_shutdown(Some(TLS_DRAIN));
    });
    axum_server::from_tcp(listener)
        .acceptor(OpenSSLAcceptor::new(config))
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .context("serving HTTPS")
}
