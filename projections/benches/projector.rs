//! Load driver for the control-plane projector against the real Kafka and
//! PostgreSQL that `compose/infra up` runs: publishes stream histories to
//! Kafka, then measures how fast one projector applies them (events/s).
//!
//! `cargo bench --bench projector` runs the full load; under `cargo test`
//! (no `--bench` argument) a small smoke load exercises the driver.

use std::time::Instant;

use clap::Parser;
use frameworks_events::kafka::EventPublisher;
use frameworks_events::proto::v1::stream::{StreamCreated, StreamKeyCreated, StreamUpdated};
use frameworks_events::{Event, EventPayload};
use frameworks_projections::postgres::{PostgresProjector, ProjectorSettings};
use frameworks_test_harness::figures::{Goal, figure};
use frameworks_test_harness::{ScratchDatabase, drop_topics, kafka_with_topics};
use uuid::Uuid;

/// The projector role's settings, as its flags and environment give them.
#[derive(Parser)]
struct Role {
    #[command(flatten)]
    settings: ProjectorSettings,
}

/// Each stream's history: created, its key, then renames.
const EVENTS_PER_STREAM: u64 = 10;

fn main() {
    // (streams, batch size): the full load runs the role's default batch
    // size; the smoke load still spans several batches.
    let (streams, batch_size) = if std::env::args().any(|a| a == "--bench") {
        (10_000, None)
    } else {
        (20, Some(40))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(streams, batch_size));
}

fn history(stream: &str, tenant: Uuid) -> Vec<Event> {
    (1..=EVENTS_PER_STREAM)
        .map(|sequence| {
            let payload: EventPayload = match sequence {
                1 => StreamCreated {
                    name: "bench".into(),
                    playback_id: format!("pb-{stream}"),
                    ..Default::default()
                }
                .into(),
                2 => StreamKeyCreated {
                    key_id: format!("k-{stream}"),
                    primary: true,
                    lookup_hash: vec![7; 32],
                    ..Default::default()
                }
                .into(),
                n => StreamUpdated {
                    name: Some(format!("bench v{n}")),
                    ..Default::default()
                }
                .into(),
            };
            Event::new(stream, payload)
                .with_tenant(tenant)
                .with_sequence(sequence)
        })
        .collect()
}

async fn run(streams: usize, batch_size: Option<u32>) {
    let db = ScratchDatabase::create("bench").await;
    let kafka = kafka_with_topics("bench").await;

    let publisher = EventPublisher::new(&kafka, "bench-publisher").expect("producer");
    let tenant = Uuid::now_v7();
    let events: Vec<Event> = (0..streams)
        .flat_map(|_| history(&Uuid::now_v7().to_string(), tenant))
        .collect();
    for chunk in events.chunks(1_000) {
        for result in futures::future::join_all(chunk.iter().map(|e| publisher.publish(e))).await {
            result.expect("published");
        }
    }

    let mut settings = Role::parse_from(["projector"]).settings;
    settings.group_id = format!("{}-projector", kafka.catalogue.prefix);
    settings.batch_size = batch_size.unwrap_or(settings.batch_size);
    let batch_size = settings.batch_size;
    let projector = PostgresProjector::new(db.store.pool().clone(), &kafka, settings)
        .await
        .expect("projector");
    // The first batch includes joining the consumer group: time the rest.
    let mut applied = projector.step().await.expect("first batch applied");
    let first = applied;
    let started = Instant::now();
    while applied < events.len() {
        applied += projector.step().await.expect("batch applied");
    }
    let elapsed = started.elapsed();
    let rate = (applied - first) as f64 / elapsed.as_secs_f64().max(1e-6);
    println!(
        "projector/control-plane: {} events ({streams} streams, batches of {}) into PostgreSQL after the first batch: {rate:.0} events/s",
        applied - first,
        batch_size,
    );
    figure(
        "projector.control-plane",
        rate,
        "events/s",
        Goal::AtLeast(50_000.0),
    );

    drop_topics(&kafka).await;
    db.drop_now().await;
}
