//! `frameworks projector`: materialises the control-plane read models in PostgreSQL.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::kafka::{KafkaSettings, apply_catalogue};
use frameworks_projections::control_plane;
use frameworks_projections::generations::postgres::PostgresGenerations;
use frameworks_projections::postgres::{PostgresProjector, ProjectorSettings};

use crate::generations::follow_live;
use crate::relay::until_shutdown;
use crate::supervisor::Supervisor;
use crate::{dependencies, metrics};

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
        let mut supervisor = Supervisor::new();
        metrics::serve(self.metrics_listen, &mut supervisor).await?;
        let store = EventStore::connect(&self.database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        store.migrate().await.context("migrating the read models")?;
        apply_catalogue(&self.kafka, &self.kafka.catalogue())
            .await
            .context("applying the topic catalogue")?;
        let pool = store.pool().clone();
        dependencies::postgres(&mut supervisor, &pool);
        dependencies::kafka(&mut supervisor, &self.kafka, "frameworks-projector")?;
        dependencies::projecting(&mut supervisor, control_plane::NAME);
        let (kafka, settings) = (self.kafka, self.projector);
        supervisor.restarting("projector", move || {
            let generations = PostgresGenerations::new(pool.clone());
            let (pool, kafka, settings) = (pool.clone(), kafka.clone(), settings.clone());
            async move {
                follow_live(&generations, |generation| {
                    let (pool, settings) = (pool.clone(), settings.clone());
                    let projector =
                        PostgresProjector::for_generation(pool, &kafka, settings, generation);
                    async move {
                        projector
                            .context("joining the Kafka consumer group")?
                            .run(std::future::pending())
                            .await
                            .context("projecting")
                    }
                })
                .await
            }
        });
        supervisor.run(until_shutdown()).await?;
        Ok(ExitCode::SUCCESS)
    }
}
