//! The end of a shift against a real server on 127.0.0.1:0: a logout with owned Calls is
//! refused until they are released or handed to a logged-in operator; supervisors take over
//! and reassign, operators cannot; a disabled user's Calls and those of an ended session go
//! back to the queue.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vakt::model::Role;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const OPERATOR2: (&str, &str) = ("petra", "petra-password-2");
const OPERATOR3: (&str, &str) = ("uno", "uno-password-33");
const SUPERVISOR: (&str, &str) = ("siv", "siv-password-3");

async fn server(dir: &std::path::Path, sweep_secs: u64) -> vakt::server::Running {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes()).unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, OPERATOR2.0, Role::Operator, OPERATOR2.1);
    add_user(dir, OPERATOR3.0, Role::Operator, OPERATOR3.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    let mut cfg = test_config(dir);
    cfg.journal.last_heard_persist_secs = sweep_secs;
    start_with(cfg).await
}

/// An alarm from `account` (a Call of level 1); waits until the Calls are `n`.
async fn alarm(tcp: SocketAddr, c: &mut Client, seq: u16, account: &str, n: usize) {
    let data = format!("#{account}|1101 01 001");
    // 1234 is plain, 5678 encrypted (AES-128).
    let frame = match account {
        "5678" => encrypted(
            "ADM-CID",
            seq,
            account,
            &data,
            &key128(),
            jiff::Timestamp::now(),
        ),
        _ => plain("ADM-CID", seq, account, &data),
    };
    let reply = tcp_roundtrip(tcp, &frame).await;
    let ack = if account == "5678" { "*ACK" } else { "ACK" };
    assert_eq!(token_of(&reply), ack);
    wait_for("the call", Duration::from_secs(10), || {
        let mut c = c.clone();
        async move {
            let calls = c.get("/api/calls").await.json();
            (calls.as_array()?.len() == n).then_some(())
        }
    })
    .await;
}

async fn call(c: &mut Client, id: u64) -> Value {
    let a = c.get(&format!("/api/calls/{id}")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

fn last_line(call: &Value) -> Value {
    call["timeline"].as_array().unwrap().last().unwrap().clone()
}

async fn audit(sup: &mut Client, action: &str) -> Vec<Value> {
    let a = sup.get("/api/audit?limit=1000").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

async fn logout(c: &mut Client, body: Value) -> Answer {
    c.post("/api/logout", body).await
}

#[tokio::test]
async fn a_logout_with_owned_calls_is_refused_until_they_are_handed_over_or_released() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), 30).await;
    let (http, tcp) = (srv.http.unwrap(), srv.dc09_tcp.unwrap());
    let mut olle = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    alarm(tcp, &mut olle, 1, "1234", 1).await;
    alarm(tcp, &mut olle, 2, "5678", 2).await;
    let a = olle.post("/api/calls/next", json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let first = a.json()["id"].as_u64().unwrap();
    let second = olle.post("/api/calls/next", json!({})).await.json()["id"]
        .as_u64()
        .unwrap();

    // Saying nothing of them: refused, with the list, both ways; still logged in.
    for a in [
        olle.send("DELETE", "/api/session", None).await,
        logout(&mut olle, json!({})).await,
    ] {
        assert_eq!(a.status, 409, "{}", a.body);
        let j = a.json();
        assert!(j["error"].as_str().unwrap().contains("own 2 calls"), "{j}");
        let ids: Vec<u64> = j["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [first, second]);
    }
    assert_eq!(olle.get("/api/session").await.status, 200);

    // To an operator who is not logged in, or disabled, or nobody: refused with the reason.
    let hand_over = |to: &str, note: &str| json!({"calls": "hand_over", "to": to, "note": note});
    let a = logout(&mut olle, hand_over(OPERATOR2.0, "Ring dottern")).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("not logged in"), "{}", a.body);
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let mut uno = Client::login(http, OPERATOR3.0, OPERATOR3.1).await;
    let d = admin
        .send("POST", &format!("/api/users/{}/disable", OPERATOR3.0), None)
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(uno.get("/api/session").await.status, 401);
    let a = logout(&mut olle, hand_over(OPERATOR3.0, "Ring dottern")).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("disabled"), "{}", a.body);
    let a = logout(&mut olle, hand_over("ingen", "Ring dottern")).await;
    assert_eq!(a.status, 409, "{}", a.body);

    // The receiver logs in: listed online; a note is needed, and someone else.
    let mut petra = Client::login(http, OPERATOR2.0, OPERATOR2.1).await;
    let online = olle.get("/api/operators/online").await.json();
    let row = |name: &str| {
        online
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["username"] == name)
            .cloned()
    };
    assert_eq!(row(OPERATOR.0).unwrap()["owned"], 2, "{online}");
    assert_eq!(row(OPERATOR2.0).unwrap()["owned"], 0, "{online}");
    assert!(row(OPERATOR3.0).is_none(), "disabled: {online}");
    assert_eq!(
        logout(&mut olle, hand_over(OPERATOR2.0, " ")).await.status,
        400
    );
    assert_eq!(
        logout(&mut olle, hand_over(OPERATOR.0, "x")).await.status,
        400
    );
    assert_eq!(olle.get("/api/session").await.status, 200);

    let a = logout(
        &mut olle,
        hand_over(OPERATOR2.0, "Väntar på att dottern ringer"),
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(olle.get("/api/session").await.status, 401);

    // The receiver owns both, with the line and the note; the audit names both.
    let calls = petra.get("/api/calls").await.json();
    for c in calls.as_array().unwrap() {
        assert_eq!(c["owner"], OPERATOR2.0, "{c}");
        assert_eq!(c["state"], "claimed", "{c}");
    }
    let line = last_line(&call(&mut petra, first).await);
    assert_eq!(line["type"], "handed_over", "{line}");
    assert_eq!(line["from"], OPERATOR.0);
    assert_eq!(line["to"], OPERATOR2.0);
    assert_eq!(line["user"], OPERATOR.0);
    assert_eq!(line["note"], "Väntar på att dottern ringer");
    let mut siv = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let handed = audit(&mut siv, "call.handover").await;
    assert_eq!(handed.len(), 2, "{handed:?}");
    for e in &handed {
        assert_eq!(e["user"], OPERATOR.0);
        assert_eq!(e["detail"], "from olle to petra at logout");
    }
    // The receiver works it as their own.
    let a = petra
        .post(
            &format!("/api/calls/{first}/notes"),
            json!({"text": "Dottern ringde"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Released at logout: back in the queue, keeping their age, audited.
    let a = logout(&mut petra, json!({"calls": "release"})).await;
    assert_eq!(a.status, 204, "{}", a.body);
    let calls = siv.get("/api/calls").await.json();
    for c in calls.as_array().unwrap() {
        assert_eq!(c["state"], "queued", "{c}");
        assert!(c["owner"].is_null(), "{c}");
    }
    let line = last_line(&call(&mut siv, second).await);
    assert_eq!(
        (&line["type"], &line["user"]),
        (&json!("released"), &json!("petra"))
    );
    assert_eq!(audit(&mut siv, "call.release").await.len(), 2);
    // With nothing owned, a plain logout.
    assert_eq!(siv.send("DELETE", "/api/session", None).await.status, 204);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_supervisor_takes_over_and_reassigns_and_an_operator_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), 30).await;
    let (http, tcp) = (srv.http.unwrap(), srv.dc09_tcp.unwrap());
    let mut olle = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut petra = Client::login(http, OPERATOR2.0, OPERATOR2.1).await;
    let mut siv = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    alarm(tcp, &mut olle, 1, "1234", 1).await;
    let id = olle.post("/api/calls/next", json!({})).await.json()["id"]
        .as_u64()
        .unwrap();
    let path = format!("/api/calls/{id}/reassign");

    // Operators cannot, not even to themselves.
    for to in [OPERATOR2.0, OPERATOR.0] {
        let a = petra.post(&path, json!({"to": to})).await;
        assert_eq!(a.status, 403, "{}", a.body);
    }
    // Take over.
    let a = siv.post(&path, json!({"to": SUPERVISOR.0})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let c = a.json();
    assert_eq!(c["owner"], SUPERVISOR.0);
    let line = last_line(&c);
    assert_eq!(line["type"], "handed_over");
    assert_eq!(
        (&line["from"], &line["to"]),
        (&json!("olle"), &json!("siv"))
    );
    // olle can no longer act on it.
    let a = olle
        .post(&format!("/api/calls/{id}/notes"), json!({"text": "x"}))
        .await;
    assert_eq!(a.status, 409, "{}", a.body);

    // Reassign to a logged-in operator, with a note; not to one who is not logged in.
    let a = siv
        .post(&path, json!({"to": OPERATOR3.0, "note": "x"}))
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("not logged in"), "{}", a.body);
    let a = siv
        .post(
            &path,
            json!({"to": OPERATOR2.0, "note": "Petra tar över, jag går på rast"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let c = a.json();
    assert_eq!(c["owner"], OPERATOR2.0);
    let line = last_line(&c);
    assert_eq!(
        (&line["from"], &line["to"], &line["user"], &line["note"]),
        (
            &json!("siv"),
            &json!("petra"),
            &json!("siv"),
            &json!("Petra tar över, jag går på rast")
        )
    );
    let a = siv.post(&path, json!({"to": OPERATOR2.0})).await;
    assert_eq!(a.status, 400, "already hers: {}", a.body);
    let a = siv.post(&path, json!({"to": " "})).await;
    assert_eq!(a.status, 400, "nobody named: {}", a.body);
    let taken = audit(&mut siv, "call.take_over").await;
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        (&taken[0]["user"], &taken[0]["detail"]),
        (&json!("siv"), &json!("from olle"))
    );
    let moved = audit(&mut siv, "call.reassign").await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["detail"], "from siv to petra");
    assert_eq!(moved[0]["call"], id);

    // A waiting Call is taken, not reassigned; an unknown one is not found.
    alarm(tcp, &mut olle, 2, "5678", 2).await;
    let waiting = olle
        .get("/api/calls")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["state"] == "queued")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let a = siv
        .post(
            &format!("/api/calls/{waiting}/reassign"),
            json!({"to": OPERATOR2.0}),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("nobody owns"), "{}", a.body);
    let a = siv
        .post("/api/calls/999/reassign", json!({"to": SUPERVISOR.0}))
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
    // olle owns nothing now: a plain logout.
    assert_eq!(olle.send("DELETE", "/api/session", None).await.status, 204);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_calls_of_a_disabled_user_or_an_ended_session_go_back_to_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    // The server's sweep every second.
    let srv = server(dir.path(), 1).await;
    let (http, tcp) = (srv.http.unwrap(), srv.dc09_tcp.unwrap());
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let mut siv = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    alarm(tcp, &mut siv, 1, "1234", 1).await;
    alarm(tcp, &mut siv, 2, "5678", 2).await;

    // Logged in twice: logging out of one window keeps the Call (the other still works it).
    let mut olle = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut olle2 = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let first = olle.post("/api/calls/next", json!({})).await.json()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(olle.send("DELETE", "/api/session", None).await.status, 204);
    assert_eq!(call(&mut siv, first).await["owner"], OPERATOR.0);
    assert_eq!(olle2.send("DELETE", "/api/session", None).await.status, 409);

    // Disabled by an administrator: back at once.
    let d = admin
        .send("POST", &format!("/api/users/{}/disable", OPERATOR.0), None)
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let c = call(&mut siv, first).await;
    assert_eq!((&c["state"], &c["owner"]), (&json!("queued"), &Value::Null));
    let line = last_line(&c);
    assert_eq!(
        (&line["type"], &line["owner"], &line["reason"]),
        (&json!("returned"), &json!("olle"), &json!("disabled"))
    );
    assert!(line["user"].is_null(), "{line}");

    // A session ended by a role change: the server's sweep puts the Call back.
    let mut petra = Client::login(http, OPERATOR2.0, OPERATOR2.1).await;
    let second = petra.post("/api/calls/next", json!({})).await.json()["id"]
        .as_u64()
        .unwrap();
    let r = admin
        .post(
            &format!("/api/users/{}/role", OPERATOR2.0),
            json!({"role": "supervisor"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(petra.get("/api/session").await.status, 401);
    let line = wait_for("the sweep", Duration::from_secs(10), || {
        let mut siv = siv.clone();
        async move {
            let c = call(&mut siv, second).await;
            (c["state"] == "queued").then(|| last_line(&c))
        }
    })
    .await;
    assert_eq!(
        (&line["type"], &line["owner"], &line["reason"]),
        (&json!("returned"), &json!("petra"), &json!("session_ended"))
    );
    let returned = audit(&mut siv, "call.return").await;
    assert_eq!(returned.len(), 2, "{returned:?}");
    assert!(returned.iter().all(|e| e["user"] == "vakt"), "{returned:?}");
    srv.stop().await.unwrap();
}
