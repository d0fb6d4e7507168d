//! `POST /auth/register` creates a tenant and its owner together or not at
//! all: the bridge is SIGKILLed at random moments while sign-ups run, each
//! sign-up is retried until it is answered (201, or 409 once an earlier
//! attempt had committed), and the event store ends with exactly one tenant
//! and one owner per e-mail, every owner in its tenant, every one able to
//! sign in.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use frameworks_commands::SecretBox;
use serde_json::json;
use support::mist::try_post_json;
use support::{
    drop_topics, free_port, fresh_database, kafka_with_topics, random_below, spawn_read_side_role,
    within,
};
use uuid::Uuid;

const SIGNUPS: usize = 30;
const KILLS: usize = 6;

/// An event store and topics with the relay and the projector running, and
/// a bridge that starts again on the same port.
struct Stage {
    db: support::TestDatabase,
    kafka: frameworks_events::kafka::KafkaSettings,
    data_keys: String,
    port: u16,
    clickhouse_base: String,
    _read_side: [support::RoleProcess; 2],
}

impl Stage {
    async fn new() -> Self {
        let db = fresh_database().await;
        let kafka = kafka_with_topics().await;
        let prefix = kafka.catalogue.prefix.clone();
        let (_, data_keys) = SecretBox::generate("registration");
        let _read_side = [
            spawn_read_side_role("relay", &kafka, &db.url, &prefix),
            spawn_read_side_role("projector", &kafka, &db.url, &prefix),
        ];
        Self {
            db,
            kafka,
            data_keys,
            port: free_port(),
            clickhouse_base: format!("test_{}", &Uuid::now_v7().simple().to_string()[20..]),
            _read_side,
        }
    }

    fn bridge(&self) -> support::RoleProcess {
        support::spawn_bridge(
            &self.kafka,
            &self.db.url,
            &self.data_keys,
            &self.kafka.catalogue.prefix,
            &self.clickhouse_base,
            &[
                ("FRAMEWORKS_SESSION_SECRET", "r".repeat(32)),
                (
                    "FRAMEWORKS_BRIDGE_LISTEN",
                    format!("127.0.0.1:{}", self.port),
                ),
            ],
        )
        .0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_whole_however_the_bridge_dies() {
    let stage = Stage::new().await;
    let (db, kafka, port) = (&stage.db, &stage.kafka, stage.port);
    let bridge = || stage.bridge();
    let mut running = bridge();

    let emails: Vec<String> = (0..SIGNUPS)
        .map(|i| format!("owner-{i}-{}@example.com", Uuid::now_v7().simple()))
        .collect();
    let signing_up = tokio::spawn({
        let emails = emails.clone();
        async move {
            let url = format!("http://127.0.0.1:{port}/auth/register");
            let (mut created, mut already) = (0, 0);
            for email in &emails {
                let body = json!({ "email": email, "password": "a long enough password" });
                loop {
                    match try_post_json(&url, &body, Duration::from_secs(10)).await {
                        Some(answer) if answer.status == 201 => created += 1,
                        // An earlier attempt committed, and its answer was lost.
                        Some(answer) if answer.status == 409 => already += 1,
                        _ => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                    break;
                }
            }
            (created, already)
        }
    });
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + random_below(900))).await;
        running.kill();
        tokio::time::sleep(Duration::from_millis(random_below(300))).await;
        running = bridge();
    }
    let (created, already) = within(
        Duration::from_secs(240),
        "every sign-up answered",
        signing_up,
    )
    .await
    .unwrap();

    let pool = db.store.pool();
    let count = |aggregate: &'static str| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = $1",
        )
        .bind(aggregate)
        .fetch_one(pool)
        .await
        .unwrap()
    };
    assert_eq!(count("user").await, SIGNUPS as i64, "one owner per e-mail");
    assert_eq!(
        count("tenant").await,
        SIGNUPS as i64,
        "one tenant per e-mail"
    );
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events u WHERE u.aggregate_type = 'user' AND NOT EXISTS
           (SELECT 1 FROM events t WHERE t.aggregate_type = 'tenant' AND t.aggregate_id = u.tenant_id::text)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "every owner's tenant exists");

    // Every owner signs in, into a tenant of its own.
    let mut tenants = BTreeSet::new();
    for email in &emails {
        let body = json!({ "email": email, "password": "a long enough password" });
        let url = format!("http://127.0.0.1:{port}/auth/login");
        let answer = within(Duration::from_secs(60), "a sign-in", async {
            loop {
                if let Some(answer) = try_post_json(&url, &body, Duration::from_secs(10)).await {
                    break answer;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert_eq!(answer.status, 200, "{email}: {}", answer.text());
        let session: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        tenants.insert(session["tenantId"].as_str().unwrap().to_owned());
    }
    assert_eq!(tenants.len(), SIGNUPS);
    println!(
        "{SIGNUPS} sign-ups through {KILLS} SIGKILLs of the bridge: {created} answered 201, \
         {already} answered 409 after a lost answer; {SIGNUPS} tenants, {SIGNUPS} owners, no orphan"
    );

    drop(running);
    drop_topics(kafka).await;
    let Stage { db, .. } = stage;
    db.drop_now().await;
}

/// The worst moment, made to happen: the tenant's events are held in
/// PostgreSQL (a trigger sleeps on their insert) while the owner's are
/// already written, and the bridge is SIGKILLed there. Nothing of the
/// registration remains; the same registration retried creates both.
/// (Had the owner been committed on its own, as two commands would, it
/// would be left without a tenant and its e-mail taken.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_between_owner_and_tenant_leaves_neither() {
    let stage = Stage::new().await;
    let (db, kafka, port) = (&stage.db, &stage.kafka, stage.port);
    let pool = db.store.pool();
    for statement in [
        "CREATE FUNCTION hold_tenant_events() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$",
        "CREATE TRIGGER hold_tenant_events BEFORE INSERT ON events FOR EACH ROW
           WHEN (NEW.aggregate_type = 'tenant') EXECUTE FUNCTION hold_tenant_events()",
    ] {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
    let bridge = || stage.bridge();
    let mut running = bridge();
    let url = format!("http://127.0.0.1:{port}/auth/register");
    let body = json!({ "email": format!("held-{}@example.com", Uuid::now_v7().simple()), "password": "a long enough password" });
    let held = tokio::spawn({
        let (url, body) = (url.clone(), body.clone());
        async move {
            loop {
                if try_post_json(&url, &body, Duration::from_secs(120))
                    .await
                    .is_some()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    // The owner's rows are in, the tenant's are being written: kill there.
    let holding = "SELECT pid FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event = 'PgSleep'";
    let backend: i32 = within(Duration::from_secs(60), "the tenant's events held", async {
        loop {
            if let Some(pid) = sqlx::query_scalar(holding)
                .fetch_optional(pool)
                .await
                .unwrap()
            {
                break pid;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    running.kill();
    held.abort();
    // PostgreSQL ends the dead client's transaction (it would on its own at
    // its next write to the gone socket).
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(backend)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER hold_tenant_events ON events")
        .execute(pool)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(events, 0, "a registration cut short leaves nothing");

    running = bridge();
    let answer = within(Duration::from_secs(60), "the registration retried", async {
        loop {
            if let Some(answer) = try_post_json(&url, &body, Duration::from_secs(10)).await {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    for aggregate in ["user", "tenant"] {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = $1",
        )
        .bind(aggregate)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(count, 1, "one {aggregate}");
    }

    drop(running);
    drop_topics(kafka).await;
    let Stage { db, .. } = stage;
    db.drop_now().await;
}
