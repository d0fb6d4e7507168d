//! The servers each role depends on, probed for its `/health` and its
//! `frameworks_dependency_up{dependency}` gauge (see
//! [`Supervisor::dependency`]). A probe says whether the server answers
//! now; the work probes (`outbox`, a projection) say whether work that
//! waits is moving.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use frameworks_commands::EventStore;
use frameworks_commands::store::StoreError;
use frameworks_events::Topic;
use frameworks_events::kafka::{BrokerProbe, KafkaSettings};
use frameworks_projections::Progress;
use frameworks_projections::generations::Generations;
use frameworks_projections::generations::postgres::PostgresGenerations;
use frameworks_projections::status::lags;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::supervisor::Supervisor;

/// How often a running role checks that its database holds its migrations.
const SCHEMA_CHECK: Duration = Duration::from_secs(10);
/// Work that waits without moving for this long is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(10);

/// `kafka`: a broker answers a metadata request.
pub fn kafka(supervisor: &mut Supervisor, kafka: &KafkaSettings, role: &str) -> anyhow::Result<()> {
    let probe = BrokerProbe::new(kafka, role).context("creating the Kafka health probe")?;
    supervisor.dependency("kafka", move || {
        let probe = probe.clone();
        async move { probe.reachable().await }
    });
    Ok(())
}

/// `database`: PostgreSQL answers `SELECT 1`. And while it answers, every
/// 10 s, that it still holds this build's migrations: a server that comes
/// back as another database ends the role, naming the migration, rather
/// than have it write there (see [`EventStore::check_migrations`]).
pub fn postgres(supervisor: &mut Supervisor, pool: &PgPool) {
    let probed = pool.clone();
    supervisor.dependency("database", move || {
        let pool = probed.clone();
        async move { sqlx::query("SELECT 1").execute(&pool).await.is_ok() }
    });
    let pool = pool.clone();
    supervisor.essential("database-schema", async move {
        loop {
            tokio::time::sleep(SCHEMA_CHECK).await;
            match EventStore::check_migrations(&pool).await {
                // Away: the database probe says so, and the role waits.
                Ok(()) | Err(StoreError::Database(_)) => {}
                Err(refused) => return Err(anyhow::Error::new(refused)),
            }
        }
    });
}

/// `redis`: Redis answers PING.
pub fn redis(supervisor: &mut Supervisor, connection: ConnectionManager) {
    supervisor.dependency("redis", move || {
        let mut connection = connection.clone();
        async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok()
        }
    });
}

/// `clickhouse`: ClickHouse answers `SELECT 1`.
pub fn clickhouse(supervisor: &mut Supervisor, client: clickhouse::Client) {
    supervisor.dependency("clickhouse", move || {
        let client = client.clone();
        async move { client.query("SELECT 1").execute().await.is_ok() }
    });
}

/// `projecting`: this process's projector named `projector` applies what
/// reaches it (its batches not failing, its consumer not stuck; see
/// [`Progress::healthy`]).
pub fn projecting(supervisor: &mut Supervisor, projector: &'static str) {
    supervisor.dependency("projecting", move || async move {
        Progress::of(projector).is_some_and(|progress| progress.healthy())
    });
}

/// Whether waiting work moves: it is stuck once something has waited
/// [`STUCK_AFTER`] with its mark (an outbox row id, offsets applied)
/// unchanged.
#[derive(Debug, Default)]
struct Movement {
    /// The mark when it last changed, and when that was.
    last: Option<(i64, Instant)>,
}

impl Movement {
    fn observe(&mut self, waiting: bool, mark: i64) -> bool {
        if !waiting {
            self.last = None;
            return true;
        }
        match self.last {
            Some((seen, since)) if seen == mark => since.elapsed() < STUCK_AFTER,
            _ => {
                self.last = Some((mark, Instant::now()));
                true
            }
        }
    }
}

/// `outbox`: appended events leave the outbox (the relay publishes them).
pub fn outbox(supervisor: &mut Supervisor, pool: &PgPool) {
    let (pool, movement) = (pool.clone(), Arc::new(Mutex::new(Movement::default())));
    supervisor.dependency("outbox", move || {
        let (pool, movement) = (pool.clone(), Arc::clone(&movement));
        async move {
            let oldest: Result<Option<i64>, _> = sqlx::query_scalar("SELECT min(id) FROM outbox")
                .fetch_one(&pool)
                .await;
            let Ok(oldest) = oldest else { return false };
            movement
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .observe(oldest.is_some(), oldest.unwrap_or(0))
        }
    });
}

/// `control-plane`: the control-plane projection, whose read models the
/// bridge answers from and waits on after a mutation, applies the records
/// that reach its topics.
pub fn control_plane_projection(
    supervisor: &mut Supervisor,
    pool: &PgPool,
    kafka: &KafkaSettings,
    topics: &[Topic],
) -> anyhow::Result<()> {
    let generations = PostgresGenerations::new(pool.clone());
    // One client for every probe, with the probe's short timeout.
    let probe = BrokerProbe::new(kafka, "frameworks-bridge-projection")
        .context("creating the projection health probe")?;
    let catalogue = kafka.catalogue();
    let names: Vec<String> = topics
        .iter()
        .map(|&t| catalogue.name(t).to_owned())
        .collect();
    let movement = Arc::new(Mutex::new(Movement::default()));
    supervisor.dependency("control-plane", move || {
        let (generations, probe, names, movement) = (
            generations.clone(),
            probe.clone(),
            names.clone(),
            Arc::clone(&movement),
        );
        async move {
            let Ok(Some(live)) = generations.live().await else {
                return false;
            };
            let (Ok(applied), Ok(ends)) =
                (generations.applied(live).await, probe.ends(names).await)
            else {
                return false;
            };
            let partitions = lags(&ends, &applied);
            // A transaction's commit marker takes an offset no consumer receives.
            let waiting = partitions.iter().any(|p| p.lag() > 1);
            let mark = partitions.iter().map(|p| p.applied).sum();
            movement
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .observe(waiting, mark)
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_work_is_stuck_only_when_its_mark_stands_still() {
        let mut movement = Movement::default();
        assert!(movement.observe(false, 0), "nothing waits");
        assert!(movement.observe(true, 5), "just started waiting");
        movement.last = Some((5, Instant::now() - STUCK_AFTER));
        assert!(!movement.observe(true, 5), "waited with no movement");
        assert!(movement.observe(true, 6), "moved");
        assert!(movement.observe(false, 6));
        assert_eq!(movement.last, None);
    }
}
