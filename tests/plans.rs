//! Response plans against the real server on 127.0.0.1:0: a supervisor edits a subscriber's
//! plan (each save a version, the old ones readable, operators refused, an invalid plan 422
//! with one message, every edit and view audited); on a fall Call the owner reads the plan
//! for its kind, records the relatives called (no answer, then answered) and ticks the
//! steps, each a timeline line; another operator is refused 409, a closed Call 410; an edit
//! while the Call is worked does not change the version it is handled under.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vakt::model::Role;

const SUPERVISOR: (&str, &str) = ("sara", "sara-password-1");
const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const OTHER: (&str, &str) = ("nora", "nora-password-1");

fn subscribers_csv() -> String {
    format!(
        "{}\n\
         anna,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Centrum,070-111 22 33,Hemtjänst Centrum,2,Nyckelskåp,PL-3301,4711#,,,,Karin Öberg,dotter,070-222 33 44,Björn Öberg,son,070-333 44 55,,,,sv\n\
         bertil,Bertil Ek,19400101-1234,Ågatan 1,123 45,Vaktby,Norr,070-999 00 00,Hemtjänst Norr,1,Nyckelskåp,,,,,,,,,,,,,,,sv\n",
        vakt::registers::subscribers::CSV_HEADER
    )
}

async fn server(dir: &std::path::Path) -> vakt::server::Running {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes()).unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, OTHER.0, Role::Operator, OTHER.1);
    let store = common::open_store(dir).unwrap();
    store
        .upsert_subscribers(
            &vakt::registers::subscribers::parse_csv(subscribers_csv().as_bytes()).unwrap(),
        )
        .unwrap();
    drop(store);
    start_with(test_config(dir)).await
}

fn fall_plan(note: &str) -> Value {
    json!({
        "instructions": note,
        "kinds": [{
            "kind": "fall",
            "instructions": "She has a hip prosthesis",
            "steps": [
                {"action": "talk_to_person", "instructions": "Speak loudly"},
                {"action": "call_relatives", "instructions": "Karin lives next door"},
                {"action": "send_patrol"}
            ]
        }]
    })
}

async fn put(c: &mut Client, path: &str, body: Value) -> Answer {
    c.send("PUT", path, Some(("application/json", body.to_string())))
        .await
}

/// The audit entries of `action`, as `user detail`.
async fn audited(sup: &mut Client, action: &str) -> Vec<String> {
    let a = sup.get("/api/audit?limit=1000").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            format!(
                "{} {}",
                e["user"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_supervisor_saves_versions_operators_only_read_and_invalid_plans_are_422() {
    let dir = tempfile::tempdir().unwrap();
    let r = server(dir.path()).await;
    let http = r.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;

    // No plan yet: the centre's default, per kind, is what applies.
    let p = op.get("/api/subscribers/anna/plan").await;
    assert_eq!(p.status, 200, "{}", p.body);
    let p = p.json();
    assert_eq!(p["current"], Value::Null);
    assert_eq!(p["versions"], json!([]));
    assert_eq!(p["centre_default"].as_array().unwrap().len(), 7);
    assert_eq!(p["relatives_first_default"], false);

    let a = put(&mut op, "/api/subscribers/anna/plan", fall_plan("x")).await;
    assert_eq!(a.status, 403, "{}", a.body);

    let a = put(
        &mut sup,
        "/api/subscribers/anna/plan",
        fall_plan("  Hard of hearing "),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["current"]["version"], 1);
    assert_eq!(v["current"]["saved_by"], SUPERVISOR.0);
    assert_eq!(v["current"]["plan"]["instructions"], "Hard of hearing");

    let mut second = fall_plan("Hard of hearing; dog in the hall");
    second["relatives_first"] = json!(true);
    second["kinds"][0]["steps"] = json!([
        {"action": "talk_to_person"},
        {"action": "send_patrol"},
        {"action": "call_relatives"}
    ]);
    let a = put(&mut sup, "/api/subscribers/anna/plan", second).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["current"]["version"], 2);
    assert_eq!(v["current"]["plan"]["relatives_first"], true);
    // The card lists the steps as a Call gets them: the relatives before the patrol, as
    // the plan asks, though written after it; kinds the plan leaves out are the centre's.
    let fall = &v["in_force"][0];
    assert_eq!(fall["kind"], "fall");
    assert_eq!(fall["source"], "subscriber");
    assert_eq!(
        fall["steps"],
        json!(["talk_to_person", "call_relatives", "send_patrol"])
    );
    assert_eq!(v["in_force"].as_array().unwrap().len(), 7);
    assert_eq!(v["in_force"][2]["kind"], "fire");
    assert_eq!(v["in_force"][2]["source"], "centre");
    let versions: Vec<u64> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1]);

    // The old version stays readable, as it was.
    let old = op.get("/api/subscribers/anna/plan/versions/1").await;
    assert_eq!(old.status, 200, "{}", old.body);
    let old = old.json();
    assert_eq!(old["plan"]["instructions"], "Hard of hearing");
    assert_eq!(old["plan"]["relatives_first"], Value::Null);
    assert_eq!(
        old["in_force"][0]["steps"],
        json!(["talk_to_person", "call_relatives", "send_patrol"])
    );
    assert_eq!(
        op.get("/api/subscribers/anna/plan/versions/3").await.status,
        404
    );

    // Invalid plans: 422 with the one thing wrong; nothing saved.
    let mut too_many = fall_plan("");
    too_many["kinds"][0]["steps"] = json!(vec![json!({"action": "send_patrol"}); 11]);
    let a = put(&mut sup, "/api/subscribers/anna/plan", too_many).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"], "the kind fall has more than 10 steps");
    let mut long = fall_plan("");
    long["kinds"][0]["steps"][1]["instructions"] = json!("x".repeat(501));
    let a = put(&mut sup, "/api/subscribers/anna/plan", long).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(
        a.json()["error"],
        "step 2 of fall has instructions longer than 500 characters"
    );
    let mut unknown = fall_plan("");
    unknown["kinds"][0]["steps"][0]["action"] = json!("pray");
    let a = put(&mut sup, "/api/subscribers/anna/plan", unknown).await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = put(&mut sup, "/api/subscribers/nobody/plan", fall_plan("")).await;
    assert_eq!(a.status, 404, "{}", a.body);
    let p = op.get("/api/subscribers/anna/plan").await.json();
    assert_eq!(
        p["current"]["version"], 2,
        "the refused plans were not saved"
    );

    assert_eq!(
        audited(&mut sup, "plan.edit").await,
        ["sara version 1", "sara version 2"]
    );
    let views = audited(&mut sup, "plan.view").await;
    assert!(views.contains(&"olle none".to_string()), "{views:?}");
    assert!(views.contains(&"olle version 1".to_string()), "{views:?}");
    r.stop().await.unwrap();
}

/// Sends a fall alarm (CID 103) from device 1234 (Åsa) and waits for its Call.
async fn fall_call(r: &vakt::server::Running, c: &mut Client) -> u64 {
    let reply = tcp_roundtrip(
        r.dc09_tcp.unwrap(),
        &plain("ADM-CID", 1, "1234", "#1234|1103 01 001"),
    )
    .await;
    assert!(String::from_utf8_lossy(&reply).contains("\"ACK\""));
    wait_for("the fall Call", Duration::from_secs(10), || {
        let mut c = c.clone();
        async move {
            let calls = c.get("/api/calls?state=open").await.json();
            calls
                .as_array()
                .and_then(|a| a.first())
                .and_then(|c| c["id"].as_u64())
        }
    })
    .await
}

fn plan_lines(call: &Value) -> Vec<String> {
    call["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| match l["type"].as_str()? {
            "plan_step" => Some(format!(
                "{} step {} {} {} v{}",
                l["user"].as_str()?,
                l["step"],
                l["action"].as_str()?,
                l["result"].as_str()?,
                l["plan_version"]
            )),
            "relative_call" => Some(format!(
                "{} called {} ({}) {} v{}",
                l["user"].as_str()?,
                l["name"].as_str()?,
                l["relation"].as_str()?,
                l["result"].as_str()?,
                l["plan_version"]
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_owner_works_a_fall_call_through_its_plan_and_the_timeline_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = server(dir.path()).await;
    let http = r.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut other = Client::login(http, OTHER.0, OTHER.1).await;
    let a = put(
        &mut sup,
        "/api/subscribers/anna/plan",
        fall_plan("Hard of hearing"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    let id = fall_call(&r, &mut op).await;
    let p = op.get(&format!("/api/calls/{id}/plan")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let p = p.json();
    assert_eq!(
        (
            &p["kind"],
            &p["source"],
            &p["version"],
            &p["current_version"]
        ),
        (&json!("fall"), &json!("subscriber"), &json!(1), &json!(1))
    );
    assert_eq!(p["instructions"], "Hard of hearing");
    assert_eq!(p["kind_instructions"], "She has a hip prosthesis");
    let actions: Vec<&str> = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["talk_to_person", "call_relatives", "send_patrol"]);
    let names: Vec<&str> = p["relatives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Karin Öberg", "Björn Öberg"]);

    // Nobody owns it yet: ticking is refused; then another operator's Call is refused too.
    let tick = |i: u32| format!("/api/calls/{id}/plan/steps/{i}");
    let relative = format!("/api/calls/{id}/relative-call");
    let a = op.post(&tick(0), json!({"result": "done"})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    let a = op.post(&format!("/api/calls/{id}/claim"), json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = other.post(&tick(0), json!({"result": "done"})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    let a = other
        .post(&relative, json!({"contact": 0, "result": "answered"}))
        .await;
    assert_eq!(a.status, 409, "{}", a.body);

    // The person does not answer: the step is skipped, with a reason (required).
    let a = op.post(&tick(0), json!({"result": "skipped"})).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"], "a skipped step needs a reason");
    let a = op
        .post(
            &tick(0),
            json!({"result": "skipped", "reason": "no answer on the unit"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Karin does not answer, Björn does.
    let a = op
        .post(&relative, json!({"contact": 0, "result": "no_answer"}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A supervisor edits the plan meanwhile: this Call stays on version 1.
    let a = put(&mut sup, "/api/subscribers/anna/plan", fall_plan("v2")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op
        .post(
            &relative,
            json!({"contact": 1, "result": "answered", "note": "he goes over"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op.post(&tick(1), json!({"result": "done"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A page that shows another version or another step, or a contact list that changed
    // under it: 409, nothing recorded.
    for stale in [
        json!({"result": "done", "plan_version": 2}),
        json!({"result": "done", "plan_version": 1, "action": "call_emergency"}),
    ] {
        let a = op.post(&tick(2), stale).await;
        assert_eq!(a.status, 409, "{}", a.body);
        assert_eq!(a.json()["code"], "plan.changed");
    }
    let a = op
        .post(
            &relative,
            json!({"contact": 1, "name": "Karin Öberg", "result": "busy"}),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    // Out of range: 422 with one message.
    let a = op.post(&tick(3), json!({"result": "done"})).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"], "the plan has 3 steps for this alarm");
    let a = op
        .post(&relative, json!({"contact": 2, "result": "busy"}))
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"], "the subscriber has 2 contacts");

    let call = op.get(&format!("/api/calls/{id}")).await.json();
    assert_eq!(
        plan_lines(&call),
        [
            "olle step 0 talk_to_person skipped v1",
            "olle called Karin Öberg (dotter) no_answer v1",
            "olle called Björn Öberg (son) answered v1",
            "olle step 1 call_relatives done v1",
        ]
    );
    let p = op.get(&format!("/api/calls/{id}/plan")).await.json();
    assert_eq!(
        (&p["version"], &p["current_version"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(p["instructions"], "Hard of hearing", "version 1's text");
    assert_eq!(p["steps"][0]["mark"]["result"], "skipped");
    assert_eq!(p["steps"][0]["mark"]["reason"], "no answer on the unit");
    assert_eq!(p["steps"][1]["mark"]["user"], OPERATOR.0);
    assert_eq!(p["steps"][2]["mark"], Value::Null);
    assert_eq!(p["relatives"][0]["attempts"][0]["result"], "no_answer");
    assert_eq!(p["relatives"][1]["attempts"][0]["result"], "answered");
    assert_eq!(p["relatives"][1]["attempts"][0]["note"], "he goes over");

    assert_eq!(
        audited(&mut sup, "call.plan_step").await,
        [
            "olle talk_to_person skipped (0)",
            "olle call_relatives done (1)"
        ]
    );
    assert_eq!(
        audited(&mut sup, "call.relative_call").await,
        ["olle no_answer (0)", "olle answered (1)"]
    );

    // Closed: 410.
    let a = op
        .post(
            &format!("/api/calls/{id}/close"),
            json!({"outcome": "handled_by_phone", "note": "son goes over"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op.post(&tick(2), json!({"result": "done"})).await;
    assert_eq!(a.status, 410, "{}", a.body);
    // The closed Call's plan still reads from its stored timeline.
    let p = op.get(&format!("/api/calls/{id}/plan")).await.json();
    assert_eq!(p["relatives"][1]["attempts"][0]["result"], "answered");
    r.stop().await.unwrap();
}
