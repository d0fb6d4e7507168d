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
        let looked_up = self
            .0
            .get_or_load(&node.to_owned(), async || {
                let found = match node.parse::<Uuid>() {
                    Ok(id) => cluster_of_node(pool, id).await?,
                    Err(_) => None,
                };
                Ok::<_, sqlx::Error>(found.map_or_else(Origin::default, |(cluster, region)| {
                    Origin {
                        cluster_id: cluster.to_string(),
                        region,
                    }
                }))
            })
            .await;
        looked_up.unwrap_or_else(|error| {
            // Not cached: the next event asks again.
            tracing::warn!(%error, node, "could not look up the node's cluster");
            Origin::default()
        })
    }
}
