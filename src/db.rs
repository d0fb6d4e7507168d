//! `frameworks db`: the event store's schema.

use std::process::ExitCode;

use anyhow::Context;
use frameworks_commands::{DatabaseSettings, EventStore};

/// Manage the PostgreSQL schema.
#[derive(Debug, clap::Args)]
pub struct DbCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Apply pending migrations from schemas/sql (idempotent).
    Migrate {
        #[command(flatten)]
        database: DatabaseSettings,
    },
}

impl DbCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Action::Migrate { database } = self.action;
        let store = EventStore::connect(&database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        store.migrate().await.context("applying migrations")?;
        println!("migrations applied");
        Ok(ExitCode::SUCCESS)
    }
}
