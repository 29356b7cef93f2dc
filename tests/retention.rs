//! Retention of a subscriber's personal data after the end, on the store the server uses
//! (sled, and in CI PostgreSQL): Åsa's alarm ended a year and more ago, with a closed Call
//! (notes, a phone call, a relative called, a recorded conversation, a review), a completed
//! dispatch (a visit), orders, key receipts with the keys back, a response plan and a
//! care-system event never delivered. The sweep past the time deletes her card, plan and
//! recording, withdraws the event and anonymises the rest under one pseudonym; nothing stored
//! names her any more; billing and the visits report still count her; the audit log has each
//! step by `vakt`; a second sweep changes nothing. Beside her: one held by keys still out,
//! one active and one ended yesterday, all kept; and one whose retention was cut short,
//! finished with the pseudonym chosen before.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;

use vakt::model::calendar::WorkingDays;
use vakt::model::keys::{HandoverReason, Holder, Receipt, ReceiptState};
use vakt::model::life::{Consent, Life, LifeStatus};
use vakt::model::order::{KeyCount, KeyKind, NewOrder, Order, OrderKind, OrderOptions};
use vakt::model::retention::{Hold, is_pseudonym};
use vakt::model::review::{ReviewDecision, ReviewVerdict};
use vakt::model::work_order::{OrderEvent, OrderEventKind};
use vakt::model::{
    ArrivalMethod, Call, CallDirection, CallState, Contact, Conversation, ConversationEnd,
    Dispatch, DispatchState, Outcome, PhoneParty, Priority, Subscriber, TimelineEntry,
    TimelineEvent,
};
use vakt::model::{FaultKind, Incident, IncidentDevice, IncidentKind, WorkOrder, WorkOrderState};
use vakt::retention::{Retention, RetentionOptions};
use vakt::store::{OutboxRecord, Store};

const NAME: &str = "Åsa Öberg";
const PNR: &str = "19380512-9802";
const PHONE: &str = "+46 70 111 22 33";
const RELATIVE: &str = "Björn Öberg";
const RELATIVE_PHONE: &str = "+46 70 999 88 77";
const HEALTH: &str = "Diabetes, insulin morgon och kväll";

fn tz() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}

fn at(d: Date, h: i8, m: i8) -> Timestamp {
    d.at(h, m, 0, 0).to_zoned(tz()).unwrap().timestamp()
}

fn card(id: &str, name: &str) -> Subscriber {
    let mut s = Subscriber {
        id: id.into(),
        name: name.into(),
        personal_number: PNR.into(),
        address: "Storgatan 1".into(),
        postcode: "903 25".into(),
        city: "Umeå".into(),
        area: "centrum".into(),
        phone: PHONE.into(),
        care_provider: "hc".into(),
        // Placed here by another municipality, which pays.
        municipality: "Nordby kommun".into(),
        health_notes: HEALTH.into(),
        contacts: vec![Contact {
            name: RELATIVE.into(),
            relation: "son".into(),
            phone: RELATIVE_PHONE.into(),
        }],
        language: "sv".into(),
        ..Subscriber::default()
    };
    s.access.door_code = "4711".into();
    s
}

/// Another person's card: nothing in it is Åsa's.
fn other_card(id: &str, name: &str, n: u8) -> Subscriber {
    Subscriber {
        id: id.into(),
        name: name.into(),
        personal_number: format!("1940010{n}-1234"),
        address: format!("Ågatan {n}"),
        postcode: "903 26".into(),
        city: "Umeå".into(),
        area: "centrum".into(),
        phone: format!("+46 70 000 00 0{n}"),
        care_provider: "hc".into(),
        language: "sv".into(),
        ..Subscriber::default()
    }
}

fn life(id: &str, status: LifeStatus, ended_on: Option<Date>, signer: &str) -> Life {
    let mut l = Life::ordered(
        id,
        None,
        at(date(2025, 1, 2), 9, 0),
        "care-system:procapita",
    );
    l.installed_on = Some(date(2025, 1, 7));
    l.consent = Some(Consent {
        signed_on: date(2025, 1, 7),
        signed_by: signer.into(),
        recorded_by: "sara".into(),
        recorded_at: at(date(2025, 1, 7), 10, 0),
    });
    l.note(
        at(date(2025, 1, 7), 10, 0),
        "sara",
        format!("consent signed on 2025-01-07 by {signer}"),
    );
    l.status = status;
    l.ended_on = ended_on;
    l
}

fn save_life(store: &Store, l: &Life) {
    store
        .update_life::<vakt::store::StoreError>(&l.subscriber, |_| Ok(l.clone()))
        .unwrap();
}

/// The keys from the person to the installer, and (unless `keep_out`) back at the end.
fn keys(store: &Store, id: &str, keep_out: bool, signer: &str) {
    let door = vec![KeyCount {
        kind: KeyKind::Door,
        count: 2,
    }];
    let signed = |when: Timestamp, handed_by: &str, received_by: &str| ReceiptState::Signed {
        at: when,
        handed_by: handed_by.into(),
        received_by: received_by.into(),
        recorded_by: "sara".into(),
    };
    store
        .add_receipt(|rid| Receipt {
            id: rid,
            subscriber: id.into(),
            from: Holder::Subscriber,
            to: Holder::Cabinet,
            items: door.clone(),
            reason: HandoverReason::Installation,
            order: None,
            written_at: at(date(2025, 1, 7), 9, 0),
            written_by: "sara".into(),
            state: signed(at(date(2025, 1, 7), 9, 5), signer, "Ivar Installatör"),
        })
        .unwrap();
    if !keep_out {
        store
            .add_receipt(|rid| Receipt {
                id: rid,
                subscriber: id.into(),
                from: Holder::Cabinet,
                to: Holder::Subscriber,
                items: door.clone(),
                reason: HandoverReason::End,
                order: None,
                written_at: at(date(2025, 11, 20), 9, 0),
                written_by: "sara".into(),
                state: signed(at(date(2025, 11, 20), 9, 5), "Ivar Installatör", signer),
            })
            .unwrap();
    }
}

fn order(store: &Store, id: &str, kind: OrderKind, external: &str) -> Order {
    let days = WorkingDays::new([], tz());
    let new = NewOrder {
        external_id: Some(external.into()),
        kind: Some(kind),
        subscriber: id.into(),
        decided_on: Some(date(2025, 1, 2)),
        health_notes: HEALTH.into(),
        directions: format!("Ring {RELATIVE} på {RELATIVE_PHONE}"),
        note: format!("{NAME} vill ha larmet på vänster arm"),
        ..NewOrder::default()
    };
    let stored = store
        .add_order(|oid| {
            let mut o = Order::new(
                oid,
                kind,
                new.clone(),
                "care-system:procapita",
                at(date(2025, 1, 2), 9, 0),
                &days,
                &OrderOptions::default(),
            );
            o.complete(at(date(2025, 1, 7), 12, 0), "sara").unwrap();
            o
        })
        .unwrap();
    match stored {
        vakt::store::Stored::New(o) => o,
        vakt::store::Stored::Known(o) => o,
    }
}

/// Åsa's closed Call 1 (a fall on 2025-11-03), reviewed, with every kind of text that can
/// quote her, and its completed dispatch 1.
fn call_and_visit(store: &Store, subscriber: &str) {
    let t0 = at(date(2025, 11, 3), 14, 0);
    let line = |mins: i64, user: Option<&str>, what| TimelineEntry {
        at: t0 + jiff::SignedDuration::from_mins(mins),
        user: user.map(str::to_owned),
        what,
    };
    let call = Call {
        id: 1,
        priority: Priority(1),
        state: CallState::Closed,
        owner: Some("olle".into()),
        opened_at: t0,
        alarm_count: 1,
        subscriber: Some(subscriber.into()),
        account: "1234".into(),
        kind: "Fall".into(),
        restored: false,
        answered_at: Some(t0 + jiff::SignedDuration::from_secs(40)),
        closed_at: Some(t0 + jiff::SignedDuration::from_mins(50)),
        outcome: Some(Outcome::PatrolNeeded),
        timeline: vec![
            line(
                0,
                None,
                TimelineEvent::Signal {
                    signal_id: 10,
                    account: "1234".into(),
                    code: "CID 101".into(),
                    description: "Personal emergency".into(),
                    qualifier: "new".into(),
                    zone: None,
                },
            ),
            line(1, Some("olle"), TimelineEvent::Claimed),
            line(
                2,
                Some("olle"),
                TimelineEvent::Note {
                    text: format!("{NAME} har ramlat i badrummet, {HEALTH}"),
                },
            ),
            line(
                3,
                Some("olle"),
                TimelineEvent::PhoneCall {
                    to: PhoneParty::Person,
                    answered: Some(true),
                    note: format!("Svarade på {PHONE}"),
                },
            ),
            line(
                4,
                Some("olle"),
                TimelineEvent::RelativeCall {
                    plan_version: 0,
                    contact: 0,
                    name: RELATIVE.into(),
                    relation: "son".into(),
                    result: vakt::model::plan::RelativeResult::Answered,
                    note: format!("{RELATIVE} kommer"),
                },
            ),
            line(
                5,
                Some("olle"),
                TimelineEvent::Conversation(Conversation {
                    id: 3,
                    direction: CallDirection::Outbound,
                    party: RELATIVE_PHONE.into(),
                    to_relative: Some(true),
                    operator: Some("olle".into()),
                    ring_secs: 5,
                    talk_secs: Some(70),
                    ended_by: ConversationEnd::Operator,
                    recording: Some("call-1_conv-3_20251103T130400Z.wav".into()),
                }),
            ),
            line(
                6,
                Some("olle"),
                TimelineEvent::Dispatch {
                    dispatch: 1,
                    patrol: "c1".into(),
                    patrol_name: "Centrum 1".into(),
                    step: vakt::model::DispatchStep::Offered,
                    detail: format!("Dörrkod 4711, fråga efter {NAME}"),
                },
            ),
            line(
                50,
                Some("olle"),
                TimelineEvent::Closed {
                    outcome: Outcome::PatrolNeeded,
                    note: format!("{NAME} fick hjälp upp"),
                    override_reason: None,
                    overrode: String::new(),
                    review: true,
                },
            ),
        ],
        last_signal_id: 10,
    };
    store.save_calls(&[call], Some(10)).unwrap();
    store
        .save_dispatches(&[Dispatch {
            id: 1,
            call: 1,
            patrol: "c1".into(),
            provider: "hc".into(),
            area: "centrum".into(),
            state: DispatchState::Completed,
            offered_at: t0 + jiff::SignedDuration::from_mins(6),
            received_at: Some(t0 + jiff::SignedDuration::from_mins(7)),
            accepted_at: Some(t0 + jiff::SignedDuration::from_mins(7)),
            arrived_at: Some(t0 + jiff::SignedDuration::from_mins(25)),
            arrival_method: Some(ArrivalMethod::Lock),
            ended_at: Some(t0 + jiff::SignedDuration::from_mins(48)),
            limit_mins: 30,
            warned_at_mins: Vec::new(),
            breached: false,
            note: format!("helped: {NAME} hade ramlat, ringde {RELATIVE}"),
            operator: "olle".into(),
            instruction: format!("{RELATIVE} öppnar"),
        }])
        .unwrap();
}

/// A delivery to the care system about Call 1 that was never acknowledged; its body holds
/// the personal number (as the FHIR note does).
fn undelivered(store: &Store) -> u64 {
    let rec = OutboxRecord {
        id: 1,
        endpoint: "journal".into(),
        recipient_kind: "care_system".into(),
        recipient: "Vaktby kommun".into(),
        event: "care.alarm_handled".into(),
        subject: "call/1".into(),
        created_at: at(date(2025, 11, 3), 15, 0),
        attempts: 40,
        last_attempt_at: Some(at(date(2025, 11, 10), 15, 0)),
        next_attempt_at: Some(at(date(2025, 11, 10), 16, 0)),
        last_error: Some("connection refused".into()),
        delivered_at: None,
        body_bytes: 0,
    };
    let body = format!("{{\"patient\":\"{PNR}\",\"name\":\"{NAME}\"}}").into_bytes();
    store.outbox_add(&[(rec, body)]).unwrap();
    1
}

/// A work order for a device of `subscriber` (a low battery), with a note its installer
/// wrote.
fn work_order(id: u64, subscriber: &str, state: WorkOrderState, note: &str) -> WorkOrder {
    let t = at(date(2025, 9, 1), 10, 0);
    WorkOrder {
        id,
        account: "1234".into(),
        subscriber: Some(subscriber.into()),
        installer: "Ivar Installatör".into(),
        fault: FaultKind::LowBattery,
        state,
        created_at: t,
        start_by: t,
        done_by: t,
        started_at: None,
        done_at: (state == WorkOrderState::Done).then_some(t),
        cancelled_at: None,
        cancel_reason: None,
        replaces: None,
        replaced_by: None,
        call: None,
        signal_ids: vec![11],
        repeats: 0,
        restores: 0,
        restored_at: None,
        timeline: vec![
            OrderEvent {
                at: t,
                kind: OrderEventKind::Created,
                user: None,
                signal: Some(11),
                text: Some("CID 302".into()),
            },
            OrderEvent {
                at: t,
                kind: OrderEventKind::Done,
                user: Some("ivar".into()),
                signal: None,
                text: Some(note.into()),
            },
        ],
    }
}

/// A resolved telecom incident with a device of each of `subscribers`.
fn incident(subscribers: &[&str]) -> Incident {
    let t = at(date(2025, 10, 1), 2, 0);
    Incident {
        id: 1,
        kind: IncidentKind::TelecomOperator,
        key: "telia".into(),
        opened_at: t,
        resolved_at: Some(t + jiff::SignedDuration::from_hours(2)),
        population: 40,
        devices: subscribers
            .iter()
            .enumerate()
            .map(|(i, s)| IncidentDevice {
                account: format!("12{i}"),
                subscriber: Some((*s).into()),
                telecom_operator: Some("telia".into()),
                silent_since: t,
                restored_at: Some(t + jiff::SignedDuration::from_hours(2)),
            })
            .collect(),
        history: Vec::new(),
    }
}

/// Every stored record that still holds one of the person's words, by tree.
fn traces(store: &Store) -> Vec<(&'static str, Vec<&'static str>)> {
    [
        NAME,
        "Åsa",
        "Öberg",
        PNR,
        PHONE,
        "111 22 33",
        RELATIVE,
        RELATIVE_PHONE,
        "Diabetes",
        "Dörrkod",
        "ramlat",
    ]
    .into_iter()
    .map(|w| (w, store.trees_holding(w.as_bytes()).unwrap()))
    .filter(|(_, t)| !t.is_empty())
    .collect()
}

#[test]
fn a_subscribers_data_is_deleted_and_anonymised_a_year_after_the_end_and_still_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::open_store(tmp.path()).unwrap();
    let recordings = tmp.path().join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();

    // Åsa: ended on 2025-11-20, her keys back.
    let asa = "S-1001";
    store.upsert_subscribers(&[card(asa, NAME)]).unwrap();
    save_life(
        &store,
        &life(asa, LifeStatus::Ended, Some(date(2025, 11, 20)), RELATIVE),
    );
    let new = order(&store, asa, OrderKind::NewAlarm, "PC-1");
    let end = order(&store, asa, OrderKind::End, "PC-2");
    keys(&store, asa, false, RELATIVE);
    call_and_visit(&store, asa);
    // Its closing was reviewed; the decision quotes her.
    let decided = store
        .decide_review(
            1,
            ReviewDecision {
                verdict: ReviewVerdict::Accepted,
                by: "sara".into(),
                at: at(date(2025, 11, 4), 9, 0),
                note: format!("{NAME} ville inte ha ambulans"),
            },
        )
        .unwrap();
    assert!(
        matches!(decided, vakt::store::Decided::Made(_)),
        "{decided:?}"
    );
    let recording = recordings.join("call-1_conv-3_20251103T130400Z.wav");
    std::fs::write(&recording, format!("RIFF {NAME}")).unwrap();
    let other_recording = recordings.join("call-2_conv-4_20251103T130400Z.wav");
    std::fs::write(&other_recording, b"RIFF").unwrap();
    let delivery = undelivered(&store);
    store.save_incident(&incident(&[asa, "S-1003"])).unwrap();
    store
        .save_work_orders(
            &[work_order(
                1,
                asa,
                WorkOrderState::Done,
                &format!("Bytte batteri, {RELATIVE} öppnade"),
            )],
            None,
        )
        .unwrap();
    store
        .save_plan(
            asa,
            "sara",
            at(date(2025, 2, 1), 9, 0),
            &vakt::model::plan::ResponsePlan::default(),
        )
        .unwrap();

    // Bo: ended as long ago, but the key cabinet still has his keys: held.
    store
        .upsert_subscribers(&[other_card("S-1002", "Bo Ek", 2)])
        .unwrap();
    save_life(
        &store,
        &life(
            "S-1002",
            LifeStatus::Ended,
            Some(date(2025, 11, 1)),
            "Bo Ek",
        ),
    );
    keys(&store, "S-1002", true, "Bo Ek");
    store
        .save_work_orders(&[work_order(2, "S-1002", WorkOrderState::New, "")], None)
        .unwrap();
    // Cilla: active; Dag: ended yesterday. Kept.
    store
        .upsert_subscribers(&[other_card("S-1003", "Cilla Berg", 3)])
        .unwrap();
    save_life(
        &store,
        &life("S-1003", LifeStatus::Active, None, "Cilla Berg"),
    );
    store
        .upsert_subscribers(&[other_card("S-1004", "Dag Lund", 4)])
        .unwrap();
    save_life(
        &store,
        &life(
            "S-1004",
            LifeStatus::Ended,
            Some(date(2026, 12, 6)),
            "Dag Lund",
        ),
    );
    // Eva: due, her retention begun before and cut short (the pseudonym chosen, nothing more).
    store
        .upsert_subscribers(&[other_card("S-1005", "Eva Holm", 5)])
        .unwrap();
    save_life(
        &store,
        &life(
            "S-1005",
            LifeStatus::Ended,
            Some(date(2025, 6, 1)),
            "Eva Holm",
        ),
    );
    let eva = store
        .begin_retention("S-1005", "anon-00000000000000e5")
        .unwrap();
    assert_eq!(eva, "anon-00000000000000e5");

    let opts = RetentionOptions {
        days_after_end: 365,
        tz: tz(),
        recordings: recordings.clone(),
        recording_archive: None,
        closed_calls: None,
    };
    let retention = Retention::new(store.clone(), None, opts);

    // Just before the time after Åsa's end: she is kept.
    let before = at(date(2026, 11, 20), 23, 59);
    let survey = retention.survey(before).unwrap();
    assert!(survey.due.iter().all(|d| d.subscriber != asa), "{survey:?}");

    // The sweep on 2026-12-07.
    let audit_before = store.audit_latest(1000).unwrap().len();
    let now = at(date(2026, 12, 7), 3, 0);
    let dry = retention.survey(now).unwrap();
    let who: Vec<(&str, bool)> = dry
        .due
        .iter()
        .map(|d| (d.subscriber.as_str(), d.held.is_empty()))
        .collect();
    assert_eq!(who, [(asa, true), ("S-1002", false), ("S-1005", true)]);
    assert_eq!(
        dry.due[1].held,
        [
            Hold::OpenWorkOrder { work_order: 2 },
            Hold::KeysOut {
                holder: "the key cabinet".into(),
                count: 2
            }
        ]
    );
    assert!(dry.due[2].resumed);
    assert_eq!(dry.waiting, 1, "Dag waits");
    // A survey changes nothing.
    assert!(store.subscriber(asa).unwrap().is_some());

    let report = retention.sweep(now).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let done: Vec<&str> = report.done.iter().map(|d| d.subscriber.as_str()).collect();
    assert_eq!(done, [asa, "S-1005"]);
    let d = &report.done[0];
    assert_eq!(
        (
            d.calls,
            d.dispatches,
            d.recordings,
            d.withdrawn,
            d.orders,
            d.receipts,
            d.work_orders,
            d.incidents,
            d.card,
            d.plans
        ),
        (1, 1, 1, 1, 2, 2, 1, 1, true, 1)
    );
    let inc = store.incident(1).unwrap().unwrap();
    assert_eq!(
        inc.devices[1].subscriber.as_deref(),
        Some("S-1003"),
        "Cilla's stays"
    );
    let wo = store.work_order(1).unwrap().unwrap();
    assert_eq!(
        wo.timeline[0].text.as_deref(),
        Some("CID 302"),
        "the device's line stays"
    );
    assert_eq!(wo.timeline[1].text, None);
    assert!(store.work_order(2).unwrap().unwrap().subscriber.as_deref() == Some("S-1002"));

    // The card, the plan and the recording are gone; another Call's recording stays.
    assert_eq!(store.subscriber(asa).unwrap(), None);
    assert_eq!(store.plan(asa).unwrap(), None);
    assert!(!recording.exists());
    assert!(other_recording.exists());
    assert!(store.life(asa).unwrap().is_none());
    assert!(store.orders_of(asa).unwrap().is_empty());
    assert!(store.receipts_of(asa).unwrap().is_empty());

    // One pseudonym everywhere for her.
    let call = store.call(1).unwrap().unwrap();
    let p = call.subscriber.clone().unwrap();
    assert!(is_pseudonym(&p), "{p}");
    let anon = store
        .life(&p)
        .unwrap()
        .expect("the life under the pseudonym");
    assert_eq!(anon.status, LifeStatus::Ended);
    assert_eq!(
        (anon.installed_on, anon.ended_on),
        (Some(date(2025, 1, 7)), Some(date(2025, 11, 20)))
    );
    assert_eq!(anon.anonymised, Some(now));
    let orders = store.orders_of(&p).unwrap();
    assert_eq!(
        orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        [end.id, new.id]
    );
    assert!(
        orders
            .iter()
            .all(|o| o.external_id.is_none() && o.note.is_empty())
    );
    assert_eq!(store.receipts_of(&p).unwrap().len(), 2);
    assert_eq!(
        store.review(1).unwrap().unwrap().subscriber.as_deref(),
        Some(p.as_str()),
        "the review too"
    );

    // The Call keeps its figures.
    assert_eq!(call.outcome, Some(Outcome::PatrolNeeded));
    assert_eq!(call.kind, "Fall");
    assert_eq!(call.timeline.len(), 8);
    assert_eq!(
        call.answered_at,
        Some(at(date(2025, 11, 3), 14, 0) + jiff::SignedDuration::from_secs(40))
    );
    let dispatch = store.dispatch(1).unwrap().unwrap();
    assert_eq!(
        (dispatch.note.as_str(), dispatch.instruction.as_str()),
        ("helped", "")
    );

    // Nothing stored names her or her son (the audit log names only the subscriber id).
    assert_eq!(traces(&store), vec![]);
    assert_eq!(store.trees_holding(asa.as_bytes()).unwrap(), ["audit"]);
    assert_eq!(
        store.trees_holding(p.as_bytes()).unwrap(),
        ["calls", "incidents", "work_orders", "life"]
    );

    // The event never delivered is withdrawn: never sent, its body gone, its record kept.
    let rec = store.outbox_record(delivery).unwrap().unwrap();
    assert!(rec.last_error.unwrap().starts_with("withdrawn"));
    assert_eq!(rec.next_attempt_at, None);
    assert_eq!(store.outbox_body(delivery).unwrap(), None);
    assert_eq!(store.outbox_next_pending("journal").unwrap(), None);

    // Billing and the visits report still count her, by the pseudonym and without a name.
    let month = "2025-11".parse().unwrap();
    let rows = vakt::care::billing_of(&store, month, "Vaktby kommun").unwrap();
    let row = rows
        .iter()
        .find(|r| r.subscriber == p)
        .expect("her billing row");
    assert_eq!(
        row.municipality, "Nordby kommun",
        "still billed to who pays"
    );
    assert_eq!(
        (row.name.as_str(), row.ended_on),
        ("", Some(date(2025, 11, 20)))
    );
    let visits = vakt::dispatch::visits::visits_report(&store, "2025-11", &tz(), None).unwrap();
    assert_eq!(visits.visits.len(), 1);
    let v = &visits.visits[0];
    assert_eq!(
        (
            v.subscriber.as_str(),
            v.subscriber_name.as_str(),
            v.outcome.as_str(),
            v.note.as_str(),
            v.minutes
        ),
        (p.as_str(), "", "helped", "", 23)
    );

    // Eva's retention is finished under the pseudonym chosen before, and forgotten.
    assert_eq!(store.subscriber("S-1005").unwrap(), None);
    assert!(store.life("anon-00000000000000e5").unwrap().is_some());
    assert!(store.retentions_under_way().unwrap().is_empty());

    // Bo (held), Cilla and Dag are kept whole.
    for id in ["S-1002", "S-1003", "S-1004"] {
        assert!(store.subscriber(id).unwrap().is_some(), "{id}");
        assert!(store.life(id).unwrap().is_some(), "{id}");
    }

    // The audit log: each step, by vakt (an entry naming a Call is stored under the Call's
    // person, as every entry is, so her extract shows what was done with her Calls).
    let audit = store.audit_latest(1000).unwrap();
    let ours: Vec<(String, Option<u64>, Option<String>)> = audit
        .iter()
        .filter(|e| e.user == "vakt")
        .map(|e| (e.action.clone(), e.call, e.subscriber.clone()))
        .collect();
    for want in [
        ("recording.delete".to_owned(), Some(1), Some(asa.to_owned())),
        ("retention.delivery".to_owned(), None, None),
        ("retention.call".to_owned(), Some(1), Some(asa.to_owned())),
        (
            "retention.subscriber".to_owned(),
            None,
            Some(asa.to_owned()),
        ),
        (
            "retention.subscriber".to_owned(),
            None,
            Some("S-1005".to_owned()),
        ),
    ] {
        assert!(ours.contains(&want), "{want:?} in {ours:?}");
    }
    assert!(
        audit
            .iter()
            .all(|e| !e.detail.contains(NAME) && !e.detail.contains(&p)),
        "no name and no pseudonym in the audit details"
    );

    // A second sweep does nothing.
    let audit_after = audit.len();
    assert!(audit_after > audit_before);
    let again = retention.sweep(now).unwrap();
    assert!(
        again.done.is_empty() && again.failed.is_empty(),
        "{again:?}"
    );
    assert_eq!(store.audit_latest(1000).unwrap().len(), audit_after);
    assert_eq!(store.call(1).unwrap().unwrap(), call);
    assert_eq!(store.life(&p).unwrap().unwrap(), anon);
    assert_eq!(again.survey.done_before, 2);

    // A resent order of the care system is no longer known by its id (it named her case).
    let resent = order(&store, "S-9999", OrderKind::NewAlarm, "PC-1");
    assert_ne!(resent.id, new.id);
}

/// `vakt retention run`, on a data directory (sled) with the server stopped: `--dry-run`
/// lists who is due and who is held and why, and changes nothing; without it the due are
/// done; run again, nothing more. The clock is the machine's: Åsa's alarm ended in 2020.
#[test]
fn the_command_lists_who_is_due_and_held_and_then_does_it() {
    const BIN: &str = env!("CARGO_BIN_EXE_vakt");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let store = Store::open(&dir).unwrap();
        store.upsert_subscribers(&[card("S-1001", NAME)]).unwrap();
        save_life(
            &store,
            &life(
                "S-1001",
                LifeStatus::Ended,
                Some(date(2020, 3, 1)),
                RELATIVE,
            ),
        );
        store
            .upsert_subscribers(&[other_card("S-1002", "Bo Ek", 2)])
            .unwrap();
        save_life(
            &store,
            &life("S-1002", LifeStatus::Ended, Some(date(2020, 3, 1)), "Bo Ek"),
        );
        keys(&store, "S-1002", true, "Bo Ek");
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["retention", "run", "--data-dir"])
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let dry = run(&["--dry-run"]);
    assert_eq!(
        dry,
        "due\tS-1001\n\
         held\tS-1002\tthe key cabinet still holds 2 key(s)\n\
         0 done, 1 due, 1 held, 0 ended and waiting, 0 anonymised before (dry run: nothing changed)\n"
    );
    assert_eq!(run(&["--dry-run"]), dry, "a dry run changes nothing");
    let done = run(&[]);
    assert!(
        done.starts_with("done\tS-1001\t0 Call(s), 0 recording(s), 0 order(s), 0 receipt(s), 0 event(s) withdrawn, card deleted\n"),
        "{done}"
    );
    assert!(
        done.ends_with("1 done, 0 due, 1 held, 0 ended and waiting, 0 anonymised before\n"),
        "{done}"
    );
    let json: serde_json::Value = serde_json::from_str(&run(&["--json"])).unwrap();
    assert_eq!(json["done"], serde_json::json!([]));
    assert_eq!(json["survey"]["done_before"], 1);
    assert_eq!(json["survey"]["due"][0]["held"][0]["held_by"], "keys_out");
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.subscriber("S-1001").unwrap(), None);
    assert!(store.subscriber("S-1002").unwrap().is_some());
}

/// The running server sweeps at start by itself: Åsa, whose alarm ended in 2020, is done at
/// once; Bo, whose keys the cabinet still has, is held. `GET /api/retention` shows a
/// supervisor who is held and why (audited `retention.view`), and is refused to an operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sweeps_by_itself_and_shows_supervisors_who_is_held() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let store = common::open_store(dir).unwrap();
        store.upsert_subscribers(&[card("S-1001", NAME)]).unwrap();
        save_life(
            &store,
            &life(
                "S-1001",
                LifeStatus::Ended,
                Some(date(2020, 3, 1)),
                RELATIVE,
            ),
        );
        store
            .upsert_subscribers(&[other_card("S-1002", "Bo Ek", 2)])
            .unwrap();
        save_life(
            &store,
            &life("S-1002", LifeStatus::Ended, Some(date(2020, 3, 1)), "Bo Ek"),
        );
        keys(&store, "S-1002", true, "Bo Ek");
    }
    common::add_user(
        dir,
        "sara",
        vakt::model::Role::Supervisor,
        "sara-password-1",
    );
    common::add_user(dir, "olle", vakt::model::Role::Operator, "olle-password-1");
    let srv = common::start_with(common::test_config(dir)).await;
    let http = srv.http.unwrap();
    let mut sup = common::Client::login(http, "sara", "sara-password-1").await;
    let survey = common::wait_for("the sweep at start", Duration::from_secs(20), || {
        let mut c = sup.clone();
        async move {
            let a = c.get("/api/retention").await;
            assert_eq!(a.status, 200, "{}", a.body);
            let v = a.json();
            (v["done_before"] == 1).then_some(v)
        }
    })
    .await;
    assert_eq!(
        survey["due"],
        serde_json::json!([{
            "subscriber": "S-1002",
            "resumed": false,
            "held": [{"held_by": "keys_out", "holder": "the key cabinet", "count": 2}]
        }])
    );
    let card = sup.get("/api/subscribers/S-1001").await;
    assert_eq!(card.status, 404, "Åsa's card is gone");
    assert_eq!(sup.get("/api/subscribers/S-1002").await.status, 200);
    let mut op = common::Client::login(http, "olle", "olle-password-1").await;
    assert_eq!(op.get("/api/retention").await.status, 403);
    let audit = sup.get("/api/audit?limit=200").await.json();
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["user"].as_str().unwrap()))
        .collect();
    assert!(actions.contains(&("retention.view", "sara")), "{actions:?}");
    assert!(
        actions.contains(&("retention.subscriber", "vakt")),
        "{actions:?}"
    );
    srv.stop().await.unwrap();
}

/// What a sweep costs at the size of a municipality's register (sled, on this machine):
/// 5,000 lives, 50 of them ended long ago, 20,000 closed Calls. The hourly survey with nobody
/// due, the survey with the 50, their sweep, and the next sweep (nothing to do).
/// `cargo test --test retention -- --ignored --nocapture a_sweep_at_the_size`.
#[test]
#[ignore = "a measurement: prints the figures"]
fn a_sweep_at_the_size_of_a_register_takes() {
    use std::time::Instant;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data")).unwrap();
    const LIVES: usize = 5_000;
    const ENDED: usize = 50;
    const CALLS_EACH: u64 = 4;
    let cards: Vec<Subscriber> = (0..LIVES)
        .map(|i| {
            let mut c = other_card(&format!("S-{i}"), &format!("Person {i}"), (i % 10) as u8);
            c.personal_number = format!("1940{:02}{:02}-{:04}", 1 + i % 12, 1 + i % 28, i);
            c
        })
        .collect();
    store.upsert_subscribers(&cards).unwrap();
    store
        .together(|s| {
            for i in 0..LIVES {
                let id = format!("S-{i}");
                let ended = i < ENDED;
                let l = life(
                    &id,
                    if ended {
                        LifeStatus::Ended
                    } else {
                        LifeStatus::Active
                    },
                    ended.then(|| date(2020, 3, 1)),
                    "Signer",
                );
                s.update_life::<vakt::store::StoreError>(&id, |_| Ok(l.clone()))?;
            }
            Ok(())
        })
        .unwrap();
    let t0 = at(date(2024, 5, 3), 14, 0);
    let calls: Vec<Call> = (0..LIVES as u64 * CALLS_EACH)
        .map(|n| Call {
            id: n + 1,
            priority: Priority(1),
            state: CallState::Closed,
            owner: Some("olle".into()),
            opened_at: t0 + jiff::SignedDuration::from_mins(n as i64),
            alarm_count: 1,
            subscriber: Some(format!("S-{}", n % LIVES as u64)),
            account: "1234".into(),
            kind: "Fall".into(),
            restored: false,
            answered_at: Some(t0),
            closed_at: Some(t0 + jiff::SignedDuration::from_mins(n as i64 + 20)),
            outcome: Some(Outcome::AccidentalPress),
            timeline: vec![TimelineEntry {
                at: t0,
                user: Some("olle".into()),
                what: TimelineEvent::Note {
                    text: "Pressed by mistake".into(),
                },
            }],
            last_signal_id: n + 1,
        })
        .collect();
    for chunk in calls.chunks(2_000) {
        store.save_calls(chunk, None).unwrap();
    }
    let retention = Retention::new(
        store.clone(),
        None,
        RetentionOptions {
            days_after_end: 365,
            tz: tz(),
            recordings: tmp.path().join("recordings"),
            recording_archive: None,
            closed_calls: None,
        },
    );
    let timed = |what: &str, f: &dyn Fn() -> usize| {
        let t = Instant::now();
        let n = f();
        println!("{what}: {:?} ({n})", t.elapsed());
        n
    };
    let early = at(date(2020, 6, 1), 3, 0);
    let now = at(date(2026, 12, 7), 3, 0);
    let n = timed("survey, nobody due", &|| {
        retention.survey(early).unwrap().due.len()
    });
    assert_eq!(n, 0);
    let n = timed("survey, 50 due", &|| {
        retention.survey(now).unwrap().due.len()
    });
    assert_eq!(n, ENDED);
    let n = timed("sweep of the 50", &|| {
        retention.sweep(now).unwrap().done.len()
    });
    assert_eq!(n, ENDED);
    let n = timed("the next sweep", &|| {
        retention.sweep(now).unwrap().done.len()
    });
    assert_eq!(n, 0);
}
