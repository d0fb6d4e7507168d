//! Cluster and node mutations: enrolment tokens, node modes and the
//! preferred cluster.

use super::*;

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
            Ok(CreateEnrollmentTokenResult::CreateEnrollmentTokenResponse(
                CreateEnrollmentTokenResponse {
                    bootstrap_token: issue_enrolment_token(
                        ctx,
                        state,
                        principal,
                        &uuid.to_string(),
                        &issue,
                    )
                    .await?,
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
            command::<NodeAggregate>(ctx, state, principal, &node_id, &set).await?;
            state
                .wait_until_projected(AggregateType::Node, &node_id)
                .await
                .map_err(|e| mutation::accepted_not_visible(NODE_TYPE, &input.node_id, &e))?;
            let read = node_by_id(state, principal, id).await;
            let node = mutation::read_back(NODE_TYPE, &input.node_id, read)?;
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
            let unreadable = |cause: &dyn std::fmt::Debug| {
                mutation::accepted_not_visible(CLUSTER_TYPE, &cluster_id.0, cause)
            };
            state
                .wait_until_projected(AggregateType::Tenant, &tenant.to_string())
                .await
                .map_err(|e| unreadable(&e))?;
            Ok(SetPreferredClusterResult::Cluster(Box::new(
                cluster_by_id(state, principal, uuid)
                    .await
                    .map_err(|e| unreadable(&e))?,
            )))
        })
        .await
    }
}

/// Issues an enrolment token on cluster `id` and answers it, with its
/// secret, once the read model holds it.
pub(in crate::graphql) async fn issue_enrolment_token(
    ctx: &Context<'_>,
    state: &BridgeState,
    principal: &Principal,
    id: &str,
    issue: &ClusterCommand,
) -> Result<BootstrapToken, Stop> {
    let outcome = command::<ClusterAggregate>(ctx, state, principal, id, issue).await?;
    let (token_id, token) = match outcome {
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
    // The secret is in this answer only: repeating the request with the
    // same Idempotency-Key answers it again.
    let unreadable = |cause: &dyn std::fmt::Debug| {
        mutation::accepted_not_visible("BootstrapToken", &token_id, cause)
    };
    state
        .wait_until_projected(AggregateType::Cluster, id)
        .await
        .map_err(|e| unreadable(&e))?;
    Ok(bootstrap_token(state, &token_id, token)
        .await
        .map_err(|e| unreadable(&e))?)
}
