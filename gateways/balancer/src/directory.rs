//! What the balancer knows about streams, read from the control-plane
//! projections: which stream a key publishes to (and whether it may), which
//! stream a playback id plays and who may watch it, whose a stream is.
//!
//! Look-ups are cached for a short TTL. Events that change an answer (a key
//! created, rotated or deleted, a stream updated or deleted, a tenant
//! suspended or reactivated) drop the cached answers they touch at once,
//! and [`Directory::forget`] says which, so the balancer can tell the edges
//! to drop theirs too. Whether a stream is already live somewhere is never
//! cached: it is read from the live state on every ingest decision.
//!
//! It also knows which clusters a tenant may use (its own, the platform's
//! shared ones, and those it holds an active subscription to), so that
//! viewers and encoders are placed on those only.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use frameworks_commands::SecretBox;
use frameworks_commands::aggregates::stream::pull_source_context;
use frameworks_edge_protocol::proto::{self, route};
use frameworks_events::proto::v1::common::SealedSecret;
use frameworks_events::proto::v1::stream::{PlaybackPolicy, PlaybackPolicyType};
use frameworks_events::{AggregateType, Event, EventPayload};
use frameworks_projections::control_plane;
use frameworks_projections::live::LiveState;
use frameworks_projections::queries::accounts;
use frameworks_projections::queries::clusters::usable_ids;
use frameworks_projections::queries::streams::{self as read_model, KeyedStream};
use frameworks_projections::read_your_writes::ProjectionWatcher;
use metrics::counter;
use prost::Message;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tracing::warn;
use uuid::Uuid;

/// How long an invalidation waits for the projection to hold its event.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

/// The Mist stream template every platform stream is a wildcard of.
pub const STREAM_TEMPLATE: &str = "live";

/// Mist's name for a platform stream: `live+<stream id>`.
pub fn internal_name(stream: Uuid) -> String {
    format!("{STREAM_TEMPLATE}+{stream}")
}

/// The platform stream behind a Mist stream name, if it is one.
pub fn stream_of(internal_name: &str) -> Option<Uuid> {
    let (template, rest) = internal_name.split_once('+')?;
    if template != STREAM_TEMPLATE {
        return None;
    }
    Uuid::parse_str(rest).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("reading the control-plane projections")]
    Postgres(#[from] sqlx::Error),
    #[error("reading the live state")]
    Redis(#[from] redis::RedisError),
}

/// Why a stream key may not publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestRefusal {
    UnknownKey,
    StreamDeleted,
    TenantSuspended,
    /// The stream is live on another edge.
    LiveElsewhere {
        node: String,
    },
}

impl fmt::Display for IngestRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey => f.write_str("unknown stream key"),
            Self::StreamDeleted => f.write_str("the stream was deleted"),
            Self::TenantSuspended => f.write_str("the tenant is suspended"),
            Self::LiveElsewhere { node } => write!(f, "the stream is live on node {node}"),
        }
    }
}

/// May this key publish, from this edge, now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestDecision {
    Accept { stream: Uuid, tenant: Option<Uuid> },
    Refuse(IngestRefusal),
}

/// Who may watch a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Viewers {
    Public,
    /// The stream cannot be watched now (its tenant is suspended, or its
    /// policy is one edges cannot apply).
    Denied,
    /// Viewers with a playback token the rule accepts (a JWT policy, with
    /// the tenant's active signing keys).
    Token(proto::JwtRule),
}

/// The stream a playback id plays.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaybackTarget {
    pub stream: Uuid,
    pub tenant: Option<Uuid>,
    pub viewers: Viewers,
    /// A pull stream's source, sealed as the event store keeps it
    /// ([`pull_source_uri`] opens it for an edge).
    pub sealed_pull_source: Option<Vec<u8>>,
}

pub use read_model::StreamOwner;

/// A key's static facts (everything but where the stream is live).
#[derive(Debug, Clone)]
enum KeyFacts {
    Unknown,
    Known {
        stream: Uuid,
        tenant: Option<Uuid>,
        deleted: bool,
        suspended: bool,
    },
}

impl KeyFacts {
    /// The decision these facts alone make (where the stream is live aside).
    fn decision(&self) -> IngestDecision {
        match *self {
            Self::Unknown => IngestDecision::Refuse(IngestRefusal::UnknownKey),
            Self::Known { deleted: true, .. } => {
                IngestDecision::Refuse(IngestRefusal::StreamDeleted)
            }
            Self::Known {
                suspended: true, ..
            } => IngestDecision::Refuse(IngestRefusal::TenantSuspended),
            Self::Known { stream, tenant, .. } => IngestDecision::Accept { stream, tenant },
        }
    }
}

#[derive(Debug, Default)]
struct Cache {
    /// Bumped by every invalidation: an answer read before one is not cached after it.
    epoch: u64,
    keys: HashMap<String, (Instant, KeyFacts)>,
    playback: HashMap<String, (Instant, Option<PlaybackTarget>)>,
    owners: HashMap<Uuid, (Instant, Option<StreamOwner>)>,
    clusters: HashMap<Uuid, (Instant, ClusterSet)>,
}

/// Longer playback ids are unknown without a look-up.
const MAX_PLAYBACK_ID_BYTES: usize = 128;

/// Answers one cache map holds at most. Unknown ids are cached too (a
/// miss costs a query), so a flood of made-up ones would grow a map without
/// end: past this many, expired answers are dropped, and if that is not
/// enough, all of them.
const MAX_CACHED: usize = 100_000;

/// Caches `value` under `key`, keeping `map` within [`MAX_CACHED`] entries.
fn remember<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, (Instant, V)>,
    key: K,
    value: V,
    ttl: Duration,
) {
    if map.len() >= MAX_CACHED && !map.contains_key(&key) {
        map.retain(|_, (at, _)| at.elapsed() < ttl);
        if map.len() >= MAX_CACHED {
            counter!("frameworks_balancer_directory_overflows_total").increment(1);
            map.clear();
        }
    }
    map.insert(key, (Instant::now(), value));
}

/// The clusters (by id) a tenant may place viewers and encoders on.
pub type ClusterSet = Arc<HashSet<String>>;

/// What an event made the directory forget, for the edges to forget too.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forgotten {
    pub key_sha256: Vec<String>,
    pub playback_ids: Vec<String>,
}

impl Forgotten {
    pub fn is_empty(&self) -> bool {
        self.key_sha256.is_empty() && self.playback_ids.is_empty()
    }

    /// The message that tells an edge to forget the same.
    pub fn into_update(self) -> proto::RouteUpdate {
        proto::RouteUpdate {
            set: Vec::new(),
            forget_key_sha256: self.key_sha256,
            forget_playback_ids: self.playback_ids,
        }
    }
}

#[derive(Clone)]
pub struct Directory {
    pool: PgPool,
    live: LiveState,
    ttl: Duration,
    cache: Arc<Mutex<Cache>>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

impl Directory {
    pub fn new(pool: PgPool, live: LiveState, ttl: Duration) -> Self {
        Self {
            pool,
            live,
            ttl,
            cache: Arc::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh<T: Clone>(&self, entry: Option<&(Instant, T)>) -> Option<T> {
        entry
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    /// May the key with this SHA-256 (lower-case hex) publish from `node`?
    pub async fn ingest(
        &self,
        key_sha256: &str,
        node: &str,
    ) -> Result<IngestDecision, DirectoryError> {
        let (stream, tenant) = match self.key(key_sha256).await? {
            IngestDecision::Accept { stream, tenant } => (stream, tenant),
            refused => return Ok(refused),
        };
        if let Some(live_on) = self.live_on(stream).await?
            && live_on != node
        {
            return Ok(IngestDecision::Refuse(IngestRefusal::LiveElsewhere {
                node: live_on,
            }));
        }
        Ok(IngestDecision::Accept { stream, tenant })
    }

    /// May the key with this SHA-256 publish at all: the decision from the
    /// key, its stream and its tenant, wherever the stream is live now.
    pub async fn key(&self, key_sha256: &str) -> Result<IngestDecision, DirectoryError> {
        let cached = self.fresh(self.cache().keys.get(key_sha256));
        let facts = match cached {
            Some(facts) => {
                counter!("frameworks_balancer_directory_hits_total", "lookup" => "ingest")
                    .increment(1);
                facts
            }
            None => {
                let epoch = self.cache().epoch;
                let facts = self.read_key(key_sha256).await?;
                let mut cache = self.cache();
                if cache.epoch == epoch {
                    remember(
                        &mut cache.keys,
                        key_sha256.to_owned(),
                        facts.clone(),
                        self.ttl,
                    );
                }
                facts
            }
        };
        Ok(facts.decision())
    }

    /// The node a stream is live on now, if any.
    pub async fn live_on(&self, stream: Uuid) -> Result<Option<String>, DirectoryError> {
        let fields = self.live.stream(&stream.to_string()).await?;
        Ok(fields.get("node").cloned().filter(|node| !node.is_empty()))
    }

    async fn read_key(&self, key_sha256: &str) -> Result<KeyFacts, DirectoryError> {
        let Ok(hash) = data_encoding::HEXLOWER.decode(key_sha256.as_bytes()) else {
            return Ok(KeyFacts::Unknown);
        };
        Ok(match read_model::keyed_stream(&self.pool, &hash).await? {
            None => KeyFacts::Unknown,
            Some(KeyedStream {
                stream,
                tenant,
                deleted,
                suspended,
            }) => KeyFacts::Known {
                stream,
                tenant,
                deleted,
                suspended,
            },
        })
    }

    /// The stream a playback id plays, or `None` for an unknown id.
    pub async fn playback(&self, id: &str) -> Result<Option<PlaybackTarget>, DirectoryError> {
        // No playback id is that long: not worth a query, nor a cache entry.
        if id.is_empty() || id.len() > MAX_PLAYBACK_ID_BYTES {
            return Ok(None);
        }
        if let Some(target) = self.fresh(self.cache().playback.get(id)) {
            counter!("frameworks_balancer_directory_hits_total", "lookup" => "playback")
                .increment(1);
            return Ok(target);
        }
        let epoch = self.cache().epoch;
        let target = match read_model::played_stream(&self.pool, id).await? {
            None => None,
            Some(row) => {
                let viewers = if row.suspended {
                    Viewers::Denied
                } else {
                    self.viewers(row.tenant, row.playback_policy.as_deref())
                        .await?
                };
                Some(PlaybackTarget {
                    stream: row.stream,
                    tenant: row.tenant,
                    viewers,
                    sealed_pull_source: row.pull_source,
                })
            }
        };
        let mut cache = self.cache();
        if cache.epoch == epoch {
            remember(&mut cache.playback, id.to_owned(), target.clone(), self.ttl);
        }
        Ok(target)
    }

    /// Who may watch under a stored playback policy (none: anyone).
    async fn viewers(
        &self,
        tenant: Option<Uuid>,
        policy: Option<&[u8]>,
    ) -> Result<Viewers, DirectoryError> {
        let Some(policy) = policy else {
            return Ok(Viewers::Public);
        };
        let Ok(policy) = PlaybackPolicy::decode(policy) else {
            // Unreadable: refusing is the safe reading.
            counter!("frameworks_balancer_playback_policies_unreadable_total").increment(1);
            return Ok(Viewers::Denied);
        };
        match PlaybackPolicyType::try_from(policy.r#type) {
            Ok(PlaybackPolicyType::Public | PlaybackPolicyType::Unspecified) => Ok(Viewers::Public),
            Ok(PlaybackPolicyType::Jwt) => {
                let jwt = policy.jwt.unwrap_or_default();
                let keys = accounts::active_public_keys(&self.pool, tenant).await?;
                Ok(Viewers::Token(proto::JwtRule {
                    policy: Some(jwt),
                    keys: keys
                        .into_iter()
                        .map(|(kid, public_key_spki)| proto::SigningKey {
                            kid,
                            public_key_spki,
                        })
                        .collect(),
                }))
            }
            // Webhook policies are not applied at the edge yet: nobody watches.
            Ok(PlaybackPolicyType::Webhook) | Err(_) => Ok(Viewers::Denied),
        }
    }

    /// Whose a stream is; `None` for a stream the platform never had.
    pub async fn owner(&self, stream: Uuid) -> Result<Option<StreamOwner>, DirectoryError> {
        if let Some(owner) = self.fresh(self.cache().owners.get(&stream)) {
            return Ok(owner);
        }
        let epoch = self.cache().epoch;
        let owner = read_model::owner(&self.pool, stream).await?;
        let mut cache = self.cache();
        if cache.epoch == epoch {
            remember(&mut cache.owners, stream, owner, self.ttl);
        }
        Ok(owner)
    }

    /// The clusters `tenant` may use: its own, the shared ones, and those
    /// it holds an active subscription to.
    pub async fn usable_clusters(&self, tenant: Uuid) -> Result<ClusterSet, DirectoryError> {
        if let Some(clusters) = self.fresh(self.cache().clusters.get(&tenant)) {
            counter!("frameworks_balancer_directory_hits_total", "lookup" => "clusters")
                .increment(1);
            return Ok(clusters);
        }
        let epoch = self.cache().epoch;
        let ids = usable_ids(&self.pool, tenant).await?;
        let clusters: ClusterSet = Arc::new(ids.iter().map(Uuid::to_string).collect());
        let mut cache = self.cache();
        if cache.epoch == epoch {
            remember(&mut cache.clusters, tenant, Arc::clone(&clusters), self.ttl);
        }
        Ok(clusters)
    }

    /// Whether `event` can change an answer.
    pub fn affects(event: &Event) -> bool {
        // Any cluster event may change who can use which cluster (sharing,
        // subscriptions, invites accepted); they are rare.
        event.aggregate_type() == AggregateType::Cluster
            || matches!(
                event.payload,
                EventPayload::StreamCreated(_)
                    | EventPayload::StreamUpdated(_)
                    | EventPayload::StreamDeleted(_)
                    | EventPayload::StreamKeyCreated(_)
                    | EventPayload::StreamKeyRotated(_)
                    | EventPayload::StreamKeyDeleted(_)
                    | EventPayload::StreamPlaybackPolicySet(_)
                    | EventPayload::TenantSuspended(_)
                    | EventPayload::TenantReactivated(_)
                    | EventPayload::SigningKeyCreated(_)
                    | EventPayload::SigningKeyRevoked(_)
            )
    }

    /// Waits (within `timeout`) until the control-plane projection holds
    /// `event`, so answers read after it are the new ones.
    pub async fn settle(&self, watcher: &ProjectionWatcher, event: &Event, timeout: Duration) {
        let waited = watcher
            .wait_for(
                control_plane::NAME,
                event.aggregate_type(),
                &event.aggregate_id,
                event.sequence,
                timeout,
            )
            .await;
        if let Err(error) = waited {
            counter!("frameworks_balancer_directory_unsettled_total").increment(1);
            warn!(%error, "invalidating before the projection caught up");
        }
    }

    /// Keeps the cache current: each event of `events` that changes an
    /// answer drops it once the control-plane projection holds the event,
    /// and `forgotten` hears what was dropped. After missing events it
    /// drops everything. Returns when the feed closes.
    pub async fn follow(
        self,
        mut events: broadcast::Receiver<Arc<Event>>,
        watcher: ProjectionWatcher,
        mut forgotten: impl FnMut(Forgotten),
    ) {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if !Self::affects(&event) {
                        continue;
                    }
                    // Forgotten too early, an answer would be read again from
                    // the projection as it was, and cached.
                    self.settle(&watcher, &event, SETTLE_WITHIN).await;
                    let dropped = self.forget(&event);
                    if !dropped.is_empty() {
                        forgotten(dropped);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "fell behind the control-plane events; dropping every cached answer"
                    );
                    forgotten(self.forget_all());
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The pool the directory reads.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Drops the cached answers `event` changes and says which they were.
    pub fn forget(&self, event: &Event) -> Forgotten {
        let stream = Uuid::parse_str(&event.aggregate_id).ok();
        let mut forgotten = Forgotten::default();
        let mut cache = self.cache();
        if Self::affects(event) {
            cache.epoch += 1;
        }
        let forget_stream = |cache: &mut Cache, stream: Uuid, forgotten: &mut Forgotten| {
            cache.keys.retain(|hash, (_, facts)| {
                let keep = !matches!(facts, KeyFacts::Known { stream: s, .. } if *s == stream);
                if !keep {
                    forgotten.key_sha256.push(hash.clone());
                }
                keep
            });
            cache.playback.retain(|id, (_, target)| {
                let keep = !matches!(target, Some(t) if t.stream == stream);
                if !keep {
                    forgotten.playback_ids.push(id.clone());
                }
                keep
            });
            cache.owners.remove(&stream);
        };
        if event.aggregate_type() == AggregateType::Cluster {
            cache.clusters.clear();
        }
        match &event.payload {
            EventPayload::StreamKeyCreated(key) => {
                // A refusal of this key, cached before it existed, is wrong now.
                let hash = hex(&key.lookup_hash);
                cache.keys.remove(&hash);
                forgotten.key_sha256.push(hash);
            }
            EventPayload::StreamKeyRotated(_)
            | EventPayload::StreamKeyDeleted(_)
            | EventPayload::StreamUpdated(_)
            | EventPayload::StreamPlaybackPolicySet(_)
            | EventPayload::StreamDeleted(_) => {
                if let Some(stream) = stream {
                    forget_stream(&mut cache, stream, &mut forgotten);
                }
            }
            EventPayload::StreamCreated(created) => {
                // An id that was unknown a moment ago.
                cache.playback.remove(&created.playback_id);
                forgotten.playback_ids.push(created.playback_id.clone());
            }
            EventPayload::TenantSuspended(_)
            | EventPayload::TenantReactivated(_)
            | EventPayload::SigningKeyCreated(_)
            | EventPayload::SigningKeyRevoked(_) => {
                let tenant = Uuid::parse_str(&event.aggregate_id).ok();
                let streams: Vec<Uuid> = cache
                    .keys
                    .values()
                    .filter_map(|(_, facts)| match facts {
                        KeyFacts::Known {
                            stream, tenant: t, ..
                        } if *t == tenant => Some(*stream),
                        _ => None,
                    })
                    .chain(
                        cache
                            .playback
                            .values()
                            .filter_map(|(_, target)| target.as_ref())
                            .filter(|target| target.tenant == tenant)
                            .map(|target| target.stream),
                    )
                    .collect();
                for stream in streams {
                    forget_stream(&mut cache, stream, &mut forgotten);
                }
            }
            _ => {}
        }
        forgotten.key_sha256.sort();
        forgotten.key_sha256.dedup();
        forgotten.playback_ids.sort();
        forgotten.playback_ids.dedup();
        if !forgotten.is_empty() {
            counter!("frameworks_balancer_directory_invalidations_total").increment(1);
        }
        forgotten
    }

    /// Drops every cached answer (after missing events), saying which.
    pub fn forget_all(&self) -> Forgotten {
        let mut cache = self.cache();
        cache.epoch += 1;
        let mut forgotten = Forgotten {
            key_sha256: cache.keys.drain().map(|(hash, _)| hash).collect(),
            playback_ids: cache.playback.drain().map(|(id, _)| id).collect(),
        };
        cache.owners.clear();
        cache.clusters.clear();
        forgotten.key_sha256.sort();
        forgotten.playback_ids.sort();
        forgotten
    }

    /// What the balancer knows now, as routes for an edge's config seed:
    /// every cached lasting key refusal and playback answer still within its
    /// TTL. Accepted keys are left out: an edge asks about every push it
    /// lets through, since only the balancer knows where the stream is live.
    pub fn routes(&self, secrets: &SecretBox) -> Vec<proto::Route> {
        let cache = self.cache();
        let keys = cache
            .keys
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < self.ttl)
            .filter_map(|(hash, (_, facts))| match facts.decision() {
                IngestDecision::Accept { .. } => None,
                refused => Some(decision_route(hash, &refused)),
            });
        let playback = cache
            .playback
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < self.ttl)
            .map(|(id, (_, target))| playback_route(id, target.as_ref(), secrets));
        keys.chain(playback).collect()
    }
}

/// The route an edge keeps for an ingest decision.
pub fn decision_route(key_sha256: &str, decision: &IngestDecision) -> proto::Route {
    let (internal, refusal) = match decision {
        IngestDecision::Accept { stream, .. } => (internal_name(*stream), String::new()),
        IngestDecision::Refuse(refusal) => (String::new(), refusal.to_string()),
    };
    proto::Route {
        kind: Some(route::Kind::Ingest(proto::IngestRoute {
            key_sha256: key_sha256.to_owned(),
            internal_name: internal,
            refusal,
            momentary: matches!(
                decision,
                IngestDecision::Refuse(IngestRefusal::LiveElsewhere { .. })
            ),
        })),
    }
}

/// A pull stream's source URI, opened from its sealed form; `None` (and a
/// counted warning that never shows the URI) when it cannot be opened.
pub fn pull_source_uri(secrets: &SecretBox, stream: Uuid, sealed: &[u8]) -> Option<String> {
    let opened = SealedSecret::decode(sealed)
        .map_err(|e| e.to_string())
        .and_then(|sealed| {
            secrets
                .open(&sealed, &pull_source_context(&stream.to_string()))
                .map_err(|e| e.to_string())
        })
        .and_then(|plain| String::from_utf8(plain).map_err(|e| e.to_string()));
    match opened {
        Ok(uri) => Some(uri),
        Err(error) => {
            counter!("frameworks_balancer_pull_source_unreadable_total").increment(1);
            warn!(%stream, %error, "a pull stream's source could not be opened");
            None
        }
    }
}

/// The route an edge keeps for a playback id (with a pull stream's source,
/// opened with `secrets`).
pub fn playback_route(
    id: &str,
    target: Option<&PlaybackTarget>,
    secrets: &SecretBox,
) -> proto::Route {
    let (internal, policy, pull_source) = match target {
        None => (
            String::new(),
            proto::PlaybackPolicy::Unspecified,
            String::new(),
        ),
        Some(target) => (
            internal_name(target.stream),
            match target.viewers {
                Viewers::Public => proto::PlaybackPolicy::Public,
                Viewers::Denied => proto::PlaybackPolicy::Denied,
                Viewers::Token(_) => proto::PlaybackPolicy::Jwt,
            },
            target
                .sealed_pull_source
                .as_deref()
                .and_then(|sealed| pull_source_uri(secrets, target.stream, sealed))
                .unwrap_or_default(),
        ),
    };
    proto::Route {
        kind: Some(route::Kind::Playback(proto::PlaybackRoute {
            playback_id: id.to_owned(),
            internal_name: internal,
            policy: policy as i32,
            pull_source,
            jwt: target.and_then(|t| match &t.viewers {
                Viewers::Token(rule) => Some(rule.clone()),
                _ => None,
            }),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_answers_keeps_the_cache_bounded() {
        let mut map = HashMap::new();
        let ttl = Duration::from_secs(60);
        for n in 0..MAX_CACHED + 10 {
            remember(&mut map, n, (), ttl);
        }
        assert!(map.len() <= MAX_CACHED, "{}", map.len());
        assert!(
            map.contains_key(&(MAX_CACHED + 9)),
            "the newest answer is kept"
        );
        // Expired answers go first, fresh ones stay.
        let mut map = HashMap::new();
        for n in 0..MAX_CACHED {
            let long_ago = Instant::now()
                .checked_sub(Duration::from_secs(120))
                .expect("the machine has been up for two minutes");
            map.insert(n, (long_ago, ()));
        }
        remember(&mut map, MAX_CACHED, (), ttl);
        remember(&mut map, MAX_CACHED + 1, (), ttl);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn internal_names_round_trip() {
        let stream = Uuid::now_v7();
        assert_eq!(stream_of(&internal_name(stream)), Some(stream));
        assert_eq!(stream_of("test"), None);
        assert_eq!(stream_of("vod+abc"), None);
        assert_eq!(stream_of(&format!("vod+{stream}")), None);
    }
}
