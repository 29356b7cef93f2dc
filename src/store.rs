//! Durable storage: the sled database behind one small API.
//!
//! Trees: `journal` (u64 big-endian id -> JSON [`JournalRecord`]), `devices` (registry key ->
//! JSON [`Device`]), `last_heard` (account -> i64 ms since the epoch). Nothing outside this
//! module names sled, so the engine can be replaced without touching the codec or the receiver.

use std::path::Path;

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
    /// A read, write or flush failed.
    #[error("storage: {0}")]
    Engine(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// What was wrong.
        detail: String,
    },
}

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

/// The database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// sled's log file, opened by us only to make its flush a full barrier (see [`Store::flush`]).
    log: std::sync::Arc<std::fs::File>,
    journal: sled::Tree,
    devices: sled::Tree,
    last_heard: sled::Tree,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
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
        let db = sled::Config::new()
            .path(dir)
            // vakt flushes explicitly at every group commit; the background flush is only a
            // backstop for the registry and last-heard trees.
            .flush_every_ms(Some(1000))
            .cache_capacity(cache_bytes)
            .open()
            .map_err(open)?;
        let journal = db.open_tree("journal").map_err(open)?;
        let devices = db.open_tree("devices").map_err(open)?;
        let last_heard = db.open_tree("last_heard").map_err(open)?;
        let log = std::fs::File::open(dir.join("db")).map_err(|e| open(sled::Error::Io(e)))?;
        Ok(Store {
            db,
            log: std::sync::Arc::new(log),
            journal,
            devices,
            last_heard,
        })
    }

    /// Makes everything written so far durable.
    ///
    /// sled 0.34's flush writes its log and waits with `sync_file_range` on Linux, which puts
    /// the bytes on the way to the disk (enough to survive a killed process) but neither flushes
    /// the drive's write cache nor the file's size. An `fdatasync` of the same file then makes
    /// the commit survive a power loss as well.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.log.sync_data().map_err(sled::Error::Io)?;
        Ok(())
    }

    // ---- journal ----

    /// The id the next journaled Signal gets (one past the last).
    pub fn next_journal_id(&self) -> Result<u64, StoreError> {
        Ok(match self.journal.last()? {
            Some((k, _)) => id_of(&k)? + 1,
            None => 1,
        })
    }

    /// Appends records (already numbered) in one atomic batch. Not durable until [`flush`].
    ///
    /// [`flush`]: Store::flush
    pub fn append_journal(&self, records: &[JournalRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for r in records {
            let v = serde_json::to_vec(r).map_err(|e| StoreError::Corrupt {
                tree: "journal",
                detail: e.to_string(),
            })?;
            batch.insert(&r.signal.id.to_be_bytes(), v);
        }
        self.journal.apply_batch(batch)?;
        Ok(())
    }

    /// Up to `limit` records with id greater than `after`, in id order.
    pub fn journal_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        let start = after.saturating_add(1);
        let mut out = Vec::new();
        for item in self.journal.range(start.to_be_bytes()..).take(limit) {
            let (_, v) = item?;
            out.push(decode_record(&v)?);
        }
        Ok(out)
    }

    /// Visits records from the newest backwards until `f` returns false.
    pub fn journal_rev(&self, mut f: impl FnMut(JournalRecord) -> bool) -> Result<(), StoreError> {
        for item in self.journal.iter().rev() {
            let (_, v) = item?;
            if !f(decode_record(&v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Number of journaled records.
    pub fn journal_len(&self) -> usize {
        self.journal.len()
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

    /// Inserts or replaces devices in one atomic batch, then flushes. Returns how many of
    /// them were new.
    pub fn upsert_devices(&self, devices: &[Device]) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut new = 0;
        for d in devices {
            let k = device_key(&d.account, d.line.as_deref(), d.receiver.as_deref());
            if !self.devices.contains_key(k.as_bytes())? {
                new += 1;
            }
            let v = serde_json::to_vec(d).map_err(|e| StoreError::Corrupt {
                tree: "devices",
                detail: e.to_string(),
            })?;
            batch.insert(k.as_bytes(), v);
        }
        self.devices.apply_batch(batch)?;
        self.flush()?;
        Ok(new)
    }

    // ---- last heard ----

    /// Writes last-heard times (ms since the epoch) in one batch and flushes.
    pub fn save_last_heard(&self, entries: &[(String, i64)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (acct, ms) in entries {
            batch.insert(acct.as_bytes(), &ms.to_be_bytes());
        }
        self.last_heard.apply_batch(batch)?;
        self.flush()?;
        Ok(())
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

fn id_of(k: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = k.try_into().map_err(|_| StoreError::Corrupt {
        tree: "journal",
        detail: "key is not 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(b))
}

fn decode_record(v: &[u8]) -> Result<JournalRecord, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        tree: "journal",
        detail: e.to_string(),
    })
}
