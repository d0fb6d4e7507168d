//! Queries of the read models, for the gateways: the one place outside the
//! projectors that fill them where their tables' SQL, and ClickHouse's, is
//! written. Each returns domain rows; the gateways put them into their own
//! shapes (GraphQL types, gRPC messages, routing state).
//!
//! - [`page`]: keyset paging and cursors, shared by every list.
//! - [`accounts`]: tenants, sign-in, API tokens, playback signing keys.
//! - [`streams`]: streams and their keys.
//! - [`clusters`]: clusters, nodes, services, enrolment tokens, and which
//!   clusters a tenant may use.
//! - [`marketplace`]: offers, subscriptions, invites.
//! - [`node_metrics`]: a node's load over time (ClickHouse).
//!
//! The live state in Redis has its own typed reader, [`crate::live`].

pub mod accounts;
pub mod clusters;
pub mod marketplace;
pub mod node_metrics;
pub mod page;
pub mod streams;
