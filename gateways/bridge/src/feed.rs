//! The event feed behind subscriptions: the bridge's one Kafka reader
//! ([`EventFeed`]), routed by a [`SubscriptionHub`] to the subscriptions that
//! asked for each event. A subscription that falls behind skips what it
//! missed and counts it (`frameworks_bridge_subscription_lagged_total`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use frameworks_events::kafka::KafkaSettings;
use frameworks_events::{Event, Topic};
use metrics::counter;
use rdkafka::error::KafkaError;
use tokio::sync::broadcast;
use uuid::Uuid;

pub use frameworks_events::kafka::EventFeed;

/// The topics subscriptions are fed from (and, for clusters, the routing
/// directory's cache is dropped by).
pub const TOPICS: [Topic; 4] = [
    Topic::Tenants,
    Topic::Streams,
    Topic::Infrastructure,
    Topic::StreamTelemetry,
];

/// The bridge's reader of [`TOPICS`], from their current end, and the task
/// that reads them (the caller's to run).
pub fn open(
    kafka: &KafkaSettings,
    capacity: usize,
) -> Result<(EventFeed, impl Future<Output = ()> + Send + 'static), KafkaError> {
    EventFeed::open(kafka, "frameworks-bridge-feed", &TOPICS, capacity)
}

/// How often the router drops channels whose subscriptions have all ended.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// What one subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interest {
    /// Every event of a tenant.
    Tenant(Uuid),
    /// A tenant's events about one aggregate (a stream), by its id.
    Aggregate(Uuid, String),
}

/// Routes the feed's events to the subscriptions interested in them: one
/// broadcast channel per [`Interest`] that has a subscriber.
///
/// Handing every event to every subscription made each of them wake up and
/// filter each event: 10,000 subscriptions at 1,000 events/s would be ten
/// million wake-ups a second. Routed, an event costs two map look-ups and
/// wakes only the subscriptions that will send it.
#[derive(Debug, Clone)]
pub struct SubscriptionHub {
    channels: Arc<Mutex<HashMap<Interest, broadcast::Sender<Arc<Event>>>>>,
    tenant_capacity: usize,
    aggregate_capacity: usize,
}

impl SubscriptionHub {
    /// A hub whose channels hold `tenant_capacity` events for a tenant-wide
    /// subscription and `aggregate_capacity` for one aggregate's (a slower
    /// subscription skips what its channel no longer holds).
    pub fn new(tenant_capacity: usize, aggregate_capacity: usize) -> Self {
        Self {
            channels: Arc::default(),
            tenant_capacity: tenant_capacity.max(1),
            aggregate_capacity: aggregate_capacity.max(1),
        }
    }

    /// A receiver of the events `interest` covers, from now on.
    pub fn subscribe(&self, interest: Interest) -> broadcast::Receiver<Arc<Event>> {
        let capacity = match interest {
            Interest::Tenant(_) => self.tenant_capacity,
            Interest::Aggregate(..) => self.aggregate_capacity,
        };
        self.lock()
            .entry(interest)
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe()
    }

    /// Hands `event` to the subscriptions of its tenant and of its aggregate;
    /// a channel whose subscriptions have all ended is dropped.
    pub fn dispatch(&self, event: &Arc<Event>) {
        let Some(tenant) = event.tenant_id else {
            return;
        };
        let mut channels = self.lock();
        for interest in [
            Interest::Tenant(tenant),
            Interest::Aggregate(tenant, event.aggregate_id.clone()),
        ] {
            if let Some(sender) = channels.get(&interest)
                && sender.send(event.clone()).is_err()
            {
                channels.remove(&interest);
            }
        }
    }

    /// Routes what `feed` reads until the feed closes, and every 30 s drops
    /// the channels whose subscriptions have all ended (a channel no event
    /// reaches is not found empty by [`Self::dispatch`]).
    pub async fn route(self, mut feed: broadcast::Receiver<Arc<Event>>) {
        let mut sweeps = tokio::time::interval(SWEEP_EVERY);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = feed.recv() => match received {
                    Ok(event) => self.dispatch(&event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        counter!("frameworks_bridge_subscription_lagged_total").increment(missed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = sweeps.tick() => self.sweep(),
            }
        }
    }

    /// Drops the channels that have no subscription left.
    pub fn sweep(&self) {
        self.lock().retain(|_, sender| sender.receiver_count() > 0);
    }

    /// Channels with at least one subscription (or not yet found empty).
    pub fn channels(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Interest, broadcast::Sender<Arc<Event>>>> {
        // The map stays consistent whatever panicked while holding it.
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frameworks_events::proto::v1::telemetry::TrackListUpdated;

    fn event(tenant: Uuid, stream: &str) -> Arc<Event> {
        let mut event = Event::new(stream, TrackListUpdated::default());
        event.tenant_id = Some(tenant);
        Arc::new(event)
    }

    #[test]
    fn an_event_reaches_its_tenants_and_its_streams_subscriptions_only() {
        let hub = SubscriptionHub::new(8, 8);
        let (tenant, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut whole_tenant = hub.subscribe(Interest::Tenant(tenant));
        let mut stream_a = hub.subscribe(Interest::Aggregate(tenant, "a".into()));
        let mut stream_b = hub.subscribe(Interest::Aggregate(tenant, "b".into()));
        let mut other_tenant = hub.subscribe(Interest::Tenant(other));

        hub.dispatch(&event(tenant, "a"));

        assert_eq!(whole_tenant.try_recv().unwrap().aggregate_id, "a");
        assert_eq!(stream_a.try_recv().unwrap().aggregate_id, "a");
        assert!(stream_b.try_recv().is_err());
        assert!(other_tenant.try_recv().is_err());
    }

    #[test]
    fn a_channel_is_dropped_once_its_subscriptions_end() {
        let hub = SubscriptionHub::new(8, 8);
        let tenant = Uuid::now_v7();
        let kept = hub.subscribe(Interest::Aggregate(tenant, "a".into()));
        drop(hub.subscribe(Interest::Aggregate(tenant, "b".into())));
        assert_eq!(hub.channels(), 2);

        hub.dispatch(&event(tenant, "a"));
        hub.dispatch(&event(tenant, "b"));

        assert_eq!(hub.channels(), 1, "b had no subscription left");
        drop(kept);
    }

    #[test]
    fn a_sweep_drops_channels_no_event_reached() {
        let hub = SubscriptionHub::new(8, 8);
        let tenant = Uuid::now_v7();
        let kept = hub.subscribe(Interest::Tenant(tenant));
        drop(hub.subscribe(Interest::Aggregate(tenant, "quiet".into())));
        hub.sweep();
        assert_eq!(hub.channels(), 1);
        drop(kept);
        hub.sweep();
        assert_eq!(hub.channels(), 0);
    }

    #[test]
    fn events_without_a_tenant_reach_no_one() {
        let hub = SubscriptionHub::new(8, 8);
        let tenant = Uuid::now_v7();
        let mut subscription = hub.subscribe(Interest::Tenant(tenant));
        let mut event = (*event(tenant, "a")).clone();
        event.tenant_id = None;
        hub.dispatch(&Arc::new(event));
        assert!(subscription.try_recv().is_err());
    }
}
