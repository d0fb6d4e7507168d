//! Marketplace mutations: cluster commands that answer from the read model
//! once it holds them.

use super::*;

#[derive(Debug, Default)]
pub struct MarketplaceMutation;

#[Object]
impl MarketplaceMutation {
    /// Asks to use another tenant's cluster. Public and unlisted clusters
    /// admit at once unless they require approval; an invite token admits
    /// to any cluster whose owner invited this tenant.
    async fn request_cluster_subscription(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        invite_token: Option<String>,
    ) -> async_graphql::Result<ClusterSubscriptionResult> {
        answer(ClusterSubscriptionResult::from, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            let cluster = cluster_uuid(&cluster_id.0)
                .ok_or_else(|| Refusal::not_found("cluster", &cluster_id.0))?;
            let command = MarketplaceCommand::RequestSubscription { invite_token };
            subscribed(ctx, state, principal, cluster, command).await
        })
        .await
    }

    /// Accepts an invite sent to this tenant: the subscription is active at once.
    async fn accept_cluster_invite(
        &self,
        ctx: &Context<'_>,
        invite_token: String,
    ) -> async_graphql::Result<ClusterSubscriptionResult> {
        answer(ClusterSubscriptionResult::from, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            let token = invite_token.trim();
            let cluster = cluster_of_invite_token(&state.bus, token)
                .await
                .map_err(|e| internal(&e))?
                .and_then(|id| id.parse::<Uuid>().ok())
                .ok_or_else(|| {
                    ValidationError::new("inviteToken", "is not an invite", Some("unknown"))
                })?;
            let command = MarketplaceCommand::RequestSubscription {
                invite_token: Some(token.to_owned()),
            };
            subscribed(ctx, state, principal, cluster, command).await
        })
        .await
    }

    async fn approve_cluster_subscription(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
    ) -> async_graphql::Result<ClusterSubscriptionResult> {
        decide_request(ctx, &subscription_id, |subscription_id| {
            MarketplaceCommand::ApproveSubscription { subscription_id }
        })
        .await
    }

    async fn reject_cluster_subscription(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
        reason: Option<String>,
    ) -> async_graphql::Result<ClusterSubscriptionResult> {
        decide_request(ctx, &subscription_id, |subscription_id| {
            MarketplaceCommand::RejectSubscription {
                subscription_id,
                reason: reason.unwrap_or_default(),
            }
        })
        .await
    }

    /// Subscribes to a cluster; true once the subscription is active or
    /// waiting for the owner's approval.
    async fn subscribe_to_cluster(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
    ) -> async_graphql::Result<bool> {
        let principal = require(ctx, Scope::InfrastructureWrite)?;
        let cluster = cluster_uuid(&cluster_id.0)
            .ok_or_else(|| bad_input("clusterId", "is not a cluster id"))?;
        let command = MarketplaceCommand::RequestSubscription { invite_token: None };
        run_plain(ctx, state(ctx)?, principal, cluster, command).await
    }

    /// Ends this tenant's subscription to a cluster.
    async fn unsubscribe_from_cluster(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
    ) -> async_graphql::Result<bool> {
        let principal = require(ctx, Scope::InfrastructureWrite)?;
        let cluster = cluster_uuid(&cluster_id.0)
            .ok_or_else(|| bad_input("clusterId", "is not a cluster id"))?;
        let command = MarketplaceCommand::CancelSubscription;
        run_plain(ctx, state(ctx)?, principal, cluster, command).await
    }

    /// Invites a tenant to one of this tenant's clusters.
    async fn create_cluster_invite(
        &self,
        ctx: &Context<'_>,
        input: CreateClusterInviteInput,
    ) -> async_graphql::Result<ClusterInviteResult> {
        answer(ClusterInviteResult::from, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            let cluster = cluster_uuid(&input.cluster_id.0)
                .ok_or_else(|| Refusal::not_found("cluster", &input.cluster_id.0))?;
            let not_a_tenant = |message: &str| {
                ValidationError::new("input.invitedTenantId", message.to_owned(), None)
            };
            let invited = ids::uuid("Tenant", &input.invited_tenant_id.0)
                .ok_or_else(|| not_a_tenant("is not a tenant id"))?;
            // Tenants live in another aggregate; the read model says whether one exists.
            if !accounts::tenant_exists(&state.pool, invited)
                .await
                .map_err(read_failed)?
            {
                return Err(not_a_tenant("names no tenant").into());
            }
            let command = invite_command(&input, invited).map_err(ExecuteError::Rejected)?;
            let invite_id = match run(ctx, state, principal, cluster, command).await? {
                ClusterOutcome::Invite { invite_id, .. } => invite_id,
                other => return Err(unexpected(&other).into()),
            };
            let read = match invite_id.parse::<Uuid>() {
                Ok(id) => read_model::invite(&state.pool, id).await,
                Err(_) => Ok(None),
            };
            let row = mutation::read_back(INVITE_TYPE, &invite_id, read)?;
            Ok(ClusterInviteResult::ClusterInvite(invite(row, Utc::now())))
        })
        .await
    }

    /// Withdraws an open invite.
    async fn revoke_cluster_invite(
        &self,
        ctx: &Context<'_>,
        invite_id: ID,
    ) -> async_graphql::Result<RevokeClusterInviteResult> {
        let missing = || {
            RevokeClusterInviteResult::NotFoundError(NotFoundError::new(
                "ClusterInvite",
                &invite_id.0,
            ))
        };
        let refuse = |refusal| match refusal {
            Refusal::Auth(e) => RevokeClusterInviteResult::AuthError(e),
            // Not the caller's, or already accepted or revoked: there is no
            // open invite of theirs to revoke.
            Refusal::NotFound(_) | Refusal::Validation(_) => missing(),
        };
        answer(refuse, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            let gone = || Refusal::not_found("ClusterInvite", &invite_id.0);
            let uuid = ids::uuid(INVITE_TYPE, &invite_id.0).ok_or_else(gone)?;
            // Only the owner's own invites are found, so others' do not leak.
            let cluster = read_model::cluster_of_invite(&state.pool, principal.tenant_id(), uuid)
                .await
                .map_err(read_failed)?
                .ok_or_else(gone)?;
            let revoke = ClusterCommand::Marketplace(MarketplaceCommand::RevokeInvite {
                invite_id: uuid.to_string(),
            });
            let id = cluster.to_string();
            command::<ClusterAggregate>(ctx, state, principal, &id, &revoke).await?;
            let waited = state
                .wait_until_projected(AggregateType::Cluster, &id)
                .await;
            Ok(RevokeClusterInviteResult::DeleteSuccess(DeleteSuccess {
                success: true,
                deleted_id: ids::global(INVITE_TYPE, &uuid.to_string()),
                pending: Some(mutation::pending(INVITE_TYPE, uuid, waited)),
            }))
        })
        .await
    }

    /// Changes how one of the tenant's clusters is offered.
    async fn update_cluster_marketplace(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        input: UpdateClusterMarketplaceInput,
    ) -> async_graphql::Result<UpdateClusterMarketplaceResult> {
        answer(UpdateClusterMarketplaceResult::from, async {
            let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
            let uuid = cluster_uuid(&cluster_id.0)
                .ok_or_else(|| Refusal::not_found("cluster", &cluster_id.0))?;
            let monthly_price_cents = input
                .monthly_price_cents
                .map(u32::try_from)
                .transpose()
                .map_err(|_| {
                    ValidationError::new("input.monthlyPriceCents", "must not be negative", None)
                })?;
            let command = MarketplaceCommand::Update {
                visibility: input.visibility.map(|v| match v {
                    ClusterVisibility::Public => Visibility::Public,
                    ClusterVisibility::Unlisted => Visibility::Unlisted,
                    ClusterVisibility::Private => Visibility::Private,
                }),
                pricing_model: input.pricing_model.map(|p| match p {
                    ClusterPricingModel::FreeUnmetered => PricingModel::FreeUnmetered,
                    ClusterPricingModel::Metered => PricingModel::Metered,
                    ClusterPricingModel::Monthly => PricingModel::Monthly,
                    ClusterPricingModel::TierInherit => PricingModel::TierInherit,
                    ClusterPricingModel::Custom => PricingModel::Custom,
                }),
                monthly_price_cents,
                requires_approval: input.requires_approval,
                short_description: input.short_description,
            };
            run(ctx, state, principal, uuid, command).await?;
            Ok(UpdateClusterMarketplaceResult::Cluster(Box::new(
                cluster_by_id(state, principal, uuid)
                    .await
                    .map_err(|e| accepted_cluster(uuid, &e))?,
            )))
        })
        .await
    }
}

/// The invite a `createClusterInvite` input asks for.
fn invite_command(
    input: &CreateClusterInviteInput,
    invited_tenant_id: Uuid,
) -> Result<MarketplaceCommand, CommandError> {
    let expires_in_days = match input.expires_in_days {
        None => DEFAULT_INVITE_DAYS,
        Some(days) => u32::try_from(days)
            .map_err(|_| CommandError::invalid("input.expiresInDays", "must be positive"))?,
    };
    Ok(MarketplaceCommand::CreateInvite {
        invited_tenant_id,
        access_level: input
            .access_level
            .as_deref()
            .map(|a| AccessLevel::parse("input.accessLevel", a))
            .transpose()?
            .unwrap_or(AccessLevel::Write),
        resource_limits: input
            .resource_limits
            .as_ref()
            .map(|l| ResourceLimits::from_json("input.resourceLimits", &l.0))
            .transpose()?
            .unwrap_or_default(),
        expires_in_days,
    })
}

fn unexpected(outcome: &ClusterOutcome) -> async_graphql::Error {
    internal(&std::io::Error::other(format!(
        "a marketplace command answered {outcome:?}"
    )))
}

/// [`mutation::accepted_not_visible`] for cluster `id`.
fn accepted_cluster(id: Uuid, cause: &dyn std::fmt::Debug) -> async_graphql::Error {
    let global = ids::global(CLUSTER_TYPE, &id.to_string());
    mutation::accepted_not_visible(CLUSTER_TYPE, &global, cause)
}

/// Runs a marketplace command on a cluster as the caller and, once it is
/// accepted, waits until the read model holds it.
async fn run(
    ctx: &Context<'_>,
    state: &BridgeState,
    principal: &Principal,
    cluster: Uuid,
    marketplace: MarketplaceCommand,
) -> Result<ClusterOutcome, Stop> {
    let id = cluster.to_string();
    let outcome = command::<ClusterAggregate>(
        ctx,
        state,
        principal,
        &id,
        &ClusterCommand::Marketplace(marketplace),
    )
    .await?;
    projected(state, cluster).await?;
    Ok(outcome)
}

/// [`run`] for the Boolean mutations, which have no union to refuse with:
/// a refusal is an error at the field, coded by the error table.
async fn run_plain(
    ctx: &Context<'_>,
    state: &BridgeState,
    principal: &Principal,
    cluster: Uuid,
    marketplace: MarketplaceCommand,
) -> async_graphql::Result<bool> {
    let id = cluster.to_string();
    state
        .bus
        .execute::<ClusterAggregate>(
            &id,
            &ClusterCommand::Marketplace(marketplace),
            &principal.command_context(),
            mutation::next_key(ctx).as_ref(),
        )
        .await
        .map_err(|error| match error {
            ExecuteError::Rejected(refusal) => rejected(&refusal),
            other => internal(&other),
        })?;
    projected(state, cluster).await?;
    Ok(true)
}

/// Waits until the read model holds what was just done to cluster `id`.
async fn projected(state: &BridgeState, id: Uuid) -> async_graphql::Result<()> {
    state
        .wait_until_projected(AggregateType::Cluster, &id.to_string())
        .await
        .map_err(|e| accepted_cluster(id, &e))
}

/// Runs a command that answers with a subscription, and that subscription
/// from the read model.
async fn subscribed(
    ctx: &Context<'_>,
    state: &BridgeState,
    principal: &Principal,
    cluster: Uuid,
    marketplace: MarketplaceCommand,
) -> Result<ClusterSubscriptionResult, Stop> {
    let subscription_id = match run(ctx, state, principal, cluster, marketplace).await? {
        ClusterOutcome::Subscription { subscription_id } => subscription_id,
        other => return Err(unexpected(&other).into()),
    };
    let read = match subscription_id.parse::<Uuid>() {
        Ok(id) => read_model::subscription(&state.pool, id).await,
        Err(_) => Ok(None),
    };
    let row = mutation::read_back(SUBSCRIPTION_TYPE, &subscription_id, read)?;
    Ok(ClusterSubscriptionResult::ClusterSubscription(
        subscription(row),
    ))
}

/// Approves or rejects a request on one of the caller's clusters.
async fn decide_request(
    ctx: &Context<'_>,
    subscription_id: &ID,
    decide: impl FnOnce(String) -> MarketplaceCommand,
) -> async_graphql::Result<ClusterSubscriptionResult> {
    answer(ClusterSubscriptionResult::from, async {
        let (principal, state) = caller(ctx, Scope::InfrastructureWrite)?;
        let missing = || Refusal::not_found("ClusterSubscription", &subscription_id.0);
        let uuid = ids::uuid(SUBSCRIPTION_TYPE, &subscription_id.0).ok_or_else(missing)?;
        // Only requests on the caller's own clusters are found.
        let cluster = read_model::cluster_of_subscription(&state.pool, principal.tenant_id(), uuid)
            .await
            .map_err(read_failed)?
            .ok_or_else(missing)?;
        subscribed(ctx, state, principal, cluster, decide(uuid.to_string())).await
    })
    .await
}
