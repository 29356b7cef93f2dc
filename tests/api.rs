//! The console's HTTP API against a real server on 127.0.0.1:0: sessions and roles, the flow
//! alarm -> Call -> claim -> note -> close, the live WebSocket, and a restart with open Calls.

mod common;

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
        vakt::subscribers::CSV_HEADER
    )
}

async fn server(dir: &std::path::Path) -> vakt::server::Running {
    vakt::cli::import_devices(dir, devices_csv().as_bytes()).unwrap();
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
    assert_eq!(op.get("/api/subscribers?q=a").await.status, 403);

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
    assert_eq!(a.status, 400, "{}", a.body);
    let a = op.get("/api/subscribers/anna").await.json();
    assert_eq!(a["name"], "Åsa Öberg");

    // Logging out ends the session.
    assert_eq!(op.send("DELETE", "/api/session", None).await.status, 204);
    assert_eq!(op.get("/api/session").await.status, 401);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn failed_logins_are_rate_limited_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut c = Client::new(http);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let a = c
            .post(
                "/api/session",
                json!({"username": OPERATOR.0, "password": "wrong-password"}),
            )
            .await;
        statuses.push(a.status);
    }
    assert_eq!(statuses[0], 401);
    assert!(statuses.contains(&429), "{statuses:?}");
    // While locked out, even the right password is refused.
    let a = c
        .post(
            "/api/session",
            json!({"username": OPERATOR.0, "password": OPERATOR.1}),
        )
        .await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.header("retry-after").is_some());
    let (_, metrics) = http_get(http, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vakt_logins_total{result=\"bad_credentials\"}")),
        "{metrics}"
    );
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
    assert_eq!(closed["outcome"], "handled_by_phone");
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
    let (_, metrics) = http_get(http, "/metrics").await;
    for m in [
        "vakt_calls_opened_total{level=\"1\"} 1",
        "vakt_alarms_merged_total 1",
        "vakt_call_answer_seconds_count 1",
    ] {
        assert!(metrics.contains(m), "{m} not in metrics");
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
