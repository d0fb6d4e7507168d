//! The FrameWorks event contract and the Kafka backbone it travels on.
//!
//! - [`proto`]: the prost types generated from `schemas/proto`.
//! - [`contract`]: the same contract as a descriptor set, and the rules that
//!   keep stored events readable (checked against a committed snapshot).
//! - [`registry`]: every event type, its payload message, aggregate, topic and
//!   schema version, declared once.
//! - [`envelope`]: [`Event`], the decoded envelope, and its wire codec.
//! - [`catalogue`]: every Kafka topic the platform uses, with its partitions,
//!   key, retention and cleanup policy.
//! - [`kafka`]: settings, topic administration, the publisher and the consumer
//!   that routes undecodable records to the dead-letter topic.
//! - [`redact`]: what of a URI may be carried, shown or logged.
//! - [`observability`]: how every crate declares its metrics, once.

pub mod catalogue;
pub mod contract;
pub mod envelope;
pub mod kafka;
pub mod observability;
pub mod proto;
pub mod redact;
pub mod registry;

pub use catalogue::{Catalogue, CatalogueSettings, Topic};
pub use envelope::{DecodeError, Event};
pub use registry::{AggregateType, EventPayload, EventType};
