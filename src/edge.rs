//! `frameworks edge`: the daemon beside MistServer on each edge node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use frameworks_edge::answers::{AnswerSettings, Answers, RouteTable};
use frameworks_edge::config_sync;
use frameworks_edge::control::client::{self, ClientSettings, Identity};
use frameworks_edge::control::resolver::BalancerResolver;
use frameworks_edge::forwarder;
use frameworks_edge::host::{MistCommands, MistHost};
use frameworks_edge::journal::Journal;
use frameworks_edge::machine::MachineProbe;
use frameworks_edge::mist::{MistClient, MistSettings};
use frameworks_edge::server::TriggerEndpoint;
use frameworks_edge_protocol::proto::ingress_client::IngressClient;
use tokio::sync::{Mutex, mpsc, watch};
use tonic::transport::Endpoint;
use tracing::info;

use crate::metrics;
use crate::relay::shutdown_signal;
use crate::supervisor::Supervisor;

/// Triggers waiting for the forwarder before live ones are dropped (counted).
const FORWARD_QUEUE: usize = 10_000;

/// Run beside MistServer: receive its triggers, answer the blocking ones,
/// keep its trigger config in sync, and talk to the balancer.
#[derive(Debug, clap::Args)]
pub struct EdgeCommand {
    /// Where MistServer posts its triggers (`POST /trigger/<NAME>`).
    #[arg(
        long = "listen",
        env = "FRAMEWORKS_EDGE_LISTEN",
        default_value = "127.0.0.1:18007"
    )]
    listen: SocketAddr,

    /// The base URL MistServer reaches the trigger endpoint at (default: `http://<listen>`).
    #[arg(long = "trigger-base-url", env = "FRAMEWORKS_EDGE_TRIGGER_BASE_URL")]
    trigger_base_url: Option<String>,

    /// Where Prometheus scrapes this daemon's metrics (GET /metrics).
    #[arg(
        long = "metrics-listen",
        env = "FRAMEWORKS_EDGE_METRICS_LISTEN",
        default_value = "127.0.0.1:18089"
    )]
    metrics_listen: SocketAddr,

    /// MistServer's API, host:port.
    #[arg(
        long = "mist-address",
        env = "FRAMEWORKS_MIST_ADDRESS",
        default_value = "127.0.0.1:4242"
    )]
    mist_address: String,

    #[arg(
        long = "mist-username",
        env = "FRAMEWORKS_MIST_USERNAME",
        default_value = "admin"
    )]
    mist_username: String,

    #[arg(
        long = "mist-password",
        env = "FRAMEWORKS_MIST_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    mist_password: String,

    /// Milliseconds any call to MistServer's API may take.
    #[arg(
        long = "mist-timeout-ms",
        env = "FRAMEWORKS_MIST_TIMEOUT_MS",
        default_value_t = 3_000,
        value_parser = clap::value_parser!(u64).range(10..=120_000)
    )]
    mist_timeout_ms: u64,

    /// Seconds between checks (and repairs) of MistServer's trigger config.
    #[arg(
        long = "config-sync-seconds",
        env = "FRAMEWORKS_EDGE_CONFIG_SYNC_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    config_sync_seconds: u64,

    /// The server id written to MistServer's config.
    #[arg(
        long = "server-id",
        env = "FRAMEWORKS_EDGE_SERVER_ID",
        default_value = "frameworks-edge"
    )]
    server_id: String,

    /// The durable log of accounting triggers.
    #[arg(
        long = "journal-path",
        env = "FRAMEWORKS_EDGE_JOURNAL",
        default_value = "/var/lib/frameworks/edge/journal.redb"
    )]
    journal_path: PathBuf,

    /// Seconds between polls of Mist's streams and clients (stream telemetry).
    #[arg(
        long = "poll-seconds",
        env = "FRAMEWORKS_EDGE_POLL_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    poll_seconds: u64,

    /// Where recordings (DVR) are written, one directory per stream.
    #[arg(
        long = "recordings-dir",
        env = "FRAMEWORKS_EDGE_RECORDINGS_DIR",
        default_value = "/var/lib/frameworks/recordings"
    )]
    recordings_dir: PathBuf,

    /// Where the node id is kept once enrolled.
    #[arg(
        long = "node-id-file",
        env = "FRAMEWORKS_EDGE_NODE_ID_FILE",
        default_value = "/var/lib/frameworks/edge/node-id"
    )]
    node_id_file: PathBuf,

    /// Single-use enrolment token, for the first start only.
    #[arg(
        long = "enrolment-token",
        env = "FRAMEWORKS_EDGE_ENROLMENT_TOKEN",
        hide_env_values = true
    )]
    enrolment_token: Option<String>,

    /// The balancer's gRPC address.
    #[arg(
        long = "balancer",
        env = "FRAMEWORKS_EDGE_BALANCER",
        default_value = "http://127.0.0.1:18029"
    )]
    balancer: String,

    /// Milliseconds MistServer may wait for any blocking answer.
    #[arg(
        long = "answer-budget-ms",
        env = "FRAMEWORKS_EDGE_ANSWER_BUDGET_MS",
        default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..=30_000)
    )]
    answer_budget_ms: u64,

    /// Let viewers of unknown playback ids in when the platform cannot be asked.
    #[arg(
        long = "admit-unknown-viewers",
        env = "FRAMEWORKS_EDGE_ADMIT_UNKNOWN_VIEWERS"
    )]
    admit_unknown_viewers: bool,

    /// Milliseconds between rounds that resend the journal to the ingress.
    #[arg(
        long = "forward-every-ms",
        env = "FRAMEWORKS_EDGE_FORWARD_EVERY_MS",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(10..=600_000)
    )]
    forward_every_ms: u64,

    /// The address viewers and encoders reach this node at.
    #[arg(long = "public-host", env = "FRAMEWORKS_EDGE_PUBLIC_HOST")]
    public_host: String,

    #[arg(
        long = "latitude",
        env = "FRAMEWORKS_EDGE_LATITUDE",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    latitude: f64,

    #[arg(
        long = "longitude",
        env = "FRAMEWORKS_EDGE_LONGITUDE",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    longitude: f64,

    /// The node's uplink in Mbit/s, for bandwidth headroom (0: unknown).
    #[arg(
        long = "bandwidth-limit-mbps",
        env = "FRAMEWORKS_EDGE_BANDWIDTH_LIMIT_MBPS",
        default_value_t = 0
    )]
    bandwidth_limit_mbps: u64,

    /// A stable id of this machine (default: SHA-256 of /etc/machine-id).
    #[arg(
        long = "hardware-fingerprint",
        env = "FRAMEWORKS_EDGE_HARDWARE_FINGERPRINT"
    )]
    hardware_fingerprint: Option<String>,
}

fn machine_fingerprint() -> anyhow::Result<String> {
    let id = std::fs::read_to_string("/etc/machine-id")
        .context("reading /etc/machine-id (or set FRAMEWORKS_EDGE_HARDWARE_FINGERPRINT)")?;
    Ok(frameworks_commands::secrets::sha256_hex(
        id.trim().as_bytes(),
    ))
}

impl EdgeCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut supervisor = Supervisor::new();
        metrics::serve(self.metrics_listen, &mut supervisor).await?;
        if let Some(dir) = self.journal_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let journal = Journal::open(&self.journal_path).context("opening the trigger journal")?;
        let mist_settings = MistSettings {
            address: self.mist_address.clone(),
            username: self.mist_username.clone(),
            password: self.mist_password.clone(),
            timeout: Duration::from_millis(self.mist_timeout_ms),
        };
        let balancer = Endpoint::from_shared(self.balancer.clone())
            .with_context(|| format!("{} is not a balancer address", self.balancer))?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        let (seeds, seen) = watch::channel(None);
        let seeds_for_config = seen.clone();
        let answers = Answers::new(
            BalancerResolver::new(balancer.clone(), seen.clone()),
            AnswerSettings {
                budget: Duration::from_millis(self.answer_budget_ms),
                admit_unknown_viewers: self.admit_unknown_viewers,
            },
        );
        let (forward, forwarded) = mpsc::channel(FORWARD_QUEUE);
        // Held by one attempt of the forwarder at a time, and by the next
        // one once a dead attempt let go of it.
        let forwarded = Arc::new(Mutex::new(forwarded));
        let (ingress, forwarder_journal, every) = (
            IngressClient::new(balancer),
            journal.clone(),
            Duration::from_millis(self.forward_every_ms),
        );
        supervisor.restarting("edge-forwarder", move || {
            forwarder::run(
                ingress.clone(),
                forwarder_journal.clone(),
                seen.clone(),
                Arc::clone(&forwarded),
                every,
            )
        });

        let hostname = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "edge".to_owned());
        let fingerprint = match self.hardware_fingerprint.clone() {
            Some(fingerprint) => fingerprint,
            None => machine_fingerprint()?,
        };
        let routes: Arc<dyn RouteTable> = answers.clone();
        let host = Arc::new(MistHost::new(
            MistCommands::new(
                Arc::new(MistClient::new(mist_settings.clone())),
                Arc::clone(&routes),
                self.recordings_dir.clone(),
            ),
            MachineProbe::default(),
            self.bandwidth_limit_mbps * 1_000_000,
        ));
        let settings = ClientSettings {
            balancer: self.balancer.clone(),
            identity: Identity {
                hardware_fingerprint: fingerprint,
                hostname,
                edge_version: env!("CARGO_PKG_VERSION").to_owned(),
                public_host: self.public_host.clone(),
                latitude: self.latitude,
                longitude: self.longitude,
            },
            enrolment_token: self.enrolment_token.clone(),
            node_id_file: self.node_id_file.clone(),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            poll_every: Duration::from_secs(self.poll_seconds),
        };
        supervisor.restarting("edge-control", move || {
            client::run(
                settings.clone(),
                Arc::clone(&host),
                Arc::clone(&routes),
                seeds.clone(),
            )
        });

        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("listening on {} (is the port taken?)", self.listen))?;
        let base = self
            .trigger_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        let (server_id, every) = (
            self.server_id.clone(),
            Duration::from_secs(self.config_sync_seconds),
        );
        // Mist is checked before its config is touched; one whose trigger
        // set this daemon does not know ends the daemon.
        supervisor.essential("mist-config-sync", async move {
            let mist = MistClient::new(mist_settings);
            let version = config_sync::wait_for_mist(&mist, Duration::from_secs(30))
                .await
                .context("checking MistServer")?;
            info!(%version, "MistServer answers and offers every trigger the edge registers");
            let desired = config_sync::desired(&base);
            config_sync::keep_in_sync(&mist, &server_id, &desired, seeds_for_config, every).await;
            anyhow::Ok(())
        });
        let endpoint = Arc::new(TriggerEndpoint {
            answers,
            journal,
            forward,
            sessions: Default::default(),
        });
        info!(listen = %listener.local_addr()?, balancer = %self.balancer, "edge daemon taking MistServer's triggers");
        let serve = frameworks_edge::server::serve(listener, endpoint.router(), shutdown_signal());
        supervisor
            .run(async { serve.await.context("serving the trigger endpoint") })
            .await?;
        Ok(ExitCode::SUCCESS)
    }
}
