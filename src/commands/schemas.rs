//! `chainflow schemas check`: every subject of the contract against its released schema
//! and, when the registry answers, against the latest version it holds, under the
//! subject's compatibility level (docs/topics.md, "Schema evolution").

use crate::cli::SchemasCheckArgs;
use anyhow::{anyhow, Context, Result};
use chainflow_codec::{latest_schema, registry_settings};
use chainflow_config::Config;
use chainflow_contract::schemas::{check as compatible, SUBJECTS};
use std::path::Path;

/// The schema in `dir/file` when a directory is given and holds it, else `embedded`.
fn schema(dir: Option<&Path>, file: &str, embedded: &'static str) -> Result<String> {
    match dir.map(|d| d.join(file)).filter(|p| p.exists()) {
        Some(path) => std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display())),
        None => Ok(embedded.to_string()),
    }
}

/// Checks every subject; fails naming each incompatible one and why.
pub async fn check(config: &Config, args: &SchemasCheckArgs) -> Result<()> {
    let settings = if args.offline {
        None
    } else {
        Some(registry_settings(&config.registry)?)
    };
    let mut failures = Vec::new();
    let mut registry_away = None;
    for s in SUBJECTS {
        let name = s.name();
        let current = schema(args.schemas.as_deref(), s.file, s.current)?;
        let released = schema(args.released.as_deref(), s.file, s.released)?;
        match compatible(s.level, &released, &current, "the released schema") {
            Ok(()) => println!("{name} ({}): compatible with the released schema", s.level),
            Err(why) => failures.push(format!("{name}: {why}")),
        }
        let Some(settings) = settings.as_ref().filter(|_| registry_away.is_none()) else {
            continue;
        };
        match latest_schema(settings, &name).await {
            Ok(Some(latest)) => {
                let v = latest.version.map_or_else(String::new, |v| format!("version {v}, "));
                match compatible(s.level, &latest.schema, &current, "the registry's latest schema") {
                    Ok(()) => println!(
                        "{name} ({}): compatible with the registry's latest ({v}id {})",
                        s.level, latest.id
                    ),
                    Err(why) => failures.push(format!("{name}: {why} ({v}id {})", latest.id)),
                }
            }
            Ok(None) => println!("{name}: not in the registry yet"),
            Err(e) => registry_away = Some(e.to_string()),
        }
    }
    if let Some(why) = registry_away {
        println!(
            "the Schema Registry at {} did not answer ({why}): checked against the released schemas only",
            config.registry.url
        );
    }
    if failures.is_empty() {
        return Ok(());
    }
    for f in &failures {
        eprintln!("incompatible: {f}");
    }
    Err(anyhow!(
        "{} incompatible schema change(s): {}",
        failures.len(),
        failures.join("; ")
    ))
}
