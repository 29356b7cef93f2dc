//! Retention of the journal (issue 20, item 3): Signals older than `[journal] keep_days` are
//! deleted by vakt, after being written to a compressed archive file if
//! `[journal] archive_dir` is set, and every deletion is audit-logged (action
//! `journal.delete`, user `vakt`, the ids, counts and sizes; no personal data).
//!
//! The journal in its own log ([`crate::store::segments`]) is deleted a whole sealed segment
//! at a time (a file removal, not a rewrite): a segment is due when its newest record was
//! received more than `keep_days` before `now`, and only when triage has taken in its last
//! record (the triage cursor is past it), so a deletion can never take a Signal that has not
//! reached a Call yet. The newest segment, still written to, is never deleted. Segments are
//! taken oldest first and the sweep stops at the first one not due, so what is kept is
//! always one unbroken run of ids. The journal in sled's tree (`[journal] engine = "sled"`)
//! or on PostgreSQL is not swept; the server says so at start when a retention is
//! configured.
//!
//! An archive file, `vakt-journal-{first id}-{last id}.jsonl.gz`, holds the segment's
//! Signals as JSON lines, the lines `vakt journal export` writes, gzip-compressed
//! (`zcat` reads it). It is written beside as `.part`, synced, checked to hold every id of
//! the segment, and renamed; only then is the segment deleted. A sweep cut short by a crash
//! is finished by the next one, which writes the archive again.
//!
//! [`sweep`] takes `now` as a parameter; [`run`] sweeps at start and then hourly, on the
//! blocking pool, beside intake: a deletion takes the journal readers' lock only for the
//! file's removal, and never the committer's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::model::AuditEntry;
use crate::store::archive::{ArchiveError, GzFile};
use crate::store::segments::Sealed;
use crate::store::{Store, StoreError};

/// How often [`run`] sweeps (after the sweep at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3_600);

/// Days the journal is kept by default: two years, the archive rule many municipalities
/// apply to their alarm records.
pub const DEFAULT_KEEP_DAYS: u32 = 730;

/// The shortest retention allowed (a month: the month's statistics and invoices are made
/// from the Calls, but an investigation starts from the Signals).
pub const MIN_KEEP_DAYS: u32 = 31;

/// The longest retention allowed (ten years).
pub const MAX_KEEP_DAYS: u32 = 3_650;

/// Records read from the journal per step while archiving.
const ARCHIVE_CHUNK: usize = 1_000;

/// How the journal is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepOptions {
    /// Days a Signal is kept after it was received; `None`: kept for ever.
    pub keep_days: Option<u32>,
    /// Where the archive files go before a deletion, if anywhere.
    pub archive_dir: Option<PathBuf>,
}

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The store failed (reading the cursor, the journal, or writing the audit entry).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An archive file could not be written: the segment is kept.
    #[error("archiving the journal: {0}")]
    Archive(#[from] ArchiveError),
    /// The archive did not get every record of the segment: the segment is kept.
    #[error("the archive {path} holds {got} records where {want} were due; the segment is kept")]
    Incomplete {
        /// The file.
        path: String,
        /// Records written.
        got: u64,
        /// Records in the segment.
        want: u64,
    },
}

/// A segment of the journal deleted by a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Its first Signal's id.
    pub first_id: u64,
    /// Its last Signal's id.
    pub last_id: u64,
    /// When its newest Signal was received.
    pub newest: Timestamp,
    /// Its size on disk.
    pub bytes: u64,
    /// The archive file that holds its Signals, if archiving is on.
    pub archive: Option<PathBuf>,
}

impl Deleted {
    /// Signals deleted.
    pub fn records(&self) -> u64 {
        self.last_id.saturating_sub(self.first_id) + 1
    }

    /// Its audit entry at `at`: action `journal.delete`, user `vakt`, and in the detail the
    /// ids, the counts, the newest time and the archive's file name (no personal data).
    pub fn audit_entry(&self, at: Timestamp) -> AuditEntry {
        let archive = match &self.archive {
            Some(p) => format!(
                "; archived to {}",
                p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
            None => String::new(),
        };
        AuditEntry {
            seq: 0,
            at,
            // The server itself, as for every deletion by retention.
            user: "vakt".to_string(),
            action: "journal.delete".to_string(),
            call: None,
            subscriber: None,
            detail: format!(
                "Signals {}..={} ({} records, {} bytes), the newest received {}{archive}",
                self.first_id,
                self.last_id,
                self.records(),
                self.bytes,
                self.newest,
            ),
        }
    }
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// The segments deleted, oldest first.
    pub deleted: Vec<Deleted>,
}

/// The journal's retention, if it can be kept here: a configured retention and the journal
/// in its own log. Otherwise why not, for the log at start (`None`: nothing to say).
pub fn applies(store: &Store, opts: &KeepOptions) -> Result<(), Option<&'static str>> {
    match (opts.keep_days, store.journal_log()) {
        (None, _) => Err(None),
        (Some(_), Some(_)) => Ok(()),
        (Some(_), None) if store.is_postgres() => Err(Some(
            "the journal's retention deletes only from its own log on one machine; the journal on PostgreSQL is kept whole",
        )),
        (Some(_), None) => Err(Some(
            "the journal's retention deletes only from its own log; this journal is in sled's tree ([journal] engine = \"sled\") and is kept whole",
        )),
    }
}

/// Deletes, oldest first, the journal's sealed segments whose newest Signal was received
/// more than `keep_days` before `now` and which triage has taken in, archiving each first
/// if configured, and writes an audit entry for each. Blocking.
pub fn sweep(store: &Store, opts: &KeepOptions, now: Timestamp) -> Result<Sweep, RetentionError> {
    let mut out = Sweep::default();
    let (Some(days), Some(log)) = (opts.keep_days, store.journal_log()) else {
        return Ok(out);
    };
    let keep_ms = i64::from(days) * 86_400_000;
    let Some(before_ms) = now.as_millisecond().checked_sub(keep_ms) else {
        return Ok(out);
    };
    let cursor = store.triage_cursor()?;
    // Each segment read only when reached: the sweep stops at the first one not due, so
    // the segments kept are not read.
    for id in log.sealed_ids()? {
        let Some(seg) = log.sealed(id)? else {
            continue;
        };
        if seg.newest_ms >= before_ms || seg.last_id > cursor {
            break;
        }
        let archive = match &opts.archive_dir {
            Some(dir) => Some(archive(store, &seg, dir)?),
            None => None,
        };
        if !log.remove_segment(seg.first_id)? {
            break;
        }
        let deleted = Deleted {
            first_id: seg.first_id,
            last_id: seg.last_id,
            newest: Timestamp::from_millisecond(seg.newest_ms).unwrap_or(Timestamp::UNIX_EPOCH),
            bytes: seg.bytes,
            archive,
        };
        tracing::info!(
            first_id = deleted.first_id,
            last_id = deleted.last_id,
            records = deleted.records(),
            bytes = deleted.bytes,
            newest = %deleted.newest,
            archive = deleted.archive.as_ref().map(|p| p.display().to_string()),
            "journal retention: a segment past its time deleted"
        );
        store.audit(deleted.audit_entry(now))?;
        out.deleted.push(deleted);
    }
    Ok(out)
}

/// The archive file's name for a segment.
pub fn archive_name(first_id: u64, last_id: u64) -> String {
    format!("vakt-journal-{first_id:020}-{last_id:020}.jsonl.gz")
}

/// Writes the segment's Signals to its archive file in `dir` ([`GzFile`]: beside as
/// `.part`, synced, renamed, the folder synced), once checked to hold every id.
fn archive(store: &Store, seg: &Sealed, dir: &Path) -> Result<PathBuf, RetentionError> {
    let mut out = GzFile::create(dir, &archive_name(seg.first_id, seg.last_id))?;
    let mut after = seg.first_id.saturating_sub(1);
    'read: loop {
        let batch = store.journal_after(after, ARCHIVE_CHUNK)?;
        let Some(last) = batch.last().map(|r| r.signal.id) else {
            break;
        };
        for r in &batch {
            if r.signal.id > seg.last_id {
                break 'read;
            }
            if r.signal.id >= seg.first_id {
                out.line(&r.signal)?;
            }
        }
        after = last;
    }
    let want = seg.last_id.saturating_sub(seg.first_id) + 1;
    if out.lines() != want {
        return Err(RetentionError::Incomplete {
            path: out.path().display().to_string(),
            got: out.lines(),
            want,
        });
    }
    Ok(out.finish()?)
}

/// Sweeps at start and then every [`SWEEP_EVERY`] until `shutdown`, on the blocking pool.
/// Returns the Signals deleted.
pub async fn run(store: Store, opts: KeepOptions, shutdown: CancellationToken) -> u64 {
    match applies(&store, &opts) {
        Ok(()) => {}
        Err(None) => return 0,
        Err(Some(why)) => {
            tracing::warn!("{why}");
            return 0;
        }
    }
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut total = 0u64;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return total,
            _ = tick.tick() => {}
        }
        let (s, o) = (store.clone(), opts.clone());
        match tokio::task::spawn_blocking(move || sweep(&s, &o, Timestamp::now())).await {
            Ok(Ok(swept)) => total += swept.deleted.iter().map(Deleted::records).sum::<u64>(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the journal's retention sweep failed; it is tried again in an hour")
            }
            Err(e) => tracing::error!(error = %e, "the journal's retention sweep ended"),
        }
    }
}

#[cfg(test)]
mod tests;
