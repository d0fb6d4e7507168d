//! The edge daemon (`frameworks edge`): it runs beside MistServer on each
//! edge node.
//!
//! Mist's triggers as typed values and the control protocol it speaks to
//! the balancer are `frameworks_edge_protocol`'s.
//!
//! - [`server`]: the endpoint Mist posts triggers to;
//! - [`answers`]: answers to the blocking triggers, from what the balancer
//!   pushed, within a budget;
//! - [`playback`]: viewers' playback tokens (ES256 JWTs) checked against a
//!   stream's JWT policy;
//! - [`config_sync`]: the trigger set registered in Mist, drift repaired;
//! - [`journal`]: the durable log of accounting triggers, kept until the
//!   balancer acknowledges them;
//! - [`forwarder`]: triggers to the balancer's ingress, journaled ones
//!   until acknowledged;
//! - [`host`]: the node as the control stream sees it (load, and Mist as its hands);
//! - [`machine`]: the node's own load (/proc, statvfs) for heartbeats;
//! - [`mist`]: a client for Mist's HTTP API (`/api2`, with its MD5
//!   challenge login and a timeout on every call).

pub mod answers;
pub mod config_sync;
pub mod control;
pub mod forwarder;
pub mod host;
pub mod journal;
pub mod machine;
pub mod mist;
pub mod observability;
pub mod playback;
pub mod server;
pub mod sessions;
