//! Keeps Mist's trigger set and server id what the edge daemon needs.
//! Mist's `config` replaces the whole trigger set, so the daemon always
//! writes the complete set; it checks for drift (an operator's edit, a
//! restored backup) periodically and puts its set back.

use std::time::Duration;

use metrics::counter;
use tracing::{info, warn};

use crate::mist::{MistClient, MistError, TriggerSet};
use crate::triggers::TriggerKind;

/// The triggers the daemon registers. Left out: CONN_* and LIVE_BANDWIDTH
/// (they fire for every segment request or second), and the ones it has no
/// use for.
pub const REGISTERED: [TriggerKind; 17] = [
    // Answered from the balancer's routes.
    TriggerKind::PushRewrite,
    TriggerKind::PlayRewrite,
    TriggerKind::UserNew,
    TriggerKind::StreamSource,
    TriggerKind::PushOutStart,
    // Accounting: journaled until the ingress acknowledges them.
    TriggerKind::UserEnd,
    TriggerKind::StreamEnd,
    TriggerKind::PushEnd,
    TriggerKind::RecordingEnd,
    TriggerKind::RecordingSegment,
    TriggerKind::PushInputClose,
    // Stream state and health.
    TriggerKind::StreamBuffer,
    TriggerKind::LiveTrackList,
    TriggerKind::InputAbort,
    TriggerKind::ProcessExit,
    TriggerKind::SystemStart,
    TriggerKind::SystemStop,
];

/// What Mist answers itself when the daemon cannot be reached: nothing is
/// published, pushed out or watched unchecked.
fn default_answer(kind: TriggerKind) -> &'static str {
    match kind {
        TriggerKind::PushRewrite | TriggerKind::PushOutStart => "",
        TriggerKind::UserNew => "false",
        TriggerKind::PlayRewrite | TriggerKind::StreamSource => "",
        _ => "true",
    }
}

/// The full trigger set pointing at the daemon's endpoint at `base`.
pub fn desired(base: &str) -> TriggerSet {
    REGISTERED
        .iter()
        .map(|&kind| {
            (
                kind.name().to_owned(),
                vec![kind.handler(base, default_answer(kind))],
            )
        })
        .collect()
}

/// Puts the daemon's trigger set and server id into Mist if they differ;
/// answers whether anything had to change.
pub async fn sync_once(
    mist: &MistClient,
    server_id: &str,
    desired: &TriggerSet,
) -> Result<bool, MistError> {
    let (current_id, current) = mist.config().await?;
    if current_id.as_deref() == Some(server_id) && &current == desired {
        return Ok(false);
    }
    mist.set_triggers(server_id, desired).await?;
    mist.save().await?;
    Ok(true)
}

/// Syncs now and then every `every`, for as long as the task runs.
pub async fn keep_in_sync(
    mist: &MistClient,
    server_id: &str,
    desired: &TriggerSet,
    every: Duration,
) {
    let mut first = true;
    loop {
        match sync_once(mist, server_id, desired).await {
            Ok(true) if first => info!(
                triggers = desired.len(),
                "registered the trigger set in MistServer"
            ),
            Ok(true) => {
                counter!("frameworks_edge_mist_config_repairs_total").increment(1);
                warn!("MistServer's trigger set had drifted; put it back");
            }
            Ok(false) => {}
            Err(error) => {
                counter!("frameworks_edge_mist_errors_total", "call" => "config").increment(1);
                warn!(%error, "could not check MistServer's trigger set");
            }
        }
        first = false;
        tokio::time::sleep(every).await;
    }
}
