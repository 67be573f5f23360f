//! Live progress of long-running commands (indicatif).

use chainflow_runtime::StageStats;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::time::Duration;

/// The counters of feed, enrich and sink, shown together.
#[derive(Clone, Default)]
pub struct PipelineStats {
    /// Feed.
    pub feed: Arc<StageStats>,
    /// Enrich.
    pub enrich: Arc<StageStats>,
    /// Sink.
    pub sink: Arc<StageStats>,
}

impl PipelineStats {
    /// One line: produced, enriched, dead-lettered, stored.
    pub fn line(&self) -> String {
        format!(
            "fed {} · enriched {} · dead-lettered {} · stored {}",
            StageStats::get(&self.feed.records_in),
            StageStats::get(&self.enrich.records_out),
            StageStats::get(&self.enrich.dead_letters) + StageStats::get(&self.sink.dead_letters),
            StageStats::get(&self.sink.records_out),
        )
    }
}

/// A bar towards `total` (or a spinner with the count and rate when there is none), redrawn
/// ten times a second.
pub fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {human_pos} {msg} ({per_sec})")
                .expect("valid template"),
        ),
    };
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Redraws `progress` from a stage's input counter, ten times a second, until aborted.
pub fn follow(progress: &ProgressBar, stats: &Arc<StageStats>) -> tokio::task::JoinHandle<()> {
    let (progress, stats) = (progress.clone(), stats.clone());
    tokio::spawn(async move {
        loop {
            progress.set_position(StageStats::get(&stats.records_in));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Redraws `progress` from a tool's records and bytes read, ten times a second, until aborted.
pub fn follow_read(
    progress: &ProgressBar,
    read: &Arc<chainflow_tools::Progress>,
    what: &str,
) -> tokio::task::JoinHandle<()> {
    let (progress, read, what) = (progress.clone(), read.clone(), what.to_string());
    tokio::spawn(async move {
        loop {
            let (records, bytes) = read.get();
            progress.set_position(records);
            progress.set_message(format!("{what} · {}", indicatif::HumanBytes(bytes)));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
