//! Streams and their keys: `streamsConnection`, `stream`, `validateStreamKey`,
//! `streamKeysConnection` read the control-plane read model; the mutations
//! are stream commands that answer from the read model once it holds them.

use async_graphql::{
    Context, Enum, ErrorExtensions, ID, InputObject, Json, Object, SimpleObject, Union,
};
use chrono::{DateTime, Utc};
use frameworks_commands::aggregates::stream::{
    Ingest, Stream as StreamAggregate, StreamCommand, StreamOutcome, key_context,
    pull_source_context,
};
use frameworks_commands::secrets::{SecretString, sha256};
use frameworks_commands::validate;
use frameworks_events::AggregateType;
use frameworks_events::proto::v1::common::SealedSecret;
use prost::Message;
use std::time::Duration;

use frameworks_projections::queries::streams::{self as read_model, StreamKeyRow, StreamRow};
use sqlx::PgPool;
use uuid::Uuid;

use super::connection::{ConnectionInput, Paged, connection, page_of, read_failed};
use super::errors::{
    AuthError, DeleteSuccess, NotFoundError, Refusal, ValidationError, deny_field, internal,
};
use super::ids;
use super::mutation::{self, Stop, answer, caller};
use super::scalars::Time;
use super::{principal, require, state};
use crate::auth::{Principal, Scope};
use crate::cache::TtlCache;
use crate::state::BridgeState;

const STREAM_TYPE: &str = "Stream";

mod inputs;
mod mutations;
mod queries;
mod read;
mod types;

pub use inputs::*;
pub use mutations::*;
pub use queries::*;
pub use read::StreamCache;
pub(in crate::graphql) use read::*;
pub use types::*;
