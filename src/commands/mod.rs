//! One module per subcommand.

mod analyze;
mod feed;
mod infra;
mod run;
mod stages;

use crate::cli::Command;
use anyhow::Result;
use chainflow_config::Config;
use chainflow_schemas::codec::registry_settings;
use chainflow_schemas::Codec;
use std::sync::Arc;

/// Runs `command`.
pub async fn dispatch(command: Command, config: Config) -> Result<()> {
    match command {
        Command::Registry => infra::registry(&config).await,
        Command::Migrate { print_for } => infra::migrate(&config, print_for.as_deref()).await,
        Command::Topics => infra::topics(&config).await,
        Command::Feed(cmd) => match cmd.play {
            Some(crate::cli::FeedSubcommand::Play(args)) => feed::play(&config, &args).await,
            None => feed::feed(&config, &cmd.args).await,
        },
        Command::Enrich => stages::enrich(&config).await,
        Command::Sink => stages::sink(&config).await,
        Command::Run(args) => run::run(&config, &args).await,
        Command::Analyze(args) => analyze::analyze(&config, &args),
    }
}

/// A codec for the configured registry.
pub fn codec(config: &Config) -> Result<Arc<Codec>> {
    let r = &config.registry;
    Ok(Arc::new(Codec::new(registry_settings(
        &r.url,
        &r.username,
        r.password.expose(),
    )?)))
}
