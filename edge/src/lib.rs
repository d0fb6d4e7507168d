//! The edge daemon (`frameworks edge`): it runs beside MistServer on each
//! edge node.
//!
//! - [`triggers`]: Mist's trigger requests, parsed into typed values;
//! - [`mist`]: a client for Mist's HTTP API (`/api2`, with its MD5
//!   challenge login and a timeout on every call).

pub mod mist;
pub mod triggers;
