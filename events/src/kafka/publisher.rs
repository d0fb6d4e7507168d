//! Publishing events: keyed by aggregate id, to the topic the registry names,
//! acknowledged by all in-sync replicas.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::debug;

use super::KafkaSettings;
use super::headers;
use crate::catalogue::Catalogue;
use crate::envelope::Event;

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("publishing to {topic} failed")]
pub struct PublishError {
    pub topic: String,
    #[source]
    pub source: KafkaError,
}

/// The headers published next to every event (see [`headers`]).
pub fn event_headers(event_type: &str, event_id: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: headers::EVENT_TYPE,
            value: Some(event_type),
        })
        .insert(Header {
            key: headers::EVENT_ID,
            value: Some(event_id),
        })
}

/// An idempotent producer: retries never duplicate or reorder a partition's
/// records, and a send completes only once every in-sync replica has it.
pub struct EventPublisher {
    producer: FutureProducer,
    catalogue: Catalogue,
    timeout: Duration,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("catalogue", &self.catalogue)
            .finish_non_exhaustive()
    }
}

impl EventPublisher {
    pub fn new(settings: &KafkaSettings, client_id: &str) -> Result<Self, KafkaError> {
        let producer = settings
            .client_config(client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", settings.timeout_ms.to_string())
            .create()?;
        Ok(Self {
            producer,
            catalogue: settings.catalogue(),
            timeout: settings.timeout(),
        })
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Publishes `event` to its topic, keyed by its aggregate id.
    pub async fn publish(&self, event: &Event) -> Result<Delivered, PublishError> {
        let event_type = event.event_type();
        let topic = self.catalogue.name(event_type.topic());
        let id = event.id.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::EVENT_TYPE,
                value: Some(event_type.name()),
            })
            .insert(Header {
                key: headers::EVENT_ID,
                value: Some(&id),
            });
        let delivered = self
            .send(
                topic,
                Some(event.aggregate_id.as_bytes()),
                &event.encode(),
                headers,
            )
            .await?;
        debug!(event_type = %event_type, event_id = %id, topic, partition = delivered.partition,
            offset = delivered.offset, "published event");
        Ok(delivered)
    }

    /// Publishes bytes as they are: for dead letters and for tools that move
    /// records between topics without decoding them.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivered, PublishError> {
        let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        match self.producer.send(record, self.timeout).await {
            Ok(delivery) => Ok(Delivered {
                topic: topic.to_owned(),
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((source, _)) => Err(PublishError {
                topic: topic.to_owned(),
                source,
            }),
        }
    }
}
