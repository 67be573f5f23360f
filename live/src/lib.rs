//! `chainflow serve`: the live view. A WebSocket gateway over `enriched.option_chain` and
//! `market.underlying`, read without a consumer group, whose channels are seeded from
//! ClickHouse at start; and the page that shows them, embedded in the binary. It reads the
//! topics the stored history is written from and writes nothing, so it costs the
//! historical path nothing (docs/live.md). [`Live`] is the stage.

mod board;
mod channel;
mod follow;
mod hub;
mod store;
mod web;

pub use board::{Board, Candle};
pub use channel::Channel;
pub use hub::{Hub, State};
pub use store::Store;
pub use web::{router, session_start, Gateway};

use anyhow::{Context, Result};
use axum::Router;
use chainflow_codec::Codec;
use chainflow_config::{KafkaConfig, ServeConfig};
use chainflow_contract::topics::{ENRICHED_CHAIN, UNDERLYING};
use chainflow_contract::{EnrichedOptionChain, UnderlyingTick};
use chainflow_runtime::{http, Stage, StageContext};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long one candles query may take.
const CANDLES_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a failing candles query is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Candles are looked for this far before the newest tick: two 15-minute candles.
const CANDLES_BACK_S: i64 = 1800;

/// The live view as a stage: it assigns itself the topics' partitions, seeds every channel
/// from ClickHouse, then serves the page, the WebSocket and the API on `serve.listen`
/// (with the process's `/metrics`, `/healthz` and `/readyz`) until stopped.
pub struct Live {
    section: ServeConfig,
    kafka: KafkaConfig,
    codec: Arc<Codec>,
    store: Store,
    zones: BTreeMap<String, Tz>,
    routes: Router,
}

impl Live {
    /// The stage; nothing connects until it runs. `zones` are the configured products'
    /// time zones (a product's session is its calendar day there), `routes` the process's
    /// own endpoints, served beside the gateway's.
    pub fn new(
        section: &ServeConfig,
        kafka: &KafkaConfig,
        codec: Arc<Codec>,
        store: Store,
        zones: BTreeMap<String, Tz>,
        routes: Router,
    ) -> Self {
        Self {
            section: section.clone(),
            kafka: kafka.clone(),
            codec,
            store,
            zones,
            routes,
        }
    }
}

impl Stage for Live {
    fn name(&self) -> &'static str {
        "serve"
    }

    async fn run(self, ctx: StageContext) -> Result<()> {
        announce_metrics();
        let listener = http::bind(&self.section.listen).await?;
        if !listener.local_addr().is_ok_and(|a| a.ip().is_loopback()) && self.section.token.is_empty() {
            tracing::warn!(
                listen = self.section.listen,
                "the live view serves without a token on an address other than loopback; set serve.token (docs/live.md)"
            );
        }
        let rewind = Duration::from_millis(self.section.rewind_ms);
        let broker = format!("Kafka at {}", self.kafka.bootstrap_servers);
        let Some(readers) = ctx
            .connect(&broker, || async {
                Ok((
                    follow::open(&self.kafka, ENRICHED_CHAIN, rewind).await?,
                    follow::open(&self.kafka, UNDERLYING, rewind).await?,
                ))
            })
            .await?
        else {
            return Ok(());
        };
        let hub = Arc::new(Hub::default());
        let board = Arc::new(Mutex::new(Board::new(hub.clone())));
        if !self.seed(&ctx, &board).await? {
            return Ok(());
        }

        let stop = ctx.stop_token().clone();
        let mut tasks = JoinSet::new();
        let (chain_reader, tick_reader) = readers;
        tasks.spawn(follow::follow::<EnrichedOptionChain>(
            chain_reader,
            ENRICHED_CHAIN,
            self.codec.clone(),
            board.clone(),
            stop.clone(),
        ));
        tasks.spawn(follow::follow::<UnderlyingTick>(
            tick_reader,
            UNDERLYING,
            self.codec.clone(),
            board.clone(),
            stop.clone(),
        ));
        tasks.spawn(candles(
            self.store.clone(),
            board,
            Duration::from_millis(self.section.candles_ms),
            stop.clone(),
        ));
        let gateway = Arc::new(Gateway::new(&self.section, hub, self.store, self.zones));
        let app = router(gateway).merge(self.routes);
        ctx.set_ready(true);
        let served = tokio::spawn(http::serve(listener, app, stop.clone()));
        // a task that ends before the stop failed: the stage fails with it
        let outcome = tokio::select! {
            () = stop.cancelled() => Ok(()),
            Some(ended) = tasks.join_next() => match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("a task of the live view panicked: {e}")),
            },
        };
        stop.cancel();
        ctx.set_ready(false);
        tasks.shutdown().await;
        served.await.context("the live view's HTTP server")??;
        outcome.context("following the topics")
    }
}

impl Live {
    /// Seeds `board` with the latest chains and ticks ClickHouse holds (within
    /// `serve.seed_hours`); false when the stage was stopped first.
    async fn seed(&self, ctx: &StageContext, board: &Mutex<Board>) -> Result<bool> {
        let hours = self.section.seed_hours;
        let Some((chains, ticks)) = ctx
            .connect("ClickHouse", || async {
                Ok((
                    self.store.latest_chains(hours).await?,
                    self.store.latest_ticks(hours).await?,
                ))
            })
            .await?
        else {
            return Ok(false);
        };
        let mut b = board.lock().expect("the board's lock");
        for c in &chains {
            b.chain(c, None);
        }
        for t in &ticks {
            b.tick(t, None);
        }
        tracing::info!(
            chains = chains.len(),
            ticks = ticks.len(),
            "channels seeded from ClickHouse"
        );
        Ok(true)
    }
}

/// Every live metric from 0, so that each is served (with its `# HELP`) before anything
/// happened to it: a dashboard or an alert finds a series, not a gap.
fn announce_metrics() {
    for g in [
        "chainflow_live_clients",
        "chainflow_live_subscriptions",
        "chainflow_live_channels",
    ] {
        metrics::gauge!(g).set(0.0);
    }
    for kind in ["snapshot", "update"] {
        metrics::counter!("chainflow_live_messages_total", "kind" => kind).increment(0);
    }
    metrics::counter!("chainflow_live_conflated_total").increment(0);
    for reason in ["clients", "subscriptions", "channel", "origin", "token", "slow"] {
        metrics::counter!("chainflow_live_refused_total", "reason" => reason).increment(0);
    }
    for topic in [ENRICHED_CHAIN, UNDERLYING] {
        metrics::counter!("chainflow_live_skipped_total", "topic" => topic, "reason" => "undecodable").increment(0);
    }
    for query in ["seed", "candles", "session"] {
        metrics::counter!("chainflow_live_query_errors_total", "query" => query).increment(0);
    }
    for at in ["sent", "browser"] {
        let _ = metrics::histogram!("chainflow_live_latency_seconds", "at" => at);
    }
}

/// Reads the current candles every `every` and shows those that changed, until `stop`.
async fn candles(store: Store, board: Arc<Mutex<Board>>, every: Duration, stop: CancellationToken) -> Result<()> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned: Option<Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let newest = board.lock().expect("the board's lock").newest_tick_us();
        let Some(newest) = newest else { continue };
        let outcome = tokio::time::timeout(
            CANDLES_TIMEOUT,
            store.current_candles(newest / 1_000_000 - CANDLES_BACK_S),
        )
        .await;
        match outcome {
            Ok(Ok(by_product)) => {
                let mut b = board.lock().expect("the board's lock");
                for (product, candles) in by_product {
                    b.candles(&product, candles);
                }
            }
            failed => {
                metrics::counter!("chainflow_live_query_errors_total", "query" => "candles").increment(1);
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    let error = match failed {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => format!("no answer within {} s", CANDLES_TIMEOUT.as_secs()),
                    };
                    tracing::warn!(%error, "reading the current candles failed; the underlyings keep their last ones");
                }
            }
        }
    }
}
