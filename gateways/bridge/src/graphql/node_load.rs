//! What the Redis live state says about edge nodes, for the cluster and
//! network views: one batched read, and one reading of health.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::connection::read_failed;
use super::errors::internal;
use crate::state::BridgeState;

/// A node's live fields and viewer count; empty for a node that fell silent.
#[derive(Debug, Clone, Default)]
pub struct NodeLoad {
    fields: BTreeMap<String, String>,
    pub viewers: usize,
}

impl NodeLoad {
    /// Whether the node reported within the live-state TTL.
    pub fn live(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Live, with MistServer answering (metrics before the first heartbeat count as healthy).
    pub fn healthy(&self) -> bool {
        self.live() && self.fields.get("mist_healthy").is_none_or(|h| h == "true")
    }

    /// A numeric field of its last report (0 when absent).
    pub fn number(&self, name: &str) -> f64 {
        self.fields
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn last_seen(&self) -> Option<DateTime<Utc>> {
        self.fields
            .get("last_seen_ms")
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis)
    }
}

/// The nodes' loads, in their order, in one round trip.
pub async fn node_loads(
    state: &BridgeState,
    nodes: &[Uuid],
) -> async_graphql::Result<Vec<NodeLoad>> {
    let ids: Vec<String> = nodes.iter().map(Uuid::to_string).collect();
    let loads = state
        .live
        .node_loads(&ids)
        .await
        .map_err(|e| internal(&e))?;
    Ok(loads
        .into_iter()
        .map(|(fields, viewers)| NodeLoad { fields, viewers })
        .collect())
}

/// The loads of each cluster's enrolled nodes: one query and one Redis
/// round trip for all the clusters.
pub async fn cluster_loads(
    state: &BridgeState,
    clusters: &[Uuid],
) -> async_graphql::Result<HashMap<Uuid, Vec<NodeLoad>>> {
    let nodes = frameworks_projections::queries::clusters::nodes_of(&state.pool, clusters)
        .await
        .map_err(read_failed)?;
    let ids: Vec<Uuid> = nodes.iter().map(|(_, node)| *node).collect();
    let mut by_cluster: HashMap<Uuid, Vec<NodeLoad>> = HashMap::new();
    for ((cluster, _), load) in nodes.iter().zip(node_loads(state, &ids).await?) {
        by_cluster.entry(*cluster).or_default().push(load);
    }
    Ok(by_cluster)
}

/// A cluster's health from its nodes: `healthy` (every live node healthy),
/// `degraded` (some not) or `critical` (no live node).
pub fn cluster_health(live: usize, healthy: usize) -> &'static str {
    match (live, healthy) {
        (0, _) => "critical",
        (live, healthy) if live == healthy => "healthy",
        _ => "degraded",
    }
}
