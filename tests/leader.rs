//! The leader loop (`store::pg::leader`) and `vakt cluster status` on a real PostgreSQL
//! (tests/common/postgres.rs): one leader and a standby naming it, a release handed over at
//! once, a leader that stops renewing taken over after its ttl with the next epoch, a lease
//! taken from under a leader, a leader whose database dies stepping down within its ttl, a
//! leader riding through a promotion with several hosts in its URL, a lease taken after a long
//! wait renewed at once and kept.
//!
//! Short leases (1 s, renewed every 200 ms) keep the tests quick; where a test shows that
//! something did not wait for the lease to expire, the lease is 10 s. Every wait is bounded.
//! Skipped with a note where PostgreSQL is missing, unless `VAKT_REQUIRE_POSTGRES` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::postgres::{Postgres, STANDBY_NAME, connect};
use tokio::sync::watch;
use vakt::store::pg::leader::{LeaderOptions, Leadership, Role};
use vakt::store::pg::{lease, migrate};

const BIN: &str = env!("CARGO_BIN_EXE_vakt");

const TTL: Duration = Duration::from_millis(1000);
const RENEW: Duration = Duration::from_millis(200);
/// A lease long enough that a hand-over within it did not wait for its expiry.
const LONG_TTL: Duration = Duration::from_secs(10);
/// The bound on waiting for a role that must come.
const WAIT: Duration = Duration::from_secs(15);

fn short() -> LeaderOptions {
    LeaderOptions::new(TTL, RENEW).unwrap()
}

fn long() -> LeaderOptions {
    LeaderOptions::new(LONG_TTL, RENEW).unwrap()
}

/// Waits (at most [`WAIT`]) until `rx` shows `want`.
async fn until(rx: &mut watch::Receiver<Role>, want: Role) {
    let got = tokio::time::timeout(WAIT, rx.wait_for(|r| *r == want))
        .await
        .map(|r| r.is_ok());
    if got != Ok(true) {
        panic!("never became {want:?}; is {:?}", *rx.borrow());
    }
}

/// Every role a node passes through, with when it was seen.
#[derive(Clone, Default)]
struct History(Arc<Mutex<Vec<(Instant, Role)>>>);

impl History {
    fn record(mut rx: watch::Receiver<Role>) -> History {
        let h = History::default();
        let out = h.clone();
        out.0
            .lock()
            .unwrap()
            .push((Instant::now(), rx.borrow_and_update().clone()));
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let r = rx.borrow_and_update().clone();
                out.0.lock().unwrap().push((Instant::now(), r));
            }
        });
        h
    }

    fn roles(&self) -> Vec<Role> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// When `role` was seen, waiting (at most [`WAIT`]) for the recorder to see it.
    async fn when(&self, role: &Role) -> Instant {
        let start = Instant::now();
        loop {
            let seen = {
                let h = self.0.lock().unwrap();
                h.iter().find(|(_, r)| r == role).map(|(t, _)| *t)
            };
            if let Some(t) = seen {
                return t;
            }
            assert!(
                start.elapsed() < WAIT,
                "{role:?} never recorded: {:?}",
                self.roles()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn migrated(url: &str) {
    let mut c = connect(url).await;
    migrate::migrate(&mut c).await.unwrap();
}

fn standby_of(holder: &str) -> Role {
    Role::Standby {
        holder: Some(holder.to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_leads_the_other_stands_by_naming_it_and_a_release_hands_over_at_once() {
    let Some(pg) = Postgres::single() else { return };
    let url = pg.primary.url();
    migrated(&url).await;

    let a = Leadership::start(&url, "node-a", long()).unwrap();
    let mut a_role = a.role();
    until(&mut a_role, Role::Leader { epoch: 1 }).await;
    let b = Leadership::start(&url, "node-b", long()).unwrap();
    let mut b_role = b.role();
    until(&mut b_role, standby_of("node-a")).await;
    let c = connect(&url).await;
    let state = lease::state(&c).await.unwrap();
    assert_eq!((state.holder.as_deref(), state.epoch), (Some("node-a"), 1));
    // Renewed: without a renewal in the last three renew periods, less would be left.
    tokio::time::sleep(RENEW * 3).await;
    let left = lease::state(&c).await.unwrap().remaining.unwrap();
    assert!(left > LONG_TTL - RENEW * 3, "{left:?} left: not renewed");
    assert_eq!(*a_role.borrow(), Role::Leader { epoch: 1 });

    let released_at = Instant::now();
    assert!(a.release().await.unwrap(), "node-a held the lease");
    // Stepped down before the lease was given up.
    assert_eq!(*a_role.borrow(), Role::Lost { epoch: 1 });
    until(&mut b_role, Role::Leader { epoch: 2 }).await;
    let took = released_at.elapsed();
    assert!(
        took < LONG_TTL / 2,
        "the standby took {took:?}: it waited for the lease to expire"
    );
    let state = lease::state(&c).await.unwrap();
    assert_eq!((state.holder.as_deref(), state.epoch), (Some("node-b"), 2));

    // A standby has nothing to release; the leader's release frees the lease.
    let d = Leadership::start(&url, "node-d", long()).unwrap();
    let mut d_role = d.role();
    until(&mut d_role, standby_of("node-b")).await;
    assert!(!d.release().await.unwrap());
    assert!(b.release().await.unwrap());
    let state = lease::state(&c).await.unwrap();
    assert_eq!(
        (state.holder.as_deref(), state.remaining),
        (Some("node-b"), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_renewing_is_taken_over_after_its_ttl_with_the_next_epoch() {
    let Some(pg) = Postgres::single() else { return };
    let url = pg.primary.url();
    migrated(&url).await;

    let a = Leadership::start(&url, "node-a", short()).unwrap();
    let mut a_role = a.role();
    until(&mut a_role, Role::Leader { epoch: 1 }).await;
    let b = Leadership::start(&url, "node-b", short()).unwrap();
    let mut b_role = b.role();
    until(&mut b_role, standby_of("node-a")).await;
    let b_history = History::record(b.role());
    // Held across several lease times by renewals alone.
    tokio::time::sleep(TTL * 3).await;
    assert_eq!(*a_role.borrow(), Role::Leader { epoch: 1 });
    assert_eq!(*b_role.borrow(), standby_of("node-a"));

    // Dropped without a release: no more renewals.
    let stopped = Instant::now();
    drop(a);
    until(&mut a_role, Role::Lost { epoch: 1 }).await;
    until(&mut b_role, Role::Leader { epoch: 2 }).await;
    let taken = b_history.when(&Role::Leader { epoch: 2 }).await;
    // The last renewal was sent at most a renew period before the drop; by the database's
    // clock the lease ran for a ttl from then.
    assert!(
        taken.duration_since(stopped) >= TTL - RENEW * 2,
        "taken {:?} after the leader stopped: before its lease ran out",
        taken.duration_since(stopped)
    );
    assert_eq!(
        b_history.roles(),
        vec![standby_of("node-a"), Role::Leader { epoch: 2 }]
    );
    let c = connect(&url).await;
    let state = lease::state(&c).await.unwrap();
    assert_eq!((state.holder.as_deref(), state.epoch), (Some("node-b"), 2));
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_turns_lost_at_its_next_renewal() {
    let Some(pg) = Postgres::single() else { return };
    let url = pg.primary.url();
    migrated(&url).await;

    let a = Leadership::start(&url, "node-a", long()).unwrap();
    let mut a_role = a.role();
    until(&mut a_role, Role::Leader { epoch: 1 }).await;
    let history = History::record(a.role());

    // Expired under it (as a pause longer than the lease would leave it) and taken.
    let c = connect(&url).await;
    c.execute("UPDATE leader_lease SET expires_at = now()", &[])
        .await
        .unwrap();
    let taken = lease::acquire(&c, "node-x", LONG_TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.epoch, 2);
    let at = Instant::now();
    until(&mut a_role, Role::Lost { epoch: 1 }).await;
    // By the renewal's answer, long before its own clock would have said so.
    assert!(at.elapsed() < LONG_TTL / 2, "{:?}", at.elapsed());
    history.when(&Role::Lost { epoch: 1 }).await;
    assert_eq!(
        history.roles(),
        vec![Role::Leader { epoch: 1 }, Role::Lost { epoch: 1 }]
    );
    assert!(!a.release().await.unwrap(), "nothing left to release");
    let state = lease::state(&c).await.unwrap();
    assert_eq!((state.holder.as_deref(), state.epoch), (Some("node-x"), 2));
    assert!(state.remaining.is_some(), "node-x's lease was not released");
}

/// A take-over that waited for the lease row (here a row lock; in production a database
/// failing over) gets back a lease with little left: the node renews it at once and leads on,
/// instead of losing it a fraction of a second later and restarting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_after_a_long_wait_is_renewed_at_once_and_kept() {
    let Some(pg) = Postgres::single() else { return };
    let url = pg.primary.url();
    migrated(&url).await;

    // The row locked: the node's take-over waits behind it.
    let mut c = connect(&url).await;
    let tx = c.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM leader_lease WHERE id FOR UPDATE", &[])
        .await
        .unwrap();
    let a = Leadership::start(&url, "node-a", short()).unwrap();
    let history = History::record(a.role());
    // Most of the lease the take-over will get runs out while it waits.
    tokio::time::sleep(TTL - RENEW / 2).await;
    tx.commit().await.unwrap();
    let mut a_role = a.role();
    until(&mut a_role, Role::Leader { epoch: 1 }).await;
    // Held across several lease times: the first renewal came in time.
    tokio::time::sleep(TTL * 3).await;
    assert_eq!(
        history.roles().last(),
        Some(&Role::Leader { epoch: 1 }),
        "{:?}",
        history.roles()
    );
    assert!(
        !history.roles().contains(&Role::Lost { epoch: 1 }),
        "{:?}",
        history.roles()
    );
    let state = lease::state(&c).await.unwrap();
    assert_eq!((state.holder.as_deref(), state.epoch), (Some("node-a"), 1));
    assert!(a.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_database_dies_turns_lost_within_its_ttl() {
    let Some(mut pg) = Postgres::single() else {
        return;
    };
    let url = pg.primary.url();
    migrated(&url).await;

    let a = Leadership::start(&url, "node-a", short()).unwrap();
    let mut a_role = a.role();
    until(&mut a_role, Role::Leader { epoch: 1 }).await;
    let history = History::record(a.role());
    tokio::time::sleep(TTL * 2).await;

    let killed = Instant::now();
    pg.primary.kill9();
    until(&mut a_role, Role::Lost { epoch: 1 }).await;
    let lost = history.when(&Role::Lost { epoch: 1 }).await;
    // Its last successful renewal was sent before the kill, so its lease by its own clock
    // ended within a ttl of it; one renew period is left for the thread to be scheduled.
    let after = lost.duration_since(killed);
    assert!(after <= TTL + RENEW, "Lost {after:?} after the kill");
    assert_eq!(
        history.roles(),
        vec![Role::Leader { epoch: 1 }, Role::Lost { epoch: 1 }],
        "leading until the lease ran out, then lost, and never again"
    );
    // And it stays so.
    tokio::time::sleep(RENEW * 3).await;
    assert_eq!(*a_role.borrow(), Role::Lost { epoch: 1 });
    assert!(!a.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_rides_through_a_promotion_with_several_hosts_in_its_url() {
    let Some(mut pg) = Postgres::pair("on") else {
        return;
    };
    let (p, s) = (pg.primary.port(), pg.standby().port());
    let url = format!(
        "postgresql://{}@127.0.0.1:{p},127.0.0.1:{s}/postgres?target_session_attrs=read-write",
        common::postgres::USER
    );
    migrated(&pg.primary.url()).await;

    let a = Leadership::start(&url, "node-a", long()).unwrap();
    let mut a_role = a.role();
    until(&mut a_role, Role::Leader { epoch: 1 }).await;
    let history = History::record(a.role());
    // Renewals reach the standby (synchronous replication).
    let on_standby = connect(&pg.standby().url()).await;
    let start = Instant::now();
    while lease::state(&on_standby).await.unwrap().epoch != 1 {
        assert!(
            start.elapsed() < WAIT,
            "the lease never reached the standby"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    pg.primary.kill9();
    pg.standby().promote();
    // Renewed on the new primary: its time left grows again, under the same epoch.
    let promoted = connect(&pg.standby().url()).await;
    let start = Instant::now();
    let mut before = lease::state(&promoted).await.unwrap().remaining.unwrap();
    loop {
        tokio::time::sleep(RENEW).await;
        let now = lease::state(&promoted).await.unwrap();
        assert_eq!((now.holder.as_deref(), now.epoch), (Some("node-a"), 1));
        let left = now
            .remaining
            .expect("the lease ran out during the promotion");
        if left > before {
            break;
        }
        before = left;
        assert!(start.elapsed() < WAIT, "never renewed on the new primary");
    }
    assert_eq!(*a_role.borrow(), Role::Leader { epoch: 1 });
    assert_eq!(history.roles(), vec![Role::Leader { epoch: 1 }]);
    assert!(a.release().await.unwrap());
    let state = lease::state(&promoted).await.unwrap();
    assert_eq!(state.remaining, None);
}

/// How long the lease is leaderless with the default lease (5 s, renewed every second): from
/// a leader's stop (dropped without a release, as when its process is killed; or released,
/// as at a graceful shutdown) until the standby leads. Printed, never asserted:
/// `nice cargo test --test leader take_over_gap -- --ignored --nocapture`.
///
/// Measured on the 2-core development machine (debug build, PostgreSQL 15 on 127.0.0.1), five
/// rounds each: stopped without a release 4.1-4.9 s (the lease runs a ttl from the last
/// renewal, up to a renew period before the stop; the bound is ttl + renew, 6 s); released
/// 0.2-1.0 s (the standby's next poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn take_over_gap() {
    let Some(pg) = Postgres::single() else { return };
    let url = pg.primary.url();
    migrated(&url).await;
    let opts = LeaderOptions::default();
    let mut leader = Leadership::start(&url, "n0", opts).unwrap();
    until(&mut leader.role(), Role::Leader { epoch: 1 }).await;
    let (mut killed, mut released) = (Vec::new(), Vec::new());
    for i in 1..=10i64 {
        let standby = Leadership::start(&url, &format!("n{i}"), opts).unwrap();
        until(&mut standby.role(), standby_of(&format!("n{}", i - 1))).await;
        // The stop falls at another point between two renewals (and polls) each round.
        tokio::time::sleep(opts.renew() * (3 * i as u32 % 10) / 10).await;
        let stopped = Instant::now();
        if i % 2 == 0 {
            assert!(leader.release().await.unwrap());
        } else {
            drop(leader);
        }
        let mut role = standby.role();
        let gap = tokio::time::timeout(
            Duration::from_secs(30),
            role.wait_for(|r| *r == Role::Leader { epoch: i + 1 }),
        )
        .await
        .map(|_| stopped.elapsed())
        .expect("the standby took over");
        if i % 2 == 0 {
            &mut released
        } else {
            &mut killed
        }
        .push(gap);
        leader = standby;
    }
    let show = |what: &str, v: &mut Vec<Duration>| {
        v.sort();
        let ms: Vec<String> = v.iter().map(|d| format!("{}", d.as_millis())).collect();
        println!(
            "{what:<24} ttl {} ms, renew {} ms: {} ms (min {} ms, max {} ms)",
            opts.ttl().as_millis(),
            opts.renew().as_millis(),
            ms.join(" "),
            v[0].as_millis(),
            v[v.len() - 1].as_millis()
        );
    };
    show("stopped without release", &mut killed);
    show("released", &mut released);
}

fn vakt(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_file(dir: &std::path::Path, name: &str, store: &str) -> String {
    let f = dir.join(name);
    std::fs::write(&f, format!("[store]\n{store}")).unwrap();
    f.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_shows_the_lease_the_schema_and_the_synchronous_standby() {
    let Some(mut pg) = Postgres::pair("on") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (pg.primary.port(), pg.standby().port());
    // The standby first: the primary is found by target_session_attrs.
    let url = format!(
        "postgresql://{}@127.0.0.1:{s},127.0.0.1:{p}/postgres?target_session_attrs=read-write",
        common::postgres::USER
    );
    let file = config_file(
        dir.path(),
        "node.toml",
        &format!("backend = \"postgres\"\nurl = \"{url}\"\nnode = \"node-a\"\n"),
    );

    // Before vakt ran on it: no schema, no lease.
    let (code, out, err) = vakt(&["cluster", "status", "--config", &file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the primary"), "{out}");
    assert!(out.contains(&format!("127.0.0.1:{p}")), "{out}");
    assert!(out.contains("schema    none"), "{out}");
    assert!(out.contains("lease     none"), "{out}");

    let mut c = connect(&pg.primary.url()).await;
    migrate::migrate(&mut c).await.unwrap();
    let held = lease::acquire(&c, "node-a", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let (code, out, err) = vakt(&["cluster", "status", "--config", &file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("held by node-a, epoch 1,"), "{out}");
    let known = migrate::MIGRATIONS.len();
    assert!(
        out.contains(&format!(
            "schema    version {known} (this vakt knows {known})"
        )),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("  {STANDBY_NAME}  ")))
        .unwrap_or_else(|| panic!("no standby line: {out}"));
    assert!(
        line.contains("streaming") && line.contains("sync"),
        "{line}"
    );

    let (code, out, err) = vakt(&["cluster", "status", "--config", &file, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["database"]["primary"], true);
    assert_eq!(v["schema"]["version"], known);
    assert_eq!(v["schema"]["known"], known);
    assert_eq!(v["lease"]["holder"], "node-a");
    assert_eq!(v["lease"]["epoch"], 1);
    let left = v["lease"]["remaining_ms"].as_u64().unwrap();
    assert!(left > 30_000 && left <= 60_000, "{left}");
    assert_eq!(v["standbys"][0]["application_name"], STANDBY_NAME);
    assert_eq!(v["standbys"][0]["sync_state"], "sync");
    assert_eq!(v["standbys"][0]["state"], "streaming");
    assert_eq!(v["database"]["synchronous_standby_names"], STANDBY_NAME);

    // Released: free, and who had it.
    assert!(lease::release(&c, &held).await.unwrap());
    let (_, out, _) = vakt(&["cluster", "status", "--config", &file]);
    assert!(
        out.contains("free (expired or released); last held by node-a, epoch 1"),
        "{out}"
    );

    // Asked of the standby alone: not the primary.
    let standby_only = config_file(
        dir.path(),
        "standby.toml",
        &format!(
            "backend = \"postgres\"\nurl = \"postgresql://{}@127.0.0.1:{s}/postgres\"\n",
            common::postgres::USER
        ),
    );
    let (code, out, _) = vakt(&["cluster", "status", "--config", &standby_only, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["database"]["primary"], false);
    assert_eq!(v["lease"]["holder"], "node-a", "replicated");

    // No database there: exit 1, and the password is not printed.
    let secret = "n0t-in-the-output";
    let nowhere = config_file(
        dir.path(),
        "nowhere.toml",
        &format!(
            "backend = \"postgres\"\nurl = \"postgresql://vakt:{secret}@127.0.0.1:{}/vakt?connect_timeout=2\"\n",
            free_port()
        ),
    );
    let (code, out, err) = vakt(&["cluster", "status", "--config", &nowhere]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("cannot read the cluster's state at vakt@127.0.0.1:"),
        "{err}"
    );
    assert!(!err.contains(secret) && !out.contains(secret), "{err}");

    // A configuration on sled has no cluster; a bad one is refused as by check-config.
    let sled = config_file(dir.path(), "sled.toml", "backend = \"sled\"\n");
    let (code, _, err) = vakt(&["cluster", "status", "--config", &sled]);
    assert_eq!(code, 64);
    assert!(err.contains("the store is sled"), "{err}");
    let bad = config_file(dir.path(), "bad.toml", "backend = \"postgres\"\n");
    let (code, _, err) = vakt(&["cluster", "status", "--config", &bad]);
    assert_eq!(code, 64);
    assert!(err.contains("store.url is required"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
