//! The service registry: what runs on the nodes of the tenant's own
//! clusters (the FrameWorks edge daemon, MistServer, ...), as each node's
//! edge daemon reports it, with health from the node's live state.
//!
//! An instance is one service on one node, `<node id>/<service id>`. The
//! edge daemon is healthy while its node reports; MistServer (and any other
//! service) while the node reports and MistServer answers it.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::DateTime;
use frameworks_projections::queries::clusters::{self as read_model, ServiceRow};
use uuid::Uuid;

use super::clusters::{NodeStatus, cluster_uuid};
use super::connection::{ConnectionInput, Position, connection, page_of, read_failed};
use super::errors::bad_input;
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

/// A read-model service row, as the API shows it.
struct Instance<'a>(&'a ServiceRow);

impl Instance<'_> {
    fn instance_id(&self) -> String {
        format!("{}/{}", self.0.node_id, self.0.service_id)
    }

    /// Whether the service answers: the edge daemon while its node
    /// reports, any other service while MistServer answers too.
    fn healthy(&self, load: &NodeLoad) -> bool {
        if self.0.service_id == EDGE_SERVICE {
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
            cluster_id: self.0.cluster_id.to_string(),
            node_id: Some(self.0.node_id.to_string()),
            service_id: self.0.service_id.clone(),
            version: Some(self.0.version.clone()).filter(|v| !v.is_empty()),
            port: Some(self.0.port),
            process_id: i32::try_from(self.0.process_id).ok().filter(|&pid| pid > 0),
            container_id: None,
            status,
            health_status,
            started_at: Some(Time(self.0.started_at)),
            stopped_at: self.0.stopped_at.map(Time),
            last_health_check: load.last_seen().map(Time),
        }
    }

    fn health(&self, load: &NodeLoad) -> ServiceInstanceHealth {
        ServiceInstanceHealth {
            instance_id: self.instance_id(),
            service_id: self.0.service_id.clone(),
            cluster_id: self.0.cluster_id.to_string(),
            protocol: self.0.protocol.clone(),
            host: Some(self.0.public_host.clone()).filter(|h| !h.is_empty()),
            port: self.0.port,
            health_endpoint: self.0.health_endpoint.clone(),
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
        let page = page_of(page.as_ref())?;
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
            .map(|(row, load)| Instance(row).instance(load))
            .collect();
        let total = i64::try_from(instances.len()).unwrap_or(i64::MAX);
        let position = |instance: &ServiceInstance| Position {
            created_at: instance.started_at.map_or_else(DateTime::default, |t| t.0),
            id: instance.instance_id.clone(),
        };
        let selected = page.select(instances, position);
        Ok(ServiceInstancesConnection::new(
            page.finish(selected, position, total),
        ))
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
                .map(|(row, load)| Instance(row).health(load))
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
) -> async_graphql::Result<Vec<ServiceRow>> {
    read_model::running_services(
        &state.pool,
        principal.tenant_id(),
        service,
        cluster,
        SCAN_LIMIT,
    )
    .await
    .map_err(read_failed)
}

/// The live state of each row's node, in one round trip.
async fn loads_of(
    state: &BridgeState,
    rows: &[ServiceRow],
) -> async_graphql::Result<Vec<NodeLoad>> {
    let nodes: Vec<Uuid> = rows.iter().map(|row| row.node_id).collect();
    node_loads(state, &nodes).await
}
