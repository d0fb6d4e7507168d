//! The cluster marketplace: how clusters are offered to other tenants, the
//! subscriptions that let a tenant use another's cluster, and invites.
//! The rules live in `frameworks_commands::aggregates::marketplace`; this
//! module speaks the client's operations.

use std::collections::{HashMap, HashSet};

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject, Union};
use chrono::{DateTime, Utc};
use frameworks_commands::aggregates::infrastructure::{
    Cluster as ClusterAggregate, ClusterCommand, ClusterOutcome,
};
use frameworks_commands::aggregates::marketplace::{
    AccessLevel, DEFAULT_INVITE_DAYS, MarketplaceCommand, PricingModel, ResourceLimits, Visibility,
    cluster_of_invite_token,
};
use frameworks_commands::{CommandError, ExecuteError};
use frameworks_events::AggregateType;
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use super::clusters::{
    Cluster, ClusterPricingModel, ClusterRow, ClusterVisibility, ClustersConnection, Visible,
    cluster_by_id, cluster_uuid, clusters_page,
};
use super::connection::{ConnectionInput, Listing, Page, Position, connection};
use super::errors::{
    AuthError, DeleteSuccess, NotFoundError, Refusal, ValidationError, internal, refused,
};
use super::ids;
use super::node_load::{NodeLoad, cluster_loads};
use super::scalars::Time;
use super::{require, require_for_mutation, state};
use crate::auth::{Principal, Scope};
use crate::state::BridgeState;

const SUBSCRIPTION_TYPE: &str = "ClusterSubscription";
const INVITE_TYPE: &str = "ClusterInvite";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ClusterSubscriptionStatus {
    PendingApproval,
    Active,
    Suspended,
    Rejected,
}

impl ClusterSubscriptionStatus {
    fn from_column(value: &str) -> Option<Self> {
        match value {
            "PENDING_APPROVAL" => Some(Self::PendingApproval),
            "ACTIVE" => Some(Self::Active),
            "SUSPENDED" => Some(Self::Suspended),
            "REJECTED" => Some(Self::Rejected),
            // Cancelled subscriptions are history, not a status.
            _ => None,
        }
    }
}

/// A cluster as the marketplace shows it to a prospective subscriber.
#[derive(Debug, Clone, SimpleObject)]
pub struct MarketplaceCluster {
    pub cluster_id: String,
    pub cluster_name: String,
    pub short_description: Option<String>,
    pub visibility: ClusterVisibility,
    pub pricing_model: ClusterPricingModel,
    pub monthly_price_cents: Option<i32>,
    pub requires_approval: bool,
    pub owner_name: Option<String>,
    pub max_concurrent_streams: i32,
    pub max_concurrent_viewers: i32,
    /// Live streams on its nodes over its stream capacity (0 to 1), while
    /// any node reports.
    pub current_utilization: Option<f64>,
    pub is_subscribed: bool,
    pub subscription_status: Option<ClusterSubscriptionStatus>,
    /// Whether the tenant can subscribe.
    pub is_eligible: bool,
    /// Why not, when it cannot.
    pub denial_reason: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct ClusterSubscription {
    pub id: ID,
    pub tenant_id: String,
    pub cluster_id: String,
    pub access_level: String,
    pub subscription_status: ClusterSubscriptionStatus,
    pub resource_limits: Option<Json<serde_json::Value>>,
    pub requested_at: Option<Time>,
    pub approved_at: Option<Time>,
    pub approved_by: Option<String>,
    pub rejection_reason: Option<String>,
    /// Subscriptions do not expire on this platform: always null.
    pub expires_at: Option<Time>,
    pub created_at: Time,
    pub updated_at: Time,
    pub cluster_name: Option<String>,
    pub tenant_name: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct ClusterInvite {
    pub id: ID,
    pub cluster_id: String,
    pub invited_tenant_id: String,
    /// What the invited tenant accepts with; shown while the invite is open.
    pub invite_token: Option<String>,
    pub access_level: String,
    pub resource_limits: Option<Json<serde_json::Value>>,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    pub created_by: String,
    pub created_at: Time,
    pub expires_at: Option<Time>,
    pub accepted_at: Option<Time>,
    pub invited_tenant_name: Option<String>,
    pub cluster_name: Option<String>,
}

connection!(
    MarketplaceClustersConnection,
    MarketplaceClusterEdge,
    MarketplaceCluster
);
connection!(
    ClusterSubscriptionsConnection,
    ClusterSubscriptionEdge,
    ClusterSubscription
);
connection!(ClusterInvitesConnection, ClusterInviteEdge, ClusterInvite);

#[derive(Debug, Clone, InputObject)]
pub struct CreateClusterInviteInput {
    pub cluster_id: ID,
    pub invited_tenant_id: ID,
    /// `read`, `write` (the default) or `admin`.
    pub access_level: Option<String>,
    /// `{"maxConcurrentStreams": n, "maxConcurrentViewers": n, "maxBandwidthMbps": n}`, each optional.
    pub resource_limits: Option<Json<serde_json::Value>>,
    /// Days until the invite expires (default 7, at most 365).
    pub expires_in_days: Option<i32>,
}

#[derive(Debug, Clone, InputObject)]
pub struct UpdateClusterMarketplaceInput {
    pub visibility: Option<ClusterVisibility>,
    pub pricing_model: Option<ClusterPricingModel>,
    pub monthly_price_cents: Option<i32>,
    pub requires_approval: Option<bool>,
    pub short_description: Option<String>,
}

#[derive(Debug, Clone, Union)]
pub enum ClusterSubscriptionResult {
    ClusterSubscription(ClusterSubscription),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum ClusterInviteResult {
    ClusterInvite(ClusterInvite),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum RevokeClusterInviteResult {
    DeleteSuccess(DeleteSuccess),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum UpdateClusterMarketplaceResult {
    Cluster(Box<Cluster>),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Default)]
pub struct MarketplaceQuery;

#[Object]
impl MarketplaceQuery {
    /// One cluster as offered: public and unlisted ones, and private ones
    /// the tenant owns, is invited to or subscribed to.
    async fn marketplace_cluster(
        &self,
        ctx: &Context<'_>,
        cluster_id: String,
    ) -> async_graphql::Result<Option<MarketplaceCluster>> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let Some(uuid) = cluster_uuid(&cluster_id) else {
            return Ok(None);
        };
        let state = state(ctx)?;
        let row: Option<OfferRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {OFFER_COLUMNS} FROM {OFFER_FROM}
             WHERE c.id = $1 AND (c.visibility IN ('PUBLIC', 'UNLISTED') OR c.tenant_id = $2
                   OR EXISTS (SELECT 1 FROM read_models.rm_cluster_subscriptions s
                              WHERE s.cluster_id = c.id AND s.tenant_id = $2 AND s.status <> 'CANCELLED')
                   OR EXISTS (SELECT 1 FROM read_models.rm_cluster_invites i
                              WHERE i.cluster_id = c.id AND i.invited_tenant_id = $2 AND i.status = 'pending'))"
        )))
        .bind(uuid)
        .bind(principal.tenant_id())
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| internal(&e))?;
        match row {
            Some(row) => Ok(offers(state, principal, vec![row]).await?.pop()),
            None => Ok(None),
        }
    }

    /// The public offers of the platform and of other tenants, newest first.
    async fn marketplace_clusters_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<MarketplaceClustersConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let state = state(ctx)?;
        let page = Page::from_input(page.as_ref())?;
        let listing = Listing {
            from: OFFER_FROM,
            columns: OFFER_COLUMNS,
            created_at: "c.created_at",
            id: "c.id",
        };
        let filter = |query: &mut QueryBuilder<Postgres>| {
            query
                .push(" WHERE c.visibility = 'PUBLIC' AND c.tenant_id IS DISTINCT FROM ")
                .push_bind(principal.tenant_id());
        };
        let (rows, info, total) = page
            .fetch(&state.pool, listing, filter, |row: &OfferRow| Position {
                created_at: row.cluster.created_at,
                id: row.cluster.id.to_string(),
            })
            .await?;
        let (cursors, rows): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
        let offers = offers(state, principal, rows).await?;
        Ok(MarketplaceClustersConnection::new(
            cursors.into_iter().zip(offers).collect(),
            info,
            total,
        ))
    }

    /// Other tenants' clusters this tenant holds an active subscription to.
    async fn my_subscriptions_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<ClustersConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        clusters_page(state(ctx)?, principal, Visible::Subscribed, page.as_ref()).await
    }

    /// Requests waiting for approval on one of the tenant's own clusters
    /// (empty for any other cluster).
    async fn pending_subscriptions_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        cluster_id: ID,
    ) -> async_graphql::Result<ClusterSubscriptionsConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let cluster = cluster_uuid(&cluster_id.0);
        let (edges, info, total) = subscriptions(
            state(ctx)?,
            page.as_ref(),
            |query: &mut QueryBuilder<Postgres>| {
                query
                    .push(" WHERE s.status = 'PENDING_APPROVAL' AND s.cluster_id = ")
                    .push_bind(cluster)
                    .push(" AND c.tenant_id = ")
                    .push_bind(principal.tenant_id());
            },
        )
        .await?;
        Ok(ClusterSubscriptionsConnection::new(edges, info, total))
    }

    /// The invites made on one of the tenant's own clusters (empty for any other).
    async fn cluster_invites_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        cluster_id: ID,
    ) -> async_graphql::Result<ClusterInvitesConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let cluster = cluster_uuid(&cluster_id.0);
        let (edges, info, total) = invites(
            state(ctx)?,
            page.as_ref(),
            |query: &mut QueryBuilder<Postgres>| {
                query
                    .push(" WHERE i.cluster_id = ")
                    .push_bind(cluster)
                    .push(" AND c.tenant_id = ")
                    .push_bind(principal.tenant_id());
            },
        )
        .await?;
        Ok(ClusterInvitesConnection::new(edges, info, total))
    }

    /// The invites other tenants sent to this one.
    async fn my_cluster_invites_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<ClusterInvitesConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let (edges, info, total) = invites(
            state(ctx)?,
            page.as_ref(),
            |query: &mut QueryBuilder<Postgres>| {
                query
                    .push(" WHERE i.invited_tenant_id = ")
                    .push_bind(principal.tenant_id());
            },
        )
        .await?;
        Ok(ClusterInvitesConnection::new(edges, info, total))
    }
}

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
        let principal = match require_for_mutation(ctx, Scope::InfrastructureWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(ClusterSubscriptionResult::AuthError(refusal)),
        };
        let Some(cluster) = cluster_uuid(&cluster_id.0) else {
            return Ok(ClusterSubscriptionResult::NotFoundError(
                NotFoundError::new("cluster", &cluster_id.0),
            ));
        };
        let command = MarketplaceCommand::RequestSubscription { invite_token };
        subscription_result(state(ctx)?, principal, cluster, command).await
    }

    /// Accepts an invite sent to this tenant: the subscription is active at once.
    async fn accept_cluster_invite(
        &self,
        ctx: &Context<'_>,
        invite_token: String,
    ) -> async_graphql::Result<ClusterSubscriptionResult> {
        let principal = match require_for_mutation(ctx, Scope::InfrastructureWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(ClusterSubscriptionResult::AuthError(refusal)),
        };
        let state = state(ctx)?;
        let cluster = cluster_of_invite_token(&state.bus, invite_token.trim())
            .await
            .map_err(|e| internal(&e))?
            .and_then(|id| id.parse::<Uuid>().ok());
        let Some(cluster) = cluster else {
            return Ok(ClusterSubscriptionResult::ValidationError(
                ValidationError::new("inviteToken", "is not an invite", Some("unknown")),
            ));
        };
        let command = MarketplaceCommand::RequestSubscription {
            invite_token: Some(invite_token.trim().to_owned()),
        };
        subscription_result(state, principal, cluster, command).await
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
            .ok_or_else(|| super::errors::bad_input("clusterId", "is not a cluster id"))?;
        let command = MarketplaceCommand::RequestSubscription { invite_token: None };
        run_plain(state(ctx)?, principal, cluster, &command).await
    }

    /// Ends this tenant's subscription to a cluster.
    async fn unsubscribe_from_cluster(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
    ) -> async_graphql::Result<bool> {
        let principal = require(ctx, Scope::InfrastructureWrite)?;
        let cluster = cluster_uuid(&cluster_id.0)
            .ok_or_else(|| super::errors::bad_input("clusterId", "is not a cluster id"))?;
        run_plain(
            state(ctx)?,
            principal,
            cluster,
            &MarketplaceCommand::CancelSubscription,
        )
        .await
    }

    /// Invites a tenant to one of this tenant's clusters.
    async fn create_cluster_invite(
        &self,
        ctx: &Context<'_>,
        input: CreateClusterInviteInput,
    ) -> async_graphql::Result<ClusterInviteResult> {
        let principal = match require_for_mutation(ctx, Scope::InfrastructureWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(ClusterInviteResult::AuthError(refusal)),
        };
        let invalid = |field: &str, message: &str| {
            ClusterInviteResult::ValidationError(ValidationError::new(field, message, None))
        };
        let Some(cluster) = cluster_uuid(&input.cluster_id.0) else {
            return Ok(ClusterInviteResult::NotFoundError(NotFoundError::new(
                "cluster",
                &input.cluster_id.0,
            )));
        };
        let Ok(Ok(invited)) =
            ids::raw("Tenant", &input.invited_tenant_id.0).map(|raw| raw.parse::<Uuid>())
        else {
            return Ok(invalid("input.invitedTenantId", "is not a tenant id"));
        };
        let state = state(ctx)?;
        // Tenants live in another aggregate; the read model says whether one exists.
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM read_models.rm_tenants WHERE id = $1)",
        )
        .bind(invited)
        .fetch_one(&state.pool)
        .await
        .map_err(|e| internal(&e))?;
        if !exists {
            return Ok(invalid("input.invitedTenantId", "names no tenant"));
        }
        let parsed = (|| -> Result<MarketplaceCommand, CommandError> {
            let expires_in_days = match input.expires_in_days {
                None => DEFAULT_INVITE_DAYS,
                Some(days) => u32::try_from(days).map_err(|_| {
                    CommandError::invalid("input.expiresInDays", "must be positive")
                })?,
            };
            Ok(MarketplaceCommand::CreateInvite {
                invited_tenant_id: invited,
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
        })();
        let command = match parsed {
            Ok(command) => command,
            Err(error) => return Ok(refused!(ClusterInviteResult, ExecuteError::Rejected(error))),
        };
        let invite_id = match execute(state, principal, cluster, &command).await? {
            Ok(ClusterOutcome::Invite { invite_id, .. }) => invite_id,
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => return Ok(refused!(ClusterInviteResult, error)),
        };
        let invite = invites(state, None, |query: &mut QueryBuilder<Postgres>| {
            query
                .push(" WHERE i.id = ")
                .push_bind(invite_id.parse::<Uuid>().ok());
        })
        .await?
        .0
        .into_iter()
        .next()
        .map(|(_, invite)| invite)
        .ok_or_else(|| {
            internal(&std::io::Error::other(
                "the new invite is not in the read model",
            ))
        })?;
        Ok(ClusterInviteResult::ClusterInvite(invite))
    }

    /// Withdraws an open invite.
    async fn revoke_cluster_invite(
        &self,
        ctx: &Context<'_>,
        invite_id: ID,
    ) -> async_graphql::Result<RevokeClusterInviteResult> {
        let principal = match require_for_mutation(ctx, Scope::InfrastructureWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(RevokeClusterInviteResult::AuthError(refusal)),
        };
        let state = state(ctx)?;
        let missing = || {
            RevokeClusterInviteResult::NotFoundError(NotFoundError::new(
                "ClusterInvite",
                &invite_id.0,
            ))
        };
        let raw = ids::raw(INVITE_TYPE, &invite_id.0).ok();
        let Some(uuid) = raw.as_deref().and_then(|r| r.parse::<Uuid>().ok()) else {
            return Ok(missing());
        };
        // Only the owner's own invites are found, so others' do not leak.
        let cluster: Option<Uuid> = sqlx::query_scalar(
            "SELECT i.cluster_id FROM read_models.rm_cluster_invites i
             JOIN read_models.rm_clusters c ON c.id = i.cluster_id
             WHERE i.id = $1 AND c.tenant_id = $2",
        )
        .bind(uuid)
        .bind(principal.tenant_id())
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| internal(&e))?;
        let Some(cluster) = cluster else {
            return Ok(missing());
        };
        let command = MarketplaceCommand::RevokeInvite {
            invite_id: uuid.to_string(),
        };
        match execute(state, principal, cluster, &command).await? {
            Ok(_) => Ok(RevokeClusterInviteResult::DeleteSuccess(DeleteSuccess {
                success: true,
                deleted_id: ids::global(INVITE_TYPE, &uuid.to_string()),
                pending: Some(false),
            })),
            Err(error) => Ok(match Refusal::of(error)? {
                Refusal::Auth(e) => RevokeClusterInviteResult::AuthError(e),
                // Already accepted or revoked: there is no open invite to revoke.
                _ => missing(),
            }),
        }
    }

    /// Changes how one of the tenant's clusters is offered.
    async fn update_cluster_marketplace(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        input: UpdateClusterMarketplaceInput,
    ) -> async_graphql::Result<UpdateClusterMarketplaceResult> {
        let principal = match require_for_mutation(ctx, Scope::InfrastructureWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(UpdateClusterMarketplaceResult::AuthError(refusal)),
        };
        let Some(uuid) = cluster_uuid(&cluster_id.0) else {
            return Ok(UpdateClusterMarketplaceResult::NotFoundError(
                NotFoundError::new("cluster", &cluster_id.0),
            ));
        };
        let monthly_price_cents = match input.monthly_price_cents.map(u32::try_from).transpose() {
            Ok(price) => price,
            Err(_) => {
                return Ok(UpdateClusterMarketplaceResult::ValidationError(
                    ValidationError::new("input.monthlyPriceCents", "must not be negative", None),
                ));
            }
        };
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
        let state = state(ctx)?;
        if let Err(error) = execute(state, principal, uuid, &command).await? {
            return Ok(refused!(UpdateClusterMarketplaceResult, error));
        }
        Ok(UpdateClusterMarketplaceResult::Cluster(Box::new(
            cluster_by_id(state, principal, uuid).await?,
        )))
    }
}

fn unexpected(outcome: &ClusterOutcome) -> async_graphql::Error {
    internal(&std::io::Error::other(format!(
        "a marketplace command answered {outcome:?}"
    )))
}

/// Runs a marketplace command on a cluster and, once accepted, waits until
/// the read model has it. The inner error is the command's refusal.
async fn execute(
    state: &BridgeState,
    principal: &Principal,
    cluster: Uuid,
    command: &MarketplaceCommand,
) -> async_graphql::Result<Result<ClusterOutcome, ExecuteError>> {
    let id = cluster.to_string();
    let outcome = state
        .bus
        .execute::<ClusterAggregate>(
            &id,
            &ClusterCommand::Marketplace(command.clone()),
            &principal.command_context(),
            None,
        )
        .await;
    if outcome.is_ok() {
        state
            .wait_until_projected(AggregateType::Cluster, &id)
            .await
            .map_err(|e| internal(&e))?;
    }
    Ok(outcome)
}

/// A command for the Boolean mutations: refusals become errors at the field.
async fn run_plain(
    state: &BridgeState,
    principal: &Principal,
    cluster: Uuid,
    command: &MarketplaceCommand,
) -> async_graphql::Result<bool> {
    match execute(state, principal, cluster, command).await? {
        Ok(_) => Ok(true),
        Err(ExecuteError::Rejected(refusal)) => Err(super::errors::rejected(&refusal)),
        Err(other) => Err(internal(&other)),
    }
}

async fn subscription_result(
    state: &BridgeState,
    principal: &Principal,
    cluster: Uuid,
    command: MarketplaceCommand,
) -> async_graphql::Result<ClusterSubscriptionResult> {
    let subscription_id = match execute(state, principal, cluster, &command).await? {
        Ok(ClusterOutcome::Subscription { subscription_id }) => subscription_id,
        Ok(other) => return Err(unexpected(&other)),
        Err(error) => return Ok(refused!(ClusterSubscriptionResult, error)),
    };
    let found = subscriptions(state, None, |query: &mut QueryBuilder<Postgres>| {
        query
            .push(" WHERE s.id = ")
            .push_bind(subscription_id.parse::<Uuid>().ok());
    })
    .await?
    .0
    .into_iter()
    .next()
    .map(|(_, subscription)| subscription)
    .ok_or_else(|| {
        internal(&std::io::Error::other(
            "the subscription is not in the read model",
        ))
    })?;
    Ok(ClusterSubscriptionResult::ClusterSubscription(found))
}

/// Approves or rejects a request on one of the caller's clusters.
async fn decide_request(
    ctx: &Context<'_>,
    subscription_id: &ID,
    command: impl FnOnce(String) -> MarketplaceCommand,
) -> async_graphql::Result<ClusterSubscriptionResult> {
    let principal = match require_for_mutation(ctx, Scope::InfrastructureWrite) {
        Ok(p) => p,
        Err(refusal) => return Ok(ClusterSubscriptionResult::AuthError(refusal)),
    };
    let state = state(ctx)?;
    let missing = || {
        ClusterSubscriptionResult::NotFoundError(NotFoundError::new(
            "ClusterSubscription",
            &subscription_id.0,
        ))
    };
    let raw = ids::raw(SUBSCRIPTION_TYPE, &subscription_id.0).ok();
    let Some(uuid) = raw.as_deref().and_then(|r| r.parse::<Uuid>().ok()) else {
        return Ok(missing());
    };
    let cluster: Option<Uuid> = sqlx::query_scalar(
        "SELECT s.cluster_id FROM read_models.rm_cluster_subscriptions s
         JOIN read_models.rm_clusters c ON c.id = s.cluster_id
         WHERE s.id = $1 AND c.tenant_id = $2",
    )
    .bind(uuid)
    .bind(principal.tenant_id())
    .fetch_optional(&state.pool)
    .await
    .map_err(|e| internal(&e))?;
    let Some(cluster) = cluster else {
        return Ok(missing());
    };
    subscription_result(state, principal, cluster, command(uuid.to_string())).await
}

const OFFER_FROM: &str =
    "read_models.rm_clusters c LEFT JOIN read_models.rm_tenants t ON t.id = c.tenant_id";
const OFFER_COLUMNS: &str = "c.id, c.tenant_id, c.name, c.region, c.base_url, c.shared, c.max_concurrent_streams, c.max_concurrent_viewers, c.max_bandwidth_mbps, c.visibility, c.pricing_model, c.monthly_price_cents, c.requires_approval, c.short_description, c.created_at, c.updated_at, t.name AS owner_name";

#[derive(Debug, FromRow)]
struct OfferRow {
    #[sqlx(flatten)]
    cluster: ClusterRow,
    owner_name: Option<String>,
}

/// Clusters' offers as this tenant sees them, in their order: three reads
/// for the lot (subscriptions, invites, node loads), whatever their number.
async fn offers(
    state: &BridgeState,
    principal: &Principal,
    rows: Vec<OfferRow>,
) -> async_graphql::Result<Vec<MarketplaceCluster>> {
    let tenant = principal.tenant_id();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.cluster.id).collect();
    let statuses: HashMap<Uuid, String> = sqlx::query_as(
        "SELECT DISTINCT ON (cluster_id) cluster_id, status FROM read_models.rm_cluster_subscriptions
         WHERE cluster_id = ANY($1) AND tenant_id = $2 AND status IN ('PENDING_APPROVAL', 'ACTIVE')
         ORDER BY cluster_id, requested_at DESC",
    )
    .bind(&ids)
    .bind(tenant)
    .fetch_all(&state.pool)
    .await
    .map_err(|e| internal(&e))?
    .into_iter()
    .collect();
    let invited: HashSet<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT cluster_id FROM read_models.rm_cluster_invites
         WHERE cluster_id = ANY($1) AND invited_tenant_id = $2 AND status = 'pending' AND expires_at > now()",
    )
    .bind(&ids)
    .bind(tenant)
    .fetch_all(&state.pool)
    .await
    .map_err(|e| internal(&e))?
    .into_iter()
    .collect();
    let mut loads = cluster_loads(state, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let loads = loads.remove(&row.cluster.id).unwrap_or_default();
            let subscription_status = statuses
                .get(&row.cluster.id)
                .and_then(|status| ClusterSubscriptionStatus::from_column(status));
            let invited = invited.contains(&row.cluster.id);
            offer(tenant, row, &loads, subscription_status, invited)
        })
        .collect())
}

/// One cluster's offer, from what [`offers`] gathered.
fn offer(
    tenant: Uuid,
    row: OfferRow,
    loads: &[NodeLoad],
    subscription_status: Option<ClusterSubscriptionStatus>,
    invited: bool,
) -> MarketplaceCluster {
    let OfferRow {
        cluster,
        owner_name,
    } = row;
    let reporting: Vec<_> = loads.iter().filter(|load| load.live()).collect();
    let current_utilization = (!reporting.is_empty()).then(|| {
        let streams: f64 = reporting.iter().map(|l| l.number("active_streams")).sum();
        (streams / f64::from(cluster.max_concurrent_streams.max(1))).min(1.0)
    });
    let owned = cluster.tenant_id == Some(tenant);
    let visibility = ClusterVisibility::from_column(&cluster.visibility);
    let denial_reason = if cluster.shared {
        Some("the platform's shared clusters serve every tenant without a subscription")
    } else if owned {
        Some("this is your own cluster")
    } else if subscription_status.is_some() {
        Some("you already subscribed")
    } else if visibility == ClusterVisibility::Private && !invited {
        Some("this cluster admits invited tenants only")
    } else {
        None
    };
    MarketplaceCluster {
        cluster_id: cluster.id.to_string(),
        cluster_name: cluster.name,
        short_description: cluster.short_description,
        visibility,
        pricing_model: ClusterPricingModel::from_column(&cluster.pricing_model),
        monthly_price_cents: cluster.monthly_price_cents,
        requires_approval: cluster.requires_approval,
        owner_name: if cluster.shared {
            Some("FrameWorks".into())
        } else {
            owner_name
        },
        max_concurrent_streams: cluster.max_concurrent_streams,
        max_concurrent_viewers: cluster.max_concurrent_viewers,
        current_utilization,
        is_subscribed: cluster.shared
            || owned
            || subscription_status == Some(ClusterSubscriptionStatus::Active),
        subscription_status,
        is_eligible: denial_reason.is_none(),
        denial_reason: denial_reason.map(str::to_owned),
    }
}

#[derive(Debug, FromRow)]
struct SubscriptionRow {
    id: Uuid,
    tenant_id: Uuid,
    cluster_id: Uuid,
    access_level: String,
    status: String,
    resource_limits: Option<serde_json::Value>,
    requested_at: DateTime<Utc>,
    approved_at: Option<DateTime<Utc>>,
    approved_by: Option<String>,
    rejection_reason: Option<String>,
    updated_at: DateTime<Utc>,
    cluster_name: String,
    tenant_name: Option<String>,
}

async fn subscriptions(
    state: &BridgeState,
    page: Option<&ConnectionInput>,
    filter: impl Fn(&mut QueryBuilder<Postgres>),
) -> async_graphql::Result<(
    Vec<(String, ClusterSubscription)>,
    super::connection::PageInfo,
    i64,
)> {
    let page = Page::from_input(page)?;
    let listing = Listing {
        from: "read_models.rm_cluster_subscriptions s
               JOIN read_models.rm_clusters c ON c.id = s.cluster_id
               LEFT JOIN read_models.rm_tenants t ON t.id = s.tenant_id",
        columns: "s.id, s.tenant_id, s.cluster_id, s.access_level, s.status, s.resource_limits,
                  s.requested_at, s.approved_at, s.approved_by, s.rejection_reason, s.updated_at,
                  c.name AS cluster_name, t.name AS tenant_name",
        created_at: "s.requested_at",
        id: "s.id",
    };
    let (rows, info, total) = page
        .fetch(&state.pool, listing, filter, |row: &SubscriptionRow| {
            Position {
                created_at: row.requested_at,
                id: row.id.to_string(),
            }
        })
        .await?;
    let edges = rows
        .into_iter()
        .map(|(cursor, row)| {
            let subscription = ClusterSubscription {
                id: ids::global(SUBSCRIPTION_TYPE, &row.id.to_string()),
                tenant_id: row.tenant_id.to_string(),
                cluster_id: row.cluster_id.to_string(),
                access_level: row.access_level,
                // A cancelled one is shown as it last stood: no longer active.
                subscription_status: ClusterSubscriptionStatus::from_column(&row.status)
                    .unwrap_or(ClusterSubscriptionStatus::Suspended),
                resource_limits: row.resource_limits.map(Json),
                requested_at: Some(Time(row.requested_at)),
                approved_at: row.approved_at.map(Time),
                approved_by: row.approved_by,
                rejection_reason: row.rejection_reason,
                expires_at: None,
                created_at: Time(row.requested_at),
                updated_at: Time(row.updated_at),
                cluster_name: Some(row.cluster_name),
                tenant_name: row.tenant_name,
            };
            (cursor, subscription)
        })
        .collect();
    Ok((edges, info, total))
}

#[derive(Debug, FromRow)]
struct InviteRow {
    id: Uuid,
    cluster_id: Uuid,
    invited_tenant_id: Uuid,
    invite_token: String,
    access_level: String,
    resource_limits: Option<serde_json::Value>,
    status: String,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    invited_tenant_name: Option<String>,
    cluster_name: String,
}

async fn invites(
    state: &BridgeState,
    page: Option<&ConnectionInput>,
    filter: impl Fn(&mut QueryBuilder<Postgres>),
) -> async_graphql::Result<(
    Vec<(String, ClusterInvite)>,
    super::connection::PageInfo,
    i64,
)> {
    let page = Page::from_input(page)?;
    let listing = Listing {
        from: "read_models.rm_cluster_invites i
               JOIN read_models.rm_clusters c ON c.id = i.cluster_id
               LEFT JOIN read_models.rm_tenants t ON t.id = i.invited_tenant_id",
        columns: "i.id, i.cluster_id, i.invited_tenant_id, i.invite_token, i.access_level,
                  i.resource_limits, i.status, i.created_by, i.created_at, i.expires_at,
                  i.accepted_at, t.name AS invited_tenant_name, c.name AS cluster_name",
        created_at: "i.created_at",
        id: "i.id",
    };
    let (rows, info, total) = page
        .fetch(&state.pool, listing, filter, |row: &InviteRow| Position {
            created_at: row.created_at,
            id: row.id.to_string(),
        })
        .await?;
    let now = Utc::now();
    let edges = rows
        .into_iter()
        .map(|(cursor, row)| {
            let status = if row.status == "pending" && row.expires_at <= now {
                "expired".to_owned()
            } else {
                row.status
            };
            let invite = ClusterInvite {
                id: ids::global(INVITE_TYPE, &row.id.to_string()),
                cluster_id: row.cluster_id.to_string(),
                invited_tenant_id: row.invited_tenant_id.to_string(),
                invite_token: (status == "pending").then_some(row.invite_token),
                access_level: row.access_level,
                resource_limits: row.resource_limits.map(Json),
                status,
                created_by: row.created_by,
                created_at: Time(row.created_at),
                expires_at: Some(Time(row.expires_at)),
                accepted_at: row.accepted_at.map(Time),
                invited_tenant_name: row.invited_tenant_name,
                cluster_name: Some(row.cluster_name),
            };
            (cursor, invite)
        })
        .collect();
    Ok((edges, info, total))
}
