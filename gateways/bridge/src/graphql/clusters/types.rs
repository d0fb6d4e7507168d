//! Clusters, nodes and what a tenant may do on them, as the API shows them.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ClusterVisibility {
    Public,
    Unlisted,
    Private,
}

impl ClusterVisibility {
    /// The read model's spelling (the API's name).
    pub(in crate::graphql) fn from_column(value: &str) -> Self {
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
    pub(in crate::graphql) fn from_column(value: &str) -> Self {
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
    pub(in crate::graphql) fn from_column(value: &str) -> Self {
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
    pub(super) uuid: Uuid,
    #[graphql(skip)]
    pub(super) owned: bool,
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
