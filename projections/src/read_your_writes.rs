//! Read-your-writes: wait, with a bound, until a projection has applied a
//! given aggregate version, so a mutation can answer from the read model.

use std::time::{Duration, Instant};

use frameworks_events::AggregateType;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tracing::warn;

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

/// Waits for projections over one LISTEN connection, shared by every waiter
/// of a process (a bridge answering many mutations at once).
///
/// A notification only says "something committed": each waiter checks its
/// own aggregate's version again, and re-checks every 500 ms as well, so a
/// notification lost while the listener reconnects delays, never breaks, it.
#[derive(Debug, Clone)]
pub struct ProjectionWatcher {
    pool: PgPool,
    commits: watch::Receiver<u64>,
}

impl ProjectionWatcher {
    /// Listens in a task of its own: for tests and tools. Roles
    /// [`open`](Self::open) it and supervise the listener.
    pub async fn start(pool: PgPool) -> Result<Self, sqlx::Error> {
        let (watcher, listening) = Self::open(pool).await?;
        tokio::spawn(listening);
        Ok(watcher)
    }

    /// The watcher, and the task that feeds it commits (the caller's to
    /// run; it ends once every watcher is gone).
    pub async fn open(
        pool: PgPool,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static), sqlx::Error> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(PROJECTED_CHANNEL).await?;
        let (sender, commits) = watch::channel(0u64);
        let listening = async move {
            loop {
                tokio::select! {
                    // Every watcher is gone: release the connection.
                    () = sender.closed() => return,
                    received = listener.recv() => match received {
                        Ok(_) => sender.send_modify(|n| *n = n.wrapping_add(1)),
                        Err(error) => {
                            warn!(%error, "projection listener failed; reconnecting");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                }
            }
        };
        Ok((Self { pool, commits }, listening))
    }

    /// Returns once `projection` has applied version `version` (or later) of
    /// the aggregate, or fails after `timeout`.
    pub async fn wait_for(
        &self,
        projection: &str,
        aggregate: AggregateType,
        id: &str,
        version: u64,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let started = Instant::now();
        let mut commits = self.commits.clone();
        // Commits from here on wake this waiter, so none between the check
        // below and the wait can be missed.
        commits.mark_unchanged();
        let wanted = i64::try_from(version).unwrap_or(i64::MAX);
        loop {
            let reached = applied_version(&self.pool, projection, aggregate, id).await?;
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
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(500)), commits.changed()).await;
        }
    }
}

/// Returns once `projection` has applied version `version` (or later) of the
/// aggregate, or fails after `timeout`. Opens a listener for this one wait;
/// a process that waits often shares a [`ProjectionWatcher`].
pub async fn wait_for(
    pool: &PgPool,
    projection: &str,
    aggregate: AggregateType,
    id: &str,
    version: u64,
    timeout: Duration,
) -> Result<(), WaitError> {
    ProjectionWatcher::start(pool.clone())
        .await?
        .wait_for(projection, aggregate, id, version, timeout)
        .await
}

/// The aggregate version the projection's live generation holds.
pub async fn applied_version(
    pool: &PgPool,
    projection: &str,
    aggregate: AggregateType,
    id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    match sqlx::query_scalar(
        "SELECT version FROM read_models.projection_versions WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
    )
    .bind(projection)
    .bind(aggregate.as_str())
    .bind(id)
    .fetch_optional(pool)
    .await
    {
        Ok(reached) => Ok(reached),
        // No generation is live yet (a fresh installation whose projector
        // has not started): nothing is projected.
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P01") => Ok(None),
        Err(error) => Err(error),
    }
}
