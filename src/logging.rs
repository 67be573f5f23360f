//! Log lines on standard error: human-readable on a terminal, JSON otherwise (or as
//! configured); and the one report of the error a command ends with.

use chainflow_config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber (level from RUST_LOG, default info) writing `format`;
/// `auto` is text when standard error is a terminal, JSON otherwise.
pub fn init(format: LogFormat) {
    let text = match format {
        LogFormat::Text => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::stderr().is_terminal(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if text {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// Reports the error a command failed with: once, as one plain line with its chain of
/// causes (`chainflow: error: stage sink failed: ...: connection refused`), whatever the
/// log format, so that people and scripts read the same line.
pub fn report(error: &anyhow::Error) {
    eprintln!("chainflow: error: {error:#}");
}
