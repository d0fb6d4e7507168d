//! Given/when/then tests for aggregates, without a database.
//!
//! An aggregate's rules are a pure function of its history and a command:
//! *given* the events it already has, *when* a command arrives, *then* it
//! either decides on new events (and an outcome) or refuses with a typed
//! [`CommandError`]. The kit rebuilds the state as the [`CommandBus`] does
//! (events stamped with sequence, tenant and causation by
//! [`build_events`]) and calls the handler directly. What needs PostgreSQL
//! (optimistic concurrency, claims across aggregates, idempotency) is tested
//! against the real store in `tests/write_side.rs`.
//!
//! ```ignore
//! AggregateTest::<Stream>::new(ctx)
//!     .given_commands([create_push("cam")])
//!     .when(&StreamCommand::Delete)
//!     .then_events(|events| assert!(matches!(events, [EventPayload::StreamDeleted(_)])));
//! ```
//!
//! [`CommandBus`]: crate::CommandBus

use frameworks_events::EventPayload;

use crate::aggregate::{Aggregate, CommandContext, Decision, HandleEnv};
use crate::bus::build_events;
use crate::error::CommandError;
use crate::secrets::SecretBox;

/// One aggregate under test: its id, the state its history built, and who
/// issues the next command.
pub(crate) struct AggregateTest<A: Aggregate> {
    aggregate_id: String,
    state: A,
    version: u64,
    ctx: CommandContext,
    secrets: SecretBox,
}

impl<A: Aggregate> AggregateTest<A> {
    /// An aggregate with no history (it does not exist yet), a fresh
    /// data-key ring, and commands issued by `ctx`.
    pub fn new(ctx: CommandContext) -> Self {
        Self {
            aggregate_id: uuid::Uuid::now_v7().to_string(),
            state: A::default(),
            version: 0,
            ctx,
            secrets: SecretBox::generate("test").0,
        }
    }

    /// Given these events already stored, in order.
    pub fn given(mut self, payloads: impl IntoIterator<Item = EventPayload>) -> Self {
        let owner = self.state.owner(&self.aggregate_id).or(self.ctx.tenant_id);
        let events = build_events(
            &self.ctx,
            owner,
            &self.aggregate_id,
            self.version,
            payloads.into_iter().collect(),
        );
        for event in &events {
            self.state.apply(event);
        }
        self.version += events.len() as u64;
        self
    }

    /// Given the events these commands decided, one after the other (each
    /// must be accepted): a history written in the aggregate's own terms.
    pub fn given_commands(mut self, commands: impl IntoIterator<Item = A::Command>) -> Self {
        for command in commands {
            let decision = self
                .decide(&command)
                .unwrap_or_else(|refused| panic!("a given command was refused: {refused}"));
            self = self.given(decision.events);
        }
        self
    }

    /// Commands from here on are issued by `ctx` (another tenant, an operator).
    pub fn acting_as(mut self, ctx: CommandContext) -> Self {
        self.ctx = ctx;
        self
    }

    /// The aggregate's id (a fresh UUID).
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// The data-key ring handlers seal secrets with.
    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    /// When this command arrives.
    pub fn when(&self, command: &A::Command) -> Then<A::Outcome> {
        Then(self.decide(command))
    }

    fn decide(&self, command: &A::Command) -> Result<Decision<A::Outcome>, CommandError> {
        let env = HandleEnv {
            ctx: &self.ctx,
            aggregate_id: &self.aggregate_id,
            version: self.version,
            secrets: &self.secrets,
        };
        self.state.handle(command, &env)
    }
}

/// What the handler decided.
pub(crate) struct Then<O>(Result<Decision<O>, CommandError>);

impl<O> Then<O> {
    /// Then the command is accepted; `check` sees the events it decided.
    /// Answers the outcome.
    pub fn then_events(self, check: impl FnOnce(&[EventPayload])) -> O {
        match self.0 {
            Ok(decision) => {
                check(&decision.events);
                decision.outcome
            }
            Err(refused) => panic!("expected events, the command was refused: {refused:?}"),
        }
    }

    /// Then the command is refused; answers the refusal.
    pub fn then_refused(self) -> CommandError {
        match self.0 {
            Ok(decision) => panic!(
                "expected a refusal, the command decided {:?}",
                decision.events
            ),
            Err(refused) => refused,
        }
    }

    /// Then the command is refused as invalid input at `field` (a GraphQL
    /// input path such as `input.name`).
    pub fn then_invalid(self, field: &str) {
        match self.then_refused() {
            CommandError::Validation { field: at, .. } if at == field => {}
            other => panic!("expected a validation error at {field}, got {other:?}"),
        }
    }
}
