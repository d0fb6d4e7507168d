//! The published `livepeer-frameworks` client (PyPI, 0.4.0), unchanged,
//! against the bridge with the relay and projector running as processes:
//! the scripts in `tests/conformance/` drive streams and stream keys, API
//! tokens and signing keys, auth, scopes, tenant isolation, limits and error
//! codes, asserting the values returned.
//!
//! The client is installed once into a virtualenv under the cache dir.

// The helpers below fail the test by panicking, as test code should.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use frameworks_commands::telemetry::{TelemetryCommand, TelemetryPublisher};
use frameworks_events::EventPayload;
use frameworks_events::kafka::EventPublisher;
use frameworks_events::proto::v1::telemetry::{
    IngestStarted, NodeHeartbeat, NodeMetrics, Track, TrackListUpdated, ViewerSessionStarted,
};

use frameworks_commands::aggregates::api_token::{ApiToken, ApiTokenCommand, ApiTokenOutcome};
use frameworks_commands::aggregates::infrastructure::{
    Cluster, ClusterCapacity, ClusterCommand, ClusterOutcome, Node, NodeCommand, NodeIdentity,
    ServiceReport, enrol_node,
};
use frameworks_commands::aggregates::tenant::{Tenant, TenantCommand};
use frameworks_commands::aggregates::user::{Role, User, UserCommand};
use frameworks_commands::{CommandBus, CommandContext, SecretBox};
use frameworks_events::AggregateType;
use frameworks_events::kafka::KafkaSettings;
use frameworks_projections::control_plane;
use frameworks_projections::live::LiveState;
use frameworks_projections::read_your_writes::wait_for;
use support::{
    client_python, drop_topics, fresh_database, kafka_with_topics, redis_url, repo_root,
    spawn_role, within,
};
use uuid::Uuid;

/// What an edge reports about a live stream, again and again: an ingest
/// start, a track list and a viewer connecting.
async fn feed_edge_telemetry(kafka: KafkaSettings, tenant: Uuid, stream: String) {
    let publisher = TelemetryPublisher::new(EventPublisher::new(&kafka, "test-edge").unwrap());
    let fact = |payload: EventPayload| TelemetryCommand {
        subject_id: stream.clone(),
        tenant_id: Some(tenant),
        occurred_at: Utc::now(),
        payload,
        event_id: None,
        correlation_id: Uuid::now_v7(),
    };
    loop {
        let facts = [
            fact(
                IngestStarted {
                    node_id: "edge-1".into(),
                    internal_name: format!("live+{stream}"),
                    protocol: "RTMP".into(),
                    source_ip: "198.51.100.7".into(),
                }
                .into(),
            ),
            fact(
                TrackListUpdated {
                    node_id: "edge-1".into(),
                    tracks: vec![
                        Track {
                            track_id: 1,
                            kind: "video".into(),
                            codec: "H264".into(),
                            width: 1280,
                            height: 720,
                            frames_per_second: 30.0,
                            bitrate_bps: 2_500_000,
                            ..Default::default()
                        },
                        Track {
                            track_id: 2,
                            kind: "audio".into(),
                            codec: "AAC".into(),
                            sample_rate: 48_000,
                            channels: 2,
                            bitrate_bps: 128_000,
                            ..Default::default()
                        },
                    ],
                }
                .into(),
            ),
            fact(
                ViewerSessionStarted {
                    session_id: "v1".into(),
                    node_id: "edge-1".into(),
                    connector: "HLS".into(),
                    viewer_ip: "203.0.113.9".into(),
                    country_code: "NL".into(),
                    ..Default::default()
                }
                .into(),
            ),
        ];
        for verdict in publisher.publish_batch(&facts).await {
            verdict.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[derive(Debug, Clone)]
struct Infrastructure {
    /// Tenant A's own cluster, with one enrolled node.
    own: String,
    /// A platform cluster every tenant may use.
    shared: String,
    /// Another tenant's cluster.
    foreign: String,
    node: String,
}

async fn infrastructure(bus: &CommandBus, tenant: Uuid) -> Infrastructure {
    let capacity = ClusterCapacity {
        max_concurrent_streams: 250,
        max_concurrent_viewers: 10_000,
        max_bandwidth_mbps: 4_000,
    };
    let create = |name: &str, shared: bool| ClusterCommand::Create {
        name: name.into(),
        region: "eu-west".into(),
        base_url: format!("https://{name}.example.net"),
        shared,
        capacity,
    };
    let owner = CommandContext::for_tenant(tenant, "test:owner");
    let operator = CommandContext::operator("test:operator");
    let other = CommandContext::for_tenant(Uuid::now_v7(), "test:other");
    let (own, shared, foreign) = (
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    );
    for (id, command, ctx) in [
        (&own, create("own", false), &owner),
        (&shared, create("shared", true), &operator),
        (&foreign, create("foreign", false), &other),
    ] {
        bus.execute::<Cluster>(id, &command, ctx, None)
            .await
            .unwrap();
    }
    let issue = ClusterCommand::IssueEnrolmentToken {
        ttl_seconds: 600,
        name: "first edge".into(),
    };
    let ClusterOutcome::EnrolmentToken { token, .. } = bus
        .execute::<Cluster>(&own, &issue, &owner, None)
        .await
        .unwrap()
    else {
        panic!("a token is issued");
    };
    let identity = NodeIdentity {
        hardware_fingerprint: format!("fp-{}", Uuid::now_v7().simple()),
        hostname: "edge-ams-1".into(),
        edge_version: "0.3.11".into(),
        public_host: "edge-ams-1.example.net".into(),
        latitude: 52.37,
        longitude: 4.9,
    };
    let node = enrol_node(bus, &token, &identity, &owner)
        .await
        .unwrap()
        .node_id;
    // What its edge daemon reports running.
    let started_at = Utc::now() - chrono::Duration::minutes(30);
    let services = NodeCommand::ReportServices(vec![
        ServiceReport {
            service_id: "edge".into(),
            version: "0.3.11".into(),
            protocol: "http".into(),
            port: 18007,
            health_endpoint: "/health".into(),
            process_id: 4100,
            started_at,
        },
        ServiceReport {
            service_id: "mistserver".into(),
            version: "fw-51c613a4".into(),
            protocol: "http".into(),
            port: 8080,
            health_endpoint: String::new(),
            process_id: 4101,
            started_at: started_at + chrono::Duration::seconds(1),
        },
    ]);
    bus.execute::<Node>(&node, &services, &owner, None)
        .await
        .unwrap();
    // The platform's cluster gets a node too (that never reports: offline).
    let ClusterOutcome::EnrolmentToken { token, .. } = bus
        .execute::<Cluster>(&shared, &issue, &operator, None)
        .await
        .unwrap()
    else {
        panic!("a token is issued");
    };
    let platform_identity = NodeIdentity {
        hardware_fingerprint: format!("fp-{}", Uuid::now_v7().simple()),
        hostname: "edge-fra-1".into(),
        public_host: "edge-fra-1.example.net".into(),
        latitude: 50.11,
        longitude: 8.68,
        ..identity
    };
    let platform_node = enrol_node(bus, &token, &platform_identity, &operator)
        .await
        .unwrap()
        .node_id;
    for id in [&own, &shared, &foreign] {
        let version = bus
            .store()
            .version(AggregateType::Cluster, id)
            .await
            .unwrap();
        wait_for(
            bus.store().pool(),
            control_plane::NAME,
            AggregateType::Cluster,
            id,
            version,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }
    for node in [&node, &platform_node] {
        wait_for(
            bus.store().pool(),
            control_plane::NAME,
            AggregateType::Node,
            node,
            bus.store()
                .version(AggregateType::Node, node)
                .await
                .unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }
    Infrastructure {
        own,
        shared,
        foreign,
        node,
    }
}

/// A load sample as the edge daemon reports it, 10 s long: `cpu` percent,
/// 2 of 8 GiB of memory, 250 Mbit/s out and 20 Mbit/s in.
fn load_sample(cpu_percent: f64, network_rx_bytes: u64) -> NodeMetrics {
    NodeMetrics {
        cpu_percent,
        memory_used_bytes: 2 * 1024 * 1024 * 1024,
        memory_total_bytes: 8 * 1024 * 1024 * 1024,
        bandwidth_up_bps: 250_000_000,
        bandwidth_down_bps: 20_000_000,
        bandwidth_limit_bps: 1_000_000_000,
        disk_used_bytes: 10_000_000_000,
        disk_total_bytes: 100_000_000_000,
        shm_used_bytes: 512 * 1024 * 1024,
        shm_total_bytes: 2 * 1024 * 1024 * 1024,
        network_rx_bytes,
        network_tx_bytes: network_rx_bytes * 12,
        active_streams: 3,
        active_viewers: 0,
        window_ms: 10_000,
    }
}

/// The node's heartbeat and load, through Kafka into the live state and the
/// analytics: three samples in the hour starting at `hour` (the second one
/// overloaded), one in the next hour, and the current one.
async fn report_node_load(kafka: &KafkaSettings, tenant: Uuid, node: &str, hour: DateTime<Utc>) {
    let publisher = TelemetryPublisher::new(EventPublisher::new(kafka, "test-edge").unwrap());
    let fact = |occurred_at: DateTime<Utc>, payload: EventPayload| TelemetryCommand {
        subject_id: node.to_owned(),
        tenant_id: Some(tenant),
        occurred_at,
        payload,
        event_id: None,
        correlation_id: Uuid::now_v7(),
    };
    let minutes = |m: i64| hour + chrono::Duration::minutes(m);
    let facts = [
        fact(minutes(10), load_sample(20.0, 1_000).into()),
        fact(minutes(20), load_sample(95.0, 2_000).into()),
        fact(minutes(30), load_sample(40.0, 3_000).into()),
        fact(minutes(65), load_sample(30.0, 4_000).into()),
        fact(
            Utc::now(),
            NodeHeartbeat {
                edge_version: "0.3.11".into(),
                mist_version: "3.6".into(),
                uptime_seconds: 600,
                mist_healthy: true,
            }
            .into(),
        ),
        fact(Utc::now(), load_sample(42.5, 5_000).into()),
    ];
    for verdict in publisher.publish_batch(&facts).await {
        verdict.unwrap();
    }
}

/// GraphiQL's page, and every script and stylesheet it loads, come from the
/// bridge: the files `compose/graphiql` fetched, byte for byte.
async fn graphiql_is_served_by_the_bridge_alone(port: u16) {
    let assets = std::path::PathBuf::from(std::env::var("FRAMEWORKS_BRIDGE_GRAPHIQL_ASSETS").expect(
        "FRAMEWORKS_BRIDGE_GRAPHIQL_ASSETS names GraphiQL's assets (compose/test sets it: compose/graphiql dir)",
    ));
    let page = support::mist::fetch(&format!("http://127.0.0.1:{port}/graphql"), &[]).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the GraphiQL page names an outside host:\n{html}"
    );
    let referenced: Vec<&str> = html
        .split('"')
        .filter(|value| value.starts_with("/graphql/assets/"))
        .collect();
    assert_eq!(referenced.len(), 4, "{referenced:?}");
    for path in referenced {
        let served = support::mist::fetch(&format!("http://127.0.0.1:{port}{path}"), &[]).await;
        assert_eq!(served.status, 200, "{path}");
        let file = assets.join(path.trim_start_matches("/graphql/assets/"));
        assert!(
            served.body == std::fs::read(&file).unwrap(),
            "{path} is not {}",
            file.display()
        );
    }
    let missing = support::mist::fetch(
        &format!("http://127.0.0.1:{port}/graphql/assets/none.js"),
        &[],
    )
    .await;
    assert_eq!(missing.status, 404);
}

fn wait_listening(port: u16) {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..300 {
        if TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the bridge did not listen on {port} within 30s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_client_drives_every_operation_it_has_here() {
    let python = tokio::task::spawn_blocking(client_python).await.unwrap();
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let (secrets, data_keys) = SecretBox::generate("conformance");
    let session_secret = Uuid::now_v7().simple().to_string().repeat(2);
    let live_prefix = format!("test-{}", Uuid::now_v7().simple());
    let clickhouse_base = format!("test_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let roles = [
        spawn_role(
            "analytics",
            &kafka,
            &[
                ("FRAMEWORKS_CLICKHOUSE_DATABASE", clickhouse_base.clone()),
                (
                    "FRAMEWORKS_ANALYTICS_GROUP",
                    format!("{live_prefix}-analytics"),
                ),
                ("FRAMEWORKS_ANALYTICS_METRICS_LISTEN", "127.0.0.1:0".into()),
            ],
        ),
        support::spawn_read_side_role("live-state", &kafka, &db.url, &live_prefix),
        support::spawn_read_side_role("relay", &kafka, &db.url, &live_prefix),
        support::spawn_read_side_role("projector", &kafka, &db.url, &live_prefix),
    ];

    // Tenant A with a user (who signs in over REST) and a read-only API token.
    let bus = CommandBus::new(db.store.clone(), secrets);
    let tenant = Uuid::now_v7();
    let ctx = CommandContext::for_tenant(tenant, "test:conformance");
    let create = TenantCommand::Create {
        name: "conformance".into(),
        tier: "pro".into(),
        region: "eu-west".into(),
    };
    bus.execute::<Tenant>(&tenant.to_string(), &create, &ctx, None)
        .await
        .unwrap();
    let user = Uuid::now_v7().to_string();
    let email = format!("a-{}@example.com", Uuid::now_v7().simple());
    let password = "a long enough password";
    let register = UserCommand::Register {
        email: email.clone(),
        display_name: "A".into(),
        password: password.into(),
        role: Role::Owner,
    };
    bus.execute::<User>(&user, &register, &ctx, None)
        .await
        .unwrap();
    let token_id = Uuid::now_v7().to_string();
    let issue = ApiTokenCommand::Create {
        name: "reader".into(),
        scopes: vec!["streams:read".into()],
        expires: None,
        created_by_user_id: user.clone(),
    };
    let ApiTokenOutcome::Created {
        token: read_token, ..
    } = bus
        .execute::<ApiToken>(&token_id, &issue, &ctx, None)
        .await
        .unwrap()
    else {
        panic!("a token is created");
    };
    for (aggregate, id, version) in [
        (AggregateType::User, &user, 1),
        (AggregateType::ApiToken, &token_id, 1),
    ] {
        wait_for(
            db.store.pool(),
            control_plane::NAME,
            aggregate,
            id,
            version,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }

    let infrastructure = infrastructure(&bus, tenant).await;
    let (bridge, port) = support::spawn_bridge(
        &kafka,
        &db.url,
        &data_keys,
        &live_prefix,
        &clickhouse_base,
        &[
            ("FRAMEWORKS_SESSION_SECRET", session_secret.clone()),
            ("FRAMEWORKS_BRIDGE_RATE_LIMIT_PER_MINUTE", "100000".into()),
            ("FRAMEWORKS_BRIDGE_GRAPHIQL", "true".into()),
        ],
    );
    let (limited, limited_port) = support::spawn_bridge(
        &kafka,
        &db.url,
        &data_keys,
        &live_prefix,
        &clickhouse_base,
        &[
            ("FRAMEWORKS_SESSION_SECRET", session_secret.clone()),
            ("FRAMEWORKS_BRIDGE_RATE_LIMIT_PER_MINUTE", "5".into()),
        ],
    );
    tokio::task::spawn_blocking(move || {
        wait_listening(port);
        wait_listening(limited_port);
    })
    .await
    .unwrap();
    graphiql_is_served_by_the_bridge_alone(port).await;

    // The node reports its load, so the live state and the analytics have
    // something to show.
    let three_hours_ago = Utc::now() - chrono::Duration::hours(3);
    let metrics_hour = three_hours_ago
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    report_node_load(&kafka, tenant, &infrastructure.node, metrics_hour).await;
    let live = LiveState::connect(&redis_url(), &live_prefix)
        .await
        .unwrap();
    within(
        Duration::from_secs(60),
        "the node's load in the live state",
        async {
            while live.node(&infrastructure.node).await.unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    let clickhouse = support::clickhouse(&clickhouse_base);
    let analytics = clickhouse
        .client()
        .with_database(format!("{clickhouse_base}_g1"));
    within(
        Duration::from_secs(60),
        "the node's samples in the analytics",
        async {
            while analytics
                .query("SELECT count() FROM node_metrics")
                .fetch_one::<u64>()
                .await
                .unwrap_or(0)
                < 5
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    for script in [
        "streams.py",
        "tokens_and_keys.py",
        "clusters.py",
        "marketplace.py",
        "edges.py",
    ] {
        let script = repo_root().join("tests/conformance").join(script);
        let (python, email, read_token) = (python.clone(), email.clone(), read_token.clone());
        let infrastructure = infrastructure.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(&script)
                .env("FW_URL", format!("http://127.0.0.1:{port}/graphql"))
                .env(
                    "FW_LIMITED_URL",
                    format!("http://127.0.0.1:{limited_port}/graphql"),
                )
                .env("FW_EMAIL_A", &email)
                .env("FW_PASSWORD_A", password)
                .env("FW_READ_TOKEN", &read_token)
                .env("FW_CLUSTER_A", &infrastructure.own)
                .env("FW_CLUSTER_SHARED", &infrastructure.shared)
                .env("FW_CLUSTER_B", &infrastructure.foreign)
                .env("FW_NODE_A", &infrastructure.node)
                .env("FW_METRICS_HOUR", metrics_hour.to_rfc3339())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        print!("{stdout}");
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("checks passed"), "{stdout}");
    }

    // Subscriptions: the script says which stream to feed once it has subscribed.
    let script = repo_root().join("tests/conformance/subscriptions.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("FW_URL", format!("http://127.0.0.1:{port}/graphql"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut printed = String::new();
    let mut feeding = None;
    while let Some(line) = within(
        Duration::from_secs(120),
        "the subscription script",
        lines.recv(),
    )
    .await
    {
        println!("{line}");
        if let Some(rest) = line.strip_prefix("publish ") {
            let (tenant, stream) = rest.split_once(' ').unwrap();
            feeding = Some(tokio::spawn(feed_edge_telemetry(
                kafka.clone(),
                tenant.parse().unwrap(),
                stream.to_owned(),
            )));
        }
        printed.push_str(&line);
        printed.push('\n');
    }
    let output = child.wait_with_output().unwrap();
    if let Some(feeding) = feeding {
        feeding.abort();
    }
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("subscriptions: "), "{printed}");

    drop((bridge, limited, roles));
    drop_topics(&kafka).await;
    db.drop_now().await;
    for database in [format!("{clickhouse_base}_g1"), clickhouse_base] {
        clickhouse
            .client()
            .query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute()
            .await
            .unwrap();
    }
}
