//! `chainflow`: the options market data pipeline on Kafka and ClickHouse.
//!
//! The binary wires the stages of the library crates into commands: [`cli`] parses the
//! command line, [`wiring`] builds each stage from its configuration section and runs
//! stages in one supervised pipeline, [`commands`] holds one module per command.
//!
//! Exit codes: 0 clean stop (a SIGTERM or Ctrl-C drained within
//! `pipeline.shutdown_timeout_ms` included), 1 runtime error, 2 usage or configuration
//! error, 130 second signal (stopped at once).

mod cli;
mod commands;
mod logging;
mod progress;
mod wiring;

use clap::Parser;
use std::process::ExitCode;

/// A mistake in how the program was called, found after parsing (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit code of a runtime error.
const EXIT_RUNTIME: u8 = 1;
/// Exit code of a usage or configuration error (as clap uses for usage errors).
const EXIT_USAGE: u8 = 2;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chainflow: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let telemetry = match logging::init(config.observability.log_format, cli.command.name()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chainflow: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    tracing::debug!(?config, "configuration (secrets redacted)");
    let outcome = commands::dispatch(cli.command, config).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.ok();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS, // `chainflow tail ... | head`
        Err(e) => {
            logging::report(&e);
            if e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<chainflow_config::ConfigError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    }
}

/// Whether `e` is standard output closed by its reader.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
