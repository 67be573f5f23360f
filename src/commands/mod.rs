//! One module per command.

mod analyze;
mod config;
mod feed;
mod infra;
mod run;
mod schemas;
mod services;
mod tools;

use crate::cli::{Command, ConfigCommand, DlqCommand, FeedSubcommand, RegistrySubcommand, SchemasCommand};
use anyhow::Result;
use chainflow_config::Config;

/// Runs `command`.
pub async fn dispatch(command: Command, config: Config) -> Result<()> {
    match command {
        Command::Registry(cmd) => match cmd.action {
            None => services::registry(&config).await,
            Some(RegistrySubcommand::HashPassword) => services::hash_password(),
        },
        Command::Migrate { print_for, cluster } => {
            let mut config = config;
            if let Some(cluster) = cluster {
                config.clickhouse.cluster = cluster;
                config
                    .clickhouse
                    .validate()
                    .map_err(|e| crate::UsageError(format!("--cluster: {e}")))?;
            }
            infra::migrate(&config, print_for.as_deref()).await
        }
        Command::Topics => infra::topics(&config).await,
        Command::Feed(cmd) => match cmd.play {
            Some(FeedSubcommand::Play(args)) => feed::play(&config, &args).await,
            None => feed::feed(&config, &cmd.args).await,
        },
        Command::Enrich => services::enrich(&config).await,
        Command::Sink(args) => services::sink(&config, &args).await,
        Command::Prune(args) => infra::prune(&config, &args).await,
        Command::Run(args) => run::run(&config, &args).await,
        Command::Serve => services::serve(&config).await,
        Command::Replay(args) => tools::replay(&config, &args).await,
        Command::Tail(args) => tools::tail(&config, &args).await,
        Command::Groups(cmd) => tools::groups(&config, &cmd).await,
        Command::Dlq(DlqCommand::Redrive(args)) => tools::redrive(&config, &args).await,
        Command::Schemas(SchemasCommand::Check(args)) => schemas::check(&config, &args).await,
        Command::Analyze(args) => analyze::analyze(&config, &args),
        Command::Config(ConfigCommand::Check { print }) => {
            config::check(&config, print);
            Ok(())
        }
    }
}
