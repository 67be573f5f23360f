//! Counters a stage shares with whoever shows progress (`chainflow run`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Records a stage has taken in, put out, and dead-lettered.
#[derive(Debug, Default)]
pub struct StageStats {
    /// Records consumed (or generated, for a feed).
    pub records_in: AtomicU64,
    /// Records produced or stored.
    pub records_out: AtomicU64,
    /// Records sent to a dead-letter topic.
    pub dead_letters: AtomicU64,
}

impl StageStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
