//! API tokens: opaque bearer tokens with scopes, shown once, kept as hashes.

use chrono::{DateTime, Utc};
use frameworks_events::proto::v1::api_token::{ApiTokenCreated, ApiTokenRevoked};
use frameworks_events::{AggregateType, Event, EventPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{Aggregate, Decision, HandleEnv};
use crate::aggregates::claims;
use crate::error::CommandError;
use crate::secrets::{new_token, sha256};
use crate::store::Claim;
use crate::validate;

/// The FrameWorks scope set, `resource:action`.
pub const SCOPES: [&str; 8] = [
    "streams:read",
    "streams:write",
    "analytics:read",
    "billing:read",
    "billing:write",
    "infrastructure:read",
    "infrastructure:write",
    "developer:write",
];

pub const TOKEN_PREFIX: &str = "fw_";

/// The longest a token may be made to last, in days (ten years).
pub const MAX_EXPIRY_DAYS: u32 = 3650;

#[derive(Debug, Default)]
pub struct ApiToken {
    owner: Option<Uuid>,
    exists: bool,
    revoked: bool,
    token_hash: Vec<u8>,
}

/// When a new token stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenExpiry {
    /// At this moment.
    At(DateTime<Utc>),
    /// This many days after it is created. The command says what the
    /// caller asked, not a moment computed from a clock, so the same
    /// request sent again is the same command (idempotency keys compare
    /// commands).
    AfterDays(u32),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ApiTokenCommand {
    Create {
        name: String,
        scopes: Vec<String>,
        /// Never, when `None`.
        expires: Option<TokenExpiry>,
        created_by_user_id: String,
    },
    Revoke {
        reason: String,
        revoked_by_user_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiTokenOutcome {
    Done,
    /// The token in clear: shown to its creator this once.
    Created {
        token: String,
        prefix: String,
        scopes: Vec<String>,
        /// When it stops working (never, when `None`).
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
}

impl Aggregate for ApiToken {
    const TYPE: AggregateType = AggregateType::ApiToken;
    const RESOURCE: &'static str = "API token";
    type Command = ApiTokenCommand;
    type Outcome = ApiTokenOutcome;

    fn apply(&mut self, event: &Event) {
        match &event.payload {
            EventPayload::ApiTokenCreated(created) => {
                self.exists = true;
                self.owner = event.tenant_id;
                self.token_hash = created.token_hash.clone();
            }
            EventPayload::ApiTokenRevoked(_) => self.revoked = true,
            _ => {}
        }
    }

    fn owner(&self, _: &str) -> Option<Uuid> {
        self.owner
    }

    fn handle(
        &self,
        command: &ApiTokenCommand,
        env: &HandleEnv<'_>,
    ) -> Result<Decision<ApiTokenOutcome>, CommandError> {
        let id = env.aggregate_id;
        match command {
            ApiTokenCommand::Create {
                name,
                scopes,
                expires,
                created_by_user_id,
            } => {
                env.ctx.require_tenant()?;
                if self.exists {
                    return Err(CommandError::Conflict(format!(
                        "API token {id} already exists"
                    )));
                }
                let name = validate::name("input.name", name, 100)?;
                let scopes = validate_scopes(scopes)?;
                let expires_at = match *expires {
                    None => None,
                    Some(TokenExpiry::At(at)) if at <= env.ctx.now => {
                        return Err(CommandError::invalid(
                            "input.expiresAt",
                            "must be in the future",
                        ));
                    }
                    Some(TokenExpiry::At(at)) => Some(at),
                    Some(TokenExpiry::AfterDays(days @ 1..=MAX_EXPIRY_DAYS)) => {
                        Some(env.ctx.now + chrono::Duration::days(i64::from(days)))
                    }
                    Some(TokenExpiry::AfterDays(_)) => {
                        return Err(CommandError::invalid(
                            "input.expiresIn",
                            format!("must be between 1 and {MAX_EXPIRY_DAYS} days"),
                        ));
                    }
                };
                let token = new_token(TOKEN_PREFIX);
                let hash = sha256(token.as_bytes());
                let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
                Ok(Decision::new(ApiTokenOutcome::Created {
                    token,
                    prefix: prefix.clone(),
                    scopes: scopes.clone(),
                    expires_at,
                })
                .event(ApiTokenCreated {
                    name,
                    scopes,
                    token_hash: hash.to_vec(),
                    token_prefix: prefix,
                    expires_at_unix: expires_at.map_or(0, |at| at.timestamp()),
                    created_by_user_id: created_by_user_id.clone(),
                })
                .claim(Claim::new(
                    claims::API_TOKEN_HASH,
                    data_encoding::HEXLOWER.encode(&hash),
                )))
            }
            ApiTokenCommand::Revoke {
                reason,
                revoked_by_user_id,
            } => {
                if !self.exists {
                    return Err(CommandError::not_found(Self::RESOURCE, id));
                }
                env.ctx.ensure_owner(self.owner, Self::RESOURCE, id)?;
                if self.revoked {
                    return Err(CommandError::Conflict(format!(
                        "API token {id} is already revoked"
                    )));
                }
                let reason = validate::text("input.reason", reason, 1000)?;
                Ok(Decision::new(ApiTokenOutcome::Done)
                    .event(ApiTokenRevoked {
                        reason,
                        revoked_by_user_id: revoked_by_user_id.clone(),
                    })
                    .release(Claim::new(
                        claims::API_TOKEN_HASH,
                        data_encoding::HEXLOWER.encode(&self.token_hash),
                    )))
            }
        }
    }
}

/// Scopes from the FrameWorks set, each once, in the order given.
pub fn validate_scopes(scopes: &[String]) -> Result<Vec<String>, CommandError> {
    if scopes.is_empty() {
        return Err(CommandError::invalid(
            "input.permissions",
            "must name at least one scope",
        ));
    }
    let mut seen = Vec::new();
    for (index, scope) in scopes.iter().enumerate() {
        let scope = scope.trim();
        if !SCOPES.contains(&scope) {
            return Err(CommandError::invalid(
                format!("input.permissions[{index}]"),
                format!("unknown scope {scope:?} (known: {})", SCOPES.join(", ")),
            ));
        }
        if seen.iter().any(|s| s == scope) {
            return Err(CommandError::invalid(
                format!("input.permissions[{index}]"),
                format!("{scope} is listed twice"),
            ));
        }
        seen.push(scope.to_owned());
    }
    Ok(seen)
}
