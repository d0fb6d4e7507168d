//! Answers to Mist's blocking triggers, from what the balancer pushed to
//! this edge: which stream key publishes to which stream, which playback
//! id plays which stream under which policy, where pull streams pull from,
//! and which push targets are allowed. Stream keys are secrets: the edge
//! knows them only by their SHA-256.
//!
//! A miss asks the balancer ([`Resolver`]), within what is left of the
//! trigger's budget; whatever happens, Mist has its answer within the
//! budget, falling back to the configured default.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use frameworks_edge_protocol::keys::{key_sha256, stream_key};
use metrics::{counter, histogram};

use crate::playback::{self, JwtPolicy, SigningKeys};
use frameworks_edge_protocol::proto::{self, route};
use frameworks_edge_protocol::triggers::{Trigger, TriggerKind};

/// How Mist should take an answer (`X-Mist-Trigger-Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Use the body as the answer.
    Value,
    /// Refuse the push, the viewer, the output.
    Deny,
    /// Keep what Mist had (no rewrite).
    Keep,
}

impl Action {
    pub fn header(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::Deny => "deny",
            Self::Keep => "keep",
        }
    }
}

/// What the edge answers a blocking trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub body: String,
    pub action: Action,
    /// Why, for Mist's log (`X-Mist-Trigger-Reason`).
    pub reason: Option<String>,
}

impl Answer {
    pub fn value(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            action: Action::Value,
            reason: None,
        }
    }

    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            body: String::new(),
            action: Action::Deny,
            reason: Some(reason.into()),
        }
    }

    pub fn keep() -> Self {
        Self {
            body: String::new(),
            action: Action::Keep,
            reason: None,
        }
    }
}

/// Who may watch a stream.
#[derive(Debug, Clone)]
pub enum PlaybackPolicy {
    Public,
    /// Viewers are refused (a stream not published for playback).
    Denied,
    /// Viewers whose playback token the rule accepts.
    Token(Arc<TokenRule>),
}

// Two token rules are the same when they are the same route's.
impl PartialEq for PlaybackPolicy {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Public, Self::Public) | (Self::Denied, Self::Denied) => true,
            (Self::Token(a), Self::Token(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for PlaybackPolicy {}

/// A JWT policy as the edge applies it: the rule and the tenant's keys.
#[derive(Debug)]
pub struct TokenRule {
    pub policy: JwtPolicy,
    pub keys: SigningKeys,
}

impl PlaybackPolicy {
    /// The policy a playback route carries.
    fn from_route(route: &proto::PlaybackRoute) -> Self {
        match proto::PlaybackPolicy::try_from(route.policy) {
            Ok(proto::PlaybackPolicy::Public) => Self::Public,
            Ok(proto::PlaybackPolicy::Jwt) => {
                let rule = route.jwt.clone().unwrap_or_default();
                let policy = rule.policy.unwrap_or_default();
                let keys = SigningKeys::from_der(
                    rule.keys
                        .iter()
                        .map(|k| (k.kid.as_str(), k.public_key_spki.as_slice())),
                );
                match keys {
                    Ok(keys) => Self::Token(Arc::new(TokenRule {
                        policy: JwtPolicy {
                            allowed_kids: policy.allowed_kids,
                            required_audience: policy.required_audience,
                            required_claims: policy
                                .required_claims
                                .into_iter()
                                .map(|c| (c.name, c.json_value))
                                .collect(),
                        },
                        keys,
                    })),
                    // A key the edge cannot read: refusing is the safe reading.
                    Err(_) => Self::Denied,
                }
            }
            // An unknown policy is a newer balancer's: refusing is the safe reading.
            _ => Self::Denied,
        }
    }

    /// Whether a viewer asking with `url` and `session_token` (USER_NEW's
    /// third field) may watch, with the reason when not.
    pub fn admits(&self, url: &str, session_token: &str, now: i64) -> Result<(), &'static str> {
        match self {
            Self::Public => Ok(()),
            Self::Denied => Err("not-published"),
            Self::Token(rule) => {
                let token = playback::viewer_token(url, session_token);
                playback::verify(token.as_deref(), &rule.policy, &rule.keys, now)
                    .map(drop)
                    .map_err(|denied| denied.reason())
            }
        }
    }
}

/// The URI a pull stream pulls from. It may carry credentials, so it
/// prints as `<redacted>`: no log line or panic message shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PullSource(String);

impl PullSource {
    pub fn new(uri: impl Into<String>) -> Self {
        Self(uri.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PullSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the balancer told this edge; looked up on every blocking trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// SHA-256s of stream keys ([`key_sha256`]) the balancer refuses for
    /// good (unknown key, deleted stream, suspended tenant) until it says
    /// otherwise. Accepts are never kept: only the balancer knows whether
    /// the stream is live on another edge now, so every push it lets
    /// through was asked about.
    pub refused_keys: HashSet<String>,
    /// Playback id -> Mist's internal stream name; `None` is a known unknown.
    pub playback: HashMap<String, Option<String>>,
    /// Internal stream name -> who may watch it.
    pub viewers: HashMap<String, PlaybackPolicy>,
    /// Internal stream name -> the URI a pull stream pulls from.
    pub sources: HashMap<String, PullSource>,
    /// (internal stream name, target) pairs the platform started: the
    /// pushes and recordings PUSH_OUT_START lets out.
    pub push_targets: HashSet<(String, String)>,
}

impl Routes {
    /// Learns one route the balancer sent.
    pub fn set(&mut self, route: &proto::Route) {
        match &route.kind {
            Some(route::Kind::Ingest(ingest)) => {
                if ingest.internal_name.is_empty() && !ingest.momentary {
                    self.refused_keys.insert(ingest.key_sha256.clone());
                } else {
                    self.refused_keys.remove(&ingest.key_sha256);
                }
            }
            Some(route::Kind::Playback(playback)) => {
                if playback.internal_name.is_empty() {
                    self.playback.insert(playback.playback_id.clone(), None);
                } else {
                    let stream = &playback.internal_name;
                    self.playback
                        .insert(playback.playback_id.clone(), Some(stream.clone()));
                    self.viewers
                        .insert(stream.clone(), PlaybackPolicy::from_route(playback));
                    if playback.pull_source.is_empty() {
                        self.sources.remove(stream);
                    } else {
                        self.sources
                            .insert(stream.clone(), PullSource::new(&playback.pull_source));
                    }
                }
            }
            None => {}
        }
    }

    /// Applies a change the balancer pushed: forgets first, then learns.
    pub fn apply(&mut self, update: &proto::RouteUpdate) {
        for key in &update.forget_key_sha256 {
            self.refused_keys.remove(key);
        }
        for id in &update.forget_playback_ids {
            if let Some(Some(stream)) = self.playback.remove(id) {
                self.viewers.remove(&stream);
                self.sources.remove(&stream);
            }
        }
        for route in &update.set {
            self.set(route);
        }
    }
}

/// Where the balancer's routes land on the edge: a config seed replaces
/// what the edge knew, an update changes it.
pub trait RouteTable: Send + Sync + 'static {
    fn seed(&self, routes: &[proto::Route]);
    fn apply(&self, update: &proto::RouteUpdate);
    /// Lets PUSH_OUT_START through for a push or recording the platform is
    /// starting (`allowed`), or no longer (`!allowed`).
    fn allow_push(&self, stream: &str, target: &str, allowed: bool);
}

/// One fact the balancer answered on a miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Ingest {
        /// SHA-256 of the key ([`key_sha256`]).
        key_sha256: String,
        stream: Option<String>,
        /// A refusal that holds only now (the stream is live elsewhere).
        momentary: bool,
    },
    Playback {
        id: String,
        /// The stream and who may watch it; `None` for an unknown id.
        stream: Option<(String, PlaybackPolicy)>,
    },
}

impl Resolved {
    /// The balancer's answer as the edge keeps it; `None` when it does not
    /// answer the question asked.
    pub fn from_route(route: proto::Route) -> Option<Self> {
        match route.kind? {
            route::Kind::Ingest(ingest) => Some(Self::Ingest {
                key_sha256: ingest.key_sha256,
                stream: Some(ingest.internal_name).filter(|name| !name.is_empty()),
                momentary: ingest.momentary,
            }),
            route::Kind::Playback(playback) => {
                let policy = PlaybackPolicy::from_route(&playback);
                Some(Self::Playback {
                    stream: Some(playback.internal_name)
                        .filter(|name| !name.is_empty())
                        .map(|name| (name, policy)),
                    id: playback.playback_id,
                })
            }
        }
    }
}

/// Asks the balancer what the edge does not know yet: for PUSH_REWRITE the
/// key's SHA-256, for PLAY_REWRITE the playback id.
pub trait Resolver: Send + Sync + 'static {
    fn resolve(
        &self,
        kind: TriggerKind,
        key: &str,
    ) -> impl std::future::Future<Output = Option<Resolved>> + Send;
}

/// A resolver for an edge on its own: nothing to ask.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResolver;

impl Resolver for NoResolver {
    async fn resolve(&self, _: TriggerKind, _: &str) -> Option<Resolved> {
        None
    }
}

/// The answers' settings.
#[derive(Debug, Clone)]
pub struct AnswerSettings {
    /// How long Mist may wait for any blocking answer.
    pub budget: Duration,
    /// Viewers of unknown playback ids are let in (`true`) or refused.
    pub admit_unknown_viewers: bool,
}

/// The blocking answers, shared by every request.
#[derive(Debug)]
pub struct Answers<R> {
    routes: RwLock<Routes>,
    resolver: R,
    settings: AnswerSettings,
}

impl<R: Resolver> Answers<R> {
    pub fn new(resolver: R, settings: AnswerSettings) -> Arc<Self> {
        Arc::new(Self {
            routes: RwLock::default(),
            resolver,
            settings,
        })
    }

    /// Replaces everything the edge knows (a config seed after a reconnect).
    pub fn replace(&self, routes: Routes) {
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
    }

    /// Changes what the edge knows in place.
    pub fn update(&self, change: impl FnOnce(&mut Routes)) {
        change(&mut self.routes.write().unwrap_or_else(|e| e.into_inner()));
    }

    fn read<T>(&self, look: impl FnOnce(&Routes) -> T) -> T {
        look(&self.routes.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The answer to a blocking trigger, within the budget.
    pub async fn answer(&self, kind: TriggerKind, trigger: &Trigger) -> Answer {
        let started = Instant::now();
        let answer = match tokio::time::timeout(self.settings.budget, self.decide(kind, trigger))
            .await
        {
            Ok(answer) => answer,
            Err(_) => {
                counter!("frameworks_edge_trigger_answers_defaulted_total", "trigger" => kind.name())
                    .increment(1);
                self.fallback(kind)
            }
        };
        histogram!("frameworks_edge_trigger_answer_seconds", "trigger" => kind.name())
            .record(started.elapsed().as_secs_f64());
        answer
    }

    /// What Mist gets when the answer cannot be known in time.
    fn fallback(&self, kind: TriggerKind) -> Answer {
        match kind {
            // Publishing is never let through unchecked.
            TriggerKind::PushRewrite | TriggerKind::PushOutStart => {
                Answer::deny("the platform did not answer in time")
            }
            TriggerKind::UserNew if !self.settings.admit_unknown_viewers => Answer::value("false"),
            TriggerKind::UserNew => Answer::value("true"),
            _ => Answer::keep(),
        }
    }

    async fn decide(&self, kind: TriggerKind, trigger: &Trigger) -> Answer {
        match trigger {
            Trigger::PushRewrite { url, stream, .. } => {
                // Mist parsed the stream name from the URL; the key is that, or the URL's tail.
                let key = if stream.is_empty() {
                    stream_key(url)
                } else {
                    stream.clone()
                };
                match self.ingest(kind, &key).await {
                    Some(Some(internal)) => Answer::value(internal),
                    Some(None) => {
                        counter!("frameworks_edge_pushes_refused_total").increment(1);
                        Answer::deny("unknown or refused stream key")
                    }
                    None => self.fallback(kind),
                }
            }
            Trigger::PlayRewrite(connection) => {
                match self.playback(kind, &connection.stream).await {
                    Some(Some(stream)) => Answer::value(stream),
                    // Not a playback id: Mist goes on with the name as it is.
                    _ => Answer::keep(),
                }
            }
            Trigger::UserNew {
                stream,
                url,
                session_token,
                ..
            } => match self.read(|r| r.viewers.get(stream).cloned()) {
                Some(policy) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                    match policy.admits(url, session_token, now) {
                        Ok(()) => Answer::value("true"),
                        Err(reason) => {
                            counter!("frameworks_edge_viewers_refused_total", "reason" => reason)
                                .increment(1);
                            Answer {
                                body: "false".into(),
                                action: Action::Value,
                                reason: Some(reason.to_owned()),
                            }
                        }
                    }
                }
                None => self.fallback(kind),
            },
            Trigger::StreamSource { stream } => match self.read(|r| r.sources.get(stream).cloned())
            {
                Some(source) => Answer::value(source.expose()),
                None => Answer::keep(),
            },
            Trigger::PushOutStart { stream, target } => {
                let allowed =
                    self.read(|r| r.push_targets.contains(&(stream.clone(), target.clone())));
                if allowed {
                    Answer::value(target.clone())
                } else {
                    Answer::deny("the platform did not start this push")
                }
            }
            // RTMP_PUSH_REWRITE and DEFAULT_STREAM: nothing to change.
            _ => Answer::keep(),
        }
    }

    /// The stream a key publishes to (`Some(None)`: refused), or `None`
    /// when the balancer did not answer. A lasting refusal is answered
    /// here; anything else is the balancer's to decide, now.
    async fn ingest(&self, kind: TriggerKind, key: &str) -> Option<Option<String>> {
        let hash = key_sha256(key);
        if self.read(|r| r.refused_keys.contains(&hash)) {
            return Some(None);
        }
        counter!("frameworks_edge_trigger_answer_misses_total", "trigger" => kind.name())
            .increment(1);
        match self.resolver.resolve(kind, &hash).await? {
            Resolved::Ingest {
                key_sha256,
                stream,
                momentary,
            } if key_sha256 == hash => {
                if stream.is_none() && !momentary {
                    self.update(|r| {
                        r.refused_keys.insert(key_sha256);
                    });
                }
                Some(stream)
            }
            Resolved::Playback { .. } | Resolved::Ingest { .. } => None,
        }
    }

    async fn playback(&self, kind: TriggerKind, id: &str) -> Option<Option<String>> {
        if let Some(known) = self.read(|r| r.playback.get(id).cloned()) {
            return Some(known);
        }
        counter!("frameworks_edge_trigger_answer_misses_total", "trigger" => kind.name())
            .increment(1);
        match self.resolver.resolve(kind, id).await? {
            Resolved::Playback {
                id: answered,
                stream,
            } if answered == id => {
                self.update(|r| {
                    r.playback
                        .insert(answered, stream.as_ref().map(|(name, _)| name.clone()));
                    if let Some((name, policy)) = &stream {
                        r.viewers.insert(name.clone(), policy.clone());
                    }
                });
                Some(stream.map(|(name, _)| name))
            }
            Resolved::Playback { .. } | Resolved::Ingest { .. } => None,
        }
    }
}

impl<R: Resolver> RouteTable for Answers<R> {
    fn seed(&self, routes: &[proto::Route]) {
        let mut fresh = Routes::default();
        // The pushes running on this edge are not the balancer's to seed.
        self.update(|known| {
            fresh.push_targets = std::mem::take(&mut known.push_targets);
        });
        for route in routes {
            fresh.set(route);
        }
        self.replace(fresh);
    }

    fn apply(&self, update: &proto::RouteUpdate) {
        self.update(|known| known.apply(update));
    }

    fn allow_push(&self, stream: &str, target: &str, allowed: bool) {
        let pair = (stream.to_owned(), target.to_owned());
        self.update(|known| {
            if allowed {
                known.push_targets.insert(pair);
            } else {
                known.push_targets.remove(&pair);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playback(id: &str, stream: &str, pull_source: &str) -> proto::Route {
        proto::Route {
            kind: Some(route::Kind::Playback(proto::PlaybackRoute {
                playback_id: id.into(),
                internal_name: stream.into(),
                policy: proto::PlaybackPolicy::Public as i32,
                pull_source: pull_source.into(),
                jwt: None,
            })),
        }
    }

    #[tokio::test]
    async fn a_pull_streams_source_answers_stream_source_and_is_never_printed() {
        let answers = Answers::new(
            NoResolver,
            AnswerSettings {
                budget: Duration::from_millis(50),
                admit_unknown_viewers: false,
            },
        );
        let uri = "rtmp://feed:hunter2@source.example.net/live/main";
        answers.seed(&[playback("pb1", "live+s1", uri)]);
        let source = |stream: &str| Trigger::StreamSource {
            stream: stream.into(),
        };
        let answer = answers
            .answer(TriggerKind::StreamSource, &source("live+s1"))
            .await;
        assert_eq!((answer.action, answer.body.as_str()), (Action::Value, uri));
        assert!(!format!("{answers:?}").contains("hunter2"));
        // Unknown streams keep Mist's configured source.
        let other = answers
            .answer(TriggerKind::StreamSource, &source("live+s2"))
            .await;
        assert_eq!(other.action, Action::Keep);
        // Became a push stream, then forgotten: no source any more.
        answers.apply(&proto::RouteUpdate {
            set: vec![playback("pb1", "live+s1", "")],
            ..Default::default()
        });
        let pushed = answers
            .answer(TriggerKind::StreamSource, &source("live+s1"))
            .await;
        assert_eq!(pushed.action, Action::Keep);
        answers.seed(&[playback("pb1", "live+s1", uri)]);
        answers.apply(&proto::RouteUpdate {
            forget_playback_ids: vec!["pb1".into()],
            ..Default::default()
        });
        assert_eq!(
            answers
                .answer(TriggerKind::StreamSource, &source("live+s1"))
                .await
                .action,
            Action::Keep
        );
    }

    fn ingest(key: &str, internal_name: &str, momentary: bool) -> proto::Route {
        proto::Route {
            kind: Some(route::Kind::Ingest(proto::IngestRoute {
                key_sha256: key_sha256(key),
                internal_name: internal_name.into(),
                refusal: if internal_name.is_empty() {
                    "refused".into()
                } else {
                    String::new()
                },
                momentary,
            })),
        }
    }

    /// A balancer whose answer for every key is set by the test, counting
    /// how often it is asked.
    #[derive(Default)]
    struct ScriptedBalancer {
        stream: std::sync::Mutex<Option<String>>,
        asked: std::sync::atomic::AtomicUsize,
    }

    impl Resolver for Arc<ScriptedBalancer> {
        async fn resolve(&self, _: TriggerKind, hash: &str) -> Option<Resolved> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let stream = self
                .stream
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            Some(Resolved::Ingest {
                key_sha256: hash.to_owned(),
                momentary: stream.is_none(),
                stream,
            })
        }
    }

    #[tokio::test]
    async fn every_push_is_asked_of_the_balancer_and_only_lasting_refusals_are_kept() {
        let balancer = Arc::new(ScriptedBalancer::default());
        let answers = Answers::new(
            Arc::clone(&balancer),
            AnswerSettings {
                budget: Duration::from_millis(200),
                admit_unknown_viewers: false,
            },
        );
        let push = |key: &str| Trigger::PushRewrite {
            url: format!("rtmp://127.0.0.1/live/{key}"),
            host: "203.0.113.9".into(),
            stream: key.into(),
        };
        // A reconnecting edge's seed says the key publishes; the balancer,
        // asked all the same, says the stream is live on another edge now.
        answers.seed(&[ingest("k", "live+s1", false), ingest("gone", "", false)]);
        let refused = answers.answer(TriggerKind::PushRewrite, &push("k")).await;
        assert_eq!(refused.action, Action::Deny);
        // That refusal was momentary: the next push is asked about again,
        // and let through once the other encoder has gone.
        *balancer
            .stream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some("live+s1".into());
        let accepted = answers.answer(TriggerKind::PushRewrite, &push("k")).await;
        assert_eq!(
            (accepted.action, accepted.body.as_str()),
            (Action::Value, "live+s1")
        );
        assert_eq!(balancer.asked.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A lasting refusal from the seed is answered without asking.
        let gone = answers
            .answer(TriggerKind::PushRewrite, &push("gone"))
            .await;
        assert_eq!(gone.action, Action::Deny);
        assert_eq!(balancer.asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
