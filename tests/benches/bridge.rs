//! Load driver for the GraphQL bridge, against the real PostgreSQL and Kafka
//! that `compose/infra up` runs, with the relay and projector as processes
//! and the bridge (the release binary) pinned to one core. Prints:
//!
//! - queries/s and p50/p99 latency of `ListStreams` (50 streams a page, the
//!   client's own document) and `GetStream(id)`, from 8 connections;
//! - the latency of `createStream` up to its answer from the read model
//!   (command, outbox, relay, Kafka, projector, read-your-writes), p50/p99;
//! - subscription delivery: 10,000 `liveTrackListUpdates` subscribers over
//!   graphql-transport-ws, spread over 1,000 streams, while track lists are
//!   published to Kafka at 1,000 a second (round-robin over the streams):
//!   the time from publishing a track list to each of its subscribers
//!   receiving it, p50/p99, with every delivery accounted for.
//!
//! `cargo bench --bench bridge` runs the full load; under `cargo test` (no
//! `--bench` argument) a small smoke load exercises the driver.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frameworks_commands::SecretBox;
use frameworks_test_harness::figures::{Goal, figure, rss_mb};
use frameworks_test_harness::{ScratchDatabase, drop_topics, kafka_with_topics};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use uuid::Uuid;

struct Load {
    /// Streams created (the first `mutations` of them timed).
    streams: usize,
    seconds: u64,
    connections: usize,
    mutations: usize,
    /// Subscribers, spread evenly over every stream.
    subscribers: usize,
    /// Track lists published a second, round-robin over the streams.
    event_rate: u64,
    delivery_seconds: u64,
}

const FULL: Load = Load {
    streams: 1_000,
    seconds: 10,
    connections: 8,
    mutations: 200,
    subscribers: 10_000,
    event_rate: 1_000,
    delivery_seconds: 20,
};
const SMOKE: Load = Load {
    streams: 5,
    seconds: 1,
    connections: 2,
    mutations: 5,
    subscribers: 10,
    event_rate: 20,
    delivery_seconds: 1,
};

/// The project's own bound on a role's memory under load (the issue sets
/// 100 MB for idle ones); the end-to-end driver holds the others to it.
const LOAD_RSS_GOAL_MB: f64 = 250.0;

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

/// When each timed track list was published, by its sequence number.
type SentAt = Arc<std::sync::Mutex<Vec<Option<Instant>>>>;

/// One subscriber: subscribes to `stream`'s track lists, reports ready when
/// its first warm-up track list (sequence 0) arrives, then times the arrival
/// of each of the `expected` timed ones. It gives up on a silence of 30 s, so
/// a lost delivery shows as a missing one instead of a hung bench.
async fn subscriber(
    address: SocketAddr,
    token: String,
    stream: String,
    expected: u64,
    sent: SentAt,
    ready: tokio::sync::mpsc::Sender<()>,
) -> (Histogram<u64>, u64) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut request = format!("ws://{address}/graphql/ws")
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("a header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket
        .send(Message::text(init.to_string()))
        .await
        .expect("init");
    let ack = socket.next().await.expect("ack").expect("ack");
    assert!(
        ack.to_text().unwrap_or_default().contains("connection_ack"),
        "{ack:?}"
    );
    let subscribe = json!({
        "id": "1",
        "type": "subscribe",
        "payload": {
            "query": "subscription S($id: ID!) { liveTrackListUpdates(streamId: $id) { streamId totalTracks primaryVideoBitrate stream { id name } } }",
            "variables": { "id": stream },
        },
    });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .expect("subscribe");
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let (mut received, mut warm) = (0, false);
    while received < expected {
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(30), socket.next()).await
        else {
            break;
        };
        let Ok(text) = message.to_text() else {
            continue;
        };
        let value: Value = serde_json::from_str(text).unwrap_or_default();
        let Some(seq) =
            value["payload"]["data"]["liveTrackListUpdates"]["primaryVideoBitrate"].as_u64()
        else {
            continue;
        };
        if seq == 0 {
            if !warm {
                warm = true;
                let _ = ready.send(()).await;
            }
            continue;
        }
        let at = sent.lock().expect("lock")[seq as usize];
        if let Some(at) = at {
            histogram
                .record(at.elapsed().as_micros() as u64)
                .expect("record");
        }
        received += 1;
    }
    (histogram, expected - received)
}

/// A track list of `stream` whose video bitrate carries `seq`.
fn track_list(
    stream: &str,
    tenant: &Uuid,
    seq: u64,
) -> frameworks_commands::telemetry::TelemetryCommand {
    use frameworks_commands::telemetry::TelemetryCommand;
    use frameworks_events::proto::v1::telemetry::{Track, TrackListUpdated};
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
    TelemetryCommand {
        subject_id: stream.to_owned(),
        tenant_id: Some(*tenant),
        occurred_at: chrono::Utc::now(),
        payload: update.into(),
        event_id: None,
        correlation_id: Uuid::now_v7(),
    }
}

/// Opens `load.subscribers` subscriptions to the track lists of `streams`
/// (spread evenly), then publishes track lists to Kafka at
/// `load.event_rate` a second, round-robin over the streams, each with its
/// sequence number in the video bitrate, and times each arrival at each
/// subscriber. Answers the latencies, the deliveries missing, the time, and
/// the bridge's (process `bridge`) peak resident memory while publishing.
async fn deliveries(
    address: SocketAddr,
    kafka: &frameworks_events::kafka::KafkaSettings,
    token: &str,
    tenant: &Uuid,
    streams: &[String],
    load: &Load,
    bridge: u32,
) -> (Histogram<u64>, u64, Duration, f64) {
    use frameworks_commands::telemetry::TelemetryPublisher;
    use frameworks_events::kafka::EventPublisher;

    let events = load.event_rate * load.delivery_seconds;
    let sent: SentAt = Arc::new(std::sync::Mutex::new(vec![None; events as usize + 1]));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(load.subscribers);
    // Handshakes in waves, so that the listen backlog never overflows.
    let handshakes = Arc::new(tokio::sync::Semaphore::new(256));
    let mut subscribers = Vec::new();
    for i in 0..load.subscribers {
        let index = i % streams.len();
        // Sequence s (from 1) goes to stream (s - 1) % streams.
        let expected = (events + (streams.len() - 1 - index) as u64) / streams.len() as u64;
        let (sent, ready, token, stream, handshakes) = (
            sent.clone(),
            ready_tx.clone(),
            token.to_owned(),
            streams[index].clone(),
            handshakes.clone(),
        );
        subscribers.push(tokio::spawn(async move {
            let permit = handshakes.acquire_owned().await.expect("a permit");
            let (ready_inner, mut subscribed) = tokio::sync::mpsc::channel::<()>(1);
            let run = tokio::spawn(subscriber(
                address,
                token,
                stream,
                expected,
                sent,
                ready_inner,
            ));
            // The next handshake waits until this one has its warm-up (or gave up).
            if subscribed.recv().await.is_some() {
                let _ = ready.send(()).await;
            }
            drop(permit);
            run.await.expect("subscriber")
        }));
    }
    drop(ready_tx);
    let publisher =
        TelemetryPublisher::new(EventPublisher::new(kafka, "bench-edge").expect("publisher"));
    // Warm-up track lists (sequence 0, not timed) until every subscriber has one.
    let mut ready = 0;
    let warm_until = Instant::now() + Duration::from_secs(300);
    while ready < load.subscribers && Instant::now() < warm_until {
        let warm: Vec<_> = streams.iter().map(|s| track_list(s, tenant, 0)).collect();
        for verdict in publisher.publish_batch(&warm).await {
            verdict.expect("published");
        }
        let round = Instant::now() + Duration::from_millis(500);
        while let Ok(Some(())) = tokio::time::timeout_at(round.into(), ready_rx.recv()).await {
            ready += 1;
        }
    }
    assert_eq!(
        ready, load.subscribers,
        "every subscriber received a warm-up"
    );
    println!(
        "  {} subscribers over {} streams; {} track lists/s for {} s",
        load.subscribers,
        streams.len(),
        load.event_rate,
        load.delivery_seconds
    );
    // Ticks of about 10 ms, each publishing its share of the rate.
    let per_tick = (load.event_rate / 100).max(1);
    let mut ticks = tokio::time::interval(Duration::from_micros(
        per_tick * 1_000_000 / load.event_rate,
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let (mut seq, mut rss, mut sampled) = (1, 0.0f64, None::<Instant>);
    while seq <= events {
        ticks.tick().await;
        if sampled.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            rss = rss.max(rss_mb(bridge).unwrap_or_default());
            sampled = Some(Instant::now());
        }
        let last = (seq + per_tick - 1).min(events);
        let batch: Vec<_> = (seq..=last)
            .map(|s| track_list(&streams[(s as usize - 1) % streams.len()], tenant, s))
            .collect();
        let now = Instant::now();
        {
            let mut sent = sent.lock().expect("lock");
            for s in seq..=last {
                sent[s as usize] = Some(now);
            }
        }
        for verdict in publisher.publish_batch(&batch).await {
            verdict.expect("published");
        }
        seq = last + 1;
    }
    let mut total = Histogram::<u64>::new(3).expect("histogram");
    let mut missing = 0;
    for subscriber in subscribers {
        let (histogram, missed) = subscriber.await.expect("subscriber");
        total.add(histogram).expect("merge");
        missing += missed;
    }
    (total, missing, started.elapsed(), rss)
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
    let mut ids = Vec::new();
    let (started, mut mutations_elapsed) = (Instant::now(), Duration::ZERO);
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
        if i < load.mutations {
            mutation
                .record(sent.elapsed().as_micros() as u64)
                .expect("record");
            mutations_elapsed = started.elapsed();
        }
        ids.push(
            answer["data"]["createStream"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let last_id = ids.last().cloned().unwrap_or_default();

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
    let streams: Vec<String> = ids.iter().map(|id| last_id_raw(id)).collect();
    let (histogram, missing, elapsed, rss) = deliveries(
        address,
        &kafka,
        &token,
        &tenant,
        &streams,
        &load,
        bridge.0.id(),
    )
    .await;
    report(
        &format!("subscription delivery ({} subs)", load.subscribers),
        &histogram,
        elapsed,
    );
    assert_eq!(missing, 0, "every subscriber received every track list");
    // The goal holds for 10,000 subscribers; the figure names how many ran.
    figure(
        &format!("bridge.subscribers-{}.delivery-p99", load.subscribers),
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        "ms",
        Goal::AtMost(100.0),
    );
    figure(
        &format!("memory.bridge.subscribers-{}-rss", load.subscribers),
        rss,
        "MB",
        Goal::AtMost(LOAD_RSS_GOAL_MB),
    );

    drop((sender, bridge, projector, relay));
    drop_topics(&kafka).await;
    db.drop_now().await;
}
