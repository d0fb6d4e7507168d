//! The cluster marketplace as the control-plane read model holds it: offers
//! (clusters with their owner's name), subscriptions and invites.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::clusters::ClusterRow;
use super::page::{Listing, Page, Paged, Position};

/// A cluster as offered, with its owner's name.
#[derive(Debug, Clone, FromRow)]
pub struct OfferRow {
    #[sqlx(flatten)]
    pub cluster: ClusterRow,
    pub owner_name: Option<String>,
}

const OFFER_FROM: &str =
    "read_models.rm_clusters c LEFT JOIN read_models.rm_tenants t ON t.id = c.tenant_id";
const OFFER_COLUMNS: &str = "c.id, c.tenant_id, c.name, c.region, c.base_url, c.shared, c.max_concurrent_streams, c.max_concurrent_viewers, c.max_bandwidth_mbps, c.visibility, c.pricing_model, c.monthly_price_cents, c.requires_approval, c.short_description, c.created_at, c.updated_at, t.name AS owner_name";

/// Cluster `id` as offered to `tenant`: if it is public or unlisted, or
/// `tenant` owns it, is invited to it or holds a subscription to it.
pub async fn offer(pool: &PgPool, tenant: Uuid, id: Uuid) -> Result<Option<OfferRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM {OFFER_FROM}
         WHERE c.id = $1 AND (c.visibility IN ('PUBLIC', 'UNLISTED') OR c.tenant_id = $2
               OR EXISTS (SELECT 1 FROM read_models.rm_cluster_subscriptions s
                          WHERE s.cluster_id = c.id AND s.tenant_id = $2 AND s.status <> 'CANCELLED')
               OR EXISTS (SELECT 1 FROM read_models.rm_cluster_invites i
                          WHERE i.cluster_id = c.id AND i.invited_tenant_id = $2 AND i.status = 'pending'))"
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// The public offers of the platform and of tenants other than `tenant`,
/// newest first.
pub async fn public_offers(
    pool: &PgPool,
    tenant: Uuid,
    page: &Page,
) -> Result<Paged<OfferRow>, sqlx::Error> {
    let listing = Listing {
        from: OFFER_FROM,
        columns: OFFER_COLUMNS,
        created_at: "c.created_at",
        id: "c.id",
    };
    let filter = |query: &mut QueryBuilder<Postgres>| {
        query
            .push(" WHERE c.visibility = 'PUBLIC' AND c.tenant_id IS DISTINCT FROM ")
            .push_bind(tenant);
    };
    page.fetch(pool, listing, filter, |row: &OfferRow| Position {
        created_at: row.cluster.created_at,
        id: row.cluster.id.to_string(),
    })
    .await
}

/// Of `clusters`, the status of `tenant`'s latest open subscription
/// (`PENDING_APPROVAL` or `ACTIVE`) to each.
pub async fn open_subscription_statuses(
    pool: &PgPool,
    tenant: Uuid,
    clusters: &[Uuid],
) -> Result<HashMap<Uuid, String>, sqlx::Error> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (cluster_id) cluster_id, status FROM read_models.rm_cluster_subscriptions
         WHERE cluster_id = ANY($1) AND tenant_id = $2 AND status IN ('PENDING_APPROVAL', 'ACTIVE')
         ORDER BY cluster_id, requested_at DESC",
    )
    .bind(clusters)
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Of `clusters`, those `tenant` holds an open, unexpired invite to.
pub async fn invited_among(
    pool: &PgPool,
    tenant: Uuid,
    clusters: &[Uuid],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT cluster_id FROM read_models.rm_cluster_invites
         WHERE cluster_id = ANY($1) AND invited_tenant_id = $2 AND status = 'pending' AND expires_at > now()",
    )
    .bind(clusters)
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().collect())
}

/// A subscription, with its cluster's and its tenant's names.
#[derive(Debug, Clone, FromRow)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub cluster_id: Uuid,
    pub access_level: String,
    /// `PENDING_APPROVAL`, `ACTIVE`, `SUSPENDED`, `REJECTED` or `CANCELLED`.
    pub status: String,
    pub resource_limits: Option<serde_json::Value>,
    pub requested_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub rejection_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub cluster_name: String,
    pub tenant_name: Option<String>,
}

/// Which subscriptions a listing shows.
#[derive(Debug, Clone, Copy)]
pub enum Subscriptions {
    /// Those waiting for approval on `cluster`, if `owner` owns it.
    PendingOn { cluster: Option<Uuid>, owner: Uuid },
    /// The one with this id.
    Id(Uuid),
}

const SUBSCRIPTION_LISTING: Listing<'static> = Listing {
    from: "read_models.rm_cluster_subscriptions s
           JOIN read_models.rm_clusters c ON c.id = s.cluster_id
           LEFT JOIN read_models.rm_tenants t ON t.id = s.tenant_id",
    columns: "s.id, s.tenant_id, s.cluster_id, s.access_level, s.status, s.resource_limits,
              s.requested_at, s.approved_at, s.approved_by, s.rejection_reason, s.updated_at,
              c.name AS cluster_name, t.name AS tenant_name",
    created_at: "s.requested_at",
    id: "s.id",
};

/// The subscriptions `which` names, newest request first.
pub async fn subscriptions(
    pool: &PgPool,
    which: Subscriptions,
    page: &Page,
) -> Result<Paged<SubscriptionRow>, sqlx::Error> {
    let filter = |query: &mut QueryBuilder<Postgres>| match which {
        Subscriptions::PendingOn { cluster, owner } => {
            query
                .push(" WHERE s.status = 'PENDING_APPROVAL' AND s.cluster_id = ")
                .push_bind(cluster)
                .push(" AND c.tenant_id = ")
                .push_bind(owner);
        }
        Subscriptions::Id(id) => {
            query.push(" WHERE s.id = ").push_bind(id);
        }
    };
    page.fetch(
        pool,
        SUBSCRIPTION_LISTING,
        filter,
        |row: &SubscriptionRow| Position {
            created_at: row.requested_at,
            id: row.id.to_string(),
        },
    )
    .await
}

/// Subscription `id`.
pub async fn subscription(pool: &PgPool, id: Uuid) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    let page = subscriptions(pool, Subscriptions::Id(id), &Page::new(1, false, None)).await?;
    Ok(page.edges.into_iter().next().map(|(_, row)| row))
}

/// The cluster of subscription `id`, if `owner` owns that cluster.
pub async fn cluster_of_subscription(
    pool: &PgPool,
    owner: Uuid,
    id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.cluster_id FROM read_models.rm_cluster_subscriptions s
         JOIN read_models.rm_clusters c ON c.id = s.cluster_id
         WHERE s.id = $1 AND c.tenant_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(pool)
    .await
}

/// An invite, with its cluster's and the invited tenant's names.
#[derive(Debug, Clone, FromRow)]
pub struct InviteRow {
    pub id: Uuid,
    pub cluster_id: Uuid,
    pub invited_tenant_id: Uuid,
    pub invite_token: String,
    pub access_level: String,
    pub resource_limits: Option<serde_json::Value>,
    /// `pending`, `accepted` or `revoked`; a pending one may have expired.
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub invited_tenant_name: Option<String>,
    pub cluster_name: String,
}

/// Which invites a listing shows.
#[derive(Debug, Clone, Copy)]
pub enum Invites {
    /// Those made on `cluster`, if `owner` owns it.
    MadeOn { cluster: Option<Uuid>, owner: Uuid },
    /// Those sent to this tenant.
    SentTo(Uuid),
    /// The one with this id.
    Id(Uuid),
}

const INVITE_LISTING: Listing<'static> = Listing {
    from: "read_models.rm_cluster_invites i
           JOIN read_models.rm_clusters c ON c.id = i.cluster_id
           LEFT JOIN read_models.rm_tenants t ON t.id = i.invited_tenant_id",
    columns: "i.id, i.cluster_id, i.invited_tenant_id, i.invite_token, i.access_level,
              i.resource_limits, i.status, i.created_by, i.created_at, i.expires_at,
              i.accepted_at, t.name AS invited_tenant_name, c.name AS cluster_name",
    created_at: "i.created_at",
    id: "i.id",
};

/// The invites `which` names, newest first.
pub async fn invites(
    pool: &PgPool,
    which: Invites,
    page: &Page,
) -> Result<Paged<InviteRow>, sqlx::Error> {
    let filter = |query: &mut QueryBuilder<Postgres>| match which {
        Invites::MadeOn { cluster, owner } => {
            query
                .push(" WHERE i.cluster_id = ")
                .push_bind(cluster)
                .push(" AND c.tenant_id = ")
                .push_bind(owner);
        }
        Invites::SentTo(tenant) => {
            query
                .push(" WHERE i.invited_tenant_id = ")
                .push_bind(tenant);
        }
        Invites::Id(id) => {
            query.push(" WHERE i.id = ").push_bind(id);
        }
    };
    page.fetch(pool, INVITE_LISTING, filter, |row: &InviteRow| Position {
        created_at: row.created_at,
        id: row.id.to_string(),
    })
    .await
}

/// Invite `id`.
pub async fn invite(pool: &PgPool, id: Uuid) -> Result<Option<InviteRow>, sqlx::Error> {
    let page = invites(pool, Invites::Id(id), &Page::new(1, false, None)).await?;
    Ok(page.edges.into_iter().next().map(|(_, row)| row))
}

/// The cluster of invite `id`, if `owner` owns that cluster.
pub async fn cluster_of_invite(
    pool: &PgPool,
    owner: Uuid,
    id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i.cluster_id FROM read_models.rm_cluster_invites i
         JOIN read_models.rm_clusters c ON c.id = i.cluster_id
         WHERE i.id = $1 AND c.tenant_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(pool)
    .await
}
