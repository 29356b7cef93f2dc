//! Supervision end to end against the real server on 127.0.0.1:0, with real DC-09 frames and a
//! real webhook receiver: devices that stop sending heartbeats become a single Call (one
//! device) or ONE telecom incident (22 of 30 devices of one operator), the telecom provider,
//! the care provider and the installer are notified through the outbox (signed), the incident
//! is resolved when most devices report again and the stragglers get Calls; a low battery
//! becomes a work order for the installer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::webhook::{Hook, SECRET, receiver, serve_hooks};
use common::*;
use serde_json::Value;
use tokio::net::UdpSocket;
use vakt::model::Role;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");

/// 30 Telia devices in Norr (the first five belong to subscribers of Hemtjänst Norr), one
/// Tele2 device; every one with the shortest interval (20 s).
fn devices_csv() -> String {
    let mut s = format!("{}\n", vakt::registers::devices::CSV_HEADER_V2);
    for i in 0..30 {
        let sub = if i < 5 {
            format!("S-{i}")
        } else {
            String::new()
        };
        s.push_str(&format!("7{i:03},,,,,{sub},20,Telia,Norr,carephone\n"));
    }
    s.push_str("8000,,,,,,20,Tele2,Söder,carephone\n");
    s
}

fn subscribers_csv() -> String {
    let mut s = format!("{}\n", vakt::registers::subscribers::CSV_HEADER);
    for i in 0..5 {
        let needs = if i == 3 { "yes" } else { "" };
        s.push_str(&format!(
            "S-{i},Person {i},19380512-980{i},Storgatan {i},123 45,Vaktby,Norr,070-111 22 3{i},Hemtjänst Norr,1,,,,,,,,,,,,,,,,sv,{needs}\n"
        ));
    }
    s
}

/// Sends a NULL link test from each account over UDP (answers are not awaited).
async fn heartbeats(udp: SocketAddr, accounts: &[String], seq: u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for a in accounts {
        sock.send_to(&plain("NULL", seq, a, ""), udp).await.unwrap();
    }
}

fn telia(r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("7{i:03}")).collect()
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn lost_calls(calls: &Value) -> Vec<String> {
    calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "Communication lost")
        .map(|c| c["account"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn silent_devices_become_a_call_or_one_incident_notified_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    vakt::cli::import_subscribers(
        common::store_at(dir.path()),
        subscribers_csv().as_bytes(),
        jiff::Timestamp::now(),
    )
    .unwrap();
    add_user(dir.path(), OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir.path(), ADMIN.0, Role::Admin, ADMIN.1);
    let (hooks, got) = receiver().await;
    let mut cfg = test_config(dir.path());
    cfg.supervision.grace_secs = 0;
    cfg.supervision.grace_pct = 0;
    cfg.incidents.hold_secs = 5;
    let endpoint = |name: &str, kind: &str, path: &str| -> vakt::outbox::EscalationConfig {
        toml::from_str(&format!(
            "name = \"{name}\"\nkind = \"{kind}\"\nurl = \"http://{hooks}{path}\"\nsecret = \"{SECRET}\"\n"
        ))
        .unwrap()
    };
    cfg.escalation = vec![
        endpoint("telia-noc", "telecom", "/telecom"),
        endpoint("hemtjanst", "care_provider", "/care"),
        endpoint("installer", "installer", "/installer"),
    ];
    let r = start_with(cfg).await;
    let udp = r.dc09_udp.unwrap();
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;

    // Everyone reports at first; then T000-T021 (22 of 30 Telia devices) and the Tele2
    // device fall silent; the other 8 keep reporting every 4 s.
    let alive = telia(22..30);
    let mut seq = 1;
    heartbeats(udp, &[telia(0..30), vec!["8000".into()]].concat(), seq).await;
    let keep_alive = {
        let alive = alive.clone();
        tokio::spawn(async move {
            loop {
                seq += 1;
                heartbeats(udp, &alive, seq).await;
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
        })
    };

    // One incident for Telia with the 22 devices; no Call per device.
    let incident = wait_for("the incident", 60, async || {
        let v = op.get("/api/incidents?state=open").await.json();
        let i = v.as_array()?.first()?.clone();
        (i["devices"].as_array()?.len() == 22).then_some(i)
    })
    .await;
    assert_eq!(incident["kind"], "telecom_operator");
    assert_eq!(incident["key"], "Telia");
    assert_eq!(incident["population"], 30);
    assert_eq!(
        incident["devices"][0]["subscriber_name"], "Person 3",
        "who needs extra visits first: {incident}"
    );
    // The lone Tele2 device is a single technical Call (after the hold).
    let calls = wait_for("the single Call", 30, async || {
        let c = op.get("/api/calls?state=open").await.json();
        (!lost_calls(&c).is_empty()).then_some(c)
    })
    .await;
    assert_eq!(lost_calls(&calls), ["8000"], "{calls}");

    // The telecom provider and the care provider were told, signed.
    let opened = wait_for("the notifications", 30, async || {
        let g = got.lock().unwrap().clone();
        let telecom = g.iter().find(|h| h.event == "incident.opened")?.clone();
        let care = g
            .iter()
            .find(|h| h.event == "incident.extra_visits")?
            .clone();
        Some((telecom, care))
    })
    .await;
    assert_eq!(opened.0.path, "/telecom");
    assert!(opened.0.signature_ok && opened.1.signature_ok);
    assert!(!opened.0.delivery.is_empty());
    assert_eq!(opened.1.path, "/care");
    let list = opened.1.body.to_string();
    assert!(
        list.contains("Person 3") && list.contains("Person 0"),
        "{list}"
    );

    // 20 of the 22 report again: resolved; the two still silent get their own Calls.
    keep_alive.abort();
    let back = [telia(0..20), alive.clone()].concat();
    let keep_alive = tokio::spawn(async move {
        let mut seq = 100;
        loop {
            seq += 1;
            heartbeats(udp, &back, seq).await;
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
    });
    let resolved = wait_for("the resolution", 40, async || {
        let v = op.get("/api/incidents?state=all").await.json();
        let i = v.as_array()?.first()?.clone();
        (!i["resolved_at"].is_null()).then_some(i)
    })
    .await;
    assert_eq!(resolved["silent"], 2, "{resolved}");
    let calls = wait_for("the stragglers' Calls", 30, async || {
        let c = op.get("/api/calls?state=open").await.json();
        (lost_calls(&c).len() == 3).then_some(c)
    })
    .await;
    let mut lost = lost_calls(&calls);
    lost.sort();
    assert_eq!(lost, ["7020", "7021", "8000"]);
    wait_for("incident.resolved", 30, async || {
        let g = got.lock().unwrap().clone();
        g.iter()
            .any(|h| h.event == "incident.resolved" && h.path == "/telecom")
            .then_some(())
    })
    .await;

    // A low battery: a work order for the installer, who is told.
    let reply = tcp_roundtrip(
        r.dc09_tcp.unwrap(),
        &plain("ADM-CID", 7, "7025", "#7025|1302 00 001"),
    )
    .await;
    assert!(String::from_utf8_lossy(&reply).contains("\"ACK\""));
    let orders = wait_for("the work order", 20, async || {
        let v = op.get("/api/work_orders").await.json();
        (v.as_array()?.len() == 1).then_some(v)
    })
    .await;
    assert_eq!(orders[0]["account"], "7025");
    assert_eq!(orders[0]["fault"], "low_battery");
    wait_for("work_order.created", 30, async || {
        let g = got.lock().unwrap().clone();
        g.iter()
            .any(|h| h.event == "work_order.created" && h.path == "/installer")
            .then_some(())
    })
    .await;

    // The device page and the header figures.
    let d = op.get("/api/devices/7021").await.json();
    assert_eq!(d["supervised"], true);
    assert!(!d["silent_since"].is_null(), "{d}");
    let f = op.get("/api/supervision").await.json();
    assert_eq!(f["incidents_open"], 0);
    assert!(f["silent"].as_u64().unwrap() >= 3, "{f}");
    assert_eq!(f["work_orders_open"], 1);

    // Every delivery acknowledged once.
    let g = got.lock().unwrap().clone();
    let mut ids: Vec<&str> = g.iter().map(|h| h.delivery.as_str()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no delivery twice");
    keep_alive.abort();
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_notification_waits_across_a_vakt_restart_and_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    add_user(dir.path(), OPERATOR.0, Role::Operator, OPERATOR.1);
    // The installer's endpoint is down at first: a port nobody listens on (yet).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = || {
        let mut cfg = test_config(dir.path());
        cfg.escalation = vec![
            toml::from_str(&format!(
                "name = \"installer\"\nkind = \"installer\"\nurl = \"http://127.0.0.1:{port}/wo\"\nsecret = \"{SECRET}\"\n"
            ))
            .unwrap(),
        ];
        cfg
    };
    let r = start_with(config()).await;
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let reply = tcp_roundtrip(
        r.dc09_tcp.unwrap(),
        &plain("ADM-CID", 1, "7001", "#7001|1302 00 001"),
    )
    .await;
    assert!(String::from_utf8_lossy(&reply).contains("\"ACK\""));
    wait_for("a failed attempt", 30, async || {
        let f = op.get("/api/supervision").await.json();
        (f["outbox_failing"].as_u64()? >= 1).then_some(())
    })
    .await;
    r.stop().await.unwrap();

    // The endpoint comes up; vakt starts again on the same data: the waiting notification is
    // delivered, once.
    let got: Arc<Mutex<Vec<Hook>>> = Arc::default();
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    serve_hooks(l, got.clone());
    let r = start_with(config()).await;
    let mut op = Client::login(r.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    wait_for("the delivery", 30, async || {
        let f = op.get("/api/supervision").await.json();
        (f["outbox_pending"].as_u64()? == 0 && !got.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g = got.lock().unwrap().clone();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].event, "work_order.created");
    assert!(g[0].signature_ok);
    assert_eq!(g[0].body["data"]["account"], "7001", "{}", g[0].body);
    r.stop().await.unwrap();
}
