//! The sink stage and the ClickHouse tables it writes: [`sink`] batches enriched chains
//! into ClickHouse, [`rows`] turns records into rows, [`server`] builds the client and knows
//! what a server version supports, [`migrate`] creates and upgrades the tables.

pub mod migrate;
pub mod rows;
pub mod server;
pub mod sink;

pub use server::{client, ServerVersion};
pub use sink::Sink;
