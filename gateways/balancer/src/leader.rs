//! Leadership among balancer instances: one lease in Redis, taken with
//! `SET NX PX` and renewed well within its TTL by its holder only. The
//! leader runs the singleton jobs (today: the sweep of expired charges and
//! of nodes gone for good). A leader that dies stops renewing, and another
//! instance takes the lease once the TTL runs out; routing never waits on
//! leadership, so it goes on throughout.

use std::time::Duration;

use metrics::{counter, gauge};
use redis::Script;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::fleet::{FleetSettings, SharedState};

/// Renews the lease only for its holder.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Gives the lease up only for its holder.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

#[derive(Debug, Clone)]
pub struct Leadership {
    shared: SharedState,
    /// This instance's id, the lease's value while it leads.
    instance: String,
    ttl: Duration,
    leading: watch::Sender<bool>,
}

impl Leadership {
    pub fn new(shared: SharedState, instance: String, ttl: Duration) -> Self {
        Self {
            shared,
            instance,
            ttl,
            leading: watch::channel(false).0,
        }
    }

    /// Follows whether this instance leads.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// One round: take the lease if free, or renew it if held.
    async fn round(&self, leading: bool) -> Result<bool, redis::RedisError> {
        let key = self.shared.key("leader");
        let mut redis = self.shared.redis();
        if leading {
            let renewed: i64 = Script::new(RENEW)
                .key(&key)
                .arg(&self.instance)
                .arg(self.ttl_ms())
                .invoke_async(&mut redis)
                .await?;
            Ok(renewed == 1)
        } else {
            let taken: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&self.instance)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl_ms())
                .query_async(&mut redis)
                .await?;
            Ok(taken.is_some())
        }
    }

    /// Contends for the lease for as long as the task runs, a round every
    /// third of the TTL.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.ttl / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let was = *self.leading.borrow();
            let now = match self.round(was).await {
                Ok(now) => now,
                Err(error) => {
                    // Unable to renew means unable to know: step down before the TTL does.
                    counter!("frameworks_balancer_leader_errors_total").increment(1);
                    warn!(%error, "the leadership lease could not be checked");
                    false
                }
            };
            if now != was {
                info!(instance = %self.instance, leading = now, "leadership changed");
                counter!("frameworks_balancer_leader_changes_total").increment(1);
            }
            gauge!("frameworks_balancer_leader").set(if now { 1.0 } else { 0.0 });
            self.leading.send_replace(now);
        }
    }

    /// Gives the lease up (on shutdown), so another instance need not wait the TTL.
    pub async fn resign(&self) -> Result<(), redis::RedisError> {
        let _: i64 = Script::new(RELEASE)
            .key(self.shared.key("leader"))
            .arg(&self.instance)
            .invoke_async(&mut self.shared.redis())
            .await?;
        self.leading.send_replace(false);
        Ok(())
    }
}

/// The singleton jobs: while this instance leads, sweep expired charges
/// and nodes gone for good every `every`.
pub async fn singleton_jobs(
    mut leading: watch::Receiver<bool>,
    shared: SharedState,
    settings: FleetSettings,
    every: Duration,
) {
    loop {
        if !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                return;
            }
            continue;
        }
        match shared.sweep(settings.hold(), settings.gone_after()).await {
            Ok((charges, nodes)) => {
                counter!("frameworks_balancer_swept_charges_total").increment(charges as u64);
                counter!("frameworks_balancer_swept_nodes_total").increment(nodes as u64);
                if nodes > 0 {
                    info!(nodes, "forgot nodes gone for good");
                }
            }
            Err(error) => warn!(%error, "the sweep failed; next round retries"),
        }
        tokio::time::sleep(every).await;
    }
}
