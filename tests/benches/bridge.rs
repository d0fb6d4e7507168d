//! Load driver for the GraphQL bridge, against the real PostgreSQL and Kafka
//! that `compose/infra up` runs, with the relay and projector as processes
//! and the bridge (the release binary) pinned to one core. Prints:
//!
//! - queries/s and p50/p99 latency of `ListStreams` (50 streams a page, the
//!   client's own document) and `GetStream(id)`, from 8 connections;
//! - the latency of `createStream` up to its answer from the read model
//!   (command, outbox, relay, Kafka, projector, read-your-writes), p50/p99;
//! - subscription delivery: with 1,000 `liveTrackListUpdates` subscribers
//!   over graphql-transport-ws, the time from publishing a track list to
//!   Kafka to each subscriber receiving it, p50/p99.
//!
//! `cargo bench --bench bridge` runs the full load; under `cargo test` (no
//! `--bench` argument) a small smoke load exercises the driver.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frameworks_commands::SecretBox;
use frameworks_test_harness::figures::{Goal, figure};
use frameworks_test_harness::{ScratchDatabase, drop_topics, kafka_with_topics};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use uuid::Uuid;

struct Load {
    streams: usize,
    seconds: u64,
    connections: usize,
    mutations: usize,
    subscribers: usize,
    deliveries: u64,
}

const FULL: Load = Load {
    streams: 200,
    seconds: 10,
    connections: 8,
    mutations: 200,
    subscribers: 1_000,
    deliveries: 50,
};
const SMOKE: Load = Load {
    streams: 5,
    seconds: 1,
    connections: 2,
    mutations: 5,
    subscribers: 5,
    deliveries: 3,
};

const STREAM_FIELDS: &str = "fragment PlaybackPolicyFields on PlaybackPolicy { type jwt { allowedKids requiredAudience requiredClaimsJson { name jsonValue } } webhook { url timeoutMs secretMasked context } allowedOrigins }
fragment StreamFields on Stream { __typename id streamId name description playbackId record ingestMode pullSource { sourceUriRedacted enabled class } createdAt updatedAt dvrChapterMode dvrChapterIntervalSeconds monitoring playbackPolicy { ...PlaybackPolicyFields } }";

/// Kills a spawned process when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(role: &str, pin: Option<&str>, env: &[(&str, String)]) -> Process {
    let binary = env!("CARGO_BIN_EXE_frameworks");
    let mut command = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, binary]);
            c
        }
        None => Command::new(binary),
    };
    command
        .arg(role)
        .env("FRAMEWORKS_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Process(command.spawn().expect("the frameworks binary starts"))
}

async fn connect(address: SocketAddr) -> SendRequest<Full<Bytes>> {
    for _ in 0..300 {
        if let Ok(stream) = tokio::net::TcpStream::connect(address).await {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("HTTP handshake");
            tokio::spawn(connection);
            return sender;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the bridge did not listen on {address}");
}

async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    sender.ready().await.expect("connection ready");
    let mut request = hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

fn rate(histogram: &Histogram<u64>, elapsed: Duration) -> f64 {
    histogram.len() as f64 / elapsed.as_secs_f64().max(1e-6)
}

fn report(name: &str, histogram: &Histogram<u64>, elapsed: Duration) {
    println!(
        "  {name:<34} {:>8.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests)",
        histogram.len() as f64 / elapsed.as_secs_f64(),
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.len()
    );
}

/// `connections` loops sending `body` for `seconds`; latency in microseconds.
async fn hammer(
    address: SocketAddr,
    token: &str,
    body: Value,
    load: &Load,
) -> (Histogram<u64>, Duration) {
    let body = Arc::new(body);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(load.seconds);
    let mut workers = Vec::new();
    for _ in 0..load.connections {
        let (body, token) = (body.clone(), token.to_owned());
        workers.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            while Instant::now() < deadline {
                let sent = Instant::now();
                let (status, answer) = post(&mut sender, "/graphql", Some(&token), &body).await;
                assert!(
                    status == 200 && answer.get("errors").is_none(),
                    "{status} {answer}"
                );
                histogram
                    .record(sent.elapsed().as_micros() as u64)
                    .expect("record");
            }
            histogram
        }));
    }
    let mut total = Histogram::<u64>::new(3).expect("histogram");
    for worker in workers {
        total.add(worker.await.expect("worker")).expect("merge");
    }
    (total, started.elapsed())
}

/// The raw stream id inside a global `Stream:<uuid>` id.
fn last_id_raw(global: &str) -> String {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(global)
        .expect("a global id");
    String::from_utf8(decoded)
        .expect("text")
        .trim_start_matches("Stream:")
        .to_owned()
}

/// Opens `subscribers` subscriptions to one stream's track lists, publishes
/// `deliveries` track lists to Kafka (the sequence number in the video
/// bitrate) and times each arrival at each subscriber.
async fn deliveries(
    address: SocketAddr,
    kafka: &frameworks_events::kafka::KafkaSettings,
    token: &str,
    tenant: &Uuid,
    stream: &str,
    load: &Load,
) -> (Histogram<u64>, Duration) {
    use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
    use frameworks_events::kafka::EventPublisher;
    use frameworks_events::proto::v1::telemetry::{Track, TrackListUpdated};
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let sent: Arc<std::sync::Mutex<Vec<Option<Instant>>>> = Arc::new(std::sync::Mutex::new(vec![
            None;
            load.deliveries as usize + 1
        ]));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(load.subscribers);
    let mut subscribers = Vec::new();
    for _ in 0..load.subscribers {
        let (sent, ready, token, stream) = (
            sent.clone(),
            ready_tx.clone(),
            token.to_owned(),
            stream.to_owned(),
        );
        // Every delivery, and the warm-up (sequence 0, not timed).
        let expected = load.deliveries + 1;
        subscribers.push(tokio::spawn(async move {
            let mut request = format!("ws://{address}/graphql/ws")
                .into_client_request()
                .expect("a request");
            request.headers_mut().insert(
                "sec-websocket-protocol",
                "graphql-transport-ws".parse().expect("a header"),
            );
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket");
            let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
            socket.send(Message::text(init.to_string())).await.expect("init");
            let ack = socket.next().await.expect("ack").expect("ack");
            assert!(ack.to_text().unwrap_or_default().contains("connection_ack"), "{ack:?}");
            let subscribe = json!({
                "id": "1",
                "type": "subscribe",
                "payload": {
                    "query": "subscription S($id: ID!) { liveTrackListUpdates(streamId: $id) { streamId totalTracks primaryVideoBitrate stream { id name } } }",
                    "variables": { "id": stream },
                },
            });
            socket.send(Message::text(subscribe.to_string())).await.expect("subscribe");
            let _ = ready.send(()).await;
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let mut received = 0;
            while received < expected {
                let Some(Ok(message)) = socket.next().await else { break };
                let Ok(text) = message.to_text() else { continue };
                let value: Value = serde_json::from_str(text).unwrap_or_default();
                let Some(seq) = value["payload"]["data"]["liveTrackListUpdates"]["primaryVideoBitrate"].as_u64() else {
                    continue;
                };
                let at = sent.lock().expect("lock")[seq as usize];
                if let Some(at) = at {
                    histogram.record(at.elapsed().as_micros() as u64).expect("record");
                }
                received += 1;
            }
            histogram
        }));
    }
    drop(ready_tx);
    for _ in 0..load.subscribers {
        ready_rx.recv().await.expect("a subscriber ready");
    }
    // Let the last subscriptions reach the feed before the first event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let publisher =
        TelemetryPublisher::new(EventPublisher::new(kafka, "bench-edge").expect("publisher"));
    let started = Instant::now();
    for seq in 0..=load.deliveries {
        let update = TrackListUpdated {
            node_id: "edge-1".into(),
            tracks: vec![Track {
                track_id: 1,
                kind: "video".into(),
                codec: "H264".into(),
                width: 1280,
                height: 720,
                bitrate_bps: seq * 1000,
                ..Default::default()
            }],
        };
        let fact = TelemetryCommand {
            subject_id: stream.to_owned(),
            tenant_id: Some(*tenant),
            occurred_at: chrono::Utc::now(),
            payload: update.into(),
            event_id: None,
            correlation_id: Uuid::now_v7(),
        };
        if seq > 0 {
            sent.lock().expect("lock")[seq as usize] = Some(Instant::now());
        }
        for verdict in publisher.publish_batch(std::slice::from_ref(&fact)).await {
            verdict.expect("published");
        }
        // The warm-up event reaches every subscription before timing starts.
        let pause = if seq == 0 { 2_000 } else { 100 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let mut total = Histogram::<u64>::new(3).expect("histogram");
    for subscriber in subscribers {
        total
            .add(subscriber.await.expect("subscriber"))
            .expect("merge");
    }
    (total, started.elapsed())
}

fn main() {
    let load = if std::env::args().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    // The driver's own threads stay off the bridge's core.
    let _ = Command::new("taskset")
        .args(["-cp", "0", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(load));
}

async fn run(load: Load) {
    let kafka = kafka_with_topics("bench-bridge").await;
    let db = ScratchDatabase::create("bench_bridge").await;
    let (_, data_keys) = SecretBox::generate("bench");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let common = [
        ("FRAMEWORKS_KAFKA_BROKERS", kafka.brokers.clone()),
        ("FRAMEWORKS_TOPIC_PREFIX", kafka.catalogue.prefix.clone()),
        ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
    ];
    let with = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        common
            .iter()
            .cloned()
            .chain(extra.iter().cloned())
            .collect()
    };
    let relay = spawn(
        "relay",
        None,
        &with(&[
            ("FRAMEWORKS_RELAY_IDLE_POLL_MS", "20".into()),
            ("FRAMEWORKS_RELAY_METRICS_LISTEN", "127.0.0.1:0".into()),
        ]),
    );
    let projector = spawn(
        "projector",
        None,
        &with(&[
            ("FRAMEWORKS_PROJECTOR_BATCH_WAIT_MS", "2".into()),
            (
                "FRAMEWORKS_PROJECTOR_GROUP",
                format!("{}-projector", kafka.catalogue.prefix),
            ),
            ("FRAMEWORKS_PROJECTOR_METRICS_LISTEN", "127.0.0.1:0".into()),
        ]),
    );
    let bridge = spawn(
        "bridge",
        Some("1"),
        &with(&[
            ("FRAMEWORKS_BRIDGE_LISTEN", address.to_string()),
            ("FRAMEWORKS_DATA_KEYS", data_keys),
            (
                "FRAMEWORKS_SESSION_SECRET",
                Uuid::now_v7().simple().to_string().repeat(2),
            ),
            (
                "FRAMEWORKS_BRIDGE_RATE_LIMIT_PER_MINUTE",
                "100000000".into(),
            ),
        ]),
    );

    let mut sender = connect(address).await;
    let email = format!("bench-{}@example.com", Uuid::now_v7().simple());
    let (status, session) = post(
        &mut sender,
        "/auth/register",
        None,
        &json!({ "email": email, "password": "a long bench password" }),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let token = session["token"]
        .as_str()
        .expect("a session token")
        .to_owned();
    let tenant: Uuid = session["tenantId"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a tenant id");

    let create = |name: String| {
        json!({
            "query": format!("mutation CreateStream($input: CreateStreamInput!) {{ createStream(input: $input) {{ __typename ... on Stream {{ ...StreamFields streamKey }} ... on ValidationError {{ message }} }} }} {STREAM_FIELDS}"),
            "operationName": "CreateStream",
            "variables": { "input": { "name": name } },
        })
    };
    // Mutations answered from the read model: the whole write path, sequentially.
    let mut mutation = Histogram::<u64>::new(3).expect("histogram");
    let mut last_id = String::new();
    let started = Instant::now();
    for i in 0..load.streams.max(load.mutations) {
        let sent = Instant::now();
        let (status, answer) = post(
            &mut sender,
            "/graphql",
            Some(&token),
            &create(format!("bench {i}")),
        )
        .await;
        assert!(
            status == 200 && answer["data"]["createStream"]["__typename"] == "Stream",
            "{answer}"
        );
        mutation
            .record(sent.elapsed().as_micros() as u64)
            .expect("record");
        last_id = answer["data"]["createStream"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    let mutations_elapsed = started.elapsed();

    let list = json!({
        "query": format!("query ListStreams($page: ConnectionInput, $search: String) {{ streamsConnection(page: $page, search: $search) {{ nodes {{ ...StreamFields }} pageInfo {{ startCursor endCursor hasNextPage hasPreviousPage }} totalCount }} }} {STREAM_FIELDS}"),
        "operationName": "ListStreams",
        "variables": { "page": { "first": 50 } },
    });
    let get = json!({
        "query": format!("query GetStream($id: ID!) {{ stream(id: $id) {{ ...StreamFields }} }} {STREAM_FIELDS}"),
        "operationName": "GetStream",
        "variables": { "id": last_id },
    });
    println!(
        "bridge: one core for the bridge (taskset -c 1), {} connections",
        load.connections
    );
    let (histogram, elapsed) = hammer(address, &token, list, &load).await;
    report("streamsConnection (50 per page)", &histogram, elapsed);
    figure(
        "bridge.streams-connection",
        rate(&histogram, elapsed),
        "q/s",
        Goal::AtLeast(5_000.0),
    );
    let (histogram, elapsed) = hammer(address, &token, get, &load).await;
    report("stream(id)", &histogram, elapsed);
    figure(
        "bridge.stream",
        rate(&histogram, elapsed),
        "q/s",
        Goal::AtLeast(10_000.0),
    );
    report(
        "createStream to read-your-write",
        &mutation,
        mutations_elapsed,
    );
    let stream = last_id_raw(&last_id);
    let (histogram, elapsed) = deliveries(address, &kafka, &token, &tenant, &stream, &load).await;
    report(
        &format!("subscription delivery ({} subs)", load.subscribers),
        &histogram,
        elapsed,
    );
    // The goal holds for 10,000 subscribers; the figure names how many ran.
    figure(
        &format!("bridge.subscribers-{}.delivery-p99", load.subscribers),
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        "ms",
        Goal::AtMost(100.0),
    );

    drop((sender, bridge, projector, relay));
    drop_topics(&kafka).await;
    db.drop_now().await;
}
