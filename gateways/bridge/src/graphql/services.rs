//! The service registry: what runs on the nodes of the tenant's own
//! clusters (the FrameWorks edge daemon, MistServer, ...), as each node's
//! edge daemon reports it, with health from the node's live state.
//!
//! An instance is one service on one node, `<node id>/<service id>`. The
//! edge daemon is healthy while its node reports; MistServer (and any other
//! service) while the node reports and MistServer answers it.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use super::clusters::{NodeStatus, cluster_uuid};
use super::connection::{ConnectionInput, Page, Position, connection};
use super::errors::{bad_input, internal};
use super::node_load::{NodeLoad, node_loads};
use super::scalars::Time;
use super::{ids, require, state};
use crate::auth::{Principal, Scope};
use crate::state::BridgeState;

const INSTANCE_TYPE: &str = "ServiceInstance";
/// The edge daemon itself: alive exactly while its node reports.
const EDGE_SERVICE: &str = "edge";
/// Most instances listed at once; a listing is paged in memory.
const SCAN_LIMIT: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum InstanceStatus {
    Running,
    Starting,
    Stopping,
    Stopped,
    Error,
    Unknown,
}

/// One service running on one node.
#[derive(Debug, Clone, SimpleObject)]
pub struct ServiceInstance {
    pub id: ID,
    /// `<node id>/<service id>`.
    pub instance_id: String,
    pub cluster_id: String,
    pub node_id: Option<String>,
    pub service_id: String,
    pub version: Option<String>,
    pub port: Option<i32>,
    pub process_id: Option<i32>,
    /// Services run on the node itself, not in containers: always null.
    pub container_id: Option<String>,
    /// RUNNING while its node reports (ERROR when MistServer stopped
    /// answering), UNKNOWN when the node fell silent. Services that left
    /// the node's report, or whose node was decommissioned, are not listed.
    pub status: InstanceStatus,
    pub health_status: NodeStatus,
    pub started_at: Option<Time>,
    pub stopped_at: Option<Time>,
    /// The node's last report.
    pub last_health_check: Option<Time>,
}

/// How a service instance of the tenant's own infrastructure is reached, and its health.
#[derive(Debug, Clone, SimpleObject)]
pub struct ServiceInstanceHealth {
    pub instance_id: String,
    pub service_id: String,
    pub cluster_id: String,
    pub protocol: String,
    /// The node's public host.
    pub host: Option<String>,
    pub port: i32,
    pub health_endpoint: Option<String>,
    /// `healthy`, `unhealthy` or `unknown` (the node fell silent).
    pub status: String,
    pub last_health_check: Option<Time>,
}

connection!(
    ServiceInstancesConnection,
    ServiceInstanceEdge,
    ServiceInstance
);

#[derive(Debug, Clone, FromRow)]
struct InstanceRow {
    node_id: Uuid,
    cluster_id: Uuid,
    public_host: String,
    service_id: String,
    version: String,
    protocol: String,
    port: i32,
    health_endpoint: Option<String>,
    process_id: i64,
    started_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
}

impl InstanceRow {
    fn instance_id(&self) -> String {
        format!("{}/{}", self.node_id, self.service_id)
    }

    /// Whether the service answers: the edge daemon while its node
    /// reports, any other service while MistServer answers too.
    fn healthy(&self, load: &NodeLoad) -> bool {
        if self.service_id == EDGE_SERVICE {
            load.live()
        } else {
            load.healthy()
        }
    }

    fn instance(&self, load: &NodeLoad) -> ServiceInstance {
        let healthy = self.healthy(load);
        let status = match (load.live(), healthy) {
            (false, _) => InstanceStatus::Unknown,
            (true, true) => InstanceStatus::Running,
            (true, false) => InstanceStatus::Error,
        };
        let health_status = match (load.live(), healthy) {
            (_, true) => NodeStatus::Healthy,
            (true, false) => NodeStatus::Degraded,
            (false, false) => NodeStatus::Unhealthy,
        };
        let instance_id = self.instance_id();
        ServiceInstance {
            id: ids::global(INSTANCE_TYPE, &instance_id),
            instance_id,
            cluster_id: self.cluster_id.to_string(),
            node_id: Some(self.node_id.to_string()),
            service_id: self.service_id.clone(),
            version: Some(self.version.clone()).filter(|v| !v.is_empty()),
            port: Some(self.port),
            process_id: i32::try_from(self.process_id).ok().filter(|&pid| pid > 0),
            container_id: None,
            status,
            health_status,
            started_at: Some(Time(self.started_at)),
            stopped_at: self.stopped_at.map(Time),
            last_health_check: load.last_seen().map(Time),
        }
    }

    fn health(&self, load: &NodeLoad) -> ServiceInstanceHealth {
        ServiceInstanceHealth {
            instance_id: self.instance_id(),
            service_id: self.service_id.clone(),
            cluster_id: self.cluster_id.to_string(),
            protocol: self.protocol.clone(),
            host: Some(self.public_host.clone()).filter(|h| !h.is_empty()),
            port: self.port,
            health_endpoint: self.health_endpoint.clone(),
            status: match (load.live(), self.healthy(load)) {
                (false, _) => "unknown",
                (true, true) => "healthy",
                (true, false) => "unhealthy",
            }
            .into(),
            last_health_check: load.last_seen().map(Time),
        }
    }
}

#[derive(Debug, Default)]
pub struct ServiceQuery;

#[Object]
impl ServiceQuery {
    /// Discover the running instances of one service (`type`: `edge`,
    /// `mistserver`, ...) on the tenant's own clusters, optionally of one.
    async fn discover_services_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        #[graphql(name = "type")] service: String,
        cluster_id: Option<String>,
    ) -> async_graphql::Result<ServiceInstancesConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let page = Page::from_input(page.as_ref())?;
        let cluster = match cluster_id.as_deref() {
            None => None,
            Some(id) => Some(
                cluster_uuid(id).ok_or_else(|| bad_input("clusterId", "is not a cluster id"))?,
            ),
        };
        let state = state(ctx)?;
        let rows = running(state, principal, Some(&service), cluster).await?;
        let loads = loads_of(state, &rows).await?;
        let instances: Vec<ServiceInstance> = rows
            .iter()
            .zip(&loads)
            .map(|(row, load)| row.instance(load))
            .collect();
        let total = i64::try_from(instances.len()).unwrap_or(i64::MAX);
        let position = |instance: &ServiceInstance| Position {
            created_at: instance.started_at.map_or_else(DateTime::default, |t| t.0),
            id: instance.instance_id.clone(),
        };
        let selected = page.select(instances, position);
        let (edges, info) = page.finish(selected, position);
        Ok(ServiceInstancesConnection::new(edges, info, total))
    }

    /// How each running service instance of the tenant's own clusters is
    /// reached and whether it answers; `serviceId` picks one service.
    async fn service_instances_health(
        &self,
        ctx: &Context<'_>,
        service_id: Option<String>,
    ) -> async_graphql::Result<Option<Vec<ServiceInstanceHealth>>> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let state = state(ctx)?;
        let rows = running(state, principal, service_id.as_deref(), None).await?;
        let loads = loads_of(state, &rows).await?;
        Ok(Some(
            rows.iter()
                .zip(&loads)
                .map(|(row, load)| row.health(load))
                .collect(),
        ))
    }
}

/// The service instances not stopped on the nodes of the caller's own
/// clusters, newest first.
async fn running(
    state: &BridgeState,
    principal: &Principal,
    service: Option<&str>,
    cluster: Option<Uuid>,
) -> async_graphql::Result<Vec<InstanceRow>> {
    sqlx::query_as(
        "SELECT s.node_id, n.cluster_id, n.public_host, s.service_id, s.version, s.protocol, s.port,
                s.health_endpoint, s.process_id, s.started_at, s.stopped_at
         FROM read_models.rm_node_services s
         JOIN read_models.rm_nodes n ON n.id = s.node_id
         JOIN read_models.rm_clusters c ON c.id = n.cluster_id
         WHERE c.tenant_id = $1 AND s.stopped_at IS NULL AND n.decommissioned_at IS NULL
           AND ($2::text IS NULL OR s.service_id = $2)
           AND ($3::uuid IS NULL OR n.cluster_id = $3)
         ORDER BY s.started_at DESC, s.node_id::text || '/' || s.service_id DESC
         LIMIT $4",
    )
    .bind(principal.tenant_id())
    .bind(service)
    .bind(cluster)
    .bind(SCAN_LIMIT)
    .fetch_all(&state.pool)
    .await
    .map_err(|e| internal(&e))
}

/// The live state of each row's node, in one round trip.
async fn loads_of(
    state: &BridgeState,
    rows: &[InstanceRow],
) -> async_graphql::Result<Vec<NodeLoad>> {
    let nodes: Vec<Uuid> = rows.iter().map(|row| row.node_id).collect();
    node_loads(state, &nodes).await
}
