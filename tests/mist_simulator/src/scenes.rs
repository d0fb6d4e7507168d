//! Realistic sequences of triggers, as a real MistServer fires them for a
//! broadcast: an encoder pushes (PUSH_REWRITE, answered by the edge), the
//! stream fills its buffer and lists its tracks, viewers arrive
//! (PLAY_REWRITE, USER_NEW) and leave (USER_END), and the encoder stops
//! (PUSH_INPUT_CLOSE, STREAM_END). Each trigger is a captured request with
//! its fields set for this stream, sent to the handler the edge registered
//! in the simulator's config, and the simulated state (`active_streams`,
//! `clients`) follows along so the edge's polls see the same thing.

use std::net::SocketAddr;
use std::time::Duration;

use crate::api::{ActiveStream, Client, MistApi, PushChange};
use crate::captures;
use crate::sender::{Firing, Reply};

/// How long Mist waits for a trigger handler.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error("no handler is registered for {0} (has the edge daemon configured Mist yet?)")]
    NoHandler(&'static str),
    #[error("the handler of {trigger} is not an http://host:port/ URL: {url}")]
    BadHandler { trigger: &'static str, url: String },
    #[error("{trigger}: {source}")]
    Send {
        trigger: &'static str,
        source: std::io::Error,
    },
    #[error("the push of the stream key was refused: {0}")]
    Refused(String),
}

/// One broadcast: `viewers` watch for `hold`, then everyone leaves.
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub stream_key: String,
    pub playback_id: String,
    pub viewers: u32,
    pub hold: Duration,
}

/// Where Mist would send `trigger`: the first handler in its config.
fn handler(api: &MistApi, trigger: &'static str) -> Result<(SocketAddr, String), SceneError> {
    let url = api
        .state()
        .triggers
        .get(trigger)
        .and_then(|handlers| handlers.get(0))
        .and_then(|handler| handler.get("handler"))
        .and_then(|url| url.as_str())
        .map(str::to_owned)
        .ok_or(SceneError::NoHandler(trigger))?;
    let bad = || SceneError::BadHandler {
        trigger,
        url: url.clone(),
    };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address = authority.parse().map_err(|_| bad())?;
    Ok((address, format!("/{path}")))
}

/// Fires `trigger` with the captured request's headers and `fields` as
/// its body, at the registered handler.
async fn fire(api: &MistApi, trigger: &'static str, fields: &[&str]) -> Result<Reply, SceneError> {
    let (address, path) = handler(api, trigger)?;
    let capture = captures::of(trigger)
        .next()
        .expect("every trigger of the scenes is in the captures");
    let mut firing = Firing::from_capture(capture, "/").with_body(fields.join("\n"));
    firing.path = path;
    firing
        .send(address, HANDLER_TIMEOUT)
        .await
        .map_err(|source| SceneError::Send { trigger, source })
}

/// What a push's output process makes Mist fire: PUSH_OUT_START when it
/// starts (blocking: a refused push ends at once), RECORDING_SEGMENT while
/// a recording (a file target) runs, RECORDING_END and PUSH_END when it
/// ends. Nothing fires for triggers no handler is registered for.
pub(crate) async fn report_pushes(api: MistApi, changes: Vec<PushChange>) {
    for change in changes {
        let ended = match change {
            PushChange::Started { id, stream, target } => {
                match fire(&api, "PUSH_OUT_START", &[&stream, &target]).await {
                    Ok(reply)
                        if reply.header("X-Mist-Trigger-Action") != Some("deny")
                            && !reply.body.is_empty() =>
                    {
                        if target.starts_with('/') {
                            let _ = fire(
                                &api,
                                "RECORDING_SEGMENT",
                                &[&stream, &target, "0", "6000", "6000"],
                            )
                            .await;
                        }
                        None
                    }
                    // No handler: Mist pushes unasked.
                    Err(SceneError::NoHandler(_)) => None,
                    // Refused (or no answer, and the default is to refuse).
                    _ => {
                        api.state().pushes.remove(&id);
                        Some((id, stream, target, "PUSH_OUT_START refused"))
                    }
                }
            }
            PushChange::Stopped { id, stream, target } => {
                Some((id, stream, target, "stopped by push_stop"))
            }
        };
        let Some((id, stream, target, reason)) = ended else {
            continue;
        };
        if target.starts_with('/') {
            let mut fields = vec![stream.as_str(), target.as_str()];
            let tail = captured_tail("RECORDING_END", 2);
            fields.extend(tail.iter().map(String::as_str));
            let _ = fire(&api, "RECORDING_END", &fields).await;
        }
        let logs = serde_json::json!([[0, "INFO", reason, stream, id, "MistOut", ""]]).to_string();
        let _ = fire(
            &api,
            "PUSH_END",
            &[&id.to_string(), &stream, &target, &target, &logs, "{}"],
        )
        .await;
    }
}

/// The captured body's fields from the `keep`th on, after the ones a scene sets.
fn captured_tail(trigger: &str, keep: usize) -> Vec<String> {
    captures::of(trigger)
        .next()
        .map(|c| c.body.split('\n').skip(keep).map(str::to_owned).collect())
        .unwrap_or_default()
}

impl Broadcast {
    /// Plays the broadcast once; answers the internal stream name it went live as.
    pub async fn play(&self, api: &MistApi) -> Result<String, SceneError> {
        let url = format!("rtmp://127.0.0.1:1935/live/{}", self.stream_key);
        let push = fire(
            api,
            "PUSH_REWRITE",
            &[&url, "198.51.100.20", &self.stream_key],
        )
        .await?;
        let denied = push.header("X-Mist-Trigger-Action") == Some("deny") || push.body.is_empty();
        if denied {
            let reason = push
                .header("X-Mist-Trigger-Reason")
                .unwrap_or("no reason given");
            return Err(SceneError::Refused(reason.to_owned()));
        }
        let stream = push.body.clone();
        api.state().active.insert(
            stream.clone(),
            ActiveStream {
                status: "Online".into(),
                inputs: 1,
                ..Default::default()
            },
        );
        api.state().clients.push(Client {
            host: "198.51.100.20".into(),
            stream: stream.clone(),
            protocol: "INPUT:RTMP".into(),
            down_bps: 2_500_000,
            session_id: format!("input-{stream}"),
            ..Default::default()
        });
        let rest = |trigger, keep| captured_tail(trigger, keep);
        let buffer = rest("STREAM_BUFFER", 1);
        let mut fields = vec![stream.as_str()];
        fields.extend(buffer.iter().map(String::as_str));
        fire(api, "STREAM_BUFFER", &fields).await?;
        let tracks = rest("LIVE_TRACK_LIST", 1);
        let mut fields = vec![stream.as_str()];
        fields.extend(tracks.iter().map(String::as_str));
        fire(api, "LIVE_TRACK_LIST", &fields).await?;

        let play_url = format!("http://127.0.0.1:8080/hls/{}/index.m3u8", self.playback_id);
        let mut admitted = Vec::new();
        for viewer in 0..self.viewers {
            let host = format!("203.0.113.{}", 10 + viewer);
            fire(
                api,
                "PLAY_REWRITE",
                &[&self.playback_id, &host, "HLS", &play_url],
            )
            .await?;
            let connection = (4_000_000_000u32 + viewer).to_string();
            let session = format!("{:064x}", u128::from(viewer) + 1);
            let answer = fire(
                api,
                "USER_NEW",
                &[
                    &stream,
                    &host,
                    &connection,
                    "HLS",
                    &play_url,
                    &session,
                    "false",
                ],
            )
            .await?;
            if answer.body == "true" {
                admitted.push((host, connection, session));
            }
        }
        {
            let mut state = api.state();
            if let Some(active) = state.active.get_mut(&stream) {
                active.viewers = admitted.len() as u64;
            }
            for (host, _, session) in &admitted {
                state.clients.push(Client {
                    host: host.clone(),
                    stream: stream.clone(),
                    protocol: "HLS".into(),
                    up_bps: 3_000_000,
                    session_id: session.clone(),
                    ..Default::default()
                });
            }
        }
        tokio::time::sleep(self.hold).await;

        let seconds = self.hold.as_secs().to_string();
        let sent = (self.hold.as_secs() * 375_000).to_string();
        let tags = rest("USER_END", 7);
        for (host, connection, session) in &admitted {
            let mut fields = vec![
                connection.as_str(),
                &stream,
                "HLS",
                host,
                &seconds,
                &sent,
                "0",
            ];
            // The captured tail (tags, counters) with this viewer's session id last.
            let mut tail: Vec<&str> = tags.iter().map(String::as_str).collect();
            if let Some(last) = tail.last_mut() {
                *last = session;
            }
            fields.extend(tail);
            fire(api, "USER_END", &fields).await?;
        }
        let close = rest("PUSH_INPUT_CLOSE", 2);
        let mut fields = vec![stream.as_str(), "198.51.100.20"];
        fields.extend(close.iter().map(String::as_str));
        fire(api, "PUSH_INPUT_CLOSE", &fields).await?;
        let end = rest("STREAM_END", 1);
        let mut fields = vec![stream.as_str()];
        fields.extend(end.iter().map(String::as_str));
        fire(api, "STREAM_END", &fields).await?;
        {
            let mut state = api.state();
            state.active.remove(&stream);
            state.clients.retain(|client| client.stream != stream);
        }
        Ok(stream)
    }
}
