//! The registers in the console against a real server on 127.0.0.1:0: the subscriber and
//! device lists with their search, paging and masking, the audit of a search, edits checked
//! against the directory (422 with the choices), the import's warnings, role limits, and the
//! live feed's word that a subscriber changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::*;
use serde_json::{Value, json};
use vakt::model::Role;
use vakt::registers::directory::{DEMO_AREAS, DEMO_PATROLS, DEMO_PROVIDERS, DEMO_ROUTES};

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const SUPERVISOR: (&str, &str) = ("siv", "siv-password-3");

/// Subscribers: anna and bertil (the devices 1234 and 5678), rene (written without the
/// century, an accented name), all with the demo directory's providers and areas.
fn subscribers_csv() -> String {
    format!(
        "{}\n\
         anna,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Centrum,+46 70 111 22 33,Hemtjänst Centrum,2,,,4711#,,,,Karin Öberg,dotter,070-222 33 44,,,,,,,sv\n\
         bertil,Bertil Ärlig,19300101-9811,Kyrkbacken 2,123 46,Vaktby,Norr,070-333 44 55,Hemtjänst Norr,1,,,,,,,,,,,,,,,,sv\n\
         rene,René Lövgren,380101-1239,Åvägen 9,123 47,Vaktby,Söder,,Attendo Söder,0,,,,,,,,,,,,,,,,sv\n",
        vakt::registers::subscribers::CSV_HEADER
    )
}

/// Devices: 1234 (anna, a pendant), 5678 (bertil, a smoke detector with its own number).
fn devices_csv() -> String {
    format!(
        "{}\n1234,,,,,anna,90,Telia,Centrum,pendant,,,\n5678,,,,,bertil,90,Tele2,Norr,smoke_detector,,,+46 73 999 88 77\n",
        vakt::registers::devices::CSV_HEADER
    )
}

/// A server with the devices, the users and, when `directory`, the demo directory.
async fn server(dir: &std::path::Path, directory: bool) -> vakt::server::Running {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes()).unwrap();
    if directory {
        vakt::cli::import_directory(
            common::store_at(dir),
            DEMO_PROVIDERS.as_bytes(),
            DEMO_AREAS.as_bytes(),
            DEMO_PATROLS.as_bytes(),
            DEMO_ROUTES.as_bytes(),
            jiff::Timestamp::now(),
        )
        .unwrap();
    }
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    start_with(test_config(dir)).await
}

async fn import(http: std::net::SocketAddr, csv: String) -> Value {
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let a = admin
        .send("POST", "/api/subscribers/import", Some(("text/csv", csv)))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

/// The ids a subscriber search finds.
async fn found(c: &mut Client, q: &str) -> Vec<String> {
    let a = c.get(&format!("/api/subscribers?q={}", encode(q))).await;
    assert_eq!(a.status, 200, "{q}: {}", a.body);
    let v = a.json();
    let ids: Vec<String> = v["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(v["total"], ids.len(), "{q}: one page holds them all");
    ids
}

/// Percent-encodes a query value.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn put(c: &mut Client, card: &Value) -> common::Answer {
    let id = card["id"].as_str().unwrap().to_owned();
    c.send(
        "PUT",
        &format!("/api/subscribers/{id}"),
        Some(("application/json", card.to_string())),
    )
    .await
}

#[tokio::test]
async fn subscribers_are_found_by_each_field_in_any_case_and_form() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), true).await;
    let http = srv.http.unwrap();
    import(http, subscribers_csv()).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;

    // Name, any case, with or without accents.
    for q in ["Åsa", "åsa", "ASA OBERG", "oberg"] {
        assert_eq!(found(&mut op, q).await, ["anna"], "{q}");
    }
    for q in ["rene", "RENÉ", "lovgren"] {
        assert_eq!(found(&mut op, q).await, ["rene"], "{q}");
    }
    // Personal number, in every form; never by the last four alone.
    for q in ["19380512-9802", "380512-9802", "3805129802", "19380512"] {
        assert_eq!(found(&mut op, q).await, ["anna"], "{q}");
    }
    assert_eq!(found(&mut op, "19380101-1239").await, ["rene"]);
    assert!(found(&mut op, "9802").await.is_empty());
    // Address, postcode, account of a device, phone (of the person, of a unit).
    assert_eq!(found(&mut op, "kyrkbacken").await, ["bertil"]);
    assert_eq!(found(&mut op, "avagen").await, ["rene"]);
    assert_eq!(found(&mut op, "12346").await, ["bertil"]);
    assert_eq!(found(&mut op, "5678").await, ["bertil"]);
    assert_eq!(found(&mut op, "070-111 22 33").await, ["anna"]);
    assert_eq!(found(&mut op, "0046701112233").await, ["anna"]);
    assert_eq!(found(&mut op, "073-999 88 77").await, ["bertil"]);
    // Everyone, by name.
    assert_eq!(found(&mut op, "").await, ["anna", "bertil", "rene"]);

    // The list masks personal numbers; the card shows it whole.
    let a = op.get("/api/subscribers?q=anna").await;
    let line = &a.json()["subscribers"][0];
    assert_eq!(line["personal_number"], "19380512-****");
    assert_eq!(line["accounts"], json!(["1234"]));
    assert_eq!(line["care_provider"], "Hemtjänst Centrum");
    assert!(!a.body.contains("9802"), "{}", a.body);
    assert!(!a.body.contains("door_code") && !a.body.contains("4711"));
    let card = op.get("/api/subscribers/anna").await.json();
    assert_eq!(card["personal_number"], "19380512-9802");

    // Searches are audited with the count; a query that could be a personal number is not
    // written down.
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let log = sup.get("/api/audit?limit=1000").await.json();
    let searches: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "subscriber.search" && e["user"] == OPERATOR.0)
        .collect();
    assert!(searches.len() >= 20, "{searches:?}");
    let details: Vec<&str> = searches
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(details.contains(&"\"kyrkbacken\": 1 found"), "{details:?}");
    assert!(details.contains(&"all: 3 found"), "{details:?}");
    assert!(
        details.iter().all(|d| !d.contains("380512")
            && !d.contains("9802")
            && !d.contains("111 22 33")
            && !d.contains("5678")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("1 found (the query is not recorded")),
        "{details:?}"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_lists_are_paged_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), false).await;
    let http = srv.http.unwrap();
    let mut csv = format!("{}\n", vakt::registers::subscribers::CSV_HEADER);
    for i in 0..25 {
        csv.push_str(&format!(
            "p{i:02},Person {i:02},19400101-{i:04},,,,,,,,,,,,,,,,,,,,,,,sv\n"
        ));
    }
    import(http, csv).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let p = op
        .get("/api/subscribers?q=person&limit=10&offset=20")
        .await
        .json();
    assert_eq!(p["total"], 25);
    assert_eq!(
        (p["offset"].as_u64(), p["limit"].as_u64()),
        (Some(20), Some(10))
    );
    let ids: Vec<&str> = p["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p20", "p21", "p22", "p23", "p24"]);
    let p = op.get("/api/subscribers").await.json();
    assert_eq!(
        (p["total"].as_u64(), p["limit"].as_u64()),
        (Some(25), Some(50))
    );
    let p = op.get("/api/subscribers?offset=100").await.json();
    assert_eq!(p["total"], 25);
    assert!(p["subscribers"].as_array().unwrap().is_empty());
    for bad in [
        "/api/subscribers?limit=0",
        "/api/subscribers?limit=201",
        "/api/devices?limit=1000",
        "/api/subscribers?limit=-1",
        "/api/subscribers?sort=name",
    ] {
        let a = op.get(bad).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    let long = "a".repeat(101);
    let a = op.get(&format!("/api/subscribers?q={long}")).await;
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"].as_str().unwrap().contains("100"),
        "{}",
        a.body
    );
    assert_eq!(op.get("/api/subscribers?limit=200").await.status, 200);
    srv.stop().await.unwrap();
}

/// The accounts a device search finds.
async fn devices_found(c: &mut Client, q: &str) -> Vec<String> {
    let a = c.get(&format!("/api/devices?q={}", encode(q))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["account"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn devices_are_found_by_account_subscriber_type_and_phone() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), false).await;
    let http = srv.http.unwrap();
    import(http, subscribers_csv()).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    assert_eq!(devices_found(&mut op, "").await, ["1234", "5678"]);
    assert_eq!(devices_found(&mut op, "5678").await, ["5678"]);
    assert_eq!(devices_found(&mut op, "bertil").await, ["5678"]);
    assert_eq!(devices_found(&mut op, "asa oberg").await, ["1234"]);
    assert_eq!(devices_found(&mut op, "smoke detector").await, ["5678"]);
    assert_eq!(devices_found(&mut op, "PENDANT").await, ["1234"]);
    assert_eq!(devices_found(&mut op, "+46739998877").await, ["5678"]);
    assert!(devices_found(&mut op, "gas").await.is_empty());
    let a = op.get("/api/devices?q=5678").await;
    let d = &a.json()["devices"][0];
    assert_eq!(d["subscriber_name"], "Bertil Ärlig");
    assert_eq!(d["device_type"], "smoke_detector");
    assert_eq!(d["phone"], "+46739998877", "as the import normalised it");
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let log = sup.get("/api/audit?limit=100").await.json();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "device.search" && e["detail"] == "\"bertil\": 1 found"),
        "{log}"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn an_edit_must_name_a_provider_and_area_of_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), true).await;
    let http = srv.http.unwrap();
    import(http, subscribers_csv()).await;
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;

    let choices = sup.get("/api/registers/choices").await.json();
    let names = |k: &str| -> Vec<String> {
        choices[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(names("care_providers").contains(&"Hemtjänst Norr".to_owned()));
    assert_eq!(names("areas"), ["Centrum", "Norr", "Söder", "Väster"]);

    // A typo in the provider: 422, one message naming the field and the choices.
    let mut card = sup.get("/api/subscribers/anna").await.json();
    card["care_provider"] = json!("Hemtjanst Centrun");
    let a = put(&mut sup, &card).await;
    assert_eq!(a.status, 422, "{}", a.body);
    let e = a.json();
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.starts_with("care_provider \"Hemtjanst Centrun\" is not a care provider in the directory; choose one of: "),
        "{msg}"
    );
    assert!(msg.contains("Hemtjänst Centrum, Hemtjänst Norr"), "{msg}");
    assert_eq!(e["problems"].as_array().unwrap().len(), 1);
    assert_eq!(
        sup.get("/api/subscribers/anna").await.json()["care_provider"],
        "Hemtjänst Centrum",
        "nothing changed"
    );

    // Two wrong fields: one message each, each naming its field.
    card["area"] = json!("Sentrum");
    card["name"] = json!("");
    let e = put(&mut sup, &card).await.json();
    let problems: Vec<&str> = e["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0], "name is empty");
    // The same, each with its field, code and values, for the console to word.
    let details: Vec<(&str, &str)> = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["field"].as_str().unwrap(), d["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        details,
        [
            ("name", "subscriber.name_empty"),
            ("care_provider", "directory.unknown_provider"),
            ("area", "directory.unknown_area")
        ]
    );
    assert_eq!(e["details"][2]["params"]["value"], "\"Sentrum\"");
    assert_eq!(
        e["details"][2]["params"]["choices"],
        "Centrum, Norr, Söder, Väster"
    );
    assert!(problems[1].starts_with("care_provider "), "{problems:?}");
    assert!(
        problems[2].starts_with("area \"Sentrum\" is not an area in the directory; choose one of: Centrum, Norr, Söder, Väster"),
        "{problems:?}"
    );
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("3 fields to correct")
    );

    // From the directory (by name or by id): saved.
    card["name"] = json!("Åsa Öberg");
    card["care_provider"] = json!("Hemtjänst Norr");
    card["area"] = json!("norr");
    let a = put(&mut sup, &card).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["care_provider"], "Hemtjänst Norr");

    // The import warns of unknown providers and areas, by subscriber, and imports.
    let csv = subscribers_csv().replace("Attendo Söder", "Attendo Sydost");
    let done = import(http, csv).await;
    let w = done["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].as_str().unwrap().starts_with(
            "subscriber rene: care_provider \"Attendo Sydost\" is not a care provider"
        ),
        "{w:?}"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_directory_provider_and_area_are_free_text() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), false).await;
    let http = srv.http.unwrap();
    let done = import(http, subscribers_csv()).await;
    assert!(done.get("warnings").is_none(), "{done}");
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let choices = sup.get("/api/registers/choices").await.json();
    assert_eq!(choices, json!({"care_providers": [], "areas": []}));
    let mut card = sup.get("/api/subscribers/anna").await.json();
    card["care_provider"] = json!("Någon annan");
    card["area"] = json!("Ytterby");
    let a = put(&mut sup, &card).await;
    assert_eq!(a.status, 200, "{}", a.body);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn operators_search_and_read_but_only_supervisors_edit() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), true).await;
    let http = srv.http.unwrap();
    import(http, subscribers_csv()).await;
    let mut anon = Client::new(http);
    for path in ["/api/subscribers", "/api/devices", "/api/registers/choices"] {
        assert_eq!(anon.get(path).await.status, 401, "{path}");
    }
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    assert_eq!(op.get("/api/subscribers?q=asa").await.status, 200);
    assert_eq!(op.get("/api/devices?q=1234").await.status, 200);
    assert_eq!(op.get("/api/registers/choices").await.status, 200);
    let mut card = op.get("/api/subscribers/anna").await.json();
    card["care_provider"] = json!("Hemtjänst Norr");
    let a = put(&mut op, &card).await;
    assert_eq!(a.status, 403, "{}", a.body);
    // The list masks for supervisors too.
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let a = sup.get("/api/subscribers?q=bertil").await;
    assert_eq!(
        a.json()["subscribers"][0]["personal_number"],
        "19300101-****"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn an_edit_tells_every_console_to_load_the_card_again() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), true).await;
    let http = srv.http.unwrap();
    import(http, subscribers_csv()).await;
    let op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut live = common::Live::connect(&op).await;
    assert_eq!(live.next().await["type"], "snapshot");

    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut card = sup.get("/api/subscribers/bertil").await.json();
    card["care_provider"] = json!("Hemtjänst Centrum");
    assert_eq!(put(&mut sup, &card).await.status, 200);
    assert_eq!(
        live.next_of("subscriber").await,
        json!({"type": "subscriber", "id": "bertil"})
    );
    // A refused edit says nothing; an import says "any".
    card["care_provider"] = json!("Nowhere");
    assert_eq!(put(&mut sup, &card).await.status, 422);
    import(http, subscribers_csv()).await;
    assert_eq!(
        live.next_of("subscriber").await,
        json!({"type": "subscriber", "id": null})
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_describes_the_registers() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), false).await;
    let doc = Client::new(srv.http.unwrap())
        .get("/api/openapi.json")
        .await
        .json();
    for path in ["/api/subscribers", "/api/devices", "/api/registers/choices"] {
        assert!(doc["paths"][path]["get"].is_object(), "GET {path}");
    }
    let params: Vec<&str> = doc["paths"]["/api/subscribers"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["q", "offset", "limit"]);
    assert!(doc["paths"]["/api/subscribers/{id}"]["put"]["responses"]["422"].is_object());
    assert!(doc["components"]["schemas"]["SubscriberPage"].is_object());
    srv.stop().await.unwrap();
}
