//! The whole redundant set-up under load and kills: two `vakt serve` nodes (`[store] backend =
//! "postgres"`) on a Patroni cluster of three PostgreSQL nodes with synchronous replication in
//! strict mode, on etcd (tests/common/patroni.rs), and alarm units sending distinct alarms.
//!
//! Each unit is configured as a real one is, with both nodes: the primary receiver (node `a`)
//! and the backup (node `b`). It keeps a TCP connection to the node it last reached, sends one
//! alarm at a time and waits for the ACK; when a node refuses the connection, does not answer
//! within 5 s, closes or answers anything but ACK, the unit retransmits the same frame (same
//! sequence number, same data) to the other node, until an ACK comes.
//!
//! Under that load, at random moments, the test kills with SIGKILL the vakt leader twice and
//! the PostgreSQL primary's machine once (its etcd member, Patroni and PostgreSQL, see
//! `Patroni::kill_machine`), in a random order. The nodes are supervised as systemd would: a
//! node that exits by itself (a leader that lost its lease while the database failed over) is
//! started again after 1 s; a killed leader is started again once the new leader answers
//! `/ready`, so it comes back as a standby.
//!
//! Asserted: every alarm that got an ACK is in the journal exactly once (a retransmission to
//! the other node, or to a new leader, is recognised by the unit's sequence number), no alarm
//! is in it twice, and the journal's ids are consecutive from 1. Printed, not asserted: for
//! each kill, the gap in ACKs (from the kill to the next ACK, and the longest pause between two
//! ACKs after it) and the time until a new leader's `/ready` answered 200.
//!
//! `#[ignore]`d: it needs etcd, Patroni and PostgreSQL and takes about two minutes; `.ci/run`
//! runs it in its stress stage (with `VAKT_REQUIRE_PATRONI=1`) under a timeout, and it ends
//! itself after [`HARD_LIMIT`].
//!
//! ```sh
//! cargo test --test cluster_chaos -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
#![forbid(unsafe_code)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::patroni::Patroni;
use common::{plain, token_of};
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_vakt");
/// The test ends (failing) after this, whatever it waits for.
const HARD_LIMIT: Duration = Duration::from_secs(300);
/// Alarm units.
const UNITS: usize = 8;
/// A unit's pause between one ACK and its next alarm.
const PACE: Duration = Duration::from_millis(100);
/// How long a unit waits for an answer before it retransmits to the other node.
const ANSWER: Duration = Duration::from_secs(5);
/// How long recovery from one kill may take before the test fails.
const RECOVERY: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One vakt node's place: its addresses and configuration stay, its process comes and goes.
struct Slot {
    name: &'static str,
    dc09: SocketAddr,
    http: SocketAddr,
    config: PathBuf,
    child: Option<Child>,
    /// How many times a process was started here.
    incarnation: u32,
    /// When to start it again, while it is down.
    restart_at: Option<Instant>,
    /// Everything every incarnation printed.
    out: Arc<Mutex<String>>,
}

impl Slot {
    fn new(dir: &Path, url: &str, name: &'static str) -> Slot {
        let (dc09, http) = (free_port(), free_port());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n\
                 [dc09]\nlisten_tcp = \"127.0.0.1:{dc09}\"\nlisten_udp = \"127.0.0.1:0\"\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\n[patrol]\nlisten_quic = \"127.0.0.1:0\"\n\
                 [scaip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = \"127.0.0.1:0\"\n\
                 [store]\nbackend = \"postgres\"\nurl = \"{url}\"\nnode = \"{name}\"\n",
                dir.join(name)
            ),
        )
        .unwrap();
        Slot {
            name,
            dc09: format!("127.0.0.1:{dc09}").parse().unwrap(),
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            config,
            child: None,
            incarnation: 0,
            restart_at: Some(Instant::now()),
            out: Arc::new(Mutex::new(String::new())),
        }
    }

    fn start(&mut self) {
        self.incarnation += 1;
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (seen, tag) = (
            self.out.clone(),
            format!("[{}#{}] ", self.name, self.incarnation),
        );
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = seen.lock().unwrap();
                s.push_str(&tag);
                s.push_str(&line);
                s.push('\n');
            }
        });
        self.child = Some(child);
        self.restart_at = None;
    }

    /// SIGKILL, as when its machine dies; started again at `restart_at` (`None`: by the test).
    fn kill(&mut self, restart_at: Option<Instant>) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.restart_at = restart_at;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.kill(None);
    }
}

/// The two nodes and what happened to them.
#[derive(Default)]
struct Nodes {
    slots: Vec<Slot>,
    /// (when, node, incarnation, how it ended) of each process that exited by itself.
    exits: Vec<(Instant, usize, u32, String)>,
}

impl Nodes {
    /// The supervisor's round: reaps what exited (restarted after 1 s), starts what is due.
    fn supervise(&mut self) {
        let now = Instant::now();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(c) = s.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    // Why, in its own words: its last error, else its last line.
                    let tag = format!("[{}#{}] ", s.name, s.incarnation);
                    let out = s.out.lock().unwrap();
                    let own: Vec<&str> = out.lines().filter(|l| l.starts_with(&tag)).collect();
                    let why = own
                        .iter()
                        .rev()
                        .find(|l| l.to_lowercase().contains("error"))
                        .or(own.last())
                        .map(|l| l[tag.len()..].to_owned())
                        .unwrap_or_default();
                    drop(out);
                    self.exits
                        .push((now, i, s.incarnation, format!("{status}; {why}")));
                    s.child = None;
                    s.restart_at = Some(now + Duration::from_secs(1));
                }
            }
            if s.child.is_none() && s.restart_at.is_some_and(|t| t <= now) {
                s.start();
            }
        }
    }

    fn printed(&self) -> String {
        self.slots
            .iter()
            .map(|s| s.out.lock().unwrap().clone())
            .collect::<Vec<_>>()
            .join("")
    }
}

/// One ACKed alarm.
struct Ack {
    unit: usize,
    seq: u16,
    at: Instant,
    node: usize,
    attempts: u32,
}

/// One `/ready` probe.
struct Probe {
    at: Instant,
    node: usize,
    incarnation: u32,
    status: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    VaktLeader,
    PostgresPrimary,
}

/// What a kill hit, and when.
struct Killed {
    what: Kill,
    at: Instant,
    /// The vakt leader at the moment of the kill (node, incarnation).
    leader: (usize, u32),
    detail: String,
}

fn account(unit: usize) -> String {
    format!("{:04X}", 0xC100 + unit)
}

/// One answer, LF..CR, within [`ANSWER`].
async fn answer(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    tokio::time::timeout(ANSWER, async {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        loop {
            if s.read(&mut b).await? == 0 {
                return Err(std::io::Error::other("closed"));
            }
            out.push(b[0]);
            if b[0] == b'\r' {
                return Ok(out);
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::other("no answer"))?
}

/// A unit: distinct alarms, one at a time, each until it is ACKed by one of `nodes` (or the
/// test ends it at `give_up`).
async fn unit(
    i: usize,
    nodes: [SocketAddr; 2],
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    give_up: Arc<Mutex<Option<Instant>>>,
) {
    let account = account(i);
    let mut target = 0usize;
    let mut conn: Option<TcpStream> = None;
    let mut seq = 0u16;
    while !stop.load(Ordering::Acquire) {
        seq += 1;
        assert!(seq < 10_000, "a unit's sequence would wrap");
        let frame = plain(
            "SIA-DCS",
            seq,
            &account,
            &format!("#{account}|Nri1/BA{:03}", seq % 1000),
        );
        let mut attempts = 0;
        loop {
            if give_up.lock().unwrap().is_some_and(|t| Instant::now() >= t) {
                return;
            }
            attempts += 1;
            if conn.is_none() {
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    TcpStream::connect(nodes[target]),
                )
                .await
                {
                    Ok(Ok(s)) => conn = Some(s),
                    _ => {
                        // Refused or silent: the other receiver, after a pause once both
                        // were tried.
                        target = 1 - target;
                        if attempts % 2 == 0 {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        continue;
                    }
                }
            }
            let s = conn.as_mut().unwrap();
            let answered = match s.write_all(&frame).await {
                Ok(()) => answer(s).await,
                Err(e) => Err(e),
            };
            match answered.map(|a| token_of(&a)) {
                Ok(token) if token == "ACK" => {
                    acks.lock().unwrap().push(Ack {
                        unit: i,
                        seq,
                        at: Instant::now(),
                        node: target,
                        attempts,
                    });
                    break;
                }
                _ => {
                    conn = None;
                    target = 1 - target;
                }
            }
        }
        tokio::time::sleep(PACE).await;
    }
}

/// The status of `GET /ready`, or `None` without an answer within 1 s.
async fn ready(addr: SocketAddr) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(1), async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(
            format!("GET /ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    })
    .await
    .ok()
    .flatten()
}

/// The node whose `/ready` answers 200, with its incarnation.
async fn leader(nodes: &Mutex<Nodes>) -> Option<(usize, u32)> {
    let addrs: Vec<(SocketAddr, u32)> = {
        let n = nodes.lock().unwrap();
        n.slots.iter().map(|s| (s.http, s.incarnation)).collect()
    };
    for (i, (addr, inc)) in addrs.into_iter().enumerate() {
        if ready(addr).await == Some(200) {
            return Some((i, inc));
        }
    }
    None
}

fn ms(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd, Patroni and PostgreSQL; about two minutes (run by .ci/run's stress stage)"]
async fn acked_alarms_survive_kills_of_the_vakt_leader_and_of_the_postgres_primary() {
    let cluster = tokio::task::spawn_blocking(Patroni::start).await.unwrap();
    let Some(cluster) = cluster else { return };
    let cluster = Arc::new(Mutex::new(cluster));
    let outcome = tokio::time::timeout(HARD_LIMIT, run(cluster.clone())).await;
    let cluster = Arc::try_unwrap(cluster)
        .ok()
        .map(|c| c.into_inner().unwrap());
    if outcome.is_err() {
        let logs = cluster.as_ref().map(|c| c.logs()).unwrap_or_default();
        panic!("the test did not end within {HARD_LIMIT:?}\n{logs}");
    }
    // Patroni, PostgreSQL and etcd are stopped here, when `cluster` drops.
}

async fn run(cluster: Arc<Mutex<Patroni>>) {
    let url = cluster.lock().unwrap().url();
    let dir = tempfile::tempdir().unwrap();
    let nodes = Arc::new(Mutex::new(Nodes {
        slots: vec![
            Slot::new(dir.path(), &url, "a"),
            Slot::new(dir.path(), &url, "b"),
        ],
        exits: Vec::new(),
    }));
    // Node a first, so that it leads; b once a does.
    nodes.lock().unwrap().slots[1].restart_at = None;
    nodes.lock().unwrap().supervise();
    let started = Instant::now();
    while leader(&nodes).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node a never became ready:\n{}",
            nodes.lock().unwrap().printed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes.lock().unwrap().slots[1].restart_at = Some(Instant::now());

    let ended = Arc::new(AtomicBool::new(false));
    // The supervisor.
    let supervisor = {
        let (nodes, ended) = (nodes.clone(), ended.clone());
        tokio::spawn(async move {
            while !ended.load(Ordering::Acquire) {
                nodes.lock().unwrap().supervise();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // The `/ready` probes, every 100 ms on each node.
    let probes = Arc::new(Mutex::new(Vec::<Probe>::new()));
    let prober = {
        let (nodes, ended, probes) = (nodes.clone(), ended.clone(), probes.clone());
        tokio::spawn(async move {
            while !ended.load(Ordering::Acquire) {
                let addrs: Vec<(SocketAddr, u32)> = {
                    let n = nodes.lock().unwrap();
                    n.slots.iter().map(|s| (s.http, s.incarnation)).collect()
                };
                for (node, (addr, incarnation)) in addrs.into_iter().enumerate() {
                    let status = ready(addr).await;
                    probes.lock().unwrap().push(Probe {
                        at: Instant::now(),
                        node,
                        incarnation,
                        status,
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The units.
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let give_up = Arc::new(Mutex::new(None));
    let receivers = {
        let n = nodes.lock().unwrap();
        [n.slots[0].dc09, n.slots[1].dc09]
    };
    let units: Vec<_> = (0..UNITS)
        .map(|i| {
            tokio::spawn(unit(
                i,
                receivers,
                acks.clone(),
                stop.clone(),
                give_up.clone(),
            ))
        })
        .collect();

    // Load first, then the kills in a random order, each at a random moment under load once
    // the last one is over.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !acks.lock().unwrap().is_empty(),
        "no alarm was ACKed before the kills:\n{}",
        nodes.lock().unwrap().printed()
    );
    let mut plan = vec![Kill::VaktLeader, Kill::VaktLeader, Kill::PostgresPrimary];
    plan.shuffle(&mut rand::rng());
    let mut kills = Vec::new();
    for what in plan {
        let pause = rand::rng().random_range(3000..8000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let leader_now = leader(&nodes).await.expect("a leader before each kill");
        let at = Instant::now();
        let detail = match what {
            Kill::VaktLeader => {
                nodes.lock().unwrap().slots[leader_now.0].kill(None);
                format!("vakt node {}", ["a", "b"][leader_now.0])
            }
            Kill::PostgresPrimary => {
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || {
                    let mut c = c.lock().unwrap();
                    let p = c.primary().expect("a PostgreSQL primary before the kill");
                    c.kill_machine(p);
                    format!("PostgreSQL primary {}", c.machines[p].name)
                })
                .await
                .unwrap()
            }
        };
        println!(
            "kill at {}: {detail} (vakt leader {}#{})",
            ms(at - started),
            ["a", "b"][leader_now.0],
            leader_now.1
        );
        kills.push(Killed {
            what,
            at,
            leader: leader_now,
            detail: detail.clone(),
        });

        // Recovery: a leader again (not the killed process), and ACKs after the kill.
        loop {
            assert!(
                at.elapsed() < RECOVERY,
                "no recovery within {RECOVERY:?} of the kill of the {detail}:\n{}\n{}",
                nodes.lock().unwrap().printed(),
                cluster.lock().unwrap().logs()
            );
            let l = leader(&nodes).await;
            let acked_since = acks.lock().unwrap().iter().any(|a| a.at > at);
            if l.is_some_and(|l| l != leader_now) && acked_since {
                break;
            }
            if what == Kill::PostgresPrimary && l == Some(leader_now) && acked_since {
                // The leader kept its lease through the database's failover.
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if what == Kill::VaktLeader {
            // The killed node comes back, as a standby.
            nodes.lock().unwrap().slots[leader_now.0].restart_at = Some(Instant::now());
        } else {
            // The dead machine stays dead; the other two carry on in strict mode.
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.lock().unwrap().wait_writable(RECOVERY))
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The units stop: each finishes the alarm it has under way, within 30 s.
    stop.store(true, Ordering::Release);
    *give_up.lock().unwrap() = Some(Instant::now() + Duration::from_secs(30));
    for u in units {
        u.await.unwrap();
    }
    ended.store(true, Ordering::Release);
    supervisor.await.unwrap();
    prober.await.unwrap();
    let printed = nodes.lock().unwrap().printed();
    let exits = std::mem::take(&mut nodes.lock().unwrap().exits);
    // No node writes while the journal is read.
    drop(Arc::try_unwrap(nodes).ok().expect("the supervisor is done"));

    // The journal, from the new primary.
    let client = common::postgres::connect(&url).await;
    let rows = client
        .query("SELECT id, payload FROM journal ORDER BY id", &[])
        .await
        .unwrap();
    let mut journaled: HashMap<(String, String), Vec<i64>> = HashMap::new();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    for r in &rows {
        let payload: &[u8] = r.get(1);
        // A journal record is the Signal's JSON (with the dedup key beside its fields).
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let key = (
            v["account"].as_str().unwrap().to_owned(),
            v["seq"].as_str().unwrap().to_owned(),
        );
        journaled.entry(key).or_default().push(r.get(0));
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let probes = std::mem::take(&mut *probes.lock().unwrap());

    // The figures.
    let first = acks.iter().map(|a| a.at).min().unwrap();
    let last = acks.iter().map(|a| a.at).max().unwrap();
    let retransmitted = acks.iter().filter(|a| a.attempts > 1).count();
    let by_backup = acks.iter().filter(|a| a.node == 1).count();
    println!(
        "{} alarms ACKed from {UNITS} units over {} ({:.0}/s), {retransmitted} after a retransmission, {by_backup} by node b; {} journal rows",
        acks.len(),
        ms(last - first),
        acks.len() as f64 / (last - first).as_secs_f64(),
        rows.len()
    );
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    for (n, k) in kills.iter().enumerate() {
        let next = times.iter().find(|&&t| t > k.at).copied();
        // Until the next kill, or the end.
        let window_end = kills.get(n + 1).map_or(last, |k| k.at);
        let longest = times
            .windows(2)
            .filter(|w| w[1] > k.at && w[0] < window_end)
            .map(|w| w[1] - w[0].max(k.at))
            .max()
            .unwrap_or_default();
        let ready_again = probes
            .iter()
            .find(|p| p.at > k.at && p.status == Some(200) && (p.node, p.incarnation) != k.leader)
            .map(|p| {
                format!(
                    "{} ({}#{})",
                    ms(p.at - k.at),
                    ["a", "b"][p.node],
                    p.incarnation
                )
            })
            .unwrap_or_else(|| "the leader kept its lease".to_owned());
        println!(
            "{:?} ({}): first ACK after {}, longest pause in ACKs {}, a new leader's /ready 200 after {ready_again}",
            k.what,
            k.detail,
            next.map(|t| ms(t - k.at)).unwrap_or_else(|| "never".into()),
            ms(longest),
        );
    }
    for (at, node, inc, how) in &exits {
        println!(
            "node {}#{inc} exited by itself at {}: {how}",
            ["a", "b"][*node],
            ms(*at - started)
        );
    }

    // Every ACKed alarm is in the journal exactly once.
    let mut missing = Vec::new();
    for a in &acks {
        let key = (account(a.unit), format!("{:04}", a.seq));
        match journaled.get(&key).map(Vec::len) {
            Some(1) => {}
            Some(n) => panic!("alarm {key:?} is in the journal {n} times"),
            None => missing.push(key),
        }
    }
    assert!(
        missing.is_empty(),
        "{} ACKed alarms are not in the journal: {:?}\n{printed}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    // No alarm twice, ACKed or not (a commit whose outcome was unknown, retransmitted).
    let twice: Vec<_> = journaled.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "journaled more than once: {twice:?}");
    // Ids consecutive from 1 across every leader.
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "the journal's ids have gaps or do not start at 1"
    );
    assert_eq!(kills.len(), 3);
}
