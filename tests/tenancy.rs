//! Municipalities and care providers as tenants, against the real server on 127.0.0.1:0: a
//! municipality's staff and a care provider's staff read only their own people (the register's
//! search, a card by id, their open Calls and a Call by id, its dispatches, the billing and
//! visits reports), never another's (not even that it exists), and nothing of the centre's
//! work (taking Calls, users, edits, the audit log); the centre's staff see everyone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::*;
use serde_json::{Value, json};
use vakt::model::life::{Life, LifeStatus};
use vakt::model::{Role, Subscriber};

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const SUPERVISOR: (&str, &str) = ("sara", "sara-password-1");
/// The centre's own municipality's staff (`[care] municipality`).
const VAKTBY: (&str, &str) = ("vaktby", "vaktby-password-1");
/// A municipality that buys the service from the centre.
const NORDBY: (&str, &str) = ("nordby", "nordby-password-1");
/// Home care Centrum's staff.
const CENTRUM: (&str, &str) = ("centrum", "centrum-password-1");

fn person(id: &str, name: &str, provider: &str, municipality: &str) -> Subscriber {
    let mut s = Subscriber {
        id: id.into(),
        name: name.into(),
        personal_number: "19380512-9802".into(),
        care_provider: provider.into(),
        municipality: municipality.into(),
        ..Subscriber::default()
    };
    s.access.door_code = "4711#".into();
    s
}

/// A device with nothing but what a test sets.
fn device_template() -> vakt::model::Device {
    vakt::model::Device {
        account: String::new(),
        line: None,
        receiver: None,
        key: None,
        key_format: None,
        subscriber: None,
        supervision_secs: None,
        telecom_operator: None,
        area: None,
        device_type: None,
        sip_user: None,
        sip_password: None,
        phone: None,
    }
}

fn ids(page: &Value) -> Vec<String> {
    let mut v: Vec<String> = page["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// The centre: its staff, the tenants' users, Anna (the centre's own municipality, Centrum's),
/// Bo (Vaktby's, another provider's), Cia (Nordby's, Centrum's), Anna's device 1234 and
/// Cia's 5678; Anna's and Cia's Calls 1 and 2 open, Bo's 3 closed. Returns the month.
fn centre(dir: &std::path::Path) -> String {
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, SUPERVISOR.0, Role::Supervisor, SUPERVISOR.1);
    add_user_of(
        dir,
        VAKTBY.0,
        Role::Municipality,
        Some("Vaktby kommun"),
        VAKTBY.1,
    );
    add_user_of(
        dir,
        NORDBY.0,
        Role::Municipality,
        Some("Nordby kommun"),
        NORDBY.1,
    );
    add_user_of(dir, CENTRUM.0, Role::Provider, Some("hc"), CENTRUM.1);
    add_user(dir, "lost", Role::Municipality, "lost-password-1");
    let tz = jiff::tz::TimeZone::get(&vakt::config::Config::default().http.time_zone).unwrap();
    let now = jiff::Timestamp::now();
    let today = now.to_zoned(tz).date();
    let month = format!("{:04}-{:02}", today.year(), today.month());
    {
        let store = open_store(dir).unwrap();
        store
            .upsert_subscribers(&[
                // Vaktby's own (no municipality on the card: the centre's), Centrum's.
                person("anna", "Åsa Öberg", "hc", ""),
                // Vaktby's, another provider's.
                person("bo", "Bo Berg", "hs", "Vaktby kommun"),
                // Nordby's, placed with Centrum.
                person("cia", "Cia Ek", "hc", "Nordby kommun"),
            ])
            .unwrap();
        for id in ["anna", "bo", "cia"] {
            store
                .update_life(id, |_| {
                    let mut l = Life::ordered(id, None, now, "sara");
                    l.status = LifeStatus::Active;
                    l.installed_on = Some(today);
                    l.providers = vec![vakt::model::order::ProviderPeriod {
                        from: today,
                        provider: if id == "bo" { "hs" } else { "hc" }.into(),
                    }];
                    Ok::<_, vakt::store::StoreError>(l)
                })
                .unwrap();
        }
        store
            .upsert_devices(&[
                vakt::model::Device {
                    account: "1234".into(),
                    subscriber: Some("anna".into()),
                    ..device_template()
                },
                vakt::model::Device {
                    account: "5678".into(),
                    subscriber: Some("cia".into()),
                    ..device_template()
                },
            ])
            .unwrap();
        // Anna's and Cia's alarms open, Bo's closed.
        let call = |id: u64, who: &str, state: &str| -> vakt::model::Call {
            serde_json::from_value(json!({
                "id": id, "priority": 1, "state": state, "owner": null,
                "opened_at": now, "alarm_count": 1, "subscriber": who,
                "account": "1234", "kind": "Fall", "restored": false,
                "answered_at": null, "closed_at": null, "outcome": null,
                "timeline": []
            }))
            .unwrap()
        };
        store
            .save_calls(
                &[
                    call(1, "anna", "queued"),
                    call(2, "cia", "queued"),
                    call(3, "bo", "closed"),
                ],
                None,
            )
            .unwrap();
    }
    month
}

#[tokio::test]
async fn each_tenant_reads_only_its_own_people() {
    let dir = tempfile::tempdir().unwrap();
    let month = centre(dir.path());
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();

    // The centre's staff: everyone, the door code on the card.
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    assert_eq!(
        ids(&op.get("/api/subscribers").await.json()),
        ["anna", "bo", "cia"]
    );
    let all = op.get("/api/devices").await.json();
    assert_eq!(all["total"], 2, "{all}");
    let card = op.get("/api/subscribers/cia").await.json();
    assert_eq!(card["access"]["door_code"], "4711#");

    // Each tenant: its own people in the register, by id, and nobody else's.
    for ((user, password), own, other, open_calls, other_call) in [
        (VAKTBY, &["anna", "bo"][..], "cia", &[1][..], 2),
        (NORDBY, &["cia"][..], "anna", &[2][..], 1),
        (CENTRUM, &["anna", "cia"][..], "bo", &[1, 2][..], 3),
    ] {
        let mut c = Client::login(http, user, password).await;
        assert_eq!(ids(&c.get("/api/subscribers").await.json()), own, "{user}");
        let found = c.get("/api/subscribers?q=Berg").await.json();
        assert_eq!(
            ids(&found).contains(&"bo".to_owned()),
            own.contains(&"bo"),
            "{user}: search"
        );
        for id in own {
            let a = c.get(&format!("/api/subscribers/{id}")).await;
            assert_eq!(a.status, 200, "{user} {id}: {}", a.body);
            assert_eq!(
                a.json()["access"]["door_code"],
                "",
                "{user}: no door code at a desk"
            );
        }
        let a = c.get(&format!("/api/subscribers/{other}")).await;
        assert_eq!(a.status, 404, "{user} reaches {other}: {}", a.body);
        // Their people's devices only.
        let devices: Vec<String> = c.get("/api/devices").await.json()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["subscriber"].as_str().unwrap_or("").to_owned())
            .collect();
        assert!(
            !devices.is_empty() && devices.iter().all(|s| own.contains(&s.as_str())),
            "{user}: devices of {devices:?}"
        );
        // Their people's open Calls; a Call of theirs by id (closed ones too), audited; not
        // another's, nor its dispatches.
        let mut calls: Vec<u64> = c
            .get("/api/calls")
            .await
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect();
        calls.sort_unstable();
        assert_eq!(calls, open_calls, "{user}: open calls");
        for id in open_calls {
            assert_eq!(c.get(&format!("/api/calls/{id}")).await.status, 200);
        }
        let a = c.get(&format!("/api/calls/{other_call}")).await;
        assert_eq!(
            a.status, 404,
            "{user} reaches call {other_call}: {}",
            a.body
        );
        let d = c.get(&format!("/api/dispatches?call={other_call}")).await;
        assert_eq!(d.status, 200);
        assert_eq!(d.json(), json!([]));
        // The centre's work is not theirs.
        for path in ["/api/users", "/api/audit", "/api/orders", "/api/patrols"] {
            assert_eq!(c.get(path).await.status, 403, "{user} {path}");
        }
        let a = c.post("/api/calls/1/claim", json!({})).await;
        assert_eq!(a.status, 403, "{user} claims");
        // Billing: the rows their municipality pays, or of their provider.
        let rows = c
            .get(&format!("/api/reports/billing?month={month}"))
            .await
            .json();
        let mut billed: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["subscriber"].as_str().unwrap())
            .collect();
        billed.sort_unstable();
        assert_eq!(billed, own, "{user}: billing");
        // Visits: their own (none this month), never a 403.
        let a = c.get(&format!("/api/reports/visits?month={month}")).await;
        assert_eq!(a.status, 200, "{user}: {}", a.body);
        // The SLA report: their own people's Calls (one each), whatever scope they ask.
        let a = c
            .get(&format!("/api/reports/sla?month={month}&scope=all"))
            .await;
        assert_eq!(a.status, 200, "{user}: {}", a.body);
        assert_eq!(a.json()["answer"]["calls"], own.len(), "{user}: {}", a.body);
        assert_ne!(a.json()["scope"]["scope"], "all", "{user}");
    }

    // The centre's supervisor: the report of one municipality, as a file named for it.
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let a = sup
        .get(&format!(
            "/api/reports/sla?month={month}&scope=municipality:Nordby%20kommun"
        ))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["answer"]["calls"], 1, "{}", a.body);
    let a = sup
        .get(&format!(
            "/api/reports/sla?month={month}&scope=municipality:Nordby%20kommun&format=csv"
        ))
        .await;
    assert!(
        a.header("content-disposition")
            .is_some_and(|d| d.contains(&format!("vakt-sla-{month}-nordby-kommun.csv"))),
        "{:?}",
        a.header("content-disposition")
    );
    let a = sup.get(&format!("/api/reports/sla?month={month}")).await;
    assert_eq!(a.json()["answer"]["calls"], 3, "{}", a.body);

    // The provider's staff cannot ask for another provider's visits.
    let mut c = Client::login(http, CENTRUM.0, CENTRUM.1).await;
    // Bo is Vaktby's (his closed Call too), not Centrum's.
    let mut vaktby = Client::login(http, VAKTBY.0, VAKTBY.1).await;
    assert_eq!(vaktby.get("/api/calls/3").await.status, 200);
    let v = c
        .get(&format!("/api/reports/visits?month={month}&provider=hs"))
        .await
        .json();
    assert_eq!(v["provider"], "hc");

    // The access log: a municipality's staff review and extract their own people's, one
    // person at a time; a provider's staff not at all.
    let mut vaktby = Client::login(http, VAKTBY.0, VAKTBY.1).await;
    let a = vaktby.get("/api/audit/review?subscriber=anna").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["subscriber"] == "anna"),
        "{}",
        a.body
    );
    assert_eq!(vaktby.get("/api/audit/review").await.status, 422);
    assert_eq!(
        vaktby.get("/api/audit/review?subscriber=cia").await.status,
        404
    );
    assert_eq!(
        vaktby.get("/api/subscribers/anna/accesses").await.status,
        200
    );
    assert_eq!(
        vaktby.get("/api/subscribers/cia/accesses").await.status,
        404
    );
    assert_eq!(c.get("/api/audit/review?subscriber=anna").await.status, 403);
    assert_eq!(c.get("/api/subscribers/anna/accesses").await.status, 403);

    // A municipality's user without a municipality sees no one.
    let mut lost = Client::login(http, "lost", "lost-password-1").await;
    assert_eq!(lost.get("/api/subscribers").await.status, 403);

    // The supervisor's billing: everyone, Nordby's on its own row.
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let rows = sup
        .get(&format!("/api/reports/billing?month={month}"))
        .await
        .json();
    let of = |id: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["subscriber"] == id)
            .unwrap()["municipality"]
            .clone()
    };
    assert_eq!(of("anna"), "Vaktby kommun");
    assert_eq!(of("cia"), "Nordby kommun");

    // Every card read is audited, the tenant's too.
    let audit = sup.get("/api/audit?limit=1000").await;
    assert_eq!(audit.status, 200);
    let viewed_by_nordby = audit
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user"] == NORDBY.0 && e["action"] == "subscriber.view")
        .count();
    assert_eq!(viewed_by_nordby, 1);
    let calls_viewed: Vec<(String, u64)> = audit
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "call.view")
        .map(|e| {
            (
                e["user"].as_str().unwrap().to_owned(),
                e["call"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        calls_viewed.contains(&(NORDBY.0.to_owned(), 2)),
        "{calls_viewed:?}"
    );
    assert!(
        calls_viewed.contains(&(VAKTBY.0.to_owned(), 3)),
        "{calls_viewed:?}"
    );
    // A refused Call was not shown, so it is no view.
    assert!(
        !calls_viewed.contains(&(NORDBY.0.to_owned(), 1)),
        "{calls_viewed:?}"
    );
    srv.stop().await.unwrap();
}

/// The open Calls' ids of a `snapshot` message, sorted.
fn snapshot_ids(m: &Value) -> Vec<u64> {
    assert_eq!(m["type"], "snapshot", "{m}");
    let mut v: Vec<u64> = m["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    v.sort_unstable();
    v
}

/// The messages of a feed up to and with the next of `kind` (`alive` left out).
async fn until(live: &mut Live, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..50 {
        let m = live.next().await;
        if m["type"] == "alive" {
            continue;
        }
        let last = m["type"] == kind;
        seen.push(m);
        if last {
            return seen;
        }
    }
    panic!("no {kind} message in {seen:?}");
}

#[tokio::test]
async fn each_tenant_follows_its_own_people_live() {
    let dir = tempfile::tempdir().unwrap();
    centre(dir.path());
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let tcp = srv.dc09_tcp.unwrap();

    // The centre's feed: every open Call and the figures.
    let op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut centre_feed = Live::connect(&op).await;
    let m = centre_feed.next().await;
    assert_eq!(snapshot_ids(&m), [1, 2]);
    assert!(m.get("stats").is_some(), "{m}");

    // Each tenant's: their people's open Calls, no figures, no staffing.
    let mut feeds = Vec::new();
    for ((user, password), open) in [
        (VAKTBY, &[1][..]),
        (NORDBY, &[2][..]),
        (CENTRUM, &[1, 2][..]),
    ] {
        let c = Client::login(http, user, password).await;
        let mut live = Live::connect(&c).await;
        let m = live.next().await;
        assert_eq!(snapshot_ids(&m), open, "{user}: {m}");
        assert!(m.get("stats").is_none(), "{user}: {m}");
        feeds.push(live);
    }
    let [vaktby, nordby, centrum] = &mut feeds[..] else {
        unreachable!()
    };

    // Anna presses again: Vaktby and Centrum are told, Nordby is not.
    let frame = plain("ADM-CID", 1, "1234", "#1234|1101 01 001");
    assert_eq!(token_of(&tcp_roundtrip(tcp, &frame).await), "ACK");
    let m = centre_feed.next_of("call").await;
    assert_eq!(m["call"]["id"], 1, "{m}");
    for live in [&mut *vaktby, &mut *centrum] {
        let m = until(live, "call").await;
        assert_eq!(m.last().unwrap()["call"]["id"], 1, "{m:?}");
        assert!(m.iter().all(|m| m["type"] == "call"), "{m:?}");
    }
    // Then Cia: Nordby and Centrum.
    let frame = plain("ADM-CID", 2, "5678", "#5678|1101 01 001");
    assert_eq!(token_of(&tcp_roundtrip(tcp, &frame).await), "ACK");
    for live in [&mut *nordby, &mut *centrum] {
        let m = until(live, "call").await;
        assert_eq!(m.len(), 1, "nothing before Cia's Call: {m:?}");
        assert_eq!(m[0]["call"]["id"], 2, "{m:?}");
    }

    // Cia moves to Vaktby: Nordby's feed loses her Call and reloads her card (now a 404);
    // Vaktby's gains it. Vaktby was told nothing of her Call before.
    let mut sup = Client::login(http, SUPERVISOR.0, SUPERVISOR.1).await;
    let mut card = sup.get("/api/subscribers/cia").await.json();
    card["municipality"] = json!("Vaktby kommun");
    let a = sup
        .send(
            "PUT",
            "/api/subscribers/cia",
            Some(("application/json", card.to_string())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let m = until(nordby, "subscriber").await;
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(snapshot_ids(&m[0]), Vec::<u64>::new());
    assert_eq!(m[1]["id"], "cia");
    let m = until(vaktby, "subscriber").await;
    assert_eq!(m.len(), 2, "no Call of Cia's before the move: {m:?}");
    assert_eq!(snapshot_ids(&m[0]), [1, 2]);
    assert_eq!(m[1]["id"], "cia");
    let m = until(centrum, "subscriber").await;
    assert_eq!(snapshot_ids(&m[0]), [1, 2]);

    // Their consoles do not count towards the staffing floor.
    let staffing = sup.get("/api/staffing").await;
    assert_eq!(staffing.status, 200, "{}", staffing.body);
    let v = staffing.json();
    assert_eq!(v["on_duty_users"], json!([OPERATOR.0]), "{v}");
    let away: Vec<&str> = v["away_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(away, [SUPERVISOR.0], "{v}");

    // Both devices' batteries run low: a work order each. Nordby (no longer Cia's) sees
    // neither; Vaktby both; and not another's by id.
    for (seq, account) in [(3, "1234"), (4, "5678")] {
        let frame = plain("ADM-CID", seq, account, &format!("#{account}|1302 01 001"));
        assert_eq!(token_of(&tcp_roundtrip(tcp, &frame).await), "ACK");
    }
    let orders = wait_for(
        "two work orders",
        std::time::Duration::from_secs(10),
        || {
            let mut sup = sup.clone();
            async move {
                let v = sup.get("/api/work_orders").await.json();
                (v.as_array().unwrap().len() == 2).then_some(v)
            }
        },
    )
    .await;
    let id_of = |account: &str| {
        orders
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["account"] == account)
            .unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let (annas, cias) = (id_of("1234"), id_of("5678"));
    let mut nordby = Client::login(http, NORDBY.0, NORDBY.1).await;
    assert_eq!(nordby.get("/api/work_orders").await.json(), json!([]));
    assert_eq!(
        nordby.get(&format!("/api/work_orders/{cias}")).await.status,
        404
    );
    let mut vaktby = Client::login(http, VAKTBY.0, VAKTBY.1).await;
    assert_eq!(
        vaktby
            .get("/api/work_orders")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let mut centrum = Client::login(http, CENTRUM.0, CENTRUM.1).await;
    assert_eq!(
        centrum
            .get(&format!("/api/work_orders/{annas}"))
            .await
            .status,
        200
    );
    // Reading is all: the installer's work is the centre's.
    let a = centrum
        .post(&format!("/api/work_orders/{annas}/start"), json!({}))
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
}

#[test]
fn a_tenants_role_needs_its_tenant_and_the_centres_roles_take_none() {
    use vakt::cli::offline::tenant_for;
    assert!(tenant_for(Role::Municipality, None).is_err());
    assert!(tenant_for(Role::Provider, Some("  ")).is_err());
    assert!(tenant_for(Role::Operator, Some("Vaktby kommun")).is_err());
    assert_eq!(
        tenant_for(Role::Municipality, Some(" Nordby kommun ")).unwrap(),
        Some("Nordby kommun")
    );
    assert_eq!(tenant_for(Role::Admin, None).unwrap(), None);
}
