use jiff::civil::date;

use super::*;
use crate::model::keys::{HandoverReason, Receipt, ReceiptState};
use crate::model::order::{billed_months, provider_on};

fn t(mins: i64) -> Timestamp {
    Timestamp::constant(1_796_000_000 + mins * 60, 0)
}

fn door(count: u8) -> Vec<KeyCount> {
    vec![KeyCount {
        kind: KeyKind::Door,
        count,
    }]
}

/// Custody after the installer took `count` door keys from the person.
fn taken(count: u8) -> Custody {
    let mut c = Custody::default();
    let mut r = Receipt {
        id: 1,
        subscriber: "S-1001".into(),
        from: Holder::Subscriber,
        to: Holder::Installer {
            name: "Ivar".into(),
        },
        items: door(count),
        reason: HandoverReason::Installation,
        order: Some(1),
        written_at: t(0),
        written_by: "sara".into(),
        state: ReceiptState::Pending,
    };
    r.sign(&mut c, t(1), "Åsa", "Ivar", "sara").unwrap();
    c
}

fn life() -> Life {
    Life::ordered(
        "S-1001",
        Some(ProviderPeriod {
            from: date(2026, 1, 1),
            provider: "centrum".into(),
        }),
        t(0),
        "care-system:procapita",
    )
}

#[test]
fn an_alarm_is_active_only_with_its_test_alarm_the_consent_and_the_keys() {
    let mut l = life();
    assert_eq!(
        l.missing(&door(2), &Custody::default()),
        [
            Missing::TestAlarm,
            Missing::Consent,
            Missing::Keys {
                kind: KeyKind::Door,
                have: 0,
                need: 2
            }
        ]
    );
    l.open_installation("1234", "Ivar", t(10), 60).unwrap();
    // A Signal from another device, or before the window, or after it, is no test.
    assert!(!l.take_test("9999", 7, t(20)));
    assert!(!l.take_test("1234", 7, t(9)));
    assert!(!l.take_test("1234", 7, t(70)));
    assert!(l.take_test("1234", 8, t(69)));
    assert!(!l.take_test("1234", 9, t(69)), "one test alarm");
    assert_eq!(
        l.installation.as_ref().unwrap().test,
        Some(TestAlarm {
            signal: 8,
            at: t(69)
        })
    );
    l.record_consent(date(2026, 12, 7), "Åsa Öberg", "sara", t(70))
        .unwrap();
    // One key of two: not yet.
    assert_eq!(
        l.activate(&door(2), &taken(1), date(2026, 12, 7), t(71), "sara"),
        Err(LifeError::NotReady(vec![Missing::Keys {
            kind: KeyKind::Door,
            have: 1,
            need: 2
        }]))
    );
    assert_eq!(l.status, LifeStatus::Ordered);
    l.activate(&door(2), &taken(2), date(2026, 12, 7), t(72), "sara")
        .unwrap();
    assert_eq!(
        (l.status, l.installed_on),
        (LifeStatus::Active, Some(date(2026, 12, 7)))
    );
    // Active: no second installation, no second test.
    assert_eq!(
        l.open_installation("1234", "Ivar", t(80), 60),
        Err(LifeError::Status(LifeStatus::Active))
    );
    assert!(!l.take_test("1234", 10, t(81)));
    let said: Vec<&str> = l.history.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(
        said,
        [
            "alarm ordered",
            "installation of 1234 opened for 60 min",
            "test alarm received from 1234 (signal 8)",
            "consent signed on 2026-12-07 by Åsa Öberg",
            "alarm in service from 2026-12-07"
        ]
    );
}

#[test]
fn the_window_and_names_are_bounded() {
    let mut l = life();
    assert_eq!(
        l.open_installation("1234", "Ivar", t(0), 0),
        Err(LifeError::Window)
    );
    assert_eq!(
        l.open_installation("1234", "Ivar", t(0), MAX_WINDOW_MINS + 1),
        Err(LifeError::Window)
    );
    assert_eq!(
        l.open_installation("1234", " ", t(0), 60),
        Err(LifeError::Name)
    );
    assert_eq!(
        l.record_consent(date(2026, 12, 7), "", "sara", t(0)),
        Err(LifeError::Name)
    );
}

#[test]
fn a_provider_change_on_its_date_and_the_end_bound_the_months_billed() {
    let mut l = life();
    l.open_installation("1234", "Ivar", t(0), 60).unwrap();
    l.take_test("1234", 1, t(5));
    l.record_consent(date(2026, 1, 31), "Åsa", "sara", t(6))
        .unwrap();
    l.activate(&[], &Custody::default(), date(2026, 1, 31), t(7), "sara")
        .unwrap();
    l.change_provider("norr", date(2026, 2, 15), t(8), "care-system:procapita");
    assert_eq!(
        provider_on(&l.providers, date(2026, 2, 14)),
        Some("centrum")
    );
    assert_eq!(provider_on(&l.providers, date(2026, 2, 15)), Some("norr"));
    l.end_ordered(t(9), "care-system:procapita").unwrap();
    assert_eq!(l.status, LifeStatus::Ending);
    l.end(date(2026, 3, 1), t(10), "Ivar").unwrap();
    assert_eq!(
        l.end(date(2026, 3, 2), t(11), "Ivar"),
        Err(LifeError::Status(LifeStatus::Ended))
    );
    let m = |s: &str| s.parse().unwrap();
    assert_eq!(
        billed_months(
            l.installed_on.unwrap(),
            l.ended_on,
            m("2026-01"),
            m("2026-12")
        ),
        [m("2026-01"), m("2026-02"), m("2026-03")]
    );
    // The record reads back from its JSON.
    let json = serde_json::to_string(&l).unwrap();
    assert_eq!(serde_json::from_str::<Life>(&json).unwrap(), l);
}

#[test]
fn the_history_keeps_the_newest_lines() {
    let mut l = life();
    for i in 0..(MAX_HISTORY as i64 + 5) {
        l.note(t(i), "sara", format!("line {i}"));
    }
    assert_eq!(l.history.len(), MAX_HISTORY);
    assert_eq!(
        l.history.last().unwrap().what,
        format!("line {}", MAX_HISTORY + 4)
    );
}
