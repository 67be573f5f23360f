//! The faults: each breaks something real (a process, a table, a topic) for a while and
//! puts it back. The rows and dead letters a fault adds to what the feed produces are
//! returned, so the counts afterwards can balance.

use super::poison::poison;
use super::setup::{Cast, Feed, Run};
use super::{wait_stored, Fault, Row, RECOVERY_LIMIT, START};
use crate::observe::{Counts, Group};
use crate::procs::Component;
use crate::stack::{self, PrivateStack};
use anyhow::{bail, Result};
use chainflow_contract::topics::UNDERLYING;
use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

/// What a fault added to the feed's rows: the poison's good records and its dead letters.
#[derive(Debug, Default)]
pub struct Added {
    /// Rows by table.
    pub rows: Counts,
    /// Dead letters.
    pub dead_letters: u64,
}

/// Breaks what `fault` says, while the feed runs, and puts it back.
pub async fn inject(
    fault: Fault,
    run: &mut Run<'_>,
    cast: &mut Cast,
    feed: &mut Feed,
    groups: &[Group],
    row: &mut Row,
) -> Result<Added> {
    let stack = run.stack;
    match fault {
        Fault::KillSink(times) => kill_repeatedly(&cast.sinks[0].0, times).await?,
        Fault::KillEnrich(times) => kill_repeatedly(&cast.enrichers[0].0, times).await?,
        Fault::ClickHouseDown(secs) => outage(stack, "clickhouse", secs).await?,
        Fault::ClickHouseFrozen(secs) => freeze(stack, "clickhouse", secs).await?,
        Fault::TableDetached(secs) => detach(run, "chain_options", secs).await?,
        Fault::BrokerDown(secs) => outage(stack, "broker", secs).await?,
        Fault::RebalanceStorm(secs) => row.restarts += storm(run, cast, secs).await?,
        Fault::DoubleSigterm => row.sigterm_exit = double_sigterm(stack, &cast.sinks[0].0).await?,
        Fault::RegistryDown(secs) => registry_down(run, cast, secs).await?,
        Fault::Poison => return poison(run).await,
        Fault::TopicRecreated => recreate_topic(run, feed, groups).await?,
    }
    Ok(Added::default())
}

/// SIGKILL `c` `times` times, 3–8 s apart (its supervisor restarts it).
async fn kill_repeatedly(c: &Component, times: u32) -> Result<()> {
    for _ in 0..times {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(3_000..=8_000))).await;
        c.running(Duration::from_secs(30)).await?;
        c.signal("KILL")?;
    }
    Ok(())
}

/// The stack's `component` killed, and started again `secs` later.
async fn outage(stack: &PrivateStack, component: &str, secs: u64) -> Result<()> {
    stack::kill_and_wait(stack.pid(component)?).await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stack.start_missing()
}

/// The stack's `component` frozen (SIGSTOP) for `secs`.
async fn freeze(stack: &PrivateStack, component: &str, secs: u64) -> Result<()> {
    let pid = stack.pid(component)?;
    stack::signal("STOP", pid)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stack::signal("CONT", pid)
}

/// `table` detached for `secs`.
async fn detach(run: &Run<'_>, table: &str, secs: u64) -> Result<()> {
    run.db.query(&format!("DETACH TABLE {table}")).execute().await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    run.db.query(&format!("ATTACH TABLE {table}")).execute().await?;
    Ok(())
}

/// For `secs`, every 10 s the oldest sink or enricher (in turn) stopped and replaced; how
/// many were.
async fn storm(run: &mut Run<'_>, cast: &mut Cast, secs: u64) -> Result<u64> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut replaced = 0u64;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let name = format!("replacement{replaced}");
        if replaced.is_multiple_of(2) {
            cast.sinks.remove(0).0.terminate(Duration::from_secs(35)).await?;
            cast.add_sink(run, &name);
        } else {
            cast.enrichers.remove(0).0.terminate(Duration::from_secs(35)).await?;
            cast.add_enricher(run, &name);
        }
        replaced += 1;
    }
    Ok(replaced)
}

/// With ClickHouse down, SIGTERM to `sink`, then a second one a second later: it must
/// exit within 5 s of it. How long it took, seconds.
async fn double_sigterm(stack: &PrivateStack, sink: &Component) -> Result<f64> {
    stack::kill_and_wait(stack.pid("clickhouse")?).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = sink.running(Duration::from_secs(30)).await?;
    let t0 = Instant::now();
    sink.signal("TERM")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    sink.signal("TERM")?;
    while stack::alive(pid) && sink.pid() == pid && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = t0.elapsed().as_secs_f64();
    if exit > 5.0 {
        bail!("the sink took {exit:.1} s to exit after a second SIGTERM");
    }
    stack.start_missing()?;
    Ok(exit)
}

/// Every sink stopped, the registry killed, and a new sink started with an empty cache:
/// it starts (ClickHouse and Kafka answer) but cannot decode until the registry is back,
/// `secs` later.
async fn registry_down(run: &mut Run<'_>, cast: &mut Cast, secs: u64) -> Result<()> {
    for s in cast.sinks.drain(..) {
        s.0.terminate(Duration::from_secs(35)).await?;
    }
    stack::kill_and_wait(run.stack.pid("registry")?).await?;
    cast.add_sink(run, "cold-sink");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    run.stack.start_missing()
}

/// The first half of the feed stored, `market.underlying` deleted and recreated, and the
/// second half fed 12 hours later.
async fn recreate_topic(run: &Run<'_>, feed: &mut Feed, groups: &[Group]) -> Result<()> {
    feed.wait().await?;
    wait_stored(run, &feed.expect, groups, RECOVERY_LIMIT).await?;
    delete_topic(run.stack, UNDERLYING).await?;
    run.chainflow("topics")?;
    let second = chrono::DateTime::parse_from_rfc3339(START)? + chrono::Duration::hours(12);
    feed.then(run, feed.left(), second.timestamp_micros())
}

/// Deletes `topic` and waits until the broker no longer lists it.
async fn delete_topic(stack: &PrivateStack, topic: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = chainflow_kafka::producer_config(&stack.config.kafka).create()?;
    let results = admin
        .delete_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("deleting {t}: {e}"))?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}
