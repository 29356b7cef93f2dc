use std::io::Read;

use super::*;
use crate::model::Signal;
use crate::model::testing::signal;
use crate::store::journal::LogJournal;
use crate::store::segments::LogOptions;
use crate::store::{JournalRecord, JournalStore, NewRecord, encode_record};

const DAY_MS: i64 = 86_400_000;

fn day(d: i64) -> Timestamp {
    Timestamp::from_millisecond(1_700_000_000_000 + d * DAY_MS).unwrap()
}

/// A store whose journal is a log of small segments (a few commits each: the test records
/// compress to some 70 bytes a commit).
fn store(dir: &Path) -> Store {
    let log =
        LogJournal::open_with(&dir.join("journal"), LogOptions { segment_bytes: 200 }).unwrap();
    Store::open_with_cache(dir, 8 << 20)
        .unwrap()
        .with_journal_log(log)
}

/// Commits `n` Signals per day for days `0..days`, ten per commit; returns the last id.
fn fill(store: &Store, days: i64, n: u64) -> u64 {
    let journal = JournalStore::Log(store.journal_log().unwrap().clone());
    let mut next = 1u64;
    for d in 0..days {
        for chunk in 0..n.div_ceil(10) {
            let records: Vec<NewRecord> = (0..10.min(n - chunk * 10))
                .map(|i| {
                    let r = JournalRecord {
                        signal: Signal {
                            seq: format!("{:04}", (next + i) % 10_000),
                            received_at: day(d),
                            raw: format!("frame {}", next + i).into_bytes(),
                            ..signal()
                        },
                        dedup: None,
                    };
                    NewRecord {
                        json: encode_record(&r).unwrap(),
                        received_at: r.signal.received_at,
                        dedup: None,
                    }
                })
                .collect();
            journal.commit(next, &records).unwrap();
            next += records.len() as u64;
        }
    }
    next - 1
}

fn triaged_to(store: &Store, cursor: u64) {
    store.save_call_changes(&[], Some(cursor)).unwrap();
}

fn keep(days: u32, archive: Option<&Path>) -> KeepOptions {
    KeepOptions {
        keep_days: Some(days),
        archive_dir: archive.map(Path::to_path_buf),
    }
}

/// Every sealed segment of the store's journal, oldest first.
fn sealed_of(store: &Store) -> Vec<Sealed> {
    let log = store.journal_log().unwrap();
    let ids = log.sealed_ids().unwrap();
    ids.into_iter()
        .filter_map(|id| log.sealed(id).unwrap())
        .collect()
}

fn first_kept(store: &Store) -> u64 {
    store.journal_after(0, 1).unwrap()[0].signal.id
}

#[test]
fn whole_segments_past_their_time_go_oldest_first_and_the_rest_stays_unbroken() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let last = fill(&store, 10, 30);
    triaged_to(&store, last);
    let sealed = sealed_of(&store);
    assert!(sealed.len() > 10, "{} sealed segments", sealed.len());

    // Kept 31 days; now is day 36: days 0..5 are past, day 5 on are not.
    let now = day(36);
    let swept = sweep(&store, &keep(31, None), now).unwrap();
    assert!(!swept.deleted.is_empty());
    let cutoff = now.as_millisecond() - 31 * DAY_MS;
    for d in &swept.deleted {
        assert!(d.newest.as_millisecond() < cutoff, "{d:?}");
        assert!(d.archive.is_none());
    }
    // Every sealed segment that was due went, and none that was not.
    let due: Vec<u64> = sealed
        .iter()
        .take_while(|s| s.newest_ms < cutoff)
        .map(|s| s.first_id)
        .collect();
    let gone: Vec<u64> = swept.deleted.iter().map(|d| d.first_id).collect();
    assert_eq!(gone, due);
    // What is kept runs on from the last deleted id, to the end, without a gap.
    let after = swept.deleted.last().unwrap().last_id;
    assert_eq!(first_kept(&store), after + 1);
    let mut ids = Vec::new();
    let mut from = 0;
    loop {
        let b = store.journal_after(from, 100).unwrap();
        let Some(l) = b.last() else { break };
        from = l.signal.id;
        ids.extend(b.iter().map(|r| r.signal.id));
    }
    assert_eq!(ids, (after + 1..=last).collect::<Vec<_>>());
    // Nothing kept was received before day 4 (the segment holding day 4's and day 5's
    // Signals stays whole).
    let oldest = store.journal_after(0, 1).unwrap()[0].signal.received_at;
    assert!(oldest >= day(4), "{oldest}");
    // Each deletion is in the audit log, once.
    let audit = store.audit_after(0, 1000).unwrap();
    let deletions: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "journal.delete")
        .collect();
    assert_eq!(deletions.len(), swept.deleted.len());
    assert_eq!(deletions[0].user, "vakt");
    assert!(
        deletions[0]
            .detail
            .starts_with(&format!("Signals 1..={} ", swept.deleted[0].last_id))
    );

    // A second sweep at the same time finds nothing more; the journal goes on.
    assert!(
        sweep(&store, &keep(31, None), now)
            .unwrap()
            .deleted
            .is_empty()
    );
    let journal = JournalStore::Log(store.journal_log().unwrap().clone());
    assert_eq!(journal.next_id().unwrap(), last + 1);
}

#[test]
fn nothing_triage_has_not_taken_in_and_never_the_newest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let last = fill(&store, 4, 30);
    let sealed = sealed_of(&store);
    // Triage is half-way through the third segment.
    let cursor = sealed[2].first_id + 1;
    triaged_to(&store, cursor);
    let swept = sweep(&store, &keep(31, None), day(1000)).unwrap();
    let gone: Vec<u64> = swept.deleted.iter().map(|d| d.first_id).collect();
    assert_eq!(gone, [sealed[0].first_id, sealed[1].first_id]);
    // All triaged: every sealed segment goes, the newest stays.
    triaged_to(&store, last);
    sweep(&store, &keep(31, None), day(1000)).unwrap();
    let log = store.journal_log().unwrap();
    assert!(sealed_of(&store).is_empty());
    assert!(first_kept(&store) > cursor);
    assert_eq!(store.journal_after(last - 1, 10).unwrap().len(), 1);
    // Recent reads still work across what is left.
    let journal = JournalStore::Log(log.clone());
    let recent = journal.recent(day(3), 5).unwrap();
    assert_eq!(recent.first().map(|r| r.signal.id), Some(last));
}

#[test]
fn every_deleted_signal_is_in_its_archive_first() {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("arkiv");
    let store = store(dir.path());
    let last = fill(&store, 3, 25);
    triaged_to(&store, last);
    let before: Vec<Signal> = store
        .journal_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.signal)
        .collect();
    let swept = sweep(&store, &keep(31, Some(&archive_dir)), day(500)).unwrap();
    assert!(swept.deleted.len() >= 2);
    let mut archived: Vec<Signal> = Vec::new();
    for d in &swept.deleted {
        let path = d.archive.clone().unwrap();
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            archive_name(d.first_id, d.last_id)
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<Signal> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, d.records());
        archived.extend(lines);
    }
    // The archives hold exactly the Signals deleted, as `vakt journal export` writes them.
    let n = archived.len();
    assert_eq!(archived, before[..n]);
    assert_eq!(first_kept(&store), before[n].id);
    // No part file is left, and the audit entry names the archive.
    let names: Vec<String> = std::fs::read_dir(&archive_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".jsonl.gz")), "{names:?}");
    let audit = store.audit_after(0, 1000).unwrap();
    assert!(audit[0].detail.ends_with(&format!(
        "archived to {}",
        archive_name(swept.deleted[0].first_id, swept.deleted[0].last_id)
    )));
}

#[test]
fn an_archive_that_cannot_be_written_keeps_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let last = fill(&store, 2, 30);
    triaged_to(&store, last);
    // The archive's folder is a file.
    let blocked = dir.path().join("not-a-folder");
    std::fs::write(&blocked, b"x").unwrap();
    let err = sweep(&store, &keep(31, Some(&blocked)), day(500)).unwrap_err();
    assert!(matches!(err, RetentionError::Archive { .. }), "{err}");
    assert_eq!(first_kept(&store), 1);
}

#[test]
fn kept_for_ever_or_not_due_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let last = fill(&store, 3, 30);
    triaged_to(&store, last);
    let never = KeepOptions {
        keep_days: None,
        archive_dir: None,
    };
    assert!(
        sweep(&store, &never, day(100_000))
            .unwrap()
            .deleted
            .is_empty()
    );
    // Day 33 with 31 days kept: day 2's Signals are exactly 31 days old, not past it.
    let swept = sweep(&store, &keep(31, None), day(33)).unwrap();
    assert!(swept.deleted.iter().all(|d| d.newest < day(2)));
    assert!(
        sweep(&store, &keep(31, None), day(31))
            .unwrap()
            .deleted
            .is_empty()
    );
    assert_eq!(first_kept(&store) > 1, !swept.deleted.is_empty());
}

#[test]
fn a_journal_not_in_its_own_log_is_not_swept_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_cache(dir.path(), 8 << 20).unwrap();
    assert!(matches!(applies(&store, &keep(730, None)), Err(Some(_))));
    let never = KeepOptions {
        keep_days: None,
        archive_dir: None,
    };
    assert_eq!(applies(&store, &never), Err(None));
    assert!(
        sweep(&store, &keep(31, None), day(1000))
            .unwrap()
            .deleted
            .is_empty()
    );
}
