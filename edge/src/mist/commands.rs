//! The Mist API commands the platform uses, with typed arguments and answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{MistClient, MistError};
use frameworks_edge_protocol::triggers::TriggerKind;

/// One handler of a trigger in Mist's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerHandler {
    /// The URL Mist posts the trigger to.
    pub handler: String,
    /// Whether Mist waits for the answer.
    pub sync: bool,
    /// Stream names it applies to (`!name` excludes); empty for all.
    #[serde(default)]
    pub streams: Vec<String>,
    /// The answer Mist uses when the handler fails (empty means "true").
    #[serde(default)]
    pub default: String,
    /// What a blocking trigger does when the handler fails, in place of
    /// `default`: `deny`, `keep`, `offline` or `use-configured`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onfail: Option<String>,
    /// Extra parameter (LIVE_BANDWIDTH's threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
}

/// The trigger set: Mist replaces its whole `config.triggers` with it.
pub type TriggerSet = BTreeMap<String, Vec<TriggerHandler>>;

/// A stream Mist is serving now, from `active_streams`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveStream {
    pub name: String,
    /// `Online`, `Booting`, `Ready`, ...
    pub status: String,
    pub viewers: u64,
    pub inputs: u64,
    pub outputs: u64,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub viewer_seconds: u64,
    pub last_ms: u64,
}

/// A connection Mist holds, from `clients`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSession {
    pub host: String,
    pub stream: String,
    /// `HLS`, `WebRTC`, `INPUT:RTMP`, ...
    pub protocol: String,
    pub connected_seconds: u64,
    pub down_bytes: u64,
    pub up_bytes: u64,
    pub down_bps: u64,
    pub up_bps: u64,
    pub session_id: String,
}

/// An outgoing push, from `push_list`.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The pid of the output process.
    pub id: u64,
    pub stream: String,
    pub target: String,
    pub target_used: String,
    /// Bytes, active seconds, media time, ... as Mist reports them.
    pub status: Value,
}

const ACTIVE_STREAM_FIELDS: [&str; 8] = [
    "status",
    "viewers",
    "inputs",
    "outputs",
    "upbytes",
    "downbytes",
    "viewseconds",
    "lastms",
];

fn bad(command: &'static str, problem: impl Into<String>) -> MistError {
    MistError::BadAnswer {
        command,
        problem: problem.into(),
    }
}

/// One row of a `{"fields": [...], "data": ...}` answer, by field name.
#[derive(Debug)]
struct Row {
    /// The row's key when `data` is an object (a stream name).
    name: Option<String>,
    values: BTreeMap<String, Value>,
}

impl Row {
    fn number(&self, field: &str) -> u64 {
        self.values.get(field).and_then(Value::as_u64).unwrap_or(0)
    }

    fn text(&self, field: &str) -> String {
        self.values
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

/// The rows of a `{"fields": [...], "data": [[...], ...] or {name: [...]}}` answer.
fn rows(command: &'static str, answer: &Value) -> Result<Vec<Row>, MistError> {
    let fields: Vec<String> = answer
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(command, "no field list"))?
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_owned())
        .collect();
    let data: Vec<(Option<String>, &Value)> = match answer.get("data") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(rows)) => rows.iter().map(|row| (None, row)).collect(),
        Some(Value::Object(rows)) => rows
            .iter()
            .map(|(name, row)| (Some(name.clone()), row))
            .collect(),
        Some(_) => return Err(bad(command, "data is neither a list nor an object")),
    };
    data.into_iter()
        .map(|(name, row)| {
            let values = row
                .as_array()
                .ok_or_else(|| bad(command, "a row is not a list"))?;
            Ok(Row {
                name,
                values: fields.iter().cloned().zip(values.iter().cloned()).collect(),
            })
        })
        .collect()
}

impl MistClient {
    async fn one(&self, command: &'static str, argument: Value) -> Result<Value, MistError> {
        let mut commands = Map::new();
        commands.insert(command.into(), argument);
        let mut answer = self.call(commands).await?;
        Ok(answer
            .as_object_mut()
            .and_then(|a| a.remove(command))
            .unwrap_or(Value::Null))
    }

    /// Mist's server id (sent back as `X-Name` on triggers) and its trigger set.
    pub async fn config(&self) -> Result<(Option<String>, TriggerSet), MistError> {
        let config = self.one("config", json!(true)).await?;
        let server_id = config
            .get("serverid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let triggers = match config.get("triggers") {
            None | Some(Value::Null) => TriggerSet::new(),
            Some(triggers) => serde_json::from_value(triggers.clone())
                .map_err(|e| bad("config", format!("triggers: {e}")))?,
        };
        Ok((server_id, triggers))
    }

    /// Sets the server id and replaces the whole trigger set.
    pub async fn set_triggers(
        &self,
        server_id: &str,
        triggers: &TriggerSet,
    ) -> Result<(), MistError> {
        self.one(
            "config",
            json!({ "serverid": server_id, "triggers": triggers }),
        )
        .await
        .map(drop)
    }

    /// Adds or updates a stream: `source` and any other options (DVR, ...).
    pub async fn add_stream(
        &self,
        name: &str,
        source: &str,
        options: Map<String, Value>,
    ) -> Result<(), MistError> {
        let mut stream = options;
        stream.insert("source".into(), json!(source));
        self.one("addstream", json!({ name: stream }))
            .await
            .map(drop)
    }

    /// The configured streams, by name, each with its options (`source`, `DVR`, ...).
    pub async fn streams(&self) -> Result<Map<String, Value>, MistError> {
        let streams = self.one("streams", json!(true)).await?;
        match streams {
            Value::Null => Ok(Map::new()),
            // Mist adds markers such as "incomplete list": 1 among the streams.
            Value::Object(streams) => Ok(streams
                .into_iter()
                .filter(|(_, stream)| stream.is_object())
                .collect()),
            other => Err(bad("streams", format!("not an object: {other}"))),
        }
    }

    pub async fn delete_stream(&self, name: &str) -> Result<(), MistError> {
        self.one("deletestream", json!(name)).await.map(drop)
    }

    /// The streams Mist is serving now.
    pub async fn active_streams(&self) -> Result<Vec<ActiveStream>, MistError> {
        let answer = self
            .one("active_streams", json!({ "fields": ACTIVE_STREAM_FIELDS }))
            .await?;
        rows("active_streams", &answer)?
            .into_iter()
            .map(|row| {
                Ok(ActiveStream {
                    name: row
                        .name
                        .clone()
                        .ok_or_else(|| bad("active_streams", "a stream without a name"))?,
                    status: row.text("status"),
                    viewers: row.number("viewers"),
                    inputs: row.number("inputs"),
                    outputs: row.number("outputs"),
                    up_bytes: row.number("upbytes"),
                    down_bytes: row.number("downbytes"),
                    viewer_seconds: row.number("viewseconds"),
                    last_ms: row.number("lastms"),
                })
            })
            .collect()
    }

    /// The connections Mist holds now.
    pub async fn clients(&self) -> Result<Vec<ClientSession>, MistError> {
        let answer = self.one("clients", json!({ "time": -1 })).await?;
        Ok(rows("clients", &answer)?
            .into_iter()
            .map(|row| ClientSession {
                host: row.text("host"),
                stream: row.text("stream"),
                protocol: row.text("protocol"),
                connected_seconds: row.number("conntime"),
                down_bytes: row.number("down"),
                up_bytes: row.number("up"),
                down_bps: row.number("downbps"),
                up_bps: row.number("upbps"),
                session_id: row.text("sessid"),
            })
            .collect())
    }

    /// Starts pushing `stream` to `target`; Mist answers nothing, so the
    /// push's id comes from [`MistClient::push_list`].
    pub async fn push_start(&self, stream: &str, target: &str) -> Result<(), MistError> {
        self.one("push_start", json!({ "stream": stream, "target": target }))
            .await
            .map(drop)
    }

    pub async fn push_list(&self) -> Result<Vec<Push>, MistError> {
        let answer = self.one("push_list", json!(true)).await?;
        let entries = match answer {
            Value::Null => return Ok(Vec::new()),
            Value::Array(entries) => entries,
            _ => return Err(bad("push_list", "not a list")),
        };
        entries
            .iter()
            .map(|entry| {
                let field = |i: usize| entry.get(i).cloned().unwrap_or(Value::Null);
                Ok(Push {
                    id: field(0)
                        .as_u64()
                        .ok_or_else(|| bad("push_list", "a push without an id"))?,
                    stream: field(1).as_str().unwrap_or_default().to_owned(),
                    target: field(2).as_str().unwrap_or_default().to_owned(),
                    target_used: field(3).as_str().unwrap_or_default().to_owned(),
                    status: field(5),
                })
            })
            .collect()
    }

    pub async fn push_stop(&self, ids: &[u64]) -> Result<(), MistError> {
        self.one("push_stop", json!(ids)).await.map(drop)
    }

    /// Pushes `stream` to `target` whenever it is live; answers the rule's id.
    pub async fn push_auto_add(&self, stream: &str, target: &str) -> Result<String, MistError> {
        let mut commands = Map::new();
        commands.insert(
            "push_auto_add".into(),
            json!({ "stream": stream, "target": target }),
        );
        let answer = self.call(commands).await?;
        answer
            .get("auto_push")
            .and_then(Value::as_object)
            .and_then(|rules| {
                rules.iter().find(|(_, rule)| {
                    rule.get("stream") == Some(&json!(stream))
                        && rule.get("target") == Some(&json!(target))
                })
            })
            .map(|(id, _)| id.clone())
            .ok_or_else(|| bad("push_auto_add", "the new rule is not in auto_push"))
    }

    pub async fn push_auto_remove(&self, id: &str) -> Result<(), MistError> {
        self.one("push_auto_remove", json!(id)).await.map(drop)
    }

    /// Kills every process of a stream.
    pub async fn nuke_stream(&self, name: &str) -> Result<(), MistError> {
        self.one("nuke_stream", json!(name)).await.map(drop)
    }

    /// Disconnects every viewer of a stream.
    pub async fn stop_sessions(&self, stream: &str) -> Result<(), MistError> {
        self.one("stop_sessions", json!(stream)).await.map(drop)
    }

    /// Makes Mist ask USER_NEW again for every session of a stream.
    pub async fn invalidate_sessions(&self, stream: &str) -> Result<(), MistError> {
        self.one("invalidate_sessions", json!(stream))
            .await
            .map(drop)
    }

    /// Connectors, inputs, load and the trigger list with payload docs.
    pub async fn capabilities(&self) -> Result<Value, MistError> {
        self.one("capabilities", json!(true)).await
    }

    /// MistServer's version string (`fw-51c613a4`). Mist answers an object
    /// (`{"version": .., "release": .., "date": .., "time": ..}`).
    pub async fn version(&self) -> Result<String, MistError> {
        let version = self.one("version", json!(true)).await?;
        version
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad("version", "no version string"))
    }

    /// Writes Mist's config to disk now.
    pub async fn save(&self) -> Result<(), MistError> {
        self.one("save", json!(true)).await.map(drop)
    }
}

impl TriggerHandler {
    /// The handler of `kind` on the edge daemon at `base` (`http://host:port`).
    pub fn for_trigger(kind: TriggerKind, base: &str, default: &str, onfail: Option<&str>) -> Self {
        Self {
            handler: format!("{}/trigger/{}", base.trim_end_matches('/'), kind.name()),
            sync: kind.blocking(),
            streams: Vec::new(),
            default: default.to_owned(),
            onfail: onfail.filter(|_| kind.blocking()).map(str::to_owned),
            params: None,
        }
    }
}
