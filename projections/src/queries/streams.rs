//! Streams and their keys, as the control-plane read model holds them: the
//! bridge's stream queries and the balancer's ingest and playback look-ups.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::page::{Listing, Page, Paged, Position};

/// A live (not deleted) stream.
#[derive(Debug, Clone, FromRow)]
pub struct StreamRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub record: bool,
    /// The event's enum name, e.g. `INGEST_MODE_PULL`.
    pub ingest_mode: String,
    pub playback_id: String,
    /// A sealed `PullSource`, for pull streams.
    pub pull_source: Option<Vec<u8>>,
    /// An encoded `PlaybackPolicy`; none is public.
    pub playback_policy: Option<Vec<u8>>,
    pub primary_key_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StreamRow {
    /// Whether the platform pulls this stream from a source (nobody pushes).
    pub fn pulls(&self) -> bool {
        self.ingest_mode.ends_with("PULL")
    }
}

const STREAM_COLUMNS: &str = "id, name, description, record, ingest_mode, playback_id, pull_source, playback_policy, primary_key_id, created_at, updated_at";

/// A stream key; the key itself is sealed.
#[derive(Debug, Clone, FromRow)]
pub struct StreamKeyRow {
    pub key_id: String,
    pub stream_id: Uuid,
    pub label: String,
    pub sealed_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

const KEY_COLUMNS: &str = "key_id, stream_id, label, sealed_key, created_at";

/// `tenant`'s streams, newest first; `name_like` is an `ILIKE` pattern.
pub async fn list(
    pool: &PgPool,
    tenant: Uuid,
    name_like: Option<&str>,
    page: &Page,
) -> Result<Paged<StreamRow>, sqlx::Error> {
    let filter = |query: &mut QueryBuilder<Postgres>| {
        query
            .push(" WHERE tenant_id = ")
            .push_bind(tenant)
            .push(" AND deleted_at IS NULL");
        if let Some(pattern) = name_like {
            query.push(" AND name ILIKE ").push_bind(pattern.to_owned());
        }
    };
    let listing = Listing {
        from: "read_models.rm_streams",
        columns: STREAM_COLUMNS,
        created_at: "created_at",
        id: "id",
    };
    page.fetch(pool, listing, filter, |row: &StreamRow| Position {
        created_at: row.created_at,
        id: row.id.to_string(),
    })
    .await
}

/// `tenant`'s stream `id`, unless deleted.
pub async fn get(pool: &PgPool, tenant: Uuid, id: Uuid) -> Result<Option<StreamRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STREAM_COLUMNS} FROM read_models.rm_streams
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// The keys of `stream`, newest first.
pub async fn keys(
    pool: &PgPool,
    stream: Uuid,
    page: &Page,
) -> Result<Paged<StreamKeyRow>, sqlx::Error> {
    let listing = Listing {
        from: "read_models.rm_stream_keys",
        columns: KEY_COLUMNS,
        created_at: "created_at",
        id: "key_id",
    };
    let filter = |query: &mut QueryBuilder<Postgres>| {
        query.push(" WHERE stream_id = ").push_bind(stream);
    };
    page.fetch(pool, listing, filter, |row: &StreamKeyRow| Position {
        created_at: row.created_at,
        id: row.key_id.clone(),
    })
    .await
}

/// One stream key by its id.
pub async fn key(pool: &PgPool, key_id: &str) -> Result<Option<StreamKeyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM read_models.rm_stream_keys WHERE key_id = $1"
    )))
    .bind(key_id)
    .fetch_optional(pool)
    .await
}

/// Which of `tenant`'s live streams the key with this SHA-256 publishes to.
pub async fn tenant_stream_of_key(
    pool: &PgPool,
    tenant: Uuid,
    key_sha256: &[u8],
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.id FROM read_models.rm_stream_keys k
         JOIN read_models.rm_streams s ON s.id = k.stream_id
         WHERE k.lookup_hash = $1 AND s.tenant_id = $2 AND s.deleted_at IS NULL",
    )
    .bind(key_sha256)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// What ingest needs to know of the stream a key publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct KeyedStream {
    pub stream: Uuid,
    pub tenant: Option<Uuid>,
    pub deleted: bool,
    /// The stream's tenant is suspended.
    pub suspended: bool,
}

/// The stream the key with this SHA-256 publishes to, deleted or not.
pub async fn keyed_stream(
    pool: &PgPool,
    key_sha256: &[u8],
) -> Result<Option<KeyedStream>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id AS stream, s.tenant_id AS tenant, s.deleted_at IS NOT NULL AS deleted,
                COALESCE(t.suspended, false) AS suspended
         FROM read_models.rm_stream_keys k
         JOIN read_models.rm_streams s ON s.id = k.stream_id
         LEFT JOIN read_models.rm_tenants t ON t.id = s.tenant_id
         WHERE k.lookup_hash = $1",
    )
    .bind(key_sha256)
    .fetch_optional(pool)
    .await
}

/// What playback needs to know of the stream a playback id plays.
#[derive(Debug, Clone, FromRow)]
pub struct PlayedStream {
    pub stream: Uuid,
    pub tenant: Option<Uuid>,
    /// The stream's tenant is suspended.
    pub suspended: bool,
    pub pull_source: Option<Vec<u8>>,
    pub playback_policy: Option<Vec<u8>>,
}

/// The live stream `playback_id` plays.
pub async fn played_stream(
    pool: &PgPool,
    playback_id: &str,
) -> Result<Option<PlayedStream>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id AS stream, s.tenant_id AS tenant,
                COALESCE(t.suspended, false) AS suspended, s.pull_source, s.playback_policy
         FROM read_models.rm_streams s
         LEFT JOIN read_models.rm_tenants t ON t.id = s.tenant_id
         WHERE s.playback_id = $1 AND s.deleted_at IS NULL",
    )
    .bind(playback_id)
    .fetch_optional(pool)
    .await
}

/// Whose a stream is, deleted or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct StreamOwner {
    pub tenant: Option<Uuid>,
    pub deleted: bool,
    /// The tenant asked for the stream to be recorded.
    pub record: bool,
}

/// Whose stream `id` is; `None` for a stream the platform never had.
pub async fn owner(pool: &PgPool, id: Uuid) -> Result<Option<StreamOwner>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id AS tenant, deleted_at IS NOT NULL AS deleted, record
         FROM read_models.rm_streams WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A stream's public face: what a player may show before it plays.
#[derive(Debug, Clone, FromRow)]
pub struct StreamCard {
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// The card of stream `id`, deleted or not.
pub async fn card(pool: &PgPool, id: Uuid) -> Result<Option<StreamCard>, sqlx::Error> {
    sqlx::query_as("SELECT name, description, created_at FROM read_models.rm_streams WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}
