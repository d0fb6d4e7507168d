//! The platform end to end, every role a real process: a command is appended
//! to the event store, the relay publishes it, the projector applies it to
//! the read model (read-your-writes waits for that), and an edge's telemetry
//! reaches the Redis live state through the live-state projector.

// The helpers below fail the test by panicking, as test code should.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use chrono::Utc;
use frameworks_commands::aggregates::stream::{Ingest, Stream, StreamCommand, StreamOutcome};
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
use frameworks_commands::{CommandBus, CommandContext, SecretBox};
use frameworks_events::AggregateType;
use frameworks_events::kafka::EventPublisher;
use frameworks_events::proto::v1::telemetry::{IngestStarted, ViewerSessionStarted};
use frameworks_projections::control_plane;
use frameworks_projections::live::LiveState;
use frameworks_projections::read_your_writes::wait_for;
use frameworks_test_harness::drop_redis_prefix;
use support::{
    drop_topics, fresh_database, kafka_with_topics, redis_url, spawn_read_side_role, within,
};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_goes_from_command_to_read_model_to_live_state() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let prefix = format!("test-{}", Uuid::now_v7().simple());
    let _roles = [
        spawn_read_side_role("relay", &kafka, &db.url, &prefix),
        spawn_read_side_role("projector", &kafka, &db.url, &prefix),
        spawn_read_side_role("live-state", &kafka, &db.url, &prefix),
    ];

    // The control plane: a command, answered from the read model once projected.
    let (secrets, _) = SecretBox::generate("test-key");
    let bus = CommandBus::new(db.store.clone(), secrets);
    let tenant = Uuid::now_v7();
    let ctx = CommandContext::for_tenant(tenant, "user:e2e");
    let stream = Uuid::now_v7().to_string();
    let create = StreamCommand::Create {
        name: "end to end".into(),
        description: "through every role".into(),
        record: true,
        ingest: Ingest::Push,
        pull_source: None,
        allow_private_sources: false,
    };
    let StreamOutcome::Created { playback_id, .. } = bus
        .execute::<Stream>(&stream, &create, &ctx, None)
        .await
        .unwrap()
    else {
        panic!("expected a creation")
    };
    wait_for(
        db.store.pool(),
        control_plane::NAME,
        AggregateType::Stream,
        &stream,
        2,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let (name, owner, playback): (String, Uuid, String) = sqlx::query_as(
        "SELECT name, tenant_id, playback_id FROM read_models.rm_streams WHERE id = $1::uuid",
    )
    .bind(&stream)
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert_eq!(
        (name.as_str(), owner, playback),
        ("end to end", tenant, playback_id)
    );
    let keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM read_models.rm_stream_keys WHERE stream_id = $1::uuid AND is_primary",
    )
    .bind(&stream)
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert_eq!(keys, 1);

    // The edge: the encoder connects, a viewer arrives; the live state shows both.
    let edge = TelemetryPublisher::new(EventPublisher::new(&kafka, "test-edge").unwrap());
    let fact = |payload: frameworks_events::EventPayload| TelemetryCommand {
        subject_id: stream.clone(),
        tenant_id: Some(tenant),
        occurred_at: Utc::now(),
        payload,
        event_id: None,
        correlation_id: Uuid::now_v7(),
    };
    let ingest = IngestStarted {
        node_id: "edge-1".into(),
        internal_name: "live+x".into(),
        protocol: "RTMP".into(),
        source_ip: String::new(),
    };
    let viewer = ViewerSessionStarted {
        session_id: "v1".into(),
        node_id: "edge-1".into(),
        connector: "HLS".into(),
        ..Default::default()
    };
    for verdict in edge
        .publish_batch(&[fact(ingest.into()), fact(viewer.into())])
        .await
    {
        verdict.unwrap();
    }
    let live = LiveState::connect(&redis_url(), &prefix).await.unwrap();
    within(
        Duration::from_secs(60),
        "the stream to show as live with its viewer",
        async {
            loop {
                let streams = live.live_streams(Utc::now().timestamp()).await.unwrap();
                if streams.get(&stream).is_some_and(|s| s["node"] == "edge-1")
                    && live.viewers(&stream).await.unwrap() == 1
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;

    drop(_roles);
    drop_redis_prefix(&redis_url(), &prefix).await;
    drop_topics(&kafka).await;
    db.drop_now().await;
}
