//! Executing commands: load, decide, append; retry when a concurrent writer
//! won; replay the first outcome of an idempotent repeat.

use frameworks_events::{Event, EventPayload};
use metrics::counter;
use tracing::{debug, instrument};

use crate::aggregate::{Aggregate, CommandContext, Decision, HandleEnv};
use crate::error::{CommandError, ExecuteError};
use crate::secrets::{SecretBox, sha256};
use crate::store::{AppendError, Batch, EventStore, IdempotencyRecord, StoreError};

/// Attempts before a command contended by concurrent writers gives up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// The idempotency key a caller sent with a command.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct CommandBus {
    store: EventStore,
    secrets: SecretBox,
    max_attempts: u32,
}

impl CommandBus {
    pub fn new(store: EventStore, secrets: SecretBox) -> Self {
        Self {
            store,
            secrets,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The id for an aggregate a command is about to create. With an
    /// idempotency key it is derived from the key, so a retried creation
    /// addresses the same aggregate and replays instead of creating a twin.
    pub fn id_for_new(ctx: &CommandContext, idempotency: Option<&Idempotency>) -> uuid::Uuid {
        match idempotency {
            Some(i) => uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("frameworks/{}/{}", idempotency_scope(ctx), i.key).as_bytes(),
            ),
            None => uuid::Uuid::now_v7(),
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    /// Rebuilds an aggregate; returns it with its version (event count).
    pub async fn load<A: Aggregate>(&self, aggregate_id: &str) -> Result<(A, u64), StoreError> {
        let events = self.store.load(A::TYPE, aggregate_id).await?;
        let mut aggregate = A::default();
        for event in &events {
            aggregate.apply(event);
        }
        Ok((aggregate, events.len() as u64))
    }

    /// Runs `command` against aggregate `aggregate_id`.
    #[instrument(skip_all, fields(aggregate = A::RESOURCE, id = aggregate_id, actor = %ctx.actor))]
    pub async fn execute<A: Aggregate>(
        &self,
        aggregate_id: &str,
        command: &A::Command,
        ctx: &CommandContext,
        idempotency: Option<&Idempotency>,
    ) -> Result<A::Outcome, ExecuteError> {
        let result = self
            .execute_inner::<A>(aggregate_id, command, ctx, idempotency)
            .await;
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(ExecuteError::Rejected(_)) => "rejected",
            Err(_) => "failed",
        };
        counter!("frameworks_commands_total", "aggregate" => A::RESOURCE, "outcome" => outcome)
            .increment(1);
        result
    }

    async fn execute_inner<A: Aggregate>(
        &self,
        aggregate_id: &str,
        command: &A::Command,
        ctx: &CommandContext,
        idempotency: Option<&Idempotency>,
    ) -> Result<A::Outcome, ExecuteError> {
        let request =
            idempotency.map(|i| self.idempotency_request::<A>(aggregate_id, command, ctx, i));
        if let Some(outcome) = self.replay_keyed::<A>(request.as_ref()).await? {
            return Ok(outcome);
        }
        for attempt in 1..=self.max_attempts {
            let (aggregate, version) = self.load::<A>(aggregate_id).await?;
            let env = HandleEnv {
                ctx,
                aggregate_id,
                version,
                secrets: &self.secrets,
            };
            let decision = match aggregate.handle(command, &env) {
                Ok(decision) => decision,
                Err(rejection) => {
                    // A twin of this keyed request may have committed since the first
                    // look: its outcome, not the refusal its events now cause, is the answer.
                    if let Some(outcome) = self.replay_keyed::<A>(request.as_ref()).await? {
                        return Ok(outcome);
                    }
                    return Err(rejection.into());
                }
            };
            if decision.events.is_empty() {
                return Ok(decision.outcome);
            }
            let (batch, outcome) = decided(ctx, &aggregate, aggregate_id, version, decision);
            let record = request.as_ref().map(|r| self.seal_outcome(r, &outcome));
            match self
                .store
                .append(std::slice::from_ref(&batch), record.as_ref())
                .await
            {
                Ok(()) => return Ok(outcome),
                Err(AppendError::Conflict { .. }) => {
                    counter!("frameworks_command_conflicts_total", "aggregate" => A::RESOURCE)
                        .increment(1);
                    // The winner may be a twin of this keyed request: answer with its outcome.
                    if let Some(outcome) = self.replay_keyed::<A>(request.as_ref()).await? {
                        return Ok(outcome);
                    }
                    debug!(attempt, "lost a concurrent write; retrying");
                }
                Err(AppendError::ClaimTaken { kind }) => {
                    return Err(CommandError::Conflict(format!(
                        "{} is already in use",
                        claim_noun(&kind)
                    ))
                    .into());
                }
                Err(AppendError::IdempotencyRace) => {
                    // A twin request committed first; answer with its outcome.
                    if let Some(outcome) = self.replay_keyed::<A>(request.as_ref()).await? {
                        return Ok(outcome);
                    }
                }
                Err(AppendError::Store(error)) => return Err(error.into()),
            }
        }
        Err(ExecuteError::Contended(self.max_attempts))
    }

    /// Runs two commands on two aggregates as one: both are decided, then
    /// their events, claims and outbox rows commit in one transaction, or
    /// nothing does (a refusal of either, a claim taken, a crash). For
    /// state that must never exist half made: registering creates the
    /// tenant and its owner together.
    #[instrument(skip_all, fields(first = A::RESOURCE, second = B::RESOURCE, actor = %ctx.actor))]
    pub async fn execute_together<A: Aggregate, B: Aggregate>(
        &self,
        first: (&str, &A::Command),
        second: (&str, &B::Command),
        ctx: &CommandContext,
    ) -> Result<(A::Outcome, B::Outcome), ExecuteError> {
        let result = self
            .execute_together_inner::<A, B>(first, second, ctx)
            .await;
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(ExecuteError::Rejected(_)) => "rejected",
            Err(_) => "failed",
        };
        for resource in [A::RESOURCE, B::RESOURCE] {
            counter!("frameworks_commands_total", "aggregate" => resource, "outcome" => outcome)
                .increment(1);
        }
        result
    }

    async fn execute_together_inner<A: Aggregate, B: Aggregate>(
        &self,
        (first_id, first): (&str, &A::Command),
        (second_id, second): (&str, &B::Command),
        ctx: &CommandContext,
    ) -> Result<(A::Outcome, B::Outcome), ExecuteError> {
        for attempt in 1..=self.max_attempts {
            let (a, a_version) = self.load::<A>(first_id).await?;
            let (b, b_version) = self.load::<B>(second_id).await?;
            let env = |aggregate_id, version| HandleEnv {
                ctx,
                aggregate_id,
                version,
                secrets: &self.secrets,
            };
            let (first_batch, first_outcome) = decided(
                ctx,
                &a,
                first_id,
                a_version,
                a.handle(first, &env(first_id, a_version))?,
            );
            let (second_batch, second_outcome) = decided(
                ctx,
                &b,
                second_id,
                b_version,
                b.handle(second, &env(second_id, b_version))?,
            );
            let batches = [first_batch, second_batch];
            match self.store.append(&batches, None).await {
                Ok(()) => return Ok((first_outcome, second_outcome)),
                Err(AppendError::Conflict { .. } | AppendError::IdempotencyRace) => {
                    for resource in [A::RESOURCE, B::RESOURCE] {
                        counter!("frameworks_command_conflicts_total", "aggregate" => resource)
                            .increment(1);
                    }
                    debug!(attempt, "lost a concurrent write; retrying both");
                }
                Err(AppendError::ClaimTaken { kind }) => {
                    return Err(CommandError::Conflict(format!(
                        "{} is already in use",
                        claim_noun(&kind)
                    ))
                    .into());
                }
                Err(AppendError::Store(error)) => return Err(error.into()),
            }
        }
        Err(ExecuteError::Contended(self.max_attempts))
    }

    fn idempotency_request<A: Aggregate>(
        &self,
        aggregate_id: &str,
        command: &A::Command,
        ctx: &CommandContext,
        idempotency: &Idempotency,
    ) -> IdempotencyRecord {
        let scope = idempotency_scope(ctx);
        let body = serde_json::to_vec(command).expect("commands serialize");
        let fingerprint = sha256(
            &[
                A::TYPE.as_str().as_bytes(),
                b"/",
                aggregate_id.as_bytes(),
                b"/",
                &body,
            ]
            .concat(),
        );
        IdempotencyRecord {
            scope,
            key: idempotency.key.clone(),
            fingerprint: fingerprint.to_vec(),
            outcome: Vec::new(),
        }
    }

    fn seal_outcome<O: serde::Serialize>(
        &self,
        request: &IdempotencyRecord,
        outcome: &O,
    ) -> IdempotencyRecord {
        let plain = serde_json::to_vec(outcome).expect("outcomes serialize");
        let sealed = self.secrets.seal(&plain, &idempotency_context(request));
        IdempotencyRecord {
            outcome: prost::Message::encode_to_vec(&sealed),
            ..request.clone()
        }
    }

    /// [`Self::replay`] for a keyed request; `None` for an unkeyed one.
    async fn replay_keyed<A: Aggregate>(
        &self,
        request: Option<&IdempotencyRecord>,
    ) -> Result<Option<A::Outcome>, ExecuteError> {
        match request {
            Some(request) => self.replay::<A>(request).await,
            None => Ok(None),
        }
    }

    /// The stored outcome for this key, or an error if the key was used for another request.
    async fn replay<A: Aggregate>(
        &self,
        request: &IdempotencyRecord,
    ) -> Result<Option<A::Outcome>, ExecuteError> {
        let Some((fingerprint, sealed)) = self
            .store
            .idempotent_outcome(&request.scope, &request.key)
            .await?
        else {
            return Ok(None);
        };
        if fingerprint != request.fingerprint {
            return Err(CommandError::IdempotencyMismatch {
                key: request.key.clone(),
            }
            .into());
        }
        let unreadable = |reason: String| ExecuteError::StoredOutcome {
            key: request.key.clone(),
            reason,
        };
        let sealed: frameworks_events::proto::v1::common::SealedSecret =
            prost::Message::decode(sealed.as_slice()).map_err(|e| unreadable(e.to_string()))?;
        let plain = self
            .secrets
            .open(&sealed, &idempotency_context(request))
            .map_err(|e| unreadable(e.to_string()))?;
        let outcome = serde_json::from_slice(&plain).map_err(|e| unreadable(e.to_string()))?;
        counter!("frameworks_command_idempotent_replays_total", "aggregate" => A::RESOURCE)
            .increment(1);
        Ok(Some(outcome))
    }
}

/// Idempotency keys are per tenant (per actor for platform operators and edges).
fn idempotency_scope(ctx: &CommandContext) -> String {
    match ctx.tenant_id {
        Some(tenant) => format!("tenant:{tenant}"),
        None => format!("actor:{}", ctx.actor),
    }
}

fn idempotency_context(request: &IdempotencyRecord) -> String {
    format!("idempotency/{}/{}", request.scope, request.key)
}

/// Turns a handler's payloads into events numbered after `version`.
pub fn build_events(
    ctx: &CommandContext,
    tenant_id: Option<uuid::Uuid>,
    aggregate_id: &str,
    version: u64,
    payloads: Vec<EventPayload>,
) -> Vec<Event> {
    payloads
        .into_iter()
        .zip(version + 1..)
        .map(|(payload, sequence)| {
            let mut event = Event::new(aggregate_id, payload)
                .with_sequence(sequence)
                .caused_by(ctx.command_id, ctx.correlation_id)
                .occurred_at(ctx.now);
            event.tenant_id = tenant_id;
            event
        })
        .collect()
}

/// A handler's decision as the batch that appends it, and its outcome.
fn decided<A: Aggregate>(
    ctx: &CommandContext,
    aggregate: &A,
    aggregate_id: &str,
    version: u64,
    decision: Decision<A::Outcome>,
) -> (Batch, A::Outcome) {
    let batch = Batch {
        aggregate_type: A::TYPE,
        aggregate_id: aggregate_id.to_owned(),
        expected_version: version,
        events: build_events(
            ctx,
            aggregate.owner(aggregate_id).or(ctx.tenant_id),
            aggregate_id,
            version,
            decision.events,
        ),
        claims: decision.claims,
        releases: decision.releases,
    };
    (batch, decision.outcome)
}

/// Words for claim kinds in user-facing messages.
fn claim_noun(kind: &str) -> &str {
    match kind {
        crate::aggregates::claims::USER_EMAIL => "this e-mail address",
        crate::aggregates::claims::NODE_FINGERPRINT => "this hardware fingerprint",
        _ => kind,
    }
}
