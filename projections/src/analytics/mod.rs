//! Analytics in ClickHouse: stream lifecycle, viewer sessions, track lists,
//! stream health and node metrics as raw rows, and per-stream and per-tenant
//! usage in 5-minute buckets kept by materialised views.
//!
//! Exactly-once effect. The materialised views aggregate each insert as it
//! arrives, so a row inserted twice would be counted twice even though its
//! raw table collapses the copy later; and ClickHouse 18.16 has no insert
//! deduplication for plain MergeTree tables. The projector therefore makes
//! sure it never inserts an event twice:
//!
//! 1. Before a batch's rows, it records in `written_offsets` how far the batch
//!    reaches in each partition. Rows can only exist for offsets below that mark.
//! 2. Kafka's group offset is stored after the rows, so after a crash, a failed
//!    insert or a rebalance, records come back. Those below the mark are
//!    suspects: their event ids are looked up in the target table, and the ones
//!    already there are dropped before the insert.
//! 3. Records at or above the mark cannot have been written and go straight in.
//! 4. After the rows, `applied_offsets` records the same reach: below it every
//!    record has its rows. A replay waits for these marks, not the first ones,
//!    before it switches queries to the new generation.
//!
//! The lookup costs one query per table, and only for the first batches after
//! a restart or rebalance. The raw tables are still ReplacingMergeTree on the
//! event id, as a second line of defence for anything read with FINAL.

pub mod reader;
pub mod rows;
pub mod schema;
pub mod usage;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clickhouse::{Client, Row};
use frameworks_events::Topic;
use frameworks_events::kafka::{DeadLetterWriter, KafkaSettings, LagProbe, read_event};
use metrics::counter;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message};
use serde::Serialize;
use tracing::{debug, info};
use uuid::Uuid;

use self::rows::{AnalyticsRow, row_for};
use crate::batch;
use crate::generations::clickhouse::ClickHouseGenerations;
use crate::generations::{Generations, group_of};

pub const NAME: &str = "analytics";
pub const TOPICS: [Topic; 2] = [Topic::StreamTelemetry, Topic::NodeTelemetry];

/// Where ClickHouse is and which database holds the analytics.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseSettings {
    /// ClickHouse's HTTP interface.
    #[arg(
        id = "clickhouse_url",
        long = "clickhouse-url",
        env = "FRAMEWORKS_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123",
        value_parser = parse_http_url
    )]
    pub url: String,

    #[arg(
        id = "clickhouse_user",
        long = "clickhouse-user",
        env = "FRAMEWORKS_CLICKHOUSE_USER",
        default_value = "default"
    )]
    pub user: String,

    #[arg(
        id = "clickhouse_password",
        long = "clickhouse-password",
        env = "FRAMEWORKS_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: String,

    /// Base name of the analytics databases; each generation is `<name>_g<N>`.
    #[arg(
        id = "clickhouse_database",
        long = "clickhouse-database",
        env = "FRAMEWORKS_CLICKHOUSE_DATABASE",
        default_value = "frameworks",
        value_parser = parse_database_name
    )]
    pub database: String,
}

impl ClickHouseSettings {
    /// A client without a default database. Row validation is off because
    /// ClickHouse 18.16 lacks the RowBinaryWithNamesAndTypes format it needs.
    pub fn client(&self) -> Client {
        let client = Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_validation(false);
        if self.password.is_empty() {
            client
        } else {
            client.with_password(&self.password)
        }
    }
}

fn parse_http_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(value.trim_end_matches('/').to_owned()),
        _ => Err("expected http://host:port or https://host:port".into()),
    }
}

fn parse_database_name(value: &str) -> Result<String, String> {
    // Leaves room for the `_g<N>` generation suffix.
    if schema::is_identifier(value) && value.len() <= 48 {
        Ok(value.to_owned())
    } else {
        Err("letters, digits and underscores, not starting with a digit, at most 48".into())
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsSettings {
    /// Base of the Kafka consumer group; each generation uses `<group>.g<N>`.
    #[arg(
        id = "analytics_group_id",
        long = "analytics-group",
        env = "FRAMEWORKS_ANALYTICS_GROUP",
        default_value = "frameworks.projection.analytics"
    )]
    pub group_id: String,

    /// Static group membership (see the control-plane projector's instance id).
    #[arg(
        id = "analytics_instance_id",
        long = "analytics-instance-id",
        env = "FRAMEWORKS_ANALYTICS_INSTANCE_ID"
    )]
    pub instance_id: Option<String>,

    /// Most records inserted in one batch (a batch costs three or more
    /// ClickHouse inserts whatever its size; a backlog drains in large ones).
    #[arg(
        id = "analytics_batch_size",
        long = "analytics-batch-size",
        env = "FRAMEWORKS_ANALYTICS_BATCH_SIZE",
        default_value_t = 20_000,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub batch_size: u32,

    /// How long a batch waits for more records once it has one, in milliseconds.
    #[arg(
        id = "analytics_batch_wait_ms",
        long = "analytics-batch-wait-ms",
        env = "FRAMEWORKS_ANALYTICS_BATCH_WAIT_MS",
        default_value_t = 200,
        value_parser = clap::value_parser!(u64).range(0..=60_000)
    )]
    pub batch_wait_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("reading from Kafka")]
    Kafka(#[from] KafkaError),
    #[error("writing to ClickHouse")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("writing a dead letter")]
    DeadLetter(#[from] frameworks_events::kafka::publisher::PublishError),
    #[error("the projector gave up on its Kafka consumer")]
    ConsumerLost(#[from] crate::batch::ConsumerLost),
}

/// Tells the projector that partitions moved, so that its knowledge of
/// what was written (from another member, perhaps) must be read again.
#[derive(Debug, Default)]
pub struct RebalanceFlag(AtomicBool);

impl ClientContext for RebalanceFlag {}

impl ConsumerContext for RebalanceFlag {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Debug, Row, Serialize)]
struct WrittenOffset {
    topic: String,
    partition: u32,
    upto: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    written_at: DateTime<Utc>,
}

/// Rows for one table, with the event ids that may already be there.
#[derive(Debug)]
struct Pending<R> {
    table: &'static str,
    rows: Vec<(Uuid, DateTime<Utc>, R)>,
    suspects: HashSet<Uuid>,
}

impl<R> Pending<R> {
    fn new(table: &'static str) -> Self {
        Self {
            table,
            rows: Vec::new(),
            suspects: HashSet::new(),
        }
    }

    fn push(&mut self, id: Uuid, at: DateTime<Utc>, row: R, suspect: bool) {
        if suspect {
            self.suspects.insert(id);
        }
        self.rows.push((id, at, row));
    }
}

impl<R> Pending<R>
where
    R: Row + clickhouse::RowWrite + for<'a> Row<Value<'a> = R> + Serialize,
{
    /// Inserts the rows that are not there yet; returns how many it skipped.
    async fn write(self, client: &Client) -> Result<usize, clickhouse::error::Error> {
        if self.rows.is_empty() {
            return Ok(0);
        }
        let present = self.present(client).await?;
        let mut insert = client.insert::<R>(self.table).await?;
        let mut skipped = 0;
        for (id, _, row) in &self.rows {
            if present.contains(id) {
                skipped += 1;
                continue;
            }
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(skipped)
    }

    /// Which suspects the table already holds.
    async fn present(&self, client: &Client) -> Result<HashSet<Uuid>, clickhouse::error::Error> {
        if self.suspects.is_empty() {
            return Ok(HashSet::new());
        }
        let times = self
            .rows
            .iter()
            .filter(|(id, _, _)| self.suspects.contains(id))
            .map(|(_, at, _)| at.timestamp());
        let (from, to) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        // A UUID's text is hex digits and dashes: safe to inline.
        let ids: Vec<String> = self.suspects.iter().map(|id| format!("'{id}'")).collect();
        let found: Vec<String> = client
            .query(&format!(
                "SELECT toString(event_id) FROM {} WHERE occurred_at >= toDateTime(?)
                 AND occurred_at <= toDateTime(?) AND event_id IN ({})",
                self.table,
                ids.join(",")
            ))
            .bind(from)
            .bind(to)
            .fetch_all()
            .await?;
        Ok(found.iter().filter_map(|s| s.parse().ok()).collect())
    }
}

/// One batch's rows, by table.
#[derive(Debug)]
struct Tables {
    lifecycle: Pending<rows::LifecycleRow>,
    sessions: Pending<rows::SessionRow>,
    tracks: Pending<rows::TrackListRow>,
    health: Pending<rows::HealthRow>,
    nodes: Pending<rows::NodeMetricsRow>,
}

impl Tables {
    fn new() -> Self {
        Self {
            lifecycle: Pending::new("stream_lifecycle"),
            sessions: Pending::new("viewer_sessions"),
            tracks: Pending::new("track_lists"),
            health: Pending::new("stream_health"),
            nodes: Pending::new("node_metrics"),
        }
    }

    fn push(&mut self, id: Uuid, at: DateTime<Utc>, row: AnalyticsRow, suspect: bool) {
        match row {
            AnalyticsRow::Lifecycle(r) => self.lifecycle.push(id, at, r, suspect),
            AnalyticsRow::Session(r) => self.sessions.push(id, at, r, suspect),
            AnalyticsRow::Tracks(r) => self.tracks.push(id, at, r, suspect),
            AnalyticsRow::Health(r) => self.health.push(id, at, r, suspect),
            AnalyticsRow::Node(r) => self.nodes.push(id, at, r, suspect),
        }
    }

    async fn write(self, client: &Client) -> Result<usize, clickhouse::error::Error> {
        Ok(self.lifecycle.write(client).await?
            + self.sessions.write(client).await?
            + self.tracks.write(client).await?
            + self.health.write(client).await?
            + self.nodes.write(client).await?)
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub records: usize,
    pub inserted: usize,
    /// Re-delivered records whose rows were already there.
    pub skipped: usize,
    pub dead_lettered: usize,
}

pub struct AnalyticsProjector {
    client: Client,
    database: String,
    generation: u32,
    group_id: String,
    consumer: StreamConsumer<RebalanceFlag>,
    probe: LagProbe,
    dead_letters: DeadLetterWriter,
    settings: AnalyticsSettings,
    /// Per partition, the `written_offsets` mark as last read or written.
    marks: Mutex<HashMap<(String, i32), i64>>,
}

impl std::fmt::Debug for AnalyticsProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsProjector")
            .field("database", &self.database)
            .field("group", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl AnalyticsProjector {
    /// A projector for the live generation (generation 1 on a fresh server).
    pub async fn new(
        clickhouse: &ClickHouseSettings,
        kafka: &KafkaSettings,
        settings: AnalyticsSettings,
    ) -> Result<Self, AnalyticsError> {
        let generation = ClickHouseGenerations::open(clickhouse)
            .await?
            .ensure_live()
            .await?;
        Self::for_generation(clickhouse, kafka, settings, generation).await
    }

    /// A projector writing into `generation`, as that generation's consumer group.
    pub async fn for_generation(
        clickhouse: &ClickHouseSettings,
        kafka: &KafkaSettings,
        settings: AnalyticsSettings,
        generation: u32,
    ) -> Result<Self, AnalyticsError> {
        let database = ClickHouseGenerations::database(&clickhouse.database, generation);
        schema::create(&clickhouse.client(), &database).await?;
        let client = clickhouse.client().with_database(&database);
        let group_id = group_of(&settings.group_id, generation);
        let catalogue = kafka.catalogue();
        let consumer: StreamConsumer<RebalanceFlag> = kafka
            .group_consumer_config(&group_id, settings.instance_id.as_deref())
            .create_with_context(RebalanceFlag::default())?;
        let topics: Vec<&str> = TOPICS.iter().map(|&t| catalogue.name(t)).collect();
        consumer.subscribe(&topics)?;
        Ok(Self {
            client,
            database,
            generation,
            dead_letters: DeadLetterWriter::new(kafka, &group_id)?,
            probe: LagProbe::new(kafka, &group_id)?,
            group_id,
            consumer,
            settings,
            marks: Mutex::new(HashMap::new()),
        })
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// A client whose default database is this projector's generation.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Inserts batches until `shutdown` resolves; trouble rewinds the batch and retries.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AnalyticsError> {
        info!(database = %self.database, group = %self.group_id, "analytics projector started");
        batch::run_until(NAME, &self.consumer, &self.probe, shutdown, || self.step()).await?;
        Ok(())
    }

    /// Waits for at least one record, gathers a batch and writes it.
    pub async fn step(&self) -> Result<BatchOutcome, AnalyticsError> {
        let batch = batch::gather(
            &self.consumer,
            self.settings.batch_size as usize,
            Duration::from_millis(self.settings.batch_wait_ms),
        )
        .await?;
        self.write_batch(&batch).await.inspect_err(|_| {
            batch::rewind(&self.consumer, &batch);
        })
    }

    async fn write_batch(&self, batch: &[OwnedMessage]) -> Result<BatchOutcome, AnalyticsError> {
        if self.consumer.context().0.swap(false, Ordering::SeqCst) {
            // Another member may have written past what this one knows.
            self.lock_marks().clear();
        }
        let ranges = batch::partition_ranges(batch);
        let mut marks = HashMap::new();
        for &(topic, partition) in ranges.keys() {
            marks.insert((topic, partition), self.mark(topic, partition).await?);
        }

        let mut outcome = BatchOutcome {
            records: batch.len(),
            ..BatchOutcome::default()
        };
        let mut tables = Tables::new();
        for message in batch {
            let event = match read_event(message) {
                Ok(event) => event,
                Err(unreadable) => {
                    self.dead_letter(message, unreadable.reason, unreadable.error)
                        .await?;
                    outcome.dead_lettered += 1;
                    continue;
                }
            };
            match row_for(&event) {
                Ok(Some(row)) => {
                    let mark = marks
                        .get(&(message.topic(), message.partition()))
                        .copied()
                        .unwrap_or(0);
                    tables.push(event.id, event.occurred_at, row, message.offset() < mark);
                    outcome.inserted += 1;
                }
                Ok(None) => {
                    counter!("frameworks_projector_events_total", "projection" => NAME, "outcome" => "ignored").increment(1);
                }
                Err(error) => {
                    let reason = error.reason().unwrap_or("projection-failed");
                    self.dead_letter(message, reason, error.to_string()).await?;
                    outcome.dead_lettered += 1;
                }
            }
        }

        // The marks first: once any row of this batch can exist, a restart must know.
        self.write_marks("written_offsets", &ranges).await?;
        {
            let mut known = self.lock_marks();
            for (&(topic, partition), &(_, last)) in &ranges {
                let mark = known.entry((topic.to_owned(), partition)).or_insert(0);
                *mark = (*mark).max(last + 1);
            }
        }

        outcome.skipped = tables.write(&self.client).await?;
        outcome.inserted -= outcome.skipped;
        // Every row of the batch is in: what a replay waits for.
        self.write_marks("applied_offsets", &ranges).await?;
        counter!("frameworks_projector_events_total", "projection" => NAME, "outcome" => "applied")
            .increment(outcome.inserted as u64);
        counter!("frameworks_projector_events_total", "projection" => NAME, "outcome" => "duplicate")
            .increment(outcome.skipped as u64);
        for ((topic, partition), (_, last)) in ranges {
            if let Err(error) = self.consumer.store_offset(topic, partition, last) {
                debug!(topic, partition, %error, "could not store the Kafka resume hint");
            }
        }
        Ok(outcome)
    }

    /// Records, in `table` (`written_offsets` or `applied_offsets`), how
    /// far the batch covering `ranges` reaches in each partition.
    async fn write_marks(
        &self,
        table: &str,
        ranges: &std::collections::BTreeMap<(&str, i32), (i64, i64)>,
    ) -> Result<(), AnalyticsError> {
        let mut insert = self.client.insert::<WrittenOffset>(table).await?;
        for (&(topic, partition), &(_, last)) in ranges {
            insert
                .write(&WrittenOffset {
                    topic: topic.to_owned(),
                    partition: u32::try_from(partition).unwrap_or_default(),
                    upto: u64::try_from(last + 1).unwrap_or_default(),
                    written_at: Utc::now(),
                })
                .await?;
        }
        Ok(insert.end().await?)
    }

    fn lock_marks(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), i64>> {
        self.marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The partition's `written_offsets` mark, read from ClickHouse when not known.
    async fn mark(&self, topic: &str, partition: i32) -> Result<i64, clickhouse::error::Error> {
        if let Some(&mark) = self.lock_marks().get(&(topic.to_owned(), partition)) {
            return Ok(mark);
        }
        let upto: u64 = self
            .client
            .query("SELECT max(upto) FROM written_offsets WHERE topic = ? AND partition = ?")
            .bind(topic)
            .bind(partition)
            .fetch_one()
            .await?;
        let mark = i64::try_from(upto).unwrap_or(i64::MAX);
        self.lock_marks()
            .insert((topic.to_owned(), partition), mark);
        Ok(mark)
    }

    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        error: String,
    ) -> Result<(), AnalyticsError> {
        counter!("frameworks_projector_events_total", "projection" => NAME, "outcome" => "dead-lettered")
            .increment(1);
        Ok(self.dead_letters.write(message, reason, error).await?)
    }
}

/// Per partition, how far the analytics in `database` reach: the
/// `applied_offsets` marks, below which every record has its rows.
pub async fn applied_marks(
    client: &Client,
    database: &str,
) -> Result<Vec<(String, i32, i64)>, clickhouse::error::Error> {
    #[derive(Debug, Row, serde::Deserialize)]
    struct Mark {
        topic: String,
        partition: u32,
        upto: u64,
    }
    let client = client.clone().with_database(database);
    let marks = |table: &str| {
        client
            .query(&format!(
                "SELECT topic, partition, max(upto) AS upto FROM {table} GROUP BY topic, partition"
            ))
            .fetch_all::<Mark>()
    };
    let marks = match marks("applied_offsets").await {
        // A generation built before `applied_offsets` existed (its replay
        // `--if-outdated` rebuilds it): its first marks are all it has.
        Err(clickhouse::error::Error::BadResponse(error)) if error.contains("Code: 60") => {
            marks("written_offsets").await?
        }
        read => read?,
    };
    Ok(marks
        .into_iter()
        .map(|m| {
            (
                m.topic,
                i32::try_from(m.partition).unwrap_or_default(),
                i64::try_from(m.upto).unwrap_or(i64::MAX),
            )
        })
        .collect())
}
