//! Load driver for the balancer's ingress: one enrolled edge submits
//! batches of accounting triggers (USER_END, as captured from MistServer,
//! each with its own trigger id) with several batches in flight, against
//! the real Kafka (acks=all) and event store. Prints triggers/s acknowledged
//! and the p50/p99 time from submission to acknowledgement of a batch.
//!
//! `cargo bench --bench balancer_ingress` runs the full load (release
//! build); under `cargo test` a small smoke load exercises the driver.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use frameworks_balancer::control::{ControlSettings, EdgeControlService};
use frameworks_commands::telemetry::TelemetryPublisher;
use frameworks_commands::{CommandBus, SecretBox};
use frameworks_edge_protocol::proto::TriggerBatch;
use frameworks_edge_protocol::proto::edge_control_server::EdgeControlServer;
use frameworks_edge_protocol::proto::ingress_client::IngressClient;
use frameworks_edge_protocol::proto::ingress_server::IngressServer;
use frameworks_events::kafka::EventPublisher;
use frameworks_events::proto::v1::telemetry::MistTriggerReceived;
use frameworks_mist_simulator::captures;
use frameworks_test_harness::{ScratchDatabase, drop_topics, kafka_with_topics};
use hdrhistogram::Histogram;
use tokio_stream::wrappers::TcpListenerStream;
use uuid::Uuid;

struct Load {
    batches: usize,
    batch: usize,
    in_flight: usize,
}

const FULL: Load = Load {
    batches: 400,
    batch: 500,
    in_flight: 4,
};
const SMOKE: Load = Load {
    batches: 4,
    batch: 50,
    in_flight: 2,
};

fn main() {
    let load = if std::env::args().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(load));
}

async fn run(load: Load) {
    let kafka = kafka_with_topics("bench-ingress").await;
    let db = ScratchDatabase::create("bench_ingress").await;
    let prefix = kafka.catalogue.prefix.clone();
    let (secrets, _) = SecretBox::generate("bench");
    let bus = CommandBus::new(db.store.clone(), secrets);
    let (_, token) = support::enrolment_token(&bus, Uuid::now_v7()).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (directory, shared, _) =
        support::balancer_state(pool, &prefix, Duration::from_secs(10)).await;
    let service = EdgeControlService::new(
        bus,
        TelemetryPublisher::new(EventPublisher::new(&kafka, "bench-ingress").unwrap()),
        directory,
        shared,
        ControlSettings {
            heartbeat_seconds: 10,
            command_timeout: Duration::from_secs(5),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EdgeControlServer::new(service.clone()))
            .add_service(IngressServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    // One edge, registered; its stream stays open for the session token.
    let edge = support::enrol(address, &token).await;

    let template = captures::of("USER_END").next().unwrap();
    let fields: Vec<String> = template.body_lines.clone();
    let batch = |size: usize| TriggerBatch {
        node_id: edge.node_id.clone(),
        session_token: edge.session_token.clone(),
        triggers: (0..size)
            .map(|_| MistTriggerReceived {
                trigger: "USER_END".into(),
                trigger_id: Uuid::now_v7().to_string(),
                fired_at_unix_ms: chrono::Utc::now().timestamp_millis(),
                fields: fields.clone(),
                blocking: false,
                answer: String::new(),
            })
            .collect(),
    };
    let client = IngressClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    // Warm the producer and the connection.
    client.clone().submit(batch(10)).await.unwrap();

    let started = Instant::now();
    let mut latencies = Histogram::<u64>::new(3).unwrap();
    let mut accepted = 0usize;
    let mut pending = tokio::task::JoinSet::new();
    let mut queued = 0;
    while queued < load.batches || !pending.is_empty() {
        while queued < load.batches && pending.len() < load.in_flight {
            let (mut client, request) = (client.clone(), batch(load.batch));
            pending.spawn(async move {
                let sent = Instant::now();
                let ack = client.submit(request).await.unwrap().into_inner();
                (sent.elapsed(), ack.accepted.len())
            });
            queued += 1;
        }
        let (took, acked) = pending.join_next().await.unwrap().unwrap();
        latencies
            .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX))
            .unwrap();
        accepted += acked;
    }
    let elapsed = started.elapsed();
    assert_eq!(
        accepted,
        load.batches * load.batch,
        "every trigger acknowledged"
    );
    println!(
        "balancer ingress: {} batches of {} triggers, {} in flight, into Kafka with acks=all",
        load.batches, load.batch, load.in_flight
    );
    println!(
        "  {:>9.0} triggers/s acknowledged   batch p50 {:>7.1} ms   p99 {:>7.1} ms",
        accepted as f64 / elapsed.as_secs_f64(),
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
    );
    drop(edge);
    drop_topics(&kafka).await;
    frameworks_test_harness::drop_redis_prefix(&support::redis_url(), &prefix).await;
    db.drop_now().await;
}
