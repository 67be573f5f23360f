//! `chainflow`: the options market data pipeline on Kafka and ClickHouse.

mod cli;
mod commands;
mod progress;
mod shutdown;
mod telemetry;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chainflow: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.observability.log_format);
    match commands::dispatch(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "chainflow failed");
            eprintln!("chainflow: {e:#}");
            ExitCode::FAILURE
        }
    }
}
