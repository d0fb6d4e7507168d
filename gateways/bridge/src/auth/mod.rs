//! Who is calling: a session token (from /auth/login) or an API token
//! (from createDeveloperToken), presented as `Authorization: Bearer`.

pub mod rest;
pub mod session;

use chrono::Utc;
use frameworks_commands::CommandContext;
use frameworks_commands::secrets::sha256;
use frameworks_projections::queries::accounts::{self, TokenGrant};
use sqlx::PgPool;
use uuid::Uuid;

pub use self::session::{SessionError, SessionKeys};
use crate::cache::TtlCache;

/// What an API token may do, `resource:action`. Sessions may do everything
/// in their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    StreamsRead,
    StreamsWrite,
    AnalyticsRead,
    InfrastructureRead,
    InfrastructureWrite,
    DeveloperWrite,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamsRead => "streams:read",
            Self::StreamsWrite => "streams:write",
            Self::AnalyticsRead => "analytics:read",
            Self::InfrastructureRead => "infrastructure:read",
            Self::InfrastructureWrite => "infrastructure:write",
            Self::DeveloperWrite => "developer:write",
        }
    }

    /// The scope that also grants this one (write implies read).
    fn implied_by(self) -> Option<Self> {
        match self {
            Self::StreamsRead => Some(Self::StreamsWrite),
            Self::InfrastructureRead => Some(Self::InfrastructureWrite),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Session {
        user_id: Uuid,
        tenant_id: Uuid,
        role: String,
    },
    ApiToken {
        token_id: Uuid,
        tenant_id: Uuid,
        scopes: Vec<String>,
    },
}

impl Principal {
    pub fn tenant_id(&self) -> Uuid {
        match self {
            Self::Session { tenant_id, .. } | Self::ApiToken { tenant_id, .. } => *tenant_id,
        }
    }

    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            Self::Session { .. } => true,
            Self::ApiToken { scopes, .. } => {
                let has = |s: Scope| scopes.iter().any(|held| held == s.as_str());
                has(scope) || scope.implied_by().is_some_and(has)
            }
        }
    }

    /// Who commands are attributed to.
    pub fn actor(&self) -> String {
        match self {
            Self::Session { user_id, .. } => format!("user:{user_id}"),
            Self::ApiToken { token_id, .. } => format!("api_token:{token_id}"),
        }
    }

    pub fn command_context(&self) -> CommandContext {
        CommandContext::for_tenant(self.tenant_id(), self.actor())
    }
}

/// Why a presented credential was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("unknown API token")]
    UnknownToken,
    #[error("the API token was revoked")]
    Revoked,
    #[error("the API token has expired")]
    Expired,
    #[error("checking the credential")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone)]
pub struct Authenticator {
    pool: PgPool,
    sessions: SessionKeys,
    /// Tokens whose use was recorded in the last minute.
    recorded_use: TtlCache<Uuid, ()>,
}

impl Authenticator {
    pub fn new(pool: PgPool, sessions: SessionKeys) -> Self {
        Self {
            pool,
            sessions,
            recorded_use: TtlCache::new(std::time::Duration::from_secs(60)),
        }
    }

    pub fn sessions(&self) -> &SessionKeys {
        &self.sessions
    }

    /// The principal behind an `Authorization` header value.
    pub async fn authenticate(&self, authorization: &str) -> Result<Principal, AuthError> {
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::NotBearer)?;
        if token.matches('.').count() == 2 {
            let claims = self.sessions.verify(token)?;
            return Ok(Principal::Session {
                user_id: claims.sub,
                tenant_id: claims.tid,
                role: claims.role,
            });
        }
        self.api_token(token).await
    }

    async fn api_token(&self, token: &str) -> Result<Principal, AuthError> {
        let row = accounts::token_by_hash(&self.pool, sha256(token.as_bytes()).as_slice()).await?;
        let Some(TokenGrant {
            id: token_id,
            tenant_id: Some(tenant_id),
            scopes,
            expires_at,
            revoked_at,
        }) = row
        else {
            return Err(AuthError::UnknownToken);
        };
        if revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(AuthError::Expired);
        }
        // At most one write a minute per token: the database skips more
        // frequent ones, and this process does not even send them.
        if self.recorded_use.get(&token_id).is_none() {
            self.record_use(token_id).await?;
        }
        Ok(Principal::ApiToken {
            token_id,
            tenant_id,
            scopes,
        })
    }

    async fn record_use(&self, token_id: Uuid) -> Result<(), sqlx::Error> {
        accounts::record_token_use(&self.pool, token_id).await?;
        self.recorded_use.insert(token_id, ());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_scopes_imply_read_and_sessions_hold_every_scope() {
        let token = Principal::ApiToken {
            token_id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
            scopes: vec!["streams:write".into()],
        };
        assert!(token.allows(Scope::StreamsRead));
        assert!(token.allows(Scope::StreamsWrite));
        assert!(!token.allows(Scope::AnalyticsRead));
        let reader = Principal::ApiToken {
            token_id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
            scopes: vec!["streams:read".into()],
        };
        assert!(!reader.allows(Scope::StreamsWrite));
        let session = Principal::Session {
            user_id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
            role: "member".into(),
        };
        assert!(session.allows(Scope::InfrastructureWrite));
    }
}
