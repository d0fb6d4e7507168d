//! The edge control server: one bidirectional stream per connected edge
//! daemon (`frameworks.edge.v1.EdgeControl/Open`).
//!
//! The first message registers the daemon: a new node with a single-use
//! enrolment token (spent through the write side, so `node.enrolled` is
//! recorded), a known one by its node id or hardware fingerprint (the
//! fingerprint must match: `node.reenrolled`). The balancer answers with
//! the node's config seed, with the routes its blocking answers need.
//! Heartbeats then become node telemetry in Kafka, commands for the node go
//! down the same stream (each answered by a result the caller awaits), and
//! so do route changes: when an event changes what the directory answered,
//! every edge is told to forget it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use frameworks_commands::aggregates::infrastructure::{
    Node, NodeCommand, NodeIdentity, enrol_node, node_by_fingerprint,
};
use frameworks_commands::secrets::{new_token, sha256};
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
use frameworks_commands::{CommandBus, CommandContext, ExecuteError};
use frameworks_edge_protocol::proto::edge_control_server::EdgeControl;
use frameworks_edge_protocol::proto::{
    BalancerMessage, CommandResult, ConfigSeed, EdgeCommand, EdgeMessage, Heartbeat, Register,
    RouteUpdate, StreamSamples, StreamTemplate, balancer_message, edge_command, edge_message,
    register,
};
use frameworks_events::EventPayload;
use frameworks_events::kafka::EventFeed;
use frameworks_projections::read_your_writes::ProjectionWatcher;
use metrics::{counter, gauge};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};
use uuid::Uuid;

use crate::directory::{Directory, STREAM_TEMPLATE, stream_of};
use crate::fleet::SharedState;

/// Session tokens: `fws_` and 32 random bytes.
const SESSION_TOKEN_PREFIX: &str = "fws_";
/// How long a daemon has to register after opening its stream.
const REGISTER_WITHIN: Duration = Duration::from_secs(10);
/// Messages queued for one edge before a sender waits.
const OUTBOX: usize = 64;

/// The control server's settings.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Seconds between heartbeats edges are told to send.
    pub heartbeat_seconds: u32,
    /// How long a command waits for the edge's result.
    pub command_timeout: Duration,
}

/// A connected edge.
#[derive(Debug)]
struct Session {
    /// Distinguishes this stream from a later one of the same node.
    stream: Uuid,
    tenant: Option<Uuid>,
    /// SHA-256 of the token ingress submissions must present.
    token_hash: [u8; 32],
    outbox: mpsc::Sender<Result<BalancerMessage, Status>>,
    last_heartbeat: Instant,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<CommandResult>>>>;

/// The edge control service; clone it into the gRPC server.
#[derive(Clone)]
pub struct EdgeControlService {
    pub(crate) bus: CommandBus,
    pub(crate) telemetry: Arc<TelemetryPublisher>,
    pub(crate) directory: Directory,
    pub(crate) shared: SharedState,
    settings: ControlSettings,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    pending: Pending,
}

impl std::fmt::Debug for EdgeControlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeControlService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why a command did not reach its end.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandFailure {
    #[error("node {0} is not connected")]
    NotConnected(String),
    #[error("the edge did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the edge's stream closed before it answered")]
    Dropped,
    #[error("the edge could not do it: {0}")]
    Failed(String),
}

/// A refused command with the gRPC status the error table gives it
/// ([`frameworks_commands::RefusalCode`]); a failure of the write side is
/// UNAVAILABLE (the edge retries).
fn refusal(error: ExecuteError) -> Status {
    match error {
        ExecuteError::Rejected(refusal) => Status::new(
            tonic::Code::from_i32(refusal.code().grpc_code),
            refusal.to_string(),
        ),
        other => {
            warn!(error = %other, "enrolment failed");
            Status::unavailable("the platform could not record the enrolment; retry")
        }
    }
}

impl EdgeControlService {
    pub fn new(
        bus: CommandBus,
        telemetry: TelemetryPublisher,
        directory: Directory,
        shared: SharedState,
        settings: ControlSettings,
    ) -> Self {
        Self {
            bus,
            telemetry: Arc::new(telemetry),
            directory,
            shared,
            settings,
            sessions: Arc::default(),
            pending: Arc::default(),
        }
    }

    /// Node ids of the edges connected now.
    pub fn connected(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.lock().keys().cloned().collect();
        nodes.sort();
        nodes
    }

    /// When each connected edge last sent a heartbeat.
    pub fn last_heartbeat(&self, node: &str) -> Option<Instant> {
        self.lock().get(node).map(|s| s.last_heartbeat)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tenant of a node that holds an open control stream and presents
    /// that stream's session token; ingress calls need both.
    pub(crate) fn authenticate(&self, node: &str, token: &str) -> Result<Option<Uuid>, Status> {
        let presented = sha256(token.as_bytes());
        self.lock()
            .get(node)
            .filter(|s| s.token_hash == presented)
            .map(|s| s.tenant)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "register on the control stream and present its session token",
                )
            })
    }

    /// Sends a route change to every connected edge.
    fn broadcast(&self, update: &RouteUpdate) {
        let message = BalancerMessage {
            kind: Some(balancer_message::Kind::Routes(update.clone())),
        };
        for (node, session) in self.lock().iter() {
            // A full outbox is an edge far behind; it resyncs when it reconnects.
            if session.outbox.try_send(Ok(message.clone())).is_err() {
                counter!("frameworks_balancer_route_updates_dropped_total").increment(1);
                warn!(node, "a route update could not be queued for an edge");
            }
        }
    }

    /// Follows the control-plane events for as long as the task runs: each
    /// one that changes a cached answer is forgotten here and on every edge.
    pub async fn push_invalidations(self, feed: EventFeed, watcher: ProjectionWatcher) {
        let directory = self.directory.clone();
        directory
            .follow(feed.subscribe(), watcher, |forgotten| {
                self.broadcast(&forgotten.into_update());
            })
            .await;
    }

    /// Sends `action` to the node's edge and waits for its result.
    pub async fn command(
        &self,
        node: &str,
        action: edge_command::Action,
    ) -> Result<(), CommandFailure> {
        let outbox = self
            .lock()
            .get(node)
            .map(|s| s.outbox.clone())
            .ok_or_else(|| CommandFailure::NotConnected(node.to_owned()))?;
        let command_id = Uuid::now_v7().to_string();
        let (done, result) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(command_id.clone(), done);
        let message = BalancerMessage {
            kind: Some(balancer_message::Kind::Command(EdgeCommand {
                command_id: command_id.clone(),
                action: Some(action),
            })),
        };
        let forget = || {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&command_id);
        };
        if outbox.send(Ok(message)).await.is_err() {
            forget();
            return Err(CommandFailure::NotConnected(node.to_owned()));
        }
        let timeout = self.settings.command_timeout;
        match tokio::time::timeout(timeout, result).await {
            Ok(Ok(result)) if result.ok => Ok(()),
            Ok(Ok(result)) => Err(CommandFailure::Failed(result.error)),
            Ok(Err(_)) => Err(CommandFailure::Dropped),
            Err(_) => {
                forget();
                Err(CommandFailure::Timeout(timeout))
            }
        }
    }

    /// Enrols or re-enrols the registering node; its id, cluster and tenant.
    async fn register(&self, register: Register) -> Result<(String, String, Option<Uuid>), Status> {
        let identity = NodeIdentity {
            hardware_fingerprint: register.hardware_fingerprint,
            hostname: register.hostname,
            edge_version: register.edge_version,
            public_host: register.public_host,
            latitude: register.latitude,
            longitude: register.longitude,
        };
        let ctx = CommandContext::anonymous(format!("edge:{}", identity.hardware_fingerprint));
        let node_id = match register.credential {
            Some(register::Credential::EnrolmentToken(token)) => {
                let enrolled = enrol_node(&self.bus, &token, &identity, &ctx)
                    .await
                    .map_err(refusal)?;
                counter!("frameworks_balancer_enrolments_total", "kind" => "token").increment(1);
                info!(node = %enrolled.node_id, cluster = %enrolled.cluster_id, "node enrolled");
                enrolled.node_id
            }
            Some(register::Credential::NodeId(node_id)) => {
                self.reenrol(&node_id, identity, &ctx).await?;
                node_id
            }
            None => {
                let known = node_by_fingerprint(&self.bus, &identity.hardware_fingerprint)
                    .await
                    .map_err(refusal)?
                    .ok_or_else(|| {
                        Status::unauthenticated(
                            "unknown machine: register with an enrolment token first",
                        )
                    })?;
                self.reenrol(&known, identity, &ctx).await?;
                known
            }
        };
        let (node, _) = self
            .bus
            .load::<Node>(&node_id)
            .await
            .map_err(|e| refusal(e.into()))?;
        Ok((node_id, node.cluster_id().to_owned(), node.tenant()))
    }

    async fn reenrol(
        &self,
        node_id: &str,
        identity: NodeIdentity,
        ctx: &CommandContext,
    ) -> Result<(), Status> {
        self.bus
            .execute::<Node>(node_id, &NodeCommand::Reenrol(identity), ctx, None)
            .await
            .map_err(refusal)?;
        counter!("frameworks_balancer_enrolments_total", "kind" => "known").increment(1);
        Ok(())
    }

    /// A heartbeat: the node heard from, and its telemetry into Kafka.
    async fn heartbeat(&self, node: &str, tenant: Option<Uuid>, beat: Heartbeat) {
        // Heard is when the heartbeat arrived, whatever becomes of its
        // telemetry: recorded first, the edge is never seen with its new
        // load in the live state and not yet as live, and a slow or
        // unreachable Kafka does not make a healthy edge look gone.
        if let Some(session) = self.lock().get_mut(node) {
            session.last_heartbeat = Instant::now();
        }
        // Every balancer instance routes by when the node was last heard from.
        if let Err(error) = self.shared.heard(node).await {
            counter!("frameworks_balancer_liveness_errors_total").increment(1);
            warn!(%error, node, "a heartbeat could not be recorded in the shared state");
        }
        let fact = |payload: EventPayload| TelemetryCommand {
            subject_id: node.to_owned(),
            tenant_id: tenant,
            occurred_at: Utc::now(),
            payload,
            event_id: None,
            correlation_id: Uuid::now_v7(),
        };
        let facts: Vec<TelemetryCommand> = [
            beat.node.map(EventPayload::from),
            beat.metrics.map(EventPayload::from),
        ]
        .into_iter()
        .flatten()
        .map(fact)
        .collect();
        if facts.is_empty() {
            counter!("frameworks_balancer_protocol_errors_total").increment(1);
            warn!(node, "an empty heartbeat; ignored");
        }
        for verdict in self.telemetry.publish_batch(&facts).await {
            if let Err(error) = verdict {
                counter!("frameworks_balancer_telemetry_errors_total").increment(1);
                warn!(%error, node, "a heartbeat could not be published");
            }
        }
    }

    /// Stream telemetry from an edge's poll of Mist: a `stream.sampled`
    /// for each platform stream it serves, with the stream's tenant.
    async fn samples(&self, node: &str, samples: StreamSamples) {
        let sampled_at = Utc::now();
        let mut facts = Vec::with_capacity(samples.streams.len());
        for mut sample in samples.streams {
            // Streams outside the platform (an operator's own) are not reported.
            let Some(stream) = stream_of(&sample.internal_name) else {
                continue;
            };
            let owner = match self.directory.owner(stream).await {
                Ok(Some(owner)) if !owner.deleted => owner,
                Ok(_) => continue,
                Err(error) => {
                    counter!("frameworks_balancer_telemetry_errors_total").increment(1);
                    warn!(%error, node, %stream, "a stream sample's owner could not be read");
                    continue;
                }
            };
            node.clone_into(&mut sample.node_id);
            facts.push(TelemetryCommand {
                subject_id: stream.to_string(),
                tenant_id: owner.tenant,
                occurred_at: sampled_at,
                payload: EventPayload::StreamSampled(sample),
                event_id: None,
                correlation_id: Uuid::now_v7(),
            });
        }
        counter!("frameworks_balancer_stream_samples_total").increment(facts.len() as u64);
        for verdict in self.telemetry.publish_batch(&facts).await {
            if let Err(error) = verdict {
                counter!("frameworks_balancer_telemetry_errors_total").increment(1);
                warn!(%error, node, "a stream sample could not be published");
            }
        }
    }

    /// Reads one edge's messages until its stream ends.
    async fn follow(self, node: String, stream: Uuid, mut inbound: Streaming<EdgeMessage>) {
        loop {
            let message = match inbound.message().await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => {
                    warn!(node, %status, "edge stream failed");
                    break;
                }
            };
            match message.kind {
                Some(edge_message::Kind::Heartbeat(beat)) => {
                    let tenant = self.lock().get(&node).and_then(|s| s.tenant);
                    self.heartbeat(&node, tenant, beat).await;
                }
                Some(edge_message::Kind::Samples(samples)) => {
                    self.samples(&node, samples).await;
                }
                Some(edge_message::Kind::Result(result)) => {
                    let waiting = self
                        .pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&result.command_id);
                    if let Some(waiting) = waiting {
                        let _ = waiting.send(result);
                    }
                }
                Some(edge_message::Kind::Register(_)) | None => {
                    counter!("frameworks_balancer_protocol_errors_total").increment(1);
                    warn!(node, "unexpected message on an edge stream; ignored");
                }
            }
        }
        // A newer stream of the same node may have replaced this one.
        let mut sessions = self.lock();
        if sessions.get(&node).is_some_and(|s| s.stream == stream) {
            sessions.remove(&node);
        }
        gauge!("frameworks_balancer_edges_connected").set(sessions.len() as f64);
        info!(node, "edge disconnected");
    }
}

#[tonic::async_trait]
impl EdgeControl for EdgeControlService {
    type OpenStream = Pin<Box<dyn Stream<Item = Result<BalancerMessage, Status>> + Send>>;

    async fn open(
        &self,
        request: Request<Streaming<EdgeMessage>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTER_WITHIN, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("register first, within 10 s"))??;
        let Some(EdgeMessage {
            kind: Some(edge_message::Kind::Register(register)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message must be register",
            ));
        };
        let (node_id, cluster_id, tenant) = self.register(register).await?;
        let (outbox, messages) = mpsc::channel(OUTBOX);
        let session_token = new_token(SESSION_TOKEN_PREFIX);
        let token_hash = sha256(session_token.as_bytes());
        let seed = BalancerMessage {
            kind: Some(balancer_message::Kind::Seed(ConfigSeed {
                node_id: node_id.clone(),
                cluster_id,
                heartbeat_seconds: self.settings.heartbeat_seconds,
                session_token,
                routes: self.directory.routes(self.bus.secrets()),
                templates: vec![StreamTemplate {
                    name: STREAM_TEMPLATE.to_owned(),
                    // Anyone may push; PUSH_REWRITE decides who publishes.
                    source: "push://".to_owned(),
                    dvr_ms: 0,
                }],
            })),
        };
        outbox
            .send(Ok(seed))
            .await
            .map_err(|_| Status::internal("the stream closed at once"))?;
        let stream = Uuid::now_v7();
        {
            let mut sessions = self.lock();
            sessions.insert(
                node_id.clone(),
                Session {
                    stream,
                    tenant,
                    token_hash,
                    outbox,
                    last_heartbeat: Instant::now(),
                },
            );
            gauge!("frameworks_balancer_edges_connected").set(sessions.len() as f64);
        }
        tokio::spawn(self.clone().follow(node_id, stream, inbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(messages))))
    }
}

#[cfg(test)]
mod tests {
    use frameworks_commands::{CommandError, ExecuteError};
    use tonic::Code;

    use super::refusal;

    /// Each refusal gets the gRPC status the error table gives it; a
    /// failure of the write side is UNAVAILABLE, which edges retry.
    #[test]
    fn refusals_get_the_status_that_fits() {
        let cases = [
            (
                CommandError::invalid("fingerprint", "empty"),
                Code::InvalidArgument,
            ),
            (CommandError::not_found("cluster", "c1"), Code::NotFound),
            (
                CommandError::Conflict("already enrolled".into()),
                Code::FailedPrecondition,
            ),
            (
                CommandError::Forbidden("not this cluster".into()),
                Code::PermissionDenied,
            ),
            (
                CommandError::Unauthenticated("token expired".into()),
                Code::Unauthenticated,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(
                refusal(ExecuteError::Rejected(error.clone())).code(),
                expected,
                "{error:?}"
            );
        }
        assert_eq!(
            refusal(ExecuteError::Contended(5)).code(),
            Code::Unavailable
        );
    }
}
