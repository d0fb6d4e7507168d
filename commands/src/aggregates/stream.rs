//! Streams and their keys.
//!
//! A stream has one primary key (shown on the stream, replaced by a refresh)
//! and any number of extra keys. Keys are sealed in events, so callers with
//! the right scope can read them back, and claimed by their SHA-256 so an
//! edge's ingest look-up finds the stream without opening anything.

use std::collections::BTreeMap;

use frameworks_events::proto::v1::stream::{
    IngestMode, StreamCreated, StreamDeleted, StreamKeyCreated, StreamKeyDeleted, StreamKeyRotated,
    StreamPlaybackPolicySet, StreamUpdated,
};
use frameworks_events::{AggregateType, Event, EventPayload};

use super::playback_policy::PolicySpec;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{Aggregate, Decision, HandleEnv};
use crate::aggregates::claims;
use crate::error::CommandError;
use crate::secrets::{SecretString, random_id, sha256, sha256_hex};
use crate::store::Claim;
use crate::validate;

/// Extra keys a stream may hold besides its primary.
pub const MAX_KEYS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ingest {
    Push,
    Pull,
}

#[derive(Debug, Default)]
pub struct Stream {
    owner: Option<Uuid>,
    exists: bool,
    deleted: bool,
    ingest: Option<IngestMode>,
    has_pull_source: bool,
    playback_id: String,
    primary_key: String,
    /// key id -> SHA-256 of the key.
    keys: BTreeMap<String, Vec<u8>>,
    /// The current playback policy holds a webhook secret an update may keep.
    has_webhook_secret: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StreamCommand {
    Create {
        name: String,
        description: String,
        record: bool,
        ingest: Ingest,
        /// Required for PULL; may carry credentials, so it is sealed at once
        /// and left out of idempotency fingerprints.
        #[serde(skip)]
        pull_source: Option<SecretString>,
        /// Deployments that pull from their own network allow private addresses.
        allow_private_sources: bool,
    },
    Update {
        name: Option<String>,
        description: Option<String>,
        record: Option<bool>,
        ingest: Option<Ingest>,
        /// `Some(None)` removes the pull source.
        #[serde(skip)]
        pull_source: Option<Option<SecretString>>,
        allow_private_sources: bool,
    },
    Delete,
    RefreshKey,
    AddKey {
        label: String,
    },
    DeleteKey {
        key_id: String,
    },
    /// Who may watch the stream from now on.
    SetPlaybackPolicy(PolicySpec),
}

/// What a caller learns; the stream key is only handed out to callers with
/// `streams:write` (the gateway drops it otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamOutcome {
    Done,
    Created {
        playback_id: String,
        key_id: String,
        stream_key: String,
    },
    Key {
        key_id: String,
        stream_key: String,
    },
}

fn new_stream_key() -> String {
    format!("sk_{}", random_id::<24>())
}

fn key_claim(hash: &[u8]) -> Claim {
    Claim::new(
        claims::STREAM_KEY_HASH,
        data_encoding::HEXLOWER.encode(hash),
    )
}

/// The context a stream key is sealed under: opening needs the same one.
pub fn key_context(stream_id: &str, key_id: &str) -> String {
    format!("stream/{stream_id}/key/{key_id}")
}

/// The context a pull source URI is sealed under.
pub fn pull_source_context(stream_id: &str) -> String {
    format!("stream/{stream_id}/pull_source")
}

impl Stream {
    fn sealed_key(
        env: &HandleEnv<'_>,
        key_id: &str,
        key: &str,
    ) -> frameworks_events::proto::v1::common::SealedSecret {
        env.secrets
            .seal(key.as_bytes(), &key_context(env.aggregate_id, key_id))
    }

    fn sealed_source(
        env: &HandleEnv<'_>,
        uri: &str,
    ) -> frameworks_events::proto::v1::common::SealedSecret {
        env.secrets
            .seal(uri.as_bytes(), &pull_source_context(env.aggregate_id))
    }
}

fn ingest_mode(ingest: Ingest) -> IngestMode {
    match ingest {
        Ingest::Push => IngestMode::Push,
        Ingest::Pull => IngestMode::Pull,
    }
}

impl Aggregate for Stream {
    const TYPE: AggregateType = AggregateType::Stream;
    const RESOURCE: &'static str = "stream";
    type Command = StreamCommand;
    type Outcome = StreamOutcome;

    fn apply(&mut self, event: &Event) {
        match &event.payload {
            EventPayload::StreamCreated(created) => {
                self.exists = true;
                self.owner = event.tenant_id;
                self.ingest = IngestMode::try_from(created.ingest_mode).ok();
                self.has_pull_source = created.pull_source.is_some();
                self.playback_id = created.playback_id.clone();
            }
            EventPayload::StreamUpdated(update) => {
                if let Some(mode) = update.ingest_mode {
                    self.ingest = IngestMode::try_from(mode).ok();
                }
                if update.pull_source.is_some() {
                    self.has_pull_source = true;
                }
                if update.pull_source_cleared {
                    self.has_pull_source = false;
                }
            }
            EventPayload::StreamDeleted(_) => self.deleted = true,
            EventPayload::StreamKeyCreated(key) => {
                self.keys
                    .insert(key.key_id.clone(), key.lookup_hash.clone());
                if key.primary {
                    self.primary_key = key.key_id.clone();
                }
            }
            EventPayload::StreamKeyRotated(key) => {
                self.keys.remove(&key.previous_key_id);
                self.keys
                    .insert(key.key_id.clone(), key.lookup_hash.clone());
                self.primary_key = key.key_id.clone();
            }
            EventPayload::StreamKeyDeleted(key) => {
                self.keys.remove(&key.key_id);
            }
            EventPayload::StreamPlaybackPolicySet(set) => {
                let webhook = set.policy.as_ref().and_then(|p| p.webhook.as_ref());
                self.has_webhook_secret = webhook.is_some_and(|w| {
                    w.secret.is_some() || (w.secret_kept && self.has_webhook_secret)
                });
            }
            _ => {}
        }
    }

    fn owner(&self, _: &str) -> Option<Uuid> {
        self.owner
    }

    fn handle(
        &self,
        command: &StreamCommand,
        env: &HandleEnv<'_>,
    ) -> Result<Decision<StreamOutcome>, CommandError> {
        let id = env.aggregate_id;
        if let StreamCommand::Create {
            name,
            description,
            record,
            ingest,
            pull_source,
            allow_private_sources,
        } = command
        {
            env.ctx.require_tenant()?;
            if self.exists {
                return Err(CommandError::Conflict(format!(
                    "stream {id} already exists"
                )));
            }
            let name = validate::name("input.name", name, 100)?;
            let description = validate::text("input.description", description, 2000)?;
            let pull_source = match (ingest, pull_source) {
                (Ingest::Pull, Some(uri)) => {
                    let url = validate::pull_source(
                        "input.pullSource",
                        uri.expose(),
                        *allow_private_sources,
                    )?;
                    Some(Self::sealed_source(env, url.as_str()))
                }
                (Ingest::Pull, None) => {
                    return Err(CommandError::invalid(
                        "input.pullSource",
                        "is required for PULL streams",
                    ));
                }
                (Ingest::Push, Some(_)) => {
                    return Err(CommandError::invalid(
                        "input.pullSource",
                        "is only allowed for PULL streams",
                    ));
                }
                (Ingest::Push, None) => None,
            };
            let playback_id = random_id::<12>();
            let key_id = Uuid::now_v7().to_string();
            let stream_key = new_stream_key();
            let hash = sha256(stream_key.as_bytes()).to_vec();
            return Ok(Decision::new(StreamOutcome::Created {
                playback_id: playback_id.clone(),
                key_id: key_id.clone(),
                stream_key: stream_key.clone(),
            })
            .event(StreamCreated {
                name,
                description,
                record: *record,
                ingest_mode: ingest_mode(*ingest) as i32,
                pull_source,
                playback_id: playback_id.clone(),
            })
            .event(StreamKeyCreated {
                key: Some(Self::sealed_key(env, &key_id, &stream_key)),
                key_id,
                primary: true,
                label: "primary".into(),
                lookup_hash: hash.clone(),
            })
            .claim(Claim::new(claims::PLAYBACK_ID, playback_id))
            .claim(key_claim(&hash)));
        }

        if !self.exists || self.deleted {
            return Err(CommandError::not_found(Self::RESOURCE, id));
        }
        env.ctx.ensure_owner(self.owner, Self::RESOURCE, id)?;
        match command {
            StreamCommand::Create { .. } => unreachable!("handled above"),
            StreamCommand::Update {
                name,
                description,
                record,
                ingest,
                pull_source,
                allow_private_sources,
            } => {
                let mut update = StreamUpdated {
                    name: name
                        .as_deref()
                        .map(|n| validate::name("input.name", n, 100))
                        .transpose()?,
                    description: description
                        .as_deref()
                        .map(|d| validate::text("input.description", d, 2000))
                        .transpose()?,
                    record: *record,
                    ingest_mode: ingest.map(|i| ingest_mode(i) as i32),
                    ..Default::default()
                };
                match pull_source {
                    Some(Some(uri)) => {
                        let url = validate::pull_source(
                            "input.pullSource",
                            uri.expose(),
                            *allow_private_sources,
                        )?;
                        update.pull_source = Some(Self::sealed_source(env, url.as_str()));
                    }
                    Some(None) => update.pull_source_cleared = true,
                    None => {}
                }
                let mode = ingest.map(ingest_mode).or(self.ingest);
                let will_have_source = (self.has_pull_source && !update.pull_source_cleared)
                    || update.pull_source.is_some();
                if mode == Some(IngestMode::Pull) && !will_have_source {
                    return Err(CommandError::invalid(
                        "input.pullSource",
                        "is required for PULL streams",
                    ));
                }
                if mode == Some(IngestMode::Push) && update.pull_source.is_some() {
                    return Err(CommandError::invalid(
                        "input.pullSource",
                        "is only allowed for PULL streams",
                    ));
                }
                if update == StreamUpdated::default() {
                    return Err(CommandError::invalid("input", "names no field to change"));
                }
                Ok(Decision::new(StreamOutcome::Done).event(update))
            }
            StreamCommand::Delete => {
                let mut decision = Decision::new(StreamOutcome::Done)
                    .event(StreamDeleted {
                        reason: String::new(),
                    })
                    .release(Claim::new(claims::PLAYBACK_ID, self.playback_id.clone()));
                for hash in self.keys.values() {
                    decision = decision.release(key_claim(hash));
                }
                Ok(decision)
            }
            StreamCommand::RefreshKey => {
                let key_id = Uuid::now_v7().to_string();
                let stream_key = new_stream_key();
                let hash = sha256(stream_key.as_bytes()).to_vec();
                let mut decision = Decision::new(StreamOutcome::Key {
                    key_id: key_id.clone(),
                    stream_key: stream_key.clone(),
                })
                .event(StreamKeyRotated {
                    key: Some(Self::sealed_key(env, &key_id, &stream_key)),
                    key_id,
                    previous_key_id: self.primary_key.clone(),
                    lookup_hash: hash.clone(),
                })
                .claim(key_claim(&hash));
                if let Some(old) = self.keys.get(&self.primary_key) {
                    decision = decision.release(key_claim(old));
                }
                Ok(decision)
            }
            StreamCommand::AddKey { label } => {
                let label = validate::name("input.label", label, 100)?;
                if self.keys.len() > MAX_KEYS {
                    return Err(CommandError::invalid(
                        "input",
                        format!("a stream may hold at most {MAX_KEYS} extra keys"),
                    ));
                }
                let key_id = Uuid::now_v7().to_string();
                let stream_key = new_stream_key();
                let hash = sha256(stream_key.as_bytes()).to_vec();
                Ok(Decision::new(StreamOutcome::Key {
                    key_id: key_id.clone(),
                    stream_key: stream_key.clone(),
                })
                .event(StreamKeyCreated {
                    key: Some(Self::sealed_key(env, &key_id, &stream_key)),
                    key_id,
                    primary: false,
                    label,
                    lookup_hash: hash.clone(),
                })
                .claim(key_claim(&hash)))
            }
            StreamCommand::DeleteKey { key_id } => {
                let hash = self
                    .keys
                    .get(key_id)
                    .ok_or_else(|| CommandError::not_found("stream key", key_id.clone()))?;
                if *key_id == self.primary_key {
                    return Err(CommandError::invalid(
                        "input.keyId",
                        "the primary key cannot be deleted; refresh it instead",
                    ));
                }
                Ok(Decision::new(StreamOutcome::Done)
                    .event(StreamKeyDeleted {
                        key_id: key_id.clone(),
                    })
                    .release(key_claim(hash)))
            }
            StreamCommand::SetPlaybackPolicy(spec) => {
                let policy = spec
                    .clone()
                    .into_policy(id, self.has_webhook_secret, env.secrets)?;
                Ok(
                    Decision::new(StreamOutcome::Done).event(StreamPlaybackPolicySet {
                        policy: Some(policy),
                    }),
                )
            }
        }
    }
}

/// The claim value an ingest look-up searches for a presented stream key.
pub fn stream_key_lookup(stream_key: &str) -> String {
    sha256_hex(stream_key.as_bytes())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::aggregate::CommandContext;
    use crate::testing::AggregateTest;

    fn tenant() -> CommandContext {
        CommandContext::for_tenant(Uuid::now_v7(), "user:test")
    }

    fn create(name: &str, ingest: Ingest, pull_source: Option<&str>) -> StreamCommand {
        StreamCommand::Create {
            name: name.into(),
            description: String::new(),
            record: false,
            ingest,
            pull_source: pull_source.map(Into::into),
            allow_private_sources: false,
        }
    }

    fn create_push(name: &str) -> StreamCommand {
        create(name, Ingest::Push, None)
    }

    #[test]
    fn bad_input_is_refused_naming_the_field() {
        let cases = [
            (create_push(""), "input.name"),
            (create_push(&"x".repeat(101)), "input.name"),
            (
                create("pull", Ingest::Pull, Some("ftp://origin.example.com/live")),
                "input.pullSource",
            ),
            (
                create("pull", Ingest::Pull, Some("rtmp://192.168.1.20/live/cam")),
                "input.pullSource",
            ),
            (
                create("pull", Ingest::Pull, Some("rtmp://127.0.0.1/live")),
                "input.pullSource",
            ),
            (create("pull", Ingest::Pull, None), "input.pullSource"),
        ];
        for (command, field) in cases {
            AggregateTest::<Stream>::new(tenant())
                .when(&command)
                .then_invalid(field);
        }
    }

    #[test]
    fn another_tenants_stream_reads_as_missing() {
        let stream = AggregateTest::<Stream>::new(tenant())
            .given_commands([create_push("mine")])
            .acting_as(tenant());
        for command in [StreamCommand::Delete, StreamCommand::RefreshKey] {
            let refused = stream.when(&command).then_refused();
            assert!(
                matches!(refused, CommandError::NotFound { .. }),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn secrets_are_sealed_in_the_events_a_creation_decides() {
        let source = "rtmp://ingest:s3cret@origin.example.com/live/main";
        let stream = AggregateTest::<Stream>::new(tenant());
        let mut decided = Vec::new();
        let outcome = stream
            .when(&create("pulled", Ingest::Pull, Some(source)))
            .then_events(|events| decided = events.to_vec());
        let StreamOutcome::Created {
            playback_id,
            stream_key,
            ..
        } = outcome
        else {
            panic!("expected a creation, got {outcome:?}");
        };
        assert!(playback_id.len() >= 20 && stream_key.starts_with("sk_"));
        for event in &decided {
            let bytes = event.encode_to_vec();
            assert!(
                !bytes.windows(6).any(|w| w == b"s3cret"),
                "pull source in clear"
            );
            assert!(
                !bytes
                    .windows(stream_key.len())
                    .any(|w| w == stream_key.as_bytes()),
                "stream key in clear"
            );
        }
        let Some(EventPayload::StreamCreated(created)) = decided.first() else {
            panic!("a creation starts with StreamCreated: {decided:?}");
        };
        let context = format!("stream/{}/pull_source", stream.aggregate_id());
        let opened = stream
            .secrets()
            .open(
                created.pull_source.as_ref().expect("sealed source"),
                &context,
            )
            .expect("the source opens with the ring");
        assert_eq!(opened, source.as_bytes());
    }

    #[test]
    fn a_refresh_rotates_the_primary_key() {
        let mut created_key = String::new();
        let stream = AggregateTest::<Stream>::new(tenant()).given_commands([create_push("cam")]);
        let StreamOutcome::Key { key_id, stream_key } = stream
            .when(&StreamCommand::RefreshKey)
            .then_events(|events| match events {
                [EventPayload::StreamKeyRotated(rotated)] => {
                    created_key = rotated.previous_key_id.clone();
                    assert_eq!(rotated.lookup_hash.len(), 32);
                }
                other => panic!("expected one StreamKeyRotated, got {other:?}"),
            })
        else {
            panic!("a refresh answers the new key");
        };
        assert!(stream_key.starts_with("sk_"));
        assert!(!created_key.is_empty() && key_id != created_key);
        // The created key is still the primary one (the refresh was only
        // decided): it cannot be deleted, only replaced.
        stream
            .when(&StreamCommand::DeleteKey {
                key_id: created_key,
            })
            .then_invalid("input.keyId");
    }

    #[test]
    fn a_deleted_stream_is_gone_for_every_command() {
        let stream = AggregateTest::<Stream>::new(tenant())
            .given_commands([create_push("cam"), StreamCommand::Delete]);
        for command in [
            StreamCommand::RefreshKey,
            StreamCommand::Delete,
            StreamCommand::AddKey {
                label: "backup".into(),
            },
        ] {
            let refused = stream.when(&command).then_refused();
            assert!(
                matches!(refused, CommandError::NotFound { .. }),
                "{refused:?}"
            );
        }
    }
}
