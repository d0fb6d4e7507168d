//! Trigger payloads, field by field. Where a real MistServer sends more
//! fields than its documentation lists (USER_NEW, USER_END), the extra ones
//! are kept as they came, under `extra`.

use std::str::FromStr;

use serde_json::Value;

use super::{TriggerError, TriggerKind};

/// A connection as CONN_OPEN, CONN_PLAY, CONN_CLOSE, PLAY_REWRITE and
/// STREAM_PUSH describe it. The stream is empty before one is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub stream: String,
    pub address: String,
    /// `RTMP`, `HLS`, `WebRTC`, ...
    pub connector: String,
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferState {
    Empty,
    Full,
    Dry,
    Recover,
}

/// An output (a push, a recording, a viewer's connection) that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEnded {
    pub stream: String,
    /// Empty for a viewer's or publisher's own connection.
    pub target: String,
    pub connector: String,
    pub bytes: u64,
    pub seconds: u64,
    pub started_unix: i64,
    pub stopped_unix: i64,
    pub media_ms: u64,
    /// None when no media packet went out (Mist sends u64::MAX).
    pub first_ms: Option<u64>,
    pub last_ms: u64,
    /// Machine-readable: `CLEAN_INTENDED_STOP`, `CLEAN_SIGNAL`, `TRIGGER`, ...
    pub reason_code: String,
    pub reason: String,
}

/// An input process that stopped (INPUT_ABORT, PUSH_INPUT_CLOSE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputExit {
    pub stream: String,
    /// The source URI (INPUT_ABORT) or the pushing host (PUSH_INPUT_CLOSE).
    pub source: String,
    pub binary: String,
    pub pid: u32,
    pub reason_code: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    ConnClose(Connection),
    ConnOpen(Connection),
    ConnPlay(Connection),
    DefaultStream {
        default_stream: String,
        requested: String,
        viewer_host: String,
        output_type: String,
        url: String,
    },
    InputAbort(InputExit),
    LiveBandwidth {
        stream: String,
        bytes_per_second: u64,
    },
    LiveTrackList {
        stream: String,
        /// None when Mist sends an empty field: no valid tracks left.
        tracks: Option<Value>,
    },
    OutputEnd(OutputEnded),
    OutputStart {
        connector: Value,
    },
    PlayRewrite(Connection),
    ProcessExit {
        stream: String,
        process_type: String,
        config: Value,
        pid: u32,
        exit_code: i64,
        boot_count: u64,
        /// `clean`, `retrying`, `disabled` or `unrecoverable`.
        status: String,
        reason_code: String,
        reason: String,
    },
    PushEnd {
        push_id: u64,
        stream: String,
        target: String,
        target_used: String,
        /// The push's last log lines.
        logs: Value,
        /// Its last status: bytes, active seconds, media time, ...
        status: Value,
    },
    PushInputClose {
        exit: InputExit,
        tracks: Value,
    },
    PushOutStart {
        stream: String,
        target: String,
    },
    PushRewrite {
        url: String,
        host: String,
        stream: String,
    },
    RecordingEnd {
        output: OutputEnded,
        /// The recorded tracks, when Mist includes them.
        summary: Option<Value>,
    },
    RecordingSegment {
        stream: String,
        path: String,
        duration_ms: u64,
        start_ms: u64,
        end_ms: u64,
    },
    RtmpPushRewrite {
        url: String,
        host: String,
    },
    StreamAdd {
        stream: String,
        config: Value,
    },
    StreamBuffer {
        stream: String,
        state: BufferState,
        /// Absent when the buffer is EMPTY.
        health: Option<Value>,
    },
    StreamConfig {
        stream: String,
        config: Value,
    },
    StreamEnd {
        stream: String,
        downloaded_bytes: u64,
        uploaded_bytes: u64,
        total_viewers: u64,
        total_inputs: u64,
        total_outputs: u64,
        viewer_seconds: u64,
    },
    StreamLoad {
        stream: String,
    },
    StreamProcess {
        stream: String,
    },
    StreamPush(Connection),
    StreamReady {
        stream: String,
        input: String,
    },
    StreamRemove {
        stream: String,
    },
    StreamSource {
        stream: String,
    },
    StreamUnload {
        stream: String,
        input: String,
        reason: Option<String>,
    },
    SystemStart {
        version: Option<String>,
    },
    SystemStop {
        reason: String,
    },
    UserEnd {
        /// The session token USER_NEW carried (its third field).
        session: String,
        stream: String,
        connector: String,
        address: String,
        duration_seconds: u64,
        uploaded_bytes: u64,
        downloaded_bytes: u64,
        /// `[UA:curl/7.88.1]` and the like, without brackets.
        tags: Vec<String>,
        extra: Vec<String>,
    },
    UserNew {
        stream: String,
        address: String,
        /// The viewer's session token: what the viewer brought in `?tkn=`,
        /// `?sid=`, `?jwt=`, a cookie or a Bearer header, else a number Mist
        /// made up. USER_END's first field is the same token.
        session_token: String,
        connector: String,
        url: String,
        /// A hash identifying the viewer's session across connections.
        session_id: String,
        extra: Vec<String>,
    },
}

/// A payload's fields, read in order.
struct Fields<'a> {
    kind: TriggerKind,
    fields: Vec<&'a str>,
    next: usize,
}

impl<'a> Fields<'a> {
    /// Splits `body`, allowing `min` to `max` fields, plus one trailing empty field.
    fn new(kind: TriggerKind, body: &'a str, min: usize, max: usize) -> Result<Self, TriggerError> {
        let mut fields: Vec<&str> = body.split('\n').collect();
        if fields.len() == max + 1 && fields.last() == Some(&"") {
            fields.pop();
        }
        if fields == [""] && min == 0 {
            fields.clear();
        }
        if !(min..=max).contains(&fields.len()) {
            return Err(TriggerError::FieldCount {
                trigger: kind,
                min,
                max,
                got: fields.len(),
            });
        }
        Ok(Self {
            kind,
            fields,
            next: 0,
        })
    }

    fn raw(&mut self) -> Option<&'a str> {
        let field = self.fields.get(self.next).copied();
        self.next += 1;
        field
    }

    fn text(&mut self) -> String {
        self.raw().unwrap_or_default().to_owned()
    }

    fn optional_text(&mut self) -> Option<String> {
        self.raw().map(str::to_owned)
    }

    fn bad(&self, name: &'static str, problem: impl Into<String>) -> TriggerError {
        TriggerError::BadField {
            trigger: self.kind,
            index: self.next,
            name,
            problem: problem.into(),
        }
    }

    fn number<T: FromStr>(&mut self, name: &'static str) -> Result<T, TriggerError> {
        let raw = self.raw().unwrap_or_default();
        raw.trim()
            .parse()
            .map_err(|_| self.bad(name, format!("is not a number: {:?}", truncated(raw))))
    }

    fn json(&mut self, name: &'static str) -> Result<Value, TriggerError> {
        let raw = self.raw().unwrap_or_default();
        serde_json::from_str(raw).map_err(|e| self.bad(name, format!("is not JSON: {e}")))
    }

    fn optional_json(&mut self, name: &'static str) -> Result<Option<Value>, TriggerError> {
        match self.fields.get(self.next) {
            None | Some(&"") => {
                self.next += 1;
                Ok(None)
            }
            Some(_) => self.json(name).map(Some),
        }
    }

    fn rest(&mut self) -> Vec<String> {
        let rest = self.fields[self.next.min(self.fields.len())..]
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        self.next = self.fields.len();
        rest
    }

    fn connection(&mut self) -> Connection {
        Connection {
            stream: self.text(),
            address: self.text(),
            connector: self.text(),
            url: self.text(),
        }
    }

    fn output_ended(&mut self) -> Result<OutputEnded, TriggerError> {
        Ok(OutputEnded {
            stream: self.text(),
            target: self.text(),
            connector: self.text(),
            bytes: self.number("bytes")?,
            seconds: self.number("seconds")?,
            started_unix: self.number("started at")?,
            stopped_unix: self.number("stopped at")?,
            media_ms: self.number("media milliseconds")?,
            first_ms: Some(self.number::<u64>("first packet ms")?).filter(|&ms| ms != u64::MAX),
            last_ms: self.number("last packet ms")?,
            reason_code: self.text(),
            reason: self.text(),
        })
    }

    fn input_exit(&mut self) -> Result<InputExit, TriggerError> {
        Ok(InputExit {
            stream: self.text(),
            source: self.text(),
            binary: self.text(),
            pid: self.number("pid")?,
            reason_code: self.text(),
            reason: self.text(),
        })
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

/// `[UA:curl/7.88.1][other]` as `["UA:curl/7.88.1", "other"]`.
fn tags(raw: &str) -> Vec<String> {
    raw.split(['[', ']'])
        .filter(|tag| !tag.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Trigger {
    /// Reads the payload of a `kind` trigger.
    pub fn parse(kind: TriggerKind, body: &str) -> Result<Self, TriggerError> {
        use TriggerKind as K;
        let fields = |min, max| Fields::new(kind, body, min, max);
        Ok(match kind {
            K::ConnClose => Self::ConnClose(fields(4, 4)?.connection()),
            K::ConnOpen => Self::ConnOpen(fields(4, 4)?.connection()),
            K::ConnPlay => Self::ConnPlay(fields(4, 4)?.connection()),
            K::PlayRewrite => Self::PlayRewrite(fields(4, 4)?.connection()),
            K::StreamPush => Self::StreamPush(fields(4, 4)?.connection()),
            K::DefaultStream => {
                let mut f = fields(5, 5)?;
                Self::DefaultStream {
                    default_stream: f.text(),
                    requested: f.text(),
                    viewer_host: f.text(),
                    output_type: f.text(),
                    url: f.text(),
                }
            }
            K::InputAbort => Self::InputAbort(fields(6, 6)?.input_exit()?),
            K::LiveBandwidth => {
                let mut f = fields(2, 2)?;
                Self::LiveBandwidth {
                    stream: f.text(),
                    bytes_per_second: f.number("bytes per second")?,
                }
            }
            K::LiveTrackList => {
                let mut f = fields(2, 2)?;
                Self::LiveTrackList {
                    stream: f.text(),
                    tracks: f.optional_json("track list")?,
                }
            }
            K::OutputEnd => Self::OutputEnd(fields(12, 12)?.output_ended()?),
            K::OutputStart => Self::OutputStart {
                connector: fields(1, 1)?.json("connector configuration")?,
            },
            K::ProcessExit => {
                let mut f = fields(9, 9)?;
                Self::ProcessExit {
                    stream: f.text(),
                    process_type: f.text(),
                    config: f.json("process config")?,
                    pid: f.number("pid")?,
                    exit_code: f.number("exit code")?,
                    boot_count: f.number("boot count")?,
                    status: f.text(),
                    reason_code: f.text(),
                    reason: f.text(),
                }
            }
            K::PushEnd => {
                let mut f = fields(6, 6)?;
                Self::PushEnd {
                    push_id: f.number("push id")?,
                    stream: f.text(),
                    target: f.text(),
                    target_used: f.text(),
                    logs: f.json("log messages")?,
                    status: f.json("push status")?,
                }
            }
            K::PushInputClose => {
                let mut f = fields(7, 7)?;
                Self::PushInputClose {
                    exit: f.input_exit()?,
                    tracks: f.json("tracks")?,
                }
            }
            K::PushOutStart => {
                let mut f = fields(2, 2)?;
                Self::PushOutStart {
                    stream: f.text(),
                    target: f.text(),
                }
            }
            K::PushRewrite => {
                let mut f = fields(3, 3)?;
                Self::PushRewrite {
                    url: f.text(),
                    host: f.text(),
                    stream: f.text(),
                }
            }
            K::RecordingEnd => {
                let mut f = fields(12, 13)?;
                Self::RecordingEnd {
                    output: f.output_ended()?,
                    summary: f.optional_json("track summary")?,
                }
            }
            K::RecordingSegment => {
                let mut f = fields(5, 5)?;
                Self::RecordingSegment {
                    stream: f.text(),
                    path: f.text(),
                    duration_ms: f.number("duration ms")?,
                    start_ms: f.number("start ms")?,
                    end_ms: f.number("end ms")?,
                }
            }
            K::RtmpPushRewrite => {
                let mut f = fields(2, 2)?;
                Self::RtmpPushRewrite {
                    url: f.text(),
                    host: f.text(),
                }
            }
            K::StreamAdd => {
                let mut f = fields(2, 2)?;
                Self::StreamAdd {
                    stream: f.text(),
                    config: f.json("stream configuration")?,
                }
            }
            K::StreamConfig => {
                let mut f = fields(2, 2)?;
                Self::StreamConfig {
                    stream: f.text(),
                    config: f.json("stream configuration")?,
                }
            }
            K::StreamBuffer => {
                let mut f = fields(2, 3)?;
                let stream = f.text();
                let state = match f.raw().unwrap_or_default() {
                    "EMPTY" => BufferState::Empty,
                    "FULL" => BufferState::Full,
                    "DRY" => BufferState::Dry,
                    "RECOVER" => BufferState::Recover,
                    other => {
                        return Err(f.bad(
                            "buffer state",
                            format!("is not EMPTY, FULL, DRY or RECOVER: {:?}", truncated(other)),
                        ));
                    }
                };
                Self::StreamBuffer {
                    stream,
                    state,
                    health: f.optional_json("buffer health")?,
                }
            }
            K::StreamEnd => {
                let mut f = fields(7, 7)?;
                Self::StreamEnd {
                    stream: f.text(),
                    downloaded_bytes: f.number("downloaded bytes")?,
                    uploaded_bytes: f.number("uploaded bytes")?,
                    total_viewers: f.number("total viewers")?,
                    total_inputs: f.number("total inputs")?,
                    total_outputs: f.number("total outputs")?,
                    viewer_seconds: f.number("viewer seconds")?,
                }
            }
            K::StreamLoad => Self::StreamLoad {
                stream: fields(1, 1)?.text(),
            },
            K::StreamProcess => Self::StreamProcess {
                stream: fields(1, 1)?.text(),
            },
            K::StreamRemove => Self::StreamRemove {
                stream: fields(1, 1)?.text(),
            },
            K::StreamSource => Self::StreamSource {
                stream: fields(1, 1)?.text(),
            },
            K::StreamReady => {
                let mut f = fields(2, 2)?;
                Self::StreamReady {
                    stream: f.text(),
                    input: f.text(),
                }
            }
            K::StreamUnload => {
                let mut f = fields(2, 3)?;
                Self::StreamUnload {
                    stream: f.text(),
                    input: f.text(),
                    reason: f.optional_text(),
                }
            }
            K::SystemStart => Self::SystemStart {
                version: fields(0, 1)?.optional_text(),
            },
            K::SystemStop => Self::SystemStop {
                reason: fields(1, 1)?.text(),
            },
            K::UserEnd => {
                let mut f = fields(8, 16)?;
                Self::UserEnd {
                    session: f.text(),
                    stream: f.text(),
                    connector: f.text(),
                    address: f.text(),
                    duration_seconds: f.number("duration")?,
                    uploaded_bytes: f.number("uploaded bytes")?,
                    downloaded_bytes: f.number("downloaded bytes")?,
                    tags: tags(&f.text()),
                    extra: f.rest(),
                }
            }
            K::UserNew => {
                let mut f = fields(6, 12)?;
                Self::UserNew {
                    stream: f.text(),
                    address: f.text(),
                    session_token: f.text(),
                    connector: f.text(),
                    url: f.text(),
                    session_id: f.text(),
                    extra: f.rest(),
                }
            }
        })
    }

    /// The stream the trigger is about, if it names one.
    pub fn stream(&self) -> Option<&str> {
        let stream = match self {
            Self::ConnClose(c)
            | Self::ConnOpen(c)
            | Self::ConnPlay(c)
            | Self::PlayRewrite(c)
            | Self::StreamPush(c) => &c.stream,
            Self::DefaultStream { requested, .. } => requested,
            Self::InputAbort(exit) | Self::PushInputClose { exit, .. } => &exit.stream,
            Self::OutputEnd(output) | Self::RecordingEnd { output, .. } => &output.stream,
            Self::LiveBandwidth { stream, .. }
            | Self::LiveTrackList { stream, .. }
            | Self::ProcessExit { stream, .. }
            | Self::PushEnd { stream, .. }
            | Self::PushOutStart { stream, .. }
            | Self::PushRewrite { stream, .. }
            | Self::RecordingSegment { stream, .. }
            | Self::StreamAdd { stream, .. }
            | Self::StreamBuffer { stream, .. }
            | Self::StreamConfig { stream, .. }
            | Self::StreamEnd { stream, .. }
            | Self::StreamLoad { stream }
            | Self::StreamProcess { stream }
            | Self::StreamReady { stream, .. }
            | Self::StreamRemove { stream }
            | Self::StreamSource { stream }
            | Self::StreamUnload { stream, .. }
            | Self::UserEnd { stream, .. }
            | Self::UserNew { stream, .. } => stream,
            Self::OutputStart { .. }
            | Self::RtmpPushRewrite { .. }
            | Self::SystemStart { .. }
            | Self::SystemStop { .. } => return None,
        };
        Some(stream.as_str()).filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_empty_field_is_dropped_only_beyond_the_last_field() {
        // CONN_OPEN before a stream is chosen: empty first and last fields.
        let open = Trigger::parse(TriggerKind::ConnOpen, "\n127.0.0.1\nRTMP\n");
        assert_eq!(
            open,
            Ok(Trigger::ConnOpen(Connection {
                stream: String::new(),
                address: "127.0.0.1".into(),
                connector: "RTMP".into(),
                url: String::new(),
            }))
        );
        let tracks = Trigger::parse(TriggerKind::LiveTrackList, "test\n{}\n");
        assert!(matches!(tracks, Ok(Trigger::LiveTrackList { .. })));
    }

    #[test]
    fn bad_payloads_name_the_field_and_the_problem() {
        let short = Trigger::parse(TriggerKind::StreamEnd, "test\n1\n2");
        assert_eq!(
            short.map_err(|e| e.to_string()),
            Err("STREAM_END carries 3 fields; expected 7".into())
        );
        let not_a_number = Trigger::parse(TriggerKind::LiveBandwidth, "test\nfast");
        assert_eq!(
            not_a_number.map_err(|e| e.to_string()),
            Err("LIVE_BANDWIDTH field 2 (bytes per second) is not a number: \"fast\"".into())
        );
        let state = Trigger::parse(TriggerKind::StreamBuffer, "test\nHALF");
        assert!(matches!(
            state,
            Err(TriggerError::BadField {
                index: 2,
                name: "buffer state",
                ..
            })
        ));
        let json = Trigger::parse(TriggerKind::StreamAdd, "test\n{not json");
        assert!(matches!(json, Err(TriggerError::BadField { index: 2, .. })));
    }

    #[test]
    fn no_first_packet_reads_as_none() {
        let body = "test\n\nRTMP\n3724\n21\n1795237038\n1795237059\n0\n18446744073709551615\n0\nCLEAN_INTENDED_STOP\nreceived deleteStream\n";
        let Ok(Trigger::OutputEnd(ended)) = Trigger::parse(TriggerKind::OutputEnd, body) else {
            panic!("OUTPUT_END parses");
        };
        assert_eq!((ended.bytes, ended.first_ms), (3724, None));
    }

    #[test]
    fn tags_lose_their_brackets() {
        assert_eq!(tags("[UA:curl/7.88.1][x]"), vec!["UA:curl/7.88.1", "x"]);
        assert!(tags("").is_empty());
    }
}
