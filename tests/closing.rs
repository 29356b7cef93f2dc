//! The closing rule and the review list through the real server on 127.0.0.1:0: refusals
//! with their reasons (409, 422), the override that only a supervisor has (403 for an
//! operator), the person who could not be reached, and the review list (accept, reopen,
//! the share reviewed, role limits, kept across a restart).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vakt::model::Role;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const SUPERVISOR: (&str, &str) = ("siv", "siv-password-3");

async fn server(dir: &std::path::Path) -> vakt::server::Running {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes()).unwrap();
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    start_with(test_config(dir)).await
}

/// Sends a Contact ID alarm from `account` and returns the id of the open Call it is in.
async fn alarm(
    srv: &vakt::server::Running,
    c: &mut Client,
    seq: u16,
    account: &str,
    cid: &str,
) -> u64 {
    let data = format!("#{account}|{cid}");
    let reply = tcp_roundtrip(
        srv.dc09_tcp.unwrap(),
        &plain("ADM-CID", seq, account, &data),
    )
    .await;
    assert_eq!(token_of(&reply), "ACK");
    wait_for("the alarm's Call", Duration::from_secs(10), || {
        let mut c = c.clone();
        let account = account.to_owned();
        async move {
            let calls: Vec<Value> =
                serde_json::from_value(c.get("/api/calls?state=open").await.json()).ok()?;
            calls
                .iter()
                .find(|x| x["account"] == account.as_str())
                .and_then(|x| x["id"].as_u64())
        }
    })
    .await
}

async fn close(c: &mut Client, id: u64, body: Value) -> Answer {
    c.post(&format!("/api/calls/{id}/close"), body).await
}

fn error_of(a: &Answer) -> String {
    a.json()["error"].as_str().unwrap_or_default().to_owned()
}

async fn audit_actions(c: &mut Client) -> Vec<(String, Option<u64>, String)> {
    let a = c.get("/api/audit?limit=1000").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["call"].as_u64(),
                e["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_smoke_alarm_closes_only_with_help_sent_or_a_supervisors_override() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;

    // A smoke detector's alarm (Contact ID 111): life-safety.
    let id = alarm(&srv, &mut op, 1, "1234", "1111 01 001").await;
    let a = op.post(&format!("/api/calls/{id}/claim"), json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["priority"], 0);

    // "Help not needed" without a reason: the missing reason is the one thing said.
    let a = close(&mut op, id, json!({"outcome": "help_not_needed"})).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(
        error_of(&a),
        "write why neither a patrol nor an emergency service is needed"
    );
    // With a reason: refused, it is a life-safety alarm.
    for outcome in ["help_not_needed", "accidental_press"] {
        let a = close(
            &mut op,
            id,
            json!({"outcome": outcome, "note": "burnt toast"}),
        )
        .await;
        assert_eq!(a.status, 409, "{outcome}: {}", a.body);
        let e = error_of(&a);
        assert!(
            e.contains("is a life-safety alarm: dispatch a patrol or call 112"),
            "{e}"
        );
        // The refusal's stable name and the kind, for the console to word it.
        let v = a.json();
        assert_eq!(v["code"], "closing.life_safety", "{v}");
        assert!(
            v["params"]["kind"].as_str().is_some_and(|k| !k.is_empty()),
            "{v}"
        );
    }
    // "Patrol sent" without a dispatch, and the old "no action": refused.
    let a = close(&mut op, id, json!({"outcome": "patrol_needed"})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(error_of(&a).contains("no patrol has been dispatched"));
    let a = close(&mut op, id, json!({"outcome": "no_action", "note": "x"})).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(error_of(&a).contains("not an outcome any more"));
    // An operator cannot override.
    let a = close(
        &mut op,
        id,
        json!({"outcome": "help_not_needed", "note": "burnt toast", "override_reason": "I know"}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(
        error_of(&a),
        "only a supervisor can override the closing rule"
    );
    let call = op.get(&format!("/api/calls/{id}")).await.json();
    assert_eq!(call["state"], "claimed", "nothing refused closed it");

    // The supervisor takes the Call over (the operator puts it back) and overrides.
    let a = op
        .post(&format!("/api/calls/{id}/release"), json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sup.post(&format!("/api/calls/{id}/claim"), json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = close(
        &mut sup,
        id,
        json!({"outcome": "help_not_needed", "note": "burnt toast", "override_reason": ""}),
    )
    .await;
    assert_eq!(a.status, 422, "an override needs its reason: {}", a.body);
    assert_eq!(error_of(&a), "write why you override the closing rule");
    let a = close(
        &mut sup,
        id,
        json!({"outcome": "help_not_needed", "note": "burnt toast",
               "override_reason": "the caretaker is with her, the kitchen aired"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let closed = a.json();
    assert_eq!(closed["outcome"], "help_not_needed");
    let line = closed["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(line["type"], "closed");
    assert_eq!(line["user"], SUPERVISOR.0);
    assert_eq!(
        line["override_reason"],
        "the caretaker is with her, the kitchen aired"
    );
    assert!(
        line["overrode"]
            .as_str()
            .unwrap()
            .contains("life-safety alarm"),
        "{line}"
    );
    assert_eq!(line["review"], true);
    let audit = audit_actions(&mut sup).await;
    assert!(
        audit.iter().any(|(a, c, d)| a == "call.close_override"
            && *c == Some(id)
            && d.contains("the caretaker is with her")),
        "{audit:?}"
    );

    // A second smoke alarm closes "fire brigade" at once, and is not for review.
    let id2 = alarm(&srv, &mut op, 2, "1234", "1111 01 001").await;
    assert_ne!(id2, id);
    op.post(&format!("/api/calls/{id2}/claim"), json!({})).await;
    let a = close(&mut op, id2, json!({"outcome": "fire_brigade_called"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let list = sup.get("/api/reviews").await.json();
    let pending: Vec<u64> = list["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["call"].as_u64().unwrap())
        .collect();
    assert_eq!(
        pending,
        [id],
        "the override is reviewed, the fire brigade not"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_person_who_did_not_answer_needs_help_sent_until_reached() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    // A pendant press (Contact ID 101): not life-safety.
    let id = alarm(&srv, &mut op, 1, "1234", "1101 01 001").await;
    op.post(&format!("/api/calls/{id}/claim"), json!({})).await;
    let a = op
        .post(
            &format!("/api/calls/{id}/phone"),
            json!({"to": "person", "answered": false}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let line = a.json()["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (line["type"].clone(), line["answered"].clone()),
        (json!("phone_call"), json!(false))
    );
    let a = close(
        &mut op,
        id,
        json!({"outcome": "help_not_needed", "note": "probably fine"}),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(
        error_of(&a),
        "the person could not be reached: dispatch a patrol or call 112 (ambulance or fire brigade) before closing"
    );
    // A relative answering does not change it.
    op.post(
        &format!("/api/calls/{id}/phone"),
        json!({"to": "relative", "note": "Karin does not know"}),
    )
    .await;
    let a = close(
        &mut op,
        id,
        json!({"outcome": "relative_goes", "note": "Karin goes"}),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);
    // The person answers a second call: it closes, and goes on the review list.
    let a = op
        .post(
            &format!("/api/calls/{id}/phone"),
            json!({"to": "person", "answered": true, "note": "she is fine"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = close(
        &mut op,
        id,
        json!({"outcome": "help_not_needed", "note": "she is fine, pressed to test"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["outcome"], "help_not_needed");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn supervisors_work_through_the_review_list_and_it_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut ids = Vec::new();
    for (seq, account, outcome) in [
        (1, "1234", "accidental_press"),
        (2, "1234", "technical"),
        (3, "1234", "ambulance_called"),
    ] {
        let id = alarm(&srv, &mut op, seq, account, "1101 01 001").await;
        op.post(&format!("/api/calls/{id}/claim"), json!({})).await;
        let a = close(
            &mut op,
            id,
            json!({"outcome": outcome, "note": "checked with the person"}),
        )
        .await;
        assert_eq!(a.status, 200, "{outcome}: {}", a.body);
        ids.push(id);
    }
    // Operators see no review list and decide nothing.
    assert_eq!(op.get("/api/reviews").await.status, 403);
    let a = op
        .post(&format!("/api/reviews/{}/accept", ids[0]), json!({}))
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = op
        .post(
            &format!("/api/reviews/{}/reopen", ids[0]),
            json!({"note": "x"}),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);

    let list = sup.get("/api/reviews").await.json();
    let pending: Vec<u64> = list["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["call"].as_u64().unwrap())
        .collect();
    assert_eq!(pending, [ids[0], ids[1]], "the ambulance is not for review");
    assert_eq!(list["pending"][0]["outcome"], "accidental_press");
    assert_eq!(list["pending"][0]["closed_by"], OPERATOR.0);
    assert_eq!(list["pending"][0]["reason"], "checked with the person");
    assert_eq!(
        (
            list["window_days"].clone(),
            list["closed_for_review"].clone(),
            list["reviewed"].clone(),
            list["reviewed_pct"].clone()
        ),
        (json!(7), json!(2), json!(0), json!(0.0))
    );

    // Kept across a restart.
    drop((op, sup));
    srv.stop().await.unwrap();
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let list = sup.get("/api/reviews").await.json();
    assert_eq!(list["pending"].as_array().unwrap().len(), 2, "{list}");

    // Accept the first, once.
    let a = sup
        .post(&format!("/api/reviews/{}/accept", ids[0]), json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["decision"]["verdict"], "accepted");
    assert_eq!(a.json()["decision"]["by"], SUPERVISOR.0);
    let a = sup
        .post(&format!("/api/reviews/{}/accept", ids[0]), json!({}))
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(
        error_of(&a),
        format!(
            "this closing was already reviewed: accepted by {}",
            SUPERVISOR.0
        )
    );
    let a = sup
        .post(&format!("/api/reviews/{}/accept", ids[2]), json!({}))
        .await;
    assert_eq!(
        a.status, 404,
        "the ambulance Call has no review: {}",
        a.body
    );

    // Reopen the second: a reason is required; it comes back to the queue.
    let a = sup
        .post(
            &format!("/api/reviews/{}/reopen", ids[1]),
            json!({"note": " "}),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(error_of(&a), "write why the call is reopened");
    let a = sup
        .post(
            &format!("/api/reviews/{}/reopen", ids[1]),
            json!({"note": "a technical close of a pendant press: call her again"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["decision"]["verdict"], "reopened");
    let call = sup.get(&format!("/api/calls/{}", ids[1])).await.json();
    assert_eq!(call["state"], "queued", "{call}");
    let line = call["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(line["type"], "reopened");
    assert_eq!(line["user"], SUPERVISOR.0);
    assert_eq!(
        line["reason"],
        "on review: a technical close of a pendant press: call her again"
    );
    let open: Vec<Value> =
        serde_json::from_value(sup.get("/api/calls?state=open").await.json()).unwrap();
    assert!(open.iter().any(|c| c["id"] == ids[1]), "back in the queue");

    let list = sup.get("/api/reviews").await.json();
    assert!(list["pending"].as_array().unwrap().is_empty(), "{list}");
    assert_eq!(
        (
            list["closed_for_review"].clone(),
            list["reviewed"].clone(),
            list["accepted"].clone(),
            list["reopened"].clone(),
            list["reviewed_pct"].clone()
        ),
        (json!(2), json!(2), json!(1), json!(1), json!(100.0))
    );
    assert_eq!(sup.get("/api/reviews?days=0").await.status, 400);
    let audit = audit_actions(&mut sup).await;
    for (action, call) in [
        ("call.review_accept", ids[0]),
        ("call.review_reopen", ids[1]),
    ] {
        assert!(
            audit
                .iter()
                .any(|(a, c, _)| a == action && *c == Some(call)),
            "{action} for {call} not audited: {audit:?}"
        );
    }
    srv.stop().await.unwrap();
}
