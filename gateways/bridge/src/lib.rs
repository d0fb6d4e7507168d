//! The GraphQL bridge: the platform's public API, compatible with the
//! published `livepeer-frameworks` client (0.4.x).
//!
//! - [`http`]: the routes (POST /graphql, /auth/*, /metrics), the
//!   authentication gate and the per-caller rate limit;
//! - [`graphiql`]: GraphiQL and its assets, served without any outside host;
//! - [`auth`]: session tokens, API tokens, scopes, sign-up and sign-in;
//! - [`feed`]: the Kafka reader that feeds every subscription;
//! - [`graphql`]: the schema: queries read the control-plane read model,
//!   mutations run commands and answer once the read model holds them.

pub mod auth;
mod cache;
pub mod feed;
pub mod graphiql;
pub mod graphql;
pub mod http;
pub mod observability;
mod rate_limit;
pub mod settings;
pub mod state;

pub use settings::BridgeSettings;
pub use state::BridgeState;

use std::sync::Arc;
use std::time::Duration;

use frameworks_balancer::placement::Placer;
use frameworks_commands::{CommandBus, EventStore, SecretBox};

use crate::auth::{Authenticator, SessionKeys};
use crate::feed::SubscriptionHub;
use crate::rate_limit::RateLimiter;
use frameworks_projections::analytics::reader::AnalyticsReader;
use frameworks_projections::live::LiveState;
use frameworks_projections::read_your_writes::ProjectionWatcher;

/// The shared state of a bridge over `store`, configured by `settings`,
/// with subscriptions routed by `subscriptions`, mutations waiting on
/// `projections`, and live state and analytics read from `live` and `analytics`.
pub fn state(
    store: &EventStore,
    settings: &BridgeSettings,
    subscriptions: SubscriptionHub,
    projections: ProjectionWatcher,
    live: LiveState,
    analytics: AnalyticsReader,
    placer: Placer,
) -> Result<Arc<BridgeState>, frameworks_commands::secrets::KeyRingError> {
    let secrets = SecretBox::from_spec(&settings.data_keys)?;
    let pool = store.pool().clone();
    Ok(Arc::new(BridgeState {
        bus: CommandBus::new(store.clone(), secrets.clone()),
        auth: Authenticator::new(
            pool.clone(),
            SessionKeys::new(&settings.session_secret, settings.session_ttl_seconds),
        ),
        secrets,
        limiter: RateLimiter::new(settings.rate_limit_per_minute),
        read_your_writes: Duration::from_millis(settings.read_your_writes_timeout_ms),
        feed: subscriptions,
        projections,
        live,
        analytics,
        origins: Default::default(),
        stream_cache: Default::default(),
        edges: settings.edges.clone(),
        placer,
        pool,
    }))
}
