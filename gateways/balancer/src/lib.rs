//! The balancer: the edges' way into the platform.
//!
//! - [`control`]: the edge control server: enrolment, config seeds,
//!   heartbeats into node telemetry, commands to edges and their results.

pub mod control;
