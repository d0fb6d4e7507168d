//! Who may watch a stream: its playback policy, as `setPlaybackPolicy`
//! sets it, checked here before it becomes a `stream.playback_policy_set`
//! event. The webhook secret is sealed at once (context
//! `stream/<id>/playback_webhook`); an update may keep the secret set
//! before by leaving it out.

use frameworks_events::proto::v1::stream::{
    PlaybackJwtPolicy, PlaybackPolicy, PlaybackPolicyType, PlaybackWebhookPolicy, RequiredClaim,
};

use crate::error::CommandError;
use crate::secrets::{SecretBox, SecretString};
use crate::validate;

/// At most this many of each list.
const MAX_KIDS: usize = 10;
const MAX_AUDIENCES: usize = 10;
const MAX_CLAIMS: usize = 20;
const MAX_ORIGINS: usize = 50;
/// Claims a policy may not require: the token's own structure.
const RESERVED_CLAIMS: [&str; 5] = ["exp", "iat", "nbf", "aud", "sub"];
/// Webhook timeouts, in milliseconds: the default and the bounds.
pub const WEBHOOK_TIMEOUT_DEFAULT_MS: u32 = 5_000;
const WEBHOOK_TIMEOUT_MAX_MS: u32 = 10_000;
const WEBHOOK_TIMEOUT_MIN_MS: u32 = 100;

/// The sealing context of a stream's playback webhook secret.
pub fn webhook_secret_context(stream_id: &str) -> String {
    format!("stream/{stream_id}/playback_webhook")
}

/// A policy as a caller asks for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PolicySpec {
    Public,
    Jwt {
        allowed_kids: Vec<String>,
        required_audience: Vec<String>,
        /// Claim name, and its value as JSON.
        required_claims: Vec<(String, String)>,
        allowed_origins: Vec<String>,
    },
    Webhook {
        url: String,
        /// Required unless the stream's policy has a webhook secret already;
        /// left out of idempotency fingerprints.
        #[serde(skip)]
        secret: Option<SecretString>,
        timeout_ms: Option<u32>,
        context: Option<serde_json::Value>,
        allowed_origins: Vec<String>,
    },
}

fn bounded(field: &str, values: &[String], max: usize) -> Result<(), CommandError> {
    if values.len() > max {
        return Err(CommandError::invalid(
            field,
            format!("holds more than {max} entries"),
        ));
    }
    Ok(())
}

/// `*`, or `scheme://host[:port]` with nothing after.
fn origins(field: &str, values: &[String]) -> Result<Vec<String>, CommandError> {
    bounded(field, values, MAX_ORIGINS)?;
    values
        .iter()
        .map(|origin| {
            if origin == "*" {
                return Ok(origin.clone());
            }
            let url = url::Url::parse(origin).map_err(|_| {
                CommandError::invalid(
                    field,
                    format!("{origin:?} is not * or scheme://host[:port]"),
                )
            })?;
            let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
                return Err(CommandError::invalid(
                    field,
                    format!("{origin:?} is not * or scheme://host[:port]"),
                ));
            }
            Ok(url.origin().ascii_serialization())
        })
        .collect()
}

impl PolicySpec {
    /// The policy as the event carries it. `has_webhook_secret`: whether
    /// the stream's current policy holds a webhook secret to keep.
    pub fn into_policy(
        self,
        stream_id: &str,
        has_webhook_secret: bool,
        secrets: &SecretBox,
    ) -> Result<PlaybackPolicy, CommandError> {
        match self {
            Self::Public => Ok(PlaybackPolicy {
                r#type: PlaybackPolicyType::Public as i32,
                ..Default::default()
            }),
            Self::Jwt {
                allowed_kids,
                required_audience,
                required_claims,
                allowed_origins,
            } => {
                bounded("input.policy.jwt.allowedKids", &allowed_kids, MAX_KIDS)?;
                for kid in &allowed_kids {
                    if kid.is_empty()
                        || kid.len() > 64
                        || !kid.bytes().all(|b| b.is_ascii_alphanumeric())
                    {
                        return Err(CommandError::invalid(
                            "input.policy.jwt.allowedKids",
                            format!("{kid:?} is not a signing key id"),
                        ));
                    }
                }
                bounded(
                    "input.policy.jwt.requiredAudience",
                    &required_audience,
                    MAX_AUDIENCES,
                )?;
                for audience in &required_audience {
                    validate::name("input.policy.jwt.requiredAudience", audience, 256)?;
                }
                if required_claims.len() > MAX_CLAIMS {
                    return Err(CommandError::invalid(
                        "input.policy.jwt.requiredClaimsJson",
                        format!("holds more than {MAX_CLAIMS} claims"),
                    ));
                }
                let required_claims = required_claims
                    .into_iter()
                    .map(|(name, json_value)| {
                        let field = "input.policy.jwt.requiredClaimsJson";
                        let name = validate::name(field, &name, 128)?;
                        if RESERVED_CLAIMS.contains(&name.as_str()) {
                            return Err(CommandError::invalid(
                                field,
                                format!("{name} is checked by every policy and cannot be required"),
                            ));
                        }
                        if json_value.len() > 1024
                            || serde_json::from_str::<serde_json::Value>(&json_value).is_err()
                        {
                            return Err(CommandError::invalid(
                                field,
                                format!("the value of {name} is not JSON (at most 1,024 bytes)"),
                            ));
                        }
                        Ok(RequiredClaim { name, json_value })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(PlaybackPolicy {
                    r#type: PlaybackPolicyType::Jwt as i32,
                    jwt: Some(PlaybackJwtPolicy {
                        allowed_kids,
                        required_audience,
                        required_claims,
                    }),
                    webhook: None,
                    allowed_origins: origins("input.policy.allowedOrigins", &allowed_origins)?,
                })
            }
            Self::Webhook {
                url,
                secret,
                timeout_ms,
                context,
                allowed_origins,
            } => {
                let url =
                    validate::public_url("input.policy.webhook.url", &url, &["https"], false)?;
                let timeout_ms = timeout_ms.unwrap_or(WEBHOOK_TIMEOUT_DEFAULT_MS);
                if !(WEBHOOK_TIMEOUT_MIN_MS..=WEBHOOK_TIMEOUT_MAX_MS).contains(&timeout_ms) {
                    return Err(CommandError::invalid(
                        "input.policy.webhook.timeoutMs",
                        format!(
                            "must be within {WEBHOOK_TIMEOUT_MIN_MS} and {WEBHOOK_TIMEOUT_MAX_MS}"
                        ),
                    ));
                }
                let context_json = match context {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(context @ serde_json::Value::Object(_)) => {
                        let json = context.to_string();
                        if json.len() > 4096 {
                            return Err(CommandError::invalid(
                                "input.policy.webhook.context",
                                "is larger than 4 KiB",
                            ));
                        }
                        json
                    }
                    Some(_) => {
                        return Err(CommandError::invalid(
                            "input.policy.webhook.context",
                            "must be a JSON object",
                        ));
                    }
                };
                let (sealed, secret_kept) = match secret {
                    Some(secret) => {
                        let plain = secret.expose();
                        if plain.len() < 16 || plain.len() > 256 {
                            return Err(CommandError::invalid(
                                "input.policy.webhook.secret",
                                "must be 16 to 256 bytes",
                            ));
                        }
                        (
                            Some(
                                secrets.seal(plain.as_bytes(), &webhook_secret_context(stream_id)),
                            ),
                            false,
                        )
                    }
                    None if has_webhook_secret => (None, true),
                    None => {
                        return Err(CommandError::invalid(
                            "input.policy.webhook.secret",
                            "is required for a new webhook policy",
                        ));
                    }
                };
                Ok(PlaybackPolicy {
                    r#type: PlaybackPolicyType::Webhook as i32,
                    jwt: None,
                    webhook: Some(PlaybackWebhookPolicy {
                        url: url.to_string(),
                        secret: sealed,
                        secret_kept,
                        timeout_ms,
                        context_json,
                    }),
                    allowed_origins: origins("input.policy.allowedOrigins", &allowed_origins)?,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Vec<(&str, &str)>, origins: Vec<&str>) -> PolicySpec {
        PolicySpec::Jwt {
            allowed_kids: vec!["mfrggzdfmztwq2lk".into()],
            required_audience: vec!["player".into()],
            required_claims: claims
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            allowed_origins: origins.into_iter().map(str::to_owned).collect(),
        }
    }

    fn field_of(error: CommandError) -> String {
        match error {
            CommandError::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn jwt_policies_are_checked() {
        let (secrets, _) = SecretBox::generate("t");
        let policy = jwt(
            vec![("tier", "\"gold\"")],
            vec!["https://watch.example.com:8443", "*"],
        )
        .into_policy("s1", false, &secrets)
        .expect("valid");
        assert_eq!(policy.r#type, PlaybackPolicyType::Jwt as i32);
        assert_eq!(
            policy.allowed_origins,
            ["https://watch.example.com:8443", "*"]
        );
        let refused =
            |spec: PolicySpec| field_of(spec.into_policy("s1", false, &secrets).unwrap_err());
        assert_eq!(
            refused(jwt(vec![("exp", "1")], vec![])),
            "input.policy.jwt.requiredClaimsJson"
        );
        assert_eq!(
            refused(jwt(vec![("tier", "not json")], vec![])),
            "input.policy.jwt.requiredClaimsJson"
        );
        assert_eq!(
            refused(jwt(vec![], vec!["https://watch.example.com/path"])),
            "input.policy.allowedOrigins"
        );
        assert_eq!(
            refused(PolicySpec::Jwt {
                allowed_kids: vec!["../etc".into()],
                required_audience: vec![],
                required_claims: vec![],
                allowed_origins: vec![],
            }),
            "input.policy.jwt.allowedKids"
        );
    }

    #[test]
    fn webhook_policies_seal_their_secret_or_keep_the_last() {
        let (secrets, _) = SecretBox::generate("t");
        let webhook = |url: &str, secret: Option<&str>| PolicySpec::Webhook {
            url: url.into(),
            secret: secret.map(SecretString::from),
            timeout_ms: None,
            context: Some(serde_json::json!({"site": "main"})),
            allowed_origins: vec![],
        };
        let set = webhook(
            "https://hooks.example.com/playback",
            Some("0123456789abcdef"),
        )
        .into_policy("s1", false, &secrets)
        .expect("valid");
        let hook = set.webhook.expect("a webhook");
        assert_eq!(hook.timeout_ms, WEBHOOK_TIMEOUT_DEFAULT_MS);
        assert_eq!(hook.context_json, r#"{"site":"main"}"#);
        let sealed = hook.secret.expect("sealed");
        assert_eq!(
            secrets
                .open(&sealed, &webhook_secret_context("s1"))
                .expect("opens"),
            b"0123456789abcdef"
        );
        let kept = webhook("https://hooks.example.com/v2", None)
            .into_policy("s1", true, &secrets)
            .expect("keeps the secret");
        assert!(
            kept.webhook
                .as_ref()
                .is_some_and(|w| w.secret_kept && w.secret.is_none())
        );
        let refused = |spec: PolicySpec, has: bool| {
            field_of(spec.into_policy("s1", has, &secrets).unwrap_err())
        };
        assert_eq!(
            refused(webhook("https://hooks.example.com/v2", None), false),
            "input.policy.webhook.secret"
        );
        assert_eq!(
            refused(
                webhook("http://hooks.example.com/", Some("0123456789abcdef")),
                false
            ),
            "input.policy.webhook.url"
        );
        assert_eq!(
            refused(
                webhook("https://10.0.0.5/hook", Some("0123456789abcdef")),
                false
            ),
            "input.policy.webhook.url"
        );
    }
}
