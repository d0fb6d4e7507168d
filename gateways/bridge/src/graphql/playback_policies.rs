//! `setPlaybackPolicy`: who may watch a stream (anyone, or viewers with a
//! JWT signed by one of the tenant's keys), and `Stream.playbackPolicy` as
//! it reads back. Webhook policies are refused until edges can ask a
//! webhook; their secrets would be write-only, shown masked.
//!
//! The client's document selects `... on VodAsset` and `... on Clip` too;
//! this platform has neither yet, so those ids are not found.

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject, Union};
use frameworks_commands::aggregates::playback_policy::PolicySpec;
use frameworks_commands::aggregates::stream::StreamCommand;
use frameworks_commands::secrets::SecretString;
use frameworks_events::proto::v1::stream as proto;
use prost::Message;

use super::errors::{AuthError, NotFoundError, Refusal, ValidationError};
use super::mutation::{answer, caller};
use super::streams::{
    PlaybackJwtPolicy, PlaybackPolicy, PlaybackPolicyType, PlaybackRequiredClaim,
    PlaybackWebhookPolicy, Stream, load_stream, projected, run, stream_uuid,
};
use crate::auth::Scope;

/// Whether edges apply webhook policies. Until they do, the API refuses
/// them (the write side and the read model already hold them).
const WEBHOOKS_APPLIED: bool = false;

/// Shown in place of a webhook secret.
const MASKED: &str = "********";

#[derive(Debug, InputObject)]
pub struct PlaybackJwtClaimRequirementInput {
    pub name: String,
    /// The claim's value as JSON.
    pub json_value: String,
}

#[derive(Debug, InputObject)]
pub struct PlaybackJwtPolicyInput {
    /// Allowed signing key IDs. Empty = any active tenant key.
    pub allowed_kids: Option<Vec<String>>,
    /// If set, the viewer JWT's `aud` claim must contain at least one of these.
    pub required_audience: Option<Vec<String>>,
    /// Required claim constraints. Each entry's value is JSON-encoded.
    pub required_claims_json: Option<Vec<PlaybackJwtClaimRequirementInput>>,
}

#[derive(Debug, InputObject)]
pub struct PlaybackWebhookPolicyInput {
    /// https URL FrameWorks will POST to on each viewer connect.
    pub url: String,
    /// HMAC-SHA256 secret signing the webhook bodies. Write-only; required
    /// for a new webhook policy, omitted to keep the current one.
    pub secret: Option<String>,
    /// Milliseconds, at most 10000; default 5000.
    pub timeout_ms: Option<i32>,
    /// A JSON object passed to the webhook with each viewer.
    pub context: Option<Json<serde_json::Value>>,
}

#[derive(Debug, InputObject)]
pub struct PlaybackPolicyInput {
    #[graphql(name = "type")]
    pub kind: PlaybackPolicyType,
    /// Required when type == JWT.
    pub jwt: Option<PlaybackJwtPolicyInput>,
    /// Required when type == WEBHOOK.
    pub webhook: Option<PlaybackWebhookPolicyInput>,
    /// JWT and WEBHOOK only: sites allowed to embed the content, each `*` or
    /// `scheme://host[:port]` (at most 50).
    pub allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, InputObject)]
pub struct SetPlaybackPolicyInput {
    /// Exactly one of streamId, vodAssetId, or clipId must be provided.
    pub stream_id: Option<ID>,
    pub vod_asset_id: Option<ID>,
    pub clip_id: Option<ID>,
    pub policy: PlaybackPolicyInput,
}

/// A VOD asset. This platform has none yet: no id names one.
#[derive(Debug, Clone, SimpleObject)]
pub struct VodAsset {
    pub id: ID,
    pub playback_policy: Option<PlaybackPolicy>,
}

/// A clip. This platform has none yet: no id names one.
#[derive(Debug, Clone, SimpleObject)]
pub struct Clip {
    pub id: ID,
    pub playback_policy: Option<PlaybackPolicy>,
}

#[derive(Debug, Clone, Union)]
pub enum SetPlaybackPolicyResult {
    Stream(Stream),
    VodAsset(VodAsset),
    Clip(Clip),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

impl From<Refusal> for SetPlaybackPolicyResult {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Validation(e) => Self::ValidationError(e),
            Refusal::NotFound(e) => Self::NotFoundError(e),
            Refusal::Auth(e) => Self::AuthError(e),
        }
    }
}

/// The stored policy as the API shows it; `None` for an unreadable one.
pub fn shown(stored: &[u8]) -> Option<PlaybackPolicy> {
    let policy = proto::PlaybackPolicy::decode(stored).ok()?;
    let kind = match proto::PlaybackPolicyType::try_from(policy.r#type).ok()? {
        proto::PlaybackPolicyType::Jwt => PlaybackPolicyType::Jwt,
        proto::PlaybackPolicyType::Webhook => PlaybackPolicyType::Webhook,
        proto::PlaybackPolicyType::Public | proto::PlaybackPolicyType::Unspecified => {
            PlaybackPolicyType::Public
        }
    };
    Some(PlaybackPolicy {
        kind,
        jwt: policy.jwt.map(|jwt| PlaybackJwtPolicy {
            allowed_kids: jwt.allowed_kids,
            required_audience: jwt.required_audience,
            required_claims_json: jwt
                .required_claims
                .into_iter()
                .map(|claim| PlaybackRequiredClaim {
                    name: claim.name,
                    json_value: claim.json_value,
                })
                .collect(),
        }),
        webhook: policy.webhook.map(|webhook| PlaybackWebhookPolicy {
            url: webhook.url,
            timeout_ms: i32::try_from(webhook.timeout_ms).unwrap_or(i32::MAX),
            secret_masked: MASKED.into(),
            context: serde_json::from_str(&webhook.context_json).ok().map(Json),
        }),
        allowed_origins: policy.allowed_origins,
    })
}

/// The input as the write side takes it, or the field that is missing.
fn spec(input: PlaybackPolicyInput) -> Result<PolicySpec, ValidationError> {
    let origins = input.allowed_origins.unwrap_or_default();
    match input.kind {
        PlaybackPolicyType::Public => Ok(PolicySpec::Public),
        PlaybackPolicyType::Jwt => {
            let jwt = input.jwt.ok_or_else(|| {
                ValidationError::new("input.policy.jwt", "is required when type is JWT", None)
            })?;
            Ok(PolicySpec::Jwt {
                allowed_kids: jwt.allowed_kids.unwrap_or_default(),
                required_audience: jwt.required_audience.unwrap_or_default(),
                required_claims: jwt
                    .required_claims_json
                    .unwrap_or_default()
                    .into_iter()
                    .map(|claim| (claim.name, claim.json_value))
                    .collect(),
                allowed_origins: origins,
            })
        }
        // The edges cannot ask a webhook yet: refused rather than set and not applied.
        PlaybackPolicyType::Webhook if !WEBHOOKS_APPLIED => Err(ValidationError::new(
            "input.policy.type",
            "webhook playback policies are not available on this platform yet; use JWT",
            None,
        )),
        PlaybackPolicyType::Webhook => {
            let webhook = input.webhook.ok_or_else(|| {
                ValidationError::new(
                    "input.policy.webhook",
                    "is required when type is WEBHOOK",
                    None,
                )
            })?;
            let timeout_ms = webhook
                .timeout_ms
                .map(|ms| {
                    u32::try_from(ms).map_err(|_| {
                        ValidationError::new(
                            "input.policy.webhook.timeoutMs",
                            "must be positive",
                            None,
                        )
                    })
                })
                .transpose()?;
            Ok(PolicySpec::Webhook {
                url: webhook.url,
                secret: webhook.secret.map(SecretString::from),
                timeout_ms,
                context: webhook.context.map(|Json(value)| value),
                allowed_origins: origins,
            })
        }
    }
}

#[derive(Debug, Default)]
pub struct PlaybackPolicyMutation;

#[Object]
impl PlaybackPolicyMutation {
    /// Set or clear the playback access policy on a stream, VOD asset, or clip.
    /// Exactly one of streamId / vodAssetId / clipId must be set in the input.
    /// Webhook secrets are write-only on input and never returned in queries.
    async fn set_playback_policy(
        &self,
        ctx: &Context<'_>,
        input: SetPlaybackPolicyInput,
    ) -> async_graphql::Result<SetPlaybackPolicyResult> {
        answer(SetPlaybackPolicyResult::from, async {
            let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
            let named = [&input.stream_id, &input.vod_asset_id, &input.clip_id]
                .iter()
                .filter(|id| id.is_some())
                .count();
            if named != 1 {
                let message = "name exactly one of streamId, vodAssetId and clipId";
                return Err(ValidationError::new("input", message, None).into());
            }
            if let Some(id) = &input.vod_asset_id {
                return Err(Refusal::not_found("VodAsset", &id.0).into());
            }
            if let Some(id) = &input.clip_id {
                return Err(Refusal::not_found("Clip", &id.0).into());
            }
            let Some(id) = input.stream_id else {
                unreachable!("exactly one id is named");
            };
            let stream = match stream_uuid(&id) {
                Ok(Some(uuid)) => load_stream(state, principal, uuid).await?,
                Ok(None) => None,
                Err(message) => {
                    return Err(ValidationError::new("input.streamId", message, None).into());
                }
            };
            let stream = stream.ok_or_else(|| Refusal::not_found("Stream", &id.0))?;
            let spec = spec(input.policy)?;
            let uuid = stream.id;
            run(
                ctx,
                state,
                principal,
                uuid,
                &StreamCommand::SetPlaybackPolicy(spec),
            )
            .await?;
            Ok(SetPlaybackPolicyResult::Stream(
                projected(state, principal, uuid).await?,
            ))
        })
        .await
    }
}
