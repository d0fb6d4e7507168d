//! `frameworks relay`: publishes the event store's outbox to Kafka.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use frameworks_commands::relay::{OutboxRelay, RelaySettings};
use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::kafka::{EventPublisher, KafkaSettings, apply_catalogue};
use tracing::info;

use crate::supervisor::Supervisor;
use crate::{dependencies, metrics};

/// Publish appended events from the Postgres outbox to Kafka (one leader at a time).
#[derive(Debug, clap::Args)]
pub struct RelayCommand {
    #[command(flatten)]
    database: DatabaseSettings,

    #[command(flatten)]
    kafka: KafkaSettings,

    #[command(flatten)]
    relay: RelaySettings,

    /// Where Prometheus scrapes this relay's metrics (GET /metrics).
    #[arg(
        long = "metrics-listen",
        env = "FRAMEWORKS_RELAY_METRICS_LISTEN",
        default_value = "127.0.0.1:18039"
    )]
    metrics_listen: SocketAddr,
}

impl RelayCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut supervisor = Supervisor::new();
        metrics::serve(self.metrics_listen, &mut supervisor).await?;
        let store = EventStore::connect(&self.database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        store.migrate().await.context("migrating the event store")?;
        apply_catalogue(&self.kafka, &self.kafka.catalogue())
            .await
            .context("applying the topic catalogue")?;
        let publisher = EventPublisher::new(&self.kafka, "frameworks-relay")
            .context("creating the Kafka producer")?;
        dependencies::postgres(&mut supervisor, store.pool());
        dependencies::kafka(&mut supervisor, &self.kafka, "frameworks-relay")?;
        let relay = Arc::new(OutboxRelay::new(store, publisher, self.relay));
        info!(metrics = %self.metrics_listen, "relay started");
        supervisor.restarting("relay", move || {
            let relay = Arc::clone(&relay);
            async move {
                relay
                    .run(std::future::pending())
                    .await
                    .context("relaying the outbox")
            }
        });
        supervisor.run(until_shutdown()).await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// The role future of a role whose work is all in supervised tasks: it
/// ends, cleanly, on SIGINT or SIGTERM.
pub async fn until_shutdown() -> anyhow::Result<()> {
    shutdown_signal().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
