//! The aggregate contract: rebuild state from events, decide on commands.

use chrono::{DateTime, Utc};
use frameworks_events::{AggregateType, Event, EventPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::CommandError;
use crate::secrets::SecretBox;
use crate::store::Claim;

/// Who issues a command, and on whose behalf.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The tenant the caller acts for; `None` for platform operators and edges.
    pub tenant_id: Option<Uuid>,
    /// True for platform operators, who may act on any tenant's aggregates.
    pub operator: bool,
    /// Audit trail: `user:<id>`, `token:<id>`, `operator:<name>`, `edge:<node>`.
    pub actor: String,
    /// Becomes the causation id of every event the command produces.
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub now: DateTime<Utc>,
}

impl CommandContext {
    pub fn for_tenant(tenant_id: Uuid, actor: impl Into<String>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            tenant_id: Some(tenant_id),
            operator: false,
            actor: actor.into(),
            command_id,
            correlation_id: command_id,
            now: Utc::now(),
        }
    }

    pub fn operator(actor: impl Into<String>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            tenant_id: None,
            operator: true,
            actor: actor.into(),
            command_id,
            correlation_id: command_id,
            now: Utc::now(),
        }
    }

    /// A caller with neither a tenant nor operator rights, whose credential
    /// travels in the command itself (an edge's enrolment token).
    pub fn anonymous(actor: impl Into<String>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            tenant_id: None,
            operator: false,
            actor: actor.into(),
            command_id,
            correlation_id: command_id,
            now: Utc::now(),
        }
    }

    /// Refuses access to an aggregate owned by `owner` unless the caller acts
    /// for that tenant or is an operator. Another tenant's aggregate reads as
    /// missing, so its existence does not leak.
    pub fn ensure_owner(
        &self,
        owner: Option<Uuid>,
        resource: &str,
        id: &str,
    ) -> Result<(), CommandError> {
        if self.operator || (owner.is_some() && owner == self.tenant_id) {
            Ok(())
        } else {
            Err(CommandError::not_found(resource, id))
        }
    }

    pub fn require_tenant(&self) -> Result<Uuid, CommandError> {
        self.tenant_id
            .ok_or_else(|| CommandError::Forbidden("this command needs a tenant context".into()))
    }

    pub fn require_operator(&self) -> Result<(), CommandError> {
        if self.operator {
            Ok(())
        } else {
            Err(CommandError::Forbidden(
                "only platform operators may do this".into(),
            ))
        }
    }
}

/// What a handler sees besides its own state.
#[derive(Debug)]
pub struct HandleEnv<'a> {
    pub ctx: &'a CommandContext,
    pub aggregate_id: &'a str,
    /// Number of events the aggregate has (0: it does not exist yet).
    pub version: u64,
    pub secrets: &'a SecretBox,
}

/// A handler's verdict: the events to append and what to tell the caller.
#[derive(Debug)]
pub struct Decision<O> {
    pub events: Vec<EventPayload>,
    /// Unique values to claim for this aggregate in the same transaction.
    pub claims: Vec<Claim>,
    /// Claims this aggregate gives up.
    pub releases: Vec<Claim>,
    pub outcome: O,
}

impl<O> Decision<O> {
    pub fn new(outcome: O) -> Self {
        Self {
            events: Vec::new(),
            claims: Vec::new(),
            releases: Vec::new(),
            outcome,
        }
    }

    pub fn event(mut self, payload: impl Into<EventPayload>) -> Self {
        self.events.push(payload.into());
        self
    }

    pub fn claim(mut self, claim: Claim) -> Self {
        self.claims.push(claim);
        self
    }

    pub fn release(mut self, claim: Claim) -> Self {
        self.releases.push(claim);
        self
    }
}

/// A consistency boundary: state rebuilt from its own events, and the rules
/// deciding which events a command produces.
pub trait Aggregate: Default + Send + Sync + 'static {
    const TYPE: AggregateType;
    /// Name used in errors, e.g. "stream".
    const RESOURCE: &'static str;
    /// Cloned on a retry after a concurrent write; serialized to fingerprint
    /// idempotent requests (fields marked `#[serde(skip)]` are left out).
    type Command: Clone + Serialize + Send + Sync;
    /// What the caller gets back; stored (sealed) for idempotent replays.
    type Outcome: Serialize + DeserializeOwned + Send;

    /// Evolves the state by one stored event. Must not fail: events are facts.
    fn apply(&mut self, event: &Event);

    /// The tenant owning the aggregate, stamped on its events; `None` while it
    /// does not exist (the caller's tenant is used) or for platform-owned ones.
    fn owner(&self, aggregate_id: &str) -> Option<Uuid>;

    fn handle(
        &self,
        command: &Self::Command,
        env: &HandleEnv<'_>,
    ) -> Result<Decision<Self::Outcome>, CommandError>;
}
