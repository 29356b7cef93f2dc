//! Two vakt nodes on one PostgreSQL, as `vakt serve` runs them with `[store] backend =
//! "postgres"`: one leads and serves, the other stands by (its `/ready` answers 503 and it
//! listens for no device); a kill -9 of the leader hands over to the standby, which then
//! answers the devices and knows every alarm the leader acknowledged.
//!
//! A patrol dispatched by the old leader reconnects to the new one and finds its open
//! assignment; its arrival reaches the operator there.
//!
//! Set-up commands (`vakt users add --config`) work on the database before the nodes start,
//! and refuse to write while a node leads; an operator's session outlives the take-over.
//!
//! The take-over time (from the kill to the first acknowledgement by the new leader) is
//! printed, not asserted: it is measured here with the default lease (5 s, renewed every 1 s).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
#![forbid(unsafe_code)]

mod common;

use std::time::{Duration, Instant};

use common::node::{ADMIN, VaktNode, alarm, free_port, vakt};
use common::postgres::Postgres;
use common::{http_get, metric};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_after_a_kill_9_of_the_leader_and_knows_every_acked_alarm() {
    let Some(pg) = Postgres::single() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.primary.url();

    // Set-up before the nodes start, on the database, as with a data directory.
    let a_cfg = VaktNode::config(dir.path(), &url, "a");
    let a_cfg = a_cfg.to_str().unwrap();
    let (code, err, _) = vakt(
        &[
            "users", "add", ADMIN.0, "--role", "admin", "--config", a_cfg,
        ],
        &format!("{}\n", ADMIN.1),
    );
    assert_eq!(code, 0, "{err}");

    let mut a = VaktNode::start(dir.path(), &url, "a");
    a.wait_for("vakt ready", Duration::from_secs(60));
    assert!(a.printed().contains("node a leads"), "{}", a.printed());
    let b = VaktNode::start(dir.path(), &url, "b");
    b.wait_for("on standby", Duration::from_secs(60));

    // The standby: 503 on /ready naming the leader, and no device listener.
    let (status, body) = http_get(b.http, "/ready").await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = http_get(b.http, "/live").await;
    assert_eq!(status, 200);
    assert!(
        tokio::net::TcpStream::connect(b.dc09).await.is_err(),
        "a standby refuses devices, so they turn to their backup path"
    );
    let (status, body) = http_get(a.http, "/ready").await;
    assert_eq!(status, 200, "{body}");
    let body = common::wait_for(
        "the standby to name the leader",
        Duration::from_secs(10),
        || async {
            let (_, body) = http_get(b.http, "/ready").await;
            body.contains("the leader is a").then_some(body)
        },
    )
    .await;
    assert!(body.starts_with("standby"), "{body}");

    // A command that writes refuses while a node leads; one that reads works beside it.
    let (code, err, _) = vakt(
        &[
            "users", "add", "late", "--role", "operator", "--config", a_cfg,
        ],
        "another-password-1\n",
    );
    assert_ne!(code, 0);
    assert!(err.contains("node (a) leads"), "{err}");
    let (code, err, out) = vakt(&["users", "list", "--config", a_cfg], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(ADMIN.0) && !out.contains("late"), "{out}");

    // An operator logged in on the leader.
    let mut console = common::Client::login(a.http, ADMIN.0, ADMIN.1).await;

    // Alarms from two homes, each acknowledged by the leader.
    for seq in 1..=10u16 {
        let account = if seq % 2 == 0 { "7001" } else { "7002" };
        assert_eq!(alarm(a.dc09, seq, account).await.unwrap(), "ACK");
    }
    let open_before = metric(a.http, "vakt_calls_open").await;
    assert_eq!(open_before, 2.0, "one Call per home");

    // The leader's machine dies.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    let taken_over = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the standby did not take over:\n{}",
            b.printed()
        );
        if let Ok(token) = alarm(b.dc09, 11, "7003").await {
            assert_eq!(token, "ACK");
            break killed.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "take-over: {} ms from kill -9 of the leader to the first ACK by the new leader",
        taken_over.as_millis()
    );
    b.wait_for("node b leads", Duration::from_secs(10));
    let (status, body) = http_get(b.http, "/ready").await;
    assert_eq!(status, 200, "{body}");

    // Every alarm the old leader acknowledged is in the new leader's Calls: the two homes'
    // Calls came back open, and the third home's is new.
    assert_eq!(metric(b.http, "vakt_calls_open").await, 3.0);
    // The operator's session holds on the new leader (sessions are in the database): the
    // console, sent to b's address, sees the three homes' Calls without logging in again.
    console.addr = b.http;
    let calls = console.get("/api/calls?state=open").await;
    assert_eq!(calls.status, 200, "{}", calls.body);
    let accounts: std::collections::BTreeSet<String> = calls
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["account"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        accounts,
        ["7001", "7002", "7003"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let journaled = pg
        .query(&pg.primary, "SELECT count(*) FROM journal")
        .unwrap();
    assert_eq!(journaled.trim(), "11", "ten acknowledged by a, one by b");
    // The journal's ids stayed consecutive across the two leaders.
    let max = pg
        .query(&pg.primary, "SELECT max(id) FROM journal")
        .unwrap();
    assert_eq!(max.trim(), "11");
    // The new leader's writes are fenced by a later epoch (1 was the set-up command's, 2
    // a's).
    let epoch = pg
        .query(&pg.primary, "SELECT epoch, holder FROM leader_lease")
        .unwrap();
    assert_eq!(epoch.trim(), "3|b");
    assert!(
        tokio::net::TcpStream::connect(a.http).await.is_err(),
        "the old leader is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_database_does_not_answer_waits_on_standby_instead_of_exiting() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: as while the database's cluster starts or fails over.
    let url = format!("postgresql://vakt@127.0.0.1:{}/vakt", free_port());
    let mut n = VaktNode::start(dir.path(), &url, "a");
    n.wait_for("on standby", Duration::from_secs(30));
    n.wait_for("the database is not ready", Duration::from_secs(30));
    let (status, body) = http_get(n.http, "/ready").await;
    assert_eq!(status, 503, "{body}");
    // Still there a few tries later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(n.child.try_wait().unwrap().is_none(), "{}", n.printed());
    assert!(
        tokio::net::TcpStream::connect(n.dc09).await.is_err(),
        "no device listener without the lease"
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&n.child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = n.child.wait().unwrap();
    assert!(
        status.success(),
        "a stop asked for ends it cleanly: {status:?}"
    );
}

/// The operator's Call and the patrol's assignment outlive the leader: dispatched on `a`, the
/// patrol reconnects to `b` after a kill -9 of `a` and finds its open assignment there, and
/// its arrival reaches the operator through `b`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patrol_finds_its_open_assignment_on_the_new_leader() {
    use serde_json::json;
    use vakt::dispatch::wire::{FromPatrol, ToPatrol};
    use vakt::sim::patrol_client::Session;
    use vakt::transport::quic::{self, Trust};

    let Some(pg) = Postgres::single() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.primary.url();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("patrol.pem"), dir.path().join("patrol.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let pa = VaktNode::patrol_link(dir.path(), &url, "a", &cert, &key);
    let pb = VaktNode::patrol_link(dir.path(), &url, "b", &cert, &key);
    let cfg = VaktNode::config(dir.path(), &url, "a");
    let cfg = cfg.to_str().unwrap();

    // The registers, a user and the patrol's token, on the database.
    let file = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let devices = file("devices.csv", common::devices_csv());
    let subscribers = file(
        "subscribers.csv",
        format!(
            "{}\nanna,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Centrum,070-111 22 33,Hemtjänst Centrum,2,Nyckelskåp,,4711#,,,,Karin Öberg,dotter,070-222 33 44,,,,,,,sv\n",
            vakt::registers::subscribers::CSV_HEADER
        ),
    );
    let providers = file(
        "providers.csv",
        "id,name,phone\nhc,Hemtjänst Centrum,08-1\n".into(),
    );
    let areas = file(
        "areas.csv",
        "id,name,arrival_limit_mins\ncentrum,Centrum,30\n".into(),
    );
    let patrols = file(
        "patrols.csv",
        "id,name,provider,areas,shifts,phone\nc1,Centrum 1,hc,centrum,day 00:00-12:00;evening 12:00-00:00,070-1\n".into(),
    );
    let routes = file(
        "routes.csv",
        "provider,area,patrols\nhc,centrum,c1\n".into(),
    );
    for args in [
        vec!["devices", "import", "--config", cfg, &devices],
        vec![
            "directory",
            "import",
            "--config",
            cfg,
            "--providers",
            &providers,
            "--areas",
            &areas,
            "--patrols",
            &patrols,
            "--routes",
            &routes,
        ],
        vec!["subscribers", "import", "--config", cfg, &subscribers],
    ] {
        let (code, err, _) = vakt(&args, "");
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let (code, err, _) = vakt(
        &[
            "users", "add", ADMIN.0, "--role", "operator", "--config", cfg,
        ],
        &format!("{}\n", ADMIN.1),
    );
    assert_eq!(code, 0, "{err}");
    let (code, err, token) = vakt(&["patrols", "token", "c1", "--config", cfg], "");
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();

    let mut a = VaktNode::start(dir.path(), &url, "a");
    a.wait_for("vakt ready", Duration::from_secs(60));
    let b = VaktNode::start(dir.path(), &url, "b");
    b.wait_for("on standby", Duration::from_secs(60));
    let fp = a
        .printed()
        .lines()
        .find_map(|l| {
            l.split("fingerprint ")
                .nth(1)
                .map(|f| f.split(' ').next().unwrap().to_owned())
        })
        .expect("the patrol link's fingerprint is printed");
    let trust = Trust::Pinned(quic::parse_fingerprint(&fp).unwrap());

    // An alarm, taken and dispatched on a; the patrol receives it there.
    assert_eq!(alarm(a.dc09, 1, "1234").await.unwrap(), "ACK");
    let mut op = common::Client::login(a.http, ADMIN.0, ADMIN.1).await;
    let id = common::first_open_call(&op, Duration::from_secs(10)).await;
    assert_eq!(
        op.post(&format!("/api/calls/{id}/claim"), json!({}))
            .await
            .status,
        200
    );
    let d = op
        .post(&format!("/api/calls/{id}/dispatch"), json!({}))
        .await;
    assert_eq!(d.status, 201, "{}", d.body);
    let did = d.json()["id"].as_u64().unwrap();
    let addr_a = format!("127.0.0.1:{pa}").parse().unwrap();
    let (mut s, welcome, _) = Session::connect(addr_a, &trust, "c1", &token)
        .await
        .unwrap();
    assert_eq!(welcome.open, vec![did]);
    let seq = s.next_seq();
    let ev = FromPatrol::Received {
        seq,
        dispatch: did,
        at: jiff::Timestamp::now(),
    };
    assert!(matches!(
        s.send_event(&ev).await.unwrap(),
        ToPatrol::Ack { .. }
    ));

    // a dies; the patrol's app reconnects (to the address that now leads) until it is in.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    drop(s);
    let killed = Instant::now();
    let addr_b = format!("127.0.0.1:{pb}").parse().unwrap();
    let (mut s, welcome, assignments) = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "{}",
            b.printed()
        );
        if let Ok(session) = Session::connect(addr_b, &trust, "c1", &token).await {
            break session;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "patrol back: {} ms from kill -9 of the leader to the patrol's session on the new leader",
        killed.elapsed().as_millis()
    );
    assert_eq!(
        welcome.open,
        vec![did],
        "the open assignment is known to the new leader"
    );
    assert_eq!(assignments[0].subscriber.name, "Åsa Öberg");
    let seq = s.next_seq();
    let ev = FromPatrol::Arrived {
        seq,
        dispatch: did,
        at: jiff::Timestamp::now(),
        method: vakt::model::ArrivalMethod::App,
        code: None,
    };
    assert!(matches!(
        s.send_event(&ev).await.unwrap(),
        ToPatrol::Ack { .. }
    ));

    // The operator's console, now on b with the same session, sees the arrival.
    op.addr = b.http;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let call = op.get(&format!("/api/calls/{id}")).await;
        assert_eq!(call.status, 200, "{}", call.body);
        if call.json()["dispatches"][0]["state"] == "arrived" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", call.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
