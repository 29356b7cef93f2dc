use jiff::ToSpan;

use super::*;
use crate::model::{
    Area, DispatchState, Outcome, Priority, WorkOrderState, work_order::WorkOrder as Wo,
};

fn stockholm() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}

/// A local time in Stockholm (`2026-11-23 08:10:00`).
fn local(s: &str) -> Timestamp {
    s.parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(stockholm())
        .unwrap()
        .timestamp()
}

/// The figures' time: Sunday 29 November 2026, 23:51:40 in Stockholm.
fn now() -> Timestamp {
    local("2026-11-29 23:51:40")
}

fn person(id: &str, name: &str, provider: &str, municipality: &str) -> Subscriber {
    Subscriber {
        id: id.into(),
        name: name.into(),
        care_provider: provider.into(),
        municipality: municipality.into(),
        ..Subscriber::default()
    }
}

/// A Call of `subscriber` of `kind` opened at `opened` (local), answered `answer` seconds
/// later by `owner`, closed with `outcome` (none: still queued).
fn call(
    id: u64,
    subscriber: Option<&str>,
    kind: &str,
    opened: &str,
    answer: Option<i64>,
    owner: Option<&str>,
    outcome: Option<Outcome>,
) -> Call {
    let opened_at = local(opened);
    let answered_at = answer.map(|s| opened_at + s.seconds());
    Call {
        id,
        priority: Priority::PERSONAL,
        state: if outcome.is_some() {
            CallState::Closed
        } else {
            CallState::Queued
        },
        owner: owner.map(str::to_owned),
        opened_at,
        alarm_count: 1,
        subscriber: subscriber.map(str::to_owned),
        account: "1234".into(),
        kind: kind.into(),
        restored: false,
        answered_at,
        closed_at: outcome.map(|_| opened_at + 10.minutes()),
        outcome,
        timeline: Vec::new(),
        last_signal_id: id,
    }
}

/// A dispatch of `call` offered at `offered` (local), received a minute later, arrived
/// `arrived` minutes after the offer.
fn dispatch(
    id: u64,
    call: u64,
    patrol: &str,
    area: &str,
    offered: &str,
    arrived: Option<i64>,
    state: DispatchState,
) -> Dispatch {
    let offered_at = local(offered);
    Dispatch {
        id,
        call,
        patrol: patrol.into(),
        provider: "hc".into(),
        area: area.into(),
        state,
        offered_at,
        received_at: Some(offered_at + 1.minute()),
        accepted_at: Some(offered_at + 1.minute()),
        arrived_at: arrived.map(|m| offered_at + m.minutes()),
        arrival_method: None,
        ended_at: None,
        limit_mins: 30,
        warned_at_mins: Vec::new(),
        breached: false,
        note: String::new(),
        operator: "olle".into(),
        instruction: String::new(),
    }
}

fn order(
    id: u64,
    subscriber: Option<&str>,
    fault: FaultKind,
    state: WorkOrderState,
    created: &str,
) -> Wo {
    let created_at = local(created);
    Wo {
        id,
        account: format!("acc{id}"),
        subscriber: subscriber.map(str::to_owned),
        installer: "hmc".into(),
        fault,
        state,
        created_at,
        start_by: created_at + 24.hours(),
        done_by: created_at + 240.hours(),
        started_at: None,
        done_at: None,
        cancelled_at: None,
        cancel_reason: None,
        replaces: None,
        replaced_by: None,
        call: None,
        signal_ids: Vec::new(),
        repeats: 0,
        restores: 0,
        restored_at: None,
        timeline: Vec::new(),
    }
}

/// Anna (Vaktby, the centre's own: no municipality on the card; Centrum's care), Bo (Nordby,
/// Syd's care), Cia (Nordby, Centrum's care); an unknown device's Call; a week of alarms,
/// dispatches, work orders and silent devices with the figures worked out by hand in each
/// test.
fn records() -> Records {
    use Outcome::*;
    let subscribers = [
        person("anna", "Åsa Öberg", "hc", ""),
        person("bo", "Bo Berg", "hs", "Nordby kommun"),
        person("cia", "Cia Ek", "hc", "Nordby kommun"),
    ]
    .into_iter()
    .map(|s| (s.id.clone(), s))
    .collect();
    let mut two_presses = call(
        2,
        Some("anna"),
        "Fall",
        "2026-11-23 08:40:00",
        Some(50),
        Some("olle"),
        Some(HelpNotNeeded),
    );
    two_presses.alarm_count = 3;
    let calls = vec![
        // Before the week: only its dispatch (offered in the week) counts.
        call(
            8,
            Some("anna"),
            "Fall",
            "2026-11-22 23:59:00",
            Some(30),
            Some("olle"),
            Some(PatrolNeeded),
        ),
        call(
            1,
            Some("anna"),
            "Fall",
            "2026-11-23 08:10:00",
            Some(20),
            Some("olle"),
            Some(PatrolNeeded),
        ),
        two_presses,
        call(
            3,
            Some("anna"),
            "Medical",
            "2026-11-24 09:05:00",
            Some(90),
            Some("stina"),
            Some(AccidentalPress),
        ),
        call(
            4,
            Some("bo"),
            "Fall",
            "2026-11-25 10:00:00",
            Some(200),
            Some("stina"),
            Some(PatrolNeeded),
        ),
        call(
            5,
            Some("cia"),
            "Fire",
            "2026-11-26 22:30:00",
            Some(5),
            Some("olle"),
            Some(FireBrigadeCalled),
        ),
        call(
            6,
            None,
            "Unknown device",
            "2026-11-28 03:00:00",
            Some(40),
            Some("olle"),
            Some(Technical),
        ),
        // Waiting 100 s at `now`: misses 60 s, not yet 180 s.
        call(
            7,
            Some("anna"),
            "Fall",
            "2026-11-29 23:50:00",
            None,
            None,
            None,
        ),
        // After the week.
        call(
            9,
            Some("anna"),
            "Fall",
            "2026-11-30 00:00:00",
            None,
            None,
            None,
        ),
    ];
    let mut late = dispatch(
        2,
        4,
        "s1",
        "syd",
        "2026-11-25 10:04:00",
        Some(40),
        DispatchState::Completed,
    );
    late.breached = true;
    let mut cancelled = dispatch(
        3,
        2,
        "c1",
        "centrum",
        "2026-11-23 08:42:00",
        None,
        DispatchState::Cancelled,
    );
    cancelled.breached = true;
    cancelled.ended_at = Some(local("2026-11-23 09:27:00"));
    let dispatches = vec![
        // Of Call 8, opened the evening before the week.
        dispatch(
            4,
            8,
            "c1",
            "centrum",
            "2026-11-23 00:05:00",
            Some(10),
            DispatchState::Completed,
        ),
        dispatch(
            1,
            1,
            "c1",
            "centrum",
            "2026-11-23 08:11:00",
            Some(25),
            DispatchState::Completed,
        ),
        late,
        cancelled,
        // Before the week.
        dispatch(
            5,
            8,
            "c1",
            "centrum",
            "2026-11-22 23:00:00",
            Some(10),
            DispatchState::Completed,
        ),
    ];
    let overdue_old = order(
        4,
        Some("cia"),
        FaultKind::DeviceFailure,
        WorkOrderState::Started,
        "2026-11-10 12:00:00",
    );
    let overdue_new = order(
        2,
        Some("bo"),
        FaultKind::MainsLoss,
        WorkOrderState::New,
        "2026-11-25 12:00:00",
    );
    let work_orders = vec![
        order(
            1,
            Some("anna"),
            FaultKind::LowBattery,
            WorkOrderState::Done,
            "2026-11-24 12:00:00",
        ),
        overdue_new.clone(),
        order(
            3,
            None,
            FaultKind::Tamper,
            WorkOrderState::Cancelled,
            "2026-11-27 12:00:00",
        ),
    ];
    let silent = [("1234", Some("anna")), ("5555", Some("bo")), ("9999", None)]
        .into_iter()
        .map(|(a, s)| SilentDevice {
            account: a.into(),
            subscriber: s.map(str::to_owned),
        })
        .collect();
    Records {
        calls,
        earlier_calls: Vec::new(),
        dispatches,
        work_orders,
        open_work_orders: vec![overdue_old, overdue_new],
        silent,
        subscribers,
        directory: Directory {
            areas: vec![
                Area {
                    id: "centrum".into(),
                    name: "Centrum".into(),
                    arrival_limit_mins: 30,
                    municipality: String::new(),
                },
                Area {
                    id: "syd".into(),
                    name: "Syd".into(),
                    arrival_limit_mins: 30,
                    municipality: String::new(),
                },
            ],
            ..Directory::default()
        },
    }
}

fn week() -> Period {
    Period::parse(Some("2026-W48"), None, None, &stockholm(), now()).unwrap()
}

fn stats(scope: Scope, operators: bool) -> Statistics {
    let opts = StatsOptions {
        frequent_caller_calls_per_month: 2,
    };
    figures(
        &records(),
        &Ask {
            period: &week(),
            scope: &scope,
            home: "Vaktby kommun",
            tz: &stockholm(),
            opts: &opts,
            operators,
        },
        now(),
    )
}

fn counts(v: &[Count]) -> Vec<(&str, usize)> {
    v.iter().map(|c| (c.key.as_str(), c.count)).collect()
}

fn buckets(v: &[Bucket]) -> Vec<usize> {
    v.iter().map(|b| b.count).collect()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn the_centre_sees_every_figure_of_the_week() {
    let s = stats(Scope::All, true);
    assert_eq!(s.period.first.to_string(), "2026-11-23");
    assert_eq!(s.period.last.to_string(), "2026-11-29");
    assert_eq!(s.generated_at, now());

    // Calls 1-7 (8 is the Sunday before, 9 the Monday after).
    let c = &s.calls;
    assert_eq!((c.total, c.closed, c.open, c.alarms), (7, 6, 1, 9));
    assert_eq!(
        counts(&c.by_kind),
        [
            ("Fall", 4),
            ("Fire", 1),
            ("Medical", 1),
            ("Unknown device", 1)
        ]
    );
    assert_eq!(
        counts(&c.by_outcome),
        [
            ("patrol_needed", 2),
            ("accidental_press", 1),
            ("fire_brigade_called", 1),
            ("help_not_needed", 1),
            ("technical", 1)
        ]
    );

    // Answered in 20, 50, 90, 200, 5 and 40 s; Call 7 waiting 100 s.
    let a = &s.answer;
    assert_eq!((a.calls, a.answered), (7, 6));
    assert_eq!(a.date, "2026-W48");
    assert!(close(a.median_answer_secs, 45.0));
    assert!(
        close(a.within_60s_pct, 400.0 / 7.0),
        "{:?}",
        a.within_60s_pct
    );
    assert!(close(a.within_180s_pct, 500.0 / 6.0));
    assert_eq!((a.target_60s_pct, a.target_180s_pct), (97.5, 99.0));
    // ≤10 ≤20 ≤30 ≤60 ≤120 ≤180 ≤300 longer
    assert_eq!(buckets(&s.answer_buckets), [1, 1, 0, 2, 1, 0, 1, 0]);
    assert_eq!(s.answer_buckets[3].upto_secs, Some(60));
    assert_eq!(s.answer_buckets[7].upto_secs, None);

    // Dispatches 4 (10 min), 1 (25 min), 2 (40 min: a breach), 3 (cancelled after its
    // breach, 45 min after the dispatch); 5 was offered before the week.
    let r = &s.arrival;
    assert_eq!((r.dispatches, r.arrived, r.within_limit), (4, 3, 2));
    assert!(close(r.within_limit_pct, 50.0));
    assert_eq!((r.median_secs, r.p90_secs), (Some(1500), Some(2400)));
    assert_eq!(r.breaches, 2);
    let b: Vec<_> = r
        .breached
        .iter()
        .map(|b| {
            (
                b.call,
                b.dispatch,
                b.patrol.as_str(),
                b.arrived,
                b.minutes,
                b.limit_mins,
            )
        })
        .collect();
    assert_eq!(b, [(2, 3, "c1", false, 45, 30), (4, 2, "s1", true, 40, 30)]);
    let areas: Vec<_> = r
        .areas
        .iter()
        .map(|a| {
            (
                a.area_name.as_str(),
                a.limit_mins,
                a.dispatches,
                a.arrived,
                a.within_limit,
                a.breaches,
            )
        })
        .collect();
    assert_eq!(
        areas,
        [("Centrum", 30, 3, 2, 2, 1), ("Syd", 30, 1, 1, 0, 1)]
    );

    // Monday 08 (Calls 1, 2), Tuesday 09, Wednesday 10, Thursday 22, Saturday 03, Sunday 23.
    let mut expected = vec![vec![0usize; 24]; 7];
    for (day, hour, n) in [
        (0, 8, 2),
        (1, 9, 1),
        (2, 10, 1),
        (3, 22, 1),
        (5, 3, 1),
        (6, 23, 1),
    ] {
        expected[day][hour] = n;
    }
    assert_eq!(s.heat, expected);

    // Anna: Calls 1, 2, 3 and 7 in November, more than 2.
    assert_eq!(s.frequent_callers.threshold, 2);
    assert_eq!(
        s.frequent_callers.callers,
        [FrequentCaller {
            subscriber: "anna".into(),
            name: "Åsa Öberg".into(),
            month: "2026-11".into(),
            calls: 4,
        }]
    );

    // Orders 1 (done), 2 (open, not started by its day), 3 (cancelled); 4 from before the
    // week, late too.
    let t = &s.technical;
    assert_eq!(
        counts(&t.by_fault),
        [
            ("low_battery", 1),
            ("mains_loss", 1),
            ("tamper", 1),
            ("device_failure", 0),
            ("reported", 0)
        ]
    );
    assert_eq!(
        (
            t.opened,
            t.done,
            t.cancelled,
            t.open,
            t.overdue_now,
            t.silent_devices_now
        ),
        (3, 1, 1, 1, 2, 3)
    );

    // Olle answered 20, 50, 5, 40 s and closed four; Stina 90 and 200 s and closed two.
    let ops: Vec<_> = s
        .operators
        .as_ref()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o.operator.as_str(),
                o.answered,
                o.median_answer_secs,
                o.closed,
            )
        })
        .collect();
    assert_eq!(
        ops,
        [("olle", 4, Some(30.0), 4), ("stina", 2, Some(145.0), 2)]
    );
}

#[test]
fn a_municipality_sees_its_own_people_only() {
    let s = stats(Scope::Municipality("nordby KOMMUN".into()), true);
    // Bo's Call 4 and Cia's Call 5.
    assert_eq!((s.calls.total, s.calls.closed, s.calls.alarms), (2, 2, 2));
    assert_eq!(counts(&s.calls.by_kind), [("Fall", 1), ("Fire", 1)]);
    assert_eq!(
        counts(&s.calls.by_outcome),
        [("fire_brigade_called", 1), ("patrol_needed", 1)]
    );
    assert_eq!((s.answer.calls, s.answer.answered), (2, 2));
    assert!(close(s.answer.median_answer_secs, 102.5));
    assert!(close(s.answer.within_60s_pct, 50.0));
    assert!(close(s.answer.within_180s_pct, 50.0));
    assert_eq!(buckets(&s.answer_buckets), [1, 0, 0, 0, 0, 0, 1, 0]);
    // Bo's late patrol only.
    let r = &s.arrival;
    assert_eq!(
        (r.dispatches, r.arrived, r.within_limit, r.breaches),
        (1, 1, 0, 1)
    );
    assert!(close(r.within_limit_pct, 0.0));
    assert_eq!((r.median_secs, r.p90_secs), (Some(2400), Some(2400)));
    assert_eq!(r.breached[0].dispatch, 2);
    assert_eq!(s.heat.iter().flatten().sum::<usize>(), 2);
    assert_eq!((s.heat[2][10], s.heat[3][22]), (1, 1));
    assert!(s.frequent_callers.callers.is_empty());
    let t = &s.technical;
    assert_eq!(
        (
            t.opened,
            t.done,
            t.cancelled,
            t.open,
            t.overdue_now,
            t.silent_devices_now
        ),
        (1, 0, 0, 1, 2, 1)
    );
    // Never the operators' figures outside the whole centre.
    assert_eq!(s.operators, None);
    assert!(!serde_json::to_string(&s).unwrap().contains("operators"));
}

#[test]
fn the_centres_own_municipality_holds_the_cards_without_one() {
    let s = stats(Scope::Municipality("Vaktby kommun".into()), false);
    // Anna's Calls 1, 2, 3, 7; her dispatches 4 (of Call 8, before the week), 1 and 3.
    assert_eq!((s.calls.total, s.answer.answered), (4, 3));
    assert_eq!(s.arrival.dispatches, 3);
    assert_eq!(s.frequent_callers.callers.len(), 1);
}

#[test]
fn a_care_provider_sees_its_own_people_only() {
    let s = stats(Scope::Provider("hc".into()), true);
    // Anna's Calls 1, 2, 3, 7 and Cia's 5.
    assert_eq!((s.calls.total, s.calls.open), (5, 1));
    assert_eq!((s.answer.calls, s.answer.answered), (5, 4));
    assert!(close(s.answer.median_answer_secs, 35.0));
    assert!(close(s.answer.within_60s_pct, 60.0));
    assert!(close(s.answer.within_180s_pct, 100.0));
    // Dispatches 4, 1 (in time) and 3 (breached).
    let r = &s.arrival;
    assert_eq!(
        (r.dispatches, r.arrived, r.within_limit, r.breaches),
        (3, 2, 2, 1)
    );
    assert!(close(r.within_limit_pct, 200.0 / 3.0));
    assert_eq!((r.median_secs, r.p90_secs), (Some(600), Some(1500)));
    let t = &s.technical;
    assert_eq!(
        (
            t.opened,
            t.done,
            t.open,
            t.overdue_now,
            t.silent_devices_now
        ),
        (1, 1, 0, 1, 1)
    );
    assert_eq!(s.operators, None);
}

#[test]
fn the_csv_holds_the_jsons_numbers() {
    let s = stats(Scope::All, true);
    let csv = to_csv(&s, &stockholm());
    assert!(csv.starts_with("\u{feff}section;key;value\r\n"), "{csv}");
    for line in [
        "scope;scope;all",
        "period;label;2026-W48",
        "period;first;2026-11-23",
        "calls;total;7",
        "calls;alarms;9",
        "calls.kind;Fall;4",
        "calls.kind;Unknown device;1",
        "calls.outcome;patrol_needed;2",
        "answer;median_secs;45,0",
        "answer;within_60s_pct;57,1",
        "answer;within_180s_pct;83,3",
        "answer;target_60s_pct;97,5",
        "answer.buckets;upto_60s;2",
        "answer.buckets;longer;0",
        "arrival;within_limit_pct;50,0",
        "arrival;median_secs;1500",
        "arrival;breaches;2",
        "work_orders.fault;mains_loss;1",
        "work_orders;overdue_now;2",
        "devices;silent_now;3",
        "weekday;00;01;02;03;04;05;06;07;08;09;10;11;12;13;14;15;16;17;18;19;20;21;22;23",
        "mon;0;0;0;0;0;0;0;0;2;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0",
        "breach;2;3;c1;centrum;2026-11-23 08:42;30;no;45",
        "breach;4;2;s1;syd;2026-11-25 10:04;30;yes;40",
        "frequent_caller;anna;Åsa Öberg;2026-11;4",
        "area;centrum;Centrum;30;3;2;2;1",
        "operator;olle;4;30,0;4",
    ] {
        assert!(csv.contains(&format!("{line}\r\n")), "{line} not in\n{csv}");
    }
    // A tenant's CSV has no operators' table.
    let t = stats(Scope::Provider("hc".into()), false);
    assert!(!to_csv(&t, &stockholm()).contains("operator;"));
}

#[test]
fn a_cell_that_looks_like_a_formula_is_text() {
    assert_eq!(cell("=SUM(A1)"), "'=SUM(A1)");
    assert_eq!(cell("a;b"), "\"a;b\"");
    assert_eq!(cell("plain"), "plain");
}

#[test]
fn periods_are_local_days() {
    let tz = stockholm();
    let p = |period: Option<&str>, from: Option<&str>, to: Option<&str>| {
        Period::parse(period, from, to, &tz, now())
    };
    let w = p(Some("2026-W48"), None, None).unwrap();
    assert_eq!(w.kind, PeriodKind::Week);
    assert_eq!(w.from, "2026-11-22T23:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(w.to, "2026-11-29T23:00:00Z".parse::<Timestamp>().unwrap());
    // 2026 has a 53rd week, 2027 none.
    let w53 = p(Some("2026-W53"), None, None).unwrap();
    assert_eq!(
        (w53.first.to_string(), w53.last.to_string()),
        ("2026-12-28".into(), "2027-01-03".into())
    );
    assert!(p(Some("2027-W53"), None, None).is_err());
    assert!(p(Some("2026-W1"), None, None).is_err());
    // March: 31 days, one of them 23 hours long.
    let m = p(Some("2026-03"), None, None).unwrap();
    assert_eq!(
        (m.kind, m.first.to_string(), m.last.to_string()),
        (PeriodKind::Month, "2026-03-01".into(), "2026-03-31".into())
    );
    assert_eq!(m.from, "2026-02-28T23:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(m.to, "2026-03-31T22:00:00Z".parse::<Timestamp>().unwrap());
    let d = p(Some("2026-11-24"), None, None).unwrap();
    assert_eq!((d.kind, d.label.as_str()), (PeriodKind::Day, "2026-11-24"));
    assert_eq!(d.to.duration_since(d.from).as_hours(), 24);
    // Neither: this month.
    assert_eq!(p(None, None, None).unwrap().label, "2026-11");
    assert_eq!(p(Some(" "), Some(""), None).unwrap().label, "2026-11");
    // Custom, both days included, at most 366 days.
    let c = p(None, Some("2026-01-01"), Some("2026-12-31")).unwrap();
    assert_eq!(
        (c.kind, c.label.as_str()),
        (PeriodKind::Custom, "2026-01-01..2026-12-31")
    );
    assert!(
        p(None, Some("2024-01-01"), Some("2024-12-31")).is_ok(),
        "366 days"
    );
    assert!(
        p(None, Some("2026-01-01"), Some("2027-01-01")).is_ok(),
        "366 days"
    );
    assert!(
        p(None, Some("2026-01-01"), Some("2027-01-02")).is_err(),
        "367 days"
    );
    assert!(p(None, Some("2026-02-02"), Some("2026-02-01")).is_err());
    assert!(p(None, Some("2026-02-02"), None).is_err());
    assert!(p(Some("2026-11"), Some("2026-02-02"), Some("2026-02-03")).is_err());
    for wrong in [
        "2026",
        "2026-13",
        "2026-11-31",
        "26-11-01",
        "2026-1-01",
        "2026-W00",
        "week",
    ] {
        assert!(p(Some(wrong), None, None).is_err(), "{wrong}");
    }
}

#[test]
fn the_option_is_checked() {
    assert!(StatsOptions::default().problems().is_empty());
    assert_eq!(StatsOptions::default().frequent_caller_calls_per_month, 10);
    let zero = StatsOptions {
        frequent_caller_calls_per_month: 0,
    };
    assert_eq!(zero.problems().len(), 1);
}
