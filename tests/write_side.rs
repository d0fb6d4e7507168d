//! The write side against a real PostgreSQL: optimistic concurrency,
//! idempotency, validation, and the rules of every aggregate.

use crate::support;

use std::sync::Arc;

use chrono::Utc;
use frameworks_commands::aggregates::api_token::{
    ApiToken, ApiTokenCommand, ApiTokenOutcome, TokenExpiry,
};
use frameworks_commands::aggregates::infrastructure::{
    Cluster, ClusterCapacity, ClusterCommand, ClusterOutcome, Node, NodeCommand, NodeIdentity,
    NodeMode, ServiceReport, enrol_node, node_by_fingerprint, pre_register_edge,
};
use frameworks_commands::aggregates::marketplace::{
    AccessLevel, MarketplaceCommand, ResourceLimits, Visibility, cluster_of_invite_token,
};
use frameworks_commands::aggregates::stream::{Ingest, Stream, StreamCommand, StreamOutcome};
use frameworks_commands::aggregates::tenant::{
    Tenant, TenantCommand, TenantOutcome, set_preferred_cluster,
};
use frameworks_commands::aggregates::user::{Role, User, UserCommand, UserOutcome};
use frameworks_commands::{
    CommandBus, CommandContext, CommandError, ExecuteError, Idempotency, SecretBox,
};
use frameworks_events::{AggregateType, EventPayload};
use support::{TestDatabase, fresh_database};
use uuid::Uuid;

async fn setup() -> (TestDatabase, CommandBus) {
    let db = fresh_database().await;
    let (secrets, _) = SecretBox::generate("test-key");
    let bus = CommandBus::new(db.store.clone(), secrets);
    (db, bus)
}

fn create_push(name: &str) -> StreamCommand {
    StreamCommand::Create {
        name: name.into(),
        description: String::new(),
        record: false,
        ingest: Ingest::Push,
        pull_source: None,
        allow_private_sources: false,
    }
}

fn rejection(result: Result<impl std::fmt::Debug, ExecuteError>) -> CommandError {
    match result {
        Err(ExecuteError::Rejected(error)) => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn field_of(error: &CommandError) -> &str {
    match error {
        CommandError::Validation { field, .. } => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_aggregate_lose_nothing_and_leave_no_gaps() {
    let (db, bus) = setup().await;
    let bus = Arc::new(bus.with_max_attempts(200));
    let ctx = CommandContext::for_tenant(Uuid::now_v7(), "user:test");
    let stream = Uuid::now_v7().to_string();
    bus.execute::<Stream>(&stream, &create_push("contended"), &ctx, None)
        .await
        .unwrap();

    // 40 writers at once: 20 renames and 20 extra keys, all on one stream.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (bus, ctx, stream) = (Arc::clone(&bus), ctx.clone(), stream.clone());
        tasks.spawn(async move {
            let command = if i % 2 == 0 {
                StreamCommand::Update {
                    name: Some(format!("name {i}")),
                    description: None,
                    record: None,
                    ingest: None,
                    pull_source: None,
                    allow_private_sources: false,
                }
            } else {
                StreamCommand::AddKey {
                    label: format!("key {i}"),
                }
            };
            bus.execute::<Stream>(&stream, &command, &ctx, None)
                .await
                .map(|_| ())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }

    let history = db.history(AggregateType::Stream, &stream).await;
    let sequences: Vec<u64> = history.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=42).collect::<Vec<_>>(),
        "sequences must be gapless"
    );
    let renames = history
        .iter()
        .filter(|e| matches!(e.payload, EventPayload::StreamUpdated(_)))
        .count();
    let keys = history
        .iter()
        .filter(|e| matches!(e.payload, EventPayload::StreamKeyCreated(_)))
        .count();
    assert_eq!(
        (renames, keys),
        (20, 21),
        "every concurrent command is applied exactly once"
    );
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_applies_a_command_once() {
    let (db, bus) = setup().await;
    let bus = Arc::new(bus);
    let ctx = CommandContext::for_tenant(Uuid::now_v7(), "user:test");
    let key = Idempotency {
        key: "create-launch-stream".into(),
    };

    // The same keyed creation, ten times at once: one stream, one answer.
    let stream = CommandBus::id_for_new(&ctx, Some(&key)).to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (bus, ctx, key, stream) = (Arc::clone(&bus), ctx.clone(), key.clone(), stream.clone());
        tasks.spawn(async move {
            bus.execute::<Stream>(&stream, &create_push("launch"), &ctx, Some(&key))
                .await
        });
    }
    let mut outcomes = Vec::new();
    while let Some(result) = tasks.join_next().await {
        outcomes.push(result.unwrap().unwrap());
    }
    assert!(matches!(outcomes[0], StreamOutcome::Created { .. }));
    assert!(
        outcomes.iter().all(|o| *o == outcomes[0]),
        "every repeat returns the first result"
    );
    assert_eq!(
        db.event_count().await,
        2,
        "created once: StreamCreated + its primary key"
    );

    // A later repeat derives the same id and gets the same answer.
    let again = CommandBus::id_for_new(&ctx, Some(&key)).to_string();
    assert_eq!(again, stream);
    assert_eq!(
        bus.execute::<Stream>(&again, &create_push("launch"), &ctx, Some(&key))
            .await
            .unwrap(),
        outcomes[0]
    );

    // The same key with another body is refused, and nothing is appended.
    let error = rejection(
        bus.execute::<Stream>(&again, &create_push("another name"), &ctx, Some(&key))
            .await,
    );
    assert_eq!(
        error,
        CommandError::IdempotencyMismatch {
            key: key.key.clone()
        }
    );
    assert_eq!(db.event_count().await, 2);

    // Keys are per tenant: another tenant's identical key is a new request.
    let other = CommandContext::for_tenant(Uuid::now_v7(), "user:other");
    let theirs = CommandBus::id_for_new(&other, Some(&key)).to_string();
    assert_ne!(theirs, stream);
    bus.execute::<Stream>(&theirs, &create_push("launch"), &other, Some(&key))
        .await
        .unwrap();
    assert_eq!(db.event_count().await, 4);
    db.drop_now().await;
}

#[tokio::test]
async fn bad_input_is_a_typed_error_naming_the_field_and_appends_nothing() {
    let (db, bus) = setup().await;
    let tenant = Uuid::now_v7();
    let ctx = CommandContext::for_tenant(tenant, "user:test");
    let stream = Uuid::now_v7().to_string();

    // Every rule lives with its aggregate (given/when/then, no database:
    // `commands/src/aggregates/*`); here, that a refusal reaches the caller
    // typed and appends nothing.
    let cases = [
        (create_push(""), "input.name"),
        (create_push(&"x".repeat(101)), "input.name"),
    ];
    for (command, field) in cases {
        let error = rejection(bus.execute::<Stream>(&stream, &command, &ctx, None).await);
        assert_eq!(field_of(&error), field, "{error}");
    }

    let token = Uuid::now_v7().to_string();
    let bad_scope = ApiTokenCommand::Create {
        name: "ci".into(),
        scopes: vec!["streams:read".into(), "streams:destroy".into()],
        expires: None,
        created_by_user_id: "u1".into(),
    };
    let error = rejection(
        bus.execute::<ApiToken>(&token, &bad_scope, &ctx, None)
            .await,
    );
    assert_eq!(field_of(&error), "input.permissions[1]");
    assert!(error.to_string().contains("streams:destroy"));
    assert_eq!(db.event_count().await, 0, "failed commands append nothing");

    // Another tenant's stream reads as missing, and cannot be changed.
    bus.execute::<Stream>(&stream, &create_push("mine"), &ctx, None)
        .await
        .unwrap();
    let intruder = CommandContext::for_tenant(Uuid::now_v7(), "user:intruder");
    let before = db.event_count().await;
    for command in [StreamCommand::Delete, StreamCommand::RefreshKey] {
        let error = rejection(
            bus.execute::<Stream>(&stream, &command, &intruder, None)
                .await,
        );
        assert!(matches!(error, CommandError::NotFound { .. }), "{error:?}");
    }
    assert_eq!(db.event_count().await, before);
    db.drop_now().await;
}

#[tokio::test]
async fn streams_seal_their_secrets_and_rotate_keys() {
    let (db, bus) = setup().await;
    let ctx = CommandContext::for_tenant(Uuid::now_v7(), "user:test");
    let stream = Uuid::now_v7().to_string();
    let source = "rtmp://ingest:s3cret@origin.example.com/live/main";
    let command = StreamCommand::Create {
        name: "pulled".into(),
        description: "from origin".into(),
        record: true,
        ingest: Ingest::Pull,
        pull_source: Some(source.into()),
        allow_private_sources: false,
    };
    let StreamOutcome::Created {
        playback_id,
        stream_key,
        ..
    } = bus
        .execute::<Stream>(&stream, &command, &ctx, None)
        .await
        .unwrap()
    else {
        panic!("expected a creation");
    };
    assert!(playback_id.len() >= 20 && stream_key.starts_with("sk_"));

    // The stored source opens with the key ring (that the decided events
    // hold no secret in clear is the aggregate's own test).
    let history = db.history(AggregateType::Stream, &stream).await;
    let EventPayload::StreamCreated(created) = &history[0].payload else {
        panic!()
    };
    let opened = bus
        .secrets()
        .open(
            created.pull_source.as_ref().unwrap(),
            &format!("stream/{stream}/pull_source"),
        )
        .unwrap();
    assert_eq!(opened, source.as_bytes());

    // Refreshing replaces the primary key; the old key's claim is released.
    let old = frameworks_commands::aggregates::stream::stream_key_lookup(&stream_key);
    assert_eq!(
        db.store.find_claim("stream-key-hash", &old).await.unwrap(),
        Some(stream.clone())
    );
    let StreamOutcome::Key {
        stream_key: fresh, ..
    } = bus
        .execute::<Stream>(&stream, &StreamCommand::RefreshKey, &ctx, None)
        .await
        .unwrap()
    else {
        panic!("expected a key");
    };
    assert_ne!(fresh, stream_key);
    assert_eq!(
        db.store.find_claim("stream-key-hash", &old).await.unwrap(),
        None
    );
    let new = frameworks_commands::aggregates::stream::stream_key_lookup(&fresh);
    assert_eq!(
        db.store.find_claim("stream-key-hash", &new).await.unwrap(),
        Some(stream.clone())
    );

    // After deletion the stream is gone for every command.
    bus.execute::<Stream>(&stream, &StreamCommand::Delete, &ctx, None)
        .await
        .unwrap();
    let error = rejection(
        bus.execute::<Stream>(&stream, &StreamCommand::RefreshKey, &ctx, None)
            .await,
    );
    assert!(matches!(error, CommandError::NotFound { .. }));
    assert_eq!(
        db.store
            .find_claim("playback-id", &playback_id)
            .await
            .unwrap(),
        None
    );
    db.drop_now().await;
}

#[tokio::test]
async fn api_tokens_are_shown_once_and_stored_as_hashes() {
    let (db, bus) = setup().await;
    let tenant = Uuid::now_v7();
    let ctx = CommandContext::for_tenant(tenant, "user:test");
    let id = Uuid::now_v7().to_string();
    let create = ApiTokenCommand::Create {
        name: "ci".into(),
        scopes: vec!["streams:read".into(), "analytics:read".into()],
        expires: Some(TokenExpiry::AfterDays(30)),
        created_by_user_id: "u1".into(),
    };
    let ApiTokenOutcome::Created { token, .. } = bus
        .execute::<ApiToken>(&id, &create, &ctx, None)
        .await
        .unwrap()
    else {
        panic!("expected a token");
    };
    let history = db.history(AggregateType::ApiToken, &id).await;
    assert!(
        !history[0]
            .encode()
            .windows(token.len())
            .any(|w| w == token.as_bytes()),
        "token stored in clear"
    );
    let lookup = frameworks_commands::secrets::sha256_hex(token.as_bytes());
    assert_eq!(
        db.store
            .find_claim("api-token-hash", &lookup)
            .await
            .unwrap(),
        Some(id.clone())
    );

    let revoke = ApiTokenCommand::Revoke {
        reason: "leaked".into(),
        revoked_by_user_id: "u1".into(),
    };
    bus.execute::<ApiToken>(&id, &revoke, &ctx, None)
        .await
        .unwrap();
    assert_eq!(
        db.store
            .find_claim("api-token-hash", &lookup)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        rejection(bus.execute::<ApiToken>(&id, &revoke, &ctx, None).await),
        CommandError::Conflict(_)
    ));

    let expired = ApiTokenCommand::Create {
        name: "old".into(),
        scopes: vec!["streams:read".into()],
        expires: Some(TokenExpiry::At(Utc::now() - chrono::Duration::hours(1))),
        created_by_user_id: "u1".into(),
    };
    let error = rejection(
        bus.execute::<ApiToken>(&Uuid::now_v7().to_string(), &expired, &ctx, None)
            .await,
    );
    assert_eq!(field_of(&error), "input.expiresAt");
    let forever = ApiTokenCommand::Create {
        name: "long".into(),
        scopes: vec!["streams:read".into()],
        expires: Some(TokenExpiry::AfterDays(3651)),
        created_by_user_id: "u1".into(),
    };
    let error = rejection(
        bus.execute::<ApiToken>(&Uuid::now_v7().to_string(), &forever, &ctx, None)
            .await,
    );
    assert_eq!(field_of(&error), "input.expiresIn");
    db.drop_now().await;
}

/// A token that expires some days after its creation is the same command
/// however late it is sent again: a keyed repeat replays its first answer,
/// expiry included, instead of being refused as another request.
#[tokio::test]
async fn a_keyed_token_creation_sent_again_replays_its_expiry() {
    let (db, bus) = setup().await;
    let ctx = CommandContext::for_tenant(Uuid::now_v7(), "user:test");
    let key = Idempotency {
        key: "token-0001#0".into(),
    };
    let id = CommandBus::id_for_new(&ctx, Some(&key)).to_string();
    let create = ApiTokenCommand::Create {
        name: "ci".into(),
        scopes: vec!["streams:read".into()],
        expires: Some(TokenExpiry::AfterDays(30)),
        created_by_user_id: "u1".into(),
    };
    let before = Utc::now();
    let first = bus
        .execute::<ApiToken>(&id, &create, &ctx, Some(&key))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let again = bus
        .execute::<ApiToken>(&id, &create, &ctx, Some(&key))
        .await
        .unwrap();
    assert_eq!(first, again);
    let ApiTokenOutcome::Created {
        expires_at: Some(at),
        ..
    } = first
    else {
        panic!("a token that expires: {first:?}");
    };
    let days = (at - before).num_seconds() as f64 / 86_400.0;
    assert!((days - 30.0).abs() < 0.001, "{days} days");
    assert_eq!(db.history(AggregateType::ApiToken, &id).await.len(), 1);
    db.drop_now().await;
}

#[tokio::test]
async fn users_register_with_argon2_and_logins_are_verified_and_locked_out() {
    let (db, bus) = setup().await;
    let tenant = Uuid::now_v7();
    let ctx = CommandContext::for_tenant(tenant, "signup");
    let user = Uuid::now_v7().to_string();
    let register = |email: &str| UserCommand::Register {
        email: email.into(),
        display_name: "Ada".into(),
        password: "correct horse battery".into(),
        role: Role::Owner,
    };
    bus.execute::<User>(&user, &register("Ada@Example.com"), &ctx, None)
        .await
        .unwrap();
    let EventPayload::UserRegistered(registered) =
        &db.history(AggregateType::User, &user).await[0].payload
    else {
        panic!()
    };
    assert!(registered.password_hash.starts_with("$argon2id$"));
    assert_eq!(registered.email, "ada@example.com");

    // The e-mail is unique across users, whatever its case.
    let twin = Uuid::now_v7().to_string();
    let error = rejection(
        bus.execute::<User>(&twin, &register("ADA@example.com"), &ctx, None)
            .await,
    );
    assert!(matches!(error, CommandError::Conflict(_)), "{error:?}");
    let weak = UserCommand::Register {
        email: "b@example.com".into(),
        display_name: "B".into(),
        password: "short".into(),
        role: Role::Member,
    };
    assert_eq!(
        field_of(&rejection(
            bus.execute::<User>(&twin, &weak, &ctx, None).await
        )),
        "input.password"
    );

    let login = |password: &str| UserCommand::VerifyLogin {
        password: password.into(),
        client_ip: "203.0.113.9".into(),
    };
    assert_eq!(
        bus.execute::<User>(&user, &login("correct horse battery"), &ctx, None)
            .await
            .unwrap(),
        UserOutcome::LoggedIn {
            user_id: user.clone(),
            tenant_id: Some(tenant)
        }
    );
    for attempt in 1..=5 {
        let outcome = bus
            .execute::<User>(&user, &login("wrong password!"), &ctx, None)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            UserOutcome::LoginRefused {
                locked: attempt == 5
            }
        );
    }
    // Locked: even the right password is refused for a while.
    assert_eq!(
        bus.execute::<User>(&user, &login("correct horse battery"), &ctx, None)
            .await
            .unwrap(),
        UserOutcome::LoginRefused { locked: true }
    );
    db.drop_now().await;
}

#[tokio::test]
async fn signing_keys_return_the_private_key_once_and_are_limited_to_ten() {
    use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

    let (db, bus) = setup().await;
    let tenant = Uuid::now_v7();
    let ctx = CommandContext::for_tenant(tenant, "user:test");
    let id = tenant.to_string();
    let create = TenantCommand::Create {
        name: "Acme".into(),
        tier: "pro".into(),
        region: "eu-west".into(),
    };
    bus.execute::<Tenant>(&id, &create, &ctx, None)
        .await
        .unwrap();

    let mut kids = Vec::new();
    for i in 0..10 {
        let command = TenantCommand::CreateSigningKey {
            name: format!("key {i}"),
        };
        let TenantOutcome::SigningKey {
            kid,
            private_key_pem,
            public_key_pem,
        } = bus
            .execute::<Tenant>(&id, &command, &ctx, None)
            .await
            .unwrap()
        else {
            panic!("expected a key");
        };
        assert_eq!(kid.len(), 16);
        assert!(private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let private = p256::ecdsa::SigningKey::from_pkcs8_pem(&private_key_pem).unwrap();
        let public = p256::ecdsa::VerifyingKey::from_public_key_pem(&public_key_pem).unwrap();
        assert_eq!(*private.verifying_key(), public);
        kids.push(kid);
    }
    let eleventh = TenantCommand::CreateSigningKey {
        name: "one too many".into(),
    };
    assert_eq!(
        field_of(&rejection(
            bus.execute::<Tenant>(&id, &eleventh, &ctx, None).await
        )),
        "input"
    );

    // Only public keys are stored.
    for event in db.history(AggregateType::Tenant, &id).await {
        if let EventPayload::SigningKeyCreated(key) = &event.payload {
            p256::ecdsa::VerifyingKey::from_public_key_der(&key.public_key_spki).unwrap();
            assert_eq!(key.algorithm, "ES256");
        }
    }
    let revoke = TenantCommand::RevokeSigningKey {
        kid: kids[0].clone(),
        reason: "rotated".into(),
    };
    bus.execute::<Tenant>(&id, &revoke, &ctx, None)
        .await
        .unwrap();
    bus.execute::<Tenant>(&id, &eleventh, &ctx, None)
        .await
        .unwrap();

    // Suspension is for operators only.
    let suspend = TenantCommand::Suspend {
        reason: "billing-overdue".into(),
        note: String::new(),
    };
    assert!(matches!(
        rejection(bus.execute::<Tenant>(&id, &suspend, &ctx, None).await),
        CommandError::Forbidden(_)
    ));
    bus.execute::<Tenant>(
        &id,
        &suspend,
        &CommandContext::operator("operator:ops"),
        None,
    )
    .await
    .unwrap();
    db.drop_now().await;
}

fn identity(fingerprint: &str) -> NodeIdentity {
    NodeIdentity {
        hardware_fingerprint: fingerprint.into(),
        hostname: "edge-ams-1".into(),
        edge_version: "0.1.0".into(),
        public_host: "edge-ams-1.example.net".into(),
        latitude: 52.37,
        longitude: 4.9,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_tokens_are_single_use_and_expire() {
    let (db, bus) = setup().await;
    let bus = Arc::new(bus);
    let operator = CommandContext::operator("operator:ops");
    let cluster = Uuid::now_v7().to_string();
    let create = ClusterCommand::Create {
        name: "Amsterdam".into(),
        region: "eu-west".into(),
        base_url: "https://ams.example.net".into(),
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
    let issue = ClusterCommand::IssueEnrolmentToken {
        ttl_seconds: 3600,
        name: "edge".into(),
    };
    let ClusterOutcome::EnrolmentToken { token, .. } = bus
        .execute::<Cluster>(&cluster, &issue, &operator, None)
        .await
        .unwrap()
    else {
        panic!("expected a token");
    };

    // Five machines race for one token: exactly one gets in.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5 {
        let (bus, token, ctx) = (Arc::clone(&bus), token.clone(), operator.clone());
        tasks.spawn(
            async move { enrol_node(&bus, &token, &identity(&format!("fp-{i}")), &ctx).await },
        );
    }
    let mut enrolled = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(node) => enrolled.push(node),
            Err(ExecuteError::Rejected(CommandError::Unauthenticated(message))) => {
                assert!(message.contains("already used"), "{message}");
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(enrolled.len(), 1);
    let node = &enrolled[0];
    assert_eq!(node.cluster_id, cluster);
    assert_eq!(
        db.history(AggregateType::Node, &node.node_id).await.len(),
        1
    );
    let nodes: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'node'",
    )
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert_eq!(nodes, 1, "losing racers create no node");

    // Re-enrolment goes by fingerprint, without a token.
    let mut fingerprint = None;
    for candidate in (0..5).map(|i| format!("fp-{i}")) {
        if node_by_fingerprint(&bus, &candidate)
            .await
            .unwrap()
            .as_deref()
            == Some(node.node_id.as_str())
        {
            fingerprint = Some(candidate);
        }
    }
    let fingerprint = fingerprint.expect("the winner's fingerprint is claimed");
    bus.execute::<Node>(
        &node.node_id,
        &NodeCommand::Reenrol(identity(&fingerprint)),
        &operator,
        None,
    )
    .await
    .unwrap();
    let error = rejection(
        bus.execute::<Node>(
            &node.node_id,
            &NodeCommand::Reenrol(identity("fp-other")),
            &operator,
            None,
        )
        .await,
    );
    assert!(matches!(error, CommandError::Unauthenticated(_)));

    // An unknown token, an expired one, a taken fingerprint: typed errors, no node.
    // A bootstrapped edge reserves its node id with a token it does not spend;
    // enrolling later spends it as that node.
    let ClusterOutcome::EnrolmentToken {
        token: reserved, ..
    } = bus
        .execute::<Cluster>(&cluster, &issue, &operator, None)
        .await
        .unwrap()
    else {
        panic!("expected a token");
    };
    let edge = CommandContext::anonymous("edge:bootstrap");
    let wanted = Uuid::now_v7();
    let (on, node_id) = pre_register_edge(&bus, &reserved, Some(wanted), None, &edge)
        .await
        .unwrap();
    assert_eq!(
        (on.as_str(), node_id.clone()),
        (cluster.as_str(), wanted.to_string())
    );
    let again = pre_register_edge(&bus, &reserved, None, Some("198.51.100.4".into()), &edge)
        .await
        .unwrap();
    assert_eq!(again.1, node_id, "a retried bootstrap gets the same node");
    let taken = pre_register_edge(&bus, &token, Some(wanted), None, &edge).await;
    assert!(
        matches!(
            taken,
            Err(ExecuteError::Rejected(CommandError::Unauthenticated(_)))
        ),
        "a spent token reserves nothing"
    );
    let joined = enrol_node(&bus, &reserved, &identity("fp-reserved"), &operator)
        .await
        .unwrap();
    assert_eq!(joined.node_id, node_id);

    let unknown = enrol_node(&bus, "fwe_nope", &identity("fp-new"), &operator).await;
    assert!(matches!(
        unknown,
        Err(ExecuteError::Rejected(CommandError::Unauthenticated(_)))
    ));
    let ClusterOutcome::EnrolmentToken { token: short, .. } = bus
        .execute::<Cluster>(
            &cluster,
            &ClusterCommand::IssueEnrolmentToken {
                ttl_seconds: 60,
                name: "edge".into(),
            },
            &operator,
            None,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let mut later = operator.clone();
    later.now = Utc::now() + chrono::Duration::seconds(61);
    let expired = rejection(enrol_node(&bus, &short, &identity("fp-new"), &later).await);
    assert!(expired.to_string().contains("expired"), "{expired}");
    let taken = rejection(enrol_node(&bus, &short, &identity(&fingerprint), &operator).await);
    assert!(taken.to_string().contains("fingerprint"), "{taken}");
    assert_eq!(
        field_of(&rejection(
            enrol_node(&bus, &short, &identity("bad fingerprint!"), &operator).await
        )),
        "input.hardwareFingerprint"
    );

    // A platform node's mode is the operators' call, and the same mode twice
    // is recorded once.
    let drain = NodeCommand::SetMode {
        mode: NodeMode::Draining,
        reason: "kernel upgrade".into(),
    };
    bus.execute::<Node>(&node.node_id, &drain, &operator, None)
        .await
        .unwrap();
    let node_version = || bus.store().version(AggregateType::Node, &node.node_id);
    let drained = node_version().await.unwrap();
    bus.execute::<Node>(&node.node_id, &drain, &operator, None)
        .await
        .unwrap();
    assert_eq!(node_version().await.unwrap(), drained);
    let stranger = CommandContext::for_tenant(Uuid::now_v7(), "user:stranger");
    let refused = rejection(
        bus.execute::<Node>(&node.node_id, &drain, &stranger, None)
            .await,
    );
    assert!(matches!(refused, CommandError::Forbidden(_)), "{refused:?}");

    // The services it runs: each field checked, the same set recorded once.
    let service = |service_id: &str, port: u16| ServiceReport {
        service_id: service_id.into(),
        version: "0.3.11".into(),
        protocol: "http".into(),
        port,
        health_endpoint: "/health".into(),
        process_id: 7,
        started_at: Utc::now(),
    };
    let report = |services| NodeCommand::ReportServices(services);
    let bad_port = rejection(
        bus.execute::<Node>(
            &node.node_id,
            &report(vec![service("edge", 0)]),
            &operator,
            None,
        )
        .await,
    );
    assert_eq!(field_of(&bad_port), "input.services[0].port");
    let twice = rejection(
        bus.execute::<Node>(
            &node.node_id,
            &report(vec![service("edge", 1), service("edge", 2)]),
            &operator,
            None,
        )
        .await,
    );
    assert_eq!(field_of(&twice), "input.services");
    let running = report(vec![service("edge", 18007), service("mistserver", 8080)]);
    bus.execute::<Node>(&node.node_id, &running, &operator, None)
        .await
        .unwrap();
    let reported = node_version().await.unwrap();
    bus.execute::<Node>(&node.node_id, &running, &operator, None)
        .await
        .unwrap();
    assert_eq!(node_version().await.unwrap(), reported);

    // Decommissioning frees the fingerprint for a new enrolment.
    bus.execute::<Node>(
        &node.node_id,
        &NodeCommand::Decommission {
            reason: "replaced".into(),
        },
        &operator,
        None,
    )
    .await
    .unwrap();
    enrol_node(&bus, &short, &identity(&fingerprint), &operator)
        .await
        .unwrap();
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_subscriptions_follow_visibility_approval_and_invites() {
    let (db, bus) = setup().await;
    let (owner, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let as_owner = CommandContext::for_tenant(owner, "user:owner");
    let as_b = CommandContext::for_tenant(b, "user:b");
    let as_c = CommandContext::for_tenant(c, "user:c");
    let cluster = Uuid::now_v7().to_string();
    let capacity = ClusterCapacity {
        max_concurrent_streams: 10,
        max_concurrent_viewers: 100,
        max_bandwidth_mbps: 1000,
    };
    let create = |shared| ClusterCommand::Create {
        name: "Own edge".into(),
        region: "eu-west".into(),
        base_url: "https://own.example.net".into(),
        shared,
        capacity,
    };
    bus.execute::<Cluster>(&cluster, &create(false), &as_owner, None)
        .await
        .unwrap();
    let market = |command| ClusterCommand::Marketplace(command);
    let request = |token: Option<&str>| {
        market(MarketplaceCommand::RequestSubscription {
            invite_token: token.map(str::to_owned),
        })
    };
    let subscribed = |outcome: ClusterOutcome| match outcome {
        ClusterOutcome::Subscription { subscription_id } => subscription_id,
        other => panic!("expected a subscription, got {other:?}"),
    };

    // A new tenant cluster is private: to others it does not exist.
    let hidden = rejection(
        bus.execute::<Cluster>(&cluster, &request(None), &as_b, None)
            .await,
    );
    assert!(
        matches!(hidden, CommandError::NotFound { .. }),
        "{hidden:?}"
    );
    // Only its owner changes the offer.
    let offer = market(MarketplaceCommand::Update {
        visibility: Some(Visibility::Unlisted),
        pricing_model: None,
        monthly_price_cents: None,
        requires_approval: Some(true),
        short_description: Some("Low-latency edge in Amsterdam".into()),
    });
    let foreign = rejection(bus.execute::<Cluster>(&cluster, &offer, &as_b, None).await);
    assert!(matches!(foreign, CommandError::NotFound { .. }));
    bus.execute::<Cluster>(&cluster, &offer, &as_owner, None)
        .await
        .unwrap();

    // Unlisted with approval: B waits, asks twice in vain, is approved.
    let pending = subscribed(
        bus.execute::<Cluster>(&cluster, &request(None), &as_b, None)
            .await
            .unwrap(),
    );
    let twice = rejection(
        bus.execute::<Cluster>(&cluster, &request(None), &as_b, None)
            .await,
    );
    assert!(matches!(twice, CommandError::Conflict(_)), "{twice:?}");
    let approve = market(MarketplaceCommand::ApproveSubscription {
        subscription_id: pending.clone(),
    });
    let not_owner = rejection(
        bus.execute::<Cluster>(&cluster, &approve, &as_b, None)
            .await,
    );
    assert!(matches!(not_owner, CommandError::NotFound { .. }));
    bus.execute::<Cluster>(&cluster, &approve, &as_owner, None)
        .await
        .unwrap();

    // Subscribed, B may prefer the cluster (once is enough); C may not yet.
    let cluster_uuid: Uuid = cluster.parse().unwrap();
    bus.execute::<Tenant>(
        &b.to_string(),
        &TenantCommand::Create {
            name: "b".into(),
            tier: "pro".into(),
            region: "eu-west".into(),
        },
        &as_b,
        None,
    )
    .await
    .unwrap();
    set_preferred_cluster(&bus, b, cluster_uuid, &as_b)
        .await
        .unwrap();
    let b_id = b.to_string();
    let tenant_version = || bus.store().version(AggregateType::Tenant, &b_id);
    let preferred = tenant_version().await.unwrap();
    set_preferred_cluster(&bus, b, cluster_uuid, &as_b)
        .await
        .unwrap();
    assert_eq!(tenant_version().await.unwrap(), preferred);
    let unsubscribed = rejection(set_preferred_cluster(&bus, c, cluster_uuid, &as_c).await);
    assert!(
        matches!(unsubscribed, CommandError::NotFound { .. }),
        "{unsubscribed:?}"
    );

    let again = rejection(
        bus.execute::<Cluster>(&cluster, &approve, &as_owner, None)
            .await,
    );
    assert!(matches!(again, CommandError::Conflict(_)));
    let own = rejection(
        bus.execute::<Cluster>(&cluster, &request(None), &as_owner, None)
            .await,
    );
    assert_eq!(field_of(&own), "clusterId");

    // An invite admits C at once, with the invite's access and limits.
    let invite = |days| {
        market(MarketplaceCommand::CreateInvite {
            invited_tenant_id: c,
            access_level: AccessLevel::Read,
            resource_limits: ResourceLimits {
                max_concurrent_streams: Some(2),
                ..ResourceLimits::default()
            },
            expires_in_days: days,
        })
    };
    let too_long = rejection(
        bus.execute::<Cluster>(&cluster, &invite(400), &as_owner, None)
            .await,
    );
    assert_eq!(field_of(&too_long), "input.expiresInDays");
    let ClusterOutcome::Invite { token, .. } = bus
        .execute::<Cluster>(&cluster, &invite(7), &as_owner, None)
        .await
        .unwrap()
    else {
        panic!("expected an invite");
    };
    assert_eq!(
        cluster_of_invite_token(&bus, &token)
            .await
            .unwrap()
            .as_deref(),
        Some(cluster.as_str())
    );
    // The token is no use to another tenant.
    let stolen = rejection(
        bus.execute::<Cluster>(&cluster, &request(Some(&token)), &as_b, None)
            .await,
    );
    assert_eq!(field_of(&stolen), "inviteToken");
    let mut late = as_c.clone();
    late.now = Utc::now() + chrono::Duration::days(8);
    let expired = rejection(
        bus.execute::<Cluster>(&cluster, &request(Some(&token)), &late, None)
            .await,
    );
    assert_eq!(field_of(&expired), "inviteToken");
    bus.execute::<Cluster>(&cluster, &request(Some(&token)), &as_c, None)
        .await
        .unwrap();
    let reused = rejection(
        bus.execute::<Cluster>(&cluster, &request(Some(&token)), &as_c, None)
            .await,
    );
    assert_eq!(field_of(&reused), "inviteToken");

    // A revoked invite admits nobody; a cancelled subscription can be asked again.
    bus.execute::<Cluster>(
        &cluster,
        &market(MarketplaceCommand::CancelSubscription),
        &as_b,
        None,
    )
    .await
    .unwrap();
    let cancelled = rejection(set_preferred_cluster(&bus, b, cluster_uuid, &as_b).await);
    assert!(matches!(cancelled, CommandError::NotFound { .. }));
    let ClusterOutcome::Invite {
        invite_id,
        token: revoked,
    } = bus
        .execute::<Cluster>(
            &cluster,
            &market(MarketplaceCommand::CreateInvite {
                invited_tenant_id: b,
                access_level: AccessLevel::Write,
                resource_limits: ResourceLimits::default(),
                expires_in_days: 1,
            }),
            &as_owner,
            None,
        )
        .await
        .unwrap()
    else {
        panic!("expected an invite");
    };
    bus.execute::<Cluster>(
        &cluster,
        &market(MarketplaceCommand::RevokeInvite { invite_id }),
        &as_owner,
        None,
    )
    .await
    .unwrap();
    let dead = rejection(
        bus.execute::<Cluster>(&cluster, &request(Some(&revoked)), &as_b, None)
            .await,
    );
    assert_eq!(field_of(&dead), "inviteToken");
    let second = subscribed(
        bus.execute::<Cluster>(&cluster, &request(None), &as_b, None)
            .await
            .unwrap(),
    );
    assert_ne!(second, pending);
    bus.execute::<Cluster>(
        &cluster,
        &market(MarketplaceCommand::RejectSubscription {
            subscription_id: second,
            reason: "capacity is reserved".into(),
        }),
        &as_owner,
        None,
    )
    .await
    .unwrap();

    // The platform's shared clusters need no subscription.
    let shared = Uuid::now_v7().to_string();
    bus.execute::<Cluster>(
        &shared,
        &create(true),
        &CommandContext::operator("operator:ops"),
        None,
    )
    .await
    .unwrap();
    let needless = rejection(
        bus.execute::<Cluster>(&shared, &request(None), &as_b, None)
            .await,
    );
    assert_eq!(field_of(&needless), "clusterId");
    db.drop_now().await;
}

#[tokio::test]
async fn a_webhook_policy_keeps_its_secret_until_the_policy_changes_kind() {
    use frameworks_commands::aggregates::playback_policy::PolicySpec;
    let (db, bus) = setup().await;
    let ctx = CommandContext::for_tenant(Uuid::now_v7(), "user:test");
    let stream = Uuid::now_v7().to_string();
    bus.execute::<Stream>(&stream, &create_push("policy"), &ctx, None)
        .await
        .unwrap();
    let webhook = |secret: Option<&str>| {
        StreamCommand::SetPlaybackPolicy(PolicySpec::Webhook {
            url: "https://hooks.example.com/playback".into(),
            secret: secret.map(Into::into),
            timeout_ms: Some(2_000),
            context: None,
            allowed_origins: vec![],
        })
    };
    let error = rejection(
        bus.execute::<Stream>(&stream, &webhook(None), &ctx, None)
            .await,
    );
    assert_eq!(
        field_of(&error),
        "input.policy.webhook.secret",
        "a new webhook needs a secret"
    );
    for command in [webhook(Some("0123456789abcdef")), webhook(None)] {
        bus.execute::<Stream>(&stream, &command, &ctx, None)
            .await
            .unwrap();
    }
    bus.execute::<Stream>(
        &stream,
        &StreamCommand::SetPlaybackPolicy(PolicySpec::Public),
        &ctx,
        None,
    )
    .await
    .unwrap();
    let error = rejection(
        bus.execute::<Stream>(&stream, &webhook(None), &ctx, None)
            .await,
    );
    assert_eq!(
        field_of(&error),
        "input.policy.webhook.secret",
        "a public policy held no secret to keep"
    );
    db.drop_now().await;
}
