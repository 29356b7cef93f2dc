use jiff::ToSpan;

use super::*;
use crate::model::ArrivalMethod;
use crate::registers::directory::{
    DEMO_AREAS, DEMO_PATROLS, DEMO_PROVIDERS, DEMO_ROUTES, parse_all,
};

fn stockholm() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn directory() -> Directory {
    parse_all(
        DEMO_PROVIDERS.as_bytes(),
        DEMO_AREAS.as_bytes(),
        DEMO_PATROLS.as_bytes(),
        DEMO_ROUTES.as_bytes(),
    )
    .unwrap()
}

/// A dispatch to `patrol` of `provider` arriving at `arrived` (UTC) and staying `secs`
/// seconds, completed with `note`.
fn visit(id: u64, provider: &str, patrol: &str, arrived: &str, secs: i64, note: &str) -> Dispatch {
    let arrived_at = at(arrived);
    let offered_at = arrived_at - 20.minutes();
    Dispatch {
        id,
        call: 100 + id,
        patrol: patrol.into(),
        provider: provider.into(),
        area: "centrum".into(),
        state: DispatchState::Completed,
        offered_at,
        received_at: Some(offered_at + 1.minute()),
        accepted_at: Some(offered_at + 1.minute()),
        arrived_at: Some(arrived_at),
        arrival_method: Some(ArrivalMethod::Lock),
        ended_at: Some(arrived_at + secs.seconds()),
        limit_mins: 30,
        warned_at_mins: Vec::new(),
        breached: false,
        note: note.into(),
        operator: "olle".into(),
        instruction: String::new(),
    }
}

fn who(call: u64) -> (String, String) {
    (format!("S-{call}"), format!("Person {call}"))
}

#[test]
fn a_visit_is_a_completed_dispatch_counted_in_the_month_it_arrived_in_whole_minutes() {
    let tz = stockholm();
    let (from, to) = month_bounds("2026-11", &tz).unwrap();
    let mut not_arrived = visit(
        5,
        "hemtjanst-centrum",
        "centrum-dag",
        "2026-11-10T10:00:00Z",
        0,
        "",
    );
    not_arrived.state = DispatchState::Declined;
    not_arrived.arrived_at = None;
    let mut on_site = visit(
        6,
        "hemtjanst-centrum",
        "centrum-dag",
        "2026-11-10T11:00:00Z",
        0,
        "",
    );
    on_site.state = DispatchState::Arrived;
    on_site.ended_at = None;
    let ds = [
        // 30 seconds on site: one minute. Offered in October (local), arrived in November.
        visit(
            1,
            "hemtjanst-centrum",
            "centrum-kvall",
            "2026-10-31T23:05:00Z",
            30,
            "helped: up from the floor",
        ),
        // 12 minutes and a second: 13 minutes.
        visit(
            2,
            "hemtjanst-norr",
            "norr-dag",
            "2026-11-12T09:00:00Z",
            12 * 60 + 1,
            "not_home",
        ),
        // Arrived at 23:30 local on the last day: still November.
        visit(
            3,
            "hemtjanst-centrum",
            "centrum-kvall",
            "2026-11-30T22:30:00Z",
            600,
            "the door was open",
        ),
        // 00:10 local on 1 December: December's.
        visit(
            4,
            "hemtjanst-centrum",
            "centrum-kvall",
            "2026-11-30T23:10:00Z",
            600,
            "",
        ),
        not_arrived,
        on_site,
    ];
    let (providers, visits) = visits_of(&ds, &directory(), who, from, to, None);
    let ids: Vec<u64> = visits.iter().map(|v| v.dispatch).collect();
    assert_eq!(ids, [1, 2, 3]);
    let minutes: Vec<u64> = visits.iter().map(|v| v.minutes).collect();
    assert_eq!(minutes, [1, 13, 10]);
    let first = &visits[0];
    assert_eq!(
        (
            first.outcome.as_str(),
            first.note.as_str(),
            first.patrol_name.as_str(),
            first.provider_name.as_str(),
            first.subscriber.as_str(),
            first.arrival_method.as_str()
        ),
        (
            "helped",
            "up from the floor",
            "Centrum kväll",
            "Hemtjänst Centrum",
            "S-101",
            "lock"
        )
    );
    assert_eq!(
        (visits[1].outcome.as_str(), visits[1].note.as_str()),
        ("not_home", "")
    );
    assert_eq!(
        (visits[2].outcome.as_str(), visits[2].note.as_str()),
        ("", "the door was open")
    );
    assert_eq!(
        providers,
        [
            ProviderVisits {
                provider: "hemtjanst-centrum".into(),
                provider_name: "Hemtjänst Centrum".into(),
                visits: 2,
                minutes: 11
            },
            ProviderVisits {
                provider: "hemtjanst-norr".into(),
                provider_name: "Hemtjänst Norr".into(),
                visits: 1,
                minutes: 13
            }
        ]
    );
    // One provider's only; the subscriber of a Call is looked up only for visits.
    let mut looked_up = Vec::new();
    let (providers, visits) = visits_of(
        &ds,
        &directory(),
        |call| {
            looked_up.push(call);
            who(call)
        },
        from,
        to,
        Some("hemtjanst-norr"),
    );
    assert_eq!((providers.len(), visits.len()), (1, 1));
    assert_eq!(looked_up, [102]);
}

#[test]
fn the_outcome_is_read_only_from_the_patrols_words() {
    assert_eq!(outcome_and_note("helped: up again"), ("helped", "up again"));
    assert_eq!(
        outcome_and_note("ambulance_called"),
        ("ambulance_called", "")
    );
    assert_eq!(outcome_and_note("Helped: x"), ("", "Helped: x"));
    assert_eq!(outcome_and_note("dog: barked"), ("", "dog: barked"));
    assert_eq!(outcome_and_note(""), ("", ""));
}

#[test]
fn the_csv_has_local_times_and_quotes_what_needs_it() {
    let tz = stockholm();
    let (from, to) = month_bounds("2026-11", &tz).unwrap();
    let ds = [visit(
        1,
        "hemtjanst-centrum",
        "centrum-kvall",
        "2026-11-10T17:00:00Z",
        90,
        "helped: up, then coffee",
    )];
    let (providers, visits) = visits_of(&ds, &directory(), who, from, to, None);
    let r = VisitsReport {
        month: "2026-11".into(),
        time_zone: "Europe/Stockholm".into(),
        provider: None,
        providers,
        visits,
    };
    let csv = to_csv(&r, &tz);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    assert_eq!(
        lines.next(),
        Some(
            "2026-11,hemtjanst-centrum,Hemtjänst Centrum,centrum-kvall,Centrum kväll,1,101,S-101,\
             Person 101,centrum,2026-11-10 18:00:00,2026-11-10 18:01:30,2,lock,helped,\"up, then coffee\""
        )
    );
    assert_eq!(lines.next(), None);
}

#[test]
fn the_report_reads_the_store_and_names_the_person() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save_directory(&directory()).unwrap();
    let ds = [
        visit(
            1,
            "hemtjanst-centrum",
            "centrum-dag",
            "2026-11-10T09:00:00Z",
            300,
            "helped",
        ),
        visit(
            2,
            "hemtjanst-centrum",
            "centrum-dag",
            "2026-10-10T09:00:00Z",
            300,
            "helped",
        ),
    ];
    store.save_dispatches(&ds).unwrap();
    // No Call in the store: the visit stays, without a person.
    let r = visits_report(&store, "2026-11", &stockholm(), None).unwrap();
    assert_eq!(r.visits.len(), 1);
    assert_eq!(r.visits[0].subscriber, "");
    assert_eq!(r.providers[0].minutes, 5);
    // With its Call and the person in the register: named.
    let csv = format!(
        "{}\nS-1001,Åsa Öberg,19380412-9827,Storgatan 14,991 31,Vaktby,centrum,0980-319 200,\
         hemtjanst-centrum,2,,,,,,,,,,,,,,,,sv,,yes\n",
        crate::registers::subscribers::CSV_HEADER
    );
    let subs = crate::registers::subscribers::parse_csv(csv.as_bytes()).unwrap();
    store.upsert_subscribers(&subs[..1]).unwrap();
    let call = crate::model::Call {
        id: 101,
        priority: crate::model::Priority(1),
        state: crate::model::CallState::Closed,
        owner: Some("olle".into()),
        opened_at: at("2026-11-10T08:35:00Z"),
        alarm_count: 1,
        subscriber: Some(subs[0].id.clone()),
        account: "1234".into(),
        kind: "Fall".into(),
        restored: false,
        answered_at: Some(at("2026-11-10T08:36:00Z")),
        closed_at: Some(at("2026-11-10T08:40:00Z")),
        outcome: None,
        timeline: Vec::new(),
        last_signal_id: 1,
    };
    store.save_calls(&[call], None).unwrap();
    let r = visits_report(&store, "2026-11", &stockholm(), Some("hemtjanst-centrum")).unwrap();
    assert_eq!(
        (
            r.visits[0].subscriber.as_str(),
            r.visits[0].subscriber_name.as_str()
        ),
        ("S-1001", "Åsa Öberg")
    );
    assert_eq!(r.provider.as_deref(), Some("hemtjanst-centrum"));
    assert!(matches!(
        visits_report(&store, "2026-13", &stockholm(), None),
        Err(ReportError::BadMonth(_))
    ));
}
