//! Playback tokens: the JWTs viewers present for streams whose playback
//! policy is JWT, checked as the platform's contract says
//! (`../shared/contract/CONVENTIONS.md` §3.10, and the published client's
//! `sign_playback_token`):
//!
//! - compact JWS, header `{"alg":"ES256","kid":...,"typ":"JWT"}`; any other
//!   algorithm is refused;
//! - the `kid` must be one of the tenant's active signing keys, and one of
//!   the policy's `allowedKids` when it names any;
//! - the signature is the raw `r || s` (64 bytes) of ECDSA P-256 over
//!   SHA-256 of `header.payload`;
//! - `exp` is required; `exp`, `nbf` and `iat` are checked with 60 s leeway;
//! - `aud` (a string or an array) must share a value with the policy's
//!   `requiredAudience` when it names any;
//! - each required claim must be present and equal, byte for byte, to the
//!   policy's JSON for it, as Go's `json.Marshal` writes the claim.
//!
//! A refusal carries the contract's reason token (`jwt-expired`,
//! `missing-token`, `no-active-keys`, ...).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::{Map, Value};

/// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: i64 = 60;

/// What a JWT policy asks of a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtPolicy {
    /// Key ids the token may be signed with; empty: any active key.
    pub allowed_kids: Vec<String>,
    /// The token's `aud` must contain one of these; empty: any.
    pub required_audience: Vec<String>,
    /// Claim name and the JSON its value must marshal to.
    pub required_claims: Vec<(String, String)>,
}

/// A tenant's active signing keys, by key id.
#[derive(Debug, Clone, Default)]
pub struct SigningKeys {
    keys: HashMap<String, VerifyingKey>,
}

#[derive(Debug, thiserror::Error)]
#[error("the public key of {kid} is not a P-256 SubjectPublicKeyInfo")]
pub struct KeyError {
    pub kid: String,
}

impl SigningKeys {
    /// Keys from their ids and PKIX (SubjectPublicKeyInfo) DER encodings.
    pub fn from_der<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, KeyError> {
        let keys = keys
            .into_iter()
            .map(|(kid, der)| {
                VerifyingKey::from_public_key_der(der)
                    .map(|key| (kid.to_owned(), key))
                    .map_err(|_| KeyError {
                        kid: kid.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why a viewer's token does not open the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no token was presented")]
    MissingToken,
    #[error("the tenant has no active signing key")]
    NoActiveKeys,
    #[error("the token is not a compact JWS with JSON header and claims")]
    Malformed,
    #[error("the token is not signed with ES256")]
    Algorithm,
    #[error("the token names no key id")]
    MissingKid,
    #[error("the token's key is not an active key of the tenant")]
    UnknownKid,
    #[error("the token's key is not one the policy allows")]
    KidNotAllowed,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has no expiry")]
    MissingExpiry,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token is not for this audience")]
    Audience,
    #[error("the token's claim {0} is missing or differs")]
    Claim(String),
}

impl Denied {
    /// The contract's reason token.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing-token",
            Self::NoActiveKeys => "no-active-keys",
            Self::Malformed => "jwt-malformed",
            Self::Algorithm => "jwt-alg-not-allowed",
            Self::MissingKid => "jwt-missing-kid",
            Self::UnknownKid => "jwt-unknown-kid",
            Self::KidNotAllowed => "jwt-kid-not-allowed",
            Self::Signature => "jwt-bad-signature",
            Self::MissingExpiry => "jwt-missing-exp",
            Self::Expired => "jwt-expired",
            Self::NotYetValid => "jwt-not-yet-valid",
            Self::IssuedInFuture => "jwt-issued-in-future",
            Self::Audience => "jwt-audience-mismatch",
            Self::Claim(_) => "jwt-claim-mismatch",
        }
    }
}

/// The token a viewer brought, from USER_NEW's request URL (`?jwt=`) and
/// session token. Mist reads the session token from `?tkn=`, `?sid=`,
/// `?jwt=`, a cookie or an `Authorization: Bearer` header, and makes up a
/// number when the viewer brought none, so it counts only when it has a
/// JWT's shape.
pub fn viewer_token(url: &str, session_token: &str) -> Option<String> {
    token_in_url(url).or_else(|| {
        let parts: Vec<&str> = session_token.split('.').collect();
        (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then(|| session_token.to_owned())
    })
}

/// The viewer's token in a request URL: its `jwt` query parameter.
pub fn token_in_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(name, _)| name == "jwt")
        .map(|(_, value)| value.into_owned())
        .filter(|token| !token.is_empty())
}

fn segment(part: &str) -> Result<Map<String, Value>, Denied> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Denied::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Denied::Malformed),
    }
}

/// Checks `token` against `policy` and the tenant's `keys` at `now` (unix
/// seconds); the verified claims, or why the viewer is refused.
pub fn verify(
    token: Option<&str>,
    policy: &JwtPolicy,
    keys: &SigningKeys,
    now: i64,
) -> Result<Map<String, Value>, Denied> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(Denied::MissingToken)?;
    if keys.is_empty() {
        return Err(Denied::NoActiveKeys);
    }
    let mut parts = token.split('.');
    let (Some(header64), Some(claims64), Some(signature64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Denied::Malformed);
    };
    let header = segment(header64)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(Denied::Algorithm);
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|kid| !kid.is_empty())
        .ok_or(Denied::MissingKid)?;
    let key = keys.keys.get(kid).ok_or(Denied::UnknownKid)?;
    if !policy.allowed_kids.is_empty() && !policy.allowed_kids.iter().any(|k| k == kid) {
        return Err(Denied::KidNotAllowed);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature64)
        .ok()
        .and_then(|raw| Signature::from_slice(&raw).ok())
        .ok_or(Denied::Signature)?;
    let signed = &token[..header64.len() + 1 + claims64.len()];
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| Denied::Signature)?;
    let claims = segment(claims64)?;
    let time = |name: &str| claims.get(name).and_then(Value::as_f64);
    let expiry = time("exp").ok_or(Denied::MissingExpiry)?;
    let now = now as f64;
    let leeway = LEEWAY_SECONDS as f64;
    if now > expiry + leeway {
        return Err(Denied::Expired);
    }
    if time("nbf").is_some_and(|nbf| now + leeway < nbf) {
        return Err(Denied::NotYetValid);
    }
    if time("iat").is_some_and(|iat| iat > now + leeway) {
        return Err(Denied::IssuedInFuture);
    }
    if !policy.required_audience.is_empty() {
        let audience: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audience
            .iter()
            .any(|aud| policy.required_audience.iter().any(|r| r == aud))
        {
            return Err(Denied::Audience);
        }
    }
    for (name, json) in &policy.required_claims {
        let matches = claims
            .get(name)
            .is_some_and(|value| &go_json(value) == json);
        if !matches {
            return Err(Denied::Claim(name.clone()));
        }
    }
    Ok(claims)
}

/// A JSON value as Go's `json.Marshal` writes a decoded `interface{}`:
/// objects with sorted keys, no spaces, numbers as float64 (`%g`-like,
/// integers without a fraction), and `<`, `>`, `&`, U+2028 and U+2029
/// escaped in strings.
pub fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(value, &mut out);
    out
}

fn write_go_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_number(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => write_go_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(key, out);
                out.push(':');
                write_go_json(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float64 as Go's encoding/json writes it: the shortest representation
/// that round-trips, in fixed notation for 1e-6 <= |x| < 1e21, otherwise
/// exponent notation with a two-digit minimum exponent cleaned up as Go does
/// (`1e+21`, `1e-07`).
fn go_number(x: f64) -> String {
    let abs = x.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        // Rust's Display is the shortest round-tripping fixed form.
        let fixed = format!("{x}");
        return fixed;
    }
    // Rust: "1e21", "1.5e-7"; Go: "1e+21", "1.5e-07".
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;
    use serde_json::json;

    const NOW: i64 = 1_795_237_048;

    struct Tenant {
        signing: SigningKey,
        keys: SigningKeys,
    }

    fn tenant(kid: &str) -> Tenant {
        let signing = SigningKey::from_slice(&[7u8; 32]).expect("a valid scalar");
        let der = signing
            .verifying_key()
            .to_public_key_der()
            .expect("encodes");
        let keys = SigningKeys::from_der([(kid, der.as_bytes())]).expect("a P-256 key");
        Tenant { signing, keys }
    }

    /// A token as the client's sign_playback_token makes it: canonical JSON
    /// (sorted keys, no spaces), base64url without padding, raw r||s.
    fn token(signing: &SigningKey, header: Value, claims: Value) -> String {
        let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", encode(&header), encode(&claims));
        let signature: Signature = signing.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn es256(kid: &str) -> Value {
        json!({"alg": "ES256", "kid": kid, "typ": "JWT"})
    }

    #[test]
    fn a_valid_token_opens_and_each_rule_refuses_with_its_reason() {
        let t = tenant("kid1");
        let open = JwtPolicy::default();
        let good = token(
            &t.signing,
            es256("kid1"),
            json!({"exp": NOW + 300, "sub": "v1"}),
        );
        assert_eq!(
            verify(Some(&good), &open, &t.keys, NOW).expect("opens")["sub"],
            "v1"
        );

        let reason = |token: Option<&str>, policy: &JwtPolicy, keys: &SigningKeys| {
            verify(token, policy, keys, NOW)
                .expect_err("refused")
                .reason()
        };
        assert_eq!(reason(None, &open, &t.keys), "missing-token");
        assert_eq!(
            reason(Some(&good), &open, &SigningKeys::default()),
            "no-active-keys"
        );
        assert_eq!(reason(Some("a.b"), &open, &t.keys), "jwt-malformed");
        let hs = token(
            &t.signing,
            json!({"alg": "HS256", "kid": "kid1"}),
            json!({"exp": NOW + 300}),
        );
        assert_eq!(reason(Some(&hs), &open, &t.keys), "jwt-alg-not-allowed");
        let no_kid = token(
            &t.signing,
            json!({"alg": "ES256"}),
            json!({"exp": NOW + 300}),
        );
        assert_eq!(reason(Some(&no_kid), &open, &t.keys), "jwt-missing-kid");
        let other = token(&t.signing, es256("kid2"), json!({"exp": NOW + 300}));
        assert_eq!(reason(Some(&other), &open, &t.keys), "jwt-unknown-kid");
        let only_kid9 = JwtPolicy {
            allowed_kids: vec!["kid9".into()],
            ..Default::default()
        };
        assert_eq!(
            reason(Some(&good), &only_kid9, &t.keys),
            "jwt-kid-not-allowed"
        );
        let forged = format!("{}x", &good[..good.len() - 1]);
        assert_eq!(reason(Some(&forged), &open, &t.keys), "jwt-bad-signature");
        let stranger = SigningKey::from_slice(&[9u8; 32]).expect("a valid scalar");
        let foreign = token(&stranger, es256("kid1"), json!({"exp": NOW + 300}));
        assert_eq!(reason(Some(&foreign), &open, &t.keys), "jwt-bad-signature");
        let forever = token(&t.signing, es256("kid1"), json!({"sub": "v1"}));
        assert_eq!(reason(Some(&forever), &open, &t.keys), "jwt-missing-exp");
        let late = token(&t.signing, es256("kid1"), json!({"exp": NOW - 61}));
        assert_eq!(reason(Some(&late), &open, &t.keys), "jwt-expired");
        let early = token(
            &t.signing,
            es256("kid1"),
            json!({"exp": NOW + 900, "nbf": NOW + 61}),
        );
        assert_eq!(reason(Some(&early), &open, &t.keys), "jwt-not-yet-valid");
        let future = token(
            &t.signing,
            es256("kid1"),
            json!({"exp": NOW + 900, "iat": NOW + 61}),
        );
        assert_eq!(
            reason(Some(&future), &open, &t.keys),
            "jwt-issued-in-future"
        );
    }

    #[test]
    fn leeway_audience_and_required_claims() {
        let t = tenant("kid1");
        let open = JwtPolicy::default();
        let just_expired = token(&t.signing, es256("kid1"), json!({"exp": NOW - 59}));
        assert!(
            verify(Some(&just_expired), &open, &t.keys, NOW).is_ok(),
            "60 s leeway"
        );

        let audience = JwtPolicy {
            required_audience: vec!["player".into(), "tv".into()],
            ..Default::default()
        };
        let one = token(
            &t.signing,
            es256("kid1"),
            json!({"exp": NOW + 60, "aud": "tv"}),
        );
        let many = token(
            &t.signing,
            es256("kid1"),
            json!({"exp": NOW + 60, "aud": ["web", "player"]}),
        );
        let none = token(
            &t.signing,
            es256("kid1"),
            json!({"exp": NOW + 60, "aud": ["web"]}),
        );
        assert!(verify(Some(&one), &audience, &t.keys, NOW).is_ok());
        assert!(verify(Some(&many), &audience, &t.keys, NOW).is_ok());
        assert_eq!(
            verify(Some(&none), &audience, &t.keys, NOW).expect_err("refused"),
            Denied::Audience
        );

        let claims = JwtPolicy {
            required_claims: vec![
                ("tier".into(), "\"gold\"".into()),
                ("seats".into(), "3".into()),
                ("scope".into(), "{\"a\":1,\"b\":[true,null]}".into()),
            ],
            ..Default::default()
        };
        let matching = token(
            &t.signing,
            es256("kid1"),
            json!({"exp": NOW + 60, "tier": "gold", "seats": 3.0, "scope": {"b": [true, null], "a": 1}}),
        );
        assert!(verify(Some(&matching), &claims, &t.keys, NOW).is_ok());
        let differing = token(
            &t.signing,
            es256("kid1"),
            json!({"exp": NOW + 60, "tier": "silver", "seats": 3, "scope": {"a": 1, "b": [true, null]}}),
        );
        assert_eq!(
            verify(Some(&differing), &claims, &t.keys, NOW).expect_err("refused"),
            Denied::Claim("tier".into())
        );
    }

    #[test]
    fn claims_marshal_as_go_does() {
        assert_eq!(go_json(&json!(42.0)), "42");
        assert_eq!(go_json(&json!(1.5)), "1.5");
        assert_eq!(go_json(&json!(1e21)), "1e+21");
        assert_eq!(go_json(&json!(0.000_000_1)), "1e-07");
        assert_eq!(go_json(&json!("a<b>&c")), "\"a\\u003cb\\u003e\\u0026c\"");
        assert_eq!(
            go_json(&json!({"z": 1, "a": [1, "x"]})),
            "{\"a\":[1,\"x\"],\"z\":1}"
        );
    }

    #[test]
    fn the_token_is_read_from_the_request_url() {
        assert_eq!(
            token_in_url("http://e/hls/pb/index.m3u8?jwt=abc.def.ghi&x=1").as_deref(),
            Some("abc.def.ghi")
        );
        assert_eq!(token_in_url("http://e/hls/pb/index.m3u8"), None);
        assert_eq!(token_in_url("http://e/hls/pb/index.m3u8?jwt="), None);
        assert_eq!(
            viewer_token("http://e/hls/pb/index.m3u8", "abc.def.ghi").as_deref(),
            Some("abc.def.ghi"),
            "a token Mist read from a cookie or a Bearer header"
        );
        assert_eq!(
            viewer_token("http://e/hls/pb/index.m3u8", "3815161789"),
            None
        );
        assert_eq!(
            viewer_token("http://e/x?jwt=u.r.l", "s.e.ss").as_deref(),
            Some("u.r.l")
        );
    }
}
