//! Dispatch end to end against the real server on 127.0.0.1:0: a DC-09 alarm becomes a Call,
//! the operator dispatches the suggested patrol through the API, a real QUIC patrol client
//! confirms receipt, changes network (and vakt restarts) mid-assignment and gets it back,
//! arrives and completes after the Call was closed; every step is on the Call's timeline.
//! A patrol that does not confirm receipt in time is passed over for the next one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vakt::dispatch::wire::{FromPatrol, ToPatrol, VisitOutcome};
use vakt::model::{ArrivalMethod, DispatchState, Role};
use vakt::sim::patrol_client::Session;
use vakt::transport::quic::{self, Trust};

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");

fn subscribers_csv() -> String {
    format!(
        "{}\n\
         anna,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Centrum,070-111 22 33,Hemtjänst Centrum,2,\"Nyckelskåp Centrum, krok 14\",PL-3301,4711#,Hund i hallen,,,Karin Öberg,dotter,070-222 33 44,,,,,,,sv\n",
        vakt::registers::subscribers::CSV_HEADER
    )
}

/// A directory where both Centrum patrols work around the clock, c1 first.
fn directory() -> vakt::registers::directory::Directory {
    vakt::registers::directory::parse_all(
        "id,name,phone\nhc,Hemtjänst Centrum,08-1\n".as_bytes(),
        "id,name,arrival_limit_mins\ncentrum,Centrum,30\n".as_bytes(),
        "id,name,provider,areas,shifts,phone\n\
         c1,Centrum 1,hc,centrum,day 00:00-12:00;evening 12:00-00:00,070-1\n\
         c2,Centrum 2,hc,centrum,day 00:00-12:00;evening 12:00-00:00,070-2\n"
            .as_bytes(),
        "provider,area,patrols\nhc,centrum,c1;c2\n".as_bytes(),
    )
    .expect("test directory")
}

/// Devices, subscribers, users, the directory and patrol tokens; returns the tokens.
fn prepare(dir: &std::path::Path) -> (String, String) {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes()).unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    let store = common::open_store(dir).unwrap();
    store
        .upsert_subscribers(
            &vakt::registers::subscribers::parse_csv(subscribers_csv().as_bytes()).unwrap(),
        )
        .unwrap();
    store.save_directory(&directory()).unwrap();
    let (t1, h1) = vakt::store::new_token();
    let (t2, h2) = vakt::store::new_token();
    store.set_patrol_token("c1", &h1).unwrap();
    store.set_patrol_token("c2", &h2).unwrap();
    (t1, t2)
}

fn config(dir: &std::path::Path, receipt_timeout_secs: u64) -> vakt::config::Config {
    let mut cfg = test_config(dir);
    cfg.patrol.receipt_timeout_secs = receipt_timeout_secs;
    cfg
}

fn trust(r: &vakt::server::Running) -> Trust {
    let fp = r.patrol_fingerprint.as_deref().expect("fingerprint");
    Trust::Pinned(quic::parse_fingerprint(fp).expect("hex fingerprint"))
}

/// Sends a fall alarm from device 1234 (Åsa) and waits for its Call; returns the Call id.
async fn alarm_call(r: &vakt::server::Running, c: &mut Client) -> u64 {
    let reply = tcp_roundtrip(
        r.dc09_tcp.unwrap(),
        &plain("ADM-CID", 1, "1234", "#1234|1100 01 001"),
    )
    .await;
    assert!(String::from_utf8_lossy(&reply).contains("\"ACK\""));
    first_open_call(c, Duration::from_secs(10)).await
}

/// The dispatch steps of the Call's timeline, as `step` or `step:detail`.
fn steps(call: &Value) -> Vec<String> {
    call["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "dispatch")
        .map(|l| {
            let step = l["step"].as_str().unwrap().to_string();
            match l["detail"].as_str() {
                Some(d) => format!("{step}:{d}"),
                None => step,
            }
        })
        .collect()
}

/// Polls the Call until `pred` holds (bounded: 10 s).
async fn wait_call(c: &mut Client, id: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = c.get(&format!("/api/calls/{id}")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let v = a.json();
        if pred(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never got there: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of a metric line (`name{labels} value`) on /metrics. The counters are shared by
/// every test of this file (one process), so tests check "at least".
async fn metric(http: std::net::SocketAddr, line: &str) -> f64 {
    let (_, metrics) = http_get(http, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in {metrics}"))
}

async fn ack(s: &mut Session, ev: FromPatrol) {
    let answer = s.send_event(&ev).await.unwrap();
    assert!(matches!(answer, ToPatrol::Ack { .. }), "{answer:?}");
}

#[tokio::test]
async fn alarm_dispatch_received_restart_reconnect_arrived_completed() {
    let dir = tempfile::tempdir().unwrap();
    let (token, _) = prepare(dir.path());
    let r = start_with(config(dir.path(), 120)).await;
    let http = r.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let id = alarm_call(&r, &mut op).await;

    // Only the operator who took the Call dispatches it.
    let a = op
        .post(&format!("/api/calls/{id}/dispatch"), json!({}))
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(
        op.post(&format!("/api/calls/{id}/claim"), json!({}))
            .await
            .status,
        200
    );

    // The route's first patrol on shift is suggested; every patrol is listed.
    let choices = op.get(&format!("/api/calls/{id}/patrols")).await.json();
    assert_eq!(choices["suggested"], "c1", "{choices}");
    assert_eq!(choices["provider"], "Hemtjänst Centrum");
    let listed: Vec<&str> = choices["patrols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["c1", "c2"]);
    assert_eq!(choices["patrols"][0]["connected"], false);

    let a = op
        .post(&format!("/api/calls/{id}/dispatch"), json!({}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let d = a.json();
    let did = d["id"].as_u64().unwrap();
    assert_eq!(d["patrol"], "c1");
    assert_eq!(d["state"], "offered");
    assert_eq!(d["subscriber_name"], "Åsa Öberg");
    assert!(d["receipt_deadline"].is_string());
    assert!(
        d["deadline"].is_null(),
        "the arrival clock starts at receipt"
    );
    let again = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({"patrol": "c2"}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json()["dispatch"], did);

    // The patrol logs in and gets the assignment with the access it needs at the door.
    let (mut s, welcome, assignments) =
        Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c1", &token)
            .await
            .unwrap();
    assert_eq!(welcome.open, vec![did]);
    assert_eq!(assignments[0].subscriber.name, "Åsa Öberg");
    assert_eq!(assignments[0].access.door_code.expose(), "4711#");
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Received {
            seq,
            dispatch: did,
            at: jiff::Timestamp::now(),
        },
    )
    .await;
    let call = wait_call(&mut op, id, |c| steps(c).len() >= 2).await;
    assert_eq!(steps(&call), ["offered", "received"]);
    assert_eq!(call["dispatches"][0]["state"], "received");
    let deadline = call["dispatches"][0]["deadline"]
        .as_str()
        .unwrap()
        .to_string();
    let board = op.get("/api/patrols").await.json();
    let c1 = board
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "c1")
        .unwrap()
        .clone();
    assert_eq!(c1["connected"], true);
    assert_eq!(c1["assignments"][0]["id"], did);

    // The operator closes the Call: the patrol is on its way, the dispatch lives on.
    let a = op
        .post(
            &format!("/api/calls/{id}/close"),
            json!({"outcome": "patrol_needed"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // vakt restarts mid-assignment; the patrol (on a new network) gets it back, clock intact.
    s.close().await;
    r.stop().await.unwrap();
    let r = start_with(config(dir.path(), 120)).await;
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let (mut s, welcome, assignments) =
        Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c1", &token)
            .await
            .unwrap();
    assert_eq!(welcome.open, vec![did]);
    assert_eq!(assignments[0].state, DispatchState::Received);
    // The patrol gets it in whole seconds (proto/patrol.md §2), never later than the real one.
    let deadline: jiff::Timestamp = deadline.parse().unwrap();
    assert_eq!(
        assignments[0].deadline,
        Some(jiff::Timestamp::from_second(deadline.as_second()).unwrap())
    );

    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Arrived {
            seq,
            dispatch: did,
            at: jiff::Timestamp::now(),
            method: ArrivalMethod::App,
            code: None,
        },
    )
    .await;
    let done = FromPatrol::Completed {
        seq: s.next_seq(),
        dispatch: did,
        at: jiff::Timestamp::now(),
        outcome: VisitOutcome::Helped,
        note: "Hjälpte Åsa upp".into(),
    };
    ack(&mut s, done.clone()).await;
    // A resend is acknowledged again and adds nothing.
    ack(&mut s, done).await;

    // The closed Call's timeline has every step, once.
    let call = wait_call(&mut op, id, |c| steps(c).len() >= 4).await;
    assert_eq!(call["state"], "closed");
    assert_eq!(
        steps(&call),
        [
            "offered",
            "received",
            "arrived:app",
            "completed:helped: Hjälpte Åsa upp"
        ]
    );
    let d = &call["dispatches"][0];
    assert_eq!(d["state"], "completed");
    assert_eq!(d["arrival_method"], "app");
    assert_eq!(d["breached"], false);
    let board = op.get("/api/patrols").await.json();
    assert!(
        board
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["assignments"].as_array().unwrap().is_empty())
    );
    assert!(
        metric(
            r.http.unwrap(),
            "vakt_dispatch_arrivals_total{method=\"app\"} "
        )
        .await
            >= 1.0
    );

    s.close().await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_dispatch_not_received_in_time_passes_to_the_next_patrol() {
    let dir = tempfile::tempdir().unwrap();
    let (_, token2) = prepare(dir.path());
    let r = start_with(config(dir.path(), 10)).await;
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let id = alarm_call(&r, &mut op).await;
    assert_eq!(
        op.post(&format!("/api/calls/{id}/claim"), json!({}))
            .await
            .status,
        200
    );
    let a = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({"patrol": "c1"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);

    // c1 never connects: after 10 s the dispatch times out and c2 gets it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let call = loop {
        let call = op.get(&format!("/api/calls/{id}")).await.json();
        if call["dispatches"].as_array().unwrap().len() == 2 {
            break call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never passed on: {call}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(call["dispatches"][0]["state"], "receipt_timeout");
    assert_eq!(call["dispatches"][1]["patrol"], "c2");
    assert_eq!(call["dispatches"][1]["operator"], OPERATOR.0);
    let call = wait_call(&mut op, id, |c| steps(c).len() >= 3).await;
    assert_eq!(
        steps(&call)[..2],
        [
            "offered".to_string(),
            "receipt_timeout:passed to Centrum 2".to_string()
        ]
    );
    assert!(
        steps(&call)[2].starts_with("offered:after dispatch"),
        "{:?}",
        steps(&call)
    );

    let (mut s, _, assignments) =
        Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c2", &token2)
            .await
            .unwrap();
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0].call, id);
    // c2 declines: no one else is left on the route, and the operator is told so.
    let seq = s.next_seq();
    let did = assignments[0].dispatch;
    ack(
        &mut s,
        FromPatrol::Declined {
            seq,
            dispatch: did,
            at: jiff::Timestamp::now(),
            reason: "Busy at Kyrkbacken".into(),
        },
    )
    .await;
    let call = wait_call(&mut op, id, |c| steps(c).len() >= 4).await;
    let last = steps(&call).pop().unwrap();
    assert!(last.starts_with("declined:Busy at Kyrkbacken; "), "{last}");
    assert!(metric(r.http.unwrap(), "vakt_dispatch_receipt_timeouts_total ").await >= 1.0);
    s.close().await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_lock_opening_by_the_patrol_marks_the_arrival_and_the_month_report_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (token, _) = prepare(dir.path());
    let (lock_token, lock_hash) = vakt::store::new_token();
    {
        let store = common::open_store(dir.path()).unwrap();
        store.set_integration_token("phoniro", &lock_hash).unwrap();
    }
    let r = start_with(config(dir.path(), 120)).await;
    let http = r.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let id = alarm_call(&r, &mut op).await;
    assert_eq!(
        op.post(&format!("/api/calls/{id}/claim"), json!({}))
            .await
            .status,
        200
    );
    let d = op
        .post(&format!("/api/calls/{id}/dispatch"), json!({}))
        .await
        .json();
    let did = d["id"].as_u64().unwrap();
    let (mut s, _, _) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c1", &token)
        .await
        .unwrap();
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Received {
            seq,
            dispatch: did,
            at: jiff::Timestamp::now(),
        },
    )
    .await;

    let events = |lock: &str, who: &str| json!({"events": [{"lock_id": lock, "at": jiff::Timestamp::now().to_string(), "credential": who}]});
    let post = |auth: Option<String>, body: Value| async move {
        let mut c = Client::new(http);
        if let Some(a) = auth {
            c.extra_header("authorization", &a);
        }
        c.post("/api/locks/events", body).await
    };
    // Without the integration's token, or with a session cookie only: refused.
    assert_eq!(post(None, events("PL-3301", "c1")).await.status, 401);
    assert_eq!(
        op.post("/api/locks/events", events("PL-3301", "c1"))
            .await
            .status,
        401
    );
    assert_eq!(
        post(Some("Bearer wrong".into()), events("PL-3301", "c1"))
            .await
            .status,
        401
    );
    let bearer = format!("Bearer {lock_token}");
    // Another patrol's key, another lock: ignored.
    let a = post(Some(bearer.clone()), events("PL-3301", "c2")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["results"][0]["result"], "ignored");
    let a = post(Some(bearer.clone()), events("PL-0000", "c1")).await;
    assert_eq!(a.json()["results"][0]["result"], "ignored");
    // The assigned patrol opens the subscriber's lock: arrived, by lock.
    let a = post(Some(bearer.clone()), events("PL-3301", "c1")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["results"][0]["result"], "arrived");
    assert_eq!(a.json()["results"][0]["dispatch"], did);
    // The patrol is told: its assignment comes again, arrived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match s.next_push(left).await.unwrap() {
            Some(ToPatrol::Assignment(a)) if a.state == DispatchState::Arrived => {
                assert_eq!(a.dispatch, did);
                break;
            }
            Some(_) => {}
            None => panic!("the patrol never heard of its arrival by the lock"),
        }
    }
    let call = wait_call(&mut op, id, |c| steps(c).len() >= 3).await;
    assert_eq!(steps(&call)[2], "arrived:lock");
    assert_eq!(call["dispatches"][0]["arrival_method"], "lock");

    // The month's report (supervisors) has the dispatch, arrived, no breach.
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    assert_eq!(op.get("/api/reports/sla").await.status, 403);
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Stockholm").unwrap())
        .strftime("%Y-%m")
        .to_string();
    let rep = admin.get(&format!("/api/reports/sla?month={month}")).await;
    assert_eq!(rep.status, 200, "{}", rep.body);
    let rep = rep.json();
    assert_eq!(rep["totals"]["dispatches"], 1, "{rep}");
    assert_eq!(rep["totals"]["arrived"], 1);
    assert_eq!(rep["totals"]["breaches"], 0);
    assert_eq!(rep["rows"][0]["provider_name"], "Hemtjänst Centrum");
    let csv = admin
        .get(&format!("/api/reports/sla?month={month}&format=csv"))
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.body.starts_with("month,provider,"), "{}", csv.body);
    assert_eq!(
        admin.get("/api/reports/sla?month=2026-13").await.status,
        400
    );

    // The visit ends: the month's visits (for the provider's time report) have it, with its
    // arrival by the lock, the outcome and the person; reading them is audited.
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Completed {
            seq,
            dispatch: did,
            at: jiff::Timestamp::now(),
            outcome: VisitOutcome::Helped,
            note: "Hjälpte Åsa upp, kaffe".into(),
        },
    )
    .await;
    wait_call(&mut op, id, |c| steps(c).len() >= 4).await;
    assert_eq!(op.get("/api/reports/visits").await.status, 403);
    let v = admin
        .get(&format!("/api/reports/visits?month={month}&provider=hc"))
        .await;
    assert_eq!(v.status, 200, "{}", v.body);
    let v = v.json();
    assert_eq!(v["providers"][0]["visits"], 1, "{v}");
    let visit = &v["visits"][0];
    assert_eq!(visit["dispatch"], did);
    assert_eq!(visit["call"], id);
    assert_eq!(visit["arrival_method"], "lock");
    assert_eq!(visit["outcome"], "helped");
    assert_eq!(visit["note"], "Hjälpte Åsa upp, kaffe");
    assert_eq!(visit["subscriber_name"], "Åsa Öberg");
    assert_eq!(visit["patrol"], "c1");
    assert!(visit["minutes"].as_u64().unwrap() >= 1);
    let other = admin
        .get(&format!("/api/reports/visits?month={month}&provider=norr"))
        .await
        .json();
    assert_eq!(other["visits"], json!([]));
    let csv = admin
        .get(&format!("/api/reports/visits?month={month}&format=csv"))
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(
        csv.header("content-disposition").unwrap(),
        format!("attachment; filename=\"vakt-visits-{month}.csv\"")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], vakt::dispatch::visits::CSV_HEADER);
    assert!(
        lines[1].ends_with(",lock,helped,\"Hjälpte Åsa upp, kaffe\""),
        "{}",
        csv.body
    );
    assert_eq!(
        admin
            .get("/api/reports/visits?month=2026-11&format=xml")
            .await
            .status,
        400
    );
    let audit = admin.get("/api/audit?limit=1000").await.json();
    let read: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "report.visits")
        .collect();
    assert_eq!(read.len(), 3, "{read:?}");
    assert_eq!(read[0]["detail"], format!("{month} hc: 1 visits"));
    s.close().await;
    r.stop().await.unwrap();
}

/// Claims the Call and dispatches it to `patrol`; returns the dispatch id.
async fn claim_and_dispatch(op: &mut Client, id: u64, patrol: &str) -> u64 {
    let a = op.post(&format!("/api/calls/{id}/claim"), json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({ "patrol": patrol }),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.json()["id"].as_u64().unwrap()
}

/// The next message the server pushes, which must be the `assignment` of `dispatch` in
/// `state` (it follows the `ack` of the step that moved it).
async fn assignment_follows(s: &mut Session, dispatch: u64, state: DispatchState) {
    let m = s.next_push(Duration::from_secs(5)).await.unwrap();
    match m {
        Some(ToPatrol::Assignment(a)) => {
            assert_eq!(a.dispatch, dispatch);
            assert_eq!(a.state, state, "{a:?}");
            if state != DispatchState::Offered {
                assert!(a.received_at.is_some() && a.deadline.is_some(), "{a:?}");
                assert_eq!(a.receipt_deadline, None, "received: no receipt deadline");
            }
        }
        other => panic!("no assignment in state {state:?} after the ack: {other:?}"),
    }
}

#[tokio::test]
async fn each_step_is_acknowledged_then_the_assignment_follows_in_its_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let (token, _) = prepare(dir.path());
    let r = start_with(config(dir.path(), 120)).await;
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let id = alarm_call(&r, &mut op).await;
    let did = claim_and_dispatch(&mut op, id, "c1").await;
    let (mut s, _, open) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c1", &token)
        .await
        .unwrap();
    assert_eq!(open[0].state, DispatchState::Offered);
    // The app knows until when it must confirm receipt (the server's 120 s).
    assert_eq!(
        open[0].receipt_deadline,
        Some(open[0].offered_at + jiff::SignedDuration::from_secs(120))
    );
    let now = jiff::Timestamp::now;
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Received {
            seq,
            dispatch: did,
            at: now(),
        },
    )
    .await;
    assignment_follows(&mut s, did, DispatchState::Received).await;
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Accepted {
            seq,
            dispatch: did,
            at: now(),
        },
    )
    .await;
    assignment_follows(&mut s, did, DispatchState::Accepted).await;
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Arrived {
            seq,
            dispatch: did,
            at: now(),
            method: ArrivalMethod::App,
            code: None,
        },
    )
    .await;
    assignment_follows(&mut s, did, DispatchState::Arrived).await;
    // A resend changes nothing: acknowledged, and no assignment follows.
    ack(
        &mut s,
        FromPatrol::Arrived {
            seq,
            dispatch: did,
            at: now(),
            method: ArrivalMethod::App,
            code: None,
        },
    )
    .await;
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Completed {
            seq,
            dispatch: did,
            at: now(),
            outcome: VisitOutcome::Helped,
            note: String::new(),
        },
    )
    .await;
    // The dispatch has ended: nothing follows the last ack.
    let m = s.next_push(Duration::from_millis(500)).await.unwrap();
    assert_eq!(m, None, "nothing after a resend or the completion");
    s.close().await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_phone_clock_behind_never_dates_a_timeline_line_before_the_offer() {
    let dir = tempfile::tempdir().unwrap();
    let (token, _) = prepare(dir.path());
    let r = start_with(config(dir.path(), 120)).await;
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let id = alarm_call(&r, &mut op).await;
    let did = claim_and_dispatch(&mut op, id, "c1").await;
    let (mut s, _, _) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c1", &token)
        .await
        .unwrap();
    // The phone's clock is ten minutes behind.
    let early = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10);
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Received {
            seq,
            dispatch: did,
            at: early,
        },
    )
    .await;
    let seq = s.next_seq();
    ack(
        &mut s,
        FromPatrol::Accepted {
            seq,
            dispatch: did,
            at: early - jiff::SignedDuration::from_mins(1),
        },
    )
    .await;
    let call = wait_call(&mut op, id, |c| steps(c).len() >= 3).await;
    let at_of = |step: &str| -> jiff::Timestamp {
        call["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["type"] == "dispatch" && l["step"] == step)
            .and_then(|l| l["at"].as_str())
            .unwrap_or_else(|| panic!("no {step} line in {call}"))
            .parse()
            .unwrap()
    };
    let d = &call["dispatches"][0];
    let offered: jiff::Timestamp = d["offered_at"].as_str().unwrap().parse().unwrap();
    let received: jiff::Timestamp = d["received_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(received, offered, "the dispatch is clamped to the offer");
    assert!(at_of("offered") <= at_of("received"), "{call}");
    assert_eq!(
        at_of("received"),
        received,
        "the line says what the dispatch says"
    );
    assert_eq!(
        at_of("accepted"),
        received,
        "never before the step before it"
    );
    s.close().await;
    r.stop().await.unwrap();
}

/// Sends a pendant press from `account` and waits for its Call; returns the Call id.
async fn alarm_from(r: &vakt::server::Running, c: &mut Client, seq: u16, account: &str) -> u64 {
    let reply = tcp_roundtrip(
        r.dc09_tcp.unwrap(),
        &plain("ADM-CID", seq, account, &format!("#{account}|1101 01 001")),
    )
    .await;
    assert!(String::from_utf8_lossy(&reply).contains("\"ACK\""));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let calls = c.get("/api/calls?state=open").await.json();
        if let Some(id) = calls
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["account"] == account)
            .and_then(|c| c["id"].as_u64())
        {
            return id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Call for {account}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The live feed of a console logged in as `user`.
async fn live_feed(
    http: std::net::SocketAddr,
    user: &Client,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{http}/api/live"),
    )
    .unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("vakt_session={}", user.cookie.clone().unwrap())
            .parse()
            .unwrap(),
    );
    tokio_tungstenite::connect_async(req).await.expect("ws").0
}

#[tokio::test]
async fn a_closed_call_whose_dispatch_fails_comes_back_to_the_head_of_the_queue() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let (token1, token2) = prepare(dir.path());
    // A second person of Centrum with a carephone (account 2468), and a second operator.
    vakt::cli::import_devices(
        common::store_at(dir.path()),
        format!("{}2468,,,,,bo,90,Telia,Centrum\n", devices_csv()).as_bytes(),
    )
    .unwrap();
    {
        let store = common::open_store(dir.path()).unwrap();
        let bo = format!(
            "{}\nbo,Bo Berg,19400101-9806,Kyrkvägen 2,123 45,Vaktby,Centrum,070-333 44 55,Hemtjänst Centrum,0,,,,,,,,,,,,,,,,sv\n",
            vakt::registers::subscribers::CSV_HEADER
        );
        store
            .upsert_subscribers(&vakt::registers::subscribers::parse_csv(bo.as_bytes()).unwrap())
            .unwrap();
    }
    add_user(dir.path(), "petra", Role::Operator, "petra-password-1");
    let r = start_with(config(dir.path(), 10)).await;
    let http = r.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let petra = Client::login(http, "petra", "petra-password-1").await;

    // Bo's alarm waits in the queue (older, the same level); Åsa's is the one dispatched.
    let older = alarm_from(&r, &mut op, 1, "2468").await;
    let id = alarm_from(&r, &mut op, 2, "1234").await;
    assert_ne!(older, id);
    // The route's first patrol, c1, is on shift and connected; the operator picks c2.
    let (mut c1, _, _) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c1", &token1)
        .await
        .unwrap();
    let first = claim_and_dispatch(&mut op, id, "c2").await;
    // c2's phone gets it but nobody confirms.
    let (mut c2, _, offered) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c2", &token2)
        .await
        .unwrap();
    assert_eq!(offered[0].dispatch, first);
    let a = op
        .post(
            &format!("/api/calls/{id}/close"),
            json!({"outcome": "patrol_needed"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // c2 never confirms: after the receipt time the route's first patrol, which has not been
    // tried, gets it.
    let passed = match c1.next_push(Duration::from_secs(30)).await.unwrap() {
        Some(ToPatrol::Assignment(a)) => *a,
        other => panic!("c1, on shift and untried, was not offered the Call: {other:?}"),
    };
    assert_eq!(passed.call, id);
    assert_ne!(passed.dispatch, first);
    // c2 is told why it lost it, in a form the app can act on.
    match c2.next_push(Duration::from_secs(5)).await.unwrap() {
        Some(ToPatrol::Cancelled {
            dispatch,
            cause,
            reason,
            ..
        }) => {
            assert_eq!(dispatch, first);
            assert_eq!(cause, vakt::dispatch::wire::CancelCause::ReceiptTimeout);
            assert!(reason.contains("another patrol"), "{reason}");
        }
        other => panic!("c2 was not told: {other:?}"),
    }
    c2.close().await;
    // c1 cannot go. Nobody of the route is left: c2 was tried.
    let mut feed = live_feed(http, &petra).await;
    let seq = c1.next_seq();
    ack(
        &mut c1,
        FromPatrol::Declined {
            seq,
            dispatch: passed.dispatch,
            at: jiff::Timestamp::now(),
            reason: "Busy at Kyrkbacken".into(),
        },
    )
    .await;

    // The Call is back in the queue, for every operator, live.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, feed.next())
            .await
            .expect("the reopened Call on the live feed")
            .expect("open")
            .expect("ok");
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["type"] == "call" && v["call"]["id"] == id {
            assert_eq!(v["call"]["state"], "queued", "{v}");
            break;
        }
    }
    let call = wait_call(&mut op, id, |c| c["state"] == "queued").await;
    let s = steps(&call);
    assert_eq!(s[0], "offered");
    assert_eq!(s[1], "receipt_timeout:passed to Centrum 1", "{s:?}");
    assert!(s[2].starts_with("offered:after dispatch"), "{s:?}");
    let declined = &s[3];
    assert!(
        declined.starts_with("declined:Busy at Kyrkbacken; not passed on: Centrum 2 already tried"),
        "{declined}"
    );
    assert!(
        !declined.contains("on shift"),
        "both are on shift: {declined}"
    );
    let reopened: Vec<&Value> = call["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "reopened")
        .collect();
    assert_eq!(reopened.len(), 1, "{call}");
    let why = reopened[0]["reason"].as_str().unwrap();
    assert!(why.contains("Centrum 1 declined"), "{why}");
    assert!(why.contains("Centrum 2 already tried"), "{why}");
    assert_eq!(call["outcome"], Value::Null);
    assert_eq!(call["closed_at"], Value::Null);
    c1.close().await;

    // It survives a restart, and it comes first in its level, before Bo's older Call.
    r.stop().await.unwrap();
    let r = start_with(config(dir.path(), 10)).await;
    let http = r.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let open = op.get("/api/calls?state=open").await.json();
    let ids: Vec<u64> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [id, older], "{open}");
    let a = op.send("POST", "/api/calls/next", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], id);
    // And it can be dispatched again.
    let a = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({"patrol": "c2"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    r.stop().await.unwrap();
}

/// The same person's next Call shows the first and the patrol on its way; a second patrol to
/// the home is refused until the operator confirms it, and the confirmation is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_persons_next_call_shows_the_patrol_on_its_way_and_a_second_needs_a_confirmation()
{
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let r = start_with(config(dir.path(), 60)).await;
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;

    // Åsa falls; c1 is sent and the Call closed "patrol needed" while c1 is on its way.
    let first = alarm_from(&r, &mut op, 1, "1234").await;
    let d1 = claim_and_dispatch(&mut op, first, "c1").await;
    let a = op
        .post(
            &format!("/api/calls/{first}/close"),
            json!({"outcome": "patrol_needed"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // She presses again: a new Call, in its context.
    let second = alarm_from(&r, &mut op, 2, "1234").await;
    assert_ne!(second, first);
    let v = op.get(&format!("/api/calls/{second}")).await.json();
    let recent = v["context"]["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{v}");
    assert_eq!(recent[0]["id"], first);
    assert_eq!(recent[0]["outcome"], "patrol_needed");
    assert_eq!(recent[0]["patrols"], json!(["c1"]));
    assert_eq!(recent[0]["patrol_names"], json!(["Centrum 1"]));
    let live = v["context"]["live_dispatches"].as_array().unwrap();
    assert_eq!(live.len(), 1, "{v}");
    assert_eq!(live[0]["id"], d1);
    assert_eq!(live[0]["patrol"], "c1");
    // The first Call shows no patrol of another Call (its own is among its dispatches).
    let v1 = op.get(&format!("/api/calls/{first}")).await.json();
    assert!(
        v1["context"]["live_dispatches"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{v1}"
    );
    assert_eq!(v1["context"]["recent"][0]["id"], second);

    // A second patrol waits for a confirmation.
    let a = op
        .post(&format!("/api/calls/{second}/claim"), json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op
        .post(
            &format!("/api/calls/{second}/dispatch"),
            json!({ "patrol": "c2" }),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["confirm"], true, "{}", a.body);
    assert_eq!(a.json()["dispatch"], d1, "{}", a.body);
    assert!(
        a.json()["error"].as_str().unwrap().contains("c1"),
        "{}",
        a.body
    );
    let a = op
        .post(
            &format!("/api/calls/{second}/dispatch"),
            json!({ "patrol": "c2", "second": true }),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let mut admin = Client::login(r.http.unwrap(), ADMIN.0, ADMIN.1).await;
    let audit = admin.get("/api/audit").await.json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "call.dispatch"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("second patrol"))),
        "{audit}"
    );
    r.stop().await.unwrap();
}

/// The assignment `s` holds for `call` (from the connect, or pushed after it; bounded: 5 s).
async fn assignment_of(
    s: &mut Session,
    open: Vec<vakt::dispatch::wire::AssignmentMsg>,
    call: u64,
) -> vakt::dispatch::wire::AssignmentMsg {
    if let Some(a) = open.into_iter().find(|a| a.call == call) {
        return a;
    }
    match s.next_push(Duration::from_secs(5)).await.unwrap() {
        Some(ToPatrol::Assignment(a)) if a.call == call => *a,
        other => panic!("no assignment for call {call}: {other:?}"),
    }
}

#[tokio::test]
async fn the_operators_instruction_reaches_the_patrol_and_health_notes_only_with_consent() {
    let dir = tempfile::tempdir().unwrap();
    let (token1, token2) = prepare(dir.path());
    {
        let store = common::open_store(dir.path()).unwrap();
        let mut s = store.subscriber("anna").unwrap().unwrap();
        s.health_notes = "Diabetes typ 2, insulin. Waran.".into();
        assert!(!s.health_to_patrol, "the import's default: no consent");
        store.upsert_subscribers(&[s]).unwrap();
    }
    let r = start_with(config(dir.path(), 120)).await;
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let id = alarm_call(&r, &mut op).await;
    let a = op.post(&format!("/api/calls/{id}/claim"), json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // The dialog's preview: access, and the notes withheld.
    let ch = op.get(&format!("/api/calls/{id}/patrols")).await.json();
    assert_eq!(ch["sends"]["access"]["door_code"], "4711#");
    assert_eq!(ch["sends"]["access"]["entry_notes"], "Hund i hallen");
    assert_eq!(ch["sends"]["health_notes"], "");
    assert_eq!(ch["sends"]["health_notes_withheld"], true);

    // Too long an instruction is refused, and nothing is dispatched.
    let long = "x".repeat(1001);
    let a = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({"patrol": "c1", "instruction": long}),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("1000"), "{}", a.body);

    let instruction = "Dottern Karin öppnar. Ta med blodsockermätaren.";
    let a = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({"patrol": "c1", "instruction": format!("  {instruction} ")}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["instruction"], instruction);
    let call = wait_call(&mut op, id, |c| !steps(c).is_empty()).await;
    assert_eq!(
        steps(&call)[0],
        format!("offered:instruction: {instruction}")
    );

    // c1 gets it over the real link: the instruction, the access, no health notes.
    let (mut s1, _, open) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c1", &token1)
        .await
        .unwrap();
    let a1 = assignment_of(&mut s1, open, id).await;
    assert_eq!(a1.instruction, instruction);
    assert_eq!(a1.access.door_code.expose(), "4711#");
    assert_eq!(a1.access.key_location, "Nyckelskåp Centrum, krok 14");
    assert!(a1.health_notes.is_empty(), "no consent: no notes");
    assert!(a1.health_notes_withheld);

    // A supervisor records the person's consent on the card.
    let mut admin = Client::login(r.http.unwrap(), ADMIN.0, ADMIN.1).await;
    let mut card = admin.get("/api/subscribers/anna").await.json();
    assert_eq!(card["health_to_patrol"], false);
    card["health_to_patrol"] = json!(true);
    let sub: vakt::model::Subscriber = serde_json::from_value(card).unwrap();
    let a = admin
        .send(
            "PUT",
            "/api/subscribers/anna",
            Some(("application/json", serde_json::to_string(&sub).unwrap())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["health_to_patrol"], true);

    // c1 declines: c2 gets the dispatch with the same instruction, and now the notes.
    let seq = s1.next_seq();
    ack(
        &mut s1,
        FromPatrol::Declined {
            seq,
            dispatch: a1.dispatch,
            at: jiff::Timestamp::now(),
            reason: "Busy".into(),
        },
    )
    .await;
    let (mut s2, _, open) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c2", &token2)
        .await
        .unwrap();
    let a2 = assignment_of(&mut s2, open, id).await;
    assert_ne!(a2.dispatch, a1.dispatch);
    assert_eq!(a2.instruction, instruction);
    assert_eq!(a2.health_notes.expose(), "Diabetes typ 2, insulin. Waran.");
    assert!(!a2.health_notes_withheld);
    s1.close().await;
    s2.close().await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn the_assignment_says_what_the_patrols_provider_holds_and_one_with_nothing_needs_a_confirmation()
 {
    const SUPERVISOR: (&str, &str) = ("siv", "siv-password-3");
    let dir = tempfile::tempdir().unwrap();
    let (token1, _) = prepare(dir.path());
    add_user(dir.path(), SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    let token_h1 = {
        // A second provider with a patrol of its own (not routed to Centrum's people).
        let store = common::open_store(dir.path()).unwrap();
        let d = vakt::registers::directory::parse_all(
            "id,name,phone\nhc,Hemtjänst Centrum,08-1\nhh,Humana Centrum,08-2\n".as_bytes(),
            "id,name,arrival_limit_mins\ncentrum,Centrum,30\n".as_bytes(),
            "id,name,provider,areas,shifts,phone\n\
             c1,Centrum 1,hc,centrum,day 00:00-12:00;evening 12:00-00:00,070-1\n\
             c2,Centrum 2,hc,centrum,day 00:00-12:00;evening 12:00-00:00,070-2\n\
             h1,Humana 1,hh,centrum,day 00:00-12:00;evening 12:00-00:00,070-3\n"
                .as_bytes(),
            "provider,area,patrols\nhc,centrum,c1;c2\n".as_bytes(),
        )
        .unwrap();
        store.save_directory(&d).unwrap();
        let (t, h) = vakt::store::new_token();
        store.set_patrol_token("h1", &h).unwrap();
        t
    };
    let r = start_with(config(dir.path(), 120)).await;
    let http = r.http.unwrap();
    // The keys as signed: the installer took 2 door keys and the access tag in, and handed
    // them to Hemtjänst Centrum.
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let items = json!([{"kind": "door", "count": 2}, {"kind": "access_tag", "count": 1}]);
    for (from, to) in [
        (
            json!({"holder": "subscriber"}),
            json!({"holder": "installer", "name": "Erik"}),
        ),
        (
            json!({"holder": "installer", "name": "Erik"}),
            json!({"holder": "provider", "id": "hc"}),
        ),
    ] {
        let a = sup
            .post(
                "/api/subscribers/anna/receipts",
                json!({"from": from, "to": to, "items": items, "reason": "installation"}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        let rid = a.json()["id"].as_u64().unwrap();
        let a = sup
            .post(
                &format!("/api/receipts/{rid}/sign"),
                json!({"handed_by": "Erik Lund", "received_by": "Maria Berg"}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }

    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let id = alarm_call(&r, &mut op).await;
    let a = op.post(&format!("/api/calls/{id}/claim"), json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // The dialog's choices: what each patrol's provider has.
    let ch = op.get(&format!("/api/calls/{id}/patrols")).await.json();
    let choice = |p: &str| {
        ch["patrols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == p)
            .unwrap()
            .clone()
    };
    assert_eq!(choice("c1")["no_access"], false);
    assert_eq!(choice("c1")["access"]["digital_lock"], true);
    assert_eq!(choice("c1")["access"]["keys"], items);
    assert_eq!(choice("h1")["no_access"], true);
    assert_eq!(choice("h1")["access"]["keys"], json!([]));

    // Humana has neither: refused until the operator confirms, and nothing is dispatched.
    let a = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({"patrol": "h1"}),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    let e = a.json();
    assert_eq!(e["code"], "dispatch.no_access");
    assert_eq!(e["confirm"], true);
    assert_eq!(e["params"]["patrol"], "h1");
    assert_eq!(e["params"]["name"], "Humana 1");
    assert_eq!(e["params"]["provider"], "Humana Centrum");
    let a = op.get(&format!("/api/dispatches?call={id}")).await;
    assert_eq!(a.json().as_array().unwrap().len(), 0, "{}", a.body);
    let a = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({"patrol": "h1", "no_access": true}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let first = a.json()["id"].as_u64().unwrap();
    let call = wait_call(&mut op, id, |c| !steps(c).is_empty()).await;
    assert_eq!(
        steps(&call)[0],
        "offered:no key and no lock access: sent as the operator confirmed"
    );
    // h1's assignment over the real link says so.
    let (mut sh, _, open) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "h1", &token_h1)
        .await
        .unwrap();
    let ah = assignment_of(&mut sh, open, id).await;
    assert_eq!(ah.provider_keys, "no key and no lock access");

    // Withdrawn; c1 of Hemtjänst Centrum goes, with its keys and the lock, no question asked.
    let a = op
        .post(
            &format!("/api/dispatches/{first}/cancel"),
            json!({"reason": "Centrum har nyckeln"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op
        .post(
            &format!("/api/calls/{id}/dispatch"),
            json!({"patrol": "c1"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let (mut s1, _, open) = Session::connect(r.patrol_quic.unwrap(), &trust(&r), "c1", &token1)
        .await
        .unwrap();
    let a1 = assignment_of(&mut s1, open, id).await;
    assert_eq!(a1.provider_keys, "2 door keys, access tag; the lock");

    // The confirmation is audited with the dispatch.
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let audit = admin.get("/api/audit?limit=1000").await.json();
    let dispatches: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "call.dispatch")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(
        dispatches
            .iter()
            .any(|d| d.contains("to h1") && d.contains("(no key and no lock access, confirmed)")),
        "{dispatches:?}"
    );
    assert!(
        dispatches
            .iter()
            .any(|d| d.contains("to c1") && !d.contains("no key")),
        "{dispatches:?}"
    );
    sh.close().await;
    s1.close().await;
    r.stop().await.unwrap();
}
