//! The feed stage: the market simulator ([`sim`]) or a recording ([`recording`]), paced
//! ([`pacing`]) and sent to the market topics by one producer ([`sender`]).

pub mod pacing;
pub mod recording;
pub mod sender;
pub mod sim;
mod stage;

pub use pacing::Pace;
pub use sender::FeedSummary;
pub use sim::{MarketEvent, Scenario, Simulator};
pub use stage::{Feed, FeedReport, Source};
