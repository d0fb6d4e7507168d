//! `frameworks relay`: publishes the event store's outbox to Kafka.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use frameworks_commands::relay::{OutboxRelay, RelaySettings};
use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::kafka::{EventPublisher, KafkaSettings, apply_catalogue};
use tracing::info;

use crate::metrics;

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
        metrics::serve(self.metrics_listen)?;
        let store = EventStore::connect(&self.database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        store.migrate().await.context("migrating the event store")?;
        apply_catalogue(&self.kafka, &self.kafka.catalogue())
            .await
            .context("applying the topic catalogue")?;
        let publisher = EventPublisher::new(&self.kafka, "frameworks-relay")
            .context("creating the Kafka producer")?;
        let relay = OutboxRelay::new(store, publisher, self.relay);
        info!(metrics = %self.metrics_listen, "relay started");
        relay
            .run(shutdown_signal())
            .await
            .context("relaying the outbox")?;
        Ok(ExitCode::SUCCESS)
    }
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
