//! `chainflow migrate`, `chainflow prune` and `chainflow topics`.

use crate::cli::PruneArgs;
use anyhow::{Context, Result};
use chainflow_clickhouse::migrate::{migrate as apply, plan, preamble, MigrationOutcome};
use chainflow_clickhouse::prune::{
    apply_retention, drop_partitions, partitions_before, ttl_statements, Retention, TTL_SINCE,
};
use chainflow_clickhouse::ServerVersion;
use chainflow_config::Config;
use chainflow_contract::clickhouse::MIGRATIONS;
use chainflow_contract::topics::provisioned;
use chainflow_kafka::{ensure_topics, TopicOutcome};

/// Applies migrations, or prints them for a given server version.
pub async fn migrate(config: &Config, print_for: Option<&str>) -> Result<()> {
    let db = &config.clickhouse.database;
    if let Some(v) = print_for {
        let server = ServerVersion::parse(v)
            .ok_or_else(|| crate::UsageError(format!("--print-for: expected MAJOR.MINOR, got {v:?}")))?;
        let cluster = &config.clickhouse.cluster;
        for s in preamble(db, cluster) {
            println!("{s};");
        }
        for m in MIGRATIONS {
            match plan(m, db, cluster, server) {
                Ok(statements) => statements.iter().for_each(|s| println!("{s};")),
                Err(why) => println!("-- {}: skipped ({why})", m.name),
            }
        }
        let days = config.clickhouse.retention_days;
        if days > 0 && server >= TTL_SINCE {
            println!("-- retention: clickhouse.retention_days = {days}");
            for s in ttl_statements(db, days) {
                println!("{s};");
            }
        }
        return Ok(());
    }
    let client = chainflow_clickhouse::client(&config.clickhouse);
    let (server, outcomes) = apply(&client, db, &config.clickhouse.cluster)
        .await
        .with_context(|| format!("migrating ClickHouse at {}", config.clickhouse.url))?;
    match config.clickhouse.cluster.as_str() {
        "" => println!("ClickHouse {server} at {}, database {db}", config.clickhouse.url),
        cluster => println!(
            "ClickHouse {server} at {}, database {db} on cluster {cluster}",
            config.clickhouse.url
        ),
    }
    for (name, outcome) in outcomes {
        let what = match outcome {
            MigrationOutcome::Applied => "applied".to_string(),
            MigrationOutcome::AlreadyApplied => "already applied".to_string(),
            MigrationOutcome::Skipped(why) => format!("skipped: {why}"),
        };
        println!("  {name}: {what}");
    }
    let retention = apply_retention(&client, db, server, config.clickhouse.retention_days).await?;
    match retention {
        Retention::KeepAll => println!("  retention: everything kept (clickhouse.retention_days = 0)"),
        Retention::Ttl(days) => println!("  retention: TTL of {days} days on every table"),
        Retention::NoTtl(days) => println!(
            "  retention: {days} days asked, but ClickHouse {server} has no TTL (needs {TTL_SINCE}+): \
             run `chainflow prune --before DATE` instead"
        ),
    }
    Ok(())
}

/// Drops (or, with --dry-run, lists) the monthly partitions before `--before`'s month.
pub async fn prune(config: &Config, args: &PruneArgs) -> Result<()> {
    let db = &config.clickhouse.database;
    let client = chainflow_clickhouse::client(&config.clickhouse);
    let cluster = &config.clickhouse.cluster;
    let partitions = partitions_before(&client, db, cluster, args.before).await?;
    let verb = if args.dry_run { "would drop" } else { "dropped" };
    if !args.dry_run {
        drop_partitions(&client, db, cluster, &partitions).await?;
    }
    println!(
        "{verb} {} partition(s) of {db} before {} (whole months only):",
        partitions.len(),
        args.before.format("%Y-%m")
    );
    for p in &partitions {
        println!("  {:<18} {}  {} rows", p.table, p.partition, p.rows);
    }
    Ok(())
}

/// Creates the topics.
pub async fn topics(config: &Config) -> Result<()> {
    let outcomes = ensure_topics(
        &config.kafka,
        &provisioned(config.kafka.partitions, &config.registry.topic),
    )
    .await?;
    println!("Kafka at {}", config.kafka.bootstrap_servers);
    for (spec, outcome) in outcomes {
        let what = match outcome {
            TopicOutcome::Created(n) => format!("created, {n} partition(s)"),
            TopicOutcome::Exists(n) => format!("exists, {n} partition(s)"),
        };
        println!("  {:<24} {what}", spec.name);
    }
    Ok(())
}
