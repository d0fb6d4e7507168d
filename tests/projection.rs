//! The control-plane projector against real Kafka and PostgreSQL: exactly-once
//! effect under SIGKILL, dead letters for events it cannot apply, and
//! read-your-writes.

// The helpers below fail the test by panicking, as test code should.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;

use frameworks_commands::aggregates::api_token::{ApiToken, ApiTokenCommand};
use frameworks_commands::aggregates::infrastructure::{
    Cluster, ClusterCapacity, ClusterCommand, ClusterOutcome, Node, NodeCommand, NodeIdentity,
    NodeMode, ServiceReport, enrol_node,
};
use frameworks_commands::aggregates::marketplace::{
    AccessLevel, MarketplaceCommand, PricingModel, ResourceLimits, Visibility,
};
use frameworks_commands::aggregates::stream::{Ingest, Stream, StreamCommand, StreamOutcome};
use frameworks_commands::aggregates::tenant::{Tenant, TenantCommand, set_preferred_cluster};
use frameworks_commands::aggregates::user::{Role, User, UserCommand};
use frameworks_commands::relay::{OutboxRelay, RelaySettings};
use frameworks_commands::{CommandBus, CommandContext, EventStore, SecretBox};
use frameworks_events::kafka::{EventPublisher, KafkaSettings, read_dead_letters};
use frameworks_events::proto::v1::stream::{
    StreamCreated, StreamDeleted, StreamKeyCreated, StreamKeyDeleted, StreamUpdated,
};
use frameworks_events::proto::v1::tenant::{TenantCreated, TenantSuspended};
use frameworks_events::proto::v1::user::UserLoginFailed;
use frameworks_events::{AggregateType, Event, EventPayload, Topic};
use frameworks_projections::control_plane::{NAME, TABLES, TOPICS};
use frameworks_projections::generations::Generations;
use frameworks_projections::generations::postgres::PostgresGenerations;
use frameworks_projections::postgres::{PostgresProjector, ProjectorSettings};
use frameworks_projections::read_your_writes::{WaitError, wait_for};
use frameworks_projections::status::status;
use rdkafka::message::OwnedHeaders;
use support::{
    RoleProcess, TestDatabase, drop_topics, fresh_database, kafka_with_topics, random_below,
    spawn_role, within,
};
use uuid::Uuid;

fn update(name: String) -> StreamCommand {
    StreamCommand::Update {
        name: Some(name),
        description: Some("updated".into()),
        record: Some(true),
        ingest: None,
        pull_source: None,
        allow_private_sources: false,
    }
}

/// Commands touching every aggregate and most event types.
async fn workload(bus: &CommandBus, tenants: usize) {
    let operator = CommandContext::operator("operator:test");
    for t in 0..tenants {
        let tenant = Uuid::now_v7();
        let ctx = CommandContext::for_tenant(tenant, "user:load");
        let id = tenant.to_string();
        let create = TenantCommand::Create {
            name: format!("tenant {t}"),
            tier: "pro".into(),
            region: "eu-west".into(),
        };
        bus.execute::<Tenant>(&id, &create, &ctx, None)
            .await
            .unwrap();
        bus.execute::<Tenant>(
            &id,
            &TenantCommand::CreateSigningKey { name: "k".into() },
            &ctx,
            None,
        )
        .await
        .unwrap();
        if t % 3 == 0 {
            let suspend = TenantCommand::Suspend {
                reason: "operator".into(),
                note: String::new(),
            };
            bus.execute::<Tenant>(&id, &suspend, &operator, None)
                .await
                .unwrap();
        }
        let user = Uuid::now_v7().to_string();
        let register = UserCommand::Register {
            email: format!("user{t}-{}@example.com", Uuid::now_v7().simple()),
            display_name: "Load".into(),
            password: "a long enough password".into(),
            role: Role::Admin,
        };
        bus.execute::<User>(&user, &register, &ctx, None)
            .await
            .unwrap();
        let login = UserCommand::VerifyLogin {
            password: "wrong password here".into(),
            client_ip: "192.0.2.1".into(),
        };
        bus.execute::<User>(&user, &login, &ctx, None)
            .await
            .unwrap();
        let token = Uuid::now_v7().to_string();
        let create_token = ApiTokenCommand::Create {
            name: "ci".into(),
            scopes: vec!["streams:read".into()],
            expires: None,
            created_by_user_id: user.clone(),
        };
        bus.execute::<ApiToken>(&token, &create_token, &ctx, None)
            .await
            .unwrap();
        if t % 2 == 0 {
            let revoke = ApiTokenCommand::Revoke {
                reason: "rotate".into(),
                revoked_by_user_id: user.clone(),
            };
            bus.execute::<ApiToken>(&token, &revoke, &ctx, None)
                .await
                .unwrap();
        }
        for s in 0..4 {
            let stream = Uuid::now_v7().to_string();
            let create = StreamCommand::Create {
                name: format!("stream {t}-{s}"),
                description: String::new(),
                record: false,
                ingest: Ingest::Push,
                pull_source: None,
                allow_private_sources: false,
            };
            bus.execute::<Stream>(&stream, &create, &ctx, None)
                .await
                .unwrap();
            bus.execute::<Stream>(&stream, &update(format!("renamed {t}-{s}")), &ctx, None)
                .await
                .unwrap();
            let StreamOutcome::Key { key_id, .. } = bus
                .execute::<Stream>(
                    &stream,
                    &StreamCommand::AddKey {
                        label: "backup".into(),
                    },
                    &ctx,
                    None,
                )
                .await
                .unwrap()
            else {
                panic!("expected a key")
            };
            bus.execute::<Stream>(&stream, &StreamCommand::RefreshKey, &ctx, None)
                .await
                .unwrap();
            if s == 1 {
                bus.execute::<Stream>(&stream, &StreamCommand::DeleteKey { key_id }, &ctx, None)
                    .await
                    .unwrap();
            }
            if s == 3 {
                bus.execute::<Stream>(&stream, &StreamCommand::Delete, &ctx, None)
                    .await
                    .unwrap();
            }
        }
    }
    let cluster = Uuid::now_v7().to_string();
    let create = ClusterCommand::Create {
        name: "edge".into(),
        region: "eu-west".into(),
        base_url: "https://edge.example.net".into(),
        shared: true,
        capacity: ClusterCapacity {
            max_concurrent_streams: 500,
            max_concurrent_viewers: 20_000,
            max_bandwidth_mbps: 10_000,
        },
    };
    bus.execute::<Cluster>(&cluster, &create, &operator, None)
        .await
        .unwrap();
    // A tenant that prefers the shared cluster.
    let chooser = Uuid::now_v7();
    let as_chooser = CommandContext::for_tenant(chooser, "user:chooser");
    bus.execute::<Tenant>(
        &chooser.to_string(),
        &TenantCommand::Create {
            name: "chooser".into(),
            tier: "free".into(),
            region: "eu-west".into(),
        },
        &as_chooser,
        None,
    )
    .await
    .unwrap();
    set_preferred_cluster(bus, chooser, cluster.parse().unwrap(), &as_chooser)
        .await
        .unwrap();
    for n in 0..3 {
        let ClusterOutcome::EnrolmentToken { token, .. } = bus
            .execute::<Cluster>(
                &cluster,
                &ClusterCommand::IssueEnrolmentToken {
                    ttl_seconds: 600,
                    name: "edge".into(),
                },
                &operator,
                None,
            )
            .await
            .unwrap()
        else {
            panic!("expected a token")
        };
        let identity = NodeIdentity {
            hardware_fingerprint: format!("fp-{}", Uuid::now_v7().simple()),
            hostname: format!("edge-{n}"),
            edge_version: "1.0".into(),
            public_host: format!("edge-{n}.example.net"),
            latitude: 52.0,
            longitude: 4.0,
        };
        let node = enrol_node(bus, &token, &identity, &operator).await.unwrap();
        bus.execute::<Node>(
            &node.node_id,
            &NodeCommand::Reenrol(identity),
            &operator,
            None,
        )
        .await
        .unwrap();
        // Its services (reported twice, the second time without MistServer)
        // and a drain.
        let service = |service_id: &str, port: u16| ServiceReport {
            service_id: service_id.into(),
            version: "1.0".into(),
            protocol: "http".into(),
            port,
            health_endpoint: String::new(),
            process_id: 10,
            started_at: Utc::now(),
        };
        for services in [
            vec![service("edge", 18007), service("mistserver", 8080)],
            vec![service("edge", 18007)],
        ] {
            bus.execute::<Node>(
                &node.node_id,
                &NodeCommand::ReportServices(services),
                &operator,
                None,
            )
            .await
            .unwrap();
        }
        bus.execute::<Node>(
            &node.node_id,
            &NodeCommand::SetMode {
                mode: NodeMode::Draining,
                reason: "upgrade".into(),
            },
            &operator,
            None,
        )
        .await
        .unwrap();
        if n == 2 {
            bus.execute::<Node>(
                &node.node_id,
                &NodeCommand::Decommission {
                    reason: "test".into(),
                },
                &operator,
                None,
            )
            .await
            .unwrap();
        }
    }
    marketplace(bus).await;
}

/// A tenant's cluster offered to others: subscriptions approved, rejected
/// and cancelled, invites accepted and revoked.
async fn marketplace(bus: &CommandBus) {
    let owner = CommandContext::for_tenant(Uuid::now_v7(), "user:owner");
    let cluster = Uuid::now_v7().to_string();
    let create = ClusterCommand::Create {
        name: "own".into(),
        region: "eu-west".into(),
        base_url: "https://own.example.net".into(),
        shared: false,
        capacity: ClusterCapacity {
            max_concurrent_streams: 10,
            max_concurrent_viewers: 100,
            max_bandwidth_mbps: 1_000,
        },
    };
    let run = |command: MarketplaceCommand, ctx: CommandContext| {
        let cluster = cluster.clone();
        async move {
            bus.execute::<Cluster>(&cluster, &ClusterCommand::Marketplace(command), &ctx, None)
                .await
                .unwrap()
        }
    };
    bus.execute::<Cluster>(&cluster, &create, &owner, None)
        .await
        .unwrap();
    run(
        MarketplaceCommand::Update {
            visibility: Some(Visibility::Public),
            pricing_model: Some(PricingModel::Monthly),
            monthly_price_cents: Some(900),
            requires_approval: Some(true),
            short_description: Some("offered".into()),
        },
        owner.clone(),
    )
    .await;
    for (i, decision) in ["approve", "reject", "cancel", "wait"]
        .into_iter()
        .enumerate()
    {
        let subscriber = CommandContext::for_tenant(Uuid::now_v7(), format!("user:s{i}"));
        let ClusterOutcome::Subscription { subscription_id } = run(
            MarketplaceCommand::RequestSubscription { invite_token: None },
            subscriber.clone(),
        )
        .await
        else {
            panic!("expected a subscription")
        };
        match decision {
            "approve" => {
                run(
                    MarketplaceCommand::ApproveSubscription { subscription_id },
                    owner.clone(),
                )
                .await;
            }
            "reject" => {
                let reason = "full".into();
                run(
                    MarketplaceCommand::RejectSubscription {
                        subscription_id,
                        reason,
                    },
                    owner.clone(),
                )
                .await;
            }
            "cancel" => {
                run(MarketplaceCommand::CancelSubscription, subscriber).await;
            }
            _ => {}
        }
    }
    for accept in [true, false] {
        let invited = CommandContext::for_tenant(Uuid::now_v7(), "user:invited");
        let invite = MarketplaceCommand::CreateInvite {
            invited_tenant_id: invited.tenant_id.unwrap(),
            access_level: AccessLevel::Read,
            resource_limits: ResourceLimits {
                max_concurrent_viewers: Some(5),
                ..ResourceLimits::default()
            },
            expires_in_days: 3,
        };
        let ClusterOutcome::Invite { invite_id, token } = run(invite, owner.clone()).await else {
            panic!("expected an invite")
        };
        if accept {
            let invite_token = Some(token);
            run(
                MarketplaceCommand::RequestSubscription { invite_token },
                invited,
            )
            .await;
        } else {
            run(
                MarketplaceCommand::RevokeInvite { invite_id },
                owner.clone(),
            )
            .await;
        }
    }
}

/// Publishes the whole outbox, then re-publishes some events as a crashed relay would.
async fn publish(store: &EventStore, kafka: &KafkaSettings, duplicates: usize) {
    let publisher = EventPublisher::new(kafka, "test-relay").unwrap();
    let relay = OutboxRelay::new(store.clone(), publisher, RelaySettings::default());
    let mut leader = store.pool().acquire().await.unwrap().detach();
    while relay.drain_once(&mut leader).await.unwrap() > 0 {}
    let again: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT envelope FROM events ORDER BY random() LIMIT $1")
            .bind(duplicates as i64)
            .fetch_all(store.pool())
            .await
            .unwrap();
    let publisher = EventPublisher::new(kafka, "test-duplicates").unwrap();
    for envelope in again {
        publisher
            .publish(&Event::decode(&envelope).unwrap())
            .await
            .unwrap();
    }
}

/// The highest sequence of every aggregate in the event store.
async fn expected_versions(store: &EventStore) -> HashMap<(String, String), i64> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, max(sequence) FROM events GROUP BY 1, 2",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().map(|(t, id, v)| ((t, id), v)).collect()
}

async fn caught_up(db: &TestDatabase, expected: &HashMap<(String, String), i64>) -> bool {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, version FROM read_models.projection_versions WHERE projection = $1",
    )
    .bind(NAME)
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    let have: HashMap<(String, String), i64> =
        rows.into_iter().map(|(t, id, v)| ((t, id), v)).collect();
    expected
        .iter()
        .all(|(key, version)| have.get(key) == Some(version))
}

fn spawn_projector(db: &TestDatabase, kafka: &KafkaSettings, group: &str) -> RoleProcess {
    spawn_role(
        "projector",
        kafka,
        &[
            ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
            ("FRAMEWORKS_PROJECTOR_GROUP", group.to_owned()),
            // The same static member each restart, as a supervised process would be.
            ("FRAMEWORKS_PROJECTOR_INSTANCE_ID", format!("{group}-1")),
            ("FRAMEWORKS_PROJECTOR_BATCH_SIZE", "16".into()),
            ("FRAMEWORKS_PROJECTOR_METRICS_LISTEN", "127.0.0.1:0".into()),
        ],
    )
}

/// How many records the projection has applied, summed over partitions.
async fn applied_offsets(db: &TestDatabase) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM read_models.projection_offsets",
    )
    .fetch_one(db.store.pool())
    .await
    .unwrap()
}

/// Every read-model table as sorted JSON rows.
async fn snapshot(db: &TestDatabase) -> Vec<(String, Vec<String>)> {
    let mut tables = Vec::new();
    for table in TABLES {
        // `table` comes from the projection's own list of table names.
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT to_jsonb(t)::text FROM read_models.{table} t ORDER BY 1"
        )))
        .fetch_all(db.store.pool())
        .await
        .unwrap();
        tables.push((table.to_owned(), rows));
    }
    tables
}

fn settings(group_id: String, batch_size: u32) -> ProjectorSettings {
    ProjectorSettings {
        group_id,
        instance_id: None,
        session_timeout_ms: 10_000,
        batch_size,
        batch_wait_ms: 20,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_batch_ends_equal_to_a_clean_rebuild() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let (secrets, _) = SecretBox::generate("test-key");
    let bus = CommandBus::new(db.store.clone(), secrets);
    workload(&bus, 30).await;
    publish(&db.store, &kafka, 40).await;
    let expected = expected_versions(&db.store).await;

    // The projector catches up while being SIGKILLed at random moments. The
    // live generation exists up front, so its tables can be watched from the start.
    PostgresGenerations::new(db.store.pool().clone())
        .ensure_live()
        .await
        .unwrap();
    let group = format!("{}-projector", kafka.catalogue.prefix);
    let mut kills = 0;
    let mut projector = spawn_projector(&db, &kafka, &group);
    while kills < 8 {
        // Kill only a busy projector: once it has committed a batch since its
        // start, with work left, a random moment later (batches are 16 records).
        let start = applied_offsets(&db).await;
        within(
            Duration::from_secs(30),
            "the restarted projector to apply a batch",
            async {
                while applied_offsets(&db).await == start {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(random_below(60))).await;
        assert!(
            !caught_up(&db, &expected).await,
            "the workload ran out before kill {}",
            kills + 1
        );
        projector.kill();
        kills += 1;
        projector = spawn_projector(&db, &kafka, &group);
    }
    within(
        Duration::from_secs(90),
        "the killed projector to catch up",
        async {
            while !caught_up(&db, &expected).await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    projector.kill();

    // A clean rebuild of the same log into an empty database, never interrupted.
    let clean = fresh_database().await;
    let settings = settings(format!("{group}-clean"), 500);
    let rebuild = PostgresProjector::new(clean.store.pool().clone(), &kafka, settings)
        .await
        .unwrap();
    within(Duration::from_secs(90), "the clean rebuild", async {
        while !caught_up(&clean, &expected).await {
            rebuild.step().await.unwrap();
        }
    })
    .await;

    let killed = snapshot(&db).await;
    let rebuilt = snapshot(&clean).await;
    for ((table, a), (_, b)) in killed.iter().zip(&rebuilt) {
        assert!(
            !a.is_empty(),
            "{table} is empty: the workload should fill every table"
        );
        assert_eq!(
            a, b,
            "{table} differs between the killed projector and the clean rebuild"
        );
    }
    println!(
        "projector killed {kills} times while busy; {} aggregates projected equal to a clean rebuild",
        expected.len()
    );
    drop_topics(&kafka).await;
    db.drop_now().await;
    clean.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_model_cannot_take_are_dead_lettered_and_projection_goes_on() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let publisher = EventPublisher::new(&kafka, "test").unwrap();
    let streams = kafka.catalogue().name(Topic::Streams).to_owned();
    let orphan = Uuid::now_v7().to_string();
    let key = Some(orphan.as_bytes());
    publisher
        .send(&streams, key, b"\x00not an envelope", OwnedHeaders::new())
        .await
        .unwrap();
    // A key for a stream the read model never saw.
    let stray = Event::new(
        orphan.clone(),
        StreamKeyCreated {
            key_id: "k1".into(),
            ..Default::default()
        },
    )
    .with_sequence(2);
    publisher.publish(&stray).await.unwrap();
    let good = Event::new(
        orphan.clone(),
        StreamCreated {
            name: "late".into(),
            playback_id: "pb".into(),
            ..Default::default()
        },
    )
    .with_tenant(Uuid::now_v7())
    .with_sequence(1);
    // Same key, so after the stray one on the same partition; sequence 1 is above nothing stored.
    publisher.publish(&good).await.unwrap();

    let settings = settings(format!("{}-p", kafka.catalogue.prefix), 10);
    let projector = PostgresProjector::new(db.store.pool().clone(), &kafka, settings)
        .await
        .unwrap();
    within(
        Duration::from_secs(60),
        "projecting past the bad events",
        async {
            loop {
                projector.step().await.unwrap();
                let names: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM read_models.rm_streams")
                        .fetch_all(db.store.pool())
                        .await
                        .unwrap();
                if names == ["late"] {
                    break;
                }
            }
        },
    )
    .await;
    let letters = read_dead_letters(&kafka, 10).await.unwrap();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(reasons, ["malformed-envelope", "missing-aggregate"]);
    assert!(letters[1].error.contains(&orphan), "{}", letters[1].error);

    // Status: caught up on every partition, with the two dead letters counted.
    let group = format!("{}-p", kafka.catalogue.prefix);
    let generations = PostgresGenerations::new(db.store.pool().clone());
    let statuses = status(&generations, &TOPICS, &kafka, &group, 1000)
        .await
        .unwrap();
    let [status] = statuses.as_slice() else {
        panic!("one live generation and no replay: {statuses:?}");
    };
    assert_eq!(status.dead_letters, 2);
    assert_eq!(status.total_lag(), 0, "{status:?}");
    let streams_end: i64 = status
        .partitions
        .iter()
        .filter(|p| p.topic == streams)
        .map(|p| p.end)
        .sum();
    assert_eq!(
        streams_end, 3,
        "three records were written to the streams topic"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_frameworks"))
        .args(["projections", "status"])
        .env("FRAMEWORKS_DATABASE_URL", &db.url)
        .env("FRAMEWORKS_KAFKA_BROKERS", &kafka.brokers)
        .env("FRAMEWORKS_TOPIC_PREFIX", &kafka.catalogue.prefix)
        .env("FRAMEWORKS_PROJECTOR_GROUP", &group)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("lag 0 record(s), 2 dead letter(s)"),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop_topics(&kafka).await;
    db.drop_now().await;
}

/// A scratch database and topics, and one stream created in the event store
/// (not yet published): its id.
async fn one_stream_in_the_store(name: &str) -> (TestDatabase, KafkaSettings, String) {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let (secrets, _) = SecretBox::generate("test-key");
    let bus = CommandBus::new(db.store.clone(), secrets);
    let ctx = CommandContext::for_tenant(Uuid::now_v7(), "user:test");
    let stream = Uuid::now_v7().to_string();
    let create = StreamCommand::Create {
        name: name.into(),
        description: String::new(),
        record: false,
        ingest: Ingest::Push,
        pull_source: None,
        allow_private_sources: false,
    };
    bus.execute::<Stream>(&stream, &create, &ctx, None)
        .await
        .unwrap();
    (db, kafka, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_can_wait_until_its_events_are_projected() {
    let (db, kafka, stream) = one_stream_in_the_store("read me").await;

    // Nothing projects yet: the wait ends, bounded, with a typed error.
    let pool = db.store.pool().clone();
    let early = wait_for(
        &pool,
        NAME,
        AggregateType::Stream,
        &stream,
        2,
        Duration::from_millis(300),
    )
    .await;
    assert!(
        matches!(early, Err(WaitError::Timeout { reached: None, .. })),
        "{early:?}"
    );

    let settings = settings(format!("{}-ryw", kafka.catalogue.prefix), 100);
    let projector = PostgresProjector::new(pool.clone(), &kafka, settings)
        .await
        .unwrap();
    let running = tokio::spawn(async move { projector.run(std::future::pending()).await });
    publish(&db.store, &kafka, 0).await;
    wait_for(
        &pool,
        NAME,
        AggregateType::Stream,
        &stream,
        2,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let name: String =
        sqlx::query_scalar("SELECT name FROM read_models.rm_streams WHERE id = $1::uuid")
            .bind(&stream)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(name, "read me");
    running.abort();
    drop_topics(&kafka).await;
    db.drop_now().await;
}

/// The projector role's loop runs supervised: made to die four times on
/// start (a failpoint; the test build compiles them in), it is down on
/// `/health` through the backoff, counted, started again, and then projects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_projector_loop_is_restarted_and_health_reports_it_meanwhile() {
    let (db, kafka, stream) = one_stream_in_the_store("after the restarts").await;
    publish(&db.store, &kafka, 0).await;

    let metrics = format!("127.0.0.1:{}", support::free_port());
    let group = format!("{}-supervised", kafka.catalogue.prefix);
    let _projector = spawn_role(
        "projector",
        &kafka,
        &[
            ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
            ("FRAMEWORKS_PROJECTOR_GROUP", group),
            ("FRAMEWORKS_PROJECTOR_METRICS_LISTEN", metrics.clone()),
            ("FAILPOINTS", "projector=4*panic".into()),
        ],
    );
    let down =
        support::down_then_healthy(&metrics, "projector", 4.0, Duration::from_secs(30)).await;
    let restarts = support::metric(&metrics, "frameworks_task_restarts_total", "projector").await;
    assert_eq!(restarts, 4.0, "four deaths, four restarts");
    wait_for(
        db.store.pool(),
        NAME,
        AggregateType::Stream,
        &stream,
        2,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    println!(
        "the projector's loop died 4 times; /health said so for at least {down:?}; then it projected"
    );
    drop(_projector);
    drop_topics(&kafka).await;
    db.drop_now().await;
}

/// A projector with nothing to apply is healthy, not stalled: while it
/// waits for records it asks how many wait for it (none) and counts that
/// as progress, so its progress gauge keeps moving and `/health` stays ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_projector_keeps_reporting_progress() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let prefix = kafka.catalogue.prefix.clone();
    let listen = format!("127.0.0.1:{}", support::free_port());
    let _projector = spawn_role(
        "projector",
        &kafka,
        &[
            ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
            ("FRAMEWORKS_PROJECTOR_GROUP", format!("{prefix}-projector")),
            ("FRAMEWORKS_PROJECTOR_METRICS_LISTEN", listen.clone()),
        ],
    );
    within(Duration::from_secs(60), "the projector healthy", async {
        while !matches!(support::health(&listen).await, Some((200, _))) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let started = Utc::now().timestamp_millis() as f64 / 1000.0;
    // Past two of its checks (every 5 s) with nothing to read.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let progress = support::metric(
        &listen,
        "frameworks_projector_progress_timestamp_seconds",
        "",
    )
    .await;
    assert!(
        progress >= started + 4.0,
        "no progress reported since {started} (last {progress})"
    );
    let (status, body) = support::health(&listen).await.unwrap();
    assert_eq!(status, 200, "{body}");
    drop_topics(&kafka).await;
}

/// The log of the bad-events-in-a-batch test: 40 streams with four events
/// each, and in their middle events the model cannot take, re-sent copies,
/// and events of types applied one by one. Returns the records published
/// and the dead letters expected (reasons, sorted).
async fn mixed_batch(kafka: &KafkaSettings) -> (i64, Vec<&'static str>) {
    let publisher = EventPublisher::new(kafka, "test").unwrap();
    let tenant = Uuid::now_v7();
    let streams: Vec<String> = (0..40).map(|_| Uuid::now_v7().to_string()).collect();
    let mut log = vec![
        Event::new(
            tenant.to_string(),
            TenantCreated {
                name: "studio".into(),
                tier: "pro".into(),
                region: "eu".into(),
            },
        )
        .with_tenant(tenant)
        .with_sequence(1),
        // Applied one by one (not a set-based type), in the same rounds.
        Event::new(
            tenant.to_string(),
            TenantSuspended {
                reason: "billing".into(),
                note: String::new(),
            },
        )
        .with_tenant(tenant)
        .with_sequence(2),
    ];
    let history = |index: usize, stream: &str| -> Vec<Event> {
        let payloads: [EventPayload; 4] = [
            StreamCreated {
                name: format!("s{index}"),
                playback_id: format!("pb-{stream}"),
                ..Default::default()
            }
            .into(),
            StreamKeyCreated {
                key_id: format!("k-{stream}"),
                primary: true,
                lookup_hash: vec![7; 32],
                ..Default::default()
            }
            .into(),
            StreamUpdated {
                name: Some(format!("s{index} v3")),
                description: Some("third".into()),
                ..Default::default()
            }
            .into(),
            StreamUpdated {
                name: Some(format!("s{index} v4")),
                record: Some(true),
                ..Default::default()
            }
            .into(),
        ];
        payloads
            .into_iter()
            .zip(1..)
            .map(|(payload, sequence)| {
                Event::new(stream, payload)
                    .with_tenant(tenant)
                    .with_sequence(sequence)
            })
            .collect()
    };
    for (index, stream) in streams.iter().enumerate().take(20) {
        log.extend(history(index, stream));
    }
    let at = |stream: &str, sequence: u64, payload: EventPayload| {
        Event::new(stream, payload)
            .with_tenant(tenant)
            .with_sequence(sequence)
    };
    let ghost = Uuid::now_v7().to_string();
    log.extend([
        // Updates (two, folded into one statement) and keys of streams
        // the model never saw.
        at(&ghost, 1, StreamUpdated::default().into()),
        at(
            &ghost,
            2,
            StreamUpdated {
                name: Some("ghost".into()),
                ..Default::default()
            }
            .into(),
        ),
        at(
            &Uuid::now_v7().to_string(),
            1,
            StreamKeyCreated {
                key_id: "stray".into(),
                ..Default::default()
            }
            .into(),
        ),
        // A login of a user the model never saw.
        Event::new(
            Uuid::now_v7().to_string(),
            UserLoginFailed {
                consecutive_failures: 2,
                client_ip: String::new(),
            },
        )
        .with_sequence(1),
        // A stream id that is not a UUID.
        at("not-a-uuid", 1, StreamCreated::default().into()),
        // Stream 0's second and third events sent again, then its deletion.
        history(0, &streams[0]).swap_remove(1),
        history(0, &streams[0]).swap_remove(2),
        at(&streams[0], 5, StreamDeleted::default().into()),
        // Stream 7: a key it never had (refused, one by one), then a rename (applied).
        at(
            &streams[7],
            5,
            StreamKeyDeleted {
                key_id: "never".into(),
            }
            .into(),
        ),
        at(
            &streams[7],
            6,
            StreamUpdated {
                name: Some("s7 after".into()),
                ..Default::default()
            }
            .into(),
        ),
        // Stream 8: deleted, then updated (refused: a deleted stream does not change).
        at(&streams[8], 5, StreamDeleted::default().into()),
        at(
            &streams[8],
            6,
            StreamUpdated {
                name: Some("s8 ghost".into()),
                ..Default::default()
            }
            .into(),
        ),
    ]);
    for (index, stream) in streams.iter().enumerate().skip(20) {
        log.extend(history(index, stream));
    }
    for event in &log {
        publisher.publish(event).await.unwrap();
    }
    let topic = kafka.catalogue().name(Topic::Streams).to_owned();
    publisher
        .send(
            &topic,
            Some(ghost.as_bytes()),
            b"\x00not an envelope",
            OwnedHeaders::new(),
        )
        .await
        .unwrap();
    let records = i64::try_from(log.len()).unwrap() + 1;
    let mut expected = vec![
        "invalid-for-projection",
        "malformed-envelope",
        "missing-aggregate",
        "missing-aggregate",
        "missing-aggregate",
        "missing-aggregate",
        "missing-aggregate",
        "missing-aggregate",
    ];
    expected.sort_unstable();
    (records, expected)
}

/// Projects the whole log into `db` as `group`, and returns the projector's
/// set-based fallbacks and its dead letters' reasons (sorted).
async fn project_mixed_batch(
    db: &TestDatabase,
    kafka: &KafkaSettings,
    group: &str,
    records: i64,
) -> (u64, Vec<String>) {
    // One batch holds the whole log: a second apiece to gather it.
    let settings = ProjectorSettings {
        batch_wait_ms: 1_000,
        ..settings(group.to_owned(), 1_000)
    };
    let projector = PostgresProjector::new(db.store.pool().clone(), kafka, settings)
        .await
        .unwrap();
    within(
        Duration::from_secs(60),
        "the mixed batch projected",
        async {
            while applied_offsets(db).await < records {
                projector.step().await.unwrap();
            }
        },
    )
    .await;
    assert_eq!(applied_offsets(db).await, records);
    let mut reasons: Vec<String> = read_dead_letters(kafka, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|letter| letter.consumer_group.starts_with(&format!("{group}.")))
        .map(|letter| letter.reason)
        .collect();
    reasons.sort_unstable();
    (projector.fallbacks(), reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_in_a_set_based_batch_are_dead_lettered_and_the_rest_applied_once() {
    let kafka = kafka_with_topics().await;
    let (records, expected) = mixed_batch(&kafka).await;

    // Set-based: no fallback, the bad events dead-lettered, the rest applied.
    let fast = fresh_database().await;
    let group = format!("{}-fast", kafka.catalogue.prefix);
    let (fallbacks, letters) = project_mixed_batch(&fast, &kafka, &group, records).await;
    assert_eq!(fallbacks, 0, "no set-based statement should fail");
    assert_eq!(letters, expected);

    let streams: Vec<(String, bool, Option<String>, bool)> = sqlx::query_as(
        "SELECT name, record, description, deleted_at IS NOT NULL
         FROM read_models.rm_streams ORDER BY created_at, name",
    )
    .fetch_all(fast.store.pool())
    .await
    .unwrap();
    assert_eq!(streams.len(), 40, "{streams:?}");
    let named = |name: &str| streams.iter().find(|s| s.0 == name).cloned();
    // Re-sent events did not undo stream 0's later rename; it was then deleted.
    assert_eq!(
        named("s0 v4"),
        Some(("s0 v4".into(), true, Some("third".into()), true))
    );
    assert_eq!(
        named("s7 after").map(|s| s.3),
        Some(false),
        "stream 7 went on after its refused event"
    );
    assert_eq!(named("s8 v4").map(|s| s.3), Some(true));
    assert_eq!(
        streams.iter().filter(|s| s.0.ends_with(" v4")).count(),
        39,
        "{streams:?}"
    );
    let keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM read_models.rm_stream_keys k
         JOIN read_models.rm_streams s ON s.id = k.stream_id AND s.primary_key_id = k.key_id",
    )
    .fetch_one(fast.store.pool())
    .await
    .unwrap();
    assert_eq!(keys, 38, "every stream's primary key, but the deleted two");
    let suspended: bool = sqlx::query_scalar("SELECT suspended FROM read_models.rm_tenants")
        .fetch_one(fast.store.pool())
        .await
        .unwrap();
    assert!(suspended);
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT version FROM read_models.projection_versions
         WHERE aggregate_type = 'stream' ORDER BY version DESC LIMIT 3",
    )
    .fetch_all(fast.store.pool())
    .await
    .unwrap();
    assert_eq!(versions, [6, 5, 5], "stream 7 at 6, streams 0 and 8 at 5");

    // The set-based path failing: the same batch applied one event at a
    // time ends in the same model with the same dead letters.
    let slow = fresh_database().await;
    let group = format!("{}-slow", kafka.catalogue.prefix);
    let failpoint = format!("{group}.g1/set-based");
    fail::cfg(&failpoint, "return").unwrap();
    let (fallbacks, letters) = project_mixed_batch(&slow, &kafka, &group, records).await;
    fail::remove(&failpoint);
    assert!(
        fallbacks >= 1,
        "the injected failure made a batch fall back"
    );
    assert_eq!(letters, expected);
    assert_eq!(snapshot(&fast).await, snapshot(&slow).await);
    let versions = "SELECT aggregate_type, aggregate_id, version
                    FROM read_models.projection_versions ORDER BY 1, 2";
    let fast_versions: Vec<(String, String, i64)> = sqlx::query_as(versions)
        .fetch_all(fast.store.pool())
        .await
        .unwrap();
    let slow_versions: Vec<(String, String, i64)> = sqlx::query_as(versions)
        .fetch_all(slow.store.pool())
        .await
        .unwrap();
    assert_eq!(fast_versions, slow_versions);
    println!(
        "{records} records in one batch: {} dead-lettered, the rest applied once, set-based and one by one alike",
        expected.len()
    );
    drop_topics(&kafka).await;
    fast.drop_now().await;
    slow.drop_now().await;
}
