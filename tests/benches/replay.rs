//! Load driver for `frameworks replay`, against the real Kafka, PostgreSQL,
//! Redis and ClickHouse that `compose/infra up` runs. For each projection it
//! fills the log, then times a replay of it into a new generation (the
//! binary itself, as an operator runs it) and prints events/s.
//!
//! `cargo bench --bench replay` runs the full load (release build); under
//! `cargo test` (no `--bench` argument) a small smoke load exercises the driver.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use frameworks_commands::aggregates::stream::{Ingest, Stream, StreamCommand};
use frameworks_commands::aggregates::tenant::{Tenant, TenantCommand};
use frameworks_commands::relay::{OutboxRelay, RelaySettings};
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
use frameworks_commands::{CommandBus, CommandContext, SecretBox};
use frameworks_events::kafka::{EventPublisher, KafkaSettings};
use frameworks_events::proto::v1::stream::{StreamCreated, StreamKeyCreated, StreamUpdated};
use frameworks_events::proto::v1::telemetry::{ViewerSessionEnded, ViewerSessionStarted};
use frameworks_events::{Event, EventPayload, Topic};
use frameworks_test_harness::figures::{Goal, figure, ratio};
use frameworks_test_harness::{ScratchDatabase, drop_redis_prefix, drop_topics, kafka_with_topics};
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

struct Load {
    /// Tenants, each with one stream, through the command bus and the
    /// relay: three control-plane events apiece.
    tenants: usize,
    /// Streams published straight to the log, four events apiece (created,
    /// key, two updates): the bulk of the control-plane replay.
    streams: usize,
    /// Viewer-session telemetry events.
    telemetry: usize,
    /// 1 KB records sent by a bare producer: Kafka's own rate here.
    peer_records: usize,
}

const FULL: Load = Load {
    tenants: 2_000,
    streams: 50_000,
    telemetry: 300_000,
    peer_records: 200_000,
};
const SMOKE: Load = Load {
    tenants: 20,
    streams: 50,
    telemetry: 400,
    peer_records: 1_000,
};

fn main() {
    let load = if std::env::args().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(load));
}

async fn run(load: Load) {
    let kafka = kafka_with_topics("bench-replay").await;
    let db = ScratchDatabase::create("bench_replay").await;
    let redis_url =
        std::env::var("FRAMEWORKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("bench-{}", Uuid::now_v7().simple());
    let clickhouse_base = format!("bench_{}", &Uuid::now_v7().simple().to_string()[20..]);

    let peer = kafka_producer_rate(load.peer_records).await;
    fill_control_plane(&db, &kafka, load.tenants).await;
    fill_streams(&kafka, load.streams).await;
    fill_telemetry(&kafka, load.telemetry).await;

    let env = [
        ("FRAMEWORKS_KAFKA_BROKERS", kafka.brokers.clone()),
        ("FRAMEWORKS_TOPIC_PREFIX", kafka.catalogue.prefix.clone()),
        ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
        ("FRAMEWORKS_REDIS_URL", redis_url.clone()),
        ("FRAMEWORKS_LIVE_KEY_PREFIX", prefix.clone()),
        ("FRAMEWORKS_CLICKHOUSE_DATABASE", clickhouse_base.clone()),
        // Groups of their own, apart from any running roles'.
        ("FRAMEWORKS_PROJECTOR_GROUP", format!("{prefix}-projector")),
        ("FRAMEWORKS_LIVE_GROUP", format!("{prefix}-live")),
        ("FRAMEWORKS_ANALYTICS_GROUP", format!("{prefix}-analytics")),
        ("FRAMEWORKS_LOG", "warn".into()),
        ("FRAMEWORKS_REPLAY_REPORT_SECONDS", "3600".into()),
    ];
    println!(
        "replay: events/s from the first record to the switch, one process (two projectors), 2 cores"
    );
    for projection in ["control-plane", "live-state", "analytics"] {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_frameworks"))
            .args(["replay", projection])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("the frameworks binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{projection}: {stderr}");
        let summary = stderr
            .lines()
            .find(|line| line.contains("is live:"))
            .unwrap_or_default();
        println!(
            "  {projection:<14} {summary:<70} (process {:.1}s)",
            started.elapsed().as_secs_f64()
        );
        let rate = events_per_second(summary)
            .unwrap_or_else(|| panic!("{projection}: no rate in {summary:?}"));
        figure(
            &format!("replay.{projection}"),
            rate,
            "events/s",
            Goal::AtLeast(200_000.0),
        );
        ratio(
            &format!("replay.{projection}.vs-kafka-producer"),
            rate,
            peer,
            "records/s",
        );
    }

    drop_redis_prefix(&redis_url, &prefix).await;
    let clickhouse = std::env::var("FRAMEWORKS_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let client = clickhouse::Client::default().with_url(clickhouse);
    for database in [format!("{clickhouse_base}_g1"), clickhouse_base.clone()] {
        client
            .query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute()
            .await
            .expect("dropping the bench database");
    }
    drop_topics(&kafka).await;
    db.drop_now().await;
}

async fn fill_control_plane(db: &ScratchDatabase, kafka: &KafkaSettings, tenants: usize) {
    let (secrets, _) = SecretBox::generate("bench-key");
    let bus = CommandBus::new(db.store.clone(), secrets);
    let mut callers = Vec::new();
    for caller in 0..8 {
        let bus = bus.clone();
        callers.push(tokio::spawn(async move {
            for i in (caller..tenants).step_by(8) {
                let tenant = Uuid::now_v7();
                let ctx = CommandContext::for_tenant(tenant, "user:bench");
                let create = TenantCommand::Create {
                    name: format!("tenant {i}"),
                    tier: "pro".into(),
                    region: "eu-west".into(),
                };
                bus.execute::<Tenant>(&tenant.to_string(), &create, &ctx, None)
                    .await
                    .expect("tenant");
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
                    .expect("stream");
            }
        }));
    }
    for caller in callers {
        caller.await.expect("caller");
    }
    let publisher = EventPublisher::new(kafka, "bench-relay").expect("publisher");
    let relay = OutboxRelay::new(db.store.clone(), publisher, RelaySettings::default());
    let mut leader = db
        .store
        .pool()
        .acquire()
        .await
        .expect("connection")
        .detach();
    while relay.drain_once(&mut leader).await.expect("relay") > 0 {}
}

/// The rate in `<name>: generation N is live: E events in Ts (R events/s)`.
fn events_per_second(summary: &str) -> Option<f64> {
    let (_, rest) = summary.rsplit_once('(')?;
    rest.strip_suffix(" events/s)")?.parse().ok()
}

/// Records/s a bare producer sends to this Kafka (1 KB each, lz4, acks=all),
/// as the peer figure for the replays; on topics of its own.
async fn kafka_producer_rate(records: usize) -> f64 {
    let kafka = kafka_with_topics("bench-peer").await;
    let producer: FutureProducer = kafka
        .client_config("bench-peer")
        .set("compression.type", "lz4")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let topic = kafka.catalogue().name(Topic::StreamTelemetry).to_owned();
    // Text that compresses like an event's fields would, not a constant.
    let payloads: Vec<Vec<u8>> = (0..64)
        .map(|n| {
            (0..1024)
                .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz-_:"[(i * 7 + n * 13) % 39])
                .collect()
        })
        .collect();
    let started = Instant::now();
    for chunk in (0..records).collect::<Vec<_>>().chunks(10_000) {
        let sends = chunk.iter().map(|&i| {
            let key = format!("k{}", i % 997);
            let payload = &payloads[i % payloads.len()];
            let producer = &producer;
            let topic = &topic;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| error)
            }
        });
        for sent in futures::future::join_all(sends).await {
            sent.expect("the bare producer's record is acknowledged");
        }
    }
    let rate = records as f64 / started.elapsed().as_secs_f64().max(1e-6);
    println!("kafka: a bare producer sends {rate:.0} records/s (1 KB, lz4, acks=all)");
    drop_topics(&kafka).await;
    rate
}

/// `streams` stream histories straight to the log, as the relay publishes them.
async fn fill_streams(kafka: &KafkaSettings, streams: usize) {
    let publisher = EventPublisher::new(kafka, "bench-streams").expect("publisher");
    let tenant = Uuid::now_v7();
    let events: Vec<Event> = (0..streams)
        .flat_map(|n| {
            let stream = Uuid::now_v7().to_string();
            let payloads: [EventPayload; 4] = [
                StreamCreated {
                    name: format!("stream {n}"),
                    playback_id: format!("pb-{stream}"),
                    ..Default::default()
                }
                .into(),
                StreamKeyCreated {
                    key_id: format!("k-{stream}"),
                    primary: true,
                    lookup_hash: vec![7; 32],
                    ..Default::default()
                }
                .into(),
                StreamUpdated {
                    description: Some("updated once".into()),
                    ..Default::default()
                }
                .into(),
                StreamUpdated {
                    record: Some(true),
                    ..Default::default()
                }
                .into(),
            ];
            payloads
                .into_iter()
                .zip(1..)
                .map(move |(payload, sequence)| {
                    Event::new(stream.clone(), payload)
                        .with_tenant(tenant)
                        .with_sequence(sequence)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for chunk in events.chunks(5_000) {
        for published in futures::future::join_all(chunk.iter().map(|e| publisher.publish(e))).await
        {
            published.expect("published");
        }
    }
}

async fn fill_telemetry(kafka: &KafkaSettings, events: usize) {
    let publisher =
        TelemetryPublisher::new(EventPublisher::new(kafka, "bench-edge").expect("publisher"));
    let tenant = Uuid::now_v7();
    let facts: Vec<TelemetryCommand> = (0..events)
        .map(|i| {
            let session_id = format!("s{}", i / 2);
            let payload: EventPayload = if i.is_multiple_of(2) {
                ViewerSessionStarted {
                    session_id,
                    node_id: format!("edge-{}", i % 20),
                    connector: "HLS".into(),
                    ..Default::default()
                }
                .into()
            } else {
                ViewerSessionEnded {
                    session_id,
                    node_id: format!("edge-{}", i % 20),
                    connector: "HLS".into(),
                    duration_seconds: 60,
                    bytes_up: 4_000_000,
                    trigger_id: Uuid::now_v7().to_string(),
                    ..Default::default()
                }
                .into()
            };
            TelemetryCommand {
                subject_id: format!("stream-{}", i % 500),
                tenant_id: Some(tenant),
                occurred_at: Utc::now(),
                payload,
                event_id: None,
                correlation_id: Uuid::now_v7(),
            }
        })
        .collect();
    for chunk in facts.chunks(1_000) {
        for verdict in publisher.publish_batch(chunk).await {
            verdict.expect("published");
        }
    }
}
