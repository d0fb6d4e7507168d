//! The balancer: the edges' way into the platform.
//!
//! - [`control`]: the edge control server: enrolment, config seeds,
//!   heartbeats into node telemetry, commands and route changes to edges;
//! - [`ingress`]: edges' triggers into Kafka as raw and typed telemetry,
//!   and the answers their blocking triggers need;
//! - [`directory`]: stream keys, playback ids and owners, from the
//!   projections, cached and invalidated by events;
//! - [`geo`]: where viewers and edges are (GeoIP, CDN headers, great-circle distance);
//! - [`routing`]: the scoring of edges for a viewer, and provisional charges;
//! - [`fleet`]: the routing snapshot, and the state instances share in Redis;
//! - [`placement`]: the routing decision for a playback id or a stream
//!   key, shared by the HTTP endpoints and the GraphQL bridge;
//! - [`play`]: the play, redirect and ingest endpoints;
//! - [`leader`]: the lease that picks the instance running singleton jobs.

pub mod control;
pub mod directory;
pub mod fleet;
pub mod geo;
pub mod ingress;
pub mod leader;
pub mod observability;
pub mod placement;
pub mod play;
pub mod routing;
