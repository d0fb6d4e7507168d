//! End-to-end load driver: edge triggers through the balancer's ingress,
//! Kafka and every projection, with each role as its own process (the
//! release binary) against the real Kafka, PostgreSQL, Redis and ClickHouse
//! that `compose/infra up` runs.
//!
//! One enrolled edge (this driver) submits viewer triggers as MistServer
//! sends them (USER_NEW and USER_END pairs, each with its own trigger id,
//! over 100 platform streams) at a fixed rate. Each second it prints the
//! triggers acknowledged and each projection's lag in records. At the end:
//!
//! - `e2e.triggers`: triggers/s acknowledged over the run;
//! - `e2e.<projection>.event-to-queryable-p99`: the time from a trigger's
//!   submission to its projection having applied and committed every record
//!   the log held when the trigger was acknowledged (so it is queryable);
//!   an upper bound, sampled every 100 ms;
//! - `memory.<role>.idle-rss` and `memory.<role>.load-rss`: each role's
//!   resident memory before the load and its peak under it;
//! - with a soak (`FRAMEWORKS_BENCH_SOAK_SECONDS`, 600 by default in the full
//!   run), a tenth of the rate for that long, and each role's growth in
//!   resident memory over it (after its first minute, the mean of the last
//!   five samples less that of the first five).
//!
//! `cargo bench --bench end_to_end` runs the full load; under `cargo test`
//! (no `--bench` argument) a small smoke load exercises the driver.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frameworks_balancer::directory::internal_name;
use frameworks_commands::aggregates::stream::{Ingest, Stream, StreamCommand};
use frameworks_commands::aggregates::tenant::{Tenant, TenantCommand};
use frameworks_commands::{CommandBus, CommandContext, SecretBox};
use frameworks_edge_protocol::proto::TriggerBatch;
use frameworks_edge_protocol::proto::ingress_client::IngressClient;
use frameworks_events::Topic;
use frameworks_events::kafka::KafkaSettings;
use frameworks_events::kafka::probe::BrokerProbe;
use frameworks_events::proto::v1::telemetry::MistTriggerReceived;
use frameworks_mist_simulator::captures;
use frameworks_projections::generations::Generations;
use frameworks_projections::generations::clickhouse::ClickHouseGenerations;
use frameworks_projections::generations::postgres::PostgresGenerations;
use frameworks_projections::generations::redis::RedisGenerations;
use frameworks_projections::status::lags;
use frameworks_projections::{analytics, control_plane, live};
use frameworks_test_harness::figures::{self, Goal, figure};
use frameworks_test_harness::{ScratchDatabase, drop_redis_prefix, drop_topics, kafka_with_topics};
use hdrhistogram::Histogram;
use support::{RoleProcess, spawn_role};
use uuid::Uuid;

struct Load {
    /// Triggers a second, in batches of `batch`.
    rate: u64,
    seconds: u64,
    batch: usize,
    /// Batches submitted and not yet acknowledged, at most.
    in_flight: usize,
    streams: usize,
    /// The soak after the load, at a tenth of the rate; 0 for none.
    soak_seconds: u64,
}

const FULL: Load = Load {
    rate: 50_000,
    seconds: 60,
    batch: 500,
    in_flight: 8,
    streams: 100,
    soak_seconds: 600,
};
const SMOKE: Load = Load {
    rate: 2_000,
    seconds: 3,
    batch: 100,
    in_flight: 2,
    streams: 3,
    soak_seconds: 0,
};

/// Idle resident memory each role should stay under (the goal), and
/// the project's own bounds under load and for growth over the soak.
const IDLE_RSS_GOAL_MB: f64 = 100.0;
const LOAD_RSS_GOAL_MB: f64 = 250.0;
const SOAK_GROWTH_GOAL_MB: f64 = 10.0;
/// The goal for a trigger to be queryable in every projection.
const QUERYABLE_P99_GOAL_MS: f64 = 1_000.0;

fn main() {
    let mut load = if std::env::args().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    if let Some(seconds) = std::env::var("FRAMEWORKS_BENCH_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        load.soak_seconds = seconds;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(load));
}

/// A role's resident memory in MB (0 once it is gone).
fn rss_mb(role: &RoleProcess) -> f64 {
    figures::rss_mb(role.0.id()).unwrap_or(0.0)
}

/// Per partition of some topics: (topic, partition, offset).
type Offsets = Vec<(String, i32, i64)>;

/// One projection's applied offsets, read from where it commits them.
enum Applied {
    ControlPlane(PostgresGenerations),
    LiveState(RedisGenerations),
    Analytics(Box<ClickHouseGenerations>),
}

impl Applied {
    async fn offsets(&self) -> Offsets {
        async fn of<G: Generations>(generations: &G) -> Offsets {
            match generations.live().await {
                Ok(Some(live)) => generations.applied(live).await.unwrap_or_default(),
                _ => Vec::new(),
            }
        }
        match self {
            Self::ControlPlane(g) => of(g).await,
            Self::LiveState(g) => of(g).await,
            Self::Analytics(g) => of(g.as_ref()).await,
        }
    }
}

/// A projection as the driver watches it: where it commits, which topics
/// it reads, and its event-to-queryable latencies (ms).
struct Watched {
    name: &'static str,
    applied: Applied,
    topics: Vec<String>,
    latencies: Histogram<u64>,
    /// (earliest submission behind it, the log ends to pass), oldest first.
    pending: Vec<(Instant, Offsets)>,
}

impl Watched {
    /// Lag in records against `ends`, and the samples now applied recorded.
    async fn observe(&mut self, ends: &[(String, i32, i64)]) -> i64 {
        let applied = self.applied.offsets().await;
        let now = Instant::now();
        let passed =
            |wanted: &[(String, i32, i64)]| lags(wanted, &applied).iter().all(|lag| lag.lag() == 0);
        let mut kept = Vec::new();
        for (submitted, wanted) in self.pending.drain(..) {
            if passed(&wanted) {
                self.latencies
                    .record(now.duration_since(submitted).as_millis() as u64)
                    .unwrap();
            } else {
                kept.push((submitted, wanted));
            }
        }
        self.pending = kept;
        let own: Vec<_> = ends
            .iter()
            .filter(|(topic, _, _)| self.topics.contains(topic))
            .cloned()
            .collect();
        lags(&own, &applied).iter().map(|l| l.lag()).sum()
    }
}

/// What the submitting tasks report: acknowledged triggers, and the
/// submission time of the earliest batch acknowledged since the last look.
#[derive(Default)]
struct Acks {
    triggers: u64,
    earliest_unsampled: Option<Instant>,
    batch_ms: Vec<u64>,
}

async fn run(load: Load) {
    let kafka = kafka_with_topics("bench-e2e").await;
    let db = ScratchDatabase::create("bench_e2e").await;
    let prefix = format!("bench-{}", Uuid::now_v7().simple());
    let clickhouse_base = format!("bench_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let (secrets, data_keys) = SecretBox::generate("bench");
    let grpc_port = support::free_port();
    let common = vec![
        ("FRAMEWORKS_DATABASE_URL", db.url.clone()),
        ("FRAMEWORKS_REDIS_URL", support::redis_url()),
        ("FRAMEWORKS_LIVE_KEY_PREFIX", prefix.clone()),
        ("FRAMEWORKS_CLICKHOUSE_DATABASE", clickhouse_base.clone()),
        ("FRAMEWORKS_DATA_KEYS", data_keys.clone()),
        ("FRAMEWORKS_PROJECTOR_GROUP", format!("{prefix}-projector")),
        ("FRAMEWORKS_LIVE_GROUP", format!("{prefix}-live")),
        ("FRAMEWORKS_ANALYTICS_GROUP", format!("{prefix}-analytics")),
        ("FRAMEWORKS_RELAY_METRICS_LISTEN", "127.0.0.1:0".into()),
        ("FRAMEWORKS_PROJECTOR_METRICS_LISTEN", "127.0.0.1:0".into()),
        ("FRAMEWORKS_LIVE_METRICS_LISTEN", "127.0.0.1:0".into()),
        ("FRAMEWORKS_ANALYTICS_METRICS_LISTEN", "127.0.0.1:0".into()),
        ("FRAMEWORKS_BALANCER_METRICS_LISTEN", "127.0.0.1:0".into()),
        ("FRAMEWORKS_BALANCER_HTTP_LISTEN", "127.0.0.1:0".into()),
        (
            "FRAMEWORKS_BALANCER_GRPC_LISTEN",
            format!("127.0.0.1:{grpc_port}"),
        ),
        (
            "FRAMEWORKS_BRIDGE_LISTEN",
            format!("127.0.0.1:{}", support::free_port()),
        ),
        (
            "FRAMEWORKS_SESSION_SECRET",
            Uuid::now_v7().simple().to_string().repeat(2),
        ),
    ];
    // The write side's roles first: the tenant, streams and cluster below
    // go through the outbox and the control-plane projection.
    let mut roles: Vec<(&str, RoleProcess)> = ["relay", "projector"]
        .into_iter()
        .map(|role| (role, spawn_role(role, &kafka, &common)))
        .collect();

    let bus = CommandBus::new(db.store.clone(), secrets);
    let tenant = Uuid::now_v7();
    let ctx = CommandContext::for_tenant(tenant, "user:bench");
    let create = TenantCommand::Create {
        name: "bench".into(),
        tier: "pro".into(),
        region: "eu-west".into(),
    };
    bus.execute::<Tenant>(&tenant.to_string(), &create, &ctx, None)
        .await
        .unwrap();
    let mut streams = Vec::new();
    for i in 0..load.streams {
        let stream = Uuid::now_v7();
        let create = StreamCommand::Create {
            name: format!("stream {i}"),
            description: String::new(),
            record: false,
            ingest: Ingest::Push,
            pull_source: None,
            allow_private_sources: false,
        };
        bus.execute::<Stream>(&stream.to_string(), &create, &ctx, None)
            .await
            .unwrap();
        streams.push(internal_name(stream));
    }
    let (_, token) = support::enrolment_token(&bus, tenant).await;

    for role in ["live-state", "analytics", "balancer", "bridge"] {
        roles.push((role, spawn_role(role, &kafka, &common)));
    }
    let mut watched = vec![
        Watched {
            name: "control-plane",
            applied: Applied::ControlPlane(PostgresGenerations::new(db.store.pool().clone())),
            topics: names(&kafka, &control_plane::TOPICS),
            latencies: Histogram::new(3).unwrap(),
            pending: Vec::new(),
        },
        Watched {
            name: "live-state",
            applied: Applied::LiveState(RedisGenerations::new(
                redis::Client::open(support::redis_url())
                    .unwrap()
                    .get_connection_manager()
                    .await
                    .unwrap(),
                &prefix,
            )),
            topics: names(&kafka, &live::TOPICS),
            latencies: Histogram::new(3).unwrap(),
            pending: Vec::new(),
        },
        Watched {
            name: "analytics",
            applied: Applied::Analytics(Box::new(
                ClickHouseGenerations::open(&support::clickhouse(&clickhouse_base))
                    .await
                    .unwrap(),
            )),
            topics: names(&kafka, &analytics::TOPICS),
            latencies: Histogram::new(3).unwrap(),
            pending: Vec::new(),
        },
    ];
    let probe = BrokerProbe::new(&kafka, "bench-e2e").unwrap();
    let all_topics: Vec<String> = watched.iter().flat_map(|w| w.topics.clone()).collect();

    let edge = support::enrol(SocketAddr::from(([127, 0, 0, 1], grpc_port)), &token).await;
    let session = (edge.node_id.clone(), edge.session_token.clone());
    let ingress = IngressClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .unwrap();
    // Everything set up so far is applied before the idle figures.
    settle(&mut watched, &probe, &all_topics, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(if load.seconds > 10 { 10 } else { 1 })).await;
    println!(
        "end to end: roles as processes, 2 cores shared with Kafka, PostgreSQL, Redis and ClickHouse"
    );
    let idle: Vec<(&str, f64)> = roles.iter().map(|(name, p)| (*name, rss_mb(p))).collect();

    println!(
        "  load: {} triggers/s (USER_NEW and USER_END over {} streams) for {} s, batches of {}, {} in flight",
        load.rate, load.streams, load.seconds, load.batch, load.in_flight
    );
    let template = Templates::new();
    let acks = Arc::new(Mutex::new(Acks::default()));
    let submitting = tokio::spawn(submit(
        ingress.clone(),
        session.clone(),
        template.clone(),
        streams.clone(),
        load.rate,
        Duration::from_secs(load.seconds),
        load.batch,
        load.in_flight,
        acks.clone(),
    ));
    let started = Instant::now();
    let mut peak: BTreeMap<&str, f64> = BTreeMap::new();
    let mut acknowledged = 0;
    let mut second = 0;
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while !submitting.is_finished() {
        ticks.tick().await;
        let Some(ends) = sample(&acks, &mut watched, &probe, &all_topics).await else {
            continue;
        };
        let mut lags = Vec::new();
        for w in &mut watched {
            let lag = w.observe(&ends).await;
            lags.push(format!("{} lag {lag:>7}", w.name));
        }
        if started.elapsed() >= Duration::from_secs(second + 1) {
            second += 1;
            let now_acked = acks.lock().unwrap().triggers;
            for (name, process) in &roles {
                let entry = peak.entry(name).or_default();
                *entry = entry.max(rss_mb(process));
            }
            println!(
                "  {second:>3} s  {:>7} triggers/s acknowledged  {}",
                now_acked - acknowledged,
                lags.join("  ")
            );
            acknowledged = now_acked;
        }
    }
    submitting.await.unwrap();
    let elapsed = started.elapsed();
    let total = acks.lock().unwrap().triggers;
    // The backlog drains; the samples still pending are timed as it does.
    let drained = Instant::now();
    let mut waited = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ends = probe.ends(all_topics.clone()).await.unwrap_or_default();
        let mut lags = Vec::new();
        for w in &mut watched {
            lags.push((w.name, w.observe(&ends).await));
        }
        let pending: usize = watched.iter().map(|w| w.pending.len()).sum();
        if pending == 0 || drained.elapsed() > Duration::from_secs(300) {
            break;
        }
        if drained.elapsed().as_secs() > waited {
            waited = drained.elapsed().as_secs();
            let line: Vec<String> = lags.iter().map(|(n, l)| format!("{n} lag {l}")).collect();
            println!("  drain {waited:>3} s  {}", line.join("  "));
        }
    }
    let batches = {
        let acks = acks.lock().unwrap();
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for ms in &acks.batch_ms {
            histogram.record(*ms).unwrap();
        }
        histogram
    };
    println!(
        "  {} triggers acknowledged in {:.1} s; batch acknowledged p50 {} ms, p99 {} ms",
        total,
        elapsed.as_secs_f64(),
        batches.value_at_quantile(0.5),
        batches.value_at_quantile(0.99)
    );
    figure(
        "e2e.triggers",
        total as f64 / elapsed.as_secs_f64(),
        "triggers/s",
        Goal::AtLeast(load.rate as f64),
    );
    for w in &watched {
        // The control plane is not fed by triggers; its figure is its lag.
        if w.name == "control-plane" {
            continue;
        }
        println!(
            "  {:<14} event to queryable p50 {} ms, p99 {} ms, max {} ms ({} samples, {} never applied)",
            w.name,
            w.latencies.value_at_quantile(0.5),
            w.latencies.value_at_quantile(0.99),
            w.latencies.max(),
            w.latencies.len(),
            w.pending.len()
        );
        let p99 = if w.pending.is_empty() {
            w.latencies.value_at_quantile(0.99) as f64
        } else {
            f64::INFINITY
        };
        figure(
            &format!("e2e.{}.event-to-queryable-p99", w.name),
            p99,
            "ms",
            Goal::AtMost(QUERYABLE_P99_GOAL_MS),
        );
    }
    for (name, rss) in &idle {
        figure(
            &format!("memory.{name}.idle-rss"),
            *rss,
            "MB",
            Goal::AtMost(IDLE_RSS_GOAL_MB),
        );
    }
    for (name, rss) in &peak {
        figure(
            &format!("memory.{name}.load-rss"),
            *rss,
            "MB",
            Goal::AtMost(LOAD_RSS_GOAL_MB),
        );
    }

    if load.soak_seconds > 0 {
        soak(&load, &roles, ingress, session, template, streams).await;
    }

    drop(roles);
    drop_redis_prefix(&support::redis_url(), &prefix).await;
    let client = clickhouse::Client::default().with_url(support::clickhouse("").url);
    for database in [format!("{clickhouse_base}_g1"), clickhouse_base.clone()] {
        let _ = client
            .query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute()
            .await;
    }
    drop_topics(&kafka).await;
    db.drop_now().await;
}

/// A tenth of the load for `load.soak_seconds`, with each role's resident
/// memory every 30 s; growth is measured from the end of the first minute.
async fn soak(
    load: &Load,
    roles: &[(&str, RoleProcess)],
    ingress: IngressClient<tonic::transport::Channel>,
    session: (String, String),
    template: Templates,
    streams: Vec<String>,
) {
    println!(
        "  soak: {} triggers/s for {} s; resident memory (MB) every 30 s",
        load.rate / 10,
        load.soak_seconds
    );
    let acks = Arc::new(Mutex::new(Acks::default()));
    let submitting = tokio::spawn(submit(
        ingress,
        session,
        template,
        streams,
        load.rate / 10,
        Duration::from_secs(load.soak_seconds),
        load.batch,
        load.in_flight,
        acks.clone(),
    ));
    let started = Instant::now();
    // Per role, its samples from the end of the first minute on.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); roles.len()];
    let mut ticks = tokio::time::interval(Duration::from_secs(30));
    while !submitting.is_finished() {
        ticks.tick().await;
        let now: Vec<f64> = roles.iter().map(|(_, p)| rss_mb(p)).collect();
        let line: Vec<String> = roles
            .iter()
            .zip(&now)
            .map(|((name, _), rss)| format!("{name} {rss:.1}"))
            .collect();
        println!(
            "  soak {:>4} s  {}",
            started.elapsed().as_secs(),
            line.join("  ")
        );
        if started.elapsed() >= Duration::from_secs(60) {
            for (series, rss) in samples.iter_mut().zip(now) {
                series.push(rss);
            }
        }
    }
    submitting.await.unwrap();
    for ((name, _), series) in roles.iter().zip(&samples) {
        let Some(growth) = growth(series) else {
            println!("  the soak was too short to measure {name}'s growth");
            continue;
        };
        figure(
            &format!("memory.{name}.soak-growth"),
            growth,
            "MB",
            Goal::AtMost(SOAK_GROWTH_GOAL_MB),
        );
    }
}

/// Growth over a series of samples: the mean of its last five less the
/// mean of its first five (fewer when it is short), so that one sample
/// caught at a high or low point of the allocator's cycle does not read
/// as growth or shrinkage. `None` under two samples.
fn growth(series: &[f64]) -> Option<f64> {
    let k = (series.len() / 2).min(5);
    if k == 0 {
        return None;
    }
    let mean = |part: &[f64]| part.iter().sum::<f64>() / part.len() as f64;
    Some(mean(&series[series.len() - k..]) - mean(&series[..k]))
}

fn names(kafka: &KafkaSettings, topics: &[Topic]) -> Vec<String> {
    let catalogue = kafka.catalogue();
    topics
        .iter()
        .map(|&t| catalogue.name(t).to_owned())
        .collect()
}

/// Waits (at most `limit`) until every projection has applied the log.
async fn settle(watched: &mut [Watched], probe: &BrokerProbe, topics: &[String], limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let ends = probe.ends(topics.to_vec()).await.unwrap_or_default();
        let mut behind = 0;
        for w in watched.iter_mut() {
            behind += w.observe(&ends).await;
        }
        if !ends.is_empty() && behind == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the projections did not apply the set-up within {limit:?}");
}

/// Takes a latency sample: the log's ends now stand for every batch
/// acknowledged since the last sample, timed from the earliest submission
/// among them. Answers the ends (`None` when Kafka could not be read).
async fn sample(
    acks: &Mutex<Acks>,
    watched: &mut [Watched],
    probe: &BrokerProbe,
    topics: &[String],
) -> Option<Offsets> {
    let earliest = acks.lock().unwrap().earliest_unsampled.take();
    let ends = probe.ends(topics.to_vec()).await.ok()?;
    if let Some(submitted) = earliest {
        for w in watched.iter_mut() {
            if w.name != "control-plane" {
                let own = ends
                    .iter()
                    .filter(|(topic, _, _)| w.topics.contains(topic))
                    .cloned()
                    .collect();
                w.pending.push((submitted, own));
            }
        }
    }
    Some(ends)
}

/// Captured USER_NEW and USER_END bodies, to be given a stream and a session.
#[derive(Clone)]
struct Templates {
    user_new: Vec<String>,
    user_end: Vec<String>,
}

impl Templates {
    fn new() -> Self {
        Self {
            user_new: captures::of("USER_NEW").next().unwrap().body_lines.clone(),
            user_end: captures::of("USER_END").next().unwrap().body_lines.clone(),
        }
    }

    /// The `n`th trigger: even ones open session n/2, odd ones end it.
    fn trigger(&self, n: u64, streams: &[String]) -> MistTriggerReceived {
        let session = n / 2;
        let stream = streams[(session % streams.len() as u64) as usize].clone();
        let (kind, fields) = if n.is_multiple_of(2) {
            // stream, host, session id, protocol, URL, hash, mid-session
            let mut fields = self.user_new.clone();
            fields[0] = stream;
            fields[2] = session.to_string();
            ("USER_NEW", fields)
        } else {
            // session id, stream, protocol, host, seconds, bytes up, bytes down, tags, ...
            let mut fields = self.user_end.clone();
            fields[0] = session.to_string();
            fields[1] = stream;
            ("USER_END", fields)
        };
        MistTriggerReceived {
            trigger: kind.into(),
            trigger_id: Uuid::now_v7().to_string(),
            fired_at_unix_ms: chrono::Utc::now().timestamp_millis(),
            fields,
            blocking: false,
            answer: String::new(),
        }
    }
}

/// Submits triggers at `rate` a second for `duration`, `batch` at a time,
/// with at most `in_flight` batches unacknowledged; when the balancer falls
/// behind, the rate falls with it (no backlog builds in the driver).
#[allow(clippy::too_many_arguments)]
async fn submit(
    ingress: IngressClient<tonic::transport::Channel>,
    (node_id, session_token): (String, String),
    templates: Templates,
    streams: Vec<String>,
    rate: u64,
    duration: Duration,
    batch: usize,
    in_flight: usize,
    acks: Arc<Mutex<Acks>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let period = Duration::from_secs_f64(batch as f64 / rate as f64);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let until = Instant::now() + duration;
    let mut n = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < until {
        ticks.tick().await;
        let slot = slots.clone().acquire_owned().await.unwrap();
        let request = TriggerBatch {
            node_id: node_id.clone(),
            session_token: session_token.clone(),
            triggers: (n..n + batch as u64)
                .map(|i| templates.trigger(i, &streams))
                .collect(),
        };
        n += batch as u64;
        let (mut client, acks) = (ingress.clone(), acks.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let ack = client.submit(request).await.unwrap().into_inner();
            let mut acks = acks.lock().unwrap();
            acks.triggers += ack.accepted.len() as u64;
            acks.batch_ms.push(sent.elapsed().as_millis() as u64);
            let earliest = acks.earliest_unsampled.get_or_insert(sent);
            *earliest = (*earliest).min(sent);
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
