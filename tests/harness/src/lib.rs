//! Scratch resources on the real services `compose/infra up` runs, for
//! integration tests and load drivers: a PostgreSQL database of one's own,
//! migrated, and Kafka topics under a prefix of one's own. Both are cleaned
//! up explicitly (best effort), so a failed test still reports its own verdict.

pub mod figures;

use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::catalogue::CatalogueSettings;
use frameworks_events::kafka::{KafkaSettings, apply_catalogue};
use frameworks_events::{AggregateType, Event, Topic};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use uuid::Uuid;

fn server() -> PgConnectOptions {
    std::env::var("FRAMEWORKS_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/frameworks".into())
        .parse()
        .expect("FRAMEWORKS_DATABASE_URL parses")
}

async fn admin() -> PgConnection {
    server()
        .connect()
        .await
        .expect("PostgreSQL is up (compose/infra up)")
}

/// A migrated database that exists for one test or one load run.
#[derive(Debug)]
pub struct ScratchDatabase {
    pub name: String,
    pub url: String,
    pub store: EventStore,
}

impl ScratchDatabase {
    /// Creates `<tag>_<uuid>` on the configured server and applies the migrations.
    pub async fn create(tag: &str) -> Self {
        let base = server();
        let name = format!("{tag}_{}", Uuid::now_v7().simple());
        // `name` is a fixed tag and hex: nothing to inject.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin().await)
            .await
            .expect("create a scratch database");
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            base.get_username(),
            base.get_host(),
            base.get_port()
        );
        let store = EventStore::connect(&DatabaseSettings {
            url: url.clone(),
            max_connections: 24,
        })
        .await
        .expect("connect to the scratch database");
        store.migrate().await.expect("migrations apply");
        Self { name, url, store }
    }

    /// Drops the database (best effort).
    pub async fn drop_now(self) {
        self.store.pool().close().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin().await)
        .await;
    }

    /// Every stored event of one aggregate, in sequence order.
    pub async fn history(&self, aggregate: AggregateType, id: &str) -> Vec<Event> {
        self.store.load(aggregate, id).await.expect("load")
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(self.store.pool())
            .await
            .expect("count")
    }
}

/// Kafka settings with a topic prefix (`<tag>-<uuid>`) nothing else uses.
pub fn isolated_kafka(tag: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: std::env::var("FRAMEWORKS_KAFKA_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        timeout_ms: 15_000,
        catalogue: CatalogueSettings {
            prefix: format!("{tag}-{}", Uuid::now_v7().simple()),
            ..CatalogueSettings::default()
        },
    }
}

/// Isolated settings with the catalogue already applied.
pub async fn kafka_with_topics(tag: &str) -> KafkaSettings {
    let settings = isolated_kafka(tag);
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

/// Deletes the prefix's topics so repeated runs do not pile partitions up (best effort).
pub async fn drop_topics(settings: &KafkaSettings) {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config("scratch-cleanup")
        .create()
        .expect("admin client");
    let catalogue = settings.catalogue();
    let names: Vec<&str> = Topic::ALL.iter().map(|&t| catalogue.name(t)).collect();
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
}

/// Deletes every Redis key under `prefix:` (best effort), e.g. a test's live state.
pub async fn drop_redis_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut redis) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut redis).await;
    }
}
