//! Consuming events as a consumer group, at least once.
//!
//! [`EventConsumer::next`] yields decoded events. A record that does not
//! decode (garbage, an unknown event type, a schema version newer than this
//! build) is written to the dead-letter topic with the reason, its offset is
//! stored, and the consumer moves on: one bad record never stalls a group.
//!
//! Offsets are stored only when the caller acknowledges an event
//! ([`EventConsumer::ack`]) and committed in the background, and synchronously
//! before partitions are revoked: otherwise a rebalance would throw away the
//! positions of work already done and cause needless reprocessing.

use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{debug, warn};

use super::dead_letter::{DeadLetterWriter, read_event};
use super::publisher::PublishError;
use super::{KafkaSettings, is_leader_change};
use crate::catalogue::Topic;
use crate::envelope::Event;

/// How long to wait before reading again after a partition had no leader.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// An event and where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub event: Event,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("reading from Kafka failed")]
    Kafka(#[from] KafkaError),
    #[error("could not dead-letter an unreadable record")]
    DeadLetter(#[from] PublishError),
}

/// Commits stored offsets before a rebalance takes partitions away.
#[derive(Debug)]
pub struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => debug!(partitions = partitions.count(), "committed before revoke"),
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => warn!(%error, "commit before revoke failed"),
            }
        }
    }
}

pub struct EventConsumer {
    consumer: StreamConsumer<CommitOnRevoke>,
    dead_letters: DeadLetterWriter,
    group_id: String,
}

impl std::fmt::Debug for EventConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer")
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl EventConsumer {
    /// Joins consumer group `group_id` on `topics`. A group with no committed
    /// position starts from the beginning of the log.
    pub fn subscribe(
        settings: &KafkaSettings,
        group_id: &str,
        topics: &[Topic],
    ) -> Result<Self, KafkaError> {
        let catalogue = settings.catalogue();
        let consumer: StreamConsumer<CommitOnRevoke> = settings
            .group_consumer_config(group_id, None)
            .set("auto.commit.interval.ms", "1000")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create_with_context(CommitOnRevoke)?;
        let names: Vec<&str> = topics.iter().map(|&t| catalogue.name(t)).collect();
        consumer.subscribe(&names)?;
        Ok(Self {
            consumer,
            dead_letters: DeadLetterWriter::new(settings, group_id)?,
            group_id: group_id.to_owned(),
        })
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The next readable event. Unreadable records met on the way are
    /// dead-lettered and skipped. A partition without a leader yet (a topic
    /// created a moment ago) is waited for: librdkafka reports it as an
    /// error, and then reads the partition once it has one.
    pub async fn next(&self) -> Result<Received, ConsumeError> {
        loop {
            let message = match self.consumer.recv().await {
                Ok(message) => message,
                Err(error) if is_leader_change(&error) => {
                    warn!(%error, group = %self.group_id, "a partition has no leader yet; waiting");
                    tokio::time::sleep(LEADER_WAIT).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            match read_event(&message) {
                Ok(event) => {
                    return Ok(Received {
                        event,
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                    });
                }
                Err(unreadable) => {
                    self.dead_letters
                        .write(&message, unreadable.reason, unreadable.error)
                        .await?;
                    // Only once the dead letter is safely written may the position move on.
                    self.consumer.store_offset(
                        message.topic(),
                        message.partition(),
                        message.offset(),
                    )?;
                }
            }
        }
    }

    /// Marks `received` (and everything before it on its partition) as done.
    pub fn ack(&self, received: &Received) -> Result<(), KafkaError> {
        self.consumer
            .store_offset(&received.topic, received.partition, received.offset)
    }

    /// Commits acknowledged positions now instead of at the next interval.
    pub fn commit(&self) -> Result<(), KafkaError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            other => other,
        }
    }
}
