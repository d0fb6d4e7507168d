//! Sends accepted triggers to the balancer's ingress. Triggers arriving
//! from Mist go at once. Accounting triggers wait in the journal: their
//! arrival starts a round of the journal at once, and every round sends
//! what the journal holds until the ingress acknowledges it (Kafka holds
//! it) or refuses it for good, and only then is it deleted.

use std::sync::Arc;
use std::time::Duration;

use frameworks_events::proto::v1::telemetry::MistTriggerReceived;
use metrics::counter;
use tokio::sync::{Mutex, mpsc, watch};
use tonic::transport::Channel;
use tracing::warn;

use crate::journal::{Journal, JournalEntry};
use frameworks_edge_protocol::proto::ingress_client::IngressClient;
use frameworks_edge_protocol::proto::{ConfigSeed, TriggerAck, TriggerBatch};
use frameworks_edge_protocol::triggers::TriggerKind;

/// Most triggers sent at once.
const BATCH: usize = 500;

impl From<&JournalEntry> for MistTriggerReceived {
    fn from(entry: &JournalEntry) -> Self {
        Self {
            trigger: entry.trigger.clone(),
            trigger_id: entry.id.clone(),
            fired_at_unix_ms: entry.fired_at_unix_ms,
            fields: entry.fields.clone(),
            blocking: entry.kind().is_some_and(TriggerKind::blocking),
            answer: entry.answer.clone().unwrap_or_default(),
        }
    }
}

/// Submits `entries` as the node of `seed` (the current control stream's);
/// forgets the journaled ones the ingress accepted or refused for good.
/// Answers how many were accepted.
pub async fn submit(
    client: &mut IngressClient<Channel>,
    journal: &Journal,
    seed: &ConfigSeed,
    entries: &[JournalEntry],
) -> Result<usize, tonic::Status> {
    let mut accepted = 0;
    for chunk in entries.chunks(BATCH) {
        let batch = TriggerBatch {
            node_id: seed.node_id.clone(),
            triggers: chunk.iter().map(MistTriggerReceived::from).collect(),
            session_token: seed.session_token.clone(),
        };
        let TriggerAck {
            accepted: ids,
            rejected,
        } = client.submit(batch).await?.into_inner();
        for refused in &rejected {
            counter!("frameworks_edge_triggers_refused_by_ingress_total").increment(1);
            warn!(trigger = %refused.trigger_id, reason = %refused.reason, "the ingress refused a trigger; dropped");
        }
        accepted += ids.len();
        let done: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .chain(rejected.iter().map(|r| r.trigger_id.as_str()))
            .collect();
        let journal = journal.clone();
        let done: Vec<String> = done.into_iter().map(str::to_owned).collect();
        tokio::task::spawn_blocking(move || journal.acknowledge(done.iter().map(String::as_str)))
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
    }
    counter!("frameworks_edge_triggers_forwarded_total").increment(accepted as u64);
    Ok(accepted)
}

/// Forwards for as long as the task runs: live triggers as they come, the
/// journal every `every`, whenever the control stream has a seed. The live
/// queue is shared so that a forwarder started again after a death (see
/// the binary's supervisor) carries on with it; one forwarder holds it at a
/// time. Returns once the queue's sender is gone (the daemon is stopping).
pub async fn run(
    mut client: IngressClient<Channel>,
    journal: Journal,
    seeds: watch::Receiver<Option<ConfigSeed>>,
    live: Arc<Mutex<mpsc::Receiver<JournalEntry>>>,
    every: Duration,
) {
    let mut live = live.lock().await;
    let mut rounds = tokio::time::interval(every);
    loop {
        let entries = tokio::select! {
            _ = rounds.tick() => {
                let journal = journal.clone();
                match tokio::task::spawn_blocking(move || journal.pending()).await {
                    Ok(Ok(pending)) => pending,
                    Ok(Err(error)) => {
                        warn!(%error, "could not read the trigger journal");
                        continue;
                    }
                    Err(error) => {
                        warn!(%error, "journal reader failed");
                        continue;
                    }
                }
            }
            entry = live.recv() => match entry {
                Some(first) => {
                    let mut arrived = vec![first];
                    while let Ok(more) = live.try_recv() {
                        arrived.push(more);
                    }
                    // Accounting triggers are in the journal already: they
                    // go with its next round, which starts now, so that none
                    // is sent twice (once live, once from the journal).
                    let (journaled, direct): (Vec<_>, Vec<_>) = arrived
                        .into_iter()
                        .partition(|e| e.kind().is_some_and(TriggerKind::accounting));
                    if !journaled.is_empty() {
                        rounds.reset_immediately();
                    }
                    direct
                }
                None => return,
            },
        };
        let Some(seed) = seeds.borrow().clone() else {
            continue;
        };
        if entries.is_empty() {
            continue;
        }
        if let Err(status) = submit(&mut client, &journal, &seed, &entries).await {
            counter!("frameworks_edge_ingress_errors_total").increment(1);
            // Journaled (accounting) triggers go again next round; others are lost, counted.
            warn!(%status, triggers = entries.len(), "the ingress did not take the triggers");
        }
    }
}
