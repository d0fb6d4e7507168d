//! The cluster marketplace: how a cluster is offered to other tenants, the
//! subscriptions that let them place streams on it, and the owner's invites.
//!
//! All of it lives in the cluster's own event history, so every decision
//! (may this tenant subscribe, is this invite still open) is checked against
//! one consistent state. The platform's shared clusters serve every tenant
//! without a subscription; a tenant's own clusters are offered only as their
//! owner decides.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use frameworks_events::proto::v1::infrastructure::{
    ClusterInviteAccepted, ClusterInviteCreated, ClusterInviteRevoked, ClusterMarketplaceUpdated,
    ClusterPricingModel as PricingProto, ClusterSubscriptionApproved, ClusterSubscriptionCancelled,
    ClusterSubscriptionRejected, ClusterSubscriptionRequested,
    ClusterVisibility as VisibilityProto,
};
use frameworks_events::{Event, EventPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{Decision, HandleEnv};
use crate::aggregates::claims;
use crate::aggregates::infrastructure::ClusterOutcome;
use crate::error::CommandError;
use crate::secrets::{new_token, sha256_hex};
use crate::store::Claim;
use crate::validate;

pub const INVITE_TOKEN_PREFIX: &str = "fwi_";
pub const DEFAULT_INVITE_DAYS: u32 = 7;
pub const MAX_INVITE_DAYS: u32 = 365;
/// Ten thousand currency units a month: anything above is a typo.
pub const MAX_MONTHLY_PRICE_CENTS: u32 = 1_000_000;
const RESOURCE: &str = "cluster";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visibility {
    Public,
    Unlisted,
    Private,
}

impl Visibility {
    fn to_proto(self) -> VisibilityProto {
        match self {
            Self::Public => VisibilityProto::Public,
            Self::Unlisted => VisibilityProto::Unlisted,
            Self::Private => VisibilityProto::Private,
        }
    }

    fn from_proto(value: i32) -> Option<Self> {
        match VisibilityProto::try_from(value).ok()? {
            VisibilityProto::Public => Some(Self::Public),
            VisibilityProto::Unlisted => Some(Self::Unlisted),
            VisibilityProto::Private => Some(Self::Private),
            VisibilityProto::Unspecified => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PricingModel {
    FreeUnmetered,
    Metered,
    Monthly,
    TierInherit,
    Custom,
}

impl PricingModel {
    fn to_proto(self) -> PricingProto {
        match self {
            Self::FreeUnmetered => PricingProto::FreeUnmetered,
            Self::Metered => PricingProto::Metered,
            Self::Monthly => PricingProto::Monthly,
            Self::TierInherit => PricingProto::TierInherit,
            Self::Custom => PricingProto::Custom,
        }
    }

    fn from_proto(value: i32) -> Option<Self> {
        match PricingProto::try_from(value).ok()? {
            PricingProto::FreeUnmetered => Some(Self::FreeUnmetered),
            PricingProto::Metered => Some(Self::Metered),
            PricingProto::Monthly => Some(Self::Monthly),
            PricingProto::TierInherit => Some(Self::TierInherit),
            PricingProto::Custom => Some(Self::Custom),
            PricingProto::Unspecified => None,
        }
    }
}

/// What a subscriber may do on the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessLevel {
    /// View what runs there.
    Read,
    /// Place streams on it.
    Write,
    /// Also manage the subscription's own settings.
    Admin,
}

impl AccessLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, CommandError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            _ => Err(CommandError::invalid(field, "must be read, write or admin")),
        }
    }
}

/// Per-subscriber limits within the cluster's capacity; absent means the
/// cluster's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    pub max_concurrent_streams: Option<u32>,
    pub max_concurrent_viewers: Option<u32>,
    pub max_bandwidth_mbps: Option<u32>,
}

impl ResourceLimits {
    const KEYS: [&'static str; 3] = [
        "maxConcurrentStreams",
        "maxConcurrentViewers",
        "maxBandwidthMbps",
    ];

    /// Reads `{"maxConcurrentStreams": 10, ...}`; unknown keys and values that
    /// are not positive integers are refused, naming the key.
    pub fn from_json(field: &str, value: &serde_json::Value) -> Result<Self, CommandError> {
        let object = value
            .as_object()
            .ok_or_else(|| CommandError::invalid(field, "must be a JSON object"))?;
        let mut limits = Self::default();
        for (key, value) in object {
            let slot = match key.as_str() {
                "maxConcurrentStreams" => &mut limits.max_concurrent_streams,
                "maxConcurrentViewers" => &mut limits.max_concurrent_viewers,
                "maxBandwidthMbps" => &mut limits.max_bandwidth_mbps,
                _ => {
                    return Err(CommandError::invalid(
                        format!("{field}.{key}"),
                        format!("is not a limit; known: {}", Self::KEYS.join(", ")),
                    ));
                }
            };
            let number = value
                .as_u64()
                .filter(|n| *n >= 1)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    CommandError::invalid(format!("{field}.{key}"), "must be a positive integer")
                })?;
            *slot = Some(number);
        }
        Ok(limits)
    }

    /// The JSON object form, or an empty string when no limit is set.
    pub fn to_json_string(self) -> String {
        if self == Self::default() {
            return String::new();
        }
        let mut object = serde_json::Map::new();
        for (key, value) in Self::KEYS.into_iter().zip([
            self.max_concurrent_streams,
            self.max_concurrent_viewers,
            self.max_bandwidth_mbps,
        ]) {
            if let Some(value) = value {
                object.insert(key.to_owned(), value.into());
            }
        }
        serde_json::Value::Object(object).to_string()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MarketplaceCommand {
    /// The owner changes how the cluster is offered.
    Update {
        visibility: Option<Visibility>,
        pricing_model: Option<PricingModel>,
        monthly_price_cents: Option<u32>,
        requires_approval: Option<bool>,
        short_description: Option<String>,
    },
    /// The calling tenant asks to use the cluster; an invite token admits it at once.
    RequestSubscription {
        invite_token: Option<String>,
    },
    ApproveSubscription {
        subscription_id: String,
    },
    RejectSubscription {
        subscription_id: String,
        reason: String,
    },
    /// The calling tenant ends its own subscription.
    CancelSubscription,
    CreateInvite {
        invited_tenant_id: Uuid,
        access_level: AccessLevel,
        resource_limits: ResourceLimits,
        expires_in_days: u32,
    },
    RevokeInvite {
        invite_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubscriptionStatus {
    Pending,
    Active,
    Rejected,
    Cancelled,
}

#[derive(Debug, Clone)]
struct Subscription {
    tenant_id: Uuid,
    status: SubscriptionStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Open,
    Accepted,
    Revoked,
}

#[derive(Debug, Clone)]
struct Invite {
    tenant_id: Uuid,
    token_hash: String,
    access_level: String,
    resource_limits_json: String,
    expires_at: DateTime<Utc>,
    state: InviteState,
}

/// The marketplace part of a cluster's state.
#[derive(Debug, Clone)]
pub struct Marketplace {
    visibility: Visibility,
    requires_approval: bool,
    pricing_model: PricingModel,
    subscriptions: HashMap<String, Subscription>,
    invites: HashMap<String, Invite>,
}

impl Default for Marketplace {
    fn default() -> Self {
        Self::for_cluster(false)
    }
}

impl Marketplace {
    /// The offer a new cluster starts with: the platform's shared clusters are
    /// public and billed by each tenant's tier; a tenant's own cluster is
    /// private until its owner offers it.
    pub fn for_cluster(shared: bool) -> Self {
        Self {
            visibility: if shared {
                Visibility::Public
            } else {
                Visibility::Private
            },
            requires_approval: !shared,
            pricing_model: if shared {
                PricingModel::TierInherit
            } else {
                PricingModel::FreeUnmetered
            },
            subscriptions: HashMap::new(),
            invites: HashMap::new(),
        }
    }

    pub fn apply(&mut self, event: &Event) {
        match &event.payload {
            EventPayload::ClusterMarketplaceUpdated(update) => {
                if let Some(v) = update.visibility.and_then(Visibility::from_proto) {
                    self.visibility = v;
                }
                if let Some(p) = update.pricing_model.and_then(PricingModel::from_proto) {
                    self.pricing_model = p;
                }
                if let Some(r) = update.requires_approval {
                    self.requires_approval = r;
                }
            }
            EventPayload::ClusterSubscriptionRequested(requested) => {
                if let Ok(tenant_id) = requested.subscriber_tenant_id.parse() {
                    let status = if requested.active {
                        SubscriptionStatus::Active
                    } else {
                        SubscriptionStatus::Pending
                    };
                    self.subscriptions.insert(
                        requested.subscription_id.clone(),
                        Subscription { tenant_id, status },
                    );
                }
            }
            EventPayload::ClusterSubscriptionApproved(e) => {
                self.set_status(&e.subscription_id, SubscriptionStatus::Active);
            }
            EventPayload::ClusterSubscriptionRejected(e) => {
                self.set_status(&e.subscription_id, SubscriptionStatus::Rejected);
            }
            EventPayload::ClusterSubscriptionCancelled(e) => {
                self.set_status(&e.subscription_id, SubscriptionStatus::Cancelled);
            }
            EventPayload::ClusterInviteCreated(created) => {
                if let Ok(tenant_id) = created.invited_tenant_id.parse() {
                    self.invites.insert(
                        created.invite_id.clone(),
                        Invite {
                            tenant_id,
                            token_hash: sha256_hex(created.invite_token.as_bytes()),
                            access_level: created.access_level.clone(),
                            resource_limits_json: created.resource_limits_json.clone(),
                            expires_at: DateTime::from_timestamp(created.expires_at_unix, 0)
                                .unwrap_or_default(),
                            state: InviteState::Open,
                        },
                    );
                }
            }
            EventPayload::ClusterInviteRevoked(e) => {
                self.set_invite(&e.invite_id, InviteState::Revoked)
            }
            EventPayload::ClusterInviteAccepted(e) => {
                self.set_invite(&e.invite_id, InviteState::Accepted);
            }
            _ => {}
        }
    }

    fn set_status(&mut self, id: &str, status: SubscriptionStatus) {
        if let Some(subscription) = self.subscriptions.get_mut(id) {
            subscription.status = status;
        }
    }

    fn set_invite(&mut self, id: &str, state: InviteState) {
        if let Some(invite) = self.invites.get_mut(id) {
            invite.state = state;
        }
    }

    /// The tenant's subscription that is pending or active, if any.
    fn current(&self, tenant_id: Uuid) -> Option<(&String, &Subscription)> {
        self.subscriptions.iter().find(|(_, s)| {
            s.tenant_id == tenant_id
                && matches!(
                    s.status,
                    SubscriptionStatus::Pending | SubscriptionStatus::Active
                )
        })
    }

    /// Whether the tenant holds an active subscription.
    pub fn is_subscribed(&self, tenant_id: Uuid) -> bool {
        self.current(tenant_id)
            .is_some_and(|(_, s)| s.status == SubscriptionStatus::Active)
    }

    /// Decides a marketplace command on a cluster with this owner.
    pub fn decide(
        &self,
        command: &MarketplaceCommand,
        owner: Option<Uuid>,
        shared: bool,
        env: &HandleEnv<'_>,
    ) -> Result<Decision<ClusterOutcome>, CommandError> {
        let id = env.aggregate_id;
        let ctx = env.ctx;
        let by_owner = || {
            if owner.is_some() {
                ctx.ensure_owner(owner, RESOURCE, id)
            } else {
                ctx.require_operator()
            }
        };
        match command {
            MarketplaceCommand::Update {
                visibility,
                pricing_model,
                monthly_price_cents,
                requires_approval,
                short_description,
            } => {
                by_owner()?;
                if let Some(price) = monthly_price_cents
                    && *price > MAX_MONTHLY_PRICE_CENTS
                {
                    return Err(CommandError::invalid(
                        "input.monthlyPriceCents",
                        format!("must be at most {MAX_MONTHLY_PRICE_CENTS}"),
                    ));
                }
                if pricing_model == &Some(PricingModel::Monthly) && monthly_price_cents.is_none() {
                    return Err(CommandError::invalid(
                        "input.monthlyPriceCents",
                        "is required with the MONTHLY pricing model",
                    ));
                }
                let update = ClusterMarketplaceUpdated {
                    visibility: visibility.map(|v| v.to_proto() as i32),
                    pricing_model: pricing_model.map(|p| p.to_proto() as i32),
                    monthly_price_cents: *monthly_price_cents,
                    requires_approval: *requires_approval,
                    short_description: short_description
                        .as_deref()
                        .map(|d| validate::text("input.shortDescription", d, 280))
                        .transpose()?,
                };
                if update == ClusterMarketplaceUpdated::default() {
                    return Err(CommandError::invalid("input", "names no field to change"));
                }
                Ok(Decision::new(ClusterOutcome::Done).event(update))
            }
            MarketplaceCommand::RequestSubscription { invite_token } => {
                let tenant = self.subscriber(ctx, owner, shared)?;
                let invite = match invite_token {
                    Some(token) => Some(self.open_invite_for(tenant, token, ctx.now)?),
                    None => None,
                };
                if let Some((sub_id, current)) = self.current(tenant) {
                    return match (current.status, invite) {
                        (SubscriptionStatus::Pending, Some((invite_id, _))) => {
                            // The owner's invite settles the tenant's waiting request.
                            Ok(Decision::new(ClusterOutcome::Subscription {
                                subscription_id: sub_id.clone(),
                            })
                            .event(ClusterInviteAccepted {
                                invite_id: invite_id.clone(),
                                subscription_id: sub_id.clone(),
                            })
                            .event(ClusterSubscriptionApproved {
                                subscription_id: sub_id.clone(),
                                approved_by: format!("invite:{invite_id}"),
                            }))
                        }
                        (SubscriptionStatus::Pending, None) => Err(CommandError::Conflict(
                            "your subscription to this cluster is already waiting for approval"
                                .into(),
                        )),
                        _ => Err(CommandError::Conflict(
                            "you are already subscribed to this cluster".into(),
                        )),
                    };
                }
                let subscription_id = Uuid::now_v7().to_string();
                let outcome = ClusterOutcome::Subscription {
                    subscription_id: subscription_id.clone(),
                };
                let decision = match invite {
                    Some((invite_id, invite)) => Decision::new(outcome)
                        .event(ClusterInviteAccepted {
                            invite_id: invite_id.clone(),
                            subscription_id: subscription_id.clone(),
                        })
                        .event(ClusterSubscriptionRequested {
                            subscription_id,
                            subscriber_tenant_id: tenant.to_string(),
                            access_level: invite.access_level.clone(),
                            active: true,
                            invite_id: invite_id.clone(),
                            resource_limits_json: invite.resource_limits_json.clone(),
                            requested_by: ctx.actor.clone(),
                        }),
                    None => {
                        if self.visibility == Visibility::Private {
                            // Without an invite a private cluster does not exist for you.
                            return Err(CommandError::not_found(RESOURCE, id));
                        }
                        Decision::new(outcome).event(ClusterSubscriptionRequested {
                            subscription_id,
                            subscriber_tenant_id: tenant.to_string(),
                            access_level: AccessLevel::Write.as_str().to_owned(),
                            active: !self.requires_approval,
                            invite_id: String::new(),
                            resource_limits_json: String::new(),
                            requested_by: ctx.actor.clone(),
                        })
                    }
                };
                Ok(decision)
            }
            MarketplaceCommand::ApproveSubscription { subscription_id } => {
                by_owner()?;
                self.pending(subscription_id)?;
                Ok(Decision::new(ClusterOutcome::Subscription {
                    subscription_id: subscription_id.clone(),
                })
                .event(ClusterSubscriptionApproved {
                    subscription_id: subscription_id.clone(),
                    approved_by: ctx.actor.clone(),
                }))
            }
            MarketplaceCommand::RejectSubscription {
                subscription_id,
                reason,
            } => {
                by_owner()?;
                self.pending(subscription_id)?;
                Ok(Decision::new(ClusterOutcome::Subscription {
                    subscription_id: subscription_id.clone(),
                })
                .event(ClusterSubscriptionRejected {
                    subscription_id: subscription_id.clone(),
                    reason: validate::text("reason", reason, 500)?,
                    rejected_by: ctx.actor.clone(),
                }))
            }
            MarketplaceCommand::CancelSubscription => {
                let tenant = ctx.require_tenant()?;
                let Some((subscription_id, _)) = self.current(tenant) else {
                    return Err(CommandError::not_found("cluster subscription", id));
                };
                Ok(Decision::new(ClusterOutcome::Subscription {
                    subscription_id: subscription_id.clone(),
                })
                .event(ClusterSubscriptionCancelled {
                    subscription_id: subscription_id.clone(),
                    cancelled_by: ctx.actor.clone(),
                }))
            }
            MarketplaceCommand::CreateInvite {
                invited_tenant_id,
                access_level,
                resource_limits,
                expires_in_days,
            } => {
                by_owner()?;
                if shared {
                    return Err(CommandError::invalid(
                        "input.clusterId",
                        "the platform's shared clusters serve every tenant without an invite",
                    ));
                }
                if owner == Some(*invited_tenant_id) {
                    return Err(CommandError::invalid(
                        "input.invitedTenantId",
                        "is the cluster's owner",
                    ));
                }
                if self.is_subscribed(*invited_tenant_id) {
                    return Err(CommandError::Conflict(
                        "that tenant is already subscribed to this cluster".into(),
                    ));
                }
                if !(1..=MAX_INVITE_DAYS).contains(expires_in_days) {
                    return Err(CommandError::invalid(
                        "input.expiresInDays",
                        format!("must be 1 to {MAX_INVITE_DAYS}"),
                    ));
                }
                let invite_id = Uuid::now_v7().to_string();
                let token = new_token(INVITE_TOKEN_PREFIX);
                let expires_at = ctx.now + chrono::Duration::days(i64::from(*expires_in_days));
                Ok(Decision::new(ClusterOutcome::Invite {
                    invite_id: invite_id.clone(),
                    token: token.clone(),
                })
                .claim(Claim::new(
                    claims::CLUSTER_INVITE_TOKEN_HASH,
                    sha256_hex(token.as_bytes()),
                ))
                .event(ClusterInviteCreated {
                    invite_id,
                    invited_tenant_id: invited_tenant_id.to_string(),
                    invite_token: token,
                    access_level: access_level.as_str().to_owned(),
                    resource_limits_json: resource_limits.to_json_string(),
                    expires_at_unix: expires_at.timestamp(),
                    created_by: ctx.actor.clone(),
                }))
            }
            MarketplaceCommand::RevokeInvite { invite_id } => {
                by_owner()?;
                match self.invites.get(invite_id).map(|i| i.state) {
                    None => Err(CommandError::not_found("cluster invite", invite_id)),
                    Some(InviteState::Open) => Ok(Decision::new(ClusterOutcome::Done).event(
                        ClusterInviteRevoked {
                            invite_id: invite_id.clone(),
                            revoked_by: ctx.actor.clone(),
                        },
                    )),
                    Some(InviteState::Accepted) => Err(CommandError::Conflict(
                        "this invite was already accepted".into(),
                    )),
                    Some(InviteState::Revoked) => Err(CommandError::Conflict(
                        "this invite was already revoked".into(),
                    )),
                }
            }
        }
    }

    /// The calling tenant, if it may subscribe to this cluster at all.
    fn subscriber(
        &self,
        ctx: &crate::aggregate::CommandContext,
        owner: Option<Uuid>,
        shared: bool,
    ) -> Result<Uuid, CommandError> {
        let tenant = ctx.require_tenant()?;
        if shared {
            return Err(CommandError::invalid(
                "clusterId",
                "the platform's shared clusters serve every tenant without a subscription",
            ));
        }
        if owner == Some(tenant) {
            return Err(CommandError::invalid("clusterId", "is your own cluster"));
        }
        Ok(tenant)
    }

    /// The open invite this token names, if it was made for `tenant`.
    fn open_invite_for(
        &self,
        tenant: Uuid,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(&String, &Invite), CommandError> {
        let hash = sha256_hex(token.as_bytes());
        let (id, invite) = self
            .invites
            .iter()
            .find(|(_, invite)| invite.token_hash == hash && invite.tenant_id == tenant)
            .ok_or_else(|| {
                CommandError::invalid("inviteToken", "is not an invite to your tenant")
            })?;
        match invite.state {
            InviteState::Accepted => {
                Err(CommandError::invalid("inviteToken", "was already accepted"))
            }
            InviteState::Revoked => Err(CommandError::invalid("inviteToken", "was revoked")),
            InviteState::Open if now >= invite.expires_at => {
                Err(CommandError::invalid("inviteToken", "has expired"))
            }
            InviteState::Open => Ok((id, invite)),
        }
    }

    fn pending(&self, subscription_id: &str) -> Result<(), CommandError> {
        match self.subscriptions.get(subscription_id).map(|s| s.status) {
            None => Err(CommandError::not_found(
                "cluster subscription",
                subscription_id,
            )),
            Some(SubscriptionStatus::Pending) => Ok(()),
            Some(_) => Err(CommandError::Conflict(
                "this subscription is not waiting for approval".into(),
            )),
        }
    }
}

/// The cluster an invite token was issued on, if any.
pub async fn cluster_of_invite_token(
    bus: &crate::bus::CommandBus,
    token: &str,
) -> Result<Option<String>, crate::error::ExecuteError> {
    Ok(bus
        .store()
        .find_claim(
            claims::CLUSTER_INVITE_TOKEN_HASH,
            &sha256_hex(token.as_bytes()),
        )
        .await?)
}
