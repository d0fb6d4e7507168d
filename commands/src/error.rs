use serde::{Deserialize, Serialize};

/// Why a command was refused. Nothing is appended when a command fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// Bad input: `field` is the path of the offending field, e.g. `input.name`.
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    /// The aggregate does not exist, or belongs to another tenant.
    #[error("{resource} {id} not found")]
    NotFound { resource: String, id: String },
    /// The command contradicts the aggregate's state (already exists, already revoked).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not issue this command.
    #[error("{0}")]
    Forbidden(String),
    /// Credentials did not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// The idempotency key was used before with a different request.
    #[error("idempotency key {key:?} was already used with a different request")]
    IdempotencyMismatch { key: String },
}

impl CommandError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(resource: &str, id: impl Into<String>) -> Self {
        Self::NotFound {
            resource: resource.to_owned(),
            id: id.into(),
        }
    }
}

/// A command refused, or the machinery around it failing.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Rejected(#[from] CommandError),
    #[error("event store")]
    Store(#[from] crate::store::StoreError),
    #[error("gave up after {0} attempts lost to concurrent writers")]
    Contended(u32),
    /// The first outcome of an idempotent command is stored but cannot be
    /// read back (for example, its data key left the key ring).
    #[error("the stored outcome for idempotency key {key:?} cannot be read: {reason}")]
    StoredOutcome { key: String, reason: String },
}

impl ExecuteError {
    /// The refusal, if the command itself was refused.
    pub fn rejection(&self) -> Option<&CommandError> {
        match self {
            Self::Rejected(error) => Some(error),
            _ => None,
        }
    }
}
