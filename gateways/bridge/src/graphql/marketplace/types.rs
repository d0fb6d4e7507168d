//! What the marketplace shows: offers, subscriptions and invites.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ClusterSubscriptionStatus {
    PendingApproval,
    Active,
    Suspended,
    Rejected,
}

impl ClusterSubscriptionStatus {
    pub(super) fn from_column(value: &str) -> Option<Self> {
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
