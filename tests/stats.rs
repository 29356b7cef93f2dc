//! The statistics (`GET /api/stats`) against the real server on 127.0.0.1:0, over a week of
//! Calls, dispatches and work orders written to the store with figures known by hand: the
//! centre's supervisor sees the whole centre and the operators' figures, or one
//! municipality's; a municipality's staff their own people's figures only, whatever scope
//! they ask for; a care provider's staff their provider's; the CSV holds the JSON's numbers;
//! every reading is audited; an operator is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;
use vakt::model::{
    Call, CallState, Dispatch, DispatchState, FaultKind, Outcome, Priority, Role, Subscriber,
    WorkOrder, WorkOrderState,
};

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const SUPERVISOR: (&str, &str) = ("sara", "sara-password-1");
const NORDBY: (&str, &str) = ("nordby", "nordby-password-1");
const CENTRUM: (&str, &str) = ("centrum", "centrum-password-1");

/// Monday 17 to Sunday 23 March 2025.
const WEEK: &str = "2025-W12";

fn tz() -> jiff::tz::TimeZone {
    vakt::config::Config::default().http.tz()
}

/// A local time of the centre (`2025-03-17 08:10`).
fn local(s: &str) -> jiff::Timestamp {
    format!("{s}:00")
        .parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(tz())
        .unwrap()
        .timestamp()
}

fn person(id: &str, name: &str, provider: &str, municipality: &str) -> Subscriber {
    Subscriber {
        id: id.into(),
        name: name.into(),
        personal_number: "19380512-9802".into(),
        care_provider: provider.into(),
        municipality: municipality.into(),
        ..Subscriber::default()
    }
}

/// A closed Call answered `answer` seconds after it opened.
fn call(
    id: u64,
    subscriber: Option<&str>,
    kind: &str,
    opened: &str,
    answer: i64,
    owner: &str,
    outcome: Outcome,
) -> Call {
    let opened_at = local(opened);
    Call {
        id,
        priority: Priority::PERSONAL,
        state: CallState::Closed,
        owner: Some(owner.into()),
        opened_at,
        alarm_count: 1,
        subscriber: subscriber.map(str::to_owned),
        account: "1234".into(),
        kind: kind.into(),
        restored: false,
        answered_at: Some(opened_at + jiff::SignedDuration::from_secs(answer)),
        closed_at: Some(opened_at + jiff::SignedDuration::from_mins(15)),
        outcome: Some(outcome),
        timeline: Vec::new(),
        last_signal_id: 0,
    }
}

/// A completed dispatch, received a minute after the offer, arrived `arrived` minutes
/// after it.
fn dispatch(id: u64, call: u64, area: &str, offered: &str, arrived: i64) -> Dispatch {
    let offered_at = local(offered);
    let mins = jiff::SignedDuration::from_mins;
    Dispatch {
        id,
        call,
        patrol: format!("{area}-1"),
        provider: "hc".into(),
        area: area.into(),
        state: DispatchState::Completed,
        offered_at,
        received_at: Some(offered_at + mins(1)),
        accepted_at: Some(offered_at + mins(1)),
        arrived_at: Some(offered_at + mins(arrived)),
        arrival_method: None,
        ended_at: Some(offered_at + mins(arrived + 20)),
        limit_mins: 30,
        warned_at_mins: Vec::new(),
        // Received a minute after the offer: arrived 31 minutes or more after it is late.
        breached: arrived > 31,
        note: String::new(),
        operator: "olle".into(),
        instruction: String::new(),
    }
}

fn order(id: u64, subscriber: &str, fault: FaultKind, created: &str) -> WorkOrder {
    let t = local(created);
    WorkOrder {
        id,
        account: format!("acc-{id}"),
        subscriber: Some(subscriber.into()),
        installer: "hjalpmedelscentralen".into(),
        fault,
        state: WorkOrderState::Done,
        created_at: t,
        start_by: t,
        done_by: t,
        started_at: Some(t),
        done_at: Some(t),
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

/// Anna (the centre's own municipality, Centrum's care), Bo (Nordby, Syd's), Cia (Nordby,
/// Centrum's), an unknown device; Bo's Call of the week before is not in the week.
fn fixture(store: &vakt::store::Store) {
    use Outcome::*;
    store
        .upsert_subscribers(&[
            person("anna", "Åsa Öberg", "hc", ""),
            person("bo", "Bo Berg", "hs", "Nordby kommun"),
            person("cia", "Cia Ek", "hc", "Nordby kommun"),
        ])
        .unwrap();
    store
        .save_calls(
            &[
                call(
                    1,
                    Some("bo"),
                    "Fall",
                    "2025-03-14 12:00",
                    10,
                    "olle",
                    PatrolNeeded,
                ),
                call(
                    2,
                    Some("anna"),
                    "Fall",
                    "2025-03-17 08:10",
                    20,
                    "olle",
                    PatrolNeeded,
                ),
                call(
                    3,
                    Some("anna"),
                    "Fall",
                    "2025-03-17 08:40",
                    50,
                    "olle",
                    HelpNotNeeded,
                ),
                call(
                    4,
                    Some("anna"),
                    "Medical",
                    "2025-03-18 09:05",
                    90,
                    "stina",
                    AccidentalPress,
                ),
                call(
                    5,
                    Some("bo"),
                    "Fall",
                    "2025-03-19 10:00",
                    200,
                    "stina",
                    PatrolNeeded,
                ),
                call(
                    6,
                    Some("cia"),
                    "Fire",
                    "2025-03-20 22:30",
                    5,
                    "olle",
                    FireBrigadeCalled,
                ),
                call(
                    7,
                    None,
                    "Unknown device",
                    "2025-03-22 03:00",
                    40,
                    "olle",
                    Technical,
                ),
            ],
            None,
        )
        .unwrap();
    store
        .save_dispatches(&[
            dispatch(1, 1, "syd", "2025-03-14 12:02", 20),
            dispatch(2, 2, "centrum", "2025-03-17 08:11", 25),
            dispatch(3, 5, "syd", "2025-03-19 10:04", 40),
        ])
        .unwrap();
    store
        .save_work_orders(
            &[
                order(1, "anna", FaultKind::LowBattery, "2025-03-18 12:00"),
                order(2, "bo", FaultKind::MainsLoss, "2025-03-19 12:00"),
            ],
            None,
        )
        .unwrap();
}

/// The `section;key;value` lines of the CSV (the first table), decimal commas made points.
fn csv_figures(body: &str) -> BTreeMap<(String, String), String> {
    let body = body.strip_prefix('\u{feff}').expect("a BOM first");
    assert!(body.starts_with("section;key;value\r\n"), "{body}");
    body.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let mut cells = l.splitn(3, ';');
            let (s, k, v) = (
                cells.next().unwrap(),
                cells.next().unwrap(),
                cells.next().unwrap_or(""),
            );
            ((s.to_owned(), k.to_owned()), v.replace(',', "."))
        })
        .collect()
}

/// The JSON's number as the CSV writes it (one decimal for a fraction; empty for none).
fn as_csv(v: &Value, decimals: bool) -> String {
    match v {
        Value::Null => String::new(),
        v if decimals => format!("{:.1}", v.as_f64().unwrap()),
        v => v.to_string(),
    }
}

/// Reads the statistics as JSON and as CSV and checks that the CSV says what the JSON says.
async fn both(c: &mut Client, query: &str) -> Value {
    let a = c.get(&format!("/api/stats?{query}")).await;
    assert_eq!(a.status, 200, "{query}: {}", a.body);
    let j = a.json();
    let csv = c.get(&format!("/api/stats?{query}&format=csv")).await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let f = csv_figures(&csv.body);
    let get = |s: &str, k: &str| f.get(&(s.to_owned(), k.to_owned())).cloned();
    for (section, key, path, decimals) in [
        ("calls", "total", "/calls/total", false),
        ("calls", "closed", "/calls/closed", false),
        ("calls", "alarms", "/calls/alarms", false),
        ("answer", "answered", "/answer/answered", false),
        ("answer", "median_secs", "/answer/median_answer_secs", true),
        ("answer", "within_60s_pct", "/answer/within_60s_pct", true),
        ("answer", "within_180s_pct", "/answer/within_180s_pct", true),
        ("arrival", "dispatches", "/arrival/dispatches", false),
        ("arrival", "arrived", "/arrival/arrived", false),
        ("arrival", "within_limit", "/arrival/within_limit", false),
        ("arrival", "median_secs", "/arrival/median_secs", false),
        ("arrival", "breaches", "/arrival/breaches", false),
        ("work_orders", "opened", "/technical/opened", false),
        ("work_orders", "done", "/technical/done", false),
        (
            "devices",
            "silent_now",
            "/technical/silent_devices_now",
            false,
        ),
    ] {
        assert_eq!(
            get(section, key).as_deref(),
            Some(as_csv(j.pointer(path).unwrap(), decimals).as_str()),
            "{query}: {section};{key}"
        );
    }
    for k in j["calls"]["by_kind"].as_array().unwrap() {
        let key = k["key"].as_str().unwrap();
        assert_eq!(
            get("calls.kind", key),
            Some(k["count"].to_string()),
            "{key}"
        );
    }
    let heat_total: u64 = csv
        .body
        .split("\r\n")
        .filter(|l| {
            ["mon;", "tue;", "wed;", "thu;", "fri;", "sat;", "sun;"]
                .iter()
                .any(|d| l.starts_with(d))
        })
        .flat_map(|l| {
            l.split(';')
                .skip(1)
                .map(|n| n.parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(
        heat_total,
        j["calls"]["total"].as_u64().unwrap(),
        "heat map"
    );
    let breaches = csv
        .body
        .lines()
        .filter(|l| l.starts_with("breach;") && !l.starts_with("breach;call;"))
        .count();
    assert_eq!(breaches as u64, j["arrival"]["breaches"].as_u64().unwrap());
    assert_eq!(
        csv.body.contains("\r\noperator;"),
        j.get("operators").is_some(),
        "the operators' table goes with the JSON's"
    );
    j
}

fn kinds(j: &Value) -> Vec<(String, u64)> {
    j["calls"]["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_owned(),
                k["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

#[tokio::test]
async fn each_user_reads_the_statistics_of_their_own_people() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir.path(), SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    add_user_of(
        dir.path(),
        NORDBY.0,
        Role::Municipality,
        Some("Nordby kommun"),
        NORDBY.1,
    );
    add_user_of(dir.path(), CENTRUM.0, Role::Provider, Some("hc"), CENTRUM.1);
    fixture(&open_store(dir.path()).unwrap());
    let mut cfg = test_config(dir.path());
    cfg.stats.frequent_caller_calls_per_month = 2;
    let srv = start_with(cfg).await;
    let http = srv.http.unwrap();
    let week = format!("period={WEEK}");

    // The centre: Calls 2-7 (1 was the Friday before), answered in 20, 50, 90, 200, 5 and
    // 40 s; dispatches 2 (25 min) and 3 (40 min, a breach).
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let all = both(&mut sup, &week).await;
    assert_eq!(all["scope"]["scope"], "all");
    assert_eq!(all["period"]["first"], "2025-03-17");
    assert_eq!(all["period"]["last"], "2025-03-23");
    assert_eq!(all["calls"]["total"], 6);
    assert_eq!(
        kinds(&all),
        [
            ("Fall".to_owned(), 3),
            ("Fire".to_owned(), 1),
            ("Medical".to_owned(), 1),
            ("Unknown device".to_owned(), 1)
        ]
    );
    assert_eq!(all["calls"]["by_outcome"][0]["key"], "patrol_needed");
    assert_eq!(all["calls"]["by_outcome"][0]["count"], 2);
    assert_eq!(all["answer"]["answered"], 6);
    assert!(close(&all["answer"]["median_answer_secs"], 45.0));
    assert!(close(&all["answer"]["within_60s_pct"], 400.0 / 6.0));
    assert!(close(&all["answer"]["within_180s_pct"], 500.0 / 6.0));
    let buckets: Vec<u64> = all["answer_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(buckets, [1, 1, 0, 2, 1, 0, 1, 0]);
    assert_eq!(all["arrival"]["dispatches"], 2);
    assert_eq!(all["arrival"]["within_limit"], 1);
    assert_eq!(all["arrival"]["breaches"], 1);
    assert_eq!(all["arrival"]["breached"][0]["call"], 5);
    assert_eq!(all["arrival"]["breached"][0]["minutes"], 40);
    assert_eq!(all["heat"][0][8], 2, "Monday 08:00-09:00");
    assert_eq!(all["heat"][5][3], 1, "Saturday 03:00-04:00");
    assert_eq!(all["frequent_callers"]["threshold"], 2);
    assert_eq!(all["frequent_callers"]["callers"][0]["subscriber"], "anna");
    assert_eq!(all["frequent_callers"]["callers"][0]["calls"], 3);
    assert_eq!(all["technical"]["opened"], 2);
    let ops = all["operators"]
        .as_array()
        .expect("the supervisor's own figures");
    assert_eq!(ops.len(), 2);
    assert_eq!(
        (ops[0]["operator"].as_str(), ops[0]["answered"].as_u64()),
        (Some("olle"), Some(4))
    );
    assert_eq!(ops[1]["closed"], 2);
    for chart in ["kinds", "outcomes", "answer", "heat"] {
        let svg = all["charts"][chart].as_str().unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{chart}"
        );
    }
    assert!(
        all["charts"]["kinds"]
            .as_str()
            .unwrap()
            .contains("Alarms by kind")
    );
    assert_eq!(all["choices"]["municipalities"][0], "Vaktby kommun");
    assert_eq!(all["choices"]["municipalities"][1], "Nordby kommun");

    // The supervisor's choice of one municipality: its figures, no operators'.
    let chosen = both(
        &mut sup,
        &format!("{week}&scope=municipality:Nordby%20kommun"),
    )
    .await;
    assert_eq!(chosen["calls"]["total"], 2);
    assert!(chosen.get("operators").is_none());

    // Nordby's staff: Bo's Call 5 and Cia's 6, Bo's late patrol; whatever they ask for.
    let mut nordby = Client::login(http, NORDBY.0, NORDBY.1).await;
    for query in [
        week.clone(),
        format!("{week}&scope=all"),
        format!("{week}&scope=provider:hs"),
    ] {
        let n = both(&mut nordby, &query).await;
        assert_eq!(n["scope"]["scope"], "municipality", "{query}");
        assert_eq!(n["scope"]["of"], "Nordby kommun");
        assert_eq!(n["calls"]["total"], 2);
        assert_eq!(kinds(&n), [("Fall".to_owned(), 1), ("Fire".to_owned(), 1)]);
        assert!(close(&n["answer"]["median_answer_secs"], 102.5));
        assert!(close(&n["answer"]["within_60s_pct"], 50.0));
        assert_eq!(n["arrival"]["dispatches"], 1);
        assert_eq!(n["arrival"]["breaches"], 1);
        assert_eq!(n["technical"]["opened"], 1);
        assert_eq!(n["technical"]["by_fault"][1]["key"], "mains_loss");
        assert_eq!(n["technical"]["by_fault"][1]["count"], 1);
        assert!(
            n["frequent_callers"]["callers"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(n.get("operators").is_none(), "never the operators' figures");
        assert!(n.get("choices").is_none());
        let body = serde_json::to_string(&n).unwrap();
        assert!(
            !body.contains("Åsa") && !body.contains("anna"),
            "nothing of Anna"
        );
    }

    // Centrum's staff: Anna's Calls 2, 3, 4 and Cia's 6; Anna's patrol in time.
    let mut centrum = Client::login(http, CENTRUM.0, CENTRUM.1).await;
    let p = both(
        &mut centrum,
        &format!("{week}&scope=municipality:Nordby%20kommun"),
    )
    .await;
    assert_eq!(p["scope"]["scope"], "provider");
    assert_eq!(p["scope"]["of"], "hc");
    assert_eq!(p["calls"]["total"], 4);
    assert_eq!(p["answer"]["answered"], 4);
    assert!(close(&p["answer"]["median_answer_secs"], 35.0));
    assert_eq!(p["arrival"]["dispatches"], 1);
    assert_eq!(p["arrival"]["breaches"], 0);
    assert_eq!(p["frequent_callers"]["callers"][0]["name"], "Åsa Öberg");
    assert!(p.get("operators").is_none());

    // A custom period around the Friday before: Bo's first Call only, for Nordby.
    let friday = both(&mut nordby, "from=2025-03-14&to=2025-03-14").await;
    assert_eq!(friday["period"]["kind"], "custom");
    assert_eq!(friday["calls"]["total"], 1);
    assert_eq!(friday["arrival"]["within_limit"], 1);

    // Refusals: the operators' desk has no statistics; a period or scope that is not one.
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    assert_eq!(op.get(&format!("/api/stats?{week}")).await.status, 403);
    for bad in [
        "period=2025-13",
        "period=2025-W54",
        "from=2025-01-01",
        "from=2024-01-01&to=2025-03-01",
        "period=2025-03&from=2025-03-01&to=2025-03-02",
        "scope=everyone",
        "format=xlsx",
    ] {
        let a = sup.get(&format!("/api/stats?{bad}")).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }

    // Every reading is in the audit log, by whom and of whose figures.
    let audit = sup.get("/api/audit?limit=1000").await.json();
    let read: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "report.stats")
        .map(|e| {
            (
                e["user"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let by = |u: &str| read.iter().filter(|(who, _)| who == u).count();
    // JSON and CSV each: the supervisor 2 x 2, Nordby 3 x 2 + 2, Centrum 2.
    assert_eq!((by(SUPERVISOR.0), by(NORDBY.0), by(CENTRUM.0)), (4, 8, 2));
    assert!(
        read.iter()
            .any(|(u, d)| u == NORDBY.0 && d == "2025-W12 of municipality Nordby kommun: 2 Calls"),
        "{read:?}"
    );

    // The API's document describes it.
    let doc = Client::new(http).get("/api/openapi.json").await.json();
    let get = &doc["paths"]["/api/stats"]["get"];
    let params: Vec<&str> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["scope", "period", "from", "to", "format"]);
    assert!(get["responses"]["400"].is_object());
    for schema in [
        "StatsView",
        "Statistics",
        "Period",
        "ArrivalBreach",
        "Charts",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    srv.stop().await.unwrap();
}
