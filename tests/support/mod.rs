//! Helpers shared by the integration tests. They run against the real
//! services `compose/infra up` starts on 127.0.0.1; each test works under
//! its own topic prefix so tests never see each other's records.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use frameworks_events::catalogue::CatalogueSettings;
use frameworks_events::kafka::{KafkaSettings, apply_catalogue};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use uuid::Uuid;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Kafka settings with a topic prefix no other test uses.
pub fn isolated_kafka() -> KafkaSettings {
    KafkaSettings {
        brokers: std::env::var("FRAMEWORKS_KAFKA_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        timeout_ms: 15_000,
        catalogue: CatalogueSettings {
            prefix: format!("test-{}", Uuid::now_v7().simple()),
            ..CatalogueSettings::default()
        },
    }
}

/// Isolated settings with the catalogue already applied.
pub async fn kafka_with_topics() -> KafkaSettings {
    let settings = isolated_kafka();
    apply_catalogue(&settings, &settings.catalogue())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Kafka at {} is not usable (is `compose/infra up` running?): {e:?}",
                settings.brokers
            )
        });
    settings
}

/// Deletes the test's topics so repeated runs do not pile partitions up.
pub async fn drop_topics(settings: &KafkaSettings) {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config("test-cleanup")
        .create()
        .expect("admin client");
    let catalogue = settings.catalogue();
    let names: Vec<&str> = frameworks_events::Topic::ALL
        .iter()
        .map(|&t| catalogue.name(t))
        .collect();
    // Best effort: a failed clean-up must not hide the test's own verdict.
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
}

/// Runs `future`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// Runs `compose/infra ARGS` with extra environment; returns (success, stdout, stderr).
pub fn infra(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = std::process::Command::new(repo_root().join("compose/infra"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("compose/infra runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port setting as the scripts see it: the environment, else the default.
pub fn port(setting: &str, default: u16) -> String {
    std::env::var(setting).unwrap_or_else(|_| default.to_string())
}

/// A scratch directory removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("frameworks-{tag}-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database of its own for one test, migrated; dropped by [`TestDatabase::drop_now`].
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub store: frameworks_commands::EventStore,
}

pub async fn fresh_database() -> TestDatabase {
    use sqlx::ConnectOptions;
    use sqlx::postgres::PgConnectOptions;

    let base: PgConnectOptions = std::env::var("FRAMEWORKS_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/frameworks".into())
        .parse()
        .expect("FRAMEWORKS_DATABASE_URL parses");
    let name = format!("test_{}", Uuid::now_v7().simple());
    let mut admin = base
        .connect()
        .await
        .expect("PostgreSQL is up (compose/infra up)");
    // `name` is "test_" and hex: nothing to inject.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = format!(
        "postgres://{}@{}:{}/{name}",
        base.get_username(),
        base.get_host(),
        base.get_port()
    );
    let settings = frameworks_commands::DatabaseSettings {
        url: url.clone(),
        max_connections: 24,
    };
    let store = frameworks_commands::EventStore::connect(&settings)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrations apply");
    TestDatabase { name, url, store }
}

impl TestDatabase {
    /// Drops the database (best effort; a failure must not hide the verdict).
    pub async fn drop_now(self) {
        use sqlx::ConnectOptions;
        self.store.pool().close().await;
        let base: Result<sqlx::postgres::PgConnectOptions, _> =
            std::env::var("FRAMEWORKS_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/frameworks".into())
                .parse();
        if let Ok(mut admin) = async { base?.connect().await }.await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }

    /// Every stored event of one aggregate, in sequence order.
    pub async fn history(
        &self,
        aggregate: frameworks_events::AggregateType,
        id: &str,
    ) -> Vec<frameworks_events::Event> {
        self.store.load(aggregate, id).await.expect("load")
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(self.store.pool())
            .await
            .expect("count")
    }
}

/// A spawned role that is SIGKILLed and reaped when dropped, so a failing
/// test never leaves it running.
pub struct RoleProcess(pub std::process::Child);

impl RoleProcess {
    /// SIGKILL and reap (`Child::kill` sends SIGKILL on Unix).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
