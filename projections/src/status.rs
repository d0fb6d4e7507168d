//! How far a projection is behind its topics, and what it dead-lettered.

use std::time::Duration;

use frameworks_events::kafka::{KafkaSettings, read_dead_letters};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use sqlx::PgPool;

use frameworks_events::Topic;

use crate::control_plane;
use crate::live::{self, LiveState};

/// One partition: the next offset the projection will apply, and the log's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Next offset to apply, as committed with the read model (0 if never read).
    pub applied: i64,
    /// Kafka's high watermark: the offset the next record will get.
    pub end: i64,
}

impl PartitionLag {
    pub fn lag(&self) -> i64 {
        (self.end - self.applied).max(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub projection: &'static str,
    pub group: String,
    pub partitions: Vec<PartitionLag>,
    /// Records this projection's group sent to the dead-letter topic.
    pub dead_letters: usize,
}

impl ProjectionStatus {
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("reading Kafka")]
    Kafka(#[from] KafkaError),
    #[error("reading the projection's offsets")]
    Database(#[from] sqlx::Error),
    #[error("reading the live state's offsets")]
    Redis(#[from] redis::RedisError),
}

/// The control-plane projection's lag per partition and its dead-letter count.
pub async fn control_plane_status(
    pool: &PgPool,
    kafka: &KafkaSettings,
    group: &str,
    dead_letter_scan_limit: usize,
) -> Result<ProjectionStatus, StatusError> {
    let applied: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT topic, partition, next_offset FROM projection_offsets WHERE projection = $1",
    )
    .bind(control_plane::NAME)
    .fetch_all(pool)
    .await?;
    let kafka_for_watermarks = kafka.clone();
    let ends = tokio::task::spawn_blocking(move || {
        watermarks(&kafka_for_watermarks, &control_plane::TOPICS)
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    let partitions = ends
        .into_iter()
        .map(|(topic, partition, end)| {
            let applied = applied
                .iter()
                .find(|(t, p, _)| *t == topic && *p == partition)
                .map_or(0, |(_, _, next)| *next);
            PartitionLag {
                topic,
                partition,
                applied,
                end,
            }
        })
        .collect();
    Ok(ProjectionStatus {
        projection: control_plane::NAME,
        group: group.to_owned(),
        partitions,
        dead_letters: dead_letters_of(kafka, group, dead_letter_scan_limit).await?,
    })
}

/// The live-state projection's lag per partition and its dead-letter count.
pub async fn live_state_status(
    state: &LiveState,
    kafka: &KafkaSettings,
    group: &str,
    dead_letter_scan_limit: usize,
) -> Result<ProjectionStatus, StatusError> {
    let kafka_for_watermarks = kafka.clone();
    let ends =
        tokio::task::spawn_blocking(move || watermarks(&kafka_for_watermarks, &live::TOPICS))
            .await
            .map_err(|_| KafkaError::Canceled)??;
    let mut partitions = Vec::with_capacity(ends.len());
    for (topic, partition, end) in ends {
        let applied = state
            .applied(&topic, partition)
            .await?
            .map_or(0, |last| last + 1);
        partitions.push(PartitionLag {
            topic,
            partition,
            applied,
            end,
        });
    }
    Ok(ProjectionStatus {
        projection: live::NAME,
        group: group.to_owned(),
        partitions,
        dead_letters: dead_letters_of(kafka, group, dead_letter_scan_limit).await?,
    })
}

async fn dead_letters_of(
    kafka: &KafkaSettings,
    group: &str,
    scan_limit: usize,
) -> Result<usize, StatusError> {
    Ok(read_dead_letters(kafka, scan_limit)
        .await?
        .iter()
        .filter(|letter| letter.consumer_group == group)
        .count())
}

/// High watermarks of every partition of `topics`.
fn watermarks(
    kafka: &KafkaSettings,
    topics: &[Topic],
) -> Result<Vec<(String, i32, i64)>, KafkaError> {
    let catalogue = kafka.catalogue();
    let consumer: BaseConsumer = kafka.client_config("frameworks-status").create()?;
    let timeout = Duration::from_millis(kafka.timeout_ms);
    let mut ends = Vec::new();
    for topic in topics.iter().map(|&t| catalogue.name(t).to_owned()) {
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
            ends.push((topic.clone(), partition.id(), high));
        }
    }
    Ok(ends)
}
