//! `vakt store migrate --from sled DIR --to postgresql://…` on a real PostgreSQL
//! (tests/common/postgres.rs), with the binary: a single node's store (users, sessions, open
//! and closed Calls with their timelines, dispatches, audit, outbox, work orders, plans,
//! devices, subscribers, last-heard times, and a journal of a few thousand records over
//! several batches) is refused while a vakt runs on it, then moved; PostgreSQL's store then
//! reads the same through the domain operations, a `vakt serve` node on the database leads
//! with the same Calls open, and a second migration into the same database is refused.
//!
//! Skipped with a note where PostgreSQL is missing, unless `VAKT_REQUIRE_POSTGRES` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
#![forbid(unsafe_code)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::{http_get, metric};
use jiff::Timestamp;
use vakt::model::plan::ResponsePlan;
use vakt::model::{
    AuditEntry, Call, CallState, Device, Dispatch, Outcome, Priority, Role, Subscriber,
    TimelineEntry, TimelineEvent,
};
use vakt::store::{
    JournalRecord, NewRecord, OutboxRecord, SessionRecord, Store, UserRecord, encode_record,
};

const BIN: &str = env!("CARGO_BIN_EXE_vakt");

/// The password in the target's URL.
const SECRET: &str = "hunter2-not-shown";

/// Journal records: several of the copy's batches (1000), in entries of 7 as group commits
/// pack them.
const JOURNAL: u64 = 3_500;
/// Devices, subscribers and their last-heard times: more than one batch of a tree.
const DEVICES: usize = 1_200;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn at(mins_ago: i64) -> Timestamp {
    Timestamp::now() - jiff::SignedDuration::from_mins(mins_ago)
}

fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn signal_line(id: u64, account: &str, mins_ago: i64) -> TimelineEntry {
    TimelineEntry {
        at: at(mins_ago),
        user: None,
        what: TimelineEvent::Signal {
            signal_id: id,
            account: account.into(),
            code: "SIA MA".into(),
            description: "Medical alarm".into(),
            qualifier: "new".into(),
            zone: Some(1),
        },
    }
}

fn call(id: u64, state: CallState, account: &str) -> Call {
    let closed = state == CallState::Closed;
    Call {
        id,
        priority: Priority(1),
        state,
        owner: (state != CallState::Queued).then(|| "anna".into()),
        opened_at: at(60 - id as i64),
        alarm_count: 2,
        subscriber: Some(format!("S-{account}")),
        account: account.into(),
        kind: "Medical".into(),
        restored: closed,
        answered_at: (state != CallState::Queued).then(|| at(50)),
        closed_at: closed.then(|| at(40)),
        outcome: closed.then_some(Outcome::PatrolNeeded),
        timeline: vec![
            signal_line(id * 10, account, 60),
            signal_line(id * 10 + 1, account, 59),
            TimelineEntry {
                at: at(58),
                user: None,
                what: TimelineEvent::Restored,
            },
        ],
        last_signal_id: id * 10 + 1,
    }
}

/// A single node's store with a bit of everything, as years of service leave it.
fn fill(dir: &Path) {
    fill_with(dir, false);
}

/// [`fill`], the journal in its own log where `log` is set.
fn fill_with(dir: &Path, log: bool) {
    let store = Store::open_with(dir, 64 << 20, log).unwrap();
    assert_eq!(store.journal_in_log(), log);
    let user = |name: &str, role| UserRecord {
        name: name.into(),
        role,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${name}"),
        created_at: at(10_000),
        disabled: name == "old",
        language: None,
        tenant: None,
    };
    store.put_user(&user("admin", Role::Admin)).unwrap();
    store.put_user(&user("anna", Role::Operator)).unwrap();
    store.put_user(&user("old", Role::Operator)).unwrap();
    for i in 0..3u8 {
        let session = SessionRecord {
            user: "anna".into(),
            role: Role::Operator,
            created_at: at(30),
            expires_at: at(-600),
        };
        store.put_session(&[i; 32], &session).unwrap();
    }

    let accounts: Vec<String> = (0..DEVICES)
        .map(|i| format!("{:04X}", 0x1000 + i))
        .collect();
    let devices: Vec<Device> = accounts
        .iter()
        .map(|a| {
            json(serde_json::json!({
                "account": a, "line": null, "receiver": null, "key": null, "key_format": null,
                "subscriber": format!("S-{a}"), "supervision_secs": null,
                "telecom_operator": "Telia", "area": "Centrum", "device_type": "pendant",
            }))
        })
        .collect();
    store.upsert_devices(&devices).unwrap();
    let subscribers: Vec<Subscriber> = accounts
        .iter()
        .map(|a| Subscriber {
            id: format!("S-{a}"),
            ..Subscriber::default()
        })
        .collect();
    store.upsert_subscribers(&subscribers).unwrap();
    let heard: Vec<(String, i64)> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.clone(), at(0).as_millisecond() - i as i64))
        .collect();
    store.save_last_heard(&heard).unwrap();

    // The journal: group commits of 7 records.
    let journal = store.journal_store();
    let mut id = 1;
    while id <= JOURNAL {
        let batch: Vec<NewRecord> = (id..(id + 7).min(JOURNAL + 1))
            .map(|n| {
                let mut signal = vakt::model::testing::signal();
                signal.id = 0;
                signal.account = accounts[n as usize % accounts.len()].clone();
                signal.seq = format!("{:04}", n % 10_000);
                signal.received_at = Timestamp::from_second(1_800_000_000 + n as i64).unwrap();
                signal.raw = format!("frame {n}").into_bytes();
                let dedup = (n % 3 != 0).then(|| {
                    let mut k = [0u8; 16];
                    k[8..].copy_from_slice(&n.to_be_bytes());
                    k
                });
                let record = JournalRecord {
                    signal: signal.clone(),
                    dedup: dedup.map(hex::encode),
                };
                NewRecord {
                    json: encode_record(&record).unwrap(),
                    received_at: signal.received_at,
                    dedup,
                }
            })
            .collect();
        journal.commit(id, &batch).unwrap();
        id += batch.len() as u64;
    }

    // Calls: three open (queued, claimed), four closed; the triage cursor at the journal's
    // end, so that a node starting on it triages nothing again.
    let mut calls = vec![
        call(1, CallState::Queued, &accounts[0]),
        call(2, CallState::Claimed, &accounts[1]),
        call(3, CallState::Queued, &accounts[2]),
    ];
    for i in 4..=7 {
        calls.push(call(i, CallState::Closed, &accounts[i as usize]));
    }
    store.save_calls(&calls, Some(JOURNAL)).unwrap();
    let dispatch: Dispatch = json(serde_json::json!({
        "id": 1, "call": 4, "patrol": "natt-1", "provider": "Hemtjänst Nord",
        "area": "Centrum", "state": "completed", "offered_at": at(55),
        "received_at": at(54), "accepted_at": at(54), "arrived_at": at(45),
        "arrival_method": "app", "ended_at": at(41), "limit_mins": 30,
        "warned_at_mins": [], "breached": false, "operator": "anna",
        "note": "helped to bed",
    }));
    store.save_dispatches(&[dispatch]).unwrap();
    store
        .append_timeline(
            4,
            &[TimelineEntry {
                at: at(41),
                user: Some("natt-1".into()),
                what: TimelineEvent::Restored,
            }],
        )
        .unwrap();

    for i in 0..300u64 {
        store
            .audit(AuditEntry {
                seq: 0,
                at: at(300 - i as i64),
                user: "anna".into(),
                action: if i % 2 == 0 {
                    "call.view"
                } else {
                    "subscriber.view"
                }
                .into(),
                call: Some(1 + i % 7),
                subscriber: Some(format!("S-{}", accounts[i as usize % DEVICES])),
                detail: String::new(),
            })
            .unwrap();
    }
    let outbox: Vec<(OutboxRecord, Vec<u8>)> = (1..=5u64)
        .map(|i| {
            let r: OutboxRecord = json(serde_json::json!({
                "id": i, "endpoint": "installer", "recipient_kind": "installer",
                "recipient": "Larmteknik AB", "event": "work_order.created",
                "subject": format!("work_order/{i}"), "created_at": at(20),
                "attempts": if i < 3 { 1 } else { 0 },
                "delivered_at": if i < 3 { Some(at(19)) } else { None },
                "body_bytes": 2,
            }));
            (r, b"{}".to_vec())
        })
        .collect();
    store.outbox_add(&outbox).unwrap();
    let orders: Vec<vakt::model::work_order::WorkOrder> = (1..=4u64)
        .map(|i| {
            json(serde_json::json!({
                "id": i, "account": accounts[i as usize], "subscriber": format!("S-{}", accounts[i as usize]),
                "installer": "Larmteknik AB", "fault": "low_battery",
                "state": if i == 4 { "done" } else { "new" },
                "created_at": at(100), "start_by": at(-3000), "done_by": at(-10000),
                "done_at": if i == 4 { Some(at(5)) } else { None },
                "signal_ids": [i],
            }))
        })
        .collect();
    store.save_work_orders(&orders, None).unwrap();
    let plan = ResponsePlan {
        relatives_first: Some(true),
        instructions: "The key is with the neighbour.".into(),
        kinds: Vec::new(),
    };
    store
        .save_plan(&subscribers[0].id, "admin", at(500), &plan)
        .unwrap();
    let plan = ResponsePlan {
        instructions: "Ring twice.".into(),
        ..plan
    };
    store
        .save_plan(&subscribers[0].id, "admin", at(400), &plan)
        .unwrap();
}

/// Runs `vakt` with `args`; its exit code, standard output and standard error.
fn vakt(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("VAKT_STORE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `vakt serve` as a child process, with what it printed.
struct Serve {
    child: Child,
    http: SocketAddr,
    out: Arc<Mutex<String>>,
}

impl Serve {
    /// On the sled data directory `data`, or, with `url`, as node `a` on PostgreSQL.
    fn start(dir: &Path, data: &Path, url: Option<&str>) -> Serve {
        let http = free_port();
        let store = match url {
            Some(url) => {
                format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nnode = \"a\"\n")
            }
            None => String::new(),
        };
        let cfg = dir.join("vakt.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = {data:?}\n\
                 [dc09]\nlisten_tcp = \"127.0.0.1:0\"\nlisten_udp = \"127.0.0.1:0\"\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\n[patrol]\nlisten_quic = \"127.0.0.1:0\"\n\
                 [scaip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = \"127.0.0.1:0\"\n{store}"
            ),
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let seen = out.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Serve {
            child,
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            out,
        }
    }

    fn printed(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str) {
        let start = Instant::now();
        while !self.printed().contains(what) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what:?}:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as an operator stops it, and its end.
    fn stop(mut self) {
        use rustix::process::{Pid, Signal, kill_process};
        kill_process(Pid::from_child(&self.child), Signal::TERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}:\n{}", self.printed());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn journal_json(store: &Store) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.journal_after(after, 700).unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        after = last.signal.id;
        out.extend(page.iter().map(|r| serde_json::to_value(r).unwrap()));
    }
}

/// What the domain operations read from `store`, to compare one backend with the other.
fn domain_view(store: &Store) -> serde_json::Value {
    let closed: Vec<Call> = (4..=7).map(|id| store.call(id).unwrap().unwrap()).collect();
    let orders: Vec<_> = (1..=4).map(|id| store.work_order(id).unwrap()).collect();
    let outbox: Vec<_> = (1..=5)
        .map(|id| {
            (
                store.outbox_record(id).unwrap(),
                store.outbox_body(id).unwrap(),
            )
        })
        .collect();
    let sessions: Vec<_> = (0..3u8).map(|i| store.session(&[i; 32]).unwrap()).collect();
    serde_json::json!({
        "open_calls": store.open_calls().unwrap(),
        "closed_calls": closed,
        "triage_cursor": store.triage_cursor().unwrap(),
        "max_call_id": store.max_call_id().unwrap(),
        "users": store.users().unwrap().iter().map(|u| (&u.name, u.role, &u.password_hash, u.disabled)).collect::<Vec<_>>(),
        "sessions": sessions,
        "audit_latest": store.audit_latest(50).unwrap(),
        "audit_after": store.audit_after(0, 1000).unwrap(),
        "dispatches_of_call_4": store.dispatches_of_call(4).unwrap(),
        "max_dispatch_id": store.max_dispatch_id().unwrap(),
        "outbox": outbox,
        "outbox_pending": store.outbox_pending(100).unwrap(),
        "work_orders": orders,
        "open_work_orders": store.open_work_orders().unwrap(),
        "plan": store.plan("S-1000").unwrap(),
        "plan_versions": store.plan_versions("S-1000", 10).unwrap(),
        "devices": store.devices().unwrap(),
        "subscribers": store.subscribers().unwrap(),
        "last_heard": store.last_heard().unwrap(),
        "next_journal_id": store.next_journal_id().unwrap(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_nodes_store_moves_to_postgresql_and_a_node_leads_on_it() {
    let Some(pg) = Postgres::single() else { return };
    let url = pg.primary.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data);
    let data_s = data.to_str().unwrap();
    // With a password (the test server trusts 127.0.0.1 and ignores it), never printed.
    let with_password = url.replace("://vakt@", &format!("://vakt:{SECRET}@"));
    assert_ne!(with_password, url);
    let to = with_password.as_str();
    let migrate = || vakt(&["store", "migrate", "--from", "sled", data_s, "--to", to]);

    // Not a data directory: refused, and nothing is created there.
    let empty = dir.path().join("nothing-here");
    let (code, _, err) = vakt(&[
        "store",
        "migrate",
        "--from",
        "sled",
        empty.to_str().unwrap(),
        "--to",
        &url,
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("is not a vakt data directory"), "{err}");
    assert!(!empty.exists());

    // While vakt runs on the directory: refused, saying so.
    let sled_node = Serve::start(dir.path(), &data, None);
    sled_node.wait_for("vakt ready");
    let (code, out, err) = migrate();
    assert_eq!(code, 64, "{out}{err}");
    assert!(err.contains("vakt is running on"), "{err}");
    assert!(err.contains("stop it"), "{err}");
    sled_node.stop();
    let kv = pg.query(&pg.primary, "SELECT count(*) FROM kv");
    assert!(
        kv.as_deref().is_none_or(|n| n.trim() == "0"),
        "nothing written: {kv:?}"
    );

    // Stopped: moved, and verified.
    let started = Instant::now();
    let (code, out, err) = migrate();
    let took = started.elapsed();
    assert_eq!(code, 0, "{out}\n{err}");
    println!("{out}{err}");
    println!(
        "migrated and verified in {} ms (a debug build, the journal's {JOURNAL} records and every tree)",
        took.as_millis()
    );
    assert!(out.lines().any(|l| l == "verified"), "{out}");
    let count = |tree: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(tree))
            .unwrap_or_else(|| panic!("{tree} in the summary:\n{out}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(count("journal"), JOURNAL);
    assert!(out.contains(&format!("(last id {JOURNAL})")), "{out}");
    assert_eq!(count("devices"), DEVICES as u64);
    assert_eq!(count("last_heard"), DEVICES as u64);
    assert_eq!(count("users"), 3);
    assert_eq!(count("sessions"), 3);
    assert!(
        err.contains(&format!("journal: {JOURNAL} of {JOURNAL} records")),
        "{err}"
    );
    assert!(err.contains("(password hidden)"), "{err}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET), "{err}");

    // PostgreSQL's store reads what sled's does, through the domain operations.
    let (sled_view, sled_journal, open_calls) = {
        let sled = Store::open(&data).unwrap();
        let open = sled.open_calls().unwrap().len();
        (domain_view(&sled), journal_json(&sled), open)
    };
    assert_eq!(open_calls, 3);
    let on_pg = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let store = Store::open_postgres(&url).unwrap();
            (domain_view(&store), journal_json(&store))
        })
        .await
        .unwrap()
    };
    assert_eq!(on_pg.0, sled_view);
    assert_eq!(on_pg.1.len(), JOURNAL as usize);
    assert_eq!(on_pg.1, sled_journal);
    let max = pg.query(
        &pg.primary,
        "SELECT min(id), max(id), count(*) FROM journal",
    );
    assert_eq!(max.unwrap().trim(), format!("1|{JOURNAL}|{JOURNAL}"));
    let keyed = pg.query(
        &pg.primary,
        "SELECT count(*) FROM journal WHERE dedup_key IS NOT NULL",
    );
    assert_eq!(
        keyed.unwrap().trim(),
        (JOURNAL - JOURNAL / 3).to_string(),
        "the dedup keys in their column"
    );

    // A second migration into the same database: refused, nothing changed.
    let lease_before = pg.query(&pg.primary, "SELECT epoch FROM leader_lease");
    let (code, out, err) = migrate();
    assert_eq!(code, 64, "{out}{err}");
    assert!(err.contains("already holds a vakt store"), "{err}");
    assert!(err.contains("DROP DATABASE postgres"), "{err}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET), "{err}");
    assert_eq!(
        pg.query(&pg.primary, "SELECT epoch FROM leader_lease"),
        lease_before
    );
    let journaled = pg.query(&pg.primary, "SELECT count(*) FROM journal");
    assert_eq!(journaled.unwrap().trim(), JOURNAL.to_string());

    // A node on the database leads, with the Calls open that were open.
    let node = Serve::start(dir.path(), &dir.path().join("node-a"), Some(&url));
    node.wait_for("vakt ready");
    assert!(
        node.printed().contains("node a leads"),
        "{}",
        node.printed()
    );
    let (status, body) = http_get(node.http, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(node.http, "vakt_calls_open").await,
        open_calls as f64
    );
    let lease = pg.query(&pg.primary, "SELECT holder FROM leader_lease");
    assert_eq!(lease.unwrap().trim(), "a");
    node.stop();
}

/// A data directory whose journal is in its own log moves the same way: every record, the
/// same on PostgreSQL as in the log.
#[tokio::test]
async fn a_journal_in_its_own_log_moves_to_postgresql_too() {
    let Some(pg) = Postgres::single() else { return };
    let url = pg.primary.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_with(&data, true);
    let (code, out, err) = vakt(&[
        "store",
        "migrate",
        "--from",
        "sled",
        data.to_str().unwrap(),
        "--to",
        &url,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.lines().any(|l| l == "verified"), "{out}");
    assert!(out.contains(&format!("(last id {JOURNAL})")), "{out}");
    let in_log = journal_json(&Store::open(&data).unwrap());
    assert_eq!(in_log.len(), JOURNAL as usize);
    let on_pg =
        tokio::task::spawn_blocking(move || journal_json(&Store::open_postgres(&url).unwrap()))
            .await
            .unwrap();
    assert_eq!(on_pg, in_log);
}
