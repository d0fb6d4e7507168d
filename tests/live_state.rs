//! The live-state projector against real Kafka and Redis: what is live, who
//! watches, node load, TTLs, and exactly-once effect under SIGKILL.

// The helpers below fail the test by panicking, as test code should.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
use frameworks_events::EventPayload;
use frameworks_events::kafka::{EventPublisher, KafkaSettings};
use frameworks_events::proto::v1::telemetry::{
    BufferState, IngestEnded, IngestStarted, NodeHeartbeat, NodeMetrics, StreamBufferChanged,
    StreamHealthReported, StreamSampled, ViewerSessionEnded, ViewerSessionStarted,
};
use frameworks_projections::live::{LiveState, LiveStateProjector, LiveStateSettings, TOPICS};
use frameworks_test_harness::drop_redis_prefix;
use rdkafka::consumer::{BaseConsumer, Consumer};
use redis::AsyncCommands;
use support::{
    RoleProcess, drop_topics, kafka_with_topics, random_below, redis_url, spawn_role, within,
};
use uuid::Uuid;

fn settings(prefix: &str, group: &str) -> LiveStateSettings {
    LiveStateSettings {
        redis_url: redis_url(),
        key_prefix: prefix.into(),
        ttl_seconds: 90,
        group_id: group.into(),
        instance_id: None,
        // Small batches: the exactly-once checks cross many batch boundaries.
        batch_size: 50,
        batch_wait_ms: 5,
    }
}

fn fact(subject: &str, payload: impl Into<EventPayload>) -> TelemetryCommand {
    TelemetryCommand {
        subject_id: subject.into(),
        tenant_id: None,
        occurred_at: Utc::now(),
        payload: payload.into(),
        event_id: None,
        correlation_id: Uuid::now_v7(),
    }
}

fn started(node: &str, session: &str) -> ViewerSessionStarted {
    ViewerSessionStarted {
        session_id: session.into(),
        node_id: node.into(),
        connector: "HLS".into(),
        ..Default::default()
    }
}

fn ended(node: &str, session: &str) -> ViewerSessionEnded {
    ViewerSessionEnded {
        session_id: session.into(),
        node_id: node.into(),
        connector: "HLS".into(),
        trigger_id: Uuid::now_v7().to_string(),
        ..Default::default()
    }
}

fn ingest(node: &str) -> IngestStarted {
    IngestStarted {
        node_id: node.into(),
        internal_name: "live+x".into(),
        protocol: "RTMP".into(),
        source_ip: "198.51.100.4".into(),
    }
}

async fn publish(kafka: &KafkaSettings, facts: &[TelemetryCommand]) {
    let publisher = TelemetryPublisher::new(EventPublisher::new(kafka, "test-edge").unwrap());
    for verdict in publisher.publish_batch(facts).await {
        verdict.unwrap();
    }
}

/// Last offsets per partition of the telemetry topics (`end - 1`), for partitions with records.
fn last_offsets(kafka: &KafkaSettings) -> Vec<(String, i32, i64)> {
    let consumer: BaseConsumer = kafka.client_config("test-watermarks").create().unwrap();
    let catalogue = kafka.catalogue();
    let mut last = Vec::new();
    for topic in TOPICS.map(|t| catalogue.name(t).to_owned()) {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer
                .fetch_watermarks(&topic, partition.id(), Duration::from_secs(10))
                .unwrap();
            if high > 0 {
                last.push((topic.clone(), partition.id(), high - 1));
            }
        }
    }
    last
}

async fn caught_up(state: &LiveState, last: &[(String, i32, i64)]) -> bool {
    for (topic, partition, offset) in last {
        if state.applied(topic, *partition).await.unwrap() != Some(*offset) {
            return false;
        }
    }
    true
}

async fn applied_sum(state: &LiveState, last: &[(String, i32, i64)]) -> i64 {
    let mut sum = 0;
    for (topic, partition, _) in last {
        sum += state
            .applied(topic, *partition)
            .await
            .unwrap()
            .unwrap_or(-1)
            + 1;
    }
    sum
}

/// Every key under `prefix` (guards excluded), with its content, prefix stripped.
async fn snapshot(prefix: &str) -> BTreeMap<String, String> {
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis.keys(format!("{prefix}:*")).await.unwrap();
    let mut all = BTreeMap::new();
    for key in keys.into_iter().filter(|k| !k.contains(":guard:")) {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        let content = match kind.as_str() {
            "hash" => format!(
                "{:?}",
                redis
                    .hgetall::<_, BTreeMap<String, String>>(&key)
                    .await
                    .unwrap()
            ),
            "set" => {
                let mut members: Vec<String> = redis.smembers(&key).await.unwrap();
                members.sort();
                format!("{members:?}")
            }
            "zset" => format!(
                "{:?}",
                redis
                    .zrange_withscores::<_, Vec<(String, i64)>>(&key, 0, -1)
                    .await
                    .unwrap()
            ),
            other => panic!("unexpected {other} at {key}"),
        };
        all.insert(key[prefix.len()..].to_owned(), content);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_viewers_and_node_load_follow_the_telemetry() {
    let kafka = kafka_with_topics().await;
    let prefix = format!("test-{}", Uuid::now_v7().simple());
    let (s1, s2, s3) = (
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    );
    let mut stale = fact(&s3, ingest("n3"));
    stale.occurred_at = Utc::now() - chrono::Duration::seconds(200);
    publish(
        &kafka,
        &[
            fact(&s1, ingest("n1")),
            fact(
                &s1,
                StreamBufferChanged {
                    node_id: "n1".into(),
                    state: BufferState::Full as i32,
                    buffer_ms: 5000,
                },
            ),
            fact(
                &s1,
                StreamHealthReported {
                    node_id: "n1".into(),
                    bitrate_bps: 4_500_000,
                    frames_per_second: 30.0,
                    ..Default::default()
                },
            ),
            fact(
                &s1,
                StreamSampled {
                    node_id: "n1".into(),
                    internal_name: format!("live+{s1}"),
                    status: "Online".into(),
                    viewers: 2,
                    up_bps: 6_000_000,
                    ..Default::default()
                },
            ),
            fact(&s1, started("n1", "v1")),
            fact(&s1, started("n1", "v2")),
            fact(&s1, started("n2", "v3")),
            fact(&s1, ended("n1", "v1")),
            // An edge retrying the same session end must not count twice.
            fact(&s1, ended("n1", "v1")),
            fact(&s2, ingest("n2")),
            fact(
                &s2,
                IngestEnded {
                    node_id: "n2".into(),
                    trigger_id: Uuid::now_v7().to_string(),
                    ..Default::default()
                },
            ),
            // Last heard of 200 s ago: past its 90 s TTL, so not live.
            stale,
            fact(
                "n1",
                NodeMetrics {
                    cpu_percent: 42.5,
                    memory_used_bytes: 1 << 30,
                    memory_total_bytes: 1 << 33,
                    ..Default::default()
                },
            ),
            fact(
                "n2",
                NodeHeartbeat {
                    edge_version: "1.2.0".into(),
                    mist_version: "3.6".into(),
                    uptime_seconds: 60,
                    mist_healthy: true,
                },
            ),
        ],
    )
    .await;

    let group = format!("{prefix}-live");
    let projector = LiveStateProjector::new(&kafka, settings(&prefix, &group))
        .await
        .unwrap();
    let last = last_offsets(&kafka);
    within(
        Duration::from_secs(60),
        "the live state to catch up",
        async {
            while !caught_up(projector.state(), &last).await {
                projector.step().await.unwrap();
            }
        },
    )
    .await;

    let state = projector.state();
    let live = state.live_streams(Utc::now().timestamp()).await.unwrap();
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        [&s1],
        "only s1 is live: s2 ended, s3 went silent"
    );
    assert_eq!(live[&s1]["node"], "n1");
    assert_eq!(live[&s1]["buffer"], "BUFFER_STATE_FULL");
    assert_eq!(live[&s1]["bitrate_bps"], "4500000");
    assert_eq!(
        (live[&s1]["status"].as_str(), live[&s1]["up_bps"].as_str()),
        ("Online", "6000000"),
        "the edge's poll is kept beside the triggers' facts"
    );
    assert_eq!(state.viewers(&s1).await.unwrap(), 2);
    assert_eq!(state.node_viewers("n1").await.unwrap(), 1);
    assert_eq!(state.node_viewers("n2").await.unwrap(), 1);
    assert_eq!(state.node("n1").await.unwrap()["cpu_percent"], "42.5");
    assert_eq!(state.node("n2").await.unwrap()["mist_healthy"], "true");

    // Every key expires a TTL after its last event.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = state.keys().await.unwrap();
    let ttl: i64 = redis.ttl(keys.stream(&s1)).await.unwrap();
    assert!((1..=90).contains(&ttl), "ttl {ttl}");
    let stale_key: bool = redis.exists(keys.stream(&s3)).await.unwrap();
    assert!(
        !stale_key,
        "a stream silent for longer than the TTL has no key"
    );

    // Every record delivered again (a second group over the same keys, as after
    // a lost Kafka offset): the guard turns each into a no-op.
    let before = snapshot(&prefix).await;
    let again = LiveStateProjector::new(&kafka, settings(&prefix, &format!("{group}-again")))
        .await
        .unwrap();
    let records: i64 = last.iter().map(|(_, _, offset)| offset + 1).sum();
    within(Duration::from_secs(60), "re-reading every record", async {
        let mut read = 0;
        while read < records {
            let batch = again.step().await.unwrap();
            assert_eq!(
                batch.applied, 0,
                "a re-delivered record changed the live state"
            );
            read += i64::try_from(batch.records).unwrap();
        }
    })
    .await;
    assert_eq!(snapshot(&prefix).await, before);
    drop_redis_prefix(&redis_url(), &prefix).await;
    drop_topics(&kafka).await;
}

fn spawn_live_state(kafka: &KafkaSettings, prefix: &str, group: &str) -> RoleProcess {
    spawn_role(
        "live-state",
        kafka,
        &[
            // Small batches, so that a kill lands mid-way with work left.
            ("FRAMEWORKS_LIVE_BATCH_SIZE", "8".into()),
            ("FRAMEWORKS_REDIS_URL", redis_url()),
            ("FRAMEWORKS_LIVE_KEY_PREFIX", prefix.to_owned()),
            ("FRAMEWORKS_LIVE_GROUP", group.to_owned()),
            ("FRAMEWORKS_LIVE_INSTANCE_ID", format!("{group}-1")),
            ("FRAMEWORKS_LIVE_METRICS_LISTEN", "127.0.0.1:0".into()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_state_projector_killed_while_busy_ends_equal_to_a_clean_rebuild() {
    let kafka = kafka_with_topics().await;
    let mut facts = Vec::new();
    // Enough work (about 6,500 records, in batches of 8) that each of the
    // eight kills lands with records left, however fast the projector is.
    for s in 0..400 {
        let stream = Uuid::now_v7().to_string();
        let node = format!("n{}", s % 5);
        facts.push(fact(&stream, ingest(&node)));
        facts.push(fact(
            &stream,
            StreamBufferChanged {
                node_id: node.clone(),
                state: BufferState::Full as i32,
                buffer_ms: 3000,
            },
        ));
        for v in 0..8 {
            facts.push(fact(&stream, started(&node, &format!("v{s}-{v}"))));
        }
        for v in 0..5 {
            facts.push(fact(&stream, ended(&node, &format!("v{s}-{v}"))));
        }
        facts.push(fact(
            &stream,
            StreamHealthReported {
                node_id: node.clone(),
                bitrate_bps: 3_000_000 + s,
                ..Default::default()
            },
        ));
        if s % 4 == 0 {
            facts.push(fact(
                &stream,
                IngestEnded {
                    node_id: node,
                    trigger_id: Uuid::now_v7().to_string(),
                    ..Default::default()
                },
            ));
        }
    }
    for round in 0..10u32 {
        for n in 0..5 {
            facts.push(fact(
                &format!("n{n}"),
                NodeMetrics {
                    cpu_percent: f64::from(round * 5 + n),
                    ..Default::default()
                },
            ));
        }
    }
    publish(&kafka, &facts).await;
    let last = last_offsets(&kafka);
    let prefix = format!("test-{}", Uuid::now_v7().simple());
    let group = format!("{prefix}-live");
    let state = LiveState::connect(&redis_url(), &prefix).await.unwrap();

    // Killed eight times, each once it has applied records since its start and has more to do.
    let mut projector = spawn_live_state(&kafka, &prefix, &group);
    for kill in 0..8 {
        let start = applied_sum(&state, &last).await;
        within(
            Duration::from_secs(30),
            "the restarted projector to apply records",
            async {
                while applied_sum(&state, &last).await == start {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(random_below(10))).await;
        assert!(
            !caught_up(&state, &last).await,
            "the workload ran out before kill {}",
            kill + 1
        );
        projector.kill();
        projector = spawn_live_state(&kafka, &prefix, &group);
    }
    within(
        Duration::from_secs(90),
        "the killed projector to catch up",
        async {
            while !caught_up(&state, &last).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    projector.kill();

    // A clean rebuild of the same log under another prefix, never interrupted.
    let clean_prefix = format!("{prefix}-clean");
    let rebuild =
        LiveStateProjector::new(&kafka, settings(&clean_prefix, &format!("{group}-clean")))
            .await
            .unwrap();
    within(Duration::from_secs(90), "the clean rebuild", async {
        while !caught_up(rebuild.state(), &last).await {
            rebuild.step().await.unwrap();
        }
    })
    .await;
    let killed = snapshot(&prefix).await;
    let rebuilt = snapshot(&clean_prefix).await;
    assert!(
        killed.len() > 100,
        "the workload should fill the live state ({} keys)",
        killed.len()
    );
    assert_eq!(
        killed, rebuilt,
        "the killed projector's state differs from a clean rebuild"
    );
    drop_redis_prefix(&redis_url(), &prefix).await;
    drop_redis_prefix(&redis_url(), &clean_prefix).await;
    drop_topics(&kafka).await;
}

/// A wiped Redis loses the register of generations too: the projecting
/// role's watch for a switch gives its own generation back (readers found
/// none live, and saw nothing), and never takes over from another live one.
#[tokio::test]
async fn a_lost_register_gets_the_projected_generation_back() {
    use frameworks_projections::generations::redis::RedisGenerations;
    use frameworks_projections::generations::{Generations, switched_from};

    let base = format!("test-reclaim-{}", Uuid::now_v7().simple());
    let redis = frameworks_projections::live::connect_redis(&redis_url())
        .await
        .unwrap();
    let generations = RedisGenerations::new(redis.clone(), &base);
    assert_eq!(generations.ensure_live().await.unwrap(), 1);
    let second = generations.begin().await.unwrap();
    generations.switch(second).await.unwrap();

    redis::cmd("DEL")
        .arg(format!("{base}:generations"))
        .query_async::<i64>(&mut redis.clone())
        .await
        .unwrap();
    assert_eq!(generations.live().await.unwrap(), None);
    // The role projecting into generation 2 is watching for a switch.
    let watching = switched_from(&generations, second, Duration::from_millis(50));
    let _ = tokio::time::timeout(Duration::from_millis(300), watching).await;
    assert_eq!(generations.live().await.unwrap(), Some(second));
    assert!(
        !generations.reclaim(7).await.unwrap(),
        "a live generation is never displaced"
    );
    assert_eq!(generations.live().await.unwrap(), Some(second));
    drop_redis_prefix(&redis_url(), &base).await;
}
