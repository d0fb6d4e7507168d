//! The Postgres event store: load an aggregate's history, append with an
//! expected version, claim unique values, remember idempotent outcomes. One
//! [`EventStore::append`] is one transaction: events, outbox rows, claims and
//! the idempotency record commit together or not at all.

use std::time::Duration;

use frameworks_events::{AggregateType, DecodeError, Event};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use tracing::debug;

/// The notification channel the relay listens on; sent in every append.
pub const OUTBOX_CHANNEL: &str = "frameworks_outbox";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../schemas/sql");

/// How a role reaches PostgreSQL.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL.
    #[arg(
        long = "database-url",
        env = "FRAMEWORKS_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/frameworks",
        value_parser = parse_database_url
    )]
    pub url: String,

    /// Most connections this process opens.
    #[arg(
        long = "database-max-connections",
        env = "FRAMEWORKS_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub max_connections: u32,
}

fn parse_database_url(value: &str) -> Result<String, String> {
    value
        .parse::<PgConnectOptions>()
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("running migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database holds a migration this build does not have, or has with
    /// other contents: it was migrated by another build (the migrations were
    /// squashed while no database was deployed). Never applied over.
    #[error(
        "the database was migrated by another build: its migration {version} is missing from or differs in this one's schemas/sql (a development database is wiped by `compose/infra reset`)"
    )]
    ForeignMigrations { version: i64 },
    /// The database lacks a migration of this build that it once had, or
    /// never had: it was restored from an older backup, or is another
    /// database. A role refuses to write to it until it is migrated again.
    #[error(
        "the database lacks this build's migration {version} (restored from an older backup, or another database?); `frameworks db migrate` applies it"
    )]
    MissingMigration { version: i64 },
    #[error("stored event {event_id} of {aggregate_type} {aggregate_id} does not decode")]
    Corrupt {
        aggregate_type: String,
        aggregate_id: String,
        event_id: String,
        #[source]
        source: DecodeError,
    },
}

/// Why an append did not commit.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to one of the aggregates first.
    #[error("concurrent write to {aggregate_type} {aggregate_id}")]
    Conflict {
        aggregate_type: AggregateType,
        aggregate_id: String,
    },
    /// A unique value is already claimed by another aggregate.
    #[error("{kind} is already taken")]
    ClaimTaken { kind: String },
    /// Another request with the same idempotency key committed first.
    #[error("idempotency key raced")]
    IdempotencyRace,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A value unique across aggregates, e.g. `("user-email", "a@example.com")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: &'static str,
    pub value: String,
}

impl Claim {
    pub fn new(kind: &'static str, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }
}

/// Events for one aggregate, appended after `expected_version`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub aggregate_type: AggregateType,
    pub aggregate_id: String,
    pub expected_version: u64,
    /// Sequences must run `expected_version + 1 ..` in order.
    pub events: Vec<Event>,
    pub claims: Vec<Claim>,
    pub releases: Vec<Claim>,
}

/// The first outcome of an idempotent command.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub scope: String,
    pub key: String,
    pub fingerprint: Vec<u8>,
    /// Sealed: outcomes may hold secrets shown once.
    pub outcome: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
}

impl EventStore {
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let options: PgConnectOptions = settings.url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether PostgreSQL answers (a role's health check).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Whether the database still holds this build's migrations, as
    /// [`migrate`](Self::migrate) left them. Running roles ask again from
    /// time to time, so that a server that comes back as another database
    /// (restored from an older backup, or migrated by another build with
    /// other contents under the same version) is refused rather than
    /// written to. Migrations newer than this build's are let be: a newer
    /// build migrated forward, and this one keeps running until replaced.
    pub async fn check_migrations(pool: &PgPool) -> Result<(), StoreError> {
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await?;
        for ours in MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
        {
            match applied.iter().find(|(version, _)| *version == ours.version) {
                None => {
                    return Err(StoreError::MissingMigration {
                        version: ours.version,
                    });
                }
                Some((version, checksum)) if checksum.as_slice() != ours.checksum.as_ref() => {
                    return Err(StoreError::ForeignMigrations { version: *version });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Applies pending migrations from `schemas/sql`; safe to run concurrently.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match MIGRATOR.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(
                sqlx::migrate::MigrateError::VersionMismatch(version)
                | sqlx::migrate::MigrateError::VersionMissing(version),
            ) => Err(StoreError::ForeignMigrations { version }),
            Err(other) => Err(other.into()),
        }
    }

    /// The aggregate's events in sequence order (empty if it does not exist).
    pub async fn load(
        &self,
        aggregate_type: AggregateType,
        aggregate_id: &str,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, envelope FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(aggregate_type.as_str())
        .bind(aggregate_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let envelope: Vec<u8> = row.get("envelope");
                Event::decode(&envelope).map_err(|source| StoreError::Corrupt {
                    aggregate_type: aggregate_type.as_str().to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    event_id: row.get::<uuid::Uuid, _>("event_id").to_string(),
                    source,
                })
            })
            .collect()
    }

    /// The aggregate's current version (its last sequence; 0 if it has no events).
    pub async fn version(
        &self,
        aggregate_type: AggregateType,
        aggregate_id: &str,
    ) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type.as_str())
        .bind(aggregate_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(version).unwrap_or_default())
    }

    /// The aggregate holding a unique value, if any.
    pub async fn find_claim(&self, kind: &str, value: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT aggregate_id FROM unique_claims WHERE kind = $1 AND value = $2",
        )
        .bind(kind)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The stored `(fingerprint, sealed outcome)` for an idempotency key.
    pub async fn idempotent_outcome(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let row = sqlx::query(
            "SELECT fingerprint, outcome FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.get("fingerprint"), r.get("outcome"))))
    }

    /// Appends every batch, their claims and the idempotency record in one transaction.
    pub async fn append(
        &self,
        batches: &[Batch],
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), AppendError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        for batch in batches {
            for (offset, event) in batch.events.iter().enumerate() {
                debug_assert_eq!(event.sequence, batch.expected_version + offset as u64 + 1);
                let inserted = sqlx::query(
                    "INSERT INTO events
                       (aggregate_type, aggregate_id, sequence, event_id, event_type, tenant_id, recorded_at, envelope)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(batch.aggregate_type.as_str())
                .bind(&batch.aggregate_id)
                .bind(i64::try_from(event.sequence).unwrap_or(i64::MAX))
                .bind(event.id)
                .bind(event.event_type().name())
                .bind(event.tenant_id)
                .bind(event.recorded_at)
                .bind(event.encode())
                .execute(&mut *tx)
                .await;
                if let Err(error) = inserted {
                    return Err(match unique_violation(&error) {
                        Some("events_pkey") => AppendError::Conflict {
                            aggregate_type: batch.aggregate_type,
                            aggregate_id: batch.aggregate_id.clone(),
                        },
                        _ => StoreError::from(error).into(),
                    });
                }
                sqlx::query("INSERT INTO outbox (event_id) VALUES ($1)")
                    .bind(event.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            }
            for claim in &batch.releases {
                sqlx::query("DELETE FROM unique_claims WHERE kind = $1 AND value = $2 AND aggregate_id = $3")
                    .bind(claim.kind)
                    .bind(&claim.value)
                    .bind(&batch.aggregate_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            }
            for claim in &batch.claims {
                let claimed = sqlx::query(
                    "INSERT INTO unique_claims (kind, value, aggregate_id) VALUES ($1, $2, $3)",
                )
                .bind(claim.kind)
                .bind(&claim.value)
                .bind(&batch.aggregate_id)
                .execute(&mut *tx)
                .await;
                if let Err(error) = claimed {
                    return Err(match unique_violation(&error) {
                        Some("unique_claims_pkey") => AppendError::ClaimTaken {
                            kind: claim.kind.to_owned(),
                        },
                        _ => StoreError::from(error).into(),
                    });
                }
            }
        }
        if let Some(record) = idempotency {
            let stored = sqlx::query(
                "INSERT INTO idempotency_keys (scope, key, fingerprint, outcome) VALUES ($1, $2, $3, $4)",
            )
            .bind(&record.scope)
            .bind(&record.key)
            .bind(&record.fingerprint)
            .bind(&record.outcome)
            .execute(&mut *tx)
            .await;
            if let Err(error) = stored {
                return Err(match unique_violation(&error) {
                    Some("idempotency_keys_pkey") => AppendError::IdempotencyRace,
                    _ => StoreError::from(error).into(),
                });
            }
        }
        // Delivered at commit: wakes the relay without polling.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(OUTBOX_CHANNEL)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        debug!(batches = batches.len(), "appended");
        Ok(())
    }
}

/// The violated constraint's name, if `error` is a unique violation.
fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => db.constraint(),
        _ => None,
    }
}
