//! The edge's Mist API client against the simulator: loopback trust, the
//! MD5 challenge login, a wrong password, a Mist that never answers, and
//! every typed command the platform uses.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use frameworks_edge::config_sync;
use frameworks_edge::mist::{MistClient, MistError, MistSettings, TriggerHandler, TriggerSet};
use frameworks_edge_protocol::triggers::TriggerKind;
use frameworks_mist_simulator::api::{ActiveStream, Client};
use frameworks_mist_simulator::{MistApi, serve};
use serde_json::{Map, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(2);

async fn simulator(api: &MistApi) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, api.clone()));
    address
}

fn client(address: SocketAddr, password: &str) -> MistClient {
    MistClient::new(MistSettings {
        address: address.to_string(),
        username: "admin".into(),
        password: password.into(),
        timeout: TIMEOUT,
    })
}

#[tokio::test]
async fn loopback_is_trusted_and_others_log_in_by_challenge() {
    // Mist's own behaviour: a local caller needs no account.
    let trusting = MistApi::new(Some(("admin", "secret")), true);
    let local = client(simulator(&trusting).await, "not the password");
    assert_eq!(
        local.capabilities().await.unwrap()["triggers"]["USER_NEW"]["response"],
        "always"
    );

    // Treated as remote: the first call meets the challenge and answers it.
    let strict = MistApi::new(Some(("admin", "secret")), false);
    let address = simulator(&strict).await;
    let remote = client(address, "secret");
    remote.save().await.unwrap();
    remote.save().await.unwrap();
    assert_eq!(strict.state().saves, 2);

    let wrong = client(address, "guess");
    let started = Instant::now();
    assert!(matches!(wrong.save().await, Err(MistError::Unauthorized)));
    assert!(
        started.elapsed() < TIMEOUT,
        "refused at once, not by the timeout"
    );
    assert_eq!(strict.state().saves, 2, "nothing ran for the wrong login");

    let empty = MistApi::new(None, false);
    assert!(matches!(
        client(simulator(&empty).await, "x").save().await,
        Err(MistError::NoAccount)
    ));
}

#[tokio::test]
async fn a_wrong_authorization_header_hangs_like_mist_and_a_silent_mist_times_out() {
    let strict = MistApi::new(Some(("admin", "secret")), false);
    let address = simulator(&strict).await;
    // The simulator's 403: no Content-Length, and the connection stays open.
    let mut raw = TcpStream::connect(address).await.unwrap();
    let body = "{\"version\":true}";
    raw.write_all(
        format!(
            "POST /api2 HTTP/1.1\r\nHost: {address}\r\nAuthorization: json {{\"username\":\"admin\",\"password\":\"x\"}}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0; 512];
    let read = raw.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..read]).to_lowercase();
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(head.contains("www-authenticate: json"), "{head}");
    let more = tokio::time::timeout(Duration::from_millis(300), raw.read(&mut [0; 64])).await;
    assert!(
        more.is_err() || more.is_ok_and(|r| r.is_ok_and(|n| n > 0)),
        "the connection stays open"
    );

    // A Mist that accepts and never answers: the call ends at its timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut settings = MistSettings {
        address: silent_address.to_string(),
        username: "admin".into(),
        password: "secret".into(),
        timeout: Duration::from_millis(300),
    };
    let started = Instant::now();
    let result = MistClient::new(settings.clone()).save().await;
    assert!(matches!(result, Err(MistError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nobody listening: a connection error naming the address.
    drop(TcpListener::bind("127.0.0.1:0").await.map(|l| {
        settings.address = l.local_addr().unwrap().to_string();
    }));
    let refused = MistClient::new(settings).save().await;
    assert!(
        matches!(refused, Err(MistError::Connect { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_typed_commands_do_what_mist_does() {
    let api = MistApi::new(Some(("admin", "secret")), true);
    let mist = client(simulator(&api).await, "secret");

    // The trigger set replaces Mist's whole config.triggers.
    let mut triggers = TriggerSet::new();
    for kind in [TriggerKind::UserNew, TriggerKind::StreamEnd] {
        triggers.insert(
            kind.name().into(),
            vec![TriggerHandler::for_trigger(
                kind,
                "http://127.0.0.1:18007",
                "true",
                None,
            )],
        );
    }
    mist.set_triggers("edge-1", &triggers).await.unwrap();
    let (server_id, read_back) = mist.config().await.unwrap();
    assert_eq!(server_id.as_deref(), Some("edge-1"));
    assert_eq!(read_back, triggers);
    assert!(read_back["USER_NEW"][0].sync && !read_back["STREAM_END"][0].sync);
    assert_eq!(
        read_back["USER_NEW"][0].handler,
        "http://127.0.0.1:18007/trigger/USER_NEW"
    );

    let mut options = Map::new();
    options.insert("DVR".into(), json!(30_000));
    mist.add_stream("live+abc", "push://", options)
        .await
        .unwrap();
    assert_eq!(api.state().streams["live+abc"]["DVR"], 30_000);
    mist.delete_stream("live+abc").await.unwrap();
    assert!(api.state().streams.is_empty());

    api.state().active.insert(
        "live+abc".into(),
        ActiveStream {
            status: "Online".into(),
            viewers: 3,
            inputs: 1,
            up_bytes: 10,
            down_bytes: 20,
            viewer_seconds: 42,
            last_ms: 12_343,
            ..Default::default()
        },
    );
    let active = mist.active_streams().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (
            active[0].name.as_str(),
            active[0].status.as_str(),
            active[0].viewers,
            active[0].viewer_seconds
        ),
        ("live+abc", "Online", 3, 42)
    );
    api.state().clients.push(Client {
        host: "203.0.113.9".into(),
        stream: "live+abc".into(),
        protocol: "HLS".into(),
        connected_seconds: 2,
        up_bytes: 104_823,
        session_id: "90ce7bbc".into(),
        ..Default::default()
    });
    let clients = mist.clients().await.unwrap();
    assert_eq!(clients[0].protocol, "HLS");
    assert_eq!(
        (clients[0].up_bytes, clients[0].session_id.as_str()),
        (104_823, "90ce7bbc")
    );

    mist.push_start("live+abc", "rtmp://example.net/live/x")
        .await
        .unwrap();
    let pushes = mist.push_list().await.unwrap();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].target, "rtmp://example.net/live/x");
    mist.push_stop(&[pushes[0].id]).await.unwrap();
    assert!(mist.push_list().await.unwrap().is_empty());
    let rule = mist
        .push_auto_add("live+abc", "/rec/$stream.ts")
        .await
        .unwrap();
    assert!(api.state().auto_pushes.contains_key(&rule));
    mist.push_auto_remove(&rule).await.unwrap();
    assert!(api.state().auto_pushes.is_empty());

    mist.invalidate_sessions("live+abc").await.unwrap();
    mist.stop_sessions("live+abc").await.unwrap();
    mist.nuke_stream("live+abc").await.unwrap();
    let state = api.state();
    assert_eq!(state.invalidated, vec!["live+abc"]);
    assert!(state.clients.is_empty() && state.active.is_empty());
    assert_eq!(state.nuked, vec!["live+abc"]);
}

#[tokio::test]
async fn the_trigger_set_is_registered_and_drift_is_put_back() {
    let api = MistApi::new(Some(("admin", "secret")), true);
    let mist = client(simulator(&api).await, "secret");
    let desired = config_sync::desired("http://127.0.0.1:18007");
    assert!(
        config_sync::sync_once(&mist, "node-1", &desired)
            .await
            .unwrap()
    );
    {
        let state = api.state();
        assert_eq!(state.server_id.as_deref(), Some("node-1"));
        assert_eq!(state.triggers.len(), config_sync::REGISTERED.len());
        assert_eq!(state.triggers["PUSH_REWRITE"][0]["sync"], true);
        // Fail closed: an empty default is `true` to Mist.
        assert_eq!(state.triggers["PUSH_REWRITE"][0]["default"], "false");
        assert_eq!(state.triggers["PUSH_REWRITE"][0]["onfail"], "deny");
        assert_eq!(state.triggers["STREAM_SOURCE"][0]["onfail"], "offline");
        assert!(state.triggers["USER_END"][0].get("onfail").is_none());
        assert_eq!(state.triggers["USER_END"][0]["sync"], false);
        assert_eq!(state.saves, 1, "the config is written to disk");
    }
    assert!(
        !config_sync::sync_once(&mist, "node-1", &desired)
            .await
            .unwrap(),
        "in sync: nothing sent"
    );

    // An operator replaces the trigger set: the next check puts it back.
    let mut drifted = TriggerSet::new();
    drifted.insert(
        "USER_NEW".into(),
        vec![TriggerHandler::for_trigger(
            TriggerKind::UserNew,
            "http://elsewhere:1",
            "true",
            None,
        )],
    );
    mist.set_triggers("node-1", &drifted).await.unwrap();
    assert!(
        config_sync::sync_once(&mist, "node-1", &desired)
            .await
            .unwrap()
    );
    assert_eq!(mist.config().await.unwrap().1, desired);
}

#[tokio::test]
async fn the_seeds_stream_templates_are_kept_in_mist() {
    use frameworks_edge_protocol::proto::StreamTemplate;
    let api = MistApi::new(Some(("admin", "secret")), true);
    let mist = client(simulator(&api).await, "secret");
    mist.add_stream("operators-own", "push://10.0.0.1", Map::new())
        .await
        .unwrap();
    let templates = [
        StreamTemplate {
            name: "live".into(),
            source: "push://".into(),
            dvr_ms: 0,
        },
        StreamTemplate {
            name: "event".into(),
            source: "push://".into(),
            dvr_ms: 30_000,
        },
    ];
    assert_eq!(
        config_sync::sync_templates(&mist, &templates)
            .await
            .unwrap(),
        2
    );
    let streams = mist.streams().await.unwrap();
    assert_eq!(streams["live"]["source"], "push://");
    assert_eq!(streams["event"]["DVR"], 30_000);
    assert_eq!(
        streams["operators-own"]["source"], "push://10.0.0.1",
        "streams the seed does not name are left alone"
    );
    assert_eq!(api.state().saves, 1);
    assert_eq!(
        config_sync::sync_templates(&mist, &templates)
            .await
            .unwrap(),
        0,
        "in sync: nothing written"
    );

    // An operator points the template elsewhere: the next round puts it back.
    mist.add_stream("live", "/media/loop.mp4", Map::new())
        .await
        .unwrap();
    assert_eq!(
        config_sync::sync_templates(&mist, &templates)
            .await
            .unwrap(),
        1
    );
    assert_eq!(mist.streams().await.unwrap()["live"]["source"], "push://");
}

#[tokio::test]
async fn a_poll_samples_each_stream_with_its_connections() {
    let api = MistApi::new(Some(("admin", "secret")), true);
    {
        let mut state = api.state();
        state.active.insert(
            "live+s1".into(),
            ActiveStream {
                status: "Online".into(),
                viewers: 3,
                inputs: 1,
                up_bytes: 9_000,
                down_bytes: 50_000,
                viewer_seconds: 42,
                ..Default::default()
            },
        );
        state.active.insert("idle".into(), ActiveStream::default());
        let client = |protocol: &str, up_bps: u64, down_bps: u64| Client {
            host: "198.51.100.7".into(),
            stream: "live+s1".into(),
            protocol: protocol.into(),
            up_bps,
            down_bps,
            ..Default::default()
        };
        state.clients = vec![
            client("INPUT:RTMP", 0, 2_500_000),
            client("HLS", 1_000_000, 0),
            client("HLS", 1_200_000, 0),
            client("WebRTC", 800_000, 10_000),
        ];
    }
    let mist = client(simulator(&api).await, "secret");
    let samples = frameworks_edge::host::sample_mist(&mist).await.unwrap();
    let names: Vec<&str> = samples
        .streams
        .iter()
        .map(|s| s.internal_name.as_str())
        .collect();
    assert_eq!(names, ["idle", "live+s1"]);
    let live = &samples.streams[1];
    assert_eq!(
        (live.status.as_str(), live.viewers, live.inputs),
        ("Online", 3, 1)
    );
    assert_eq!(
        (live.up_bytes, live.down_bytes, live.viewer_seconds),
        (9_000, 50_000, 42)
    );
    assert_eq!((live.up_bps, live.down_bps), (3_000_000, 2_510_000));
    assert_eq!(
        live.viewers_by_protocol,
        [("HLS".to_owned(), 2), ("WebRTC".to_owned(), 1)].into()
    );
}

#[tokio::test]
async fn heartbeats_carry_the_machine_and_mistservers_streams() {
    use frameworks_edge::control::client::EdgeHost;
    use frameworks_edge::host::MistHost;
    use frameworks_edge::machine::MachineProbe;

    let api = MistApi::new(Some(("admin", "secret")), true);
    for (name, viewers) in [("live+a", 3), ("live+b", 4)] {
        api.state().active.insert(
            name.into(),
            ActiveStream {
                status: "Online".into(),
                viewers,
                ..Default::default()
            },
        );
    }
    let host = MistHost::new(
        commands(client(simulator(&api).await, "secret")),
        MachineProbe::default(),
        1_000_000_000,
    );
    let beat = host.heartbeat().await;
    let (node, metrics) = (beat.node.unwrap(), beat.metrics.unwrap());
    assert!(node.mist_healthy);
    assert_eq!(node.mist_version, "fw-51c613a4");
    assert_eq!((metrics.active_streams, metrics.active_viewers), (2, 7));
    assert!(metrics.memory_total_bytes > 0 && metrics.disk_total_bytes > 0);
    assert_eq!(metrics.bandwidth_limit_bps, 1_000_000_000);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let later = host.heartbeat().await.metrics.unwrap();
    assert!(
        later.window_ms > 0,
        "rates cover the time since the last heartbeat"
    );

    // MistServer gone: the heartbeat says so, at once.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = gone.local_addr().unwrap();
    drop(gone);
    let host = MistHost::new(
        commands(client(address, "secret")),
        MachineProbe::default(),
        0,
    );
    let started = Instant::now();
    let beat = host.heartbeat().await;
    let (node, metrics) = (beat.node.unwrap(), beat.metrics.unwrap());
    assert!(!node.mist_healthy && metrics.active_streams == 0 && node.mist_version.is_empty());
    assert!(started.elapsed() < TIMEOUT);
}

/// The hands of a host whose pushes nobody asks about.
fn commands(mist: MistClient) -> frameworks_edge::host::MistCommands {
    use frameworks_edge::answers::{AnswerSettings, Answers, NoResolver};
    let answers = Answers::new(
        NoResolver,
        AnswerSettings {
            budget: Duration::from_millis(100),
            admit_unknown_viewers: false,
        },
    );
    frameworks_edge::host::MistCommands::new(
        std::sync::Arc::new(mist),
        answers,
        std::env::temp_dir().join("frameworks-unused-recordings"),
    )
}
