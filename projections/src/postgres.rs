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
//! An event the model cannot take (undecodable, unknown type, newer schema,
//! missing aggregate) is rolled back to its savepoint and dead-lettered
//! before the commit that moves past it.

use std::collections::BTreeMap;
use std::time::Duration;

use frameworks_events::kafka::{DeadLetterWriter, KafkaSettings, LagProbe, read_event};
use metrics::counter;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset};
use sqlx::{Acquire, PgPool};
use tracing::{debug, info};

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

    /// Most records applied in one transaction.
    #[arg(
        long = "projector-batch-size",
        env = "FRAMEWORKS_PROJECTOR_BATCH_SIZE",
        default_value_t = 500,
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
}

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
        })
    }

    pub fn generation(&self) -> u32 {
        self.generation
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
        self.apply_batch(&batch).await.inspect_err(|_| {
            batch::rewind(&self.consumer, &batch);
        })
    }

    async fn apply_batch(&self, batch: &[OwnedMessage]) -> Result<usize, ProjectorError> {
        let mut partitions: BTreeMap<(&str, i32), Vec<&OwnedMessage>> = BTreeMap::new();
        for message in batch {
            partitions
                .entry((message.topic(), message.partition()))
                .or_default()
                .push(message);
        }
        let mut tx = self.pool.begin().await?;
        // Unqualified names below resolve into this projector's generation.
        sqlx::query("SELECT set_config('search_path', $1, true)")
            .bind(&self.schema)
            .execute(&mut *tx)
            .await?;
        let mut applied = 0;
        let mut positions = Vec::new();
        for ((topic, partition), messages) in partitions {
            sqlx::query(
                "INSERT INTO projection_offsets (projection, topic, partition, next_offset) VALUES ($1, $2, $3, 0)
                 ON CONFLICT DO NOTHING",
            )
            .bind(control_plane::NAME)
            .bind(topic)
            .bind(partition)
            .execute(&mut *tx)
            .await?;
            let mut next: i64 = sqlx::query_scalar(
                "SELECT next_offset FROM projection_offsets
                 WHERE projection = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
            )
            .bind(control_plane::NAME)
            .bind(topic)
            .bind(partition)
            .fetch_one(&mut *tx)
            .await?;
            for message in messages {
                if message.offset() < next {
                    counter!("frameworks_projector_events_total", "projection" => control_plane::NAME, "outcome" => "skipped").increment(1);
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
                if self.apply_one(&mut tx, message).await? {
                    applied += 1;
                }
                next = message.offset() + 1;
            }
            sqlx::query(
                "UPDATE projection_offsets SET next_offset = $4, updated_at = now()
                 WHERE projection = $1 AND topic = $2 AND partition = $3",
            )
            .bind(control_plane::NAME)
            .bind(topic)
            .bind(partition)
            .bind(next)
            .execute(&mut *tx)
            .await?;
            positions.push((topic, partition, next));
        }
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

    /// Applies one record inside its own savepoint; returns whether it changed the model.
    async fn apply_one(
        &self,
        tx: &mut sqlx::PgTransaction<'_>,
        message: &OwnedMessage,
    ) -> Result<bool, ProjectorError> {
        let event = match read_event(message) {
            Ok(event) => event,
            Err(unreadable) => {
                self.dead_letter(message, unreadable.reason, unreadable.error)
                    .await?;
                return Ok(false);
            }
        };
        let mut savepoint = tx.begin().await?;
        match control_plane::apply(savepoint.acquire().await?, &event).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                let label = if outcome == Applied::Changed {
                    "applied"
                } else {
                    "duplicate"
                };
                counter!("frameworks_projector_events_total", "projection" => control_plane::NAME, "outcome" => label).increment(1);
                Ok(outcome == Applied::Changed)
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
        counter!("frameworks_projector_events_total", "projection" => control_plane::NAME, "outcome" => "dead-lettered")
            .increment(1);
        Ok(self.dead_letters.write(message, reason, error).await?)
    }
}
