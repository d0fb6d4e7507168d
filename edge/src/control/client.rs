//! The edge daemon's side of the control stream: connect to the balancer,
//! register (with the enrolment token the first time, by node id after),
//! take the config seed, heartbeat, and carry out the balancer's commands
//! on MistServer. A lost stream is reopened with exponential backoff and the
//! daemon registers again, so the balancer resyncs it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{info, warn};

use crate::answers::RouteTable;
use frameworks_edge_protocol::proto::edge_control_client::EdgeControlClient;
use frameworks_edge_protocol::proto::{
    CommandResult, ConfigSeed, EdgeMessage, Heartbeat, Register, StreamSamples, balancer_message,
    edge_command, edge_message, register,
};

/// Who this machine is, as it registers.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hardware_fingerprint: String,
    pub hostname: String,
    pub edge_version: String,
    pub public_host: String,
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The balancer's gRPC address, `http://host:port`.
    pub balancer: String,
    pub identity: Identity,
    /// Spent on the first registration; afterwards the node id is used.
    pub enrolment_token: Option<String>,
    /// Where the node id is kept between runs.
    pub node_id_file: PathBuf,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How often Mist's streams and clients are polled into stream telemetry.
    pub poll_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("connecting to the balancer: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("the balancer refused: {0}")]
    Refused(#[from] tonic::Status),
    #[error("the balancer broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("keeping the node id in {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error("the stream to the balancer closed")]
    Closed,
}

/// What the control stream needs from the node: its load, its streams,
/// and its hands.
pub trait EdgeHost: Send + Sync + 'static {
    fn heartbeat(&self) -> impl std::future::Future<Output = Heartbeat> + Send;
    fn execute(
        &self,
        action: edge_command::Action,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// The streams Mist serves now; `None` when they cannot be read.
    fn sample(&self) -> impl std::future::Future<Output = Option<StreamSamples>> + Send {
        async { None }
    }
}

fn read_node_id(settings: &ClientSettings) -> Result<Option<String>, ControlError> {
    match std::fs::read_to_string(&settings.node_id_file) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|id| !id.is_empty())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ControlError::State {
            path: settings.node_id_file.display().to_string(),
            source,
        }),
    }
}

/// Writes the node id durably: to a temporary file, fsynced, then renamed.
fn write_node_id(settings: &ClientSettings, node_id: &str) -> Result<(), ControlError> {
    let state = |source| ControlError::State {
        path: settings.node_id_file.display().to_string(),
        source,
    };
    let temporary = settings.node_id_file.with_extension("tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary).map_err(state)?;
        file.write_all(node_id.as_bytes()).map_err(state)?;
        file.sync_all().map_err(state)?;
    }
    std::fs::rename(&temporary, &settings.node_id_file).map_err(state)
}

/// Keeps the control stream up for as long as the task runs; each seed the
/// balancer sends is published on `seeds`, and its routes (and every route
/// update after it) go to `routes`.
pub async fn run<H: EdgeHost>(
    settings: ClientSettings,
    host: Arc<H>,
    routes: Arc<dyn RouteTable>,
    seeds: watch::Sender<Option<ConfigSeed>>,
) {
    let mut backoff = settings.backoff_initial;
    loop {
        let ended = session(&settings, &host, routes.as_ref(), &seeds).await;
        gauge!("frameworks_edge_control_connected").set(0.0);
        match ended {
            Ok(()) => {}
            Err(error) => {
                counter!("frameworks_edge_control_disconnects_total").increment(1);
                warn!(%error, retry_in = ?backoff, "control stream to the balancer lost");
            }
        }
        // A session that got as far as a seed starts the backoff over.
        if seeds.borrow().is_some() {
            backoff = settings.backoff_initial;
        }
        seeds.send_replace(None);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

async fn session<H: EdgeHost>(
    settings: &ClientSettings,
    host: &Arc<H>,
    routes: &dyn RouteTable,
    seeds: &watch::Sender<Option<ConfigSeed>>,
) -> Result<(), ControlError> {
    let channel = Endpoint::from_shared(settings.balancer.clone())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut client = EdgeControlClient::new(channel);
    let credential = match read_node_id(settings)? {
        Some(node_id) => Some(register::Credential::NodeId(node_id)),
        None => settings
            .enrolment_token
            .clone()
            .map(register::Credential::EnrolmentToken),
    };
    let identity = &settings.identity;
    let (outbox, messages) = mpsc::channel(64);
    let send = |kind| EdgeMessage { kind: Some(kind) };
    outbox
        .send(send(edge_message::Kind::Register(Register {
            credential,
            hardware_fingerprint: identity.hardware_fingerprint.clone(),
            hostname: identity.hostname.clone(),
            edge_version: identity.edge_version.clone(),
            public_host: identity.public_host.clone(),
            latitude: identity.latitude,
            longitude: identity.longitude,
        })))
        .await
        .map_err(|_| ControlError::Closed)?;
    let mut inbound = client
        .open(ReceiverStream::new(messages))
        .await?
        .into_inner();
    let seed = match inbound.message().await?.and_then(|m| m.kind) {
        Some(balancer_message::Kind::Seed(seed)) => seed,
        _ => {
            return Err(ControlError::Protocol(
                "the first message was not a config seed",
            ));
        }
    };
    write_node_id(settings, &seed.node_id)?;
    info!(node = %seed.node_id, cluster = %seed.cluster_id, "registered with the balancer");
    let every = Duration::from_secs(u64::from(seed.heartbeat_seconds.max(1)));
    routes.seed(&seed.routes);
    seeds.send_replace(Some(seed));
    // Up once the seed's routes are in place: blocking triggers are
    // answered with what the balancer knows from here on.
    gauge!("frameworks_edge_control_connected").set(1.0);
    let mut ticks = tokio::time::interval(every);
    let mut polls = tokio::time::interval(settings.poll_every);
    polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let beat = host.heartbeat().await;
                outbox
                    .send(send(edge_message::Kind::Heartbeat(beat)))
                    .await
                    .map_err(|_| ControlError::Closed)?;
            }
            _ = polls.tick() => {
                if let Some(samples) = host.sample().await {
                    outbox
                        .send(send(edge_message::Kind::Samples(samples)))
                        .await
                        .map_err(|_| ControlError::Closed)?;
                }
            }
            message = inbound.message() => {
                let Some(message) = message? else {
                    return Err(ControlError::Closed);
                };
                let command = match message.kind {
                    Some(balancer_message::Kind::Command(command)) => command,
                    Some(balancer_message::Kind::Routes(update)) => {
                        routes.apply(&update);
                        continue;
                    }
                    Some(balancer_message::Kind::Seed(_)) | None => continue,
                };
                let (host, outbox) = (Arc::clone(host), outbox.clone());
                tokio::spawn(async move {
                    let outcome = match command.action {
                        Some(action) => host.execute(action).await,
                        None => Err("the command names no action".to_owned()),
                    };
                    let result = CommandResult {
                        command_id: command.command_id,
                        ok: outcome.is_ok(),
                        error: outcome.err().unwrap_or_default(),
                    };
                    let _ = outbox.send(send(edge_message::Kind::Result(result))).await;
                });
            }
        }
    }
}
