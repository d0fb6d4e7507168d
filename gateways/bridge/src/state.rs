//! What every request handler shares.

use std::time::Duration;

use frameworks_balancer::placement::Placer;
use frameworks_commands::{CommandBus, SecretBox};
use frameworks_events::AggregateType;
use frameworks_projections::analytics::reader::AnalyticsReader;
use frameworks_projections::control_plane;
use frameworks_projections::live::LiveState;
use frameworks_projections::read_your_writes::{ProjectionWatcher, WaitError};
use sqlx::PgPool;

use crate::auth::Authenticator;
use crate::feed::SubscriptionHub;
use crate::graphql::live::Origins;
use crate::graphql::streams::StreamCache;
use crate::rate_limit::RateLimiter;
use crate::settings::EdgeSettings;

#[derive(Debug)]
pub struct BridgeState {
    pub pool: PgPool,
    pub bus: CommandBus,
    pub auth: Authenticator,
    pub secrets: SecretBox,
    pub limiter: RateLimiter,
    pub read_your_writes: Duration,
    /// One LISTEN connection for every mutation's read-your-writes wait.
    pub projections: ProjectionWatcher,
    /// Kafka's events, routed to subscriptions.
    pub feed: SubscriptionHub,
    pub origins: Origins,
    /// Live state in Redis: node load and health.
    pub live: LiveState,
    /// The analytics in ClickHouse: node metrics.
    pub analytics: AnalyticsReader,
    pub stream_cache: StreamCache,
    /// What new edge clusters and bootstrapping edges are told.
    pub edges: EdgeSettings,
    /// Viewer and encoder routing, as the balancer decides it.
    pub placer: Placer,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionWaitError {
    #[error("reading the aggregate's version")]
    Store(#[from] frameworks_commands::store::StoreError),
    #[error(transparent)]
    Wait(#[from] WaitError),
}

impl BridgeState {
    /// Waits until the control-plane read model holds everything written to
    /// the aggregate so far, so that a mutation can answer from it.
    pub async fn wait_until_projected(
        &self,
        aggregate: AggregateType,
        id: &str,
    ) -> Result<(), ProjectionWaitError> {
        let version = self.bus.store().version(aggregate, id).await?;
        let started = std::time::Instant::now();
        self.projections
            .wait_for(
                control_plane::NAME,
                aggregate,
                id,
                version,
                self.read_your_writes,
            )
            .await?;
        metrics::histogram!("frameworks_bridge_read_your_writes_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }
}
