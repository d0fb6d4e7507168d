//! How far a projection is behind its topics, and what it dead-lettered.

use std::time::Duration;

use frameworks_events::kafka::{KafkaSettings, read_dead_letters};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use frameworks_events::Topic;

use crate::generations::{Generations, group_of};

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
    pub generation: u32,
    /// "live" or "building" (a replay in progress).
    pub state: &'static str,
    pub group: String,
    pub partitions: Vec<PartitionLag>,
    /// Records this generation's group sent to the dead-letter topic.
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
    #[error("reading the projection's generations and offsets")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The projection's live generation, and the one a replay is building if
/// any: lag per partition and dead-letter count of each.
pub async fn status<G: Generations>(
    generations: &G,
    topics: &[Topic],
    kafka: &KafkaSettings,
    group_base: &str,
    dead_letter_scan_limit: usize,
) -> Result<Vec<ProjectionStatus>, StatusError> {
    let store = |e: G::Error| StatusError::Store(Box::new(e));
    let mut wanted = Vec::new();
    if let Some(live) = generations.live().await.map_err(store)? {
        wanted.push((live, "live"));
    }
    if let Some(building) = generations.building().await.map_err(store)? {
        wanted.push((building, "building"));
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let ends = end_offsets(kafka, topics).await?;
    let letters = read_dead_letters(kafka, dead_letter_scan_limit).await?;
    let mut statuses = Vec::new();
    for (generation, state) in wanted {
        let applied = generations.applied(generation).await.map_err(store)?;
        let group = group_of(group_base, generation);
        statuses.push(ProjectionStatus {
            projection: generations.projection(),
            generation,
            state,
            partitions: lags(&ends, &applied),
            dead_letters: letters
                .iter()
                .filter(|letter| letter.consumer_group == group)
                .count(),
            group,
        });
    }
    Ok(statuses)
}

/// Applied positions against the log's ends, one row per partition.
pub fn lags(ends: &[(String, i32, i64)], applied: &[(String, i32, i64)]) -> Vec<PartitionLag> {
    ends.iter()
        .map(|(topic, partition, end)| PartitionLag {
            topic: topic.clone(),
            partition: *partition,
            applied: applied
                .iter()
                .find(|(t, p, _)| t == topic && p == partition)
                .map_or(0, |(_, _, next)| *next),
            end: *end,
        })
        .collect()
}

/// The high watermark of every partition of `topics`.
pub async fn end_offsets(
    kafka: &KafkaSettings,
    topics: &[Topic],
) -> Result<Vec<(String, i32, i64)>, KafkaError> {
    Ok(offset_ranges(kafka, topics)
        .await?
        .into_iter()
        .map(|(topic, partition, _, high)| (topic, partition, high))
        .collect())
}

/// The low and high watermark of every partition of `topics`: the records a
/// replay from the beginning reads.
pub async fn offset_ranges(
    kafka: &KafkaSettings,
    topics: &[Topic],
) -> Result<Vec<(String, i32, i64, i64)>, KafkaError> {
    let kafka = kafka.clone();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || watermarks(&kafka, &topics))
        .await
        .map_err(|_| KafkaError::Canceled)?
}

fn watermarks(
    kafka: &KafkaSettings,
    topics: &[Topic],
) -> Result<Vec<(String, i32, i64, i64)>, KafkaError> {
    let catalogue = kafka.catalogue();
    let consumer: BaseConsumer = kafka.client_config("frameworks-status").create()?;
    let timeout = Duration::from_millis(kafka.timeout_ms);
    let mut ends = Vec::new();
    for topic in topics.iter().map(|&t| catalogue.name(t).to_owned()) {
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
            ends.push((topic.clone(), partition.id(), low, high));
        }
    }
    Ok(ends)
}
