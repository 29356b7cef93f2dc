//! Shared helpers for the integration tests: start a real server on 127.0.0.1:0 with a
//! registry, talk real bytes to it.

#![allow(dead_code)]

pub mod chromium;
pub mod node;
pub mod patroni;
pub mod postgres;
pub mod sipp;
pub mod unit;
pub mod webhook;
pub mod webrtc;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vakt::config::Config;
use vakt::server::Running;
use vakt_proto::crypto::Key;
use vakt_proto::dc09::{self, FrameSpec, Pad};

/// AES-128 key of account 5678 (the key of protocols.md §1.10).
pub const KEY128_HEX: &str = "000102030405060708090A0B0C0D0E0F";
/// AES-256 key of account 9ABC.
pub const KEY256_HEX: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
/// AES-192 key of account 1929.
pub const KEY192_ASCII: &str = "abcdefghijklmnopqrstuvwx";

/// The test registry: 1234 plain, 5678 AES-128 (hex), 9ABC AES-256 (hex), 1929 AES-192
/// (ASCII), 4321 plain on line 1 only.
pub fn devices_csv() -> String {
    format!(
        "{}\n1234,,,,,anna,90,Telia,Centrum\n5678,,,{KEY128_HEX},hex,bertil,90,Tele2,Norr\n9ABC,,,{KEY256_HEX},hex,cecilia,600,,\n1929,,,{KEY192_ASCII},ascii,david,,,\n4321,1,,,,erik,,,\n",
        vakt::registers::devices::CSV_HEADER_V1
    )
}

pub fn key128() -> Key {
    Key::from_hex(KEY128_HEX).unwrap()
}
pub fn key256() -> Key {
    Key::from_hex(KEY256_HEX).unwrap()
}
pub fn key192() -> Key {
    Key::from_ascii(KEY192_ASCII).unwrap()
}

/// Whether the servers of the tests run on PostgreSQL (`VAKT_TEST_STORE=postgres`, as
/// `.ci/run` runs the server's tests a second time) instead of sled in their temp dir.
pub fn on_postgres() -> bool {
    std::env::var("VAKT_TEST_STORE").as_deref() == Ok("postgres")
}

/// The databases of the test's data directories, on the test binary's shared server; kept
/// until the binary ends (the server goes with them).
static DATABASES: std::sync::Mutex<
    std::collections::BTreeMap<std::path::PathBuf, postgres::Database>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// On PostgreSQL, the URL of the database that stands for the data directory `dir` (made on
/// first use); `None` on sled.
pub fn database_of(dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let shared = postgres::shared().expect("VAKT_TEST_STORE=postgres needs PostgreSQL");
    let mut dbs = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
    Some(
        dbs.entry(dir.to_path_buf())
            .or_insert_with(|| shared.database())
            .url
            .clone(),
    )
}

/// Where the offline commands find the store of the test's data directory `dir`.
pub fn store_at(dir: impl AsRef<Path>) -> vakt::cli::store_at::StoreAt {
    use vakt::cli::store_at::StoreAt;
    match database_of(dir.as_ref()) {
        Some(url) => StoreAt::Postgres(vakt::config::DatabaseUrl::new(url)),
        None => StoreAt::Dir(dir.as_ref().to_path_buf()),
    }
}

/// The store of the test's data directory `dir` (its database on PostgreSQL).
pub fn open_store(dir: impl AsRef<Path>) -> Result<vakt::store::Store, vakt::store::StoreError> {
    match database_of(dir.as_ref()) {
        Some(url) => vakt::store::Store::open_postgres(&url),
        None => vakt::store::Store::open(dir.as_ref()),
    }
}

/// A configuration listening on loopback port 0 everywhere, data in `dir` (and the store in
/// its database, on PostgreSQL).
pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.dc09.listen_tcp = Some("127.0.0.1:0".parse().unwrap());
    cfg.dc09.listen_udp = Some("127.0.0.1:0".parse().unwrap());
    cfg.http.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.patrol.listen_quic = Some("127.0.0.1:0".parse().unwrap());
    cfg.scaip.listen_udp = Some("127.0.0.1:0".parse().unwrap());
    cfg.scaip.listen_tcp = Some("127.0.0.1:0".parse().unwrap());
    // Voice calls' media on this host only.
    cfg.voice.rtp.bind_addr = std::net::Ipv4Addr::LOCALHOST.into();
    cfg.shutdown_grace_secs = 5;
    // The console in English, which the tests read (a test of the languages sets its own).
    cfg.http.language = vakt::model::ConsoleLanguage::En;
    if let Some(url) = database_of(dir) {
        cfg.store.backend = vakt::config::StoreBackend::Postgres;
        cfg.store.url = Some(vakt::config::DatabaseUrl::new(url));
    }
    cfg
}

/// Imports the test registry and the test administrator into `dir` and starts a server on it.
pub async fn start(dir: &Path) -> Running {
    vakt::cli::import_devices(store_at(dir), devices_csv().as_bytes())
        .expect("import test devices");
    add_user(dir, ADMIN.0, vakt::model::Role::Admin, ADMIN.1);
    start_with(test_config(dir)).await
}

pub async fn start_with(cfg: Config) -> Running {
    vakt::server::start(cfg).await.expect("server starts")
}

/// A plain frame.
pub fn plain(id: &str, seq: u16, account: &str, data: &str) -> Vec<u8> {
    let mut out = Vec::new();
    dc09::encode_frame(
        &FrameSpec {
            id,
            seq,
            receiver: None,
            line: Some("0"),
            account,
            data: data.as_bytes(),
            xdata: &[],
            timestamp: None,
        },
        &mut out,
    );
    out
}

/// An encrypted frame stamped `ts`.
pub fn encrypted(
    id: &str,
    seq: u16,
    account: &str,
    data: &str,
    key: &Key,
    ts: jiff::Timestamp,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rng = rand::rng();
    dc09::encode_frame_encrypted(
        &FrameSpec {
            id,
            seq,
            receiver: None,
            line: Some("0"),
            account,
            data: data.as_bytes(),
            xdata: &[],
            timestamp: Some(ts),
        },
        key,
        Pad::Random(&mut rng),
        &mut out,
    );
    out
}

/// Reads one LF..CR answer from a TCP stream (with a 10 s bound).
pub async fn read_reply(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = s.read(&mut b).await.expect("read");
            assert!(
                n == 1,
                "connection closed after {:?}",
                String::from_utf8_lossy(&out)
            );
            out.push(b[0]);
            if b[0] == b'\r' {
                return;
            }
        }
    })
    .await
    .expect("reply within 10 s");
    out
}

/// Sends one frame over a new TCP connection and returns the answer.
pub async fn tcp_roundtrip(addr: SocketAddr, frame: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(frame).await.unwrap();
    read_reply(&mut s).await
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("http answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, dechunk(&body))
}

/// Undoes chunked transfer coding (a body cut short keeps what came whole).
fn dechunk_bytes(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let len = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(n) = len.filter(|&n| n > 0) else {
            return out;
        };
        let Some(chunk) = rest.get(eol + 2..eol + 2 + n) else {
            return out;
        };
        out.extend_from_slice(chunk);
        rest = rest.get(eol + 4 + n..).unwrap_or_default();
    }
}

/// Undoes chunked transfer coding if the body looks chunked.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((len, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// The Signals journaled so far, via the API (logged in as the test administrator).
pub async fn signals(http: SocketAddr) -> Vec<serde_json::Value> {
    let mut c = Client::login(http, ADMIN.0, ADMIN.1).await;
    let a = c.get("/api/signals?after=0&limit=1000").await;
    assert_eq!(a.status, 200, "{}", a.body);
    serde_json::from_str(&a.body).expect("signals JSON")
}

/// Parses an answer frame.
pub fn token_of(reply: &[u8]) -> String {
    let f = dc09::parse(reply)
        .unwrap_or_else(|e| panic!("reply {:?} parses: {e}", String::from_utf8_lossy(reply)));
    format!("{}{}", if f.encrypted { "*" } else { "" }, f.id)
}

/// The administrator every test server has (see [`add_user`]).
pub const ADMIN: (&str, &str) = ("test-admin", "test-admin-password");

/// Adds a user directly in the store of a stopped server.
pub fn add_user(dir: &Path, name: &str, role: vakt::model::Role, password: &str) {
    add_user_of(dir, name, role, None, password);
}

/// Stores a console user with a tenant (a `provider` or `municipality` user's).
pub fn add_user_of(
    dir: &Path,
    name: &str,
    role: vakt::model::Role,
    tenant: Option<&str>,
    password: &str,
) {
    let store = open_store(dir).expect("store opens");
    store
        .put_user(&vakt::store::UserRecord {
            name: name.into(),
            role,
            password_hash: vakt::console::auth::hash_password(password).expect("hash"),
            created_at: jiff::Timestamp::now(),
            disabled: false,
            language: None,
            tenant: tenant.map(str::to_owned),
        })
        .expect("user stored");
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as it came (a recording's WAV), de-chunked.
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client that keeps the session cookie.
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: SocketAddr,
    pub cookie: Option<String>,
    /// Headers sent with every request (e.g. `authorization`).
    pub extra: Vec<(String, String)>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            cookie: None,
            extra: Vec::new(),
        }
    }

    /// Sends `name: value` with every request from now on.
    pub fn extra_header(&mut self, name: &str, value: &str) {
        self.extra.push((name.to_string(), value.to_string()));
    }

    /// Logs in; panics unless it works.
    pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Client {
        let mut c = Client::new(addr);
        let a = c
            .send(
                "POST",
                "/api/session",
                Some((
                    "application/json",
                    serde_json::json!({"username": user, "password": password}).to_string(),
                )),
            )
            .await;
        assert_eq!(a.status, 200, "login of {user}: {}", a.body);
        assert!(c.cookie.is_some(), "session cookie set");
        c
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    pub async fn post(&mut self, path: &str, json: serde_json::Value) -> Answer {
        self.send("POST", path, Some(("application/json", json.to_string())))
            .await
    }

    pub async fn send(&mut self, method: &str, path: &str, body: Option<(&str, String)>) -> Answer {
        self.try_send(method, path, body, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// As [`Client::send`], with the error of a refused connection or of no whole answer
    /// `within` (as a console sees a node that is down).
    pub async fn try_send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
        within: Duration,
    ) -> std::io::Result<Answer> {
        tokio::time::timeout(within, self.exchange(method, path, body))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> std::io::Result<Answer> {
        let mut s = TcpStream::connect(self.addr).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: vakt_session={c}\r\n"));
        }
        for (k, v) in &self.extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = match body {
            Some((ct, b)) => {
                req.push_str(&format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n",
                    b.len()
                ));
                b
            }
            None => {
                req.push_str("Content-Length: 0\r\n");
                String::new()
            }
        };
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(buf.len());
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let raw = buf.get(split + 4..).unwrap_or_default();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.get(9..12))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                if let Some(rest) = v.strip_prefix("vakt_session=") {
                    let val = rest.split(';').next().unwrap_or("").to_string();
                    self.cookie = if val.is_empty() { None } else { Some(val) };
                }
            }
        }
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let bytes = if chunked {
            dechunk_bytes(raw)
        } else {
            raw.to_vec()
        };
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Answer {
            status,
            headers,
            body,
            bytes,
        })
    }
}

/// How the half-second blocks of `samples` (8 kHz) divide, by frequency (Goertzel): those
/// where `expected` carries at least a quarter of the block's power and ten times the
/// amplitude of `other`; those where `other` does so over `expected`; and all blocks that are
/// not silence. A block part silent (a gap, the start or the end of a talk) still counts for
/// its tone; a block where both tones mix, or some other sound, counts for neither.
pub fn tone_blocks(samples: &[i16], expected: f64, other: f64) -> (usize, usize, usize) {
    let (mut hit, mut wrong, mut sound) = (0, 0, 0);
    for b in samples.chunks_exact(4_000) {
        let levels = vakt::voice::tone::analyse(b, 8_000, &[expected, other]);
        if levels.rms < vakt::voice::tone::SILENCE_RMS {
            continue;
        }
        sound += 1;
        let (e, o) = (levels.levels[0].1, levels.levels[1].1);
        let strong = |a: f64| a * a / 2.0 >= 0.25 * levels.rms * levels.rms;
        if e > 10.0 * o && strong(e) {
            hit += 1;
        } else if o > 10.0 * e && strong(o) {
            wrong += 1;
        }
    }
    (hit, wrong, sound)
}

/// Polls `f` every 50 ms until it gives a value, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: std::time::Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited {timeout:?} for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The most urgent open Call's id, once there is one (polled as [`wait_for`] does).
pub async fn first_open_call(c: &Client, timeout: std::time::Duration) -> u64 {
    wait_for("an open Call", timeout, || async {
        let calls = c.clone().get("/api/calls?state=open").await.json();
        calls.as_array()?.first()?["id"].as_u64()
    })
    .await
}

/// The value of the Prometheus series `series` (its name and labels as written, e.g.
/// `vakt_x_total{reason="a"}`) in the server's `/metrics` at `http`; 0 when absent.
pub async fn metric(http: SocketAddr, series: &str) -> f64 {
    let (_, text) = http_get(http, "/metrics").await;
    text.lines()
        .filter_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .next()
        .unwrap_or(0.0)
}

/// The console's live feed (`/api/live`) as a logged-in client's page reads it.
pub struct Live {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Live {
    /// Connects with `client`'s session cookie.
    pub async fn connect(client: &Client) -> Live {
        Live::try_connect(client)
            .await
            .expect("the live feed connects")
    }

    /// Connects with `client`'s session cookie; the error of a node that is down or does
    /// not serve the feed (a standby's 503).
    pub async fn try_connect(
        client: &Client,
    ) -> Result<Live, tokio_tungstenite::tungstenite::Error> {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{}/api/live", client.addr),
            )
            .unwrap();
        req.headers_mut().insert(
            "cookie",
            format!("vakt_session={}", client.cookie.clone().unwrap())
                .parse()
                .unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Live { ws })
    }

    /// Reads the feed until it ends (its node went away, or it closed it).
    pub async fn until_ended(mut self) {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// The next message, within 10 s.
    pub async fn next(&mut self) -> serde_json::Value {
        use futures_util::StreamExt;
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), self.ws.next())
            .await
            .expect("a message within 10 s")
            .expect("open")
            .expect("ok");
        serde_json::from_str(m.to_text().unwrap()).unwrap()
    }

    /// The next message of `kind` (`"subscriber"`, `"call"`...), others skipped (at most 200).
    pub async fn next_of(&mut self, kind: &str) -> serde_json::Value {
        for _ in 0..200 {
            let m = self.next().await;
            if m["type"] == kind {
                return m;
            }
        }
        panic!("no {kind} message");
    }
}
