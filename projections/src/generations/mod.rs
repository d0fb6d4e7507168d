//! Generations: every projection is built into a generation of its own
//! (a PostgreSQL schema, a Redis key prefix, a ClickHouse database), and
//! queries read the live one. `frameworks replay` builds the next generation
//! beside the live one from the beginning of the log, while queries go on
//! reading the old one, and switches queries over in one atomic step once the
//! new one has caught up. Running projectors notice the switch and carry on
//! in the new generation, from the positions the replay stored there.
//!
//! Each store keeps its own pointer, so that its readers need nothing else:
//! - [`postgres`]: `projection_generations` and views in schema `read_models`,
//!   re-pointed in the same transaction that marks the generation live;
//! - [`redis`]: a hash `<prefix>:generations` changed by one Lua script;
//! - [`clickhouse`]: a `generations` table in the base database, switched by
//!   inserting one row.

pub mod clickhouse;
pub mod postgres;
pub mod redis;

use std::time::Duration;

/// Where a projection keeps its generations, and which one queries read.
///
/// A generation is `building` (being replayed, invisible to queries), `live`
/// (read by queries and kept current by the projector role) or `retired`.
#[allow(async_fn_in_trait)]
pub trait Generations {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The projection's name, as operators type it.
    fn projection(&self) -> &'static str;

    /// The generation queries read, if any.
    async fn live(&self) -> Result<Option<u32>, Self::Error>;

    /// A replay in progress, if any.
    async fn building(&self) -> Result<Option<u32>, Self::Error>;

    /// Prepares a new, empty generation numbered after every existing one.
    async fn begin(&self) -> Result<u32, Self::Error>;

    /// Makes `generation` (building) live and retires the previous live one.
    async fn switch(&self, generation: u32) -> Result<(), Self::Error>;

    /// Retired generations, oldest first.
    async fn retired(&self) -> Result<Vec<u32>, Self::Error>;

    /// Deletes a generation that is not live, with its data.
    async fn discard(&self, generation: u32) -> Result<(), Self::Error>;

    /// Per partition, the next offset the generation will apply.
    async fn applied(&self, generation: u32) -> Result<Vec<(String, i32, i64)>, Self::Error>;

    /// Whether `generation` was built with the table definitions of this
    /// build. Stores without a schema always answer yes.
    async fn schema_current(&self, _generation: u32) -> Result<bool, Self::Error> {
        Ok(true)
    }

    /// Makes `generation` live again if the register lost every live
    /// generation (a wiped Redis), answering whether it did. The role that
    /// projects into `generation` calls it; stores that cannot lose their
    /// register keep the default, which does nothing.
    async fn reclaim(&self, _generation: u32) -> Result<bool, Self::Error> {
        Ok(false)
    }

    /// The live generation, creating and switching to generation 1 on a
    /// fresh installation (which the projector then fills from the log).
    async fn ensure_live(&self) -> Result<u32, Self::Error> {
        if let Some(live) = self.live().await? {
            return Ok(live);
        }
        let first = match self.building().await? {
            Some(building) => building,
            None => self.begin().await?,
        };
        self.switch(first).await?;
        Ok(first)
    }
}

/// The consumer group of a generation: each generation has its own, so a
/// replay never takes partitions from the live projector.
pub fn group_of(base: &str, generation: u32) -> String {
    format!("{base}.g{generation}")
}

/// Resolves once the live generation is no longer `current` (polling every
/// `every`); errors while polling are logged and polled again. A register
/// that lost its live generation (a wiped Redis) gets `current` back.
pub async fn switched_from<G: Generations>(generations: &G, current: u32, every: Duration) -> u32 {
    loop {
        tokio::time::sleep(every).await;
        match generations.live().await {
            Ok(Some(live)) if live != current => return live,
            Ok(Some(_)) => {}
            Ok(None) => match generations.reclaim(current).await {
                Ok(true) => tracing::warn!(
                    projection = generations.projection(),
                    generation = current,
                    "the register of generations was lost (a wiped store?); made this one live again"
                ),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(projection = generations.projection(), %error, "could not restore the live generation");
                }
            },
            Err(error) => {
                tracing::warn!(projection = generations.projection(), %error, "could not read the live generation");
            }
        }
    }
}
