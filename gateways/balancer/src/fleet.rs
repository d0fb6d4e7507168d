//! The fleet as routing sees it, and the state balancer instances share.
//!
//! Every balancer instance keeps a [`Snapshot`] of the routable edges,
//! rebuilt every refresh interval from three sources: the enrolled nodes
//! (control-plane projection: where each is, its public host, its mode),
//! their load and the streams live on them (live state, Redis), and when
//! each was last heard from (shared, below). Routing decisions read the
//! snapshot and never wait on I/O.
//!
//! Shared through Redis, so that any instance can answer for any edge:
//! - when each node last sent a heartbeat (whichever instance holds its
//!   control stream writes it): a node is stale after `stale_after`, and
//!   gone (never routed to) after `gone_after`;
//! - the provisional bandwidth charged for each redirect, held until the
//!   viewer shows up on the edge or the hold passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use frameworks_projections::live::LiveState;
use frameworks_projections::queries::clusters::routable_nodes;
use metrics::{counter, gauge};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tracing::{info, warn};
use uuid::Uuid;

use crate::geo::GeoPoint;
use crate::routing::{Charges, EdgeState, Fleet, Liveness};

#[derive(Debug, Clone, clap::Args)]
pub struct FleetSettings {
    /// Seconds without a heartbeat after which an edge is stale (used only
    /// when no live edge can take a viewer).
    #[arg(
        long = "stale-after-seconds",
        env = "FRAMEWORKS_BALANCER_STALE_AFTER_SECONDS",
        default_value_t = 90,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub stale_after_seconds: u64,

    /// Seconds without a heartbeat after which an edge is removed from routing.
    #[arg(
        long = "gone-after-seconds",
        env = "FRAMEWORKS_BALANCER_GONE_AFTER_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=604_800)
    )]
    pub gone_after_seconds: u64,

    /// Milliseconds between rebuilds of the routing snapshot.
    #[arg(
        long = "fleet-refresh-ms",
        env = "FRAMEWORKS_BALANCER_FLEET_REFRESH_MS",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(50..=60_000)
    )]
    pub refresh_ms: u64,

    /// Seconds a redirect's provisional bandwidth is held when the viewer
    /// does not show up on the edge.
    #[arg(
        long = "charge-hold-seconds",
        env = "FRAMEWORKS_BALANCER_CHARGE_HOLD_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub charge_hold_seconds: u64,

    /// The bandwidth one viewer is expected to draw, in kbit/s.
    #[arg(
        long = "viewer-estimate-kbps",
        env = "FRAMEWORKS_BALANCER_VIEWER_ESTIMATE_KBPS",
        default_value_t = 4_000
    )]
    pub viewer_estimate_kbps: u64,
}

impl FleetSettings {
    pub fn stale_after(&self) -> Duration {
        Duration::from_secs(self.stale_after_seconds)
    }
    pub fn gone_after(&self) -> Duration {
        Duration::from_secs(self.gone_after_seconds.max(self.stale_after_seconds))
    }
    pub fn hold(&self) -> Duration {
        Duration::from_secs(self.charge_hold_seconds)
    }
}

/// The state balancer instances share, under `<base>:balancer:*`.
#[derive(Clone)]
pub struct SharedState {
    redis: ConnectionManager,
    base: String,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// One provisional charge as stored in its node's set: `<key>|<bps>`,
/// scored by when it was made.
fn charge_member(key: &str, bps: u64) -> String {
    format!("{key}|{bps}")
}

fn parse_charge(member: &str) -> Option<(&str, u64)> {
    let (key, bps) = member.rsplit_once('|')?;
    Some((key, bps.parse().ok()?))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl SharedState {
    pub fn new(redis: ConnectionManager, base: &str) -> Self {
        Self {
            redis,
            base: base.to_owned(),
        }
    }

    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}:balancer:{name}", self.base)
    }

    /// The sorted set of one node's charges: a node's own set keeps a
    /// release (on every viewer's arrival) as small as that node's pending
    /// redirects.
    pub fn charges_key(&self, node: &str) -> String {
        self.key(&format!("charges:{node}"))
    }

    pub(crate) fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Records a heartbeat from `node`, now.
    pub async fn heard(&self, node: &str) -> Result<(), redis::RedisError> {
        self.redis
            .clone()
            .hset(self.key("seen"), node, now_ms())
            .await
    }

    /// When each node was last heard from (unix ms).
    pub async fn seen(&self) -> Result<HashMap<String, i64>, redis::RedisError> {
        self.redis.clone().hgetall(self.key("seen")).await
    }

    /// Claims `stream`'s ingest for `node` for `hold`: the node that holds
    /// it already, if another one does. A claim closes the window between a
    /// push accepted on one edge and the live state showing the stream
    /// there, in which a second encoder on another edge would be let in
    /// too; the same node claiming again renews its claim.
    pub async fn claim_ingest(
        &self,
        stream: Uuid,
        node: &str,
        hold: Duration,
    ) -> Result<Option<String>, redis::RedisError> {
        const CLAIM: &str = r"
            local holder = redis.call('GET', KEYS[1])
            if holder and holder ~= ARGV[1] then return holder end
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            return false";
        let held: Option<String> = redis::Script::new(CLAIM)
            .key(self.key(&format!("ingest:{stream}")))
            .arg(node)
            .arg(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(held)
    }

    /// Gives up `node`'s claim on `stream`'s ingest (its ingest ended), so
    /// that the next encoder may publish at once from any edge.
    pub async fn release_ingest(&self, stream: Uuid, node: &str) -> Result<(), redis::RedisError> {
        const RELEASE: &str = r"
            if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
            return 0";
        let _: i64 = redis::Script::new(RELEASE)
            .key(self.key(&format!("ingest:{stream}")))
            .arg(node)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Marks that `stream`'s ingest on `node`, just started, is to be
    /// recorded once Mist has buffered it (Mist refuses to record a stream
    /// that is not ready yet); the mark lapses after `hold`.
    pub async fn mark_recording_due(
        &self,
        stream: Uuid,
        node: &str,
        hold: Duration,
    ) -> Result<(), redis::RedisError> {
        let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1);
        self.redis
            .clone()
            .pset_ex(self.key(&format!("recording:{stream}:{node}")), 1, hold_ms)
            .await
    }

    /// Takes the mark [`Self::mark_recording_due`] left: true for the one
    /// caller (of every balancer instance) that finds it.
    pub async fn take_recording_due(
        &self,
        stream: Uuid,
        node: &str,
    ) -> Result<bool, redis::RedisError> {
        let removed: u64 = self
            .redis
            .clone()
            .del(self.key(&format!("recording:{stream}:{node}")))
            .await?;
        Ok(removed == 1)
    }

    /// Holds `bps` on `node` for the redirect `key`.
    pub async fn charge(&self, node: &str, key: &str, bps: u64) -> Result<(), redis::RedisError> {
        self.redis
            .clone()
            .zadd(self.charges_key(node), charge_member(key, bps), now_ms())
            .await
    }

    /// Releases the charges on `node` whose key starts with `key_prefix`
    /// (the viewer showed up); how many.
    pub async fn release(&self, node: &str, key_prefix: &str) -> Result<usize, redis::RedisError> {
        let mut redis = self.redis.clone();
        let members: Vec<String> = redis.zrange(self.charges_key(node), 0, -1).await?;
        let matching: Vec<&String> = members
            .iter()
            .filter(|m| parse_charge(m).is_some_and(|(key, _)| key.starts_with(key_prefix)))
            .collect();
        if matching.is_empty() {
            return Ok(0);
        }
        redis.zrem(self.charges_key(node), &matching).await
    }

    /// The charges on `nodes` made within `hold`: (node, key, bps, age).
    async fn charges(
        &self,
        nodes: &[String],
        hold: Duration,
    ) -> Result<Vec<(String, String, u64, Duration)>, redis::RedisError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let since = now - i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.zrangebyscore_withscores(self.charges_key(node), since, "+inf");
        }
        let per_node: Vec<Vec<(String, i64)>> = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(nodes
            .iter()
            .zip(per_node)
            .flat_map(|(node, members)| {
                members.into_iter().filter_map(move |(member, at)| {
                    let (key, bps) = parse_charge(&member)?;
                    let age = Duration::from_millis(u64::try_from(now - at).unwrap_or(0));
                    Some((node.clone(), key.to_owned(), bps, age))
                })
            })
            .collect())
    }

    /// The leader's sweep: drops charges past their hold and nodes gone
    /// for good; (charges, nodes) dropped.
    pub async fn sweep(
        &self,
        hold: Duration,
        gone_after: Duration,
    ) -> Result<(usize, usize), redis::RedisError> {
        let now = now_ms();
        let mut redis = self.redis.clone();
        let expired = now - i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        // Charges are only ever made on nodes that were heard from.
        let seen = self.seen().await?;
        let mut charges = 0;
        if !seen.is_empty() {
            let mut pipe = redis::pipe();
            for node in seen.keys() {
                pipe.zrembyscore(self.charges_key(node), "-inf", format!("({expired}"));
            }
            let dropped: Vec<usize> = pipe.query_async(&mut redis).await?;
            charges = dropped.iter().sum();
        }
        // Kept for twice the removal delay, so every instance sees the node gone first.
        let forgotten_after = i64::try_from(gone_after.as_millis() * 2).unwrap_or(i64::MAX);
        let old: Vec<&String> = seen
            .iter()
            .filter(|(_, at)| now - **at > forgotten_after)
            .map(|(node, _)| node)
            .collect();
        let nodes = old.len();
        if !old.is_empty() {
            let keys: Vec<String> = old.iter().map(|node| self.charges_key(node)).collect();
            let _: usize = redis.del(&keys).await?;
            let _: usize = redis.hdel(self.key("seen"), &old).await?;
        }
        Ok((charges, nodes))
    }
}

/// The routing snapshot: the fleet, and when it was built.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub fleet: Fleet,
    pub built: Option<Instant>,
}

fn field<T: std::str::FromStr>(
    fields: &std::collections::BTreeMap<String, String>,
    name: &str,
) -> Option<T> {
    fields.get(name)?.parse().ok()
}

/// The fleet view one instance routes with: the snapshot, and the charges
/// (what Redis held at the last refresh, plus this instance's since).
#[derive(Debug)]
pub struct FleetView {
    snapshot: RwLock<Arc<Snapshot>>,
    charges: Mutex<Charges>,
    settings: FleetSettings,
}

impl FleetView {
    pub fn new(settings: FleetSettings) -> Arc<Self> {
        Arc::new(Self {
            snapshot: RwLock::default(),
            charges: Mutex::new(Charges::new(settings.hold())),
            settings,
        })
    }

    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` with the charges ledger locked.
    pub fn with_charges<T>(&self, f: impl FnOnce(&mut Charges) -> T) -> T {
        f(&mut self.charges.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Installs a snapshot (the refresher does; tests and benchmarks may).
    pub fn install(&self, fleet: Fleet) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(Snapshot {
            fleet,
            built: Some(Instant::now()),
        });
    }

    /// Rebuilds the snapshot and the charges from their sources, once.
    pub async fn refresh(
        &self,
        pool: &PgPool,
        live: &LiveState,
        shared: &SharedState,
    ) -> Result<(), RefreshError> {
        let nodes = routable_nodes(pool).await?;
        let seen = shared.seen().await?;
        let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
        let loads = live.node_loads(&ids).await?;
        let charges = shared.charges(&ids, self.settings.hold()).await?;
        let now = now_ms();
        let (stale_ms, gone_ms) = (
            i64::try_from(self.settings.stale_after().as_millis()).unwrap_or(i64::MAX),
            i64::try_from(self.settings.gone_after().as_millis()).unwrap_or(i64::MAX),
        );
        let mut counts = [0usize; 3];
        let edges: Vec<EdgeState> = nodes
            .iter()
            .zip(ids)
            .zip(loads)
            .map(|((node, id), (load, _viewers))| {
                let liveness = match seen.get(&id) {
                    Some(at) if now - at <= stale_ms => Liveness::Live,
                    Some(at) if now - at <= gone_ms => Liveness::Stale,
                    _ => Liveness::Gone,
                };
                counts[liveness as usize] += 1;
                EdgeState {
                    node_id: id,
                    cluster_id: node.cluster_id.to_string(),
                    public_host: node.public_host.clone(),
                    location: GeoPoint::new(node.latitude, node.longitude),
                    // An edge whose load is unknown is not chosen (NaN is refused).
                    cpu_percent: field(&load, "cpu_percent").unwrap_or(f64::NAN),
                    memory_used_bytes: field(&load, "memory_used_bytes").unwrap_or(0),
                    memory_total_bytes: field(&load, "memory_total_bytes").unwrap_or(0),
                    bandwidth_up_bps: field(&load, "bandwidth_up_bps").unwrap_or(0),
                    bandwidth_limit_bps: field(&load, "bandwidth_limit_bps").unwrap_or(0),
                    liveness,
                    accepts_viewers: node.operational_mode == "NORMAL",
                }
            })
            .collect();
        gauge!("frameworks_balancer_edges", "liveness" => "live").set(counts[0] as f64);
        gauge!("frameworks_balancer_edges", "liveness" => "stale").set(counts[1] as f64);
        gauge!("frameworks_balancer_edges", "liveness" => "gone").set(counts[2] as f64);
        let mut fleet = Fleet::new(edges);
        for (stream, node) in live.stream_nodes(now / 1000).await? {
            fleet.add_presence(&stream, &node);
        }
        let mut ledger = Charges::new(self.settings.hold());
        let at = Instant::now();
        for (node, key, bps, age) in charges {
            ledger.charge(&node, key, bps, at.checked_sub(age).unwrap_or(at));
        }
        *self.charges.lock().unwrap_or_else(PoisonError::into_inner) = ledger;
        self.install(fleet);
        Ok(())
    }

    /// Refreshes every interval for as long as the task runs.
    pub async fn keep_fresh(self: Arc<Self>, pool: PgPool, live: LiveState, shared: SharedState) {
        let mut ticks = tokio::time::interval(Duration::from_millis(self.settings.refresh_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Said once per outage (a fresh installation has no read models for
        // a while), and again when it is over; the counter counts every round.
        let mut failing = false;
        loop {
            ticks.tick().await;
            match self.refresh(&pool, &live, &shared).await {
                Ok(()) if failing => {
                    failing = false;
                    info!("the routing snapshot is being rebuilt again");
                }
                Ok(()) => {}
                Err(error) => {
                    counter!("frameworks_balancer_fleet_refresh_failures_total").increment(1);
                    if !failing {
                        failing = true;
                        warn!(%error, "the routing snapshot could not be rebuilt; routing on the last one");
                    }
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("reading the enrolled nodes")]
    Postgres(#[from] sqlx::Error),
    #[error("reading Redis")]
    Redis(#[from] redis::RedisError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_round_trip_through_their_member_form() {
        // A key may hold the separator itself: the rate is after the last one.
        let member = charge_member("stream/10.0.0.1/a|b", 4_000_000);
        assert_eq!(
            parse_charge(&member),
            Some(("stream/10.0.0.1/a|b", 4_000_000))
        );
        assert_eq!(parse_charge("junk"), None);
        assert_eq!(parse_charge("key|not-a-rate"), None);
    }
}
