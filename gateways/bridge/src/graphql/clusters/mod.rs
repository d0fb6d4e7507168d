//! Clusters and their edge nodes, and enrolment tokens for new nodes.
//! A tenant sees the platform's shared clusters and its own; it sees the
//! nodes of its own clusters only. Node load and health come from the
//! live state in Redis.

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Json, Object, SimpleObject, Union,
};
use chrono::DateTime;
use frameworks_commands::aggregates::infrastructure::{
    Cluster as ClusterAggregate, ClusterCommand, ClusterOutcome, Node as NodeAggregate,
    NodeCommand, NodeMode,
};
use frameworks_commands::aggregates::tenant::{TIERS, set_preferred_cluster};
use frameworks_events::AggregateType;
use frameworks_projections::queries::accounts;
pub(in crate::graphql) use frameworks_projections::queries::clusters::Visible;
use frameworks_projections::queries::clusters::{
    self as read_model, ClusterRow, NodeRow, subscribed_among, usable,
};
use uuid::Uuid;

use super::connection::{ConnectionInput, Paged, Position, connection, page_of, read_failed};
use super::errors::{
    AuthError, NotFoundError, Refusal, ValidationError, bad_input, forbidden_resource, internal,
    null_with, refusal_members,
};
use super::ids;
use super::mutation::{self, Stop, answer, caller, command};
use super::node_load::{NodeLoad, cluster_health, cluster_loads, node_loads};
use super::scalars::Time;
use super::{require, state};
use crate::auth::{Principal, Scope};
use crate::state::BridgeState;

pub(in crate::graphql) const CLUSTER_TYPE: &str = "Cluster";
pub(in crate::graphql) const NODE_TYPE: &str = "InfrastructureNode";
/// Most nodes listed at once; a filtered list is paged in memory.
const NODE_SCAN_LIMIT: i64 = 10_000;

mod inputs;
mod mutations;
mod queries;
mod read;
mod types;

pub use inputs::*;
pub use mutations::*;
pub use queries::*;
pub(in crate::graphql) use read::*;
pub use types::*;
