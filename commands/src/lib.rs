//! The write side: every state change in the platform is a command.
//!
//! A command is handled against an [`Aggregate`] rebuilt from its events;
//! the handler validates it and decides which events follow. The
//! [`CommandBus`] appends them to the Postgres [`EventStore`] with an
//! expected version and retries a bounded number of times when a concurrent
//! writer got there first. The [`relay`] publishes appended events to Kafka.
//!
//! # Why not cqrs-es
//!
//! cqrs-es models the same loop (load, handle, apply, append), but its
//! Postgres store keeps serde-JSON events and owns the append transaction.
//! Our events are protobuf envelopes shared with every consumer, and the
//! append transaction must also write the outbox, unique-value claims and
//! idempotency records, atomically with the events. So the loop is kept, in
//! a few hundred lines that own that transaction:
//!
//! - optimistic concurrency is the store's primary key on
//!   `(aggregate_type, aggregate_id, sequence)`: a writer appends
//!   `expected + 1 ..`, and of two writers with the same expectation exactly
//!   one commits;
//! - crash-safe publication is a transactional outbox: the event rows and
//!   their outbox rows commit together, and the relay deletes an outbox row
//!   only after Kafka acknowledged it (see [`relay`] for why not Kafka
//!   transactions);
//! - uniqueness across aggregates (an e-mail, a token hash, a hardware
//!   fingerprint) is a claim row written in the same transaction.
//!
//! Edge telemetry does not go through aggregates at all: [`telemetry`]
//! validates each command on its own and publishes straight to Kafka.

pub mod aggregate;
pub mod aggregates;
pub mod bus;
pub mod error;
pub mod observability;
pub mod relay;
pub mod secrets;
pub mod store;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod validate;

pub use aggregate::{Aggregate, CommandContext, Decision, HandleEnv};
pub use bus::{CommandBus, Idempotency};
pub use error::{CommandError, ExecuteError, RefusalCode};
pub use secrets::SecretBox;
pub use store::{DatabaseSettings, EventStore};
