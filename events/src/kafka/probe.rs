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
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::KafkaSettings;

/// A client kept for asking Kafka, never reading records: its blocking
/// calls run off the async threads, each after draining its queue.
#[derive(Clone)]
struct ProbeClient {
    client: Arc<BaseConsumer>,
    timeout: Duration,
}

impl std::fmt::Debug for ProbeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ProbeClient {
    fn new(config: &ClientConfig, timeout: Duration) -> Result<Self, KafkaError> {
        Ok(Self {
            client: Arc::new(config.create()?),
            timeout,
        })
    }

    /// Runs `ask` with the client and its timeout on a blocking thread.
    async fn ask<T: Send + 'static>(
        &self,
        ask: impl FnOnce(&BaseConsumer, Duration) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, KafkaError> {
        let (client, timeout) = (Arc::clone(&self.client), self.timeout);
        tokio::task::spawn_blocking(move || {
            // librdkafka queues its log lines and errors (one a second or so
            // while the brokers are away) until a poll takes them.
            while client.poll(Duration::ZERO).is_some() {}
            ask(&client, timeout)
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }
}

/// Counts, for one consumer group, the records waiting past its members'
/// positions, with a client that never joins the group.
#[derive(Clone, Debug)]
pub struct LagProbe {
    client: ProbeClient,
}

impl LagProbe {
    /// A probe of group `group_id`. It reads the group's committed offsets
    /// and the partitions' ends; it never subscribes.
    pub fn new(settings: &KafkaSettings, group_id: &str) -> Result<Self, KafkaError> {
        let mut config = settings.client_config(&format!("{group_id}-lag-probe"));
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false");
        let timeout = settings.timeout().min(Duration::from_secs(10));
        Ok(Self {
            client: ProbeClient::new(&config, timeout)?,
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
        self.client
            .ask(move |client, timeout| {
                let committed =
                    client.committed_offsets(partitions(client, &topics, timeout)?, timeout)?;
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
    }
}

/// Whether the brokers answer: a metadata request through a client kept
/// for the purpose, for a role's `/health`.
#[derive(Clone, Debug)]
pub struct BrokerProbe {
    client: ProbeClient,
}

impl BrokerProbe {
    pub fn new(settings: &KafkaSettings, role: &str) -> Result<Self, KafkaError> {
        let config = settings.client_config(&format!("{role}-broker-probe"));
        Ok(Self {
            client: ProbeClient::new(&config, Duration::from_secs(2))?,
        })
    }

    /// The high watermark (the next offset) of every partition of `topics`.
    pub async fn ends(&self, topics: Vec<String>) -> Result<Vec<(String, i32, i64)>, KafkaError> {
        self.client
            .ask(move |client, timeout| {
                partitions(client, &topics, timeout)?
                    .elements()
                    .iter()
                    .map(|element| {
                        let (topic, partition) = (element.topic(), element.partition());
                        let (_, high) = client.fetch_watermarks(topic, partition, timeout)?;
                        Ok((topic.to_owned(), partition, high))
                    })
                    .collect()
            })
            .await
    }

    /// Whether a broker answered a metadata request within 2 s.
    pub async fn reachable(&self) -> bool {
        self.client
            .ask(|client, timeout| client.fetch_metadata(None, timeout).map(drop))
            .await
            .is_ok()
    }
}

/// Every partition of `topics`, from the brokers' metadata.
fn partitions(
    client: &BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<TopicPartitionList, KafkaError> {
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            partitions.add_partition(topic, partition.id());
        }
    }
    Ok(partitions)
}
