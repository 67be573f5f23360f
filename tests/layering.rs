//! The layout's rules (docs/architecture.md, "Crates, bottom to top"), read from
//! `cargo metadata`: each crate depends only on the crates of the floors below it that the
//! table allows, the pure analytics link no I/O crate, and the option maths is in no
//! crate's tree but those of the stages that price (feed, enrich) and what is built on
//! them. Needs nothing started.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What the stages that price (feed, enrich) may depend on.
const PRICING_STAGE: &[&str] = &[
    "chainflow-contract",
    "chainflow-analytics",
    "chainflow-config",
    "chainflow-codec",
    "chainflow-kafka",
    "chainflow-runtime",
];

/// What the stages that read the topics and reach ClickHouse (sink, live) may depend on.
const STORING_STAGE: &[&str] = &[
    "chainflow-contract",
    "chainflow-config",
    "chainflow-codec",
    "chainflow-kafka",
    "chainflow-runtime",
    "chainflow-clickhouse",
];

/// Each workspace crate and the chainflow crates it may depend on (normal dependencies),
/// as the union of the lists in its row.
const ALLOWED: &[(&str, &[&[&str]])] = &[
    ("chainflow-contract", &[]),
    ("chainflow-analytics", &[&["chainflow-contract"]]),
    ("chainflow-config", &[&["chainflow-contract"]]),
    ("chainflow-codec", &[&["chainflow-contract", "chainflow-config"]]),
    ("chainflow-kafka", &[&["chainflow-contract", "chainflow-config"]]),
    ("chainflow-runtime", &[]),
    (
        "chainflow-clickhouse",
        &[&["chainflow-contract", "chainflow-config", "chainflow-runtime"]],
    ),
    ("chainflow-feed", &[PRICING_STAGE]),
    ("chainflow-enrich", &[PRICING_STAGE]),
    ("chainflow-sink", &[STORING_STAGE]),
    (
        "chainflow-registry",
        &[&[
            "chainflow-contract",
            "chainflow-config",
            "chainflow-kafka",
            "chainflow-runtime",
        ]],
    ),
    ("chainflow-live", &[STORING_STAGE]),
    (
        "chainflow-tools",
        &[STORING_STAGE, &["chainflow-enrich", "chainflow-sink"]],
    ),
];

/// The stages, and the only crates that may depend on each: the binary that wires them,
/// the tools (reprocessing runs enrich's transformation; replay writes through the sink's
/// streams) and the fault suite (the feed's simulator). ClickHouse, Kafka and the runtime
/// are reached through the plumbing crates, never through a stage.
const STAGE_USERS: &[(&str, &[&str])] = &[
    ("chainflow-feed", &["chainflow", "chainflow-chaos"]),
    ("chainflow-enrich", &["chainflow", "chainflow-tools"]),
    ("chainflow-sink", &["chainflow", "chainflow-tools"]),
    ("chainflow-registry", &["chainflow"]),
    ("chainflow-live", &["chainflow"]),
];

/// Crates that do I/O, which the analytics must never link.
const IO_CRATES: &[&str] = &["tokio", "reqwest", "hyper", "rdkafka", "clickhouse"];

/// Crates whose tree may hold the option maths: the stages that price and what is built
/// on them (the tools reprocess through enrich; the binary and the fault suite wire all).
const PRICING: &[&str] = &[
    "chainflow-analytics",
    "chainflow-feed",
    "chainflow-enrich",
    "chainflow-tools",
    "chainflow-chaos",
    "chainflow",
];

/// The workspace's resolved graph of normal dependencies: package name → the names it
/// depends on (build and dev dependencies left out).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
                .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
                .collect();
            (name_of[node["id"].as_str().unwrap()].to_string(), deps)
        })
        .collect()
}

/// Every package `name` depends on, directly or not.
fn tree(graph: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        for d in graph.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn each_crate_depends_only_on_the_floors_its_row_allows() {
    let graph = graph();
    for (krate, allowed) in ALLOWED {
        let ours: BTreeSet<&str> = graph[*krate]
            .iter()
            .map(String::as_str)
            .filter(|d| d.starts_with("chainflow"))
            .collect();
        let extra: Vec<&&str> = ours
            .iter()
            .filter(|d| !allowed.iter().any(|list| list.contains(d)))
            .collect();
        assert!(
            extra.is_empty(),
            "{krate} depends on {extra:?}, which docs/architecture.md does not allow it"
        );
    }
}

#[test]
fn the_analytics_link_no_io_and_only_pricing_crates_hold_them() {
    let graph = graph();
    let analytics = tree(&graph, "chainflow-analytics");
    let io: Vec<&&str> = IO_CRATES.iter().filter(|c| analytics.contains(**c)).collect();
    assert!(io.is_empty(), "chainflow-analytics links {io:?}");
    for krate in graph.keys().filter(|k| k.starts_with("chainflow")) {
        if !PRICING.contains(&krate.as_str()) {
            assert!(
                !tree(&graph, krate).contains("chainflow-analytics"),
                "{krate}'s tree holds the option maths (chainflow-analytics)"
            );
        }
    }
}

#[test]
fn only_the_binary_the_tools_and_the_fault_suite_import_a_stage() {
    let graph = graph();
    for (stage, users) in STAGE_USERS {
        let dependents: Vec<&String> = graph
            .iter()
            .filter(|(krate, deps)| deps.contains(*stage) && !users.contains(&krate.as_str()))
            .map(|(krate, _)| krate)
            .collect();
        assert!(
            dependents.is_empty(),
            "{dependents:?} depend on the stage {stage}: reach Kafka, ClickHouse or the runtime \
             through their plumbing crates (docs/architecture.md)"
        );
    }
}
