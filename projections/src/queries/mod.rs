//! Queries of the read models, for the gateways: the one place their
//! tables' SQL is written outside the projectors that fill them.
//!
//! - [`clusters`]: which clusters a tenant may use.
//!
//! The bridge and the balancer still hold other read-model SQL of their
//! own; it moves here domain by domain (see the structure issue's notes).

pub mod clusters;
