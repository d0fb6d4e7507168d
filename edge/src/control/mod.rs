//! The edge control protocol (`schemas/proto/frameworks/edge/v1/control.proto`):
//! one bidirectional gRPC stream between an edge daemon and the balancer.

#[allow(
    clippy::all,
    missing_debug_implementations,
    missing_docs,
    unused_qualifications
)]
pub mod proto {
    tonic::include_proto!("frameworks.edge.v1");
}

pub mod client;
pub mod resolver;
