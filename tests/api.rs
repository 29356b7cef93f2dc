//! The console's HTTP API against a real server on 127.0.0.1:0: sessions and roles, the flow
//! alarm -> Call -> claim -> note -> close, the live WebSocket, and a restart with open Calls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use vakt::model::Role;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const OPERATOR2: (&str, &str) = ("petra", "petra-password-2");
const SUPERVISOR: (&str, &str) = ("siv", "siv-password-3");

/// Subscribers of the test registry's devices (1234 -> anna, 5678 -> bertil).
fn subscribers_csv() -> String {
    format!(
        "{}\n\
         anna,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Centrum,070-111 22 33,Hemtjänst Centrum,2,\"Nyckelskåp Centrum, krok 14\",PL-3301,4711#,Hund i hallen,\"Diabetes typ 2, insulin\",Tillsyn 3 ggr/dygn,Karin Öberg,dotter,070-222 33 44,,,,,,,sv\n\
         bertil,Bertil Ärlig,19300101-9811,Kyrkbacken 2,123 46,Vaktby,Norr,070-333 44 55,Hemtjänst Norr,1,Hemtjänst Norr,,,,,,,,,,,,,,,sv\n",
        vakt::registers::subscribers::CSV_HEADER
    )
}

async fn server(dir: &std::path::Path) -> vakt::server::Running {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes()).unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, OPERATOR2.0, Role::Operator, OPERATOR2.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    start_with(test_config(dir)).await
}

async fn import_subscribers(http: std::net::SocketAddr) {
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let a = admin
        .send(
            "POST",
            "/api/subscribers/import",
            Some(("text/csv", subscribers_csv())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["imported"], 2);
}

/// Polls the open Calls until `pred` holds (bounded: 10 s).
async fn wait_calls(c: &mut Client, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = c.get("/api/calls?state=open").await;
        assert_eq!(a.status, 200, "{}", a.body);
        let calls: Vec<Value> = serde_json::from_value(a.json()).unwrap();
        if pred(&calls) {
            return calls;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls never matched: {calls:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn alarm(tcp: std::net::SocketAddr, seq: u16, account: &str, cid: &str) {
    let data = format!("#{account}|{cid}");
    let reply = tcp_roundtrip(tcp, &plain("ADM-CID", seq, account, &data)).await;
    assert_eq!(token_of(&reply), "ACK");
}

#[tokio::test]
async fn no_route_answers_without_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut anon = Client::new(http);
    // Every route of the generated OpenAPI document, with every method it has.
    let doc = anon.get("/api/openapi.json").await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            if path == "/api/session" && method == "post" {
                continue;
            }
            let concrete = path.replace("{id}", "1");
            let body = match method {
                "post" | "put" => Some(("application/json", "{}".to_string())),
                _ => None,
            };
            let a = anon.send(&method.to_uppercase(), &concrete, body).await;
            assert_eq!(
                a.status, 401,
                "{method} {path} answered {}: {}",
                a.status, a.body
            );
            assert!(a.json()["error"].is_string(), "{method} {path}: JSON error");
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} routes in the document");
    // A forged cookie is no session either.
    let mut forged = Client::new(http);
    forged.cookie = Some("00".repeat(32));
    assert_eq!(forged.get("/api/calls?state=open").await.status, 401);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn openapi_describes_the_routes_of_the_issue() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let doc = Client::new(srv.http.unwrap())
        .get("/api/openapi.json")
        .await
        .json();
    for (path, method) in [
        ("/api/session", "post"),
        ("/api/session", "delete"),
        ("/api/calls", "get"),
        ("/api/calls/{id}", "get"),
        ("/api/calls/{id}/claim", "post"),
        ("/api/calls/{id}/release", "post"),
        ("/api/calls/{id}/notes", "post"),
        ("/api/calls/{id}/close", "post"),
        ("/api/devices/import", "post"),
        ("/api/subscribers/import", "post"),
        ("/api/subscribers/{id}", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["CallSummary"].is_object());
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn roles_limit_what_a_user_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let who = op.get("/api/session").await.json();
    assert_eq!(who["role"], "operator");
    // The console rings by the centre's settings (the defaults here).
    assert_eq!(who["alerting"]["ring_max_level"], 2);
    assert_eq!(who["alerting"]["ring_repeat_secs"], 10);
    let a = op
        .send(
            "POST",
            "/api/subscribers/import",
            Some(("text/csv", subscribers_csv())),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.json()["error"].as_str().unwrap().contains("admin"));
    let a = op
        .send(
            "POST",
            "/api/devices/import",
            Some(("text/csv", devices_csv())),
        )
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(op.get("/api/audit").await.status, 403);
    assert_eq!(
        op.get("/api/subscribers?q=a").await.status,
        200,
        "operators search"
    );

    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let a = sup
        .send(
            "POST",
            "/api/subscribers/import",
            Some(("text/csv", subscribers_csv())),
        )
        .await;
    assert_eq!(a.status, 403, "a supervisor edits but does not import");
    assert_eq!(sup.get("/api/audit").await.status, 200);

    import_subscribers(http).await;
    // A supervisor edits a subscriber; a bad edit changes nothing.
    let mut card = sup.get("/api/subscribers/anna").await.json();
    card["access"]["door_code"] = json!("9999#");
    let a = sup
        .send(
            "PUT",
            "/api/subscribers/anna",
            Some(("application/json", card.to_string())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["access"]["door_code"], "9999#");
    card["name"] = json!("");
    let a = sup
        .send(
            "PUT",
            "/api/subscribers/anna",
            Some(("application/json", card.to_string())),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = op.get("/api/subscribers/anna").await.json();
    assert_eq!(a["name"], "Åsa Öberg");

    // Logging out ends the session.
    assert_eq!(op.send("DELETE", "/api/session", None).await.status, 204);
    assert_eq!(op.get("/api/session").await.status, 401);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn bad_attempts_on_a_user_name_are_throttled_but_never_refuse_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut c = Client::new(http);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let a = c
            .post(
                "/api/session",
                json!({"username": OPERATOR.0, "password": "wrong-password"}),
            )
            .await;
        if a.status == 429 {
            assert!(a.header("retry-after").is_some(), "{:?}", a.headers);
            assert!(a.json()["error"].is_string());
        }
        statuses.push(a.status);
    }
    // The first four are plain refusals; from the fifth on, each wrong attempt is
    // throttled: its answer is held and says so.
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429], "{statuses:?}");
    // The right password still logs in: bad attempts on a name never lock its user out.
    let a = c
        .post(
            "/api/session",
            json!({"username": OPERATOR.0, "password": OPERATOR.1}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Success starts the name's count over.
    let a = c
        .post(
            "/api/session",
            json!({"username": OPERATOR.0, "password": "wrong-password"}),
        )
        .await;
    assert_eq!(a.status, 401, "{}", a.body);
    let (_, metrics) = http_get(http, "/metrics").await;
    for result in ["bad_credentials", "throttled", "ok"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("vakt_logins_total{{result=\"{result}\"}}"))),
            "{result}: {metrics}"
        );
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn alarm_becomes_a_call_that_is_claimed_noted_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let tcp = srv.dc09_tcp.unwrap();
    import_subscribers(http).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut op2 = Client::login(http, OPERATOR2.0, OPERATOR2.1).await;

    // A pendant press, then a second press: one Call with two alarms.
    alarm(tcp, 1, "1234", "1101 01 001").await;
    let calls = wait_calls(&mut op, |c| c.len() == 1).await;
    let id = calls[0]["id"].as_u64().unwrap();
    assert_eq!(calls[0]["priority"], 1);
    assert_eq!(calls[0]["state"], "queued");
    assert_eq!(calls[0]["subscriber"], "anna");
    assert_eq!(calls[0]["subscriber_name"], "Åsa Öberg");
    assert_eq!(calls[0]["owner"], Value::Null);
    alarm(tcp, 2, "1234", "1101 01 001").await;
    let calls = wait_calls(&mut op, |c| c[0]["alarm_count"] == 2).await;
    assert_eq!(calls.len(), 1, "a repeated press merges, never hides");

    // Take it; the other operator cannot.
    let a = op
        .send("POST", &format!("/api/calls/{id}/claim"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["owner"], OPERATOR.0);
    let a = op2
        .send("POST", &format!("/api/calls/{id}/claim"), None)
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["owner"], OPERATOR.0);
    assert_eq!(op2.send("POST", "/api/calls/next", None).await.status, 204);
    // Only the owner acts on it.
    let a = op2
        .post(
            &format!("/api/calls/{id}/notes"),
            json!({"text": "not mine"}),
        )
        .await;
    assert_eq!(a.status, 409);

    // The subscriber's card.
    let card = op.get("/api/subscribers/anna").await;
    assert_eq!(card.status, 200);
    let card = card.json();
    assert_eq!(card["name"], "Åsa Öberg");
    assert_eq!(card["access"]["door_code"], "4711#");
    assert_eq!(
        card["access"]["key_location"],
        "Nyckelskåp Centrum, krok 14"
    );
    assert_eq!(card["contacts"][0]["name"], "Karin Öberg");
    assert_eq!(card["devices"][0]["account"], "1234");

    // Note, phone call, close.
    let a = op
        .post(
            &format!("/api/calls/{id}/notes"),
            json!({"text": "Åsa har ramlat i köket"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op
        .post(&format!("/api/calls/{id}/notes"), json!({"text": "   "}))
        .await;
    assert_eq!(a.status, 400, "an empty note is refused");
    let a = op
        .post(
            &format!("/api/calls/{id}/phone"),
            json!({"to": "relative", "note": "Karin åker dit"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op
        .post(
            &format!("/api/calls/{id}/close"),
            json!({"outcome": "sent_a_drone", "note": ""}),
        )
        .await;
    assert_eq!(a.status, 422, "unknown outcome: {}", a.body);
    let a = op
        .post(
            &format!("/api/calls/{id}/close"),
            json!({"outcome": "handled_by_phone", "note": "Dottern på väg"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let closed = a.json();
    assert_eq!(closed["state"], "closed");
    // The old name reads as its successor.
    assert_eq!(closed["outcome"], "help_not_needed");
    let kinds: Vec<&str> = closed["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for k in ["signal", "claimed", "note", "phone_call", "closed"] {
        assert!(kinds.contains(&k), "timeline lacks {k}: {kinds:?}");
    }
    assert!(wait_calls(&mut op, |c| c.is_empty()).await.is_empty());
    // The closed Call can still be read.
    let a = op.get(&format!("/api/calls/{id}")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["state"], "closed");
    assert_eq!(
        op.send("POST", &format!("/api/calls/{id}/claim"), None)
            .await
            .status,
        410
    );

    // Today's figures count the Call as answered.
    let st = op.get("/api/stats/today").await.json();
    assert_eq!(st["calls"], 1);
    assert_eq!(st["answered"], 1);
    assert_eq!(st["target_60s_pct"], 97.5);

    // The audit log has who did what.
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let log: Vec<Value> =
        serde_json::from_value(sup.get("/api/audit?limit=1000").await.json()).unwrap();
    for action in [
        "subscriber.view",
        "call.claim",
        "call.note",
        "call.phone",
        "call.close",
    ] {
        assert!(
            log.iter()
                .any(|e| e["action"] == action && e["user"] == OPERATOR.0),
            "audit lacks {action}: {log:?}"
        );
    }
    // The recorder is the process's, and the other tests of this file open, merge and
    // answer Calls at the same time: each of this test's counts is there, maybe with theirs.
    let (_, metrics) = http_get(http, "/metrics").await;
    for m in [
        "vakt_calls_opened_total{level=\"1\"}",
        "vakt_alarms_merged_total",
        "vakt_call_answer_seconds_count",
    ] {
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(m)?.trim().parse::<f64>().ok());
        assert!(
            value.is_some_and(|v| v >= 1.0),
            "{m}: {value:?} in the metrics"
        );
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_devices_and_periodic_tests() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let tcp = srv.dc09_tcp.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    // A periodic test is handled by rule; from an unknown account it opens a level-3 Call.
    alarm(tcp, 1, "1234", "1602 00 000").await;
    alarm(tcp, 2, "7777", "1602 00 000").await;
    let calls = wait_calls(&mut op, |c| !c.is_empty()).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["account"], "7777");
    assert_eq!(calls[0]["priority"], 3);
    assert_eq!(calls[0]["subscriber"], Value::Null);
    // Take next gives it.
    let a = op.send("POST", "/api/calls/next", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["account"], "7777");
    srv.stop().await.unwrap();
}

async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("open")
        .expect("ok");
    serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap()
}

#[tokio::test]
async fn the_live_feed_shows_a_new_call() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{http}/api/live"),
    )
    .unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("vakt_session={}", op.cookie.clone().unwrap())
            .parse()
            .unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connects");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "snapshot");
    assert!(first["calls"].as_array().unwrap().is_empty());
    assert!(first["stats"]["target_180s_pct"].is_number());
    alarm(srv.dc09_tcp.unwrap(), 1, "1234", "1111 01 001").await;
    loop {
        let m = next_json(&mut ws).await;
        if m["type"] == "call" {
            assert_eq!(m["call"]["account"], "1234");
            assert_eq!(m["call"]["priority"], 0, "fire is life-safety");
            break;
        }
    }
    // Without a session there is no feed, nor for a page of another site.
    let anon = tokio_tungstenite::connect_async(format!("ws://{http}/api/live")).await;
    assert!(anon.is_err(), "the live feed needs a session");
    let mut foreign =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{http}/api/live"
        ))
        .unwrap();
    foreign.headers_mut().insert(
        "cookie",
        format!("vakt_session={}", op.cookie.clone().unwrap())
            .parse()
            .unwrap(),
    );
    foreign
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(foreign).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a foreign origin must be refused: {other:?}"),
    }
    drop(ws);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn open_calls_survive_a_restart_with_their_times() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let tcp = srv.dc09_tcp.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    alarm(tcp, 1, "1234", "1101 01 001").await;
    // 5678 has a key: only its encrypted frames are its own.
    let f = encrypted(
        "ADM-CID",
        2,
        "5678",
        "#5678|1100 01 001",
        &key128(),
        jiff::Timestamp::now(),
    );
    assert_eq!(token_of(&tcp_roundtrip(tcp, &f).await), "*ACK");
    alarm(tcp, 3, "7777", "1101 01 001").await;
    let before = wait_calls(&mut op, |c| c.len() == 3).await;
    let claimed = before[0]["id"].as_u64().unwrap();
    let a = op
        .send("POST", &format!("/api/calls/{claimed}/claim"), None)
        .await;
    assert_eq!(a.status, 200);
    let before = wait_calls(&mut op, |c| c.iter().any(|x| x["state"] == "claimed")).await;
    srv.stop().await.unwrap();

    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let after = wait_calls(&mut op, |c| c.len() == 3).await;
    let key = |c: &Value| {
        (
            c["id"].as_u64().unwrap(),
            c["opened_at"].as_str().unwrap().to_string(),
            c["state"].as_str().unwrap().to_string(),
            c["owner"].to_string(),
            c["priority"].as_u64().unwrap(),
        )
    };
    let mut b: Vec<_> = before.iter().map(key).collect();
    let mut a: Vec<_> = after.iter().map(key).collect();
    b.sort();
    a.sort();
    assert_eq!(a, b, "open Calls come back as they were");
    // New Calls get new ids.
    alarm(srv.dc09_tcp.unwrap(), 4, "4321", "1101 01 001").await;
    let calls = wait_calls(&mut op, |c| c.len() == 4).await;
    let max_before = before
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(calls.iter().any(|c| c["id"].as_u64().unwrap() > max_before));
    srv.stop().await.unwrap();
}

/// Eight operators take the same waiting Call at the same moment: exactly one gets it, the
/// others are told who did, and the store holds one owner and one claim, across a restart
/// (run on sled and, in CI, on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_raced_by_eight_operators_is_claimed_once_and_stays_so() {
    const RACERS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<(String, String)> = (0..RACERS)
        .map(|i| (format!("racer{i}"), format!("racer-password-{i}")))
        .collect();
    for (name, password) in &names {
        add_user(dir.path(), name, Role::Operator, password);
    }
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    alarm(srv.dc09_tcp.unwrap(), 1, "1234", "1101 01 001").await;
    let id = wait_calls(&mut sup, |c| c.len() == 1).await[0]["id"]
        .as_u64()
        .unwrap();
    let mut racers = Vec::new();
    for (name, password) in &names {
        racers.push((name.clone(), Client::login(http, name, password).await));
    }
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = racers
        .into_iter()
        .map(|(name, mut c)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let a = c
                    .send("POST", &format!("/api/calls/{id}/claim"), None)
                    .await;
                (
                    name,
                    a.status,
                    a.json()["owner"].as_str().map(str::to_owned),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let won: Vec<&String> = answers
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    let winner = won[0].clone();
    for (name, status, owner) in &answers {
        assert!(*status == 200 || *status == 409, "{name}: {status}");
        assert_eq!(
            owner.as_deref(),
            Some(winner.as_str()),
            "{name}: {answers:?}"
        );
    }
    let claims = |call: &Value| {
        call["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "claimed")
            .count()
    };
    let call = sup.get(&format!("/api/calls/{id}")).await.json();
    assert_eq!(
        (call["owner"].as_str(), claims(&call)),
        (Some(winner.as_str()), 1)
    );
    srv.stop().await.unwrap();

    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let call = sup.get(&format!("/api/calls/{id}")).await.json();
    assert_eq!(
        (
            call["owner"].as_str(),
            call["state"].as_str(),
            claims(&call)
        ),
        (Some(winner.as_str()), Some("claimed"), 1),
        "{call}"
    );
    let claimed: Vec<Value> = audit_entries(http)
        .await
        .into_iter()
        .filter(|e| e["action"] == "call.claim" && e["call"] == id)
        .collect();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0]["user"], winner.as_str());
    srv.stop().await.unwrap();
}

// ---- logins behind a proxy, cross-origin requests, sessions, users ----

/// One login attempt from a fresh client, with extra headers.
async fn attempt(
    http: std::net::SocketAddr,
    user: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut c = Client::new(http);
    for (k, v) in headers {
        c.extra_header(k, v);
    }
    c.post(
        "/api/session",
        json!({"username": user, "password": password}),
    )
    .await
}

/// The test configuration with the `[http]` keys of `toml` (the listen address stays).
fn config_with_http(dir: &std::path::Path, toml: &str) -> vakt::config::Config {
    let mut cfg = test_config(dir);
    let http = vakt::config::Config::from_toml(toml)
        .unwrap_or_else(|e| panic!("{toml}: {e}"))
        .http;
    cfg.http = vakt::config::HttpConfig {
        listen: cfg.http.listen,
        ..http
    };
    cfg
}

async fn server_with(dir: &std::path::Path, cfg: vakt::config::Config) -> vakt::server::Running {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes()).unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, OPERATOR2.0, Role::Operator, OPERATOR2.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    start_with(cfg).await
}

async fn audit_entries(http: std::net::SocketAddr) -> Vec<Value> {
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let a = sup.get("/api/audit?limit=1000").await;
    assert_eq!(a.status, 200, "{}", a.body);
    serde_json::from_value(a.json()).unwrap()
}

#[tokio::test]
async fn a_flood_of_bad_logins_through_the_proxy_never_refuses_a_correct_password() {
    // Behind the TLS proxy every operator has the proxy's address. Without trusted proxies
    // configured, a forwarded-for header is not believed: every attempt below counts
    // against 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut statuses = Vec::new();
    for i in 0..21 {
        let spoofed = format!("203.0.113.{i}");
        let a = attempt(
            http,
            &format!("guess{}", i % 7),
            "wrong-password",
            &[("x-forwarded-for", &spoofed)],
        )
        .await;
        statuses.push(a.status);
    }
    assert!(statuses[..19].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[19..], [429, 429], "the address is throttled");
    // An operator at the same address logs in with the right password, at once.
    let a = attempt(http, OPERATOR.0, OPERATOR.1, &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let log = audit_entries(http).await;
    let failed: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "session.login_failed")
        .collect();
    assert_eq!(failed.len(), 21);
    for e in &failed {
        let d = e["detail"].as_str().unwrap();
        assert!(d.contains("from 127.0.0.1"), "{e}");
        assert!(!d.contains("203.0.113"), "an unbelieved header: {e}");
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_address_is_throttled_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_http(dir.path(), "[http]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let srv = server_with(dir.path(), cfg).await;
    let http = srv.http.unwrap();
    let attacker = [("x-forwarded-for", "198.51.100.7")];
    let mut statuses = Vec::new();
    for i in 0..20 {
        let a = attempt(
            http,
            &format!("guess{}", i % 5),
            "wrong-password",
            &attacker,
        )
        .await;
        statuses.push(a.status);
    }
    assert!(statuses[..19].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[19], 429, "the client address is throttled");
    // Another operator behind the same proxy is not: a wrong password is a plain 401.
    let other = [("x-forwarded-for", "192.0.2.44")];
    assert_eq!(
        attempt(http, "guess8", "wrong-password", &other)
            .await
            .status,
        401
    );
    // A client cannot choose its address: the right-most address not a trusted proxy is
    // the one the proxy saw.
    let spoof = [("x-forwarded-for", "192.0.2.44, 203.0.113.9")];
    assert_eq!(
        attempt(http, "guess9", "wrong-password", &spoof)
            .await
            .status,
        401
    );
    // The throttled client's right password logs in.
    let a = attempt(http, OPERATOR.0, OPERATOR.1, &attacker).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let log = audit_entries(http).await;
    let details = |action: &str| -> Vec<String> {
        log.iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["detail"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let failed = details("session.login_failed");
    assert_eq!(failed.len(), 22, "{failed:?}");
    assert_eq!(
        failed
            .iter()
            .filter(|d| d.contains("from 198.51.100.7"))
            .count(),
        20,
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|d| d.contains("from 192.0.2.44")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|d| d.contains("from 203.0.113.9")),
        "{failed:?}"
    );
    assert!(
        !failed.iter().any(|d| d.contains("127.0.0.1")),
        "{failed:?}"
    );
    assert!(
        details("session.login")
            .iter()
            .any(|d| d.contains("from 198.51.100.7")),
        "{log:?}"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn failed_login_names_are_neither_logged_nor_audited_in_clear() {
    // A user name field often holds a password typed one field too early.
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    for _ in 0..2 {
        let a = attempt(http, "hemligt-lösen-123", "x", &[]).await;
        assert_eq!(a.status, 401);
    }
    assert_eq!(
        attempt(http, OPERATOR.0, "wrong-password", &[])
            .await
            .status,
        401
    );
    let log = audit_entries(http).await;
    let failed: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "session.login_failed")
        .collect();
    assert_eq!(failed.len(), 3, "{log:?}");
    for e in &failed {
        let text = e.to_string();
        assert!(
            !text.contains("hemligt") && !text.contains(OPERATOR.0),
            "{text}"
        );
    }
    let detail = |i: usize| failed[i]["detail"].as_str().unwrap().to_string();
    assert!(detail(0).contains("unknown name"), "{}", detail(0));
    assert!(detail(2).contains("known name") && !detail(2).contains("unknown"));
    // The same name gives the same reference, so repeated tries show as such.
    let reference = |d: &str| d.rsplit_once('#').map(|(_, r)| r.to_string());
    assert!(reference(&detail(0)).is_some(), "{}", detail(0));
    assert_eq!(reference(&detail(0)), reference(&detail(1)));
    assert_ne!(reference(&detail(0)), reference(&detail(2)));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn cross_origin_state_changes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let csv = format!(
        "{}\n7777,,,,,,,,\n",
        vakt::registers::devices::CSV_HEADER_V1
    );
    let device_known = |c: &mut Client| {
        let mut c = c.clone();
        async move { c.get("/api/devices/7777").await.status }
    };
    assert_eq!(device_known(&mut admin).await, 404);

    // An admin's cookie and another site's page: refused, nothing imported.
    let mut foreign = admin.clone();
    foreign.extra_header("origin", "http://evil.example");
    let a = foreign
        .send(
            "POST",
            "/api/devices/import",
            Some(("text/csv", csv.clone())),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.json()["error"].as_str().unwrap().contains("origin"),
        "{}",
        a.body
    );
    assert_eq!(device_known(&mut admin).await, 404, "nothing imported");
    // Body-less POSTs are state changes too.
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "null"),
        ("origin", "https://evil.example"),
    ] {
        let mut c = admin.clone();
        c.extra_header(name, value);
        let a = c.send("POST", "/api/calls/next", None).await;
        assert_eq!(a.status, 403, "{name}: {value}: {}", a.body);
        assert!(a.json()["error"].is_string());
        let a = c.send("DELETE", "/api/session", None).await;
        assert_eq!(a.status, 403, "{name}: {value}: logout: {}", a.body);
    }
    // Logging in from another site's page is refused too.
    let a = attempt(
        http,
        OPERATOR.0,
        OPERATOR.1,
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    // The console's own page passes; so do clients that are not browsers (no header).
    let mut own = admin.clone();
    own.extra_header("origin", &format!("http://{http}"));
    own.extra_header("sec-fetch-site", "same-origin");
    assert_eq!(own.send("POST", "/api/calls/next", None).await.status, 204);
    assert_eq!(
        admin.send("POST", "/api/calls/next", None).await.status,
        204
    );

    // An import must say it is CSV (a form post or text/plain is a "simple request").
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let a = admin
            .send("POST", "/api/devices/import", Some((ct, csv.clone())))
            .await;
        assert_eq!(a.status, 415, "{ct}: {}", a.body);
        assert!(a.json()["error"].as_str().unwrap().contains("text/csv"));
        let a = admin
            .send(
                "POST",
                "/api/subscribers/import",
                Some((ct, subscribers_csv())),
            )
            .await;
        assert_eq!(a.status, 415, "{ct}: {}", a.body);
    }
    assert_eq!(device_known(&mut admin).await, 404, "nothing imported");
    let a = own
        .send(
            "POST",
            "/api/devices/import",
            Some(("text/csv; charset=utf-8", csv.clone())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(device_known(&mut admin).await, 200);
    srv.stop().await.unwrap();
}

/// Opens the live feed with `cookie` and reads its snapshot.
async fn live_feed(
    http: std::net::SocketAddr,
    cookie: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{http}/api/live"),
    )
    .unwrap();
    req.headers_mut()
        .insert("cookie", format!("vakt_session={cookie}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connects");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    ws
}

/// Asserts the feed ends soon: well before the 30 s it used to take.
async fn ends_soon<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, why: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ends_within(ws, 5, why).await
}

async fn ends_within<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, secs: u64, why: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("the live feed still runs {secs} s after {why}"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test]
async fn the_live_feed_ends_at_once_on_logout_disabling_and_a_role_change() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;

    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut ws = live_feed(http, op.cookie.as_deref().unwrap()).await;
    assert_eq!(op.send("DELETE", "/api/session", None).await.status, 204);
    ends_soon(&mut ws, "logout").await;

    let mut op2 = Client::login(http, OPERATOR2.0, OPERATOR2.1).await;
    let mut ws = live_feed(http, op2.cookie.as_deref().unwrap()).await;
    let a = admin
        .send("POST", &format!("/api/users/{}/disable", OPERATOR2.0), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    ends_soon(&mut ws, "the user was disabled").await;
    assert_eq!(op2.get("/api/session").await.status, 401);

    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut ws = live_feed(http, sup.cookie.as_deref().unwrap()).await;
    let a = admin
        .post(
            &format!("/api/users/{}/role", SUPERVISOR.0),
            json!({"role": "operator"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["role"], "operator");
    ends_soon(&mut ws, "the user was demoted").await;
    assert_eq!(
        sup.get("/api/session").await.status,
        401,
        "sessions carry the role"
    );
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    assert_eq!(sup.get("/api/session").await.json()["role"], "operator");
    assert_eq!(sup.get("/api/audit").await.status, 403);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_live_feed_ends_when_its_session_expires() {
    // A session that expires a few seconds after the server starts (sessions last at least
    // an hour when made by a login).
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), OPERATOR.0, Role::Operator, OPERATOR.1);
    let (token, hash) = vakt::store::new_token();
    let now = jiff::Timestamp::now();
    let expires_at = now + jiff::SignedDuration::from_secs(8);
    {
        let store = common::open_store(dir.path()).unwrap();
        store
            .put_session(
                &hash,
                &vakt::store::SessionRecord {
                    user: OPERATOR.0.into(),
                    role: Role::Operator,
                    created_at: now,
                    expires_at,
                },
            )
            .unwrap();
    }
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut ws = live_feed(http, &token).await;
    assert!(
        jiff::Timestamp::now() < expires_at,
        "the server took too long to start"
    );
    ends_within(&mut ws, 20, "the session expired").await;
    assert!(
        jiff::Timestamp::now() >= expires_at,
        "not before it expired"
    );
    let mut c = Client::new(http);
    c.cookie = Some(token);
    assert_eq!(c.get("/api/session").await.status, 401);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn admins_disable_enable_and_remove_users() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    assert_eq!(sup.get("/api/users").await.status, 403);
    assert_eq!(
        sup.send("POST", &format!("/api/users/{}/disable", OPERATOR.0), None)
            .await
            .status,
        403
    );
    let users = admin.get("/api/users").await;
    assert_eq!(users.status, 200, "{}", users.body);
    let names: Vec<String> = users
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    let mut all = [ADMIN.0, OPERATOR.0, OPERATOR2.0, SUPERVISOR.0];
    all.sort();
    assert_eq!(names, all, "every user, by name");
    assert_eq!(users.json()[0]["disabled"], false);
    assert!(!users.body.contains("argon2"), "{}", users.body);

    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let a = admin
        .send("POST", &format!("/api/users/{}/disable", OPERATOR.0), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["disabled"], true);
    // Its session ends at once, and the right password no longer logs in.
    assert_eq!(op.get("/api/calls").await.status, 401);
    assert_eq!(attempt(http, OPERATOR.0, OPERATOR.1, &[]).await.status, 401);
    let a = admin
        .send("POST", &format!("/api/users/{}/enable", OPERATOR.0), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["disabled"], false);
    assert_eq!(attempt(http, OPERATOR.0, OPERATOR.1, &[]).await.status, 200);

    let a = admin
        .send("DELETE", &format!("/api/users/{}", OPERATOR.0), None)
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(attempt(http, OPERATOR.0, OPERATOR.1, &[]).await.status, 401);
    assert!(!admin.get("/api/users").await.body.contains(OPERATOR.0));
    let a = admin.send("DELETE", "/api/users/nobody", None).await;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = admin
        .post("/api/users/petra/role", json!({"role": "root"}))
        .await;
    assert_eq!(a.status, 422, "{}", a.body);

    // The centre keeps an administrator.
    for (method, path, body) in [
        ("POST", format!("/api/users/{}/disable", ADMIN.0), None),
        ("DELETE", format!("/api/users/{}", ADMIN.0), None),
        (
            "POST",
            format!("/api/users/{}/role", ADMIN.0),
            Some(("application/json", json!({"role": "operator"}).to_string())),
        ),
    ] {
        let a = admin.send(method, &path, body).await;
        assert_eq!(a.status, 409, "{method} {path}: {}", a.body);
    }
    assert_eq!(admin.get("/api/session").await.status, 200);

    let log = audit_entries(http).await;
    for action in ["user.disable", "user.enable", "user.remove"] {
        assert!(
            log.iter().any(|e| e["action"] == action
                && e["user"] == ADMIN.0
                && e["detail"].as_str().unwrap_or("").contains(OPERATOR.0)),
            "audit lacks {action}: {log:?}"
        );
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn two_session_cookies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let good = op.cookie.clone().unwrap();
    let other = "00".repeat(32);
    // In one header (the valid one last), or in two header lines.
    let mut c = Client::new(http);
    c.extra_header(
        "cookie",
        &format!("vakt_session={other}; vakt_session={good}"),
    );
    let a = c.get("/api/session").await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.json()["error"].is_string());
    let mut c = Client::new(http);
    c.extra_header("cookie", &format!("vakt_session={good}"));
    c.extra_header("cookie", &format!("vakt_session={good}"));
    assert_eq!(c.get("/api/session").await.status, 401);
    // One is fine, beside other cookies.
    let mut c = Client::new(http);
    c.extra_header("cookie", &format!("theme=dark; vakt_session={good}"));
    assert_eq!(c.get("/api/session").await.status, 200);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn api_answers_are_not_stored_and_every_rejection_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    import_subscribers(http).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    for path in ["/api/subscribers/anna", "/api/calls", "/api/session"] {
        let a = op.get(path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert_eq!(a.header("cache-control"), Some("no-store"), "{path}");
    }
    let a = Client::new(http).get("/api/calls").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    // Rejections by the framework (a bad path parameter, a method, a body) are JSON too.
    for (method, path, status) in [
        ("GET", "/api/calls/abc", 400),
        ("POST", "/api/calls/abc/claim", 400),
        ("GET", "/api/work_orders/-1", 400),
        ("GET", "/api/incidents/x", 400),
        ("PATCH", "/api/calls", 405),
        ("GET", "/api/nothing-here", 404),
    ] {
        let a = op.send(method, path, None).await;
        assert_eq!(a.status, status, "{method} {path}: {}", a.body);
        assert!(
            a.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{method} {path}: {:?}",
            a.headers
        );
        assert!(a.json()["error"].is_string(), "{method} {path}: {}", a.body);
        assert_eq!(
            a.header("cache-control"),
            Some("no-store"),
            "{method} {path}"
        );
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_lock_route_takes_the_bearer_scheme_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let token = vakt::cli::issue_integration_token(
        common::store_at(dir.path()),
        "phoniro",
        jiff::Timestamp::now(),
    )
    .unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let mut c = Client::new(http);
        c.extra_header("authorization", &format!("{scheme} {token}"));
        let a = c.post("/api/locks/events", json!({"events": []})).await;
        assert_eq!(a.status, 200, "{scheme}: {}", a.body);
    }
    for bad in [
        format!("Basic {token}"),
        format!("Bearer x{token}"),
        "Bearer".into(),
    ] {
        let mut c = Client::new(http);
        c.extra_header("authorization", &bad);
        let a = c.post("/api/locks/events", json!({"events": []})).await;
        assert_eq!(a.status, 401, "{bad}: {}", a.body);
    }
    srv.stop().await.unwrap();
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_complete_and_every_ref_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let doc = Client::new(srv.http.unwrap())
        .get("/api/openapi.json")
        .await
        .json();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r}: only local references"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let mut problems = Vec::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            let login = path == "/api/session" && method == "post";
            let changes = matches!(method.as_str(), "post" | "put" | "patch" | "delete");
            let body = &op["requestBody"]["content"];
            let mut need = Vec::new();
            if !login {
                need.push("401");
            }
            if changes {
                need.push("403");
            }
            if path.contains('{') {
                need.push("400");
            }
            if body.get("application/json").is_some() {
                need.extend(["400", "415", "422"]);
            }
            if body.get("text/csv").is_some() {
                need.push("415");
            }
            if path.starts_with("/api/calls/{id}/")
                && ["claim", "release", "notes", "phone", "close", "fault"]
                    .iter()
                    .any(|a| path.ends_with(a))
            {
                need.push("410");
            }
            for s in need {
                if !has(s) {
                    problems.push(format!("{method} {path} lacks {s}"));
                }
            }
            for (status, r) in responses {
                let error = status.starts_with('4') || status.starts_with('5');
                let schema = &r["content"]["application/json"]["schema"]["$ref"];
                if error && schema != "#/components/schemas/ErrorBody" {
                    problems.push(format!("{method} {path} {status} is not an ErrorBody"));
                }
            }
        }
    }
    assert!(operations >= 40, "{operations} operations");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for (path, method) in [
        ("/api/users", "get"),
        ("/api/users/{name}", "delete"),
        ("/api/users/{name}/disable", "post"),
        ("/api/users/{name}/enable", "post"),
        ("/api/users/{name}/role", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn each_user_reads_the_console_in_their_language_and_the_centres_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_http(
        dir.path(),
        "[http]\nlanguage = \"nb\"\ntime_zone = \"Europe/Oslo\"\n",
    );
    let srv = server_with(dir.path(), cfg).await;
    let http = srv.http.unwrap();

    // The page's language is the centre's until a user logs in.
    let (status, page) = http_get(http, "/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<html lang=\"nb\">"),
        "{}",
        &page[..200.min(page.len())]
    );
    // The catalogues are served; a language the console does not have is not.
    let mut anon = Client::new(http);
    let sv = anon.get("/assets/i18n/sv.json").await;
    assert_eq!(sv.status, 200);
    assert_eq!(sv.json()["queue.take"], "Ta emot");
    assert_eq!(
        anon.get("/assets/i18n/nb.json").await.json()["kind.personal_alarm"],
        "Trygghetsalarm"
    );
    assert_eq!(anon.get("/assets/i18n/fi.json").await.status, 404);

    // A user who has not chosen reads the centre's language; whoami gives the zone.
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let who = op.get("/api/session").await.json();
    assert_eq!(who["language"], "nb");
    assert_eq!(who["centre_language"], "nb");
    assert_eq!(who["time_zone"], "Europe/Oslo");

    // The user changes their own: kept, audited, the session stays.
    let a = op
        .send(
            "PUT",
            "/api/me/language",
            Some(("application/json", r#"{"language":"sv"}"#.into())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["language"], "sv");
    assert_eq!(a.json()["centre_language"], "nb");
    assert_eq!(op.get("/api/session").await.json()["language"], "sv");
    let again = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    drop(again);
    // Another user still has the centre's.
    let mut op2 = Client::login(http, OPERATOR2.0, OPERATOR2.1).await;
    assert_eq!(op2.get("/api/session").await.json()["language"], "nb");
    // The login answer carries it too.
    let mut fresh = Client::new(http);
    let login = fresh
        .post(
            "/api/session",
            serde_json::json!({"username": OPERATOR.0, "password": OPERATOR.1}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.json()["language"], "sv");

    // A language the console does not have is refused; null goes back to the centre's.
    let bad = op
        .send(
            "PUT",
            "/api/me/language",
            Some(("application/json", r#"{"language":"fi"}"#.into())),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(op.get("/api/session").await.json()["language"], "sv");
    let back = op
        .send(
            "PUT",
            "/api/me/language",
            Some(("application/json", r#"{"language":null}"#.into())),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(op.get("/api/session").await.json()["language"], "nb");

    let changes: Vec<Value> = audit_entries(http)
        .await
        .into_iter()
        .filter(|e| e["action"] == "user.language")
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.iter().all(|e| e["user"] == OPERATOR.0));
    let details: Vec<&str> = changes
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.contains(&"centre's -> sv") && details.contains(&"sv -> centre's"),
        "{details:?}"
    );
    srv.stop().await.unwrap();
}
