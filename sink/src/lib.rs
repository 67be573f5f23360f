//! The sink stage and the ClickHouse tables it writes, one stream per topic family
//! (enriched chains, underlying ticks, option quotes, dead letters):
//! - [`rows`]: records to rows, pure;
//! - [`stream`]: what each stream reads and writes, and one insert;
//! - [`batch`]: a partition's batch and its deduplication token;
//! - [`ledger`]: the bookkeeping that re-forms uncommitted batches after a crash;
//! - [`retry`]: which failures are transient, by ClickHouse's error code, and backoff;
//! - [`rebalance`]: the consumer context that commits before partitions are revoked;
//! - [`stall`]: lag, measured off the loop, and stalls;
//! - [`worker`]: the loop; [`sink`]: the stages;
//! - [`server`], [`migrate`], [`prune`]: the client, server versions, tables and retention.

pub mod batch;
pub mod ledger;
pub mod migrate;
pub mod prune;
pub mod rebalance;
pub mod retry;
pub mod rows;
pub mod server;
pub mod sink;
pub mod stall;
pub mod stream;
pub mod worker;

pub use server::{client, ServerVersion};
pub use sink::{Sink, StreamSink};
