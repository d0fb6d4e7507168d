//! `networkStatus`: the platform's public map, open to anonymous callers.
//! It shows the shared clusters and their nodes only, never a tenant's own
//! infrastructure. Load and health come from the Redis live state.

use async_graphql::{Context, Object, SimpleObject};
use chrono::Utc;
use frameworks_projections::queries::clusters::{self as read_model, SharedNode};
use uuid::Uuid;

use super::connection::read_failed;
use super::node_load::{NodeLoad, cluster_health, node_loads};
use super::scalars::Time;
use super::state;

#[derive(Debug, Clone, SimpleObject)]
pub struct NetworkStatus {
    pub clusters: Vec<NetworkCluster>,
    /// Federation links between clusters; this platform has none yet.
    pub peer_connections: Vec<NetworkPeerConnection>,
    pub nodes: Vec<NetworkNode>,
    /// Registered service instances; this platform has no registry yet.
    pub service_instances: Vec<NetworkServiceInstance>,
    pub total_nodes: i32,
    pub healthy_nodes: i32,
    pub updated_at: Time,
}

/// A shared cluster with at least one node (its position is their mean).
#[derive(Debug, Clone, SimpleObject)]
pub struct NetworkCluster {
    pub cluster_id: String,
    pub name: String,
    pub region: String,
    pub latitude: f64,
    pub longitude: f64,
    pub node_count: i32,
    pub healthy_node_count: i32,
    pub peer_count: i32,
    /// `healthy`, `degraded` or `critical`, as for `Cluster.healthStatus`.
    pub status: String,
    pub cluster_type: String,
    pub short_description: Option<String>,
    pub current_streams: i32,
    pub current_viewers: i32,
    pub egress_mbps: i32,
    pub egress_capacity_mbps: i32,
    pub ingress_mbps: i32,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct NetworkPeerConnection {
    pub source_cluster: String,
    pub target_cluster: String,
    pub connected: bool,
    pub connection_type: String,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct NetworkNode {
    pub node_id: String,
    pub name: String,
    pub node_type: String,
    pub latitude: f64,
    pub longitude: f64,
    /// `healthy`, `degraded` or `offline`.
    pub status: String,
    pub cluster_id: String,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct NetworkServiceInstance {
    pub instance_id: String,
    pub service_id: String,
    pub cluster_id: String,
    pub node_id: Option<String>,
    pub status: String,
    pub health_status: String,
}

#[derive(Debug, Default)]
pub struct NetworkStatusQuery;

#[Object]
impl NetworkStatusQuery {
    /// Public network status: the shared clusters, their nodes and load.
    /// No tenant data; readable without signing in.
    async fn network_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<NetworkStatus>> {
        let state = state(ctx)?;
        let rows = read_model::shared_nodes(&state.pool)
            .await
            .map_err(read_failed)?;
        let ids: Vec<Uuid> = rows.iter().map(|row| row.node_id).collect();
        let loads = node_loads(state, &ids).await?;
        // One sample per node, grouped by cluster in the query's order.
        let mut groups: Vec<(SharedNode, Vec<Sample>)> = Vec::new();
        for (row, load) in rows.into_iter().zip(loads) {
            let sample = Sample {
                load,
                node: NetworkNode {
                    node_id: row.node_id.to_string(),
                    name: row.hostname.clone(),
                    node_type: "edge".into(),
                    latitude: row.latitude,
                    longitude: row.longitude,
                    status: String::new(),
                    cluster_id: row.cluster_id.to_string(),
                },
            };
            match groups.last_mut() {
                Some((first, samples)) if first.cluster_id == row.cluster_id => {
                    samples.push(sample)
                }
                _ => groups.push((row, vec![sample])),
            }
        }
        let mut clusters = Vec::with_capacity(groups.len());
        let mut nodes = Vec::new();
        for (row, samples) in groups {
            clusters.push(network_cluster(&row, &samples));
            nodes.extend(samples.into_iter().map(|sample| {
                let status = match (sample.load.live(), sample.load.healthy()) {
                    (false, _) => "offline",
                    (true, true) => "healthy",
                    (true, false) => "degraded",
                };
                NetworkNode {
                    status: status.into(),
                    ..sample.node
                }
            }));
        }
        let total = i32::try_from(nodes.len()).unwrap_or(i32::MAX);
        let healthy = i32::try_from(nodes.iter().filter(|n| n.status == "healthy").count())
            .unwrap_or(i32::MAX);
        Ok(Some(NetworkStatus {
            clusters,
            peer_connections: Vec::new(),
            nodes,
            service_instances: Vec::new(),
            total_nodes: total,
            healthy_nodes: healthy,
            updated_at: Time(Utc::now()),
        }))
    }
}

/// One node: its load, and its entry on the map.
#[derive(Debug)]
struct Sample {
    load: NodeLoad,
    node: NetworkNode,
}

/// A cluster's figures from its nodes' samples (never empty: the query
/// lists clusters through their nodes).
fn network_cluster(row: &SharedNode, samples: &[Sample]) -> NetworkCluster {
    let count = samples.len() as f64;
    let sum = |f: fn(&Sample) -> f64| samples.iter().map(f).sum::<f64>();
    let live = samples.iter().filter(|s| s.load.live()).count();
    let healthy = samples.iter().filter(|s| s.load.healthy()).count();
    let whole = |x: f64| x.round() as i32;
    NetworkCluster {
        cluster_id: row.cluster_id.to_string(),
        name: row.cluster_name.clone(),
        region: row.region.clone(),
        latitude: sum(|s| s.node.latitude) / count,
        longitude: sum(|s| s.node.longitude) / count,
        node_count: i32::try_from(samples.len()).unwrap_or(i32::MAX),
        healthy_node_count: i32::try_from(healthy).unwrap_or(i32::MAX),
        peer_count: 0,
        status: cluster_health(live, healthy).into(),
        cluster_type: "shared".into(),
        short_description: None,
        current_streams: whole(sum(|s| s.load.number("active_streams"))),
        current_viewers: whole(sum(|s| s.load.viewers as f64)),
        egress_mbps: whole(sum(|s| s.load.number("bandwidth_up_bps")) / 1_000_000.0),
        egress_capacity_mbps: row.max_bandwidth_mbps,
        ingress_mbps: whole(sum(|s| s.load.number("bandwidth_down_bps")) / 1_000_000.0),
        services: vec!["edge".into()],
    }
}
