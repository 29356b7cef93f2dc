//! Keys in custody against a real server on 127.0.0.1:0 (and on PostgreSQL in CI): a
//! supervisor writes a receipt, it is pending until signed by name, custody moves on
//! signing, a second signature and a short hand-over are refused 409, two signatures at once
//! that together hand more than is held cannot both stand, a receipt is voided with a
//! reason, operators may look but not write or sign, and every view and change is audited.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::*;
use serde_json::{Value, json};
use vakt::model::Role;
use vakt::registers::directory::{DEMO_AREAS, DEMO_PATROLS, DEMO_PROVIDERS, DEMO_ROUTES};

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const SUPERVISOR: (&str, &str) = ("siv", "siv-password-3");
const SUPERVISOR2: (&str, &str) = ("stina", "stina-password-4");

fn subscribers_csv() -> String {
    format!(
        "{}\nanna,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Centrum,070-111 22 33,Hemtjänst Centrum,2,,PL-3301,4711#,,,,,,,,,,,,,sv\n",
        vakt::registers::subscribers::CSV_HEADER
    )
}

async fn server(dir: &std::path::Path) -> vakt::server::Running {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes()).unwrap();
    vakt::cli::import_directory(
        common::store_at(dir),
        DEMO_PROVIDERS.as_bytes(),
        DEMO_AREAS.as_bytes(),
        DEMO_PATROLS.as_bytes(),
        DEMO_ROUTES.as_bytes(),
        jiff::Timestamp::now(),
    )
    .unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    add_user(dir, SUPERVISOR2.0, Role::Supervisor, SUPERVISOR2.1);
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

fn installer(name: &str) -> Value {
    json!({"holder": "installer", "name": name})
}

fn provider(id: &str) -> Value {
    json!({"holder": "provider", "id": id})
}

async fn write(c: &mut Client, from: Value, to: Value, items: Value) -> common::Answer {
    c.post(
        "/api/subscribers/anna/receipts",
        json!({"from": from, "to": to, "items": items, "reason": "installation"}),
    )
    .await
}

/// The installer Erik takes the keys in from the subscriber (signed): what every later
/// receipt hands on.
async fn taken_in(c: &mut Client, items: Value) -> u64 {
    let a = write(c, json!({"holder": "subscriber"}), installer("Erik"), items).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["id"].as_u64().unwrap();
    let a = sign(c, id).await;
    assert_eq!(a.status, 200, "{}", a.body);
    id
}

async fn sign(c: &mut Client, id: u64) -> common::Answer {
    c.post(
        &format!("/api/receipts/{id}/sign"),
        json!({"handed_by": "Erik Installatör", "received_by": "Maria Hemtjänst"}),
    )
    .await
}

/// The holdings of anna's keys: holder in words -> [(kind, count)].
async fn holdings(c: &mut Client) -> Vec<(String, Vec<(String, u64)>)> {
    let a = c.get("/api/subscribers/anna/keys").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let who = match h["holder"].as_str().unwrap() {
                "provider" => format!("provider {}", h["id"].as_str().unwrap()),
                "installer" => format!("installer {}", h["name"].as_str().unwrap()),
                other => other.to_owned(),
            };
            let keys = h["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    (
                        k["kind"].as_str().unwrap().to_owned(),
                        k["count"].as_u64().unwrap(),
                    )
                })
                .collect();
            (who, keys)
        })
        .collect()
}

async fn audit_actions(c: &mut Client) -> Vec<(String, String, String)> {
    let a = c.get("/api/audit?limit=1000").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["user"].as_str().unwrap().to_owned(),
                e["subscriber"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_receipt_is_written_signed_once_and_moves_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let took = taken_in(
        &mut sup,
        json!([{"kind": "door", "count": 2}, {"kind": "access_tag", "count": 1}]),
    )
    .await;
    assert_eq!(
        holdings(&mut sup).await,
        vec![(
            "installer Erik".to_owned(),
            vec![("door".to_owned(), 2), ("access_tag".to_owned(), 1)]
        )]
    );

    // Installer → home care Centrum (named by its name: stored by the directory's id).
    let a = write(
        &mut sup,
        installer(" Erik "),
        provider("Hemtjänst Centrum"),
        json!([{"kind": "door", "count": 2}, {"kind": "access_tag", "count": 1}]),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let r = a.json();
    assert_eq!(r["pending"], true);
    assert_eq!(r["state"]["state"], "pending");
    assert_eq!(r["to"]["id"], "hemtjanst-centrum");
    assert_eq!(r["from"]["name"], "Erik");
    assert_eq!(r["written_by"], SUPERVISOR.0);
    let id = r["id"].as_u64().unwrap();
    // Pending: the installer still holds them.
    assert_eq!(holdings(&mut sup).await[0].0, "installer Erik");

    let a = sign(&mut sup, id).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let s = a.json();
    assert_eq!(s["pending"], false);
    assert_eq!(s["state"]["state"], "signed");
    assert_eq!(s["state"]["handed_by"], "Erik Installatör");
    assert_eq!(s["state"]["received_by"], "Maria Hemtjänst");
    assert_eq!(s["state"]["recorded_by"], SUPERVISOR.0);
    assert_eq!(
        holdings(&mut sup).await,
        vec![(
            "provider hemtjanst-centrum".to_owned(),
            vec![("door".to_owned(), 2), ("access_tag".to_owned(), 1)]
        )]
    );

    // Signing twice: 409 with its code; nothing moves again.
    let a = sign(&mut sup, id).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["code"], "keys.not_pending");
    assert_eq!(holdings(&mut sup).await[0].1[0], ("door".to_owned(), 2));

    // Centrum hands 3 door keys to Humana: it holds 2, so signing is refused, in words.
    let a = write(
        &mut sup,
        provider("hemtjanst-centrum"),
        provider("humana-centrum"),
        json!([{"kind": "door", "count": 3}]),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let short = a.json()["id"].as_u64().unwrap();
    let a = sign(&mut sup, short).await;
    assert_eq!(a.status, 409, "{}", a.body);
    let e = a.json();
    assert_eq!(e["code"], "keys.short");
    assert_eq!(e["params"]["holder"], "Hemtjänst Centrum");
    assert_eq!(e["params"]["key_kind"], "door");
    assert_eq!(e["params"]["held"], "2");
    assert_eq!(e["params"]["handed"], "3");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("holds 2 of door, not 3"),
        "{e}"
    );
    // Still pending; void it with a reason (none: 422), then it cannot be signed or voided.
    let a = sup
        .post(
            &format!("/api/receipts/{short}/void"),
            json!({"reason": " "}),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = sup
        .post(
            &format!("/api/receipts/{short}/void"),
            json!({"reason": "wrong count, written again"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["state"]["state"], "voided");
    assert_eq!(a.json()["state"]["reason"], "wrong count, written again");
    assert_eq!(sign(&mut sup, short).await.status, 409);
    let a = sup
        .post(
            &format!("/api/receipts/{short}/void"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);

    // The list: newest first, the states as they are.
    let k = sup.get("/api/subscribers/anna/keys").await.json();
    let ids: Vec<u64> = k["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![short, id, took]);
    assert_eq!(k["receipts"][0]["state"]["state"], "voided");
    let names: Vec<(&str, &str)> = k["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("hemtjanst-centrum", "Hemtjänst Centrum"),
            ("humana-centrum", "Humana Centrum")
        ]
    );

    // Refusals of a receipt written wrong: 422 in words, 404 for no such subscriber or receipt.
    for (from, to, items, why) in [
        (
            installer("Erik"),
            provider("no-such-provider"),
            json!([{"kind": "door", "count": 1}]),
            "not a care provider",
        ),
        (
            installer("Erik"),
            installer("Erik"),
            json!([{"kind": "door", "count": 1}]),
            "two different holders",
        ),
        (
            installer("Erik"),
            json!({"holder": "cabinet"}),
            json!([]),
            "1 to 10 kinds",
        ),
        (
            installer("Erik"),
            json!({"holder": "cabinet"}),
            json!([{"kind": "door", "count": 0}]),
            "1 to 20 of each",
        ),
    ] {
        let a = write(&mut sup, from, to, items).await;
        assert_eq!(a.status, 422, "{}", a.body);
        assert!(
            a.json()["error"].as_str().unwrap().contains(why),
            "{}",
            a.body
        );
    }
    let a = sup
        .post(
            "/api/subscribers/anna/receipts",
            json!({"from": installer("Erik"), "to": {"holder": "cabinet"},
                "items": [{"kind": "door", "count": 1}], "reason": "other", "order": 999}),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("order 999"), "{}", a.body);
    let a = sup
        .post(
            "/api/subscribers/nobody/receipts",
            json!({"from": installer("Erik"), "to": {"holder": "cabinet"},
                "items": [{"kind": "door", "count": 1}], "reason": "other"}),
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(sign(&mut sup, 4242).await.status, 404);
    assert_eq!(sup.get("/api/subscribers/nobody/keys").await.status, 404);

    // Every view and change audited, with the subscriber.
    let audit = audit_actions(&mut sup).await;
    let of = |action: &str| {
        audit
            .iter()
            .filter(|(a, u, s)| a == action && u == SUPERVISOR.0 && s == "anna")
            .count()
    };
    assert_eq!(of("keys.receipt_written"), 3);
    assert_eq!(of("keys.receipt_signed"), 2);
    assert_eq!(of("keys.receipt_voided"), 1);
    assert!(of("subscriber.keys_view") >= 5);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn operators_see_the_keys_but_do_not_write_sign_or_void() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut live = Live::connect(&op).await;
    let a = write(
        &mut sup,
        installer("Erik"),
        json!({"holder": "cabinet"}),
        json!([{"kind": "entrance", "count": 1}]),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["id"].as_u64().unwrap();
    // The operator's console showing Åsa's card is told to load it again.
    assert_eq!(
        live.next_of("subscriber").await,
        json!({"type": "subscriber", "id": "anna"})
    );

    let a = write(
        &mut op,
        installer("Erik"),
        json!({"holder": "cabinet"}),
        json!([{"kind": "door", "count": 1}]),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(sign(&mut op, id).await.status, 403);
    let a = op
        .post(&format!("/api/receipts/{id}/void"), json!({"reason": "no"}))
        .await;
    assert_eq!(a.status, 403, "{}", a.body);

    let a = op.get("/api/subscribers/anna/keys").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let k = a.json();
    assert_eq!(k["receipts"].as_array().unwrap().len(), 1);
    assert_eq!(k["receipts"][0]["pending"], true);
    assert!(k["holdings"].as_array().unwrap().is_empty());

    let audit = audit_actions(&mut sup).await;
    assert!(
        audit
            .iter()
            .any(|(a, u, s)| a == "subscriber.keys_view" && u == OPERATOR.0 && s == "anna"),
        "{audit:?}"
    );
    // Nothing the operator tried was written.
    assert!(
        !audit
            .iter()
            .any(|(a, u, _)| a.starts_with("keys.") && u == OPERATOR.0),
        "{audit:?}"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn two_signatures_at_once_that_hand_more_than_is_held_cannot_both_stand() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut sup2 = Client::login(http, SUPERVISOR2.0, SUPERVISOR2.1).await;
    taken_in(&mut sup, json!([{"kind": "door", "count": 2}])).await;
    let a = write(
        &mut sup,
        installer("Erik"),
        provider("hemtjanst-centrum"),
        json!([{"kind": "door", "count": 2}]),
    )
    .await;
    let first = a.json()["id"].as_u64().unwrap();
    let a = sign(&mut sup, first).await;
    assert_eq!(a.status, 200, "{}", a.body);

    for round in 0..3 {
        // Centrum holds 2: one receipt hands 2 to Humana, another 1 to the key cabinet.
        let to_humana = write(
            &mut sup,
            provider("hemtjanst-centrum"),
            provider("humana-centrum"),
            json!([{"kind": "door", "count": 2}]),
        )
        .await
        .json()["id"]
            .as_u64()
            .unwrap();
        let to_cabinet = write(
            &mut sup,
            provider("hemtjanst-centrum"),
            json!({"holder": "cabinet"}),
            json!([{"kind": "door", "count": 1}]),
        )
        .await
        .json()["id"]
            .as_u64()
            .unwrap();
        let (a, b) = tokio::join!(sign(&mut sup, to_humana), sign(&mut sup2, to_cabinet));
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: {} / {}",
            a.body,
            b.body
        );
        let loser = if a.status == 409 { &a } else { &b };
        assert_eq!(loser.json()["code"], "keys.short", "{}", loser.body);
        // Exactly what the winner moved: 2 door keys in all, never 3.
        let held = holdings(&mut sup).await;
        let total: u64 = held
            .iter()
            .flat_map(|(_, k)| k.iter().map(|(_, n)| n))
            .sum();
        assert_eq!(total, 2, "round {round}: {held:?}");
        // Back to Centrum for the next round: whoever holds them hands them back.
        for (who, keys) in held {
            if who == "provider hemtjanst-centrum" {
                continue;
            }
            let from = if who == "cabinet" {
                json!({"holder": "cabinet"})
            } else {
                provider(who.trim_start_matches("provider "))
            };
            let back = write(
                &mut sup,
                from,
                provider("hemtjanst-centrum"),
                json!([{"kind": "door", "count": keys[0].1}]),
            )
            .await
            .json()["id"]
                .as_u64()
                .unwrap();
            assert_eq!(sign(&mut sup, back).await.status, 200);
        }
        // The loser is still pending: void it.
        let pending = if a.status == 409 {
            to_humana
        } else {
            to_cabinet
        };
        let a = sup
            .post(
                &format!("/api/receipts/{pending}/void"),
                json!({"reason": "signed at the same time as another"}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_describes_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut op = Client::login(srv.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let doc = op.get("/api/openapi.json").await.json();
    for (path, method) in [
        ("/api/subscribers/{id}/keys", "get"),
        ("/api/subscribers/{id}/receipts", "post"),
        ("/api/receipts/{id}/sign", "post"),
        ("/api/receipts/{id}/void", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert!(doc["paths"]["/api/receipts/{id}/sign"]["post"]["responses"]["409"].is_object());
    for schema in [
        "KeysView",
        "ReceiptView",
        "NewReceipt",
        "SignRequest",
        "Holder",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let dispatch = &doc["components"]["schemas"]["DispatchRequest"]["properties"];
    assert!(dispatch["no_access"].is_object(), "{dispatch}");
    srv.stop().await.unwrap();
}
