//! The cluster marketplace: how clusters are offered to other tenants, the
//! subscriptions that let a tenant use another's cluster, and invites.
//! The rules live in `frameworks_commands::aggregates::marketplace`; this
//! module speaks the client's operations.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject, Union};
use chrono::{DateTime, Utc};
use frameworks_commands::aggregates::infrastructure::{
    Cluster as ClusterAggregate, ClusterCommand, ClusterOutcome,
};
use frameworks_commands::aggregates::marketplace::{
    AccessLevel, DEFAULT_INVITE_DAYS, MarketplaceCommand, PricingModel, ResourceLimits, Visibility,
    cluster_of_invite_token,
};
use frameworks_commands::{CommandError, ExecuteError};
use frameworks_events::AggregateType;
use frameworks_projections::queries::accounts;
use frameworks_projections::queries::marketplace::{
    self as read_model, InviteRow, Invites, OfferRow, SubscriptionRow, Subscriptions,
};
use uuid::Uuid;

use super::clusters::{
    CLUSTER_TYPE, Cluster, ClusterPricingModel, ClusterVisibility, ClustersConnection, Visible,
    cluster_by_id, cluster_uuid, clusters_page,
};
use super::connection::{ConnectionInput, Paged, connection, page_of, read_failed};
use super::errors::{
    AuthError, DeleteSuccess, NotFoundError, Refusal, ValidationError, bad_input, internal,
    refusal_members, rejected,
};
use super::ids;
use super::mutation::{self, Stop, answer, caller, command};
use super::node_load::{NodeLoad, cluster_loads};
use super::scalars::Time;
use super::{require, state};
use crate::auth::{Principal, Scope};
use crate::state::BridgeState;

const SUBSCRIPTION_TYPE: &str = "ClusterSubscription";
const INVITE_TYPE: &str = "ClusterInvite";

mod inputs;
mod mutations;
mod queries;
mod read;
mod types;

pub use inputs::*;
pub use mutations::*;
pub use queries::*;
use read::*;
pub use types::*;
