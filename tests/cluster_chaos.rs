//! The whole redundant set-up under load and kills: two `vakt serve` nodes (`[store] backend =
//! "postgres"`) on a Patroni cluster of three PostgreSQL nodes with synchronous replication in
//! strict mode, on etcd (tests/common/patroni.rs), alarm units sending distinct alarms,
//! operators working the queue through the HTTP API, a patrol on the QUIC patrol link and an
//! installer's webhook receiving the outbox.
//!
//! **The units.** Each unit is configured as a real one is, with both nodes: the primary
//! receiver (node `a`) and the backup (node `b`). It keeps a TCP connection to the node it last
//! reached, sends one alarm at a time and waits for the ACK; when a node refuses the
//! connection, does not answer within 5 s, closes or answers anything but ACK, the unit
//! retransmits the same frame (same sequence number, same data) to the other node, until an
//! ACK comes. The units are registered (a subscriber each, in an area with a patrol route),
//! and every tenth alarm is a low battery or its restore, so work orders change all the time
//! and the outbox has their `work_order.*` events to deliver to the installer's webhook.
//!
//! **The consoles.** Three operators, each logged in once; a console follows the leader as
//! the page does: a refused connection, no answer within 5 s or a 503 (a standby) sends it
//! to the other node, where its session still holds. Each takes the oldest waiting Call of
//! the open list (so two of them often claim the same Call at once; one of them takes "next"
//! instead), then dispatches it to the patrol (some of the time, when the home has a route)
//! and closes it with an outcome the closing rule accepts (`patrol_needed` after a dispatch,
//! `help_not_needed` with a reason, or `ambulance_called` where the rule asks for help). A
//! Call whose claim got no answer is found again in the open list as the operator's own. One
//! console keeps the live feed open and reconnects it the same way.
//!
//! **The patrol** uses the patrol protocol (`vakt::sim::patrol_client::Session`, as
//! tests/cluster.rs does): it confirms receipt of each assignment, arrives and completes the
//! visit a moment later each. Its address follows the leader as a load balancer's or
//! keepalived's health check moves it (the node whose `/ready` answers 200, per process):
//! when the address moves, the patrol's connection is taken as gone and it connects again
//! (a patrol that relied on the protocol's 60 s idle timeout alone would notice a dead leader
//! only after that).
//!
//! **The kills.** Under that load, at random moments, the test kills with SIGKILL the vakt
//! leader twice and the PostgreSQL primary's machine once (its etcd member, Patroni and
//! PostgreSQL, see `Patroni::kill_machine`), in a random order. The nodes are supervised as
//! systemd would: a node that exits by itself (a leader that lost its lease while the
//! database failed over) is started again after 1 s; a killed leader is started again once
//! the new leader answers `/ready` and the consoles and the patrol are back, so it comes back
//! as a standby.
//!
//! **Asserted:**
//! - every alarm that got an ACK is in the journal exactly once (a retransmission to the
//!   other node, or to a new leader, is recognised by the unit's sequence number), no alarm
//!   is in it twice, and the journal's ids are consecutive from 1;
//! - no Call was claimed twice: read back through the last leader's API, no Call's timeline
//!   has a claim by one operator while another owned it (ownership ends with a release, a
//!   close, a return to the queue, a reopening or a hand-over), every claim a console was
//!   granted is on its Call's timeline, and no Call was granted to two consoles within one
//!   claim period;
//! - no dispatch or webhook delivered twice: no Call has more dispatches than the consoles
//!   asked for (a console whose request got no answer looks at the Call before it asks
//!   again), every dispatch a console was answered is on its Call, no Call reached the patrol
//!   under more dispatch ids than were asked for, no assignment of a visit the patrol had
//!   completed came again; every webhook delivery is signed, and no event (its body but the
//!   delivery id and time) came under two `X-Vakt-Delivery` keys.
//!
//! **Printed, not asserted**, a line per kill: the gap in ACKs (from the kill to the first ACK
//! of a frame sent after it, and the longest pause between two ACKs until the next kill), the
//! time until a new leader's `/ready` answered 200, until the first console request sent after
//! the kill was served (no 5xx; and the first change so sent succeeded), until the live feed was
//! connected again, and until the patrol's session was established again with its open
//! assignments; the assignments the patrol got again with its new session (the same dispatch
//! id, recognised as the same); and the webhook keys the receiver had acknowledged that were
//! sent again after the kill (the known window between the receiver's 2xx and the outbox's
//! durable mark, which a kill, or a leader's lease lost in the database's failover, may cut). Then the totals: Calls, claims, conflicts, dispatches and why some
//! were refused, the patrol's sessions and visits, webhook deliveries and repeated keys.
//!
//! `#[ignore]`d: it needs etcd, Patroni and PostgreSQL and takes about two minutes;
//! `.ci/run` runs it in its stress stage (with `VAKT_REQUIRE_PATRONI=1`) under a timeout, and
//! it ends itself after [`HARD_LIMIT`].
//!
//! ```sh
//! cargo test --test cluster_chaos -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
#![forbid(unsafe_code)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::node::{BIN, VaktNode, vakt};
use common::patroni::Patroni;
use common::webhook::{self, Hook};
use common::{Answer, Client, Live, plain, token_of};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vakt::dispatch::wire::{FromPatrol, ToPatrol, VisitOutcome};
use vakt::model::{ArrivalMethod, DispatchState};
use vakt::sim::patrol_client::Session;
use vakt::transport::quic::{self, Trust};

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
/// The operators (user, password), one console each.
const OPERATORS: [(&str, &str); 3] = [
    ("chaos-op1", "chaos-operator-password-1"),
    ("chaos-op2", "chaos-operator-password-2"),
    ("chaos-op3", "chaos-operator-password-3"),
];
/// How long a console waits for an answer before it turns to the other node.
const CONSOLE_ANSWER: Duration = Duration::from_secs(5);
/// The patrol.
const PATROL: &str = "c1";
/// How long the patrol stays in each state of a visit.
const VISIT_STEP: Duration = Duration::from_millis(300);

/// One vakt node's place: its addresses and configuration stay, its process comes and goes.
struct Slot {
    name: &'static str,
    dc09: SocketAddr,
    http: SocketAddr,
    quic: SocketAddr,
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
    fn new(config: PathBuf, name: &'static str, quic_port: u16) -> Slot {
        let (dc09, http) = VaktNode::addresses(&config);
        Slot {
            name,
            dc09,
            http,
            quic: SocketAddr::from(([127, 0, 0, 1], quic_port)),
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
    /// When the frame was sent (its last attempt).
    sent: Instant,
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

/// The alarm `seq` of a unit: a burglary, and every tenth a low battery (YT) or its restore
/// (YR), which change the device's work order.
fn alarm_data(account: &str, seq: u16) -> String {
    let code = match seq % 20 {
        0 => "YT",
        10 => "YR",
        _ => "BA",
    };
    format!("#{account}|Nri1/{code}{:03}", seq % 1000)
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
        let frame = plain("SIA-DCS", seq, &account, &alarm_data(&account, seq));
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
            let sent = Instant::now();
            let answered = match s.write_all(&frame).await {
                Ok(()) => answer(s).await,
                Err(e) => Err(e),
            };
            match answered.map(|a| token_of(&a)) {
                Ok(token) if token == "ACK" => {
                    acks.lock().unwrap().push(Ack {
                        unit: i,
                        seq,
                        sent,
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

// ---------------------------------------------------------------------------------------
// The set-up: registers, users, the patrol's token, the configurations.
// ---------------------------------------------------------------------------------------

/// What the set-up made.
struct Setup {
    /// Node a's and node b's configuration and QUIC port.
    nodes: [(PathBuf, u16); 2],
    trust: Trust,
    token: String,
}

/// Writes both nodes' configurations (a shared patrol certificate, the installer's webhook at
/// `hooks`) and puts the registers, the operators and the patrol's token in the database with
/// the `vakt` command, as an alarm centre sets up before the nodes start.
fn setup(dir: &Path, url: &str, hooks: SocketAddr) -> Setup {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.join("patrol.pem"), dir.join("patrol.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let trust = Trust::Pinned(quic::fingerprint(made.cert.der()));
    let nodes = ["a", "b"].map(|name| {
        let quic = VaktNode::patrol_link(dir, url, name, &cert, &key);
        let config = VaktNode::config(dir, url, name);
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "[[escalation]]\nname = \"installer\"\nkind = \"installer\"\nurl = \"http://{hooks}/wo\"\nsecret = \"{}\"\n",
            webhook::SECRET
        ));
        std::fs::write(&config, text).unwrap();
        (config, quic)
    });
    let cfg = nodes[0].0.to_str().unwrap().to_owned();

    let file = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let mut devices = format!("{}\n", vakt::registers::devices::CSV_HEADER_V1);
    let mut subscribers = format!("{}\n", vakt::registers::subscribers::CSV_HEADER);
    for i in 0..UNITS {
        devices.push_str(&format!("{},,,,,s{i},,,Centrum\n", account(i)));
        subscribers.push_str(&format!(
            "s{i},Person {i},19380512-98{i:02},Storgatan {i},123 45,Vaktby,Centrum,070-111 22 {i:02},Hemtjänst Centrum,2,Nyckelskåp,,4711#,,,,Karin,dotter,070-222 33 44,,,,,,,sv\n"
        ));
    }
    let devices = file("devices.csv", devices);
    let subscribers = file("subscribers.csv", subscribers);
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
        format!(
            "id,name,provider,areas,shifts,phone\n{PATROL},Centrum 1,hc,centrum,day 00:00-12:00;evening 12:00-00:00,070-1\n"
        ),
    );
    let routes = file(
        "routes.csv",
        format!("provider,area,patrols\nhc,centrum,{PATROL}\n"),
    );
    for args in [
        vec!["devices", "import", "--config", &cfg, &devices],
        vec![
            "directory",
            "import",
            "--config",
            &cfg,
            "--providers",
            &providers,
            "--areas",
            &areas,
            "--patrols",
            &patrols,
            "--routes",
            &routes,
        ],
        vec!["subscribers", "import", "--config", &cfg, &subscribers],
    ] {
        let (code, err, _) = vakt(&args, "");
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    for (user, password) in OPERATORS {
        let (code, err, _) = vakt(
            &["users", "add", user, "--role", "operator", "--config", &cfg],
            &format!("{password}\n"),
        );
        assert_eq!(code, 0, "{err}");
    }
    let (code, err, token) = vakt(&["patrols", "token", PATROL, "--config", &cfg], "");
    assert_eq!(code, 0, "{err}");
    Setup {
        nodes,
        trust,
        token: token.trim().to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// The consoles.
// ---------------------------------------------------------------------------------------

/// What the consoles did and were answered.
#[derive(Default)]
struct Desk {
    /// Every answer but a standby's 503.
    answers: Vec<Answered>,
    /// Claims answered 200: (console, Call).
    granted: Vec<(usize, u64)>,
    /// Claims refused because another operator owned the Call.
    conflicts: u32,
    /// Claims that got no answer.
    unanswered_claims: u32,
    /// Dispatch requests sent, per Call (answered or not).
    asked: HashMap<u64, u32>,
    /// Dispatch requests answered otherwise than 201, by status and code.
    not_dispatched: BTreeMap<String, u32>,
    /// Dispatches answered 201: (Call, dispatch).
    dispatched: Vec<(u64, u64)>,
    /// Closings answered 200.
    closed: u32,
    /// Answers 401: a session that did not hold.
    unauthorised: Vec<String>,
    /// The highest Call id seen.
    max_call: u64,
    /// When the live feed was connected.
    live: Vec<Instant>,
}

/// One answer a console got.
struct Answered {
    /// When the request was sent.
    sent: Instant,
    /// When the answer came.
    at: Instant,
    status: u16,
    /// It asked for a change (not a GET).
    change: bool,
}

/// One operator's console.
struct Console {
    i: usize,
    user: &'static str,
    client: Client,
    nodes: [SocketAddr; 2],
    /// The node it talks to.
    at: usize,
    desk: Arc<Mutex<Desk>>,
}

impl Console {
    /// One request to the node it talks to; `None` (and the other node next time) when it is
    /// down or a standby.
    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Option<Answer> {
        self.client.addr = self.nodes[self.at];
        let body = body.map(|b| ("application/json", b.to_string()));
        let sent = Instant::now();
        match self
            .client
            .try_send(method, path, body, CONSOLE_ANSWER)
            .await
        {
            Ok(a) if a.status != 503 && a.status != 0 => {
                let mut d = self.desk.lock().unwrap();
                d.answers.push(Answered {
                    sent,
                    at: Instant::now(),
                    status: a.status,
                    change: method != "GET",
                });
                if a.status == 401 {
                    d.unauthorised.push(format!("{method} {path}: {}", a.body));
                }
                Some(a)
            }
            _ => {
                self.at = 1 - self.at;
                None
            }
        }
    }

    /// Works the queue until `stop`.
    async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Acquire) {
            if self.round().await.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Takes one Call and handles it; `None` when there was nothing to do or no answer.
    async fn round(&mut self) -> Option<()> {
        let list = self.call("GET", "/api/calls?state=open", None).await?;
        if list.status != 200 {
            return None;
        }
        let calls = list.json();
        let calls = calls.as_array()?;
        {
            let mut d = self.desk.lock().unwrap();
            for c in calls {
                d.max_call = d.max_call.max(c["id"].as_u64().unwrap_or(0));
            }
        }
        // Its own Call first (a claim whose answer was lost may have been made).
        let own = calls
            .iter()
            .find(|c| c["state"] == "claimed" && c["owner"] == self.user)
            .and_then(|c| c["id"].as_u64());
        let id = match own {
            Some(id) => id,
            None if self.i == 2 => {
                let a = self.call("POST", "/api/calls/next", Some(json!({}))).await;
                let Some(a) = a else {
                    self.desk.lock().unwrap().unanswered_claims += 1;
                    return None;
                };
                if a.status != 200 {
                    return None;
                }
                let id = a.json()["id"].as_u64().unwrap();
                self.desk.lock().unwrap().granted.push((self.i, id));
                id
            }
            None => {
                let id = calls
                    .iter()
                    .filter(|c| c["state"] == "queued")
                    .min_by_key(|c| c["id"].as_u64())?["id"]
                    .as_u64()?;
                let a = self
                    .call("POST", &format!("/api/calls/{id}/claim"), Some(json!({})))
                    .await;
                let mut d = self.desk.lock().unwrap();
                match a.map(|a| a.status) {
                    Some(200) => d.granted.push((self.i, id)),
                    Some(409) => {
                        d.conflicts += 1;
                        return None;
                    }
                    Some(_) => return None,
                    None => {
                        d.unanswered_claims += 1;
                        return None;
                    }
                }
                id
            }
        };
        self.handle(id).await
    }

    /// Dispatches (some of the time) and closes the console's Call `id`.
    async fn handle(&mut self, id: u64) -> Option<()> {
        let view = self.call("GET", &format!("/api/calls/{id}"), None).await?;
        if view.status != 200 {
            return None;
        }
        let view = view.json();
        let mut dispatched = view["dispatches"].as_array().is_some_and(|d| !d.is_empty());
        if !dispatched && view["subscriber"].is_string() && rand::rng().random_bool(0.4) {
            *self.desk.lock().unwrap().asked.entry(id).or_default() += 1;
            let a = self
                .call(
                    "POST",
                    &format!("/api/calls/{id}/dispatch"),
                    Some(json!({})),
                )
                .await?;
            if a.status == 201 {
                let did = a.json()["id"].as_u64().unwrap();
                self.desk.lock().unwrap().dispatched.push((id, did));
                dispatched = true;
            } else {
                let code = a.json()["code"].as_str().unwrap_or("").to_owned();
                *self
                    .desk
                    .lock()
                    .unwrap()
                    .not_dispatched
                    .entry(format!("{} {code}", a.status))
                    .or_default() += 1;
            }
        }
        let outcomes: &[Value] = if dispatched {
            &[json!({"outcome": "patrol_needed"})]
        } else {
            &[
                json!({"outcome": "help_not_needed", "note": "spoke with the person: all well"}),
                json!({"outcome": "ambulance_called"}),
            ]
        };
        for body in outcomes {
            let a = self
                .call(
                    "POST",
                    &format!("/api/calls/{id}/close"),
                    Some(body.clone()),
                )
                .await?;
            match a.status {
                200 => {
                    self.desk.lock().unwrap().closed += 1;
                    break;
                }
                // The closing rule asks for help (life-safety): the next outcome.
                409 if a.body.contains("closing.") => continue,
                _ => return None,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some(())
    }
}

/// Keeps `client`'s live feed open on whichever node serves it, until `stop`.
async fn live_feed(
    mut client: Client,
    nodes: [SocketAddr; 2],
    desk: Arc<Mutex<Desk>>,
    stop: Arc<AtomicBool>,
) {
    let mut at = 0;
    while !stop.load(Ordering::Acquire) {
        client.addr = nodes[at];
        match tokio::time::timeout(Duration::from_secs(2), Live::try_connect(&client)).await {
            Ok(Ok(live)) => {
                desk.lock().unwrap().live.push(Instant::now());
                let ended = live.until_ended();
                tokio::pin!(ended);
                loop {
                    tokio::select! {
                        _ = &mut ended => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {
                            if stop.load(Ordering::Acquire) {
                                return;
                            }
                        }
                    }
                }
            }
            _ => {
                at = 1 - at;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The patrol.
// ---------------------------------------------------------------------------------------

/// One dispatch as the patrol knows it.
struct Seen {
    call: u64,
    /// The state its last assignment said.
    state: DispatchState,
    /// Its completion was acknowledged.
    done: bool,
}

/// What the patrol saw.
#[derive(Default)]
struct Beat {
    /// When each session was established (welcome and open assignments in).
    sessions: Vec<Instant>,
    /// Whether a session is up now.
    connected: bool,
    seen: BTreeMap<u64, Seen>,
    /// Assignments of a dispatch it knew, sent again with a new session's welcome.
    resent_on_reconnect: Vec<Instant>,
    /// Assignments of a dispatch it knew, pushed again in a state it already had.
    repeated: u32,
    /// Assignments of a live dispatch whose completion it had been acknowledged.
    after_done: Vec<u64>,
    /// Events acknowledged.
    acked: u32,
    /// Events refused, with the answer.
    refused: Vec<String>,
    /// Connections that failed: (when it was tried, how long it took, why).
    failed: Vec<(Instant, Duration, String)>,
}

impl Beat {
    /// Takes in an assignment; `open` holds the live dispatches and since when in their state.
    fn take(
        &mut self,
        a: &vakt::dispatch::wire::AssignmentMsg,
        reconnect: bool,
        open: &mut HashMap<u64, (DispatchState, Instant)>,
    ) {
        let live = matches!(
            a.state,
            DispatchState::Offered
                | DispatchState::Received
                | DispatchState::Accepted
                | DispatchState::Arrived
        );
        match self.seen.get_mut(&a.dispatch) {
            Some(s) => {
                if s.done {
                    if live {
                        self.after_done.push(a.dispatch);
                    }
                    return;
                }
                if reconnect {
                    self.resent_on_reconnect.push(Instant::now());
                } else if s.state == a.state {
                    self.repeated += 1;
                }
                s.state = a.state;
            }
            None => {
                self.seen.insert(
                    a.dispatch,
                    Seen {
                        call: a.call,
                        state: a.state,
                        done: false,
                    },
                );
            }
        }
        if live {
            let since = match open.get(&a.dispatch) {
                Some((s, t)) if *s == a.state => *t,
                _ => Instant::now(),
            };
            open.insert(a.dispatch, (a.state, since));
        } else {
            open.remove(&a.dispatch);
        }
    }
}

/// Returns once the patrols' address has moved away from `leader`.
async fn moved(vip: &Mutex<Option<(usize, u32)>>, leader: (usize, u32)) {
    while *vip.lock().unwrap() == Some(leader) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The patrol: connected to the leader's address (`vip`), it receives, arrives and completes
/// every assignment, until `stop`.
async fn patrol(
    quic: [SocketAddr; 2],
    trust: Trust,
    token: String,
    vip: Arc<Mutex<Option<(usize, u32)>>>,
    beat: Arc<Mutex<Beat>>,
    stop: Arc<AtomicBool>,
) {
    let mut open: HashMap<u64, (DispatchState, Instant)> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        let Some(leader) = *vip.lock().unwrap() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // A connection to a node that died waits until the address moves.
        let tried = Instant::now();
        let connected = tokio::select! {
            c = tokio::time::timeout(
                Duration::from_secs(5),
                Session::connect(quic[leader.0], &trust, PATROL, &token),
            ) => c,
            _ = moved(&vip, leader) => continue,
        };
        let (mut s, welcome, assignments) = match connected {
            Ok(Ok(session)) => session,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no session within 5 s".to_owned(),
                };
                beat.lock()
                    .unwrap()
                    .failed
                    .push((tried, tried.elapsed(), why));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        {
            let mut b = beat.lock().unwrap();
            b.sessions.push(Instant::now());
            b.connected = true;
            // An assignment it holds that the welcome does not list has ended.
            open.retain(|d, _| welcome.open.contains(d));
            for a in &assignments {
                b.take(a, true, &mut open);
            }
        }
        'session: while !stop.load(Ordering::Acquire) && *vip.lock().unwrap() == Some(leader) {
            let due = open
                .iter()
                .find(|(_, (_, since))| since.elapsed() >= VISIT_STEP)
                .map(|(d, (state, _))| (*d, *state));
            if let Some((dispatch, state)) = due {
                let (seq, at) = (s.next_seq(), jiff::Timestamp::now());
                let (ev, next) = match state {
                    DispatchState::Offered => (
                        FromPatrol::Received { seq, dispatch, at },
                        DispatchState::Received,
                    ),
                    DispatchState::Received | DispatchState::Accepted => (
                        FromPatrol::Arrived {
                            seq,
                            dispatch,
                            at,
                            method: ArrivalMethod::App,
                            code: None,
                        },
                        DispatchState::Arrived,
                    ),
                    _ => (
                        FromPatrol::Completed {
                            seq,
                            dispatch,
                            at,
                            outcome: VisitOutcome::Helped,
                            note: String::new(),
                        },
                        DispatchState::Completed,
                    ),
                };
                // An event the node does not answer waits until the address moves (or the
                // session's own answer time runs out).
                let answer = tokio::select! {
                    a = s.send_event(&ev) => a,
                    _ = moved(&vip, leader) => break 'session,
                };
                match answer {
                    Ok(ToPatrol::Ack { .. }) => {
                        let mut b = beat.lock().unwrap();
                        b.acked += 1;
                        if let Some(seen) = b.seen.get_mut(&dispatch) {
                            seen.done = next == DispatchState::Completed;
                        }
                        if next == DispatchState::Completed {
                            open.remove(&dispatch);
                        } else {
                            open.insert(dispatch, (next, Instant::now()));
                        }
                    }
                    Ok(other) => {
                        beat.lock()
                            .unwrap()
                            .refused
                            .push(format!("{ev:?}: {other:?}"));
                        open.remove(&dispatch);
                    }
                    _ => break 'session,
                }
            }
            match s.next_push(Duration::from_millis(100)).await {
                Ok(None) => {}
                Ok(Some(ToPatrol::Assignment(a))) => {
                    beat.lock().unwrap().take(&a, false, &mut open)
                }
                Ok(Some(ToPatrol::Cancelled { dispatch, .. })) => {
                    open.remove(&dispatch);
                }
                Ok(Some(ToPatrol::Error { fatal: true, .. })) | Err(_) => break 'session,
                Ok(Some(_)) => {}
            }
        }
        beat.lock().unwrap().connected = false;
        drop(s);
    }
}

// ---------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------

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
    let (hooks_addr, hooks) = webhook::receiver().await;
    let set = {
        let (dir, url) = (dir.path().to_owned(), url.clone());
        tokio::task::spawn_blocking(move || setup(&dir, &url, hooks_addr))
            .await
            .unwrap()
    };
    let [(config_a, quic_a), (config_b, quic_b)] = set.nodes.clone();
    let nodes = Arc::new(Mutex::new(Nodes {
        slots: vec![
            Slot::new(config_a, "a", quic_a),
            Slot::new(config_b, "b", quic_b),
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
    // The `/ready` probes, every 100 ms on each node; the patrols' address moves to the
    // node (process) that answers 200.
    let probes = Arc::new(Mutex::new(Vec::<Probe>::new()));
    let vip = Arc::new(Mutex::new(None::<(usize, u32)>));
    let prober = {
        let (nodes, ended, probes, vip) =
            (nodes.clone(), ended.clone(), probes.clone(), vip.clone());
        tokio::spawn(async move {
            while !ended.load(Ordering::Acquire) {
                let addrs: Vec<(SocketAddr, u32)> = {
                    let n = nodes.lock().unwrap();
                    n.slots.iter().map(|s| (s.http, s.incarnation)).collect()
                };
                for (node, (addr, incarnation)) in addrs.into_iter().enumerate() {
                    let status = ready(addr).await;
                    if status == Some(200) {
                        *vip.lock().unwrap() = Some((node, incarnation));
                    }
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

    // The consoles, logged in on the leader; the live feed of the first; the patrol.
    let (http, quic) = {
        let n = nodes.lock().unwrap();
        (
            [n.slots[0].http, n.slots[1].http],
            [n.slots[0].quic, n.slots[1].quic],
        )
    };
    let desk = Arc::new(Mutex::new(Desk::default()));
    let beat = Arc::new(Mutex::new(Beat::default()));
    let work_stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (i, (user, password)) in OPERATORS.into_iter().enumerate() {
        let client = Client::login(http[0], user, password).await;
        if i == 0 {
            workers.push(tokio::spawn(live_feed(
                client.clone(),
                http,
                desk.clone(),
                work_stop.clone(),
            )));
        }
        let console = Console {
            i,
            user,
            client,
            nodes: http,
            at: 0,
            desk: desk.clone(),
        };
        workers.push(tokio::spawn(console.run(work_stop.clone())));
    }
    workers.push(tokio::spawn(patrol(
        quic,
        set.trust.clone(),
        set.token.clone(),
        vip.clone(),
        beat.clone(),
        work_stop.clone(),
    )));

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
        let (at, detail) = match what {
            Kill::VaktLeader => {
                let at = Instant::now();
                nodes.lock().unwrap().slots[leader_now.0].kill(None);
                (at, format!("vakt node {}", ["a", "b"][leader_now.0]))
            }
            Kill::PostgresPrimary => {
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || {
                    let mut c = c.lock().unwrap();
                    let p = c.primary().expect("a PostgreSQL primary before the kill");
                    let at = Instant::now();
                    c.kill_machine(p);
                    (at, format!("PostgreSQL primary {}", c.machines[p].name))
                })
                .await
                .unwrap()
            }
        };
        println!(
            "kill at {} ({}): {detail} (vakt leader {}#{})",
            ms(at - started),
            jiff::Timestamp::now(),
            ["a", "b"][leader_now.0],
            leader_now.1
        );
        kills.push(Killed {
            what,
            at,
            leader: leader_now,
            detail: detail.clone(),
        });

        // Recovery: a leader again (not the killed process), ACKs after the kill, a console
        // answered and the patrol connected to the leader.
        loop {
            assert!(
                at.elapsed() < RECOVERY,
                "no recovery within {RECOVERY:?} of the kill of the {detail}:\n{}\n{}",
                nodes.lock().unwrap().printed(),
                cluster.lock().unwrap().logs()
            );
            let l = leader(&nodes).await;
            let acked_since = acks.lock().unwrap().iter().any(|a| a.sent > at);
            // A change: a read may be served from memory while the database is gone.
            let console_since = desk
                .lock()
                .unwrap()
                .answers
                .iter()
                .any(|a| a.sent > at && a.change && (200..300).contains(&a.status));
            let patrol_in = {
                let b = beat.lock().unwrap();
                b.connected
                    && (b.sessions.last().is_some_and(|&t| t > at) || l == Some(leader_now))
                    && *vip.lock().unwrap() == l
            };
            let served = acked_since && console_since && patrol_in;
            if l.is_some_and(|l| l != leader_now) && served {
                break;
            }
            if what == Kill::PostgresPrimary && l == Some(leader_now) && served {
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

    // The units stop: each finishes the alarm it has under way, within 30 s; then the
    // consoles and the patrol.
    stop.store(true, Ordering::Release);
    *give_up.lock().unwrap() = Some(Instant::now() + Duration::from_secs(30));
    for u in units {
        u.await.unwrap();
    }
    work_stop.store(true, Ordering::Release);
    for w in workers {
        w.await.unwrap();
    }
    let done_at = Instant::now();

    // Every Call, with its timeline and dispatches, through the last leader's API.
    let last = leader(&nodes).await.expect("a leader at the end");
    let mut reader = Client::login(http[last.0], OPERATORS[0].0, OPERATORS[0].1).await;
    let max_seen = desk.lock().unwrap().max_call;
    let mut calls: BTreeMap<u64, Value> = BTreeMap::new();
    let (mut id, mut missing_in_a_row) = (1u64, 0);
    while id <= max_seen || missing_in_a_row < 20 {
        let a = reader.get(&format!("/api/calls/{id}")).await;
        match a.status {
            200 => {
                calls.insert(id, a.json());
                missing_in_a_row = 0;
            }
            404 => missing_in_a_row += 1,
            other => panic!("GET /api/calls/{id}: {other} {}", a.body),
        }
        id += 1;
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
    let desk = std::mem::take(&mut *desk.lock().unwrap());
    let beat = std::mem::take(&mut *beat.lock().unwrap());
    let hooks: Vec<Hook> = hooks.lock().unwrap().clone();

    // The figures.
    let first = acks.iter().map(|a| a.at).min().unwrap();
    let last_ack = acks.iter().map(|a| a.at).max().unwrap();
    let retransmitted = acks.iter().filter(|a| a.attempts > 1).count();
    let by_backup = acks.iter().filter(|a| a.node == 1).count();
    println!(
        "{} alarms ACKed from {UNITS} units over {} ({:.0}/s), {retransmitted} after a retransmission, {by_backup} by node b; {} journal rows",
        acks.len(),
        ms(last_ack - first),
        acks.len() as f64 / (last_ack - first).as_secs_f64(),
        rows.len()
    );
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    // The first delivery of each webhook key.
    let mut first_hook: HashMap<&str, Instant> = HashMap::new();
    for h in &hooks {
        first_hook.entry(h.delivery.as_str()).or_insert(h.at);
    }
    let after = |t: Option<Instant>, k: &Killed| -> String {
        t.map(|t| ms(t - k.at))
            .unwrap_or_else(|| "not before the next kill".into())
    };
    println!(
        "{:<42} {:>8} {:>9} {:>12} {:>8} {:>8} {:>9} {:>8} {:>10} {:>9}",
        "kill",
        "1st ACK",
        "ACK pause",
        "/ready 200",
        "console",
        "change",
        "live feed",
        "patrol",
        "reassigned",
        "hook keys"
    );
    println!(
        "{:<42} {:>8} {:>9} {:>12} {:>8} {:>8} {:>9} {:>8} {:>10} {:>9}",
        "", "", "", "", "", "", "", "", "(resent)", "(again)"
    );
    for (n, k) in kills.iter().enumerate() {
        // Until the next kill, or the end.
        let window_end = kills.get(n + 1).map_or(done_at, |k| k.at);
        let within = |t: &Instant| *t > k.at && *t < window_end;
        // The first ACK of a frame sent after the kill.
        let next = acks.iter().filter(|a| a.sent > k.at).map(|a| a.at).min();
        let longest = times
            .windows(2)
            .filter(|w| w[1] > k.at && w[0] < window_end)
            // A pause that runs into the next kill's window counts there from that kill.
            .map(|w| w[1].min(window_end) - w[0].max(k.at))
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
            .unwrap_or_else(|| "kept".to_owned());
        // The first request sent after the kill that was served.
        let console = desk
            .answers
            .iter()
            .filter(|a| within(&a.sent) && a.status < 500)
            .map(|a| a.at)
            .min();
        let change = desk
            .answers
            .iter()
            .filter(|a| within(&a.sent) && a.change && (200..300).contains(&a.status))
            .map(|a| a.at)
            .min();
        let live = desk.live.iter().find(|t| within(t)).copied();
        let patrol = beat.sessions.iter().find(|t| within(t)).copied();
        // Keys the receiver had acknowledged (before the kill, or after it by a leader that
        // lost its lease before its mark) sent again after the kill.
        let resent: BTreeSet<&str> = hooks
            .iter()
            .filter(|h| within(&h.at) && first_hook[h.delivery.as_str()] < h.at)
            .map(|h| h.delivery.as_str())
            .collect();
        let kept = |t: Option<Instant>| match (t, k.what) {
            (None, Kill::PostgresPrimary) if ready_again == "kept" => "kept".to_owned(),
            (t, _) => after(t, k),
        };
        println!(
            "{:<42} {:>8} {:>9} {:>12} {:>8} {:>8} {:>9} {:>8} {:>10} {:>9}",
            format!("{:?} ({})", k.what, k.detail),
            next.map(|t| ms(t - k.at)).unwrap_or_else(|| "never".into()),
            ms(longest),
            ready_again,
            after(console, k),
            after(change, k),
            kept(live),
            kept(patrol),
            beat.resent_on_reconnect
                .iter()
                .filter(|t| within(t))
                .count(),
            resent.len(),
        );
    }
    // Why the patrol's connections failed (a node that died, a leader without its database).
    let mut failed: BTreeMap<&str, (u32, Duration)> = BTreeMap::new();
    for (_, took, why) in &beat.failed {
        let f = failed.entry(why.as_str()).or_default();
        f.0 += 1;
        f.1 = f.1.max(*took);
    }
    for (why, (n, took)) in failed {
        println!(
            "the patrol's connection failed {n} times (each within {}): {why}",
            ms(took)
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

    check_claims(&calls, &desk);
    check_dispatches(&calls, &desk, &beat);
    check_webhooks(&hooks);
}

/// No Call was owned by two operators at once, and the consoles' grants agree with the
/// timelines.
fn check_claims(calls: &BTreeMap<u64, Value>, desk: &Desk) {
    assert!(
        desk.unauthorised.is_empty(),
        "sessions did not hold: {:?}",
        desk.unauthorised
    );
    let mut claims = 0;
    let mut overlapping = Vec::new();
    // (Call, user) -> claims on the timeline.
    let mut lines: HashMap<(u64, &str), u32> = HashMap::new();
    for (&id, call) in calls {
        let mut owner: Option<&str> = None;
        for line in call["timeline"].as_array().unwrap() {
            let user = line["user"].as_str();
            match line["type"].as_str().unwrap_or("") {
                "claimed" => {
                    let user = user.expect("a claim names its operator");
                    claims += 1;
                    *lines.entry((id, user)).or_default() += 1;
                    if let Some(o) = owner.filter(|&o| o != user) {
                        overlapping
                            .push(format!("Call {id}: {user} claimed it while {o} owned it"));
                    }
                    owner = Some(user);
                }
                "handed_over" => owner = line["to"].as_str(),
                "released" | "closed" | "returned" | "reopened" => owner = None,
                _ => {}
            }
        }
    }
    assert!(
        overlapping.is_empty(),
        "{} times a Call was owned by two operators at once: {:?}",
        overlapping.len(),
        &overlapping[..overlapping.len().min(10)]
    );
    // Every grant is on its Call's timeline (it was durable before the answer), and a Call
    // granted to several consoles has a claim line of each of them (a period each).
    let mut granted: HashMap<(u64, &str), u32> = HashMap::new();
    for &(console, call) in &desk.granted {
        *granted.entry((call, OPERATORS[console].0)).or_default() += 1;
    }
    for (&(call, user), &n) in &granted {
        let on_timeline = lines.get(&(call, user)).copied().unwrap_or(0);
        assert!(
            on_timeline >= n,
            "Call {call} was granted to {user} {n} times, its timeline has {on_timeline} claims by {user}: {}",
            calls
                .get(&call)
                .map(|c| c["timeline"].to_string())
                .unwrap_or_default()
        );
    }
    let shared: Vec<u64> = {
        let mut by_call: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
        for &(call, user) in granted.keys() {
            by_call.entry(call).or_default().insert(user);
        }
        by_call
            .into_iter()
            .filter(|(_, users)| users.len() > 1)
            .map(|(call, _)| call)
            .collect()
    };
    println!(
        "{} Calls; {claims} claims on their timelines, {} granted to the consoles ({} Calls granted to more than one console, each in a claim period of its own), {} refused as owned by another, {} unanswered; {} closed",
        calls.len(),
        desk.granted.len(),
        shared.len(),
        desk.conflicts,
        desk.unanswered_claims,
        desk.closed
    );
    assert!(
        !desk.granted.is_empty() && desk.closed > 0,
        "the consoles handled no Call"
    );
}

/// No Call got a dispatch it did not ask for, and the patrol effected each once.
fn check_dispatches(calls: &BTreeMap<u64, Value>, desk: &Desk, beat: &Beat) {
    let mut stored = 0;
    for (&id, call) in calls {
        let ds: Vec<u64> = call["dispatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_u64().unwrap())
            .collect();
        stored += ds.len();
        let asked = desk.asked.get(&id).copied().unwrap_or(0) as usize;
        assert!(
            ds.len() <= asked,
            "Call {id} has dispatches {ds:?}, {asked} asked for"
        );
    }
    for (call, did) in &desk.dispatched {
        let on_call = calls
            .get(call)
            .and_then(|c| c["dispatches"].as_array())
            .is_some_and(|ds| ds.iter().any(|d| d["id"].as_u64() == Some(*did)));
        assert!(
            on_call,
            "dispatch {did} was answered but is not on Call {call}"
        );
    }
    let mut by_call: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (&d, s) in &beat.seen {
        by_call.entry(s.call).or_default().insert(d);
    }
    for (call, ds) in &by_call {
        let asked = desk.asked.get(call).copied().unwrap_or(0) as usize;
        assert!(
            ds.len() <= asked,
            "the patrol got Call {call} under dispatches {ds:?}, {asked} asked for"
        );
    }
    assert!(
        beat.after_done.is_empty(),
        "assignments of visits the patrol had completed came again: {:?}",
        beat.after_done
    );
    let completed = beat.seen.values().filter(|s| s.done).count();
    println!(
        "{} dispatches asked for, {} answered 201 ({:?} otherwise), {stored} on the Calls ({} made though not answered 201); the patrol: {} sessions, {} assignments, {completed} visits completed, {} events acknowledged, {} refused {:?}; assignments resent with a new session's welcome (the same dispatch id) {}, pushed again unchanged {}",
        desk.asked.values().sum::<u32>(),
        desk.dispatched.len(),
        desk.not_dispatched,
        stored.saturating_sub(desk.dispatched.len()),
        beat.sessions.len(),
        beat.seen.len(),
        beat.acked,
        beat.refused.len(),
        beat.refused,
        beat.resent_on_reconnect.len(),
        beat.repeated
    );
    assert!(completed > 0, "the patrol completed no visit");
}

/// Every delivery signed, and no event under two delivery keys.
fn check_webhooks(hooks: &[Hook]) {
    assert!(
        hooks.iter().all(|h| h.signature_ok),
        "a webhook delivery was not signed right"
    );
    // An event is its body but the delivery's id and time.
    let mut keys_of: HashMap<String, BTreeSet<&str>> = HashMap::new();
    let mut times: HashMap<&str, u32> = HashMap::new();
    for h in hooks {
        let mut event = h.body.clone();
        let o = event.as_object_mut().expect("a JSON body");
        o.remove("id");
        o.remove("created_at");
        keys_of
            .entry(event.to_string())
            .or_default()
            .insert(h.delivery.as_str());
        *times.entry(h.delivery.as_str()).or_default() += 1;
    }
    let again = times.values().filter(|&&n| n > 1).count();
    println!(
        "webhook: {} deliveries of {} keys ({} events); {again} keys delivered more than once (the receiver's 2xx before the outbox's mark), at most {} times",
        hooks.len(),
        times.len(),
        keys_of.len(),
        times.values().max().copied().unwrap_or(0)
    );
    let twice: Vec<_> = keys_of.iter().filter(|(_, k)| k.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{} events delivered under two keys, such as {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    assert!(!hooks.is_empty(), "the outbox delivered nothing");
}
