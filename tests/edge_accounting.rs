//! Exactly-once accounting across crashes: `frameworks edge` and
//! `frameworks balancer` run as processes and are SIGKILLed at random
//! moments while a simulated MistServer fires accounting triggers (USER_END,
//! STREAM_END, PUSH_END, RECORDING_END, RECORDING_SEGMENT,
//! PUSH_INPUT_CLOSE) at the edge, retrying each until it is answered, as
//! Mist does. Every trigger reaches Kafka, and each as one event: a trigger
//! sent twice (its acknowledgement lost in a crash) is the same event id
//! both times, which is what downstream counts by.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use frameworks_commands::{CommandBus, SecretBox};
use frameworks_events::kafka::{EventConsumer, KafkaSettings};
use frameworks_events::{EventPayload, Topic};
use frameworks_mist_simulator::sender::Firing;
use frameworks_mist_simulator::{MistApi, captures, serve};
use support::{
    RoleProcess, ScratchDir, drop_topics, free_port, fresh_database, kafka_with_topics, redis_url,
    spawn_role, within,
};
use uuid::Uuid;

const ACCOUNTING: [&str; 6] = [
    "USER_END",
    "STREAM_END",
    "PUSH_END",
    "RECORDING_END",
    "RECORDING_SEGMENT",
    "PUSH_INPUT_CLOSE",
];
const TRIGGERS: usize = 240;
const KILLS: usize = 8;

/// A small deterministic generator: the kill schedule is the same every run.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

struct Roles {
    kafka: KafkaSettings,
    balancer_env: Vec<(&'static str, String)>,
    edge_env: Vec<(&'static str, String)>,
}

impl Roles {
    fn balancer(&self) -> RoleProcess {
        spawn_role("balancer", &self.kafka, &self.balancer_env)
    }
    fn edge(&self) -> RoleProcess {
        spawn_role("edge", &self.kafka, &self.edge_env)
    }
}

/// An event store, Kafka topics, a simulated MistServer, and the settings
/// of a balancer and an edge enrolled into a cluster, ready to start.
struct Stage {
    db: support::TestDatabase,
    kafka: KafkaSettings,
    prefix: String,
    roles: Roles,
    edge_address: SocketAddr,
    _state: ScratchDir,
    _mist: MistApi,
}

/// The stage for one test; `edge_env` comes after (and wins over) the
/// edge's usual settings.
async fn stage(name: &str, edge_env: &[(&'static str, String)]) -> Stage {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let prefix = kafka.catalogue.prefix.clone();
    let (secrets, data_keys) = SecretBox::generate("accounting");
    let bus = CommandBus::new(db.store.clone(), secrets);
    let tenant = Uuid::now_v7();
    let (_cluster, token) = support::enrolment_token(&bus, tenant).await;

    let mist = MistApi::new(Some(("admin", "secret")), true);
    let mist_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mist_address = mist_listener.local_addr().unwrap();
    tokio::spawn(serve(mist_listener, mist.clone()));
    let state = ScratchDir::new(name);
    let grpc = free_port();
    let edge_address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let roles = Roles {
        kafka: kafka.clone(),
        balancer_env: vec![
            ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
            ("FRAMEWORKS_DATA_KEYS", data_keys),
            ("FRAMEWORKS_REDIS_URL", redis_url()),
            ("FRAMEWORKS_LIVE_KEY_PREFIX", prefix.clone()),
            (
                "FRAMEWORKS_BALANCER_GRPC_LISTEN",
                format!("127.0.0.1:{grpc}"),
            ),
            ("FRAMEWORKS_BALANCER_HTTP_LISTEN", "127.0.0.1:0".into()),
            ("FRAMEWORKS_BALANCER_METRICS_LISTEN", "127.0.0.1:0".into()),
            ("FRAMEWORKS_BALANCER_HEARTBEAT_SECONDS", "1".into()),
        ],
        edge_env: vec![
            ("FRAMEWORKS_EDGE_LISTEN", edge_address.to_string()),
            ("FRAMEWORKS_EDGE_METRICS_LISTEN", "127.0.0.1:0".into()),
            ("FRAMEWORKS_MIST_ADDRESS", mist_address.to_string()),
            ("FRAMEWORKS_MIST_USERNAME", "admin".into()),
            ("FRAMEWORKS_MIST_PASSWORD", "secret".into()),
            (
                "FRAMEWORKS_EDGE_JOURNAL",
                state.0.join("journal.redb").display().to_string(),
            ),
            (
                "FRAMEWORKS_EDGE_NODE_ID_FILE",
                state.0.join("node-id").display().to_string(),
            ),
            ("FRAMEWORKS_EDGE_ENROLMENT_TOKEN", token),
            (
                "FRAMEWORKS_EDGE_BALANCER",
                format!("http://127.0.0.1:{grpc}"),
            ),
            ("FRAMEWORKS_EDGE_PUBLIC_HOST", "edge-1.example.net".into()),
            (
                "FRAMEWORKS_EDGE_HARDWARE_FINGERPRINT",
                format!("fp-{prefix}"),
            ),
            ("FRAMEWORKS_EDGE_FORWARD_EVERY_MS", "200".into()),
        ]
        .into_iter()
        .chain(edge_env.iter().cloned())
        .collect(),
    };
    Stage {
        db,
        kafka,
        prefix,
        roles,
        edge_address,
        _state: state,
        _mist: mist,
    }
}

/// Fires an accounting trigger of each kind at the edge, each retried until
/// the edge answers 200 as Mist does; answers their trigger ids.
fn accounting_firings(count: usize) -> Vec<Firing> {
    (0..count)
        .map(|i| {
            let name = ACCOUNTING[i % ACCOUNTING.len()];
            Firing::from_capture(captures::of(name).next().unwrap(), "/trigger")
                .with_header("X-Trigger-UUID", Uuid::now_v7().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_triggers_count_once_while_edge_and_balancer_are_killed() {
    let Stage {
        db,
        kafka,
        prefix,
        roles,
        edge_address,
        _state,
        _mist,
    } = stage("edge-accounting", &[]).await;
    let mut balancer = roles.balancer();
    let mut edge = roles.edge();

    // Mist fires; each trigger is retried until the edge answers 200.
    let firings = accounting_firings(TRIGGERS);
    let sent: BTreeSet<String> = firings
        .iter()
        .map(|f| f.uuid().unwrap().to_owned())
        .collect();
    let firing = tokio::spawn(async move {
        let mut retries = 0u32;
        for firing in &firings {
            loop {
                match firing.send(edge_address, Duration::from_secs(2)).await {
                    Ok(reply) if reply.status == 200 => break,
                    _ => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        retries
    });

    // SIGKILL one or the other at random moments, and start it again.
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + random.below(700))).await;
        if kill % 2 == 0 {
            edge.kill();
            tokio::time::sleep(Duration::from_millis(random.below(300))).await;
            edge = roles.edge();
        } else {
            balancer.kill();
            tokio::time::sleep(Duration::from_millis(random.below(300))).await;
            balancer = roles.balancer();
        }
    }
    let retries = within(Duration::from_secs(120), "Mist's triggers answered", firing)
        .await
        .unwrap();

    // Every accounting trigger reaches Kafka, each as one event.
    let consumer = EventConsumer::subscribe(
        &kafka,
        &format!("{prefix}-accounting"),
        &[Topic::NodeTelemetry],
    )
    .unwrap();
    let mut events: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    let mut records = 0usize;
    within(Duration::from_secs(120), "every trigger in Kafka", async {
        while events.len() < sent.len() {
            let received = consumer.next().await.unwrap();
            if let EventPayload::MistTriggerReceived(trigger) = received.event.payload {
                records += 1;
                events
                    .entry(trigger.trigger_id)
                    .or_default()
                    .insert(received.event.id);
            }
        }
    })
    .await;
    assert_eq!(
        events.keys().cloned().collect::<BTreeSet<_>>(),
        sent,
        "every trigger Mist fired, and no other"
    );
    let split: Vec<_> = events.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(split.is_empty(), "a trigger became two events: {split:?}");
    println!(
        "{} accounting triggers through {KILLS} SIGKILLs: {} records in Kafka ({} resent), \
         {retries} retries by Mist, each trigger one event",
        sent.len(),
        records,
        records - sent.len()
    );

    drop((edge, balancer));
    drop_topics(&kafka).await;
    frameworks_test_harness::drop_redis_prefix(&redis_url(), &prefix).await;
    db.drop_now().await;
}

/// The edge's forwarder runs supervised: made to die four times on start
/// (a failpoint; the test build compiles them in), it is down on `/health`
/// through the backoff, counted, started again, and then forwards what Mist
/// fired, journaled meanwhile, to Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_forwarder_is_restarted_and_health_reports_it_meanwhile() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let Stage {
        db,
        kafka,
        prefix,
        roles,
        edge_address,
        _state,
        _mist,
    } = stage(
        "edge-supervision",
        &[
            ("FRAMEWORKS_EDGE_METRICS_LISTEN", metrics.clone()),
            ("FAILPOINTS", "edge-forwarder=4*panic".into()),
        ],
    )
    .await;
    let _balancer = roles.balancer();
    let _edge = roles.edge();

    let firings = accounting_firings(ACCOUNTING.len());
    let sent: BTreeSet<String> = firings
        .iter()
        .map(|f| f.uuid().unwrap().to_owned())
        .collect();
    // Mist's triggers are journaled (answered 200) while the forwarder is down.
    within(Duration::from_secs(30), "the edge answering Mist", async {
        for firing in &firings {
            while !matches!(firing.send(edge_address, Duration::from_secs(2)).await, Ok(r) if r.status == 200) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    let down =
        support::down_then_healthy(&metrics, "edge-forwarder", 4.0, Duration::from_secs(30)).await;
    let restarts =
        support::metric(&metrics, "frameworks_task_restarts_total", "edge-forwarder").await;
    assert_eq!(restarts, 4.0, "four deaths, four restarts");

    let consumer = EventConsumer::subscribe(
        &kafka,
        &format!("{prefix}-supervision"),
        &[Topic::NodeTelemetry],
    )
    .unwrap();
    let mut forwarded = BTreeSet::new();
    within(
        Duration::from_secs(60),
        "the journaled triggers in Kafka",
        async {
            while forwarded.len() < sent.len() {
                if let EventPayload::MistTriggerReceived(trigger) =
                    consumer.next().await.unwrap().event.payload
                {
                    forwarded.insert(trigger.trigger_id);
                }
            }
        },
    )
    .await;
    assert_eq!(forwarded, sent);
    println!(
        "the forwarder died 4 times; /health said so for at least {down:?}; {} triggers forwarded after its restart",
        sent.len()
    );

    drop((_edge, _balancer));
    drop_topics(&kafka).await;
    frameworks_test_harness::drop_redis_prefix(&redis_url(), &prefix).await;
    db.drop_now().await;
}
