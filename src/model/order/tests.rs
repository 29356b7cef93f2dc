use jiff::civil::{DateTime, date};
use jiff::tz::TimeZone;

use super::*;
use crate::model::calendar::swedish_holidays_2026_2027;

fn stockholm() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}

fn days() -> WorkingDays {
    WorkingDays::new(swedish_holidays_2026_2027(), stockholm())
}

/// A local Stockholm time.
fn local(s: &str) -> Timestamp {
    s.parse::<DateTime>()
        .unwrap()
        .to_zoned(stockholm())
        .unwrap()
        .timestamp()
}

fn due(kind: OrderKind, acute: bool, effective: Option<Date>, received: &str) -> Deadlines {
    deadlines(
        kind,
        acute,
        effective,
        local(received),
        &days(),
        &OrderOptions::default(),
    )
}

fn order(kind: OrderKind, received: &str) -> Order {
    let new = NewOrder {
        kind: Some(kind),
        subscriber: "S-1001".into(),
        decided_on: Some(date(2026, 12, 1)),
        ..NewOrder::default()
    };
    Order::new(
        1,
        kind,
        new,
        "sara",
        local(received),
        &days(),
        &OrderOptions::default(),
    )
}

#[test]
fn a_new_alarm_is_due_in_a_week_at_the_same_local_time_even_across_summer_time() {
    // Monday 7 December 10:00 -> Monday 14 December 10:00.
    let d = due(OrderKind::NewAlarm, false, None, "2026-12-07T10:00");
    assert_eq!(d.due, local("2026-12-14T10:00"));
    // Across the change to summer time (29 March 2026) the week is an hour shorter.
    let d = due(OrderKind::NewAlarm, false, None, "2026-03-25T10:00");
    assert_eq!(d.due, local("2026-04-01T10:00"));
    assert_eq!(
        d.due.duration_since(local("2026-03-25T10:00")).as_secs(),
        7 * 24 * 3600 - 3600
    );
}

#[test]
fn an_acute_new_alarm_is_due_by_the_end_of_the_next_working_day() {
    // On a Tuesday: by the end of Wednesday.
    let d = due(OrderKind::NewAlarm, true, None, "2026-12-08T16:30");
    assert_eq!(d.due, local("2026-12-10T00:00"));
    // On a Friday evening or a Saturday: by the end of Monday.
    for at in ["2026-12-04T18:00", "2026-12-05T09:00"] {
        let d = due(OrderKind::NewAlarm, true, None, at);
        assert_eq!(d.due, local("2026-12-08T00:00"), "{at}");
    }
    // The day before Christmas Eve: the 24th to the 27th are no working days.
    let d = due(OrderKind::NewAlarm, true, None, "2026-12-23T11:00");
    assert_eq!(d.due, local("2026-12-29T00:00"));
    // The day before Ascension Day (a Thursday): the Friday.
    let d = due(OrderKind::NewAlarm, true, None, "2026-05-13T08:00");
    assert_eq!(d.due, local("2026-05-16T00:00"));
}

#[test]
fn a_new_alarm_not_installed_in_a_month_goes_back_to_the_case_officer() {
    let o = order(OrderKind::NewAlarm, "2026-01-31T10:00");
    // A month after the 31st of January is the last of February.
    assert_eq!(o.return_by, Some(local("2026-02-28T10:00")));
    assert_eq!(o.due, local("2026-02-07T10:00"));
    assert_eq!(o.lateness(local("2026-02-07T09:59")), Lateness::InTime);
    assert_eq!(o.lateness(local("2026-02-07T10:00")), Lateness::Overdue);
    assert_eq!(o.lateness(local("2026-02-28T09:59")), Lateness::Overdue);
    assert_eq!(o.lateness(local("2026-02-28T10:00")), Lateness::ReturnDue);
    // A done order is never late.
    let mut done = o.clone();
    done.complete(local("2026-03-02T10:00"), "ivar").unwrap();
    assert_eq!(done.lateness(local("2026-06-01T00:00")), Lateness::InTime);
    // Other kinds never go back by themselves.
    let change = order(OrderKind::Change, "2026-01-31T10:00");
    assert_eq!(change.return_by, None);
    assert_eq!(
        change.lateness(local("2026-12-31T00:00")),
        Lateness::Overdue
    );
}

#[test]
fn changes_provider_changes_ends_and_locks_have_their_own_deadlines() {
    // A health change on a Friday evening: by the end of Monday.
    let d = due(OrderKind::Change, false, None, "2026-12-04T18:00");
    assert_eq!((d.due, d.return_by), (local("2026-12-08T00:00"), None));
    // A provider change from Monday 14 December: the keys moved by the end of that day.
    let d = due(
        OrderKind::ProviderChange,
        false,
        Some(date(2026, 12, 14)),
        "2026-12-07T10:00",
    );
    assert_eq!(d.due, local("2026-12-15T00:00"));
    // An end on the 20th, ordered on the 7th: picked up within 7 days of the 20th.
    let d = due(
        OrderKind::End,
        false,
        Some(date(2026, 12, 20)),
        "2026-12-07T10:00",
    );
    assert_eq!(d.due, local("2026-12-27T00:00"));
    // An end already past when the order arrives: 7 days from its arrival.
    let d = due(
        OrderKind::End,
        false,
        Some(date(2026, 12, 1)),
        "2026-12-07T10:00",
    );
    assert_eq!(d.due, local("2026-12-14T10:00"));
    let d = due(OrderKind::LockInstall, false, None, "2026-12-07T10:00");
    assert_eq!(d.due, local("2026-12-14T10:00"));
}

#[test]
fn a_provider_change_takes_effect_on_its_date() {
    let periods = [
        ProviderPeriod {
            from: date(2026, 12, 14),
            provider: "norr".into(),
        },
        ProviderPeriod {
            from: date(2025, 3, 1),
            provider: "centrum".into(),
        },
    ];
    assert_eq!(provider_on(&periods, date(2025, 2, 28)), None);
    assert_eq!(provider_on(&periods, date(2026, 12, 13)), Some("centrum"));
    assert_eq!(provider_on(&periods, date(2026, 12, 14)), Some("norr"));
    // The day is the centre's: 23:30 UTC on the 13th is already the 14th in Stockholm.
    let late = "2026-12-13T23:30:00Z".parse::<Timestamp>().unwrap();
    assert_eq!(provider_on(&periods, days().day_of(late)), Some("norr"));
}

#[test]
fn billing_runs_from_the_month_installed_to_the_month_ended_inclusive() {
    let m = |s: &str| s.parse::<Month>().unwrap();
    let installed = date(2026, 1, 31);
    let ended = Some(date(2026, 3, 1));
    assert!(!billed(installed, ended, m("2025-12")));
    assert!(billed(installed, ended, m("2026-01")));
    assert!(billed(installed, ended, m("2026-03")));
    assert!(!billed(installed, ended, m("2026-04")));
    assert_eq!(
        billed_months(installed, ended, m("2025-11"), m("2026-06")),
        [m("2026-01"), m("2026-02"), m("2026-03")]
    );
    // Still active: every month of the range from the installation on, across a new year.
    assert_eq!(
        billed_months(date(2026, 11, 30), None, m("2026-01"), m("2027-02")),
        [m("2026-11"), m("2026-12"), m("2027-01"), m("2027-02")]
    );
    // Installed and ended in the same month: that month.
    assert_eq!(
        billed_months(
            date(2026, 6, 1),
            Some(date(2026, 6, 30)),
            m("2026-01"),
            m("2026-12")
        ),
        [m("2026-06")]
    );
    assert!(billed_months(installed, ended, m("2026-04"), m("2026-12")).is_empty());
    assert_eq!(m("2026-12").next(), m("2027-01"));
    assert_eq!(m("2026-03").to_string(), "2026-03");
    for bad in ["2026-13", "2026-00", "26-01", "2026-1", "2026", "x-y"] {
        assert!(bad.parse::<Month>().is_err(), "{bad}");
    }
}

#[test]
fn an_order_that_arrives_is_checked_one_thing_at_a_time() {
    let ok = NewOrder {
        kind: Some(OrderKind::NewAlarm),
        subscriber: " S-1001 ".into(),
        decided_on: Some(date(2026, 12, 1)),
        keys_required: vec![KeyCount {
            kind: KeyKind::Door,
            count: 2,
        }],
        ..NewOrder::default()
    };
    let mut n = ok.clone();
    n.normalize();
    assert_eq!(n.subscriber, "S-1001");
    assert_eq!(n.validate(), Ok(OrderKind::NewAlarm));
    let field = |f: &dyn Fn(&mut NewOrder)| {
        let mut n = ok.clone();
        f(&mut n);
        n.normalize();
        n.validate().unwrap_err().field
    };
    assert_eq!(field(&|n| n.kind = None), "kind");
    assert_eq!(field(&|n| n.subscriber = "  ".into()), "subscriber");
    assert_eq!(field(&|n| n.decided_on = None), "decided_on");
    assert_eq!(field(&|n| n.external_id = Some(" ".into())), "external_id");
    assert_eq!(field(&|n| n.note = "x".repeat(4001)), "note");
    assert_eq!(field(&|n| n.keys_required[0].count = 0), "keys_required");
    assert_eq!(
        field(&|n| n.new_provider = Some("norr".into())),
        "new_provider"
    );
    assert_eq!(
        field(&|n| {
            n.kind = Some(OrderKind::ProviderChange);
            n.new_provider = Some("norr".into());
        }),
        "effective"
    );
    assert_eq!(
        field(&|n| {
            n.kind = Some(OrderKind::ProviderChange);
            n.effective = Some(date(2026, 12, 14));
        }),
        "new_provider"
    );
    assert_eq!(
        field(&|n| {
            n.kind = Some(OrderKind::End);
            n.acute = true;
        }),
        "acute"
    );
    // Unknown fields are refused when it is read.
    assert!(
        serde_json::from_str::<NewOrder>(
            r#"{"kind":"new_alarm","subscriber":"a","decided_on":"2026-12-01","x":1}"#
        )
        .is_err()
    );
}

#[test]
fn an_order_closes_once_and_a_return_or_cancel_needs_a_reason() {
    let mut o = order(OrderKind::NewAlarm, "2026-12-07T10:00");
    let at = local("2026-12-08T10:00");
    assert_eq!(o.send_back(at, "sara", "  "), Err(OrderChangeError::Reason));
    assert_eq!(
        o.cancel(at, "sara", &"x".repeat(501)),
        Err(OrderChangeError::Reason)
    );
    assert!(o.is_open());
    o.send_back(at, "sara", " No keys after a month ").unwrap();
    assert_eq!(
        o.state,
        OrderState::Returned {
            at,
            by: "sara".into(),
            reason: "No keys after a month".into()
        }
    );
    assert_eq!(o.complete(at, "ivar"), Err(OrderChangeError::NotOpen(1)));
    assert_eq!(
        o.cancel(at, "ivar", "again"),
        Err(OrderChangeError::NotOpen(1))
    );
    // The stored form reads back.
    let json = serde_json::to_string(&o).unwrap();
    assert_eq!(serde_json::from_str::<Order>(&json).unwrap(), o);
}

#[test]
fn the_options_are_bounded() {
    assert_eq!(OrderOptions::default().validate(), Ok(()));
    let o = OrderOptions {
        install_days: 0,
        ..OrderOptions::default()
    };
    assert!(o.validate().unwrap_err().contains("install_days"));
    let o = OrderOptions {
        return_after_months: 13,
        ..OrderOptions::default()
    };
    assert!(o.validate().unwrap_err().contains("return_after_months"));
}
