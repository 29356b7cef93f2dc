//! Retention of closed Calls by age (issue 20, item 3): a Call closed more than
//! `[retention] closed_call_days` before `now` is written to an archive file if
//! `[retention] archive_dir` is set, and then deleted whole by vakt: its recordings
//! (`recording.delete`; archived first if `[voice] recording_archive_dir` is set), its
//! dispatches, its timeline, its review and its closing marks;
//! each Call's deletion is audit-logged (`call.delete`, user `vakt`, the Call and its
//! subscriber, so the person's extract says what became of it). Off by default: how long
//! a centre keeps its Calls is the municipality's archive rule (the subscriber's own
//! retention, [`super::Retention`], already anonymises them a time after the alarm ends).
//!
//! A Call is kept, and said to be held, while something about it is not settled: a
//! dispatch waiting for its patrol, a closing waiting for its review or not handed to the
//! care system yet, a conversation not ended, a care-system event not delivered.
//!
//! Closed Calls are walked by id, oldest first, and the walk stops at the first Call opened
//! after the cut-off (plus a day of slack for ids and opening times out of step), so a
//! sweep reads the Calls due and a day's worth more, not the history kept. At most
//! [`MAX_PER_SWEEP`] are deleted a sweep; the next goes on.
//!
//! The archive, `vakt-calls-{first id}-{last id}-{sweep time}.jsonl.gz`, holds one JSON line
//! a Call: `{"call": …with its whole timeline…, "review": …, "dispatches": […]}`, written
//! and made durable ([`GzFile`]) before any of its Calls is deleted. The sweep's time in
//! the name keeps an archive from being replaced: a sweep cut short between a Call's
//! dispatches and its Call ([`Store::delete_closed_call`]) archives that Call again at the
//! next sweep, in a new file, while the first file keeps it whole.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::{BY, RetentionError};
use crate::model::retention::Hold;
use crate::model::review::Review;
use crate::model::{AuditEntry, Call, Dispatch};
use crate::store::Store;
use crate::store::archive::GzFile;
use crate::telemetry::{RecordingMetrics, RetentionMetrics};

/// The shortest age allowed: a year (complaints and the municipality's yearly figures
/// reach back that far).
pub const MIN_CLOSED_CALL_DAYS: u32 = 365;

/// The longest age allowed (ten years).
pub const MAX_CLOSED_CALL_DAYS: u32 = 3_650;

/// Most Calls deleted by one sweep (the next, an hour later, goes on).
pub const MAX_PER_SWEEP: usize = 20_000;

/// Closed Calls read (and archived) at a time.
const CHUNK: usize = 500;

/// How far past the cut-off the walk goes on, in case `opened_at` does not grow strictly
/// with the id (clock steps, late Signals); a Call is closed after it is opened, so one
/// opened after the cut-off is never due.
const SLACK: SignedDuration = SignedDuration::from_hours(24);

/// Most care-system events of one Call looked at.
const MAX_DELIVERIES: usize = 100;

/// How closed Calls are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallAge {
    /// Days a Call is kept after its closing.
    pub days: u32,
    /// Where the archive files go before a deletion, if anywhere.
    pub archive_dir: Option<PathBuf>,
}

/// A closed Call deleted by a sweep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallGone {
    /// The Call.
    pub call: u64,
    /// When it was closed.
    pub closed_at: Timestamp,
    /// Its timeline lines.
    pub lines: usize,
    /// Its dispatches.
    pub dispatches: usize,
    /// Its recordings.
    pub recordings: usize,
}

/// What a sweep of closed Calls did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallsSwept {
    /// The Calls deleted, oldest first.
    pub deleted: Vec<CallGone>,
    /// The Calls due but held, with why.
    pub held: Vec<(u64, Vec<Hold>)>,
    /// The archive files written.
    pub archives: Vec<PathBuf>,
    /// It stopped at [`MAX_PER_SWEEP`]: more are due.
    pub more: bool,
    /// A dry run: the Calls that are due and would be deleted (nothing was).
    pub due: Vec<u64>,
}

/// One line of an archive file.
#[derive(Serialize)]
struct Archived<'a> {
    call: &'a Call,
    review: Option<&'a Review>,
    dispatches: &'a [Dispatch],
}

/// A Call due, read whole.
struct DueCall {
    call: Call,
    review: Option<Review>,
    dispatches: Vec<Dispatch>,
}

/// What is unsettled in the store, read once a sweep (each list is short).
struct Unsettled {
    reviews: BTreeSet<u64>,
    closings: BTreeSet<u64>,
    conversations: Vec<(u64, u64)>,
}

/// The archive file's name for Calls `first..=last` archived at `at`.
pub fn archive_name(first: u64, last: u64, at: Timestamp) -> String {
    format!(
        "vakt-calls-{first:020}-{last:020}-{}.jsonl.gz",
        at.strftime("%Y%m%dT%H%M%S%.3fZ")
    )
}

/// What holds a closed Call, from what is unsettled and its dispatches and events.
fn holds(
    store: &Store,
    call: u64,
    dispatches: &[Dispatch],
    u: &Unsettled,
) -> Result<Vec<Hold>, RetentionError> {
    let mut out: Vec<Hold> = dispatches
        .iter()
        .filter(|d| d.is_open())
        .map(|d| Hold::OpenDispatch { dispatch: d.id })
        .collect();
    if u.reviews.contains(&call) {
        out.push(Hold::PendingReview { call });
    }
    if u.closings.contains(&call) {
        out.push(Hold::ClosingOwed { call });
    }
    for &(c, conversation) in &u.conversations {
        if c == call {
            out.push(Hold::OpenConversation { conversation });
        }
    }
    for r in store.outbox_of_subject(&format!("call/{call}"), MAX_DELIVERIES)? {
        if store.outbox_is_pending(&r)? {
            out.push(Hold::Undelivered { delivery: r.id });
        }
    }
    Ok(out)
}

/// The audit entry of a Call's deletion at `at` (no personal data: the ids, the counts,
/// the archive's file name).
fn audit_entry(
    gone: &CallGone,
    subscriber: Option<&str>,
    archive: Option<&Path>,
    days: u32,
    at: Timestamp,
) -> AuditEntry {
    let archive = archive
        .and_then(Path::file_name)
        .map(|n| format!("; archived to {}", n.to_string_lossy()))
        .unwrap_or_default();
    AuditEntry {
        seq: 0,
        at,
        user: BY.into(),
        action: "call.delete".into(),
        call: Some(gone.call),
        subscriber: subscriber.map(str::to_owned),
        detail: format!(
            "closed {}, deleted after {days} days: {} timeline line(s), {} dispatch(es), {} recording(s){archive}",
            gone.closed_at, gone.lines, gone.dispatches, gone.recordings
        ),
    }
}

/// The sweep's services.
pub struct Sweeper<'a> {
    /// The store.
    pub store: &'a Store,
    /// The recordings' folder.
    pub recordings: &'a Path,
    /// Where recordings are archived before they are deleted, if anywhere.
    pub recording_archive: Option<&'a Path>,
    /// Retention's counters.
    pub metrics: &'a RetentionMetrics,
    /// The recordings' counters.
    pub recording_metrics: &'a RecordingMetrics,
}

/// Deletes the Calls closed more than `age.days` before `now`, oldest first, archiving
/// them first if configured; each deletion audit-logged. Blocking. An archive that cannot
/// be written, or a recording that cannot be deleted, stops the sweep with the Calls of
/// that chunk kept. `dry_run`: only says which are due (`due`) and held.
pub fn sweep(
    by: &Sweeper<'_>,
    age: &CallAge,
    now: Timestamp,
    dry_run: bool,
) -> Result<CallsSwept, RetentionError> {
    let store = by.store;
    let mut out = CallsSwept::default();
    let Ok(cutoff) = now.checked_sub(SignedDuration::from_hours(24 * i64::from(age.days))) else {
        return Ok(out);
    };
    let stop = cutoff.checked_add(SLACK).unwrap_or(Timestamp::MAX);
    let u = Unsettled {
        reviews: store
            .pending_reviews()?
            .into_iter()
            .map(|r| r.call)
            .collect(),
        closings: store.closings_owed()?.into_iter().collect(),
        conversations: store
            .open_conversations()?
            .into_iter()
            .filter_map(|c| c.call.map(|call| (call, c.id)))
            .collect(),
    };
    let mut from = 0u64;
    loop {
        let heads = store.closed_call_heads_from(from, CHUNK)?;
        let Some(last) = heads.last() else {
            break;
        };
        from = last.id.saturating_add(1);
        let mut due = Vec::new();
        let mut end = heads.len() < CHUNK;
        for head in heads {
            if head.opened_at >= stop {
                end = true;
                break;
            }
            if head.closed_at.unwrap_or(head.opened_at) >= cutoff {
                continue;
            }
            if out.deleted.len() + out.due.len() + due.len() >= MAX_PER_SWEEP {
                out.more = true;
                end = true;
                break;
            }
            let dispatches = store.dispatches_of_call(head.id)?;
            let held = holds(store, head.id, &dispatches, &u)?;
            if !held.is_empty() {
                out.held.push((head.id, held));
                continue;
            }
            // The head read above, with its timeline: the Call whole for the archive.
            let call = store.with_timeline(head)?;
            due.push(DueCall {
                review: store.review(call.id)?,
                call,
                dispatches,
            });
        }
        if dry_run {
            out.due.extend(due.iter().map(|d| d.call.id));
        } else if !due.is_empty() {
            delete_chunk(by, age, &due, now, &mut out)?;
        }
        if end {
            break;
        }
    }
    // The held are there at every sweep until settled: one line, the reasons at debug.
    for (call, holds) in &out.held {
        let why: Vec<String> = holds.iter().map(ToString::to_string).collect();
        tracing::debug!(call, held = %why.join("; "), "a closed Call past its retention is held");
    }
    if !out.held.is_empty() {
        tracing::info!(
            held = out.held.len(),
            "closed Calls past their retention are held by what is still open about them (at debug: which and why)"
        );
    }
    Ok(out)
}

/// Archives (if configured) and deletes one chunk of due Calls.
fn delete_chunk(
    by: &Sweeper<'_>,
    age: &CallAge,
    due: &[DueCall],
    now: Timestamp,
    out: &mut CallsSwept,
) -> Result<(), RetentionError> {
    let Sweeper {
        store,
        recordings,
        recording_archive,
        metrics,
        recording_metrics,
    } = *by;
    let (Some(first), Some(last)) = (due.first(), due.last()) else {
        return Ok(());
    };
    let archive = match &age.archive_dir {
        Some(dir) => {
            let mut a = GzFile::create(dir, &archive_name(first.call.id, last.call.id, now))?;
            for d in due {
                a.line(&Archived {
                    call: &d.call,
                    review: d.review.as_ref(),
                    dispatches: &d.dispatches,
                })?;
            }
            let path = a.finish()?;
            out.archives.push(path.clone());
            Some(path)
        }
        None => None,
    };
    // The recordings first, all of the chunk in one pass over the folder.
    let ids: BTreeSet<u64> = due.iter().map(|d| d.call.id).collect();
    let swept = crate::voice::retention::delete_of_calls(recordings, recording_archive, &ids)
        .map_err(|e| RetentionError::Recordings(e.to_string()))?;
    for d in &swept.deleted {
        recording_metrics.deleted.increment(1);
        store.audit(crate::voice::retention::audit_entry(d, now))?;
    }
    if let Some(f) = swept.failed.first() {
        recording_metrics.failure("delete");
        return Err(RetentionError::Recordings(format!(
            "{}: {}",
            f.file_name, f.error
        )));
    }
    let mut deleted = 0usize;
    for d in due {
        let Some(done) = store.delete_closed_call(d.call.id)? else {
            continue;
        };
        let gone = CallGone {
            call: d.call.id,
            closed_at: d.call.closed_at.unwrap_or(d.call.opened_at),
            lines: done.lines,
            dispatches: done.dispatches,
            recordings: swept
                .deleted
                .iter()
                .filter(|r| r.id.call() == d.call.id)
                .count(),
        };
        store.audit(audit_entry(
            &gone,
            d.call.subscriber.as_deref(),
            archive.as_deref(),
            age.days,
            now,
        ))?;
        metrics.closed_calls.increment(1);
        out.deleted.push(gone);
        deleted += 1;
    }
    tracing::info!(
        first = first.call.id,
        last = last.call.id,
        deleted,
        recordings = swept.deleted.len(),
        archive = archive.as_ref().map(|p| p.display().to_string()),
        "closed Calls past their retention deleted"
    );
    Ok(())
}
