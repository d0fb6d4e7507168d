//! The contract's error model: mutations answer result unions whose error
//! members implement `Error { message code }`; everything else is a
//! top-level error, and every one carries `extensions.code`.

use async_graphql::{ErrorExtensions, ID, Interface, SimpleObject};
use frameworks_commands::{CommandError, ExecuteError};
use tracing::warn;

use crate::auth::Scope;

#[derive(Debug, Clone, SimpleObject)]
pub struct ValidationError {
    pub message: String,
    pub code: Option<String>,
    /// The input field at fault, as a path (`input.name`).
    pub field: Option<String>,
    /// The rule it broke, when there is a name for it.
    pub constraint: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct NotFoundError {
    pub message: String,
    pub code: Option<String>,
    pub resource_type: String,
    pub resource_id: ID,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct AuthError {
    pub message: String,
    pub code: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct RateLimitError {
    pub message: String,
    pub code: Option<String>,
    /// Seconds to wait before trying again.
    pub retry_after: Option<i32>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct DeleteSuccess {
    pub success: bool,
    pub deleted_id: ID,
    /// True when the delete was accepted but is not final yet.
    pub pending: Option<bool>,
}

/// The code of bad input everywhere (the error table's, for refused
/// commands; the same for bad arguments and values that do not coerce).
const VALIDATION_FAILED: &str = "VALIDATION_FAILED";

/// What every error member of a result union has.
#[derive(Debug, Clone, Interface)]
#[graphql(
    name = "Error",
    field(name = "message", ty = "&String"),
    field(name = "code", ty = "&Option<String>")
)]
pub enum ErrorInterface {
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
    RateLimitError(RateLimitError),
}

impl ValidationError {
    pub fn new(field: &str, message: impl Into<String>, constraint: Option<&str>) -> Self {
        Self {
            message: format!("{field}: {}", message.into()),
            code: Some(VALIDATION_FAILED.into()),
            field: Some(field.to_owned()),
            constraint: constraint.map(str::to_owned),
        }
    }
}

impl AuthError {
    pub fn missing_scope(scope: Scope) -> Self {
        Self {
            message: format!("this API token lacks the {} scope", scope.as_str()),
            code: Some("FORBIDDEN".into()),
        }
    }
}

/// A command's refusal, as the union member a mutation answers.
#[derive(Debug, Clone)]
pub enum Refusal {
    Validation(ValidationError),
    NotFound(NotFoundError),
    Auth(AuthError),
}

impl Refusal {
    /// Sorts a command failure: refusals become union members, anything
    /// else (the database, Kafka) a top-level INTERNAL error.
    pub fn of(error: ExecuteError) -> async_graphql::Result<Self> {
        let ExecuteError::Rejected(refusal) = error else {
            return Err(internal(&error));
        };
        let code = Some(refusal.code().code.to_owned());
        let message = refusal.to_string();
        Ok(match refusal {
            CommandError::Validation { field, message } => {
                Self::Validation(ValidationError::new(&field, message, None))
            }
            CommandError::NotFound { resource, id } => Self::NotFound(NotFoundError {
                message,
                code,
                resource_type: resource,
                resource_id: ID(id),
            }),
            CommandError::Conflict(_) | CommandError::IdempotencyMismatch { .. } => {
                Self::Validation(ValidationError {
                    message,
                    code,
                    field: None,
                    constraint: None,
                })
            }
            CommandError::Forbidden(_) | CommandError::Unauthenticated(_) => {
                Self::Auth(AuthError { message, code })
            }
        })
    }

    pub fn not_found(resource: &str, id: &str) -> Self {
        Self::NotFound(NotFoundError::new(resource, id))
    }
}

impl NotFoundError {
    pub fn new(resource: &str, id: &str) -> Self {
        Self {
            message: format!("{resource} {id} not found"),
            code: Some("NOT_FOUND".into()),
            resource_type: resource.to_owned(),
            resource_id: ID(id.to_owned()),
        }
    }
}

/// A command's refusal as a top-level error, for mutations that answer a
/// plain value instead of a result union.
pub fn rejected(refusal: &CommandError) -> async_graphql::Error {
    let code = refusal.code().code;
    let field = refusal.field().map(str::to_owned);
    async_graphql::Error::new(refusal.to_string()).extend_with(move |_, e| {
        e.set("code", code);
        if let Some(field) = &field {
            e.set("field", field.as_str());
        }
    })
}

/// A top-level error for bad query arguments.
pub fn bad_input(field: &str, message: &str) -> async_graphql::Error {
    async_graphql::Error::new(format!("{field}: {message}")).extend_with(|_, e| {
        e.set("code", VALIDATION_FAILED);
        e.set("field", field);
    })
}

/// The error of a root field the caller's token has no scope for.
pub fn forbidden(scope: Scope) -> async_graphql::Error {
    async_graphql::Error::new(format!("this API token lacks the {} scope", scope.as_str()))
        .extend_with(|_, e| e.set("code", "FORBIDDEN"))
}

/// The error of a field naming something the caller may not see in full.
pub fn forbidden_resource(what: &str) -> async_graphql::Error {
    async_graphql::Error::new(format!("not allowed: {what}"))
        .extend_with(|_, e| e.set("code", "FORBIDDEN"))
}

/// Denies a nested field the caller's token has no scope for: the field is
/// null (its key present, as clients require) and a FORBIDDEN error stands
/// at its path, so the rest of the answer stays usable.
pub fn deny_field<T>(ctx: &async_graphql::Context<'_>, scope: Scope) -> Option<T> {
    null_with(ctx, forbidden(scope))
}

/// The field is null, and `error` stands at its path.
pub fn null_with<T>(ctx: &async_graphql::Context<'_>, error: async_graphql::Error) -> Option<T> {
    ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
    None
}

/// A failure of ours, logged in full and reported without details.
pub fn internal(error: &dyn std::error::Error) -> async_graphql::Error {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    warn!(error = %chain, "GraphQL resolver failed");
    async_graphql::Error::new("internal error; try again")
        .extend_with(|_, e| e.set("code", "INTERNAL"))
}

/// Gives every error the response carries a code: parse and validation
/// failures the codes the client knows (GRAPHQL_PARSE_FAILED,
/// GRAPHQL_VALIDATION_FAILED, and QUERY_TOO_DEEP and QUERY_TOO_COMPLEX for
/// the limits), everything else async-graphql raises (an operation the
/// document does not name, argument values that do not coerce)
/// VALIDATION_FAILED. Errors with a code keep it.
///
/// This runs on the response rather than as an async-graphql extension:
/// with any extension installed, async-graphql resolves every field
/// through the extension chain after looking its type up by name, which
/// cost more than a third of a list query's time.
pub fn code(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let coded = error
            .extensions
            .as_ref()
            .is_some_and(|extensions| extensions.get("code").is_some());
        if coded {
            continue;
        }
        let message = error.message.as_str();
        let code = if message.starts_with("The recursion depth of the query") {
            PARSE_FAILED
        } else if message == "Query is nested too deep." {
            "QUERY_TOO_DEEP"
        } else if message == "Query is too complex." {
            "QUERY_TOO_COMPLEX"
        } else if message.starts_with("Unknown operation named")
            || message == "Operation name required in request."
            || message == "Subscriptions are not supported on this transport."
        {
            VALIDATION_FAILED
        } else if error.path.is_empty() {
            // Validation rules, which run before any field does; an error
            // raised while executing names the field it came from.
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            VALIDATION_FAILED
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

/// The code of a document that does not parse.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";

/// `From<Refusal>` for result unions with a ValidationError, NotFoundError
/// and AuthError member, so a mutation's body can stop with `?`
/// (`graphql::mutation`).
macro_rules! refusal_members {
    ($($result:ident),* $(,)?) => {$(
        impl From<$crate::graphql::errors::Refusal> for $result {
            fn from(refusal: $crate::graphql::errors::Refusal) -> Self {
                match refusal {
                    $crate::graphql::errors::Refusal::Validation(e) => Self::ValidationError(e),
                    $crate::graphql::errors::Refusal::NotFound(e) => Self::NotFoundError(e),
                    $crate::graphql::errors::Refusal::Auth(e) => Self::AuthError(e),
                }
            }
        }
    )*};
}
pub(crate) use refusal_members;

#[cfg(test)]
mod tests {
    use async_graphql::{PathSegment, Response, ServerError};

    use super::code;

    fn coded(errors: Vec<ServerError>) -> Vec<String> {
        let mut response = Response::from_errors(errors);
        code(&mut response);
        response
            .errors
            .iter()
            .map(
                |e| match e.extensions.as_ref().and_then(|x| x.get("code")) {
                    Some(async_graphql::Value::String(code)) => code.clone(),
                    other => panic!("no code: {other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn every_error_gets_the_code_the_client_knows() {
        let mut coerced = ServerError::new("Invalid value for argument \"first\"", None);
        coerced.path = vec![PathSegment::Field("streamsConnection".into())];
        let mut already = ServerError::new("stream x not found", None);
        already
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "NOT_FOUND");
        assert_eq!(
            coded(vec![
                ServerError::new(
                    "The recursion depth of the query cannot be greater than `32`",
                    None
                ),
                ServerError::new("Query is nested too deep.", None),
                ServerError::new("Query is too complex.", None),
                ServerError::new("Unknown operation named \"X\"", None),
                ServerError::new(
                    "Unknown field \"noSuchField\" on type \"StreamsConnection\".",
                    None
                ),
                coerced,
                already,
            ]),
            [
                "GRAPHQL_PARSE_FAILED",
                "QUERY_TOO_DEEP",
                "QUERY_TOO_COMPLEX",
                "VALIDATION_FAILED",
                "GRAPHQL_VALIDATION_FAILED",
                "VALIDATION_FAILED",
                "NOT_FOUND",
            ]
        );
    }
}
