//! A live feed of events: one Kafka reader per process (no consumer group:
//! it takes every partition of its topics from their end), fanned out to
//! every receiver through a broadcast channel. The bridge's subscriptions
//! and the balancer's cache invalidation read it. A receiver that falls more
//! than the channel's capacity behind skips what it missed (and its owner
//! counts that).

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::broadcast;
use tracing::{debug, warn};
use uuid::Uuid;

use super::{KafkaSettings, read_event};
use crate::{Event, Topic};

#[derive(Debug, Clone)]
pub struct EventFeed {
    sender: broadcast::Sender<Arc<Event>>,
}

impl EventFeed {
    /// Starts reading every partition of `topics` from its current end;
    /// `reader` names this reader in Kafka and in the metrics.
    pub fn start(
        kafka: &KafkaSettings,
        reader: &'static str,
        topics: &[Topic],
        capacity: usize,
    ) -> Result<Self, KafkaError> {
        let (feed, reading) = Self::open(kafka, reader, topics, capacity)?;
        tokio::spawn(reading);
        Ok(feed)
    }

    /// As [`Self::start`], but the reading task is the caller's to run (a
    /// role supervises it: the feed is over when it ends).
    pub fn open(
        kafka: &KafkaSettings,
        reader: &'static str,
        topics: &[Topic],
        capacity: usize,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static), KafkaError> {
        let consumer: StreamConsumer = kafka
            .client_config(reader)
            // Offsets are never committed: the group id only names the reader.
            .set("group.id", format!("{reader}-{}", Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()?;
        let catalogue = kafka.catalogue();
        let mut assignment = TopicPartitionList::new();
        for &topic in topics {
            let name = catalogue.name(topic);
            let metadata = consumer.fetch_metadata(Some(name), kafka.timeout())?;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                assignment.add_partition_offset(name, partition.id(), Offset::End)?;
            }
        }
        consumer.assign(&assignment)?;
        let (sender, _) = broadcast::channel(capacity);
        let reading = pump(consumer, reader, sender.clone());
        Ok((Self { sender }, reading))
    }

    /// A feed that no reader fills: for schema printing and unit tests.
    pub fn detached(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    /// Hands an event to every subscription (the reader does this for Kafka's records).
    pub fn publish(&self, event: Event) {
        // No receiver is not an error: nobody is subscribed.
        let _ = self.sender.send(Arc::new(event));
    }
}

async fn pump(
    consumer: StreamConsumer,
    reader: &'static str,
    sender: broadcast::Sender<Arc<Event>>,
) {
    loop {
        match consumer.recv().await {
            Ok(message) => match read_event(&message) {
                Ok(event) => {
                    counter!("frameworks_feed_events_total", "reader" => reader).increment(1);
                    let _ = sender.send(Arc::new(event));
                }
                // The projectors dead-letter what cannot be read; the feed just skips it.
                Err(unreadable) => {
                    debug!(reason = unreadable.reason, "skipping an unreadable record")
                }
            },
            Err(error) => {
                warn!(%error, reader, "the event feed could not read Kafka; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
