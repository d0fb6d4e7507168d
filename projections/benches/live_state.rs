//! Load driver for the live-state projector against the real Kafka and Redis
//! that `compose/infra up` runs. Prints:
//!
//! - drain rate: events/s applied from a backlog of viewer-session telemetry;
//! - lag under load: while a producer sends viewer sessions at a steady rate,
//!   the records published but not yet applied, sampled every 100 ms
//!   (p50, p99, max), and the time to catch up once the producer stops.
//!
//! `cargo bench --bench live_state` runs the full load; under `cargo test`
//! (no `--bench` argument) a small smoke load exercises the driver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
use frameworks_events::kafka::{EventPublisher, KafkaSettings};
use frameworks_events::proto::v1::telemetry::{ViewerSessionEnded, ViewerSessionStarted};
use frameworks_events::{EventPayload, Topic};
use frameworks_projections::live::{LiveState, LiveStateProjector, LiveStateSettings};
use frameworks_test_harness::figures::{Goal, figure};
use frameworks_test_harness::{drop_topics, kafka_with_topics};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use uuid::Uuid;

/// The live-state role's settings, as its flags and environment give them.
#[derive(Parser)]
struct Role {
    #[command(flatten)]
    settings: LiveStateSettings,
}

struct Load {
    backlog: usize,
    rate_per_second: u64,
    seconds: u64,
}

const FULL: Load = Load {
    backlog: 200_000,
    rate_per_second: 2_000,
    seconds: 20,
};
const SMOKE: Load = Load {
    backlog: 500,
    rate_per_second: 200,
    seconds: 2,
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

/// A viewer session fact for one of 500 streams: starts, then ends.
fn session(i: usize) -> TelemetryCommand {
    let stream = format!("stream-{}", i % 500);
    let session_id = format!("s{}", i / 2);
    let payload: EventPayload = if i.is_multiple_of(2) {
        ViewerSessionStarted {
            session_id,
            node_id: format!("edge-{}", i % 7),
            connector: "HLS".into(),
            ..Default::default()
        }
        .into()
    } else {
        ViewerSessionEnded {
            session_id,
            node_id: format!("edge-{}", i % 7),
            connector: "HLS".into(),
            bytes_down: 40_000_000,
            duration_seconds: 300,
            trigger_id: Uuid::now_v7().to_string(),
            ..Default::default()
        }
        .into()
    };
    TelemetryCommand {
        subject_id: stream,
        tenant_id: None,
        occurred_at: Utc::now(),
        payload,
        event_id: None,
        correlation_id: Uuid::now_v7(),
    }
}

/// Records published to the stream telemetry topic so far.
fn published(kafka: &KafkaSettings, consumer: &BaseConsumer) -> i64 {
    let catalogue = kafka.catalogue();
    let topic = catalogue.name(Topic::StreamTelemetry);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .sum()
}

async fn applied(state: &LiveState, kafka: &KafkaSettings) -> i64 {
    let catalogue = kafka.catalogue();
    let topic = catalogue.name(Topic::StreamTelemetry);
    let mut total = 0;
    for partition in
        0..frameworks_events::catalogue::TOPICS[Topic::StreamTelemetry as usize].partitions
    {
        total += state
            .applied(topic, partition)
            .await
            .expect("guard")
            .map_or(0, |last| last + 1);
    }
    total
}

async fn run(load: Load) {
    let kafka = kafka_with_topics("bench").await;
    let publisher = Arc::new(TelemetryPublisher::new(
        EventPublisher::new(&kafka, "bench-edge").expect("producer"),
    ));
    let prefix = format!("bench-{}", Uuid::now_v7().simple());
    let redis_url =
        std::env::var("FRAMEWORKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // The role's settings as its flags and environment give them, on a
    // prefix and group of this run's own.
    let mut settings = Role::parse_from(["live-state"]).settings;
    settings.redis_url.clone_from(&redis_url);
    settings.key_prefix.clone_from(&prefix);
    settings.ttl_seconds = 600;
    settings.group_id = format!("{prefix}-live");
    let watermarks: BaseConsumer = kafka
        .client_config("bench-watermarks")
        .create()
        .expect("consumer");

    // Drain rate: a backlog applied as fast as the projector goes.
    let backlog: Vec<TelemetryCommand> = (0..load.backlog).map(session).collect();
    for chunk in backlog.chunks(1_000) {
        for verdict in publisher.publish_batch(chunk).await {
            verdict.expect("published");
        }
    }
    let projector = Arc::new(
        LiveStateProjector::new(&kafka, settings)
            .await
            .expect("projector"),
    );
    // The first batch includes joining the group: time the rest.
    let first = projector.step().await.expect("first batch").applied;
    let mut drained = first;
    let started = Instant::now();
    while drained < load.backlog {
        drained += projector.step().await.expect("batch applied").applied;
    }
    let rate = (drained - first) as f64 / started.elapsed().as_secs_f64().max(1e-6);
    println!(
        "live_state/drain: {} viewer-session events into Redis after the first batch: {rate:.0} events/s",
        drained - first,
    );
    figure(
        "projector.live-state",
        rate,
        "events/s",
        Goal::AtLeast(100_000.0),
    );

    // Lag under a steady load.
    let running = {
        let projector = Arc::clone(&projector);
        tokio::spawn(async move { projector.run(std::future::pending()).await })
    };
    let producer = {
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let per_tick = (load.rate_per_second / 10) as usize;
            for t in 0..(load.seconds * 10) as usize {
                tick.tick().await;
                let batch: Vec<TelemetryCommand> = (0..per_tick)
                    .map(|i| session(load.backlog + t * per_tick + i))
                    .collect();
                for verdict in publisher.publish_batch(&batch).await {
                    verdict.expect("published");
                }
            }
        })
    };
    let mut lag = Histogram::<u64>::new(3).expect("histogram");
    while !producer.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let behind = published(&kafka, &watermarks) - applied(projector.state(), &kafka).await;
        lag.record(behind.max(0) as u64).expect("record");
    }
    let stopped = Instant::now();
    while published(&kafka, &watermarks) > applied(projector.state(), &kafka).await {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "live_state/lag: {} events/s for {} s: lag p50 {} p99 {} max {} records; caught up {:.0} ms after the producer stopped",
        load.rate_per_second,
        load.seconds,
        lag.value_at_quantile(0.5),
        lag.value_at_quantile(0.99),
        lag.max(),
        stopped.elapsed().as_secs_f64() * 1000.0
    );
    running.abort();
    frameworks_test_harness::drop_redis_prefix(&redis_url, &prefix).await;
    drop_topics(&kafka).await;
}
