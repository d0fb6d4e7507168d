//! The opening and closing every mutation shares, written once.
//!
//! A mutation's body returns `Result<R, Stop>`, where `R` is its result
//! union: the caller's credential and scope, an id that does not decode, a
//! missing object and the command's refusal all stop it with `?`, and
//! [`answer`] turns the stop into the union's error member (a refusal) or a
//! top-level error (a failure of the platform). So each mutation says only
//! what is its own: its command and the object it answers with.

use async_graphql::Context;
use frameworks_commands::{Aggregate, ExecuteError};

use super::errors::{AuthError, Refusal, ValidationError};
use super::{require_for_mutation, state};
use crate::auth::{Principal, Scope};
use crate::state::BridgeState;

/// Why a mutation stopped before its answer.
#[derive(Debug)]
pub enum Stop {
    /// Answered as the result union's error member.
    Refused(Refusal),
    /// Answered as a top-level error (the database, Kafka).
    Failed(async_graphql::Error),
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

impl From<AuthError> for Stop {
    fn from(refusal: AuthError) -> Self {
        Self::Refused(Refusal::Auth(refusal))
    }
}

impl From<ValidationError> for Stop {
    fn from(refusal: ValidationError) -> Self {
        Self::Refused(Refusal::Validation(refusal))
    }
}

/// A command refused stops with its refusal; the write side failing fails.
impl From<ExecuteError> for Stop {
    fn from(error: ExecuteError) -> Self {
        match Refusal::of(error) {
            Ok(refusal) => Self::Refused(refusal),
            Err(failure) => Self::Failed(failure),
        }
    }
}

impl From<async_graphql::Error> for Stop {
    fn from(failure: async_graphql::Error) -> Self {
        Self::Failed(failure)
    }
}

/// The caller of a mutation that needs `scope`, and the bridge's state.
pub fn caller<'a>(
    ctx: &Context<'a>,
    scope: Scope,
) -> Result<(&'a Principal, &'a BridgeState), Stop> {
    let principal = require_for_mutation(ctx, scope)?;
    Ok((principal, state(ctx)?))
}

/// Runs `command` on the aggregate `id` as the caller; its refusal stops
/// the mutation (a failure of the write side fails it).
pub async fn command<A: Aggregate>(
    state: &BridgeState,
    principal: &Principal,
    id: &str,
    command: &A::Command,
) -> Result<A::Outcome, Stop> {
    state
        .bus
        .execute::<A>(id, command, &principal.command_context(), None)
        .await
        .map_err(Stop::from)
}

/// Runs a mutation's `body`; a refusal it stopped with is answered as
/// `refuse(refusal)`, a failure as a top-level error.
pub async fn answer<R>(
    refuse: impl FnOnce(Refusal) -> R,
    body: impl Future<Output = Result<R, Stop>>,
) -> async_graphql::Result<R> {
    match body.await {
        Ok(answer) => Ok(answer),
        Err(Stop::Refused(refusal)) => Ok(refuse(refusal)),
        Err(Stop::Failed(failure)) => Err(failure),
    }
}
