//! The relay survives SIGKILL at any moment: every appended event reaches
//! Kafka, in sequence order per aggregate, and a duplicate (a row published
//! but not yet deleted when the relay died) carries the same event id. And a
//! running relay whose database comes back without its migrations ends,
//! naming the missing one, rather than write there.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use frameworks_commands::aggregates::stream::{Ingest, Stream, StreamCommand};
use frameworks_commands::{CommandBus, CommandContext, SecretBox};
use frameworks_events::Topic;
use frameworks_events::kafka::{EventConsumer, KafkaSettings};
use sqlx::Row;
use support::{
    RoleProcess, drop_topics, fresh_database, kafka_with_topics, random_below, spawn_role, within,
};
use uuid::Uuid;

const STREAMS: usize = 30;
const UPDATES_PER_STREAM: usize = 20;
const MIN_KILLS: usize = 10;

fn spawn_relay(database_url: &str, kafka: &KafkaSettings) -> RoleProcess {
    spawn_role(
        "relay",
        kafka,
        &[
            ("FRAMEWORKS_DATABASE_URL", database_url.to_owned()),
            ("FRAMEWORKS_RELAY_BATCH_SIZE", "25".into()),
            ("FRAMEWORKS_RELAY_IDLE_POLL_MS", "50".into()),
            ("FRAMEWORKS_RELAY_METRICS_LISTEN", "127.0.0.1:0".into()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_relay_loses_and_reorders_nothing() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let (secrets, _) = SecretBox::generate("test-key");
    let bus = Arc::new(CommandBus::new(db.store.clone(), secrets).with_max_attempts(50));
    let tenant = Uuid::now_v7();

    // Writers: each stream's history is created and renamed concurrently with the others.
    let writing = Arc::new(AtomicBool::new(true));
    let mut writers = tokio::task::JoinSet::new();
    for s in 0..STREAMS {
        let bus = Arc::clone(&bus);
        writers.spawn(async move {
            let ctx = CommandContext::for_tenant(tenant, "user:load");
            let stream = Uuid::now_v7().to_string();
            let create = StreamCommand::Create {
                name: format!("stream {s}"),
                description: String::new(),
                record: false,
                ingest: Ingest::Push,
                pull_source: None,
                allow_private_sources: false,
            };
            bus.execute::<Stream>(&stream, &create, &ctx, None)
                .await
                .expect("create");
            for u in 0..UPDATES_PER_STREAM {
                let rename = StreamCommand::Update {
                    name: Some(format!("stream {s} v{u}")),
                    description: None,
                    record: None,
                    ingest: None,
                    pull_source: None,
                    allow_private_sources: false,
                };
                bus.execute::<Stream>(&stream, &rename, &ctx, None)
                    .await
                    .expect("rename");
                tokio::time::sleep(Duration::from_millis(random_below(40))).await;
            }
        });
    }
    let done = Arc::clone(&writing);
    let writers = tokio::spawn(async move {
        while let Some(result) = writers.join_next().await {
            result.expect("writer task");
        }
        done.store(false, Ordering::SeqCst);
    });

    // The killer: SIGKILL the relay at random moments, restart it at once.
    let mut kills = 0;
    let mut relay = spawn_relay(&db.url, &kafka);
    while writing.load(Ordering::SeqCst) || kills < MIN_KILLS {
        tokio::time::sleep(Duration::from_millis(50 + random_below(400))).await;
        relay.kill();
        kills += 1;
        relay = spawn_relay(&db.url, &kafka);
    }
    writers.await.expect("writers finish");

    // The last relay drains what is left.
    within(Duration::from_secs(60), "the outbox to drain", async {
        loop {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(db.store.pool())
                .await
                .unwrap();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    relay.kill();

    // What the store holds.
    let rows = sqlx::query("SELECT event_id, aggregate_id, sequence FROM events")
        .fetch_all(db.store.pool())
        .await
        .unwrap();
    let stored: HashMap<Uuid, (String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r.get("event_id"),
                (r.get("aggregate_id"), r.get::<i64, _>("sequence") as u64),
            )
        })
        .collect();
    assert_eq!(stored.len(), STREAMS * (2 + UPDATES_PER_STREAM));

    // What Kafka holds, in the order a consumer sees it.
    let consumer = EventConsumer::subscribe(
        &kafka,
        &format!("{}-audit", kafka.catalogue.prefix),
        &[Topic::Streams],
    )
    .unwrap();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut records = 0usize;
    let mut last_sequence: HashMap<String, u64> = HashMap::new();
    let mut id_at: HashMap<(String, u64), Uuid> = HashMap::new();
    within(
        Duration::from_secs(90),
        "reading every event back from Kafka",
        async {
            while seen.len() < stored.len() {
                let event = consumer.next().await.unwrap().event;
                records += 1;
                let key = (event.aggregate_id.clone(), event.sequence);
                let first_id = *id_at.entry(key).or_insert(event.id);
                assert_eq!(
                    first_id, event.id,
                    "a duplicate must carry the same event id"
                );
                assert!(
                    stored.contains_key(&event.id),
                    "published an event the store does not hold"
                );
                if seen.insert(event.id) {
                    let previous = last_sequence
                        .insert(event.aggregate_id.clone(), event.sequence)
                        .unwrap_or(0);
                    assert_eq!(
                        event.sequence,
                        previous + 1,
                        "stream {} reached Kafka out of order",
                        event.aggregate_id
                    );
                }
            }
        },
    )
    .await;
    assert!(
        stored.keys().all(|id| seen.contains(id)),
        "an appended event never reached Kafka"
    );
    println!(
        "relay killed {kills} times; {} events appended, {records} records read, {} duplicates",
        stored.len(),
        records - stored.len()
    );
    drop_topics(&kafka).await;
    db.drop_now().await;
}

/// A database that comes back as another one (here: restored from a backup
/// older than this build's last migration) is refused: the running relay
/// ends with a non-zero status and names the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_relay_refuses_a_database_without_its_migrations() {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut relay = support::RoleProcess(
        Command::new(env!("CARGO_BIN_EXE_frameworks"))
            .arg("relay")
            .env("FRAMEWORKS_KAFKA_BROKERS", &kafka.brokers)
            .env("FRAMEWORKS_TOPIC_PREFIX", &kafka.catalogue.prefix)
            .env("FRAMEWORKS_DATABASE_URL", &db.url)
            .env("FRAMEWORKS_RELAY_METRICS_LISTEN", &listen)
            .env("FRAMEWORKS_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    within(Duration::from_secs(60), "the relay healthy", async {
        while !matches!(support::health(&listen).await, Some((200, _))) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let (latest,): (i64,) = sqlx::query_as("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(db.store.pool())
        .await
        .unwrap();
    let status = within(Duration::from_secs(40), "the relay ends", async {
        loop {
            if let Some(status) = relay.0.try_wait().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(!status.success(), "{status}");
    let mut said = String::new();
    relay
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(
        said.contains(&format!("lacks this build's migration {latest}")),
        "{said}"
    );
    drop_topics(&kafka).await;
}
