//! The journal's storage, one interface over the backends: [`JournalStore`].
//!
//! Four domain operations, nothing of an engine crosses them: [`JournalStore::commit`] makes
//! one group commit durable in one call (its records and its first id; all of them or none),
//! [`JournalStore::next_id`] says which id the next commit takes, [`JournalStore::after`]
//! reads the records after an id (bounded; triage's reader) and [`JournalStore::recent`] the
//! newest records back to a time (bounded; the dedup window at start). "Durable" is the
//! backend's: for sled, the append and then one sync (sled's flush and an `fdatasync` of its
//! log, shared with the store's other writers that sync at the same moment); for PostgreSQL, one transaction committed on the primary and, as the
//! cluster's `synchronous_standby_names` asks, on the synchronous standby, fenced by the
//! lease's epoch when one is set ([`PgJournal`]).
//!
//! An enum of backends rather than a trait object: the backends are a closed set that the
//! binary chooses from at start (sled, PostgreSQL, and later the segment log of issue 20), a
//! handle must be cloned between the committer thread and the readers, which an enum of
//! cheap handles does without `Arc<dyn ...>`, and a new backend is a new variant that the
//! compiler then asks for at every operation.
//!
//! Every operation blocks its thread (as sled's always did): call it from the committer's
//! thread or a blocking task, never on an async runtime's worker.
//!
//! Ids are consecutive across commits and restarts: a commit whose first id is not the next
//! id is refused and writes nothing ([`StoreError::JournalGap`]), so two writers (a stale
//! leader, a bug) can never interleave or overwrite records.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pg::journal::PgJournal;
use super::{JournalRecord, Store, StoreError};

/// One record of a group commit, encoded ([`super::encode_record`]), with the two fields the
/// backends index beside it.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// The JSON of the [`JournalRecord`] without its id.
    pub json: Vec<u8>,
    /// When the Signal was received (the dedup window is read back by it).
    pub received_at: jiff::Timestamp,
    /// The retransmission key, if the Signal takes part in dedup.
    pub dedup: Option<[u8; 16]>,
}

/// The journal's storage: the embedded store, or PostgreSQL.
#[derive(Clone, Debug)]
pub enum JournalStore {
    /// The sled database (the default; one machine).
    Sled(Box<SledJournal>),
    /// PostgreSQL with a synchronous standby (several nodes, one leader).
    Postgres(PgJournal),
}

impl From<Store> for JournalStore {
    fn from(store: Store) -> JournalStore {
        store.journal_store()
    }
}

impl From<PgJournal> for JournalStore {
    fn from(pg: PgJournal) -> JournalStore {
        JournalStore::Postgres(pg)
    }
}

impl JournalStore {
    /// The id the next commit's first record gets (one past the last; 1 when empty).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        match self {
            JournalStore::Sled(s) => s.next_id(),
            JournalStore::Postgres(p) => p.next_id(),
        }
    }

    /// Makes `records` durable as ids `first_id..`, all of them or none. `first_id` must be
    /// [`next_id`](JournalStore::next_id) ([`StoreError::JournalGap`] otherwise, nothing
    /// written). With no records it makes sure that what earlier commits reported is durable.
    ///
    /// An error means: do not acknowledge any of them. Usually nothing was written; after a
    /// PostgreSQL commit whose answer was lost ([`super::pg::PgError::CommitUnknown`]) they
    /// may be there after all, which [`next_id`](JournalStore::next_id) and
    /// [`after`](JournalStore::after) tell once the database answers again.
    pub fn commit(&self, first_id: u64, records: &[NewRecord]) -> Result<(), StoreError> {
        match self {
            JournalStore::Sled(s) => s.commit(first_id, records),
            JournalStore::Postgres(p) => p.commit(first_id, records),
        }
    }

    /// Up to `limit` records with an id greater than `after`, in id order.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>, StoreError> {
        match self {
            JournalStore::Sled(s) => s.store.journal_after(after, limit),
            JournalStore::Postgres(p) => p.after(after, limit),
        }
    }

    /// The records received at or after `since`, newest first, at most `limit` of them.
    pub fn recent(
        &self,
        since: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        match self {
            JournalStore::Sled(s) => {
                let mut out = Vec::new();
                s.store.journal_rev(|r| {
                    if r.signal.received_at < since || out.len() >= limit {
                        return false;
                    }
                    out.push(r);
                    true
                })?;
                Ok(out)
            }
            JournalStore::Postgres(p) => p.recent(since, limit),
        }
    }
}

/// The journal in the sled store: one entry per group commit ([`Store::append_journal`]),
/// made durable by one sync of the store per commit.
#[derive(Clone, Debug)]
pub struct SledJournal {
    store: Store,
    /// The next id as this handle last wrote or read it (0: not known yet), so that the check
    /// of consecutive ids costs no read of the journal on the hot path. Shared by the clones.
    next: Arc<AtomicU64>,
}

impl SledJournal {
    pub(super) fn new(store: Store) -> SledJournal {
        SledJournal {
            store,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        let next = self.store.next_journal_id()?;
        self.next.store(next, Ordering::Release);
        Ok(next)
    }

    fn commit(&self, first_id: u64, records: &[NewRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return self.store.sync();
        }
        let next = match self.next.load(Ordering::Acquire) {
            0 => self.next_id()?,
            n => n,
        };
        if first_id != next {
            return Err(StoreError::JournalGap { first_id, next });
        }
        let json: Vec<&[u8]> = records.iter().map(|r| r.json.as_slice()).collect();
        self.store.insert_journal_new(first_id, &json)?;
        match self.store.sync() {
            Ok(()) => {
                self.next
                    .store(first_id + records.len() as u64, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                // Not durable, so not in the journal: taken out again (a later flush would
                // otherwise persist records nobody acknowledged), and the next id read afresh.
                self.next.store(0, Ordering::Release);
                if let Err(undo) = self.store.remove_journal_entry(first_id) {
                    tracing::error!(error = %undo, first_id, "cannot take back an unflushed journal entry");
                }
                Err(e)
            }
        }
    }
}
