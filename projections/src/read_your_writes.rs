//! Read-your-writes: wait, with a bound, until a projection has applied a
//! given aggregate version, so a mutation can answer from the read model.

use std::time::{Duration, Instant};

use frameworks_events::AggregateType;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::postgres::PROJECTED_CHANNEL;

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(
        "{projection} had not applied {aggregate} {id} version {wanted} after {waited:?} (it holds {reached:?})"
    )]
    Timeout {
        projection: String,
        aggregate: AggregateType,
        id: String,
        wanted: u64,
        reached: Option<i64>,
        waited: Duration,
    },
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Returns once `projection` has applied version `version` (or later) of the
/// aggregate, or fails after `timeout`.
pub async fn wait_for(
    pool: &PgPool,
    projection: &str,
    aggregate: AggregateType,
    id: &str,
    version: u64,
    timeout: Duration,
) -> Result<(), WaitError> {
    let started = Instant::now();
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(PROJECTED_CHANNEL).await?;
    let wanted = i64::try_from(version).unwrap_or(i64::MAX);
    loop {
        // Checked after LISTEN, so a commit between the two cannot be missed.
        let reached: Option<i64> = match sqlx::query_scalar(
            "SELECT version FROM read_models.projection_versions WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(projection)
        .bind(aggregate.as_str())
        .bind(id)
        .fetch_optional(pool)
        .await
        {
            Ok(reached) => reached,
            // No generation is live yet (a fresh installation whose projector
            // has not started): nothing is projected, so keep waiting.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P01") => None,
            Err(error) => return Err(error.into()),
        };
        if reached.is_some_and(|r| r >= wanted) {
            return Ok(());
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(WaitError::Timeout {
                projection: projection.to_owned(),
                aggregate,
                id: id.to_owned(),
                wanted: version,
                reached,
                waited: started.elapsed(),
            });
        }
        // Wake on the next committed batch, or re-check at the deadline.
        let _ = tokio::time::timeout(left.min(Duration::from_millis(500)), listener.recv()).await;
    }
}
