//! Projector roles follow the live generation: when `frameworks replay`
//! switches queries to a new generation, the role stops writing the old one
//! and carries on in the new one from the positions the replay stored there.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use frameworks_projections::generations::{Generations, switched_from};
use tracing::info;

/// How often a role checks whether a replay switched generations.
const SWITCH_POLL: Duration = Duration::from_secs(2);

/// Runs `project(generation)` on the live generation, starting it again on
/// the new generation after each switch. `project` returns only on a fatal
/// error, which ends this too (the role's supervisor starts it again).
/// Stopping it mid-batch is safe: every projector's batch is atomic or
/// idempotent on its store.
pub async fn follow_live<G, F, Fut>(generations: &G, project: F) -> anyhow::Result<()>
where
    G: Generations,
    F: Fn(u32) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    loop {
        let generation = generations
            .ensure_live()
            .await
            .context("reading the live generation")?;
        info!(
            projection = generations.projection(),
            generation, "projecting into the live generation"
        );
        tokio::select! {
            result = project(generation) => return result,
            next = switched_from(generations, generation, SWITCH_POLL) => {
                info!(projection = generations.projection(), from = generation, to = next, "a replay switched generations");
            }
        }
    }
}
