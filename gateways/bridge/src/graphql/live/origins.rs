//! Which cluster and region a node belongs to, cached briefly: every
//! event of a busy stream would otherwise ask the database.

use std::time::Duration;

use frameworks_projections::queries::clusters::cluster_of_node;
use sqlx::PgPool;
use uuid::Uuid;

use super::Origin;
use crate::cache::TtlCache;

#[derive(Debug, Clone)]
pub struct Origins(TtlCache<String, Origin>);

impl Default for Origins {
    fn default() -> Self {
        Self(TtlCache::new(Duration::from_secs(30)))
    }
}

impl Origins {
    pub(super) async fn of(&self, pool: &PgPool, node: &str) -> Origin {
        if let Some(origin) = self.0.get(&node.to_owned()) {
            return origin;
        }
        let found: Option<(Uuid, String)> = match node.parse::<Uuid>() {
            Ok(id) => match cluster_of_node(pool, id).await {
                Ok(found) => found,
                Err(error) => {
                    // Not cached: the next event asks again.
                    tracing::warn!(%error, node, "could not look up the node's cluster");
                    return Origin::default();
                }
            },
            Err(_) => None,
        };
        let origin = found.map_or_else(Origin::default, |(cluster, region)| Origin {
            cluster_id: cluster.to_string(),
            region,
        });
        self.0.insert(node.to_owned(), origin.clone());
        origin
    }
}
