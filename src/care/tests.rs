//! The care service over a real store, with fixed `now` (Stockholm time).

use jiff::civil::date;
use jiff::tz::TimeZone;

use super::*;
use crate::model::calendar::swedish_holidays_2026_2027;
use crate::model::order::{KeyCount, KeyKind, Person};

fn tz() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}

/// Local time in Stockholm.
fn at(s: &str) -> Timestamp {
    s.parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(tz())
        .unwrap()
        .timestamp()
}

fn device(account: &str, subscriber: &str) -> Device {
    Device {
        account: account.into(),
        line: None,
        receiver: None,
        key: None,
        key_format: None,
        subscriber: Some(subscriber.into()),
        supervision_secs: None,
        telecom_operator: None,
        area: None,
        device_type: None,
        sip_user: None,
        sip_password: None,
        phone: None,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    care: Care,
    devices: Devices,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.upsert_devices(&[device("12AB", "S-1001")]).unwrap();
    let devices = Devices::new(Registry::new(store.devices().unwrap()));
    let care = Care::open(
        store,
        devices.clone(),
        None,
        WorkingDays::new(swedish_holidays_2026_2027(), tz()),
        CareOptions::default(),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        care,
        devices,
    }
}

fn new_alarm(external: &str) -> NewOrder {
    NewOrder {
        external_id: Some(external.into()),
        kind: Some(OrderKind::NewAlarm),
        subscriber: "S-1001".into(),
        decided_on: Some(date(2026, 12, 1)),
        keys_required: vec![KeyCount {
            kind: KeyKind::Door,
            count: 2,
        }],
        health_notes: "Diabetes".into(),
        person: Some(Person {
            name: "Åsa Öberg".into(),
            personal_number: "19400101-1234".into(),
            address: "Storgatan 1".into(),
            postcode: "11122".into(),
            city: "Vaktby".into(),
            area: "norr".into(),
            care_provider: "hemtjanst-norr".into(),
            ..Person::default()
        }),
        ..NewOrder::default()
    }
}

/// Writes and signs a receipt of `count` door keys from `from` to `to`.
fn handed(care: &Care, from: Holder, to: Holder, count: u8, now: Timestamp) -> Receipt {
    let mut r = care
        .store()
        .add_receipt(|id| Receipt {
            id,
            subscriber: "S-1001".into(),
            from,
            to,
            items: vec![KeyCount {
                kind: KeyKind::Door,
                count,
            }],
            reason: HandoverReason::Installation,
            order: None,
            written_at: now,
            written_by: "sara".into(),
            state: ReceiptState::Pending,
        })
        .unwrap();
    let mut custody = Custody::from_receipts(&care.store().receipts_of("S-1001").unwrap());
    r.sign(&mut custody, now, "Åsa", "Ivar", "sara").unwrap();
    care.store().save_receipt(&r).unwrap();
    r
}

fn installer() -> Holder {
    Holder::Installer {
        name: "Ivar".into(),
    }
}

fn provider(id: &str) -> Holder {
    Holder::Provider { id: id.into() }
}

/// Ordered, installed and active on Wednesday 2 December 2026.
fn active(f: &Fixture) -> Order {
    let got = f
        .care
        .receive_order(new_alarm("ext-1"), "care-system", at("2026-12-01T09:00"))
        .unwrap();
    handed(
        &f.care,
        Holder::Subscriber,
        installer(),
        2,
        at("2026-12-02T10:00"),
    );
    f.care
        .open_installation("S-1001", "12ab", "Ivar", None, at("2026-12-02T10:05"))
        .unwrap();
    assert!(
        f.care
            .on_signal("12AB", 7, at("2026-12-02T10:10"), at("2026-12-02T10:10"))
            .unwrap()
    );
    f.care
        .record_consent(
            "S-1001",
            date(2026, 12, 2),
            "Åsa Öberg",
            "sara",
            at("2026-12-02T10:20"),
        )
        .unwrap();
    handed(
        &f.care,
        installer(),
        provider("hemtjanst-norr"),
        2,
        at("2026-12-02T11:00"),
    );
    got.order
}

#[test]
fn a_new_alarm_with_the_card_makes_the_card_and_the_life_once_per_care_system_id() {
    let f = fixture();
    let now = at("2026-12-04T16:00"); // a Friday
    let mut no_card = new_alarm("ext-0");
    no_card.person = None;
    assert!(matches!(
        f.care.receive_order(no_card, "care-system", now),
        Err(CareError::UnknownSubscriber(_))
    ));
    let mut bad = new_alarm("ext-0");
    if let Some(p) = &mut bad.person {
        p.name = String::new();
    }
    assert!(matches!(
        f.care.receive_order(bad, "care-system", now),
        Err(CareError::Invalid {
            field: "person",
            ..
        })
    ));
    assert!(f.care.store().subscriber("S-1001").unwrap().is_none());

    let mut acute = new_alarm("ext-1");
    acute.acute = true;
    let first = f
        .care
        .receive_order(acute.clone(), "care-system", now)
        .unwrap();
    assert!(first.new);
    // Acute on a Friday: by the end of Monday.
    assert_eq!(first.order.due, at("2026-12-08T00:00"));
    assert!(first.order.return_by.is_some());
    let again = f.care.receive_order(acute, "care-system", now).unwrap();
    assert!(!again.new);
    assert_eq!(again.order, first.order);
    assert_eq!(f.care.store().orders_of("S-1001").unwrap().len(), 1);

    let card = f.care.store().subscriber("S-1001").unwrap().unwrap();
    assert_eq!(card.name, "Åsa Öberg");
    assert_eq!(card.health_notes, "Diabetes");
    assert_eq!(card.care_provider, "hemtjanst-norr");
    let life = f.care.store().life("S-1001").unwrap().unwrap();
    assert_eq!(life.status, LifeStatus::Ordered);
    assert_eq!(life.providers[0].provider, "hemtjanst-norr");
    assert_eq!(life.providers[0].from, date(2026, 12, 4));
    // A second new alarm while one is ordered is refused.
    assert!(matches!(
        f.care.receive_order(new_alarm("ext-2"), "care-system", now),
        Err(CareError::Status { .. })
    ));
}

#[test]
fn the_alarm_is_active_when_test_consent_and_keys_are_in_and_not_before() {
    let f = fixture();
    f.care
        .receive_order(new_alarm("ext-1"), "care-system", at("2026-12-01T09:00"))
        .unwrap();
    // Not the subscriber's device.
    assert!(matches!(
        f.care
            .open_installation("S-1001", "99", "Ivar", None, at("2026-12-02T10:00")),
        Err(CareError::NotTheirDevice(_))
    ));
    f.care
        .open_installation("S-1001", "12AB", "Ivar", Some(30), at("2026-12-02T10:00"))
        .unwrap();
    // Another device, and this one after the window: not the test.
    assert!(
        !f.care
            .on_signal("34CD", 1, at("2026-12-02T10:05"), at("2026-12-02T10:05"))
            .unwrap()
    );
    assert!(
        !f.care
            .on_signal("12AB", 2, at("2026-12-02T10:30"), at("2026-12-02T10:30"))
            .unwrap()
    );
    let v = f.care.life("S-1001", at("2026-12-02T10:31")).unwrap();
    assert_eq!(
        v.missing,
        vec![
            Missing::TestAlarm,
            Missing::Consent,
            Missing::Keys {
                kind: KeyKind::Door,
                have: 0,
                need: 2
            }
        ]
    );
    f.care
        .open_installation("S-1001", "12AB", "Ivar", None, at("2026-12-02T10:40"))
        .unwrap();
    assert!(
        f.care
            .on_signal("12AB", 3, at("2026-12-02T10:41"), at("2026-12-02T10:41"))
            .unwrap()
    );
    f.care
        .record_consent(
            "S-1001",
            date(2026, 12, 2),
            "Åsa Öberg",
            "sara",
            at("2026-12-02T10:45"),
        )
        .unwrap();
    let v = f.care.life("S-1001", at("2026-12-02T10:46")).unwrap();
    assert_eq!(v.life.status, LifeStatus::Ordered);
    assert_eq!(
        v.missing,
        vec![Missing::Keys {
            kind: KeyKind::Door,
            have: 0,
            need: 2
        }]
    );
    // The keys in, after midnight local time: installed on the 3rd.
    let r = handed(
        &f.care,
        Holder::Subscriber,
        installer(),
        2,
        at("2026-12-03T00:10"),
    );
    assert!(
        f.care
            .receipt_signed(&r, "sara", at("2026-12-03T00:10"))
            .unwrap()
    );
    let v = f.care.life("S-1001", at("2026-12-03T00:11")).unwrap();
    assert_eq!(v.life.status, LifeStatus::Active);
    assert_eq!(v.life.installed_on, Some(date(2026, 12, 3)));
    assert!(v.missing.is_empty());
    assert!(!v.orders[0].order.is_open());
    assert!(
        f.care
            .open_orders(at("2026-12-03T00:11"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_provider_change_takes_effect_on_its_date_with_a_pending_key_receipt() {
    let f = fixture();
    active(&f);
    let change = NewOrder {
        external_id: Some("ext-pc".into()),
        kind: Some(OrderKind::ProviderChange),
        subscriber: "S-1001".into(),
        decided_on: Some(date(2026, 12, 3)),
        effective: Some(date(2026, 12, 7)),
        new_provider: Some("hemtjanst-syd".into()),
        ..NewOrder::default()
    };
    let got = f
        .care
        .receive_order(change, "care-system", at("2026-12-03T09:00"))
        .unwrap();
    assert!(got.order.is_open());
    let pending = f.care.store().pending_receipts().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].from, provider("hemtjanst-norr"));
    assert_eq!(pending[0].to, provider("hemtjanst-syd"));
    assert_eq!(pending[0].order, Some(got.order.id));
    assert_eq!(pending[0].items[0].count, 2);

    // The day before: nothing moves.
    let tick = f.care.on_tick(at("2026-12-06T23:59")).unwrap();
    assert!(tick.providers_applied.is_empty());
    let card = f.care.store().subscriber("S-1001").unwrap().unwrap();
    assert_eq!(card.care_provider, "hemtjanst-norr");
    // Its day (local midnight): routing follows, the order is done.
    let tick = f.care.on_tick(at("2026-12-07T00:00")).unwrap();
    assert_eq!(tick.providers_applied, vec!["S-1001".to_owned()]);
    let card = f.care.store().subscriber("S-1001").unwrap().unwrap();
    assert_eq!(card.care_provider, "hemtjanst-syd");
    assert!(
        !f.care
            .store()
            .order(got.order.id)
            .unwrap()
            .unwrap()
            .is_open()
    );
    let life = f.care.store().life("S-1001").unwrap().unwrap();
    assert!(
        life.history
            .iter()
            .any(|e| e.what.contains("hemtjanst-syd in effect"))
    );
    // Once.
    assert!(
        f.care
            .on_tick(at("2026-12-07T00:01"))
            .unwrap()
            .providers_applied
            .is_empty()
    );
}

#[test]
fn a_provider_edited_on_the_card_stays_and_is_on_the_life() {
    let f = fixture();
    active(&f);
    let edit = |provider: &str| {
        let mut card = f.care.store().subscriber("S-1001").unwrap().unwrap();
        card.care_provider = provider.into();
        f.care.store().upsert_subscribers(&[card]).unwrap();
    };
    let card_provider = || {
        f.care
            .store()
            .subscriber("S-1001")
            .unwrap()
            .unwrap()
            .care_provider
    };
    // Edited without telling the life: the tick puts the life's provider back.
    edit("hemtjanst-syd");
    f.care.on_tick(at("2026-12-08T10:00")).unwrap();
    assert_eq!(card_provider(), "hemtjanst-norr");
    // Told, as the register's edit and import do: the edit stays, from today on.
    edit("hemtjanst-syd");
    let now = at("2026-12-08T10:05");
    let changed = f
        .care
        .providers_edited(&[("S-1001", "hemtjanst-syd"), ("S-9999", "x")], "sara", now)
        .unwrap();
    assert_eq!(changed, ["S-1001"]);
    assert!(
        f.care
            .on_tick(at("2026-12-08T10:06"))
            .unwrap()
            .providers_applied
            .is_empty()
    );
    assert_eq!(card_provider(), "hemtjanst-syd");
    let life = f.care.store().life("S-1001").unwrap().unwrap();
    let last = life.providers.last().unwrap();
    assert_eq!(
        (last.provider.as_str(), last.from),
        ("hemtjanst-syd", date(2026, 12, 8))
    );
    assert_eq!(life.history.last().unwrap().by, "sara");
    // The same provider again changes nothing.
    assert!(
        f.care
            .providers_edited(&[("S-1001", "hemtjanst-syd")], "sara", now)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_change_updates_the_card_at_once_and_is_done() {
    let f = fixture();
    active(&f);
    let change = NewOrder {
        kind: Some(OrderKind::Change),
        subscriber: "S-1001".into(),
        decided_on: Some(date(2026, 12, 3)),
        health_notes: "Diabetes, pacemaker".into(),
        directions: "Second door on the left".into(),
        ..NewOrder::default()
    };
    let got = f
        .care
        .receive_order(change, "sara", at("2026-12-03T09:00"))
        .unwrap();
    assert!(!got.order.is_open());
    let card = f.care.store().subscriber("S-1001").unwrap().unwrap();
    assert_eq!(card.health_notes, "Diabetes, pacemaker");
    assert_eq!(card.access.entry_notes, "Second door on the left");
    let life = f.care.store().life("S-1001").unwrap().unwrap();
    let last = life.history.last().unwrap();
    assert_eq!(last.by, "sara");
    assert_eq!(last.at, at("2026-12-03T09:00"));
    assert!(last.what.contains("health notes, directions"));
}

#[test]
fn the_end_takes_the_device_out_of_the_registry_and_an_ended_alarm_takes_no_end() {
    let f = fixture();
    active(&f);
    let end = NewOrder {
        kind: Some(OrderKind::End),
        subscriber: "S-1001".into(),
        decided_on: Some(date(2026, 12, 10)),
        effective: Some(date(2026, 12, 31)),
        ..NewOrder::default()
    };
    let got = f
        .care
        .receive_order(end.clone(), "care-system", at("2026-12-10T09:00"))
        .unwrap();
    assert_eq!(
        f.care.store().life("S-1001").unwrap().unwrap().status,
        LifeStatus::Ending
    );
    assert!(matches!(
        f.care
            .receive_order(end.clone(), "care-system", at("2026-12-10T09:01")),
        Err(CareError::Status { .. })
    ));
    assert!(f.devices.current().has_account("12AB"));
    let done = f
        .care
        .complete_order(got.order.id, "sara", at("2027-01-04T10:00"))
        .unwrap();
    assert!(!done.is_open());
    let life = f.care.store().life("S-1001").unwrap().unwrap();
    assert_eq!(life.status, LifeStatus::Ended);
    assert_eq!(life.ended_on, Some(date(2027, 1, 4)));
    assert!(!f.devices.current().has_account("12AB"));
    assert!(f.care.store().devices().unwrap().is_empty());
    assert!(matches!(
        f.care
            .receive_order(end, "care-system", at("2027-01-05T09:00")),
        Err(CareError::Status { .. })
    ));
    // Billed from December to January.
    let m = |s: &str| s.parse::<crate::model::order::Month>().unwrap();
    assert!(f.care.billing(m("2026-11")).unwrap().is_empty());
    let dec = f.care.billing(m("2026-12")).unwrap();
    assert_eq!(dec.len(), 1);
    assert_eq!(dec[0].name, "Åsa Öberg");
    assert_eq!(dec[0].municipality, "Vaktby kommun");
    assert_eq!(f.care.billing(m("2027-01")).unwrap().len(), 1);
    assert!(f.care.billing(m("2027-02")).unwrap().is_empty());

    // Ordered again in March under the same id: the life starts over, the ended period
    // kept; billed again from the new installation's month, and the old months stay.
    f.care
        .store()
        .upsert_devices(&[device("12AB", "S-1001")])
        .unwrap();
    f.devices
        .replace(Registry::new(f.care.store().devices().unwrap()));
    let again = f
        .care
        .receive_order(new_alarm("ext-9"), "care-system", at("2027-03-01T09:00"))
        .unwrap();
    assert!(again.new);
    let life = f.care.store().life("S-1001").unwrap().unwrap();
    assert_eq!(life.status, LifeStatus::Ordered);
    assert_eq!((life.installed_on, life.ended_on), (None, None));
    assert!(life.consent.is_none() && life.installation.is_none());
    assert_eq!(life.past.len(), 1);
    assert_eq!(
        (life.past[0].installed_on, life.past[0].ended_on),
        (date(2026, 12, 2), date(2027, 1, 4))
    );
    assert!(
        life.history
            .iter()
            .any(|e| e.what == "alarm ended on 2027-01-04")
    );
    assert!(
        f.care
            .receive_order(new_alarm("ext-10"), "care-system", at("2027-03-01T09:05"))
            .is_err(),
        "one alarm at a time"
    );
    f.care
        .open_installation("S-1001", "12ab", "Ivar", None, at("2027-03-03T10:05"))
        .unwrap();
    assert!(
        f.care
            .on_signal("12AB", 70, at("2027-03-03T10:10"), at("2027-03-03T10:10"))
            .unwrap()
    );
    let life = f
        .care
        .record_consent(
            "S-1001",
            date(2027, 3, 3),
            "Åsa Öberg",
            "sara",
            at("2027-03-03T10:20"),
        )
        .unwrap();
    assert_eq!(life.status, LifeStatus::Active, "{:?}", life.history);
    assert_eq!(life.installed_on, Some(date(2027, 3, 3)));
    assert_eq!(f.care.billing(m("2026-12")).unwrap().len(), 1);
    assert!(f.care.billing(m("2027-02")).unwrap().is_empty());
    let march = f.care.billing(m("2027-03")).unwrap();
    assert_eq!(march.len(), 1);
    assert_eq!(march[0].installed_on, date(2027, 3, 3));
}

#[test]
fn orders_by_hand_and_the_overdue_count() {
    let f = fixture();
    let got = f
        .care
        .receive_order(new_alarm("ext-1"), "care-system", at("2026-12-01T09:00"))
        .unwrap();
    assert!(matches!(
        f.care
            .complete_order(got.order.id, "sara", at("2026-12-01T10:00")),
        Err(CareError::NotByHand { .. })
    ));
    assert_eq!(
        f.care.on_tick(at("2026-12-01T10:00")).unwrap().open,
        (1, 0, 0)
    );
    // A week later it is overdue; a month later it is due to go back.
    assert_eq!(
        f.care.on_tick(at("2026-12-08T09:00")).unwrap().open,
        (0, 1, 0)
    );
    assert_eq!(
        f.care.on_tick(at("2027-01-01T09:00")).unwrap().open,
        (0, 0, 1)
    );
    let views = f.care.open_orders(at("2027-01-01T09:00")).unwrap();
    assert_eq!(views[0].lateness, Lateness::ReturnDue);
    assert!(matches!(
        f.care
            .send_back(got.order.id, "sara", " ", at("2027-01-01T09:00")),
        Err(CareError::Order(_))
    ));
    let back = f
        .care
        .send_back(
            got.order.id,
            "sara",
            "not installable",
            at("2027-01-01T09:00"),
        )
        .unwrap();
    assert!(!back.is_open());
    assert_eq!(
        f.care.on_tick(at("2027-01-01T09:01")).unwrap().open,
        (0, 0, 0)
    );
    assert!(matches!(
        f.care
            .cancel(got.order.id, "sara", "x", at("2027-01-01T09:02")),
        Err(CareError::Order(_))
    ));
}

#[test]
fn the_card_and_the_new_provider_are_checked_against_the_directory() {
    let f = fixture();
    let d = crate::registers::directory::parse_all(
        "id,name,phone\nhemtjanst-norr,Hemtjänst Norr,08-1\n".as_bytes(),
        "id,name,arrival_limit_mins\nnorr,Norr,30\n".as_bytes(),
        "id,name,provider,areas,shifts,phone\nn1,Norr 1,hemtjanst-norr,norr,day 07:00-19:00;night 19:00-07:00,070-1\n"
            .as_bytes(),
        "provider,area,patrols\nhemtjanst-norr,norr,n1\n".as_bytes(),
    )
    .unwrap();
    f.care.store().save_directory(&d).unwrap();
    let mut elsewhere = new_alarm("ext-1");
    if let Some(p) = &mut elsewhere.person {
        p.care_provider = "hemtjanst-ost".into();
    }
    match f
        .care
        .receive_order(elsewhere, "care-system", at("2026-12-01T09:00"))
    {
        Err(CareError::Invalid { field, problem }) => {
            assert_eq!(field, "person");
            assert!(problem.contains("care_provider"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
    active(&f);
    let change = NewOrder {
        kind: Some(OrderKind::ProviderChange),
        subscriber: "S-1001".into(),
        decided_on: Some(date(2026, 12, 3)),
        effective: Some(date(2026, 12, 7)),
        new_provider: Some("hemtjanst-ost".into()),
        ..NewOrder::default()
    };
    assert!(matches!(
        f.care.receive_order(change, "sara", at("2026-12-03T09:00")),
        Err(CareError::Invalid {
            field: "new_provider",
            ..
        })
    ));
}

#[test]
fn the_end_proposes_the_keys_back_through_the_installer_to_the_person() {
    let f = fixture();
    active(&f);
    // One key went to the key cabinet too.
    handed(
        &f.care,
        provider("hemtjanst-norr"),
        Holder::Cabinet,
        1,
        at("2026-12-03T08:00"),
    );
    let end = NewOrder {
        kind: Some(OrderKind::End),
        subscriber: "S-1001".into(),
        decided_on: Some(date(2026, 12, 10)),
        ..NewOrder::default()
    };
    let got = f
        .care
        .receive_order(end, "care-system", at("2026-12-10T09:00"))
        .unwrap();
    let pending = |care: &Care| -> Vec<Receipt> {
        care.store()
            .receipts_of("S-1001")
            .unwrap()
            .into_iter()
            .filter(|r| r.state == ReceiptState::Pending)
            .collect()
    };
    let first = pending(&f.care);
    assert_eq!(first.len(), 2, "{first:?}");
    for r in &first {
        assert_eq!(r.to, installer(), "home care and the cabinet hand to Ivar");
        assert_eq!(r.reason, HandoverReason::End);
        assert_eq!(r.order, Some(got.order.id));
    }
    let from: Vec<(&Holder, u8)> = first.iter().map(|r| (&r.from, r.items[0].count)).collect();
    assert!(from.contains(&(&provider("hemtjanst-norr"), 1)));
    assert!(from.contains(&(&Holder::Cabinet, 1)));
    let life = f.care.store().life("S-1001").unwrap().unwrap();
    assert!(
        life.history
            .iter()
            .any(|e| e.what.starts_with("keys to come back")),
        "{:?}",
        life.history
    );
    // Signing home care's return proposes Ivar's return to the person, once, for what
    // he then holds.
    for (i, mut r) in first.into_iter().enumerate() {
        let mut custody = Custody::from_receipts(&f.care.store().receipts_of("S-1001").unwrap());
        let now = at("2026-12-11T10:00") + jiff::SignedDuration::from_mins(i as i64);
        r.sign(&mut custody, now, "Ivar", "Berit", "sara").unwrap();
        f.care.store().save_receipt(&r).unwrap();
        f.care.receipt_signed(&r, "sara", now).unwrap();
    }
    let back = pending(&f.care);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].from, installer());
    assert_eq!(back[0].to, Holder::Subscriber);
    assert_eq!(
        back[0].items,
        vec![KeyCount {
            kind: KeyKind::Door,
            count: 2
        }]
    );
    // Once signed, nobody but the person holds a key.
    let mut r = back.into_iter().next().unwrap();
    let mut custody = Custody::from_receipts(&f.care.store().receipts_of("S-1001").unwrap());
    r.sign(&mut custody, at("2026-12-12T10:00"), "Åsa", "Ivar", "sara")
        .unwrap();
    f.care.store().save_receipt(&r).unwrap();
    f.care
        .receipt_signed(&r, "sara", at("2026-12-12T10:00"))
        .unwrap();
    assert!(pending(&f.care).is_empty());
    let custody = Custody::from_receipts(&f.care.store().receipts_of("S-1001").unwrap());
    assert!(custody.holdings().iter().all(|h| h.keys.is_empty()));
}
