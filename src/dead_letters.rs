//! `frameworks dead-letters`: what consumers could not read, and why.

use std::process::ExitCode;

use anyhow::Context;
use frameworks_events::kafka::{KafkaSettings, read_dead_letters};

/// Inspect the dead-letter topic.
#[derive(Debug, clap::Args)]
pub struct DeadLettersCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List dead letters, oldest first per partition.
    List {
        /// Stop after this many letters.
        #[arg(long, env = "FRAMEWORKS_DEAD_LETTERS_LIMIT", default_value_t = 100,
            value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,

        #[command(flatten)]
        kafka: KafkaSettings,
    },
}

impl DeadLettersCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Action::List { limit, kafka } = self.action;
        let letters = read_dead_letters(&kafka, limit as usize)
            .await
            .context("reading the dead-letter topic")?;
        for letter in &letters {
            println!(
                "{}  {}  {}[{}]@{}  group={}  {}",
                letter.dead_lettered_at.to_rfc3339(),
                letter.reason,
                letter.source_topic,
                letter.source_partition,
                letter.source_offset,
                letter.consumer_group,
                letter.error
            );
        }
        eprintln!("{} dead letter(s)", letters.len());
        Ok(ExitCode::SUCCESS)
    }
}
