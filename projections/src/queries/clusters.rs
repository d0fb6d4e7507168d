//! Which clusters a tenant may use: the platform's shared clusters, its own,
//! and those it holds an active subscription to. Written once, here, and
//! used by the balancer (placing streams and viewers) and the bridge
//! (`clusters`, `cluster(id)`, the preferred cluster).

use std::collections::HashSet;

use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// The rule, on a cluster already read: shared, owned by `tenant`, or
/// subscribed to by it. [`push_usable`] is the same rule in SQL.
pub fn usable(shared: bool, owner: Option<Uuid>, tenant: Uuid, subscribed: bool) -> bool {
    shared || owner == Some(tenant) || subscribed
}

/// Of `clusters`, those `tenant` holds an active subscription to.
pub async fn subscribed_among(
    pool: &PgPool,
    tenant: Uuid,
    clusters: &[Uuid],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT cluster_id FROM read_models.rm_cluster_subscriptions
         WHERE cluster_id = ANY($1) AND tenant_id = $2 AND status = 'ACTIVE'",
    )
    .bind(clusters)
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().collect())
}

/// The ids of every cluster `tenant` may use.
pub async fn usable_ids(pool: &PgPool, tenant: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut query = QueryBuilder::new("SELECT id FROM read_models.rm_clusters WHERE ");
    push_usable(&mut query, tenant);
    query.build_query_scalar().fetch_all(pool).await
}

/// Restricts a query of `read_models.rm_clusters` (its columns unqualified)
/// to the clusters `tenant` may use.
pub fn push_usable(query: &mut QueryBuilder<Postgres>, tenant: Uuid) {
    query
        .push("(shared OR tenant_id = ")
        .push_bind(tenant)
        .push(" OR ");
    push_subscribed(query, tenant);
    query.push(")");
}

/// Restricts a query of `read_models.rm_clusters` to the clusters `tenant`
/// holds an active subscription to.
pub fn push_subscribed(query: &mut QueryBuilder<Postgres>, tenant: Uuid) {
    query
        .push("id IN (SELECT cluster_id FROM read_models.rm_cluster_subscriptions WHERE status = 'ACTIVE' AND tenant_id = ")
        .push_bind(tenant)
        .push(")");
}
