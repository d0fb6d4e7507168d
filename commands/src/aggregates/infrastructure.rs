//! Clusters, and the edge nodes enrolled into them.
//!
//! A node joins with a single-use enrolment token issued on its cluster.
//! Spending the token and creating the node are two aggregates' events,
//! appended in one transaction by [`enrol_node`]: a token can never enrol
//! two nodes, and a node never exists without the token that admitted it.
//! A known machine comes back by its hardware fingerprint ([`NodeCommand::Reenrol`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use frameworks_events::proto::v1::infrastructure::{
    ClusterCreated, ClusterUpdated, EdgePreRegistered, NodeDecommissioned, NodeEnrolled,
    NodeEnrolmentTokenConsumed, NodeEnrolmentTokenIssued, NodeModeChanged,
    NodeOperationalMode as NodeModeProto, NodeReenrolled, NodeService, NodeServicesReported,
};
use frameworks_events::{AggregateType, Event, EventPayload};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::aggregate::{Aggregate, CommandContext, Decision, HandleEnv};
use crate::aggregates::claims;
use crate::aggregates::marketplace::{Marketplace, MarketplaceCommand};
use crate::bus::{CommandBus, build_events};
use crate::error::{CommandError, ExecuteError};
use crate::secrets::{new_token, sha256, sha256_hex};
use crate::store::{AppendError, Batch, Claim};
use crate::validate;

pub const ENROLMENT_TOKEN_PREFIX: &str = "fwe_";
pub const MIN_TOKEN_TTL_SECONDS: i64 = 60;
pub const MAX_TOKEN_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// Most services one node reports.
pub const MAX_NODE_SERVICES: usize = 32;

#[derive(Debug, Clone)]
struct EnrolmentToken {
    id: String,
    expires_at: DateTime<Utc>,
    consumed: bool,
    /// The node id an edge reserved with this token before enrolling.
    reserved_node: Option<String>,
}

#[derive(Debug, Default)]
pub struct Cluster {
    exists: bool,
    owner: Option<Uuid>,
    shared: bool,
    /// Keyed by the token's SHA-256 (hex).
    tokens: HashMap<String, EnrolmentToken>,
    marketplace: Marketplace,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterCommand {
    Create {
        name: String,
        region: String,
        base_url: String,
        shared: bool,
        capacity: ClusterCapacity,
    },
    Update {
        name: Option<String>,
        region: Option<String>,
        base_url: Option<String>,
        shared: Option<bool>,
        capacity: Option<ClusterCapacity>,
    },
    IssueEnrolmentToken {
        ttl_seconds: i64,
        /// A label for operators (may be empty).
        name: String,
    },
    /// The offer, subscriptions and invites (see [`crate::aggregates::marketplace`]).
    Marketplace(MarketplaceCommand),
    /// An edge holding an enrolment token reserves the node id it will enrol
    /// as; the token itself is the credential, and stays unspent.
    PreRegisterEdge {
        token: String,
        /// The edge's own choice of node id, honoured when free.
        preferred_node_id: Option<Uuid>,
        external_ip: Option<String>,
    },
}

/// What a cluster can carry; the balancer places streams and viewers within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCapacity {
    pub max_concurrent_streams: u32,
    pub max_concurrent_viewers: u32,
    pub max_bandwidth_mbps: u32,
}

impl ClusterCapacity {
    fn validate(self) -> Result<Self, CommandError> {
        for (field, value) in [
            ("input.maxConcurrentStreams", self.max_concurrent_streams),
            ("input.maxConcurrentViewers", self.max_concurrent_viewers),
            ("input.maxBandwidthMbps", self.max_bandwidth_mbps),
        ] {
            if value == 0 {
                return Err(CommandError::invalid(field, "must be at least 1"));
            }
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterOutcome {
    Done,
    /// The token in clear: shown this once.
    EnrolmentToken {
        token_id: String,
        token: String,
        expires_at: DateTime<Utc>,
    },
    Subscription {
        subscription_id: String,
    },
    /// The invite's token in clear, for its creator to pass on.
    Invite {
        invite_id: String,
        token: String,
    },
    /// The node id reserved for the edge holding the token.
    EdgeReserved {
        node_id: String,
    },
}

fn base_url(field: &str, value: &str) -> Result<String, CommandError> {
    let url = Url::parse(value)
        .map_err(|e| CommandError::invalid(field, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(CommandError::invalid(
            field,
            "must be an http(s) URL with a host",
        ));
    }
    Ok(url.to_string())
}

impl Cluster {
    /// Whether `tenant` may place streams on this cluster: the platform's
    /// shared clusters, its own, and those it holds an active subscription to.
    pub fn usable_by(&self, tenant: Uuid) -> bool {
        self.exists
            && (self.shared || self.owner == Some(tenant) || self.marketplace.is_subscribed(tenant))
    }

    /// The id of the token with this hash, if it may still enrol a node.
    pub fn spendable_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<String, CommandError> {
        self.spendable(token_hash, now).map(|t| t.id.clone())
    }

    fn spendable(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<&EnrolmentToken, CommandError> {
        let token = self
            .tokens
            .get(token_hash)
            .ok_or_else(|| CommandError::Unauthenticated("unknown enrolment token".into()))?;
        if token.consumed {
            return Err(CommandError::Unauthenticated(
                "this enrolment token was already used".into(),
            ));
        }
        if now >= token.expires_at {
            return Err(CommandError::Unauthenticated(
                "this enrolment token has expired".into(),
            ));
        }
        Ok(token)
    }
}

impl Aggregate for Cluster {
    const TYPE: AggregateType = AggregateType::Cluster;
    const RESOURCE: &'static str = "cluster";
    type Command = ClusterCommand;
    type Outcome = ClusterOutcome;

    fn apply(&mut self, event: &Event) {
        match &event.payload {
            EventPayload::ClusterCreated(created) => {
                self.exists = true;
                self.owner = event.tenant_id;
                self.shared = created.shared;
                self.marketplace = Marketplace::for_cluster(created.shared);
            }
            EventPayload::ClusterUpdated(updated) => {
                if let Some(shared) = updated.shared {
                    self.shared = shared;
                }
            }
            EventPayload::NodeEnrolmentTokenIssued(issued) => {
                let expires_at =
                    DateTime::from_timestamp(issued.expires_at_unix, 0).unwrap_or_default();
                let hash = data_encoding::HEXLOWER.encode(&issued.token_hash);
                self.tokens.insert(
                    hash,
                    EnrolmentToken {
                        id: issued.token_id.clone(),
                        expires_at,
                        consumed: false,
                        reserved_node: None,
                    },
                );
            }
            EventPayload::EdgePreRegistered(registered) => {
                if let Some(token) = self
                    .tokens
                    .values_mut()
                    .find(|t| t.id == registered.token_id)
                {
                    token.reserved_node = Some(registered.node_id.clone());
                }
            }
            EventPayload::NodeEnrolmentTokenConsumed(consumed) => {
                if let Some(token) = self.tokens.values_mut().find(|t| t.id == consumed.token_id) {
                    token.consumed = true;
                }
            }
            _ => self.marketplace.apply(event),
        }
    }

    fn owner(&self, _: &str) -> Option<Uuid> {
        self.owner
    }

    fn handle(
        &self,
        command: &ClusterCommand,
        env: &HandleEnv<'_>,
    ) -> Result<Decision<ClusterOutcome>, CommandError> {
        let id = env.aggregate_id;
        if let ClusterCommand::Create {
            name,
            region,
            base_url: url,
            shared,
            capacity,
        } = command
        {
            if self.exists {
                return Err(CommandError::Conflict(format!(
                    "cluster {id} already exists"
                )));
            }
            if *shared || env.ctx.tenant_id.is_none() {
                // Shared and platform-owned clusters are the operators' business.
                env.ctx.require_operator()?;
            }
            let capacity = capacity.validate()?;
            return Ok(Decision::new(ClusterOutcome::Done).event(ClusterCreated {
                name: validate::name("input.name", name, 100)?,
                region: validate::slug("input.region", region, 32)?,
                base_url: base_url("input.baseUrl", url)?,
                shared: *shared,
                max_concurrent_streams: capacity.max_concurrent_streams,
                max_concurrent_viewers: capacity.max_concurrent_viewers,
                max_bandwidth_mbps: capacity.max_bandwidth_mbps,
            }));
        }
        if !self.exists {
            return Err(CommandError::not_found(Self::RESOURCE, id));
        }
        if let ClusterCommand::PreRegisterEdge {
            token,
            preferred_node_id,
            external_ip,
        } = command
        {
            let token = self.spendable(&sha256_hex(token.as_bytes()), env.ctx.now)?;
            if let Some(node_id) = &token.reserved_node {
                // Asked again (a retried bootstrap): the same answer, nothing new.
                return Ok(Decision::new(ClusterOutcome::EdgeReserved {
                    node_id: node_id.clone(),
                }));
            }
            let external_ip = match external_ip.as_deref().map(str::trim) {
                None | Some("") => String::new(),
                Some(ip) => ip
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| CommandError::invalid("input.externalIp", "is not an IP address"))?
                    .to_string(),
            };
            let node_id = preferred_node_id.unwrap_or_else(Uuid::now_v7).to_string();
            return Ok(Decision::new(ClusterOutcome::EdgeReserved {
                node_id: node_id.clone(),
            })
            .event(EdgePreRegistered {
                token_id: token.id.clone(),
                node_id,
                external_ip,
            }));
        }
        if let ClusterCommand::Marketplace(command) = command {
            // Subscribers act here too, so the marketplace checks who may do what.
            return self
                .marketplace
                .decide(command, self.owner, self.shared, env);
        }
        if self.owner.is_some() {
            env.ctx.ensure_owner(self.owner, Self::RESOURCE, id)?;
        } else {
            env.ctx.require_operator()?;
        }
        match command {
            ClusterCommand::Create { .. }
            | ClusterCommand::Marketplace(_)
            | ClusterCommand::PreRegisterEdge { .. } => {
                unreachable!("handled above")
            }
            ClusterCommand::Update {
                name,
                region,
                base_url: url,
                shared,
                capacity,
            } => {
                let capacity = capacity.map(ClusterCapacity::validate).transpose()?;
                if shared == &Some(true) {
                    env.ctx.require_operator()?;
                }
                let update = ClusterUpdated {
                    name: name
                        .as_deref()
                        .map(|n| validate::name("input.name", n, 100))
                        .transpose()?,
                    region: region
                        .as_deref()
                        .map(|r| validate::slug("input.region", r, 32))
                        .transpose()?,
                    base_url: url
                        .as_deref()
                        .map(|u| base_url("input.baseUrl", u))
                        .transpose()?,
                    shared: *shared,
                    max_concurrent_streams: capacity.map(|c| c.max_concurrent_streams),
                    max_concurrent_viewers: capacity.map(|c| c.max_concurrent_viewers),
                    max_bandwidth_mbps: capacity.map(|c| c.max_bandwidth_mbps),
                };
                if update == ClusterUpdated::default() {
                    return Err(CommandError::invalid("input", "names no field to change"));
                }
                Ok(Decision::new(ClusterOutcome::Done).event(update))
            }
            ClusterCommand::IssueEnrolmentToken { ttl_seconds, name } => {
                let name = validate::text("input.name", name, 100)?;
                if !(MIN_TOKEN_TTL_SECONDS..=MAX_TOKEN_TTL_SECONDS).contains(ttl_seconds) {
                    return Err(CommandError::invalid(
                        "input.ttlSeconds",
                        format!(
                            "must be {MIN_TOKEN_TTL_SECONDS} to {MAX_TOKEN_TTL_SECONDS} seconds"
                        ),
                    ));
                }
                let token = new_token(ENROLMENT_TOKEN_PREFIX);
                let hash = sha256(token.as_bytes());
                let token_id = Uuid::now_v7().to_string();
                let expires_at = env.ctx.now + chrono::Duration::seconds(*ttl_seconds);
                Ok(Decision::new(ClusterOutcome::EnrolmentToken {
                    token_id: token_id.clone(),
                    token,
                    expires_at,
                })
                .event(NodeEnrolmentTokenIssued {
                    token_id,
                    token_hash: hash.to_vec(),
                    expires_at_unix: expires_at.timestamp(),
                    issued_by_user_id: env.ctx.actor.clone(),
                    name,
                })
                .claim(Claim::new(
                    claims::ENROLMENT_TOKEN_HASH,
                    data_encoding::HEXLOWER.encode(&hash),
                )))
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Node {
    exists: bool,
    owner: Option<Uuid>,
    fingerprint: String,
    decommissioned: bool,
    mode: NodeMode,
    services: Vec<NodeService>,
    cluster_id: String,
}

/// Whether the balancer may send new work to a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeMode {
    #[default]
    Normal,
    /// Keeps what it serves; nothing new is placed on it.
    Draining,
    /// Out of routing altogether.
    Maintenance,
}

impl NodeMode {
    pub fn to_proto(self) -> NodeModeProto {
        match self {
            Self::Normal => NodeModeProto::Normal,
            Self::Draining => NodeModeProto::Draining,
            Self::Maintenance => NodeModeProto::Maintenance,
        }
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        match NodeModeProto::try_from(value).ok()? {
            NodeModeProto::Normal => Some(Self::Normal),
            NodeModeProto::Draining => Some(Self::Draining),
            NodeModeProto::Maintenance => Some(Self::Maintenance),
            NodeModeProto::Unspecified => None,
        }
    }

    /// The read model's and the API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Draining => "DRAINING",
            Self::Maintenance => "MAINTENANCE",
        }
    }
}

/// What a node reports about itself when it (re-)joins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub hardware_fingerprint: String,
    pub hostname: String,
    pub edge_version: String,
    pub public_host: String,
    pub latitude: f64,
    pub longitude: f64,
}

impl NodeIdentity {
    fn validate(&self) -> Result<(), CommandError> {
        let fp = &self.hardware_fingerprint;
        if fp.is_empty()
            || fp.len() > 128
            || !fp
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":_-".contains(c))
        {
            return Err(CommandError::invalid(
                "input.hardwareFingerprint",
                "must be 1 to 128 characters of A-Z, a-z, 0-9, ':', '_' or '-'",
            ));
        }
        validate::name("input.hostname", &self.hostname, 253)?;
        validate::text("input.edgeVersion", &self.edge_version, 64)?;
        validate::text("input.publicHost", &self.public_host, 253)?;
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Err(CommandError::invalid(
                "input.latitude",
                "must be within -90 and 90",
            ));
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Err(CommandError::invalid(
                "input.longitude",
                "must be within -180 and 180",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NodeCommand {
    Reenrol(NodeIdentity),
    Decommission {
        reason: String,
    },
    /// Drain a node, take it out for maintenance, or put it back; setting
    /// the mode it already has records nothing.
    SetMode {
        mode: NodeMode,
        reason: String,
    },
    /// The services the node runs now (its edge daemon's report); the same
    /// set again records nothing.
    ReportServices(Vec<ServiceReport>),
}

/// One service a node runs, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub service_id: String,
    pub version: String,
    pub protocol: String,
    pub port: u16,
    /// A path such as `/health`, or empty.
    pub health_endpoint: String,
    pub process_id: u32,
    pub started_at: DateTime<Utc>,
}

impl ServiceReport {
    fn validate(&self, index: usize) -> Result<NodeService, CommandError> {
        let field = |name: &str| format!("input.services[{index}].{name}");
        if self.port == 0 {
            return Err(CommandError::invalid(field("port"), "must be 1 to 65535"));
        }
        let health_endpoint = validate::text(&field("healthEndpoint"), &self.health_endpoint, 200)?;
        if !(health_endpoint.is_empty() || health_endpoint.starts_with('/')) {
            return Err(CommandError::invalid(
                field("healthEndpoint"),
                "must be a path starting with '/'",
            ));
        }
        Ok(NodeService {
            service_id: validate::slug(&field("serviceId"), &self.service_id, 32)?,
            version: validate::text(&field("version"), &self.version, 64)?,
            protocol: validate::slug(&field("protocol"), &self.protocol, 16)?,
            port: u32::from(self.port),
            health_endpoint,
            process_id: self.process_id,
            started_at_unix: self.started_at.timestamp(),
        })
    }
}

impl Aggregate for Node {
    const TYPE: AggregateType = AggregateType::Node;
    const RESOURCE: &'static str = "node";
    type Command = NodeCommand;
    type Outcome = ();

    fn apply(&mut self, event: &Event) {
        match &event.payload {
            EventPayload::NodeEnrolled(enrolled) => {
                self.exists = true;
                self.owner = event.tenant_id;
                self.fingerprint = enrolled.hardware_fingerprint.clone();
                self.cluster_id = enrolled.cluster_id.clone();
            }
            EventPayload::NodeDecommissioned(_) => self.decommissioned = true,
            EventPayload::NodeModeChanged(changed) => {
                self.mode = NodeMode::from_proto(changed.mode).unwrap_or_default();
            }
            EventPayload::NodeServicesReported(reported) => {
                self.services = reported.services.clone();
            }
            _ => {}
        }
    }

    fn owner(&self, _: &str) -> Option<Uuid> {
        self.owner
    }

    fn handle(
        &self,
        command: &NodeCommand,
        env: &HandleEnv<'_>,
    ) -> Result<Decision<()>, CommandError> {
        let id = env.aggregate_id;
        if !self.exists || self.decommissioned {
            return Err(CommandError::not_found(Self::RESOURCE, id));
        }
        match command {
            NodeCommand::Reenrol(identity) => {
                identity.validate()?;
                if identity.hardware_fingerprint != self.fingerprint {
                    return Err(CommandError::Unauthenticated(
                        "the hardware fingerprint does not match this node".into(),
                    ));
                }
                Ok(Decision::new(()).event(NodeReenrolled {
                    hardware_fingerprint: identity.hardware_fingerprint.clone(),
                    hostname: identity.hostname.clone(),
                    edge_version: identity.edge_version.clone(),
                    public_host: identity.public_host.clone(),
                }))
            }
            NodeCommand::Decommission { reason } => {
                self.ensure_manager(env)?;
                let reason = validate::text("input.reason", reason, 1000)?;
                Ok(Decision::new(())
                    .event(NodeDecommissioned { reason })
                    .release(Claim::new(
                        claims::NODE_FINGERPRINT,
                        self.fingerprint.clone(),
                    )))
            }
            NodeCommand::SetMode { mode, reason } => {
                self.ensure_manager(env)?;
                let reason = validate::text("input.reason", reason, 1000)?;
                if *mode == self.mode {
                    return Ok(Decision::new(()));
                }
                Ok(Decision::new(()).event(NodeModeChanged {
                    mode: mode.to_proto().into(),
                    previous: self.mode.to_proto().into(),
                    reason,
                }))
            }
            NodeCommand::ReportServices(reports) => {
                self.ensure_manager(env)?;
                if reports.len() > MAX_NODE_SERVICES {
                    return Err(CommandError::invalid(
                        "input.services",
                        format!("a node reports at most {MAX_NODE_SERVICES} services"),
                    ));
                }
                let services = reports
                    .iter()
                    .enumerate()
                    .map(|(i, report)| report.validate(i))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut ids: Vec<&str> = services.iter().map(|s| s.service_id.as_str()).collect();
                ids.sort_unstable();
                if ids.windows(2).any(|pair| pair[0] == pair[1]) {
                    return Err(CommandError::invalid(
                        "input.services",
                        "names a service twice",
                    ));
                }
                if services == self.services {
                    return Ok(Decision::new(()));
                }
                Ok(Decision::new(()).event(NodeServicesReported { services }))
            }
        }
    }
}

impl Node {
    /// Whether the node is enrolled and not decommissioned.
    pub fn active(&self) -> bool {
        self.exists && !self.decommissioned
    }

    /// The cluster it enrolled into.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The tenant that owns it (None for the platform's).
    pub fn tenant(&self) -> Option<Uuid> {
        self.owner
    }

    /// The owner of a tenant's node, or an operator for the platform's.
    fn ensure_manager(&self, env: &HandleEnv<'_>) -> Result<(), CommandError> {
        if self.owner.is_some() {
            env.ctx
                .ensure_owner(self.owner, Node::RESOURCE, env.aggregate_id)
        } else {
            env.ctx.require_operator()
        }
    }
}

/// A node admitted by [`enrol_node`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    pub node_id: String,
    pub cluster_id: String,
}

/// Enrols a new node with a single-use token: spends the token on its
/// cluster and creates the node, atomically. Nothing is appended on failure.
pub async fn enrol_node(
    bus: &CommandBus,
    token: &str,
    identity: &NodeIdentity,
    ctx: &CommandContext,
) -> Result<Enrolled, ExecuteError> {
    identity.validate()?;
    let token_hash = sha256_hex(token.as_bytes());
    let store = bus.store();
    let unknown = || CommandError::Unauthenticated("unknown enrolment token".into());
    let Some(cluster_id) = store
        .find_claim(claims::ENROLMENT_TOKEN_HASH, &token_hash)
        .await?
    else {
        return Err(unknown().into());
    };
    for _ in 0..crate::bus::DEFAULT_MAX_ATTEMPTS {
        let (cluster, cluster_version) = bus.load::<Cluster>(&cluster_id).await?;
        let token = cluster.spendable(&token_hash, ctx.now)?;
        let token_id = token.id.clone();
        let node_id = token
            .reserved_node
            .clone()
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        let tenant = cluster.owner(&cluster_id);
        let cluster_batch = Batch {
            aggregate_type: AggregateType::Cluster,
            aggregate_id: cluster_id.clone(),
            expected_version: cluster_version,
            events: build_events(
                ctx,
                tenant,
                &cluster_id,
                cluster_version,
                vec![
                    NodeEnrolmentTokenConsumed {
                        token_id: token_id.clone(),
                        node_id: node_id.clone(),
                    }
                    .into(),
                ],
            ),
            // The token's claim stays: a reuse must read "already used", not "unknown".
            claims: Vec::new(),
            releases: Vec::new(),
        };
        let node_batch = Batch {
            aggregate_type: AggregateType::Node,
            aggregate_id: node_id.clone(),
            expected_version: 0,
            events: build_events(
                ctx,
                tenant,
                &node_id,
                0,
                vec![
                    NodeEnrolled {
                        cluster_id: cluster_id.clone(),
                        token_id,
                        hardware_fingerprint: identity.hardware_fingerprint.clone(),
                        hostname: identity.hostname.clone(),
                        edge_version: identity.edge_version.clone(),
                        public_host: identity.public_host.clone(),
                        latitude: identity.latitude,
                        longitude: identity.longitude,
                    }
                    .into(),
                ],
            ),
            claims: vec![Claim::new(
                claims::NODE_FINGERPRINT,
                identity.hardware_fingerprint.clone(),
            )],
            releases: Vec::new(),
        };
        match store.append(&[cluster_batch, node_batch], None).await {
            Ok(()) => {
                return Ok(Enrolled {
                    node_id,
                    cluster_id,
                });
            }
            // Another enrolment touched the cluster first; reload and check the token again.
            Err(AppendError::Conflict { .. }) => continue,
            Err(AppendError::ClaimTaken { .. }) => {
                return Err(CommandError::Conflict(
                    "this hardware fingerprint is already enrolled; re-enrol the existing node instead".into(),
                )
                .into());
            }
            Err(AppendError::IdempotencyRace) => {
                unreachable!("enrolment carries no idempotency key")
            }
            Err(AppendError::Store(error)) => return Err(error.into()),
        }
    }
    Err(ExecuteError::Contended(crate::bus::DEFAULT_MAX_ATTEMPTS))
}

/// Reserves a node id for the edge holding `token` (see
/// [`ClusterCommand::PreRegisterEdge`]): `(cluster id, node id)`.
pub async fn pre_register_edge(
    bus: &CommandBus,
    token: &str,
    preferred_node_id: Option<Uuid>,
    external_ip: Option<String>,
    ctx: &CommandContext,
) -> Result<(String, String), ExecuteError> {
    let Some(cluster_id) = bus
        .store()
        .find_claim(claims::ENROLMENT_TOKEN_HASH, &sha256_hex(token.as_bytes()))
        .await?
    else {
        return Err(CommandError::Unauthenticated("unknown enrolment token".into()).into());
    };
    // A preference naming an existing node is ignored, as the API allows.
    let preferred_node_id = match preferred_node_id {
        Some(id)
            if bus
                .store()
                .version(AggregateType::Node, &id.to_string())
                .await?
                == 0 =>
        {
            Some(id)
        }
        _ => None,
    };
    let command = ClusterCommand::PreRegisterEdge {
        token: token.to_owned(),
        preferred_node_id,
        external_ip,
    };
    match bus
        .execute::<Cluster>(&cluster_id, &command, ctx, None)
        .await?
    {
        ClusterOutcome::EdgeReserved { node_id } => Ok((cluster_id, node_id)),
        other => unreachable!("pre-registration answered {other:?}"),
    }
}

/// The node enrolled with this hardware fingerprint, if any.
pub async fn node_by_fingerprint(
    bus: &CommandBus,
    fingerprint: &str,
) -> Result<Option<String>, ExecuteError> {
    Ok(bus
        .store()
        .find_claim(claims::NODE_FINGERPRINT, fingerprint)
        .await?)
}

#[cfg(test)]
mod capacity_tests {
    use super::*;

    #[test]
    fn a_cluster_carries_at_least_one_of_everything() {
        let capacity = ClusterCapacity {
            max_concurrent_streams: 10,
            max_concurrent_viewers: 0,
            max_bandwidth_mbps: 100,
        };
        match capacity.validate() {
            Err(CommandError::Validation { field, .. }) => {
                assert_eq!(field, "input.maxConcurrentViewers");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        let fine = ClusterCapacity {
            max_concurrent_viewers: 1,
            ..capacity
        };
        assert_eq!(fine.validate().ok(), Some(fine));
    }
}
