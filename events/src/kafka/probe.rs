//! Probes of Kafka for health: whether the brokers answer
//! ([`BrokerProbe`]), and whether a consumer that is silent is stuck or has
//! nothing to read ([`LagProbe`]).
//!
//! A consumer group member can stop making progress without returning an
//! error: librdkafka may sit in a rejoin after a broker restart, or hold an
//! assignment whose fetches never resume. [`LagProbe::waiting`] counts the
//! records that wait past where the member stands, through a client of its
//! own (the member may be the thing that is stuck), so the member's loop can
//! give up on a consumer that is silent while records wait, and its
//! supervisor can make a new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSettings;

/// Counts, for one consumer group, the records waiting past its members'
/// positions, with a client that never joins the group.
#[derive(Clone)]
pub struct LagProbe {
    client: Arc<BaseConsumer>,
    timeout: Duration,
}

impl std::fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagProbe").finish_non_exhaustive()
    }
}

impl LagProbe {
    /// A probe of group `group_id`. It reads the group's committed offsets
    /// and the partitions' ends; it never subscribes.
    pub fn new(settings: &KafkaSettings, group_id: &str) -> Result<Self, KafkaError> {
        let client: BaseConsumer = settings
            .client_config(&format!("{group_id}-lag-probe"))
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            client: Arc::new(client),
            timeout: settings.timeout().min(Duration::from_secs(10)),
        })
    }

    /// Records waiting on the partitions of `consumer`'s subscription, past
    /// its position where it has one and past the group's committed offset
    /// elsewhere. A partition counts only with more than one record
    /// waiting: the commit marker of a transaction takes an offset that no
    /// consumer ever receives.
    pub async fn waiting<C: ConsumerContext + 'static>(
        &self,
        consumer: &impl Consumer<C>,
    ) -> Result<i64, KafkaError> {
        let topics: Vec<String> = consumer
            .subscription()?
            .elements()
            .iter()
            .map(|element| element.topic().to_owned())
            .collect();
        let positions: HashMap<(String, i32), i64> = consumer
            .position()?
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => {
                    Some(((element.topic().to_owned(), element.partition()), offset))
                }
                _ => None,
            })
            .collect();
        let (client, timeout) = (Arc::clone(&self.client), self.timeout);
        tokio::task::spawn_blocking(move || {
            drain(&client);
            let mut partitions = TopicPartitionList::new();
            for topic in &topics {
                let metadata = client.fetch_metadata(Some(topic), timeout)?;
                for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                    partitions.add_partition(topic, partition.id());
                }
            }
            let committed = client.committed_offsets(partitions, timeout)?;
            let mut waiting = 0;
            for element in committed.elements() {
                let (topic, partition) = (element.topic(), element.partition());
                let (low, high) = client.fetch_watermarks(topic, partition, timeout)?;
                let from = positions
                    .get(&(topic.to_owned(), partition))
                    .copied()
                    .or(match element.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    })
                    .unwrap_or(low);
                let behind = high - from;
                if behind > 1 {
                    waiting += behind;
                }
            }
            Ok(waiting)
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }
}

/// Whether the brokers answer: a metadata request through a client kept
/// for the purpose, for a role's `/health`.
#[derive(Clone)]
pub struct BrokerProbe {
    client: Arc<BaseConsumer>,
    timeout: Duration,
}

impl std::fmt::Debug for BrokerProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerProbe").finish_non_exhaustive()
    }
}

impl BrokerProbe {
    pub fn new(settings: &KafkaSettings, role: &str) -> Result<Self, KafkaError> {
        let client: BaseConsumer = settings
            .client_config(&format!("{role}-broker-probe"))
            .create()?;
        Ok(Self {
            client: Arc::new(client),
            timeout: Duration::from_secs(2),
        })
    }

    /// Whether a broker answered a metadata request within 2 s.
    pub async fn reachable(&self) -> bool {
        let (client, timeout) = (Arc::clone(&self.client), self.timeout);
        tokio::task::spawn_blocking(move || {
            drain(&client);
            client.fetch_metadata(None, timeout).is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// Serves the probe client's queue: librdkafka queues its log lines and
/// errors (one a second or so while the brokers are away) until a poll
/// takes them, and a probe never reads records otherwise.
fn drain(client: &BaseConsumer) {
    while let Some(event) = client.poll(Duration::ZERO) {
        drop(event);
    }
}
