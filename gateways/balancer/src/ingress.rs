//! The ingress: edges submit the triggers their MistServer fired, and ask
//! what their blocking answers need (`frameworks.edge.v1.Ingress`).
//!
//! Every trigger lands in Kafka as it came (`node.mist_trigger_received`,
//! keyed by node), and those about a platform stream also as typed stream
//! telemetry, with the stream's tenant resolved: ingest start and end,
//! buffer state and health, track lists, viewer sessions. A trigger is
//! acknowledged only when Kafka holds all of that (acks=all); otherwise the
//! edge sends it again, and the typed events carry its trigger id, which
//! downstream counts once.

use chrono::{DateTime, Utc};
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryError};
use frameworks_edge_protocol::proto::ingress_server::Ingress;
use frameworks_edge_protocol::proto::{
    RejectedTrigger, ResolveRequest, Route, TriggerAck, TriggerBatch, edge_command, resolve_request,
};
use frameworks_edge_protocol::triggers::{BufferState as MistBuffer, Trigger, TriggerKind};
use frameworks_events::EventPayload;
use frameworks_events::proto::v1::telemetry::{
    BufferState, IngestEnded, IngestStarted, InputClosed, MistTriggerReceived, PushEnded,
    RecordingEnded, RecordingSegmentWritten, StreamBufferChanged, StreamHealthReported, Track,
    TrackListUpdated, ViewerSessionEnded, ViewerSessionStarted,
};
use metrics::counter;
use serde_json::Value;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::control::EdgeControlService;
use crate::directory::{self, DirectoryError, IngestDecision, IngestRefusal, stream_of};

/// Most triggers in one submission.
const MAX_BATCH: usize = 1_000;

/// How long an accepted push holds its stream for its edge before the live
/// state shows it there (released early when the ingest ends).
const INGEST_CLAIM_HOLD: std::time::Duration = std::time::Duration::from_secs(20);

/// How long an ingest that started waits for Mist's full buffer to be
/// recorded; a stream that takes longer to buffer is not recorded.
const RECORDING_DUE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Namespace of the event ids derived from trigger ids.
const TRIGGER_EVENTS: Uuid = Uuid::from_u128(0x6a0f_4d2e_8b1c_4f3a_9e57_2c81_d0b4_e613);

/// The id of a trigger's `index`th record: the same each time the edge
/// sends the trigger, so a resent trigger's events are duplicates by id.
fn record_id(trigger_id: &str, index: usize) -> Uuid {
    Uuid::new_v5(&TRIGGER_EVENTS, format!("{trigger_id}/{index}").as_bytes())
}

fn unavailable(error: DirectoryError) -> Status {
    warn!(error = %error, "the directory could not answer");
    Status::unavailable("the platform's projections cannot be read now; retry")
}

/// A typed fact about a platform stream, before its tenant is known.
#[derive(Debug)]
struct StreamFact {
    stream: Uuid,
    payload: EventPayload,
}

fn buffer_state(state: MistBuffer) -> BufferState {
    match state {
        MistBuffer::Empty => BufferState::Empty,
        MistBuffer::Full => BufferState::Full,
        MistBuffer::Dry => BufferState::Dry,
        MistBuffer::Recover => BufferState::Recover,
    }
}

fn number(value: &Value, field: &str) -> u64 {
    value.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// STREAM_BUFFER's health object: per-track entries beside stream totals.
fn health(node: &str, health: &Value) -> StreamHealthReported {
    let tracks = health
        .get("tracks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|name| health.get(name));
    let (mut kbits, mut fps, mut max_keyframe_ms) = (0, 0.0, 0);
    for track in tracks {
        kbits += number(track, "kbits");
        if let Some(video_fps) = track.get("efps").and_then(Value::as_f64) {
            fps = f64::max(fps, video_fps);
        }
        if let Some(keys) = track.get("keys") {
            max_keyframe_ms = max_keyframe_ms.max(number(keys, "ms_max"));
        }
    }
    let issues = match health.get("issues") {
        Some(Value::String(issues)) => issues
            .split_whitespace()
            .map(str::to_owned)
            .take(32)
            .collect(),
        _ => Vec::new(),
    };
    StreamHealthReported {
        node_id: node.to_owned(),
        bitrate_bps: kbits * 1000,
        frames_per_second: fps,
        max_keyframe_interval_ms: u32::try_from(max_keyframe_ms).unwrap_or(u32::MAX),
        issues,
        jitter_ms: number(health, "jitter"),
    }
}

/// LIVE_TRACK_LIST's object: one entry per track.
fn tracks(list: &Value) -> Vec<Track> {
    let Some(entries) = list.as_object() else {
        return Vec::new();
    };
    entries
        .values()
        .filter_map(|track| {
            let kind = track.get("type")?.as_str()?;
            Some(Track {
                track_id: u32::try_from(number(track, "trackid")).unwrap_or(0),
                kind: kind.to_owned(),
                codec: track
                    .get("codec")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .chars()
                    .take(32)
                    .collect(),
                width: u32::try_from(number(track, "width")).unwrap_or(0),
                height: u32::try_from(number(track, "height")).unwrap_or(0),
                frames_per_second: number(track, "fpks") as f64 / 1000.0,
                sample_rate: u32::try_from(number(track, "rate")).unwrap_or(0),
                channels: u32::try_from(number(track, "channels")).unwrap_or(0),
                bitrate_bps: number(track, "bps") * 8,
                language: track
                    .get("lang")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .filter(|track| matches!(track.kind.as_str(), "video" | "audio" | "meta" | "subtitle"))
        .take(64)
        .collect()
}

/// The protocol an encoder pushes with, from its push URL.
fn protocol(url: &str) -> String {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("rtmp" | "rtmps") => "RTMP".into(),
        Some("srt") => "SRT".into(),
        Some("http" | "https") => "WHIP".into(),
        Some(other) => other.to_ascii_uppercase().chars().take(16).collect(),
        None => "UNKNOWN".into(),
    }
}

/// A viewer session's id: Mist's session token (as the edge scrubbed it),
/// unique per node.
fn session_id(node: &str, connection: &str) -> String {
    format!("{node}/{connection}")
}

/// The typed stream facts behind one trigger (none for triggers about
/// something other than a platform stream, or with nothing to tell).
fn stream_facts(node: &str, received: &MistTriggerReceived) -> Vec<StreamFact> {
    let Ok(kind) = received.trigger.parse::<TriggerKind>() else {
        return Vec::new();
    };
    let trigger = match Trigger::parse(kind, &received.fields.join("\n")) {
        Ok(trigger) => trigger,
        Err(error) => {
            // The edge parsed it before sending; a newer Mist than this balancer knows.
            counter!("frameworks_balancer_triggers_unparsed_total", "trigger" => kind.name())
                .increment(1);
            debug!(%error, "a trigger's payload is not understood; kept as it came");
            return Vec::new();
        }
    };
    let fact = |name: &str, payload: EventPayload| {
        let stream = stream_of(name);
        if stream.is_none() {
            // Not a platform stream (`live+<stream id>`): the raw fact stands alone.
            counter!("frameworks_balancer_triggers_other_stream_total", "trigger" => kind.name())
                .increment(1);
            debug!(
                trigger = kind.name(),
                stream = name,
                "a trigger about no platform stream"
            );
        }
        stream.map(|stream| StreamFact { stream, payload })
    };
    let node_id = node.to_owned();
    let facts = match trigger {
        Trigger::PushRewrite { url, host, .. } if !received.answer.is_empty() => {
            // The edge let the push in: the answer is the stream it publishes to.
            vec![fact(
                &received.answer,
                IngestStarted {
                    node_id,
                    internal_name: received.answer.clone(),
                    protocol: protocol(&url),
                    source_ip: host,
                }
                .into(),
            )]
        }
        Trigger::StreamBuffer {
            stream,
            state,
            health: details,
        } => {
            let buffered = details.as_ref().map_or(0, |h| number(h, "buffer"));
            let mut facts = vec![fact(
                &stream,
                StreamBufferChanged {
                    node_id: node_id.clone(),
                    state: buffer_state(state) as i32,
                    buffer_ms: buffered,
                }
                .into(),
            )];
            if let Some(details) = details {
                facts.push(fact(&stream, health(node, &details).into()));
            }
            facts
        }
        Trigger::LiveTrackList {
            stream,
            tracks: list,
        } => vec![fact(
            &stream,
            TrackListUpdated {
                node_id,
                tracks: list.as_ref().map(tracks).unwrap_or_default(),
            }
            .into(),
        )],
        Trigger::UserNew {
            stream,
            address,
            session_token,
            connector,
            url,
            ..
        } if received.answer == "true" => vec![fact(
            &stream,
            ViewerSessionStarted {
                session_id: session_id(node, &session_token),
                node_id,
                connector,
                viewer_ip: address,
                user_agent: String::new(),
                request_url: url,
                country_code: String::new(),
            }
            .into(),
        )],
        Trigger::UserEnd {
            session,
            stream,
            connector,
            duration_seconds,
            uploaded_bytes,
            downloaded_bytes,
            tags,
            ..
        } => vec![fact(
            &stream,
            ViewerSessionEnded {
                session_id: session_id(node, &session),
                node_id,
                connector,
                // Mist counts from its own side: what it uploaded went to the viewer.
                bytes_up: uploaded_bytes,
                bytes_down: downloaded_bytes,
                duration_seconds,
                reason: tags.join(" ").chars().take(256).collect(),
                trigger_id: received.trigger_id.clone(),
            }
            .into(),
        )],
        Trigger::StreamEnd {
            stream,
            downloaded_bytes,
            ..
        } => vec![fact(
            &stream,
            IngestEnded {
                node_id,
                internal_name: stream.clone(),
                bytes_in: downloaded_bytes,
                duration_seconds: 0,
                reason: "stream ended".into(),
                trigger_id: received.trigger_id.clone(),
            }
            .into(),
        )],
        Trigger::PushEnd {
            push_id,
            stream,
            target,
            status,
            ..
        } => vec![fact(
            &stream,
            PushEnded {
                node_id,
                internal_name: stream.clone(),
                push_id,
                target,
                bytes: number(&status, "bytes"),
                active_seconds: number(&status, "active_seconds"),
                trigger_id: received.trigger_id.clone(),
            }
            .into(),
        )],
        Trigger::RecordingSegment {
            stream,
            path,
            duration_ms,
            start_ms,
            end_ms,
        } => vec![fact(
            &stream,
            RecordingSegmentWritten {
                node_id,
                internal_name: stream.clone(),
                path,
                duration_ms,
                start_ms,
                end_ms,
                trigger_id: received.trigger_id.clone(),
            }
            .into(),
        )],
        Trigger::RecordingEnd { output, .. } => vec![fact(
            &output.stream,
            RecordingEnded {
                node_id,
                internal_name: output.stream.clone(),
                path: output.target,
                bytes: output.bytes,
                seconds: output.seconds,
                reason_code: output.reason_code,
                reason: output.reason.chars().take(1024).collect(),
                trigger_id: received.trigger_id.clone(),
            }
            .into(),
        )],
        Trigger::PushInputClose { exit, .. } => vec![fact(
            &exit.stream,
            InputClosed {
                node_id,
                internal_name: exit.stream.clone(),
                source: exit.source,
                reason_code: exit.reason_code,
                reason: exit.reason.chars().take(1024).collect(),
                trigger_id: received.trigger_id.clone(),
            }
            .into(),
        )],
        // Connections, process exits and the rest: kept as the raw trigger.
        _ => Vec::new(),
    };
    facts.into_iter().flatten().collect()
}

/// One trigger's records: the raw fact, then its typed stream facts.
struct Submission<'a> {
    trigger: &'a MistTriggerReceived,
    records: Vec<TelemetryCommand>,
    /// Set when the trigger is refused for good.
    refusal: Option<String>,
}

/// Where a viewer trigger names its stream: USER_NEW first, USER_END second.
fn viewer_stream_field(trigger: &str) -> Option<usize> {
    match trigger.parse::<TriggerKind>().ok()? {
        TriggerKind::UserNew => Some(0),
        TriggerKind::UserEnd => Some(1),
        _ => None,
    }
}

impl EdgeControlService {
    /// A viewer trigger that names its stream by playback id (Mist ends a
    /// session it has just started before PLAY_REWRITE renamed it) as if
    /// it named the stream's internal name; `None` when nothing changes.
    /// A directory that cannot answer leaves the trigger as it is (its raw
    /// fact stands; the trigger is not held back for a name it may not need).
    async fn by_internal_name(&self, trigger: &MistTriggerReceived) -> Option<MistTriggerReceived> {
        let field = viewer_stream_field(&trigger.trigger)?;
        let name = trigger.fields.get(field)?;
        if stream_of(name).is_some() || name.is_empty() {
            return None;
        }
        let target = match self.directory.playback(name).await {
            Ok(target) => target?,
            Err(error) => {
                debug!(%error, "a viewer trigger's stream name could not be looked up");
                return None;
            }
        };
        let mut named = trigger.clone();
        named.fields[field] = directory::internal_name(target.stream);
        Some(named)
    }

    async fn records<'a>(
        &self,
        node: &str,
        node_tenant: Option<Uuid>,
        trigger: &'a MistTriggerReceived,
    ) -> Result<Submission<'a>, DirectoryError> {
        let occurred_at: DateTime<Utc> =
            DateTime::from_timestamp_millis(trigger.fired_at_unix_ms).unwrap_or_else(Utc::now);
        let correlation_id = Uuid::now_v7();
        let mut records = vec![TelemetryCommand {
            subject_id: node.to_owned(),
            tenant_id: node_tenant,
            occurred_at,
            payload: trigger.clone().into(),
            correlation_id,
            event_id: Some(record_id(&trigger.trigger_id, 0)),
        }];
        let named = self.by_internal_name(trigger).await;
        for (index, fact) in (1..).zip(stream_facts(node, named.as_ref().unwrap_or(trigger))) {
            let Some(owner) = self.directory.owner(fact.stream).await? else {
                counter!("frameworks_balancer_triggers_unknown_stream_total").increment(1);
                continue;
            };
            records.push(TelemetryCommand {
                subject_id: fact.stream.to_string(),
                tenant_id: owner.tenant,
                occurred_at,
                payload: fact.payload,
                correlation_id,
                event_id: Some(record_id(&trigger.trigger_id, index)),
            });
        }
        Ok(Submission {
            trigger,
            records,
            refusal: None,
        })
    }

    /// What an accepted trigger changes beyond Kafka: a viewer that showed
    /// up releases the bandwidth its redirect held; an ingest that ended
    /// releases the stream's claim; an ingest that started on a stream its
    /// tenant records is recorded on that edge once Mist has buffered it.
    async fn accepted(&self, node: &str, submission: &Submission<'_>) {
        for record in &submission.records[1..] {
            let Ok(stream) = Uuid::parse_str(&record.subject_id) else {
                continue;
            };
            match &record.payload {
                EventPayload::ViewerSessionStarted(started) => {
                    let redirect = format!("{stream}/{}/", started.viewer_ip);
                    if let Err(error) = self.shared.release(node, &redirect).await {
                        warn!(%error, "a provisional charge could not be released; it expires");
                    }
                }
                EventPayload::IngestEnded(_) => {
                    if let Err(error) = self.shared.release_ingest(stream, node).await {
                        warn!(%error, "an ingest claim could not be released; it expires");
                    }
                }
                EventPayload::IngestStarted(_) => self.recording_due(node, stream).await,
                EventPayload::StreamBufferChanged(changed)
                    if changed.state == BufferState::Full as i32 =>
                {
                    self.start_recording_if_due(node, stream).await;
                }
                _ => {}
            }
        }
    }

    /// Marks the ingest that has just started on `node` to be recorded, when
    /// its tenant asked for that (`record: true`).
    async fn recording_due(&self, node: &str, stream: Uuid) {
        match self.directory.owner(stream).await {
            Ok(Some(owner)) if owner.record && !owner.deleted => {
                if let Err(error) = self
                    .shared
                    .mark_recording_due(stream, node, RECORDING_DUE_FOR)
                    .await
                {
                    warn!(%error, %stream, "the stream's recording could not be marked due");
                }
            }
            Ok(_) => {}
            Err(error) => warn!(%error, %stream, "whether the stream records could not be read"),
        }
    }

    /// Asks `node` to record the stream Mist has buffered, if its ingest is
    /// due a recording. The command runs on its own: the edge's batch is
    /// acknowledged without waiting for Mist.
    async fn start_recording_if_due(&self, node: &str, stream: Uuid) {
        match self.shared.take_recording_due(stream, node).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                warn!(%error, %stream, "whether the stream is due a recording could not be read");
                return;
            }
        }
        let control = self.clone();
        let node = node.to_owned();
        tokio::spawn(async move {
            let action = edge_command::Action::StartRecording(directory::internal_name(stream));
            let outcome = match control.command(&node, action).await {
                Ok(()) => {
                    info!(%stream, node, "recording started");
                    "started"
                }
                Err(error) => {
                    warn!(%error, %stream, node, "the stream's recording could not be started");
                    "failed"
                }
            };
            counter!("frameworks_balancer_recordings_requested_total", "outcome" => outcome)
                .increment(1);
        });
    }
}

#[tonic::async_trait]
impl Ingress for EdgeControlService {
    /// Publishes an edge's triggers and answers which Kafka holds (acks=all)
    /// and which are refused for good.
    async fn submit(&self, request: Request<TriggerBatch>) -> Result<Response<TriggerAck>, Status> {
        let batch = request.into_inner();
        let tenant = self.authenticate(&batch.node_id, &batch.session_token)?;
        if batch.triggers.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BATCH} triggers a batch"
            )));
        }
        let mut submissions = Vec::with_capacity(batch.triggers.len());
        for trigger in &batch.triggers {
            submissions.push(
                self.records(&batch.node_id, tenant, trigger)
                    .await
                    .map_err(unavailable)?,
            );
        }
        // Every record of the batch goes to the producer at once.
        let all: Vec<TelemetryCommand> = submissions
            .iter()
            .flat_map(|s| s.records.iter().cloned())
            .collect();
        let mut verdicts = self.telemetry.publish_batch(&all).await.into_iter();
        let mut ack = TriggerAck::default();
        for submission in &mut submissions {
            let mut published = true;
            for (index, verdict) in verdicts.by_ref().take(submission.records.len()).enumerate() {
                match verdict {
                    Ok(_) => {}
                    // The raw fact refused: the trigger itself is bad, for good.
                    Err(TelemetryError::Rejected(reason)) if index == 0 => {
                        submission.refusal = Some(reason.to_string());
                    }
                    // A typed fact refused: counted, the raw fact still stands.
                    Err(TelemetryError::Rejected(reason)) => {
                        counter!("frameworks_balancer_facts_rejected_total").increment(1);
                        warn!(%reason, trigger = %submission.trigger.trigger_id, "a typed fact was refused");
                    }
                    Err(TelemetryError::Publish(error)) => {
                        warn!(%error, "a trigger's record could not be published");
                        published = false;
                    }
                }
            }
            let trigger_id = submission.trigger.trigger_id.clone();
            match (&submission.refusal, published) {
                (Some(reason), _) => {
                    counter!("frameworks_balancer_triggers_rejected_total").increment(1);
                    ack.rejected.push(RejectedTrigger {
                        trigger_id,
                        reason: reason.clone(),
                    });
                }
                // Not all in Kafka: left out of the answer, so the edge sends it again.
                (None, false) => {}
                (None, true) => {
                    self.accepted(&batch.node_id, submission).await;
                    ack.accepted.push(trigger_id);
                }
            }
        }
        counter!("frameworks_balancer_triggers_accepted_total")
            .increment(ack.accepted.len() as u64);
        Ok(Response::new(ack))
    }

    /// Answers what an edge's blocking answer needs: may this key publish
    /// (from this edge, now), which stream does this playback id play.
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<Route>, Status> {
        let request = request.into_inner();
        self.authenticate(&request.node_id, &request.session_token)?;
        let route = match request.subject {
            Some(resolve_request::Subject::KeySha256(hash)) => {
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Status::invalid_argument(
                        "key_sha256 must be 64 lower-case hex digits",
                    ));
                }
                let hash = hash.to_ascii_lowercase();
                let mut decision = self
                    .directory
                    .ingest(&hash, &request.node_id)
                    .await
                    .map_err(unavailable)?;
                if let IngestDecision::Accept { stream, .. } = decision {
                    let held = self
                        .shared
                        .claim_ingest(stream, &request.node_id, INGEST_CLAIM_HOLD)
                        .await
                        .map_err(|error| {
                            Status::unavailable(format!("the shared state: {error}"))
                        })?;
                    if let Some(node) = held {
                        decision = IngestDecision::Refuse(IngestRefusal::LiveElsewhere { node });
                    }
                }
                let outcome = match &decision {
                    IngestDecision::Accept { .. } => "accepted",
                    IngestDecision::Refuse(_) => "refused",
                };
                counter!("frameworks_balancer_ingest_decisions_total", "outcome" => outcome)
                    .increment(1);
                if let IngestDecision::Refuse(refusal) = &decision {
                    info!(node = %request.node_id, %refusal, "ingest refused");
                }
                directory::decision_route(&hash, &decision)
            }
            Some(resolve_request::Subject::PlaybackId(id)) => {
                if id.is_empty() || id.len() > 128 {
                    return Err(Status::invalid_argument(
                        "playback_id must be 1 to 128 bytes",
                    ));
                }
                let target = self.directory.playback(&id).await.map_err(unavailable)?;
                directory::playback_route(&id, target.as_ref(), self.bus.secrets())
            }
            None => {
                return Err(Status::invalid_argument(
                    "name a key_sha256 or a playback_id",
                ));
            }
        };
        Ok(Response::new(route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(trigger: &str, body: &str, answer: &str) -> MistTriggerReceived {
        MistTriggerReceived {
            trigger: trigger.into(),
            trigger_id: "t-1".into(),
            fired_at_unix_ms: 1_795_237_044_236,
            fields: body.split('\n').map(str::to_owned).collect(),
            blocking: !answer.is_empty(),
            answer: answer.into(),
        }
    }

    #[test]
    fn triggers_about_platform_streams_become_typed_facts() {
        let stream = Uuid::now_v7();
        let name = directory::internal_name(stream);
        let end = received(
            "USER_END",
            &format!("12\n{name}\nHLS\n127.0.0.1\n30\n5000\n100\n[UA:curl/8]"),
            "",
        );
        let facts = stream_facts("node-1", &end);
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].stream, stream);
        let EventPayload::ViewerSessionEnded(ended) = &facts[0].payload else {
            panic!("{:?}", facts[0].payload);
        };
        assert_eq!(
            (
                ended.session_id.as_str(),
                ended.bytes_up,
                ended.trigger_id.as_str()
            ),
            ("node-1/12", 5000, "t-1")
        );

        let push = received(
            "PUSH_REWRITE",
            "rtmp://127.0.0.1/live/key\n10.0.0.9\nkey",
            &name,
        );
        let EventPayload::IngestStarted(started) = &stream_facts("node-1", &push)[0].payload else {
            panic!("not an ingest start");
        };
        assert_eq!(
            (started.protocol.as_str(), started.source_ip.as_str()),
            ("RTMP", "10.0.0.9")
        );
        let refused = received(
            "PUSH_REWRITE",
            "rtmp://127.0.0.1/live/key\n10.0.0.9\nkey",
            "",
        );
        assert!(
            stream_facts("node-1", &refused).is_empty(),
            "no ingest without an answer"
        );
    }

    #[test]
    fn pushes_recordings_and_closed_inputs_become_typed_facts() {
        let stream = Uuid::now_v7();
        let name = directory::internal_name(stream);
        let file = format!("/var/lib/frameworks/recordings/{name}/1.ts");
        let one = |trigger: &str, body: String| {
            let facts = stream_facts("node-1", &received(trigger, &body, ""));
            assert_eq!(facts.len(), 1, "{trigger}");
            assert_eq!(facts[0].stream, stream);
            facts.into_iter().next().map(|f| f.payload)
        };
        let Some(EventPayload::PushEnded(push)) = one(
            "PUSH_END",
            format!(
                "17952\n{name}\nrtmp://a.example.net/live2/redacted\nrtmp://a.example.net/live2/redacted\n[]\n{{\"bytes\":169952,\"active_seconds\":4}}"
            ),
        ) else {
            panic!("not a push end");
        };
        assert_eq!(
            (
                push.push_id,
                push.bytes,
                push.active_seconds,
                push.trigger_id.as_str()
            ),
            (17_952, 169_952, 4, "t-1")
        );
        let Some(EventPayload::RecordingSegmentWritten(segment)) = one(
            "RECORDING_SEGMENT",
            format!("{name}\n{file}\n12947\n6023\n18970"),
        ) else {
            panic!("not a segment");
        };
        assert_eq!(
            (segment.path.as_str(), segment.duration_ms),
            (file.as_str(), 12_947)
        );
        let Some(EventPayload::RecordingEnded(recording)) = one(
            "RECORDING_END",
            format!(
                "{name}\n{file}\nHTTPTS\n667212\n12\n1795237128\n1795237140\n12947\n6023\n18970\nCLEAN_SIGNAL\nsignal Terminated (15)\n"
            ),
        ) else {
            panic!("not a recording end");
        };
        assert_eq!(
            (
                recording.bytes,
                recording.seconds,
                recording.reason_code.as_str()
            ),
            (667_212, 12, "CLEAN_SIGNAL")
        );
        let Some(EventPayload::InputClosed(closed)) = one(
            "PUSH_INPUT_CLOSE",
            format!(
                "{name}\n198.51.100.7\nRTMP\n17591\nCLEAN_INTENDED_STOP\nreceived deleteStream\n[]"
            ),
        ) else {
            panic!("not an input close");
        };
        assert_eq!(
            (closed.source.as_str(), closed.reason_code.as_str()),
            ("198.51.100.7", "CLEAN_INTENDED_STOP")
        );
    }

    #[test]
    fn streams_the_platform_does_not_know_have_no_typed_facts() {
        let end = received(
            "USER_END",
            "12\ntest\nHLS\n127.0.0.1\n30\n100\n5000\n[UA:curl/8]",
            "",
        );
        assert!(stream_facts("node-1", &end).is_empty());
        assert!(stream_facts("node-1", &received("NOT_A_TRIGGER", "x", "")).is_empty());
    }

    #[test]
    fn health_and_tracks_are_read_from_mists_json() {
        let details: Value = serde_json::from_str(
            r#"{"buffer":4249,"jitter":120,"tracks":["v","a"],
                "v":{"kbits":232,"efps":25,"keys":{"ms_max":2000}},
                "a":{"kbits":67,"keys":{"ms_max":2067}},"issues":"HLSnoKeyFrames VeryHighJitter"}"#,
        )
        .expect("json");
        let reported = health("n", &details);
        assert_eq!(reported.bitrate_bps, 299_000);
        assert_eq!(reported.max_keyframe_interval_ms, 2067);
        assert_eq!(reported.issues, ["HLSnoKeyFrames", "VeryHighJitter"]);
        let list: Value = serde_json::from_str(
            r#"{"video_1":{"type":"video","codec":"H264","trackid":1,"width":640,"height":360,"fpks":25000,"bps":29000},
                "audio_2":{"type":"audio","codec":"AAC","trackid":2,"rate":44100,"channels":1}}"#,
        )
        .expect("json");
        let mut listed = tracks(&list);
        listed.sort_by_key(|t| t.track_id);
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].width, listed[0].frames_per_second), (640, 25.0));
        assert_eq!(listed[1].sample_rate, 44_100);
    }

    #[test]
    fn a_resent_trigger_gets_the_same_event_ids() {
        assert_eq!(record_id("t-1", 1), record_id("t-1", 1));
        assert_ne!(record_id("t-1", 1), record_id("t-1", 2));
        assert_ne!(record_id("t-1", 0), record_id("t-2", 0));
    }

    #[test]
    fn push_protocols() {
        assert_eq!(protocol("rtmp://h/live/k"), "RTMP");
        assert_eq!(protocol("srt://h:9000?streamid=k"), "SRT");
        assert_eq!(protocol("https://h/whip/k"), "WHIP");
        assert_eq!(protocol("k"), "UNKNOWN");
    }
}
