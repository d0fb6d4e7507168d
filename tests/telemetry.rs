//! Edge telemetry: validated without an aggregate, published in batches,
//! keyed by stream or node; one bad record does not hold back its batch.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use frameworks_commands::CommandError;
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryError, TelemetryPublisher};
use frameworks_events::kafka::{EventConsumer, EventPublisher};
use frameworks_events::proto::v1::telemetry::{
    BufferState, MistTriggerReceived, NodeMetrics, StreamBufferChanged, Track, TrackListUpdated,
    ViewerSessionEnded,
};
use frameworks_events::proto::v1::tenant::TenantCreated;
use frameworks_events::{EventPayload, Topic};
use support::{drop_topics, kafka_with_topics, within};
use uuid::Uuid;

fn command(subject: &str, payload: impl Into<EventPayload>) -> TelemetryCommand {
    TelemetryCommand {
        subject_id: subject.into(),
        tenant_id: Some(Uuid::nil()),
        occurred_at: Utc::now(),
        payload: payload.into(),
        event_id: None,
        correlation_id: Uuid::now_v7(),
    }
}

fn session_end(session: &str, bytes_down: u64) -> ViewerSessionEnded {
    ViewerSessionEnded {
        session_id: session.into(),
        node_id: "edge-1".into(),
        connector: "HLS".into(),
        bytes_up: 1_000,
        bytes_down,
        duration_seconds: 60,
        reason: "socket closed".into(),
        trigger_id: Uuid::now_v7().to_string(),
    }
}

/// Field values taken from a USER_END captured from a real MistServer (shared/mist).
fn mist_trigger(name: &str) -> MistTriggerReceived {
    MistTriggerReceived {
        trigger: name.into(),
        trigger_id: "9d02dd32-8257-416d-a100-00000fa72c41".into(),
        fired_at_unix_ms: 1_795_237_090_000,
        fields: [
            "90ce7bbc",
            "test",
            "HLS",
            "127.0.0.1",
            "31",
            "104823",
            "20669",
            "",
        ]
        .map(String::from)
        .to_vec(),
        blocking: false,
        answer: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_validated_per_record_and_published_keyed_by_subject() {
    let kafka = kafka_with_topics().await;
    let publisher = TelemetryPublisher::new(EventPublisher::new(&kafka, "test-edge").unwrap());
    let stream_a = Uuid::now_v7().to_string();
    let stream_b = Uuid::now_v7().to_string();

    let mut future = command(&stream_a, session_end("s-late", 1));
    future.occurred_at = Utc::now() + chrono::Duration::hours(1);
    let batch = vec![
        command(&stream_a, session_end("s-1", 10_000)),
        command(&stream_b, session_end("s-2", 20_000)),
        command(
            &stream_a,
            StreamBufferChanged {
                node_id: "edge-1".into(),
                state: BufferState::Full as i32,
                buffer_ms: 4000,
            },
        ),
        // Refused: an unspecified buffer state, a CPU above 100 %, a domain event,
        // a track of an unknown kind, a missing session id, a clock far ahead.
        command(
            &stream_a,
            StreamBufferChanged {
                node_id: "edge-1".into(),
                state: 0,
                buffer_ms: 0,
            },
        ),
        command(
            "edge-1",
            NodeMetrics {
                cpu_percent: 140.0,
                ..Default::default()
            },
        ),
        command(&stream_a, TenantCreated::default()),
        command(
            &stream_b,
            TrackListUpdated {
                node_id: "edge-1".into(),
                tracks: vec![Track {
                    kind: "smell".into(),
                    ..Default::default()
                }],
            },
        ),
        command(&stream_b, session_end("", 5)),
        future,
        command(
            "edge-1",
            NodeMetrics {
                cpu_percent: 35.5,
                memory_used_bytes: 1 << 30,
                memory_total_bytes: 1 << 32,
                ..Default::default()
            },
        ),
        // A trigger fact as the edge relays it, and one naming no Mist trigger.
        command("edge-1", mist_trigger("USER_END")),
        command("edge-1", mist_trigger("COFFEE_READY")),
    ];
    let verdicts = publisher.publish_batch(&batch).await;
    assert_eq!(verdicts.len(), batch.len());
    let refused_fields: Vec<Option<String>> = verdicts
        .iter()
        .map(|v| match v {
            Ok(_) => None,
            Err(TelemetryError::Rejected(CommandError::Validation { field, .. })) => {
                Some(field.clone())
            }
            Err(other) => panic!("{other:?}"),
        })
        .collect();
    let expected: [Option<&str>; 12] = [
        None,
        None,
        None,
        Some("state"),
        Some("cpuPercent"),
        Some("type"),
        Some("tracks[0].kind"),
        Some("sessionId"),
        Some("occurredAt"),
        None,
        None,
        Some("trigger"),
    ];
    assert_eq!(refused_fields, expected.map(|f| f.map(str::to_owned)));

    // Stream facts went to the stream telemetry topic, keyed by stream; node facts by node.
    for (verdict, command) in verdicts.iter().zip(&batch) {
        if let Ok(delivered) = verdict {
            let topic = match command.payload {
                EventPayload::NodeMetrics(_) | EventPayload::MistTriggerReceived(_) => {
                    Topic::NodeTelemetry
                }
                _ => Topic::StreamTelemetry,
            };
            assert_eq!(delivered.topic, kafka.catalogue().name(topic));
        }
    }
    let consumer = EventConsumer::subscribe(
        &kafka,
        &format!("{}-meter", kafka.catalogue.prefix),
        &[Topic::StreamTelemetry],
    )
    .unwrap();
    let mut partitions: HashMap<String, i32> = HashMap::new();
    let mut bytes = HashMap::new();
    within(
        Duration::from_secs(60),
        "reading the stream telemetry",
        async {
            for _ in 0..3 {
                let received = consumer.next().await.unwrap();
                let partition = *partitions
                    .entry(received.event.aggregate_id.clone())
                    .or_insert(received.partition);
                assert_eq!(partition, received.partition);
                assert_eq!(
                    received.event.sequence, 0,
                    "telemetry has no aggregate history"
                );
                if let EventPayload::ViewerSessionEnded(end) = &received.event.payload {
                    bytes.insert(received.event.aggregate_id.clone(), end.bytes_down);
                }
            }
        },
    )
    .await;
    assert_eq!(bytes.get(&stream_a), Some(&10_000));
    assert_eq!(bytes.get(&stream_b), Some(&20_000));
    drop_topics(&kafka).await;
}
