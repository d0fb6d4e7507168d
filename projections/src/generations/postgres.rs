//! Control-plane generations: schema `control_plane_g<N>` per generation,
//! `projection_generations` as the register, and views in `read_models`.

use sqlx::{Connection, PgConnection, PgPool};

use super::Generations;
use crate::control_plane;

/// The generation DDL: unqualified names, run inside the generation's schema.
pub const DDL: &str = include_str!("../../../schemas/sql/read_models/control_plane.sql");

/// Identifies [`DDL`]: a generation built from other definitions is outdated.
pub fn ddl_digest() -> String {
    use sha2::Digest;
    data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(DDL.as_bytes()))
}

/// Serialises changes to the register (any projection), across processes.
const REGISTER_LOCK: i64 = 0x6677_6765_6e73; // "fwgens"

#[derive(Debug, Clone)]
pub struct PostgresGenerations {
    pool: PgPool,
}

impl PostgresGenerations {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The schema holding `generation`.
    pub fn schema(generation: u32) -> String {
        format!("control_plane_g{generation}")
    }

    async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(REGISTER_LOCK)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn in_state(&self, state: &str) -> Result<Vec<u32>, sqlx::Error> {
        let rows: Vec<i32> = sqlx::query_scalar(
            "SELECT generation FROM projection_generations
             WHERE projection = $1 AND state = $2 ORDER BY generation",
        )
        .bind(control_plane::NAME)
        .bind(state)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|g| u32::try_from(g).ok())
            .collect())
    }

    /// Points every view in `read_models` at `schema`'s tables.
    ///
    /// `CREATE OR REPLACE VIEW` keeps each view's identity, so a query that
    /// was waiting on the view's lock carries on against the new generation
    /// instead of failing on a dropped relation. Only a view whose columns
    /// changed incompatibly is dropped and created again.
    async fn point_views(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
        sqlx::query("CREATE SCHEMA IF NOT EXISTS read_models")
            .execute(&mut *conn)
            .await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;
        let views: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'read_models'",
        )
        .fetch_all(&mut *conn)
        .await?;
        for view in views.iter().filter(|v| !tables.contains(v)) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP VIEW read_models.{view}")))
                .execute(&mut *conn)
                .await?;
        }
        // Names come from the catalogue of our own schemas, not from input.
        for table in tables {
            let replace = format!(
                "CREATE OR REPLACE VIEW read_models.{table} AS SELECT * FROM {schema}.{table}"
            );
            let mut savepoint = conn.begin().await?;
            match sqlx::raw_sql(sqlx::AssertSqlSafe(replace))
                .execute(&mut *savepoint)
                .await
            {
                Ok(_) => savepoint.commit().await?,
                Err(_) => {
                    savepoint.rollback().await?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP VIEW read_models.{table}; \
                         CREATE VIEW read_models.{table} AS SELECT * FROM {schema}.{table}"
                    )))
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Creates the next generation's schema and tables; the caller holds the lock.
    async fn begin_locked(conn: &mut PgConnection) -> Result<u32, sqlx::Error> {
        let next: i32 = sqlx::query_scalar(
            "SELECT coalesce(max(generation), 0) + 1 FROM projection_generations WHERE projection = $1",
        )
        .bind(control_plane::NAME)
        .fetch_one(&mut *conn)
        .await?;
        let generation = u32::try_from(next).unwrap_or(1);
        let schema = Self::schema(generation);
        // A leftover schema from a discarded attempt is replaced, not reused.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}"
        )))
        .execute(&mut *conn)
        .await?;
        sqlx::raw_sql(DDL).execute(&mut *conn).await?;
        sqlx::raw_sql("SET LOCAL search_path TO DEFAULT")
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO projection_generations (projection, generation, state, schema_digest)
             VALUES ($1, $2, 'building', $3)",
        )
        .bind(control_plane::NAME)
        .bind(next)
        .bind(ddl_digest())
        .execute(&mut *conn)
        .await?;
        Ok(generation)
    }

    /// Makes a building generation live; the caller holds the lock.
    async fn switch_locked(conn: &mut PgConnection, generation: u32) -> Result<(), sqlx::Error> {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM projection_generations WHERE projection = $1 AND generation = $2",
        )
        .bind(control_plane::NAME)
        .bind(i64::from(generation))
        .fetch_optional(&mut *conn)
        .await?;
        if state.as_deref() != Some("building") {
            return Err(sqlx::Error::Protocol(format!(
                "generation {generation} of {} is {}, not building",
                control_plane::NAME,
                state.as_deref().unwrap_or("unknown")
            )));
        }
        sqlx::query(
            "UPDATE projection_generations SET state = 'retired'
             WHERE projection = $1 AND state = 'live'",
        )
        .bind(control_plane::NAME)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE projection_generations SET state = 'live', switched_at = now()
             WHERE projection = $1 AND generation = $2",
        )
        .bind(control_plane::NAME)
        .bind(i64::from(generation))
        .execute(&mut *conn)
        .await?;
        Self::point_views(conn, &Self::schema(generation)).await
    }

    async fn state_locked(
        conn: &mut PgConnection,
        state: &str,
    ) -> Result<Option<u32>, sqlx::Error> {
        let generation: Option<i32> = sqlx::query_scalar(
            "SELECT generation FROM projection_generations WHERE projection = $1 AND state = $2",
        )
        .bind(control_plane::NAME)
        .bind(state)
        .fetch_optional(conn)
        .await?;
        Ok(generation.and_then(|g| u32::try_from(g).ok()))
    }
}

impl Generations for PostgresGenerations {
    type Error = sqlx::Error;

    fn projection(&self) -> &'static str {
        control_plane::NAME
    }

    async fn live(&self) -> Result<Option<u32>, sqlx::Error> {
        Ok(self.in_state("live").await?.pop())
    }

    async fn building(&self) -> Result<Option<u32>, sqlx::Error> {
        Ok(self.in_state("building").await?.pop())
    }

    async fn retired(&self) -> Result<Vec<u32>, sqlx::Error> {
        self.in_state("retired").await
    }

    async fn begin(&self) -> Result<u32, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        Self::lock(&mut tx).await?;
        let generation = Self::begin_locked(&mut tx).await?;
        tx.commit().await?;
        Ok(generation)
    }

    async fn switch(&self, generation: u32) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        Self::lock(&mut tx).await?;
        Self::switch_locked(&mut tx, generation).await?;
        tx.commit().await
    }

    async fn discard(&self, generation: u32) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        Self::lock(&mut tx).await?;
        let deleted = sqlx::query(
            "DELETE FROM projection_generations
             WHERE projection = $1 AND generation = $2 AND state <> 'live'",
        )
        .bind(control_plane::NAME)
        .bind(i64::from(generation))
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 1 {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                Self::schema(generation)
            )))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn schema_current(&self, generation: u32) -> Result<bool, sqlx::Error> {
        let digest: Option<Option<String>> = sqlx::query_scalar(
            "SELECT schema_digest FROM projection_generations WHERE projection = $1 AND generation = $2",
        )
        .bind(control_plane::NAME)
        .bind(i64::from(generation))
        .fetch_optional(&self.pool)
        .await?;
        Ok(digest.flatten().as_deref() == Some(ddl_digest().as_str()))
    }

    async fn applied(&self, generation: u32) -> Result<Vec<(String, i32, i64)>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT topic, partition, next_offset FROM {}.projection_offsets WHERE projection = $1",
            Self::schema(generation)
        )))
        .bind(control_plane::NAME)
        .fetch_all(&self.pool)
        .await
    }

    async fn ensure_live(&self) -> Result<u32, sqlx::Error> {
        // One transaction under the lock: processes starting together on a
        // fresh database agree on generation 1.
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        Self::lock(&mut tx).await?;
        if let Some(live) = Self::state_locked(&mut tx, "live").await? {
            return Ok(live);
        }
        let first = match Self::state_locked(&mut tx, "building").await? {
            Some(building) => building,
            None => Self::begin_locked(&mut tx).await?,
        };
        Self::switch_locked(&mut tx, first).await?;
        tx.commit().await?;
        Ok(first)
    }
}
