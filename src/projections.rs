//! `frameworks projections`: what the read side is doing.

use std::process::ExitCode;

use anyhow::Context;
use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::kafka::KafkaSettings;
use frameworks_projections::analytics::{self, AnalyticsSettings, ClickHouseSettings};
use frameworks_projections::control_plane;
use frameworks_projections::generations::clickhouse::ClickHouseGenerations;
use frameworks_projections::generations::postgres::PostgresGenerations;
use frameworks_projections::live::{self, LiveStateProjector, LiveStateSettings};
use frameworks_projections::postgres::ProjectorSettings;
use frameworks_projections::status::{ProjectionStatus, status};

/// Inspect the projections.
#[derive(Debug, clap::Args)]
pub struct ProjectionsCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Each projection's lag per partition and its dead-letter count.
    Status {
        #[command(flatten)]
        database: DatabaseSettings,
        #[command(flatten)]
        kafka: KafkaSettings,
        #[command(flatten)]
        projector: ProjectorSettings,
        #[command(flatten)]
        live: LiveStateSettings,
        #[command(flatten)]
        clickhouse: ClickHouseSettings,
        #[command(flatten)]
        analytics: AnalyticsSettings,
        /// Most dead letters read to count each projection's.
        #[arg(long, env = "FRAMEWORKS_STATUS_DEAD_LETTER_SCAN", default_value_t = 100_000,
            value_parser = clap::value_parser!(u32).range(1..))]
        dead_letter_scan: u32,
    },
}

impl ProjectionsCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Action::Status {
            database,
            kafka,
            projector,
            live,
            clickhouse,
            analytics,
            dead_letter_scan,
        } = self.action;
        let scan = dead_letter_scan as usize;
        let store = EventStore::connect(&database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        let control_plane = status(
            &PostgresGenerations::new(store.pool().clone()),
            &control_plane::TOPICS,
            &kafka,
            &projector.group_id,
            scan,
        )
        .await
        .context("reading the control-plane projection's status")?;
        let redis = LiveStateProjector::generations(&live)
            .await
            .context("connecting to Redis (FRAMEWORKS_REDIS_URL)")?;
        let live_state = status(&redis, &live::TOPICS, &kafka, &live.group_id, scan)
            .await
            .context("reading the live-state projection's status")?;
        let clickhouse = ClickHouseGenerations::open(&clickhouse)
            .await
            .context("connecting to ClickHouse (FRAMEWORKS_CLICKHOUSE_URL)")?;
        let analytics = status(
            &clickhouse,
            &analytics::TOPICS,
            &kafka,
            &analytics.group_id,
            scan,
        )
        .await
        .context("reading the analytics projection's status")?;
        for status in control_plane.iter().chain(&live_state).chain(&analytics) {
            print_status(status);
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_status(status: &ProjectionStatus) {
    println!(
        "{} generation {} ({}, group {}): lag {} record(s), {} dead letter(s)",
        status.projection,
        status.generation,
        status.state,
        status.group,
        status.total_lag(),
        status.dead_letters
    );
    println!(
        "  {:<40} {:>9} {:>12} {:>12} {:>8}",
        "topic", "partition", "applied", "end", "lag"
    );
    for p in &status.partitions {
        println!(
            "  {:<40} {:>9} {:>12} {:>12} {:>8}",
            p.topic,
            p.partition,
            p.applied,
            p.end,
            p.lag()
        );
    }
}
