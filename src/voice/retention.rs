//! Retention: recordings older than the retention ([`super::record::RecordingOptions`]'s
//! `retention_days`, 183 by default) are deleted by vakt, and every deletion is audit-logged
//! (action `recording.delete`, user `vakt`, the Call; no personal data).
//!
//! With an archive folder (`[voice] recording_archive_dir`), each is first copied there
//! gzip-compressed as `{its name}.gz`, made durable ([`GzFile`]); one that cannot be archived
//! is kept and tried again at the next sweep. A subscriber's retention deletes their
//! recordings without archiving them ([`delete_of_calls`] with no archive): its point is that
//! nothing of the person is left.
//!
//! A recording's age is that of its start time, read from its file name: a copied, restored
//! or touched file keeps its age. [`sweep`] takes `now` as a parameter and deletes; [`run`]
//! sweeps at start and then hourly, and writes the audit entries.

use std::io;
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use super::record::{RecordError, RecordingId, RecordingOptions, entries};
use crate::model::AuditEntry;
use crate::store::Store;
use crate::store::archive::GzFile;
use crate::telemetry::RecordingMetrics;

/// How often [`run`] sweeps (after the sweep at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3_600);

/// A `.wav.part` file is a recording being written (or one a crash left that could not be
/// repaired): it is deleted only when it is also older than this. No conversation lasts so
/// long (a recording holds at most about 37 hours).
pub const PART_MIN_AGE: Duration = Duration::from_secs(2 * 86_400);

/// A recording deleted by retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// Which (its Call, conversation and start).
    pub id: RecordingId,
    /// Its file name.
    pub file_name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// The archive file it was copied to first (its name), if archiving is on.
    pub archive: Option<String>,
}

/// A recording retention should have deleted and could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDeleted {
    /// Its file name.
    pub file_name: String,
    /// Why.
    pub error: String,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// The recordings deleted, in name order.
    pub deleted: Vec<Deleted>,
    /// Those that could not be deleted (tried again at the next sweep).
    pub failed: Vec<NotDeleted>,
}

/// Deletes the recordings in `dir` that started more than `retention` before `now` (a
/// recording being written only when it is also older than [`PART_MIN_AGE`]), each copied
/// to `archive` first if given, and returns what it deleted. Files that are not recordings
/// are left alone. Blocking.
pub fn sweep(
    dir: &Path,
    archive: Option<&Path>,
    now: Timestamp,
    retention: Duration,
) -> Result<Sweep, RecordError> {
    let cutoff = |age: Duration| {
        SignedDuration::try_from(age)
            .ok()
            .and_then(|age| now.checked_sub(age).ok())
    };
    // A retention too long to subtract from `now` keeps everything.
    let Some(before) = cutoff(retention) else {
        return Ok(Sweep::default());
    };
    let part_before = cutoff(retention.max(PART_MIN_AGE)).unwrap_or(before);
    delete_where(dir, archive, |id, part| {
        id.started() < if part { part_before } else { before }
    })
}

/// Copies the recording at `path` to `{name}.gz` in `archive`; the archive's file name.
fn archive_one(path: &Path, name: &str, archive: &Path) -> Result<String, String> {
    let gz_name = format!("{name}.gz");
    let failed = |e: &dyn std::fmt::Display| format!("archiving: {e}");
    let mut file = std::fs::File::open(path).map_err(|e| failed(&e))?;
    let mut out = GzFile::create(archive, &gz_name).map_err(|e| failed(&e))?;
    out.copy_from(&mut file).map_err(|e| failed(&e))?;
    out.finish().map_err(|e| failed(&e))?;
    Ok(gz_name)
}

/// Deletes the recordings in `dir` that `doomed` picks (given the id and whether the file is
/// a part still being written), each copied to `archive` first if given, and syncs the
/// folder after any deletion. A file gone meanwhile is no failure; one that cannot be
/// archived is kept (a failure, tried again at the next sweep).
fn delete_where(
    dir: &Path,
    archive: Option<&Path>,
    doomed: impl Fn(&RecordingId, bool) -> bool,
) -> Result<Sweep, RecordError> {
    let mut out = Sweep::default();
    for (name, id, part) in entries(dir)? {
        if !doomed(&id, part) {
            continue;
        }
        let path = dir.join(&name);
        let meta = std::fs::symlink_metadata(&path).ok();
        let bytes = meta.as_ref().map_or(0, std::fs::Metadata::len);
        // Only a file is archived: a symlink is not vakt's recording, and is only removed.
        let file = meta.as_ref().is_some_and(std::fs::Metadata::is_file);
        let archived = match archive.filter(|_| file) {
            Some(a) => match archive_one(&path, &name, a) {
                Ok(gz) => Some(gz),
                Err(error) => {
                    out.failed.push(NotDeleted {
                        file_name: name,
                        error,
                    });
                    continue;
                }
            },
            None => None,
        };
        // On a symlink this removes the link, never what it points to.
        match std::fs::remove_file(&path) {
            Ok(()) => out.deleted.push(Deleted {
                id,
                file_name: name,
                bytes,
                archive: archived,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => out.failed.push(NotDeleted {
                file_name: name,
                error: e.to_string(),
            }),
        }
    }
    if !out.deleted.is_empty() {
        // The deletions durable (best effort: they are done either way).
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(error = %e, "syncing the recordings' folder after deletions");
        }
    }
    Ok(out)
}

/// Deletes the recordings in `dir` of the Calls `calls` (finished or being written, any
/// age), each copied to `archive` first if given: the recordings of a subscriber whose data
/// retention removes (never archived), or of closed Calls deleted by age
/// ([`crate::retention`]). Returns what it deleted. Blocking.
pub fn delete_of_calls(
    dir: &Path,
    archive: Option<&Path>,
    calls: &std::collections::BTreeSet<u64>,
) -> Result<Sweep, RecordError> {
    if calls.is_empty() {
        return Ok(Sweep::default());
    }
    delete_where(dir, archive, |id, _| calls.contains(&id.call()))
}

/// The audit entry of a deletion at `at`: action `recording.delete`, user `vakt`, the Call,
/// and in the detail the conversation, its start and the file's size (no personal data).
pub fn audit_entry(deleted: &Deleted, at: Timestamp) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at,
        user: "vakt".into(),
        action: "recording.delete".into(),
        call: Some(deleted.id.call()),
        subscriber: None,
        detail: format!(
            "conversation {}, started {}, {} bytes, retention{}",
            deleted.id.conversation(),
            deleted.id.started(),
            deleted.bytes,
            deleted
                .archive
                .as_ref()
                .map(|a| format!("; archived to {a}"))
                .unwrap_or_default()
        ),
    }
}

/// One sweep at `now`, each deletion audit-logged through [`Store::audit`] and counted in
/// the metrics, the entries durable with one sync. Blocking. Returns what was deleted.
pub fn sweep_and_audit(
    store: &Store,
    dir: &Path,
    archive: Option<&Path>,
    now: Timestamp,
    retention: Duration,
    metrics: &RecordingMetrics,
) -> Result<Vec<Deleted>, RecordError> {
    let swept = sweep(dir, archive, now, retention)?;
    let audited = store.together(|store| {
        for d in &swept.deleted {
            metrics.deleted.increment(1);
            if let Err(e) = store.audit(audit_entry(d, now)) {
                tracing::error!(call = d.id.call(), error = %e, "audit-logging a recording's deletion");
            }
        }
        Ok(())
    });
    if let Err(e) = audited {
        tracing::error!(error = %e, "making the audit log durable after recordings' deletions");
    }
    for f in &swept.failed {
        metrics.failure("delete");
        tracing::warn!(file = %f.file_name, error = %f.error, "retention could not delete a recording");
    }
    if !swept.deleted.is_empty() {
        tracing::info!(
            deleted = swept.deleted.len(),
            "recordings past their retention deleted"
        );
    }
    Ok(swept.deleted)
}

/// Sweeps the recordings at start and then every [`SWEEP_EVERY`] until `shutdown`,
/// audit-logging each deletion. Returns how many recordings it deleted.
pub async fn run(store: Store, opts: RecordingOptions, shutdown: CancellationToken) -> u64 {
    run_every(store, opts, SWEEP_EVERY, shutdown).await
}

async fn run_every(
    store: Store,
    opts: RecordingOptions,
    every: Duration,
    shutdown: CancellationToken,
) -> u64 {
    let retention = opts.retention();
    let metrics = RecordingMetrics::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut total = 0u64;
    loop {
        // The first tick is at once: the sweep at start.
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return total,
            _ = tick.tick() => {}
        }
        let now = Timestamp::now();
        let (s, o, m) = (store.clone(), opts.clone(), metrics.clone());
        let swept = tokio::task::spawn_blocking(move || {
            sweep_and_audit(&s, &o.dir, o.archive_dir.as_deref(), now, retention, &m)
        })
        .await;
        match swept {
            Ok(Ok(deleted)) => total += deleted.len() as u64,
            Ok(Err(e)) => tracing::warn!(error = %e, "the recordings' retention sweep failed"),
            Err(e) => tracing::error!(error = %e, "the recordings' retention sweep ended"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn touch(dir: &Path, name: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), vec![0u8; 44]).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn deletes_by_the_start_in_the_name_with_a_fixed_now() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("recordings");
        let now = ts("2026-12-06T12:00:00Z");
        let retention = Duration::from_secs(183 * DAY);
        // 2026-06-06T12:00:00Z is exactly 183 days before.
        let old = RecordingId::new(1, 1, ts("2026-06-06T11:59:59Z"));
        let edge = RecordingId::new(2, 1, ts("2026-06-06T12:00:00Z"));
        let young = RecordingId::new(3, 1, ts("2026-12-01T08:00:00Z"));
        let old_part = RecordingId::new(4, 2, ts("2025-01-01T00:00:00Z"));
        for id in [old, edge, young] {
            touch(&dir, &id.file_name());
        }
        touch(&dir, &old_part.part_name());
        touch(&dir, "notes.txt");
        touch(&dir, "call-9_conv-1_20200101T000000Z.wav.bak");
        // The file's own times say nothing: the young one is made to look ancient.
        let f = std::fs::File::options()
            .write(true)
            .open(dir.join(young.file_name()))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();

        let swept = sweep(&dir, None, now, retention).unwrap();
        assert!(swept.failed.is_empty());
        let gone: Vec<_> = swept.deleted.iter().map(|d| d.id).collect();
        assert_eq!(gone, [old, old_part]);
        assert_eq!(swept.deleted[0].bytes, 44);
        assert_eq!(swept.deleted[0].file_name, old.file_name());
        assert_eq!(
            names(&dir),
            [
                "call-2_conv-1_20260606T120000Z.wav",
                "call-3_conv-1_20261201T080000Z.wav",
                "call-9_conv-1_20200101T000000Z.wav.bak",
                "notes.txt",
            ]
        );
        // A second later the edge one is past it too; nothing else changes.
        let swept = sweep(&dir, None, ts("2026-12-06T12:00:01Z"), retention).unwrap();
        assert_eq!(
            swept.deleted.iter().map(|d| d.id).collect::<Vec<_>>(),
            [edge]
        );
        assert!(
            sweep(&dir, None, now, retention)
                .unwrap()
                .deleted
                .is_empty()
        );
        // No folder: nothing to do.
        assert_eq!(
            sweep(&tmp.path().join("none"), None, now, retention).unwrap(),
            Sweep::default()
        );
        // A retention beyond the calendar keeps everything.
        assert!(
            sweep(&dir, None, now, Duration::MAX)
                .unwrap()
                .deleted
                .is_empty()
        );
    }

    #[test]
    fn a_recording_being_written_is_kept_however_short_the_retention() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let now = ts("2026-12-06T12:00:00Z");
        let writing = RecordingId::new(5, 1, ts("2026-12-06T09:00:00Z"));
        let done = RecordingId::new(5, 2, ts("2026-12-06T09:00:00Z"));
        let left = RecordingId::new(6, 1, ts("2026-12-03T09:00:00Z"));
        touch(dir, &writing.part_name());
        touch(dir, &done.file_name());
        touch(dir, &left.part_name());
        let swept = sweep(dir, None, now, Duration::from_secs(3_600)).unwrap();
        assert_eq!(
            swept.deleted.iter().map(|d| d.id).collect::<Vec<_>>(),
            [done, left]
        );
        assert_eq!(names(dir), [writing.part_name()]);
    }

    #[test]
    fn a_symlink_named_as_a_recording_is_unlinked_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("recordings");
        std::fs::create_dir(&dir).unwrap();
        let target = tmp.path().join("precious.wav");
        std::fs::write(&target, b"keep me").unwrap();
        let id = RecordingId::new(7, 1, ts("2020-01-01T00:00:00Z"));
        std::os::unix::fs::symlink(&target, dir.join(id.file_name())).unwrap();
        let swept = sweep(
            &dir,
            None,
            ts("2026-12-06T12:00:00Z"),
            Duration::from_secs(DAY),
        )
        .unwrap();
        assert_eq!(swept.deleted.len(), 1);
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    }

    #[test]
    fn with_an_archive_each_recording_is_copied_compressed_first_and_kept_if_it_cannot_be() {
        use std::io::Read;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("recordings");
        let arkiv = tmp.path().join("arkiv");
        let now = ts("2026-12-06T12:00:00Z");
        let old = RecordingId::new(1, 1, ts("2026-01-01T10:00:00Z"));
        let young = RecordingId::new(2, 1, ts("2026-12-01T10:00:00Z"));
        std::fs::create_dir_all(&dir).unwrap();
        let sound: Vec<u8> = (0..8_000u32).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(dir.join(old.file_name()), &sound).unwrap();
        touch(&dir, &young.file_name());
        // A symlink named as a recording: removed, not archived (not vakt's recording).
        let target = tmp.path().join("precious.wav");
        std::fs::write(&target, b"keep me").unwrap();
        let link = RecordingId::new(3, 1, ts("2020-01-01T00:00:00Z"));
        std::os::unix::fs::symlink(&target, dir.join(link.file_name())).unwrap();

        // An archive folder that cannot be made: the recording is kept, a failure.
        let blocked = tmp.path().join("a-file");
        std::fs::write(&blocked, b"x").unwrap();
        let swept = sweep(
            &dir,
            Some(&blocked.join("arkiv")),
            now,
            Duration::from_secs(183 * DAY),
        )
        .unwrap();
        assert_eq!(swept.failed.len(), 1, "{swept:?}");
        assert!(
            swept.failed[0].error.starts_with("archiving: "),
            "{swept:?}"
        );
        assert_eq!(swept.failed[0].file_name, old.file_name());
        assert!(dir.join(old.file_name()).exists());
        assert_eq!(swept.deleted.len(), 1);
        assert_eq!(swept.deleted[0].id, link);
        assert_eq!(swept.deleted[0].archive, None);

        let swept = sweep(&dir, Some(&arkiv), now, Duration::from_secs(183 * DAY)).unwrap();
        assert!(swept.failed.is_empty(), "{swept:?}");
        let gz = format!("{}.gz", old.file_name());
        assert_eq!(swept.deleted.len(), 1);
        assert_eq!(swept.deleted[0].archive.as_deref(), Some(gz.as_str()));
        assert_eq!(names(&dir), [young.file_name()]);
        assert_eq!(names(&arkiv), [gz.as_str()]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(arkiv.join(&gz)).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, sound);
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        let e = audit_entry(&swept.deleted[0], now);
        assert!(
            e.detail.ends_with(&format!("retention; archived to {gz}")),
            "{}",
            e.detail
        );
    }

    #[test]
    fn the_audit_entry_names_the_call_and_nothing_personal() {
        let d = Deleted {
            id: RecordingId::new(42, 3, ts("2026-06-01T10:00:00Z")),
            file_name: "call-42_conv-3_20260601T100000Z.wav".into(),
            bytes: 480_044,
            archive: None,
        };
        let at = ts("2026-12-06T12:00:00Z");
        let e = audit_entry(&d, at);
        assert_eq!(e.user, "vakt");
        assert_eq!(e.action, "recording.delete");
        assert_eq!(e.call, Some(42));
        assert_eq!(e.subscriber, None);
        assert_eq!(e.at, at);
        assert_eq!(
            e.detail,
            "conversation 3, started 2026-06-01T10:00:00Z, 480044 bytes, retention"
        );
    }

    #[tokio::test]
    async fn run_sweeps_at_start_and_again_and_audits_each_deletion() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("data")).unwrap();
        let dir = tmp.path().join("recordings");
        let now = Timestamp::now();
        let ago = |days: i64| {
            now.checked_sub(SignedDuration::from_hours(24 * days))
                .unwrap()
        };
        let first = RecordingId::new(11, 1, ago(200));
        let kept = RecordingId::new(12, 1, ago(100));
        touch(&dir, &first.file_name());
        touch(&dir, &kept.file_name());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_every(
            store.clone(),
            RecordingOptions {
                dir: dir.clone(),
                ..RecordingOptions::in_data_dir(tmp.path())
            },
            Duration::from_millis(50),
            stop.clone(),
        ));
        let audited = |n: usize| {
            let store = store.clone();
            async move {
                for _ in 0..200 {
                    let log = store.audit_latest(10).unwrap();
                    if log.len() >= n {
                        return log;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                panic!("no {n} audit entries");
            }
        };
        let log = audited(1).await;
        assert_eq!(log[0].action, "recording.delete");
        assert_eq!(log[0].call, Some(11));
        // A recording that turns up later (a restored backup) goes at the next sweep.
        let second = RecordingId::new(13, 2, ago(400));
        touch(&dir, &second.file_name());
        let log = audited(2).await;
        assert_eq!(log[1].call, Some(13));
        stop.cancel();
        assert_eq!(task.await.unwrap(), 2);
        assert_eq!(names(&dir), [kept.file_name()]);
    }
}
