//! Playback signing keys: ES256 key pairs whose private half is returned
//! once by `createSigningKey` and never stored; the tenant aggregate keeps
//! the public half, which viewers' playback JWTs are checked against.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, Union};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use frameworks_commands::aggregates::tenant::{Tenant, TenantCommand, TenantOutcome};
use frameworks_events::AggregateType;
use frameworks_projections::queries::accounts::{self as read_model, SigningKeyRow};

use super::connection::{ConnectionInput, Paged, connection, page_of, read_failed};
use super::errors::{
    AuthError, NotFoundError, RateLimitError, Refusal, ValidationError, bad_input, internal,
};
use super::ids;
use super::mutation::{self, Stop, answer, caller};
use super::scalars::Time;
use super::{require, state};
use crate::auth::{Principal, Scope};
use crate::state::BridgeState;

const TYPE: &str = "SigningKey";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SigningKeyAlgorithm {
    #[graphql(name = "ES256")]
    Es256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SigningKeyStatus {
    Active,
    Revoked,
}

/// A tenant's key for signing viewer playback JWTs; only its public half is kept.
#[derive(Debug, Clone, SimpleObject)]
pub struct SigningKey {
    pub id: ID,
    /// Short id carried in the JWT header (`kid`).
    pub kid: String,
    pub name: String,
    pub algorithm: SigningKeyAlgorithm,
    /// The public key, PEM (SubjectPublicKeyInfo).
    pub public_key_pem: String,
    pub status: SigningKeyStatus,
    pub created_at: Time,
    /// Last time a JWT signed by this key verified at playback.
    pub last_used_at: Option<Time>,
    pub revoked_at: Option<Time>,
}

/// A key as the API shows it: its public half, as PEM.
fn signing_key(row: SigningKeyRow) -> async_graphql::Result<SigningKey> {
    if row.algorithm != "ES256" {
        return Err(internal(&std::io::Error::other(format!(
            "signing key {} has algorithm {}",
            row.kid, row.algorithm
        ))));
    }
    Ok(SigningKey {
        id: ids::global(TYPE, &row.kid),
        public_key_pem: pem("PUBLIC KEY", &row.public_key_spki),
        name: row.name,
        algorithm: SigningKeyAlgorithm::Es256,
        status: if row.revoked_at.is_some() {
            SigningKeyStatus::Revoked
        } else {
            SigningKeyStatus::Active
        },
        created_at: Time(row.created_at),
        last_used_at: None,
        revoked_at: row.revoked_at.map(Time),
        kid: row.kid,
    })
}

/// DER as PEM: base64 in lines of 64 between the label's armour.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

connection!(SigningKeysConnection, SigningKeyEdge, SigningKey);

#[derive(Debug, Clone, SimpleObject)]
pub struct CreateSigningKeySuccess {
    pub signing_key: SigningKey,
    /// ES256 private key, PKCS#8 PEM. Shown once; never stored.
    pub private_key_pem: String,
}

#[derive(Debug, Clone, InputObject)]
pub struct CreateSigningKeyInput {
    /// Display label for the key (e.g. 'staging', 'rotation-2026-q2').
    pub name: String,
}

#[derive(Debug, Clone, Union)]
pub enum CreateSigningKeyResult {
    CreateSigningKeySuccess(CreateSigningKeySuccess),
    ValidationError(ValidationError),
    RateLimitError(RateLimitError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum RevokeSigningKeyResult {
    SigningKey(SigningKey),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Default)]
pub struct SigningKeyQuery;

#[Object]
impl SigningKeyQuery {
    async fn signing_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<SigningKey>> {
        let principal = require(ctx, Scope::StreamsRead)?;
        let Ok(kid) = ids::raw(TYPE, &id.0) else {
            return Ok(None);
        };
        load(state(ctx)?, principal, &kid).await
    }

    /// The tenant's signing keys, newest first; `status` is `active` or `revoked`.
    async fn signing_keys_connection(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<SigningKeysConnection> {
        let principal = require(ctx, Scope::StreamsRead)?;
        let page = page_of(page.as_ref())?;
        let revoked = match status.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => None,
            Some("active") => Some(false),
            Some("revoked") => Some(true),
            Some(_) => return Err(bad_input("status", "must be active or revoked")),
        };
        let state = state(ctx)?;
        let keys = read_model::signing_keys(&state.pool, principal.tenant_id(), revoked, &page)
            .await
            .map_err(read_failed)?;
        let edges = keys
            .edges
            .into_iter()
            .map(|(c, row)| Ok((c, signing_key(row)?)))
            .collect::<async_graphql::Result<Vec<_>>>()?;
        Ok(SigningKeysConnection::new(Paged {
            edges,
            bounds: keys.bounds,
            total: keys.total,
        }))
    }
}

#[derive(Debug, Default)]
pub struct SigningKeyMutation;

#[Object]
impl SigningKeyMutation {
    /// Generates an ES256 key pair; the private key is in this answer only.
    /// Up to 10 active keys per tenant.
    async fn create_signing_key(
        &self,
        ctx: &Context<'_>,
        input: CreateSigningKeyInput,
    ) -> async_graphql::Result<CreateSigningKeyResult> {
        // The tenant itself missing means the caller's account is gone.
        let refuse = |refusal| match refusal {
            Refusal::Validation(e) => CreateSigningKeyResult::ValidationError(e),
            Refusal::Auth(e) => CreateSigningKeyResult::AuthError(e),
            Refusal::NotFound(e) => CreateSigningKeyResult::AuthError(AuthError {
                message: e.message,
                code: Some("UNAUTHORIZED".into()),
            }),
        };
        answer(refuse, async {
            let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
            let command = TenantCommand::CreateSigningKey { name: input.name };
            let (kid, private_key_pem) = match execute(ctx, state, principal, &command).await? {
                TenantOutcome::SigningKey {
                    kid,
                    private_key_pem,
                    ..
                } => (kid, private_key_pem),
                other => {
                    return Err(internal(&std::io::Error::other(format!(
                        "creating a signing key answered {other:?}"
                    )))
                    .into());
                }
            };
            // The private key is in this answer only: repeating the request
            // with the same Idempotency-Key answers it again.
            let signing_key = projected(state, principal, &kid).await?.ok_or_else(|| {
                mutation::accepted_not_visible(TYPE, &kid, &"not in the read model")
            })?;
            Ok(CreateSigningKeyResult::CreateSigningKeySuccess(
                CreateSigningKeySuccess {
                    signing_key,
                    private_key_pem,
                },
            ))
        })
        .await
    }

    /// Revokes a signing key: JWTs it signed stop opening playback.
    async fn revoke_signing_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<RevokeSigningKeyResult> {
        let not_found = || {
            RevokeSigningKeyResult::NotFoundError(NotFoundError {
                message: format!("signing key {} not found", id.0),
                code: Some("NOT_FOUND".into()),
                resource_type: TYPE.into(),
                resource_id: id.clone(),
            })
        };
        // Unknown, another tenant's, or already revoked: not found.
        let refuse = |refusal| match refusal {
            Refusal::Auth(e) => RevokeSigningKeyResult::AuthError(e),
            Refusal::Validation(_) | Refusal::NotFound(_) => not_found(),
        };
        answer(refuse, async {
            let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
            let kid = ids::raw(TYPE, &id.0).map_err(|_| Refusal::not_found(TYPE, &id.0))?;
            let command = TenantCommand::RevokeSigningKey {
                kid: kid.clone(),
                reason: "revoked through the API".into(),
            };
            execute(ctx, state, principal, &command).await?;
            Ok(match projected(state, principal, &kid).await? {
                Some(key) => RevokeSigningKeyResult::SigningKey(key),
                None => not_found(),
            })
        })
        .await
    }
}

/// Runs a command on the caller's tenant.
async fn execute(
    ctx: &Context<'_>,
    state: &BridgeState,
    principal: &Principal,
    command: &TenantCommand,
) -> Result<TenantOutcome, Stop> {
    let tenant = principal.tenant_id().to_string();
    mutation::command::<Tenant>(ctx, state, principal, &tenant, command).await
}

/// Key `kid` once the read model holds what was just done to the tenant:
/// the effect of an accepted command, so a late read model is
/// `ACCEPTED_NOT_VISIBLE`.
async fn projected(
    state: &BridgeState,
    principal: &Principal,
    kid: &str,
) -> async_graphql::Result<Option<SigningKey>> {
    let unreadable = |cause: &dyn std::fmt::Debug| mutation::accepted_not_visible(TYPE, kid, cause);
    state
        .wait_until_projected(AggregateType::Tenant, &principal.tenant_id().to_string())
        .await
        .map_err(|e| unreadable(&e))?;
    load(state, principal, kid)
        .await
        .map_err(|e| unreadable(&e))
}

async fn load(
    state: &BridgeState,
    principal: &Principal,
    kid: &str,
) -> async_graphql::Result<Option<SigningKey>> {
    let row = read_model::signing_key(&state.pool, principal.tenant_id(), kid)
        .await
        .map_err(read_failed)?;
    row.map(signing_key).transpose()
}

#[cfg(test)]
mod tests {
    use super::pem;

    #[test]
    fn pem_wraps_base64_at_64_columns() {
        let text = pem("PUBLIC KEY", &[0u8; 91]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last().copied(), Some("-----END PUBLIC KEY-----"));
    }
}
