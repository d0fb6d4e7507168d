//! What an edge and the platform say to each other, in one crate that the
//! edge daemon, the balancer and the Mist simulator share:
//!
//! - [`proto`]: the edge control protocol
//!   (`schemas/proto/frameworks/edge/v1/control.proto`), one bidirectional
//!   gRPC stream between an edge daemon and the balancer, plus the ingress
//!   the edge forwards triggers to;
//! - [`triggers`]: MistServer's trigger requests as typed values, which the
//!   edge parses from Mist and the balancer's ingress parses again from what
//!   the edge forwards;
//! - [`keys`]: how a stream key is found in a push URL and the one form
//!   (its SHA-256) in which keys travel and are looked up.
//!
//! It holds no behaviour of either side: the daemon lives in
//! `frameworks-edge`, the balancer in `frameworks-balancer`.

#[allow(
    clippy::all,
    missing_debug_implementations,
    missing_docs,
    unused_qualifications
)]
pub mod proto {
    tonic::include_proto!("frameworks.edge.v1");
}

pub mod keys;
pub mod triggers;
