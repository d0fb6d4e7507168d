//! The edge daemon's trigger endpoint, fed by the Mist simulator in Mist's
//! exact wire format: every captured trigger accepted, accounting ones
//! journaled once (across Mist's retries and restarts), blocking ones
//! answered from the balancer's routes within the budget, bad ones refused
//! with the reason.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use frameworks_edge::answers::{
    AnswerSettings, Answers, PlaybackPolicy, Resolved, Resolver, RouteTable, Routes,
};
use frameworks_edge::journal::{Journal, JournalEntry};
use frameworks_edge::server::TriggerEndpoint;
use frameworks_edge_protocol::keys::key_sha256;
use frameworks_edge_protocol::triggers::TriggerKind;
use frameworks_mist_simulator::captures;
use frameworks_mist_simulator::sender::Firing;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

struct Edge {
    address: SocketAddr,
    journal: Journal,
    routes: Arc<dyn RouteTable>,
    forwarded: mpsc::Receiver<JournalEntry>,
    _dir: TempDir,
}

/// A scratch directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("fw-edge-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn routes() -> Routes {
    let mut routes = Routes::default();
    routes.refused_keys.insert(key_sha256("revoked"));
    routes.playback.insert("test".into(), Some("test".into()));
    routes.viewers.insert("test".into(), PlaybackPolicy::Public);
    routes
        .playback
        .insert("pb-1".into(), Some("live+stream-1".into()));
    routes
        .viewers
        .insert("live+stream-1".into(), PlaybackPolicy::Public);
    routes
        .viewers
        .insert("private".into(), PlaybackPolicy::Denied);
    routes
        .push_targets
        .insert(("test".into(), "/var/lib/mist/rec/test.ts".into()));
    routes
}

async fn edge<R: Resolver>(resolver: R, budget: Duration) -> Edge {
    let dir = TempDir::new();
    let journal = Journal::open(&dir.0.join("journal.redb")).unwrap();
    let answers = Answers::new(
        resolver,
        AnswerSettings {
            budget,
            admit_unknown_viewers: false,
        },
    );
    answers.replace(routes());
    let (forward, forwarded) = mpsc::channel(1024);
    let endpoint = Arc::new(TriggerEndpoint {
        answers: answers.clone(),
        journal: journal.clone(),
        forward,
        sessions: Default::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(frameworks_edge::server::serve(
        listener,
        endpoint.router(),
        std::future::pending(),
    ));
    Edge {
        address,
        journal,
        routes: answers,
        forwarded,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_captured_trigger_is_accepted_and_accounting_ones_are_journaled_once() {
    let mut edge = edge(TestBalancer, Duration::from_millis(200)).await;
    let mut accounting = Vec::new();
    for capture in captures::triggers() {
        let firing = Firing::from_capture(capture, "/trigger");
        let reply = firing.send(edge.address, WAIT).await.unwrap();
        assert_eq!(reply.status, 200, "{}: {}", capture.trigger(), reply.body);
        let kind: TriggerKind = capture.trigger().parse().unwrap();
        if kind.accounting() {
            accounting.push(firing.uuid().unwrap().to_owned());
            // Mist retries: the same UUID again is logged once.
            let again = firing.clone().with_header("X-Attempt", "2");
            assert_eq!(again.send(edge.address, WAIT).await.unwrap().status, 200);
        }
    }
    let pending: Vec<String> = edge
        .journal
        .pending()
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(accounting.len(), 25);
    let mut expected = accounting.clone();
    expected.sort();
    let mut got = pending.clone();
    got.sort();
    assert_eq!(got, expected);
    let mut forwarded = 0;
    while edge.forwarded.try_recv().is_ok() {
        forwarded += 1;
    }
    assert_eq!(
        forwarded,
        248 + 25,
        "every request is handed on; the ingress dedups by id"
    );
}

#[tokio::test]
async fn the_journal_outlives_its_process_and_forgets_what_was_acknowledged() {
    let dir = TempDir::new();
    let path = dir.0.join("journal.redb");
    let capture = captures::of("USER_END").next().unwrap();
    let firing = Firing::from_capture(capture, "/trigger");
    let meta = frameworks_edge_protocol::triggers::TriggerMeta::from_headers(|n| firing.header(n))
        .unwrap();
    {
        let journal = Journal::open(&path).unwrap();
        let entry = JournalEntry::new(&meta, &firing.body);
        assert!(journal.append(&entry).unwrap());
        assert!(
            !journal.append(&entry).unwrap(),
            "a retry is not a second entry"
        );
    }
    let journal = Journal::open(&path).unwrap();
    let pending = journal.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind(), Some(TriggerKind::UserEnd));
    assert_eq!(pending[0].fields, capture.body_lines);
    journal.acknowledge([pending[0].id.as_str()]).unwrap();
    assert!(journal.is_empty().unwrap());
}

#[tokio::test]
async fn blocking_triggers_are_answered_from_the_routes() {
    let edge = edge(TestBalancer, Duration::from_millis(200)).await;
    let send = |firing: Firing| async move { firing.send(edge.address, WAIT).await.unwrap() };
    let push = Firing::from_capture(captures::of("PUSH_REWRITE").next().unwrap(), "/trigger");
    let reply = send(push.clone()).await;
    assert_eq!(
        (reply.body.as_str(), reply.header("X-Mist-Trigger-Action")),
        ("live+stream-1", Some("value"))
    );
    let revoked = send(
        push.clone()
            .with_body("rtmp://127.0.0.1:1935/live/revoked\n127.0.0.1\nrevoked"),
    )
    .await;
    assert_eq!(revoked.header("X-Mist-Trigger-Action"), Some("deny"));
    assert_eq!(revoked.body, "");
    let unknown = send(push.with_body("rtmp://127.0.0.1:1935/live/nope\n127.0.0.1\nnope")).await;
    assert_eq!(
        unknown.header("X-Mist-Trigger-Action"),
        Some("deny"),
        "an unknown key never publishes"
    );

    let user = send(Firing::from_capture(
        captures::of("USER_NEW").next().unwrap(),
        "/trigger",
    ))
    .await;
    assert_eq!(user.body, "true");
    let new_viewer = Firing::from_capture(captures::of("USER_NEW").next().unwrap(), "/trigger");
    let body = new_viewer.body.replacen("test", "private", 1);
    let refused = send(new_viewer.with_body(body)).await;
    assert_eq!(refused.body, "false", "a stream not open to viewers");
    let unknown_body =
        captures::of("USER_NEW")
            .next()
            .unwrap()
            .body
            .replacen("test", "nobody-knows", 1);
    let unknown = send(
        Firing::from_capture(captures::of("USER_NEW").next().unwrap(), "/trigger")
            .with_body(unknown_body),
    )
    .await;
    assert_eq!(
        unknown.body, "false",
        "unknown viewers are refused unless configured otherwise"
    );
    let play = send(Firing::from_capture(
        captures::of("PLAY_REWRITE").next().unwrap(),
        "/trigger",
    ))
    .await;
    assert_eq!(play.body, "test");
    let out = send(Firing::from_capture(
        captures::of("PUSH_OUT_START").next().unwrap(),
        "/trigger",
    ))
    .await;
    assert_eq!(
        (out.body.as_str(), out.header("X-Mist-Trigger-Action")),
        ("/var/lib/mist/rec/test.ts", Some("value"))
    );
    let source = send(Firing::from_capture(
        captures::of("STREAM_SOURCE").next().unwrap(),
        "/trigger",
    ))
    .await;
    assert_eq!(
        source.header("X-Mist-Trigger-Action"),
        Some("keep"),
        "not a pull stream"
    );
}

/// The balancer every push is asked of: it lets the key "test" publish to
/// `live+stream-1` and refuses the rest.
struct TestBalancer;

impl Resolver for TestBalancer {
    async fn resolve(&self, _: TriggerKind, hash: &str) -> Option<Resolved> {
        Some(Resolved::Ingest {
            key_sha256: hash.to_owned(),
            stream: (hash == key_sha256("test")).then(|| "live+stream-1".into()),
            momentary: false,
        })
    }
}

/// A balancer that takes longer than any budget.
struct SlowBalancer;

impl Resolver for SlowBalancer {
    async fn resolve(&self, _: TriggerKind, key: &str) -> Option<Resolved> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Some(Resolved::Ingest {
            key_sha256: key.to_owned(),
            stream: Some("late".into()),
            momentary: false,
        })
    }
}

/// A balancer that knows one key, "fresh", and is asked by its hash.
struct KnowingBalancer;

impl Resolver for KnowingBalancer {
    async fn resolve(&self, _: TriggerKind, hash: &str) -> Option<Resolved> {
        (hash == key_sha256("fresh")).then(|| Resolved::Ingest {
            key_sha256: hash.to_owned(),
            stream: Some("live+fresh".into()),
            momentary: false,
        })
    }
}

#[tokio::test]
async fn a_miss_asks_the_balancer_but_never_past_the_budget() {
    let push = Firing::from_capture(captures::of("PUSH_REWRITE").next().unwrap(), "/trigger")
        .with_body("rtmp://127.0.0.1:1935/live/fresh\n127.0.0.1\nfresh");
    let budget = Duration::from_millis(150);
    let slow = edge(SlowBalancer, budget).await;
    let started = Instant::now();
    let reply = push.send(slow.address, WAIT).await.unwrap();
    assert!(
        started.elapsed() < budget + Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        reply.header("X-Mist-Trigger-Action"),
        Some("deny"),
        "the default: no unchecked publishing"
    );

    let knowing = edge(KnowingBalancer, budget).await;
    let reply = push.send(knowing.address, WAIT).await.unwrap();
    assert_eq!(reply.body, "live+fresh");
}

/// Mist writes an asynchronous trigger and closes the socket without
/// reading the answer; the trigger must still be journaled and forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_triggers_from_a_peer_that_closes_at_once_are_journaled_and_forwarded() {
    let mut edge = edge(TestBalancer, Duration::from_millis(200)).await;
    let template = Firing::from_capture(captures::of("USER_END").next().unwrap(), "/trigger");
    let buffer = Firing::from_capture(captures::of("STREAM_BUFFER").next().unwrap(), "/trigger");
    let mut expected = Vec::new();
    for n in 0..200 {
        let end = template
            .clone()
            .with_header("X-Trigger-UUID", uuid::Uuid::now_v7().to_string())
            .with_body(format!("{n}\ntest\nHLS\n127.0.0.1\n2\n100\n200\n[UA:test]"));
        expected.push(end.uuid().unwrap().to_owned());
        end.fire_and_close(edge.address).await.unwrap();
    }
    buffer.fire_and_close(edge.address).await.unwrap();
    let mut forwarded = Vec::new();
    let deadline = Instant::now() + WAIT;
    while forwarded.len() < expected.len() + 1 && Instant::now() < deadline {
        if let Ok(Some(entry)) =
            tokio::time::timeout(Duration::from_millis(100), edge.forwarded.recv()).await
        {
            forwarded.push(entry);
        }
    }
    let ends: Vec<&str> = forwarded
        .iter()
        .filter(|e| e.trigger == "USER_END")
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ends.len(), 200, "every USER_END forwarded once");
    assert!(
        forwarded.iter().any(|e| e.trigger == "STREAM_BUFFER"),
        "a non-accounting asynchronous trigger is forwarded too"
    );
    let mut journaled: Vec<String> = edge
        .journal
        .pending()
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    journaled.sort();
    expected.sort();
    assert_eq!(journaled, expected, "every USER_END journaled once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_end_naming_no_stream_is_journaled_with_the_stream_its_viewer_was_admitted_to() {
    let edge = edge(TestBalancer, Duration::from_millis(200)).await;
    let new_viewer = Firing::from_capture(captures::of("USER_NEW").next().unwrap(), "/trigger");
    let (stream, session) = {
        let fields: Vec<&str> = new_viewer.body.split('\n').collect();
        (fields[0].to_owned(), fields[5].to_owned())
    };
    let admitted = new_viewer.send(edge.address, WAIT).await.unwrap();
    assert_eq!(admitted.body, "true");
    // Mist ended the session before counting a second on the stream.
    let end = Firing::from_capture(captures::of("USER_END").next().unwrap(), "/trigger");
    let mut fields: Vec<&str> = end.body.split('\n').collect();
    assert_eq!(fields.len(), 12, "{:?}", end.body);
    fields[1] = "";
    fields[11] = &session;
    let body = fields.join("\n");
    end.with_body(body).send(edge.address, WAIT).await.unwrap();
    let pending = edge.journal.pending().unwrap();
    let journaled: Vec<_> = pending
        .iter()
        .filter(|e| e.kind() == Some(TriggerKind::UserEnd))
        .collect();
    assert_eq!(journaled.len(), 1);
    assert_eq!(journaled[0].fields[1], stream);

    // A viewer USER_NEW refused is not remembered: its end names no stream.
    let refused = Firing::from_capture(captures::of("USER_NEW").next().unwrap(), "/trigger");
    let mut fields: Vec<String> = refused.body.split('\n').map(str::to_owned).collect();
    fields[0] = "private".into();
    fields[5] = "refused-session".into();
    let answer = refused
        .with_body(fields.join("\n"))
        .send(edge.address, WAIT)
        .await
        .unwrap();
    assert_eq!(answer.body, "false");
    let end = Firing::from_capture(captures::of("USER_END").next().unwrap(), "/trigger");
    let mut fields: Vec<String> = end.body.split('\n').map(str::to_owned).collect();
    fields[1] = String::new();
    fields[11] = "refused-session".into();
    end.with_body(fields.join("\n"))
        .send(edge.address, WAIT)
        .await
        .unwrap();
    let pending = edge.journal.pending().unwrap();
    let unnamed = pending
        .iter()
        .filter(|e| e.kind() == Some(TriggerKind::UserEnd))
        .filter(|e| e.fields[11] == "refused-session")
        .map(|e| e.fields[1].clone())
        .collect::<Vec<_>>();
    assert_eq!(
        unnamed,
        [String::new()],
        "a refused viewer is not remembered"
    );
}

#[tokio::test]
async fn malformed_requests_get_a_400_naming_the_problem() {
    let edge = edge(TestBalancer, Duration::from_millis(100)).await;
    let end = Firing::from_capture(captures::of("STREAM_END").next().unwrap(), "/trigger");
    let short = end
        .clone()
        .with_body("test\n1")
        .send(edge.address, WAIT)
        .await
        .unwrap();
    assert_eq!(short.status, 400);
    assert_eq!(short.body.trim(), "STREAM_END carries 2 fields; expected 7");
    let unknown = end
        .clone()
        .with_header("X-Trigger", "MADE_UP")
        .send(edge.address, WAIT)
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.body.trim()),
        (400, "unknown trigger \"MADE_UP\"")
    );
    let no_uuid = end
        .clone()
        .without_header("X-Trigger-UUID")
        .send(edge.address, WAIT)
        .await
        .unwrap();
    assert_eq!(
        (no_uuid.status, no_uuid.body.trim()),
        (400, "missing header X-Trigger-UUID")
    );
    let huge = end
        .with_body("x".repeat(300 * 1024))
        .send(edge.address, WAIT)
        .await
        .unwrap();
    assert_eq!(huge.status, 413);
    assert!(
        edge.journal.is_empty().unwrap(),
        "nothing refused is journaled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_broadcast_is_answered_and_its_accounting_journaled() {
    use frameworks_edge::config_sync;
    use frameworks_edge::mist::{MistClient, MistSettings};
    use frameworks_mist_simulator::scenes::{Broadcast, SceneError};
    use frameworks_mist_simulator::{MistApi, serve};

    let mut edge = edge(TestBalancer, Duration::from_millis(200)).await;
    // The simulated Mist, configured by the edge's own trigger set.
    let api = MistApi::new(None, true);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mist_address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, api.clone()));
    let broadcast = Broadcast {
        stream_key: "test".into(),
        playback_id: "pb-1".into(),
        viewers: 2,
        hold: Duration::from_millis(50),
    };
    assert!(matches!(
        broadcast.play(&api).await,
        Err(SceneError::NoHandler("PUSH_REWRITE"))
    ));
    let mist = MistClient::new(MistSettings {
        address: mist_address.to_string(),
        username: String::new(),
        password: String::new(),
        timeout: WAIT,
    });
    let desired = config_sync::desired(&format!("http://{}", edge.address));
    config_sync::sync_once(&mist, "edge-1", &desired)
        .await
        .unwrap();

    let stream = broadcast.play(&api).await.unwrap();
    assert_eq!(
        stream, "live+stream-1",
        "PUSH_REWRITE answered by the balancer"
    );
    let mut accounted: Vec<String> = edge
        .journal
        .pending()
        .unwrap()
        .into_iter()
        .map(|entry| entry.trigger)
        .collect();
    accounted.sort();
    assert_eq!(
        accounted,
        ["PUSH_INPUT_CLOSE", "STREAM_END", "USER_END", "USER_END"],
        "every viewer's end and the stream's end are booked"
    );
    let mut forwarded = Vec::new();
    while let Ok(entry) = edge.forwarded.try_recv() {
        if entry.trigger == "PUSH_REWRITE" {
            // The stream key leaves the edge as its hash only.
            let hashed = format!("sha256:{}", key_sha256("test"));
            assert_eq!(entry.fields[2], hashed);
            assert_eq!(
                entry.fields[0],
                format!("rtmp://127.0.0.1:1935/live/{hashed}")
            );
        }
        forwarded.push(entry.trigger);
    }
    for trigger in [
        "PUSH_REWRITE",
        "STREAM_BUFFER",
        "LIVE_TRACK_LIST",
        "USER_NEW",
    ] {
        assert!(
            forwarded.iter().any(|t| t == trigger),
            "{trigger}: {forwarded:?}"
        );
    }
    assert!(api.state().active.is_empty() && api.state().clients.is_empty());

    let refused = Broadcast {
        stream_key: "revoked".into(),
        ..broadcast
    };
    assert!(matches!(
        refused.play(&api).await,
        Err(SceneError::Refused(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_recordings_report_through_their_triggers() {
    use frameworks_edge::config_sync;
    use frameworks_edge::host::MistCommands;
    use frameworks_edge::mist::{MistClient, MistSettings};
    use frameworks_edge_protocol::proto::{StartPush, edge_command::Action};
    use frameworks_mist_simulator::{MistApi, serve};

    let edge = edge(TestBalancer, Duration::from_millis(200)).await;
    let api = MistApi::new(None, true);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mist_address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, api.clone()));
    let mist = Arc::new(MistClient::new(MistSettings {
        address: mist_address.to_string(),
        username: String::new(),
        password: String::new(),
        timeout: WAIT,
    }));
    let desired = config_sync::desired(&format!("http://{}", edge.address));
    config_sync::sync_once(&mist, "edge-1", &desired)
        .await
        .unwrap();
    let recordings = TempDir::new();
    let commands = MistCommands::new(
        Arc::clone(&mist),
        Arc::clone(&edge.routes),
        recordings.0.clone(),
    );
    let journaled = |trigger: &'static str, expected: usize| {
        let journal = edge.journal.clone();
        async move {
            reaches(expected, || {
                journal
                    .pending()
                    .unwrap()
                    .iter()
                    .filter(|e| e.trigger == trigger)
                    .count()
            })
            .await
        }
    };

    // A recording the platform starts: let out, a segment reported, and on
    // stop its end and the push's end booked.
    commands
        .execute(Action::StartRecording("live+stream-1".into()))
        .await
        .unwrap();
    assert_eq!(journaled("RECORDING_SEGMENT", 1).await, 1);
    assert_eq!(api.state().pushes.len(), 1, "PUSH_OUT_START let it out");
    commands
        .execute(Action::StopRecording("live+stream-1".into()))
        .await
        .unwrap();
    assert_eq!(journaled("RECORDING_END", 1).await, 1);
    assert_eq!(journaled("PUSH_END", 1).await, 1);

    // A push nobody on the platform started is refused by PUSH_OUT_START:
    // Mist ends it at once.
    mist.push_start("live+stream-1", "rtmp://elsewhere.example.net/live/x")
        .await
        .unwrap();
    assert_eq!(journaled("PUSH_END", 2).await, 2);
    assert!(api.state().pushes.is_empty());

    // One the platform starts runs until stopped.
    commands
        .execute(Action::StartPush(StartPush {
            stream: "live+stream-1".into(),
            target: "rtmp://youtube.example.net/live/k".into(),
        }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(api.state().pushes.len(), 1, "PUSH_OUT_START let it out");
    assert_eq!(journaled("PUSH_END", 2).await, 2);
}

/// `count()` once it reaches `expected` (the simulator reports pushes
/// after it answers), or whatever it is after WAIT.
async fn reaches(expected: usize, count: impl Fn() -> usize) -> usize {
    let started = Instant::now();
    loop {
        let now = count();
        if now >= expected || started.elapsed() > WAIT {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
