//! What a test is made of: names of its own, records, products, and a pipeline isolated on
//! the shared stack. The raw chain is the contract's fixture, which the fault suite sends
//! too.

use super::clickhouse::Database;
use super::kafka::{group_at_end, sink_groups_at_end};
use super::processes::{chainflow, Chainflow};
use super::stack;
use chainflow_config::Product;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use chainflow_contract::fixtures::{chain, CHAIN_EVENT_US, CHAIN_EXPIRY};

/// Names that belong to one test: its consumer groups, database, topics and products never
/// collide with another test's or another run's.
pub struct Names {
    tag: String,
}

impl Names {
    /// Names for the test `test`.
    pub fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        Self {
            tag: format!("{test}_{}_{}", std::process::id(), nanos % 1_000_000_000),
        }
    }

    /// A tag unique to this test run (letters, digits and '_').
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The consumer group of `stage`.
    pub fn group(&self, stage: &str) -> String {
        format!("test-{stage}-{}", self.tag)
    }

    /// A ClickHouse database.
    pub fn database(&self) -> String {
        format!("chainflow_test_{}", self.tag)
    }

    /// A topic named after `base`.
    pub fn topic(&self, base: &str) -> String {
        format!("{base}_test_{}", self.tag)
    }

    /// A product name (upper case letters, digits and '_').
    pub fn product(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.tag.to_ascii_uppercase())
    }
}

/// A configuration file holding only the product `name` (so a run touches nothing else).
pub fn product_config(name: &str, params: &Product) -> PathBuf {
    let path = std::env::temp_dir().join(format!("chainflow-{name}.toml"));
    let mut table = toml::Table::new();
    table.insert(
        "products".into(),
        toml::Value::try_from(BTreeMap::from([(name.to_string(), params.clone())])).expect("a product serializes"),
    );
    std::fs::write(&path, toml::to_string(&table).expect("a table serializes")).expect("writing the file");
    path
}

/// A tick of `product` with sequence number `seq` at `price`.
pub fn tick(product: &str, seq: i64, price: f64) -> chainflow_contract::UnderlyingTick {
    chainflow_contract::UnderlyingTick {
        product: product.to_string(),
        price,
        volume: seq * 100,
        event_time: 1_738_228_500_000_000 + seq * 1_000_000,
        seq,
    }
}

/// A pipeline of a test's own on the shared stack: a database, a product no other test
/// feeds (in a configuration file of its own), and enrich and sink groups positioned at the
/// end of their topics, so that the run sees only what it produces.
pub struct Isolated {
    /// The test's names.
    pub names: Names,
    /// Its database, with chainflow's tables.
    pub db: Database,
    /// Its product.
    pub product: String,
    /// A configuration file holding only that product.
    pub config: PathBuf,
    /// `enrich.group_id`.
    pub enrich_group: String,
    /// `sink.group_id`.
    pub sink_group: String,
}

impl Isolated {
    /// A run named after `test`, whose product (named with `prefix`) has `params`.
    pub async fn new(test: &str, prefix: &str, params: &Product) -> Self {
        let cfg = stack();
        let names = Names::new(test);
        let db = Database::create(&names);
        let product = names.product(prefix);
        let config = product_config(&product, params);
        let (enrich_group, sink_group) = (names.group("enrich"), names.group("sink"));
        group_at_end(&cfg, &enrich_group, chainflow_contract::topics::OPTION_CHAIN).await;
        sink_groups_at_end(&cfg, &sink_group).await;
        Self {
            names,
            db,
            product,
            config,
            enrich_group,
            sink_group,
        }
    }

    /// `chainflow ARGS` with this run's configuration file, database and groups.
    pub fn chainflow(&self, args: &[&str]) -> Chainflow {
        chainflow(args)
            .config(&self.config)
            .env("CHAINFLOW_CLICKHOUSE__DATABASE", &self.db.name)
            .env("CHAINFLOW_ENRICH__GROUP_ID", &self.enrich_group)
            .env("CHAINFLOW_SINK__GROUP_ID", &self.sink_group)
    }
}
