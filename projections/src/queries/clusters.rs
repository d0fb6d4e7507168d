//! Clusters, their nodes and what runs on them, as the control-plane read
//! model holds them; and which clusters a tenant may use (the platform's
//! shared clusters, its own, and those it holds an active subscription to),
//! a rule written once, here, for the balancer (placing streams and viewers)
//! and the bridge (`clusters`, `cluster(id)`, the preferred cluster).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::page::{Listing, Page, Paged, Position};

/// The rule, on a cluster already read: shared, owned by `tenant`, or
/// subscribed to by it. The queries ([`usable_ids`], [`usable_by`],
/// [`list`]) apply the same rule in SQL.
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
fn push_usable(query: &mut QueryBuilder<Postgres>, tenant: Uuid) {
    query
        .push("(shared OR tenant_id = ")
        .push_bind(tenant)
        .push(" OR ");
    push_subscribed(query, tenant);
    query.push(")");
}

/// Restricts a query of `read_models.rm_clusters` to the clusters `tenant`
/// holds an active subscription to.
fn push_subscribed(query: &mut QueryBuilder<Postgres>, tenant: Uuid) {
    query
        .push("id IN (SELECT cluster_id FROM read_models.rm_cluster_subscriptions WHERE status = 'ACTIVE' AND tenant_id = ")
        .push_bind(tenant)
        .push(")");
}

/// A cluster as the read model holds it.
#[derive(Debug, Clone, FromRow)]
pub struct ClusterRow {
    pub id: Uuid,
    /// The owner; none for the platform's own clusters.
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub region: String,
    pub base_url: String,
    pub shared: bool,
    pub max_concurrent_streams: i32,
    pub max_concurrent_viewers: i32,
    pub max_bandwidth_mbps: i32,
    /// `PRIVATE`, `UNLISTED` or `PUBLIC`.
    pub visibility: String,
    pub pricing_model: String,
    pub monthly_price_cents: Option<i32>,
    pub requires_approval: bool,
    pub short_description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const CLUSTER_COLUMNS: &str = "id, tenant_id, name, region, base_url, shared, max_concurrent_streams, max_concurrent_viewers, max_bandwidth_mbps, visibility, pricing_model, monthly_price_cents, requires_approval, short_description, created_at, updated_at";

/// Which clusters a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible {
    /// The platform's shared clusters, the tenant's own and its subscriptions.
    Usable,
    /// The platform's shared clusters.
    Shared,
    /// Other tenants' clusters the tenant holds an active subscription to.
    Subscribed,
}

/// The clusters `tenant` sees under `visible`, newest first.
pub async fn list(
    pool: &PgPool,
    tenant: Uuid,
    visible: Visible,
    page: &Page,
) -> Result<Paged<ClusterRow>, sqlx::Error> {
    let filter = |query: &mut QueryBuilder<Postgres>| match visible {
        Visible::Usable => {
            query.push(" WHERE ");
            push_usable(query, tenant);
        }
        Visible::Shared => {
            query.push(" WHERE shared");
        }
        Visible::Subscribed => {
            query.push(" WHERE ");
            push_subscribed(query, tenant);
        }
    };
    let listing = Listing {
        from: "read_models.rm_clusters",
        columns: CLUSTER_COLUMNS,
        created_at: "created_at",
        id: "id",
    };
    page.fetch(pool, listing, filter, |row: &ClusterRow| Position {
        created_at: row.created_at,
        id: row.id.to_string(),
    })
    .await
}

/// Cluster `id`, whoever may use it.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<ClusterRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CLUSTER_COLUMNS} FROM read_models.rm_clusters WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Cluster `id`, if `tenant` may use it.
pub async fn usable_by(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<ClusterRow>, sqlx::Error> {
    let mut query = QueryBuilder::new(format!(
        "SELECT {CLUSTER_COLUMNS} FROM read_models.rm_clusters WHERE id = "
    ));
    query.push_bind(id).push(" AND ");
    push_usable(&mut query, tenant);
    query.build_query_as().fetch_optional(pool).await
}

/// The region of shared cluster `id`.
pub async fn shared_region(pool: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT region FROM read_models.rm_clusters WHERE id = $1 AND shared")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A node that is enrolled (not decommissioned), with its cluster's region.
#[derive(Debug, Clone, FromRow)]
pub struct NodeRow {
    pub id: Uuid,
    pub cluster_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub hostname: String,
    pub public_host: String,
    pub latitude: f64,
    pub longitude: f64,
    pub enrolled_at: DateTime<Utc>,
    pub reenrolled_at: Option<DateTime<Utc>>,
    /// `NODE_MODE_NORMAL`, `NODE_MODE_DRAINING` or `NODE_MODE_MAINTENANCE`.
    pub operational_mode: String,
    pub region: String,
}

/// Nodes with their cluster's region, of `$1`'s own clusters; the caller
/// adds its conditions.
const NODE_SELECT: &str =
    "SELECT n.id, n.cluster_id, n.tenant_id, n.hostname, n.public_host, n.latitude, n.longitude,
        n.enrolled_at, n.reenrolled_at, n.operational_mode, c.region
 FROM read_models.rm_nodes n JOIN read_models.rm_clusters c ON c.id = n.cluster_id
 WHERE c.tenant_id = $1 AND n.decommissioned_at IS NULL";

/// The nodes of `owner`'s clusters (of one, if `cluster` is given), newest
/// enrolment first, at most `limit` of them.
pub async fn owned_nodes(
    pool: &PgPool,
    owner: Uuid,
    cluster: Option<Uuid>,
    limit: i64,
) -> Result<Vec<NodeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{NODE_SELECT} AND ($2::uuid IS NULL OR n.cluster_id = $2)
         ORDER BY n.enrolled_at DESC, n.id::text DESC LIMIT $3"
    )))
    .bind(owner)
    .bind(cluster)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Node `id`, if it belongs to one of `owner`'s clusters.
pub async fn owned_node(
    pool: &PgPool,
    owner: Uuid,
    id: Uuid,
) -> Result<Option<NodeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{NODE_SELECT} AND n.id = $2")))
        .bind(owner)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The (cluster, node) pairs of the enrolled nodes of `clusters`.
pub async fn nodes_of(pool: &PgPool, clusters: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT cluster_id, id FROM read_models.rm_nodes
         WHERE cluster_id = ANY($1) AND decommissioned_at IS NULL",
    )
    .bind(clusters)
    .fetch_all(pool)
    .await
}

/// The cluster (id, region) node `id` belongs to, decommissioned or not.
pub async fn cluster_of_node(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.region FROM read_models.rm_nodes n
         JOIN read_models.rm_clusters c ON c.id = n.cluster_id WHERE n.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A node as routing needs it.
#[derive(Debug, Clone, FromRow)]
pub struct RoutableNode {
    pub id: Uuid,
    pub cluster_id: Uuid,
    pub public_host: String,
    pub latitude: f64,
    pub longitude: f64,
    pub operational_mode: String,
}

/// Every enrolled node, by id: the fleet the balancer routes over.
pub async fn routable_nodes(pool: &PgPool) -> Result<Vec<RoutableNode>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, cluster_id, public_host, latitude, longitude, operational_mode
         FROM read_models.rm_nodes WHERE decommissioned_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await
}

/// A node of a shared cluster, for the public network status.
#[derive(Debug, Clone, FromRow)]
pub struct SharedNode {
    pub cluster_id: Uuid,
    pub cluster_name: String,
    pub region: String,
    pub max_bandwidth_mbps: i32,
    pub node_id: Uuid,
    pub hostname: String,
    pub latitude: f64,
    pub longitude: f64,
}

/// The enrolled nodes of the shared clusters, grouped by cluster (in name order).
pub async fn shared_nodes(pool: &PgPool) -> Result<Vec<SharedNode>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id AS cluster_id, c.name AS cluster_name, c.region, c.max_bandwidth_mbps,
                n.id AS node_id, n.hostname, n.latitude, n.longitude
         FROM read_models.rm_clusters c
         JOIN read_models.rm_nodes n ON n.cluster_id = c.id AND n.decommissioned_at IS NULL
         WHERE c.shared
         ORDER BY c.name, c.id, n.hostname",
    )
    .fetch_all(pool)
    .await
}

/// A service instance a node reports running.
#[derive(Debug, Clone, FromRow)]
pub struct ServiceRow {
    pub node_id: Uuid,
    pub cluster_id: Uuid,
    pub public_host: String,
    pub service_id: String,
    pub version: String,
    pub protocol: String,
    pub port: i32,
    pub health_endpoint: Option<String>,
    pub process_id: i64,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

/// The service instances not stopped on the enrolled nodes of `owner`'s
/// clusters (of one service, of one cluster), newest first, at most `limit`.
pub async fn running_services(
    pool: &PgPool,
    owner: Uuid,
    service: Option<&str>,
    cluster: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ServiceRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.node_id, n.cluster_id, n.public_host, s.service_id, s.version, s.protocol, s.port,
                s.health_endpoint, s.process_id, s.started_at, s.stopped_at
         FROM read_models.rm_node_services s
         JOIN read_models.rm_nodes n ON n.id = s.node_id
         JOIN read_models.rm_clusters c ON c.id = n.cluster_id
         WHERE c.tenant_id = $1 AND s.stopped_at IS NULL AND n.decommissioned_at IS NULL
           AND ($2::text IS NULL OR s.service_id = $2)
           AND ($3::uuid IS NULL OR n.cluster_id = $3)
         ORDER BY s.started_at DESC, s.node_id::text || '/' || s.service_id DESC
         LIMIT $4",
    )
    .bind(owner)
    .bind(service)
    .bind(cluster)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// An enrolment token as issued (its secret is never stored).
#[derive(Debug, Clone, FromRow)]
pub struct EnrolmentTokenRow {
    pub name: String,
    pub cluster_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub issued_by: String,
    pub created_at: DateTime<Utc>,
}

/// Enrolment token `token_id`.
pub async fn enrolment_token(
    pool: &PgPool,
    token_id: &str,
) -> Result<Option<EnrolmentTokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, cluster_id, expires_at, issued_by, created_at
         FROM read_models.rm_enrolment_tokens WHERE token_id = $1",
    )
    .bind(token_id)
    .fetch_optional(pool)
    .await
}
