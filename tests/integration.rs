//! The integration tests: one test binary, one module per subsystem.
//!
//! They run against the real services `compose/infra up` starts on
//! 127.0.0.1 (Kafka, PostgreSQL, Redis, ClickHouse) and, where a module says
//! so, a real MistServer built by `compose/mist`. One binary instead of one
//! per file: every file used to link the whole platform again. Run one
//! module with `cargo test --test integration replay::`.

#![allow(clippy::unwrap_used)]

mod support;

mod accepted_writes;
mod analytics;
mod balancer;
mod cli;
mod dead_letters;
mod edge_accounting;
mod edge_control;
mod edge_endpoint;
mod edge_mist_api;
mod edge_real_mist;
mod edge_triggers;
mod event_log;
mod graphql_conformance;
mod infrastructure;
mod live_state;
mod outbox_relay;
mod pipeline;
mod playback_tokens;
mod projection;
mod registration;
mod replay;
mod telemetry;
mod topic_catalogue;
mod write_side;
