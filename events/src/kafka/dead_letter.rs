//! Dead letters: records a consumer could not read.
//!
//! The dead-letter record keeps the original key and bytes untouched, so it
//! can be replayed once a newer build understands it; why and where it
//! failed travels in headers.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::{Message, Offset, TopicPartitionList};

use tracing::warn;

use super::publisher::{EventPublisher, PublishError};
use super::{KafkaSettings, is_leader_change};
use crate::catalogue::Topic;
use crate::envelope::Event;

pub const REASON: &str = "fw-dlq-reason";
pub const ERROR: &str = "fw-dlq-error";
pub const SOURCE_TOPIC: &str = "fw-dlq-source-topic";
pub const SOURCE_PARTITION: &str = "fw-dlq-source-partition";
pub const SOURCE_OFFSET: &str = "fw-dlq-source-offset";
pub const CONSUMER_GROUP: &str = "fw-dlq-consumer-group";
pub const DEAD_LETTERED_AT: &str = "fw-dlq-at";

/// A record that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Stable token, e.g. `unknown-event-type` (see [`crate::DecodeError::reason`]).
    pub reason: String,
    /// The full error message.
    pub error: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub consumer_group: String,
    pub dead_lettered_at: DateTime<Utc>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl DeadLetter {
    /// Describes `message`, read by `consumer_group`, as a dead letter.
    pub fn of(
        message: &impl Message,
        consumer_group: &str,
        reason: &str,
        error: impl Into<String>,
    ) -> Self {
        Self {
            reason: reason.to_owned(),
            error: error.into(),
            source_topic: message.topic().to_owned(),
            source_partition: message.partition(),
            source_offset: message.offset(),
            consumer_group: consumer_group.to_owned(),
            dead_lettered_at: Utc::now(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        }
    }

    pub fn headers(&self) -> OwnedHeaders {
        let partition = self.source_partition.to_string();
        let offset = self.source_offset.to_string();
        let at = self.dead_lettered_at.to_rfc3339();
        [
            (REASON, self.reason.as_str()),
            (ERROR, self.error.as_str()),
            (SOURCE_TOPIC, self.source_topic.as_str()),
            (SOURCE_PARTITION, partition.as_str()),
            (SOURCE_OFFSET, offset.as_str()),
            (CONSUMER_GROUP, self.consumer_group.as_str()),
            (DEAD_LETTERED_AT, at.as_str()),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        })
    }

    /// Reads a record of the dead-letter topic back; `None` if it lacks the headers.
    pub fn from_record(message: &impl Message) -> Option<Self> {
        let headers = message.headers()?;
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        Some(Self {
            reason: get(REASON)?,
            error: get(ERROR)?,
            source_topic: get(SOURCE_TOPIC)?,
            source_partition: get(SOURCE_PARTITION)?.parse().ok()?,
            source_offset: get(SOURCE_OFFSET)?.parse().ok()?,
            consumer_group: get(CONSUMER_GROUP)?,
            dead_lettered_at: DateTime::parse_from_rfc3339(&get(DEAD_LETTERED_AT)?)
                .ok()?
                .with_timezone(&Utc),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        })
    }
}

/// Why a record is not a readable event: a dead-letter reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub reason: &'static str,
    pub error: String,
}

/// The record's event, or why it has none (see [`crate::DecodeError::reason`]).
pub fn read_event(message: &impl Message) -> Result<Event, Unreadable> {
    match message.payload() {
        Some(bytes) => Event::decode(bytes).map_err(|e| Unreadable {
            reason: e.reason(),
            error: e.to_string(),
        }),
        None => Err(Unreadable {
            reason: "empty-record",
            error: "the record has no value".to_owned(),
        }),
    }
}

/// Writes a consumer group's unreadable records to the dead-letter topic.
#[derive(Debug)]
pub struct DeadLetterWriter {
    publisher: EventPublisher,
    topic: String,
    group_id: String,
}

impl DeadLetterWriter {
    pub fn new(settings: &KafkaSettings, group_id: &str) -> Result<Self, KafkaError> {
        Ok(Self {
            publisher: EventPublisher::new(settings, &format!("{group_id}-dead-letters"))?,
            topic: settings.catalogue().name(Topic::DeadLetter).to_owned(),
            group_id: group_id.to_owned(),
        })
    }

    /// Writes `message` untouched, with `reason` and `error`; returns once Kafka has it.
    pub async fn write(
        &self,
        message: &impl Message,
        reason: &str,
        error: String,
    ) -> Result<(), PublishError> {
        let letter = DeadLetter::of(message, &self.group_id, reason, error);
        warn!(
            group = %self.group_id, topic = message.topic(), partition = message.partition(),
            offset = message.offset(), reason, error = %letter.error,
            "unreadable record sent to the dead-letter topic"
        );
        self.publisher
            .send(
                &self.topic,
                letter.key.as_deref(),
                letter.payload.as_deref().unwrap_or_default(),
                letter.headers(),
            )
            .await?;
        Ok(())
    }
}

/// Reads the dead-letter topic from its start to its current end, oldest
/// first per partition, returning at most `limit` letters. Records without
/// dead-letter headers (written by hand) are skipped.
pub async fn read_dead_letters(
    settings: &KafkaSettings,
    limit: usize,
) -> Result<Vec<DeadLetter>, KafkaError> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || read_blocking(&settings, limit))
        .await
        .map_err(|_| KafkaError::Canceled)?
}

fn read_blocking(settings: &KafkaSettings, limit: usize) -> Result<Vec<DeadLetter>, KafkaError> {
    let catalogue = settings.catalogue();
    let topic = catalogue.name(Topic::DeadLetter);
    let timeout = settings.timeout();
    // No group: reading dead letters must not move anybody's committed position.
    let consumer: BaseConsumer = settings
        .client_config("frameworks-dead-letter-reader")
        .set("enable.auto.commit", "false")
        .set("group.id", "frameworks-dead-letter-reader")
        .create()?;
    let deadline = Instant::now() + timeout;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = Vec::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = watermarks(&consumer, topic, partition.id(), deadline)?;
        if high > low {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(low))?;
            remaining.push((partition.id(), high));
        }
    }
    let mut letters = Vec::new();
    if remaining.is_empty() {
        return Ok(letters);
    }
    consumer.assign(&assignment)?;
    while !remaining.is_empty() && letters.len() < limit && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        if let Some(letter) = DeadLetter::from_record(&message) {
            letters.push(letter);
        }
        remaining.retain(|&(partition, high)| {
            !(partition == message.partition() && message.offset() + 1 >= high)
        });
    }
    Ok(letters)
}

/// A partition's low and high watermarks. A topic created a moment ago may
/// have no leader yet everywhere (`frameworks topics apply` just before):
/// the broker says so, and the question is asked again until `deadline`.
fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    deadline: Instant,
) -> Result<(i64, i64), KafkaError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_watermarks(topic, partition, left) {
            Err(error) if is_leader_change(&error) && left > Duration::ZERO => {
                std::thread::sleep(Duration::from_millis(100).min(left));
            }
            answer => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;

    #[test]
    fn headers_round_trip() {
        let source = OwnedMessage::new(
            Some(vec![1, 2, 3]),
            Some(b"stream-1".to_vec()),
            "fw.streams".into(),
            Timestamp::NotAvailable,
            4,
            42,
            None,
        );
        let letter = DeadLetter::of(
            &source,
            "projector",
            "unknown-event-type",
            "unknown event type \"x\"",
        );
        let record = OwnedMessage::new(
            letter.payload.clone(),
            letter.key.clone(),
            "fw.dead-letter".into(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(letter.headers()),
        );
        let read = DeadLetter::from_record(&record).expect("headers present");
        assert_eq!(read.reason, "unknown-event-type");
        assert_eq!(
            (
                read.source_topic.as_str(),
                read.source_partition,
                read.source_offset
            ),
            ("fw.streams", 4, 42)
        );
        assert_eq!(read.payload.as_deref(), Some(&[1u8, 2, 3][..]));
        // RFC 3339 keeps nanoseconds, so the whole value survives.
        assert_eq!(read, letter);
    }

    #[test]
    fn records_without_headers_are_not_dead_letters() {
        let record = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, None);
        assert!(DeadLetter::from_record(&record).is_none());
    }
}
