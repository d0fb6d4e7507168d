//! Mist's HTTP API as a real MistServer answers it (see
//! `../shared/mist/README.md`, section 3): `POST /api2` with a JSON object
//! of commands, loopback trusted, everyone else logging in by MD5
//! challenge, and a wrong `Authorization` header answered with a 403 that
//! has no Content-Length on a connection left open.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{Datelike, Utc};
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use crate::captures;

pub fn md5_hex(text: &str) -> String {
    data_encoding::HEXLOWER.encode(&Md5::digest(text.as_bytes()))
}

/// Mist's challenge is not random: the day and the peer's address.
pub fn challenge_for(peer: &SocketAddr) -> String {
    let today = Utc::now();
    md5_hex(&format!(
        "{}-{}-{}{}",
        today.day(),
        today.month0(),
        today.year(),
        peer.ip()
    ))
}

/// A stream Mist serves, with the counters `active_streams` reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActiveStream {
    pub status: String,
    pub viewers: u64,
    pub inputs: u64,
    pub outputs: u64,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub viewer_seconds: u64,
    pub last_ms: u64,
}

/// A connection as `clients` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Client {
    pub host: String,
    pub stream: String,
    pub protocol: String,
    pub connected_seconds: u64,
    pub down_bytes: u64,
    pub up_bytes: u64,
    pub down_bps: u64,
    pub up_bps: u64,
    pub session_id: String,
}

/// What the simulated server holds.
#[derive(Debug, Default)]
pub struct MistState {
    pub server_id: Option<String>,
    pub triggers: Map<String, Value>,
    pub streams: BTreeMap<String, Value>,
    pub active: BTreeMap<String, ActiveStream>,
    pub clients: Vec<Client>,
    /// id -> (stream, target)
    pub pushes: BTreeMap<u64, (String, String)>,
    pub auto_pushes: BTreeMap<String, (String, String)>,
    next_push: u64,
    /// Commands received, in order, by name: what tests assert on.
    pub received: Vec<String>,
    pub saves: u64,
    pub nuked: Vec<String>,
    pub stopped_sessions: Vec<String>,
    pub invalidated: Vec<String>,
    /// Pushes started or stopped by the last request, whose triggers are
    /// still to fire (only when a handler is registered for them).
    pending: Vec<PushChange>,
}

/// A push starting or ending, as its output process would report it.
#[derive(Debug, Clone)]
pub(crate) enum PushChange {
    Started {
        id: u64,
        stream: String,
        target: String,
    },
    Stopped {
        id: u64,
        stream: String,
        target: String,
    },
}

#[derive(Debug)]
struct Account {
    username: String,
    /// md5_hex of the password, as Mist stores it.
    password_md5: String,
}

#[derive(Debug, Clone)]
pub struct MistApi {
    state: Arc<Mutex<MistState>>,
    account: Arc<Option<Account>>,
    trust_loopback: bool,
}

impl MistApi {
    /// A server with one account (`None`: no account yet, status NOACC).
    /// `trust_loopback` is Mist's behaviour; tests of the login turn it off.
    pub fn new(account: Option<(&str, &str)>, trust_loopback: bool) -> Self {
        Self {
            state: Arc::default(),
            account: Arc::new(account.map(|(username, password)| Account {
                username: username.to_owned(),
                password_md5: md5_hex(password),
            })),
            trust_loopback,
        }
    }

    /// The server's state, for tests to set the scene and to look.
    pub fn state(&self) -> std::sync::MutexGuard<'_, MistState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/api2", post(api2))
            .with_state(self.clone())
    }

    /// Whether `login` (an authorize object) is right for `peer`.
    fn login_ok(&self, login: &Value, peer: &SocketAddr) -> bool {
        let Some(account) = self.account.as_ref() else {
            return false;
        };
        let expected = md5_hex(&format!("{}{}", account.password_md5, challenge_for(peer)));
        login.get("username").and_then(Value::as_str) == Some(account.username.as_str())
            && login.get("password").and_then(Value::as_str) == Some(expected.as_str())
    }
}

/// A 403 as Mist sends it: no Content-Length, and a body that never ends.
fn forbidden(peer: &SocketAddr) -> Response {
    let never = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header(
            "WWW-Authenticate",
            format!(
                "json {{\"challenge\":\"{}\",\"status\":\"CHALL\"}}",
                challenge_for(peer)
            ),
        )
        .body(Body::from_stream(never))
        .unwrap_or_default()
}

async fn api2(
    State(api): State<MistApi>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(commands): Json<Map<String, Value>>,
) -> Response {
    let proxied = headers.contains_key("x-forwarded-for") || headers.contains_key("x-real-ip");
    let local = api.trust_loopback && peer.ip().is_loopback() && !proxied;
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let login = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("json "))
            .and_then(|v| serde_json::from_str::<Value>(v).ok());
        if !local && !login.is_some_and(|l| api.login_ok(&l, &peer)) {
            return forbidden(&peer);
        }
    }
    let authorize = if local {
        json!({"local": true, "status": "OK"})
    } else if api.account.is_none() {
        json!({"status": "NOACC"})
    } else if commands
        .get("authorize")
        .is_some_and(|login| api.login_ok(login, &peer))
    {
        json!({"status": "OK"})
    } else {
        // Not logged in: the challenge, and no answers.
        return Json(json!({
            "authorize": {"status": "CHALL", "challenge": challenge_for(&peer)}
        }))
        .into_response();
    };
    if authorize["status"] == "NOACC" {
        return Json(json!({ "authorize": authorize })).into_response();
    }
    let mut answer = Map::new();
    answer.insert("authorize".into(), authorize);
    let changes = {
        let mut state = api.state();
        for (command, argument) in commands.iter().filter(|(c, _)| *c != "authorize") {
            state.received.push(command.clone());
            if let Some((key, value)) = state.run(command, argument) {
                answer.insert(key, value);
            }
        }
        std::mem::take(&mut state.pending)
    };
    if !changes.is_empty() {
        // The output processes report on their own, after Mist has answered.
        tokio::spawn(crate::scenes::report_pushes(api.clone(), changes));
    }
    Json(Value::Object(answer)).into_response()
}

impl MistState {
    /// Runs one command; answers the key and value Mist adds, if any.
    fn run(&mut self, command: &str, argument: &Value) -> Option<(String, Value)> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        match command {
            "config" => {
                if let Some(config) = argument.as_object() {
                    if let Some(id) = config.get("serverid") {
                        self.server_id = Some(text(id));
                    }
                    if let Some(triggers) = config.get("triggers").and_then(Value::as_object) {
                        // Mist replaces the whole trigger set.
                        self.triggers = triggers.clone();
                    }
                }
                Some((
                    "config".into(),
                    json!({"serverid": self.server_id, "triggers": self.triggers}),
                ))
            }
            "addstream" => {
                for (name, config) in argument.as_object().into_iter().flatten() {
                    let mut config = config.clone();
                    config["name"] = json!(name);
                    self.streams.insert(name.clone(), config);
                }
                Some(("streams".into(), json!(self.streams)))
            }
            "deletestream" => {
                let names: Vec<String> = match argument {
                    Value::String(name) => vec![name.clone()],
                    Value::Array(names) => names.iter().map(text).collect(),
                    Value::Object(names) => names.keys().cloned().collect(),
                    _ => Vec::new(),
                };
                for name in names {
                    self.streams.remove(&name);
                }
                Some(("streams".into(), json!(self.streams)))
            }
            // `true` lists; an object replaces the whole list, as in Mist.
            "streams" => {
                if let Some(streams) = argument.as_object() {
                    self.streams = streams.clone().into_iter().collect();
                }
                Some(("streams".into(), json!(self.streams)))
            }
            "active_streams" => Some(("active_streams".into(), self.active_streams(argument))),
            "clients" => Some(("clients".into(), self.clients())),
            "push_start" => {
                let (stream, target) = match argument {
                    Value::Array(pair) => (text(&pair[0]), pair.get(1).map(text).unwrap_or_default()),
                    other => (text(&other["stream"]), text(&other["target"])),
                };
                self.next_push += 1;
                let id = 17_900 + self.next_push;
                self.pushes.insert(id, (stream.clone(), target.clone()));
                self.pending
                    .push(PushChange::Started { id, stream, target });
                None
            }
            "push_list" => Some((
                "push_list".into(),
                json!(
                    self.pushes
                        .iter()
                        .map(|(id, (stream, target))| json!([id, stream, target, target, [], {"active_seconds": 1, "bytes": 0}]))
                        .collect::<Vec<_>>()
                ),
            )),
            "push_stop" => {
                let ids: Vec<u64> = match argument {
                    Value::Array(ids) => ids.iter().filter_map(Value::as_u64).collect(),
                    Value::Number(id) => id.as_u64().into_iter().collect(),
                    Value::String(stream) => self
                        .pushes
                        .iter()
                        .filter(|(_, (s, _))| s == stream)
                        .map(|(id, _)| *id)
                        .collect(),
                    _ => Vec::new(),
                };
                for id in ids {
                    if let Some((stream, target)) = self.pushes.remove(&id) {
                        self.pending
                            .push(PushChange::Stopped { id, stream, target });
                    }
                }
                None
            }
            "push_auto_add" => {
                let (stream, target) = (text(&argument["stream"]), text(&argument["target"]));
                let id = md5_hex(&format!("{stream}{target}"));
                self.auto_pushes.insert(id, (stream, target));
                Some(("auto_push".into(), self.auto_push()))
            }
            "push_auto_list" => Some(("auto_push".into(), self.auto_push())),
            "push_auto_remove" => {
                self.auto_pushes.remove(&text(argument));
                Some(("auto_push".into(), self.auto_push()))
            }
            "nuke_stream" => {
                self.nuked.push(text(argument));
                self.active.remove(&text(argument));
                None
            }
            "stop_sessions" => {
                let stream = text(argument);
                self.clients.retain(|c| c.stream != stream);
                self.stopped_sessions.push(stream);
                None
            }
            "invalidate_sessions" => {
                self.invalidated.push(text(argument));
                None
            }
            "capabilities" => Some(("capabilities".into(), captures::capabilities())),
            "save" => {
                self.saves += 1;
                None
            }
            "version" => Some((
                "version".into(),
                json!({
                    "version": "fw-51c613a4",
                    "release": "Generic_x86_64",
                    "date": "Nov 21 2026",
                    "time": "04:41:07"
                }),
            )),
            _ => None,
        }
    }

    fn auto_push(&self) -> Value {
        let rules: Map<String, Value> = self
            .auto_pushes
            .iter()
            .map(|(id, (stream, target))| (id.clone(), json!({"stream": stream, "target": target})))
            .collect();
        Value::Object(rules)
    }

    /// The object form: `{"fields": [...], "data": {name: [...]}}`.
    fn active_streams(&self, argument: &Value) -> Value {
        let fields: Vec<String> = argument
            .get("fields")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_else(|| {
                [
                    "status",
                    "viewers",
                    "inputs",
                    "outputs",
                    "upbytes",
                    "downbytes",
                    "viewseconds",
                    "lastms",
                ]
                .map(str::to_owned)
                .to_vec()
            });
        let data: Map<String, Value> = self
            .active
            .iter()
            .map(|(name, s)| {
                let row: Vec<Value> = fields
                    .iter()
                    .map(|field| match field.as_str() {
                        "status" => json!(s.status),
                        "viewers" => json!(s.viewers),
                        "inputs" => json!(s.inputs),
                        "outputs" => json!(s.outputs),
                        "upbytes" => json!(s.up_bytes),
                        "downbytes" => json!(s.down_bytes),
                        "viewseconds" => json!(s.viewer_seconds),
                        "lastms" => json!(s.last_ms),
                        _ => Value::Null,
                    })
                    .collect();
                (name.clone(), Value::Array(row))
            })
            .collect();
        json!({ "fields": fields, "data": data })
    }

    fn clients(&self) -> Value {
        let fields = [
            "host",
            "stream",
            "protocol",
            "conntime",
            "position",
            "down",
            "up",
            "downbps",
            "upbps",
            "sessid",
            "pktcount",
            "pktlost",
            "pktretransmit",
            "tags",
        ];
        let data: Vec<Value> = self
            .clients
            .iter()
            .map(|c| {
                json!([
                    c.host,
                    c.stream,
                    c.protocol,
                    c.connected_seconds,
                    0,
                    c.down_bytes,
                    c.up_bytes,
                    c.down_bps,
                    c.up_bps,
                    c.session_id,
                    0,
                    0,
                    0,
                    []
                ])
            })
            .collect();
        json!({ "fields": fields, "time": Utc::now().timestamp(), "data": data })
    }
}
