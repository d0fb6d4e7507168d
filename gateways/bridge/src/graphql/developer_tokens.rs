//! API tokens ("developer tokens" in the contract): created with scopes and
//! shown once, listed, revoked. They are kept as hashes; `tokenValue` is only
//! ever filled in the answer to `createDeveloperToken`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Union};
use chrono::Utc;
use frameworks_commands::aggregates::api_token::{
    ApiToken, ApiTokenCommand, ApiTokenOutcome, MAX_EXPIRY_DAYS, TokenExpiry,
};
use frameworks_events::AggregateType;
use frameworks_projections::queries::accounts::{self as read_model, TokenRow};
use uuid::Uuid;

use super::connection::{ConnectionInput, connection, page_of, read_failed};
use super::errors::{
    AuthError, DeleteSuccess, NotFoundError, RateLimitError, Refusal, ValidationError, internal,
};
use super::mutation::{self, answer, caller, command};
use super::scalars::Time;
use super::{require, state};
use crate::auth::{Principal, Scope};
use crate::state::{BridgeState, ProjectionWaitError};

/// An API token for programmatic access, with scoped permissions.
#[derive(Debug, Clone, SimpleObject)]
pub struct DeveloperToken {
    pub id: ID,
    pub token_name: String,
    /// The secret: only in the answer to createDeveloperToken, null thereafter.
    pub token_value: Option<String>,
    pub permissions: Vec<String>,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    pub last_used_at: Option<Time>,
    pub expires_at: Option<Time>,
    pub created_at: Option<Time>,
}

impl From<TokenRow> for DeveloperToken {
    fn from(row: TokenRow) -> Self {
        let status = if row.revoked_at.is_some() {
            "revoked"
        } else if row.expires_at.is_some_and(|at| at <= Utc::now()) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: ID(row.id.to_string()),
            token_name: row.name,
            token_value: None,
            permissions: row.scopes,
            status: status.into(),
            last_used_at: row.last_used_at.map(Time),
            expires_at: row.expires_at.map(Time),
            created_at: Some(Time(row.created_at)),
        }
    }
}

connection!(
    DeveloperTokensConnection,
    DeveloperTokenEdge,
    DeveloperToken
);

#[derive(Debug, Clone, InputObject)]
pub struct CreateDeveloperTokenInput {
    /// Human-readable name for the token.
    pub name: String,
    /// Comma-separated scopes in resource:action form (streams:read, streams:write, ...).
    pub permissions: Option<String>,
    /// Days until expiration, 1-3650 (null = non-expiring).
    pub expires_in: Option<i32>,
}

#[derive(Debug, Clone, Union)]
pub enum CreateDeveloperTokenResult {
    DeveloperToken(DeveloperToken),
    ValidationError(ValidationError),
    RateLimitError(RateLimitError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum RevokeDeveloperTokenResult {
    DeleteSuccess(DeleteSuccess),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Default)]
pub struct DeveloperTokenQuery;

#[Object]
impl DeveloperTokenQuery {
    /// The tenant's API tokens, newest first (values are never shown again).
    async fn developer_tokens_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<DeveloperTokensConnection> {
        let principal = require(ctx, Scope::DeveloperWrite)?;
        let page = page_of(page.as_ref())?;
        let state = state(ctx)?;
        let tokens = read_model::tokens(&state.pool, principal.tenant_id(), &page)
            .await
            .map_err(read_failed)?;
        Ok(DeveloperTokensConnection::new(tokens.map(Into::into)))
    }
}

#[derive(Debug, Default)]
pub struct DeveloperTokenMutation;

#[Object]
impl DeveloperTokenMutation {
    /// Creates an API token; its value is in this answer only.
    async fn create_developer_token(
        &self,
        ctx: &Context<'_>,
        input: CreateDeveloperTokenInput,
    ) -> async_graphql::Result<CreateDeveloperTokenResult> {
        let refuse = |refusal| match refusal {
            // The contract's permissions are one comma-separated string: an
            // entry's index is not a field of it.
            Refusal::Validation(mut e) => {
                if e.field
                    .as_deref()
                    .is_some_and(|f| f.starts_with("input.permissions"))
                {
                    e.field = Some("input.permissions".into());
                }
                CreateDeveloperTokenResult::ValidationError(e)
            }
            Refusal::Auth(e) => CreateDeveloperTokenResult::AuthError(e),
            Refusal::NotFound(e) => CreateDeveloperTokenResult::ValidationError(ValidationError {
                message: e.message,
                code: e.code,
                field: None,
                constraint: None,
            }),
        };
        answer(refuse, async {
            let (principal, state) = caller(ctx, Scope::DeveloperWrite)?;
            let scopes = permissions(principal, input.permissions.as_deref())?;
            let expires = match input.expires_in.map(u32::try_from) {
                None => None,
                Some(Ok(days @ 1..=MAX_EXPIRY_DAYS)) => Some(TokenExpiry::AfterDays(days)),
                Some(_) => {
                    let message = format!("must be between 1 and {MAX_EXPIRY_DAYS} days");
                    return Err(
                        ValidationError::new("input.expiresIn", message, Some("range")).into(),
                    );
                }
            };
            let id = mutation::new_id(ctx, principal);
            let create = ApiTokenCommand::Create {
                name: input.name.clone(),
                scopes: scopes.clone(),
                expires,
                created_by_user_id: principal.actor(),
            };
            let (token, expires_at) =
                match command::<ApiToken>(ctx, state, principal, &id.to_string(), &create).await? {
                    ApiTokenOutcome::Created {
                        token, expires_at, ..
                    } => (token, expires_at),
                    other => {
                        return Err(internal(&std::io::Error::other(format!(
                            "creating a token answered {other:?}"
                        )))
                        .into());
                    }
                };
            // The value is in this answer only, so a late read model is
            // answered from the command itself rather than losing it
            // (its creation time is the read model's to say).
            let mut created = match load(state, principal, id).await {
                Ok(Some(created)) => created,
                late => {
                    mutation::not_visible("DeveloperToken", &id.to_string(), &late);
                    DeveloperToken {
                        id: ID(id.to_string()),
                        token_name: input.name,
                        token_value: None,
                        permissions: scopes,
                        status: "active".into(),
                        last_used_at: None,
                        expires_at: expires_at.map(Time),
                        created_at: None,
                    }
                }
            };
            created.token_value = Some(token);
            Ok(CreateDeveloperTokenResult::DeveloperToken(created))
        })
        .await
    }

    /// Revokes an API token: it stops authenticating at once.
    async fn revoke_developer_token(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<RevokeDeveloperTokenResult> {
        let not_found = || {
            RevokeDeveloperTokenResult::NotFoundError(NotFoundError {
                message: format!("API token {} not found", id.0),
                code: Some("NOT_FOUND".into()),
                resource_type: "DeveloperToken".into(),
                resource_id: id.clone(),
            })
        };
        // Unknown, another tenant's, or already revoked: nothing to revoke.
        let refuse = |refusal| match refusal {
            Refusal::Auth(e) => RevokeDeveloperTokenResult::AuthError(e),
            Refusal::Validation(_) | Refusal::NotFound(_) => not_found(),
        };
        answer(refuse, async {
            let (principal, state) = caller(ctx, Scope::DeveloperWrite)?;
            let uuid =
                id.0.parse::<Uuid>()
                    .map_err(|_| Refusal::not_found("DeveloperToken", &id.0))?;
            let revoke = ApiTokenCommand::Revoke {
                reason: "revoked through the API".into(),
                revoked_by_user_id: principal.actor(),
            };
            command::<ApiToken>(ctx, state, principal, &uuid.to_string(), &revoke).await?;
            let pending = mutation::pending("DeveloperToken", uuid, wait(state, uuid).await);
            Ok(RevokeDeveloperTokenResult::DeleteSuccess(DeleteSuccess {
                success: true,
                deleted_id: id.clone(),
                pending: Some(pending),
            }))
        })
        .await
    }
}

/// The scopes a new token gets: those listed, each one the creator holds.
fn permissions(
    principal: &Principal,
    listed: Option<&str>,
) -> Result<Vec<String>, ValidationError> {
    let refuse = |message: String, constraint: &str| {
        ValidationError::new("input.permissions", message, Some(constraint))
    };
    let scopes: Vec<String> = listed
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err(refuse(
            "must list at least one scope, e.g. streams:read".into(),
            "required",
        ));
    }
    if let Principal::ApiToken { scopes: held, .. } = principal
        && let Some(extra) = scopes.iter().find(|s| !held.contains(s))
    {
        return Err(refuse(
            format!("{extra} is not held by the token creating this one"),
            "escalation",
        ));
    }
    Ok(scopes)
}

/// Waits until the read model holds what was just done to token `id`.
async fn wait(state: &BridgeState, id: Uuid) -> Result<(), ProjectionWaitError> {
    state
        .wait_until_projected(AggregateType::ApiToken, &id.to_string())
        .await
}

/// Token `id` once the read model holds what was just done to it.
async fn load(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Option<DeveloperToken>> {
    wait(state, id).await.map_err(|e| internal(&e))?;
    let row = read_model::token(&state.pool, principal.tenant_id(), id)
        .await
        .map_err(read_failed)?;
    Ok(row.map(DeveloperToken::from))
}
