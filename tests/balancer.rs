//! The balancer against the real platform (event store, relay, projector
//! and live-state roles, Kafka, Redis): ingest decisions for PUSH_REWRITE
//! (unknown keys, suspended tenants, streams live elsewhere) and their
//! invalidation by events, triggers turned into typed stream telemetry with
//! the stream's tenant, viewer routing over HTTP (JSON, 307s, Mist's API,
//! encoders) with provisional charges released when the viewer arrives,
//! the same routing through the bridge's resolveViewerEndpoint and
//! resolveIngestEndpoint (the published client, anonymous), edges kept to
//! the clusters a tenant may use, and leadership moving to the other
//! instance when the leader dies.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use frameworks_balancer::control::{ControlSettings, EdgeControlService};
use frameworks_balancer::directory::{Directory, IngestDecision, IngestRefusal, internal_name};
use frameworks_balancer::fleet::{FleetSettings, FleetView, SharedState};
use frameworks_balancer::geo::ViewerLocator;
use frameworks_balancer::leader::{Leadership, singleton_jobs};
use frameworks_balancer::placement::{Placer, PlaySettings};
use frameworks_balancer::play;
use frameworks_balancer::routing::{Liveness, Weights};
use frameworks_commands::aggregates::playback_policy::PolicySpec;
use frameworks_commands::aggregates::stream::{Ingest, Stream, StreamCommand, StreamOutcome};
use frameworks_commands::aggregates::tenant::{Tenant, TenantCommand, TenantOutcome};
use frameworks_commands::telemetry::TelemetryPublisher;
use frameworks_commands::{CommandBus, CommandContext, SecretBox};
use frameworks_edge::answers::{AnswerSettings, Answers, NoResolver, RouteTable};
use frameworks_edge_protocol::keys::key_sha256;
use frameworks_edge_protocol::proto::edge_control_server::EdgeControlServer;
use frameworks_edge_protocol::proto::ingress_client::IngressClient;
use frameworks_edge_protocol::proto::ingress_server::IngressServer;
use frameworks_edge_protocol::proto::{
    EdgeMessage, Heartbeat, PlaybackPolicy, ResolveRequest, StreamSamples, TriggerBatch,
    balancer_message, edge_message, resolve_request, route,
};
use frameworks_edge_protocol::triggers::{Trigger, TriggerKind};
use frameworks_events::kafka::{EventConsumer, EventFeed, EventPublisher};
use frameworks_events::proto::v1::telemetry::{
    MistTriggerReceived, NodeHeartbeat, NodeMetrics, StreamSampled,
};
use frameworks_events::{EventPayload, Topic};
use support::{
    RawEdge, client_python, drop_topics, fresh_database, kafka_with_topics, redis_url, repo_root,
    within,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

impl RawEdge {
    async fn heartbeat(&self) {
        let beat = Heartbeat {
            node: Some(NodeHeartbeat {
                edge_version: "0.3.11".into(),
                mist_version: "fw-51c613a4".into(),
                uptime_seconds: 5,
                mist_healthy: true,
            }),
            metrics: Some(NodeMetrics {
                cpu_percent: 20.0,
                memory_used_bytes: 2 << 30,
                memory_total_bytes: 8 << 30,
                bandwidth_up_bps: 100_000_000,
                bandwidth_limit_bps: 1_000_000_000,
                disk_total_bytes: 100 << 30,
                ..Default::default()
            }),
        };
        self.outbox
            .send(EdgeMessage {
                kind: Some(edge_message::Kind::Heartbeat(beat)),
            })
            .await
            .unwrap();
    }

    fn trigger(&self, trigger: &str, body: &str, answer: &str) -> MistTriggerReceived {
        MistTriggerReceived {
            trigger: trigger.into(),
            trigger_id: Uuid::now_v7().to_string(),
            fired_at_unix_ms: chrono::Utc::now().timestamp_millis(),
            fields: body.split('\n').map(str::to_owned).collect(),
            blocking: !answer.is_empty(),
            answer: answer.into(),
        }
    }

    async fn resolve_key(
        &self,
        ingress: &mut IngressClient<tonic::transport::Channel>,
        key: &str,
    ) -> (String, String) {
        let route = ingress
            .resolve(ResolveRequest {
                node_id: self.node_id.clone(),
                session_token: self.session_token.clone(),
                subject: Some(resolve_request::Subject::KeySha256(key_sha256(key))),
            })
            .await
            .unwrap()
            .into_inner();
        let Some(route::Kind::Ingest(ingest)) = route.kind else {
            panic!("an ingest route");
        };
        (ingest.internal_name, ingest.refusal)
    }
}

async fn http_get(address: SocketAddr, path: &str) -> (u16, Option<String>, String) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", "balancer")
        .header("x-latitude", "51.5")
        .header("x-longitude", "-0.12")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Routing over `view` with the default weights, for edges serving http.
fn placer_on(directory: &Directory, view: &Arc<FleetView>, shared: &SharedState) -> Placer {
    Placer {
        directory: directory.clone(),
        view: Arc::clone(view),
        shared: shared.clone(),
        weights: Weights::default(),
        locator: ViewerLocator::default(),
        settings: PlaySettings {
            edge_scheme: "http".into(),
            rtmp_port: 1935,
            srt_port: 8889,
            candidates: 3,
        },
    }
}

/// Creates a stream (a pull stream when `pull_source` is given):
/// (playback id, stream key).
async fn create_stream(
    bus: &CommandBus,
    owner: &CommandContext,
    id: &str,
    name: &str,
    pull_source: Option<&str>,
) -> (String, String) {
    let create = StreamCommand::Create {
        name: name.into(),
        description: String::new(),
        record: false,
        ingest: if pull_source.is_some() {
            Ingest::Pull
        } else {
            Ingest::Push
        },
        pull_source: pull_source.map(Into::into),
        allow_private_sources: false,
    };
    let StreamOutcome::Created {
        playback_id,
        stream_key,
        ..
    } = bus
        .execute::<Stream>(id, &create, owner, None)
        .await
        .unwrap()
    else {
        panic!("a stream is created");
    };
    (playback_id, stream_key)
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    within(WAIT, what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_validated_triggers_become_stream_facts_and_viewers_are_routed() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let prefix = kafka.catalogue.prefix.clone();
    let roles = ["relay", "projector", "live-state"]
        .map(|role| support::spawn_read_side_role(role, &kafka, &db.url, &prefix));
    let (secrets, data_keys) = SecretBox::generate("balancer");
    // The bridge, for resolveViewerEndpoint and resolveIngestEndpoint.
    let clickhouse_base = format!("test_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let (bridge, bridge_port) = support::spawn_bridge(
        &kafka,
        &db.url,
        &data_keys,
        &prefix,
        &clickhouse_base,
        &[
            ("FRAMEWORKS_SESSION_SECRET", "s".repeat(32)),
            ("FRAMEWORKS_BALANCER_EDGE_SCHEME", "http".into()),
            ("FRAMEWORKS_BALANCER_FLEET_REFRESH_MS", "100".into()),
        ],
    );
    let bus = CommandBus::new(db.store.clone(), secrets);
    // The balancer's own pool: its projection watcher holds a connection
    // for good, which the store's pool must not wait for when it closes.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();

    // A tenant with a stream, and a cluster to enrol an edge into.
    let tenant = Uuid::now_v7();
    let owner = CommandContext::for_tenant(tenant, "test:owner");
    let operator = CommandContext::operator("test:operator");
    bus.execute::<Tenant>(
        &tenant.to_string(),
        &TenantCommand::Create {
            name: "Acme".into(),
            tier: "pro".into(),
            region: "eu-west".into(),
        },
        &owner,
        None,
    )
    .await
    .unwrap();
    let stream = Uuid::now_v7();
    let (playback_id, stream_key) =
        create_stream(&bus, &owner, &stream.to_string(), "studio", None).await;
    let (_cluster, token) = support::enrolment_token(&bus, tenant).await;
    // Another tenant's stream: that tenant may use none of the clusters here.
    let stranger = Uuid::now_v7();
    let stranger_owner = CommandContext::for_tenant(stranger, "test:stranger");
    bus.execute::<Tenant>(
        &stranger.to_string(),
        &TenantCommand::Create {
            name: "Elsewhere".into(),
            tier: "pro".into(),
            region: "us-east".into(),
        },
        &stranger_owner,
        None,
    )
    .await
    .unwrap();
    let (foreign_playback_id, _) = create_stream(
        &bus,
        &stranger_owner,
        &Uuid::now_v7().to_string(),
        "elsewhere",
        None,
    )
    .await;
    // A pull stream: its source, with credentials, reaches edges (and only
    // them) with its playback route, for STREAM_SOURCE.
    let pulled = Uuid::now_v7();
    let source = "rtmp://feed:hunter2@source.example.net/live/main";
    let (pulled_playback_id, _) =
        create_stream(&bus, &owner, &pulled.to_string(), "relay", Some(source)).await;
    wait_until("the streams' keys in the read models", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM read_models.rm_stream_keys")
                .fetch_one(&pool)
                .await
                .is_ok_and(|n| n == 3)
        }
    })
    .await;

    // The balancer, with a directory TTL far beyond the test: only events
    // can explain a changed answer.
    let (directory, shared, live) =
        support::balancer_state(pool.clone(), &prefix, Duration::from_secs(3_600)).await;
    let service = EdgeControlService::new(
        bus.clone(),
        TelemetryPublisher::new(EventPublisher::new(&kafka, "test-balancer").unwrap()),
        directory.clone(),
        shared.clone(),
        ControlSettings {
            heartbeat_seconds: 1,
            command_timeout: Duration::from_secs(5),
        },
    );
    let feed = EventFeed::start(
        &kafka,
        "test-balancer-feed",
        &[Topic::Tenants, Topic::Streams],
        64,
    )
    .unwrap();
    let watcher = frameworks_projections::read_your_writes::ProjectionWatcher::start(pool.clone())
        .await
        .unwrap();
    tokio::spawn(service.clone().push_invalidations(feed, watcher));
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_address = grpc.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EdgeControlServer::new(service.clone()))
            .add_service(IngressServer::new(service.clone()))
            .serve_with_incoming(TcpListenerStream::new(grpc)),
    );
    let mut edge = support::enrol(grpc_address, &token).await;
    let mut ingress = IngressClient::connect(format!("http://{grpc_address}"))
        .await
        .unwrap();

    // PUSH_REWRITE: the key publishes to the stream; unknown keys and bad
    // credentials are refused.
    let name = internal_name(stream);
    assert_eq!(
        edge.resolve_key(&mut ingress, &stream_key).await,
        (name.clone(), String::new())
    );
    // The accepted push holds the stream for this edge until the live state
    // shows it there: another edge asking now is refused (momentarily),
    // this one is not, and the claim goes when the ingest ends.
    assert_eq!(
        shared
            .claim_ingest(stream, "another-node", Duration::from_secs(20))
            .await
            .unwrap(),
        Some(edge.node_id.clone())
    );
    assert_eq!(
        edge.resolve_key(&mut ingress, &stream_key).await,
        (name.clone(), String::new())
    );
    shared.release_ingest(stream, "another-node").await.unwrap();
    assert_eq!(
        shared
            .claim_ingest(stream, "another-node", Duration::from_secs(20))
            .await
            .unwrap(),
        Some(edge.node_id.clone()),
        "only the holder releases a claim"
    );
    assert_eq!(
        edge.resolve_key(&mut ingress, "sk_never_issued").await,
        (String::new(), "unknown stream key".into())
    );
    let malformed = ingress
        .resolve(ResolveRequest {
            node_id: edge.node_id.clone(),
            session_token: edge.session_token.clone(),
            subject: Some(resolve_request::Subject::KeySha256("abc".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);
    let stranger = ingress
        .resolve(ResolveRequest {
            node_id: edge.node_id.clone(),
            session_token: "fws_forged".into(),
            subject: Some(resolve_request::Subject::PlaybackId(playback_id.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), tonic::Code::Unauthenticated);
    let playback_of = |id: &str| ResolveRequest {
        node_id: edge.node_id.clone(),
        session_token: edge.session_token.clone(),
        subject: Some(resolve_request::Subject::PlaybackId(id.to_owned())),
    };
    let pulled_route = ingress
        .resolve(playback_of(&pulled_playback_id))
        .await
        .unwrap()
        .into_inner();
    let Some(route::Kind::Playback(pulled_route)) = pulled_route.kind else {
        panic!("{pulled_route:?}");
    };
    assert_eq!(
        (
            pulled_route.internal_name.as_str(),
            pulled_route.pull_source.as_str()
        ),
        (internal_name(pulled).as_str(), source)
    );
    let Some(route::Kind::Playback(pushed_route)) = ingress
        .resolve(playback_of(&playback_id))
        .await
        .unwrap()
        .into_inner()
        .kind
    else {
        panic!("a playback route");
    };
    assert_eq!(
        pushed_route.pull_source, "",
        "a push stream pulls from nowhere"
    );

    // A JWT policy: its route carries the rule and the tenant's keys, and the
    // edge admits a viewer with a good token only.
    let TenantOutcome::SigningKey {
        kid,
        private_key_pem,
        ..
    } = bus
        .execute::<Tenant>(
            &tenant.to_string(),
            &TenantCommand::CreateSigningKey {
                name: "player".into(),
            },
            &owner,
            None,
        )
        .await
        .unwrap()
    else {
        panic!("a signing key is created");
    };
    let guarded = Uuid::now_v7();
    let (guarded_playback_id, _) =
        create_stream(&bus, &owner, &guarded.to_string(), "guarded", None).await;
    bus.execute::<Stream>(
        &guarded.to_string(),
        &StreamCommand::SetPlaybackPolicy(PolicySpec::Jwt {
            allowed_kids: vec![],
            required_audience: vec!["player".into()],
            required_claims: vec![],
            allowed_origins: vec![],
        }),
        &owner,
        None,
    )
    .await
    .unwrap();
    wait_until("the policy and the key in the read models", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM read_models.rm_streams s
                   JOIN read_models.rm_signing_keys k ON k.tenant_id = s.tenant_id
                  WHERE s.id = $1 AND s.playback_policy IS NOT NULL)",
            )
            .bind(guarded)
            .fetch_one(&pool)
            .await
            .unwrap_or(false)
        }
    })
    .await;
    let guarded_route = ingress
        .resolve(playback_of(&guarded_playback_id))
        .await
        .unwrap()
        .into_inner();
    let Some(route::Kind::Playback(rule)) = &guarded_route.kind else {
        panic!("{guarded_route:?}");
    };
    assert_eq!(rule.policy, PlaybackPolicy::Jwt as i32);
    let jwt = rule.jwt.as_ref().unwrap();
    assert_eq!(
        (
            jwt.policy.as_ref().unwrap().required_audience.as_slice(),
            jwt.keys[0].kid.as_str()
        ),
        (["player".to_owned()].as_slice(), kid.as_str())
    );
    let answers = Answers::new(
        NoResolver,
        AnswerSettings {
            budget: Duration::from_millis(200),
            admit_unknown_viewers: false,
        },
    );
    answers.seed(std::slice::from_ref(&guarded_route));
    let now = chrono::Utc::now().timestamp();
    let viewer_with = |token: Option<String>| {
        let query = token.map(|t| format!("?jwt={t}")).unwrap_or_default();
        let url = format!("https://edge/hls/{guarded_playback_id}/index.m3u8{query}");
        let trigger = Trigger::parse(
            TriggerKind::UserNew,
            &format!(
                "{}\n203.0.113.9\n9\nHLS\n{url}\nsess\nfalse",
                internal_name(guarded)
            ),
        )
        .unwrap();
        let answers = answers.clone();
        async move { answers.answer(TriggerKind::UserNew, &trigger).await }
    };
    let token = |aud: &str| {
        support::sign_playback_jwt(
            &private_key_pem,
            &kid,
            &serde_json::json!({"aud": aud, "exp": now + 300}),
        )
    };
    assert_eq!(viewer_with(Some(token("player"))).await.body, "true");
    let refused = viewer_with(None).await;
    assert_eq!(
        (refused.body.as_str(), refused.reason.as_deref()),
        ("false", Some("missing-token"))
    );
    let elsewhere = viewer_with(Some(token("another-site"))).await;
    assert_eq!(elsewhere.reason.as_deref(), Some("jwt-audience-mismatch"));

    // Oversized and overlong submissions are refused, and the balancer goes on.
    let huge = edge.trigger("USER_END", &"x".repeat(5 * 1024 * 1024), "");
    let oversized = ingress
        .submit(TriggerBatch {
            node_id: edge.node_id.clone(),
            triggers: vec![huge],
            session_token: edge.session_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(oversized.code(), tonic::Code::OutOfRange, "{oversized}");
    let overlong = ingress
        .submit(TriggerBatch {
            node_id: edge.node_id.clone(),
            triggers: (0..1_001)
                .map(|_| edge.trigger("STREAM_END", "x", ""))
                .collect(),
            session_token: edge.session_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(overlong.code(), tonic::Code::InvalidArgument, "{overlong}");

    // Triggers become typed stream facts with the stream's tenant.
    let consumer = EventConsumer::subscribe(
        &kafka,
        &format!("{prefix}-stream-facts"),
        &[Topic::StreamTelemetry],
    )
    .unwrap();
    let push = edge.trigger(
        "PUSH_REWRITE",
        &format!("rtmp://127.0.0.1:1935/live/{stream_key}\n198.51.100.7\n{stream_key}"),
        &name,
    );
    let viewer = edge.trigger(
        "USER_NEW",
        &format!("{name}\n127.0.0.1\n77\nHLS\nhttp://edge/hls/{playback_id}/index.m3u8\nabc123"),
        "true",
    );
    let end = edge.trigger(
        "USER_END",
        &format!("77\n{name}\nHLS\n127.0.0.1\n12\n5000\n40\n[UA:curl/8]"),
        "",
    );
    let foreign = edge.trigger("USER_END", "78\ntest\nHLS\n127.0.0.1\n1\n1\n1\n", "");
    let bogus = edge.trigger("NOT_A_TRIGGER", "x", "");

    // Routing before the viewer arrives: the edge must be live with a known load.
    edge.heartbeat().await;
    let view = FleetView::new(FleetSettings {
        stale_after_seconds: 90,
        gone_after_seconds: 300,
        refresh_ms: 100,
        charge_hold_seconds: 2,
        viewer_estimate_kbps: 4_000,
    });
    wait_until("the edge routable", || {
        let (view, pool, live, shared) = (view.clone(), pool.clone(), live.clone(), shared.clone());
        let node = edge.node_id.clone();
        async move {
            view.refresh(&pool, &live, &shared).await.unwrap();
            let snapshot = view.snapshot();
            snapshot
                .fleet
                .edges()
                .iter()
                .any(|e| e.node_id == node && e.liveness == Liveness::Live && e.cpu_percent == 20.0)
        }
    })
    .await;
    let placer = placer_on(&directory, &view, &shared);
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_address = http.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            http,
            play::router(placer).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let (status, _, body) = http_get(http_address, &format!("/play/{playback_id}")).await;
    assert_eq!(status, 200, "{body}");
    let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listing["viewerLocation"]["source"], "headers");
    let protocols = listing["protocols"].as_array().unwrap();
    assert_eq!(protocols.len(), 5);
    assert_eq!(
        protocols[0]["endpoints"][0]["url"],
        format!("http://edge-ams-1.example.net:8080/hls/{playback_id}/index.m3u8")
    );
    let distance = protocols[0]["endpoints"][0]["distanceKm"].as_f64().unwrap();
    assert!(
        (330.0..380.0).contains(&distance),
        "London to Amsterdam: {distance}"
    );
    let (status, _, body) = http_get(http_address, "/play/no-such-id").await;
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"unknown playback id"}"#)
    );
    let (status, location, _) = http_get(
        http_address,
        &format!("/play/{playback_id}/llhls/index.m3u8"),
    )
    .await;
    assert_eq!(status, 307);
    assert_eq!(
        location.unwrap(),
        format!("http://edge-ams-1.example.net:8080/cmaf/{playback_id}/index.m3u8")
    );
    let (status, location, _) = http_get(
        http_address,
        &format!("/play/{playback_id}/hls/index.m3u8?jwt=abc.def.ghi"),
    )
    .await;
    assert_eq!(status, 307);
    assert_eq!(
        location.unwrap(),
        format!("http://edge-ams-1.example.net:8080/hls/{playback_id}/index.m3u8?jwt=abc.def.ghi"),
        "the viewer's token goes along to the edge"
    );
    let (status, _, host) = http_get(http_address, &format!("/{playback_id}")).await;
    assert_eq!(
        (status, host.as_str()),
        (200, "edge-ams-1.example.net:8080")
    );
    let pending = view.with_charges(|c| c.pending_bps(&edge.node_id, Instant::now()));
    assert_eq!(
        pending, 12_000_000,
        "three redirects, each charged 4 Mbit/s"
    );
    let (status, _, body) = http_get(http_address, &format!("/play/{foreign_playback_id}")).await;
    assert_eq!(status, 200, "{body}");
    let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        listing["protocols"][0]["endpoints"],
        serde_json::json!([]),
        "no edge of a cluster the stranger may use"
    );

    // The bridge decides as the balancer does, for the published client.
    let resolved = resolve_through_the_client(
        bridge_port,
        &[
            ("FW_PLAYBACK_ID", &playback_id),
            ("FW_STREAM_KEY", &stream_key),
            ("FW_FOREIGN_PLAYBACK_ID", &foreign_playback_id),
        ],
    )
    .await;
    let viewer_endpoint = &resolved["viewer"]["primary"];
    assert_eq!(viewer_endpoint["nodeId"], edge.node_id.as_str());
    assert_eq!(
        viewer_endpoint["url"],
        format!("http://edge-ams-1.example.net:8080/hls/{playback_id}/index.m3u8")
    );
    assert_eq!(viewer_endpoint["protocol"], "HLS");
    assert_eq!(
        viewer_endpoint["baseUrl"],
        "http://edge-ams-1.example.net:8080"
    );
    let bridge_distance = viewer_endpoint["geoDistance"].as_f64().unwrap();
    assert!(
        (bridge_distance - distance).abs() < 1.0,
        "{bridge_distance} km from the bridge, {distance} km from the balancer"
    );
    assert_eq!(
        viewer_endpoint["outputs"]["DASH"],
        format!("http://edge-ams-1.example.net:8080/cmaf/{playback_id}/index.mpd")
    );
    assert_eq!(resolved["viewer"]["fallbacks"], serde_json::json!([]));
    let metadata = &resolved["viewer"]["metadata"];
    assert_eq!(
        (
            &metadata["title"],
            &metadata["contentId"],
            &metadata["isLive"]
        ),
        (
            &serde_json::json!("studio"),
            &serde_json::json!(playback_id),
            &serde_json::json!(false)
        )
    );
    assert_eq!(
        resolved["with_token"],
        format!("http://edge-ams-1.example.net:8080/hls/{playback_id}/index.m3u8?jwt=abc.def.ghi"),
        "a playback token sent to the bridge is carried to the edge"
    );
    assert_eq!(
        resolved["llhls"]["url"],
        format!("http://edge-ams-1.example.net:8080/cmaf/{playback_id}/index.m3u8")
    );
    let ingest_endpoint = &resolved["ingest"]["primary"];
    assert_eq!(ingest_endpoint["nodeId"], edge.node_id.as_str());
    assert_eq!(
        ingest_endpoint["rtmpUrl"],
        format!("rtmp://edge-ams-1.example.net:1935/live/{stream_key}")
    );
    assert_eq!(
        ingest_endpoint["kind"],
        "INGEST_ENDPOINT_KIND_NODE_SPECIFIC"
    );
    assert_eq!(
        resolved["ingest"]["metadata"]["streamId"],
        stream.to_string()
    );
    assert_eq!(
        resolved["ingest"]["metadata"]["tenantId"],
        tenant.to_string()
    );
    assert_eq!(
        resolved["foreign"],
        serde_json::json!({ "primary": null, "fallbacks": [] })
    );
    assert_eq!(
        resolved["errors"],
        serde_json::json!({
            "unknown_playback_id": "NOT_FOUND",
            "unknown_key": "NOT_FOUND",
            "unsupported_protocol": "UNSUPPORTED_PROTOCOL",
        })
    );
    let (status, _, body) = http_get(http_address, "/ingest/sk_never_issued").await;
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"unknown stream key"}"#)
    );
    let (status, _, body) = http_get(http_address, &format!("/ingest/{stream_key}")).await;
    assert_eq!(status, 200, "{body}");
    let urls: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        urls["rtmp"],
        format!("rtmp://edge-ams-1.example.net:1935/live/{stream_key}")
    );

    let ack = ingress
        .submit(TriggerBatch {
            node_id: edge.node_id.clone(),
            triggers: vec![
                push.clone(),
                viewer.clone(),
                end.clone(),
                foreign.clone(),
                bogus.clone(),
            ],
            session_token: edge.session_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ack.accepted,
        [&push, &viewer, &end, &foreign].map(|t| t.trigger_id.clone())
    );
    assert_eq!(ack.rejected.len(), 1);
    assert_eq!(ack.rejected[0].trigger_id, bogus.trigger_id);
    let mut seen = Vec::new();
    let mut ids = Vec::new();
    within(WAIT, "the typed facts in Kafka", async {
        while seen.len() < 3 {
            let received = consumer.next().await.unwrap();
            assert_eq!(received.event.aggregate_id, stream.to_string());
            assert_eq!(received.event.tenant_id, Some(tenant));
            ids.push(received.event.id);
            seen.push(received.event.payload);
        }
    })
    .await;
    // Sent again (its acknowledgement lost), a trigger's facts keep their ids.
    let again = ingress
        .submit(TriggerBatch {
            node_id: edge.node_id.clone(),
            triggers: vec![end.clone()],
            session_token: edge.session_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.accepted, std::slice::from_ref(&end.trigger_id));
    let resent = within(WAIT, "the resent fact", consumer.next())
        .await
        .unwrap();
    assert_eq!(
        resent.event.id, ids[2],
        "the same event, downstream dedupes it"
    );
    // The edge's poll of Mist: platform streams become stream.sampled with
    // their tenant and the edge's node id; others are not reported.
    edge.outbox
        .send(EdgeMessage {
            kind: Some(edge_message::Kind::Samples(StreamSamples {
                streams: vec![
                    StreamSampled {
                        internal_name: "operators-own".into(),
                        viewers: 9,
                        ..Default::default()
                    },
                    StreamSampled {
                        internal_name: name.clone(),
                        status: "Online".into(),
                        viewers: 1,
                        inputs: 1,
                        up_bps: 4_000_000,
                        ..Default::default()
                    },
                ],
            })),
        })
        .await
        .unwrap();
    let sampled = within(WAIT, "the stream sample", consumer.next())
        .await
        .unwrap();
    assert_eq!(
        (sampled.event.aggregate_id.as_str(), sampled.event.tenant_id),
        (stream.to_string().as_str(), Some(tenant))
    );
    let EventPayload::StreamSampled(sample) = &sampled.event.payload else {
        panic!("{:?}", sampled.event.payload);
    };
    assert_eq!(
        (sample.node_id.as_str(), sample.viewers, sample.up_bps),
        (edge.node_id.as_str(), 1, 4_000_000)
    );
    let EventPayload::IngestStarted(started) = &seen[0] else {
        panic!("{seen:?}");
    };
    assert_eq!(
        (started.protocol.as_str(), started.node_id.as_str()),
        ("RTMP", edge.node_id.as_str())
    );
    let EventPayload::ViewerSessionStarted(session) = &seen[1] else {
        panic!("{seen:?}");
    };
    assert_eq!(session.session_id, format!("{}/77", edge.node_id));
    let EventPayload::ViewerSessionEnded(ended) = &seen[2] else {
        panic!("{seen:?}");
    };
    assert_eq!(
        (ended.bytes_up, ended.trigger_id.as_str()),
        (5000, end.trigger_id.as_str())
    );

    // The viewer showed up: the redirects' charges are released for every instance.
    wait_until("the charges released", || {
        let (view, pool, live, shared) = (view.clone(), pool.clone(), live.clone(), shared.clone());
        let node = edge.node_id.clone();
        async move {
            view.refresh(&pool, &live, &shared).await.unwrap();
            view.with_charges(|c| c.pending_bps(&node, Instant::now())) == 0
        }
    })
    .await;

    // Live on this edge: any other edge is refused the key.
    wait_until("the stream live in the live state", || {
        let directory = directory.clone();
        async move { directory.live_on(stream).await.unwrap().is_some() }
    })
    .await;
    assert_eq!(
        directory
            .ingest(&key_sha256(&stream_key), "another-node")
            .await
            .unwrap(),
        IngestDecision::Refuse(IngestRefusal::LiveElsewhere {
            node: edge.node_id.clone()
        })
    );
    assert!(matches!(
        directory
            .ingest(&key_sha256(&stream_key), &edge.node_id)
            .await
            .unwrap(),
        IngestDecision::Accept { .. }
    ));

    // Two instances: the leader dies without resigning, the other takes
    // over within the lease's TTL, and routing answers throughout.
    let ttl = Duration::from_secs(1);
    let first = Leadership::new(shared.clone(), "balancer-a".into(), ttl);
    let second = Leadership::new(shared.clone(), "balancer-b".into(), ttl);
    let (mut first_leads, mut second_leads) = (first.watch(), second.watch());
    let first_task = tokio::spawn(first.run());
    within(WAIT, "balancer-a leading", first_leads.wait_for(|l| *l))
        .await
        .unwrap();
    tokio::spawn(second.clone().run());
    tokio::spawn(singleton_jobs(
        second.watch(),
        shared.clone(),
        view.settings().clone(),
        Duration::from_millis(100),
    ));
    tokio::time::sleep(ttl).await;
    assert!(!*second_leads.borrow(), "one leader at a time");
    shared
        .charge(&edge.node_id, "stale/10.0.0.1/x", 1_000)
        .await
        .unwrap();
    first_task.abort();
    let died = Instant::now();
    let mut answered = 0;
    while !*second_leads.borrow_and_update() {
        let (status, _, host) = http_get(http_address, &format!("/{playback_id}")).await;
        assert_eq!(
            (status, host.as_str()),
            (200, "edge-ams-1.example.net:8080"),
            "routing answers during the failover"
        );
        answered += 1;
        assert!(died.elapsed() < ttl * 3, "no takeover within the TTL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = died.elapsed();
    assert!(
        takeover <= ttl + ttl / 3 + Duration::from_millis(300),
        "{takeover:?}"
    );
    assert!(answered > 0);
    // The new leader runs the singleton jobs: the expired charge is swept.
    let charges = shared.charges_key(&edge.node_id);
    wait_until("the expired charges swept by the new leader", || {
        let charges = charges.clone();
        async move {
            let mut redis = redis::Client::open(redis_url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let left: u64 = redis::cmd("ZCARD")
                .arg(&charges)
                .query_async(&mut redis)
                .await
                .unwrap();
            left == 0
        }
    })
    .await;

    // Liveness, with short settings: an edge unheard of for `stale_after`
    // is only a fallback, and after `gone_after` it is out of routing.
    let short = FleetView::new(FleetSettings {
        stale_after_seconds: 1,
        gone_after_seconds: 2,
        refresh_ms: 100,
        charge_hold_seconds: 2,
        viewer_estimate_kbps: 4_000,
    });
    let short_placer = placer_on(&directory, &short, &shared);
    let anywhere = ViewerLocator::default().locate(None, &axum::http::HeaderMap::new());
    let liveness_of = |view: &FleetView| {
        view.snapshot()
            .fleet
            .edges()
            .iter()
            .find(|e| e.node_id == edge.node_id)
            .map(|e| e.liveness)
    };
    edge.heartbeat().await;
    within(WAIT, "the heartbeat heard", async {
        loop {
            short.refresh(&pool, &live, &shared).await.unwrap();
            if liveness_of(&short) == Some(Liveness::Live) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut seen = Vec::new();
    within(WAIT, "the edge live, then stale, then gone", async {
        loop {
            short.refresh(&pool, &live, &shared).await.unwrap();
            let liveness = liveness_of(&short).unwrap();
            let placed = short_placer
                .viewer(&playback_id, &anywhere, 3)
                .await
                .unwrap()
                .edges
                .len();
            if seen.last().map(|(l, _)| *l) != Some(liveness) {
                seen.push((liveness, placed));
            }
            if liveness == Liveness::Gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        seen,
        [
            (Liveness::Live, 1),
            (Liveness::Stale, 1),
            (Liveness::Gone, 0)
        ],
        "a stale edge is still a fallback; a gone one is never chosen"
    );

    // A suspension reaches the cached answer and the edge at once.
    bus.execute::<Tenant>(
        &tenant.to_string(),
        &TenantCommand::Suspend {
            reason: "billing-overdue".into(),
            note: String::new(),
        },
        &operator,
        None,
    )
    .await
    .unwrap();
    // Earlier changes to the tenant (its signing key) made edges forget the
    // key too: the update that counts is the one after which it is refused.
    let forgotten = within(WAIT, "the edge told to forget the key", async {
        loop {
            let message = edge.inbound.message().await.unwrap().unwrap();
            if let Some(balancer_message::Kind::Routes(update)) = message.kind
                && update.forget_key_sha256.contains(&key_sha256(&stream_key))
                && edge.resolve_key(&mut ingress, &stream_key).await
                    == (String::new(), "the tenant is suspended".into())
            {
                return update;
            }
        }
    })
    .await;
    assert!(forgotten.forget_playback_ids.contains(&playback_id));
    let (status, _, _) = http_get(http_address, &format!("/play/{playback_id}")).await;
    assert_eq!(status, 403, "a suspended tenant's stream cannot be watched");

    drop((bridge, roles));
    drop_topics(&kafka).await;
    frameworks_test_harness::drop_redis_prefix(&redis_url(), &prefix).await;
    db.drop_now().await;
    let clickhouse = support::clickhouse(&clickhouse_base).client();
    clickhouse
        .query(&format!("DROP DATABASE IF EXISTS {clickhouse_base}"))
        .execute()
        .await
        .unwrap();
}

/// Runs `tests/conformance/routing.py` (the published client) against the
/// bridge on `port`, once the bridge answers, and returns its result.
async fn resolve_through_the_client(port: u16, env: &[(&str, &str)]) -> serde_json::Value {
    let python = tokio::task::spawn_blocking(client_python).await.unwrap();
    within(WAIT, "the bridge listening", async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let mut command = std::process::Command::new(python);
    command
        .arg(repo_root().join("tests/conformance/routing.py"))
        .env("FW_URL", format!("http://127.0.0.1:{port}/graphql"));
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("result "))
        .unwrap_or_else(|| panic!("no result from the client: {stdout}"));
    serde_json::from_str(line).unwrap()
}
