//! The event feed behind subscriptions: one Kafka reader per bridge process
//! (no consumer group: it takes every partition from its end), fanned out
//! to every subscription through a broadcast channel. A subscription that
//! falls more than the channel's capacity behind skips what it missed and
//! counts it (`frameworks_bridge_subscription_lagged_total`).

use std::sync::Arc;
use std::time::Duration;

use frameworks_events::kafka::{KafkaSettings, read_event};
use frameworks_events::{Event, Topic};
use metrics::counter;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::broadcast;
use tracing::{debug, warn};
use uuid::Uuid;

/// The topics subscriptions are fed from.
pub const TOPICS: [Topic; 3] = [Topic::Tenants, Topic::Streams, Topic::StreamTelemetry];

#[derive(Debug, Clone)]
pub struct EventFeed {
    sender: broadcast::Sender<Arc<Event>>,
}

impl EventFeed {
    /// Starts reading every partition of [`TOPICS`] from its current end.
    pub fn start(kafka: &KafkaSettings, capacity: usize) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = kafka
            .client_config("frameworks-bridge-feed")
            // Offsets are never committed: the group id only names the reader.
            .set(
                "group.id",
                format!("frameworks-bridge-feed-{}", Uuid::now_v7()),
            )
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()?;
        let catalogue = kafka.catalogue();
        let mut assignment = TopicPartitionList::new();
        for topic in TOPICS {
            let name = catalogue.name(topic);
            let metadata = consumer.fetch_metadata(Some(name), kafka.timeout())?;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                assignment.add_partition_offset(name, partition.id(), Offset::End)?;
            }
        }
        consumer.assign(&assignment)?;
        let (sender, _) = broadcast::channel(capacity);
        tokio::spawn(pump(consumer, sender.clone()));
        Ok(Self { sender })
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

async fn pump(consumer: StreamConsumer, sender: broadcast::Sender<Arc<Event>>) {
    loop {
        match consumer.recv().await {
            Ok(message) => match read_event(&message) {
                Ok(event) => {
                    counter!("frameworks_bridge_feed_events_total").increment(1);
                    let _ = sender.send(Arc::new(event));
                }
                // The projectors dead-letter what cannot be read; the feed just skips it.
                Err(unreadable) => {
                    debug!(reason = unreadable.reason, "skipping an unreadable record")
                }
            },
            Err(error) => {
                warn!(%error, "the subscription feed could not read Kafka; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
