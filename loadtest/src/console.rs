//! `vakt-loadtest console` and `console-setup`: how long an alarm takes from its ACK (as
//! the device sees it) to its Call on the operator console's live feed, while a heartbeat
//! load runs.
//!
//! `console-setup` writes (and with `--http` imports through the admin API) N alarm devices,
//! each with its own subscriber, and the heartbeat devices: the plain accounts the `dc09`
//! scenario generates (hex 1000 + i), registered without a subscriber.
//!
//! `console` logs in as an operator, opens the WebSocket `/api/live` and waits for its
//! snapshot. It starts the heartbeat load as a child process running this binary's own
//! `dc09 --kind heartbeat --rate R` (so the heartbeat figures are the `dc09` scenario's),
//! waits for its warm-up, then sends the alarms open-loop, evenly spaced: alarm `i` comes
//! from account `--accounts-from + i` over a connection of its own (connect, one ADM-CID 101,
//! read the ACK, close). For each alarm it records when the ACK was read and when the first
//! `call` message for its account arrived on the WebSocket whose Call is new or whose
//! `alarm_count` grew (a snapshot after the feed fell behind counts too, at its arrival).
//! ACK → WebSocket is the second minus the first; a message that beat the ACK to the client
//! counts as 0 and is counted apart. A Call that has not arrived 10 s (`--call-timeout-secs`)
//! after the last ACK is missing, and any missing Call or alarm error makes the run fail.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::dc09::resolve;
use crate::device::{self, BASE_PLAIN, Content, FrameGen, Identity, MAX_GENERATED};
use crate::net;
use crate::registry;
use crate::stats::{self, ErrorKind, Latency, Live, Stats, round3};

/// First alarm account (hex) unless `--accounts-from` says otherwise.
pub const DEFAULT_ALARM_BASE: &str = "C00000";
/// Most alarms (and alarm devices) of one run.
pub const MAX_ALARMS: usize = 100_000;
/// Most heartbeat connections.
pub const MAX_HEARTBEAT_CONNS: usize = 20_000;
/// The Contact ID event of every alarm: 101, personal emergency (a pendant press).
const ALARM_CODE: u16 = 101;
/// Environment variable read when `--password` is not given.
pub const PASSWORD_ENV: &str = "VAKT_LOADTEST_PASSWORD";
/// Environment variable read when `--admin-password` is not given.
pub const ADMIN_PASSWORD_ENV: &str = "VAKT_LOADTEST_ADMIN_PASSWORD";
/// One HTTP exchange (connect, send, read the whole answer) may take this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest HTTP answer read.
const HTTP_MAX_ANSWER: usize = 16 << 20;
/// Rows per import request (each request carries the header again).
const IMPORT_BATCH: usize = 2000;
/// How long the WebSocket may take to open and send its snapshot.
const WS_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// `supervision_secs` of the devices setup writes (the longest allowed: the alarm devices
/// send one frame per run and must not be reported silent).
const SETUP_SUPERVISION_SECS: u32 = 90_000;
/// Extra time the heartbeat child may take beyond its planned run before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(90);

/// Options of the `console` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// vakt's DC-09 TCP address, HOST:PORT.
    #[arg(long)]
    pub tcp: String,
    /// vakt's HTTP address (console and API), HOST:PORT.
    #[arg(long)]
    pub http: String,
    /// Console user (role operator or higher).
    #[arg(long)]
    pub user: String,
    /// Its password (default: the environment variable VAKT_LOADTEST_PASSWORD).
    #[arg(long)]
    pub password: Option<String>,
    /// Alarms to send, each from another device (account) and so each a new Call.
    #[arg(long, default_value_t = 1000)]
    pub alarms: usize,
    /// Alarms per second, evenly spaced (open loop).
    #[arg(long, default_value_t = 20.0)]
    pub alarm_rate: f64,
    /// NULL heartbeats per second offered meanwhile (0 = no heartbeat load).
    #[arg(long, default_value_t = 10_000.0)]
    pub heartbeat_rate: f64,
    /// Connections the heartbeats are spread over (the `dc09` generated plain accounts).
    #[arg(long, default_value_t = 100)]
    pub heartbeat_conns: usize,
    /// First alarm account (hex); alarm i uses this + i. Must match `console-setup`.
    #[arg(long, default_value = DEFAULT_ALARM_BASE)]
    pub accounts_from: String,
    /// Seconds of heartbeat load before the first alarm.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Connect and ACK timeout of one alarm, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout_secs: f64,
    /// A Call not on the console this many seconds after the last ACK is missing.
    #[arg(long, default_value_t = 10.0)]
    pub call_timeout_secs: f64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `console-setup`.
#[derive(clap::Args, Debug, Clone)]
pub struct SetupOptions {
    /// vakt's HTTP address: import the files through the admin API. Without it the files
    /// are only written (for `vakt devices import` / `vakt subscribers import`).
    #[arg(long)]
    pub http: Option<String>,
    /// Admin user for the import.
    #[arg(long, default_value = "admin")]
    pub admin_user: String,
    /// Its password (default: VAKT_LOADTEST_ADMIN_PASSWORD, then VAKT_LOADTEST_PASSWORD).
    #[arg(long)]
    pub admin_password: Option<String>,
    /// Alarm devices, each with a subscriber of its own (`LT-<account>`).
    #[arg(long, default_value_t = 1000)]
    pub alarm_devices: usize,
    /// First alarm account (hex).
    #[arg(long, default_value = DEFAULT_ALARM_BASE)]
    pub accounts_from: String,
    /// Heartbeat devices to register (hex 1000 + i, no subscriber); 0 leaves the
    /// heartbeats to unknown accounts, which vakt ACKs as well.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_devices: usize,
    /// Write `devices.csv` and `subscribers.csv` here.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

// ---- setup ----

/// Parses a hex account and checks that `n` accounts from it stay valid (3 to 16 hex digits).
fn account_base(hex: &str, n: usize) -> anyhow::Result<u64> {
    let base = u64::from_str_radix(hex.trim(), 16)
        .map_err(|_| anyhow::anyhow!("--accounts-from {hex:?} is not a hex number"))?;
    let last = base
        .checked_add(n as u64)
        .filter(|&l| l <= 0xFFFF_FFFF_FFFF)
        .ok_or_else(|| anyhow::anyhow!("--accounts-from {hex} + {n} is too large"))?;
    anyhow::ensure!(
        base >= 0x100,
        "--accounts-from must be at least 100 (accounts have 3 hex digits or more)"
    );
    // The heartbeats use the dc09 generated plain accounts: keep the ranges apart.
    let hb = u64::from(BASE_PLAIN)..u64::from(BASE_PLAIN) + u64::from(MAX_GENERATED);
    anyhow::ensure!(
        last <= hb.start || base >= hb.end,
        "--accounts-from {hex} + {n} overlaps the heartbeat accounts ({:X}..{:X}); \
         use e.g. {DEFAULT_ALARM_BASE}",
        hb.start,
        hb.end
    );
    Ok(base)
}

/// Account `i` from `base`, upper-case hex.
fn account(base: u64, i: usize) -> String {
    format!("{:X}", base + i as u64)
}

/// The subscriber of an alarm account: derived from the account, so each account has its
/// own subscriber and another `--accounts-from` gives fresh ones.
fn subscriber_id(account: &str) -> String {
    format!("LT-{account}")
}

/// Device CSV rows (no header): the alarm devices, then the heartbeat devices.
fn device_rows(base: u64, alarms: usize, heartbeats: usize) -> Vec<String> {
    let mut rows = Vec::with_capacity(alarms + heartbeats);
    for i in 0..alarms {
        let a = account(base, i);
        let s = subscriber_id(&a);
        rows.push(format!(
            "{a},,,,,{s},{SETUP_SUPERVISION_SECS},Telia,Lasttest,pendant"
        ));
    }
    for i in 0..heartbeats {
        rows.push(format!(
            "{:X},,,,,,{SETUP_SUPERVISION_SECS},Telia,Lasttest,carephone",
            u64::from(BASE_PLAIN) + i as u64
        ));
    }
    rows
}

/// Subscriber CSV rows (no header), one per alarm device.
fn subscriber_rows(base: u64, alarms: usize) -> Vec<String> {
    (0..alarms)
        .map(|i| {
            let a = account(base, i);
            let mut cells = vec![String::new(); 26];
            cells[0] = subscriber_id(&a);
            cells[1] = format!("Lasttest {a}");
            cells[2] = format!("19400101-{:04}", i % 9999 + 1);
            cells[9] = "0".to_string();
            cells[25] = "sv".to_string();
            cells.join(",")
        })
        .collect()
}

fn csv(header: &str, rows: &[String]) -> String {
    let mut text = String::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 512);
    text.push_str(header);
    text.push('\n');
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    text
}

/// Runs `console-setup`.
///
/// # Errors
/// Bad options, files that cannot be written, or an import the server refuses.
pub async fn setup(o: SetupOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_ALARMS).contains(&o.alarm_devices),
        "--alarm-devices must be 1..={MAX_ALARMS}"
    );
    anyhow::ensure!(
        o.heartbeat_devices <= MAX_HEARTBEAT_CONNS,
        "--heartbeat-devices must be 0..={MAX_HEARTBEAT_CONNS}"
    );
    anyhow::ensure!(
        o.http.is_some() || o.out_dir.is_some(),
        "give --http (import) or --out-dir (write files), or both"
    );
    let base = account_base(&o.accounts_from, o.alarm_devices)?;
    let devices = device_rows(base, o.alarm_devices, o.heartbeat_devices);
    let subscribers = subscriber_rows(base, o.alarm_devices);
    // The tests check both files with vakt's own parsers.
    let devices_text = csv(registry::DEVICES_HEADER_V2, &devices);
    let subscribers_text = csv(registry::SUBSCRIBERS_HEADER, &subscribers);
    if let Some(dir) = &o.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, text) in [
            ("devices.csv", &devices_text),
            ("subscribers.csv", &subscribers_text),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
    }
    let mut imported = false;
    if let Some(http) = &o.http {
        let addr = resolve(http).await?;
        let password = password(
            o.admin_password.as_deref(),
            &[ADMIN_PASSWORD_ENV, PASSWORD_ENV],
        )
        .context("--admin-password")?;
        let cookie = login(addr, &o.admin_user, &password).await?;
        // Subscribers first: the devices name them.
        let n = import(
            addr,
            &cookie,
            "/api/subscribers/import",
            registry::SUBSCRIBERS_HEADER,
            &subscribers,
        )
        .await?;
        eprintln!("imported {n} subscribers");
        let n = import(
            addr,
            &cookie,
            "/api/devices/import",
            registry::DEVICES_HEADER_V2,
            &devices,
        )
        .await?;
        eprintln!("imported {n} devices");
        imported = true;
    }
    println!(
        "console-setup alarm_devices={} heartbeat_devices={} subscribers={} accounts_from={:X} imported={imported}",
        o.alarm_devices, o.heartbeat_devices, o.alarm_devices, base
    );
    Ok(())
}

/// Posts `rows` in batches of [`IMPORT_BATCH`]; returns the rows the server says it imported.
async fn import(
    addr: SocketAddr,
    cookie: &str,
    path: &str,
    header: &str,
    rows: &[String],
) -> anyhow::Result<u64> {
    let mut total = 0;
    for chunk in rows.chunks(IMPORT_BATCH) {
        let body = csv(header, chunk);
        let a = http(
            addr,
            "POST",
            path,
            Some(cookie),
            Some(("text/csv; charset=utf-8", body.as_bytes())),
        )
        .await?;
        anyhow::ensure!(
            a.status == 200,
            "POST {path}: HTTP {}: {}",
            a.status,
            a.error_text()
        );
        let v: serde_json::Value = serde_json::from_slice(&a.body)
            .with_context(|| format!("POST {path}: the answer is not JSON"))?;
        total += v["imported"].as_u64().unwrap_or(0);
    }
    Ok(total)
}

/// The password from the option, else from the first set environment variable.
fn password(opt: Option<&str>, vars: &[&str]) -> anyhow::Result<String> {
    if let Some(p) = opt {
        return Ok(p.to_string());
    }
    for v in vars {
        if let Ok(p) = std::env::var(v) {
            return Ok(p);
        }
    }
    anyhow::bail!("no password: give it or set {}", vars.join(" or "))
}

// ---- a small HTTP/1.1 client ----

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The value of a `vakt_session` cookie set by the answer.
    session: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    /// The `error` of a JSON error body, else the body as text (shortened).
    fn error_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let msg = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.into_owned());
        if msg.trim().is_empty() {
            return "(no body)".to_string();
        }
        msg.chars().take(2000).collect()
    }
}

/// One request over a new connection (`Connection: close`); reads the whole answer.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> anyhow::Result<Answer> {
    let exchange = async {
        let mut s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if let Some(c) = cookie {
            let _ = write!(req, "Cookie: vakt_session={c}\r\n");
        }
        let (ct, bytes) = body.unwrap_or(("", &[]));
        if !ct.is_empty() {
            let _ = write!(req, "Content-Type: {ct}\r\n");
        }
        let _ = write!(req, "Content-Length: {}\r\n\r\n", bytes.len());
        s.write_all(req.as_bytes()).await?;
        s.write_all(bytes).await?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            anyhow::ensure!(
                buf.len() <= HTTP_MAX_ANSWER,
                "{method} {path}: answer over {HTTP_MAX_ANSWER} bytes"
            );
            buf.reserve(8192);
            if s.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        anyhow::Ok(buf)
    };
    let raw = tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{method} {path}: no answer within {} s",
                HTTP_TIMEOUT.as_secs()
            )
        })??;
    parse_answer(&raw).with_context(|| format!("{method} {path}: bad HTTP answer"))
}

/// Parses a whole HTTP/1.1 answer (status, `Set-Cookie: vakt_session`, body by
/// `Content-Length`, chunked, or to the end).
fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of the header"))?;
    let head = std::str::from_utf8(raw.get(..split).unwrap_or_default())?;
    let rest = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line"))?;
    let mut session = None;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("set-cookie") {
            if let Some(val) = v.strip_prefix("vakt_session=") {
                let val = val.split(';').next().unwrap_or_default().trim();
                session = (!val.is_empty()).then(|| val.to_string());
            }
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("content-length") {
            length = v.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| anyhow::anyhow!("body shorter than its Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        session,
        body,
    })
}

/// Undoes chunked transfer coding.
fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rest.len());
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("chunk size line cut off"))?;
        let line = std::str::from_utf8(rest.get(..eol).unwrap_or_default())?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| anyhow::anyhow!("bad chunk size {size:?}"))?;
        rest = rest.get(eol + 2..).unwrap_or_default();
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(
            rest.get(..n)
                .ok_or_else(|| anyhow::anyhow!("chunk cut off"))?,
        );
        rest = rest.get(n..).unwrap_or_default();
        rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    }
}

/// Logs in; returns the session cookie's value.
async fn login(addr: SocketAddr, user: &str, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    let a = http(
        addr,
        "POST",
        "/api/session",
        None,
        Some(("application/json", body.as_bytes())),
    )
    .await?;
    anyhow::ensure!(
        a.status == 200,
        "login as {user:?}: HTTP {}: {}",
        a.status,
        a.error_text()
    );
    a.session
        .ok_or_else(|| anyhow::anyhow!("login as {user:?}: no vakt_session cookie in the answer"))
}

// ---- the live feed ----

/// The parts of a `/api/live` message this scenario reads.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum LiveMsg {
    Snapshot {
        calls: Vec<CallMsg>,
    },
    Call {
        call: CallMsg,
    },
    #[serde(other)]
    Other,
}

/// The parts of a `CallSummary` this scenario reads.
#[derive(Deserialize)]
struct CallMsg {
    id: u64,
    account: String,
    alarm_count: u32,
    #[serde(default)]
    subscriber: Option<String>,
}

/// What happened to one alarm.
#[derive(Clone, Copy, Debug, Default)]
struct AlarmRec {
    sent: Option<Instant>,
    ack: Option<Instant>,
    /// When its Call (new, or with a higher `alarm_count`) arrived on the WebSocket.
    ws: Option<Instant>,
    /// The Call already had other alarms (its subscriber's Call was open).
    merged: bool,
    /// Seen in a snapshot (sent after the feed fell behind), not in a `call` message.
    via_snapshot: bool,
    /// The Call has no subscriber (the account is not registered).
    unregistered: bool,
}

/// Alarms by account and the Calls seen so far; shared by the alarm tasks and the WebSocket
/// reader.
#[derive(Default)]
struct Tracker {
    by_account: HashMap<String, usize>,
    alarms: Vec<AlarmRec>,
    /// Every Call seen and its `alarm_count`.
    known: HashMap<u64, u32>,
    /// Snapshots after the first (the feed fell behind).
    resnapshots: u64,
    /// WebSocket messages read.
    messages: u64,
}

impl Tracker {
    fn on_call(&mut self, c: &CallMsg, now: Instant, snapshot: bool) {
        let grew = self
            .known
            .insert(c.id, c.alarm_count)
            .is_none_or(|before| c.alarm_count > before);
        if !grew {
            return;
        }
        let Some(&i) = self.by_account.get(&c.account.to_ascii_uppercase()) else {
            return;
        };
        let Some(r) = self.alarms.get_mut(i) else {
            return;
        };
        if r.sent.is_some() && r.ws.is_none() {
            r.ws = Some(now);
            r.merged = c.alarm_count > 1;
            r.via_snapshot = snapshot;
            r.unregistered = c.subscriber.is_none();
        }
    }

    fn on_text(&mut self, text: &str, now: Instant) {
        self.messages += 1;
        match serde_json::from_str::<LiveMsg>(text) {
            Ok(LiveMsg::Call { call }) => self.on_call(&call, now, false),
            Ok(LiveMsg::Snapshot { calls }) => {
                self.resnapshots += 1;
                for c in &calls {
                    self.on_call(c, now, true);
                }
            }
            Ok(LiveMsg::Other) | Err(_) => {}
        }
    }

    fn set(&mut self, i: usize, f: impl FnOnce(&mut AlarmRec)) {
        if let Some(r) = self.alarms.get_mut(i) {
            f(r);
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens `/api/live` with the session cookie and reads its first snapshot into `tracker`.
async fn open_live(http: SocketAddr, cookie: &str, tracker: &Mutex<Tracker>) -> anyhow::Result<Ws> {
    let mut req = format!("ws://{http}/api/live").into_client_request()?;
    req.headers_mut().insert(
        "Cookie",
        HeaderValue::from_str(&format!("vakt_session={cookie}"))?,
    );
    let open = async {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
            .await
            .context("cannot open the WebSocket /api/live")?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let now = Instant::now();
                    if let Ok(LiveMsg::Snapshot { calls }) = serde_json::from_str(t.as_str()) {
                        let mut tr = tracker.lock().unwrap_or_else(PoisonError::into_inner);
                        for c in &calls {
                            tr.on_call(c, now, true);
                        }
                        return anyhow::Ok(ws);
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    anyhow::bail!("/api/live closed before its snapshot")
                }
                Some(Err(e)) => anyhow::bail!("/api/live: {e}"),
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(WS_OPEN_TIMEOUT, open)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "/api/live sent no snapshot within {} s",
                WS_OPEN_TIMEOUT.as_secs()
            )
        })?
}

/// Reads the live feed until `stop`; returns why it ended early, if it did.
async fn read_live(
    mut ws: Ws,
    tracker: Arc<Mutex<Tracker>>,
    mut stop: oneshot::Receiver<()>,
) -> Option<String> {
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let now = Instant::now();
                    tracker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .on_text(t.as_str(), now);
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Some("the server closed /api/live".to_string());
                }
                Some(Err(e)) => return Some(format!("/api/live: {e}")),
                Some(Ok(_)) => {}
            },
            _ = &mut stop => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return None;
            }
        }
    }
}

// ---- the heartbeat load (this binary's `dc09` scenario, as a child process) ----

/// The running heartbeat child; killed and its JSON file removed when dropped.
struct Heartbeats {
    child: Child,
    json: PathBuf,
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.json);
    }
}

impl Heartbeats {
    fn start(
        o: &Options,
        threads: Option<usize>,
        measured: Duration,
    ) -> anyhow::Result<Heartbeats> {
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let json = std::env::temp_dir().join(format!(
            "vakt-loadtest-console-heartbeats-{}.json",
            std::process::id()
        ));
        let mut cmd = Command::new(exe);
        if let Some(t) = threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        cmd.args(["dc09", "--kind", "heartbeat", "--mode", "plain", "--target"])
            .arg(&o.tcp)
            .arg("--connections")
            .arg(o.heartbeat_conns.to_string())
            .arg("--rate")
            .arg(o.heartbeat_rate.to_string())
            .arg("--warmup-secs")
            .arg(o.warmup_secs.to_string())
            .arg("--duration-secs")
            .arg(format!("{:.3}", measured.as_secs_f64()))
            .arg("--json")
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().context("cannot start the heartbeat load")?;
        Ok(Heartbeats { child, json })
    }

    /// Fails when the child has already exited (it should run until its end).
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "the heartbeat load ended early ({status}): {}",
                self.stderr()
            );
        }
        Ok(())
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s.trim().to_string()
    }

    /// Waits for the child (killing it after `limit`) and returns its JSON report.
    async fn finish(mut self, limit: Instant) -> anyhow::Result<serde_json::Value> {
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= limit {
                anyhow::bail!("the heartbeat load did not end in time (killed)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        anyhow::ensure!(
            status.success(),
            "the heartbeat load failed ({status}): {}",
            self.stderr()
        );
        let text = std::fs::read_to_string(&self.json)
            .with_context(|| format!("cannot read {}", self.json.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

// ---- the scenario ----

/// What the alarm tasks share.
struct Shared {
    tcp: SocketAddr,
    timeout: Duration,
    accounts: Vec<String>,
    tracker: Arc<Mutex<Tracker>>,
    sink: stats::Sink,
    live: Live,
}

impl Shared {
    fn track(&self, i: usize, f: impl FnOnce(&mut AlarmRec)) {
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set(i, f);
    }
}

/// Alarm `i`: connect, send one ADM-CID 101 from its account, read and check the ACK.
async fn send_alarm(shared: Arc<Shared>, i: usize) -> Stats {
    let mut stats = Stats::new(&shared.sink);
    let Some(account) = shared.accounts.get(i).cloned() else {
        return stats;
    };
    let Some(mut stream) = net::connect(shared.tcp, Instant::now() + shared.timeout).await else {
        shared.live.error(&mut stats, ErrorKind::Connect);
        return stats;
    };
    let mut fgen = FrameGen::new(Identity {
        account,
        line: "0".to_string(),
        receiver: None,
        key: None,
    });
    let mut out = Vec::with_capacity(128);
    let seq = fgen.next(Content::Cid(1, ALARM_CODE), &mut out);
    let sent = Instant::now();
    shared.track(i, |r| r.sent = Some(sent));
    if !matches!(
        tokio::time::timeout(shared.timeout, stream.write_all(&out)).await,
        Ok(Ok(()))
    ) {
        shared.live.error(&mut stats, ErrorKind::Closed);
        return stats;
    }
    let mut buf = Vec::with_capacity(256);
    loop {
        match tokio::time::timeout_at(sent + shared.timeout, stream.read_buf(&mut buf)).await {
            Err(_) => {
                shared.live.error(&mut stats, ErrorKind::Timeout);
                break;
            }
            Ok(Err(_) | Ok(0)) => {
                shared.live.error(&mut stats, ErrorKind::Closed);
                break;
            }
            Ok(Ok(_)) => {
                let now = Instant::now();
                let mut verdict = None;
                net::drain_frames(&mut buf, |raw| {
                    if verdict.is_none() {
                        verdict = Some(device::check_reply(raw, seq, fgen.identity()));
                    }
                });
                match verdict {
                    None => {}
                    Some(Ok(())) => {
                        shared.track(i, |r| r.ack = Some(now));
                        stats.record(now.duration_since(sent));
                        shared.live.frame();
                        break;
                    }
                    Some(Err(kind)) => {
                        shared.live.error(&mut stats, kind);
                        break;
                    }
                }
            }
        }
    }
    stats
}

fn secs(x: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        x.is_finite() && (0.0..=3600.0).contains(&x),
        "{what} must be 0..=3600 seconds"
    );
    Ok(Duration::from_secs_f64(x))
}

/// The figures of the alarms, from the tracker at the end.
#[derive(Default)]
struct Outcome {
    sent: u64,
    acked: u64,
    calls: u64,
    missing: u64,
    before_ack: u64,
    merged: u64,
    via_snapshot: u64,
    unregistered: u64,
    first_sent: Option<Instant>,
    last_ack: Option<Instant>,
}

fn outcome(tr: &Tracker, ack_ws: &mut Histogram<u64>) -> Outcome {
    let mut o = Outcome::default();
    for r in &tr.alarms {
        if let Some(s) = r.sent {
            o.sent += 1;
            o.first_sent = Some(o.first_sent.map_or(s, |f| f.min(s)));
        }
        let Some(ack) = r.ack else { continue };
        o.acked += 1;
        o.last_ack = Some(o.last_ack.map_or(ack, |l| l.max(ack)));
        let Some(ws) = r.ws else {
            o.missing += 1;
            continue;
        };
        o.calls += 1;
        o.merged += u64::from(r.merged);
        o.via_snapshot += u64::from(r.via_snapshot);
        o.unregistered += u64::from(r.unregistered);
        let us = match ws.checked_duration_since(ack) {
            Some(d) => u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            None => {
                o.before_ack += 1;
                0
            }
        };
        ack_ws.saturating_record(us);
    }
    o
}

/// Runs the scenario, prints a table and the summary line (last).
///
/// # Errors
/// Bad options, a failed login or WebSocket, a failed heartbeat load, alarms not ACKed, or
/// Calls that never reached the console.
#[allow(clippy::too_many_lines)]
pub async fn run(o: Options, threads: Option<usize>) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_ALARMS).contains(&o.alarms),
        "--alarms must be 1..={MAX_ALARMS}"
    );
    anyhow::ensure!(
        o.alarm_rate.is_finite() && (0.01..=10_000.0).contains(&o.alarm_rate),
        "--alarm-rate must be 0.01..=10000 per second"
    );
    anyhow::ensure!(
        o.heartbeat_rate.is_finite() && o.heartbeat_rate >= 0.0,
        "--heartbeat-rate must be 0 (none) or more"
    );
    anyhow::ensure!(
        o.heartbeat_rate == 0.0 || (1..=MAX_HEARTBEAT_CONNS).contains(&o.heartbeat_conns),
        "--heartbeat-conns must be 1..={MAX_HEARTBEAT_CONNS}"
    );
    let warmup = secs(o.warmup_secs, "--warmup-secs")?;
    let timeout = secs(o.timeout_secs, "--timeout-secs")?;
    anyhow::ensure!(!timeout.is_zero(), "--timeout-secs must be > 0");
    let call_timeout = secs(o.call_timeout_secs, "--call-timeout-secs")?;
    #[allow(clippy::cast_precision_loss)]
    let alarm_phase = Duration::from_secs_f64(o.alarms as f64 / o.alarm_rate);
    anyhow::ensure!(
        alarm_phase <= Duration::from_secs(86_400),
        "--alarms / --alarm-rate is longer than a day"
    );
    // At most rate × (connect + ACK timeouts) alarms are in flight at once.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let alarm_sockets =
        ((o.alarm_rate * 2.0 * timeout.as_secs_f64()).ceil() as u64).min(o.alarms as u64) + 1;
    stats::check_fd_budget(alarm_sockets)?;
    let base = account_base(&o.accounts_from, o.alarms)?;
    let tcp = resolve(&o.tcp).await?;
    let http_addr = resolve(&o.http).await?;
    let password = password(o.password.as_deref(), &[PASSWORD_ENV]).context("--password")?;

    let accounts: Vec<String> = (0..o.alarms).map(|i| account(base, i)).collect();
    let tracker = Arc::new(Mutex::new(Tracker {
        by_account: accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.clone(), i))
            .collect(),
        alarms: vec![AlarmRec::default(); o.alarms],
        ..Tracker::default()
    }));

    // The console: log in, open the live feed, take its snapshot.
    let cookie = login(http_addr, &o.user, &password).await?;
    let ws = open_live(http_addr, &cookie, &tracker).await?;
    let open_at_start = tracker
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .known
        .len();
    let (stop_tx, stop_rx) = oneshot::channel();
    let reader = tokio::spawn(read_live(ws, tracker.clone(), stop_rx));

    // The heartbeat load: measured from its warm-up until a little after the last alarm.
    let hb_measured = alarm_phase + Duration::from_secs(1);
    let mut heartbeats = if o.heartbeat_rate > 0.0 {
        let mut hb = Heartbeats::start(&o, threads, hb_measured)?;
        // Its connect phase (loopback: milliseconds) and warm-up.
        tokio::time::sleep(warmup + Duration::from_millis(500)).await;
        hb.check_running()?;
        Some(hb)
    } else {
        None
    };

    // The alarms, evenly spaced (open loop), each from its own device and connection.
    let shared = Arc::new(Shared {
        tcp,
        timeout,
        accounts,
        tracker: tracker.clone(),
        sink: stats::sink(),
        live: Live::default(),
    });
    let pb = stats::progress_bar(o.alarms as u64);
    let t0 = Instant::now();
    let mut tasks = JoinSet::new();
    let mut merged = Stats::new(&shared.sink);
    let mut next = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        #[allow(clippy::cast_precision_loss)]
        let due = t0 + Duration::from_secs_f64(next as f64 / o.alarm_rate);
        tokio::select! {
            () = tokio::time::sleep_until(due), if next < o.alarms => {
                tasks.spawn(send_alarm(shared.clone(), next));
                next += 1;
            }
            joined = tasks.join_next(), if !tasks.is_empty() => match joined {
                Some(Ok(s)) => merged.merge(&s),
                Some(Err(e)) => anyhow::bail!("an alarm task failed: {e}"),
                None => {}
            },
            _ = tick.tick() => {
                let calls = {
                    let tr = tracker.lock().unwrap_or_else(PoisonError::into_inner);
                    tr.alarms.iter().filter(|r| r.ws.is_some()).count()
                };
                pb.set_position(next as u64);
                pb.set_message(format!(
                    "alarms sent {next}, ACKed {}, on the console {calls}, errors {}",
                    Live::get(&shared.live.frames),
                    Live::get(&shared.live.errors)
                ));
            }
        }
        if next >= o.alarms && tasks.is_empty() {
            break;
        }
    }

    // Wait for the Calls still on their way: until every ACKed alarm's Call is seen, or
    // `--call-timeout-secs` after the last ACK.
    let last_ack = {
        let tr = tracker.lock().unwrap_or_else(PoisonError::into_inner);
        tr.alarms.iter().filter_map(|r| r.ack).max()
    };
    let deadline = last_ack.unwrap_or_else(Instant::now) + call_timeout;
    loop {
        let waiting = {
            let tr = tracker.lock().unwrap_or_else(PoisonError::into_inner);
            tr.alarms
                .iter()
                .filter(|r| r.ack.is_some() && r.ws.is_none())
                .count()
        };
        if waiting == 0 || Instant::now() >= deadline || reader.is_finished() {
            break;
        }
        pb.set_message(format!("waiting for {waiting} Call(s) on the console"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pb.finish_and_clear();
    let _ = stop_tx.send(());
    let ws_end = reader.await.unwrap_or_else(|e| Some(e.to_string()));

    let hb_report = match heartbeats.take() {
        Some(hb) => Some(hb.finish(t0 + hb_measured + CHILD_GRACE).await?),
        None => None,
    };

    // Figures.
    let send_ack = merged.latency();
    let mut h = stats::histogram();
    let (out, messages, resnapshots) = {
        let tr = tracker.lock().unwrap_or_else(PoisonError::into_inner);
        (outcome(&tr, &mut h), tr.messages, tr.resnapshots)
    };
    let ack_ws = Latency(h);
    let errors = merged.total_errors();
    let alarm_span = match (out.first_sent, out.last_ack) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let hb_fps = hb_report
        .as_ref()
        .and_then(|r| r["frames_per_s"].as_f64())
        .unwrap_or(0.0);
    let hb_p99 = hb_report
        .as_ref()
        .and_then(|r| r["p99_ms"].as_f64())
        .unwrap_or(0.0);
    let hb_errors = hb_report
        .as_ref()
        .and_then(|r| r["errors"].as_u64())
        .unwrap_or(0);

    let mut table = String::new();
    let row = |t: &mut String, name: &str, l: &Latency| {
        let _ = writeln!(
            t,
            "{name:<22} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            l.quantile_ms(0.50),
            l.quantile_ms(0.90),
            l.quantile_ms(0.99),
            l.max_ms(),
            if l.0.is_empty() {
                0.0
            } else {
                l.0.mean() / 1000.0
            }
        );
    };
    let _ = writeln!(
        table,
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p90", "p99", "max", "mean"
    );
    row(&mut table, "send -> ACK", &send_ack);
    row(&mut table, "ACK -> console (WS)", &ack_ws);
    let _ = writeln!(
        table,
        "alarms: {} sent at {}/s over {alarm_span:.1} s, {} ACKed, {} errors; Calls on the console: {}, missing {} ({} s after the last ACK)",
        out.sent, o.alarm_rate, out.acked, errors, out.calls, out.missing, o.call_timeout_secs
    );
    let _ = writeln!(
        table,
        "  WS before the ACK (counted as 0): {}; merged into an open Call: {}; seen only in a snapshot: {}; without a subscriber: {}",
        out.before_ack, out.merged, out.via_snapshot, out.unregistered
    );
    let _ = writeln!(
        table,
        "  WebSocket: {messages} messages, {open_at_start} open Calls at the start, {} snapshots after falling behind{}",
        resnapshots.saturating_sub(1),
        ws_end
            .as_deref()
            .map(|e| format!(", ended early: {e}"))
            .unwrap_or_default()
    );
    if hb_report.is_some() {
        let _ = writeln!(
            table,
            "heartbeats: {} offered/s over {} connections, {hb_fps:.0} achieved/s, ACK p99 {hb_p99:.3} ms, {hb_errors} errors",
            o.heartbeat_rate, o.heartbeat_conns
        );
    } else {
        let _ = writeln!(table, "heartbeats: none (--heartbeat-rate 0)");
    }
    let line = format!(
        "console alarms={} acked={} calls={} missing={} ack_ws_p50_ms={:.3} ack_ws_p99_ms={:.3} send_ack_p99_ms={:.3} hb_frames/s={hb_fps:.0} hb_p99_ms={hb_p99:.3} errors={}",
        out.sent,
        out.acked,
        out.calls,
        out.missing,
        ack_ws.quantile_ms(0.50),
        ack_ws.quantile_ms(0.99),
        send_ack.quantile_ms(0.99),
        errors + hb_errors
    );
    if let Some(path) = &o.json {
        let report = serde_json::json!({
            "scenario": "console",
            "tcp": tcp.to_string(),
            "http": http_addr.to_string(),
            "alarms": o.alarms,
            "alarm_rate": o.alarm_rate,
            "accounts_from": format!("{base:X}"),
            "heartbeat_rate": o.heartbeat_rate,
            "heartbeat_conns": o.heartbeat_conns,
            "warmup_secs": warmup.as_secs_f64(),
            "timeout_secs": timeout.as_secs_f64(),
            "call_timeout_secs": call_timeout.as_secs_f64(),
            "alarms_sent": out.sent,
            "alarms_acked": out.acked,
            "alarm_span_secs": round3(alarm_span),
            "calls_seen": out.calls,
            "calls_missing": out.missing,
            "ws_before_ack": out.before_ack,
            "merged": out.merged,
            "via_snapshot": out.via_snapshot,
            "without_subscriber": out.unregistered,
            "open_calls_at_start": open_at_start,
            "ws_messages": messages,
            "ws_resnapshots": resnapshots.saturating_sub(1),
            "ws_ended_early": ws_end,
            "send_ack": send_ack.json(),
            "ack_ws": ack_ws.json(),
            "errors": errors,
            "errors_by_kind": merged.errors_json(),
            "heartbeat": hb_report.as_ref().map(|r| serde_json::json!({
                "frames_per_s": hb_fps,
                "p99_ms": hb_p99,
                "errors": hb_errors,
                "latency": r["latency"].clone(),
                "errors_by_kind": r["errors_by_kind"].clone(),
                "duration_secs": r["duration_secs"].clone(),
            })),
            "summary": line,
        });
        stats::write_json(path, &report)?;
    }
    print!("{table}");
    println!("{line}");
    anyhow::ensure!(
        out.missing == 0,
        "{} of {} ACKed alarms never reached the console",
        out.missing,
        out.acked
    );
    anyhow::ensure!(
        errors == 0 && out.acked == o.alarms as u64,
        "{} of {} alarms were not ACKed ({errors} errors)",
        o.alarms as u64 - out.acked.min(o.alarms as u64),
        o.alarms
    );
    anyhow::ensure!(hb_errors == 0, "the heartbeat load had {hb_errors} errors");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_files_import() {
        let base = account_base(DEFAULT_ALARM_BASE, 30).unwrap();
        let d = csv(registry::DEVICES_HEADER_V2, &device_rows(base, 30, 5));
        let s = csv(registry::SUBSCRIBERS_HEADER, &subscriber_rows(base, 30));
        assert_eq!(
            vakt::registers::devices::parse_csv(d.as_bytes())
                .unwrap()
                .len(),
            35
        );
        assert_eq!(
            vakt::registers::subscribers::parse_csv(s.as_bytes())
                .unwrap()
                .len(),
            30
        );
        assert!(account_base("1000", 10).is_err(), "overlaps the heartbeats");
        assert!(account_base("zz", 10).is_err());
    }

    #[test]
    fn answers_parse_plain_and_chunked() {
        let a = parse_answer(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: vakt_session=abc; HttpOnly; Path=/\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(
            (a.status, a.session.as_deref(), &a.body[..]),
            (200, Some("abc"), &b"{}"[..])
        );
        let a = parse_answer(
            b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"er\r\n9;x=y\r\nror\":\"x\"}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(a.status, 400);
        assert_eq!(a.error_text(), "x");
    }

    #[test]
    fn tracker_matches_new_and_grown_calls_only() {
        let mut tr = Tracker {
            by_account: [("C00000".to_string(), 0), ("C00001".to_string(), 1)].into(),
            alarms: vec![AlarmRec::default(); 2],
            ..Tracker::default()
        };
        let t = Instant::now();
        // An open Call of C00001 from before the run.
        tr.on_text(
            r#"{"type":"snapshot","calls":[{"id":7,"account":"C00001","alarm_count":1}],"stats":{}}"#,
            t,
        );
        tr.alarms[0].sent = Some(t);
        tr.alarms[1].sent = Some(t);
        // A change of the old Call that adds no alarm (a claim) is not the alarm's.
        tr.on_text(
            r#"{"type":"call","call":{"id":7,"account":"C00001","alarm_count":1,"subscriber":"LT-C00001"}}"#,
            t,
        );
        assert!(tr.alarms[1].ws.is_none());
        tr.on_text(
            r#"{"type":"call","call":{"id":8,"account":"c00000","alarm_count":1,"subscriber":"LT-C00000"}}"#,
            t,
        );
        assert!(tr.alarms[0].ws.is_some() && !tr.alarms[0].merged && !tr.alarms[0].unregistered);
        tr.on_text(
            r#"{"type":"call","call":{"id":7,"account":"C00001","alarm_count":2,"subscriber":null}}"#,
            t,
        );
        assert!(tr.alarms[1].ws.is_some() && tr.alarms[1].merged && tr.alarms[1].unregistered);
        tr.on_text(r#"{"type":"closed","id":7}"#, t);
        assert_eq!(tr.messages, 5);
    }
}
