//! `frameworks replay`: each projection is rebuilt from the log into a new
//! generation while queries keep reading the old one, is switched atomically,
//! can be interrupted and resumed, and running roles follow the switch.

// The helpers below fail the test by panicking, as test code should.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use frameworks_commands::aggregates::stream::{Ingest, Stream, StreamCommand};
use frameworks_commands::aggregates::tenant::{Tenant, TenantCommand};
use frameworks_commands::relay::{OutboxRelay, RelaySettings};
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
use frameworks_commands::{CommandBus, CommandContext, EventStore, SecretBox};
use frameworks_events::kafka::{EventPublisher, KafkaSettings};
use frameworks_events::proto::v1::telemetry::{ViewerSessionEnded, ViewerSessionStarted};
use frameworks_projections::control_plane::TABLES;
use frameworks_projections::generations::Generations;
use frameworks_projections::generations::clickhouse::ClickHouseGenerations;
use frameworks_projections::generations::postgres::PostgresGenerations;
use frameworks_projections::live::{LiveState, LiveStateProjector, LiveStateSettings};
use frameworks_test_harness::drop_redis_prefix;
use sqlx::PgPool;
use support::{
    TestDatabase, drop_topics, fresh_database, kafka_with_topics, redis_url, spawn_role, within,
};
use uuid::Uuid;

async fn create_streams(bus: &CommandBus, count: usize) {
    for i in 0..count {
        let tenant = Uuid::now_v7();
        let ctx = CommandContext::for_tenant(tenant, "user:replay");
        let create = TenantCommand::Create {
            name: format!("tenant {i}"),
            tier: "pro".into(),
            region: "eu-west".into(),
        };
        bus.execute::<Tenant>(&tenant.to_string(), &create, &ctx, None)
            .await
            .unwrap();
        let stream = StreamCommand::Create {
            name: format!("stream {i}"),
            description: String::new(),
            record: false,
            ingest: Ingest::Push,
            pull_source: None,
            allow_private_sources: false,
        };
        bus.execute::<Stream>(&Uuid::now_v7().to_string(), &stream, &ctx, None)
            .await
            .unwrap();
    }
}

async fn relay_outbox(store: &EventStore, kafka: &KafkaSettings) {
    let publisher = EventPublisher::new(kafka, "test-relay").unwrap();
    let relay = OutboxRelay::new(store.clone(), publisher, RelaySettings::default());
    let mut leader = store.pool().acquire().await.unwrap().detach();
    while relay.drain_once(&mut leader).await.unwrap() > 0 {}
}

async fn stream_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM read_models.rm_streams")
        .fetch_one(pool)
        .await
}

/// Every read-model table, as sorted JSON rows, through the query views.
async fn snapshot(pool: &PgPool) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    for table in TABLES {
        tables.push(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT to_jsonb(t)::text FROM read_models.{table} t ORDER BY 1"
            )))
            .fetch_all(pool)
            .await
            .unwrap(),
        );
    }
    tables
}

/// Runs `replay <projection> --if-outdated` to success; its report.
fn replay_if_outdated(projection: &str, kafka: &KafkaSettings, env: &[(&str, String)]) -> String {
    let output = replay(projection, kafka, env)
        .arg("--if-outdated")
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    stderr
}

fn replay(projection: &str, kafka: &KafkaSettings, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_frameworks"));
    command
        .args(["replay", projection])
        .env("FRAMEWORKS_KAFKA_BROKERS", &kafka.brokers)
        .env("FRAMEWORKS_TOPIC_PREFIX", &kafka.catalogue.prefix)
        .env("FRAMEWORKS_LOG", "warn")
        .env("FRAMEWORKS_REPLAY_REPORT_SECONDS", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn db_env(db: &TestDatabase, group: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
        ("FRAMEWORKS_PROJECTOR_GROUP", group.to_owned()),
        ("FRAMEWORKS_PROJECTOR_METRICS_LISTEN", "127.0.0.1:0".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_replay_is_resumable_switches_atomically_and_the_role_follows() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let (secrets, _) = SecretBox::generate("test-key");
    let bus = CommandBus::new(db.store.clone(), secrets);
    let streams = 150;
    create_streams(&bus, streams).await;
    relay_outbox(&db.store, &kafka).await;
    let pool = db.store.pool().clone();
    let group = format!("{}-cp", kafka.catalogue.prefix);

    let role = spawn_role("projector", &kafka, &db_env(&db, &group));
    within(Duration::from_secs(60), "generation 1 catching up", async {
        while stream_count(&pool).await.unwrap_or(0) < streams as i64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let before = snapshot(&pool).await;

    // Queries go on throughout: every read sees the whole model, none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let (pool, stop, reads) = (pool.clone(), stop.clone(), reads.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let count = stream_count(&pool)
                    .await
                    .expect("a query during the replay");
                assert_eq!(count, streams as i64, "a query saw a partial model");
                reads.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    // A slow replay (one event per transaction), interrupted once it is under way.
    let generations = PostgresGenerations::new(pool.clone());
    let mut slow = db_env(&db, &group);
    slow.push(("FRAMEWORKS_PROJECTOR_BATCH_SIZE", "1".into()));
    let child = replay("control-plane", &kafka, &slow).spawn().unwrap();
    let mut child = support::RoleProcess(child);
    within(
        Duration::from_secs(60),
        "the replay to apply something",
        async {
            loop {
                if let Ok(Some(building)) = generations.building().await
                    && let Ok(applied) = generations.applied(building).await
                    && applied.iter().map(|(_, _, next)| next).sum::<i64>() > 20
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let interrupted = within(Duration::from_secs(30), "the replay to stop", async {
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(interrupted.code(), Some(130), "{stderr}");
    assert!(stderr.contains("building generation 2"), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(generations.live().await.unwrap(), Some(1));
    assert_eq!(generations.building().await.unwrap(), Some(2));

    // Run again: it resumes generation 2, catches up and switches.
    let output = replay("control-plane", &kafka, &db_env(&db, &group))
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resuming generation 2"), "{stderr}");
    assert!(stderr.contains("events/s"), "progress is shown: {stderr}");
    assert!(stderr.contains("generation 2 is live"), "{stderr}");
    assert_eq!(generations.live().await.unwrap(), Some(2));
    assert_eq!(generations.retired().await.unwrap(), [1]);
    stop.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    assert!(reads.load(Ordering::SeqCst) > 10, "the reader kept reading");
    assert_eq!(
        snapshot(&pool).await,
        before,
        "the rebuilt model equals the old one"
    );

    // The running role noticed the switch and keeps generation 2 current.
    create_streams(&bus, 1).await;
    relay_outbox(&db.store, &kafka).await;
    within(
        Duration::from_secs(30),
        "the role applying to generation 2",
        async {
            while stream_count(&pool).await.unwrap() < streams as i64 + 1 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;

    // After an upgrade: --if-outdated rebuilds only a generation whose
    // tables predate this build's definitions.
    let stderr = replay_if_outdated("control-plane", &kafka, &db_env(&db, &group));
    assert!(stderr.contains("generation 2 is up to date"), "{stderr}");
    assert_eq!(generations.building().await.unwrap(), None);
    sqlx::query(
        "UPDATE projection_generations SET schema_digest = 'an older build' WHERE generation = 2",
    )
    .execute(&pool)
    .await
    .unwrap();
    let stderr = replay_if_outdated("control-plane", &kafka, &db_env(&db, &group));
    assert!(
        stderr.contains("generation 2 has outdated tables"),
        "{stderr}"
    );
    assert!(stderr.contains("generation 3 is live"), "{stderr}");
    assert!(generations.schema_current(3).await.unwrap());
    assert_eq!(stream_count(&pool).await.unwrap(), streams as i64 + 1);

    drop(role);
    drop_topics(&kafka).await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_state_and_analytics_replays_rebuild_the_same_state() {
    let kafka = kafka_with_topics().await;
    let prefix = format!("test-{}", Uuid::now_v7().simple());
    let base = format!("test_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let tenant = Uuid::now_v7();
    let facts: Vec<TelemetryCommand> = (0..200)
        .map(|i| {
            let session = format!("s{}", i / 2);
            let payload: frameworks_events::EventPayload = if i % 2 == 0 || i > 190 {
                ViewerSessionStarted {
                    session_id: session,
                    node_id: "edge-1".into(),
                    ..Default::default()
                }
                .into()
            } else {
                ViewerSessionEnded {
                    session_id: session,
                    node_id: "edge-1".into(),
                    duration_seconds: 30,
                    bytes_up: 1_000,
                    trigger_id: Uuid::now_v7().to_string(),
                    ..Default::default()
                }
                .into()
            };
            TelemetryCommand {
                subject_id: "stream-1".into(),
                tenant_id: Some(tenant),
                occurred_at: Utc::now(),
                payload,
                event_id: None,
                correlation_id: Uuid::now_v7(),
            }
        })
        .collect();
    let publisher = TelemetryPublisher::new(EventPublisher::new(&kafka, "test-edge").unwrap());
    for verdict in publisher.publish_batch(&facts).await {
        verdict.unwrap();
    }
    // Groups of their own: a group shared with another run's roles (on
    // other topics) makes every join wait for the others.
    let env = vec![
        ("FRAMEWORKS_REDIS_URL", redis_url()),
        ("FRAMEWORKS_LIVE_KEY_PREFIX", prefix.clone()),
        ("FRAMEWORKS_LIVE_GROUP", format!("{prefix}-live")),
        ("FRAMEWORKS_CLICKHOUSE_DATABASE", base.clone()),
        ("FRAMEWORKS_ANALYTICS_GROUP", format!("{prefix}-analytics")),
    ];

    // Live state: generation 1 is live (its projector ran), the replay builds 2.
    let settings = LiveStateSettings {
        redis_url: redis_url(),
        key_prefix: prefix.clone(),
        ttl_seconds: 90,
        group_id: format!("{prefix}-live"),
        instance_id: None,
        batch_size: 50,
        batch_wait_ms: 5,
    };
    let first = LiveStateProjector::new(&kafka, settings.clone())
        .await
        .unwrap();
    within(
        Duration::from_secs(60),
        "generation 1 of the live state",
        async {
            let mut read = 0;
            while read < facts.len() {
                read += first.step().await.unwrap().records;
            }
        },
    )
    .await;
    let live = LiveState::connect(&redis_url(), &prefix).await.unwrap();
    let viewers = live.viewers("stream-1").await.unwrap();
    assert!(viewers > 0);
    let output = replay("live-state", &kafka, &env).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("generation 2 is live"),
        "{}",
        stderr_of(&output)
    );
    let generations = LiveStateProjector::generations(&settings).await.unwrap();
    assert_eq!(generations.live().await.unwrap(), Some(2));
    assert_eq!(
        live.keys().await.unwrap().stream("x"),
        format!("{prefix}:g2:stream:x")
    );
    assert_eq!(
        live.viewers("stream-1").await.unwrap(),
        viewers,
        "the same state, rebuilt"
    );

    // Analytics: the same through ClickHouse, from no live generation at all.
    let clickhouse = support::clickhouse(&base);
    let role = spawn_role(
        "analytics",
        &kafka,
        &[
            ("FRAMEWORKS_CLICKHOUSE_DATABASE", base.clone()),
            ("FRAMEWORKS_ANALYTICS_GROUP", format!("{prefix}-analytics")),
            ("FRAMEWORKS_ANALYTICS_METRICS_LISTEN", "127.0.0.1:0".into()),
        ],
    );
    let generations = ClickHouseGenerations::open(&clickhouse).await.unwrap();
    let rows = |generation: u32| {
        let client = clickhouse
            .client()
            .with_database(ClickHouseGenerations::database(&base, generation));
        async move {
            match client
                .query("SELECT count() FROM viewer_sessions")
                .fetch_one::<u64>()
                .await
            {
                Ok(rows) => rows,
                // Generation 1 appears with the analytics role's first write
                // (UNKNOWN_DATABASE, UNKNOWN_TABLE); any other error is a failure.
                Err(clickhouse::error::Error::BadResponse(error))
                    if error.contains("Code: 81") || error.contains("Code: 60") =>
                {
                    0
                }
                Err(error) => panic!("counting generation {generation}'s viewer sessions: {error}"),
            }
        }
    };
    within(Duration::from_secs(60), "analytics generation 1", async {
        while rows(1).await < 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let output = replay("analytics", &kafka, &env).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(generations.live().await.unwrap(), Some(2));
    assert_eq!(rows(2).await, 200);

    // ClickHouse keeps no record of the DDL a database came from: the check
    // compares the catalogue with this build's tables. One column short (a
    // generation built before it was added) is outdated.
    assert!(generations.schema_current(2).await.unwrap());
    let stderr = replay_if_outdated("analytics", &kafka, &env);
    assert!(stderr.contains("generation 2 is up to date"), "{stderr}");
    clickhouse
        .client()
        .with_database(ClickHouseGenerations::database(&base, 2))
        .query("ALTER TABLE node_metrics DROP COLUMN shm_total_bytes")
        .execute()
        .await
        .unwrap();
    assert!(!generations.schema_current(2).await.unwrap());
    let stderr = replay_if_outdated("analytics", &kafka, &env);
    assert!(
        stderr.contains("generation 2 has outdated tables"),
        "{stderr}"
    );
    assert_eq!(generations.live().await.unwrap(), Some(3));
    assert!(generations.schema_current(3).await.unwrap());
    assert_eq!(rows(3).await, 200);
    drop(role);

    drop_redis_prefix(&redis_url(), &prefix).await;
    for database in [
        format!("{base}_g1"),
        format!("{base}_g2"),
        format!("{base}_g3"),
        base.clone(),
    ] {
        clickhouse
            .client()
            .query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute()
            .await
            .unwrap();
    }
    drop_topics(&kafka).await;
}
