//! Relay's `node(id)`: any object with a global id, fetched by it. A raw
//! UUID is tried as a node, a stream and a cluster, in that order (UUIDs do
//! not collide across them); each kind needs its own read scope.

use async_graphql::{Context, ID, Interface, Object};

use super::clusters::{self, Cluster, InfrastructureNode};
use super::streams::{self, Stream};
use super::{principal, state};
use crate::auth::Scope;

/// An object fetchable by its global id.
#[derive(Debug, Interface)]
#[graphql(field(name = "id", ty = "ID"))]
#[allow(clippy::large_enum_variant)]
pub enum Node {
    InfrastructureNode(InfrastructureNode),
    Stream(Stream),
    Cluster(Cluster),
}

#[derive(Debug, Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Fetch a single node by its global ID (or raw UUID): an
    /// InfrastructureNode, Stream or Cluster the caller may see.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let principal = principal(ctx)?;
        let state = state(ctx)?;
        if principal.allows(Scope::InfrastructureRead)
            && let Some(uuid) = clusters::node_uuid(&id.0)
            && let Some(node) = clusters::node_by_id(state, principal, uuid).await?
        {
            return Ok(Some(Node::InfrastructureNode(node)));
        }
        if principal.allows(Scope::StreamsRead)
            && let Some(stream) = streams::stream_by_id(state, principal, &id).await?
        {
            return Ok(Some(Node::Stream(stream)));
        }
        if principal.allows(Scope::InfrastructureRead)
            && let Some(cluster) = clusters::usable_cluster(state, principal, &id.0).await?
        {
            return Ok(Some(Node::Cluster(cluster)));
        }
        Ok(None)
    }
}
