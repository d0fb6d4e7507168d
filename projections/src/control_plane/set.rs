//! Set-based application: many events of one type in one statement.
//!
//! The projector applies a batch in rounds (see [`crate::postgres`]): round
//! n holds the n-th new event of every aggregate in the batch, so no two
//! events of a round touch the same aggregate's rows and their order within
//! the round does not matter. The events of a round that share a type this
//! module knows ([`applies`]) go to the database as arrays, in one
//! statement over `UNNEST` per read-model table they change, instead of one
//! statement (and a savepoint) each.
//!
//! Each statement reports which events found the rows they need, so an
//! event that [`super::apply`] would refuse is refused here too, with the
//! same [`ApplyError`], and changes nothing: an update touches no row, an
//! insert that needs its stream inserts nothing. The other events of the
//! statement stay applied. A database error fails the whole call; the
//! projector then applies the batch event by event instead.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use frameworks_events::proto::v1::stream::IngestMode;
use frameworks_events::proto::v1::user::UserRole;
use frameworks_events::{Event, EventPayload, EventType};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{sealed, touched, uuid_of};
use crate::ApplyError;

/// The event types [`apply_all`] takes.
pub fn applies(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::TenantCreated
            | EventType::UserRegistered
            | EventType::UserLoginSucceeded
            | EventType::UserLoginFailed
            | EventType::StreamCreated
            | EventType::StreamUpdated
            | EventType::StreamKeyCreated
            | EventType::StreamDeleted
    )
}

/// What became of each event of a set-based call, in the order given.
pub type Outcomes = Vec<Result<(), ApplyError>>;

/// Applies `events`, all of one type that [`applies`] and each of a
/// different aggregate, in as few statements as that type needs.
///
/// # Errors
/// A database error; the caller's savepoint must then be rolled back, as
/// some of the statements may have run.
pub async fn apply_all(
    conn: &mut PgConnection,
    events: &[&Event],
) -> Result<Outcomes, sqlx::Error> {
    let Some(first) = events.first() else {
        return Ok(Vec::new());
    };
    let mut outcomes: Outcomes = events.iter().map(|_| Ok(())).collect();
    // Ids are checked here as `apply` checks them: a bad one fails its event only.
    let mut ids = Vec::with_capacity(events.len());
    let mut valid = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        match uuid_of(event, first.aggregate_type().as_str()) {
            Ok(id) => {
                ids.push(id);
                valid.push(index);
            }
            Err(error) => outcomes[index] = Err(error),
        }
    }
    let rows = Rows {
        events: valid.iter().map(|&index| events[index]).collect(),
        ids,
    };
    let missing = match first.event_type() {
        EventType::TenantCreated => rows.tenants_created(conn).await?,
        EventType::UserRegistered => rows.users_registered(conn).await?,
        EventType::UserLoginSucceeded => rows.logins_succeeded(conn).await?,
        EventType::UserLoginFailed => rows.logins_failed(conn).await?,
        EventType::StreamCreated => rows.streams_created(conn).await?,
        EventType::StreamUpdated => rows.streams_updated(conn).await?,
        EventType::StreamKeyCreated => rows.stream_keys_created(conn).await?,
        EventType::StreamDeleted => rows.streams_deleted(conn).await?,
        other => {
            return Err(sqlx::Error::Protocol(format!(
                "{} is not applied set-based",
                other.name()
            )));
        }
    };
    let aggregate = first.aggregate_type().as_str();
    for (position, index) in valid.into_iter().enumerate() {
        if missing.contains(&position) {
            let event = events[index];
            outcomes[index] = touched(0, event, aggregate, &event.aggregate_id);
        }
    }
    Ok(outcomes)
}

/// The valid events of one call and their aggregate ids, position by position.
struct Rows<'a> {
    events: Vec<&'a Event>,
    ids: Vec<Uuid>,
}

/// Positions (into [`Rows`]) whose rows were not there.
type Missing = HashSet<usize>;

impl Rows<'_> {
    fn at(&self) -> Vec<DateTime<Utc>> {
        self.events.iter().map(|e| e.occurred_at).collect()
    }

    fn tenants(&self) -> Vec<Option<Uuid>> {
        self.events.iter().map(|e| e.tenant_id).collect()
    }

    /// The positions whose id is not among `found`.
    fn missing(&self, found: &[Uuid]) -> Missing {
        let found: HashSet<&Uuid> = found.iter().collect();
        (0..self.ids.len())
            .filter(|&position| !found.contains(&self.ids[position]))
            .collect()
    }

    /// The payloads, which the caller guarantees are all of one variant.
    fn payloads<T>(&self, pick: impl Fn(&EventPayload) -> Option<&T>) -> Vec<&T> {
        self.events
            .iter()
            .filter_map(|event| pick(&event.payload))
            .collect()
    }

    async fn tenants_created(&self, conn: &mut PgConnection) -> Result<Missing, sqlx::Error> {
        let created = self.payloads(|p| match p {
            EventPayload::TenantCreated(e) => Some(e),
            _ => None,
        });
        sqlx::query(
            "INSERT INTO rm_tenants (id, name, tier, region, created_at, updated_at)
             SELECT v.id, v.name, v.tier, v.region, v.at, v.at
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
               AS v(id, name, tier, region, at)",
        )
        .bind(&self.ids)
        .bind(created.iter().map(|e| e.name.as_str()).collect::<Vec<_>>())
        .bind(created.iter().map(|e| e.tier.as_str()).collect::<Vec<_>>())
        .bind(
            created
                .iter()
                .map(|e| e.region.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(self.at())
        .execute(&mut *conn)
        .await?;
        Ok(Missing::new())
    }

    async fn users_registered(&self, conn: &mut PgConnection) -> Result<Missing, sqlx::Error> {
        let registered = self.payloads(|p| match p {
            EventPayload::UserRegistered(e) => Some(e),
            _ => None,
        });
        let roles: Vec<&str> = registered
            .iter()
            .map(|e| {
                UserRole::try_from(e.role)
                    .unwrap_or(UserRole::Unspecified)
                    .as_str_name()
            })
            .collect();
        sqlx::query(
            "INSERT INTO rm_users (id, tenant_id, email, display_name, role, created_at, updated_at)
             SELECT v.id, v.tenant_id, v.email, v.display_name, v.role, v.at, v.at
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
               AS v(id, tenant_id, email, display_name, role, at)",
        )
        .bind(&self.ids)
        .bind(self.tenants())
        .bind(registered.iter().map(|e| e.email.as_str()).collect::<Vec<_>>())
        .bind(
            registered
                .iter()
                .map(|e| e.display_name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(roles)
        .bind(self.at())
        .execute(&mut *conn)
        .await?;
        Ok(Missing::new())
    }

    async fn logins_succeeded(&self, conn: &mut PgConnection) -> Result<Missing, sqlx::Error> {
        let found: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE rm_users u SET failed_logins = 0, last_login_at = v.at, updated_at = v.at
             FROM UNNEST($1::uuid[], $2::timestamptz[]) AS v(id, at)
             WHERE u.id = v.id
             RETURNING u.id",
        )
        .bind(&self.ids)
        .bind(self.at())
        .fetch_all(&mut *conn)
        .await?;
        Ok(self.missing(&found))
    }

    async fn logins_failed(&self, conn: &mut PgConnection) -> Result<Missing, sqlx::Error> {
        let failures: Vec<i32> = self
            .payloads(|p| match p {
                EventPayload::UserLoginFailed(e) => Some(e),
                _ => None,
            })
            .iter()
            .map(|e| i32::try_from(e.consecutive_failures).unwrap_or(i32::MAX))
            .collect();
        let found: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE rm_users u SET failed_logins = v.failures, updated_at = v.at
             FROM UNNEST($1::uuid[], $2::integer[], $3::timestamptz[]) AS v(id, failures, at)
             WHERE u.id = v.id
             RETURNING u.id",
        )
        .bind(&self.ids)
        .bind(failures)
        .bind(self.at())
        .fetch_all(&mut *conn)
        .await?;
        Ok(self.missing(&found))
    }

    async fn streams_created(&self, conn: &mut PgConnection) -> Result<Missing, sqlx::Error> {
        let created = self.payloads(|p| match p {
            EventPayload::StreamCreated(e) => Some(e),
            _ => None,
        });
        let modes: Vec<&str> = created.iter().map(|e| ingest_mode(e.ingest_mode)).collect();
        sqlx::query(
            "INSERT INTO rm_streams (id, tenant_id, name, description, record, ingest_mode, playback_id,
                                     pull_source, created_at, updated_at)
             SELECT v.id, v.tenant_id, v.name, v.description, v.record, v.mode, v.playback_id,
                    v.pull_source, v.at, v.at
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::boolean[], $6::text[],
                         $7::text[], $8::bytea[], $9::timestamptz[])
               AS v(id, tenant_id, name, description, record, mode, playback_id, pull_source, at)",
        )
        .bind(&self.ids)
        .bind(self.tenants())
        .bind(created.iter().map(|e| e.name.as_str()).collect::<Vec<_>>())
        .bind(
            created
                .iter()
                .map(|e| e.description.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(created.iter().map(|e| e.record).collect::<Vec<_>>())
        .bind(modes)
        .bind(
            created
                .iter()
                .map(|e| e.playback_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|e| sealed(e.pull_source.as_ref()))
                .collect::<Vec<_>>(),
        )
        .bind(self.at())
        .execute(&mut *conn)
        .await?;
        Ok(Missing::new())
    }

    async fn streams_updated(&self, conn: &mut PgConnection) -> Result<Missing, sqlx::Error> {
        let updated = self.payloads(|p| match p {
            EventPayload::StreamUpdated(e) => Some(e),
            _ => None,
        });
        let found: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE rm_streams s SET
                name = COALESCE(v.name, s.name),
                description = COALESCE(v.description, s.description),
                record = COALESCE(v.record, s.record),
                ingest_mode = COALESCE(v.mode, s.ingest_mode),
                pull_source = CASE WHEN v.cleared THEN NULL ELSE COALESCE(v.pull_source, s.pull_source) END,
                updated_at = v.at
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::boolean[], $5::text[], $6::bytea[],
                         $7::boolean[], $8::timestamptz[])
               AS v(id, name, description, record, mode, pull_source, cleared, at)
             WHERE s.id = v.id AND s.deleted_at IS NULL
             RETURNING s.id",
        )
        .bind(&self.ids)
        .bind(updated.iter().map(|e| e.name.as_deref()).collect::<Vec<_>>())
        .bind(
            updated
                .iter()
                .map(|e| e.description.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(updated.iter().map(|e| e.record).collect::<Vec<_>>())
        .bind(
            updated
                .iter()
                .map(|e| e.ingest_mode.map(ingest_mode))
                .collect::<Vec<_>>(),
        )
        .bind(
            updated
                .iter()
                .map(|e| sealed(e.pull_source.as_ref()))
                .collect::<Vec<_>>(),
        )
        .bind(
            updated
                .iter()
                .map(|e| e.pull_source_cleared)
                .collect::<Vec<_>>(),
        )
        .bind(self.at())
        .fetch_all(&mut *conn)
        .await?;
        Ok(self.missing(&found))
    }

    async fn stream_keys_created(&self, conn: &mut PgConnection) -> Result<Missing, sqlx::Error> {
        let created = self.payloads(|p| match p {
            EventPayload::StreamKeyCreated(e) => Some(e),
            _ => None,
        });
        // Like `apply`, a key needs its stream in the model (deleted or not).
        let found: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO rm_stream_keys (key_id, stream_id, label, is_primary, lookup_hash, sealed_key, created_at)
             SELECT v.key_id, v.stream_id, v.label, v.is_primary, v.lookup_hash, v.sealed_key, v.at
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::boolean[], $5::bytea[], $6::bytea[],
                         $7::timestamptz[])
               AS v(stream_id, key_id, label, is_primary, lookup_hash, sealed_key, at)
             WHERE EXISTS (SELECT 1 FROM rm_streams s WHERE s.id = v.stream_id)
             RETURNING stream_id",
        )
        .bind(&self.ids)
        .bind(created.iter().map(|e| e.key_id.as_str()).collect::<Vec<_>>())
        .bind(created.iter().map(|e| e.label.as_str()).collect::<Vec<_>>())
        .bind(created.iter().map(|e| e.primary).collect::<Vec<_>>())
        .bind(
            created
                .iter()
                .map(|e| e.lookup_hash.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|e| sealed(e.key.as_ref()).unwrap_or_default())
                .collect::<Vec<_>>(),
        )
        .bind(self.at())
        .fetch_all(&mut *conn)
        .await?;
        let missing = self.missing(&found);
        // A primary key becomes its stream's primary, as `apply` sets it.
        let primaries: Vec<usize> = (0..self.ids.len())
            .filter(|position| !missing.contains(position) && created[*position].primary)
            .collect();
        if !primaries.is_empty() {
            let at = self.at();
            sqlx::query(
                "UPDATE rm_streams s SET primary_key_id = v.key_id, updated_at = v.at
                 FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS v(id, key_id, at)
                 WHERE s.id = v.id",
            )
            .bind(primaries.iter().map(|&p| self.ids[p]).collect::<Vec<_>>())
            .bind(
                primaries
                    .iter()
                    .map(|&p| created[p].key_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(primaries.iter().map(|&p| at[p]).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(missing)
    }

    async fn streams_deleted(&self, conn: &mut PgConnection) -> Result<Missing, sqlx::Error> {
        // A deleted stream's keys must stop matching ingest look-ups.
        let found: Vec<Uuid> = sqlx::query_scalar(
            "WITH deleted AS (
                UPDATE rm_streams s SET deleted_at = v.at, updated_at = v.at
                FROM UNNEST($1::uuid[], $2::timestamptz[]) AS v(id, at)
                WHERE s.id = v.id AND s.deleted_at IS NULL
                RETURNING s.id
             ), keys AS (
                DELETE FROM rm_stream_keys k USING deleted d WHERE k.stream_id = d.id
             )
             SELECT id FROM deleted",
        )
        .bind(&self.ids)
        .bind(self.at())
        .fetch_all(&mut *conn)
        .await?;
        Ok(self.missing(&found))
    }
}

fn ingest_mode(mode: i32) -> &'static str {
    IngestMode::try_from(mode)
        .unwrap_or(IngestMode::Unspecified)
        .as_str_name()
}
