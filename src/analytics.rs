//! `frameworks analytics`: writes stream and node telemetry into ClickHouse.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use frameworks_events::kafka::{KafkaSettings, apply_catalogue};
use frameworks_projections::analytics::{
    self, AnalyticsProjector, AnalyticsSettings, ClickHouseSettings,
};
use frameworks_projections::generations::clickhouse::ClickHouseGenerations;

use crate::generations::follow_live;
use crate::relay::until_shutdown;
use crate::supervisor::Supervisor;
use crate::{dependencies, metrics};

/// Apply stream and node telemetry to the ClickHouse analytics, exactly once in effect.
#[derive(Debug, clap::Args)]
pub struct AnalyticsCommand {
    #[command(flatten)]
    kafka: KafkaSettings,

    #[command(flatten)]
    clickhouse: ClickHouseSettings,

    #[command(flatten)]
    analytics: AnalyticsSettings,

    /// Where Prometheus scrapes this projector's metrics (GET /metrics).
    #[arg(
        long = "metrics-listen",
        env = "FRAMEWORKS_ANALYTICS_METRICS_LISTEN",
        default_value = "127.0.0.1:18069"
    )]
    metrics_listen: SocketAddr,
}

impl AnalyticsCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut supervisor = Supervisor::new();
        metrics::serve(self.metrics_listen, &mut supervisor).await?;
        apply_catalogue(&self.kafka, &self.kafka.catalogue())
            .await
            .context("applying the topic catalogue")?;
        let generations = Arc::new(
            ClickHouseGenerations::open(&self.clickhouse)
                .await
                .context("connecting to ClickHouse (FRAMEWORKS_CLICKHOUSE_URL)")?,
        );
        dependencies::clickhouse(&mut supervisor, self.clickhouse.client());
        dependencies::kafka(&mut supervisor, &self.kafka, "frameworks-analytics")?;
        dependencies::projecting(&mut supervisor, analytics::NAME);
        let (clickhouse, kafka, settings) = (self.clickhouse, self.kafka, self.analytics);
        supervisor.restarting("analytics", move || {
            let generations = Arc::clone(&generations);
            let (clickhouse, kafka, settings) =
                (clickhouse.clone(), kafka.clone(), settings.clone());
            async move {
                follow_live(&*generations, |generation| {
                    let (clickhouse, kafka, settings) =
                        (clickhouse.clone(), kafka.clone(), settings.clone());
                    async move {
                        let projector = AnalyticsProjector::for_generation(
                            &clickhouse,
                            &kafka,
                            settings,
                            generation,
                        )
                        .await
                        .context("creating the analytics tables and joining the Kafka group")?;
                        projector
                            .run(std::future::pending())
                            .await
                            .context("projecting analytics")
                    }
                })
                .await
            }
        });
        supervisor.run(until_shutdown()).await?;
        Ok(ExitCode::SUCCESS)
    }
}
