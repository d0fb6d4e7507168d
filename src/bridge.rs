//! `frameworks bridge`: the public GraphQL API.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use frameworks_balancer::fleet::SharedState;
use frameworks_balancer::placement::{Placer, RoutingSettings};
use frameworks_bridge::BridgeSettings;
use frameworks_bridge::feed::SubscriptionHub;
use frameworks_bridge::graphiql::Graphiql;
use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::kafka::KafkaSettings;
use frameworks_projections::analytics::ClickHouseSettings;
use frameworks_projections::analytics::reader::AnalyticsReader;
use frameworks_projections::control_plane;
use frameworks_projections::live::{LiveState, LiveStateSettings};
use frameworks_projections::read_your_writes::ProjectionWatcher;

use tracing::info;

use crate::relay::shutdown_signal;
use crate::supervisor::Supervisor;
use crate::{dependencies, metrics};

/// Events the router of subscriptions may fall behind the Kafka reader by
/// before it skips some.
const SUBSCRIPTION_BUFFER: usize = 16_384;
/// The same for one tenant's subscriptions and for one stream's: each
/// channel holds its slots from the start, and a bridge may hold thousands.
const TENANT_SUBSCRIPTION_BUFFER: usize = 1_024;
const STREAM_SUBSCRIPTION_BUFFER: usize = 256;

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
        let mut supervisor = Supervisor::new();
        // The bridge serves /metrics and /health itself, on its own port.
        let metrics = metrics::install(&mut supervisor)?;
        let store = EventStore::connect(&self.database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        store.migrate().await.context("migrating the database")?;
        let (feed, reading) = frameworks_bridge::feed::open(&self.kafka, SUBSCRIPTION_BUFFER)
            .context("reading Kafka for subscriptions (FRAMEWORKS_KAFKA_BROKERS)")?;
        supervisor.essential("kafka-feed", reading);
        let (projections, listening) = ProjectionWatcher::open(store.pool().clone())
            .await
            .context("listening for projection commits")?;
        supervisor.essential("projection-watcher", listening);
        let live = LiveState::connect(&self.live.redis_url, &self.live.key_prefix)
            .await
            .context("connecting to Redis (FRAMEWORKS_REDIS_URL)")?;
        let analytics = AnalyticsReader::open(&self.clickhouse)
            .await
            .context("connecting to ClickHouse (FRAMEWORKS_CLICKHOUSE_URL)")?;
        let shared = SharedState::new(live.connection(), &self.live.key_prefix);
        let placer = Placer::open(store.pool().clone(), live.clone(), shared, &self.routing)
            .context("loading the GeoIP database (FRAMEWORKS_BALANCER_GEOIP_CSV)")?;
        supervisor.restarting("fleet-view", {
            let (placer, pool, live) = (placer.clone(), store.pool().clone(), live.clone());
            move || placer.keep_fresh(pool.clone(), live.clone())
        });
        // Keys, streams, tenants and clusters changed drop the directory's answers.
        supervisor.restarting("directory-invalidation", {
            let (directory, feed, projections) =
                (placer.directory.clone(), feed.clone(), projections.clone());
            move || {
                directory
                    .clone()
                    .follow(feed.subscribe(), projections.clone(), |_| {})
            }
        });
        dependencies::postgres(&mut supervisor, store.pool());
        dependencies::kafka(&mut supervisor, &self.kafka, "frameworks-bridge")?;
        dependencies::redis(&mut supervisor, live.connection());
        dependencies::clickhouse(&mut supervisor, self.clickhouse.client());
        // What a mutation waits on before it answers: the relay publishing
        // the outbox, and the control-plane projection applying it.
        dependencies::outbox(&mut supervisor, store.pool());
        dependencies::control_plane_projection(
            &mut supervisor,
            store.pool(),
            &self.kafka,
            &control_plane::TOPICS,
        )?;
        let subscriptions =
            SubscriptionHub::new(TENANT_SUBSCRIPTION_BUFFER, STREAM_SUBSCRIPTION_BUFFER);
        supervisor.restarting("subscription-routing", {
            let (subscriptions, feed) = (subscriptions.clone(), feed.clone());
            move || subscriptions.clone().route(feed.subscribe())
        });
        let health = supervisor.health();
        let state = frameworks_bridge::state(
            &store,
            &self.bridge,
            subscriptions,
            projections,
            live,
            analytics,
            placer,
        )
        .context("reading the data-key ring (FRAMEWORKS_DATA_KEYS)")?;
        let graphiql = self
            .bridge
            .graphiql
            .then(|| Graphiql::load(self.bridge.graphiql_assets.as_deref()))
            .transpose()
            .context("loading GraphiQL (--graphiql)")?;
        let router = frameworks_bridge::http::router(
            state,
            metrics,
            graphiql,
            usize::try_from(self.bridge.max_body_bytes).unwrap_or(usize::MAX),
        )
        .merge(health.router());
        let listener = tokio::net::TcpListener::bind(self.bridge.listen)
            .await
            .with_context(|| format!("listening on {} (is the port taken?)", self.bridge.listen))?;
        info!(listen = %listener.local_addr()?, "bridge serving /graphql");
        let serving = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal());
        supervisor
            .run(async { serving.await.context("serving HTTP") })
            .await?;
        Ok(ExitCode::SUCCESS)
    }
}
