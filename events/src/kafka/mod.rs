//! Kafka plumbing shared by every role: connection settings, topic
//! administration, publishing events, and consuming them with undecodable
//! records routed to the dead-letter topic.

pub mod admin;
pub mod consumer;
pub mod dead_letter;
pub mod feed;
pub mod publisher;
mod settings;

pub use admin::{ApplyReport, TopicChange, apply_catalogue};
pub use consumer::{EventConsumer, Received};
pub use dead_letter::{DeadLetter, DeadLetterWriter, Unreadable, read_dead_letters, read_event};
pub use feed::EventFeed;
pub use publisher::{Delivered, EventPublisher};
pub use settings::KafkaSettings;

/// Record headers the platform writes next to every event, so tools can
/// filter without decoding the envelope.
pub mod headers {
    pub const EVENT_TYPE: &str = "fw-event-type";
    pub const EVENT_ID: &str = "fw-event-id";
}
