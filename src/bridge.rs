//! `frameworks bridge`: the public GraphQL API.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use frameworks_balancer::fleet::SharedState;
use frameworks_balancer::placement::{Placer, RoutingSettings};
use frameworks_bridge::BridgeSettings;
use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::kafka::KafkaSettings;
use frameworks_projections::analytics::ClickHouseSettings;
use frameworks_projections::analytics::reader::AnalyticsReader;
use frameworks_projections::live::{LiveState, LiveStateSettings};
use frameworks_projections::read_your_writes::ProjectionWatcher;
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing::info;

use crate::relay::shutdown_signal;

/// Events a subscription may fall behind by before it skips some.
const SUBSCRIPTION_BUFFER: usize = 16_384;

/// Serve the GraphQL API (POST /graphql, subscriptions at /graphql/ws), sign-up and sign-in (/auth/*), /health and /metrics.
#[derive(Debug, clap::Args)]
pub struct BridgeCommand {
    #[command(flatten)]
    database: DatabaseSettings,

    #[command(flatten)]
    kafka: KafkaSettings,

    #[command(flatten)]
    live: LiveStateSettings,

    #[command(flatten)]
    clickhouse: ClickHouseSettings,

    #[command(flatten)]
    bridge: BridgeSettings,

    /// resolveViewerEndpoint and resolveIngestEndpoint decide as the balancer does.
    #[command(flatten)]
    routing: RoutingSettings,
}

impl BridgeCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        // The bridge serves /metrics itself, on its own port.
        let metrics = PrometheusBuilder::new()
            .install_recorder()
            .context("installing the metrics recorder")?;
        let store = EventStore::connect(&self.database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        store.migrate().await.context("migrating the database")?;
        let feed = frameworks_bridge::feed::start(&self.kafka, SUBSCRIPTION_BUFFER)
            .context("reading Kafka for subscriptions (FRAMEWORKS_KAFKA_BROKERS)")?;
        let projections = ProjectionWatcher::start(store.pool().clone())
            .await
            .context("listening for projection commits")?;
        let live = LiveState::connect(&self.live.redis_url, &self.live.key_prefix)
            .await
            .context("connecting to Redis (FRAMEWORKS_REDIS_URL)")?;
        let analytics = AnalyticsReader::open(&self.clickhouse)
            .await
            .context("connecting to ClickHouse (FRAMEWORKS_CLICKHOUSE_URL)")?;
        let shared = SharedState::new(live.connection(), &self.live.key_prefix);
        let placer = Placer::start(store.pool().clone(), live.clone(), shared, &self.routing)
            .context("loading the GeoIP database (FRAMEWORKS_BALANCER_GEOIP_CSV)")?;
        // Keys, streams, tenants and clusters changed drop the directory's answers.
        tokio::spawn(placer.directory.clone().follow(
            feed.subscribe(),
            projections.clone(),
            |_| {},
        ));
        let state = frameworks_bridge::state(
            &store,
            &self.bridge,
            feed,
            projections,
            live,
            analytics,
            placer,
        )
        .context("reading the data-key ring (FRAMEWORKS_DATA_KEYS)")?;
        let router = frameworks_bridge::http::router(
            state,
            metrics,
            self.bridge.graphiql,
            usize::try_from(self.bridge.max_body_bytes).unwrap_or(usize::MAX),
        );
        let listener = tokio::net::TcpListener::bind(self.bridge.listen)
            .await
            .with_context(|| format!("listening on {} (is the port taken?)", self.bridge.listen))?;
        info!(listen = %listener.local_addr()?, "bridge serving /graphql");
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
        Ok(ExitCode::SUCCESS)
    }
}
