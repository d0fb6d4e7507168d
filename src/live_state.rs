//! `frameworks live-state`: keeps the live state in Redis from the telemetry topics.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use frameworks_events::kafka::{KafkaSettings, apply_catalogue};
use frameworks_projections::live::{self, LiveStateProjector, LiveStateSettings, connect_redis};

use crate::generations::follow_live;
use crate::relay::until_shutdown;
use crate::supervisor::Supervisor;
use crate::{dependencies, metrics};

/// Apply stream and node telemetry to Redis: live streams, viewer counts, node load.
#[derive(Debug, clap::Args)]
pub struct LiveStateCommand {
    #[command(flatten)]
    kafka: KafkaSettings,

    #[command(flatten)]
    live: LiveStateSettings,

    /// Where Prometheus scrapes this projector's metrics (GET /metrics).
    #[arg(
        long = "metrics-listen",
        env = "FRAMEWORKS_LIVE_METRICS_LISTEN",
        default_value = "127.0.0.1:18059"
    )]
    metrics_listen: SocketAddr,
}

impl LiveStateCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut supervisor = Supervisor::new();
        metrics::serve(self.metrics_listen, &mut supervisor).await?;
        apply_catalogue(&self.kafka, &self.kafka.catalogue())
            .await
            .context("applying the topic catalogue")?;
        let generations = Arc::new(
            LiveStateProjector::generations(&self.live)
                .await
                .context("connecting to Redis (FRAMEWORKS_REDIS_URL)")?,
        );
        let redis = connect_redis(&self.live.redis_url)
            .await
            .context("connecting to Redis (FRAMEWORKS_REDIS_URL)")?;
        dependencies::redis(&mut supervisor, redis);
        dependencies::kafka(&mut supervisor, &self.kafka, "frameworks-live-state")?;
        dependencies::projecting(&mut supervisor, live::NAME);
        let (kafka, settings) = (self.kafka, self.live);
        supervisor.restarting("live-state", move || {
            let generations = Arc::clone(&generations);
            let (kafka, settings) = (kafka.clone(), settings.clone());
            async move {
                follow_live(&*generations, |generation| {
                    let (kafka, settings) = (kafka.clone(), settings.clone());
                    async move {
                        let projector =
                            LiveStateProjector::for_generation(&kafka, settings, generation)
                                .await
                                .context("connecting to Redis and joining the Kafka group")?;
                        projector
                            .run(std::future::pending())
                            .await
                            .context("projecting live state")
                    }
                })
                .await
            }
        });
        supervisor.run(until_shutdown()).await?;
        Ok(ExitCode::SUCCESS)
    }
}
