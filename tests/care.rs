//! The whole life of one subscriber against the real server on 127.0.0.1:0: the order from
//! the care system's API (twice: stored once), the keys in (receipts written and signed
//! through the store), the installation with its test alarm over DC-09 in the window, the
//! consent, active; an alarm, a dispatch and the Call closed; a provider change in effect with
//! its pending key receipt; the end order completed and the device out of the registry; the
//! billing export; and the events a local care-system receiver got, each exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vakt::model::Role;
use vakt::model::keys::{Custody, HandoverReason, Holder, Receipt, ReceiptState};
use vakt::model::order::{KeyCount, KeyKind};
use vakt::outbox::{EscalationConfig, RecipientKind, WebhookSecret};

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const SUPERVISOR: (&str, &str) = ("sara", "sara-password-1");

/// One request the care-system receiver got.
#[derive(Clone, Debug)]
struct Hit {
    event: String,
    delivery: u64,
    body: Value,
}

/// A care system on 127.0.0.1:0 that acknowledges every POST and keeps what it got.
async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<Hit>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let log = hits.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, log.clone()));
        }
    });
    (addr, hits)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve(mut sock: TcpStream, log: Arc<Mutex<Vec<Hit>>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p;
            }
            if buf.len() > 64 * 1024 || sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let headers: HashMap<String, String> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let start = head_end + 4;
        while buf.len() < start + len {
            if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
        let body = serde_json::from_slice(&buf[start..start + len]).unwrap_or(Value::Null);
        buf.drain(..start + len);
        log.lock().unwrap().push(Hit {
            event: headers.get("x-vakt-event").cloned().unwrap_or_default(),
            delivery: headers
                .get("x-vakt-delivery")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
            body,
        });
        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if sock.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Two providers in Centrum, one patrol each.
fn directory() -> vakt::registers::directory::Directory {
    vakt::registers::directory::parse_all(
        "id,name,phone\nhc,Hemtjänst Centrum,08-1\nhs,Hemtjänst Syd,08-2\n".as_bytes(),
        "id,name,arrival_limit_mins\ncentrum,Centrum,30\n".as_bytes(),
        "id,name,provider,areas,shifts,phone\n\
         c1,Centrum 1,hc,centrum,day 00:00-12:00;evening 12:00-00:00,070-1\n\
         s1,Syd 1,hs,centrum,day 00:00-12:00;evening 12:00-00:00,070-2\n"
            .as_bytes(),
        "provider,area,patrols\nhc,centrum,c1\nhs,centrum,s1\n".as_bytes(),
    )
    .expect("test directory")
}

fn config(dir: &std::path::Path, care_system: SocketAddr) -> vakt::config::Config {
    let mut cfg = test_config(dir);
    cfg.escalation = vec![
        EscalationConfig {
            name: "journal".into(),
            kind: RecipientKind::CareSystem,
            url: format!("http://{care_system}/events"),
            secret: WebhookSecret::new("a secret of the care system"),
            matches: vec!["Vaktby kommun".into()],
        },
        EscalationConfig {
            name: "installer".into(),
            kind: RecipientKind::Installer,
            url: format!("http://{care_system}/installer"),
            secret: WebhookSecret::new("a secret of the installer"),
            matches: vec!["Ivar Installatör".into()],
        },
    ];
    cfg
}

/// Writes a receipt of one door key and signs it, through the store (the receipts' API is
/// another part's).
fn hand_over(store: &vakt::store::Store, from: Holder, to: Holder, order: u64) -> Receipt {
    let now = jiff::Timestamp::now();
    let mut r = store
        .add_receipt(|id| Receipt {
            id,
            subscriber: "anna".into(),
            from,
            to,
            items: vec![KeyCount {
                kind: KeyKind::Door,
                count: 1,
            }],
            reason: HandoverReason::Installation,
            order: Some(order),
            written_at: now,
            written_by: SUPERVISOR.0.into(),
            state: ReceiptState::Pending,
        })
        .unwrap();
    let mut custody = Custody::from_receipts(&store.receipts_of("anna").unwrap());
    r.sign(
        &mut custody,
        now,
        "Åsa Öberg",
        "Ivar Installatör",
        SUPERVISOR.0,
    )
    .unwrap();
    store.save_receipt(&r).unwrap();
    r
}

async fn care_post(http: SocketAddr, token: &str, body: Value) -> Answer {
    let mut c = Client::new(http);
    c.extra_header("authorization", &format!("Bearer {token}"));
    c.post("/api/care/orders", body).await
}

#[tokio::test]
async fn the_whole_life_of_one_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    add_user(dir.path(), ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir.path(), OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir.path(), SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    let (token, hash) = vakt::store::new_token();
    {
        let store = open_store(dir.path()).unwrap();
        store.save_directory(&directory()).unwrap();
        store.set_integration_token("procapita", &hash).unwrap();
    }
    let (care_system, hits) = receiver().await;
    let srv = start_with(config(dir.path(), care_system)).await;
    let http = srv.http.unwrap();
    let tz = jiff::tz::TimeZone::get(&vakt::config::Config::default().http.time_zone).unwrap();
    let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
    let month = format!("{:04}-{:02}", today.year(), today.month());

    // 1. The order from the care system: without the token refused; twice stored once.
    let order = json!({
        "external_id": "procapita-4711",
        "kind": "new_alarm",
        "subscriber": "anna",
        "decided_on": today.to_string(),
        "health_notes": "Diabetes",
        "directions": "Port code at the hairdresser",
        "keys_required": [{"kind": "door", "count": 1}],
        "person": {
            "name": "Åsa Öberg",
            "personal_number": "19380512-9802",
            "address": "Storgatan 4",
            "postcode": "123 45",
            "city": "Vaktby",
            "area": "Centrum",
            "phone": "070-111 22 33",
            "care_provider": "hc"
        }
    });
    let a = Client::new(http)
        .post("/api/care/orders", order.clone())
        .await;
    assert_eq!(a.status, 401, "{}", a.body);
    let a = care_post(http, &token, order.clone()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let new_alarm = a.json();
    let new_alarm_id = new_alarm["id"].as_u64().unwrap();
    assert_eq!(new_alarm["lateness"], "in_time");
    let a = care_post(http, &token, order.clone()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], new_alarm_id);
    let mut no_id = order.clone();
    no_id["external_id"] = Value::Null;
    assert_eq!(care_post(http, &token, no_id).await.status, 422);

    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    assert_eq!(op.get("/api/orders").await.status, 403);
    let open = sup.get("/api/orders").await.json();
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    let life = sup.get("/api/subscribers/anna/life").await.json();
    assert_eq!(life["life"]["status"], "ordered");
    assert_eq!(
        life["missing"],
        json!([{"missing": "test_alarm"}, {"missing": "consent"},
            {"missing": "keys", "kind": "door", "have": 0, "need": 1}])
    );
    let card = sup.get("/api/subscribers/anna").await.json();
    assert_eq!(card["name"], "Åsa Öberg", "{card}");
    assert_eq!(card["care_provider"], "hc");

    // 2. The keys in: from the person to the installer, and on to the provider (through the
    //    store, with the server stopped: sled has one owner).
    srv.stop().await.unwrap();
    {
        let store = open_store(dir.path()).unwrap();
        hand_over(
            &store,
            Holder::Subscriber,
            Holder::Installer {
                name: "Ivar Installatör".into(),
            },
            new_alarm_id,
        );
        hand_over(
            &store,
            Holder::Installer {
                name: "Ivar Installatör".into(),
            },
            Holder::Provider { id: "hc".into() },
            new_alarm_id,
        );
    }
    let srv = start_with(config(dir.path(), care_system)).await;
    let http = srv.http.unwrap();
    let tcp = srv.dc09_tcp.unwrap();
    sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    op = Client::login(http, OPERATOR.0, OPERATOR.1).await;

    // 3. The installation: not another subscriber's device; the test alarm over DC-09 in
    //    the window; the consent; active at once.
    let a = sup
        .post(
            "/api/subscribers/anna/installation",
            json!({"account": "5678", "installer": "Ivar Installatör"}),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = sup
        .post(
            "/api/subscribers/anna/installation",
            json!({"account": "1234", "installer": "Ivar Installatör", "window_mins": 30}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let reply = tcp_roundtrip(tcp, &plain("ADM-CID", 1, "1234", "#1234|1101 01 001")).await;
    assert_eq!(token_of(&reply), "ACK");
    let life = wait_for("the test alarm", Duration::from_secs(10), || {
        let mut sup = sup.clone();
        async move {
            let l = sup.get("/api/subscribers/anna/life").await.json();
            (l["missing"] == json!([{"missing": "consent"}])).then_some(l)
        }
    })
    .await;
    assert_eq!(life["life"]["status"], "ordered");
    let a = sup
        .post(
            "/api/subscribers/anna/consent",
            json!({"signed_on": today.to_string(), "signed_by": "Åsa Öberg"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "active");
    let life = sup.get("/api/subscribers/anna/life").await.json();
    assert_eq!(life["life"]["installed_on"], today.to_string());
    assert_eq!(life["missing"], json!([]));
    assert_eq!(life["orders"][0]["state"]["state"], "done");
    assert_eq!(sup.get("/api/orders").await.json(), json!([]));

    // 4. A health change from the care system: on the card at once, done.
    let a = care_post(
        http,
        &token,
        json!({"external_id": "procapita-4712", "kind": "change", "subscriber": "anna",
            "decided_on": today.to_string(), "health_notes": "Diabetes, pacemaker"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["state"]["state"], "done");
    let card = sup.get("/api/subscribers/anna").await.json();
    assert_eq!(card["health_notes"], "Diabetes, pacemaker");

    // 5. An alarm (joins the installation's Call), the dispatch, the Call closed.
    let reply = tcp_roundtrip(tcp, &plain("ADM-CID", 2, "1234", "#1234|1101 01 001")).await;
    assert_eq!(token_of(&reply), "ACK");
    let call = first_open_call(&op, Duration::from_secs(10)).await;
    let a = op
        .post(&format!("/api/calls/{call}/claim"), json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = op
        .post(&format!("/api/calls/{call}/dispatch"), json!({}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["patrol"], "c1", "{}", a.body);
    let a = op
        .post(
            &format!("/api/calls/{call}/close"),
            json!({"outcome": "patrol_needed", "note": "Fallen in the kitchen"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // 6. A provider change from today: routing follows at once; the old provider's key is a
    //    pending receipt to the new one.
    let a = care_post(
        http,
        &token,
        json!({"external_id": "procapita-4713", "kind": "provider_change", "subscriber": "anna",
            "decided_on": today.to_string(), "effective": today.to_string(),
            "new_provider": "hs"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["state"]["state"], "done");
    let card = sup.get("/api/subscribers/anna").await.json();
    assert_eq!(card["care_provider"], "hs");
    let life = sup.get("/api/subscribers/anna/life").await.json();
    assert_eq!(life["provider_now"], "hs");
    let pending: Vec<&Value> = life["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"]["state"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{life}");
    assert_eq!(
        pending[0]["from"],
        json!({"holder": "provider", "id": "hc"})
    );
    assert_eq!(pending[0]["to"], json!({"holder": "provider", "id": "hs"}));
    assert_eq!(pending[0]["reason"], "provider_change");
    let handover = pending[0]["id"].as_u64().unwrap();
    sign(&mut sup, handover, "Hanna", "Sven").await;

    // 7. The end: ordered, refused twice, completed; the device leaves the registry.
    let end = json!({"external_id": "procapita-4714", "kind": "end", "subscriber": "anna",
        "decided_on": today.to_string(), "effective": today.to_string()});
    let a = care_post(http, &token, end.clone()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let end_id = a.json()["id"].as_u64().unwrap();
    let mut again = end.clone();
    again["external_id"] = json!("procapita-4715");
    let a = care_post(http, &token, again).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(
        sup.post(&format!("/api/orders/{new_alarm_id}/complete"), json!({}))
            .await
            .status,
        409
    );
    let a = sup
        .post(&format!("/api/orders/{end_id}/complete"), json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let life = sup.get("/api/subscribers/anna/life").await.json();
    assert_eq!(life["life"]["status"], "ended");
    assert_eq!(life["life"]["ended_on"], today.to_string());
    // The keys come back as the end order proposed: home care to the installer, then the
    // installer to the person.
    let pending_end = |life: &Value| -> Vec<Value> {
        life["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"]["state"] == "pending" && r["reason"] == "end")
            .cloned()
            .collect()
    };
    let back = pending_end(&life);
    assert_eq!(back.len(), 1, "{life}");
    assert_eq!(back[0]["from"], json!({"holder": "provider", "id": "hs"}));
    assert_eq!(
        back[0]["to"],
        json!({"holder": "installer", "name": "Ivar Installatör"})
    );
    assert_eq!(back[0]["order"], end_id);
    let to_installer = back[0]["id"].as_u64().unwrap();
    sign(&mut sup, to_installer, "Sven", "Ivar Installatör").await;
    let life = sup.get("/api/subscribers/anna/life").await.json();
    let back = pending_end(&life);
    assert_eq!(back.len(), 1, "{life}");
    assert_eq!(
        back[0]["from"],
        json!({"holder": "installer", "name": "Ivar Installatör"})
    );
    assert_eq!(back[0]["to"], json!({"holder": "subscriber"}));
    let to_anna = back[0]["id"].as_u64().unwrap();
    sign(&mut sup, to_anna, "Ivar Installatör", "Åsa Öberg").await;
    let life = sup.get("/api/subscribers/anna/life").await.json();
    assert!(pending_end(&life).is_empty(), "{life}");
    assert_eq!(
        life["keys"],
        json!([]),
        "every key back with the person: {life}"
    );
    let devices = sup.get("/api/devices?q=1234").await.json();
    assert!(
        !devices.to_string().contains("\"1234\""),
        "the device left the registry: {devices}"
    );
    let reply = tcp_roundtrip(tcp, &plain("ADM-CID", 3, "1234", "#1234|1101 01 001")).await;
    assert_eq!(token_of(&reply), "ACK");
    let last = wait_for("the last Signal", Duration::from_secs(10), || async {
        let all = signals(http).await;
        (all.len() >= 3).then(|| all.into_iter().max_by_key(|s| s["id"].as_u64()))?
    })
    .await;
    assert_eq!(last["flags"], json!(["unknown_device"]), "{last}");

    // 8. Billing: this month, one row; the month before, none. CSV with ; and a BOM.
    assert_eq!(op.get("/api/reports/billing").await.status, 403);
    let rows = sup
        .get(&format!("/api/reports/billing?month={month}"))
        .await
        .json();
    assert_eq!(
        rows,
        json!([{"month": month, "municipality": "Vaktby kommun", "provider": "hs",
            "subscriber": "anna", "name": "Åsa Öberg", "installed_on": today.to_string(),
            "ended_on": today.to_string()}])
    );
    let before = today.first_of_month().yesterday().unwrap();
    let prev = format!("{:04}-{:02}", before.year(), before.month());
    assert_eq!(
        sup.get(&format!("/api/reports/billing?month={prev}"))
            .await
            .json(),
        json!([])
    );
    let csv = sup
        .get(&format!("/api/reports/billing?month={month}&format=csv"))
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.body.starts_with('\u{feff}'), "{:?}", &csv.body[..10]);
    assert!(
        csv.body.contains(&format!(
            "{month};Vaktby kommun;hs;anna;Åsa Öberg;{today};{today}\r\n"
        )),
        "{}",
        csv.body
    );

    // 9. The audit log holds the views and the care system's orders.
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let audit = admin.get("/api/audit?limit=1000").await.json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "care.order",
        "order.list",
        "life.view",
        "life.installation",
        "life.consent",
        "order.complete",
        "report.billing",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }

    // 10. The care system got each event exactly once.
    let wanted = [
        ("care.execution_started", format!("order/{new_alarm_id}")),
        ("care.health_change_received", String::new()),
        ("care.alarm_handled", format!("call/{call}")),
        ("care.execution_ended", format!("order/{end_id}")),
        ("care.key_handover_signed", format!("receipt/{handover}")),
        (
            "care.key_handover_signed",
            format!("receipt/{to_installer}"),
        ),
        ("care.key_handover_signed", format!("receipt/{to_anna}")),
        ("care.pickup_ordered", format!("order/{end_id}")),
    ];
    let got = wait_for("the care system's events", Duration::from_secs(20), || {
        let hits = hits.clone();
        let wanted = wanted.clone();
        async move {
            let h = hits.lock().unwrap().clone();
            wanted
                .iter()
                .all(|(e, subject)| {
                    h.iter().any(|x| {
                        x.event == *e && (subject.is_empty() || x.body["subject"] == *subject)
                    })
                })
                .then_some(h)
        }
    })
    .await;
    // A moment more: nothing comes twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_late = hits.lock().unwrap().clone();
    assert_eq!(got_late.len(), got.len(), "{got_late:?}");
    for (event, subject) in &wanted {
        let of: Vec<&Hit> = got
            .iter()
            .filter(|h| h.event == *event && (subject.is_empty() || h.body["subject"] == *subject))
            .collect();
        assert_eq!(of.len(), 1, "{event}: {of:?}");
        if !subject.is_empty() {
            assert_eq!(of[0].body["subject"], *subject, "{event}");
        }
        let to = if *event == "care.pickup_ordered" {
            "installer"
        } else {
            "care_system"
        };
        assert_eq!(of[0].body["recipient"]["kind"], to, "{event}");
    }
    let mut deliveries: Vec<u64> = got.iter().map(|h| h.delivery).collect();
    deliveries.sort_unstable();
    deliveries.dedup();
    assert_eq!(deliveries.len(), got.len(), "each delivery once");
    let note = &got
        .iter()
        .find(|h| h.event == "care.alarm_handled")
        .unwrap()
        .body["data"];
    assert_eq!(note["note"]["outcome"], "patrol_needed");
    assert_eq!(note["note"]["operator"], OPERATOR.0);
    assert_eq!(note["note"]["patrols"][0]["patrol"], "c1");
    let fhir = &note["communication"];
    assert_eq!(fhir["resourceType"], "Communication");
    assert_eq!(fhir["status"], "completed");
    assert_eq!(
        fhir["subject"]["identifier"],
        json!({"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "19380512-9802"})
    );
    let started = &got
        .iter()
        .find(|h| h.event == "care.execution_started")
        .unwrap()
        .body["data"];
    assert_eq!(started["installed_on"], today.to_string());
    assert_eq!(started["order"]["external_id"], "procapita-4711");
    assert_eq!(started["provider"], "hc");
    let signed = &got
        .iter()
        .find(|h| h.body["subject"] == format!("receipt/{handover}"))
        .unwrap()
        .body["data"];
    assert_eq!(signed["handed_by"], "Hanna");
    assert_eq!(signed["to"], json!({"holder": "provider", "id": "hs"}));
    // The installer's pick-up: where, the device, and the keys to collect from home care.
    let pickup = &got
        .iter()
        .find(|h| h.event == "care.pickup_ordered")
        .unwrap()
        .body;
    assert_eq!(pickup["recipient"]["key"], "Ivar Installatör");
    assert_eq!(pickup["data"]["address"], "Storgatan 4");
    assert_eq!(pickup["data"]["devices"], json!(["1234"]));
    assert_eq!(pickup["data"]["keys"][0]["receipt"], to_installer);
    assert_eq!(
        pickup["data"]["keys"][0]["from"],
        json!({"holder": "provider", "id": "hs"})
    );
    srv.stop().await.unwrap();

    // 11. With the server stopped: the billing from the command line's report.
    let rows = vakt::cli::billing_report(store_at(dir.path()), &month, "Vaktby kommun").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].provider, "hs");
}

/// Signs a pending key receipt through the receipts' API, as a supervisor does.
async fn sign(sup: &mut Client, id: u64, handed_by: &str, received_by: &str) {
    let a = sup
        .post(
            &format!("/api/receipts/{id}/sign"),
            json!({"handed_by": handed_by, "received_by": received_by}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// A closing whose note a crash lost (the Call closed and its mark written, the note never
/// queued) is handed to the care system at the next start, once; a start after that sends
/// nothing again.
#[tokio::test]
async fn a_closing_a_crash_left_without_its_note_is_handed_on_at_the_next_start_once() {
    use vakt::model::{Call, CallState, Outcome, Priority, TimelineEntry, TimelineEvent};
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    {
        let store = open_store(dir.path()).unwrap();
        store
            .upsert_subscribers(&[vakt::model::Subscriber {
                id: "anna".into(),
                name: "Åsa Öberg".into(),
                personal_number: "19380512-9802".into(),
                ..vakt::model::Subscriber::default()
            }])
            .unwrap();
        store
            .update_life("anna", |_| {
                Ok::<_, vakt::store::StoreError>(vakt::model::life::Life::ordered(
                    "anna", None, now, "sara",
                ))
            })
            .unwrap();
        let closing = TimelineEntry {
            at: now,
            user: Some(OPERATOR.0.into()),
            what: TimelineEvent::Closed {
                outcome: Outcome::AccidentalPress,
                note: "pressed by mistake".into(),
                override_reason: None,
                overrode: String::new(),
                review: false,
            },
        };
        let call = Call {
            id: 7,
            priority: Priority::PERSONAL,
            state: CallState::Closed,
            owner: Some(OPERATOR.0.into()),
            opened_at: now,
            alarm_count: 1,
            subscriber: Some("anna".into()),
            account: "1234".into(),
            kind: "Personal alarm".into(),
            restored: false,
            answered_at: Some(now),
            closed_at: Some(now),
            outcome: Some(Outcome::AccidentalPress),
            timeline: vec![closing],
            last_signal_id: 1,
        };
        // What the Call writer leaves when the process dies right after the closing.
        store.save_calls(&[call], None).unwrap();
        assert_eq!(store.closings_owed().unwrap(), vec![7]);
    }
    let (care_system, hits) = receiver().await;
    let notes = |hits: &Arc<Mutex<Vec<Hit>>>| {
        hits.lock()
            .unwrap()
            .iter()
            .filter(|h| h.event == "care.alarm_handled")
            .cloned()
            .collect::<Vec<_>>()
    };
    let srv = start_with(config(dir.path(), care_system)).await;
    let got = wait_for(
        "the note of the closed call",
        Duration::from_secs(20),
        || {
            let hits = hits.clone();
            async move { notes(&hits).into_iter().next() }
        },
    )
    .await;
    assert_eq!(got.body["subject"], "call/7");
    assert_eq!(got.body["data"]["note"]["outcome"], "accidental_press");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(notes(&hits).len(), 1);
    srv.stop().await.unwrap();
    assert!(
        open_store(dir.path())
            .unwrap()
            .closings_owed()
            .unwrap()
            .is_empty()
    );
    // Started again: the mark is gone, nothing goes twice.
    let srv = start_with(config(dir.path(), care_system)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    srv.stop().await.unwrap();
    assert_eq!(notes(&hits).len(), 1);
}

/// The header's figures count the open orders for a supervisor, as the work orders are: one
/// received three weeks ago is overdue (a week), not yet due back (a month); an operator does
/// not get them.
#[tokio::test]
async fn the_open_and_overdue_orders_are_counted_for_a_supervisor() {
    use vakt::model::order::{NewOrder, OrderKind, Person};
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    add_user(dir.path(), OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir.path(), SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    let cfg = test_config(dir.path());
    let order = |subscriber: &str, name: &str, pnr: &str, decided: jiff::civil::Date| NewOrder {
        kind: Some(OrderKind::NewAlarm),
        subscriber: subscriber.into(),
        decided_on: Some(decided),
        person: Some(Person {
            name: name.into(),
            personal_number: pnr.into(),
            care_provider: "hc".into(),
            ..Person::default()
        }),
        ..NewOrder::default()
    };
    {
        let store = open_store(dir.path()).unwrap();
        store.save_directory(&directory()).unwrap();
        let devices = vakt::registers::devices::Devices::new(
            vakt::registers::devices::Registry::new(store.devices().unwrap()),
        );
        let days = vakt::model::calendar::WorkingDays::new(Vec::new(), cfg.http.tz());
        let care = vakt::care::Care::open(store, devices, None, days, Default::default()).unwrap();
        let received = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(21 * 24);
        let decided = received.to_zoned(cfg.http.tz()).date();
        care.receive_order(
            order("bertil", "Bertil Holm", "19361120-4565", decided),
            SUPERVISOR.0,
            received,
        )
        .unwrap();
    }
    let srv = start_with(cfg.clone()).await;
    let http = srv.http.unwrap();
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let f = sup.get("/api/supervision").await.json();
    assert_eq!(
        (
            &f["orders_open"],
            &f["orders_overdue"],
            &f["orders_return_due"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{f}"
    );
    // One entered now is in time.
    let today = jiff::Timestamp::now().to_zoned(cfg.http.tz()).date();
    let a = sup
        .post(
            "/api/orders",
            serde_json::to_value(order("erik", "Erik Ek", "19400311-1236", today)).unwrap(),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let f = sup.get("/api/supervision").await.json();
    assert_eq!(
        (&f["orders_open"], &f["orders_overdue"]),
        (&json!(2), &json!(1)),
        "{f}"
    );
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let f = op.get("/api/supervision").await.json();
    assert!(f.get("orders_open").is_none(), "{f}");
    assert!(f.get("work_orders_open").is_some(), "{f}");
    srv.stop().await.unwrap();
}
