//! The public GraphQL schema, as the `livepeer-frameworks` client speaks it.
//!
//! - [`server_info`]: `serverInfo`, open to anonymous callers;
//! - [`streams`]: streams and stream keys;
//! - [`playback_policies`]: `setPlaybackPolicy`, who may watch;
//! - [`developer_tokens`]: API tokens;
//! - [`signing_keys`]: playback signing keys;
//! - [`clusters`]: clusters, their nodes (with their modes), enrolment
//!   tokens and the tenant's preferred cluster;
//! - [`node_metrics`]: a node's load samples and hourly summaries (ClickHouse);
//! - [`global_node`]: Relay's `node(id)`;
//! - [`services`]: the services the tenant's nodes run (discovery, health);
//! - [`marketplace`]: cluster offers, subscriptions and invites;
//! - [`edge_bootstrap`]: createEdgeCluster and bootstrapEdge (public);
//! - [`network_status`]: the public map of the shared clusters;
//! - [`endpoints`]: `resolveViewerEndpoint` and `resolveIngestEndpoint`
//!   (public), routed as the balancer routes;
//! - [`live`]: subscriptions fed from Kafka;
//! - [`tenant_events`]: `tenantEvents`, the tenant's public events;
//! - [`connection`], [`errors`], [`ids`], [`scalars`]: the contract's
//!   conventions (Relay paging, result unions, global ids, `Time`).
//!
//! Queries read the read models; mutations run commands and answer from the
//! read model once it holds their effect.

pub mod clusters;
pub mod connection;
pub mod developer_tokens;
mod documents;
pub mod edge_bootstrap;
pub mod endpoints;
pub mod errors;
pub mod executor;
pub mod global_node;
pub mod ids;
pub mod live;
pub mod marketplace;
pub mod mutation;
pub mod network_status;
mod node_load;
pub mod node_metrics;
pub mod playback_policies;
pub mod scalars;
pub mod server_info;
pub mod services;
pub mod signing_keys;
pub mod streams;
pub mod tenant_events;

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, MergedObject, MergedSubscription, Schema};

use crate::auth::{Principal, Scope};
use crate::state::BridgeState;
use errors::{AuthError, forbidden};

/// Queries deeper than this are refused before they run. The standard
/// introspection query (graphql-js's and graphql-core's, with their default
/// type depth of 9, which GraphiQL and code generators send) is 15 deep: it
/// passes this bound, as it passes the complexity one, rather than being
/// exempt from either.
pub const MAX_DEPTH: usize = 15;
/// Queries more complex than this (one per field, times list sizes) are refused before they run.
pub const MAX_COMPLEXITY: usize = 1000;

#[derive(Debug, Default, MergedObject)]
pub struct Query(
    server_info::ServerInfoQuery,
    streams::StreamQuery,
    developer_tokens::DeveloperTokenQuery,
    signing_keys::SigningKeyQuery,
    clusters::ClusterQuery,
    marketplace::MarketplaceQuery,
    network_status::NetworkStatusQuery,
    endpoints::EndpointQuery,
    global_node::NodeQuery,
    services::ServiceQuery,
);

#[derive(Debug, Default, MergedObject)]
pub struct Mutation(
    streams::StreamMutation,
    developer_tokens::DeveloperTokenMutation,
    signing_keys::SigningKeyMutation,
    clusters::ClusterMutation,
    marketplace::MarketplaceMutation,
    edge_bootstrap::EdgeBootstrapMutation,
    playback_policies::PlaybackPolicyMutation,
);

#[derive(Debug, Default, MergedSubscription)]
pub struct Subscription(
    live::LiveSubscription,
    tenant_events::TenantEventSubscription,
);

pub type BridgeSchema = Schema<Query, Mutation, Subscription>;

/// The schema, without data: enough to print the SDL.
pub fn schema_builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    // No field returns the interface itself; registering it makes every
    // error member declare `implements Error`.
    .register_output_type::<errors::ErrorInterface>()
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    // No extensions: errors are coded on the response (`errors::code`),
    // which keeps async-graphql on its fast path for every field.
}

pub fn build(state: Arc<BridgeState>) -> BridgeSchema {
    schema_builder().data(state).finish()
}

/// The schema in SDL, as snapshotted under `schemas/graphql`.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

/// The authenticated caller (the HTTP layer lets anonymous requests reach
/// public fields only).
pub fn principal<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Principal> {
    ctx.data_opt::<Principal>().ok_or_else(|| {
        async_graphql::Error::new("authentication required")
            .extend_with(|_, e| e.set("code", "UNAUTHORIZED"))
    })
}

/// The caller, who must hold `scope` (a top-level FORBIDDEN error otherwise).
pub fn require<'a>(ctx: &Context<'a>, scope: Scope) -> async_graphql::Result<&'a Principal> {
    let principal = principal(ctx)?;
    if principal.allows(scope) {
        Ok(principal)
    } else {
        Err(forbidden(scope))
    }
}

/// The caller of a mutation, or the AuthError member it answers.
pub fn require_for_mutation<'a>(
    ctx: &Context<'a>,
    scope: Scope,
) -> Result<&'a Principal, AuthError> {
    match principal(ctx) {
        Ok(principal) if principal.allows(scope) => Ok(principal),
        Ok(_) => Err(AuthError::missing_scope(scope)),
        Err(_) => Err(AuthError {
            message: "authentication required".into(),
            code: Some("UNAUTHORIZED".into()),
        }),
    }
}

pub fn state<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a BridgeState> {
    ctx.data::<Arc<BridgeState>>().map(Arc::as_ref)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The snapshot is read at run time: the target dir may be shared by clones.
    fn snapshot_path() -> PathBuf {
        let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        crate_dir.join("../../schemas/graphql/schema.graphql")
    }

    /// Every schema change shows up in review as a change of the snapshot.
    /// After an intended change: `FRAMEWORKS_UPDATE_SDL=1 cargo test -p frameworks-bridge sdl`.
    #[test]
    fn the_sdl_matches_its_snapshot() {
        let sdl = super::sdl();
        let path = snapshot_path();
        if std::env::var_os("FRAMEWORKS_UPDATE_SDL").is_some() {
            std::fs::write(&path, &sdl).expect("writing the SDL snapshot");
        }
        let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            snapshot == sdl,
            "the schema differs from {}; review the change and run with FRAMEWORKS_UPDATE_SDL=1",
            path.display()
        );
    }
}
