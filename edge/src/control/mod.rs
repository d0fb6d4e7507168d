//! The edge's side of the control stream to the balancer (the protocol
//! itself is `frameworks_edge_protocol::proto`).

pub mod client;
pub mod resolver;
