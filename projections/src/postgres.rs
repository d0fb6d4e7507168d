//! The PostgreSQL projector: a Kafka consumer group whose position lives in
//! the read-model database.
//!
//! Each batch is one transaction: for every partition in the batch the
//! stored offset is locked, records below it are skipped (already applied),
//! the rest are applied in order, and the offset moves past them in the same
//! commit. Kafka's own group offset is stored only after that commit, as a
//! resume hint: it can lag the database, never lead it. A record above the
//! stored offset (a group that ran ahead of a rebuilt database) makes the
//! projector seek back. So a crash anywhere, a rebalance or a zombie member
//! re-delivers at most what the database already skips.
//!
//! The events go in set-based ([`control_plane::apply_batch`]: a few
//! statements per batch rather than four round trips per event) inside a
//! savepoint; should one of those statements fail, the batch is applied
//! again one event at a time, each in its savepoint. An event the model
//! cannot take (undecodable, unknown type, newer schema, missing aggregate)
//! changes nothing and is dead-lettered before the commit that moves past it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use frameworks_events::Event;
use frameworks_events::kafka::{DeadLetterWriter, KafkaSettings, LagProbe, read_event};
use metrics::counter;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset};
use sqlx::{Acquire, PgPool};
use tracing::{debug, info, warn};

use crate::control_plane::{self, Applied};
use crate::generations::postgres::PostgresGenerations;
use crate::generations::{Generations, group_of};
use crate::{ApplyError, batch};

/// The notification sent when a batch commits; read-your-writes listens to it.
pub const PROJECTED_CHANNEL: &str = "frameworks_projected";

#[derive(Debug, Clone, clap::Args)]
pub struct ProjectorSettings {
    /// Base of the Kafka consumer group; each generation uses `<group>.g<N>`.
    #[arg(
        long = "projector-group",
        env = "FRAMEWORKS_PROJECTOR_GROUP",
        default_value = "frameworks.projection.control-plane"
    )]
    pub group_id: String,

    /// Static group membership: a restarted projector with the same instance id
    /// takes its partitions back at once instead of waiting out the session
    /// timeout. Give each projector process its own (e.g. its host name).
    #[arg(
        long = "projector-instance-id",
        env = "FRAMEWORKS_PROJECTOR_INSTANCE_ID"
    )]
    pub instance_id: Option<String>,

    /// How long the group waits for a silent member before moving its partitions, in milliseconds.
    #[arg(
        long = "projector-session-timeout-ms",
        env = "FRAMEWORKS_PROJECTOR_SESSION_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(6_000..=300_000)
    )]
    pub session_timeout_ms: u64,

    /// Most records applied in one transaction. A batch costs a few
    /// statements whatever its size, so larger batches apply a backlog
    /// faster; under a light load batches stay small (see the wait below).
    #[arg(
        long = "projector-batch-size",
        env = "FRAMEWORKS_PROJECTOR_BATCH_SIZE",
        default_value_t = 2_000,
        value_parser = clap::value_parser!(u32).range(1..=50_000)
    )]
    pub batch_size: u32,

    /// How long a batch waits for more records once it has one, in milliseconds.
    #[arg(
        long = "projector-batch-wait-ms",
        env = "FRAMEWORKS_PROJECTOR_BATCH_WAIT_MS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(0..=10_000)
    )]
    pub batch_wait_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("reading from Kafka")]
    Kafka(#[from] KafkaError),
    #[error("writing the read model")]
    Database(#[from] sqlx::Error),
    #[error("writing a dead letter")]
    DeadLetter(#[from] frameworks_events::kafka::publisher::PublishError),
    #[error("the projector gave up on its Kafka consumer")]
    ConsumerLost(#[from] batch::ConsumerLost),
}

pub struct PostgresProjector {
    pool: PgPool,
    generation: u32,
    schema: String,
    group_id: String,
    consumer: StreamConsumer,
    probe: LagProbe,
    dead_letters: DeadLetterWriter,
    settings: ProjectorSettings,
    fallbacks: AtomicU64,
    /// Events applied since this projector started, and the count at which
    /// it next analyzes its tables.
    applied: AtomicU64,
    analyze_at: AtomicU64,
}

/// The first and the last applied-event count at which the projector analyzes.
const ANALYZE_FIRST: u64 = 1_000;
const ANALYZE_LAST: u64 = 1 << 20;

impl std::fmt::Debug for PostgresProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProjector")
            .field("generation", &self.generation)
            .field("group", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl PostgresProjector {
    /// A projector for the live generation (generation 1 on a fresh database).
    pub async fn new(
        pool: PgPool,
        kafka: &KafkaSettings,
        settings: ProjectorSettings,
    ) -> Result<Self, ProjectorError> {
        let generation = PostgresGenerations::new(pool.clone()).ensure_live().await?;
        Ok(Self::for_generation(pool, kafka, settings, generation)?)
    }

    /// A projector writing into `generation`, as that generation's consumer group.
    pub fn for_generation(
        pool: PgPool,
        kafka: &KafkaSettings,
        settings: ProjectorSettings,
        generation: u32,
    ) -> Result<Self, KafkaError> {
        let catalogue = kafka.catalogue();
        let group_id = group_of(&settings.group_id, generation);
        let consumer: StreamConsumer = kafka
            .group_consumer_config(&group_id, settings.instance_id.as_deref())
            .set(
                "session.timeout.ms",
                settings.session_timeout_ms.to_string(),
            )
            .create()?;
        let topics: Vec<&str> = control_plane::TOPICS
            .iter()
            .map(|&t| catalogue.name(t))
            .collect();
        consumer.subscribe(&topics)?;
        Ok(Self {
            pool,
            generation,
            schema: PostgresGenerations::schema(generation),
            dead_letters: DeadLetterWriter::new(kafka, &group_id)?,
            probe: LagProbe::new(kafka, &group_id)?,
            group_id,
            consumer,
            settings,
            fallbacks: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            analyze_at: AtomicU64::new(ANALYZE_FIRST),
        })
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Batches this projector applied one event at a time because a
    /// set-based statement failed (`frameworks_projector_batch_fallbacks_total`
    /// counts them for every projector of the process).
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Applies batches until `shutdown` resolves. Database or Kafka trouble
    /// rewinds the batch and retries with backoff; nothing is skipped. Ends
    /// with [`ProjectorError::ConsumerLost`] when the consumer cannot go on
    /// (see [`ConsumerLost`](crate::ConsumerLost)): the caller makes a new projector.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ProjectorError> {
        info!(group = %self.group_id, generation = self.generation, "projector started");
        batch::run_until(
            control_plane::NAME,
            &self.consumer,
            &self.probe,
            shutdown,
            || self.step(),
        )
        .await?;
        Ok(())
    }

    /// Waits for at least one record, gathers a batch and applies it.
    pub async fn step(&self) -> Result<usize, ProjectorError> {
        let batch = batch::gather(
            &self.consumer,
            self.settings.batch_size as usize,
            Duration::from_millis(self.settings.batch_wait_ms),
        )
        .await?;
        let applied = self.apply_batch(&batch).await.inspect_err(|_| {
            batch::rewind(&self.consumer, &batch);
        })?;
        self.keep_statistics(applied).await;
        Ok(applied)
    }

    /// Analyzes the generation's tables each time this projector's applied
    /// events double (from 1,000 to about a million; autovacuum keeps them after
    /// that). A generation grows from empty far faster than autovacuum
    /// looks, and a planner that believes a table is tiny scans all of it.
    async fn keep_statistics(&self, applied: usize) {
        let total = self
            .applied
            .fetch_add(applied as u64, Ordering::Relaxed)
            .saturating_add(applied as u64);
        let due = self.analyze_at.load(Ordering::Relaxed);
        if total < due || due > ANALYZE_LAST {
            return;
        }
        self.analyze_at
            .store(due.saturating_mul(2), Ordering::Relaxed);
        let tables: Vec<String> = control_plane::TABLES
            .iter()
            .chain(&["projection_versions", "projection_offsets"])
            .map(|table| format!("{}.{table}", self.schema))
            .collect();
        // The names are this module's constants and a generation number.
        let analyze = format!("ANALYZE {}", tables.join(", "));
        match sqlx::query(sqlx::AssertSqlSafe(analyze))
            .execute(&self.pool)
            .await
        {
            Ok(_) => debug!(events = total, "analyzed the read-model tables"),
            // Only the plans suffer; the next doubling tries again.
            Err(error) => warn!(%error, "could not analyze the read-model tables"),
        }
    }

    async fn apply_batch(&self, batch: &[OwnedMessage]) -> Result<usize, ProjectorError> {
        let partitions = batch::by_partition(batch);
        let mut tx = self.pool.begin().await?;
        // Unqualified names below resolve into this projector's generation.
        // Every statement here finds its rows by key, a few hundred at a
        // time: the planner may only use index lookups in nested loops. A
        // hash join would read the whole table for each statement (as it
        // prefers once a batch's array is larger than a few rows), and the
        // cost of that grows with the model, not with the batch.
        sqlx::query(
            "SELECT set_config('search_path', $1, true),
                    set_config('enable_hashjoin', 'off', true),
                    set_config('enable_mergejoin', 'off', true),
                    set_config('enable_seqscan', 'off', true)",
        )
        .bind(&self.schema)
        .execute(&mut *tx)
        .await?;
        let stored = lock_offsets(&mut tx, partitions.keys()).await?;
        let mut records = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(partitions.len());
        let mut skipped = 0;
        for (&(topic, partition), messages) in &partitions {
            let mut next = stored.get(&(topic, partition)).copied().unwrap_or(0);
            for &message in messages {
                if message.offset() < next {
                    skipped += 1;
                    continue;
                }
                if message.offset() > next {
                    // The group ran ahead of this database: go back to where it stands.
                    debug!(
                        topic,
                        partition,
                        from = message.offset(),
                        to = next,
                        "seeking back to the stored offset"
                    );
                    self.consumer.seek(
                        topic,
                        partition,
                        Offset::Offset(next),
                        Duration::from_secs(5),
                    )?;
                    break;
                }
                records.push(message);
                next = message.offset() + 1;
            }
            positions.push((topic, partition, next));
        }
        count(Outcome::Skipped, skipped);
        let mut readable = Vec::with_capacity(records.len());
        for message in records {
            match read_event(message) {
                Ok(event) => readable.push((message, event)),
                Err(unreadable) => {
                    self.dead_letter(message, unreadable.reason, unreadable.error)
                        .await?;
                }
            }
        }
        let applied = self.apply_events(&mut tx, &readable).await?;
        save_offsets(&mut tx, &positions).await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PROJECTED_CHANNEL)
            .bind(control_plane::NAME)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for (topic, partition, next) in positions {
            if next > 0 {
                // The legacy store API keeps offset + 1: the next record to read.
                if let Err(error) = self.consumer.store_offset(topic, partition, next - 1) {
                    debug!(topic, partition, %error, "could not store the Kafka resume hint");
                }
            }
        }
        Ok(applied)
    }

    /// Applies the batch's events set-based ([`control_plane::apply_batch`])
    /// inside a savepoint; if a statement fails, rolls that back and applies
    /// them one by one, so that one bad event costs the batch its speed, not
    /// its progress. Returns how many changed the model.
    async fn apply_events(
        &self,
        tx: &mut sqlx::PgTransaction<'_>,
        events: &[(&OwnedMessage, Event)],
    ) -> Result<usize, ProjectorError> {
        if events.is_empty() {
            return Ok(0);
        }
        let batch: Vec<&Event> = events.iter().map(|(_, event)| event).collect();
        let mut savepoint = tx.begin().await?;
        let set_based = async {
            // Tests fail the set-based path of one group's projector this way.
            fail::fail_point!(&format!("{}/set-based", self.group_id), |_| Err(
                sqlx::Error::Protocol("failure injected into the set-based path".into())
            ));
            control_plane::apply_batch(&mut savepoint, &batch).await
        };
        match set_based.await {
            Ok(outcomes) => {
                savepoint.commit().await?;
                let (mut applied, mut duplicates) = (0, 0);
                for ((message, _), outcome) in events.iter().zip(outcomes) {
                    match outcome {
                        Ok(Applied::Changed) => applied += 1,
                        Ok(Applied::Duplicate) => duplicates += 1,
                        Err(refused) => {
                            let reason = refused.reason().unwrap_or("projection-failed");
                            self.dead_letter(message, reason, refused.to_string())
                                .await?;
                        }
                    }
                }
                count(Outcome::Applied, applied);
                count(Outcome::Duplicate, duplicates);
                Ok(usize::try_from(applied).unwrap_or(usize::MAX))
            }
            Err(error) => {
                savepoint.rollback().await?;
                warn!(group = %self.group_id, events = events.len(), %error,
                    "a set-based statement failed; applying this batch one event at a time");
                counter!("frameworks_projector_batch_fallbacks_total", "projection" => control_plane::NAME)
                    .increment(1);
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                let mut applied = 0;
                for (message, event) in events {
                    if self.apply_one(tx, message, event).await? {
                        applied += 1;
                    }
                }
                Ok(applied)
            }
        }
    }

    /// Applies one event inside its own savepoint; returns whether it changed the model.
    async fn apply_one(
        &self,
        tx: &mut sqlx::PgTransaction<'_>,
        message: &OwnedMessage,
        event: &Event,
    ) -> Result<bool, ProjectorError> {
        let mut savepoint = tx.begin().await?;
        match control_plane::apply(savepoint.acquire().await?, event).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                let changed = outcome == Applied::Changed;
                count(
                    if changed {
                        Outcome::Applied
                    } else {
                        Outcome::Duplicate
                    },
                    1,
                );
                Ok(changed)
            }
            Err(ApplyError::Database(error)) => Err(error.into()),
            Err(error) => {
                savepoint.rollback().await?;
                let reason = error.reason().unwrap_or("projection-failed");
                self.dead_letter(message, reason, error.to_string()).await?;
                Ok(false)
            }
        }
    }

    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        error: String,
    ) -> Result<(), ProjectorError> {
        count(Outcome::DeadLettered, 1);
        Ok(self.dead_letters.write(message, reason, error).await?)
    }
}

/// What became of a record, as `frameworks_projector_events_total` counts it.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Applied,
    Duplicate,
    Skipped,
    DeadLettered,
}

fn count(outcome: Outcome, records: u64) {
    if records == 0 {
        return;
    }
    let outcome = match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Skipped => "skipped",
        Outcome::DeadLettered => "dead-lettered",
    };
    counter!("frameworks_projector_events_total", "projection" => control_plane::NAME, "outcome" => outcome)
        .increment(records);
}

/// Makes sure each partition has a stored position and locks it for this
/// transaction (a zombie member waits here, then skips what this one
/// applied); returns the positions.
async fn lock_offsets<'a>(
    tx: &mut sqlx::PgTransaction<'_>,
    partitions: impl Iterator<Item = &'a (&'a str, i32)>,
) -> Result<HashMap<(&'a str, i32), i64>, sqlx::Error> {
    let (topics, numbers): (Vec<&str>, Vec<i32>) = partitions.copied().unzip();
    sqlx::query(
        "INSERT INTO projection_offsets (projection, topic, partition, next_offset)
         SELECT $1, v.topic, v.partition, 0 FROM UNNEST($2::text[], $3::integer[]) AS v(topic, partition)
         ON CONFLICT DO NOTHING",
    )
    .bind(control_plane::NAME)
    .bind(&topics)
    .bind(&numbers)
    .execute(&mut **tx)
    .await?;
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT o.topic, o.partition, o.next_offset
         FROM projection_offsets o
         JOIN UNNEST($2::text[], $3::integer[]) AS v(topic, partition)
           ON o.topic = v.topic AND o.partition = v.partition
         WHERE o.projection = $1
         ORDER BY o.topic, o.partition
         FOR UPDATE OF o",
    )
    .bind(control_plane::NAME)
    .bind(&topics)
    .bind(&numbers)
    .fetch_all(&mut **tx)
    .await?;
    Ok(topics
        .iter()
        .zip(&numbers)
        .filter_map(|(&topic, &partition)| {
            let (_, _, next) = rows
                .iter()
                .find(|(t, p, _)| t == topic && *p == partition)?;
            Some(((topic, partition), *next))
        })
        .collect())
}

/// Moves each partition's stored position past what the batch applied.
async fn save_offsets(
    tx: &mut sqlx::PgTransaction<'_>,
    positions: &[(&str, i32, i64)],
) -> Result<(), sqlx::Error> {
    let topics: Vec<&str> = positions.iter().map(|(topic, _, _)| *topic).collect();
    let partitions: Vec<i32> = positions
        .iter()
        .map(|(_, partition, _)| *partition)
        .collect();
    let next: Vec<i64> = positions.iter().map(|(_, _, next)| *next).collect();
    sqlx::query(
        "UPDATE projection_offsets o SET next_offset = v.next_offset, updated_at = now()
         FROM UNNEST($2::text[], $3::integer[], $4::bigint[]) AS v(topic, partition, next_offset)
         WHERE o.projection = $1 AND o.topic = v.topic AND o.partition = v.partition",
    )
    .bind(control_plane::NAME)
    .bind(&topics)
    .bind(&partitions)
    .bind(&next)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
