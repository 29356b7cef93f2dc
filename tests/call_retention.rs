//! Retention of closed Calls by age (`[retention] closed_call_days`), on the store the server
//! uses (sled, and in CI PostgreSQL), with a fixed `now`: of eight Calls, the two closed
//! more than two years ago with nothing unsettled are archived (each whole, with its review
//! and dispatches) and deleted with their recording, each deletion audit-logged under the
//! person; three as old are held, each by what is still open (a dispatch, a review, an
//! event to the care system); the newer ones and an open Call are not touched. A dry run
//! changes nothing, a second sweep does nothing, one held is deleted once it is settled, a
//! closing not handed on holds its Call, and an archive that cannot be written keeps the
//! Calls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::io::Read;
use std::path::Path;

use jiff::civil::{Date, date};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use vakt::model::retention::Hold;
use vakt::model::review::{Review, ReviewDecision, ReviewVerdict};
use vakt::model::{
    Call, CallState, Dispatch, DispatchState, Outcome, Priority, TimelineEntry, TimelineEvent,
};
use vakt::retention::calls::CallAge;
use vakt::retention::{Retention, RetentionOptions};
use vakt::store::{OutboxRecord, Store};

fn tz() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}

fn at(d: Date, h: i8, m: i8) -> Timestamp {
    d.at(h, m, 0, 0).to_zoned(tz()).unwrap().timestamp()
}

/// Call `id` of `S-{id}`, opened at `opened` and closed 40 minutes later (or open), with a
/// note, and a closing marked for review if `review`.
fn call(id: u64, opened: Timestamp, closed: bool, review: bool) -> Call {
    let line = |mins: i64, what| TimelineEntry {
        at: opened + SignedDuration::from_mins(mins),
        user: Some("olle".into()),
        what,
    };
    let mut timeline = vec![
        line(
            0,
            TimelineEvent::Signal {
                signal_id: id * 10,
                account: format!("10{id}"),
                code: "CID 101".into(),
                description: "Personal emergency".into(),
                qualifier: "new".into(),
                zone: None,
            },
        ),
        line(1, TimelineEvent::Claimed),
        line(
            2,
            TimelineEvent::Note {
                text: "Har ramlat i hallen".into(),
            },
        ),
    ];
    if closed {
        timeline.push(line(
            40,
            TimelineEvent::Closed {
                outcome: Outcome::PatrolNeeded,
                note: "Fick hjälp upp".into(),
                override_reason: None,
                overrode: String::new(),
                review,
            },
        ));
    }
    Call {
        id,
        priority: Priority(1),
        state: if closed {
            CallState::Closed
        } else {
            CallState::Claimed
        },
        owner: Some("olle".into()),
        opened_at: opened,
        alarm_count: 1,
        subscriber: Some(format!("S-{id}")),
        account: format!("10{id}"),
        kind: "Fall".into(),
        restored: false,
        answered_at: Some(opened + SignedDuration::from_secs(30)),
        closed_at: closed.then(|| opened + SignedDuration::from_mins(40)),
        outcome: closed.then_some(Outcome::PatrolNeeded),
        timeline,
        last_signal_id: id * 10,
    }
}

fn dispatch(id: u64, call: &Call, state: DispatchState) -> Dispatch {
    let t0 = call.opened_at + SignedDuration::from_mins(5);
    let done = state == DispatchState::Completed;
    Dispatch {
        id,
        call: call.id,
        patrol: "c1".into(),
        provider: "hc".into(),
        area: "centrum".into(),
        state,
        offered_at: t0,
        received_at: Some(t0),
        accepted_at: Some(t0),
        arrived_at: done.then(|| t0 + SignedDuration::from_mins(20)),
        arrival_method: None,
        ended_at: done.then(|| t0 + SignedDuration::from_mins(30)),
        limit_mins: 30,
        warned_at_mins: Vec::new(),
        breached: false,
        note: "helped: uppe igen".into(),
        operator: "olle".into(),
        instruction: "Nyckel i nyckelskåpet".into(),
    }
}

/// A care-system event about `call` never acknowledged.
fn undelivered(store: &Store, id: u64, call: u64, created: Timestamp) {
    let rec = OutboxRecord {
        id,
        endpoint: "journal".into(),
        recipient_kind: "care_system".into(),
        recipient: "Vaktby kommun".into(),
        event: "care.alarm_handled".into(),
        subject: format!("call/{call}"),
        created_at: created,
        attempts: 40,
        last_attempt_at: Some(created),
        next_attempt_at: Some(created + SignedDuration::from_hours(1)),
        last_error: Some("connection refused".into()),
        delivered_at: None,
        body_bytes: 0,
    };
    store.outbox_add(&[(rec, b"{}".to_vec())]).unwrap();
}

fn retention(store: &Store, recordings: &Path, age: Option<CallAge>) -> Retention {
    retention_archiving(store, recordings, None, age)
}

fn retention_archiving(
    store: &Store,
    recordings: &Path,
    recording_archive: Option<&Path>,
    age: Option<CallAge>,
) -> Retention {
    Retention::new(
        store.clone(),
        None,
        RetentionOptions {
            days_after_end: 365,
            tz: tz(),
            recordings: recordings.to_path_buf(),
            recording_archive: recording_archive.map(Path::to_path_buf),
            closed_calls: age,
        },
    )
}

/// The archive's lines, as JSON values.
fn archived(path: &Path) -> Vec<serde_json::Value> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every closing owed handed on to the care system.
fn hand_on(store: &Store) {
    for id in store.closings_owed().unwrap() {
        assert!(store.closing_handed_on(id).unwrap());
    }
}

fn ids(store: &Store) -> Vec<u64> {
    (1..=20)
        .filter(|&id| store.call_head(id).unwrap().is_some())
        .collect()
}

#[test]
fn closed_calls_past_their_age_are_archived_and_deleted_and_the_unsettled_held() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::open_store(tmp.path()).unwrap();
    let recordings = tmp.path().join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    let arkiv = tmp.path().join("arkiv");
    let now = at(date(2026, 12, 7), 3, 0);
    // Two years: the cut-off is 2024-12-07 03:00.
    let age = CallAge {
        days: 730,
        archive_dir: Some(arkiv.clone()),
    };

    // Ids in the order the Calls were opened, as triage gives them.
    // 1: closed in 2023, reviewed, a visit done, a recording: due.
    let c1 = call(1, at(date(2023, 3, 1), 10, 0), true, true);
    // 2: still open since 2023 (Calls are never deleted open).
    let c2 = call(2, at(date(2023, 5, 1), 9, 0), false, false);
    // 3: closed in January 2024, its dispatch never ended: held.
    let c3 = call(3, at(date(2024, 1, 10), 8, 0), true, false);
    // 4: closed in 2024, its review never decided: held.
    let c4 = call(4, at(date(2024, 2, 1), 9, 0), true, true);
    // 5: closed in June 2024, an event to the care system never delivered: held.
    let c5 = call(5, at(date(2024, 6, 1), 12, 0), true, false);
    // 6: closed in November 2024: due.
    let c6 = call(6, at(date(2024, 11, 1), 9, 0), true, false);
    // 7: opened before the cut-off, closed after it: kept.
    let c7 = call(7, at(date(2024, 12, 7), 2, 50), true, false);
    // 8: closed a day inside the two years: kept.
    let c8 = call(8, at(date(2024, 12, 8), 9, 0), true, false);
    store
        .save_calls(
            &[&c1, &c2, &c3, &c4, &c5, &c6, &c7].map(|c| c.clone()),
            Some(70),
        )
        .unwrap();
    store
        .save_dispatches(&[
            dispatch(1, &c1, DispatchState::Completed),
            dispatch(2, &c3, DispatchState::Accepted),
            dispatch(3, &c6, DispatchState::Completed),
        ])
        .unwrap();
    let decided = store
        .decide_review(
            1,
            ReviewDecision {
                verdict: ReviewVerdict::Accepted,
                by: "sara".into(),
                at: at(date(2023, 3, 2), 9, 0),
                note: "Rätt bedömt".into(),
            },
        )
        .unwrap();
    assert!(matches!(decided, vakt::store::Decided::Made(_)));
    // The closings were handed to the care system long ago; Call 8's not yet.
    hand_on(&store);
    store.save_calls(&[c8], Some(80)).unwrap();
    undelivered(&store, 1, 5, at(date(2024, 6, 1), 13, 0));
    let rec1 = recordings.join("call-1_conv-3_20230301T090400Z.wav");
    let rec8 = recordings.join("call-8_conv-5_20241208T080400Z.wav");
    std::fs::write(&rec1, b"RIFF").unwrap();
    std::fs::write(&rec8, b"RIFF").unwrap();
    let whole1 = store.call(1).unwrap().unwrap();
    let review1: Review = store.review(1).unwrap().unwrap();

    // Off: nothing is due by age.
    let off = retention(&store, &recordings, None);
    assert_eq!(off.survey_calls(now).unwrap(), Default::default());
    assert!(off.sweep(now).unwrap().calls.deleted.is_empty());
    assert_eq!(ids(&store), [1, 2, 3, 4, 5, 6, 7, 8]);

    // A dry run says who is due and who is held, and changes nothing.
    let recording_arkiv = tmp.path().join("arkiv-inspelningar");
    let r = retention_archiving(
        &store,
        &recordings,
        Some(&recording_arkiv),
        Some(age.clone()),
    );
    let dry = r.survey_calls(now).unwrap();
    assert_eq!(dry.due, [1, 6]);
    assert_eq!(
        dry.held,
        [
            (3, vec![Hold::OpenDispatch { dispatch: 2 }]),
            (4, vec![Hold::PendingReview { call: 4 }]),
            (5, vec![Hold::Undelivered { delivery: 1 }]),
        ]
    );
    assert!(dry.deleted.is_empty() && dry.archives.is_empty());
    assert_eq!(ids(&store), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(!arkiv.exists());
    let text = vakt::retention::to_text(
        &vakt::retention::Report {
            calls: dry,
            ..Default::default()
        },
        true,
    );
    assert!(text.contains("due\tclosed Calls\t2 of ids 1..=6"), "{text}");
    assert!(
        text.contains("held\tCall 3\tdispatch 2 waits for its patrol"),
        "{text}"
    );

    // The sweep.
    let audit_before = store.audit_latest(1_000).unwrap().len();
    let report = r.sweep(now).unwrap();
    assert_eq!(report.calls_failed, None);
    let gone: Vec<u64> = report.calls.deleted.iter().map(|g| g.call).collect();
    assert_eq!(gone, [1, 6]);
    assert_eq!(report.calls.deleted[0].dispatches, 1);
    assert_eq!(report.calls.deleted[0].recordings, 1);
    assert_eq!(report.calls.deleted[0].lines, whole1.timeline.len());
    assert_eq!(report.calls.deleted[0].closed_at, c1.closed_at.unwrap());
    assert_eq!(report.calls.held.len(), 3);
    assert_eq!(ids(&store), [2, 3, 4, 5, 7, 8]);
    assert!(store.dispatches_of_call(1).unwrap().is_empty());
    assert_eq!(store.dispatch(1).unwrap(), None);
    assert_eq!(store.dispatch(3).unwrap(), None);
    assert!(
        store.dispatch(2).unwrap().is_some(),
        "the held Call's dispatch is kept"
    );
    assert_eq!(store.review(1).unwrap(), None);
    assert!(store.review(4).unwrap().is_some());
    assert!(!rec1.exists(), "the deleted Call's recording goes with it");
    assert!(rec8.exists());
    // Archived first, as configured for recordings.
    let rec1_gz = recording_arkiv.join("call-1_conv-3_20230301T090400Z.wav.gz");
    let mut sound = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&rec1_gz).unwrap())
        .read_to_end(&mut sound)
        .unwrap();
    assert_eq!(sound, b"RIFF");
    // The open Call is not deleted even when asked directly.
    assert_eq!(store.delete_closed_call(2).unwrap(), None);

    // The archive holds each Call whole, with its review and dispatches.
    assert_eq!(report.calls.archives.len(), 1);
    let file = &report.calls.archives[0];
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("vakt-calls-00000000000000000001-00000000000000000006-20261207T020000"),
        "{name}"
    );
    assert!(name.ends_with(".jsonl.gz"), "{name}");
    let lines = archived(file);
    assert_eq!(lines.len(), 2);
    let back: Call = serde_json::from_value(lines[0]["call"].clone()).unwrap();
    assert_eq!(back, whole1);
    let back: Review = serde_json::from_value(lines[0]["review"].clone()).unwrap();
    assert_eq!(back, review1);
    let back: Vec<Dispatch> = serde_json::from_value(lines[0]["dispatches"].clone()).unwrap();
    assert_eq!(back, [dispatch(1, &c1, DispatchState::Completed)]);
    assert_eq!(lines[1]["call"]["id"], 6);
    assert!(lines[1]["review"].is_null());
    let left: Vec<_> = std::fs::read_dir(&arkiv)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "no .part left: {left:?}");

    // Each deletion audit-logged by vakt, under the Call and its person.
    let audit = store.audit_latest(1_000).unwrap();
    let new = &audit[..audit.len() - audit_before];
    let deletes: Vec<(Option<u64>, Option<&str>)> = new
        .iter()
        .filter(|e| e.action == "call.delete")
        .map(|e| (e.call, e.subscriber.as_deref()))
        .collect();
    assert_eq!(deletes.len(), 2);
    assert!(deletes.contains(&(Some(1), Some("S-1"))));
    assert!(deletes.contains(&(Some(6), Some("S-6"))));
    assert!(new.iter().all(|e| e.user == "vakt"));
    let one = new
        .iter()
        .find(|e| e.action == "call.delete" && e.call == Some(1))
        .unwrap();
    assert!(
        one.detail.contains("1 dispatch(es), 1 recording(s)"),
        "{}",
        one.detail
    );
    assert!(one.detail.contains(&name), "{}", one.detail);
    let recording: Vec<&str> = new
        .iter()
        .filter(|e| e.action == "recording.delete")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(recording.len(), 1);
    assert!(
        recording[0].ends_with("archived to call-1_conv-3_20230301T090400Z.wav.gz"),
        "{recording:?}"
    );

    // A second sweep does nothing.
    let again = r.sweep(now).unwrap();
    assert!(again.calls.deleted.is_empty());
    assert!(again.calls.archives.is_empty());
    assert_eq!(again.calls.held.len(), 3);

    // The event withdrawn: Call 5 goes at the next sweep.
    assert!(store.outbox_withdraw(1, "given up").unwrap());
    let next = r.sweep(now + SignedDuration::from_mins(10)).unwrap();
    let gone: Vec<u64> = next.calls.deleted.iter().map(|g| g.call).collect();
    assert_eq!(gone, [5]);
    assert_eq!(ids(&store), [2, 3, 4, 7, 8]);

    // Seven weeks on, Calls 7 and 8 are past the two years too; 8's closing not handed to
    // the care system yet holds it.
    let later = at(date(2027, 1, 25), 3, 0);
    let held = r.survey_calls(later).unwrap();
    assert_eq!(held.due, [7]);
    assert!(
        held.held
            .contains(&(8, vec![Hold::ClosingOwed { call: 8 }])),
        "{held:?}"
    );
    hand_on(&store);
    // An archive that cannot be written keeps the Calls; without an archive they go.
    let blocked = tmp.path().join("a-file");
    std::fs::write(&blocked, b"x").unwrap();
    let failing = retention(
        &store,
        &recordings,
        Some(CallAge {
            days: 730,
            archive_dir: Some(blocked.join("arkiv")),
        }),
    );
    let failed = failing.sweep(later).unwrap();
    assert!(
        failed.calls_failed.as_deref().unwrap().contains("a-file"),
        "{failed:?}"
    );
    assert!(failed.calls.deleted.is_empty());
    assert_eq!(ids(&store), [2, 3, 4, 7, 8]);
    assert!(rec8.exists(), "nothing of the chunk deleted");
    let plain = retention(
        &store,
        &recordings,
        Some(CallAge {
            days: 730,
            archive_dir: None,
        }),
    );
    let done = plain.sweep(later).unwrap();
    let gone: Vec<u64> = done.calls.deleted.iter().map(|g| g.call).collect();
    assert_eq!(gone, [7, 8]);
    assert!(done.calls.archives.is_empty());
    assert!(!rec8.exists());
    assert_eq!(ids(&store), [2, 3, 4]);
}

/// `vakt retention run` with `closed_call_days` in the configuration: the dry run lists the
/// Call due and the one held, the run archives and deletes it (the archive under the data
/// directory), and a failed archive exits 1.
#[test]
fn the_command_lists_the_calls_due_and_held_and_then_deletes() {
    const BIN: &str = env!("CARGO_BIN_EXE_vakt");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let store = Store::open(&dir).unwrap();
        // Closed in 2020 (due), closed in 2021 with its dispatch never ended (held), and
        // closed yesterday.
        let old = call(1, at(date(2020, 3, 1), 10, 0), true, false);
        let held = call(2, at(date(2021, 3, 1), 10, 0), true, false);
        let new = call(
            3,
            Timestamp::now() - SignedDuration::from_hours(30),
            true,
            false,
        );
        store
            .save_calls(&[old, held.clone(), new], Some(30))
            .unwrap();
        store
            .save_dispatches(&[dispatch(1, &held, DispatchState::Offered)])
            .unwrap();
        hand_on(&store);
    }
    let config = |name: &str, archive: &str| {
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!(
                "data_dir = \"{}\"\n[retention]\nclosed_call_days = 365\narchive_dir = \"{archive}\"\n",
                dir.display()
            ),
        )
        .unwrap();
        path
    };
    let run = |cfg: &Path, args: &[&str]| {
        std::process::Command::new(BIN)
            .args(["retention", "run", "--config"])
            .arg(cfg)
            .args(args)
            .output()
            .unwrap()
    };
    let good = config("vakt.toml", "arkiv");
    let out = run(&good, &["--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    let dry = String::from_utf8(out.stdout).unwrap();
    assert!(
        dry.starts_with(
            "held\tCall 2\tdispatch 1 waits for its patrol\n\
             due\tclosed Calls\t1 of ids 1..=1\n\
             closed Calls past their retention: 0 deleted, 1 due, 1 held\n"
        ),
        "{dry}"
    );
    assert!(!dir.join("arkiv").exists(), "a dry run writes nothing");

    // An archive folder that cannot be made: exit 1, nothing deleted.
    std::fs::write(tmp.path().join("a-file"), b"x").unwrap();
    let bad = config(
        "bad.toml",
        &tmp.path()
            .join("a-file")
            .join("arkiv")
            .display()
            .to_string(),
    );
    let out = run(&bad, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("failed\tclosed Calls\tarchive "), "{text}");

    let out = run(&good, &[]);
    assert!(out.status.success(), "{out:?}");
    let done = String::from_utf8(out.stdout).unwrap();
    assert!(
        done.contains("closed Calls past their retention: 1 deleted, archived to "),
        "{done}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.join("arkiv"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(archived(&files[0])[0]["call"]["id"], 1);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.call_head(1).unwrap(), None);
    assert!(store.call_head(2).unwrap().is_some());
    assert!(store.call_head(3).unwrap().is_some());
}
