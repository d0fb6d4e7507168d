//! Keeps Mist's configuration what the edge daemon needs: its trigger set
//! and server id, and the stream templates the balancer's config seed
//! names (the wildcard parents of platform streams, e.g. `live`). Mist's
//! `config` replaces the whole trigger set, so the daemon always writes the
//! complete set; it checks for drift (an operator's edit, a restored
//! backup) periodically and puts its configuration back. Streams it was not
//! told about are left alone.

use std::time::Duration;

use metrics::counter;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::mist::{MistClient, MistError, TriggerHandler, TriggerSet};
use frameworks_edge_protocol::proto::{ConfigSeed, StreamTemplate};
use frameworks_edge_protocol::triggers::TriggerKind;

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

/// What Mist does itself when the daemon cannot be reached: nothing is
/// published, pushed out, pulled or watched unchecked. An empty default
/// means `true` to Mist, so every blocking trigger names its failure
/// action (`onfail`), and its default is `false` besides.
fn when_unreachable(kind: TriggerKind) -> (&'static str, Option<&'static str>) {
    match kind {
        TriggerKind::PushRewrite
        | TriggerKind::PushOutStart
        | TriggerKind::PlayRewrite
        | TriggerKind::UserNew => ("false", Some("deny")),
        TriggerKind::StreamSource => ("false", Some("offline")),
        _ => ("true", None),
    }
}

/// The full trigger set pointing at the daemon's endpoint at `base`.
pub fn desired(base: &str) -> TriggerSet {
    REGISTERED
        .iter()
        .map(|&kind| {
            let (default, onfail) = when_unreachable(kind);
            (
                kind.name().to_owned(),
                vec![TriggerHandler::for_trigger(kind, base, default, onfail)],
            )
        })
        .collect()
}

/// Why the daemon will not work with a MistServer.
#[derive(Debug, thiserror::Error)]
pub enum MistCompatibility {
    #[error(
        "MistServer {version} does not offer the triggers {missing:?}; this edge needs a MistServer \
         whose trigger set includes all of {needed:?} (the FrameWorks build, fw-51c613a4 or later)"
    )]
    UnknownTriggerSet {
        version: String,
        missing: Vec<&'static str>,
        needed: Vec<&'static str>,
    },
    #[error(transparent)]
    Mist(#[from] MistError),
}

/// Reads Mist's version and trigger list; the version when Mist offers
/// every trigger the daemon registers.
pub async fn check_mist(mist: &MistClient) -> Result<String, MistCompatibility> {
    let version = mist.version().await?;
    let capabilities = mist.capabilities().await?;
    let offered = capabilities.get("triggers").and_then(Value::as_object);
    let missing: Vec<&'static str> = REGISTERED
        .iter()
        .map(|kind| kind.name())
        .filter(|name| offered.is_none_or(|offered| !offered.contains_key(*name)))
        .collect();
    if missing.is_empty() {
        Ok(version)
    } else {
        Err(MistCompatibility::UnknownTriggerSet {
            version,
            missing,
            needed: REGISTERED.iter().map(|kind| kind.name()).collect(),
        })
    }
}

/// Waits for Mist to answer, retrying with backoff (each failure logged
/// and counted), then checks it: an incompatible MistServer is an error
/// the daemon cannot go on from.
pub async fn wait_for_mist(
    mist: &MistClient,
    backoff_max: Duration,
) -> Result<String, MistCompatibility> {
    let mut backoff = Duration::from_millis(250);
    loop {
        match check_mist(mist).await {
            Err(MistCompatibility::Mist(error)) => {
                counter!("frameworks_edge_mist_errors_total", "call" => "version").increment(1);
                warn!(%error, retry_in = ?backoff, "MistServer is not answering yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(backoff_max);
            }
            checked => return checked,
        }
    }
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

/// Whether Mist's stream configuration `current` is what `template` asks for.
fn matches(template: &StreamTemplate, current: Option<&Value>) -> bool {
    let Some(current) = current else {
        return false;
    };
    let source = current.get("source").and_then(Value::as_str);
    // DVR is compared only when the template sets it: Mist's default is
    // an absent option, and an operator's own buffer is not drift.
    let dvr_matches = template.dvr_ms == 0
        || current.get("DVR").and_then(Value::as_u64) == Some(u64::from(template.dvr_ms));
    source == Some(template.source.as_str()) && dvr_matches
}

/// Writes the templates Mist lacks or holds differently; how many.
pub async fn sync_templates(
    mist: &MistClient,
    templates: &[StreamTemplate],
) -> Result<usize, MistError> {
    if templates.is_empty() {
        return Ok(0);
    }
    let streams = mist.streams().await?;
    let mut written = 0;
    for template in templates {
        if matches(template, streams.get(&template.name)) {
            continue;
        }
        let mut options = Map::new();
        if template.dvr_ms != 0 {
            options.insert("DVR".into(), json!(template.dvr_ms));
        }
        mist.add_stream(&template.name, &template.source, options)
            .await?;
        written += 1;
    }
    if written > 0 {
        mist.save().await?;
    }
    Ok(written)
}

/// Syncs now, again every `every` and whenever a new config seed arrives,
/// for as long as the task runs.
pub async fn keep_in_sync(
    mist: &MistClient,
    server_id: &str,
    desired: &TriggerSet,
    mut seeds: watch::Receiver<Option<ConfigSeed>>,
    every: Duration,
) {
    let mut first = true;
    loop {
        let templates = seeds
            .borrow_and_update()
            .as_ref()
            .map(|seed| seed.templates.clone())
            .unwrap_or_default();
        match sync_templates(mist, &templates).await {
            Ok(0) => {}
            Ok(written) => {
                counter!("frameworks_edge_mist_stream_templates_written_total")
                    .increment(written as u64);
                info!(written, "stream templates written to MistServer");
            }
            Err(error) => {
                counter!("frameworks_edge_mist_errors_total", "call" => "streams").increment(1);
                warn!(%error, "could not check MistServer's stream templates");
            }
        }
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
        // A closed seed channel (the daemon is stopping) leaves the timer.
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            Ok(()) = seeds.changed() => {}
        }
    }
}
