//! Playback tokens signed by the published client (`sign_playback_token`,
//! livepeer-frameworks 0.4.0) verify with the edge's checker, and its
//! claims compare as the policy's JSON says.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::process::Command;

use frameworks_edge::playback::{JwtPolicy, SigningKeys, verify};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use support::client_python;

const SIGN: &str = r#"
import json, sys
from livepeer_frameworks import sign_playback_token
pem, kid, expires_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(sign_playback_token(
    pem, kid, expires_at=expires_at, subject="viewer-7",
    audience=["player", "tv"], claims={"tier": "gold", "seats": 3, "scope": {"b": [True], "a": "x<y"}},
))
"#;

fn sign_with_the_client(pem: &str, kid: &str, expires_at: i64) -> String {
    let output = Command::new(client_python())
        .args(["-c", SIGN, pem, kid, &expires_at.to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn tokens_signed_by_the_published_client_verify() {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).unwrap();
    secret[0] = secret[0].max(1);
    let signing = SigningKey::from_slice(&secret).unwrap();
    let pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public = signing.verifying_key().to_public_key_der().unwrap();
    let kid = "mfrggzdfmztwq2lk";
    let keys = SigningKeys::from_der([(kid, public.as_bytes())]).unwrap();
    let now = chrono::Utc::now().timestamp();

    let token = sign_with_the_client(&pem, kid, now + 300);
    let policy = JwtPolicy {
        allowed_kids: vec![kid.into()],
        required_audience: vec!["tv".into()],
        required_claims: vec![
            ("tier".into(), "\"gold\"".into()),
            ("seats".into(), "3".into()),
            ("scope".into(), "{\"a\":\"x\\u003cy\",\"b\":[true]}".into()),
        ],
    };
    let claims = verify(Some(&token), &policy, &keys, now).unwrap();
    assert_eq!(claims["sub"], "viewer-7");

    let expired = sign_with_the_client(&pem, kid, now - 120);
    assert_eq!(
        verify(Some(&expired), &policy, &keys, now)
            .unwrap_err()
            .reason(),
        "jwt-expired"
    );
    let gold_only = JwtPolicy {
        required_claims: vec![("tier".into(), "\"platinum\"".into())],
        ..Default::default()
    };
    assert_eq!(
        verify(Some(&token), &gold_only, &keys, now)
            .unwrap_err()
            .reason(),
        "jwt-claim-mismatch"
    );
}
