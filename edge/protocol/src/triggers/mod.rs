//! MistServer's triggers as they arrive over HTTP: the envelope its headers
//! carry ([`TriggerMeta`]) and the typed payload its body carries
//! ([`Trigger`]), parsed exactly as a real MistServer sends them
//! (`tests/mist_simulator/captures/triggers.jsonl`).
//!
//! The body is one field per line with no trailing newline, except that
//! some triggers end with an empty field (OUTPUT_END, PROCESS_EXIT,
//! LIVE_TRACK_LIST, RECORDING_END). Fields are read by position; a payload
//! with too few or too many fields, or a field that does not read as its
//! type, is refused with an error naming the trigger, the field and why.

mod payload;
pub mod scrub;

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

pub use payload::*;

/// Largest trigger body accepted; Mist's biggest (a track list or a
/// recording summary) is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

macro_rules! trigger_kinds {
    ($($variant:ident = $name:literal, blocking: $blocking:literal;)*) => {
        /// The triggers the edge daemon registers and understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum TriggerKind {
            $($variant,)*
        }

        impl TriggerKind {
            pub const ALL: &'static [TriggerKind] = &[$(TriggerKind::$variant,)*];

            /// Mist's name, as in the `X-Trigger` header and its config.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// Whether Mist waits for the answer (registered with `sync: true`).
            pub fn blocking(self) -> bool {
                match self { $(Self::$variant => $blocking,)* }
            }
        }

        impl FromStr for TriggerKind {
            type Err = TriggerError;

            fn from_str(name: &str) -> Result<Self, TriggerError> {
                match name {
                    $($name => Ok(Self::$variant),)*
                    other => Err(TriggerError::UnknownTrigger(other.chars().take(64).collect())),
                }
            }
        }
    };
}

trigger_kinds! {
    ConnClose = "CONN_CLOSE", blocking: false;
    ConnOpen = "CONN_OPEN", blocking: false;
    ConnPlay = "CONN_PLAY", blocking: false;
    DefaultStream = "DEFAULT_STREAM", blocking: true;
    InputAbort = "INPUT_ABORT", blocking: false;
    LiveBandwidth = "LIVE_BANDWIDTH", blocking: false;
    LiveTrackList = "LIVE_TRACK_LIST", blocking: false;
    OutputEnd = "OUTPUT_END", blocking: false;
    OutputStart = "OUTPUT_START", blocking: false;
    PlayRewrite = "PLAY_REWRITE", blocking: true;
    ProcessExit = "PROCESS_EXIT", blocking: false;
    PushEnd = "PUSH_END", blocking: false;
    PushInputClose = "PUSH_INPUT_CLOSE", blocking: false;
    PushOutStart = "PUSH_OUT_START", blocking: true;
    PushRewrite = "PUSH_REWRITE", blocking: true;
    RecordingEnd = "RECORDING_END", blocking: false;
    RecordingSegment = "RECORDING_SEGMENT", blocking: false;
    RtmpPushRewrite = "RTMP_PUSH_REWRITE", blocking: true;
    StreamAdd = "STREAM_ADD", blocking: false;
    StreamBuffer = "STREAM_BUFFER", blocking: false;
    StreamConfig = "STREAM_CONFIG", blocking: false;
    StreamEnd = "STREAM_END", blocking: false;
    StreamLoad = "STREAM_LOAD", blocking: false;
    StreamProcess = "STREAM_PROCESS", blocking: false;
    StreamPush = "STREAM_PUSH", blocking: false;
    StreamReady = "STREAM_READY", blocking: false;
    StreamRemove = "STREAM_REMOVE", blocking: false;
    StreamSource = "STREAM_SOURCE", blocking: true;
    StreamUnload = "STREAM_UNLOAD", blocking: false;
    SystemStart = "SYSTEM_START", blocking: false;
    SystemStop = "SYSTEM_STOP", blocking: false;
    UserEnd = "USER_END", blocking: false;
    UserNew = "USER_NEW", blocking: true;
}

impl TriggerKind {
    /// Triggers that book usage: each is kept in the edge's durable log
    /// until the balancer acknowledges it, and counted exactly once.
    pub fn accounting(self) -> bool {
        matches!(
            self,
            Self::UserEnd
                | Self::StreamEnd
                | Self::PushEnd
                | Self::RecordingEnd
                | Self::RecordingSegment
                | Self::PushInputClose
        )
    }
}

impl fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a trigger request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {header} is not {expected}: {value:?}")]
    BadHeader {
        header: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("unknown trigger {0:?}")]
    UnknownTrigger(String),
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("{trigger} carries {got} fields; expected {}", expected(*.min, *.max))]
    FieldCount {
        trigger: TriggerKind,
        min: usize,
        max: usize,
        got: usize,
    },
    #[error("{trigger} field {index} ({name}) {problem}")]
    BadField {
        trigger: TriggerKind,
        /// 1-based, as Mist documents its fields.
        index: usize,
        name: &'static str,
        problem: String,
    },
}

impl TriggerError {
    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) | Self::BadHeader { .. } => "bad_header",
            Self::UnknownTrigger(_) => "unknown_trigger",
            Self::NotUtf8 => "not_utf8",
            Self::TooLarge => "too_large",
            Self::FieldCount { .. } => "field_count",
            Self::BadField { .. } => "bad_field",
        }
    }
}

fn expected(min: usize, max: usize) -> String {
    if min == max {
        format!("{min}")
    } else {
        format!("{min} to {max}")
    }
}

/// What Mist's headers say about one trigger request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerMeta {
    pub kind: TriggerKind,
    /// `X-Trigger-UUID`: unique per firing; the id accounting keys on.
    pub uuid: Uuid,
    /// `X-Trigger-UnixMillis`: when Mist fired it.
    pub unix_millis: i64,
    /// `X-PID`: the Mist process that fired it.
    pub pid: u32,
    /// `X-Name`: the server id set in Mist's config, if any.
    pub server_name: Option<String>,
    /// `X-Instance`: the controller's instance (absent on SYSTEM_START).
    pub instance: Option<String>,
    /// `X-Version`: MistServer's version.
    pub version: Option<String>,
    /// `X-Attempt`: Mist retries a failed delivery.
    pub attempt: u32,
}

impl TriggerMeta {
    /// Reads the envelope from the request's headers (`header(name)` looks one up).
    pub fn from_headers<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, TriggerError> {
        let required = |name: &'static str| header(name).ok_or(TriggerError::MissingHeader(name));
        let bad =
            |header: &'static str, expected: &'static str, value: &str| TriggerError::BadHeader {
                header,
                expected,
                value: value.chars().take(64).collect(),
            };
        let kind: TriggerKind = required("X-Trigger")?.parse()?;
        let uuid = required("X-Trigger-UUID")?;
        let uuid = Uuid::parse_str(uuid).map_err(|_| bad("X-Trigger-UUID", "a UUID", uuid))?;
        let millis = required("X-Trigger-UnixMillis")?;
        let unix_millis = millis
            .parse()
            .map_err(|_| bad("X-Trigger-UnixMillis", "a number", millis))?;
        let pid = required("X-PID")?;
        let pid = pid.parse().map_err(|_| bad("X-PID", "a process id", pid))?;
        let attempt = match header("X-Attempt") {
            None => 1,
            Some(value) => value
                .parse()
                .map_err(|_| bad("X-Attempt", "a number", value))?,
        };
        Ok(Self {
            kind,
            uuid,
            unix_millis,
            pid,
            server_name: header("X-Name").map(str::to_owned),
            instance: header("X-Instance").map(str::to_owned),
            version: header("X-Version").map(str::to_owned),
            attempt,
        })
    }
}

/// A trigger request, read whole: its envelope and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRequest {
    pub meta: TriggerMeta,
    pub trigger: Trigger,
}

impl TriggerRequest {
    pub fn parse<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
    ) -> Result<Self, TriggerError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(TriggerError::TooLarge);
        }
        let meta = TriggerMeta::from_headers(header)?;
        let body = std::str::from_utf8(body).map_err(|_| TriggerError::NotUtf8)?;
        let trigger = Trigger::parse(meta.kind, body)?;
        Ok(Self { meta, trigger })
    }
}
