//! The edge daemon in front of a real MistServer (built from the shared
//! source by `compose/mist`), with every role of the platform running as
//! a process, real RTMP from ffmpeg and real HLS viewers: what the
//! simulator cannot show. Figures (time to live, to the first segment,
//! trigger answer times) are printed.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::{Duration, Instant};

use frameworks_edge::config_sync;
use frameworks_edge::mist::{MistClient, TriggerSet};
use futures::StreamExt;
use serde_json::{Value, json};
use support::mist::{
    Encoder, MistServer, fetch, fetch_if_listening, playlist_entries, post_json, probe_codecs,
    try_fetch,
};
use support::{RoleProcess, ScratchDir, free_port, metric, spawn_read_side_role, spawn_role};
use uuid::Uuid;

/// Polls `check` every 200 ms until it answers `Some`, failing after `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until Mist's config holds exactly the edge's trigger set.
async fn trigger_set_in_mist(mist: &MistClient, desired: &TriggerSet, what: &str) {
    eventually(Duration::from_secs(30), what, || async {
        (mist.config().await.ok()?.1 == *desired).then_some(())
    })
    .await;
}

/// The string at `pointer` (`/createStream/streamKey`) in a GraphQL answer.
fn text(data: &Value, pointer: &str) -> String {
    data.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {data}"))
        .to_owned()
}

/// Whether Mist let the viewer in: a refused HLS viewer gets a 200 with a
/// playlist that ends at once with `#EXT-X-ERROR` (or another status).
fn admitted(answer: &support::mist::Fetched) -> bool {
    answer.status == 200 && !answer.text().contains("#EXT-X-ERROR")
}

/// Every role but the edge, as processes on the test's own topics,
/// database, key prefix and ClickHouse base.
struct Platform {
    _roles: Vec<RoleProcess>,
    kafka: frameworks_events::kafka::KafkaSettings,
    _db: support::TestDatabase,
    bridge: String,
    balancer_http: String,
    balancer_grpc: String,
    balancer_metrics: String,
    clickhouse_base: String,
}

impl Platform {
    async fn start() -> Self {
        let db = support::fresh_database().await;
        let kafka = support::kafka_with_topics().await;
        let prefix = kafka.catalogue.prefix.clone();
        let mut roles: Vec<RoleProcess> = ["relay", "projector", "live-state"]
            .into_iter()
            .map(|role| spawn_read_side_role(role, &kafka, &db.url, &prefix))
            .collect();
        let clickhouse_base = format!("test_{}", &Uuid::now_v7().simple().to_string()[20..]);
        let (_, data_keys) = frameworks_commands::secrets::SecretBox::generate("real-mist");
        roles.push(spawn_role(
            "analytics",
            &kafka,
            &[
                ("FRAMEWORKS_CLICKHOUSE_DATABASE", clickhouse_base.clone()),
                ("FRAMEWORKS_ANALYTICS_GROUP", format!("{prefix}-analytics")),
                ("FRAMEWORKS_ANALYTICS_BATCH_WAIT_MS", "100".into()),
                ("FRAMEWORKS_ANALYTICS_METRICS_LISTEN", "127.0.0.1:0".into()),
            ],
        ));
        let (bridge, bridge_port) = support::spawn_bridge(
            &kafka,
            &db.url,
            &data_keys,
            &prefix,
            &clickhouse_base,
            &[("FRAMEWORKS_SESSION_SECRET", "s".repeat(32))],
        );
        roles.push(bridge);
        let balancer_http = format!("127.0.0.1:{}", free_port());
        let balancer_grpc = format!("127.0.0.1:{}", free_port());
        let balancer_metrics = format!("127.0.0.1:{}", free_port());
        roles.push(spawn_role(
            "balancer",
            &kafka,
            &[
                ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
                ("FRAMEWORKS_DATA_KEYS", data_keys.clone()),
                ("FRAMEWORKS_REDIS_URL", support::redis_url()),
                ("FRAMEWORKS_LIVE_KEY_PREFIX", prefix.clone()),
                ("FRAMEWORKS_BALANCER_HTTP_LISTEN", balancer_http.clone()),
                ("FRAMEWORKS_BALANCER_GRPC_LISTEN", balancer_grpc.clone()),
                (
                    "FRAMEWORKS_BALANCER_METRICS_LISTEN",
                    balancer_metrics.clone(),
                ),
                ("FRAMEWORKS_BALANCER_EDGE_SCHEME", "http".into()),
                ("FRAMEWORKS_BALANCER_HEARTBEAT_SECONDS", "1".into()),
                // A killed edge leaves routing within seconds.
                ("FRAMEWORKS_BALANCER_STALE_AFTER_SECONDS", "3".into()),
                ("FRAMEWORKS_BALANCER_GONE_AFTER_SECONDS", "6".into()),
                (
                    "FRAMEWORKS_BALANCER_INSTANCE_ID",
                    format!("{prefix}-balancer"),
                ),
            ],
        ));
        let platform = Self {
            _roles: roles,
            kafka,
            _db: db,
            bridge: format!("http://127.0.0.1:{bridge_port}"),
            balancer_http,
            balancer_grpc,
            balancer_metrics,
            clickhouse_base,
        };
        let bridge_up = format!("{}/graphql", platform.bridge);
        eventually(Duration::from_secs(60), "the bridge answering", || {
            let url = bridge_up.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(2), async {
                    tokio::net::TcpStream::connect(
                        url.trim_start_matches("http://")
                            .trim_end_matches("/graphql"),
                    )
                    .await
                })
                .await
                .ok()?
                .ok()
                .map(drop)
            }
        })
        .await;
        platform
    }

    async fn graphql(&self, token: &str, query: &str) -> Value {
        let answer = post_json(
            &format!("{}/graphql", self.bridge),
            &json!({ "query": query }),
            Some(token),
        )
        .await;
        assert!(answer.get("errors").is_none(), "{query}: {answer}");
        answer["data"].clone()
    }

    /// A tenant signed up through `/auth/register`: its session token.
    async fn sign_up(&self) -> String {
        let email = format!("mist-{}@frameworks.localhost", Uuid::now_v7().simple());
        let answer = post_json(
            &format!("{}/auth/register", self.bridge),
            &json!({"email": email, "password": "correct horse battery", "tenantName": "Real Mist"}),
            None,
        )
        .await;
        answer["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .to_owned()
    }

    /// Whether GraphQL shows the stream with `playback_id` live.
    async fn is_live(&self, token: &str, playback_id: &str) -> bool {
        self.live_on(token, playback_id).await.is_some()
    }

    /// The node GraphQL shows the stream with `playback_id` live on.
    async fn live_on(&self, token: &str, playback_id: &str) -> Option<String> {
        let data = self
            .graphql(
                token,
                "{ streamsConnection { nodes { playbackId metrics { isLive nodeId } } } }",
            )
            .await;
        data["streamsConnection"]["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["playbackId"] == playback_id && n["metrics"]["isLive"] == true)
            .and_then(|n| n["metrics"]["nodeId"].as_str().map(str::to_owned))
    }

    /// Rows of `table` in the live analytics generation matching `filter`.
    async fn clickhouse_count(&self, table: &str, filter: &str) -> u64 {
        self.clickhouse_number("count()", table, filter).await
    }

    /// `what` (an aggregate) over the rows of `table` in the live analytics
    /// generation matching `filter`.
    async fn clickhouse_number(&self, what: &str, table: &str, filter: &str) -> u64 {
        self.clickhouse_query(&format!(
            "SELECT {what} FROM {{db}}.{table} FINAL WHERE {filter}"
        ))
        .await
    }

    /// The number `query` answers, with `{db}` the live analytics generation.
    async fn clickhouse_query(&self, query: &str) -> u64 {
        let database =
            frameworks_projections::generations::clickhouse::ClickHouseGenerations::database(
                &self.clickhouse_base,
                1,
            );
        let query = query.replace("{db}", &database);
        let url = url::Url::parse_with_params(
            &std::env::var("FRAMEWORKS_CLICKHOUSE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
            &[("query", query.as_str())],
        )
        .unwrap();
        let answer = fetch(url.as_str(), &[]).await;
        if answer.status != 200 {
            // The generation's database and tables appear with the analytics
            // role's first write (ClickHouse's UNKNOWN_DATABASE, UNKNOWN_TABLE);
            // any other error is the query's.
            let error = answer.text();
            assert!(
                error.contains("Code: 81") || error.contains("Code: 60"),
                "{query}: {error}"
            );
            return 0;
        }
        answer
            .text()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}", answer.text()))
    }
}

/// `frameworks edge` in front of `mist`, enrolled with `token`, with
/// `extra` settings.
fn spawn_edge(
    platform: &Platform,
    mist: &MistServer,
    token: &str,
    dir: &ScratchDir,
    (listen, metrics): (&str, &str),
    extra: &[(&str, String)],
) -> RoleProcess {
    let mut settings = vec![
        ("FRAMEWORKS_EDGE_LISTEN", listen.to_owned()),
        ("FRAMEWORKS_EDGE_METRICS_LISTEN", metrics.to_owned()),
        ("FRAMEWORKS_MIST_ADDRESS", mist.api()),
        ("FRAMEWORKS_MIST_USERNAME", support::mist::USERNAME.into()),
        ("FRAMEWORKS_MIST_PASSWORD", mist.password.clone()),
        (
            "FRAMEWORKS_EDGE_BALANCER",
            format!("http://{}", platform.balancer_grpc),
        ),
        ("FRAMEWORKS_EDGE_PUBLIC_HOST", mist.http()),
        (
            "FRAMEWORKS_EDGE_JOURNAL",
            format!("{}/journal.redb", dir.path()),
        ),
        (
            "FRAMEWORKS_EDGE_NODE_ID_FILE",
            format!("{}/node-id", dir.path()),
        ),
        (
            "FRAMEWORKS_EDGE_RECORDINGS_DIR",
            format!("{}/recordings", dir.path()),
        ),
        ("FRAMEWORKS_EDGE_ENROLMENT_TOKEN", token.to_owned()),
        ("FRAMEWORKS_EDGE_CONFIG_SYNC_SECONDS", "1".into()),
        ("FRAMEWORKS_EDGE_POLL_SECONDS", "1".into()),
        (
            "FRAMEWORKS_EDGE_HARDWARE_FINGERPRINT",
            // One machine, whichever process runs on it: the scratch dir's name.
            dir.0.file_name().unwrap().to_string_lossy().into_owned(),
        ),
    ];
    settings.extend(extra.iter().cloned());
    spawn_role("edge", &platform.kafka, &settings)
}

/// Pushes RTMP to `url` and checks Mist refuses it (ffmpeg fails within
/// 15 s); `what` names the push in the failure.
async fn push_refused(url: &str, log: &std::path::Path, what: &str) {
    let mut encoder = Encoder::rtmp(url, 20, log);
    let exited = encoder.exited_within(Duration::from_secs(15)).await;
    assert!(
        exited.is_some_and(|s| !s.success()),
        "{what} is refused: {exited:?}"
    );
}

/// Whether the edge behind `metrics` holds a control stream to the
/// balancer, its seed applied.
async fn connected(metrics: &str) -> bool {
    fetch_if_listening(&format!("http://{metrics}/metrics"), Duration::from_secs(2))
        .await
        .is_some_and(|answer| {
            answer
                .text()
                .lines()
                .any(|l| l == "frameworks_edge_control_connected 1")
        })
}

/// The recordings (`*.ts`) in an edge's scratch dir, oldest first (the
/// test records one stream, in `recordings/live+<stream id>/`).
fn recordings(dir: &ScratchDir) -> Vec<std::path::PathBuf> {
    let files = |dir: std::path::PathBuf| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path()))
    };
    let mut found: Vec<_> = files(dir.0.join("recordings"))
        .filter(|stream| {
            stream
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("live+"))
        })
        .flat_map(files)
        .filter(|path| path.extension().is_some_and(|e| e == "ts"))
        .collect();
    // Named by the unix milliseconds they started at.
    found.sort();
    found
}

/// Waits until `dir` holds a recording of at least 256 KiB beside the
/// `earlier` ones, and checks ffprobe finds the test pattern's H.264 and
/// AAC in it; its path.
async fn recording_written(dir: &ScratchDir, earlier: usize) -> std::path::PathBuf {
    let file = eventually(
        Duration::from_secs(60),
        "a recording written by Mist",
        || async {
            recordings(dir)
                .into_iter()
                .nth(earlier)
                .filter(|file| std::fs::metadata(file).is_ok_and(|m| m.len() >= 256 * 1024))
        },
    )
    .await;
    let codecs = probe_codecs(&file);
    assert!(
        codecs.contains(&"h264".to_owned()) && codecs.contains(&"aac".to_owned()),
        "{}: {codecs:?}",
        file.display()
    );
    file
}

/// The segments behind a `/play` HLS URL: follows the 307, the master
/// playlist and one variant; (the edge URL, the segment URLs).
async fn hls_segments(play_url: &str, headers: &[(&str, &str)]) -> (String, Vec<String>) {
    let redirect = fetch(play_url, headers).await;
    assert_eq!(redirect.status, 307, "{play_url}: {}", redirect.text());
    let edge_url = redirect.header("location").unwrap().to_owned();
    let master = fetch(&edge_url, headers).await;
    assert_eq!(master.status, 200, "{edge_url}: {}", master.text());
    let mut playlist_url = edge_url.clone();
    let mut playlist = master.text();
    if playlist.contains("#EXT-X-STREAM-INF") {
        playlist_url = playlist_entries(&edge_url, &playlist)[0].clone();
        let variant = fetch(&playlist_url, headers).await;
        assert_eq!(variant.status, 200, "{playlist_url}: {}", variant.text());
        playlist = variant.text();
    }
    (edge_url, playlist_entries(&playlist_url, &playlist))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_in_front_of_a_real_mistserver_publishes_plays_and_accounts() {
    let platform = Platform::start().await;
    let token = platform.sign_up().await;
    let stream = platform
        .graphql(
            &token,
            r#"mutation { createStream(input: {name: "real", record: true}) { __typename ... on Stream { id streamKey playbackId } } }"#,
        )
        .await;
    let key = text(&stream, "/createStream/streamKey");
    let playback_id = text(&stream, "/createStream/playbackId");
    let stream_id = text(&stream, "/createStream/id");
    let cluster = platform
        .graphql(
            &token,
            r#"mutation { createEdgeCluster(input: {clusterName: "Real Mist"}) { __typename ... on CreateEdgeClusterResponse { cluster { id } bootstrapToken { token } } } }"#,
        )
        .await;
    let enrolment = text(&cluster, "/createEdgeCluster/bootstrapToken/token");
    let cluster_id = text(&cluster, "/createEdgeCluster/cluster/id");

    let mut mist = MistServer::start("real-mist").await;
    let mist_api = mist.client();
    let version = config_sync::check_mist(&mist_api).await.unwrap();
    println!("MistServer {version}: every registered trigger offered");

    let edge_dir = ScratchDir::new("real-mist-edge");
    let edge_listen = format!("127.0.0.1:{}", free_port());
    let edge_metrics = format!("127.0.0.1:{}", free_port());
    let mut edge = spawn_edge(
        &platform,
        &mist,
        &enrolment,
        &edge_dir,
        (&edge_listen, &edge_metrics),
        &[],
    );

    // Trigger registration in Mist's real config, failing closed.
    let desired = config_sync::desired(&format!("http://{edge_listen}"));
    trigger_set_in_mist(&mist_api, &desired, "the trigger set in Mist's config").await;
    let (_, registered) = mist_api.config().await.unwrap();
    for blocking in ["PUSH_REWRITE", "PLAY_REWRITE", "USER_NEW", "PUSH_OUT_START"] {
        assert_eq!(
            registered[blocking][0].onfail.as_deref(),
            Some("deny"),
            "{blocking}"
        );
    }
    assert_eq!(
        registered["STREAM_SOURCE"][0].onfail.as_deref(),
        Some("offline")
    );
    // Drift repaired: an operator's edit is put back.
    let mut drifted = desired.clone();
    drifted.remove("USER_END");
    mist_api
        .set_triggers("someone-else", &drifted)
        .await
        .unwrap();
    trigger_set_in_mist(&mist_api, &desired, "the drifted trigger set repaired").await;
    // The stream template the balancer's seed names.
    eventually(
        Duration::from_secs(30),
        "the `live` template in Mist",
        || {
            let mist_api = &mist_api;
            async move {
                let streams = mist_api.streams().await.ok()?;
                (streams.get("live")?.get("source")? == "push://").then_some(())
            }
        },
    )
    .await;

    let rtmp_port = mist.listeners.rtmp_port;
    let rtmp = move |key: &str| format!("rtmp://127.0.0.1:{rtmp_port}/live/{key}");
    // A wrong key is refused by Mist on the edge's answer.
    push_refused(
        &rtmp("sk_never_issued"),
        &edge_dir.0.join("wrong.log"),
        "a wrong key",
    )
    .await;
    // So is a revoked one: the stream's key is rotated, and the key it had
    // publishes no more.
    let refreshed = platform
        .graphql(
            &token,
            &format!(
                r#"mutation {{ refreshStreamKey(id: "{stream_id}") {{ __typename ... on Stream {{ streamKey }} }} }}"#
            ),
        )
        .await;
    let revoked_key = key;
    let key = text(&refreshed, "/refreshStreamKey/streamKey");
    assert_ne!(key, revoked_key);
    push_refused(
        &rtmp(&revoked_key),
        &edge_dir.0.join("revoked.log"),
        "a revoked key",
    )
    .await;
    assert_eq!(
        metric(&edge_metrics, "frameworks_edge_pushes_refused_total", "").await,
        2.0,
        "both refusals counted"
    );

    // The right key publishes, and the stream is live in GraphQL.
    let first_packet = Instant::now();
    let _encoder = Encoder::rtmp(&rtmp(&key), 120, &edge_dir.0.join("encoder.log"));
    eventually(
        Duration::from_secs(30),
        "the stream live in GraphQL",
        || {
            let (platform, token, playback_id) = (&platform, &token, &playback_id);
            async move { platform.is_live(token, playback_id).await.then_some(()) }
        },
    )
    .await;
    println!(
        "figure: first RTMP packet to live in GraphQL: {:?}",
        first_packet.elapsed()
    );

    // Viewers through the balancer: the 307 to the real edge, the playlist
    // and three segments decoded by ffprobe.
    let play = format!(
        "http://{}/play/{playback_id}/hls/index.m3u8",
        platform.balancer_http
    );
    let since_live = Instant::now();
    let (edge_url, segments, first, one_viewer) =
        eventually(Duration::from_secs(30), "three HLS segments", || {
            let play = play.clone();
            async move {
                // One viewer's way in: /play, the 307, the playlists, a segment.
                let asked = Instant::now();
                let (edge_url, segments) = hls_segments(&play, &[]).await;
                if segments.len() < 3 {
                    return None;
                }
                let first = fetch(&segments[0], &[]).await;
                (first.status == 200).then(|| (edge_url, segments, first, asked.elapsed()))
            }
        })
        .await;
    println!(
        "figure: first viewer request to first segment: {one_viewer:?} ({:?} after live, until Mist listed three segments)",
        since_live.elapsed()
    );
    let warm = Instant::now();
    let (_, warm_segments) = hls_segments(&play, &[]).await;
    assert_eq!(fetch(&warm_segments[0], &[]).await.status, 200);
    println!(
        "figure: a viewer of a stream Mist already serves, request to first segment: {:?}",
        warm.elapsed()
    );
    assert!(
        edge_url.starts_with(&format!("http://{}/hls/{playback_id}/", mist.http())),
        "{edge_url}"
    );
    let recorded = edge_dir.0.join("segments.ts");
    let mut bytes = first.body;
    for segment in &segments[1..3] {
        let fetched = fetch(segment, &[]).await;
        assert_eq!(fetched.status, 200, "{segment}");
        bytes.extend(fetched.body);
    }
    std::fs::write(&recorded, &bytes).unwrap();
    let codecs = probe_codecs(&recorded);
    assert!(
        codecs.contains(&"h264".to_owned()) && codecs.contains(&"aac".to_owned()),
        "{codecs:?}"
    );

    // The stream records (`record: true`): the balancer asked the edge
    // where its ingest started, and Mist writes it to a file.
    let recording = recording_written(&edge_dir, 0).await;
    println!(
        "recording: {} ({} bytes so far) decodes as H.264 and AAC",
        recording.display(),
        std::fs::metadata(&recording).unwrap().len()
    );

    // A viewer who brings a token (a Bearer header, which Mist makes the
    // session token) watches a public stream: defect 2 of the issue.
    let bearer = "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2aWV3ZXIifQ.c2lnbmF0dXJl";
    let (_, with_token) = hls_segments(&play, &[("authorization", bearer)]).await;
    let fetched = fetch(&with_token[0], &[("authorization", bearer)]).await;
    assert_eq!(
        fetched.status, 200,
        "a token-bearing viewer of a public stream is admitted"
    );

    // LL-HLS (CMAF) and MP4 through the balancer too.
    let llhls = fetch(
        &format!(
            "http://{}/play/{playback_id}/llhls/index.m3u8",
            platform.balancer_http
        ),
        &[],
    )
    .await;
    assert_eq!(llhls.status, 307);
    let cmaf = fetch(llhls.header("location").unwrap(), &[]).await;
    assert_eq!(cmaf.status, 200, "{}", cmaf.text());
    assert!(cmaf.text().contains("#EXTM3U"));
    let mp4 = fetch(
        &format!("http://{}/play/{playback_id}/mp4", platform.balancer_http),
        &[],
    )
    .await;
    assert_eq!(mp4.status, 307);
    // ffprobe opens each as a player would, through the balancer's 307,
    // and finds the test pattern's H.264 and AAC.
    for protocol in ["llhls/index.m3u8", "mp4"] {
        let url = format!(
            "http://{}/play/{playback_id}/{protocol}",
            platform.balancer_http
        );
        let probed = url.clone();
        let codecs = tokio::task::spawn_blocking(move || probe_codecs(&probed))
            .await
            .unwrap();
        assert!(
            codecs.contains(&"h264".to_owned()) && codecs.contains(&"aac".to_owned()),
            "{url}: {codecs:?}"
        );
    }

    // Polling: Mist's clients and active streams reach the live state.
    eventually(
        Duration::from_secs(30),
        "viewers counted from Mist's clients",
        || {
            let (platform, token) = (&platform, &token);
            async move {
                let data = platform
                    .graphql(
                        token,
                        "{ streamsConnection { nodes { metrics { currentViewers } } } }",
                    )
                    .await;
                let viewers =
                    data["streamsConnection"]["nodes"][0]["metrics"]["currentViewers"].as_u64()?;
                (viewers >= 1).then_some(())
            }
        },
    )
    .await;

    // No socket of Mist's reaches past loopback.
    let remotes = support::mist::remote_addresses(&mist.group_pids());
    assert!(!remotes.is_empty(), "Mist's sockets are read");
    for (protocol, pair) in &remotes {
        let remote = pair.rsplit(" -> ").next().unwrap();
        assert!(
            remote.starts_with("127.")
                || remote.starts_with("0.0.0.0:")
                || remote.starts_with("[00000000"),
            "{protocol} {pair}: Mist sent traffic off loopback"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(mist.log_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "Mist's log holds push URLs with stream keys");

    // A thousand viewers, each with a session token of its own: Mist fires
    // USER_NEW for each (blocking) and, once each session times out,
    // USER_END, writing it and closing the socket at once. Every one is
    // accounted in ClickHouse exactly once.
    const SESSIONS: u64 = 1_000;
    let started = Instant::now();
    let viewers = futures::stream::iter(0..SESSIONS)
        .map(|n| {
            let url = format!("{edge_url}?tkn={}", 9_000_000_000u64 + n);
            async move {
                // A player asks again when no playlist comes, or when Mist
                // ends a session it had just started (it does, now and then,
                // under a burst of new sessions): so does this one, three
                // times at most, counting each.
                let mut asked_again = (0u32, 0u32);
                for _ in 0..3 {
                    match try_fetch(&url, &[], Duration::from_secs(10)).await {
                        Some(answer) if admitted(&answer) => return (true, asked_again),
                        Some(_) => asked_again.1 += 1,
                        None => asked_again.0 += 1,
                    }
                }
                (false, asked_again)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<(bool, (u32, u32))>>()
        .await;
    let unanswered: u32 = viewers.iter().map(|(_, (none, _))| none).sum();
    let ended_at_once: u32 = viewers.iter().map(|(_, (_, ended))| ended).sum();
    assert!(viewers.iter().all(|(a, _)| *a), "every viewer admitted");
    println!(
        "{SESSIONS} viewers in {:?}: asked again {unanswered} times after 10 s without a playlist, \
         {ended_at_once} times after Mist ended the session it had just started",
        started.elapsed()
    );
    // Every USER_END Mist fires (each one written, its socket closed at
    // once) is accounted exactly once: each of our sessions has ended, and
    // ClickHouse holds as many ends as the edge journaled distinct
    // USER_ENDs. (Mist's own log is no count: under a burst it drops
    // lines. Nor is "every start has its end": a session Mist ended at once
    // and the player's retry started again has two USER_NEWs and one end.)
    let ours = "match(session_id, '/9000000[0-9]{3}$')";
    // Ours still open: a session Mist ended at once and the player's retry
    // started again may have one start more than its ends; no other may.
    let ours_open = format!(
        "SELECT count() FROM (SELECT session_id, sum(delta) AS open \
         FROM {{db}}.viewer_sessions FINAL WHERE {ours} GROUP BY session_id HAVING open != 0)"
    );
    let retried = u64::from(unanswered + ended_at_once);
    // Distinct USER_ENDs: Mist sends one again (same UUID) when its socket
    // failed while sending; the journal keeps it once.
    let taken = || {
        metric(
            &edge_metrics,
            "frameworks_edge_triggers_journaled_total",
            "USER_END",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut ours_ended, mut open, mut ends, mut taken_now) = (0, 0, 0, 0);
    // A USER_END for a session Mist ended before it counted a second on
    // the stream names no stream: the edge fills in the stream USER_NEW
    // admitted the session to. One about a session the edge never admitted
    // stays raw at the ingress, counted, and is no viewer session.
    while Instant::now() < deadline {
        ours_ended = platform
            .clickhouse_number(
                "uniqExact(session_id)",
                "viewer_sessions",
                &format!("delta = -1 AND {ours}"),
            )
            .await;
        open = platform.clickhouse_query(&ours_open).await;
        ends = platform
            .clickhouse_count("viewer_sessions", "delta = -1")
            .await;
        taken_now = taken().await as u64;
        let elsewhere = metric(
            &platform.balancer_metrics,
            "frameworks_balancer_triggers_other_stream_total",
            "USER_END",
        )
        .await as u64;
        if ours_ended == SESSIONS && open <= retried && ends + elsewhere == taken_now {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let balancer = |name: &'static str| metric(&platform.balancer_metrics, name, "USER_END");
    let elsewhere = metric(
        &platform.balancer_metrics,
        "frameworks_balancer_triggers_other_stream_total",
        "USER_END",
    )
    .await as u64;
    assert!(
        ours_ended == SESSIONS && open <= retried && ends + elsewhere == taken_now,
        "every session's USER_END accounted once: {ours_ended} of {SESSIONS} of ours ended, \
         {open} of ours open ({retried} asked again), {ends} ends in ClickHouse, {taken_now} distinct USER_ENDs the edge \
         journaled ({} sent again by Mist); \
         at the ingress, USER_ENDs of no platform stream {}, not understood {}",
        metric(
            &edge_metrics,
            "frameworks_edge_triggers_repeated_total",
            "USER_END"
        )
        .await,
        balancer("frameworks_balancer_triggers_other_stream_total").await,
        balancer("frameworks_balancer_triggers_unparsed_total").await,
    );
    println!(
        "figure: {SESSIONS} of {SESSIONS} sessions' USER_ENDs accounted once, {:?} after the first viewer \
         ({} distinct USER_ENDs journaled by the edge: {ends} session ends in ClickHouse, \
         {elsewhere} about no platform stream)",
        started.elapsed(),
        taken().await
    );
    println!(
        "USER_ENDs naming no stream, given the one USER_NEW admitted the session to: {}",
        metric(
            &edge_metrics,
            "frameworks_edge_session_streams_completed_total",
            ""
        )
        .await
    );
    assert_eq!(
        platform
            .clickhouse_number(
                "uniqExact(session_id)",
                "viewer_sessions",
                &format!("delta = 1 AND {ours}")
            )
            .await,
        SESSIONS,
        "each session started (a player that asks again may start its session again)"
    );

    // A JWT playback policy, enforced by Mist on the edge's answer.
    let signing_key = platform
        .graphql(
            &token,
            r#"mutation { createSigningKey(input: {name: "player"}) { __typename ... on CreateSigningKeySuccess { privateKeyPem signingKey { kid } } } }"#,
        )
        .await;
    let pem = text(&signing_key, "/createSigningKey/privateKeyPem");
    let kid = text(&signing_key, "/createSigningKey/signingKey/kid");
    platform
        .graphql(
            &token,
            &format!(
                r#"mutation {{ setPlaybackPolicy(input: {{streamId: "{stream_id}", policy: {{type: JWT, jwt: {{requiredAudience: ["player"]}}}}}}) {{ __typename }} }}"#
            ),
        )
        .await;
    let jwt = support::sign_playback_jwt(
        &pem,
        &kid,
        &json!({"aud": "player", "exp": chrono::Utc::now().timestamp() + 600}),
    );
    let guarded = |query: String| format!("{edge_url}{query}");
    eventually(
        Duration::from_secs(30),
        "a viewer without a token refused by Mist",
        || {
            let url = guarded(format!("?tkn={}", Uuid::now_v7().simple()));
            async move { (!admitted(&fetch(&url, &[]).await)).then_some(()) }
        },
    )
    .await;
    let (_, protected) = hls_segments(&format!("{play}?jwt={jwt}"), &[]).await;
    assert!(
        !protected.is_empty(),
        "a viewer with a valid token is admitted"
    );
    let watched = fetch(&protected[0], &[]).await;
    assert_eq!(watched.status, 200, "and gets segments");
    let wrong_audience = support::sign_playback_jwt(
        &pem,
        &kid,
        &json!({"aud": "elsewhere", "exp": chrono::Utc::now().timestamp() + 600}),
    );
    let refused = fetch(&guarded(format!("?jwt={wrong_audience}")), &[]).await;
    assert!(
        !admitted(&refused),
        "a token for another audience is refused: {}",
        refused.text()
    );

    // Trigger answer times, as the edge measured them.
    let metrics = fetch(&format!("http://{edge_metrics}/metrics"), &[])
        .await
        .text();
    for trigger in ["PUSH_REWRITE", "PLAY_REWRITE", "USER_NEW"] {
        let quantile = |q: &str| {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with("frameworks_edge_trigger_answer_seconds{")
                        && l.contains(&format!("trigger=\"{trigger}\""))
                        && l.contains(&format!("quantile=\"{q}\""))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        println!(
            "figure: {trigger} answered in p50 {:.2} ms, p99 {:.2} ms",
            quantile("0.5") * 1000.0,
            quantile("0.99") * 1000.0
        );
    }

    // Blocking triggers fail closed when the edge is down: Mist refuses
    // the viewer by itself.
    edge.kill();
    // Mist tries the handler five times, then applies `onfail`: it refuses
    // the viewer ("playback rejected by PLAY_REWRITE trigger" in its log)
    // and holds the connection without an answer until its own timeout.
    let unreachable = try_fetch(
        &guarded(format!("?tkn=edge-down-{}", Uuid::now_v7().simple())),
        &[],
        Duration::from_secs(20),
    )
    .await;
    assert!(
        unreachable.as_ref().is_none_or(|answer| !admitted(answer)),
        "no viewer is let in unchecked: {:?}",
        unreachable.map(|answer| answer.text())
    );

    // Mist killed and restarted under the push: the edge (back up) re-syncs
    // its config and the stream comes back.
    let mut edge = spawn_edge(
        &platform,
        &mist,
        &enrolment,
        &edge_dir,
        (&edge_listen, &edge_metrics),
        &[],
    );
    mist.kill();
    mist.launch().await;
    trigger_set_in_mist(
        &mist_api,
        &desired,
        "the trigger set back in the restarted Mist",
    )
    .await;
    // Back over SRT this time: ingest by `streamid`, checked as RTMP is.
    let srt = format!(
        "srt://127.0.0.1:{}?streamid={key}",
        mist.listeners.srt_port.unwrap()
    );
    let srt_encoder = Encoder::srt(&srt, 120, &edge_dir.0.join("encoder-srt.log"));
    let protected_play = format!("{play}?jwt={jwt}");
    eventually(
        Duration::from_secs(45),
        "HLS served again after the restart, pushed over SRT",
        || {
            let play = protected_play.clone();
            async move {
                let (_, segments) = hls_segments(&play, &[]).await;
                (!segments.is_empty()).then_some(())
            }
        },
    )
    .await;
    // The push that came back is recorded anew, beside the first recording.
    recording_written(&edge_dir, 1).await;

    // Ingest exclusivity across edges and reconnects (defect 4 of the
    // issue): a second edge in the cluster, in front of a MistServer of its
    // own, and hot (a 1 Mbps uplink: any viewer is over its limit there).
    let node_a = node_id(&edge_dir);
    let second_token = platform
        .graphql(
            &token,
            &format!(
                r#"mutation {{ createEnrollmentToken(clusterId: "{cluster_id}", name: "second") {{ __typename ... on CreateEnrollmentTokenResponse {{ bootstrapToken {{ token }} }} }} }}"#
            ),
        )
        .await;
    let second_token = text(&second_token, "/createEnrollmentToken/bootstrapToken/token");
    let mut mist_b = MistServer::start("real-mist-b").await;
    let dir_b = ScratchDir::new("real-mist-edge-b");
    let (listen_b, metrics_b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let hot = [("FRAMEWORKS_EDGE_BANDWIDTH_LIMIT_MBPS", "1".to_owned())];
    let spawn_b = || {
        spawn_edge(
            &platform,
            &mist_b,
            &second_token,
            &dir_b,
            (&listen_b, &metrics_b),
            &hot,
        )
    };
    let mut edge_b = spawn_b();
    trigger_set_in_mist(
        &mist_b.client(),
        &config_sync::desired(&format!("http://{listen_b}")),
        "the trigger set in the second Mist",
    )
    .await;
    let rtmp_b = format!("rtmp://127.0.0.1:{}/live/{key}", mist_b.listeners.rtmp_port);
    for round in ["first connection", "reconnected"] {
        eventually(
            Duration::from_secs(30),
            "the second edge connected to the balancer",
            || async { connected(&metrics_b).await.then_some(()) },
        )
        .await;
        let log = dir_b
            .0
            .join(format!("refused-{}.log", round.replace(' ', "-")));
        push_refused(
            &rtmp_b,
            &log,
            &format!("{round}: a second encoder while the stream is live on the first edge"),
        )
        .await;
        assert_eq!(
            metric(&metrics_b, "frameworks_edge_pushes_refused_total", "").await,
            1.0,
            "{round}: the refusal is counted"
        );
        assert_eq!(
            platform.live_on(&token, &playback_id).await.as_deref(),
            Some(node_a.as_str()),
            "{round}: the stream stays on the first edge"
        );
        if round == "first connection" {
            edge_b.kill();
            edge_b = spawn_b();
        }
    }
    // The first encoder stops; once the stream has ended on the first
    // edge, the second edge may take it.
    drop(srt_encoder);
    let ended = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the stream ended on the first edge",
        || async {
            platform
                .live_on(&token, &playback_id)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    println!(
        "the first edge's stream ended {:?} after its encoder stopped",
        ended.elapsed()
    );
    let _encoder_b = Encoder::rtmp(&rtmp_b, 120, &dir_b.0.join("encoder.log"));
    let node_b = eventually(
        Duration::from_secs(30),
        "the stream live on the second edge",
        || async {
            let node = platform.live_on(&token, &playback_id).await?;
            (node != node_a).then_some(node)
        },
    )
    .await;
    assert_eq!(node_b, node_id(&dir_b));
    recording_written(&dir_b, 0).await;

    // Every edge hot (the first one gone, the second over its limit):
    // viewers are still offered the least-loaded edge that has the stream
    // (defect 7), and the degraded answer is counted.
    edge.kill();
    mist.kill();
    let degraded = || {
        metric(
            &platform.balancer_metrics,
            "frameworks_balancer_placements_over_limits_total",
            "",
        )
    };
    let degraded_before = degraded().await;
    let hot_edge = format!("http://{}/hls/{playback_id}/", mist_b.http());
    // While the first edge is only stale (no heartbeat for 3 s) it is still
    // the fallback; once gone (6 s), the hot edge is offered (and admits the
    // viewer by the stream's JWT policy).
    eventually(
        Duration::from_secs(30),
        "viewers offered the hot edge",
        || async {
            let redirect = fetch(&protected_play, &[]).await;
            (redirect.status == 307 && redirect.header("location")?.starts_with(&hot_edge))
                .then_some(())
        },
    )
    .await;
    let segment = eventually(
        Duration::from_secs(30),
        "a segment from the hot edge",
        || async { hls_segments(&protected_play, &[]).await.1.first().cloned() },
    )
    .await;
    assert_eq!(fetch(&segment, &[]).await.status, 200);
    assert!(
        degraded().await > degraded_before,
        "a placement over every limit is counted"
    );
    edge_b.kill();
    mist_b.kill();
    // Through every kill and restart above, no session ended more often
    // than it started. (Not "ended once": for HLS, Mist may open a session
    // token twice within a second, firing USER_NEW twice and a USER_END
    // with no connector for the duplicate at once; each is a trigger of
    // its own, and starts and ends still pair up.)
    let over_ended = platform
        .clickhouse_query(
            "SELECT count() FROM (SELECT session_id, sum(delta) AS net \
             FROM {db}.viewer_sessions FINAL GROUP BY session_id HAVING net < 0)",
        )
        .await;
    assert_eq!(
        over_ended, 0,
        "sessions ended more often than they started in ClickHouse"
    );

    // A MistServer that does not answer: the edge says so, retries with
    // backoff and never hangs; once Mist answers, its config is synced.
    let mut edge = spawn_edge(
        &platform,
        &mist,
        &enrolment,
        &edge_dir,
        (&edge_listen, &edge_metrics),
        &[],
    );
    eventually(
        Duration::from_secs(30),
        "the edge retrying a MistServer that does not answer",
        || async {
            let failures = metric(
                &edge_metrics,
                "frameworks_edge_mist_errors_total",
                "version",
            )
            .await;
            (failures >= 3.0).then_some(())
        },
    )
    .await;
    assert!(
        edge.0.try_wait().unwrap().is_none(),
        "the edge waits for Mist"
    );
    mist.launch().await;
    trigger_set_in_mist(
        &mist_api,
        &desired,
        "the trigger set in Mist once it answers",
    )
    .await;
    edge.kill();
}

/// The node id an edge was enrolled as, from its scratch dir.
fn node_id(dir: &ScratchDir) -> String {
    std::fs::read_to_string(dir.0.join("node-id"))
        .unwrap()
        .trim()
        .to_owned()
}
