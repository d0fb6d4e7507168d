//! The read model's rows as the marketplace shows them: offers with this
//! tenant's standing, subscriptions and invites.

use super::*;

/// Clusters' offers as this tenant sees them, in their order: three reads
/// for the lot (subscriptions, invites, node loads), whatever their number.
pub(super) async fn offers(
    state: &BridgeState,
    principal: &Principal,
    rows: Vec<OfferRow>,
) -> async_graphql::Result<Vec<MarketplaceCluster>> {
    let tenant = principal.tenant_id();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.cluster.id).collect();
    let statuses = read_model::open_subscription_statuses(&state.pool, tenant, &ids)
        .await
        .map_err(read_failed)?;
    let invited = read_model::invited_among(&state.pool, tenant, &ids)
        .await
        .map_err(read_failed)?;
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

/// A subscription as the API shows it.
pub(super) fn subscription(row: SubscriptionRow) -> ClusterSubscription {
    ClusterSubscription {
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
    }
}

/// An invite as the API shows it at `now`: a pending one past its expiry
/// is `expired`, and its token is shown only while it is open.
pub(super) fn invite(row: InviteRow, now: DateTime<Utc>) -> ClusterInvite {
    let status = if row.status == "pending" && row.expires_at <= now {
        "expired".to_owned()
    } else {
        row.status
    };
    ClusterInvite {
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
    }
}
