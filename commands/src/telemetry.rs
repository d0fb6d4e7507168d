//! Edge telemetry: validated against the command alone, published straight
//! to Kafka in batches, keyed by stream or node.
//!
//! Telemetry has no aggregate history to check against and arrives in bulk,
//! so it skips the event store: each command is checked on its own, the
//! valid ones of a batch are all handed to the producer before any is
//! awaited (librdkafka batches them on the wire), and each gets its own
//! verdict. One bad record never holds back the rest of its batch.

use chrono::{DateTime, Utc};
use frameworks_events::kafka::EventPublisher;
use frameworks_events::kafka::publisher::{Delivered, PublishError};
use frameworks_events::proto::v1::telemetry::BufferState;
use frameworks_events::{Event, EventPayload, Topic};
use metrics::counter;
use uuid::Uuid;

use crate::error::CommandError;

/// One fact an edge reports.
#[derive(Debug, Clone)]
pub struct TelemetryCommand {
    /// The stream id for stream facts, the node id for node facts; the Kafka key.
    pub subject_id: String,
    pub tenant_id: Option<Uuid>,
    /// The edge's clock.
    pub occurred_at: DateTime<Utc>,
    pub payload: EventPayload,
    /// The edge request this came from, for tracing.
    pub correlation_id: Uuid,
    /// The event's id when the fact may be reported twice (a trigger the
    /// edge sends again after a lost acknowledgement): the same id both
    /// times, so downstream counts it once. `None` gives a fresh id.
    pub event_id: Option<Uuid>,
}

/// Why one telemetry record was not published.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Rejected(#[from] CommandError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Every trigger MistServer knows (its own `capabilities` answer, as captured in
/// shared/mist/capabilities.json), including the FrameWorks fork's.
pub const MIST_TRIGGERS: [&str; 38] = [
    "CONN_CLOSE",
    "CONN_OPEN",
    "CONN_PLAY",
    "DEFAULT_STREAM",
    "INPUT_ABORT",
    "LIVEPEER_SEGMENT_COMPLETE",
    "LIVEPEER_SEGMENT_REJECTED",
    "LIVE_BANDWIDTH",
    "LIVE_TRACK_LIST",
    "OUTPUT_END",
    "OUTPUT_START",
    "OUTPUT_STOP",
    "PLAY_REWRITE",
    "PROCESS_AV_VIRTUAL_SEGMENT_COMPLETE",
    "PROCESS_EXIT",
    "PUSH_END",
    "PUSH_INPUT_CLOSE",
    "PUSH_OUT_START",
    "PUSH_REWRITE",
    "RECORDING_END",
    "RECORDING_SEGMENT",
    "RTMP_PUSH_REWRITE",
    "STREAM_ADD",
    "STREAM_BUFFER",
    "STREAM_CONFIG",
    "STREAM_END",
    "STREAM_LOAD",
    "STREAM_PROCESS",
    "STREAM_PUSH",
    "STREAM_READY",
    "STREAM_REMOVE",
    "STREAM_SOURCE",
    "STREAM_UNLOAD",
    "SYSTEM_START",
    "SYSTEM_STOP",
    "THUMBNAIL_UPDATED",
    "USER_END",
    "USER_NEW",
];

/// How far an edge clock may run ahead before its facts are refused.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);
const MAX_ID: usize = 128;

fn id(field: &str, value: &str) -> Result<(), CommandError> {
    if value.is_empty()
        || value.len() > MAX_ID
        || value.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(CommandError::invalid(
            field,
            format!("must be 1 to {MAX_ID} characters without spaces"),
        ));
    }
    Ok(())
}

fn short(field: &str, value: &str, max: usize) -> Result<(), CommandError> {
    crate::validate::text(field, value, max).map(|_| ())
}

/// Checks one command: a telemetry event type, ids present, numbers sane.
pub fn validate(command: &TelemetryCommand, now: DateTime<Utc>) -> Result<(), CommandError> {
    let event_type = command.payload.event_type();
    if !matches!(
        event_type.topic(),
        Topic::StreamTelemetry | Topic::NodeTelemetry
    ) {
        return Err(CommandError::invalid(
            "type",
            format!("{event_type} is not telemetry"),
        ));
    }
    id("subjectId", &command.subject_id)?;
    if command.occurred_at > now + MAX_CLOCK_SKEW {
        return Err(CommandError::invalid(
            "occurredAt",
            "is more than 5 minutes in the future",
        ));
    }
    match &command.payload {
        EventPayload::NodeHeartbeat(beat) => {
            short("edgeVersion", &beat.edge_version, 64)?;
            short("mistVersion", &beat.mist_version, 64)
        }
        EventPayload::NodeMetrics(m) => {
            if !(0.0..=100.0).contains(&m.cpu_percent) {
                return Err(CommandError::invalid(
                    "cpuPercent",
                    "must be within 0 and 100",
                ));
            }
            if m.memory_used_bytes > m.memory_total_bytes {
                return Err(CommandError::invalid(
                    "memoryUsedBytes",
                    "exceeds memoryTotalBytes",
                ));
            }
            if m.disk_used_bytes > m.disk_total_bytes {
                return Err(CommandError::invalid(
                    "diskUsedBytes",
                    "exceeds diskTotalBytes",
                ));
            }
            Ok(())
        }
        EventPayload::ViewerSessionStarted(s) => {
            id("sessionId", &s.session_id)?;
            id("nodeId", &s.node_id)?;
            short("connector", &s.connector, 32)?;
            short("userAgent", &s.user_agent, 1024)?;
            short("requestUrl", &s.request_url, 4096)
        }
        EventPayload::ViewerSessionEnded(s) => {
            id("sessionId", &s.session_id)?;
            id("nodeId", &s.node_id)?;
            id("triggerId", &s.trigger_id)?;
            short("reason", &s.reason, 256)
        }
        EventPayload::IngestStarted(s) => {
            id("nodeId", &s.node_id)?;
            short("protocol", &s.protocol, 16)
        }
        EventPayload::IngestEnded(s) => {
            id("nodeId", &s.node_id)?;
            id("triggerId", &s.trigger_id)?;
            short("reason", &s.reason, 256)
        }
        EventPayload::StreamBufferChanged(b) => {
            id("nodeId", &b.node_id)?;
            match BufferState::try_from(b.state) {
                Ok(BufferState::Unspecified) | Err(_) => {
                    Err(CommandError::invalid("state", "is not a buffer state"))
                }
                Ok(_) => Ok(()),
            }
        }
        EventPayload::StreamHealthReported(h) => {
            id("nodeId", &h.node_id)?;
            if !h.frames_per_second.is_finite() || h.frames_per_second < 0.0 {
                return Err(CommandError::invalid(
                    "framesPerSecond",
                    "must be a non-negative number",
                ));
            }
            for (index, issue) in h.issues.iter().enumerate() {
                short(&format!("issues[{index}]"), issue, 128)?;
            }
            Ok(())
        }
        EventPayload::TrackListUpdated(t) => {
            id("nodeId", &t.node_id)?;
            if t.tracks.len() > 64 {
                return Err(CommandError::invalid("tracks", "holds more than 64 tracks"));
            }
            for (index, track) in t.tracks.iter().enumerate() {
                if !matches!(track.kind.as_str(), "video" | "audio" | "meta" | "subtitle") {
                    return Err(CommandError::invalid(
                        format!("tracks[{index}].kind"),
                        "must be video, audio, meta or subtitle",
                    ));
                }
                short(&format!("tracks[{index}].codec"), &track.codec, 32)?;
            }
            Ok(())
        }
        EventPayload::StreamSampled(sample) => {
            id("nodeId", &sample.node_id)?;
            short("internalName", &sample.internal_name, 256)?;
            short("status", &sample.status, 32)?;
            if sample.viewers_by_protocol.len() > 64 {
                return Err(CommandError::invalid(
                    "viewersByProtocol",
                    "holds more than 64 protocols",
                ));
            }
            for protocol in sample.viewers_by_protocol.keys() {
                short("viewersByProtocol", protocol, 32)?;
            }
            Ok(())
        }
        EventPayload::PushEnded(push) => {
            id("nodeId", &push.node_id)?;
            id("triggerId", &push.trigger_id)?;
            short("target", &push.target, 4096)
        }
        EventPayload::RecordingSegmentWritten(segment) => {
            id("nodeId", &segment.node_id)?;
            id("triggerId", &segment.trigger_id)?;
            short("path", &segment.path, 4096)
        }
        EventPayload::RecordingEnded(recording) => {
            id("nodeId", &recording.node_id)?;
            id("triggerId", &recording.trigger_id)?;
            short("path", &recording.path, 4096)?;
            short("reasonCode", &recording.reason_code, 64)?;
            short("reason", &recording.reason, 1024)
        }
        EventPayload::InputClosed(input) => {
            id("nodeId", &input.node_id)?;
            id("triggerId", &input.trigger_id)?;
            short("reasonCode", &input.reason_code, 64)?;
            short("reason", &input.reason, 1024)
        }
        EventPayload::MistTriggerReceived(trigger) => {
            if !MIST_TRIGGERS.contains(&trigger.trigger.as_str()) {
                return Err(CommandError::invalid(
                    "trigger",
                    format!("{:?} is not a MistServer trigger", trigger.trigger),
                ));
            }
            id("triggerId", &trigger.trigger_id)?;
            if trigger.fields.len() > 64 {
                return Err(CommandError::invalid("fields", "holds more than 64 fields"));
            }
            for (index, field) in trigger.fields.iter().enumerate() {
                short(&format!("fields[{index}]"), field, 8192)?;
            }
            short("answer", &trigger.answer, 8192)
        }
        _ => Err(CommandError::invalid(
            "type",
            format!("{event_type} has no telemetry rules"),
        )),
    }
}

#[derive(Debug)]
pub struct TelemetryPublisher {
    publisher: EventPublisher,
}

impl TelemetryPublisher {
    pub fn new(publisher: EventPublisher) -> Self {
        Self { publisher }
    }

    /// Validates and publishes a batch; one verdict per command, in order.
    pub async fn publish_batch(
        &self,
        commands: &[TelemetryCommand],
    ) -> Vec<Result<Delivered, TelemetryError>> {
        let now = Utc::now();
        let events: Vec<Result<Event, CommandError>> = commands
            .iter()
            .map(|command| {
                validate(command, now)?;
                let mut event = Event::new(command.subject_id.clone(), command.payload.clone())
                    .occurred_at(command.occurred_at)
                    .caused_by(command.correlation_id, command.correlation_id);
                event.tenant_id = command.tenant_id;
                if let Some(id) = command.event_id {
                    event.id = id;
                }
                Ok(event)
            })
            .collect();
        let sends = events.iter().map(|event| async move {
            match event {
                Ok(event) => self
                    .publisher
                    .publish(event)
                    .await
                    .map_err(TelemetryError::from),
                Err(rejection) => Err(TelemetryError::Rejected(rejection.clone())),
            }
        });
        let results = futures::future::join_all(sends).await;
        for result in &results {
            let outcome = match result {
                Ok(_) => "published",
                Err(TelemetryError::Rejected(_)) => "rejected",
                Err(TelemetryError::Publish(_)) => "failed",
            };
            counter!("frameworks_telemetry_total", "outcome" => outcome).increment(1);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frameworks_events::proto::v1::telemetry::StreamSampled;

    fn sample(sample: StreamSampled) -> TelemetryCommand {
        TelemetryCommand {
            subject_id: "0190f5c2-0000-7000-8000-000000000001".into(),
            tenant_id: None,
            occurred_at: Utc::now(),
            payload: EventPayload::StreamSampled(sample),
            event_id: None,
            correlation_id: uuid::Uuid::now_v7(),
        }
    }

    #[test]
    fn stream_samples_need_a_node_and_bounded_protocols() {
        let good = StreamSampled {
            node_id: "node-1".into(),
            internal_name: "live+s1".into(),
            status: "Online".into(),
            viewers_by_protocol: [("HLS".to_owned(), 2)].into(),
            ..Default::default()
        };
        assert!(validate(&sample(good.clone()), Utc::now()).is_ok());
        let anonymous = StreamSampled {
            node_id: String::new(),
            ..good.clone()
        };
        assert!(validate(&sample(anonymous), Utc::now()).is_err());
        let sprawling = StreamSampled {
            viewers_by_protocol: (0..65).map(|n| (format!("P{n}"), 1)).collect(),
            ..good
        };
        assert!(validate(&sample(sprawling), Utc::now()).is_err());
    }
}
