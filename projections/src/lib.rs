//! The read side: projectors are Kafka consumer groups that materialise read
//! models, and applying an event twice has the effect of applying it once.
//!
//! - [`analytics`]: ClickHouse tables of stream and node telemetry, and
//!   5-minute usage aggregates kept by materialised views.
//! - [`control_plane`]: the PostgreSQL read models of every control-plane
//!   aggregate (tenants, users, API tokens, streams and keys, signing keys,
//!   clusters, enrolment tokens, nodes).
//! - [`live`]: live state in Redis (live streams and their edges, viewer
//!   counts, node load), with TTLs.
//! - [`postgres`]: the projector that feeds the control-plane models. Each batch is one
//!   transaction holding the model changes and the Kafka offsets they cover.
//! - [`queries`]: queries of the read models for the gateways (which
//!   clusters a tenant may use, so far).
//! - [`read_your_writes`]: waiting, with a bound, until a projection has
//!   applied a given aggregate version.
//! - [`status`]: lag per partition and dead-letter counts, for operators.

pub mod analytics;
mod batch;
pub mod control_plane;
pub mod generations;
pub mod live;
pub mod observability;
pub mod postgres;
pub mod queries;
pub mod read_your_writes;
pub mod status;

pub use batch::{ConsumerLost, Progress};

/// Why an event could not be applied to a read model. The projector sends
/// it to the dead-letter topic with [`ApplyError::reason`] and goes on.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{event_type} refers to {aggregate} {id}, which the read model does not hold")]
    MissingAggregate {
        event_type: &'static str,
        aggregate: &'static str,
        id: String,
    },
    #[error("{event_type}: {problem}")]
    Invalid {
        event_type: &'static str,
        problem: String,
    },
    #[error("database")]
    Database(#[from] sqlx::Error),
}

impl ApplyError {
    /// The same refusal as met by `event`, another event of the same
    /// aggregate (the events of a folded update fail together).
    pub(crate) fn for_event(&self, event: &frameworks_events::Event) -> Self {
        let event_type = event.event_type().name();
        match self {
            Self::MissingAggregate { aggregate, id, .. } => Self::MissingAggregate {
                event_type,
                aggregate,
                id: id.clone(),
            },
            Self::Invalid { problem, .. } => Self::Invalid {
                event_type,
                problem: problem.clone(),
            },
            // Set-based outcomes never hold one (their call fails instead).
            Self::Database(error) => Self::Invalid {
                event_type,
                problem: format!("the database refused it: {error}"),
            },
        }
    }

    /// The dead-letter reason token; `None` for database failures, which are
    /// the projector's problem (retry), not the event's.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::MissingAggregate { .. } => Some("missing-aggregate"),
            Self::Invalid { .. } => Some("invalid-for-projection"),
            Self::Database(_) => None,
        }
    }
}
