//! Work orders through the service with a real store in a temporary directory and fixed
//! times (Europe/Stockholm): a fault Signal makes an order with the seed-004 deadlines, a
//! repeat or a restore is attached (the order stays open), cancelling needs a reason and
//! makes a replacement, orders become late at the right moments, and everything survives a
//! reopening of the store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::path::Path;
use std::sync::Arc;
use vakt::model::testing;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use vakt::model::{Device, Signal};
use vakt::store::Store;
use vakt::work_orders::{
    Filter, Lateness, MAX_REASON_CHARS, OrderEventKind, Report, StateFilter, What, WorkOrderError,
    WorkOrderOptions, WorkOrderState, WorkOrders,
};
use vakt_proto::event::Qualifier;

fn tz() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}

/// A Stockholm local time.
fn local(s: &str) -> Timestamp {
    s.parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(tz())
        .unwrap()
        .timestamp()
}

fn device(account: &str) -> Device {
    Device {
        account: account.into(),
        line: None,
        receiver: None,
        key: None,
        key_format: None,
        subscriber: Some(format!("sub-{account}")),
        supervision_secs: Some(90),
        telecom_operator: Some("Telia".into()),
        area: Some("Centrum".into()),
        device_type: Some("carephone".into()),
        sip_user: None,
        sip_password: None,
        phone: None,
    }
}

fn signal(id: u64, account: &str, code: &str, q: Qualifier, received: Timestamp) -> Signal {
    Signal {
        id,
        received_at: received,
        peer: "127.0.0.1:40000".parse().unwrap(),
        account: account.into(),
        subscriber: Some(format!("sub-{account}")),
        device_type: Some("carephone".into()),
        events: vec![testing::event(code, q)],
        ..testing::signal()
    }
}

fn open(dir: &Path, now: Timestamp) -> WorkOrders {
    let store = Store::open(dir).unwrap();
    WorkOrders::open(store, &WorkOrderOptions::default(), tz(), now).unwrap()
}

#[test]
fn low_battery_makes_an_order_with_the_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    // Monday 2 March 2026, 09:00.
    let now = local("2026-03-02T09:00");
    let wo = open(dir.path(), now);
    let s = signal(41, "1234", "CID 302", Qualifier::New, now);
    let changes = wo.on_signal(&s, &device("1234"), None, now).unwrap();
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(c.what, What::Created);
    assert_eq!(c.what.event(), "work_order.created");
    let o = &c.order;
    assert_eq!(o.id, 1);
    assert_eq!(o.account, "1234");
    assert_eq!(o.subscriber.as_deref(), Some("sub-1234"));
    assert_eq!(o.installer, "hjalpmedelscentralen");
    assert_eq!(o.fault, vakt::work_orders::FaultKind::LowBattery);
    assert_eq!(o.state, WorkOrderState::New);
    assert_eq!(o.created_at, now);
    // Tuesday, Wednesday, Thursday: started before Friday 00:00; done 10 days later.
    assert_eq!(o.start_by, local("2026-03-06T00:00"));
    assert_eq!(o.done_by, local("2026-03-12T09:00"));
    assert_eq!(o.signal_ids, [41]);
    assert_eq!(o.timeline.len(), 1);
    assert_eq!(o.timeline[0].kind, OrderEventKind::Created);
    assert_eq!(o.timeline[0].signal, Some(41));
    assert_eq!(o.timeline[0].text.as_deref(), Some("CID 302"));
    assert_eq!(wo.get(1).unwrap().as_ref(), Some(o));
    // The registry's installer, when it names one.
    let m = signal(42, "5678", "SIA AT", Qualifier::New, now);
    let c = wo
        .on_signal(&m, &device("5678"), Some("Larmteknik AB"), now)
        .unwrap();
    assert_eq!(c[0].order.installer, "Larmteknik AB");
    assert_eq!(c[0].order.fault, vakt::work_orders::FaultKind::MainsLoss);
    assert_eq!(wo.counts(now).open, 2);
}

#[test]
fn a_repeat_attaches_and_a_restore_never_closes() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = local("2026-03-02T09:00");
    let wo = open(dir.path(), t0);
    let dev = device("1234");
    wo.on_signal(
        &signal(1, "1234", "CID 302", Qualifier::New, t0),
        &dev,
        None,
        t0,
    )
    .unwrap();
    // The same fault again, an hour later: attached, no second order.
    let t1 = local("2026-03-02T10:00");
    let c = wo
        .on_signal(
            &signal(2, "1234", "SIA YT", Qualifier::New, t1),
            &dev,
            None,
            t1,
        )
        .unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].what.clone(), c[0].order.id), (What::Attached, 1));
    assert_eq!(c[0].order.repeats, 1);
    assert_eq!(c[0].order.signal_ids, [1, 2]);
    assert_eq!(c[0].order.timeline[1].kind, OrderEventKind::FaultRepeated);
    assert_eq!(c[0].order.timeline[1].at, t1);
    // Deadlines do not move with a repeat.
    assert_eq!(c[0].order.start_by, local("2026-03-06T00:00"));
    // Battery OK: attached with its time, the order stays open.
    let t2 = local("2026-03-02T11:30");
    let c = wo
        .on_signal(
            &signal(3, "1234", "SIA YR", Qualifier::Restore, t2),
            &dev,
            None,
            t2,
        )
        .unwrap();
    assert_eq!(c[0].what, What::Restored);
    let o = &c[0].order;
    assert_eq!(o.state, WorkOrderState::New);
    assert_eq!((o.restores, o.restored_at), (1, Some(t2)));
    assert_eq!(o.timeline[2].kind, OrderEventKind::Restored);
    assert_eq!(o.timeline[2].at, t2);
    assert_eq!(wo.list(&Filter::default(), t2).unwrap().len(), 1);
    // The fault again: no longer restored.
    let t3 = local("2026-03-03T08:00");
    let c = wo
        .on_signal(
            &signal(4, "1234", "CID 384", Qualifier::New, t3),
            &dev,
            None,
            t3,
        )
        .unwrap();
    assert_eq!((c[0].order.repeats, c[0].order.restored_at), (2, None));
    // A restore of a fault with no open order changes nothing; another fault is its own order.
    let c = wo
        .on_signal(
            &signal(5, "1234", "SIA AR", Qualifier::Restore, t3),
            &dev,
            None,
            t3,
        )
        .unwrap();
    assert!(c.is_empty());
    let c = wo
        .on_signal(
            &signal(6, "1234", "CID 383", Qualifier::New, t3),
            &dev,
            None,
            t3,
        )
        .unwrap();
    assert_eq!((c[0].what.clone(), c[0].order.id), (What::Created, 2));
    // Once done, the next fault makes a new order.
    wo.done(1, "sara", "New battery", t3).unwrap();
    let c = wo
        .on_signal(
            &signal(7, "1234", "CID 302", Qualifier::New, t3),
            &dev,
            None,
            t3,
        )
        .unwrap();
    assert_eq!((c[0].what.clone(), c[0].order.id), (What::Created, 3));
}

#[test]
fn cancel_needs_a_reason_and_makes_a_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = local("2026-03-02T09:00");
    let wo = open(dir.path(), t0);
    let dev = device("1234");
    wo.on_signal(
        &signal(1, "1234", "CID 144", Qualifier::New, t0),
        &dev,
        None,
        t0,
    )
    .unwrap();
    let t1 = local("2026-03-05T14:00");
    for reason in ["", "   ", &"x".repeat(MAX_REASON_CHARS + 1)] {
        assert!(
            matches!(
                wo.cancel(1, "sara", reason, t1),
                Err(WorkOrderError::Invalid(_))
            ),
            "{reason:?}"
        );
    }
    assert_eq!(wo.get(1).unwrap().unwrap().state, WorkOrderState::New);
    let changes = wo
        .cancel(1, "sara", " The technician could not reach the person ", t1)
        .unwrap();
    assert_eq!(changes.len(), 2);
    let (old, new) = (&changes[0], &changes[1]);
    assert_eq!(old.what, What::Cancelled { replacement: 2 });
    assert_eq!(old.order.state, WorkOrderState::Cancelled);
    assert_eq!(old.order.cancelled_at, Some(t1));
    assert_eq!(
        old.order.cancel_reason.as_deref(),
        Some("The technician could not reach the person")
    );
    assert_eq!(old.order.replaced_by, Some(2));
    assert_eq!(new.what, What::Created);
    let r = &new.order;
    assert_eq!(
        (r.id, r.replaces, r.state),
        (2, Some(1), WorkOrderState::New)
    );
    assert_eq!((r.account.as_str(), r.fault), ("1234", old.order.fault));
    assert_eq!(r.installer, old.order.installer);
    // New deadlines, counted from the cancellation (Thursday): Fri, Mon, Tue.
    assert_eq!(r.created_at, t1);
    assert_eq!(r.start_by, local("2026-03-11T00:00"));
    assert_eq!(r.done_by, local("2026-03-15T14:00"));
    // The replacement is the device's open order for the fault now.
    let t2 = local("2026-03-06T08:00");
    let c = wo
        .on_signal(
            &signal(2, "1234", "SIA TA", Qualifier::New, t2),
            &dev,
            None,
            t2,
        )
        .unwrap();
    assert_eq!((c[0].what.clone(), c[0].order.id), (What::Attached, 2));
    // A cancelled or done order cannot be cancelled, started or done again.
    for r in [
        wo.cancel(1, "sara", "again", t2).map(|_| ()),
        wo.start(1, "sara", t2).map(|_| ()),
        wo.done(1, "sara", "", t2).map(|_| ()),
    ] {
        assert!(matches!(
            r,
            Err(WorkOrderError::State {
                state: WorkOrderState::Cancelled,
                ..
            })
        ));
    }
    // A reported fault's replacement keeps its Call.
    let rep = wo
        .report(
            Report {
                account: "5678",
                subscriber: Some("sub-5678"),
                installer: None,
                call: Some(17),
                user: "olle",
                note: "The pendant does not work",
            },
            t2,
        )
        .unwrap();
    let c = wo.cancel(rep.order.id, "sara", "No answer", t2).unwrap();
    assert_eq!(c[1].order.call, Some(17));
    assert_eq!(c[1].order.fault, vakt::work_orders::FaultKind::Reported);
}

#[test]
fn orders_become_late_at_the_right_moments() {
    let dir = tempfile::tempdir().unwrap();
    // Friday 6 March 2026, 18:00: counting starts Monday.
    let t0 = local("2026-03-06T18:00");
    let wo = open(dir.path(), t0);
    wo.on_signal(
        &signal(1, "1234", "CID 301", Qualifier::New, t0),
        &device("1234"),
        None,
        t0,
    )
    .unwrap();
    let o = wo.get(1).unwrap().unwrap();
    assert_eq!(o.start_by, local("2026-03-12T00:00"));
    assert_eq!(o.done_by, local("2026-03-16T18:00"));
    let overdue = |now| {
        wo.list(
            &Filter {
                overdue: true,
                ..Filter::default()
            },
            now,
        )
        .unwrap()
        .len()
    };
    // Wednesday 23:59:59 is still in time; Thursday 00:00 is late.
    let before = local("2026-03-11T23:59:59");
    assert_eq!(o.lateness(before), None);
    assert_eq!((wo.overdue(before).len(), overdue(before)), (0, 0));
    assert_eq!(wo.counts(before).overdue, 0);
    let at = local("2026-03-12T00:00");
    assert_eq!(o.lateness(at), Some(Lateness::NotStarted));
    assert_eq!((wo.overdue(at).len(), overdue(at)), (1, 1));
    assert_eq!(wo.counts(at).overdue, 1);
    assert_eq!(o.clone().view(at).overdue, Some(Lateness::NotStarted));
    // Started late: no longer "not started"; late again when not done by done_by.
    let c = wo.start(1, "sara", local("2026-03-12T10:00")).unwrap();
    assert_eq!(c.order.lateness(local("2026-03-16T17:59:59")), None);
    assert_eq!(wo.overdue(local("2026-03-16T17:59:59")).len(), 0);
    let late = local("2026-03-16T18:00");
    assert_eq!(wo.overdue(late)[0].lateness(late), Some(Lateness::NotDone));
    // Done: never late.
    wo.done(1, "sara", "", local("2026-03-17T09:00")).unwrap();
    assert!(wo.overdue(local("2027-01-01T00:00")).is_empty());
    assert_eq!(wo.counts(local("2027-01-01T00:00")).open, 0);
}

#[test]
fn lists_filter_by_state_device_and_lateness() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = local("2026-03-02T09:00");
    let wo = open(dir.path(), t0);
    for (id, account, code) in [
        (1, "1234", "CID 302"),
        (2, "1234", "CID 144"),
        (3, "5678", "CID 302"),
        (4, "9ABC", "CID 300"),
    ] {
        wo.on_signal(
            &signal(id, account, code, Qualifier::New, t0),
            &device(account),
            None,
            t0,
        )
        .unwrap();
    }
    wo.start(2, "sara", t0).unwrap();
    wo.done(3, "sara", "ok", t0).unwrap();
    wo.cancel(4, "sara", "no answer", t0).unwrap();
    let ids = |f: Filter| -> Vec<u64> { wo.list(&f, t0).unwrap().iter().map(|o| o.id).collect() };
    let with = |state| Filter {
        state,
        ..Filter::default()
    };
    assert_eq!(ids(Filter::default()), [5, 2, 1], "open, newest first");
    assert_eq!(ids(with(StateFilter::New)), [5, 1]);
    assert_eq!(ids(with(StateFilter::Started)), [2]);
    assert_eq!(ids(with(StateFilter::Done)), [3]);
    assert_eq!(ids(with(StateFilter::Cancelled)), [4]);
    assert_eq!(ids(with(StateFilter::All)), [5, 4, 3, 2, 1]);
    assert_eq!(
        ids(Filter {
            account: Some("1234".into()),
            state: StateFilter::All,
            ..Filter::default()
        }),
        [2, 1]
    );
    assert_eq!(
        ids(Filter {
            limit: 2,
            state: StateFilter::All,
            ..Filter::default()
        }),
        [5, 4]
    );
    // A municipality's people: their orders only, the limit counted among them.
    let within = |people: &[&str], limit| Filter {
        subscribers: Some(people.iter().map(|p| (*p).to_owned()).collect()),
        state: StateFilter::All,
        limit,
        ..Filter::default()
    };
    assert_eq!(ids(within(&["sub-1234", "sub-5678"], 10)), [3, 2, 1]);
    assert_eq!(ids(within(&["sub-1234", "sub-5678"], 1)), [3]);
    assert_eq!(ids(within(&[], 10)), Vec::<u64>::new());
    assert_eq!(wo.open_of("1234").len(), 2);
    assert_eq!(wo.open_of("9ABC")[0].replaces, Some(4));
}

#[test]
fn orders_survive_a_reopened_store() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = local("2026-03-02T09:00");
    let before: Vec<_>;
    {
        let wo = open(dir.path(), t0);
        let dev = device("1234");
        wo.on_signal(
            &signal(1, "1234", "CID 302", Qualifier::New, t0),
            &dev,
            None,
            t0,
        )
        .unwrap();
        wo.on_signal(
            &signal(2, "1234", "SIA YR", Qualifier::Restore, t0),
            &dev,
            None,
            t0,
        )
        .unwrap();
        wo.on_signal(
            &signal(3, "1234", "CID 137", Qualifier::New, t0),
            &dev,
            None,
            t0,
        )
        .unwrap();
        wo.start(2, "sara", t0).unwrap();
        wo.cancel(1, "sara", "No answer at the door", t0).unwrap();
        before = (1..=3).map(|id| wo.get(id).unwrap().unwrap()).collect();
    }
    let t1 = local("2026-03-03T09:00");
    let wo = open(dir.path(), t1);
    let after: Vec<_> = (1..=3).map(|id| wo.get(id).unwrap().unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(wo.counts(t1).open, 2);
    let states: Vec<_> = after.iter().map(|o| o.state).collect();
    assert_eq!(
        states,
        [
            WorkOrderState::Cancelled,
            WorkOrderState::Started,
            WorkOrderState::New
        ]
    );
    // The open orders are found again by device and fault, and ids continue.
    let dev = device("1234");
    let c = wo
        .on_signal(
            &signal(4, "1234", "CID 302", Qualifier::New, t1),
            &dev,
            None,
            t1,
        )
        .unwrap();
    assert_eq!((c[0].what.clone(), c[0].order.id), (What::Attached, 3));
    let c = wo
        .on_signal(
            &signal(5, "1234", "CID 301", Qualifier::New, t1),
            &dev,
            None,
            t1,
        )
        .unwrap();
    assert_eq!((c[0].what.clone(), c[0].order.id), (What::Created, 4));
    // The journal replayed from before the restart counts nothing twice.
    for (id, code, q) in [
        (1, "CID 302", Qualifier::New),
        (2, "SIA YR", Qualifier::Restore),
        (3, "CID 137", Qualifier::New),
        (4, "CID 302", Qualifier::New),
        (5, "CID 301", Qualifier::New),
    ] {
        let s = signal(id, "1234", code, q, t1);
        assert!(wo.on_signal(&s, &dev, None, t1).unwrap().is_empty(), "{id}");
    }
}

#[test]
fn one_open_order_per_device_and_fault_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = local("2026-03-02T09:00");
    let wo = Arc::new(open(dir.path(), t0));
    let threads: Vec<_> = (0..8u64)
        .map(|_| {
            let wo = wo.clone();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let account = ["1234", "5678"][(i % 2) as usize];
                    // Id 0: not journaled, so no replay mark; every one counts.
                    let s = signal(0, account, "CID 302", Qualifier::New, t0);
                    wo.on_signal(&s, &device(account), None, t0).unwrap();
                    if i % 10 == 0 {
                        let _ = wo.list(&Filter::default(), t0).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let open = wo.list(&Filter::default(), t0).unwrap();
    assert_eq!(open.len(), 2);
    let repeats: u32 = open.iter().map(|o| o.repeats).sum();
    assert_eq!(repeats, 8 * 50 - 2);
}
