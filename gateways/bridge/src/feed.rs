//! The event feed behind subscriptions: the bridge's one Kafka reader
//! ([`EventFeed`]), fanned out to every subscription. A subscription that
//! falls behind skips what it missed and counts it
//! (`frameworks_bridge_subscription_lagged_total`).

use frameworks_events::Topic;
pub use frameworks_events::kafka::EventFeed;
use frameworks_events::kafka::KafkaSettings;
use rdkafka::error::KafkaError;

/// The topics subscriptions are fed from (and, for clusters, the routing
/// directory's cache is dropped by).
pub const TOPICS: [Topic; 4] = [
    Topic::Tenants,
    Topic::Streams,
    Topic::Infrastructure,
    Topic::StreamTelemetry,
];

/// The bridge's reader of [`TOPICS`], from their current end, and the task
/// that reads them (the caller's to run).
pub fn open(
    kafka: &KafkaSettings,
    capacity: usize,
) -> Result<(EventFeed, impl Future<Output = ()> + Send + 'static), KafkaError> {
    EventFeed::open(kafka, "frameworks-bridge-feed", &TOPICS, capacity)
}
