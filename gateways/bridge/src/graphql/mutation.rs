//! The opening and closing every mutation shares, written once.
//!
//! A mutation's body returns `Result<R, Stop>`, where `R` is its result
//! union: the caller's credential and scope, an id that does not decode, a
//! missing object and the command's refusal all stop it with `?`, and
//! [`answer`] turns the stop into the union's error member (a refusal) or a
//! top-level error (a failure of the platform). So each mutation says only
//! what is its own: its command and the object it answers with.
//!
//! Two promises hold for every mutation:
//!
//! - **Accepted means accepted.** Once a command is appended it is the
//!   platform's, whatever happens to the read-back after it: a read model
//!   late past the read-your-writes timeout, or a database that went away,
//!   is answered with [`accepted_not_visible`] (`ACCEPTED_NOT_VISIBLE`,
//!   naming the object to read again), and a delete with
//!   `DeleteSuccess { pending: true }`, never as a failure.
//! - **A key makes a retry safe.** With an `Idempotency-Key` header, the
//!   n-th command a request issues is keyed `<key>#<n>`, and the n-th new
//!   id it makes is derived from `<key>#id<n>` ([`RequestKey`]). Root
//!   mutation fields run one after another and each resolver issues its
//!   commands in order, so the same request sent again issues the same keys
//!   and ids: the command bus answers each with its first outcome instead of
//!   running it twice, and a creation addresses the object the first attempt
//!   made.

use std::sync::atomic::{AtomicU32, Ordering};

use async_graphql::{Context, ErrorExtensions};
use frameworks_commands::{Aggregate, CommandBus, ExecuteError, Idempotency};
use tracing::warn;
use uuid::Uuid;

use super::errors::{AuthError, Refusal, ValidationError};
use super::{require_for_mutation, state};
use crate::auth::{Principal, Scope};
use crate::state::BridgeState;

/// The `extensions.code` of a mutation whose command was accepted but whose
/// effect could not be read back in time.
pub const ACCEPTED_NOT_VISIBLE: &str = "ACCEPTED_NOT_VISIBLE";

/// The longest `Idempotency-Key` accepted (the original platform's bound).
pub const MAX_KEY_LEN: usize = 255;
/// The shortest `Idempotency-Key` accepted: shorter keys collide.
pub const MIN_KEY_LEN: usize = 8;

/// Why an `Idempotency-Key` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Idempotency-Key header must be {MIN_KEY_LEN} to {MAX_KEY_LEN} characters")]
    Length,
    #[error("the Idempotency-Key header must be visible ASCII (no spaces or control characters)")]
    Characters,
}

/// A request's `Idempotency-Key`, and how many commands and new ids it has
/// keyed so far.
#[derive(Debug)]
pub struct RequestKey {
    key: String,
    commands: AtomicU32,
    ids: AtomicU32,
}

impl RequestKey {
    /// The key a caller sent, checked.
    pub fn parse(header: &[u8]) -> Result<Self, KeyError> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&header.len()) {
            return Err(KeyError::Length);
        }
        if !header.iter().all(u8::is_ascii_graphic) {
            return Err(KeyError::Characters);
        }
        Ok(Self {
            key: String::from_utf8_lossy(header).into_owned(),
            commands: AtomicU32::new(0),
            ids: AtomicU32::new(0),
        })
    }

    /// The key of the next command the request issues.
    fn next_command(&self) -> Idempotency {
        let n = self.commands.fetch_add(1, Ordering::SeqCst);
        Idempotency {
            key: format!("{}#{n}", self.key),
        }
    }

    /// The key the next new id the request makes is derived from.
    fn next_id(&self) -> Idempotency {
        let n = self.ids.fetch_add(1, Ordering::SeqCst);
        Idempotency {
            key: format!("{}#id{n}", self.key),
        }
    }
}

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

/// Runs `command` on the aggregate `id` as the caller, keyed when the
/// request carries an `Idempotency-Key`; its refusal stops the mutation (a
/// failure of the write side fails it).
pub async fn command<A: Aggregate>(
    ctx: &Context<'_>,
    state: &BridgeState,
    principal: &Principal,
    id: &str,
    command: &A::Command,
) -> Result<A::Outcome, Stop> {
    state
        .bus
        .execute::<A>(
            id,
            command,
            &principal.command_context(),
            next_key(ctx).as_ref(),
        )
        .await
        .map_err(Stop::from)
}

/// The key of the next command the request issues, if it has an
/// `Idempotency-Key`: for the few mutations that run their command
/// otherwise than through [`command`].
pub fn next_key(ctx: &Context<'_>) -> Option<Idempotency> {
    ctx.data_opt::<RequestKey>().map(RequestKey::next_command)
}

/// The id of an object the mutation is about to create: derived from the
/// request's `Idempotency-Key` when it has one, so that the same request
/// sent again addresses the object the first attempt created.
pub fn new_id(ctx: &Context<'_>, principal: &Principal) -> Uuid {
    let key = ctx.data_opt::<RequestKey>().map(RequestKey::next_id);
    CommandBus::id_for_new(&principal.command_context(), key.as_ref())
}

/// Turns a failure to read back an accepted command's effect into
/// [`ACCEPTED_NOT_VISIBLE`], naming the object to read again: the command
/// stands, so the mutation did not fail.
pub fn accepted_not_visible(
    resource_type: &'static str,
    resource_id: &str,
    cause: &dyn std::fmt::Debug,
) -> async_graphql::Error {
    not_visible(resource_type, resource_id, cause);
    let resource_id = resource_id.to_owned();
    async_graphql::Error::new(format!(
        "accepted: {resource_type} {resource_id} is not visible yet; read it again, or repeat \
         the request with the same Idempotency-Key for its answer"
    ))
    .extend_with(move |_, e| {
        e.set("code", ACCEPTED_NOT_VISIBLE);
        e.set("resourceType", resource_type);
        e.set("resourceId", resource_id.as_str());
    })
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

/// What a read-back of an accepted command's effect found: the object, or
/// [`accepted_not_visible`] when it is not in the read model yet or the
/// read failed.
pub fn read_back<T, E: std::fmt::Debug>(
    resource_type: &'static str,
    resource_id: &str,
    read: Result<Option<T>, E>,
) -> async_graphql::Result<T> {
    match read {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(accepted_not_visible(
            resource_type,
            resource_id,
            &"not in the read model",
        )),
        Err(error) => Err(accepted_not_visible(resource_type, resource_id, &error)),
    }
}

/// Whether an accepted delete is still pending after waiting for the read
/// model (`waited`): `DeleteSuccess.pending`, which is no failure.
pub fn pending<E: std::fmt::Debug>(
    resource_type: &'static str,
    resource_id: impl std::fmt::Display,
    waited: Result<(), E>,
) -> bool {
    match waited {
        Ok(()) => false,
        Err(cause) => {
            not_visible(resource_type, &resource_id.to_string(), &cause);
            true
        }
    }
}

/// Logs and counts an accepted command whose effect is not readable yet.
pub fn not_visible(resource_type: &'static str, resource_id: &str, cause: &dyn std::fmt::Debug) {
    warn!(
        ?cause,
        resource_type, resource_id, "an accepted command's effect is not readable yet"
    );
    metrics::counter!("frameworks_bridge_accepted_not_visible_total", "resource" => resource_type)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert_eq!(RequestKey::parse(b"short").unwrap_err(), KeyError::Length);
        assert_eq!(
            RequestKey::parse(&[b'k'; MAX_KEY_LEN + 1]).unwrap_err(),
            KeyError::Length
        );
        assert_eq!(
            RequestKey::parse(b"has a space").unwrap_err(),
            KeyError::Characters
        );
        assert_eq!(
            RequestKey::parse("caf\u{e9}-order-1".as_bytes()).unwrap_err(),
            KeyError::Characters
        );
        assert!(RequestKey::parse(&[b'k'; MAX_KEY_LEN]).is_ok());
    }

    #[test]
    fn a_request_keys_its_commands_and_ids_in_order() {
        let first = RequestKey::parse(b"order-0042").unwrap();
        let again = RequestKey::parse(b"order-0042").unwrap();
        let keys = |k: &RequestKey| [k.next_command().key, k.next_id().key, k.next_command().key];
        assert_eq!(
            keys(&first),
            ["order-0042#0", "order-0042#id0", "order-0042#1"]
        );
        assert_eq!(
            keys(&first),
            ["order-0042#2", "order-0042#id1", "order-0042#3"]
        );
        assert_eq!(
            keys(&again)[..],
            ["order-0042#0", "order-0042#id0", "order-0042#1"]
        );
    }
}
