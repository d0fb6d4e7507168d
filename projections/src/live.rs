//! Live state in Redis: which streams are live and on which edge, viewer
//! counts per stream and per node, node load. Every key expires a TTL after
//! the event that last touched it, so a silent edge falls out on its own.
//!
//! Exactly-once effect: each event's changes run in one Lua script that also
//! checks and advances the last applied offset of the event's partition, so
//! a re-delivered record (after a crash or a rebalance) changes nothing. The
//! Kafka group offset is stored after the script, as a resume hint only.
//! Viewer counts are sets of session ids, so even a repeated session end
//! from an edge cannot count twice. Expiry is `EXPIREAT` at the event's time
//! plus the TTL, so a rebuild from the log ends in the same state.

use std::collections::BTreeMap;
use std::time::Duration;

use frameworks_events::kafka::{DeadLetterWriter, KafkaSettings, LagProbe, read_event};
use frameworks_events::proto::v1::telemetry::BufferState;
use frameworks_events::{Event, EventPayload, Topic};
use metrics::counter;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tracing::info;

use crate::generations::redis::RedisGenerations;
use crate::generations::{Generations, group_of};

pub const NAME: &str = "live-state";
pub const TOPICS: [Topic; 2] = [Topic::StreamTelemetry, Topic::NodeTelemetry];

/// Applies a run of one partition's records: each record whose offset is
/// above the partition's guard has its operations applied; then the guard
/// moves to the last applied offset. KEYS[1] is the guard, then each
/// operation's key in order; ARGV holds per record its offset and operation
/// count, then per operation its command, argument count and arguments.
/// Returns how many records were applied (the rest were re-deliveries).
const APPLY: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local a, k, applied = 1, 2, 0
while a <= #ARGV do
  local offset = tonumber(ARGV[a])
  local ops = tonumber(ARGV[a + 1])
  a = a + 2
  local fresh = offset > last
  for _ = 1, ops do
    local n = tonumber(ARGV[a + 1])
    if fresh then
      redis.call(ARGV[a], KEYS[k], unpack(ARGV, a + 2, a + 1 + n))
    end
    a = a + 2 + n
    k = k + 1
  end
  if fresh then
    last = offset
    applied = applied + 1
  end
end
redis.call('SET', KEYS[1], last)
return applied
";

#[derive(Debug, Clone, clap::Args)]
pub struct LiveStateSettings {
    /// Redis holding the live state.
    #[arg(
        long = "redis-url",
        env = "FRAMEWORKS_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_parser = parse_redis_url
    )]
    pub redis_url: String,

    /// Prefix of every live-state key; a rebuild writes under a new one.
    #[arg(
        long = "live-key-prefix",
        env = "FRAMEWORKS_LIVE_KEY_PREFIX",
        default_value = "fw"
    )]
    pub key_prefix: String,

    /// Seconds after its last event that a stream, viewer set or node drops out.
    #[arg(
        long = "live-ttl-seconds",
        env = "FRAMEWORKS_LIVE_TTL_SECONDS",
        default_value_t = 90,
        value_parser = clap::value_parser!(u64).range(5..=86_400)
    )]
    pub ttl_seconds: u64,

    /// Kafka consumer group of the live-state projector.
    #[arg(
        id = "live_group_id",
        long = "live-group",
        env = "FRAMEWORKS_LIVE_GROUP",
        default_value = "frameworks.projection.live-state"
    )]
    pub group_id: String,

    /// Static group membership (see the control-plane projector's instance id).
    #[arg(
        id = "live_instance_id",
        long = "live-instance-id",
        env = "FRAMEWORKS_LIVE_INSTANCE_ID"
    )]
    pub instance_id: Option<String>,

    /// Most records applied in one batch (one script per partition, pipelined).
    #[arg(
        id = "live_batch_size",
        long = "live-batch-size",
        env = "FRAMEWORKS_LIVE_BATCH_SIZE",
        default_value_t = 5_000,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub batch_size: u32,

    /// How long a batch waits for more records once it has one, in milliseconds.
    #[arg(
        id = "live_batch_wait_ms",
        long = "live-batch-wait-ms",
        env = "FRAMEWORKS_LIVE_BATCH_WAIT_MS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(0..=10_000)
    )]
    pub batch_wait_ms: u64,
}

fn parse_redis_url(value: &str) -> Result<String, String> {
    redis::Client::open(value)
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a Redis URL: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum LiveStateError {
    #[error("Redis")]
    Redis(#[from] redis::RedisError),
    #[error("Kafka")]
    Kafka(#[from] KafkaError),
    #[error("writing a dead letter")]
    DeadLetter(#[from] frameworks_events::kafka::publisher::PublishError),
    #[error("the projector gave up on its Kafka consumer")]
    ConsumerLost(#[from] crate::batch::ConsumerLost),
    #[error("a Redis pipeline's task ended without an answer")]
    Pipeline(#[from] tokio::task::JoinError),
}

/// Records per pipeline: a batch's partitions go to Redis in groups of
/// about this many records, each sent as soon as it is encoded, so that
/// Redis runs one group's scripts while the projector decodes the next
/// (one pipeline for the whole batch left each idle half the time).
const PIPELINE_RECORDS: usize = 1_000;

/// One Redis command of an event's change: (command, key, arguments).
type Op = (&'static str, String, Vec<String>);

/// The key names under a prefix, in one place for writers and readers.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// Prefix of the per-partition offset guards.
    fn guards(&self) -> String {
        format!("{}:guard", self.prefix)
    }
    fn guard(&self, topic: &str, partition: i32) -> String {
        format!("{}:{topic}:{partition}", self.guards())
    }
    pub fn live_streams(&self) -> String {
        format!("{}:streams:live", self.prefix)
    }
    pub fn stream(&self, id: &str) -> String {
        format!("{}:stream:{id}", self.prefix)
    }
    pub fn stream_viewers(&self, id: &str) -> String {
        format!("{}:stream:{id}:viewers", self.prefix)
    }
    pub fn live_nodes(&self) -> String {
        format!("{}:nodes:live", self.prefix)
    }
    pub fn node(&self, id: &str) -> String {
        format!("{}:node:{id}", self.prefix)
    }
    pub fn node_viewers(&self, id: &str) -> String {
        format!("{}:node:{id}:viewers", self.prefix)
    }
}

fn hset(key: String, fields: &[(&str, String)]) -> Op {
    (
        "HSET",
        key,
        fields
            .iter()
            .flat_map(|(f, v)| [(*f).to_owned(), v.clone()])
            .collect(),
    )
}

/// The Redis commands that apply `event` to the live state.
pub fn operations(keys: &Keys, event: &Event, ttl_seconds: u64) -> Vec<Op> {
    let expiry = event.occurred_at.timestamp() + i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 2);
    let at_ms = event.occurred_at.timestamp_millis().to_string();
    let id = &event.aggregate_id;
    let expire = |key: String| ("EXPIREAT", key, vec![expiry.to_string()]);
    let listed =
        |set: String, member: &str| ("ZADD", set, vec![expiry.to_string(), member.to_owned()]);
    // Any fact about a stream keeps it live and says where it is.
    let touch_stream = |node: &str, fields: &[(&str, String)]| {
        let mut all = vec![("node", node.to_owned()), ("updated_ms", at_ms.clone())];
        all.extend_from_slice(fields);
        vec![
            hset(keys.stream(id), &all),
            expire(keys.stream(id)),
            listed(keys.live_streams(), id),
        ]
    };
    let touch_node = |fields: &[(&str, String)]| {
        let mut all = vec![("last_seen_ms", at_ms.clone())];
        all.extend_from_slice(fields);
        vec![
            hset(keys.node(id), &all),
            expire(keys.node(id)),
            listed(keys.live_nodes(), id),
        ]
    };
    match &event.payload {
        EventPayload::IngestStarted(e) => touch_stream(
            &e.node_id,
            &[
                ("protocol", e.protocol.clone()),
                ("since_ms", at_ms.clone()),
                ("source_ip", e.source_ip.clone()),
            ],
        ),
        EventPayload::IngestEnded(_) => {
            vec![
                ("DEL", keys.stream(id), vec![]),
                ("ZREM", keys.live_streams(), vec![id.clone()]),
            ]
        }
        EventPayload::StreamBufferChanged(e) => {
            let state = BufferState::try_from(e.state)
                .unwrap_or(BufferState::Unspecified)
                .as_str_name();
            touch_stream(
                &e.node_id,
                &[
                    ("buffer", state.to_owned()),
                    ("buffer_ms", e.buffer_ms.to_string()),
                ],
            )
        }
        EventPayload::StreamHealthReported(e) => touch_stream(
            &e.node_id,
            &[
                ("bitrate_bps", e.bitrate_bps.to_string()),
                ("fps", e.frames_per_second.to_string()),
                ("issues", e.issues.join(",")),
            ],
        ),
        EventPayload::TrackListUpdated(e) => {
            touch_stream(&e.node_id, &[("tracks", e.tracks.len().to_string())])
        }
        // The edge's poll: keeps a stream live between other facts.
        EventPayload::StreamSampled(e) => touch_stream(
            &e.node_id,
            &[
                ("status", e.status.clone()),
                ("sampled_viewers", e.viewers.to_string()),
                ("up_bps", e.up_bps.to_string()),
                ("down_bps", e.down_bps.to_string()),
                ("up_bytes", e.up_bytes.to_string()),
                ("down_bytes", e.down_bytes.to_string()),
                ("viewer_seconds", e.viewer_seconds.to_string()),
            ],
        ),
        EventPayload::ViewerSessionStarted(e) => vec![
            ("SADD", keys.stream_viewers(id), vec![e.session_id.clone()]),
            expire(keys.stream_viewers(id)),
            (
                "SADD",
                keys.node_viewers(&e.node_id),
                vec![format!("{id}/{}", e.session_id)],
            ),
            expire(keys.node_viewers(&e.node_id)),
        ],
        EventPayload::ViewerSessionEnded(e) => vec![
            ("SREM", keys.stream_viewers(id), vec![e.session_id.clone()]),
            (
                "SREM",
                keys.node_viewers(&e.node_id),
                vec![format!("{id}/{}", e.session_id)],
            ),
        ],
        EventPayload::NodeHeartbeat(e) => touch_node(&[
            ("edge_version", e.edge_version.clone()),
            ("mist_version", e.mist_version.clone()),
            ("mist_healthy", e.mist_healthy.to_string()),
        ]),
        EventPayload::NodeMetrics(e) => touch_node(&[
            ("cpu_percent", e.cpu_percent.to_string()),
            ("memory_used_bytes", e.memory_used_bytes.to_string()),
            ("memory_total_bytes", e.memory_total_bytes.to_string()),
            ("bandwidth_up_bps", e.bandwidth_up_bps.to_string()),
            ("bandwidth_down_bps", e.bandwidth_down_bps.to_string()),
            ("bandwidth_limit_bps", e.bandwidth_limit_bps.to_string()),
            ("disk_used_bytes", e.disk_used_bytes.to_string()),
            ("disk_total_bytes", e.disk_total_bytes.to_string()),
            ("active_streams", e.active_streams.to_string()),
            ("active_viewers", e.active_viewers.to_string()),
        ]),
        // Raw trigger facts and control-plane events carry no live state.
        // Not live state. Named one by one, so that a new event type does
        // not compile until it is placed here or above.
        EventPayload::TenantCreated(_)
        | EventPayload::TenantSuspended(_)
        | EventPayload::TenantReactivated(_)
        | EventPayload::SigningKeyCreated(_)
        | EventPayload::SigningKeyRevoked(_)
        | EventPayload::TenantPreferredClusterSet(_)
        | EventPayload::UserRegistered(_)
        | EventPayload::UserPasswordChanged(_)
        | EventPayload::UserLoginFailed(_)
        | EventPayload::UserLoginSucceeded(_)
        | EventPayload::ApiTokenCreated(_)
        | EventPayload::ApiTokenRevoked(_)
        | EventPayload::StreamCreated(_)
        | EventPayload::StreamUpdated(_)
        | EventPayload::StreamDeleted(_)
        | EventPayload::StreamKeyCreated(_)
        | EventPayload::StreamKeyRotated(_)
        | EventPayload::StreamKeyDeleted(_)
        | EventPayload::StreamPlaybackPolicySet(_)
        | EventPayload::ClusterCreated(_)
        | EventPayload::ClusterUpdated(_)
        | EventPayload::NodeEnrolmentTokenIssued(_)
        | EventPayload::NodeEnrolmentTokenConsumed(_)
        | EventPayload::ClusterMarketplaceUpdated(_)
        | EventPayload::ClusterSubscriptionRequested(_)
        | EventPayload::ClusterSubscriptionApproved(_)
        | EventPayload::ClusterSubscriptionRejected(_)
        | EventPayload::ClusterSubscriptionCancelled(_)
        | EventPayload::ClusterInviteCreated(_)
        | EventPayload::ClusterInviteRevoked(_)
        | EventPayload::ClusterInviteAccepted(_)
        | EventPayload::EdgePreRegistered(_)
        | EventPayload::NodeEnrolled(_)
        | EventPayload::NodeReenrolled(_)
        | EventPayload::NodeDecommissioned(_)
        | EventPayload::NodeModeChanged(_)
        | EventPayload::NodeServicesReported(_)
        | EventPayload::MistTriggerReceived(_)
        | EventPayload::PushEnded(_)
        | EventPayload::RecordingSegmentWritten(_)
        | EventPayload::RecordingEnded(_)
        | EventPayload::InputClosed(_) => Vec::new(),
    }
}

/// Reads the live state: either whichever generation is live (following
/// switches made by `frameworks replay`) or one pinned generation.
#[derive(Clone)]
pub struct LiveState {
    redis: ConnectionManager,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Pinned(Keys),
    Live(RedisGenerations, String),
}

impl std::fmt::Debug for LiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveState")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A connection to Redis that fails fast while Redis is away: a command
/// waits at most 2 s for its answer, and a reconnection makes two quick
/// attempts (the client's default spends about 6 s on seven), so a viewer
/// asking /play during an outage gets an answer within seconds rather than
/// a hung request. The next command after a failure reconnects again.
pub async fn connect_redis(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    redis::Client::open(url)?
        .get_connection_manager_with_config(config)
        .await
}

impl LiveState {
    /// Reads the live generation under the base prefix `base`.
    pub async fn connect(url: &str, base: &str) -> Result<Self, redis::RedisError> {
        let redis = connect_redis(url).await?;
        Ok(Self {
            source: Source::Live(RedisGenerations::new(redis.clone(), base), base.to_owned()),
            redis,
        })
    }

    /// Reads the keys under one generation's `prefix`, whatever is live.
    pub fn pinned(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            source: Source::Pinned(Keys::new(prefix)),
        }
    }

    /// The Redis connection it reads with, for other state kept beside the live state.
    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// The key names of the generation this reader reads now.
    pub async fn keys(&self) -> Result<Keys, redis::RedisError> {
        match &self.source {
            Source::Pinned(keys) => Ok(keys.clone()),
            Source::Live(generations, base) => {
                // Before the first projector starts nothing is live: generation 0 is empty.
                let live = generations.live().await?.unwrap_or(0);
                Ok(Keys::new(&RedisGenerations::prefix(base, live)))
            }
        }
    }

    /// Streams live at `now` (unix seconds), each with its fields (node, protocol, ...).
    pub async fn live_streams(
        &self,
        now: i64,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, redis::RedisError> {
        let keys = self.keys().await?;
        let mut redis = self.redis.clone();
        let ids: Vec<String> = redis
            .zrangebyscore(keys.live_streams(), now, "+inf")
            .await?;
        let mut streams = BTreeMap::new();
        for id in ids {
            let fields: BTreeMap<String, String> = redis.hgetall(keys.stream(&id)).await?;
            if !fields.is_empty() {
                streams.insert(id, fields);
            }
        }
        Ok(streams)
    }

    /// Every stream live at `now` (unix seconds) and the node it is on, in
    /// two round trips however many there are.
    pub async fn stream_nodes(&self, now: i64) -> Result<Vec<(String, String)>, redis::RedisError> {
        let keys = self.keys().await?;
        let mut redis = self.redis.clone();
        let ids: Vec<String> = redis
            .zrangebyscore(keys.live_streams(), now, "+inf")
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(keys.stream(id), "node");
        }
        let nodes: Vec<Option<String>> = pipe.query_async(&mut redis).await?;
        Ok(ids
            .into_iter()
            .zip(nodes)
            .filter_map(|(id, node)| Some((id, node?)))
            .collect())
    }

    /// One stream's live fields (node, protocol, ...); empty when it is not live.
    pub async fn stream(&self, id: &str) -> Result<BTreeMap<String, String>, redis::RedisError> {
        let keys = self.keys().await?;
        self.redis.clone().hgetall(keys.stream(id)).await
    }

    pub async fn viewers(&self, stream: &str) -> Result<usize, redis::RedisError> {
        let keys = self.keys().await?;
        self.redis.clone().scard(keys.stream_viewers(stream)).await
    }

    pub async fn node_viewers(&self, node: &str) -> Result<usize, redis::RedisError> {
        let keys = self.keys().await?;
        self.redis.clone().scard(keys.node_viewers(node)).await
    }

    /// For each node: its fields and its viewer count (empty and 0 for a node
    /// that has fallen silent), in one round trip for them all.
    pub async fn node_loads(
        &self,
        nodes: &[String],
    ) -> Result<Vec<(BTreeMap<String, String>, usize)>, redis::RedisError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys().await?;
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.hgetall(keys.node(node)).scard(keys.node_viewers(node));
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.redis.clone()).await?;
        let mut replies = replies.into_iter();
        let mut loads = Vec::with_capacity(nodes.len());
        // Two replies per node, in the order the commands were queued.
        while let (Some(fields), Some(viewers)) = (replies.next(), replies.next()) {
            loads.push((
                redis::from_redis_value(fields)?,
                redis::from_redis_value(viewers)?,
            ));
        }
        Ok(loads)
    }

    pub async fn node(&self, node: &str) -> Result<BTreeMap<String, String>, redis::RedisError> {
        let keys = self.keys().await?;
        self.redis.clone().hgetall(keys.node(node)).await
    }

    /// The last applied offset of one partition, if any.
    pub async fn applied(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, redis::RedisError> {
        let keys = self.keys().await?;
        self.redis.clone().get(keys.guard(topic, partition)).await
    }

    /// Per partition, the next offset to apply (last applied + 1).
    pub async fn applied_offsets(&self) -> Result<Vec<(String, i32, i64)>, redis::RedisError> {
        let keys = self.keys().await?;
        let guards_prefix = keys.guards();
        let prefix = guards_prefix.as_str();
        let mut redis = self.redis.clone();
        let mut cursor: u64 = 0;
        let mut guards = Vec::new();
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await?;
            guards.extend(found);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut offsets = Vec::with_capacity(guards.len());
        for guard in guards {
            let Some((topic, partition)) = guard
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|rest| rest.rsplit_once(':'))
            else {
                continue;
            };
            let Ok(partition) = partition.parse() else {
                continue;
            };
            let last: Option<i64> = redis.get(&guard).await?;
            if let Some(last) = last {
                offsets.push((topic.to_owned(), partition, last + 1));
            }
        }
        Ok(offsets)
    }
}

/// What one batch of the live-state projector did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveBatch {
    /// Records read.
    pub records: usize,
    /// Records that changed the state: the rest were re-deliveries the
    /// partition guards turned away (or dead letters, which change nothing).
    pub applied: usize,
}

pub struct LiveStateProjector {
    state: LiveState,
    keys: Keys,
    generation: u32,
    group_id: String,
    consumer: StreamConsumer,
    probe: LagProbe,
    dead_letters: DeadLetterWriter,
    settings: LiveStateSettings,
    script: redis::Script,
}

impl std::fmt::Debug for LiveStateProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStateProjector")
            .field("generation", &self.generation)
            .field("group", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl LiveStateProjector {
    /// A projector for the live generation (generation 1 on a fresh Redis).
    pub async fn new(
        kafka: &KafkaSettings,
        settings: LiveStateSettings,
    ) -> Result<Self, LiveStateError> {
        let generations = Self::generations(&settings).await?;
        let generation = generations.ensure_live().await?;
        Self::for_generation(kafka, settings, generation).await
    }

    /// The register of this projection's generations under the configured prefix.
    pub async fn generations(
        settings: &LiveStateSettings,
    ) -> Result<RedisGenerations, redis::RedisError> {
        let redis = connect_redis(&settings.redis_url).await?;
        Ok(RedisGenerations::new(redis, &settings.key_prefix))
    }

    /// A projector writing into `generation`, as that generation's consumer group.
    pub async fn for_generation(
        kafka: &KafkaSettings,
        settings: LiveStateSettings,
        generation: u32,
    ) -> Result<Self, LiveStateError> {
        let redis = connect_redis(&settings.redis_url).await?;
        let prefix = RedisGenerations::prefix(&settings.key_prefix, generation);
        let state = LiveState::pinned(redis, &prefix);
        let group_id = group_of(&settings.group_id, generation);
        let catalogue = kafka.catalogue();
        let consumer: StreamConsumer = kafka
            .group_consumer_config(&group_id, settings.instance_id.as_deref())
            .create()?;
        let topics: Vec<&str> = TOPICS.iter().map(|&t| catalogue.name(t)).collect();
        consumer.subscribe(&topics)?;
        Ok(Self {
            state,
            keys: Keys::new(&prefix),
            generation,
            dead_letters: DeadLetterWriter::new(kafka, &group_id)?,
            probe: LagProbe::new(kafka, &group_id)?,
            group_id,
            consumer,
            settings,
            script: redis::Script::new(APPLY),
        })
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The state this projector writes (its own generation).
    pub fn state(&self) -> &LiveState {
        &self.state
    }

    /// Applies records until `shutdown` resolves; Redis or Kafka trouble is
    /// retried (the record was not applied and its offset not stored: the
    /// consumer reads it again after a seek). Ends with
    /// [`LiveStateError::ConsumerLost`] when the consumer cannot go on.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), LiveStateError> {
        info!(group = %self.group_id, generation = self.generation, "live-state projector started");
        crate::batch::run_until(NAME, &self.consumer, &self.probe, shutdown, || self.step())
            .await?;
        Ok(())
    }

    /// A pipeline that first loads the script: a restarted or wiped Redis
    /// has forgotten it.
    fn pipeline(&self) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.load_script(&self.script).ignore();
        pipe
    }

    /// Sends `pipe` from a task of its own, so that it goes out and is
    /// answered while this one encodes the next.
    fn send(&self, pipe: redis::Pipeline) -> tokio::task::JoinHandle<redis::RedisResult<Vec<u64>>> {
        let mut redis = self.state.redis.clone();
        tokio::spawn(async move { pipe.query_async(&mut redis).await })
    }

    /// Waits for at least one record, gathers a batch and applies it.
    pub async fn step(&self) -> Result<LiveBatch, LiveStateError> {
        let batch = crate::batch::gather(
            &self.consumer,
            self.settings.batch_size as usize,
            Duration::from_millis(self.settings.batch_wait_ms),
        )
        .await?;
        self.apply(&batch).await.inspect_err(|_| {
            crate::batch::rewind(&self.consumer, &batch);
        })
    }

    /// One script invocation per partition, in pipelines of about
    /// [`PIPELINE_RECORDS`] records sent while the next is encoded. Each
    /// partition's script is atomic with its guard, so pipelines cut short
    /// leave every partition either applied or not, and a partition applied
    /// before a failure is skipped by its guard when the batch comes again.
    async fn apply(&self, batch: &[OwnedMessage]) -> Result<LiveBatch, LiveStateError> {
        let keys = &self.keys;
        let partitions = crate::batch::by_partition(batch);
        let mut sent = Vec::new();
        let mut pipe = self.pipeline();
        let mut in_pipe = 0;
        let mut dead_lettered = 0;
        for ((topic, partition), messages) in &partitions {
            let mut invocation = self.script.prepare_invoke();
            invocation.key(keys.guard(topic, *partition));
            for &message in messages {
                let operations = match read_event(message) {
                    Ok(event) => operations(keys, &event, self.settings.ttl_seconds),
                    Err(unreadable) => {
                        self.dead_letters
                            .write(message, unreadable.reason, unreadable.error)
                            .await?;
                        dead_lettered += 1;
                        Vec::new()
                    }
                };
                invocation.arg(message.offset()).arg(operations.len());
                for (command, key, args) in operations {
                    invocation.key(key).arg(command).arg(args.len()).arg(args);
                }
            }
            pipe.invoke_script(&invocation);
            in_pipe += messages.len();
            if in_pipe >= PIPELINE_RECORDS {
                sent.push(self.send(std::mem::replace(&mut pipe, self.pipeline())));
                in_pipe = 0;
            }
        }
        if in_pipe > 0 {
            sent.push(self.send(pipe));
        }
        // Every pipeline is awaited, so that a failure is answered only once
        // the batch's other pipelines are done. (Pipelines sent before a
        // dead letter fails to write finish on their own: their partitions'
        // guards skip them when the batch is read again.)
        let mut past_guard: u64 = 0;
        let mut failure = None;
        for pipeline in sent {
            match pipeline.await {
                Ok(Ok(applied)) => past_guard += applied.iter().sum::<u64>(),
                Ok(Err(error)) => failure = failure.or(Some(LiveStateError::from(error))),
                Err(error) => failure = failure.or(Some(LiveStateError::from(error))),
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        // The scripts count every record past the guard, dead letters (no
        // operations) among them: those changed nothing.
        let duplicates = (batch.len() as u64).saturating_sub(past_guard);
        let applied = past_guard.saturating_sub(dead_lettered);
        counter!("frameworks_projector_events_total", "projection" => NAME, "outcome" => "applied")
            .increment(applied);
        counter!("frameworks_projector_events_total", "projection" => NAME, "outcome" => "duplicate")
            .increment(duplicates);
        counter!("frameworks_projector_events_total", "projection" => NAME, "outcome" => "dead-lettered")
            .increment(dead_lettered);
        // The resume hints, stored only once the state holds the records.
        for ((topic, partition), messages) in &partitions {
            if let Some(last) = messages.last() {
                let _ = self.consumer.store_offset(topic, *partition, last.offset());
            }
        }
        Ok(LiveBatch {
            records: batch.len(),
            applied: usize::try_from(applied).unwrap_or(usize::MAX),
        })
    }
}
