//! The staffing floor and overload against a real server on 127.0.0.1:0: two operators'
//! consoles beat over the live feed; one stops being used, comes back, then closes: the
//! figures (the live feed, the header's `GET /api/supervision`, `GET /api/staffing`) and the
//! metrics go below the floor and back. A Call left waiting past the limit is an overload
//! until an operator takes it. A supervisor sees who is on duty and whom to call in (the
//! staff list imported with the directory); an operator sees only the figures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::sync::watch;
use vakt::model::Role;
use vakt::registers::directory::{DEMO_AREAS, DEMO_PATROLS, DEMO_PROVIDERS, DEMO_ROUTES};
use vakt::registers::staff::DEMO_STAFF;

const OLA: (&str, &str) = ("ola", "ola-password-11");
const ASA: (&str, &str) = ("asa", "asa-password-22");
const SARA: (&str, &str) = ("sara", "sara-password-33");

/// What a console's user does.
#[derive(Clone, Copy, Debug)]
enum Use {
    /// Works at it (every beat says no idle time).
    Working,
    /// Last touched it then.
    LeftAt(Instant),
    /// Closed it.
    Closed,
}

/// A console that beats every 300 ms as the page does (the seconds since its last input),
/// until it is closed or its sender is dropped.
fn console(live: Live, idle: watch::Receiver<Use>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut live = live;
        loop {
            let secs = match *idle.borrow() {
                Use::Working => 0,
                Use::LeftAt(t) => t.elapsed().as_secs(),
                Use::Closed => break,
            };
            live.send(json!({"type": "presence", "idle_secs": secs}))
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if idle.has_changed().is_err() {
                break;
            }
        }
    })
}

/// Reads `live` until a `staffing` message for which `pred` holds; returns its figures.
async fn staffing_until(live: &mut Live, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let m = live.next_of("staffing").await;
        if pred(&m["staffing"]) {
            return m["staffing"].clone();
        }
    }
    panic!("no staffing message with {what}");
}

async fn figures(c: &mut Client) -> Value {
    let a = c.get("/api/supervision").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["staffing"].clone()
}

async fn staffing(c: &mut Client) -> Value {
    let a = c.get("/api/staffing").await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

async fn metrics_are(http: SocketAddr, want: &[(&str, f64)]) {
    wait_for("the metrics", Duration::from_secs(5), || async {
        for (series, v) in want {
            if metric(http, series).await != *v {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test]
async fn below_the_floor_and_calls_waiting_too_long_warn_and_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    vakt::cli::import_devices(store_at(dir), devices_csv().as_bytes()).unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OLA.0, Role::Operator, OLA.1);
    add_user(dir, ASA.0, Role::Operator, ASA.1);
    add_user(dir, SARA.0, Role::Supervisor, SARA.1);
    let mut cfg = test_config(dir);
    cfg.staffing.min_operators = 2;
    cfg.staffing.queue_wait_warn_secs = 2;
    cfg.staffing.console_timeout_secs = 3;
    cfg.staffing.idle_away_secs = 3;
    let srv = start_with(cfg).await;
    let (http, tcp) = (srv.http.unwrap(), srv.dc09_tcp.unwrap());

    // The directory with its staff list.
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let a = admin
        .post(
            "/api/directory/import",
            json!({"providers": DEMO_PROVIDERS, "areas": DEMO_AREAS, "patrols": DEMO_PATROLS,
                "routes": DEMO_ROUTES, "staff": DEMO_STAFF}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["staff"], 5);
    // A bad staff file imports nothing, with its problems by line.
    let a = admin
        .post(
            "/api/directory/import",
            json!({"providers": DEMO_PROVIDERS, "areas": DEMO_AREAS, "patrols": DEMO_PATROLS,
                "routes": DEMO_ROUTES, "staff": "name,phone,role,note\nPer,,,\n"}),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("line 2: phone is empty"), "{}", a.body);

    // The supervisor watches; the two operators' consoles beat, in use.
    let mut sara = Client::login(http, SARA.0, SARA.1).await;
    let mut watching = Live::connect(&sara).await;
    let mut ola = Client::login(http, OLA.0, OLA.1).await;
    let (_ola_idle, ola_rx) = watch::channel(Use::Working);
    let ola_console = console(Live::connect(&ola).await, ola_rx);
    let asa = Client::login(http, ASA.0, ASA.1).await;
    let (asa_idle, asa_rx) = watch::channel(Use::Working);
    let asa_console = console(Live::connect(&asa).await, asa_rx);

    let f = staffing_until(&mut watching, "two on duty", |f| f["on_duty"] == 2).await;
    assert_eq!(f["below_floor"], false);
    assert_eq!(f["min_operators"], 2);
    assert_eq!(figures(&mut sara).await["on_duty"], 2);
    metrics_are(
        http,
        &[
            ("vakt_operators_active", 2.0),
            ("vakt_staffing_below_floor", 0.0),
        ],
    )
    .await;

    // Åsa's console is left open and nobody uses it (no input for longer than 3 s).
    asa_idle.send(Use::LeftAt(Instant::now())).unwrap();
    let f = staffing_until(&mut watching, "below the floor", |f| {
        f["below_floor"] == true
    })
    .await;
    assert_eq!(f["on_duty"], 1);
    let header = figures(&mut sara).await;
    assert_eq!(
        (header["below_floor"].clone(), header["on_duty"].clone()),
        (json!(true), json!(1))
    );
    metrics_are(
        http,
        &[
            ("vakt_operators_active", 1.0),
            ("vakt_staffing_below_floor", 1.0),
        ],
    )
    .await;
    // The supervisor sees who is on duty, who is away and why, and whom to call in.
    let s = staffing(&mut sara).await;
    assert_eq!(s["on_duty_users"], json!(["ola"]));
    assert_eq!(
        s["away_users"][0],
        json!({"username": "asa", "why": "idle"}),
        "{s}"
    );
    let call_in = s["call_in"].as_array().unwrap();
    assert_eq!(call_in.len(), 5);
    assert_eq!(
        call_in[0],
        json!({"name": "Karin Berg", "phone": "070-174 07 01", "role": "larmoperatör",
            "note": "Bor 10 minuter bort; dag och kväll"})
    );
    // An operator sees the figures, not the list.
    let o = staffing(&mut ola).await;
    assert_eq!(
        (o["below_floor"].clone(), o["on_duty"].clone()),
        (json!(true), json!(1))
    );
    assert!(
        o.get("call_in").is_none() && o.get("on_duty_users").is_none(),
        "{o}"
    );

    // Åsa touches her console again: back at the floor.
    asa_idle.send(Use::Working).unwrap();
    staffing_until(&mut watching, "back at the floor", |f| {
        f["below_floor"] == false && f["on_duty"] == 2
    })
    .await;
    metrics_are(http, &[("vakt_staffing_below_floor", 0.0)]).await;

    // She closes it: below the floor once the console timeout has passed.
    asa_idle.send(Use::Closed).unwrap();
    asa_console.await.unwrap();
    let f = staffing_until(&mut watching, "below the floor again", |f| {
        f["below_floor"] == true
    })
    .await;
    assert_eq!(f["on_duty"], 1);
    let s = staffing(&mut sara).await;
    assert_eq!(
        s["away_users"][0],
        json!({"username": "asa", "why": "no_console"})
    );

    // A Call nobody takes: an overload once it has waited longer than 2 s.
    let frame = plain("ADM-CID", 1, "1234", "#1234|1101 01 001");
    assert_eq!(token_of(&tcp_roundtrip(tcp, &frame).await), "ACK");
    let f = staffing_until(&mut watching, "a call waiting too long", |f| {
        f["waiting_over"] == 1
    })
    .await;
    assert_eq!(f["waiting"], 1);
    assert!(f["oldest_wait_secs"].as_u64().unwrap() > 2, "{f}");
    assert_eq!(f["queue_wait_warn_secs"], 2);
    assert_eq!(figures(&mut ola).await["waiting_over"], 1);
    metrics_are(http, &[("vakt_queue_waiting_over_limit", 1.0)]).await;
    assert!(metric(http, "vakt_queue_oldest_wait_seconds").await > 2.0);

    // Ola takes it: the overload clears.
    let a = ola.post("/api/calls/next", json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let f = staffing_until(&mut watching, "no call waiting", |f| f["waiting_over"] == 0).await;
    assert_eq!(f["oldest_wait_secs"], Value::Null);
    metrics_are(
        http,
        &[
            ("vakt_queue_waiting_over_limit", 0.0),
            ("vakt_queue_oldest_wait_seconds", 0.0),
        ],
    )
    .await;

    // Åsa logs in again at another console: the floor is met.
    let asa = Client::login(http, ASA.0, ASA.1).await;
    let (_asa_idle, asa_rx) = watch::channel(Use::Working);
    let asa_console = console(Live::connect(&asa).await, asa_rx);
    staffing_until(&mut watching, "two on duty again", |f| {
        f["below_floor"] == false && f["on_duty"] == 2
    })
    .await;
    metrics_are(
        http,
        &[
            ("vakt_operators_active", 2.0),
            ("vakt_staffing_below_floor", 0.0),
        ],
    )
    .await;

    ola_console.abort();
    asa_console.abort();
    srv.stop().await.unwrap();
}
