//! Secrets at rest: sealing with a key ring, random tokens, one-way hashes.
//!
//! Secrets the platform must give back later (stream keys, pull source URIs)
//! are sealed with AES-256-GCM under a data key from the key ring, with the
//! owning aggregate and field as associated data so a ciphertext cannot be
//! moved to another record. Secrets shown once (API tokens, enrolment
//! tokens) are kept only as SHA-256 hashes: they carry 256 random bits, so
//! an unsalted hash cannot be reversed. Passwords use argon2id.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use data_encoding::{BASE32_NOPAD, BASE64, BASE64URL_NOPAD};
use frameworks_events::proto::v1::common::SealedSecret;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    #[error("the key ring is empty: give at least one KEY_ID:BASE64_32_BYTES")]
    Empty,
    #[error("entry {index} is not KEY_ID:BASE64_32_BYTES")]
    Malformed { index: usize },
    #[error("key {kid:?} is not 32 bytes of standard base64")]
    BadKey { kid: String },
    #[error("key id {kid:?} appears twice")]
    Duplicate { kid: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("sealed with key {0:?}, which is not in the key ring")]
    UnknownKey(String),
    #[error("the sealed secret does not authenticate (wrong record, or tampered with)")]
    Tampered,
}

/// The data keys secrets are sealed with. The first key seals; all open.
#[derive(Clone)]
pub struct SecretBox {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SecretBox")
            .field("active", &self.active)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl SecretBox {
    /// Parses `KEY_ID:BASE64,KEY_ID:BASE64,...`; the first key is the active one.
    pub fn from_spec(spec: &str) -> Result<Self, KeyRingError> {
        let mut keys = HashMap::new();
        let mut active = None;
        for (index, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (kid, encoded) = entry
                .split_once(':')
                .ok_or(KeyRingError::Malformed { index })?;
            if kid.is_empty() {
                return Err(KeyRingError::Malformed { index });
            }
            let bad_key = || KeyRingError::BadKey {
                kid: kid.to_owned(),
            };
            let bytes = BASE64.decode(encoded.as_bytes()).map_err(|_| bad_key())?;
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| bad_key())?;
            if keys.insert(kid.to_owned(), cipher).is_some() {
                return Err(KeyRingError::Duplicate {
                    kid: kid.to_owned(),
                });
            }
            active.get_or_insert_with(|| kid.to_owned());
        }
        let active = active.ok_or(KeyRingError::Empty)?;
        Ok(Self { active, keys })
    }

    /// A fresh one-key ring and its spec, for development and tests.
    pub fn generate(kid: &str) -> (Self, String) {
        let spec = format!("{kid}:{}", BASE64.encode(&random_bytes::<32>()));
        let ring = Self::from_spec(&spec).expect("a generated spec is well-formed");
        (ring, spec)
    }

    /// Seals `plaintext`, bound to `context` (e.g. `stream/<id>/pull_source`).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> SealedSecret {
        let nonce = random_bytes::<12>();
        let cipher = &self.keys[&self.active];
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        SealedSecret {
            key_id: self.active.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, sealed: &SealedSecret, context: &str) -> Result<Vec<u8>, OpenError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let nonce = Nonce::try_from(sealed.nonce.as_slice()).map_err(|_| OpenError::Tampered)?;
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Tampered)
    }
}

/// A secret in a command (a password, a URI with credentials): usable as a
/// string, but printed as `<redacted>` so no log or panic message shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes
}

/// A bearer token: a prefix naming its kind, then 256 random bits.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", BASE64URL_NOPAD.encode(&random_bytes::<32>()))
}

/// Lowercase unpadded base32 of `N` random bytes (playback ids, key ids, kids).
pub fn random_id<const N: usize>() -> String {
    BASE32_NOPAD
        .encode(&random_bytes::<N>())
        .to_ascii_lowercase()
}

pub fn sha256(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

pub fn sha256_hex(value: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&sha256(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_in_their_context() {
        let (ring, _) = SecretBox::generate("k1");
        let sealed = ring.seal(b"rtmp://user:pass@origin/live", "stream/1/pull_source");
        assert_ne!(sealed.ciphertext, b"rtmp://user:pass@origin/live");
        assert_eq!(
            ring.open(&sealed, "stream/1/pull_source").unwrap(),
            b"rtmp://user:pass@origin/live"
        );
        assert_eq!(
            ring.open(&sealed, "stream/2/pull_source"),
            Err(OpenError::Tampered)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            ring.open(&tampered, "stream/1/pull_source"),
            Err(OpenError::Tampered)
        );
    }

    #[test]
    fn rotated_rings_still_open_old_secrets() {
        let (old, old_spec) = SecretBox::generate("k1");
        let sealed = old.seal(b"secret", "ctx");
        let (_, new_spec) = SecretBox::generate("k2");
        let rotated = SecretBox::from_spec(&format!("{new_spec},{old_spec}")).unwrap();
        assert_eq!(rotated.open(&sealed, "ctx").unwrap(), b"secret");
        assert_eq!(rotated.seal(b"x", "ctx").key_id, "k2");
        let (other, _) = SecretBox::generate("k3");
        assert_eq!(
            other.open(&sealed, "ctx"),
            Err(OpenError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn bad_key_rings_are_named() {
        assert!(matches!(SecretBox::from_spec(""), Err(KeyRingError::Empty)));
        assert!(matches!(
            SecretBox::from_spec("nokey"),
            Err(KeyRingError::Malformed { index: 0 })
        ));
        assert!(matches!(
            SecretBox::from_spec("k:c2hvcnQ="),
            Err(KeyRingError::BadKey { .. })
        ));
        let (_, spec) = SecretBox::generate("k");
        assert!(matches!(
            SecretBox::from_spec(&format!("{spec},{spec}")),
            Err(KeyRingError::Duplicate { .. })
        ));
        assert!(!format!("{:?}", SecretBox::from_spec(&spec).unwrap()).contains(&spec[2..]));
    }

    #[test]
    fn secret_strings_never_print() {
        let secret = SecretString::from("rtmp://user:hunter2@origin/live");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(<redacted>)");
        assert_eq!(secret.expose(), "rtmp://user:hunter2@origin/live");
    }

    #[test]
    fn tokens_and_ids_are_random_and_well_formed() {
        let a = new_token("fw_");
        assert!(a.starts_with("fw_") && a.len() == 3 + 43);
        assert_ne!(a, new_token("fw_"));
        let id = random_id::<10>();
        assert_eq!(id.len(), 16);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
