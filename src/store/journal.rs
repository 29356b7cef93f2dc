//! The journal's storage, one interface over the backends: [`JournalStore`].
//!
//! Four domain operations, nothing of an engine crosses them: [`JournalStore::commit`] makes
//! one group commit durable in one call (its records and its first id; all of them or none),
//! [`JournalStore::next_id`] says which id the next commit takes, [`JournalStore::after`]
//! reads the records after an id (bounded; triage's reader) and [`JournalStore::recent`] the
//! newest records back to a time (bounded; the dedup window at start). "Durable" is the
//! backend's: for sled, the append and then one sync (sled's flush and an `fdatasync` of its
//! log, shared with the store's other writers that sync at the same moment); for the journal's
//! own log ([`LogJournal`]), one write and one `fdatasync` of its segment; for PostgreSQL, one transaction committed on the primary and, as the
//! cluster's `synchronous_standby_names` asks, on the synchronous standby, fenced by the
//! lease's epoch when one is set ([`PgJournal`]).
//!
//! An enum of backends rather than a trait object: the backends are a closed set that the
//! binary chooses from at start (sled, the journal's own log, PostgreSQL), a
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::pg::journal::PgJournal;
use super::segments::{Entry, LogOptions, LogRecord, Sealed, SegmentLog};
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

/// A retransmission key of the journal with its record ([`JournalStore::recent_keys`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecentKey {
    /// The key.
    pub key: [u8; 16],
    /// The record's id.
    pub id: u64,
    /// When the record was received.
    pub at: jiff::Timestamp,
}

/// The journal's storage: the embedded store, the journal's own log, or PostgreSQL.
#[derive(Clone, Debug)]
pub enum JournalStore {
    /// The sled database (the default; one machine).
    Sled(Box<SledJournal>),
    /// The journal's own segment log (one machine; [`super::segments`]).
    Log(LogJournal),
    /// PostgreSQL with a synchronous standby (several nodes, one leader).
    Postgres(PgJournal),
}

impl From<Store> for JournalStore {
    fn from(store: Store) -> JournalStore {
        store.journal_store()
    }
}

impl From<LogJournal> for JournalStore {
    fn from(log: LogJournal) -> JournalStore {
        JournalStore::Log(log)
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
            JournalStore::Log(l) => Ok(l.next_id()),
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
            JournalStore::Log(l) => l.commit(first_id, records),
            JournalStore::Postgres(p) => p.commit(first_id, records),
        }
    }

    /// Up to `limit` records with an id greater than `after`, in id order.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>, StoreError> {
        match self {
            JournalStore::Sled(s) => s.store.journal_after(after, limit),
            JournalStore::Log(l) => l.after(after, limit),
            JournalStore::Postgres(p) => p.after(after, limit),
        }
    }

    /// The retransmission keys of the records received at or after `since`, newest first,
    /// of at most `limit` records, each with its record's id and time received: the dedup
    /// window at start. From the journal's own log without decoding a payload (the key and
    /// the time are in each record's head), so it costs a read, not a record's memory each.
    pub fn recent_keys(
        &self,
        since: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<RecentKey>, StoreError> {
        if let JournalStore::Log(l) = self {
            let since_ms = since.as_millisecond();
            let mut out = Vec::new();
            let mut seen = 0usize;
            l.raw_rev(|r| {
                if r.received_ms < since_ms || seen >= limit {
                    return false;
                }
                seen += 1;
                if let (Some(key), Ok(at)) =
                    (r.dedup, jiff::Timestamp::from_millisecond(r.received_ms))
                {
                    out.push(RecentKey { key, id: r.id, at });
                }
                true
            })?;
            return Ok(out);
        }
        Ok(self
            .recent(since, limit)?
            .into_iter()
            .filter_map(|r| {
                Some(RecentKey {
                    key: super::dedup_bytes(r.dedup.as_deref())?,
                    id: r.signal.id,
                    at: r.signal.received_at,
                })
            })
            .collect())
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
            JournalStore::Log(l) => l.recent(since, limit),
            JournalStore::Postgres(p) => p.recent(since, limit),
        }
    }
}

/// The journal in its own segment log ([`super::segments`]): a commit is one write and one
/// `fdatasync`. The committer appends through one handle of the log; the readers (triage,
/// the dedup window at start, exports) read through another, so that a read never holds a
/// commit back, and only up to the last durable commit.
#[derive(Clone, Debug)]
pub struct LogJournal {
    writer: Arc<Mutex<SegmentLog>>,
    reader: Arc<Mutex<SegmentLog>>,
    /// The id after the last durable commit (what readers may see).
    durable: Arc<AtomicU64>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LogJournal {
    /// Opens (or makes) the log in `dir`, cutting a torn commit off its end.
    pub fn open(dir: &std::path::Path) -> Result<LogJournal, StoreError> {
        LogJournal::open_with(dir, LogOptions::default())
    }

    /// [`LogJournal::open`] with the log's options.
    pub fn open_with(dir: &std::path::Path, opts: LogOptions) -> Result<LogJournal, StoreError> {
        let (log, _) = SegmentLog::open(dir, opts)?;
        let reader = SegmentLog::open_read(dir, opts)?;
        let durable = log.next_id();
        Ok(LogJournal {
            writer: Arc::new(Mutex::new(log)),
            reader: Arc::new(Mutex::new(reader)),
            durable: Arc::new(AtomicU64::new(durable)),
        })
    }

    pub(crate) fn next_id(&self) -> u64 {
        locked(&self.writer).next_id()
    }

    pub(crate) fn commit(&self, first_id: u64, records: &[NewRecord]) -> Result<(), StoreError> {
        let entries: Vec<Entry<'_>> = records
            .iter()
            .map(|r| Entry {
                received_ms: r.received_at.as_millisecond(),
                dedup: r.dedup,
                payload: &r.json,
            })
            .collect();
        let mut log = locked(&self.writer);
        log.append(first_id, &entries)?;
        self.durable.store(log.next_id(), Ordering::Release);
        Ok(())
    }

    /// Up to `limit` durable records after `after` as the log keeps them (their payloads not
    /// decoded: a copy of the journal).
    pub(crate) fn raw_after(&self, after: u64, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
        let durable = self.durable.load(Ordering::Acquire);
        if after.saturating_add(1) >= durable {
            return Ok(Vec::new());
        }
        let mut reader = locked(&self.reader);
        let mut got = reader.after(after, limit)?;
        // Short of what is durable: the writer began a segment this handle has not listed.
        let next = got.last().map_or(after.saturating_add(1), |r| r.id + 1);
        if got.len() < limit && next < durable {
            reader.refresh()?;
            got.extend(reader.after(next - 1, limit - got.len())?);
        }
        got.retain(|r| r.id < durable);
        Ok(got)
    }

    /// The first ids of the segments no longer written to, oldest first, as the directory
    /// lists them now ([`SegmentLog::sealed_ids`]).
    pub fn sealed_ids(&self) -> Result<Vec<u64>, StoreError> {
        let mut reader = locked(&self.reader);
        reader.refresh()?;
        Ok(reader.sealed_ids())
    }

    /// The sealed segment beginning at `first_id` ([`SegmentLog::sealed`]).
    pub fn sealed(&self, first_id: u64) -> Result<Option<Sealed>, StoreError> {
        Ok(locked(&self.reader).sealed(first_id)?)
    }

    /// Removes the sealed segment beginning at `first_id` (never the newest): its records
    /// are gone from every reader. False if there is no such sealed segment.
    pub fn remove_segment(&self, first_id: u64) -> Result<bool, StoreError> {
        let removed = locked(&self.reader).remove(first_id)?;
        if removed {
            // Only the map: the writer never reads a sealed segment.
            locked(&self.writer).forget(first_id);
        }
        Ok(removed)
    }

    fn decoded(r: LogRecord) -> Result<JournalRecord, StoreError> {
        super::decode_record(r.id, &r.payload)
    }

    pub(crate) fn after(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>, StoreError> {
        self.raw_after(after, limit)?
            .into_iter()
            .map(LogJournal::decoded)
            .collect()
    }

    /// Visits the durable records as the log keeps them (payloads not decoded) from the
    /// newest backwards until `f` returns false.
    fn raw_rev(&self, mut f: impl FnMut(LogRecord) -> bool) -> Result<(), StoreError> {
        let durable = self.durable.load(Ordering::Acquire);
        let mut reader = locked(&self.reader);
        reader.refresh()?;
        reader.rev(|r| r.id >= durable || f(r))?;
        Ok(())
    }

    /// Visits the durable records from the newest backwards until `f` returns false.
    pub(crate) fn rev(&self, mut f: impl FnMut(JournalRecord) -> bool) -> Result<(), StoreError> {
        let mut failed = None;
        self.raw_rev(|r| match LogJournal::decoded(r) {
            Ok(rec) => f(rec),
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// The records received at or after `since`, newest first, at most `limit` (as sled's
    /// journal reads them: it stops at the first older one).
    fn recent(
        &self,
        since: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        let mut out = Vec::new();
        self.rev(|r| {
            if r.signal.received_at < since || out.len() >= limit {
                return false;
            }
            out.push(r);
            true
        })?;
        Ok(out)
    }
}

/// Where a journal is moved from sled's tree while the move is under way (inside the data
/// directory; renamed to [`super::LOG_DIR`] when whole).
pub(super) const MOVING_DIR: &str = "journal.moving";

/// Records copied per commit while moving a journal to its own log.
const MOVE_CHUNK: usize = 4096;

fn moved_io(doing: &'static str, dir: &std::path::Path, source: std::io::Error) -> StoreError {
    StoreError::Log(super::segments::LogError::Io {
        doing,
        path: dir.display().to_string(),
        source,
    })
}

impl Store {
    /// Moves the journal from sled's tree into its own log in `dir` ([`super::LOG_DIR`]):
    /// every record copied, in id order, with its time and dedup key, into
    /// `journal.moving/`, checked to end at the tree's last id, synced, renamed into place,
    /// and only then removed from the tree. A crash before the rename leaves the tree whole
    /// (the next open starts over); one after it leaves a log that holds everything, and
    /// the tree's leftovers are removed at that open ([`Store::drop_moved_journal`]). A
    /// journal that does not run gap-free from id 1 stays in the tree (`Ok(None)`, said in
    /// the log).
    pub(super) fn move_journal_to_log(
        &self,
        dir: &std::path::Path,
    ) -> Result<Option<LogJournal>, StoreError> {
        let moving = dir.join(MOVING_DIR);
        if moving.exists() {
            std::fs::remove_dir_all(&moving)
                .map_err(|e| moved_io("removing a journal move cut short", dir, e))?;
        }
        let started = std::time::Instant::now();
        let log = LogJournal::open(&moving)?;
        // Copied as stored (the JSON is not encoded again), MOVE_CHUNK records a commit.
        let mut batch: Vec<NewRecord> = Vec::new();
        let moved = self.each_tree_commit(|first_id, records| {
            let next = log.next_id() + batch.len() as u64;
            if first_id != next {
                return Err(StoreError::JournalGap { first_id, next });
            }
            batch.extend(records);
            if batch.len() >= MOVE_CHUNK {
                log.commit(log.next_id(), &batch)?;
                batch.clear();
            }
            Ok(())
        });
        let moved = moved.and_then(|()| log.commit(log.next_id(), &batch));
        if let Err(StoreError::JournalGap { first_id, next }) = moved {
            drop(log);
            let _ = std::fs::remove_dir_all(&moving);
            tracing::warn!(
                expected = next,
                found = first_id,
                "the journal in sled's tree does not run gap-free; it stays there"
            );
            return Ok(None);
        }
        moved?;
        let copied = log.next_id();
        drop(log);
        let want = self.journal_tree_next_id()?.unwrap_or(1);
        if copied != want {
            let _ = std::fs::remove_dir_all(&moving);
            tracing::warn!(
                copied_to = copied - 1,
                last = want - 1,
                "the journal's move into its own log did not reach the tree's end; it stays in sled's tree"
            );
            return Ok(None);
        }
        std::fs::rename(&moving, dir.join(super::LOG_DIR))
            .map_err(|e| moved_io("renaming the moved journal into place", dir, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| moved_io("syncing the data directory", dir, e))?;
        let log = LogJournal::open(&dir.join(super::LOG_DIR))?;
        self.drop_moved_journal(&log)?;
        tracing::info!(
            records = copied - 1,
            secs = started.elapsed().as_secs_f64(),
            "the journal was moved from sled's tree into its own log"
        );
        Ok(Some(log))
    }

    /// Visits the group commits of sled's `journal` tree in id order, each as its first id
    /// and its records as the other backends take them (the JSON as stored, with its time
    /// received and dedup key), until `f` fails.
    pub(super) fn each_tree_commit<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(u64, Vec<NewRecord>) -> Result<(), E>,
    ) -> Result<(), E> {
        for item in self.journal.iter() {
            let (k, v) = item?;
            let first_id = super::id_of(&k)?;
            let plain = super::unpack(&v)?;
            let records = super::split(&plain)?
                .into_iter()
                .map(|json| {
                    let record: JournalRecord =
                        serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
                            tree: "journal",
                            detail: e.to_string(),
                        })?;
                    Ok(NewRecord {
                        json: json.to_vec(),
                        received_at: record.signal.received_at,
                        dedup: super::dedup_bytes(record.dedup.as_deref()),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            f(first_id, records)?;
        }
        Ok(())
    }

    /// Removes the journal's entries from sled's tree once `log` holds every one of them
    /// (after a move, or at the open after a move cut short by a crash); nothing if it does
    /// not.
    pub(super) fn drop_moved_journal(&self, log: &LogJournal) -> Result<(), StoreError> {
        let Some(tree_next) = self.journal_tree_next_id()? else {
            return Ok(());
        };
        if log.next_id() < tree_next {
            return Ok(());
        }
        loop {
            let keys: Vec<_> = self
                .journal
                .iter()
                .take(10_000)
                .map(|item| item.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                break;
            }
            let mut batch = super::kv::Batch::default();
            for k in &keys {
                batch.remove(k);
            }
            self.journal.apply_batch(batch)?;
        }
        self.engine.sync()
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
