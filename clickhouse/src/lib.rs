//! ClickHouse plumbing, used by every component that reaches ClickHouse (the sink, live,
//! the tools, chaos and the binary), so that none of them imports a stage to do it:
//! - [`client`]: the configured client and what the connected server supports;
//! - [`error`]: which answers are worth retrying, by ClickHouse's `Code: N`;
//! - [`migrate`]: the contract's migrations, applied once each, in order;
//! - [`prune`]: retention, by TTL or by dropping whole monthly partitions.

pub mod client;
pub mod error;
pub mod migrate;
pub mod prune;

pub use client::{client, ServerVersion};
pub use error::{classify, timed_out, Failure};
