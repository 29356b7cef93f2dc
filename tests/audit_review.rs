//! The access log's review and the extract for one person against a real server on
//! 127.0.0.1:0 (and on PostgreSQL in CI): the filters by person, user, Call, action and local
//! days, with pages; the flags on a fixture with known patterns (a burst of 31 people in five
//! minutes, the same number at a slow pace, a card opened in a Call and one outside any);
//! and the extract of one person, which lists exactly the accesses made in the test to that
//! person, in the person's language, and none of another person's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::*;
use serde_json::Value;
use vakt::model::{AuditEntry, Role};

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const SUPERVISOR: (&str, &str) = ("siv", "siv-password-3");

/// anna (Swedish) has device 1234, bertil (Norwegian) 5678.
fn subscribers_csv() -> String {
    format!(
        "{h}\nanna,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Centrum,070-111 22 33,,,,,,,,,,,,,,,,,,sv\n\
         bertil,Bertil Ås,19400101-1234,Lillgatan 2,123 46,Vaktby,Norr,070-222 33 44,,,,,,,,,,,,,,,,,,nb\n",
        h = vakt::registers::subscribers::CSV_HEADER
    )
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn entry(at_: jiff::Timestamp, user: &str, action: &str, person: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: at_,
        user: user.into(),
        action: action.into(),
        call: None,
        subscriber: Some(person.into()),
        detail: String::new(),
    }
}

/// The fixture, written before the server starts: on 3 March 2025 (Stockholm) olle opens 31
/// people's records within five minutes from 09:00; on 4 March siv opens 31 people's, one
/// every 20 minutes from 08:00.
fn write_fixture(dir: &std::path::Path) {
    let store = open_store(dir).unwrap();
    let start = at("2025-03-03T08:00:00Z");
    for i in 0..31i64 {
        let t = start
            .checked_add(jiff::SignedDuration::from_secs(i * 9))
            .unwrap();
        store
            .audit(entry(t, "olle", "life.view", &format!("P-{i}")))
            .unwrap();
    }
    let start = at("2025-03-04T07:00:00Z");
    for i in 0..31i64 {
        let t = start
            .checked_add(jiff::SignedDuration::from_mins(i * 20))
            .unwrap();
        store
            .audit(entry(t, "siv", "life.view", &format!("Q-{i}")))
            .unwrap();
    }
}

async fn server(dir: &std::path::Path) -> vakt::server::Running {
    vakt::cli::import_devices(store_at(dir), devices_csv().as_bytes()).unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    write_fixture(dir);
    let srv = start_with(test_config(dir)).await;
    let mut admin = Client::login(srv.http.unwrap(), ADMIN.0, ADMIN.1).await;
    let a = admin
        .send(
            "POST",
            "/api/subscribers/import",
            Some(("text/csv", subscribers_csv())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    srv
}

async fn review(c: &mut Client, query: &str) -> Value {
    let a = c.get(&format!("/api/audit/review?{query}")).await;
    assert_eq!(a.status, 200, "{query}: {}", a.body);
    a.json()
}

fn entries(page: &Value) -> &Vec<Value> {
    page["entries"].as_array().unwrap()
}

fn has_flag(e: &Value, flag: &str) -> bool {
    e["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f.as_str() == Some(flag))
}

/// The rows of a CSV extract after its header, each a list of cells.
fn csv_rows(body: &str) -> Vec<Vec<String>> {
    let body = body.strip_prefix('\u{feff}').expect("a BOM");
    let mut lines = body.split("\r\n").filter(|l| !l.is_empty());
    let header = lines.next().expect("a header");
    assert_eq!(header.split(';').count(), 5, "{header}");
    lines
        .map(|l| l.split(';').map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn filters_flags_and_the_extract_of_exactly_one_persons_accesses() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;

    // Supervisors only.
    assert_eq!(op.get("/api/audit/review").await.status, 403);
    assert_eq!(op.get("/api/subscribers/anna/accesses").await.status, 403);

    // anna alarms; olle takes the Call and opens her card in it. Then he opens bertil's,
    // who has no Call.
    let reply = tcp_roundtrip(
        srv.dc09_tcp.unwrap(),
        &plain("ADM-CID", 1, "1234", "#1234|1101 01 001"),
    )
    .await;
    assert_eq!(token_of(&reply), "ACK");
    let call = first_open_call(&op, std::time::Duration::from_secs(10)).await;
    let a = op
        .send("POST", &format!("/api/calls/{call}/claim"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(op.get("/api/subscribers/anna").await.status, 200);
    assert_eq!(op.get("/api/subscribers/bertil").await.status, 200);

    // By person: bertil's one access, flagged as outside any Call, with his name and olle's
    // role. Reviewing one person's accesses is audited.
    let page = review(&mut sup, "subscriber=bertil").await;
    let found = entries(&page);
    assert_eq!(found.len(), 1, "{page}");
    assert_eq!(found[0]["user"], "olle");
    assert_eq!(found[0]["action"], "subscriber.view");
    assert_eq!(found[0]["subscriber_name"], "Bertil Ås");
    assert_eq!(found[0]["role"], "operator");
    assert!(has_flag(&found[0], "outside_call"), "{page}");
    assert!(page["next_before"].is_null());

    // anna's card was opened in her Call: not flagged.
    let page = review(&mut sup, "subscriber=anna").await;
    let found = entries(&page);
    let actions: Vec<&str> = found
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["subscriber.view", "call.claim"], "{page}");
    assert!(
        found
            .iter()
            .all(|e| e["flags"].as_array().unwrap().is_empty()),
        "{page}"
    );

    // By Call.
    let page = review(&mut sup, &format!("call={call}")).await;
    let actions: Vec<&str> = entries(&page)
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["call.claim"], "{page}");

    // By local day: 3 March holds olle's burst, all 31 flagged; 4 March siv's slow round,
    // none of it flagged as many.
    let page = review(&mut sup, "from=2025-03-03&to=2025-03-03").await;
    let found = entries(&page);
    assert_eq!(found.len(), 31, "{page}");
    assert!(found.iter().all(|e| e["user"] == "olle"));
    assert!(found.iter().all(|e| has_flag(e, "many_records")), "{page}");
    let page = review(&mut sup, "from=2025-03-04&to=2025-03-04").await;
    let found = entries(&page);
    assert_eq!(found.len(), 31, "{page}");
    assert!(found.iter().all(|e| e["user"] == "siv"));
    assert!(!found.iter().any(|e| has_flag(e, "many_records")), "{page}");
    let page = review(&mut sup, "from=2025-03-03&to=2025-03-04&user=siv").await;
    assert_eq!(entries(&page).len(), 31);

    // By user and action, a page at a time: olle's 31 life views of the fixture.
    let first = review(&mut sup, "user=olle&action=life.&limit=20").await;
    assert_eq!(entries(&first).len(), 20);
    let before = first["next_before"].as_u64().expect("more to come");
    let second = review(
        &mut sup,
        &format!("user=olle&action=life.&limit=20&before={before}"),
    )
    .await;
    assert_eq!(entries(&second).len(), 11);
    assert!(second["next_before"].is_null());
    let mut seqs: Vec<u64> = entries(&first)
        .iter()
        .chain(entries(&second))
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    seqs.dedup();
    assert_eq!(seqs.len(), 31);
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let page = review(&mut sup, "user=olle&action=subscriber.").await;
    assert_eq!(entries(&page).len(), 2);

    // Bad filters.
    for q in [
        "from=3%20March",
        "from=2025-03-05&to=2025-03-04",
        "limit=0",
        "nonsense=1",
    ] {
        let a = sup.get(&format!("/api/audit/review?{q}")).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
    }

    // The extract of anna: exactly the three accesses made to her (olle's two, siv's review
    // of them), in Swedish, and none of bertil's or the fixture's.
    let a = sup.get("/api/subscribers/anna/accesses?format=csv").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        a.header("content-disposition")
            .unwrap()
            .contains("vakt-accesses-anna-"),
        "{:?}",
        a.headers
    );
    let rows = csv_rows(&a.body);
    let what: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str(), r[3].as_str(), r[4].as_str()))
        .collect();
    let call_no = call.to_string();
    assert_eq!(
        what,
        [
            ("olle", "Operatör", "Tog larmet", call_no.as_str()),
            ("olle", "Operatör", "Visade larmtagaren", ""),
            (
                "siv",
                "Arbetsledare",
                "Granskade loggen för en larmtagare",
                ""
            ),
        ],
        "{}",
        a.body
    );
    assert!(!a.body.contains("bertil") && !a.body.contains("P-"));

    // The extract is audited, and the next one lists it.
    let log = sup.get("/api/audit?limit=1000").await.json();
    let extracts: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "audit.extract")
        .collect();
    assert_eq!(extracts.len(), 1, "{log}");
    assert_eq!(extracts[0]["subscriber"], "anna");
    assert_eq!(extracts[0]["user"], "siv");
    let again = csv_rows(&sup.get("/api/subscribers/anna/accesses").await.body);
    assert_eq!(again.len(), 4);
    assert_eq!(
        (
            again[3][1].as_str(),
            again[3][2].as_str(),
            again[3][3].as_str()
        ),
        (
            "siv",
            "Arbetsledare",
            "Tog ut ett registerutdrag över åtkomsten till en larmtagare"
        )
    );

    // bertil's, in Norwegian (his card's language), as a page to print: olle's view and
    // siv's review of his accesses, nothing of anna's.
    let a = sup
        .get("/api/subscribers/bertil/accesses?format=html")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    let html = &a.body;
    assert!(html.contains("<html lang=\"nb\">"), "{html}");
    assert!(html.contains("Vaktby larmcentral"), "{html}");
    assert!(html.contains("Bertil Ås (bertil)"), "{html}");
    assert_eq!(html.matches("<tr><td>").count(), 2, "{html}");
    assert!(html.contains("<td>olle</td><td>Operatør</td>"), "{html}");
    assert!(html.contains("<td>siv</td><td>Vaktleder</td>"), "{html}");
    assert!(!html.contains("Åsa") && !html.contains(&format!("<td>{call}</td>")));
    // In another language when asked.
    let a = sup
        .get("/api/subscribers/bertil/accesses?format=html&language=en")
        .await;
    assert!(
        a.body.contains("<td>olle</td><td>Operator</td>"),
        "{}",
        a.body
    );

    // A period: nothing of today's before today.
    let rows = csv_rows(
        &sup.get("/api/subscribers/anna/accesses?from=2025-03-01&to=2025-03-31")
            .await
            .body,
    );
    assert!(rows.is_empty(), "{rows:?}");
    // Nobody by that id.
    assert_eq!(
        sup.get("/api/subscribers/nobody/accesses").await.status,
        404
    );
    assert_eq!(
        sup.get("/api/subscribers/anna/accesses?format=pdf")
            .await
            .status,
        400
    );

    srv.shutdown.cancel();
    srv.done.await.unwrap().unwrap();
}
