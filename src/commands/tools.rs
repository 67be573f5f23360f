//! The operator's tools: `chainflow replay`, `tail`, `groups` and `dlq redrive`.

use crate::cli::{GroupsCommand, RangeArgs, RedriveArgs, ReplayArgs, TailArgs};
use crate::progress;
use crate::wiring;
use crate::UsageError;
use anyhow::{Context, Result};
use chainflow_clickhouse::ServerVersion;
use chainflow_config::Config;
use chainflow_contract::streams::{self, Source, StreamSpec, STREAMS};
use chainflow_contract::topics::{ENRICHED_CHAIN, OPTION_CHAIN};
use chainflow_kafka::range::{resolve, tool_consumer};
use chainflow_kafka::{Bound, Isolation, RangeReader, Span};
use chainflow_runtime::{signals, RetryPolicy, StageStats};
use chainflow_sink::stream::{with_stream, Avro, Chains, Stream, WithStream};
use chainflow_tools::replay::{EventWindow, Replay, Summary, Writes};
use chainflow_tools::reprocess::{Forward, Reprocess};
use chainflow_tools::{groups, redrive, tail, Progress};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// Prints a line on standard output; a closed pipe (`| head`) ends the command quietly.
macro_rules! say {
    ($($t:tt)*) => { writeln!(std::io::stdout(), $($t)*)? };
}

/// The spans of `range` over `topic`, printed (with a warning for history that retention
/// removed); `None` when the range is empty.
async fn plan(config: &Config, topic: &str, range: &RangeArgs) -> Result<(Vec<Span>, u64)> {
    let consumer = tool_consumer(&config.kafka, Isolation::ReadCommitted)?;
    let spans = resolve(&consumer, topic, &range.partitions, &range.from, &range.to).await?;
    let total: u64 = spans.iter().map(Span::records).sum();
    say!(
        "{topic} from {} to {}: {total} record(s) in {} partition(s), {}",
        range.from,
        range.to,
        spans.iter().filter(|s| s.records() > 0).count(),
        Isolation::ReadCommitted
    );
    for s in &spans {
        say!(
            "  partition {:>3}: offsets {}..{} ({} records; the partition holds {}..{})",
            s.partition,
            s.start,
            s.end,
            s.records(),
            s.low,
            s.high
        );
    }
    for s in spans.iter().filter(|s| s.before_horizon) {
        eprintln!(
            "warning: partition {} of {topic} starts at offset {}: the records before it were deleted \
             (retention, kafka.retention_ms), so the range begins later than asked",
            s.partition, s.low
        );
    }
    Ok((spans, total))
}

/// The stream that stores `topic` (`None`: the raw chains, enriched again with
/// `--reprocess`), or why the range cannot be replayed.
fn stream_of(topic: &str, args: &ReplayArgs) -> Result<Option<&'static StreamSpec>, UsageError> {
    if topic == OPTION_CHAIN {
        return if args.reprocess {
            Ok(None)
        } else {
            Err(UsageError(format!(
                "{OPTION_CHAIN} holds raw chains, stored only in their enriched form: replay it with \
                 --reprocess (enriches them again), or replay {ENRICHED_CHAIN}"
            )))
        };
    }
    if args.reprocess {
        return Err(UsageError(format!(
            "--reprocess applies to {OPTION_CHAIN} only, not {topic}"
        )));
    }
    let Some(spec) = streams::storing(topic) else {
        let stored: Vec<String> = STREAMS.iter().map(|s| s.source.to_string()).collect();
        return Err(UsageError(format!(
            "chainflow stores {}, and {OPTION_CHAIN} with --reprocess; not {topic}",
            stored.join(", ")
        )));
    };
    if spec.source == Source::DeadLetters && (args.event_from.is_some() || args.event_to.is_some()) {
        return Err(UsageError(
            "--event-from and --event-to filter market events; dead letters have none (use --from and --to)".into(),
        ));
    }
    Ok(Some(spec))
}

/// `chainflow replay TOPIC`.
pub async fn replay(config: &Config, args: &ReplayArgs) -> Result<()> {
    let topic = args.topic.as_str();
    let stream = stream_of(topic, args)?;
    let (spans, total) = plan(config, topic, &args.range).await?;
    if args.dry_run {
        say!("dry run: nothing written");
        return Ok(());
    }
    let sink = &config.sink;
    let client = chainflow_clickhouse::client(&config.clickhouse).with_database(&config.clickhouse.database);
    let server = ServerVersion::detect(&client)
        .await
        .with_context(|| format!("reaching ClickHouse at {}", config.clickhouse.url))?;
    let writes = Writes {
        client,
        tokens: server.has_dedup_token(),
        batch_rows: sink.batch_rows,
        batch_bytes: sink.batch_bytes,
        insert_timeout: Duration::from_millis(sink.insert_timeout_ms),
        retry: RetryPolicy::from_millis(sink.retry.initial_ms, sink.retry.max_ms, sink.retry.budget_ms),
    };
    let window = EventWindow {
        from: args.event_from,
        to: args.event_to,
    };
    let reader = RangeReader::open(
        tool_consumer(&config.kafka, Isolation::ReadCommitted)?,
        topic,
        &spans,
        false,
    )?;
    let read = Arc::new(Progress::default());
    let bar = progress::bar(Some(total), "records");
    let redraw = progress::follow_read(&bar, &read, "records");
    let stop = signals::shutdown_request();
    let codec = wiring::codec(config)?;
    let avro = |stage| Avro::new(codec.clone(), Duration::ZERO, stage);
    let into = Replay {
        reader,
        writes: &writes,
        window,
        progress: &read,
        stop: &stop,
    };
    let run = async {
        if let Some(spec) = stream {
            return with_stream(spec, avro(spec.stage), into).await;
        }
        let processor = wiring::enrich(config, Arc::new(StageStats::default()))?.processor();
        let forward = match &args.to_topic {
            Some(t) => Some(Forward::new(&config.kafka, t)?),
            None => None,
        };
        let at = chrono::Utc::now().timestamp_micros();
        into.with(Reprocess::new(processor, Chains::new(avro(Chains::STAGE)), at, forward))
            .await
    };
    let outcome = run.await;
    redraw.abort();
    bar.finish_and_clear();
    let summary = outcome?;
    report(topic, args, &summary)
}

/// Prints what a replay did.
fn report(topic: &str, args: &ReplayArgs, s: &Summary) -> Result<()> {
    let secs = s.elapsed.as_secs_f64().max(1e-3);
    let verb = if args.reprocess { "reprocessed" } else { "replayed" };
    say!(
        "{verb} {topic}: read {} record(s) in {:.1} s ({:.0} records/s); wrote {} record(s) as {} row(s) in {} insert(s)",
        s.total_read(),
        secs,
        s.total_read() as f64 / secs,
        s.written,
        s.rows,
        s.inserts
    );
    if let Some((a, b)) = s.events {
        let t = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us).map_or_else(
                || us.to_string(),
                |t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            )
        };
        say!("  events from {} to {}", t(a), t(b));
    }
    if s.filtered > 0 {
        say!("  {} record(s) outside --event-from/--event-to", s.filtered);
    }
    for (kind, n) in &s.skipped {
        say!("  {n} record(s) skipped: {kind} (the live stages dead-lettered them)");
    }
    if let Some(t) = &args.to_topic {
        say!("  the enriched chains were also sent to {t}");
    }
    if s.interrupted {
        say!("  stopped before the end of the range: what was read was written; run again to finish");
    }
    Ok(())
}

/// `chainflow tail TOPIC`.
pub async fn tail(config: &Config, args: &TailArgs) -> Result<()> {
    let isolation = if args.read_uncommitted {
        Isolation::ReadUncommitted
    } else {
        Isolation::ReadCommitted
    };
    tracing::info!(topic = %args.topic, %isolation, "tail");
    let consumer = tool_consumer(&config.kafka, isolation)?;
    let spans = resolve(&consumer, &args.topic, &args.partitions, &args.from, &Bound::Latest).await?;
    let reader = RangeReader::open(consumer, &args.topic, &spans, args.follow)?;
    let opts = tail::Options {
        key: args.key.clone(),
        max: args.max,
        with_meta: args.with_meta,
    };
    let codec = wiring::codec(config)?;
    let stop = signals::shutdown_request();
    let mut out = std::io::stdout().lock();
    tail::tail(&codec, &args.topic, reader, &opts, &mut out, &stop).await?;
    Ok(())
}

/// `chainflow groups ...`.
pub async fn groups(config: &Config, command: &GroupsCommand) -> Result<()> {
    let kafka = &config.kafka;
    match command {
        GroupsCommand::List => {
            let list = groups::list(kafka).await?;
            say!("{:<48} {:<20} members", "group", "state");
            for g in list {
                say!("{:<48} {:<20} {}", g.name, g.state, g.members.len());
            }
        }
        GroupsCommand::Lag { group, topics } => {
            let lags = groups::lag(kafka, group, topics).await?;
            if lags.is_empty() {
                say!("group {group} has no committed offsets (name topics with --topic)");
                return Ok(());
            }
            say!(
                "{:<32} {:>9} {:>12} {:>12} {:>10}",
                "topic",
                "partition",
                "committed",
                "high",
                "lag"
            );
            for l in &lags {
                let c = l.committed.map_or_else(|| "-".to_string(), |c| c.to_string());
                say!(
                    "{:<32} {:>9} {:>12} {:>12} {:>10}",
                    l.topic,
                    l.partition,
                    c,
                    l.high,
                    l.lag
                );
            }
            say!("total lag {}", lags.iter().map(|l| l.lag).sum::<i64>());
        }
        GroupsCommand::Reset {
            group,
            to,
            topics,
            dry_run,
        } => {
            let moves = groups::reset(kafka, group, topics, to, *dry_run).await?;
            let verb = if *dry_run { "would move" } else { "moved" };
            say!("{verb} group {group} to {to}:");
            for m in &moves {
                let b = m.before.map_or_else(|| "-".to_string(), |c| c.to_string());
                say!("  {} partition {}: {b} -> {}", m.topic, m.partition, m.after);
            }
        }
    }
    Ok(())
}

/// `chainflow dlq redrive TOPIC`.
pub async fn redrive(config: &Config, args: &RedriveArgs) -> Result<()> {
    let topic = if args.topic.starts_with("dlq.") {
        args.topic.clone()
    } else {
        chainflow_contract::topics::dlq(&args.topic)
    };
    let (spans, total) = plan(config, &topic, &args.range).await?;
    let reader = RangeReader::open(
        tool_consumer(&config.kafka, Isolation::ReadCommitted)?,
        &topic,
        &spans,
        false,
    )?;
    let read = Arc::new(Progress::default());
    let bar = progress::bar(Some(total), "dead letters");
    let redraw = progress::follow_read(&bar, &read, "dead letters");
    let stop = signals::shutdown_request();
    let opts = redrive::Options {
        kinds: args.kinds.clone(),
        dry_run: args.dry_run,
    };
    let outcome = redrive::redrive(reader, &config.kafka, &opts, &read, &stop).await;
    redraw.abort();
    bar.finish_and_clear();
    let s = outcome?;
    let verb = if args.dry_run { "would send back" } else { "sent back" };
    let sent: u64 = s.sent.values().sum();
    say!("read {} dead letter(s) of {topic}; {verb} {sent}", s.read);
    for ((source, kind), n) in &s.sent {
        say!("  {n} to {source} ({kind})");
    }
    if s.filtered > 0 {
        say!("  {} left out by --kind", s.filtered);
    }
    for (source, partition, offset) in &s.without_value {
        say!(
            "  not sent: the dead letter of {source} partition {partition} offset {offset} does not hold its value \
             (too large); it is in {source} while retention keeps it"
        );
    }
    if s.interrupted {
        say!("  stopped before the end of the range");
    }
    Ok(())
}
