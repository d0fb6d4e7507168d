//! Clusters and their edge nodes, and enrolment tokens for new nodes.
//! A tenant sees the platform's shared clusters and its own; it sees the
//! nodes of its own clusters only. Node load and health come from the
//! live state in Redis.

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Json, Object, SimpleObject, Union,
};
use chrono::{DateTime, Utc};
use frameworks_commands::aggregates::infrastructure::{
    Cluster as ClusterAggregate, ClusterCommand, ClusterOutcome, Node as NodeAggregate,
    NodeCommand, NodeMode,
};
use frameworks_commands::aggregates::tenant::{TIERS, set_preferred_cluster};
use frameworks_events::AggregateType;
use frameworks_projections::queries::clusters::{
    push_subscribed, push_usable, subscribed_among, usable,
};
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use super::connection::{ConnectionInput, Listing, Page, Position, connection};
use super::errors::{
    AuthError, NotFoundError, Refusal, ValidationError, forbidden_resource, internal, null_with,
    refusal_members,
};
use super::ids;
use super::mutation::{answer, caller, command};
use super::node_load::{NodeLoad, cluster_health, cluster_loads, node_loads};
use super::scalars::Time;
use super::{require, state};
use crate::auth::{Principal, Scope};
use crate::state::BridgeState;

pub(super) const CLUSTER_TYPE: &str = "Cluster";
pub(super) const NODE_TYPE: &str = "InfrastructureNode";
pub(super) const CLUSTER_COLUMNS: &str = "id, tenant_id, name, region, base_url, shared, max_concurrent_streams, max_concurrent_viewers, max_bandwidth_mbps, visibility, pricing_model, monthly_price_cents, requires_approval, short_description, created_at, updated_at";
/// Most nodes listed at once; a filtered list is paged in memory.
const NODE_SCAN_LIMIT: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ClusterVisibility {
    Public,
    Unlisted,
    Private,
}

impl ClusterVisibility {
    /// The read model's spelling (the API's name).
    pub(super) fn from_column(value: &str) -> Self {
        match value {
            "PUBLIC" => Self::Public,
            "UNLISTED" => Self::Unlisted,
            _ => Self::Private,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ClusterPricingModel {
    FreeUnmetered,
    Metered,
    Monthly,
    TierInherit,
    Custom,
}

impl ClusterPricingModel {
    /// The read model's spelling (the API's name).
    pub(super) fn from_column(value: &str) -> Self {
        match value {
            "METERED" => Self::Metered,
            "MONTHLY" => Self::Monthly,
            "TIER_INHERIT" => Self::TierInherit,
            "CUSTOM" => Self::Custom,
            _ => Self::FreeUnmetered,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum NodeStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum NodeOperationalMode {
    Normal,
    Draining,
    Maintenance,
}

impl NodeOperationalMode {
    /// The read model's spelling (the API's name).
    fn from_column(value: &str) -> Self {
        match value {
            "DRAINING" => Self::Draining,
            "MAINTENANCE" => Self::Maintenance,
            _ => Self::Normal,
        }
    }
}

impl From<NodeOperationalMode> for NodeMode {
    fn from(mode: NodeOperationalMode) -> Self {
        match mode {
            NodeOperationalMode::Normal => Self::Normal,
            NodeOperationalMode::Draining => Self::Draining,
            NodeOperationalMode::Maintenance => Self::Maintenance,
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub(super) struct ClusterRow {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub name: String,
    region: String,
    base_url: String,
    pub shared: bool,
    pub max_concurrent_streams: i32,
    pub max_concurrent_viewers: i32,
    max_bandwidth_mbps: i32,
    pub visibility: String,
    pub pricing_model: String,
    pub monthly_price_cents: Option<i32>,
    pub requires_approval: bool,
    pub short_description: Option<String>,
    pub created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A streaming cluster: edge nodes under one base URL, with a capacity.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct Cluster {
    /// Global unique identifier for Relay compatibility (see the `id` resolver).
    #[graphql(skip)]
    pub id: ID,
    pub cluster_id: String,
    pub cluster_name: String,
    /// `shared` (the platform's) or `dedicated` (a tenant's own).
    pub cluster_type: String,
    /// `platform` or `private`.
    pub deployment_model: String,
    pub base_url: String,
    /// Internal addresses are not exposed: always null.
    pub database_url: Option<String>,
    pub periscope_url: Option<String>,
    pub kafka_brokers: Option<Vec<String>>,
    pub max_concurrent_streams: i32,
    pub max_concurrent_viewers: i32,
    pub max_bandwidth_mbps: i32,
    /// `healthy` (every live node healthy), `degraded` (some not) or
    /// `critical` (no live node).
    pub health_status: String,
    /// Whether any node of the cluster is live.
    pub is_active: bool,
    pub is_default_cluster: bool,
    pub is_platform_official: bool,
    pub region_id: Option<String>,
    /// Whether the tenant may place streams on it: shared, its own, or
    /// subscribed to and approved.
    pub is_subscribed: bool,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
    pub owner_tenant_id: Option<String>,
    pub visibility: ClusterVisibility,
    pub pricing_model: ClusterPricingModel,
    pub monthly_price_cents: Option<i32>,
    pub requires_approval: bool,
    pub short_description: Option<String>,
    #[graphql(skip)]
    uuid: Uuid,
    #[graphql(skip)]
    owned: bool,
}

#[ComplexObject]
impl Cluster {
    /// Global unique identifier for Relay compatibility.
    pub async fn id(&self) -> ID {
        self.id.clone()
    }

    /// The cluster's nodes; only the owner of a cluster sees them (null
    /// with a FORBIDDEN error for the platform's shared clusters).
    async fn nodes_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<Option<InfrastructureNodesConnection>> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        if !self.owned {
            let denied = forbidden_resource("the nodes of a cluster you do not own");
            return Ok(null_with(ctx, denied));
        }
        nodes(state(ctx)?, principal, Some(self.uuid), None, page.as_ref())
            .await
            .map(Some)
    }
}

#[derive(Debug, Clone, FromRow)]
struct NodeRow {
    id: Uuid,
    cluster_id: Uuid,
    tenant_id: Option<Uuid>,
    hostname: String,
    public_host: String,
    latitude: f64,
    longitude: f64,
    enrolled_at: DateTime<Utc>,
    reenrolled_at: Option<DateTime<Utc>>,
    operational_mode: String,
    region: String,
}

/// Nodes with their cluster's region; the caller adds its conditions.
const NODE_SELECT: &str =
    "SELECT n.id, n.cluster_id, n.tenant_id, n.hostname, n.public_host, n.latitude, n.longitude,
        n.enrolled_at, n.reenrolled_at, n.operational_mode, c.region
 FROM read_models.rm_nodes n JOIN read_models.rm_clusters c ON c.id = n.cluster_id
 WHERE c.tenant_id = $1 AND n.decommissioned_at IS NULL";

/// An edge server of a cluster.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct InfrastructureNode {
    /// Global unique identifier for Relay compatibility (see the `id` resolver).
    #[graphql(skip)]
    pub id: ID,
    pub node_id: String,
    pub cluster_id: String,
    pub node_name: String,
    pub node_type: String,
    pub internal_ip: Option<String>,
    pub external_ip: Option<String>,
    pub wireguard_ip: Option<String>,
    pub wireguard_public_key: Option<String>,
    pub region: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub availability_zone: Option<String>,
    pub cpu_cores: Option<i32>,
    pub memory_gb: Option<i32>,
    pub disk_gb: Option<i32>,
    pub last_heartbeat: Option<Time>,
    pub tags: Option<Json<serde_json::Value>>,
    pub metadata: Option<Json<serde_json::Value>>,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
    /// The node's load, while it reports (null when it has fallen silent).
    pub live_state: Option<NodeLiveState>,
    /// What the balancer may send it (setNodeMode).
    pub effective_mode: NodeOperationalMode,
    pub routing_impact_preview: RoutingImpactPreview,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct NodeLiveState {
    pub node_id: String,
    pub tenant_id: String,
    pub cpu_percent: f64,
    /// MiB (the name is historical).
    pub ram_used_bytes: f64,
    /// MiB (the name is historical).
    pub ram_total_bytes: f64,
    pub disk_used_bytes: f64,
    pub disk_total_bytes: f64,
    /// Bits per second out.
    pub up_speed: f64,
    /// Bits per second in.
    pub down_speed: f64,
    pub active_streams: i32,
    pub is_healthy: bool,
    pub latitude: f64,
    pub longitude: f64,
    /// The cluster's region.
    pub location: String,
    pub metadata: Option<Json<serde_json::Value>>,
    pub updated_at: Time,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct RoutingImpactPreview {
    pub active_streams: i32,
    pub active_viewers: i32,
}

/// What the tenant may do on a cluster.
#[derive(Debug, Clone, SimpleObject)]
pub struct ClusterAccess {
    pub cluster_id: String,
    pub cluster_name: String,
    /// `owner` (the tenant's own cluster) or `shared` (the platform's).
    pub access_level: String,
    /// The cluster's capacity: maxConcurrentStreams, maxConcurrentViewers, maxBandwidthMbps.
    pub resource_limits: Option<Json<serde_json::Value>>,
    /// Streams on this server never pull from private addresses.
    pub allow_private_pull_sources: bool,
}

/// A cluster the tenant may use without asking: the platform's shared ones.
#[derive(Debug, Clone, SimpleObject)]
pub struct AvailableCluster {
    pub cluster_id: String,
    pub cluster_name: String,
    /// Tenant tiers it serves.
    pub tiers: Vec<String>,
    /// Whether tenants use it without subscribing.
    pub auto_enroll: bool,
}

connection!(ClustersConnection, ClusterEdge, Cluster);
connection!(ClusterAccessConnection, ClusterAccessEdge, ClusterAccess);
connection!(
    AvailableClustersConnection,
    AvailableClusterEdge,
    AvailableCluster
);
connection!(
    InfrastructureNodesConnection,
    InfrastructureNodeEdge,
    InfrastructureNode
);

/// A token a new node enrols with.
#[derive(Debug, Clone, SimpleObject)]
pub struct BootstrapToken {
    pub id: ID,
    pub name: String,
    /// The secret: only in the answer to createEnrollmentToken.
    pub token: Option<String>,
    /// `edge_node`.
    pub kind: String,
    pub cluster_id: Option<String>,
    pub expected_ip: Option<String>,
    pub metadata: Option<Json<serde_json::Value>>,
    pub usage_limit: Option<i32>,
    pub usage_count: i32,
    pub expires_at: Option<Time>,
    pub used_at: Option<Time>,
    pub created_by: Option<String>,
    pub created_at: Time,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct CreateEnrollmentTokenResponse {
    pub bootstrap_token: BootstrapToken,
}

#[derive(Debug, Clone, Union)]
pub enum CreateEnrollmentTokenResult {
    CreateEnrollmentTokenResponse(CreateEnrollmentTokenResponse),
    ValidationError(ValidationError),
    AuthError(AuthError),
}

#[derive(Debug, Default)]
pub struct ClusterQuery;

#[Object]
impl ClusterQuery {
    /// One cluster the tenant may use, by global or raw id.
    async fn cluster(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Cluster>> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        usable_cluster(state(ctx)?, principal, &id.0).await
    }

    /// The clusters the tenant may use: the platform's shared ones, its own
    /// and those it is subscribed to.
    async fn clusters_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<ClustersConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        clusters_page(state(ctx)?, principal, Visible::Usable, page.as_ref()).await
    }

    /// What the tenant may do on each cluster it may use.
    async fn clusters_access_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<ClusterAccessConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let (rows, info, total) =
            list(state(ctx)?, principal, Visible::Usable, page.as_ref()).await?;
        let edges = rows
            .into_iter()
            .map(|(cursor, row)| {
                let access = ClusterAccess {
                    cluster_id: row.id.to_string(),
                    cluster_name: row.name,
                    access_level: if row.tenant_id == Some(principal.tenant_id()) {
                        "owner"
                    } else if row.shared {
                        "shared"
                    } else {
                        "subscriber"
                    }
                    .into(),
                    resource_limits: Some(Json(serde_json::json!({
                        "maxConcurrentStreams": row.max_concurrent_streams,
                        "maxConcurrentViewers": row.max_concurrent_viewers,
                        "maxBandwidthMbps": row.max_bandwidth_mbps,
                    }))),
                    allow_private_pull_sources: false,
                };
                (cursor, access)
            })
            .collect();
        Ok(ClusterAccessConnection::new(edges, info, total))
    }

    /// The platform's shared clusters, which every tenant may use.
    async fn clusters_available_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<AvailableClustersConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let (rows, info, total) =
            list(state(ctx)?, principal, Visible::Shared, page.as_ref()).await?;
        let edges = rows
            .into_iter()
            .map(|(cursor, row)| {
                let available = AvailableCluster {
                    cluster_id: row.id.to_string(),
                    cluster_name: row.name,
                    tiers: TIERS.iter().map(|&t| t.to_owned()).collect(),
                    auto_enroll: true,
                };
                (cursor, available)
            })
            .collect();
        Ok(AvailableClustersConnection::new(edges, info, total))
    }

    /// The nodes of the tenant's own clusters, optionally of one cluster and
    /// in one health state; `type` is `edge` (the only kind there is).
    async fn nodes_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        cluster_id: Option<String>,
        status: Option<NodeStatus>,
        #[graphql(name = "type")] kind: Option<String>,
    ) -> async_graphql::Result<InfrastructureNodesConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let state = state(ctx)?;
        if kind
            .as_deref()
            .is_some_and(|k| !k.eq_ignore_ascii_case("edge"))
        {
            let empty =
                Page::from_input(page.as_ref())?.finish(Vec::<Position>::new(), Clone::clone);
            return Ok(InfrastructureNodesConnection::new(Vec::new(), empty.1, 0));
        }
        let cluster = match cluster_id {
            None => None,
            Some(id) => match cluster_uuid(&id) {
                Some(uuid) => Some(uuid),
                None => return Err(super::errors::bad_input("clusterId", "is not a cluster id")),
            },
        };
        nodes(state, principal, cluster, status, page.as_ref()).await
    }
}

#[derive(Debug, Clone, InputObject)]
pub struct SetNodeModeInput {
    /// The node's global id or its raw UUID.
    pub node_id: String,
    pub mode: NodeOperationalMode,
    /// Recorded with the change; defaults to who made it.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Union)]
pub enum SetNodeModeResult {
    InfrastructureNode(Box<InfrastructureNode>),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum SetPreferredClusterResult {
    Cluster(Box<Cluster>),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

refusal_members!(SetNodeModeResult, SetPreferredClusterResult);

#[derive(Debug, Default)]
pub struct ClusterMutation;

#[Object]
impl ClusterMutation {
    /// A single-use token a new edge node of the cluster enrols with.
    /// `ttl` is a duration such as `30m`, `24h` or `1h30m` (default `24h`).
    async fn create_enrollment_token(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        name: Option<String>,
        ttl: Option<String>,
    ) -> async_graphql::Result<CreateEnrollmentTokenResult> {
        let not_found = || {
            CreateEnrollmentTokenResult::ValidationError(ValidationError::new(
                "clusterId",
                "names no cluster of yours",
                Some("not_found"),
            ))
        };
        let refuse = |refusal| match refusal {
            Refusal::Validation(e) => CreateEnrollmentTokenResult::ValidationError(e),
            Refusal::Auth(e) => CreateEnrollmentTokenResult::AuthError(e),
            Refusal::NotFound(_) => not_found(),
        };
        answer(refuse, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            let ttl_seconds = ttl
                .as_deref()
                .map(parse_duration)
                .unwrap_or(Ok(86_400))
                .map_err(|message| ValidationError::new("ttl", message, Some("duration")))?;
            let uuid = cluster_uuid(&cluster_id.0)
                .ok_or_else(|| Refusal::not_found(CLUSTER_TYPE, &cluster_id.0))?;
            let issue = ClusterCommand::IssueEnrolmentToken {
                ttl_seconds,
                name: name.unwrap_or_default(),
            };
            let (token_id, token) =
                match command::<ClusterAggregate>(state, principal, &uuid.to_string(), &issue)
                    .await?
                {
                    ClusterOutcome::EnrolmentToken {
                        token_id, token, ..
                    } => (token_id, token),
                    other => {
                        return Err(internal(&std::io::Error::other(format!(
                            "issuing an enrolment token answered {other:?}"
                        )))
                        .into());
                    }
                };
            state
                .wait_until_projected(AggregateType::Cluster, &uuid.to_string())
                .await
                .map_err(|e| internal(&e))?;
            Ok(CreateEnrollmentTokenResult::CreateEnrollmentTokenResponse(
                CreateEnrollmentTokenResponse {
                    bootstrap_token: bootstrap_token(state, &token_id, token).await?,
                },
            ))
        })
        .await
    }

    /// Drains a node of the tenant's own clusters (nothing new is placed on
    /// it), takes it out for maintenance, or puts it back (NORMAL).
    async fn set_node_mode(
        &self,
        ctx: &Context<'_>,
        input: SetNodeModeInput,
    ) -> async_graphql::Result<SetNodeModeResult> {
        answer(SetNodeModeResult::from, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            // Only the nodes of the caller's own clusters exist for it.
            let missing = || Refusal::not_found("node", &input.node_id);
            let id = node_uuid(&input.node_id).ok_or_else(missing)?;
            node_by_id(state, principal, id)
                .await?
                .ok_or_else(missing)?;
            let set = NodeCommand::SetMode {
                mode: input.mode.into(),
                reason: input
                    .reason
                    .clone()
                    .unwrap_or_else(|| principal.command_context().actor),
            };
            let node_id = id.to_string();
            command::<NodeAggregate>(state, principal, &node_id, &set).await?;
            state
                .wait_until_projected(AggregateType::Node, &node_id)
                .await
                .map_err(|e| internal(&e))?;
            let node = node_by_id(state, principal, id)
                .await?
                .ok_or_else(missing)?;
            Ok(SetNodeModeResult::InfrastructureNode(Box::new(node)))
        })
        .await
    }

    /// The cluster the tenant prefers for its streams: one it may use (the
    /// platform's shared clusters, its own, or one it is subscribed to).
    async fn set_preferred_cluster(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
    ) -> async_graphql::Result<SetPreferredClusterResult> {
        answer(SetPreferredClusterResult::from, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            let uuid = cluster_uuid(&cluster_id.0)
                .ok_or_else(|| Refusal::not_found("cluster", &cluster_id.0))?;
            let tenant = principal.tenant_id();
            set_preferred_cluster(&state.bus, tenant, uuid, &principal.command_context()).await?;
            state
                .wait_until_projected(AggregateType::Tenant, &tenant.to_string())
                .await
                .map_err(|e| internal(&e))?;
            Ok(SetPreferredClusterResult::Cluster(Box::new(
                cluster_by_id(state, principal, uuid).await?,
            )))
        })
        .await
    }
}

/// A just-issued enrolment token as the read model has it, with its secret.
pub(super) async fn bootstrap_token(
    state: &BridgeState,
    token_id: &str,
    token: String,
) -> async_graphql::Result<BootstrapToken> {
    let row: (String, Uuid, DateTime<Utc>, String, DateTime<Utc>) = sqlx::query_as(
        "SELECT name, cluster_id, expires_at, issued_by, created_at
         FROM read_models.rm_enrolment_tokens WHERE token_id = $1",
    )
    .bind(token_id)
    .fetch_one(&state.pool)
    .await
    .map_err(|e| internal(&e))?;
    let (name, cluster, expires_at, issued_by, created_at) = row;
    Ok(BootstrapToken {
        id: ID(token_id.to_owned()),
        name,
        token: Some(token),
        kind: "edge_node".into(),
        cluster_id: Some(cluster.to_string()),
        expected_ip: None,
        metadata: None,
        usage_limit: Some(1),
        usage_count: 0,
        expires_at: Some(Time(expires_at)),
        used_at: None,
        created_by: Some(issued_by),
        created_at: Time(created_at),
    })
}

/// Which clusters a listing shows.
#[derive(Debug, Clone, Copy)]
pub(super) enum Visible {
    /// The platform's shared clusters, the tenant's own and its subscriptions.
    Usable,
    /// The platform's shared clusters.
    Shared,
    /// Other tenants' clusters the tenant holds an active subscription to.
    Subscribed,
}

/// One cluster the caller may use, by global or raw id.
pub(super) async fn usable_cluster(
    state: &BridgeState,
    principal: &Principal,
    id: &str,
) -> async_graphql::Result<Option<Cluster>> {
    let Some(uuid) = cluster_uuid(id) else {
        return Ok(None);
    };
    let mut query = QueryBuilder::new(format!(
        "SELECT {CLUSTER_COLUMNS} FROM read_models.rm_clusters WHERE id = "
    ));
    query.push_bind(uuid).push(" AND ");
    push_usable(&mut query, principal.tenant_id());
    let row: Option<ClusterRow> = query
        .build_query_as()
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| internal(&e))?;
    match row {
        Some(row) => Ok(Some(cluster(state, principal, row).await?)),
        None => Ok(None),
    }
}

/// A cluster's UUID from its global or raw id.
pub(super) fn cluster_uuid(id: &str) -> Option<Uuid> {
    ids::raw(CLUSTER_TYPE, id).ok()?.parse().ok()
}

/// A page of clusters, newest first, with the total.
async fn list(
    state: &BridgeState,
    principal: &Principal,
    visible: Visible,
    page: Option<&ConnectionInput>,
) -> async_graphql::Result<(Vec<(String, ClusterRow)>, super::connection::PageInfo, i64)> {
    let page = Page::from_input(page)?;
    let tenant = principal.tenant_id();
    let filter = |query: &mut QueryBuilder<Postgres>| match visible {
        Visible::Usable => {
            query.push(" WHERE ");
            push_usable(query, tenant);
        }
        Visible::Shared => {
            query.push(" WHERE shared");
        }
        Visible::Subscribed => {
            query.push(" WHERE ");
            push_subscribed(query, tenant);
        }
    };
    let listing = Listing {
        from: "read_models.rm_clusters",
        columns: CLUSTER_COLUMNS,
        created_at: "created_at",
        id: "id",
    };
    let (edges, info, total) = page
        .fetch(&state.pool, listing, filter, |row: &ClusterRow| Position {
            created_at: row.created_at,
            id: row.id.to_string(),
        })
        .await?;
    Ok((edges, info, total))
}

/// A page of clusters as the caller sees them.
pub(super) async fn clusters_page(
    state: &BridgeState,
    principal: &Principal,
    visible: Visible,
    page: Option<&ConnectionInput>,
) -> async_graphql::Result<ClustersConnection> {
    let (rows, info, total) = list(state, principal, visible, page).await?;
    let (cursors, rows): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
    let clusters = describe(state, principal, rows).await?;
    Ok(ClustersConnection::new(
        cursors.into_iter().zip(clusters).collect(),
        info,
        total,
    ))
}

/// A duration of hours, minutes and seconds (`1h30m`, `90s`), in seconds.
pub(super) fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("{text:?} is not a duration like 30m, 24h or 1h30m");
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let value: i64 = digits.parse().map_err(|_| invalid())?;
        total = total
            .checked_add(value.checked_mul(unit).ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(invalid());
    }
    Ok(total)
}

/// A cluster just changed by the caller's command, from the read model.
pub(super) async fn cluster_by_id(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Cluster> {
    let row: ClusterRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CLUSTER_COLUMNS} FROM read_models.rm_clusters WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(&state.pool)
    .await
    .map_err(|e| internal(&e))?;
    cluster(state, principal, row).await
}

/// A cluster as the caller sees it, with its health from the live state.
pub(super) async fn cluster(
    state: &BridgeState,
    principal: &Principal,
    row: ClusterRow,
) -> async_graphql::Result<Cluster> {
    let mut described = describe(state, principal, vec![row]).await?;
    Ok(described.remove(0))
}

/// Clusters as the caller sees them, in their order: three reads for the
/// lot (subscriptions, preference, node loads), whatever their number.
pub(super) async fn describe(
    state: &BridgeState,
    principal: &Principal,
    rows: Vec<ClusterRow>,
) -> async_graphql::Result<Vec<Cluster>> {
    let tenant = principal.tenant_id();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let subscribed = subscribed_among(&state.pool, tenant, &ids)
        .await
        .map_err(|e| internal(&e))?;
    let preferred = preferred_cluster(state, tenant).await?;
    let mut loads = cluster_loads(state, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let loads = loads.remove(&row.id).unwrap_or_default();
            let live = loads.iter().filter(|load| load.live()).count();
            let healthy = loads.iter().filter(|load| load.healthy()).count();
            let owned = row.tenant_id == Some(tenant);
            let usable = usable(
                row.shared,
                row.tenant_id,
                tenant,
                subscribed.contains(&row.id),
            );
            Cluster {
                id: ids::global(CLUSTER_TYPE, &row.id.to_string()),
                cluster_id: row.id.to_string(),
                cluster_name: row.name,
                cluster_type: if row.shared { "shared" } else { "dedicated" }.into(),
                deployment_model: if row.shared { "platform" } else { "private" }.into(),
                base_url: row.base_url,
                database_url: None,
                periscope_url: None,
                kafka_brokers: None,
                max_concurrent_streams: row.max_concurrent_streams,
                max_concurrent_viewers: row.max_concurrent_viewers,
                max_bandwidth_mbps: row.max_bandwidth_mbps,
                health_status: cluster_health(live, healthy).into(),
                is_active: live > 0,
                // A preference outlives a cancelled subscription; it counts
                // only while the cluster is usable.
                is_default_cluster: usable && preferred == Some(row.id),
                is_platform_official: row.shared,
                region_id: Some(row.region),
                is_subscribed: usable,
                created_at: Some(Time(row.created_at)),
                updated_at: Some(Time(row.updated_at)),
                owner_tenant_id: row.tenant_id.map(|t| t.to_string()),
                visibility: ClusterVisibility::from_column(&row.visibility),
                pricing_model: ClusterPricingModel::from_column(&row.pricing_model),
                monthly_price_cents: row.monthly_price_cents,
                requires_approval: row.requires_approval,
                short_description: row.short_description,
                uuid: row.id,
                owned,
            }
        })
        .collect())
}

/// The cluster the tenant chose with setPreferredCluster, if any.
async fn preferred_cluster(
    state: &BridgeState,
    tenant: Uuid,
) -> async_graphql::Result<Option<Uuid>> {
    let preferred: Option<Option<Uuid>> =
        sqlx::query_scalar("SELECT preferred_cluster_id FROM read_models.rm_tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&state.pool)
            .await
            .map_err(|e| internal(&e))?;
    Ok(preferred.flatten())
}

/// The nodes of the caller's own clusters, filtered and paged.
async fn nodes(
    state: &BridgeState,
    principal: &Principal,
    cluster: Option<Uuid>,
    status: Option<NodeStatus>,
    page: Option<&ConnectionInput>,
) -> async_graphql::Result<InfrastructureNodesConnection> {
    let page = Page::from_input(page)?;
    let rows: Vec<NodeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{NODE_SELECT} AND ($2::uuid IS NULL OR n.cluster_id = $2)
         ORDER BY n.enrolled_at DESC, n.id::text DESC LIMIT $3"
    )))
    .bind(principal.tenant_id())
    .bind(cluster)
    .bind(NODE_SCAN_LIMIT)
    .fetch_all(&state.pool)
    .await
    .map_err(|e| internal(&e))?;
    // Health lives in Redis, so the status filter and the count are applied here.
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let loads = node_loads(state, &ids).await?;
    let mut described = Vec::with_capacity(rows.len());
    for (row, load) in rows.into_iter().zip(&loads) {
        let node = node(principal, row, load);
        let health = match &node.live_state {
            None => NodeStatus::Unhealthy,
            Some(live) if live.is_healthy => NodeStatus::Healthy,
            Some(_) => NodeStatus::Degraded,
        };
        if status.is_none_or(|wanted| wanted == health) {
            described.push(node);
        }
    }
    let total = i64::try_from(described.len()).unwrap_or(i64::MAX);
    let position = |node: &InfrastructureNode| Position {
        created_at: node.created_at.map_or_else(DateTime::default, |t| t.0),
        id: node.node_id.clone(),
    };
    let selected = page.select(described, position);
    let (edges, info) = page.finish(selected, position);
    Ok(InfrastructureNodesConnection::new(edges, info, total))
}

/// One node of the caller's own clusters, by its UUID.
pub(super) async fn node_by_id(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Option<InfrastructureNode>> {
    let row: Option<NodeRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{NODE_SELECT} AND n.id = $2")))
            .bind(principal.tenant_id())
            .bind(id)
            .fetch_optional(&state.pool)
            .await
            .map_err(|e| internal(&e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let load = node_loads(state, &[id]).await?.pop().unwrap_or_default();
    Ok(Some(node(principal, row, &load)))
}

/// A node's UUID from its global or raw id.
pub(super) fn node_uuid(id: &str) -> Option<Uuid> {
    ids::raw(NODE_TYPE, id).ok()?.parse().ok()
}

fn node(principal: &Principal, row: NodeRow, load: &NodeLoad) -> InfrastructureNode {
    const MIB: f64 = 1_048_576.0;
    let last_seen = load.last_seen();
    let active_streams = load.number("active_streams") as i32;
    let live_state = last_seen.map(|seen| NodeLiveState {
        node_id: row.id.to_string(),
        tenant_id: row.tenant_id.unwrap_or(principal.tenant_id()).to_string(),
        cpu_percent: load.number("cpu_percent"),
        ram_used_bytes: load.number("memory_used_bytes") / MIB,
        ram_total_bytes: load.number("memory_total_bytes") / MIB,
        disk_used_bytes: load.number("disk_used_bytes"),
        disk_total_bytes: load.number("disk_total_bytes"),
        up_speed: load.number("bandwidth_up_bps"),
        down_speed: load.number("bandwidth_down_bps"),
        active_streams,
        is_healthy: load.healthy(),
        latitude: row.latitude,
        longitude: row.longitude,
        location: row.region.clone(),
        metadata: None,
        updated_at: Time(seen),
    });
    InfrastructureNode {
        id: ids::global(NODE_TYPE, &row.id.to_string()),
        node_id: row.id.to_string(),
        cluster_id: row.cluster_id.to_string(),
        node_name: row.hostname,
        node_type: "edge".into(),
        internal_ip: None,
        external_ip: Some(row.public_host).filter(|h| !h.is_empty()),
        wireguard_ip: None,
        wireguard_public_key: None,
        region: Some(row.region),
        latitude: Some(row.latitude),
        longitude: Some(row.longitude),
        availability_zone: None,
        cpu_cores: None,
        memory_gb: None,
        disk_gb: None,
        last_heartbeat: last_seen.map(Time),
        tags: None,
        metadata: None,
        created_at: Some(Time(row.enrolled_at)),
        updated_at: Some(Time(row.reenrolled_at.unwrap_or(row.enrolled_at))),
        live_state,
        effective_mode: NodeOperationalMode::from_column(&row.operational_mode),
        routing_impact_preview: RoutingImpactPreview {
            active_streams: if last_seen.is_some() {
                active_streams
            } else {
                0
            },
            active_viewers: i32::try_from(load.viewers).unwrap_or(i32::MAX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_hours_minutes_and_seconds() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("1h30m"), Ok(5_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
    }
}
