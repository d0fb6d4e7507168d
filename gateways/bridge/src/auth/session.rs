//! Session tokens: compact JWS (HS256) issued by /auth/login and
//! /auth/register. Only HS256 with our own secret verifies: the header's
//! algorithm is compared, never trusted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// The fixed header: `{"alg":"HS256","typ":"JWT"}`.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The user's id.
    pub sub: Uuid,
    /// The user's tenant.
    pub tid: Uuid,
    /// The user's role in the tenant.
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("not a session token")]
    Malformed,
    #[error("the session token's signature does not verify")]
    BadSignature,
    #[error("the session token has expired")]
    Expired,
}

#[derive(Clone)]
pub struct SessionKeys {
    secret: Vec<u8>,
    ttl_seconds: i64,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    pub fn new(secret: &str, ttl_seconds: u64) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            ttl_seconds: i64::try_from(ttl_seconds).unwrap_or(i64::MAX),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    /// A token for `user` of `tenant`, and when it expires.
    pub fn issue(&self, user: Uuid, tenant: Uuid, role: &str) -> (String, DateTime<Utc>) {
        let now = Utc::now().timestamp();
        let claims = SessionClaims {
            sub: user,
            tid: tenant,
            role: role.to_owned(),
            iat: now,
            exp: now.saturating_add(self.ttl_seconds),
        };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let expires = DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
        (format!("{signing_input}.{signature}"), expires)
    }

    pub fn verify(&self, token: &str) -> Result<SessionClaims, SessionError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| SessionError::Malformed)?;
        if header != HEADER.as_bytes() {
            return Err(SessionError::Malformed);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| SessionError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..token.rfind('.').unwrap_or_default()]);
        mac.verify_slice(&signature)
            .map_err(|_| SessionError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SessionError::Malformed)?;
        let claims: SessionClaims =
            serde_json::from_slice(&payload).map_err(|_| SessionError::Malformed)?;
        if claims.exp <= Utc::now().timestamp() {
            return Err(SessionError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_with_its_secret_only() {
        let keys = SessionKeys::new("a-secret-of-at-least-thirty-two-bytes!!", 60);
        let (user, tenant) = (Uuid::now_v7(), Uuid::now_v7());
        let (token, _) = keys.issue(user, tenant, "owner");
        let claims = keys.verify(&token).expect("verifies");
        assert_eq!(
            (claims.sub, claims.tid, claims.role.as_str()),
            (user, tenant, "owner")
        );

        let other = SessionKeys::new("another-secret-of-at-least-thirty-two-b", 60);
        assert_eq!(other.verify(&token), Err(SessionError::BadSignature));
        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').unwrap_or_default() + 3, 'x');
        assert!(keys.verify(&tampered).is_err());
        assert_eq!(keys.verify("fw_abc"), Err(SessionError::Malformed));
    }

    #[test]
    fn other_algorithms_and_expired_tokens_are_refused() {
        let keys = SessionKeys::new("a-secret-of-at-least-thirty-two-bytes!!", 60);
        let (token, _) = keys.issue(Uuid::now_v7(), Uuid::now_v7(), "owner");
        let rest = &token[token.find('.').unwrap_or_default()..];
        let none = format!(
            "{}{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(keys.verify(&none), Err(SessionError::Malformed));
        let expired = SessionKeys {
            ttl_seconds: -1,
            ..keys.clone()
        };
        let (old, _) = expired.issue(Uuid::now_v7(), Uuid::now_v7(), "owner");
        assert_eq!(keys.verify(&old), Err(SessionError::Expired));
    }
}
