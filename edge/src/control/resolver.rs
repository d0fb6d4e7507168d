//! The balancer as the blocking answers' [`Resolver`]: a miss is one
//! `Ingress/Resolve` call, made with the session token of the current
//! control stream. Without a stream there is nobody to ask, and the answer
//! falls back at once instead of spending Mist's budget on a dead balancer.

use metrics::counter;
use tokio::sync::watch;
use tonic::transport::Channel;
use tracing::debug;

use crate::answers::{Resolved, Resolver};
use frameworks_edge_protocol::proto::ingress_client::IngressClient;
use frameworks_edge_protocol::proto::{ConfigSeed, ResolveRequest, resolve_request};
use frameworks_edge_protocol::triggers::TriggerKind;

#[derive(Debug, Clone)]
pub struct BalancerResolver {
    client: IngressClient<Channel>,
    seeds: watch::Receiver<Option<ConfigSeed>>,
}

impl BalancerResolver {
    /// `channel` reaches the balancer; `seeds` follows the control stream.
    pub fn new(channel: Channel, seeds: watch::Receiver<Option<ConfigSeed>>) -> Self {
        Self {
            client: IngressClient::new(channel),
            seeds,
        }
    }
}

impl Resolver for BalancerResolver {
    async fn resolve(&self, kind: TriggerKind, subject: &str) -> Option<Resolved> {
        let subject = match kind {
            TriggerKind::PushRewrite => resolve_request::Subject::KeySha256(subject.to_owned()),
            TriggerKind::PlayRewrite | TriggerKind::UserNew => {
                resolve_request::Subject::PlaybackId(subject.to_owned())
            }
            _ => return None,
        };
        let (node_id, session_token) = {
            let seed = self.seeds.borrow();
            let seed = seed.as_ref()?;
            (seed.node_id.clone(), seed.session_token.clone())
        };
        let request = ResolveRequest {
            node_id,
            session_token,
            subject: Some(subject),
        };
        match self.client.clone().resolve(request).await {
            Ok(route) => Resolved::from_route(route.into_inner()),
            Err(status) => {
                counter!("frameworks_edge_resolve_failures_total").increment(1);
                debug!(%status, "the balancer could not resolve");
                None
            }
        }
    }
}
