//! The durable trigger log. An accounting trigger (USER_END, STREAM_END,
//! PUSH_END, RECORDING_END, RECORDING_SEGMENT, PUSH_INPUT_CLOSE) is written
//! here and fsynced before Mist gets its answer, and deleted only once the
//! balancer's ingress has acknowledged it. Entries are keyed by Mist's
//! trigger UUID, which Mist keeps across its retries: a trigger delivered
//! twice is logged once, and downstream counts it once by the same id.
//!
//! Storage is a redb database (one file, copy-on-write B-trees, a commit is
//! durable when it returns), written from blocking threads.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use frameworks_edge_protocol::triggers::{TriggerKind, TriggerMeta};

/// trigger UUID -> the entry, as JSON.
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");

/// One trigger as received, enough to send it again after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Mist's X-Trigger-UUID.
    pub id: String,
    /// Mist's X-Trigger.
    pub trigger: String,
    pub fired_at_unix_ms: i64,
    /// The payload's fields, in Mist's order.
    pub fields: Vec<String>,
    /// Mist's X-Name: which Mist (server id) fired it.
    pub server_name: Option<String>,
    /// What the edge answered a blocking trigger (a value it let through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl JournalEntry {
    /// The entry for a trigger, its payload scrubbed of secrets
    /// ([`scrub`](frameworks_edge_protocol::triggers::scrub)): what the journal keeps and the ingress gets.
    pub fn new(meta: &TriggerMeta, body: &str) -> Self {
        let mut fields: Vec<String> = body.split('\n').map(str::to_owned).collect();
        frameworks_edge_protocol::triggers::scrub::scrub(meta.kind, &mut fields);
        Self {
            id: meta.uuid.to_string(),
            trigger: meta.kind.name().to_owned(),
            fired_at_unix_ms: meta.unix_millis,
            fields,
            server_name: meta.server_name.clone(),
            answer: None,
        }
    }

    pub fn kind(&self) -> Option<TriggerKind> {
        self.trigger.parse().ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("opening the trigger journal at {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("the trigger journal: {0}")]
    Storage(String),
    #[error("a journal entry does not decode: {0}")]
    Corrupt(#[from] serde_json::Error),
}

fn storage(error: impl std::fmt::Display) -> JournalError {
    JournalError::Storage(error.to_string())
}

/// The journal; clones share one database.
#[derive(Clone)]
pub struct Journal {
    db: Arc<Database>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens the journal file, creating it if need be; entries left by a
    /// previous run are pending again.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let db = Database::create(path).map_err(|source| JournalError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let journal = Self { db: Arc::new(db) };
        // Make sure the table exists, so reads of a new journal find it.
        let txn = journal.db.begin_write().map_err(storage)?;
        txn.open_table(PENDING).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(journal)
    }

    /// Writes `entry` durably; false if an entry with its id is already
    /// there (Mist retried the trigger), which is kept as it was.
    pub fn append(&self, entry: &JournalEntry) -> Result<bool, JournalError> {
        let value = serde_json::to_vec(entry)?;
        let txn = self.db.begin_write().map_err(storage)?;
        let added = {
            let mut table = txn.open_table(PENDING).map_err(storage)?;
            if table.get(entry.id.as_str()).map_err(storage)?.is_some() {
                false
            } else {
                table
                    .insert(entry.id.as_str(), value.as_slice())
                    .map_err(storage)?;
                true
            }
        };
        txn.commit().map_err(storage)?;
        Ok(added)
    }

    /// Forgets entries the ingress acknowledged.
    pub fn acknowledge<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), JournalError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(PENDING).map_err(storage)?;
            for id in ids {
                table.remove(id).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Unacknowledged entries, oldest first (by Mist's firing time).
    pub fn pending(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(PENDING).map_err(storage)?;
        let mut entries = table
            .iter()
            .map_err(storage)?
            .map(|item| {
                let (_, value) = item.map_err(storage)?;
                Ok(serde_json::from_slice::<JournalEntry>(value.value())?)
            })
            .collect::<Result<Vec<_>, JournalError>>()?;
        entries.sort_by(|a, b| (a.fired_at_unix_ms, &a.id).cmp(&(b.fired_at_unix_ms, &b.id)));
        Ok(entries)
    }

    /// How many entries wait for an acknowledgement.
    pub fn len(&self) -> Result<u64, JournalError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(PENDING).map_err(storage)?;
        table.len().map_err(storage)
    }

    pub fn is_empty(&self) -> Result<bool, JournalError> {
        Ok(self.len()? == 0)
    }
}
