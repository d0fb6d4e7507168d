//! `frameworks balancer`: the edges' control server and ingress (gRPC), and
//! viewer and encoder routing (HTTP). Run two or more for availability:
//! they share liveness and charges through Redis, and one leader runs the
//! singleton jobs.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use frameworks_balancer::control::{ControlSettings, EdgeControlService};
use frameworks_balancer::fleet::SharedState;
use frameworks_balancer::leader::{Leadership, singleton_jobs};
use frameworks_balancer::placement::{Placer, RoutingSettings};
use frameworks_balancer::play;
use frameworks_commands::telemetry::TelemetryPublisher;
use frameworks_commands::{CommandBus, DatabaseSettings, EventStore, SecretBox};
use frameworks_edge_protocol::proto::edge_control_server::EdgeControlServer;
use frameworks_edge_protocol::proto::ingress_server::IngressServer;
use frameworks_events::Topic;
use frameworks_events::kafka::{EventFeed, EventPublisher, KafkaSettings};
use frameworks_projections::live::{LiveState, LiveStateSettings};
use frameworks_projections::read_your_writes::ProjectionWatcher;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;
use uuid::Uuid;

use crate::relay::shutdown_signal;
use crate::supervisor::Supervisor;
use crate::{dependencies, metrics};

/// Largest gRPC message an edge may send (a full trigger batch fits easily).
const MAX_GRPC_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long a stopping balancer lets requests finish before it cuts the
/// edges' control streams (which never finish on their own).
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);
/// Control-plane events the directory may fall behind by before it drops its cache.
const INVALIDATION_BUFFER: usize = 4_096;

/// Serve edge daemons (gRPC: control stream and ingress) and route viewers
/// and encoders (HTTP: /play, /ingest, Mist's /{stream}).
#[derive(Debug, clap::Args)]
pub struct BalancerCommand {
    #[command(flatten)]
    database: DatabaseSettings,

    #[command(flatten)]
    kafka: KafkaSettings,

    #[command(flatten)]
    live: LiveStateSettings,

    #[command(flatten)]
    routing: RoutingSettings,

    /// The data-key ring (as the bridge's): the write side needs it to enrol nodes.
    #[arg(
        long = "data-keys",
        env = "FRAMEWORKS_DATA_KEYS",
        hide_env_values = true
    )]
    data_keys: String,

    /// Where edge daemons connect (gRPC).
    #[arg(
        long = "grpc-listen",
        env = "FRAMEWORKS_BALANCER_GRPC_LISTEN",
        default_value = "127.0.0.1:18029"
    )]
    grpc_listen: SocketAddr,

    /// Where viewers and encoders ask for an edge (HTTP).
    #[arg(
        long = "http-listen",
        env = "FRAMEWORKS_BALANCER_HTTP_LISTEN",
        default_value = "127.0.0.1:18008"
    )]
    http_listen: SocketAddr,

    /// Where Prometheus scrapes this balancer's metrics (GET /metrics).
    #[arg(
        long = "metrics-listen",
        env = "FRAMEWORKS_BALANCER_METRICS_LISTEN",
        default_value = "127.0.0.1:18079"
    )]
    metrics_listen: SocketAddr,

    /// Seconds between the heartbeats edges are told to send.
    #[arg(
        long = "heartbeat-seconds",
        env = "FRAMEWORKS_BALANCER_HEARTBEAT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=300)
    )]
    heartbeat_seconds: u32,

    /// Seconds a command to an edge waits for its result.
    #[arg(
        long = "command-timeout-seconds",
        env = "FRAMEWORKS_BALANCER_COMMAND_TIMEOUT_SECONDS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    command_timeout_seconds: u64,

    /// Seconds the leadership lease lasts without renewal.
    #[arg(
        long = "leader-ttl-seconds",
        env = "FRAMEWORKS_BALANCER_LEADER_TTL_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    leader_ttl_seconds: u64,

    /// This instance's name in the leadership lease (default: host name and a random suffix).
    #[arg(long = "instance-id", env = "FRAMEWORKS_BALANCER_INSTANCE_ID")]
    instance_id: Option<String>,
}

impl BalancerCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut supervisor = Supervisor::new();
        metrics::serve(self.metrics_listen, &mut supervisor).await?;
        let secrets = SecretBox::from_spec(&self.data_keys)
            .context("reading the data-key ring (FRAMEWORKS_DATA_KEYS)")?;
        let store = EventStore::connect(&self.database)
            .await
            .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
        let pool = store.pool().clone();
        let bus = CommandBus::new(store, secrets);
        let publisher = EventPublisher::new(&self.kafka, "frameworks-balancer")
            .context("connecting to Kafka (FRAMEWORKS_KAFKA_BROKERS)")?;
        let live = LiveState::connect(&self.live.redis_url, &self.live.key_prefix)
            .await
            .context("connecting to Redis (FRAMEWORKS_REDIS_URL)")?;
        dependencies::postgres(&mut supervisor, &pool);
        dependencies::kafka(&mut supervisor, &self.kafka, "frameworks-balancer")?;
        dependencies::redis(&mut supervisor, live.connection());
        let shared = SharedState::new(live.connection(), &self.live.key_prefix);
        let placer = Placer::open(pool.clone(), live.clone(), shared.clone(), &self.routing)
            .context("loading the GeoIP database (FRAMEWORKS_BALANCER_GEOIP_CSV)")?;
        supervisor.restarting("fleet-view", {
            let (placer, pool, live) = (placer.clone(), pool.clone(), live.clone());
            move || placer.keep_fresh(pool.clone(), live.clone())
        });
        let service = EdgeControlService::new(
            bus,
            TelemetryPublisher::new(publisher),
            placer.directory.clone(),
            shared.clone(),
            ControlSettings {
                heartbeat_seconds: self.heartbeat_seconds,
                command_timeout: Duration::from_secs(self.command_timeout_seconds),
            },
        );
        let (feed, reading) = EventFeed::open(
            &self.kafka,
            "frameworks-balancer-directory",
            &[Topic::Tenants, Topic::Streams, Topic::Infrastructure],
            INVALIDATION_BUFFER,
        )
        .context("reading the control-plane topics from Kafka")?;
        supervisor.essential("kafka-feed", reading);
        let (watcher, listening) = ProjectionWatcher::open(pool.clone())
            .await
            .context("listening for projection commits")?;
        supervisor.essential("projection-watcher", listening);
        supervisor.restarting("directory-invalidation", {
            let service = service.clone();
            move || {
                service
                    .clone()
                    .push_invalidations(feed.clone(), watcher.clone())
            }
        });

        let instance = self.instance_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), Uuid::now_v7().simple())
        });
        let leadership = Leadership::new(
            shared.clone(),
            instance.clone(),
            Duration::from_secs(self.leader_ttl_seconds),
        );
        supervisor.restarting("singleton-jobs", {
            let (leadership, shared, fleet) = (
                leadership.clone(),
                shared.clone(),
                self.routing.fleet.clone(),
            );
            move || {
                singleton_jobs(
                    leadership.watch(),
                    shared.clone(),
                    fleet.clone(),
                    Duration::from_secs(5),
                )
            }
        });
        supervisor.restarting("leadership", {
            let leadership = leadership.clone();
            move || leadership.clone().run()
        });

        let http = tokio::net::TcpListener::bind(self.http_listen)
            .await
            .with_context(|| format!("listening on {} (is the port taken?)", self.http_listen))?;
        let grpc = tokio::net::TcpListener::bind(self.grpc_listen)
            .await
            .with_context(|| format!("listening on {} (is the port taken?)", self.grpc_listen))?;
        info!(
            grpc = %grpc.local_addr()?,
            http = %http.local_addr()?,
            %instance,
            "balancer serving edges and viewers"
        );
        let http_server = axum::serve(
            http,
            play::router(placer)
                .merge(supervisor.health().router())
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal());
        let grpc_server = tonic::transport::Server::builder()
            .add_service(
                EdgeControlServer::new(service.clone())
                    .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
            )
            .add_service(
                IngressServer::new(service).max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown_signal());
        let servers = async { tokio::join!(http_server, grpc_server) };
        // Edges hold their control streams open for good: past the drain
        // time they are cut, and reconnect (to another instance, if any).
        let drained = async {
            shutdown_signal().await;
            tokio::time::sleep(SHUTDOWN_DRAIN).await;
        };
        let mut outcome = None;
        let serving = async {
            outcome = tokio::select! {
                results = servers => Some(results),
                () = drained => None,
            };
            Ok(())
        };
        let supervised = supervisor.run(serving).await;
        // Hand leadership over now rather than after the TTL.
        let _ = leadership.resign().await;
        supervised?;
        match outcome {
            Some((http_result, grpc_result)) => {
                http_result.context("serving HTTP")?;
                grpc_result.context("serving gRPC")?;
            }
            None => info!(
                drain = ?SHUTDOWN_DRAIN,
                "edge streams still open after the drain time; closing them"
            ),
        }
        Ok(ExitCode::SUCCESS)
    }
}
