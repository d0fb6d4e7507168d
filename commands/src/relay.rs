//! Publishing the outbox to Kafka, in order, surviving a crash anywhere.
//!
//! # Outbox, not Kafka transactions
//!
//! With Kafka transactions the append to Postgres and the produce to Kafka
//! are still two commits: a crash between them either loses the events (if
//! Kafka goes second) or publishes events that Postgres never stored (if it
//! goes first), and fixing that takes a record of what was sent, which is an
//! outbox again. With the outbox, Postgres alone decides: an event is
//! appended if and only if its outbox row committed with it, and the relay
//! deletes that row only after Kafka acknowledged the record (acks=all,
//! idempotent producer). A crash after the acknowledgement and before the
//! delete republishes the row: a duplicate with the same event id, which
//! consumers drop by event id or by (aggregate, sequence). Nothing is ever
//! lost and nothing unstored is ever published.
//!
//! # Order
//!
//! Rows are read in outbox id order. The writer of an aggregate's sequence
//! n+1 saw sequence n committed, so n+1's row has the larger id; a batch is
//! handed to the producer in id order, and the idempotent producer keeps a
//! partition's records in send order across retries. Two relays could
//! interleave, so only one runs: leadership is a Postgres advisory lock held
//! on the connection that also reads and deletes the rows. If that
//! connection dies the lock goes with it, and so does this relay's ability
//! to delete anything.

use std::time::{Duration, Instant};

use frameworks_events::EventType;
use frameworks_events::kafka::EventPublisher;
use frameworks_events::kafka::publisher::{PublishError, event_headers};
use metrics::{counter, gauge, histogram};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, Row};
use tracing::{info, instrument, warn};

use crate::store::{EventStore, OUTBOX_CHANNEL};

/// Advisory lock key of the relay's leadership ("FWOUTBOX" in ASCII).
const LEADER_LOCK: i64 = 0x4657_4F55_5442_4F58;

#[derive(Debug, Clone, clap::Args)]
pub struct RelaySettings {
    /// Most outbox rows published per round trip.
    #[arg(
        long = "relay-batch-size",
        env = "FRAMEWORKS_RELAY_BATCH_SIZE",
        default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub batch_size: u32,

    /// How often an idle relay looks at the outbox without a notification, in milliseconds.
    #[arg(
        long = "relay-idle-poll-ms",
        env = "FRAMEWORKS_RELAY_IDLE_POLL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(10..=60_000)
    )]
    pub idle_poll_ms: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            idle_poll_ms: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(
        "event {event_id} has type {event_type:?}, which this build cannot route; upgrade the relay"
    )]
    Unroutable {
        event_id: String,
        event_type: String,
    },
}

#[derive(Debug)]
pub struct OutboxRelay {
    store: EventStore,
    publisher: EventPublisher,
    settings: RelaySettings,
}

impl OutboxRelay {
    pub fn new(store: EventStore, publisher: EventPublisher, settings: RelaySettings) -> Self {
        Self {
            store,
            publisher,
            settings,
        }
    }

    /// Waits for leadership, then publishes until `shutdown` resolves.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), RelayError> {
        tokio::pin!(shutdown);
        let mut leader = tokio::select! {
            () = &mut shutdown => return Ok(()),
            leader = self.lead() => leader?,
        };
        let mut listener = PgListener::connect_with(self.store.pool()).await?;
        listener.listen(OUTBOX_CHANNEL).await?;
        let idle = Duration::from_millis(self.settings.idle_poll_ms);
        let mut backoff = Duration::ZERO;
        loop {
            let wait = match self.drain_once(&mut leader).await {
                Ok(published) if published == self.settings.batch_size as usize => {
                    backoff = Duration::ZERO;
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::ZERO;
                    let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                        .fetch_one(&mut leader)
                        .await?;
                    gauge!("frameworks_relay_backlog").set(backlog as f64);
                    idle
                }
                // Kafka being away is weather: keep the rows, back off, try again.
                Err(RelayError::Publish(error)) => {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(30));
                    warn!(%error, retry_in = ?backoff, "Kafka did not take the batch");
                    backoff
                }
                // Database trouble may mean the leadership connection is gone: stop.
                Err(error) => return Err(error),
            };
            tokio::select! {
                () = &mut shutdown => {
                    info!("relay stopping");
                    return Ok(());
                }
                notification = listener.recv(), if backoff.is_zero() => { notification?; }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A connection holding the leadership lock; waits while another relay leads.
    async fn lead(&self) -> Result<PgConnection, RelayError> {
        // Not leading until the lock is held (again, after a lost connection).
        gauge!("frameworks_relay_leader").set(0.0);
        let mut announced = false;
        loop {
            let mut connection = self.store.pool().acquire().await?.detach();
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK)
                .fetch_one(&mut connection)
                .await?;
            if locked {
                info!("relay is the leader");
                gauge!("frameworks_relay_leader").set(1.0);
                return Ok(connection);
            }
            if !announced {
                info!("another relay leads; standing by");
                announced = true;
            }
            drop(connection);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Publishes one batch of outbox rows, oldest first; returns how many.
    #[instrument(skip_all)]
    pub async fn drain_once(&self, leader: &mut PgConnection) -> Result<usize, RelayError> {
        let started = Instant::now();
        let rows = sqlx::query(
            "SELECT o.id, e.event_id, e.event_type, e.aggregate_id, e.envelope
             FROM outbox o JOIN events e USING (event_id)
             ORDER BY o.id LIMIT $1",
        )
        .bind(i64::from(self.settings.batch_size))
        .fetch_all(&mut *leader)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let catalogue = self.publisher.catalogue();
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.get("id");
            let event_id: uuid::Uuid = row.get("event_id");
            let event_type: &str = row.get("event_type");
            let topic = EventType::from_name(event_type)
                .map(|t| catalogue.name(t.topic()))
                .ok_or_else(|| RelayError::Unroutable {
                    event_id: event_id.to_string(),
                    event_type: event_type.to_owned(),
                })?;
            records.push((id, event_id.to_string(), event_type, topic, row));
        }
        // All sends are queued in id order before any is awaited.
        let sends = records.iter().map(|(_, event_id, event_type, topic, row)| {
            let key: &str = row.get("aggregate_id");
            let envelope: &[u8] = row.get("envelope");
            self.publisher.send(
                topic,
                Some(key.as_bytes()),
                envelope,
                event_headers(event_type, event_id),
            )
        });
        let results = futures::future::join_all(sends).await;
        let mut acknowledged = Vec::with_capacity(results.len());
        let mut first_error = None;
        for ((id, ..), result) in records.iter().zip(results) {
            match result {
                Ok(_) => acknowledged.push(*id),
                Err(error) => {
                    warn!(outbox_id = id, %error, "publishing failed; the row stays for the next round");
                    first_error.get_or_insert(error);
                }
            }
        }
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&acknowledged)
            .execute(&mut *leader)
            .await?;
        counter!("frameworks_relay_published_total").increment(acknowledged.len() as u64);
        histogram!("frameworks_relay_batch_seconds").record(started.elapsed().as_secs_f64());
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(acknowledged.len()),
        }
    }
}
