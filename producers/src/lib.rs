//! Feed producers: the market simulator, recorded feeds, and the loops that write them to
//! the market topics.

pub mod feed;
pub mod pacing;
pub mod play;
pub mod record;
pub mod sender;
pub mod sim;

pub use feed::{Feed, FeedOptions};
pub use pacing::Pace;
pub use sender::FeedSummary;
pub use sim::{MarketEvent, Scenario, Simulator};
