//! The faults: each breaks something real (a process, a table, a topic) for a while and
//! puts it back. The rows and dead letters a fault adds to what the feed produces are
//! returned, so the counts afterwards can balance.

use super::poison::poison;
use super::setup::{Cast, Feed, Run};
use super::{wait_stored, Fault, Row, RECOVERY_LIMIT, START};
use crate::observe::{self, Group, Keys};
use crate::procs::Component;
use crate::stack::{self, PrivateStack};
use anyhow::{bail, Context, Result};
use chainflow_contract::topics::UNDERLYING;
use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

/// What a fault added to the feed's rows (the poison's good records and its dead letters),
/// and what it did not cause that it should have, when the run can go on to count what was
/// stored.
#[derive(Debug, Default)]
pub struct Added {
    /// The natural keys of the rows.
    pub keys: Keys,
    /// Dead letters.
    pub dead_letters: u64,
    /// "fault not observed: ..."
    pub unobserved: Option<String>,
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
        Fault::BrokerDown(secs) => {
            cluster_down(stack, secs).await?;
            // past its delivery timeout the feed exits saying which setting it ran out of
            if secs > 60 && !run.log("feed0").contains("message.timeout.ms") {
                return Ok(Added {
                    unobserved: Some(
                        "fault not observed: the feed did not exit naming message.timeout.ms while the brokers \
                         were down"
                            .into(),
                    ),
                    ..Added::default()
                });
            }
        }
        Fault::RebalanceStorm(secs) => storm(run, cast, secs).await?,
        Fault::DoubleSigterm => row.sigterm_exit = double_sigterm(stack, &cast.sinks[0].0).await?,
        Fault::RegistryDown(secs) => registry_down(run, cast, secs).await?,
        Fault::Poison => return poison(run).await,
        Fault::TopicRecreated => recreate_topic(run, feed, groups).await?,
        Fault::LeaderKilled(secs) => leader_away(stack, Away::Killed, secs).await?,
        Fault::TwoBrokersDown(secs) => two_brokers_down(stack, feed, secs).await?,
        Fault::BrokerFrozen(secs) => broker_frozen(stack, secs).await?,
        Fault::RollingRestart => rolling_restart(stack).await?,
        Fault::QuorumLeaderKilled(secs) => quorum_leader_killed(stack, secs).await?,
        Fault::BrokerIsolated(secs) => leader_away(stack, Away::Isolated, secs).await?,
        Fault::ClickHouseSlow(secs) => slow_answers(stack, secs).await?,
        Fault::ClickHouseAckLost(secs) => acks_lost(run, &cast.sinks[0].0, secs).await?,
        Fault::FeedKilled => {
            tokio::time::sleep(Duration::from_secs(8)).await;
            feed.kill().await?;
        }
        Fault::AbortAt(point) => return abort_at(run, cast, point).await,
    }
    Ok(Added::default())
}

/// One partition of the cluster's metadata: topic, partition, leader, in-sync replicas.
type Placement = (String, i32, i32, usize);

/// A consumer that only asks the cluster about its topics (no group is joined).
type Asker = std::sync::Arc<rdkafka::consumer::BaseConsumer>;

/// An [`Asker`] for `stack`.
fn asker(stack: &PrivateStack) -> Result<Asker> {
    Ok(std::sync::Arc::new(
        chainflow_kafka::consumer_config(&stack.config.kafka, "chaos-metadata").create()?,
    ))
}

/// Where the scenario topics' partitions are: their leaders and in-sync replicas.
async fn placements(asker: &Asker) -> Result<Vec<Placement>> {
    let metadata = chainflow_kafka::blocking::fetch_metadata(asker, None, Duration::from_secs(10)).await?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with('_'))
        .flat_map(|t| {
            t.partitions()
                .iter()
                .map(|p| (t.name().to_string(), p.id(), p.leader(), p.isr().len()))
        })
        .collect())
}

/// The busiest partition (the highest end of the feed's and enrich's topics) and its
/// leader.
async fn busiest(asker: &Asker) -> Result<(String, i32, i32)> {
    let mut best: Option<(i64, String, i32, i32)> = None;
    for (topic, partition, leader, _) in placements(asker).await? {
        if topic.starts_with("dlq.") {
            continue;
        }
        let (_, high) =
            chainflow_kafka::blocking::fetch_watermarks(asker, &topic, partition, Duration::from_secs(10)).await?;
        if best.as_ref().is_none_or(|b| high > b.0) {
            best = Some((high, topic, partition, leader));
        }
    }
    best.map(|(_, t, p, l)| (t, p, l)).context("no partition has a leader")
}

/// Waits up to `limit` for `check` of the placements to hold; `what` names it otherwise.
async fn observe_placements(
    asker: &Asker,
    limit: Duration,
    what: &str,
    check: impl Fn(&[Placement]) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if placements(asker).await.is_ok_and(|p| check(&p)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("fault not observed: {what} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every partition led and fully replicated again (after a fault), within 2 minutes.
async fn replicated(asker: &Asker) -> Result<()> {
    let full = crate::stack::BROKERS as usize;
    observe_placements(asker, Duration::from_mins(2), "every partition back in sync", |p| {
        p.iter().all(|(_, _, leader, isr)| *leader > 0 && *isr == full)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}").context("after the fault"))
}

/// How long a cluster may take to notice a node gone (Kafka's `broker.session.timeout.ms`,
/// 9 s, then an election), with room.
const FAILOVER: Duration = Duration::from_secs(30);

/// How a node is taken away from its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Away {
    /// SIGKILLed, and started again.
    Killed,
    /// Cut off from the other nodes and from every client (its network namespace's link
    /// down), and joined again.
    Isolated,
}

/// `nodes` taken away as `how` says; `observed` must hold of the placements within
/// [`FAILOVER`]; the nodes back `secs` after they went (whether or not it held), and every
/// partition then fully replicated again.
async fn node_down(
    stack: &PrivateStack,
    asker: &Asker,
    nodes: &[i32],
    how: Away,
    secs: u64,
    what: &str,
    observed: impl Fn(&[Placement]) -> bool,
) -> Result<()> {
    let back_at = Instant::now() + Duration::from_secs(secs);
    for node in nodes {
        match how {
            Away::Killed => stack::kill_and_wait(stack.pid(&stack::broker_name(*node))?).await?,
            Away::Isolated => stack.isolate(*node, true)?,
        }
    }
    let seen = observe_placements(asker, FAILOVER, what, observed).await;
    tokio::time::sleep_until(back_at).await;
    match how {
        Away::Killed => stack.start_missing()?,
        Away::Isolated => {
            for node in nodes {
                stack.isolate(*node, false)?;
            }
        }
    }
    seen?;
    replicated(asker).await
}

/// The node leading the busiest partition taken away for `secs`; the partition must get
/// another leader.
async fn leader_away(stack: &PrivateStack, how: Away, secs: u64) -> Result<()> {
    let asker = asker(stack)?;
    let (topic, partition, leader) = busiest(&asker).await?;
    let what = format!("{topic}[{partition}] led by another node than {leader}");
    node_down(stack, &asker, &[leader], how, secs, &what, |p| {
        p.iter()
            .any(|(t, q, l, _)| *t == topic && *q == partition && *l > 0 && *l != leader)
    })
    .await
}

/// Nodes 2 and 3 killed for `secs`: below `min.insync.replicas` and without a quorum, so
/// no metadata changes (node 1 keeps leading its partitions with the old in-sync replicas)
/// and the producers wait: the fault is seen as the ends of node 1's partitions of the
/// feed's topics not moving for 20 s while the feed runs.
async fn two_brokers_down(stack: &PrivateStack, feed: &Feed, secs: u64) -> Result<()> {
    let asker = asker(stack)?;
    let survivor: Vec<(String, i32)> = placements(&asker)
        .await?
        .into_iter()
        .filter(|(t, _, leader, _)| *leader == 1 && t.starts_with("market."))
        .map(|(t, p, _, _)| (t, p))
        .collect();
    for node in [2, 3] {
        stack::kill_and_wait(stack.pid(&stack::broker_name(node))?).await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = ends(&asker, &survivor).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = ends(&asker, &survivor).await;
    let waiting =
        feed.running() && !survivor.is_empty() && before.is_ok() && before.as_ref().ok() == after.as_ref().ok();
    tokio::time::sleep(Duration::from_secs(secs.saturating_sub(25))).await;
    stack.start_missing()?;
    if !waiting {
        bail!(
            "fault not observed: the ends of node 1's partitions {survivor:?} moved ({before:?} → {after:?}), \
             or the feed had ended, with two of three nodes down"
        );
    }
    replicated(&asker).await
}

/// The high watermarks of `partitions`.
async fn ends(asker: &Asker, partitions: &[(String, i32)]) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for (topic, partition) in partitions {
        let (_, high) =
            chainflow_kafka::blocking::fetch_watermarks(asker, topic, *partition, Duration::from_secs(5)).await?;
        out.push(high);
    }
    Ok(out)
}

/// The busiest partition's leader frozen for `secs`: its partitions' ISR must shrink.
async fn broker_frozen(stack: &PrivateStack, secs: u64) -> Result<()> {
    let asker = asker(stack)?;
    let (_, _, leader) = busiest(&asker).await?;
    let pid = stack.pid(&stack::broker_name(leader))?;
    stack::signal("STOP", pid)?;
    let shrank = observe_placements(
        &asker,
        Duration::from_secs(secs),
        &format!("the ISR shrinking with node {leader} frozen"),
        |p| p.iter().any(|(_, _, _, isr)| *isr < crate::stack::BROKERS as usize),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(secs).saturating_sub(Duration::from_secs(1))).await;
    stack::signal("CONT", pid)?;
    shrank?;
    replicated(&asker).await
}

/// Each node stopped (SIGTERM, a controlled shutdown) and started again, the next one
/// once every partition is fully replicated.
async fn rolling_restart(stack: &PrivateStack) -> Result<()> {
    let asker = asker(stack)?;
    for node in 1..=crate::stack::BROKERS {
        let name = stack::broker_name(node);
        let pid = stack.pid(&name)?;
        stack::signal("TERM", pid)?;
        while stack::alive(pid) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stack.start_missing()?;
        if stack.pid(&name)? == pid {
            bail!("fault not observed: {name} was not restarted");
        }
        replicated(&asker).await?;
    }
    Ok(())
}

/// The KRaft quorum's leader killed; another node must lead it.
async fn quorum_leader_killed(stack: &PrivateStack, secs: u64) -> Result<()> {
    let asker = asker(stack)?;
    let leader = stack.quorum_leader()?;
    stack::kill_and_wait(stack.pid(&stack::broker_name(leader))?).await?;
    let deadline = Instant::now() + FAILOVER;
    let mut moved = Ok(());
    while stack.quorum_leader()? == leader {
        if Instant::now() > deadline {
            moved = Err(anyhow::anyhow!(
                "fault not observed: node {leader} still leads the quorum {FAILOVER:?} after it was killed"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stack.start_missing()?;
    moved?;
    replicated(&asker).await
}

/// The poison mix sent while the first sink's or enricher's first process is armed to abort
/// at `point`; it must abort there (and be restarted) within a minute.
async fn abort_at(run: &Run<'_>, cast: &Cast, point: &str) -> Result<Added> {
    let added = poison(run).await?;
    let component = if point.starts_with("sink.") {
        &cast.sinks[0].0
    } else {
        &cast.enrichers[0].0
    };
    let deadline = Instant::now() + Duration::from_mins(1);
    while component.restarts() == 0 {
        if Instant::now() > deadline {
            bail!(
                "fault not observed: {} did not abort at {point} within 60 s",
                component.name
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(added)
}

/// How late ClickHouse's answers come in `clickhouse-slow-*`: past the scenario's 5 s
/// insert timeout.
const SLOW_ANSWER_MS: u64 = 8_000;

/// ClickHouse's answers to the sinks delayed [`SLOW_ANSWER_MS`] for `secs` (the requests
/// themselves pass at once: each insert is applied and then timed out by the sink).
async fn slow_answers(stack: &PrivateStack, secs: u64) -> Result<()> {
    stack
        .proxy
        .add(
            "slow",
            "latency",
            serde_json::json!({"latency": SLOW_ANSWER_MS, "jitter": 0}),
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stack.proxy.remove("slow").await
}

/// ClickHouse's acknowledgement of an insert lost after the insert was applied: the
/// sink's first process stops itself once a flush is recorded in the ledger (its fault
/// point `sink.recorded`, armed to `stop`), every answer ClickHouse sends the sinks is then
/// dropped, and the sink continued, so that it sends the insert, ClickHouse applies it and
/// the sink never hears so (its insert times out, and is retried) for `secs`. The fault is
/// seen when the scenario's rows grow in ClickHouse while no answer reaches the sink.
async fn acks_lost(run: &Run<'_>, sink: &Component, secs: u64) -> Result<()> {
    let pid = sink.running(Duration::from_secs(30)).await?;
    let deadline = Instant::now() + Duration::from_mins(1);
    while !stack::stopped(pid) {
        if Instant::now() > deadline {
            bail!("fault not observed: the sink did not stop at sink.recorded within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = observe::counts(&run.db, &run.product, false).await?.total();
    run.stack
        .proxy
        .add("acks_lost", "timeout", serde_json::json!({"timeout": 0}))
        .await?;
    stack::signal("CONT", pid)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let applied = observe::counts(&run.db, &run.product, false).await?.total();
    run.stack.proxy.remove("acks_lost").await?;
    if applied <= before {
        bail!("fault not observed: no insert was applied while ClickHouse's answers were lost ({before} rows before, {applied} after)");
    }
    Ok(())
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

/// Every Kafka node killed, and started again `secs` later.
async fn cluster_down(stack: &PrivateStack, secs: u64) -> Result<()> {
    for node in 1..=crate::stack::BROKERS {
        stack::kill_and_wait(stack.pid(&stack::broker_name(node))?).await?;
    }
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

/// For `secs`, every 10 s the oldest sink or enricher (in turn) stopped and replaced.
async fn storm(run: &mut Run<'_>, cast: &mut Cast, secs: u64) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut replaced = 0u64;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let name = format!("replacement{replaced}");
        if replaced.is_multiple_of(2) {
            cast.sinks.remove(0).0.terminate(Duration::from_secs(35)).await?;
            cast.add_sink(run, &name, &[]);
        } else {
            cast.enrichers.remove(0).0.terminate(Duration::from_secs(35)).await?;
            cast.add_enricher(run, &name, &[]);
        }
        replaced += 1;
    }
    Ok(())
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
    cast.add_sink(run, "cold-sink", &[]);
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
