//! Batched ClickHouse sinks and the migrations they write into.

pub mod migrate;
pub mod rows;
pub mod server;
pub mod sink;

pub use server::{client, ServerVersion};
