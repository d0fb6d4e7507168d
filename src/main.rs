//! `frameworks`: the one binary of the platform, a subcommand per role.
//!
//! Every setting is a flag with one environment variable beside it (shown by
//! `--help`), validated before anything starts.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: the roles allocate and free small
/// objects on every request and record (GraphQL values, decoded events),
/// which took a sixth of the bridge's CPU in glibc; mimalloc is faster at
/// that and hands freed memory back to the system, keeping idle RSS low.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod analytics;
mod balancer;
mod bridge;
mod db;
mod dead_letters;
mod dependencies;
mod edge;
mod generations;
#[cfg(test)]
mod layering;
mod live_state;
mod logging;
mod metrics;
mod mist_config;
mod projections;
mod projector;
mod relay;
mod replay;
mod settings_doc;
mod supervisor;
mod topics;

#[derive(Debug, Parser)]
#[command(name = "frameworks", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    logging: logging::LoggingSettings,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Relay(relay::RelayCommand),
    Projector(projector::ProjectorCommand),
    LiveState(live_state::LiveStateCommand),
    Analytics(analytics::AnalyticsCommand),
    Bridge(bridge::BridgeCommand),
    Balancer(balancer::BalancerCommand),
    Edge(edge::EdgeCommand),
    MistConfig(mist_config::MistConfigCommand),
    Replay(replay::ReplayCommand),
    Projections(projections::ProjectionsCommand),
    Topics(topics::TopicsCommand),
    DeadLetters(dead_letters::DeadLettersCommand),
    Db(db::DbCommand),
    /// Print every setting of every subcommand (flag, environment variable,
    /// default) as a Markdown table: `docs/settings.md` is this output.
    Settings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.logging);
    // Failpoints from FAILPOINTS (test builds only; nothing otherwise).
    let _failpoints = fail::FailScenario::setup();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Relay(command) => command.run().await,
            Command::Projector(command) => command.run().await,
            Command::LiveState(command) => command.run().await,
            Command::Analytics(command) => command.run().await,
            Command::Bridge(command) => command.run().await,
            Command::Balancer(command) => command.run().await,
            Command::Edge(command) => command.run().await,
            Command::MistConfig(command) => command.run(),
            Command::Replay(command) => command.run().await,
            Command::Projections(command) => command.run().await,
            Command::Topics(command) => command.run().await,
            Command::DeadLetters(command) => command.run().await,
            Command::Db(command) => command.run().await,
            Command::Settings => {
                use clap::CommandFactory;
                print!("{}", settings_doc::render(&Cli::command()));
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every subcommand's flags, env vars and ids are consistent (clap checks
    /// them lazily, per subcommand, at run time otherwise).
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
