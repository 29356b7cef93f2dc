//! Durable storage: the sled database behind one small API.
//!
//! Trees: `journal` (one entry per group commit, see below), `devices` (registry key -> JSON
//! [`Device`]), `last_heard` (account -> i64 ms since the epoch), and, each in its own
//! submodule: `subscribers`, `users` and `sessions`, `audit`, `calls` (open and closed Calls,
//! timeline lines, the triage cursor, the reviews of closings), `conversations` (voice calls not yet ended),
//! `directory` (providers, areas, patrols, routes, patrol
//! tokens), `dispatches`, `integrations` (lock-system tokens), `incidents`, `outbox`
//! (escalation deliveries), `work_orders`, `plans` (response plans, every version) and `life`
//! (the subscribers' orders, key receipts and life with the alarm). Nothing outside this module
//! names sled, so the engine can be replaced without touching the codec or the receiver.
//!
//! # Durability
//!
//! Every public write returns `Ok` only once what it wrote is durable: on sled, after a sync
//! (sled's flush and an `fdatasync` of its log) that started after the write, shared with the
//! writers that sync at the same moment (`kv::Syncer`: N at once cost about two syncs);
//! on PostgreSQL, once its transaction is committed. No caller relies on a global flush.
//! Where one action writes several things (a change and its audit entry, an import's rows,
//! the Call writer's gathering), [`Store::together`] makes them durable with one sync.
//!
//! # Journal format
//!
//! Each group commit is one entry: key = the id of its first record (u64 big-endian), value =
//! a version byte ([`JOURNAL_FORMAT`]) followed by an LZ4 block (with its uncompressed size
//! prepended, as `lz4_flex::compress_prepend_size` writes it) of the records, each a u32
//! big-endian length and the JSON of a [`JournalRecord`] without its id. The ids of a batch
//! are consecutive, so record `i` of the batch keyed `k` has id `k + i`. One entry per commit
//! instead of one per record saves the engine most of its per-insert work on the alarm hot
//! path, and compression cuts the bytes written per alarm about threefold (JSON repeats its
//! field names).

use std::path::Path;

pub mod archive;
mod audit;
mod calls;
mod closings;
mod conversations;
pub mod copy;
mod directory;
mod dispatches;
mod incidents;
mod integrations;
pub mod journal;
mod kv;
mod life;
mod outbox;
pub mod pg;
mod plans;
mod retention;
mod reviews;
pub mod segments;
mod subscribers;
#[cfg(test)]
mod testing;
mod users;
mod work_orders;

pub use audit::{AuditFilter, AuditPage};
pub use calls::{CallChange, CallDeleted};
pub use journal::{JournalStore, NewRecord, RecentKey};
pub use life::Stored;
pub use outbox::OutboxRecord;
pub use reviews::Decided;
pub use users::{SessionRecord, UserChange, UserChanged, UserRecord};
pub use work_orders::FaultSeen;

use serde::{Deserialize, Serialize};

use crate::model::{Device, Signal};

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (often: another vakt holds it).
    #[error("cannot open the data directory {path}: {source} (is another vakt running on it?)")]
    Open {
        /// The data directory.
        path: String,
        /// The engine's error.
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("storage: {0}")]
    Engine(#[from] sled::Error),
    /// The write was made, but the sync that makes it durable failed: it is in the store
    /// and may or may not survive a crash (never acknowledge it as durable).
    #[error("storage: written, but the sync to disk failed: {0}")]
    Sync(std::io::Error),
    /// A journal commit whose first id is not the next one: refused, nothing written (two
    /// writers, or a bug).
    #[error("journal commit at id {first_id} refused: the next id is {next}")]
    JournalGap {
        /// The first id of the refused commit.
        first_id: u64,
        /// The id the journal expected.
        next: u64,
    },
    /// PostgreSQL failed (or a commit's outcome is unknown: never acknowledged).
    #[error(transparent)]
    Postgres(#[from] pg::PgError),
    /// A stored record could not be decoded.
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The journal's own log failed ([`segments`]).
    #[error(transparent)]
    Log(segments::LogError),
}

impl From<segments::LogError> for StoreError {
    fn from(e: segments::LogError) -> StoreError {
        match e {
            segments::LogError::Gap { first_id, next } => StoreError::JournalGap { first_id, next },
            e => StoreError::Log(e),
        }
    }
}

/// The directory, in a data directory, of the journal's own log ([`segments`]).
pub const LOG_DIR: &str = "journal";

/// A dedup key from its hex (as a [`JournalRecord`] keeps it).
pub(crate) fn dedup_bytes(hex_key: Option<&str>) -> Option<[u8; 16]> {
    hex_key
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
}

/// Version byte at the start of every journal entry.
pub const JOURNAL_FORMAT: u8 = 1;

/// Largest decompressed journal entry accepted when reading (a bound against a corrupt size).
const MAX_ENTRY_BYTES: usize = 256 * 1024 * 1024;

/// A journaled Signal with what the journal needs beside it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JournalRecord {
    /// The Signal.
    #[serde(flatten)]
    pub signal: Signal,
    /// The retransmission key (hex of a 128-bit digest), if the Signal takes part in dedup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<String>,
}

/// The database: sled's trees in a data directory, or the same trees and the journal on
/// PostgreSQL ([`Store::open_postgres`]).
#[derive(Clone)]
pub struct Store {
    engine: kv::Engine,
    /// The journal's own tables, on PostgreSQL.
    pg_journal: Option<pg::journal::PgJournal>,
    /// The journal's own log ([`segments`]), where the data directory has one
    /// ([`LOG_DIR`]); else the journal is the `journal` tree.
    log: Option<journal::LogJournal>,
    journal: kv::Tree,
    devices: kv::Tree,
    last_heard: kv::Tree,
    subscribers: kv::Tree,
    users: kv::Tree,
    sessions: kv::Tree,
    audit: kv::Tree,
    calls: kv::Tree,
    conversations: kv::Tree,
    directory: kv::Tree,
    dispatches: kv::Tree,
    incidents: kv::Tree,
    integrations: kv::Tree,
    outbox: kv::Tree,
    work_orders: kv::Tree,
    plans: kv::Tree,
    life: kv::Tree,
    /// Inside [`Store::together`]: the writes of this handle leave the sync to its end.
    deferred: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// How often, and how far apart, opening retries a lock that sled has not released yet.
const LOCK_ATTEMPTS: u32 = 60;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether sled could not open because its lock file is held.
fn is_lock_held(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

/// Creates `dir` (and its missing parents) readable by the owner only (0700), as the data
/// directory holds personal data; outside systemd (whose unit sets `StateDirectoryMode`) the
/// umask would otherwise leave it world-readable. An existing directory is left as it is,
/// with a warning when others can read it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory can be read by other users; `chmod 700` it"
        );
    }
    Ok(())
}

/// Registry key of a device: account, line and receiver, empty where "any".
pub fn device_key(account: &str, line: Option<&str>, receiver: Option<&str>) -> String {
    format!(
        "{account}/{}/{}",
        line.unwrap_or(""),
        receiver.unwrap_or("")
    )
}

impl Store {
    /// Opens (creating if needed) the database in `dir` with the default cache size.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, 64 * 1024 * 1024)
    }

    /// Opens (creating if needed) the database in `dir`, with a page cache of at most
    /// `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let open = |e| StoreError::Open {
            path: dir.display().to_string(),
            source: e,
        };
        create_private_dir(dir).map_err(|e| open(sled::Error::Io(e)))?;
        let config = sled::Config::new()
            .path(dir)
            // Every write of the store is synced before it returns (`Store::sync`); the
            // background flush only writes out what a failed operation left in memory.
            .flush_every_ms(Some(1000))
            .cache_capacity(cache_bytes);
        // sled releases its file lock only when its background threads have stopped, a
        // moment after the last handle is dropped, so a reopen right after a close (a
        // restart, `serve --demo` after seeding the registry) may find the lock still held.
        // Wait for it a bounded time; a lock held by another running vakt still fails.
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if is_lock_held(&e) && attempts < LOCK_ATTEMPTS => {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(e) => return Err(open(e)),
            }
        };
        let log = std::fs::File::open(dir.join("db")).map_err(|e| open(sled::Error::Io(e)))?;
        let engine = kv::Engine::sled(db, log);
        let mut store = Store::on(engine, None).map_err(|e| match e {
            StoreError::Engine(e) => open(e),
            e => e,
        })?;
        let log_dir = dir.join(LOG_DIR);
        if log_dir.is_dir() {
            let log = journal::LogJournal::open(&log_dir)?;
            // What a move into the log cut short by a crash left in the tree.
            store.drop_moved_journal(&log)?;
            store.log = Some(log);
        }
        Ok(store)
    }

    /// [`Store::open_with_cache`], and where `journal_log` is set, the journal in its own log
    /// ([`LOG_DIR`]; every later open finds it there): a new one for a data directory new to
    /// the journal, else the records of its `journal` tree moved there first
    /// ([`Store::move_journal_to_log`]; one not gap-free stays in the tree).
    pub fn open_with(dir: &Path, cache_bytes: u64, journal_log: bool) -> Result<Store, StoreError> {
        let mut store = Store::open_with_cache(dir, cache_bytes)?;
        if journal_log && store.log.is_none() {
            if store.journal.last()?.is_none() {
                store.log = Some(journal::LogJournal::open(&dir.join(LOG_DIR))?);
                tracing::info!(dir = %dir.display(), "the journal is kept in its own log");
            } else {
                tracing::info!(
                    dir = %dir.display(),
                    "[journal] engine = \"log\": moving this data directory's journal from sled's tree into its own log"
                );
                store.log = store.move_journal_to_log(dir)?;
            }
        }
        Ok(store)
    }

    /// Whether the journal is in its own log.
    pub fn journal_in_log(&self) -> bool {
        self.log.is_some()
    }

    /// The journal's own log, if it is in one.
    pub fn journal_log(&self) -> Option<&journal::LogJournal> {
        self.log.as_ref()
    }

    /// This store with its journal in `log` (tests: a log of small segments).
    #[cfg(test)]
    pub(crate) fn with_journal_log(mut self, log: journal::LogJournal) -> Store {
        self.log = Some(log);
        self
    }

    /// Opens the store on PostgreSQL at `url` (a `postgresql://` URL or `key=value` string;
    /// with several hosts and `target_session_attrs=read-write` it finds the primary), brings
    /// the schema up to date, and returns it unfenced ([`Store::set_epoch`]).
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        // The schema is brought up to date by the workers' first job; the journal connects
        // on its first use, on the committer's thread: so this may be called anywhere, an
        // async task included.
        let kv = pg::kv::PgKv::open(url)?;
        let journal = pg::journal::PgJournal::unconnected(url)?;
        Store::on(kv::Engine::Pg(kv), Some(journal))
    }

    fn on(
        engine: kv::Engine,
        pg_journal: Option<pg::journal::PgJournal>,
    ) -> Result<Store, StoreError> {
        Ok(Store {
            journal: engine.tree("journal")?,
            devices: engine.tree("devices")?,
            last_heard: engine.tree("last_heard")?,
            subscribers: engine.tree("subscribers")?,
            users: engine.tree("users")?,
            sessions: engine.tree("sessions")?,
            audit: engine.tree("audit")?,
            calls: engine.tree("calls")?,
            conversations: engine.tree("conversations")?,
            directory: engine.tree("directory")?,
            dispatches: engine.tree("dispatches")?,
            incidents: engine.tree("incidents")?,
            integrations: engine.tree("integrations")?,
            outbox: engine.tree("outbox")?,
            work_orders: engine.tree("work_orders")?,
            plans: engine.tree("plans")?,
            life: engine.tree("life")?,
            engine,
            pg_journal,
            log: None,
            deferred: false,
        })
    }

    /// Fences every later write (the journal's commits included) by the lease's `epoch`:
    /// once another node holds a later one, nothing this store writes is committed. `None`:
    /// unfenced (a single node). Nothing to fence on sled.
    pub fn set_epoch(&self, epoch: Option<i64>) {
        if let kv::Engine::Pg(kv) = &self.engine {
            kv.set_epoch(epoch);
        }
        if let Some(j) = &self.pg_journal {
            j.set_epoch(epoch);
        }
    }

    /// Whether the store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.engine, kv::Engine::Pg(_))
    }

    /// The journal of this store, for the committer and the readers.
    pub fn journal_store(&self) -> JournalStore {
        match (&self.pg_journal, &self.log) {
            (Some(pg), _) => JournalStore::from(pg.clone()),
            (None, Some(log)) => JournalStore::from(log.clone()),
            (None, None) => JournalStore::Sled(Box::new(journal::SledJournal::new(self.clone()))),
        }
    }

    /// Makes what this handle wrote durable before a domain operation returns: on sled, a
    /// sync that started after the write (sled's flush and an `fdatasync` of its log, shared
    /// with the callers that sync at the same time); on PostgreSQL every write was committed
    /// before it returned. Inside [`Store::together`], left to its end.
    fn sync(&self) -> Result<(), StoreError> {
        if self.deferred {
            return Ok(());
        }
        self.engine.sync()
    }

    /// How many syncs the store has started and finished (none on PostgreSQL), for the
    /// tests of the callers that batch their writes.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> (u64, u64) {
        self.engine.syncs()
    }

    /// Runs `f`, several domain writes of one action (a change and its audit entry, an
    /// import's rows), on a handle whose writes leave the sync to the end, then makes them
    /// all durable with one sync: returns `f`'s answer once every write it made is durable.
    /// The writes are not one transaction: each is as atomic as it is alone, and on an error
    /// those made before it stay (as they would have without `together`), durable or not.
    pub fn together<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.deferred {
            return f(self);
        }
        let inner = Store {
            deferred: true,
            ..self.clone()
        };
        let out = f(&inner)?;
        self.engine.sync()?;
        Ok(out)
    }

    // ---- journal ----

    /// The id the next journaled Signal gets (one past the last).
    pub fn next_journal_id(&self) -> Result<u64, StoreError> {
        if let kv::Engine::Pg(kv) = &self.engine {
            return kv.journal_next();
        }
        if let Some(log) = &self.log {
            return Ok(log.next_id());
        }
        Ok(self.journal_tree_next_id()?.unwrap_or(1))
    }

    /// The id after the last record in sled's `journal` tree (`None`: it is empty).
    fn journal_tree_next_id(&self) -> Result<Option<u64>, StoreError> {
        self.journal
            .last()?
            .map(|(k, v)| Ok(id_of(&k)? + split(&unpack(&v)?)?.len() as u64))
            .transpose()
    }

    /// Appends one group commit: `first_id` and the records (each the JSON of a
    /// [`JournalRecord`] without its id, as made by [`encode_record`]) in id order, in one
    /// atomic insert, durable when it returns. The journal's committer goes through
    /// [`JournalStore::commit`], which checks the ids.
    pub fn append_journal(&self, first_id: u64, records: &[Vec<u8>]) -> Result<(), StoreError> {
        if let Some(log) = &self.log {
            let records = records
                .iter()
                .map(|json| {
                    let r = decode_record(0, json)?;
                    Ok(NewRecord {
                        json: json.clone(),
                        received_at: r.signal.received_at,
                        dedup: dedup_bytes(r.dedup.as_deref()),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            return log.commit(first_id, &records);
        }
        let records: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        self.journal
            .insert(first_id.to_be_bytes(), pack_entry(&records))?;
        self.sync()
    }

    /// [`append_journal`](Store::append_journal) where no entry starts at `first_id` yet;
    /// [`StoreError::JournalGap`] (nothing written) where one does. Not synced: the
    /// journal's commit syncs, and takes the entry back if the sync fails.
    pub(crate) fn insert_journal_new(
        &self,
        first_id: u64,
        records: &[&[u8]],
    ) -> Result<(), StoreError> {
        let swapped = self.journal.compare_and_swap(
            first_id.to_be_bytes(),
            None::<&[u8]>,
            Some(pack_entry(records)),
        )?;
        match swapped {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::JournalGap {
                first_id,
                next: self.next_journal_id()?,
            }),
        }
    }

    /// Removes the journal entry that starts at `first_id` (one that was never made durable).
    pub(crate) fn remove_journal_entry(&self, first_id: u64) -> Result<(), StoreError> {
        self.journal.remove(first_id.to_be_bytes())?;
        Ok(())
    }

    /// Up to `limit` records with id greater than `after`, in id order.
    pub fn journal_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        if let kv::Engine::Pg(kv) = &self.engine {
            return kv
                .journal_after(after, limit)?
                .into_iter()
                .map(|(id, payload)| decode_record(id, &payload))
                .collect();
        }
        if let Some(log) = &self.log {
            return log.after(after, limit);
        }
        let start = after.saturating_add(1);
        // The entry holding `start` begins at or before it.
        let from = match self.journal.range(..=start.to_be_bytes()).next_back() {
            Some(item) => id_of(&item?.0)?,
            None => start,
        };
        let mut out = Vec::new();
        for item in self.journal.range(from.to_be_bytes()..) {
            let (k, v) = item?;
            let first = id_of(&k)?;
            let plain = unpack(&v)?;
            for (i, rec) in split(&plain)?.into_iter().enumerate() {
                let id = first + i as u64;
                if id < start {
                    continue;
                }
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push(decode_record(id, rec)?);
            }
        }
        Ok(out)
    }

    /// Visits records from the newest backwards until `f` returns false.
    pub fn journal_rev(&self, mut f: impl FnMut(JournalRecord) -> bool) -> Result<(), StoreError> {
        if let Some(log) = &self.log {
            return log.rev(f);
        }
        if let kv::Engine::Pg(kv) = &self.engine {
            let mut before = u64::MAX;
            loop {
                let page = kv.journal_before(before, 512)?;
                let Some((last, _)) = page.last() else {
                    return Ok(());
                };
                before = *last;
                for (id, payload) in page {
                    if !f(decode_record(id, &payload)?) {
                        return Ok(());
                    }
                }
            }
        }
        for item in self.journal.iter().rev() {
            let (k, v) = item?;
            let first = id_of(&k)?;
            let plain = unpack(&v)?;
            for (i, rec) in split(&plain)?.into_iter().enumerate().rev() {
                if !f(decode_record(first + i as u64, rec)?) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    // ---- device registry ----

    /// Every device in the registry.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut out = Vec::new();
        for item in self.devices.iter() {
            let (_, v) = item?;
            out.push(serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                tree: "devices",
                detail: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Inserts or replaces devices in one atomic batch, durable when it returns. Returns how many of
    /// them were new. A device given without a phone keeps the one it has (learned from the
    /// unit or imported before); a phone given replaces it.
    pub fn upsert_devices(&self, devices: &[Device]) -> Result<usize, StoreError> {
        let mut batch = kv::Batch::default();
        let mut new = 0;
        for d in devices {
            let k = device_key(&d.account, d.line.as_deref(), d.receiver.as_deref());
            let old = self.devices.get(k.as_bytes())?;
            if old.is_none() {
                new += 1;
            }
            // A row without a phone keeps the number the unit gave (learned, or imported
            // before): an empty cell means "not known here", not "remove it".
            let kept;
            let d = match (&d.phone, old) {
                (None, Some(old)) => match serde_json::from_slice::<Device>(&old) {
                    Ok(Device { phone: Some(p), .. }) => {
                        kept = Device {
                            phone: Some(p),
                            ..d.clone()
                        };
                        &kept
                    }
                    _ => d,
                },
                _ => d,
            };
            let v = serde_json::to_vec(d).map_err(|e| StoreError::Corrupt {
                tree: "devices",
                detail: e.to_string(),
            })?;
            batch.insert(k.as_bytes(), v);
        }
        self.devices.apply_batch(batch)?;
        self.sync()?;
        Ok(new)
    }

    /// Removes the devices stored under `keys` ([`device_key`]) from the registry in one
    /// batch, durable when it returns (a subscriber's alarm has ended: its Signals are an
    /// unknown device's again). Returns how many were there.
    pub fn remove_devices(&self, keys: &[String]) -> Result<usize, StoreError> {
        let mut batch = kv::Batch::default();
        let mut there = 0;
        for k in keys {
            if self.devices.get(k.as_bytes())?.is_some() {
                there += 1;
            }
            batch.remove(k.as_bytes());
        }
        self.devices.apply_batch(batch)?;
        self.sync()?;
        Ok(there)
    }

    /// Sets the phone of the device stored under `key` ([`device_key`]) to `phone` where it
    /// has none, atomically: a device written at the same moment (an import) is never
    /// overwritten. True when it was set; false when it has a phone or is not stored.
    pub fn fill_device_phone(&self, key: &str, phone: &str) -> Result<bool, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            tree: "devices",
            detail: e.to_string(),
        };
        loop {
            let Some(old) = self.devices.get(key.as_bytes())? else {
                return Ok(false);
            };
            let mut d: Device = serde_json::from_slice(&old).map_err(corrupt)?;
            if d.phone.as_deref().is_some_and(|p| !p.is_empty()) {
                return Ok(false);
            }
            d.phone = Some(phone.to_owned());
            let new = serde_json::to_vec(&d).map_err(corrupt)?;
            if self
                .devices
                .compare_and_swap(key.as_bytes(), Some(old), Some(new))?
                .is_ok()
            {
                self.sync()?;
                return Ok(true);
            }
        }
    }

    // ---- last heard ----

    /// Writes last-heard times (ms since the epoch) in one batch, durable when it returns
    /// (only the times that changed are given: the others are already there).
    pub fn save_last_heard(&self, entries: &[(String, i64)]) -> Result<(), StoreError> {
        let mut batch = kv::Batch::default();
        for (acct, ms) in entries {
            batch.insert(acct.as_bytes(), ms.to_be_bytes());
        }
        self.last_heard.apply_batch(batch)?;
        self.sync()?;
        Ok(())
    }

    /// Visits every stored last-heard time without holding them all; the entries `keep`
    /// refuses (accounts no longer, or never, registered) are removed. Returns how many were
    /// removed.
    pub fn load_last_heard(
        &self,
        mut keep: impl FnMut(&str, i64) -> bool,
    ) -> Result<usize, StoreError> {
        const CHUNK: usize = 10_000;
        let mut gone = kv::Batch::default();
        let (mut pending, mut removed) = (0, 0);
        for item in self.last_heard.iter() {
            let (k, v) = item?;
            let ms = <[u8; 8]>::try_from(v.as_ref()).map(i64::from_be_bytes);
            let kept = match (std::str::from_utf8(&k), ms) {
                (Ok(account), Ok(ms)) => keep(account, ms),
                _ => false,
            };
            if !kept {
                gone.remove(k);
                pending += 1;
                if pending == CHUNK {
                    self.last_heard.apply_batch(std::mem::take(&mut gone))?;
                    removed += pending;
                    pending = 0;
                }
            }
        }
        if pending > 0 {
            self.last_heard.apply_batch(gone)?;
            removed += pending;
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }

    /// Every stored last-heard time.
    pub fn last_heard(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.last_heard.iter() {
            let (k, v) = item?;
            let ms: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                tree: "last_heard",
                detail: "value is not 8 bytes".into(),
            })?;
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                i64::from_be_bytes(ms),
            ));
        }
        Ok(out)
    }
}

/// The key of a record kept by id: `prefix` + the id (u64 big-endian), so ids sort in order.
fn id_key(prefix: u8, id: u64) -> [u8; 9] {
    let mut k = [prefix; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The id in the last 8 bytes of a key (or value), if it is that long.
fn id_at_end(k: &[u8]) -> Option<u64> {
    k.len()
        .checked_sub(8)
        .and_then(|at| k.get(at..))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// The highest id of the records under `prefix` in `tree` (0 if none).
fn max_id(tree: &kv::Tree, prefix: u8) -> Result<u64, StoreError> {
    match tree.scan_prefix([prefix]).next_back() {
        Some(item) => Ok(id_at_end(&item?.0).unwrap_or(0)),
        None => Ok(0),
    }
}

/// The first record kept by id under `prefix` at or after `id` (other keys under the prefix,
/// such as the Calls' `cursor`, skipped): its id and value.
fn record_at_or_after(
    tree: &kv::Tree,
    prefix: u8,
    id: u64,
) -> Result<Option<(u64, kv::Value)>, StoreError> {
    for item in tree.range(id_key(prefix, id)..=id_key(prefix, u64::MAX)) {
        let (k, v) = item?;
        if k.len() == 9 {
            if let Some(id) = id_at_end(&k) {
                return Ok(Some((id, v)));
            }
        }
    }
    Ok(None)
}

/// The smallest id under `prefix` from which the records' times (as `time_of` reads them
/// from a value) are at or after `t`, for records whose times grow with their ids (a caller
/// that allows for some disorder asks for an earlier `t`): a bisection over the ids, a few
/// ordered reads of one record each, so a period long ago is found without reading the
/// history after it.
fn first_id_from(
    tree: &kv::Tree,
    prefix: u8,
    t: jiff::Timestamp,
    time_of: impl Fn(&[u8]) -> Result<jiff::Timestamp, StoreError>,
) -> Result<u64, StoreError> {
    let mut hi = 0;
    for item in tree
        .range(id_key(prefix, 0)..=id_key(prefix, u64::MAX))
        .rev()
    {
        let (k, _) = item?;
        if k.len() == 9 {
            hi = id_at_end(&k).unwrap_or(0).saturating_add(1);
            break;
        }
    }
    let mut lo = 0;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match record_at_or_after(tree, prefix, mid)? {
            Some((id, v)) if time_of(&v)? < t => lo = id.saturating_add(1),
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// One journal entry: the version byte and the LZ4 block of the length-prefixed records.
fn pack_entry(records: &[&[u8]]) -> Vec<u8> {
    let len = records.iter().map(|r| 4 + r.len()).sum::<usize>();
    let mut plain = Vec::with_capacity(len);
    for r in records {
        plain.extend_from_slice(&(r.len() as u32).to_be_bytes());
        plain.extend_from_slice(r);
    }
    let packed = lz4_flex::compress_prepend_size(&plain);
    let mut v = Vec::with_capacity(1 + packed.len());
    v.push(JOURNAL_FORMAT);
    v.extend_from_slice(&packed);
    v
}

fn id_of(k: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = k.try_into().map_err(|_| StoreError::Corrupt {
        tree: "journal",
        detail: "key is not 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(b))
}

/// Encodes a record for [`Store::append_journal`]. The Signal's id must still be 0 (unset):
/// the id is given by the record's place in its commit.
pub fn encode_record(r: &JournalRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Corrupt {
        tree: "journal",
        detail: e.to_string(),
    })
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        tree: "journal",
        detail,
    }
}

/// Checks the version byte of a journal entry and decompresses its records.
fn unpack(v: &[u8]) -> Result<Vec<u8>, StoreError> {
    let (&format, packed) = v
        .split_first()
        .ok_or_else(|| corrupt("empty entry".into()))?;
    if format != JOURNAL_FORMAT {
        return Err(corrupt(format!("unknown format {format}")));
    }
    let size = packed
        .first_chunk::<4>()
        .map(|b| u32::from_le_bytes(*b) as usize)
        .ok_or_else(|| corrupt("truncated size".into()))?;
    if size > MAX_ENTRY_BYTES {
        return Err(corrupt(format!("entry of {size} bytes")));
    }
    lz4_flex::decompress_size_prepended(packed).map_err(|e| corrupt(e.to_string()))
}

/// Splits decompressed records (u32 big-endian length, bytes).
fn split(mut rest: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated length".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(corrupt("truncated record".into()));
        }
        let (rec, tail) = tail.split_at(len);
        out.push(rec);
        rest = tail;
    }
    Ok(out)
}

pub(crate) fn decode_record(id: u64, v: &[u8]) -> Result<JournalRecord, StoreError> {
    let mut r: JournalRecord = serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        tree: "journal",
        detail: e.to_string(),
    })?;
    r.signal.id = id;
    Ok(r)
}

/// A new bearer token (a console session, a patrol, a lock system): the text given to its
/// holder (32 random bytes as 64 lower-case hex digits) and its SHA-256, the key it is stored
/// under. The store never holds a token, only its hash.
pub fn new_token() -> (String, [u8; 32]) {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let hash = token_hash(&token);
    (token, hash)
}

/// The SHA-256 of a token as its holder gives it (the key it is stored under).
pub fn token_hash(token: &str) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_each_backend;

    #[test]
    fn tokens() {
        let (t1, h1) = new_token();
        let (t2, _) = new_token();
        assert_eq!(t1.len(), 64);
        assert!(t1.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t1, t2);
        assert_eq!(token_hash(&t1), h1);
        assert_ne!(token_hash(&t2), h1);
    }

    fn record(seq: u16) -> JournalRecord {
        JournalRecord {
            signal: Signal {
                id: 0,
                line: Some("0".into()),
                seq: format!("{seq:04}"),
                raw: format!("frame {seq}").into_bytes(),
                ..crate::model::testing::signal()
            },
            dedup: Some(format!("{seq:032x}")),
        }
    }

    // One machine only: the entry format of the journal tree (group commits packed into one
    // LZ4 entry) is sled's, and the journal's own log is a directory of the data directory;
    // on PostgreSQL the journal is a table of its own (pg::journal), whose contract
    // tests/journal_contract.rs runs on every backend.
    #[test]
    fn journal_batches_read_back_by_id() {
        journal_reads_back(false);
    }

    #[test]
    fn journal_batches_read_back_by_id_from_the_journals_log() {
        journal_reads_back(true);
    }

    /// The Signals and dedup keys of records (what a move must keep).
    fn sigs(v: Vec<JournalRecord>) -> Vec<(Signal, Option<String>)> {
        v.into_iter().map(|r| (r.signal, r.dedup)).collect()
    }

    fn journal_reads_back(log: bool) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), 64 << 20, log).unwrap();
        assert_eq!(store.journal_in_log(), log);
        assert_eq!(dir.path().join(LOG_DIR).is_dir(), log);
        assert!(matches!(
            (store.journal_store(), log),
            (JournalStore::Log(_), true) | (JournalStore::Sled(_), false)
        ));
        assert_eq!(store.next_journal_id().unwrap(), 1);
        let enc = |seqs: std::ops::Range<u16>| {
            seqs.map(|s| encode_record(&record(s)).unwrap())
                .collect::<Vec<_>>()
        };
        store.append_journal(1, &enc(1..4)).unwrap(); // ids 1, 2, 3
        store.append_journal(4, &enc(4..5)).unwrap(); // id 4
        store.append_journal(5, &enc(5..10)).unwrap(); // ids 5..=9
        assert_eq!(store.next_journal_id().unwrap(), 10);

        let ids = |v: Vec<JournalRecord>| v.iter().map(|r| r.signal.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.journal_after(0, 100).unwrap()),
            (1..=9).collect::<Vec<_>>()
        );
        assert_eq!(ids(store.journal_after(2, 3).unwrap()), vec![3, 4, 5]);
        assert_eq!(ids(store.journal_after(6, 100).unwrap()), vec![7, 8, 9]);
        assert!(store.journal_after(9, 100).unwrap().is_empty());
        let all = store.journal_after(0, 100).unwrap();
        for r in &all {
            assert_eq!(
                r.signal.seq,
                format!("{:04}", r.signal.id),
                "id matches its record"
            );
            assert_eq!(
                r.dedup.as_deref(),
                Some(format!("{:032x}", r.signal.id).as_str())
            );
        }
        let mut back = Vec::new();
        store
            .journal_rev(|r| {
                back.push(r.signal.id);
                back.len() < 6
            })
            .unwrap();
        assert_eq!(back, vec![9, 8, 7, 6, 5, 4]);

        // Survives a reopen: a log stays a log whatever the next open asks for; sled's tree
        // stays unless the log is asked for, and is then moved into it, record for record.
        drop(store);
        let store = Store::open_with(dir.path(), 64 << 20, false).unwrap();
        assert_eq!(store.journal_in_log(), log);
        assert_eq!(
            sigs(store.journal_after(0, 100).unwrap()),
            sigs(all.clone())
        );
        drop(store);
        let store = Store::open_with(dir.path(), 64 << 20, true).unwrap();
        assert!(store.journal_in_log());
        assert!(dir.path().join(LOG_DIR).is_dir());
        assert!(!dir.path().join(journal::MOVING_DIR).exists());
        assert_eq!(store.next_journal_id().unwrap(), 10);
        assert_eq!(
            sigs(store.journal_after(0, 100).unwrap()),
            sigs(all.clone())
        );
        assert_eq!(
            store.journal_tree_next_id().unwrap(),
            None,
            "the tree is emptied"
        );
        // The moved log goes on from the next id.
        store.append_journal(10, &enc(10..12)).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.journal_in_log());
        assert_eq!(store.journal_after(0, 100).unwrap().len(), 11);
        assert_eq!(store.journal_after(9, 100).unwrap()[0].signal.seq, "0010");
    }

    #[test]
    fn a_journal_move_cut_short_starts_over_or_finishes_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<Vec<u8>> = (1..=5)
            .map(|s| encode_record(&record(s)).unwrap())
            .collect();
        let store = Store::open_with(dir.path(), 64 << 20, false).unwrap();
        store.append_journal(1, &records).unwrap();
        drop(store);
        // A crash during the copy: a half-made folder, the tree whole. The move starts over.
        std::fs::create_dir_all(dir.path().join(journal::MOVING_DIR)).unwrap();
        std::fs::write(dir.path().join(journal::MOVING_DIR).join("junk"), b"half").unwrap();
        let store = Store::open_with(dir.path(), 64 << 20, true).unwrap();
        assert!(store.journal_in_log());
        assert!(!dir.path().join(journal::MOVING_DIR).exists());
        let all = store.journal_after(0, 100).unwrap();
        assert_eq!(all.len(), 5);
        drop(store);
        // A crash after the rename, before the tree was emptied: the tree's leftovers are
        // removed at the next open, and the log is read.
        let store = Store::open_with_cache(dir.path(), 64 << 20).unwrap();
        let log = store.log.clone().unwrap();
        let bare = Store {
            log: None,
            ..store.clone()
        };
        bare.append_journal(1, &records).unwrap();
        assert_eq!(bare.journal_tree_next_id().unwrap(), Some(6));
        drop((store, bare, log));
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.journal_tree_next_id().unwrap(), None);
        assert_eq!(
            sigs(store.journal_after(0, 100).unwrap()),
            sigs(all.clone())
        );
    }

    #[test]
    fn corrupt_entries_are_errors_not_panics() {
        assert!(unpack(&[]).is_err());
        assert!(unpack(&[9]).is_err());
        assert!(unpack(&[JOURNAL_FORMAT, 0, 0]).is_err());
        assert!(
            unpack(&[JOURNAL_FORMAT, 0xff, 0xff, 0xff, 0xff, 0]).is_err(),
            "absurd size"
        );
        assert!(
            unpack(&[JOURNAL_FORMAT, 10, 0, 0, 0, 0x50]).is_err(),
            "bad block"
        );
        assert!(split(&[0, 0]).is_err());
        assert!(split(&[0, 0, 0, 5, b'{']).is_err());
        assert_eq!(split(&[]).unwrap().len(), 0);
        let mut packed = vec![JOURNAL_FORMAT];
        packed.extend(lz4_flex::compress_prepend_size(&[0, 0, 0, 2, b'{', b'}']));
        assert_eq!(split(&unpack(&packed).unwrap()).unwrap(), vec![&b"{}"[..]]);
    }

    /// Runs `op` and checks that a sync of the store started after it began and ended
    /// before it returned: what it wrote is durable when it returns (sled; on PostgreSQL
    /// every write is committed before it returns and there is nothing to count).
    fn synced<T>(store: &Store, what: &str, op: impl FnOnce() -> T) -> T {
        let (started, _) = store.engine.syncs();
        let out = op();
        let (_, done) = store.engine.syncs();
        assert!(
            done > started,
            "{what}: returned without a sync after its write"
        );
        out
    }

    /// Every kind of write of the store returns only once a sync that started after it has
    /// ended; [`Store::together`] makes several writes durable with one sync.
    #[test]
    fn every_write_is_synced_before_it_returns() {
        use crate::model::plan::ResponsePlan;
        use crate::model::review::{ReviewDecision, ReviewVerdict};
        use crate::model::{
            AuditEntry, CallState, DispatchState, FaultKind, Role, Subscriber, WorkOrderState,
        };

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let at = |s: i64| jiff::Timestamp::from_second(1_800_000_000 + s).unwrap();
        let entry = || AuditEntry {
            seq: 0,
            at: at(0),
            user: "admin".into(),
            action: "call.note".into(),
            call: None,
            subscriber: None,
            detail: String::new(),
        };
        let user = |name: &str| UserRecord {
            name: name.into(),
            role: Role::Admin,
            password_hash: "h".into(),
            created_at: at(0),
            disabled: false,
            language: None,
            tenant: None,
        };
        let session = |user: &str| SessionRecord {
            user: user.into(),
            role: Role::Admin,
            created_at: at(0),
            expires_at: at(10),
        };
        let csv = format!(
            "{}\n678,,,,,S-1,,,,pendant,luc678,pw\n",
            crate::registers::devices::CSV_HEADER
        );
        let devices = crate::registers::devices::parse_csv(csv.as_bytes()).unwrap();
        let sub = Subscriber {
            id: "S-1".into(),
            ..Subscriber::default()
        };
        let s = &store;

        // The journal (its committer's own path included), the registry, last heard.
        synced(s, "append_journal", || {
            s.append_journal(1, &[b"{}".to_vec()]).unwrap()
        });
        let record = JournalRecord {
            signal: crate::model::testing::signal(),
            dedup: None,
        };
        let new = NewRecord {
            json: encode_record(&record).unwrap(),
            received_at: at(0),
            dedup: None,
        };
        let journal = s.journal_store();
        let (started, done) = s.syncs();
        synced(s, "journal commit", || {
            journal.commit(2, &[new.clone(), new.clone(), new]).unwrap()
        });
        assert_eq!(
            s.syncs(),
            (started + 1, done + 1),
            "one sync per group commit"
        );
        synced(s, "upsert_devices", || s.upsert_devices(&devices).unwrap());
        let key = device_key("678", None, None);
        synced(s, "fill_device_phone", || {
            assert!(s.fill_device_phone(&key, "+4670").unwrap())
        });
        synced(s, "save_last_heard", || {
            s.save_last_heard(&[("678".into(), 5), ("999".into(), 6)])
                .unwrap()
        });
        synced(s, "load_last_heard", || {
            assert_eq!(s.load_last_heard(|a, _| a == "678").unwrap(), 1)
        });
        // Subscribers, users and sessions, the audit log.
        synced(s, "upsert_subscribers", || {
            s.upsert_subscribers(&[sub]).unwrap()
        });
        synced(s, "fill_subscriber_phone", || {
            assert!(s.fill_subscriber_phone("S-1", "+4670").unwrap())
        });
        synced(s, "put_user", || s.put_user(&user("admin")).unwrap());
        synced(s, "set_user", || {
            s.set_user("bert", Role::Operator, "h", at(0)).unwrap()
        });
        synced(s, "set_user_language", || {
            s.set_user_language("bert", Some(crate::model::ConsoleLanguage::Nb))
                .unwrap()
        });
        synced(s, "put_session", || {
            s.put_session(&[1; 32], &session("bert")).unwrap()
        });
        synced(s, "put_session", || {
            s.put_session(&[2; 32], &session("admin")).unwrap()
        });
        synced(s, "put_session", || {
            s.put_session(&[3; 32], &session("admin")).unwrap()
        });
        synced(s, "change_user", || {
            s.change_user("bert", UserChange::Disable).unwrap()
        });
        synced(s, "delete_session", || s.delete_session(&[2; 32]).unwrap());
        synced(s, "delete_sessions_of", || {
            s.delete_sessions_of("nobody").unwrap()
        });
        synced(s, "purge_sessions", || {
            assert_eq!(s.purge_sessions(at(20)).unwrap(), 1)
        });
        synced(s, "audit", || s.audit(entry()).unwrap());
        // Calls, reviews, conversations.
        let closed = reviews::tests::call(
            1,
            0,
            CallState::Closed,
            vec![reviews::tests::closing(60, true)],
        );
        synced(s, "save_calls", || {
            s.save_calls(&[closed], Some(2)).unwrap()
        });
        let change = CallChange {
            call: calls::tests::call(2, 0, CallState::Queued),
            first_line: 0,
        };
        synced(s, "save_call_changes", || {
            s.save_call_changes(&[change], None).unwrap()
        });
        synced(s, "append_timeline", || s.append_timeline(1, &[]).unwrap());
        let decision = ReviewDecision {
            verdict: ReviewVerdict::Accepted,
            by: "sara".into(),
            at: at(100),
            note: String::new(),
        };
        synced(s, "decide_review", || {
            assert!(matches!(
                s.decide_review(1, decision).unwrap(),
                Decided::Made(_)
            ))
        });
        synced(s, "next_conversation_id", || {
            s.next_conversation_id().unwrap()
        });
        let conversation = conversations::tests::open(1);
        synced(s, "save_open_conversation", || {
            s.save_open_conversation(&conversation).unwrap()
        });
        synced(s, "remove_open_conversation", || {
            s.remove_open_conversation(1).unwrap()
        });
        // The directory, dispatches, incidents, integrations, the outbox, work orders, plans.
        let directory = crate::model::Directory::default();
        synced(s, "save_directory", || {
            s.save_directory(&directory).unwrap()
        });
        synced(s, "set_patrol_token", || {
            s.set_patrol_token("natt-1", &[7; 32]).unwrap()
        });
        let dispatch = dispatches::tests::d(1, 0, DispatchState::Offered);
        synced(s, "save_dispatches", || {
            s.save_dispatches(&[dispatch]).unwrap()
        });
        synced(s, "reserve_patrol_seqs", || {
            s.reserve_patrol_seqs("natt-1", 3).unwrap()
        });
        synced(s, "save_incident", || {
            s.save_incident(&incidents::tests::inc(1, true)).unwrap()
        });
        synced(s, "set_integration_token", || {
            s.set_integration_token("lock", &[8; 32]).unwrap()
        });
        synced(s, "revoke_integration", || {
            assert!(s.revoke_integration("lock").unwrap())
        });
        let delivery = outbox::tests::rec(1, "telia", "incident-1");
        synced(s, "outbox_add", || {
            s.outbox_add(&[(delivery.clone(), b"{}".to_vec())]).unwrap()
        });
        let delivered = OutboxRecord {
            delivered_at: Some(at(1)),
            ..delivery
        };
        synced(s, "outbox_save", || s.outbox_save(&delivered).unwrap());
        synced(s, "outbox_prune_bodies", || {
            assert_eq!(s.outbox_prune_bodies(at(2), 10).unwrap(), 1)
        });
        let order = work_orders::tests::o(1, "678", WorkOrderState::New);
        let seen = FaultSeen {
            account: "678",
            fault: FaultKind::LowBattery,
            signal: 7,
        };
        synced(s, "save_work_orders", || {
            s.save_work_orders(&[order], Some(seen)).unwrap()
        });
        let plan = ResponsePlan::default();
        synced(s, "save_plan", || {
            s.save_plan("S-1", "admin", at(1), &plan).unwrap()
        });

        // The life tree: orders, key receipts, lives.
        synced(s, "add_order", || {
            s.add_order(|id| life::tests::order(id, "S-1", Some("ext-1")))
                .unwrap()
        });
        synced(s, "add_order without a care-system id", || {
            s.add_order(|id| life::tests::order(id, "S-1", None))
                .unwrap()
        });
        let order = s.order(1).unwrap().unwrap();
        synced(s, "save_order", || s.save_order(&order).unwrap());
        synced(s, "add_receipt", || {
            s.add_receipt(|id| life::tests::receipt(id, "S-1")).unwrap()
        });
        let receipt = s.receipt(1).unwrap().unwrap();
        synced(s, "save_receipt", || s.save_receipt(&receipt).unwrap());
        synced(s, "update_life", || {
            s.update_life::<StoreError>("S-1", |_| {
                Ok(crate::model::life::Life::ordered(
                    "S-1",
                    None,
                    at(0),
                    "sara",
                ))
            })
            .unwrap()
        });

        // Several writes of one action: one sync, after the last of them.
        let (started, done) = store.engine.syncs();
        assert_eq!(started, done, "no sync runs");
        let seq = store
            .together(|s| {
                s.upsert_subscribers(&[Subscriber {
                    id: "S-2".into(),
                    ..Subscriber::default()
                }])?;
                assert_eq!(s.engine.syncs(), (started, done), "not synced inside");
                s.audit(entry())
            })
            .unwrap();
        assert_eq!(seq, 2);
        assert_eq!(
            store.engine.syncs(),
            (started + 1, done + 1),
            "one sync for both"
        );
    }

    /// Copies a data directory as it is on disk now, while its store is open: what a crash
    /// of the process would leave.
    fn copy_on_disk(from: &Path) -> tempfile::TempDir {
        fn copy(from: &Path, to: &Path) {
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let to = to.join(entry.file_name());
                if entry.file_type().unwrap().is_dir() {
                    std::fs::create_dir_all(&to).unwrap();
                    copy(&entry.path(), &to);
                } else {
                    std::fs::copy(entry.path(), to).unwrap();
                }
            }
        }
        let copied = tempfile::tempdir().unwrap();
        copy(from, copied.path());
        copied
    }

    // What a write wrote survives a crash once it returns: on sled it is in the files on
    // disk, not only in the process (a copy of the data directory taken right after it, the
    // store still open and sled's own flush a second away, opens with the write in it); on
    // PostgreSQL it is committed (another node reads it).
    on_each_backend! {
    fn a_write_survives_a_crash_once_it_returns(b) {
        use crate::model::{AuditEntry, Role, Subscriber};

        let store = b.open();
        let after_crash = || match b {
            testing::Backend::Sled(dir) => {
                let copied = copy_on_disk(dir.path());
                let copy = Store::open(copied.path()).unwrap();
                (Some(copied), copy)
            }
            testing::Backend::Postgres(_) => (None, b.second(&store)),
        };
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let session = SessionRecord {
            user: "anna".into(),
            role: Role::Operator,
            created_at: at,
            expires_at: at,
        };
        let entry = AuditEntry {
            seq: 0,
            at,
            user: "admin".into(),
            action: "subscriber.edit".into(),
            call: None,
            subscriber: Some("S-1".into()),
            detail: String::new(),
        };

        store.put_session(&[1; 32], &session).unwrap();
        let (_dir, seen) = after_crash();
        assert_eq!(seen.session(&[1; 32]).unwrap(), Some(session), "a session");
        drop(seen);

        let sub = Subscriber {
            id: "S-1".into(),
            ..Subscriber::default()
        };
        store
            .together(|s| {
                s.upsert_subscribers(&[sub])?;
                s.audit(entry.clone())
            })
            .unwrap();
        let (_dir, seen) = after_crash();
        assert!(seen.subscriber("S-1").unwrap().is_some(), "a change");
        assert_eq!(seen.audit_latest(5).unwrap().len(), 1, "and its audit entry");
        drop(seen);

        let dispatch = dispatches::tests::d(1, 0, crate::model::DispatchState::Offered);
        store.save_dispatches(&[dispatch]).unwrap();
        let (_dir, seen) = after_crash();
        assert!(seen.dispatch(1).unwrap().is_some(), "a dispatch");
    }
    }

    /// A store fenced at epoch N whose lease another node took: every kind of write fails
    /// with the fence and writes nothing, reads still answer, and the new leader writes.
    /// PostgreSQL only: on sled there is one node and nothing to fence.
    #[test]
    fn a_store_whose_lease_was_taken_writes_nothing_and_still_reads() {
        use crate::model::plan::ResponsePlan;
        use crate::model::{AuditEntry, Role, Subscriber};
        use pg::{PgError, lease};

        let Some(b) = testing::Backend::postgres() else {
            return;
        };
        let at = |s: i64| jiff::Timestamp::from_second(1_800_000_000 + s).unwrap();
        let entry = || AuditEntry {
            seq: 0,
            at: at(0),
            user: "admin".into(),
            action: "call.note".into(),
            call: None,
            subscriber: None,
            detail: String::new(),
        };
        let user = |name: &str, role| UserRecord {
            name: name.into(),
            role,
            password_hash: "h".into(),
            created_at: at(0),
            disabled: false,
            language: None,
            tenant: None,
        };
        let store = b.open();
        store.put_user(&user("admin", Role::Admin)).unwrap();
        store.put_user(&user("anna", Role::Operator)).unwrap();
        store.put_user(&user("bert", Role::Operator)).unwrap();
        let session = SessionRecord {
            user: "anna".into(),
            role: Role::Operator,
            created_at: at(0),
            expires_at: at(3600),
        };
        store.put_session(&[1; 32], &session).unwrap();

        let rt = testing::runtime();
        let client = rt.block_on(testing::connect(b.url().unwrap()));
        let ttl = std::time::Duration::from_millis(200);
        let held = rt
            .block_on(lease::acquire(&client, "a", ttl))
            .unwrap()
            .unwrap();
        store.set_epoch(Some(held.epoch));
        assert_eq!(store.audit(entry()).unwrap(), 1, "the holder writes");
        let taken = loop {
            let long = std::time::Duration::from_secs(60);
            if let Some(l) = rt.block_on(lease::acquire(&client, "b", long)).unwrap() {
                break l;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };

        let fenced = |what: &str, r: Result<(), StoreError>| match r {
            Err(StoreError::Postgres(PgError::Fenced { ours, current })) => {
                assert_eq!((ours, current), (held.epoch, taken.epoch), "{what}")
            }
            other => panic!("{what}: not fenced: {other:?}"),
        };
        let plan = ResponsePlan::default();
        let sub = Subscriber {
            id: "S-1".into(),
            ..Subscriber::default()
        };
        let record = JournalRecord {
            signal: crate::model::testing::signal(),
            dedup: None,
        };
        let new = NewRecord {
            json: encode_record(&record).unwrap(),
            received_at: at(0),
            dedup: None,
        };
        // One write of each kind the engine has.
        fenced("insert", store.put_user(&user("cecilia", Role::Operator)));
        fenced("remove", store.delete_session(&[1; 32]));
        fenced("batch", store.upsert_subscribers(&[sub]).map(drop));
        fenced("batch", store.save_last_heard(&[("1234".into(), 5)]));
        let disable = store.change_user("anna", UserChange::Disable);
        fenced("compare-and-swap", disable.map(drop));
        let remove = store.change_user("bert", UserChange::Remove);
        fenced("compare-and-swap, removing", remove.map(drop));
        let save = store.save_plan("S-1", "admin", at(1), &plan);
        fenced("compare-and-swap, inserting", save.map(drop));
        let lang = store.set_user_language("anna", Some(crate::model::ConsoleLanguage::Nb));
        fenced("compare-and-swap", lang.map(drop));
        let seqs = store.reserve_patrol_seqs("natt-1", 3);
        fenced("fetch_and_update", seqs.map(drop));
        fenced("update_and_fetch", store.next_conversation_id().map(drop));
        fenced("transaction", store.audit(entry()).map(drop));
        fenced("journal", store.journal_store().commit(1, &[new]));

        // Nothing written; the fenced store still reads.
        let anna = store.user("anna").unwrap().unwrap();
        assert_eq!((anna.disabled, anna.language), (false, None));
        assert!(store.user("bert").unwrap().is_some());
        assert_eq!(store.user("cecilia").unwrap(), None);
        assert_eq!(store.session(&[1; 32]).unwrap(), Some(session));
        assert_eq!(store.subscriber_count().unwrap(), 0);
        assert!(store.last_heard().unwrap().is_empty());
        assert_eq!(store.plan("S-1").unwrap(), None);
        assert_eq!(store.audit_after(0, 10).unwrap().len(), 1);
        assert_eq!(store.journal_store().next_id().unwrap(), 1);

        // The new leader's counters go on from where the old leader left them.
        let leader = b.second(&store);
        leader.set_epoch(Some(taken.epoch));
        assert_eq!(leader.reserve_patrol_seqs("natt-1", 1).unwrap(), 1);
        assert_eq!(leader.next_conversation_id().unwrap(), 1);
        assert_eq!(leader.audit(entry()).unwrap(), 2);
        fenced("after the take-over", store.audit(entry()).map(drop));
    }
}
