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

/// How a refusal reads at every edge of the platform. Each kind of
/// [`CommandError`] maps here, once, to the code GraphQL and REST callers
/// see, the HTTP status of a REST answer and the gRPC status of an edge's
/// call; the gateways translate through [`CommandError::code`] and never
/// on their own.
///
/// | refusal             | code                     | HTTP | gRPC                |
/// |---------------------|--------------------------|------|---------------------|
/// | Validation          | `VALIDATION_FAILED`      | 400  | INVALID_ARGUMENT    |
/// | NotFound            | `NOT_FOUND`              | 404  | NOT_FOUND           |
/// | Conflict            | `CONFLICT`               | 409  | FAILED_PRECONDITION |
/// | Forbidden           | `FORBIDDEN`              | 403  | PERMISSION_DENIED   |
/// | Unauthenticated     | `UNAUTHORIZED`           | 401  | UNAUTHENTICATED     |
/// | IdempotencyMismatch | `IDEMPOTENCY_KEY_REUSED` | 422  | FAILED_PRECONDITION |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalCode {
    /// `extensions.code` of a GraphQL error, `code` of a result-union
    /// member and of a REST error body.
    pub code: &'static str,
    /// The HTTP status of a REST answer.
    pub http_status: u16,
    /// The gRPC status code, as `google.rpc.Code` numbers it.
    pub grpc_code: i32,
}

/// `google.rpc.Code` numbers (tonic's `Code::from_i32` reads them).
pub mod grpc {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const UNAUTHENTICATED: i32 = 16;
}

impl CommandError {
    /// This refusal's row of the table ([`RefusalCode`]).
    pub fn code(&self) -> RefusalCode {
        let (code, http_status, grpc_code) = match self {
            Self::Validation { .. } => ("VALIDATION_FAILED", 400, grpc::INVALID_ARGUMENT),
            Self::NotFound { .. } => ("NOT_FOUND", 404, grpc::NOT_FOUND),
            Self::Conflict(_) => ("CONFLICT", 409, grpc::FAILED_PRECONDITION),
            Self::Forbidden(_) => ("FORBIDDEN", 403, grpc::PERMISSION_DENIED),
            Self::Unauthenticated(_) => ("UNAUTHORIZED", 401, grpc::UNAUTHENTICATED),
            Self::IdempotencyMismatch { .. } => {
                ("IDEMPOTENCY_KEY_REUSED", 422, grpc::FAILED_PRECONDITION)
            }
        };
        RefusalCode {
            code,
            http_status,
            grpc_code,
        }
    }

    /// The field a validation refusal names (`input.name`), if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Validation { field, .. } => Some(field),
            _ => None,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal kind has its own row, and no two kinds share a code.
    #[test]
    fn every_refusal_maps_once() {
        let all = [
            CommandError::invalid("input.name", "too long"),
            CommandError::not_found("stream", "s1"),
            CommandError::Conflict("already revoked".into()),
            CommandError::Forbidden("operators only".into()),
            CommandError::Unauthenticated("bad token".into()),
            CommandError::IdempotencyMismatch { key: "k".into() },
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(|e| e.code().code).collect();
        assert_eq!(codes.len(), all.len());
        for error in &all {
            let RefusalCode {
                http_status,
                grpc_code,
                ..
            } = error.code();
            assert!(
                (400..500).contains(&http_status),
                "{error:?} is a refusal, not a failure"
            );
            assert!(grpc_code > 0, "{error:?} is not OK");
        }
        assert_eq!(all[0].field(), Some("input.name"));
    }
}
