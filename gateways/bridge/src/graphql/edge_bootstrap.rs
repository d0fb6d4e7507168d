//! Bringing up edges: `createEdgeCluster` makes a tenant's own cluster with
//! its first enrolment token, and `bootstrapEdge` (public: the token is the
//! credential) reserves a node id for the machine holding a token and tells
//! it its domains and the balancer it joins. The token is spent only when the
//! edge daemon enrols over the balancer's control stream, as the reserved node.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Union};
use frameworks_commands::CommandContext;
use frameworks_commands::aggregates::infrastructure::{
    Cluster as ClusterAggregate, ClusterCommand, pre_register_edge,
};
use frameworks_commands::aggregates::marketplace::MarketplaceCommand;
use uuid::Uuid;

use super::clusters::{
    BootstrapToken, CLUSTER_TYPE, Cluster, cluster_by_id, cluster_uuid, issue_enrolment_token,
};
use super::connection::read_failed;
use super::errors::{AuthError, Refusal, ValidationError, internal};
use super::ids;
use super::mutation::{self, answer, caller, command};
use super::state;
use crate::auth::Scope;
use crate::state::BridgeState;

/// How long the first enrolment token of a new edge cluster lives.
const FIRST_TOKEN_TTL_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Clone, InputObject)]
pub struct CreateEdgeClusterInput {
    pub cluster_name: String,
    pub short_description: Option<String>,
    /// A platform cluster whose region the new cluster joins.
    pub control_cluster_id: Option<ID>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct CreateEdgeClusterResponse {
    pub cluster: Cluster,
    pub bootstrap_token: BootstrapToken,
    /// The balancer's gRPC address the cluster's edges connect to.
    pub foghorn_addr: String,
}

#[derive(Debug, Clone, Union)]
pub enum CreateEdgeClusterResult {
    CreateEdgeClusterResponse(Box<CreateEdgeClusterResponse>),
    ValidationError(ValidationError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, InputObject)]
pub struct BootstrapEdgeInput {
    /// An enrolment token from createEdgeCluster or createEnrollmentToken.
    pub token: String,
    pub external_ip: Option<String>,
    /// The node id the edge would like; used when it is a free UUID.
    pub preferred_node_id: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct EdgeTelemetry {
    pub enabled: bool,
    pub write_url: Option<String>,
    pub bearer_token: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct BootstrapEdgeResponse {
    pub node_id: String,
    /// This node's own name: `<node>.<cluster slug>.<edge domain>`.
    pub edge_domain: String,
    /// The cluster's name, which every node of it answers: `<slug>.<edge domain>`.
    pub pool_domain: Option<String>,
    pub cluster_slug: String,
    pub cluster_id: String,
    pub foghorn_grpc_addr: String,
    /// Certificates are not issued here yet: the edge brings its own TLS.
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    pub internal_ca_bundle: Option<String>,
    /// Edges report metrics over their control stream, not by remote write.
    pub telemetry: Option<EdgeTelemetry>,
}

#[derive(Debug, Clone, Union)]
pub enum BootstrapEdgeResult {
    BootstrapEdgeResponse(BootstrapEdgeResponse),
    ValidationError(ValidationError),
    AuthError(AuthError),
}

/// The DNS label of a cluster or node id: the random tail of its UUID.
fn dns_label(prefix: char, id: Uuid) -> String {
    let hex = id.simple().to_string();
    format!("{prefix}{}", &hex[hex.len() - 12..])
}

#[derive(Debug, Default)]
pub struct EdgeBootstrapMutation;

#[Object]
impl EdgeBootstrapMutation {
    /// Creates a cluster of the tenant's own edges, private until offered,
    /// with a first enrolment token (valid 24 hours) and the balancer's address.
    async fn create_edge_cluster(
        &self,
        ctx: &Context<'_>,
        input: CreateEdgeClusterInput,
    ) -> async_graphql::Result<CreateEdgeClusterResult> {
        let refuse =
            |refusal| match refusal {
                Refusal::Validation(e) => CreateEdgeClusterResult::ValidationError(e),
                Refusal::Auth(e) => CreateEdgeClusterResult::AuthError(e),
                Refusal::NotFound(e) => CreateEdgeClusterResult::ValidationError(
                    ValidationError::new("input", e.message, Some("not_found")),
                ),
            };
        answer(refuse, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            let region = match &input.control_cluster_id {
                None => state.edges.region.clone(),
                Some(id) => control_region(state, id).await?.ok_or_else(|| {
                    ValidationError::new(
                        "input.controlClusterId",
                        "names no platform cluster",
                        Some("not_found"),
                    )
                })?,
            };
            let uuid = mutation::new_id(ctx, principal);
            let id = uuid.to_string();
            let slug = dns_label('c', uuid);
            let create = ClusterCommand::Create {
                name: input.cluster_name,
                region,
                base_url: format!("https://{slug}.{}/", state.edges.domain),
                shared: false,
                capacity: state.edges.capacity,
            };
            command::<ClusterAggregate>(ctx, state, principal, &id, &create).await?;
            // The cluster exists from here on; a failure below leaves it for the
            // tenant to finish with updateClusterMarketplace or createEnrollmentToken.
            if let Some(description) = input.short_description {
                let offer = ClusterCommand::Marketplace(MarketplaceCommand::Update {
                    visibility: None,
                    pricing_model: None,
                    monthly_price_cents: None,
                    requires_approval: None,
                    short_description: Some(description),
                });
                command::<ClusterAggregate>(ctx, state, principal, &id, &offer).await?;
            }
            let issue = ClusterCommand::IssueEnrolmentToken {
                ttl_seconds: FIRST_TOKEN_TTL_SECONDS,
                name: "first edge".into(),
            };
            let bootstrap_token = issue_enrolment_token(ctx, state, principal, &id, &issue).await?;
            Ok(CreateEdgeClusterResult::CreateEdgeClusterResponse(
                Box::new(CreateEdgeClusterResponse {
                    cluster: cluster_by_id(state, principal, uuid).await.map_err(|e| {
                        let global = ids::global(CLUSTER_TYPE, &id);
                        mutation::accepted_not_visible(CLUSTER_TYPE, &global, &e)
                    })?,
                    bootstrap_token,
                    foghorn_addr: state.edges.balancer_grpc_addr.clone(),
                }),
            ))
        })
        .await
    }

    /// Public: reserves the node id for the edge holding `token` and answers
    /// what it needs to join. Asking again with the same token gives the same
    /// node; the token stays valid until the edge enrols.
    async fn bootstrap_edge(
        &self,
        ctx: &Context<'_>,
        input: BootstrapEdgeInput,
    ) -> async_graphql::Result<BootstrapEdgeResult> {
        let state = state(ctx)?;
        let preferred = input
            .preferred_node_id
            .as_deref()
            .and_then(|id| id.trim().parse::<Uuid>().ok());
        let edge_ctx = CommandContext::anonymous("edge:bootstrap");
        let (cluster_id, node_id) = match pre_register_edge(
            &state.bus,
            input.token.trim(),
            preferred,
            input.external_ip,
            &edge_ctx,
        )
        .await
        {
            Ok(reserved) => reserved,
            Err(error) => {
                return Ok(match Refusal::of(error)? {
                    Refusal::Validation(e) => BootstrapEdgeResult::ValidationError(e),
                    Refusal::Auth(e) => BootstrapEdgeResult::AuthError(e),
                    Refusal::NotFound(e) => BootstrapEdgeResult::AuthError(AuthError {
                        message: e.message,
                        code: Some("UNAUTHORIZED".into()),
                    }),
                });
            }
        };
        let (Ok(cluster), Ok(node)) = (cluster_id.parse::<Uuid>(), node_id.parse::<Uuid>()) else {
            return Err(internal(&std::io::Error::other(
                "a reserved node or its cluster has a non-UUID id",
            )));
        };
        let slug = dns_label('c', cluster);
        let pool_domain = format!("{slug}.{}", state.edges.domain);
        Ok(BootstrapEdgeResult::BootstrapEdgeResponse(
            BootstrapEdgeResponse {
                edge_domain: format!("{}.{pool_domain}", dns_label('n', node)),
                pool_domain: Some(pool_domain),
                cluster_slug: slug,
                cluster_id,
                node_id,
                foghorn_grpc_addr: state.edges.balancer_grpc_addr.clone(),
                cert_pem: None,
                key_pem: None,
                internal_ca_bundle: None,
                telemetry: Some(EdgeTelemetry {
                    enabled: false,
                    write_url: None,
                    bearer_token: None,
                }),
            },
        ))
    }
}

/// The region of a platform cluster named as an edge cluster's control cell.
async fn control_region(state: &BridgeState, id: &ID) -> async_graphql::Result<Option<String>> {
    let Some(uuid) = cluster_uuid(&id.0) else {
        return Ok(None);
    };
    frameworks_projections::queries::clusters::shared_region(&state.pool, uuid)
        .await
        .map_err(read_failed)
}
