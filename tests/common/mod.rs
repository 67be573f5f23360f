//! The one harness of the integration tests, in parts named for what they hold:
//! `processes` (the `chainflow` binary run as a user runs it, its `/metrics`, and the
//! stack's processes for fault tests), `kafka` (consumers, groups positioned at the end of
//! their topics, a producer of contract records), `clickhouse` (a database of a test's
//! own) and `fixtures` (names that belong to one test, records, products, an isolated
//! pipeline). The stack's configuration comes from the environment
//! (`eval "$(ops/stack.sh env)"`).

#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses its part of the harness (and of its re-exports)"
)]

mod clickhouse;
mod fixtures;
mod kafka;
mod processes;

pub use self::clickhouse::Database;
pub use fixtures::{chain, product_config, tick, Isolated, Names, CHAIN_EVENT_US, CHAIN_EXPIRY};
pub use kafka::{consumer, ends, group_at_end, sink_groups_at_end, Producer};
pub use processes::{
    chainflow, free_port, kill, metric, output_with_input, scrape, stack_pid, stack_up, status, try_metric, try_scrape,
    wait_http, Chainflow, Ended, Proc,
};

use chainflow_config::Config;

/// The configuration the stack's environment describes.
pub fn stack() -> Config {
    Config::load(None, std::env::vars(), &[]).expect("configuration from the environment")
}
