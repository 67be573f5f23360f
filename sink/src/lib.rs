//! The sink stage and the ClickHouse tables it writes, one stream per topic family
//! (enriched chains, underlying ticks, option quotes, dead letters):
//! - [`rows`]: records to rows, pure;
//! - [`stream`]: what each stream reads and writes, and one insert;
//! - [`batch`]: a partition's batch and its deduplication token;
//! - [`ledger`]: the bookkeeping that re-forms uncommitted batches after a crash;
//! - [`rebalance`]: the consumer context that commits before partitions are revoked;
//! - [`stall`]: lag, measured off the loop, and stalls;
//! - [`worker`]: the loop; [`sink`]: the stages.
//!
//! ClickHouse itself (the client, error classes, migrations, retention) is `chainflow-clickhouse`.

pub mod batch;
pub mod ledger;
pub mod rebalance;
pub mod rows;
pub mod sink;
pub mod stall;
pub mod stream;
pub mod worker;

pub use sink::{Sink, StreamSink};
