//! The control-plane read models in PostgreSQL (`schemas/sql/read_models/control_plane.sql`, one schema per generation).
//!
//! [`apply_batch`] applies a batch, set-based where it can (see its
//! module); [`apply`] applies one event. Both run inside the projector's
//! batch transaction. Events of one aggregate arrive in order; different aggregates' events do not (they sit
//! on different partitions), so only references within an aggregate are
//! enforced (a key for a stream the model lacks is dead-lettered). Aggregate events
//! are applied only if their sequence is above the version the projection
//! last recorded for that aggregate: the relay may publish an event twice
//! (at two Kafka offsets), and the second copy must change nothing.

use chrono::{DateTime, Utc};
use frameworks_events::proto::v1::common::SealedSecret;
use frameworks_events::proto::v1::infrastructure::{
    ClusterPricingModel, ClusterVisibility, NodeOperationalMode,
};
use frameworks_events::proto::v1::stream::{IngestMode, PlaybackPolicy, PlaybackPolicyType};
use frameworks_events::proto::v1::user::UserRole;
use frameworks_events::{Event, EventPayload, Topic};
use prost::Message;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ApplyError;

mod batch;
mod set;

pub use batch::{BatchOutcomes, apply_batch};

pub const NAME: &str = "control-plane";

/// The topics this projection reads.
pub const TOPICS: [Topic; 3] = [Topic::Tenants, Topic::Streams, Topic::Infrastructure];

/// Every read-model table, for rebuilds and comparisons.
pub const TABLES: [&str; 12] = [
    "rm_tenants",
    "rm_users",
    "rm_api_tokens",
    "rm_streams",
    "rm_stream_keys",
    "rm_signing_keys",
    "rm_clusters",
    "rm_cluster_subscriptions",
    "rm_cluster_invites",
    "rm_enrolment_tokens",
    "rm_nodes",
    "rm_node_services",
];

/// Whether the event was applied or was a duplicate of one already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Duplicate,
}

pub async fn apply(conn: &mut PgConnection, event: &Event) -> Result<Applied, ApplyError> {
    // One statement both checks and advances the aggregate's version (taking
    // its row lock): no row back means this sequence was applied before. If
    // the change below fails, the caller's savepoint undoes the advance too.
    let advanced: Option<i32> = sqlx::query_scalar(
        "INSERT INTO projection_versions (projection, aggregate_type, aggregate_id, version)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE SET version = EXCLUDED.version
           WHERE projection_versions.version < EXCLUDED.version
         RETURNING 1",
    )
    .bind(NAME)
    .bind(event.aggregate_type().as_str())
    .bind(&event.aggregate_id)
    .bind(i64::try_from(event.sequence).unwrap_or(i64::MAX))
    .fetch_optional(&mut *conn)
    .await?;
    if advanced.is_none() {
        return Ok(Applied::Duplicate);
    }
    apply_change(conn, event).await?;
    Ok(Applied::Changed)
}

fn uuid_of(event: &Event, what: &str) -> Result<Uuid, ApplyError> {
    Uuid::parse_str(&event.aggregate_id).map_err(|_| ApplyError::Invalid {
        event_type: event.event_type().name(),
        problem: format!("{what} id {:?} is not a UUID", event.aggregate_id),
    })
}

/// A UUID carried in an event's payload.
fn field_uuid(event: &Event, what: &str, value: &str) -> Result<Uuid, ApplyError> {
    Uuid::parse_str(value).map_err(|_| invalid(event, format!("{what} id {value:?} is not a UUID")))
}

fn invalid(event: &Event, problem: String) -> ApplyError {
    ApplyError::Invalid {
        event_type: event.event_type().name(),
        problem,
    }
}

/// The API's name of a protobuf enum value: its name without the type prefix.
fn enum_name(
    name: Result<&'static str, prost::UnknownEnumValue>,
    prefix: &str,
) -> Result<&'static str, String> {
    match name {
        Ok(name) if !name.ends_with("_UNSPECIFIED") => Ok(name.trim_start_matches(prefix)),
        Ok(name) => Err(format!("{name} is not a value")),
        Err(unknown) => Err(format!("{} is not a known value", unknown.0)),
    }
}

/// A count for an `integer` column (events carry u32).
fn count(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn sealed(secret: Option<&SealedSecret>) -> Option<Vec<u8>> {
    secret.map(Message::encode_to_vec)
}

/// Fails with [`ApplyError::MissingAggregate`] when an update touched no row.
fn touched(rows: u64, event: &Event, aggregate: &'static str, id: &str) -> Result<(), ApplyError> {
    if rows == 0 {
        Err(ApplyError::MissingAggregate {
            event_type: event.event_type().name(),
            aggregate,
            id: id.to_owned(),
        })
    } else {
        Ok(())
    }
}

fn unix(seconds: i64) -> Option<DateTime<Utc>> {
    (seconds != 0)
        .then(|| DateTime::from_timestamp(seconds, 0))
        .flatten()
}

async fn apply_change(conn: &mut PgConnection, event: &Event) -> Result<(), ApplyError> {
    let at = event.occurred_at;
    let tenant = event.tenant_id;
    match &event.payload {
        EventPayload::TenantCreated(e) => {
            sqlx::query(
                "INSERT INTO rm_tenants (id, name, tier, region, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(uuid_of(event, "tenant")?)
            .bind(&e.name)
            .bind(&e.tier)
            .bind(&e.region)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::TenantSuspended(e) => {
            let rows = sqlx::query("UPDATE rm_tenants SET suspended = true, suspended_reason = $2, updated_at = $3 WHERE id = $1")
                .bind(uuid_of(event, "tenant")?)
                .bind(&e.reason)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            touched(rows.rows_affected(), event, "tenant", &event.aggregate_id)?;
        }
        EventPayload::TenantReactivated(_) => {
            let rows = sqlx::query("UPDATE rm_tenants SET suspended = false, suspended_reason = NULL, updated_at = $2 WHERE id = $1")
                .bind(uuid_of(event, "tenant")?)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            touched(rows.rows_affected(), event, "tenant", &event.aggregate_id)?;
        }
        EventPayload::TenantPreferredClusterSet(e) => {
            let rows = sqlx::query(
                "UPDATE rm_tenants SET preferred_cluster_id = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(uuid_of(event, "tenant")?)
            .bind(field_uuid(event, "cluster", &e.cluster_id)?)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "tenant", &event.aggregate_id)?;
        }
        EventPayload::SigningKeyCreated(e) => {
            sqlx::query(
                "INSERT INTO rm_signing_keys (kid, tenant_id, name, algorithm, public_key_spki, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&e.kid)
            .bind(uuid_of(event, "tenant")?)
            .bind(&e.name)
            .bind(&e.algorithm)
            .bind(&e.public_key_spki)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::SigningKeyRevoked(e) => {
            let rows = sqlx::query("UPDATE rm_signing_keys SET revoked_at = $2 WHERE kid = $1")
                .bind(&e.kid)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            touched(rows.rows_affected(), event, "signing key", &e.kid)?;
        }
        EventPayload::UserRegistered(e) => {
            let role = UserRole::try_from(e.role)
                .unwrap_or(UserRole::Unspecified)
                .as_str_name();
            sqlx::query(
                "INSERT INTO rm_users (id, tenant_id, email, display_name, role, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(uuid_of(event, "user")?)
            .bind(tenant)
            .bind(&e.email)
            .bind(&e.display_name)
            .bind(role)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::UserPasswordChanged(_) => {
            let rows =
                sqlx::query("UPDATE rm_users SET failed_logins = 0, updated_at = $2 WHERE id = $1")
                    .bind(uuid_of(event, "user")?)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
            touched(rows.rows_affected(), event, "user", &event.aggregate_id)?;
        }
        EventPayload::UserLoginFailed(e) => {
            let rows = sqlx::query(
                "UPDATE rm_users SET failed_logins = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(uuid_of(event, "user")?)
            .bind(i32::try_from(e.consecutive_failures).unwrap_or(i32::MAX))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "user", &event.aggregate_id)?;
        }
        EventPayload::UserLoginSucceeded(_) => {
            let rows = sqlx::query("UPDATE rm_users SET failed_logins = 0, last_login_at = $2, updated_at = $2 WHERE id = $1")
                .bind(uuid_of(event, "user")?)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            touched(rows.rows_affected(), event, "user", &event.aggregate_id)?;
        }
        EventPayload::ApiTokenCreated(e) => {
            sqlx::query(
                "INSERT INTO rm_api_tokens (id, tenant_id, name, scopes, token_hash, token_prefix, expires_at, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(uuid_of(event, "API token")?)
            .bind(tenant)
            .bind(&e.name)
            .bind(&e.scopes)
            .bind(&e.token_hash)
            .bind(&e.token_prefix)
            .bind(unix(e.expires_at_unix))
            .bind(&e.created_by_user_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::ApiTokenRevoked(_) => {
            let rows = sqlx::query("UPDATE rm_api_tokens SET revoked_at = $2 WHERE id = $1")
                .bind(uuid_of(event, "API token")?)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            touched(
                rows.rows_affected(),
                event,
                "API token",
                &event.aggregate_id,
            )?;
        }
        EventPayload::StreamCreated(e) => {
            let mode = IngestMode::try_from(e.ingest_mode)
                .unwrap_or(IngestMode::Unspecified)
                .as_str_name();
            sqlx::query(
                "INSERT INTO rm_streams (id, tenant_id, name, description, record, ingest_mode, playback_id, pull_source, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .bind(uuid_of(event, "stream")?)
            .bind(tenant)
            .bind(&e.name)
            .bind(&e.description)
            .bind(e.record)
            .bind(mode)
            .bind(&e.playback_id)
            .bind(sealed(e.pull_source.as_ref()))
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::StreamUpdated(e) => {
            let mode = e.ingest_mode.map(|m| {
                IngestMode::try_from(m)
                    .unwrap_or(IngestMode::Unspecified)
                    .as_str_name()
            });
            let rows = sqlx::query(
                "UPDATE rm_streams SET
                    name = COALESCE($2, name),
                    description = COALESCE($3, description),
                    record = COALESCE($4, record),
                    ingest_mode = COALESCE($5, ingest_mode),
                    pull_source = CASE WHEN $7 THEN NULL ELSE COALESCE($6, pull_source) END,
                    updated_at = $8
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(uuid_of(event, "stream")?)
            .bind(&e.name)
            .bind(&e.description)
            .bind(e.record)
            .bind(mode)
            .bind(sealed(e.pull_source.as_ref()))
            .bind(e.pull_source_cleared)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "stream", &event.aggregate_id)?;
        }
        EventPayload::StreamPlaybackPolicySet(e) => {
            let id = uuid_of(event, "stream")?;
            let mut policy = e.policy.clone().unwrap_or_default();
            if let Some(webhook) = policy.webhook.as_mut()
                && webhook.secret_kept
            {
                // The update kept the secret set before: carry it over.
                let previous: Option<Option<Vec<u8>>> =
                    sqlx::query_scalar("SELECT playback_policy FROM rm_streams WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                webhook.secret = previous
                    .flatten()
                    .and_then(|bytes| PlaybackPolicy::decode(bytes.as_slice()).ok())
                    .and_then(|previous| previous.webhook)
                    .and_then(|previous| previous.secret);
                webhook.secret_kept = false;
            }
            let stored = (policy.r#type != PlaybackPolicyType::Public as i32)
                .then(|| policy.encode_to_vec());
            let rows = sqlx::query(
                "UPDATE rm_streams SET playback_policy = $2, updated_at = $3
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .bind(stored)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "stream", &event.aggregate_id)?;
        }
        EventPayload::StreamDeleted(_) => {
            let id = uuid_of(event, "stream")?;
            let rows = sqlx::query("UPDATE rm_streams SET deleted_at = $2, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            touched(rows.rows_affected(), event, "stream", &event.aggregate_id)?;
            // A deleted stream's keys must stop matching ingest look-ups.
            sqlx::query("DELETE FROM rm_stream_keys WHERE stream_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        EventPayload::StreamKeyCreated(e) => {
            let stream = uuid_of(event, "stream")?;
            require_stream(conn, event, stream).await?;
            insert_key(
                conn,
                stream,
                &e.key_id,
                &e.label,
                e.primary,
                &e.lookup_hash,
                e.key.as_ref(),
                at,
            )
            .await?;
            if e.primary {
                set_primary(conn, stream, &e.key_id, at).await?;
            }
        }
        EventPayload::StreamKeyRotated(e) => {
            let stream = uuid_of(event, "stream")?;
            require_stream(conn, event, stream).await?;
            sqlx::query("DELETE FROM rm_stream_keys WHERE key_id = $1")
                .bind(&e.previous_key_id)
                .execute(&mut *conn)
                .await?;
            insert_key(
                conn,
                stream,
                &e.key_id,
                "primary",
                true,
                &e.lookup_hash,
                e.key.as_ref(),
                at,
            )
            .await?;
            set_primary(conn, stream, &e.key_id, at).await?;
        }
        EventPayload::StreamKeyDeleted(e) => {
            let rows =
                sqlx::query("DELETE FROM rm_stream_keys WHERE key_id = $1 AND stream_id = $2")
                    .bind(&e.key_id)
                    .bind(uuid_of(event, "stream")?)
                    .execute(&mut *conn)
                    .await?;
            touched(rows.rows_affected(), event, "stream key", &e.key_id)?;
        }
        EventPayload::ClusterCreated(e) => {
            sqlx::query(
                "INSERT INTO rm_clusters (id, tenant_id, name, region, base_url, shared,
                    max_concurrent_streams, max_concurrent_viewers, max_bandwidth_mbps,
                    visibility, pricing_model, requires_approval, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
            )
            .bind(uuid_of(event, "cluster")?)
            .bind(tenant)
            .bind(&e.name)
            .bind(&e.region)
            .bind(&e.base_url)
            .bind(e.shared)
            .bind(count(e.max_concurrent_streams))
            .bind(count(e.max_concurrent_viewers))
            .bind(count(e.max_bandwidth_mbps))
            // The offer every new cluster starts with (see commands' marketplace).
            .bind(if e.shared { "PUBLIC" } else { "PRIVATE" })
            .bind(if e.shared {
                "TIER_INHERIT"
            } else {
                "FREE_UNMETERED"
            })
            .bind(!e.shared)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::ClusterMarketplaceUpdated(e) => {
            let visibility = e.visibility.map(|v| {
                enum_name(
                    ClusterVisibility::try_from(v).map(|v| v.as_str_name()),
                    "CLUSTER_VISIBILITY_",
                )
            });
            let pricing = e.pricing_model.map(|p| {
                enum_name(
                    ClusterPricingModel::try_from(p).map(|p| p.as_str_name()),
                    "CLUSTER_PRICING_MODEL_",
                )
            });
            let rows = sqlx::query(
                "UPDATE rm_clusters SET visibility = COALESCE($2, visibility),
                    pricing_model = COALESCE($3, pricing_model),
                    monthly_price_cents = COALESCE($4, monthly_price_cents),
                    requires_approval = COALESCE($5, requires_approval),
                    short_description = COALESCE($6, short_description), updated_at = $7
                 WHERE id = $1",
            )
            .bind(uuid_of(event, "cluster")?)
            .bind(
                visibility
                    .transpose()
                    .map_err(|problem| invalid(event, problem))?,
            )
            .bind(
                pricing
                    .transpose()
                    .map_err(|problem| invalid(event, problem))?,
            )
            .bind(e.monthly_price_cents.map(count))
            .bind(e.requires_approval)
            .bind(&e.short_description)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "cluster", &event.aggregate_id)?;
        }
        EventPayload::ClusterSubscriptionRequested(e) => {
            let cluster = uuid_of(event, "cluster")?;
            require_row(conn, event, "rm_clusters", "cluster", cluster).await?;
            sqlx::query(
                "INSERT INTO rm_cluster_subscriptions (id, cluster_id, tenant_id, access_level, status,
                    resource_limits, invite_id, requested_by, requested_at, approved_at, approved_by, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $9)",
            )
            .bind(field_uuid(event, "subscription", &e.subscription_id)?)
            .bind(cluster)
            .bind(field_uuid(event, "subscriber tenant", &e.subscriber_tenant_id)?)
            .bind(&e.access_level)
            .bind(if e.active { "ACTIVE" } else { "PENDING_APPROVAL" })
            .bind(Some(&e.resource_limits_json).filter(|j| !j.is_empty()))
            .bind(
                Some(&e.invite_id)
                    .filter(|i| !i.is_empty())
                    .map(|i| field_uuid(event, "invite", i))
                    .transpose()?,
            )
            .bind(&e.requested_by)
            .bind(at)
            .bind(e.active.then_some(at))
            .bind(e.active.then(|| e.requested_by.clone()))
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::ClusterSubscriptionApproved(e) => {
            let rows = sqlx::query(
                "UPDATE rm_cluster_subscriptions SET status = 'ACTIVE', approved_at = $2, approved_by = $3, updated_at = $2
                 WHERE id = $1",
            )
            .bind(field_uuid(event, "subscription", &e.subscription_id)?)
            .bind(at)
            .bind(&e.approved_by)
            .execute(&mut *conn)
            .await?;
            touched(
                rows.rows_affected(),
                event,
                "subscription",
                &e.subscription_id,
            )?;
        }
        EventPayload::ClusterSubscriptionRejected(e) => {
            let rows = sqlx::query(
                "UPDATE rm_cluster_subscriptions SET status = 'REJECTED', rejection_reason = $2, updated_at = $3
                 WHERE id = $1",
            )
            .bind(field_uuid(event, "subscription", &e.subscription_id)?)
            .bind(&e.reason)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(
                rows.rows_affected(),
                event,
                "subscription",
                &e.subscription_id,
            )?;
        }
        EventPayload::ClusterSubscriptionCancelled(e) => {
            let rows = sqlx::query(
                "UPDATE rm_cluster_subscriptions SET status = 'CANCELLED', updated_at = $2 WHERE id = $1",
            )
            .bind(field_uuid(event, "subscription", &e.subscription_id)?)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(
                rows.rows_affected(),
                event,
                "subscription",
                &e.subscription_id,
            )?;
        }
        EventPayload::ClusterInviteCreated(e) => {
            let cluster = uuid_of(event, "cluster")?;
            require_row(conn, event, "rm_clusters", "cluster", cluster).await?;
            sqlx::query(
                "INSERT INTO rm_cluster_invites (id, cluster_id, invited_tenant_id, invite_token, access_level,
                    resource_limits, status, created_by, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'pending', $7, $8, $9)",
            )
            .bind(field_uuid(event, "invite", &e.invite_id)?)
            .bind(cluster)
            .bind(field_uuid(event, "invited tenant", &e.invited_tenant_id)?)
            .bind(&e.invite_token)
            .bind(&e.access_level)
            .bind(Some(&e.resource_limits_json).filter(|j| !j.is_empty()))
            .bind(&e.created_by)
            .bind(at)
            .bind(unix(e.expires_at_unix).unwrap_or(at))
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::ClusterInviteRevoked(e) => {
            let rows = sqlx::query(
                "UPDATE rm_cluster_invites SET status = 'revoked', revoked_at = $2 WHERE id = $1",
            )
            .bind(field_uuid(event, "invite", &e.invite_id)?)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "invite", &e.invite_id)?;
        }
        EventPayload::ClusterInviteAccepted(e) => {
            let rows = sqlx::query(
                "UPDATE rm_cluster_invites SET status = 'accepted', accepted_at = $2 WHERE id = $1",
            )
            .bind(field_uuid(event, "invite", &e.invite_id)?)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "invite", &e.invite_id)?;
        }
        EventPayload::ClusterUpdated(e) => {
            let rows = sqlx::query(
                "UPDATE rm_clusters SET name = COALESCE($2, name), region = COALESCE($3, region),
                    base_url = COALESCE($4, base_url), shared = COALESCE($5, shared),
                    max_concurrent_streams = COALESCE($6, max_concurrent_streams),
                    max_concurrent_viewers = COALESCE($7, max_concurrent_viewers),
                    max_bandwidth_mbps = COALESCE($8, max_bandwidth_mbps), updated_at = $9
                 WHERE id = $1",
            )
            .bind(uuid_of(event, "cluster")?)
            .bind(&e.name)
            .bind(&e.region)
            .bind(&e.base_url)
            .bind(e.shared)
            .bind(e.max_concurrent_streams.map(count))
            .bind(e.max_concurrent_viewers.map(count))
            .bind(e.max_bandwidth_mbps.map(count))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "cluster", &event.aggregate_id)?;
        }
        EventPayload::NodeEnrolmentTokenIssued(e) => {
            let cluster = uuid_of(event, "cluster")?;
            require_row(conn, event, "rm_clusters", "cluster", cluster).await?;
            sqlx::query(
                "INSERT INTO rm_enrolment_tokens (token_id, name, cluster_id, expires_at, issued_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&e.token_id)
            .bind(&e.name)
            .bind(cluster)
            .bind(unix(e.expires_at_unix).unwrap_or(at))
            .bind(&e.issued_by_user_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::EdgePreRegistered(e) => {
            let rows = sqlx::query(
                "UPDATE rm_enrolment_tokens SET reserved_node = $2, reserved_ip = NULLIF($3, '') WHERE token_id = $1",
            )
            .bind(&e.token_id)
            .bind(&e.node_id)
            .bind(&e.external_ip)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "enrolment token", &e.token_id)?;
        }
        EventPayload::NodeEnrolmentTokenConsumed(e) => {
            let rows = sqlx::query(
                "UPDATE rm_enrolment_tokens SET consumed_by_node = $2 WHERE token_id = $1",
            )
            .bind(&e.token_id)
            .bind(&e.node_id)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "enrolment token", &e.token_id)?;
        }
        EventPayload::NodeEnrolled(e) => {
            let cluster = Uuid::parse_str(&e.cluster_id).map_err(|_| ApplyError::Invalid {
                event_type: event.event_type().name(),
                problem: format!("cluster id {:?} is not a UUID", e.cluster_id),
            })?;
            // No check that the cluster is projected: it lives on another partition
            // and may arrive later. References within one aggregate are checked.
            sqlx::query(
                "INSERT INTO rm_nodes (id, cluster_id, tenant_id, hardware_fingerprint, hostname, edge_version,
                                       public_host, latitude, longitude, enrolled_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(uuid_of(event, "node")?)
            .bind(cluster)
            .bind(tenant)
            .bind(&e.hardware_fingerprint)
            .bind(&e.hostname)
            .bind(&e.edge_version)
            .bind(&e.public_host)
            .bind(e.latitude)
            .bind(e.longitude)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventPayload::NodeReenrolled(e) => {
            let rows = sqlx::query(
                "UPDATE rm_nodes SET hostname = $2, edge_version = $3, public_host = $4, reenrolled_at = $5 WHERE id = $1",
            )
            .bind(uuid_of(event, "node")?)
            .bind(&e.hostname)
            .bind(&e.edge_version)
            .bind(&e.public_host)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "node", &event.aggregate_id)?;
        }
        EventPayload::NodeDecommissioned(e) => {
            let node = uuid_of(event, "node")?;
            let rows = sqlx::query("UPDATE rm_nodes SET decommissioned_at = $2, decommission_reason = $3 WHERE id = $1")
                .bind(node)
                .bind(at)
                .bind(&e.reason)
                .execute(&mut *conn)
                .await?;
            touched(rows.rows_affected(), event, "node", &event.aggregate_id)?;
            sqlx::query("UPDATE rm_node_services SET stopped_at = $2 WHERE node_id = $1 AND stopped_at IS NULL")
                .bind(node)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        EventPayload::NodeServicesReported(e) => {
            let node = uuid_of(event, "node")?;
            let ids: Vec<&str> = e.services.iter().map(|s| s.service_id.as_str()).collect();
            sqlx::query(
                "UPDATE rm_node_services SET stopped_at = $3
                 WHERE node_id = $1 AND stopped_at IS NULL AND NOT (service_id = ANY($2))",
            )
            .bind(node)
            .bind(&ids)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            for service in &e.services {
                let started_at =
                    DateTime::from_timestamp(service.started_at_unix, 0).ok_or_else(|| {
                        invalid(
                            event,
                            format!("started_at {} is out of range", service.started_at_unix),
                        )
                    })?;
                sqlx::query(
                    "INSERT INTO rm_node_services (node_id, service_id, version, protocol, port, health_endpoint,
                                                   process_id, started_at, reported_at, stopped_at)
                     VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), $7, $8, $9, NULL)
                     ON CONFLICT (node_id, service_id) DO UPDATE SET
                       version = EXCLUDED.version, protocol = EXCLUDED.protocol, port = EXCLUDED.port,
                       health_endpoint = EXCLUDED.health_endpoint, process_id = EXCLUDED.process_id,
                       started_at = EXCLUDED.started_at, reported_at = EXCLUDED.reported_at, stopped_at = NULL",
                )
                .bind(node)
                .bind(&service.service_id)
                .bind(&service.version)
                .bind(&service.protocol)
                .bind(i32::try_from(service.port).unwrap_or(i32::MAX))
                .bind(&service.health_endpoint)
                .bind(i64::from(service.process_id))
                .bind(started_at)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
        }
        EventPayload::NodeModeChanged(e) => {
            let mode = enum_name(
                NodeOperationalMode::try_from(e.mode).map(|m| m.as_str_name()),
                "NODE_OPERATIONAL_MODE_",
            )
            .map_err(|problem| invalid(event, format!("mode: {problem}")))?;
            let rows = sqlx::query(
                "UPDATE rm_nodes SET operational_mode = $2, mode_reason = $3, mode_changed_at = $4 WHERE id = $1",
            )
            .bind(uuid_of(event, "node")?)
            .bind(mode)
            .bind(&e.reason)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touched(rows.rows_affected(), event, "node", &event.aggregate_id)?;
        }
        // Telemetry lives on other topics and in other projections. Named
        // one by one, so that a new event type does not compile until it is
        // placed here or above.
        EventPayload::NodeHeartbeat(_)
        | EventPayload::NodeMetrics(_)
        | EventPayload::MistTriggerReceived(_)
        | EventPayload::ViewerSessionStarted(_)
        | EventPayload::ViewerSessionEnded(_)
        | EventPayload::IngestStarted(_)
        | EventPayload::IngestEnded(_)
        | EventPayload::StreamBufferChanged(_)
        | EventPayload::StreamHealthReported(_)
        | EventPayload::TrackListUpdated(_)
        | EventPayload::StreamSampled(_)
        | EventPayload::PushEnded(_)
        | EventPayload::RecordingSegmentWritten(_)
        | EventPayload::RecordingEnded(_)
        | EventPayload::InputClosed(_) => {}
    }
    Ok(())
}

async fn require_row(
    conn: &mut PgConnection,
    event: &Event,
    table: &'static str,
    aggregate: &'static str,
    id: Uuid,
) -> Result<(), ApplyError> {
    // `table` is one of this module's constants, never input.
    let exists: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"
    )))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    touched(u64::from(exists), event, aggregate, &id.to_string())
}

async fn require_stream(
    conn: &mut PgConnection,
    event: &Event,
    stream: Uuid,
) -> Result<(), ApplyError> {
    require_row(conn, event, "rm_streams", "stream", stream).await
}

#[allow(clippy::too_many_arguments)]
async fn insert_key(
    conn: &mut PgConnection,
    stream: Uuid,
    key_id: &str,
    label: &str,
    primary: bool,
    lookup_hash: &[u8],
    key: Option<&SealedSecret>,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO rm_stream_keys (key_id, stream_id, label, is_primary, lookup_hash, sealed_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(key_id)
    .bind(stream)
    .bind(label)
    .bind(primary)
    .bind(lookup_hash)
    .bind(sealed(key).unwrap_or_default())
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn set_primary(
    conn: &mut PgConnection,
    stream: Uuid,
    key_id: &str,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    sqlx::query("UPDATE rm_streams SET primary_key_id = $2, updated_at = $3 WHERE id = $1")
        .bind(stream)
        .bind(key_id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
