//! Cluster and node queries: they read the control-plane read model and the
//! live state.

use super::*;

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
        let clusters = list(state(ctx)?, principal, Visible::Usable, page.as_ref()).await?;
        Ok(ClusterAccessConnection::new(clusters.map(|row| {
            ClusterAccess {
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
            }
        })))
    }

    /// The platform's shared clusters, which every tenant may use.
    async fn clusters_available_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<AvailableClustersConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let clusters = list(state(ctx)?, principal, Visible::Shared, page.as_ref()).await?;
        Ok(AvailableClustersConnection::new(clusters.map(|row| {
            AvailableCluster {
                cluster_id: row.id.to_string(),
                cluster_name: row.name,
                tiers: TIERS.iter().map(|&t| t.to_owned()).collect(),
                auto_enroll: true,
            }
        })))
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
            let empty = page_of(page.as_ref())?.finish(
                Vec::new(),
                |_: &InfrastructureNode| unreachable!("an empty page has no rows to place"),
                0,
            );
            return Ok(InfrastructureNodesConnection::new(empty));
        }
        let cluster = match cluster_id {
            None => None,
            Some(id) => match cluster_uuid(&id) {
                Some(uuid) => Some(uuid),
                None => return Err(bad_input("clusterId", "is not a cluster id")),
            },
        };
        nodes(state, principal, cluster, status, page.as_ref()).await
    }
}
