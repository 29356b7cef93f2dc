//! The escalation outbox against a local webhook receiver on 127.0.0.1:0 that fails the first
//! attempts (500, a dropped connection, no answer), is stopped and started again on the same
//! port, while the outbox itself is restarted on a reopened store: every delivery is
//! acknowledged exactly once, in order per endpoint, signed, and none acknowledged is sent
//! again. On sled, and on PostgreSQL when `VAKT_TEST_STORE=postgres` (as CI runs it a second
//! time), the reopened store being another node's on the same database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vakt::outbox::{
    DeliveryFilter, DeliveryState, EscalationConfig, IncidentSummary, Outbox, OutboxEvent,
    OutboxOptions, Recipient, RecipientKind, VisitSubscriber, WebhookSecret, verify_signature,
};
use vakt::store::Store;

const TELECOM_SECRET: &str = "telecom-secret-0123456789";
const CARE_SECRET: &str = "care-secret-0123456789abc";

// ---------------------------------------------------------------------------------------
// The receiver: a minimal HTTP/1.1 server whose answers the test scripts per path.
// ---------------------------------------------------------------------------------------

/// What the receiver does with a request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    /// Answer with this status.
    Status(u16),
    /// Close the connection without an answer.
    Drop,
    /// Never answer (the outbox's attempt times out).
    Hang,
    /// Answer 200 after this many milliseconds.
    SlowOk(u64),
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    event: String,
    delivery: u64,
    signature: String,
    content_type: String,
    user_agent: String,
    body: Vec<u8>,
    action: Action,
}

impl Hit {
    fn acknowledged(&self) -> bool {
        matches!(self.action, Action::Status(200..=299) | Action::SlowOk(_))
    }
}

#[derive(Default)]
struct Log {
    hits: Vec<Hit>,
    script: HashMap<String, VecDeque<Action>>,
}

/// The receiver; its log outlives stops and starts.
struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    tasks: Option<JoinSet<()>>,
}

impl Receiver {
    async fn start(addr: SocketAddr, log: Arc<Mutex<Log>>) -> Receiver {
        // The same port again after a stop: retry a moment if it is not free yet.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 40 => {
                    tries += 1;
                    eprintln!("bind {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        let conn_log = log.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let (sock, _) = match listener.accept().await {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                conns.spawn(serve(sock, conn_log.clone()));
            }
        });
        Receiver {
            addr,
            log,
            tasks: Some(tasks),
        }
    }

    /// Stops listening and drops every connection.
    async fn stop(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.abort_all();
            while t.join_next().await.is_some() {}
        }
    }

    fn script(&self, path: &str, actions: &[Action]) {
        self.log
            .lock()
            .unwrap()
            .script
            .entry(path.into())
            .or_default()
            .extend(actions.iter().copied());
    }

    fn hits(&self) -> Vec<Hit> {
        self.log.lock().unwrap().hits.clone()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves one connection: requests one after another (keep-alive).
async fn serve(mut sock: TcpStream, log: Arc<Mutex<Log>>) {
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
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body_start = head_end + 4;
        while buf.len() < body_start + len {
            if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
        let body = buf[body_start..body_start + len].to_vec();
        buf.drain(..body_start + len);
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default();
        assert_eq!(method, "POST", "{request_line}");
        let path = parts.next().unwrap_or_default().to_string();
        let header = |k: &str| headers.get(k).cloned().unwrap_or_default();
        let action = {
            let mut log = log.lock().unwrap();
            let action = log
                .script
                .get_mut(&path)
                .and_then(|s| s.pop_front())
                .unwrap_or(Action::Status(200));
            log.hits.push(Hit {
                path,
                event: header("x-vakt-event"),
                delivery: header("x-vakt-delivery").parse().unwrap_or(0),
                signature: header("x-vakt-signature"),
                content_type: header("content-type"),
                user_agent: header("user-agent"),
                body,
                action,
            });
            action
        };
        let status = match action {
            Action::Drop => return,
            Action::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Action::SlowOk(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                200
            }
            Action::Status(s) => s,
        };
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
        if sock.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The outbox side.
// ---------------------------------------------------------------------------------------

fn options() -> OutboxOptions {
    OutboxOptions {
        backoff_base: Duration::from_millis(40),
        backoff_max: Duration::from_millis(300),
        // Long enough that a busy machine never times out an answer the receiver gave
        // (which the receiver would count as a second acknowledgement).
        attempt_timeout: Duration::from_secs(2),
        ..OutboxOptions::default()
    }
}

fn endpoints(addr: SocketAddr) -> Vec<EscalationConfig> {
    vec![
        EscalationConfig {
            name: "telia-noc".into(),
            kind: RecipientKind::Telecom,
            url: format!("http://{addr}/telecom"),
            secret: WebhookSecret::new(TELECOM_SECRET),
            matches: vec!["Telia".into()],
        },
        EscalationConfig {
            name: "hemtjanst-norr".into(),
            kind: RecipientKind::CareProvider,
            url: format!("http://{addr}/care"),
            secret: WebhookSecret::new(CARE_SECRET),
            matches: vec!["hemtjanst-norr".into()],
        },
        EscalationConfig {
            name: "installer".into(),
            kind: RecipientKind::Installer,
            url: format!("http://{addr}/installer"),
            secret: WebhookSecret::new("installer-secret-0123456789"),
            matches: vec!["Certego".into()],
        },
    ]
}

fn start(dir: &Path, addr: SocketAddr) -> (Outbox, Store) {
    let store = common::open_store(dir).unwrap();
    let outbox = Outbox::start_with(
        store.clone(),
        endpoints(addr),
        options(),
        CancellationToken::new(),
    )
    .unwrap();
    (outbox, store)
}

fn incident(id: u64) -> IncidentSummary {
    IncidentSummary {
        id,
        kind: vakt::model::IncidentKind::TelecomOperator,
        key: "Telia".into(),
        opened_at: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        devices: 25,
        population: 100,
    }
}

fn visitor(id: &str, needs: bool) -> VisitSubscriber {
    VisitSubscriber {
        id: id.into(),
        name: format!("Person {id}"),
        address: "Storgatan 1, 111 22 Stockholm".into(),
        phone: "+46701234567".into(),
        needs_extra_visits: needs,
        accounts: vec![format!("A{id}")],
    }
}

/// An incident's three events (opened to the telecom, extra visits to the care provider,
/// resolved to both): their delivery ids.
fn incident_events(outbox: &Outbox, id: u64) -> Vec<u64> {
    let inc = incident(id);
    let mut ids = Vec::new();
    ids.extend(
        outbox
            .enqueue(
                OutboxEvent::incident_opened("Telia", &inc, &["1001".into(), "1002".into()])
                    .unwrap(),
            )
            .unwrap(),
    );
    ids.extend(
        outbox
            .enqueue(
                OutboxEvent::extra_visits(
                    "hemtjanst-norr",
                    &inc,
                    vec![visitor("2", false), visitor("1", true)],
                )
                .unwrap(),
            )
            .unwrap(),
    );
    for r in [
        Recipient::telecom("Telia"),
        Recipient::care_provider("hemtjanst-norr"),
    ] {
        ids.extend(
            outbox
                .enqueue(
                    OutboxEvent::incident_resolved(
                        r,
                        &inc,
                        jiff::Timestamp::from_second(1_800_003_600).unwrap(),
                        &["1002".into()],
                        Vec::new(),
                    )
                    .unwrap(),
                )
                .unwrap(),
        );
    }
    assert_eq!(ids.len(), 4, "one endpoint each: {ids:?}");
    ids
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every hit is signed with its endpoint's secret and says what its headers say.
fn check_hits(hits: &[Hit]) {
    for h in hits {
        let secret = match h.path.as_str() {
            "/telecom" => TELECOM_SECRET,
            "/care" => CARE_SECRET,
            p => panic!("unexpected path {p}"),
        };
        assert!(
            verify_signature(secret.as_bytes(), &h.body, &h.signature),
            "signature of delivery {}",
            h.delivery
        );
        let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
        assert_eq!(body["id"], h.delivery);
        assert_eq!(body["event"], h.event.as_str());
        assert_eq!(h.content_type, "application/json");
        assert!(h.user_agent.starts_with("vakt/"), "{}", h.user_agent);
    }
}

/// Per path, attempts go in delivery id order, and an id is attempted only after the one
/// before it was acknowledged.
fn check_order(hits: &[Hit]) {
    let mut by_path: HashMap<&str, Vec<&Hit>> = HashMap::new();
    for h in hits {
        by_path.entry(&h.path).or_default().push(h);
    }
    for (path, hs) in by_path {
        for w in hs.windows(2) {
            assert!(
                w[0].delivery <= w[1].delivery,
                "{path}: delivery {} attempted after {}",
                w[1].delivery,
                w[0].delivery
            );
            if w[0].delivery != w[1].delivery {
                assert!(
                    w[0].acknowledged(),
                    "{path}: {} sent before {} was acknowledged",
                    w[1].delivery,
                    w[0].delivery
                );
            }
        }
    }
}

/// Every id was acknowledged exactly once.
fn check_exactly_once(hits: &[Hit], ids: &[u64]) {
    let mut acks: HashMap<u64, usize> = HashMap::new();
    for h in hits.iter().filter(|h| h.acknowledged()) {
        *acks.entry(h.delivery).or_default() += 1;
    }
    for id in ids {
        assert_eq!(acks.get(id), Some(&1), "acknowledgements of delivery {id}");
    }
    assert_eq!(acks.len(), ids.len(), "no other delivery acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_acknowledged_once_through_failures_and_restarts() {
    tokio::time::timeout(Duration::from_secs(28), async {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let mut receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), log.clone()).await;
        let addr = receiver.addr;
        receiver.script(
            "/telecom",
            &[
                Action::Status(500),
                Action::Drop,
                Action::Hang,
                Action::Status(503),
            ],
        );
        receiver.script("/care", &[Action::Drop, Action::Status(500)]);

        // Phase 1: failures, then everything goes through.
        let (outbox, store) = start(dir.path(), addr);
        let mut ids = incident_events(&outbox, 1);
        ids.extend(incident_events(&outbox, 2));
        // An installer event no endpoint matches is not enqueued.
        let none = outbox
            .enqueue(
                OutboxEvent::new(
                    "work_order.created",
                    Recipient::installer("Someone else"),
                    "work_order/1",
                    &json!({"id": 1}),
                )
                .unwrap(),
            )
            .unwrap();
        assert!(none.is_empty());
        until("phase 1 delivered", || outbox.pending() == 0).await;
        assert_eq!(outbox.failing(), 0);
        let phase1 = receiver.hits();
        check_exactly_once(&phase1, &ids);
        assert!(
            phase1.iter().any(|h| h.action == Action::Hang),
            "the script ran"
        );
        let views = outbox.deliveries(&DeliveryFilter::default()).unwrap();
        assert_eq!(views.len(), ids.len());
        assert!(views.iter().all(|v| v.state == DeliveryState::Delivered));
        let first = views.iter().find(|v| v.id == ids[0]).unwrap();
        assert_eq!(first.attempts, 5, "500, drop, hang, 503, then 200");
        assert_eq!(
            first.last_error.as_deref(),
            Some("HTTP 503 Service Unavailable")
        );

        // Phase 2: the receiver is down; new events wait, failing.
        receiver.stop().await;
        let phase2 = incident_events(&outbox, 3);
        until("both endpoints failing", || outbox.failing() == 2).await;
        let failing = outbox
            .deliveries(&DeliveryFilter {
                state: Some(DeliveryState::Failing),
                ..DeliveryFilter::default()
            })
            .unwrap();
        assert!(!failing.is_empty());
        assert!(
            failing
                .iter()
                .all(|v| v.last_error.is_some() && v.attempts > 0)
        );

        // The outbox restarts on a reopened store while the receiver is still down.
        outbox.stop().await;
        drop(outbox);
        drop(store);
        let (outbox, store) = start(dir.path(), addr);
        assert_eq!(outbox.pending(), phase2.len() as u64, "pending ones resume");
        tokio::time::sleep(Duration::from_millis(300)).await;
        ids.extend(&phase2);

        // The receiver comes back on the same port, failing once more at first.
        receiver = Receiver::start(addr, log.clone()).await;
        assert_eq!(receiver.addr, addr);
        receiver.script("/telecom", &[Action::Status(500)]);
        until("phase 2 delivered", || outbox.pending() == 0).await;

        // A last incident after everything restarted.
        ids.extend(incident_events(&outbox, 4));
        until("phase 3 delivered", || outbox.pending() == 0).await;

        let hits = receiver.hits();
        check_exactly_once(&hits, &ids);
        check_order(&hits);
        check_hits(&hits);
        for id in ids.iter().take(8) {
            let before = phase1.iter().filter(|h| h.delivery == *id).count();
            let after = hits.iter().filter(|h| h.delivery == *id).count();
            assert_eq!(before, after, "delivery {id} was not sent again");
        }
        // The extra-visit list: most in need first.
        let visits = hits
            .iter()
            .find(|h| h.event == "incident.extra_visits")
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&visits.body).unwrap();
        assert_eq!(body["data"]["subscribers"][0]["id"], "1");
        assert_eq!(body["recipient"]["kind"], "care_provider");
        // The console's view of one incident.
        let of3 = outbox
            .deliveries(&DeliveryFilter {
                subject: Some("incident/3".into()),
                ..DeliveryFilter::default()
            })
            .unwrap();
        assert_eq!(of3.len(), 4);
        assert!(of3.iter().all(|v| v.state == DeliveryState::Delivered));
        assert!(of3.windows(2).all(|w| w[0].id > w[1].id), "newest first");

        outbox.stop().await;
        drop(store);
        receiver.stop().await;
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_flight_at_shutdown_is_recorded_not_resent() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let mut receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), log.clone()).await;
        let addr = receiver.addr;
        receiver.script("/telecom", &[Action::SlowOk(300)]);

        let (outbox, store) = start(dir.path(), addr);
        let ids = outbox
            .enqueue(OutboxEvent::incident_opened("telia", &incident(9), &[]).unwrap())
            .unwrap();
        assert_eq!(ids.len(), 1);
        until("the attempt is in flight", || !receiver.hits().is_empty()).await;
        // Stop while the receiver has not answered yet: the answer is still recorded.
        outbox.stop().await;
        assert_eq!(outbox.pending(), 0);
        drop(outbox);
        drop(store);

        let (outbox, store) = start(dir.path(), addr);
        assert_eq!(outbox.pending(), 0);
        let v = outbox.delivery(ids[0]).unwrap().unwrap();
        assert_eq!(v.state, DeliveryState::Delivered);
        assert_eq!(v.attempts, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let hits = receiver.hits();
        check_exactly_once(&hits, &ids);
        assert_eq!(hits.len(), 1);
        check_hits(&hits);
        assert_eq!(
            store.outbox_body(ids[0]).unwrap().as_deref(),
            Some(hits[0].body.as_slice()),
            "the stored body is the bytes sent"
        );

        outbox.stop().await;
        receiver.stop().await;
    })
    .await
    .expect("test took too long");
}
