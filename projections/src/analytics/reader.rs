//! Reading the analytics: a client scoped to the live generation's
//! database. A replay switches generations under running readers, so the
//! database is looked up again once its answer is a few seconds old.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clickhouse::Client;

use super::ClickHouseSettings;
use crate::generations::Generations;
use crate::generations::clickhouse::ClickHouseGenerations;

/// How long a looked-up live generation is trusted.
const GENERATION_TTL: Duration = Duration::from_secs(5);

/// The live generation as last looked up, and when.
type LookedUp = Option<(Instant, Option<u32>)>;

#[derive(Clone)]
pub struct AnalyticsReader {
    client: Client,
    generations: ClickHouseGenerations,
    base: String,
    live: Arc<Mutex<LookedUp>>,
}

impl std::fmt::Debug for AnalyticsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsReader")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AnalyticsReader {
    pub async fn open(settings: &ClickHouseSettings) -> Result<Self, clickhouse::error::Error> {
        Ok(Self {
            client: settings.client(),
            generations: ClickHouseGenerations::open(settings).await?,
            base: settings.database.clone(),
            live: Arc::default(),
        })
    }

    /// A client on the live generation's database; `None` before the
    /// analytics projector has made one live.
    pub async fn live(&self) -> Result<Option<Client>, clickhouse::error::Error> {
        let cached = *self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = match cached {
            Some((at, generation)) if at.elapsed() < GENERATION_TTL => generation,
            _ => {
                let generation = self.generations.live().await?;
                *self.live.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), generation));
                generation
            }
        };
        Ok(generation.map(|g| {
            self.client
                .clone()
                .with_database(ClickHouseGenerations::database(&self.base, g))
        }))
    }
}
