//! The marketplace mutations' inputs and result unions.

use super::*;

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

refusal_members!(
    ClusterSubscriptionResult,
    ClusterInviteResult,
    UpdateClusterMarketplaceResult
);
