//! Kafka plumbing shared by every role: connection settings, topic
//! administration, publishing events, and consuming them with undecodable
//! records routed to the dead-letter topic.

pub mod admin;
pub mod consumer;
pub mod dead_letter;
pub mod feed;
pub mod probe;
pub mod publisher;
mod settings;

pub use admin::{ApplyReport, TopicChange, apply_catalogue};
pub use consumer::{EventConsumer, Received};
pub use dead_letter::{DeadLetter, DeadLetterWriter, Unreadable, read_dead_letters, read_event};
pub use feed::EventFeed;
pub use probe::{BrokerProbe, LagProbe};
pub use publisher::{Delivered, EventPublisher};
pub use settings::KafkaSettings;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Whether the broker refused only because a partition has no leader here
/// yet: a topic created a moment ago, or a leader being elected or moved.
/// Asking again shortly succeeds.
pub(crate) fn is_leader_change(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
        )
    )
}

/// Record headers the platform writes next to every event, so tools can
/// filter without decoding the envelope.
pub mod headers {
    pub const EVENT_TYPE: &str = "fw-event-type";
    pub const EVENT_ID: &str = "fw-event-id";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_leader_changes_are_asked_again() {
        let led = |code| is_leader_change(&KafkaError::MessageConsumption(code));
        assert!(led(RDKafkaErrorCode::NotLeaderForPartition));
        assert!(led(RDKafkaErrorCode::LeaderNotAvailable));
        assert!(led(RDKafkaErrorCode::UnknownTopicOrPartition));
        assert!(!led(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(!is_leader_change(&KafkaError::Canceled));
    }
}
