//! `frameworks projector`: materialises the control-plane read models in PostgreSQL.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::kafka::{KafkaSettings, apply_catalogue};
use frameworks_projections::generations::postgres::PostgresGenerations;
use frameworks_projections::postgres::{PostgresProjector, ProjectorSettings};

use crate::generations::follow_live;
use crate::metrics;

/// Apply the control-plane topics to the PostgreSQL read models, exactly once in effect.
#[derive(Debug, clap::Args)]
pub struct ProjectorCommand {
    #[command(flatten)]
    database: DatabaseSettings,

    #[command(flatten)]
    kafka: KafkaSettings,

    #[command(flatten)]
    projector: ProjectorSettings,

    /// Where Prometheus scrapes this projector's metrics (GET /metrics).
    #[arg(
        long = "metrics-listen",
        env = "FRAMEWORKS_PROJECTOR_METRICS_LISTEN",
        default_value = "127.0.0.1:18049"
    )]
    metrics_listen: SocketAddr,
}

impl ProjectorCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        metrics::serve(self.metrics_listen)?;
        let store = EventStore::connect(&self.database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        store.migrate().await.context("migrating the read models")?;
        apply_catalogue(&self.kafka, &self.kafka.catalogue())
            .await
            .context("applying the topic catalogue")?;
        let generations = PostgresGenerations::new(store.pool().clone());
        follow_live(&generations, |generation| {
            let pool = store.pool().clone();
            let (kafka, settings) = (&self.kafka, self.projector.clone());
            async move {
                let projector =
                    PostgresProjector::for_generation(pool, kafka, settings, generation)
                        .context("joining the Kafka consumer group")?;
                projector
                    .run(std::future::pending())
                    .await
                    .context("projecting")
            }
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    }
}
