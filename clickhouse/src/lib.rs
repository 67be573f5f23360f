//! ClickHouse plumbing, used by every component that reaches ClickHouse (the sink, live,
//! the tools, chaos and the binary), so that none of them imports a stage to do it:
//! - [`client`]: the configured client and what the connected server supports;
//! - [`error`]: which answers are worth retrying, by ClickHouse's `Code: N`;
//! - [`insert`]: one insert of a batch, with its deduplication token and timeout;
//! - [`rows`]: one row type per table, to write and to read;
//! - [`migrate`]: the contract's migrations, applied once each, in order;
//! - [`prune`]: retention, by TTL or by dropping whole monthly partitions.

pub mod client;
pub mod error;
pub mod insert;
pub mod migrate;
pub mod prune;
pub mod rows;

pub use client::{client, ServerVersion};
pub use error::{classify, timed_out, Failure};
pub use insert::insert;
