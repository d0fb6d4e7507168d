//! The analytics projector against real Kafka and ClickHouse: the tables and
//! 5-minute usage it builds, and exactly-once effect under re-delivery and
//! SIGKILL (the materialised views would double-count a repeated insert).

// The helpers below fail the test by panicking, as test code should.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use clickhouse::Client;
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
use frameworks_events::EventPayload;
use frameworks_events::kafka::{EventPublisher, KafkaSettings, read_dead_letters};
use frameworks_events::proto::v1::telemetry::{
    IngestStarted, NodeHeartbeat, NodeMetrics, StreamHealthReported, Track, TrackListUpdated,
    ViewerSessionEnded, ViewerSessionStarted,
};
use frameworks_projections::analytics::usage::{UsageBucket, UsageScope, usage};
use frameworks_projections::analytics::{
    AnalyticsProjector, AnalyticsSettings, ClickHouseSettings, TOPICS,
};
use frameworks_projections::generations::Generations;
use frameworks_projections::generations::clickhouse::ClickHouseGenerations;
use frameworks_projections::status::offset_ranges;
use support::{clickhouse, drop_topics, kafka_with_topics, random_below, spawn_role, within};
use uuid::Uuid;

fn scratch_base() -> String {
    format!("test_{}", &Uuid::now_v7().simple().to_string()[20..])
}

async fn drop_base(settings: &ClickHouseSettings) {
    let client = settings.client();
    for generation in 1..=3 {
        let database = ClickHouseGenerations::database(&settings.database, generation);
        client
            .query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute()
            .await
            .unwrap();
    }
    client
        .query(&format!("DROP DATABASE IF EXISTS {}", settings.database))
        .execute()
        .await
        .unwrap();
}

fn analytics_settings(group: &str, batch_size: u32) -> AnalyticsSettings {
    AnalyticsSettings {
        group_id: group.into(),
        instance_id: None,
        batch_size,
        batch_wait_ms: 20,
    }
}

/// A time in the hour that began two to three hours ago: in the past (the
/// telemetry refuses the future) and on 5-minute bucket boundaries.
fn at(minute: u32, second: u32) -> DateTime<Utc> {
    let hour = (Utc::now().timestamp() / 3600 - 3) * 3600;
    Utc.timestamp_opt(hour + i64::from(minute) * 60 + i64::from(second), 0)
        .single()
        .unwrap()
}

fn fact(
    tenant: Option<Uuid>,
    subject: &str,
    when: DateTime<Utc>,
    payload: impl Into<EventPayload>,
) -> TelemetryCommand {
    TelemetryCommand {
        subject_id: subject.into(),
        tenant_id: tenant,
        occurred_at: when,
        payload: payload.into(),
        event_id: None,
        correlation_id: Uuid::now_v7(),
    }
}

fn start(session: &str) -> ViewerSessionStarted {
    ViewerSessionStarted {
        session_id: session.into(),
        node_id: "edge-1".into(),
        connector: "HLS".into(),
        country_code: "NL".into(),
        ..Default::default()
    }
}

fn end(session: &str, seconds: u64, bytes_out: u64) -> ViewerSessionEnded {
    ViewerSessionEnded {
        session_id: session.into(),
        node_id: "edge-1".into(),
        connector: "HLS".into(),
        bytes_up: bytes_out,
        bytes_down: 10,
        duration_seconds: seconds,
        reason: "socket closed".into(),
        trigger_id: Uuid::now_v7().to_string(),
    }
}

async fn publish(kafka: &KafkaSettings, facts: &[TelemetryCommand]) {
    let publisher = TelemetryPublisher::new(EventPublisher::new(kafka, "test-edge").unwrap());
    for verdict in publisher.publish_batch(facts).await {
        verdict.unwrap();
    }
}

/// Whether the generation's written marks reach the end of every partition.
async fn caught_up(
    generations: &ClickHouseGenerations,
    generation: u32,
    kafka: &KafkaSettings,
) -> bool {
    let ranges = offset_ranges(kafka, &TOPICS).await.unwrap();
    let applied = generations.applied(generation).await.unwrap();
    ranges.iter().all(|(topic, partition, _, high)| {
        *high == 0
            || applied
                .iter()
                .any(|(t, p, next)| t == topic && p == partition && next >= high)
    })
}

async fn count(client: &Client, table: &str) -> (u64, u64) {
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Counts {
        rows: u64,
        ids: u64,
    }
    let counts: Counts = client
        .query(&format!(
            "SELECT count() AS rows, uniqExact(event_id) AS ids FROM {table}"
        ))
        .fetch_one()
        .await
        .unwrap();
    (counts.rows, counts.ids)
}

fn bucket(minute: u32, viewers: u64, seconds: u64, bytes: u64, peak: u64) -> UsageBucket {
    UsageBucket {
        start: at(minute, 0),
        viewers,
        viewer_seconds: seconds,
        bytes_out: bytes,
        peak_concurrent_viewers: peak,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_buckets_hold_viewers_seconds_bytes_and_peaks_and_redelivery_changes_nothing() {
    let kafka = kafka_with_topics().await;
    let settings = clickhouse(&scratch_base());
    let tenant = Uuid::now_v7();
    let t = Some(tenant);
    let (a, b) = ("stream-a", "stream-b");
    let track = Track {
        track_id: 1,
        kind: "video".into(),
        codec: "H264".into(),
        width: 1280,
        height: 720,
        ..Default::default()
    };
    publish(
        &kafka,
        &[
            fact(
                t,
                a,
                at(0, 30),
                IngestStarted {
                    node_id: "edge-1".into(),
                    protocol: "RTMP".into(),
                    ..Default::default()
                },
            ),
            fact(
                t,
                a,
                at(0, 40),
                TrackListUpdated {
                    node_id: "edge-1".into(),
                    tracks: vec![track],
                },
            ),
            fact(
                t,
                a,
                at(0, 50),
                StreamHealthReported {
                    node_id: "edge-1".into(),
                    bitrate_bps: 2_500_000,
                    issues: vec!["VeryHighJitter".into()],
                    ..Default::default()
                },
            ),
            fact(
                None,
                "edge-1",
                at(0, 55),
                NodeMetrics {
                    cpu_percent: 42.0,
                    active_viewers: 2,
                    ..Default::default()
                },
            ),
            fact(None, "edge-1", at(0, 56), NodeHeartbeat::default()),
            fact(t, a, at(1, 0), start("s1")),
            fact(t, a, at(2, 0), start("s2")),
            fact(t, a, at(3, 0), end("s1", 120, 1_000)),
            fact(t, b, at(4, 0), start("s4")),
            fact(t, b, at(6, 0), end("s4", 120, 100)),
            fact(t, a, at(7, 0), start("s3")),
            fact(t, a, at(8, 0), end("s2", 360, 3_000)),
            fact(t, a, at(9, 0), end("s3", 120, 500)),
            // A stream fact nobody can bill: dead-lettered, and the projector goes on.
            fact(None, a, at(9, 30), start("s9")),
        ],
    )
    .await;

    let projector =
        AnalyticsProjector::new(&settings, &kafka, analytics_settings("analytics-a", 100))
            .await
            .unwrap();
    let generations = ClickHouseGenerations::open(&settings).await.unwrap();
    assert_eq!(generations.live().await.unwrap(), Some(1));
    within(
        Duration::from_secs(60),
        "the projector catching up",
        async {
            while !caught_up(&generations, 1, &kafka).await {
                projector.step().await.unwrap();
            }
        },
    )
    .await;
    let client = projector.client().clone();
    for (table, rows) in [
        ("stream_lifecycle", 1),
        ("track_lists", 1),
        ("stream_health", 1),
        ("node_metrics", 1),
        ("viewer_sessions", 8),
    ] {
        assert_eq!(count(&client, table).await, (rows, rows), "{table}");
    }
    let letters = read_dead_letters(&kafka, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "invalid-for-projection");

    let window = (at(0, 0), at(15, 0));
    let stream_a = UsageScope::Stream { tenant, stream: a };
    let expected_a = vec![bucket(0, 2, 120, 1_000, 2), bucket(5, 2, 480, 3_500, 2)];
    assert_eq!(
        usage(&client, stream_a, window.0, window.1).await.unwrap(),
        expected_a
    );
    let expected_tenant = vec![bucket(0, 3, 120, 1_000, 2), bucket(5, 3, 600, 3_600, 2)];
    let tenant_usage = usage(&client, UsageScope::Tenant(tenant), window.0, window.1)
        .await
        .unwrap();
    assert_eq!(tenant_usage, expected_tenant);
    // A window that starts mid-stream carries the sessions still open into it.
    let late = usage(&client, stream_a, at(5, 0), window.1).await.unwrap();
    assert_eq!(late, expected_a[1..]);

    // Every record again, through a second group on the same generation: the
    // written marks make each one a suspect, and none is inserted twice.
    let again = AnalyticsProjector::for_generation(
        &settings,
        &kafka,
        analytics_settings("analytics-again", 100),
        1,
    )
    .await
    .unwrap();
    let mut records = 0;
    let mut skipped = 0;
    within(
        Duration::from_secs(60),
        "the second group reading everything",
        async {
            while records < 14 {
                let outcome = again.step().await.unwrap();
                records += outcome.records;
                skipped += outcome.skipped;
            }
        },
    )
    .await;
    assert_eq!(skipped, 12, "every stored row was found and skipped");
    assert_eq!(count(&client, "viewer_sessions").await, (8, 8));
    assert_eq!(
        usage(&client, stream_a, window.0, window.1).await.unwrap(),
        expected_a
    );

    drop_base(&settings).await;
    drop_topics(&kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_batch_ends_equal_to_a_clean_rebuild() {
    let kafka = kafka_with_topics().await;
    let killed = clickhouse(&scratch_base());
    let clean = clickhouse(&scratch_base());
    let group = format!("{}-analytics", kafka.catalogue.prefix);
    let spawn = || {
        spawn_role(
            "analytics",
            &kafka,
            &[
                ("FRAMEWORKS_CLICKHOUSE_DATABASE", killed.database.clone()),
                ("FRAMEWORKS_ANALYTICS_GROUP", group.clone()),
                ("FRAMEWORKS_ANALYTICS_INSTANCE_ID", format!("{group}-1")),
                ("FRAMEWORKS_ANALYTICS_BATCH_SIZE", "40".into()),
                ("FRAMEWORKS_ANALYTICS_BATCH_WAIT_MS", "5".into()),
                ("FRAMEWORKS_ANALYTICS_METRICS_LISTEN", "127.0.0.1:0".into()),
            ],
        )
    };
    let tenant = Uuid::now_v7();
    let mut process = spawn();
    let mut kills = 0;
    for round in 0..8u32 {
        let facts: Vec<TelemetryCommand> = (0..300u32)
            .map(|i| {
                let stream = format!("stream-{}", i % 7);
                let session = format!("r{round}-s{}", i / 2);
                let when = at(round * 5 + (i % 5), i % 60);
                if i % 2 == 0 {
                    fact(Some(tenant), &stream, when, start(&session))
                } else {
                    fact(
                        Some(tenant),
                        &stream,
                        when,
                        end(&session, u64::from(i), u64::from(i) * 100),
                    )
                }
            })
            .collect();
        publish(&kafka, &facts).await;
        tokio::time::sleep(Duration::from_millis(200 + random_below(600))).await;
        process.kill();
        kills += 1;
        process = spawn();
    }
    let generations = ClickHouseGenerations::open(&killed).await.unwrap();
    within(
        Duration::from_secs(120),
        "the restarted projector catching up",
        async {
            loop {
                if let Ok(Some(live)) = generations.live().await
                    && caught_up(&generations, live, &kafka).await
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
    .await;
    drop(process);

    let rebuild =
        AnalyticsProjector::new(&clean, &kafka, analytics_settings("analytics-clean", 1_000))
            .await
            .unwrap();
    let clean_generations = ClickHouseGenerations::open(&clean).await.unwrap();
    within(Duration::from_secs(60), "the clean rebuild", async {
        while !caught_up(&clean_generations, 1, &kafka).await {
            rebuild.step().await.unwrap();
        }
    })
    .await;

    let killed_client = killed
        .client()
        .with_database(ClickHouseGenerations::database(&killed.database, 1));
    let clean_client = rebuild.client().clone();
    assert_eq!(
        count(&killed_client, "viewer_sessions").await,
        (2_400, 2_400),
        "after {kills} kills"
    );
    let window = (at(0, 0), at(59, 0));
    for stream in 0..7 {
        let stream = format!("stream-{stream}");
        let scope = UsageScope::Stream {
            tenant,
            stream: &stream,
        };
        let killed_usage = usage(&killed_client, scope, window.0, window.1)
            .await
            .unwrap();
        assert!(!killed_usage.is_empty());
        assert_eq!(
            killed_usage,
            usage(&clean_client, scope, window.0, window.1)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        usage(
            &killed_client,
            UsageScope::Tenant(tenant),
            window.0,
            window.1
        )
        .await
        .unwrap(),
        usage(
            &clean_client,
            UsageScope::Tenant(tenant),
            window.0,
            window.1
        )
        .await
        .unwrap()
    );
    drop_base(&killed).await;
    drop_base(&clean).await;
    drop_topics(&kafka).await;
}
