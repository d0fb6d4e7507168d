//! Tenants, users and their credentials as the control-plane read model
//! holds them: sign-in, API tokens (kept as hashes) and playback signing keys.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::page::{Listing, Page, Paged, Position};

/// Whether tenant `id` exists.
pub async fn tenant_exists(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM read_models.rm_tenants WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// The cluster tenant `id` prefers, if it chose one.
pub async fn preferred_cluster(pool: &PgPool, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    let preferred: Option<Option<Uuid>> =
        sqlx::query_scalar("SELECT preferred_cluster_id FROM read_models.rm_tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(preferred.flatten())
}

/// A user, as sign-in needs them.
#[derive(Debug, Clone, FromRow)]
pub struct SignInRow {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    /// The event's enum name, e.g. `USER_ROLE_OWNER`.
    pub role: String,
}

/// The user with this e-mail address (compared without case).
pub async fn user_by_email(pool: &PgPool, email: &str) -> Result<Option<SignInRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, role FROM read_models.rm_users WHERE lower(email) = lower($1)",
    )
    .bind(email)
    .fetch_optional(pool)
    .await
}

/// An API token as authentication needs it.
#[derive(Debug, Clone, FromRow)]
pub struct TokenGrant {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The API token whose SHA-256 this is.
pub async fn token_by_hash(
    pool: &PgPool,
    token_sha256: &[u8],
) -> Result<Option<TokenGrant>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, scopes, expires_at, revoked_at
         FROM read_models.rm_api_tokens WHERE token_hash = $1",
    )
    .bind(token_sha256)
    .fetch_optional(pool)
    .await
}

/// Notes that token `id` was used now. The table is the bridge's own, not
/// a projection: usage is not an event. The database skips the write when
/// the last one is less than a minute old.
pub async fn record_token_use(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_token_usage (token_id, last_used_at) VALUES ($1, now())
         ON CONFLICT (token_id) DO UPDATE SET last_used_at = now()
         WHERE api_token_usage.last_used_at < now() - interval '1 minute'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// An API token as its tenant sees it (never its value).
#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str =
    "t.id, t.name, t.scopes, t.expires_at, t.revoked_at, t.created_at, u.last_used_at";
const TOKEN_FROM: &str =
    "read_models.rm_api_tokens t LEFT JOIN api_token_usage u ON u.token_id = t.id";

/// `tenant`'s API tokens, newest first.
pub async fn tokens(
    pool: &PgPool,
    tenant: Uuid,
    page: &Page,
) -> Result<Paged<TokenRow>, sqlx::Error> {
    let listing = Listing {
        from: TOKEN_FROM,
        columns: TOKEN_COLUMNS,
        created_at: "t.created_at",
        id: "t.id",
    };
    let filter = |query: &mut QueryBuilder<Postgres>| {
        query.push(" WHERE t.tenant_id = ").push_bind(tenant);
    };
    page.fetch(pool, listing, filter, |row: &TokenRow| Position {
        created_at: row.created_at,
        id: row.id.to_string(),
    })
    .await
}

/// `tenant`'s API token `id`.
pub async fn token(pool: &PgPool, tenant: Uuid, id: Uuid) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.id = $1 AND t.tenant_id = $2"
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// A playback signing key: its public half only.
#[derive(Debug, Clone, FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub name: String,
    pub algorithm: String,
    pub public_key_spki: Vec<u8>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const KEY_COLUMNS: &str = "kid, name, algorithm, public_key_spki, revoked_at, created_at";

/// `tenant`'s signing keys, newest first: all, or only the revoked ones
/// (`Some(true)`) or the active ones (`Some(false)`).
pub async fn signing_keys(
    pool: &PgPool,
    tenant: Uuid,
    revoked: Option<bool>,
    page: &Page,
) -> Result<Paged<SigningKeyRow>, sqlx::Error> {
    let filter = |query: &mut QueryBuilder<Postgres>| {
        query.push(" WHERE tenant_id = ").push_bind(tenant);
        match revoked {
            Some(true) => query.push(" AND revoked_at IS NOT NULL"),
            Some(false) => query.push(" AND revoked_at IS NULL"),
            None => query,
        };
    };
    let listing = Listing {
        from: "read_models.rm_signing_keys",
        columns: KEY_COLUMNS,
        created_at: "created_at",
        id: "kid",
    };
    page.fetch(pool, listing, filter, |row: &SigningKeyRow| Position {
        created_at: row.created_at,
        id: row.kid.clone(),
    })
    .await
}

/// `tenant`'s signing key `kid`.
pub async fn signing_key(
    pool: &PgPool,
    tenant: Uuid,
    kid: &str,
) -> Result<Option<SigningKeyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM read_models.rm_signing_keys WHERE kid = $1 AND tenant_id = $2"
    )))
    .bind(kid)
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// The public keys (kid, SPKI DER) of `tenant`'s active signing keys, by kid:
/// what a playback JWT may be signed with.
pub async fn active_public_keys(
    pool: &PgPool,
    tenant: Option<Uuid>,
) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kid, public_key_spki FROM read_models.rm_signing_keys
         WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY kid",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
}
