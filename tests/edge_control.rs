//! The control stream between an edge daemon and the balancer, against the
//! real event store and Kafka: enrolment by token (node.enrolled), refusals
//! that create nothing, heartbeats into node telemetry, commands carried
//! out on (simulated) MistServer, and a reconnect that resyncs by node id.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use frameworks_balancer::control::{CommandFailure, ControlSettings, EdgeControlService};
use frameworks_commands::aggregates::infrastructure::Node;
use frameworks_commands::telemetry::TelemetryPublisher;
use frameworks_commands::{CommandBus, SecretBox};
use frameworks_edge::answers::{Action, AnswerSettings, Answers, NoResolver};
use frameworks_edge::control::client::{self, ClientSettings, EdgeHost, Identity};
use frameworks_edge::forwarder;
use frameworks_edge::host::MistCommands;
use frameworks_edge::journal::{Journal, JournalEntry};
use frameworks_edge::mist::{MistClient, MistSettings};
use frameworks_edge_protocol::proto::edge_control_client::EdgeControlClient;
use frameworks_edge_protocol::proto::edge_control_server::EdgeControlServer;
use frameworks_edge_protocol::proto::ingress_client::IngressClient;
use frameworks_edge_protocol::proto::ingress_server::IngressServer;
use frameworks_edge_protocol::proto::{
    ConfigSeed, EdgeMessage, Heartbeat, Register, StartPush, StreamTemplate, edge_command,
    edge_message, register,
};
use frameworks_edge_protocol::triggers::{Trigger, TriggerKind, TriggerMeta};
use frameworks_events::kafka::{EventConsumer, EventPublisher, KafkaSettings};
use frameworks_events::proto::v1::telemetry::{NodeHeartbeat, NodeMetrics};
use frameworks_events::{AggregateType, EventPayload, Topic};
use frameworks_mist_simulator::captures;
use frameworks_mist_simulator::sender::Firing;
use frameworks_mist_simulator::{MistApi, serve};
use support::{drop_topics, fresh_database, kafka_with_topics, within};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use uuid::Uuid;

/// The edge's hands: a simulated MistServer, and a fixed load.
struct SimulatedEdge {
    commands: MistCommands,
}

impl EdgeHost for SimulatedEdge {
    async fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            node: Some(NodeHeartbeat {
                edge_version: "0.3.11".into(),
                mist_version: "fw-51c613a4".into(),
                uptime_seconds: 60,
                mist_healthy: true,
            }),
            metrics: Some(NodeMetrics {
                cpu_percent: 12.5,
                memory_used_bytes: 1 << 30,
                memory_total_bytes: 8 << 30,
                network_rx_bytes: 1_000,
                window_ms: 1_000,
                ..Default::default()
            }),
        }
    }

    async fn execute(&self, action: edge_command::Action) -> Result<(), String> {
        self.commands.execute(action).await
    }
}

async fn balancer(service: EdgeControlService, listener: TcpListener) {
    tonic::transport::Server::builder()
        .add_service(EdgeControlServer::new(service.clone()))
        .add_service(IngressServer::new(service))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await
        .unwrap();
}

/// A TCP relay in front of the balancer: killing it cuts every connection
/// at once, as a balancer dying would.
struct Relay {
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    fn start(listener: TcpListener, upstream: SocketAddr) -> Self {
        let tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let registry = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(connection);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { tasks }
    }

    fn kill(self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

fn register_with(credential: Option<register::Credential>, fingerprint: &str) -> EdgeMessage {
    EdgeMessage {
        kind: Some(edge_message::Kind::Register(Register {
            credential,
            hardware_fingerprint: fingerprint.into(),
            hostname: "edge-x".into(),
            edge_version: "0.3.11".into(),
            public_host: "edge-x.example.net".into(),
            latitude: 52.0,
            longitude: 4.0,
        })),
    }
}

/// Opens a raw stream with one first message; the balancer's verdict.
async fn open_raw(address: SocketAddr, first: EdgeMessage) -> Result<(), tonic::Status> {
    let mut client = EdgeControlClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(first).await.unwrap();
    let mut inbound = client
        .open(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    inbound.message().await?;
    Ok(())
}

async fn node_telemetry(kafka: &KafkaSettings, node: &str) -> (bool, bool) {
    let consumer = EventConsumer::subscribe(
        kafka,
        &format!("{}-edge-control", kafka.catalogue.prefix),
        &[Topic::NodeTelemetry],
    )
    .unwrap();
    let (mut heartbeat, mut metrics) = (false, false);
    within(
        Duration::from_secs(60),
        "the node's heartbeat in Kafka",
        async {
            while !(heartbeat && metrics) {
                let received = consumer.next().await.unwrap();
                if received.event.aggregate_id != node {
                    continue;
                }
                match received.event.payload {
                    EventPayload::NodeHeartbeat(beat) => heartbeat = beat.mist_healthy,
                    EventPayload::NodeMetrics(m) => metrics = m.cpu_percent == 12.5,
                    _ => {}
                }
            }
        },
    )
    .await;
    (heartbeat, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_enrols_heartbeats_obeys_commands_and_comes_back_after_a_reconnect() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let (secrets, _) = SecretBox::generate("edge-control");
    let bus = CommandBus::new(db.store.clone(), secrets);
    let tenant = Uuid::now_v7();
    let (cluster, token) = support::enrolment_token(&bus, tenant).await;
    let (directory, shared, _) = support::balancer_state(
        db.store.pool().clone(),
        &kafka.catalogue.prefix,
        Duration::from_secs(10),
    )
    .await;
    let service = EdgeControlService::new(
        bus.clone(),
        TelemetryPublisher::new(EventPublisher::new(&kafka, "test-balancer").unwrap()),
        directory,
        shared,
        ControlSettings {
            heartbeat_seconds: 1,
            command_timeout: Duration::from_secs(5),
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let server = tokio::spawn(balancer(service.clone(), listener));
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = front.local_addr().unwrap();
    let relay = Relay::start(front, upstream);

    // Bad first messages and bad tokens create nothing.
    let heartbeat_first = EdgeMessage {
        kind: Some(edge_message::Kind::Heartbeat(Heartbeat::default())),
    };
    assert_eq!(
        open_raw(address, heartbeat_first).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    let bogus = register_with(
        Some(register::Credential::EnrolmentToken("fwe_bogus".into())),
        "fp-bogus",
    );
    assert_eq!(
        open_raw(address, bogus).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let stranger = register_with(None, "fp-never-seen");
    assert_eq!(
        open_raw(address, stranger).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    // The daemon enrols with its token and gets its seed.
    let mist_api = MistApi::new(Some(("admin", "secret")), true);
    let mist_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mist_address = mist_listener.local_addr().unwrap();
    tokio::spawn(serve(mist_listener, mist_api.clone()));
    let answers = Answers::new(
        NoResolver,
        AnswerSettings {
            budget: Duration::from_millis(100),
            admit_unknown_viewers: false,
        },
    );
    let recordings = support::ScratchDir::new("recordings");
    let host = Arc::new(SimulatedEdge {
        commands: MistCommands::new(
            Arc::new(MistClient::new(MistSettings {
                address: mist_address.to_string(),
                username: "admin".into(),
                password: "secret".into(),
                timeout: Duration::from_secs(2),
            })),
            answers.clone(),
            recordings.0.clone(),
        ),
    });
    let state = std::env::temp_dir().join(format!("fw-node-{}", Uuid::now_v7().simple()));
    let fingerprint = format!("fp-{}", Uuid::now_v7().simple());
    let settings = ClientSettings {
        balancer: format!("http://{address}"),
        identity: Identity {
            hardware_fingerprint: fingerprint.clone(),
            hostname: "edge-ams-1".into(),
            edge_version: "0.3.11".into(),
            public_host: "edge-ams-1.example.net".into(),
            latitude: 52.37,
            longitude: 4.9,
        },
        enrolment_token: Some(token.clone()),
        node_id_file: state.clone(),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        poll_every: Duration::from_secs(10),
    };
    let (seeds, mut seen) = watch::channel(None);
    let daemon = tokio::spawn(client::run(settings, host, answers.clone(), seeds));
    let seed = within(Duration::from_secs(30), "the config seed", async {
        loop {
            if let Some(seed) = seen.borrow_and_update().clone() {
                return seed;
            }
            seen.changed().await.unwrap();
        }
    })
    .await;
    assert_eq!(seed.cluster_id, cluster);
    assert_eq!(
        seed.templates,
        [StreamTemplate {
            name: "live".into(),
            source: "push://".into(),
            dvr_ms: 0,
        }],
        "platform streams are live+<id> wildcards of the live template"
    );
    let node_id = seed.node_id.clone();
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        node_id,
        "the node id is kept"
    );
    let (node, version) = bus.load::<Node>(&node_id).await.unwrap();
    assert!(node.active() && node.cluster_id() == cluster && node.tenant() == Some(tenant));
    assert_eq!(version, 1, "node.enrolled");
    assert_eq!(service.connected(), vec![node_id.clone()]);

    // Spent: the same token enrols nothing else.
    let reuse = register_with(
        Some(register::Credential::EnrolmentToken(token.clone())),
        "fp-other",
    );
    let refused = open_raw(address, reuse).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("already used"),
        "{}",
        refused.message()
    );
    // Its node id with another machine's fingerprint is refused too.
    let impostor = register_with(
        Some(register::Credential::NodeId(node_id.clone())),
        "fp-other",
    );
    assert_eq!(
        open_raw(address, impostor).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    // Heartbeats become node telemetry in Kafka.
    assert_eq!(node_telemetry(&kafka, &node_id).await, (true, true));

    // Journaled triggers go to the ingress and are forgotten once in Kafka.
    let journal_path = std::env::temp_dir().join(format!("fw-journal-{}", Uuid::now_v7().simple()));
    let journal = Journal::open(&journal_path).unwrap();
    let mut sent = Vec::new();
    for capture in captures::of("USER_END").chain(captures::of("STREAM_END")) {
        let firing = Firing::from_capture(capture, "/trigger");
        let meta = TriggerMeta::from_headers(|name| firing.header(name)).unwrap();
        let entry = JournalEntry::new(&meta, &firing.body);
        journal.append(&entry).unwrap();
        sent.push(entry);
    }
    let mut bogus = sent[0].clone();
    bogus.id = Uuid::now_v7().to_string();
    bogus.trigger = "NOT_A_TRIGGER".into();
    journal.append(&bogus).unwrap();
    let mut ingress = IngressClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let pending = journal.pending().unwrap();
    let stranger = ConfigSeed {
        node_id: "not-connected".into(),
        ..seed.clone()
    };
    let refused = forwarder::submit(&mut ingress, &journal, &stranger, &pending).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    let forged = ConfigSeed {
        session_token: "fws_guessed".into(),
        ..seed.clone()
    };
    let refused = forwarder::submit(&mut ingress, &journal, &forged, &pending).await;
    assert_eq!(
        refused.unwrap_err().code(),
        tonic::Code::Unauthenticated,
        "the node id alone is no credential"
    );
    assert_eq!(
        journal.len().unwrap(),
        5,
        "nothing forgotten for a refused sender"
    );
    let accepted = forwarder::submit(&mut ingress, &journal, &seed, &pending)
        .await
        .unwrap();
    assert_eq!(accepted, 4);
    assert!(
        journal.is_empty().unwrap(),
        "accepted and refused-for-good ones are forgotten"
    );
    let consumer = EventConsumer::subscribe(
        &kafka,
        &format!("{}-ingress", kafka.catalogue.prefix),
        &[Topic::NodeTelemetry],
    )
    .unwrap();
    let mut in_kafka = std::collections::BTreeSet::new();
    within(Duration::from_secs(60), "the triggers in Kafka", async {
        while in_kafka.len() < sent.len() {
            let received = consumer.next().await.unwrap();
            if let EventPayload::MistTriggerReceived(trigger) = received.event.payload {
                assert_eq!(received.event.aggregate_id, node_id);
                assert_eq!(received.event.tenant_id, Some(tenant));
                in_kafka.insert(trigger.trigger_id);
            }
        }
    })
    .await;
    assert_eq!(in_kafka, sent.iter().map(|e| e.id.clone()).collect());
    // The forwarding loop: live triggers at once, the journal every round.
    let (live, live_rx) = tokio::sync::mpsc::channel(16);
    let forwarding = tokio::spawn(forwarder::run(
        ingress.clone(),
        journal.clone(),
        seen.clone(),
        std::sync::Arc::new(tokio::sync::Mutex::new(live_rx)),
        Duration::from_millis(100),
    ));
    let late = Firing::from_capture(captures::of("PUSH_END").next().unwrap(), "/trigger");
    let meta = TriggerMeta::from_headers(|name| late.header(name)).unwrap();
    let entry = JournalEntry::new(&meta, &late.body);
    journal.append(&entry).unwrap();
    live.send(entry).await.unwrap();
    within(
        Duration::from_secs(10),
        "the journal drained by the loop",
        async {
            while !journal.is_empty().unwrap() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    forwarding.abort();
    drop(journal);
    let _ = std::fs::remove_file(&journal_path);

    // Commands are carried out on MistServer and answered.
    service
        .command(
            &node_id,
            edge_command::Action::StartPush(StartPush {
                stream: "live+s1".into(),
                target: "rtmp://example.net/live/x".into(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(mist_api.state().pushes.len(), 1);
    // Mist asks before it pushes out: what the platform started is let out.
    let push_out = |target: &str| {
        let answers = answers.clone();
        let trigger =
            Trigger::parse(TriggerKind::PushOutStart, &format!("live+s1\n{target}")).unwrap();
        async move {
            answers
                .answer(TriggerKind::PushOutStart, &trigger)
                .await
                .action
        }
    };
    assert_eq!(push_out("rtmp://example.net/live/x").await, Action::Value);
    assert_eq!(push_out("rtmp://not-ours/live/y").await, Action::Deny);
    let stop_nothing = service
        .command(
            &node_id,
            edge_command::Action::StopPush(frameworks_edge_protocol::proto::StopPush {
                stream: "live+s1".into(),
                target: "rtmp://elsewhere".into(),
            }),
        )
        .await;
    assert!(
        matches!(stop_nothing, Err(CommandFailure::Failed(_))),
        "{stop_nothing:?}"
    );
    assert_eq!(
        service
            .command("no-such-node", edge_command::Action::NukeStream("x".into()))
            .await,
        Err(CommandFailure::NotConnected("no-such-node".into()))
    );
    service
        .command(
            &node_id,
            edge_command::Action::StopPush(frameworks_edge_protocol::proto::StopPush {
                stream: "live+s1".into(),
                target: "rtmp://example.net/live/x".into(),
            }),
        )
        .await
        .unwrap();
    assert!(mist_api.state().pushes.is_empty());
    assert_eq!(push_out("rtmp://example.net/live/x").await, Action::Deny);

    // DVR: a recording is a push to a file in the stream's directory,
    // let out by PUSH_OUT_START, once at a time, until stopped.
    service
        .command(
            &node_id,
            edge_command::Action::StartRecording("live+s1".into()),
        )
        .await
        .unwrap();
    let (stream, file) = mist_api.state().pushes.values().next().cloned().unwrap();
    assert_eq!(stream, "live+s1");
    let stream_dir = recordings.0.join("live+s1");
    assert!(
        std::path::Path::new(&file).starts_with(&stream_dir) && file.ends_with(".ts"),
        "{file}"
    );
    assert!(stream_dir.is_dir());
    assert_eq!(push_out(&file).await, Action::Value);
    let twice = service
        .command(
            &node_id,
            edge_command::Action::StartRecording("live+s1".into()),
        )
        .await;
    assert!(matches!(twice, Err(CommandFailure::Failed(_))), "{twice:?}");
    let escape = service
        .command(
            &node_id,
            edge_command::Action::StartRecording("../etc".into()),
        )
        .await;
    assert!(
        matches!(escape, Err(CommandFailure::Failed(_))),
        "{escape:?}"
    );
    service
        .command(
            &node_id,
            edge_command::Action::StopRecording("live+s1".into()),
        )
        .await
        .unwrap();
    assert!(mist_api.state().pushes.is_empty());
    assert_eq!(push_out(&file).await, Action::Deny);
    let not_recording = service
        .command(
            &node_id,
            edge_command::Action::StopRecording("live+s1".into()),
        )
        .await;
    assert!(
        matches!(not_recording, Err(CommandFailure::Failed(_))),
        "{not_recording:?}"
    );

    // The balancer's connections are cut and it comes back: the daemon
    // reconnects with backoff and registers by node id (node.reenrolled),
    // as the same node.
    relay.kill();
    let front = loop {
        match TcpListener::bind(address).await {
            Ok(listener) => break listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let relay = Relay::start(front, upstream);
    within(
        Duration::from_secs(30),
        "the daemon back on the new server",
        async {
            loop {
                let (_, version) = bus.load::<Node>(&node_id).await.unwrap();
                if version >= 2 && service.connected() == vec![node_id.clone()] {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    assert_eq!(
        bus.store()
            .version(AggregateType::Node, &node_id)
            .await
            .unwrap(),
        2,
        "re-registered, not enrolled again"
    );
    service
        .command(&node_id, edge_command::Action::NukeStream("live+s1".into()))
        .await
        .unwrap();
    assert_eq!(mist_api.state().nuked, vec!["live+s1"]);

    daemon.abort();
    relay.kill();
    server.abort();
    let _ = std::fs::remove_file(&state);
    drop_topics(&kafka).await;
    db.drop_now().await;
}
