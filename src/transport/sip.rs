//! SCAIP's SIP endpoint (protocols.md §3.2): UDP, TCP and TLS listeners, SIP Digest, and the
//! two SIP transactions of every SCAIP message.
//!
//! 1. The device's MESSAGE is answered at once: `401` with a Digest challenge when it is not
//!    authenticated (nothing else happens; also when its Digest `uri` is not its
//!    Request-URI, or its nonce count was used before: `stale=true`), else `200 OK`. OPTIONS keep-alives get `200`,
//!    REGISTER is authenticated and answered `200` (vakt answers over the flow a request came
//!    on, so the binding is not needed), other methods `405`.
//! 2. The body goes to [`Scaip::answer`] (which journals before any `snu 0` or `4`), and its
//!    `<mrs>` goes back in a MESSAGE of vakt's own over the same flow: to the UDP source
//!    address, or on the same TCP/TLS connection. It is a new request outside any dialog
//!    (RFC 3261 §8.1.1, RFC 3428 §4): its own Call-ID, From vakt with a new tag, To the
//!    device's address of record without a tag, Request-URI the device's Contact or From;
//!    the device matches it to its request by `ref`. Over UDP it is retransmitted (RFC 3261
//!    timer E: 500 ms doubling to 4 s) until a final response, for at most 32 s (timer F); a
//!    final response other than 2xx is logged and counted.
//!
//! Every response goes to the source address and port (or the connection) of its request,
//! with `received` and `rport` in the top Via (RFC 3261 §18.2.1, RFC 3581) for devices
//! behind NAT.
//!
//! Bounds: a source (UDP address and port, or a connection) over its rate gets `503` with
//! `Retry-After`; messages waiting for the journal are bounded (beyond, `snu 6`); connections
//! are bounded and closed when idle; a UDP request retransmitted within 32 s gets the same
//! response again without being handled twice.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::ingest::scaip::{Request, Scaip};
use crate::model::Transport;
use crate::telemetry::ScaipMetrics;
use vakt_proto::scaip::{self, Mrs, snu};
use vakt_proto::sip::{self, AuthError, Message, NonceCheck, StartLine};

/// RFC 3261 T1.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2.
const T2: Duration = Duration::from_secs(4);
/// RFC 3261 timer F / J: how long a non-INVITE transaction lives (64·T1).
const TRANSACTION: Duration = Duration::from_secs(32);
/// Responses kept for retransmitted UDP requests.
const UAS_CACHE: usize = 50_000;
/// UDP sources whose rate is tracked at once.
const RATE_SOURCES: usize = 100_000;
/// Bytes asked of a stream per read.
const READ_CHUNK: usize = 4096;
/// Messages queued for one connection's writer.
const WRITE_QUEUE: usize = 64;
/// What vakt accepts and allows.
const ALLOW: &str = "MESSAGE, OPTIONS, REGISTER";

/// Settings of the endpoint (`[scaip]`).
#[derive(Clone, Debug)]
pub struct SipOptions {
    /// Digest realm.
    pub realm: String,
    /// vakt's SIP URI (From of its MESSAGEs).
    pub arc_uri: String,
    /// Nonce lifetime in seconds.
    pub nonce_secs: i64,
    /// Requests per second per source.
    pub rate_per_source: u32,
    /// Burst above the rate.
    pub rate_burst: u32,
    /// TCP/TLS connections at once.
    pub max_connections: usize,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
    /// Messages waiting for the journal at once.
    pub max_in_flight: usize,
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn take(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * f64::from(rate)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How a message came in, and how to send on that flow.
#[derive(Clone, Debug)]
enum Flow {
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    Stream {
        tx: mpsc::Sender<Vec<u8>>,
        peer: SocketAddr,
        tls: bool,
    },
}

impl Flow {
    fn peer(&self) -> SocketAddr {
        match self {
            Flow::Udp { peer, .. } | Flow::Stream { peer, .. } => *peer,
        }
    }

    fn transport(&self) -> Transport {
        match self {
            Flow::Udp { .. } => Transport::Udp,
            Flow::Stream { tls: false, .. } => Transport::Tcp,
            Flow::Stream { tls: true, .. } => Transport::Tls,
        }
    }

    async fn send(&self, bytes: Vec<u8>) -> bool {
        match self {
            Flow::Udp { socket, peer } => match socket.send_to(&bytes, peer).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "sip udp send failed");
                    false
                }
            },
            Flow::Stream { tx, .. } => tx.send(bytes).await.is_ok(),
        }
    }
}

/// Responses already sent to UDP requests, by (branch, method, Call-ID), for 32 s.
#[derive(Debug, Default)]
struct UasCache {
    map: HashMap<String, Vec<u8>>,
    order: VecDeque<(Instant, String)>,
}

impl UasCache {
    fn get(&mut self, key: &str, now: Instant) -> Option<Vec<u8>> {
        self.expire(now);
        self.map.get(key).cloned()
    }

    fn put(&mut self, key: String, response: Vec<u8>, now: Instant) {
        self.expire(now);
        while self.order.len() >= UAS_CACHE {
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
        if self.map.insert(key.clone(), response).is_none() {
            self.order.push_back((now, key));
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < TRANSACTION {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
    }
}

/// The SIP side of SCAIP: shared by every listener.
pub struct Endpoint {
    scaip: Arc<Scaip>,
    opts: SipOptions,
    nonce_secret: [u8; 32],
    metrics: ScaipMetrics,
    in_flight: Arc<Semaphore>,
    /// Nonce counts of authenticated requests (replays refused).
    nonce_counts: Mutex<sip::NonceCounts>,
    /// The serial of the next nonce (they only go up; see `sip::NonceCounts`).
    nonce_serial: AtomicU64,
    /// vakt's own MESSAGEs waiting for their final response, by Via branch.
    pending: Mutex<HashMap<String, oneshot::Sender<u16>>>,
    cseq: AtomicU32,
    uas: Mutex<UasCache>,
    rates: Mutex<HashMap<SocketAddr, Bucket>>,
    tracker: TaskTracker,
    /// At shutdown vakt stops waiting for devices to confirm its MESSAGEs.
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("realm", &self.opts.realm)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn method_label(m: &str) -> &'static str {
    match m {
        "MESSAGE" => "message",
        "OPTIONS" => "options",
        "REGISTER" => "register",
        _ => "other",
    }
}

fn answer_class(code: u16) -> &'static str {
    match code {
        200..=299 => "2xx",
        401 => "401",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The media type of a Content-Type value, without parameters, lower case.
fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Why a request is not authenticated.
enum Unauthenticated {
    /// No credentials: challenge (not a failure).
    Challenge,
    /// Credentials that do not pass, with the metric reason; `stale` asks the device to
    /// retry with the new nonce without asking its user.
    Refused { reason: &'static str, stale: bool },
}

impl Endpoint {
    /// An endpoint over the SCAIP rules; answer tasks are tracked by `tracker` and stop
    /// waiting for devices at `shutdown`.
    pub fn new(
        scaip: Arc<Scaip>,
        opts: SipOptions,
        metrics: ScaipMetrics,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Endpoint {
        let mut nonce_secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut nonce_secret[..]);
        Endpoint {
            scaip,
            in_flight: Arc::new(Semaphore::new(opts.max_in_flight)),
            nonce_counts: Mutex::new(sip::NonceCounts::new(opts.nonce_secs)),
            nonce_serial: AtomicU64::new(1),
            opts,
            nonce_secret,
            metrics,
            pending: Mutex::new(HashMap::new()),
            cseq: AtomicU32::new(rand::random::<u32>() % 1_000_000 + 1),
            uas: Mutex::new(UasCache::default()),
            rates: Mutex::new(HashMap::new()),
            tracker,
            shutdown,
        }
    }

    /// Checks the Digest credentials of a request to `uri`; the SIP user on success. A
    /// credential is good for one request: its `uri` must be the request's, and its nonce
    /// count (or, without qop, its nonce) is not accepted twice.
    fn authenticate(
        &self,
        msg: &Message<'_>,
        method: &str,
        uri: &str,
    ) -> Result<String, Unauthenticated> {
        let Some(value) = msg.header("Authorization") else {
            return Err(Unauthenticated::Challenge);
        };
        let creds = match sip::parse_authorization(value) {
            Ok(c) => c,
            Err(e) => {
                let reason = match e {
                    AuthError::Basic => "basic",
                    _ => "malformed",
                };
                return Err(Unauthenticated::Refused {
                    reason,
                    stale: false,
                });
            }
        };
        let refused = |reason, stale| Err(Unauthenticated::Refused { reason, stale });
        if creds.realm != self.opts.realm {
            return refused("realm", false);
        }
        if !sip::uri_matches(&creds.uri, uri) {
            return refused("uri", false);
        }
        let now = jiff::Timestamp::now().as_second();
        let fresh = sip::check_nonce(&self.nonce_secret, &creds.nonce, now, self.opts.nonce_secs);
        if fresh == NonceCheck::Invalid {
            return refused("bad_nonce", false);
        }
        let registry = self.scaip_registry();
        let Some(password) = registry.sip_password(&creds.username) else {
            return refused("unknown_user", false);
        };
        let ha1 = sip::ha1(&creds.username, &self.opts.realm, password.expose());
        if !sip::verify(&creds, method, &ha1) {
            return refused("bad_response", false);
        }
        if fresh == NonceCheck::Stale {
            return refused("stale", true);
        }
        // A fresh nonce is ours and well-formed, so its parts read.
        let parts = sip::nonce_parts(&creds.nonce).unwrap_or((now, 0));
        let counted = lock(&self.nonce_counts).check(&creds.username, &creds, parts, now);
        if let Err(e) = counted {
            // stale=true: an honest device that reused its nonce takes the new one.
            return refused(e.as_str(), true);
        }
        Ok(creds.username.into_owned())
    }

    fn scaip_registry(&self) -> Arc<crate::registers::devices::Registry> {
        self.scaip.registry().current()
    }

    fn allow_udp(&self, peer: SocketAddr, now: Instant) -> bool {
        let mut rates = lock(&self.rates);
        if rates.len() >= RATE_SOURCES && !rates.contains_key(&peer) {
            // Forget sources quiet for a minute; a flood of new sources starts afresh.
            rates.retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(60));
            if rates.len() >= RATE_SOURCES {
                rates.clear();
            }
        }
        let (rate, burst) = (self.opts.rate_per_source, self.opts.rate_burst);
        rates
            .entry(peer)
            .or_insert_with(|| Bucket::new(burst, now))
            .take(rate, burst, now)
    }

    /// Counts a request from `peer` over its source's rate; the `503` (with `Retry-After`)
    /// to send, if it parses.
    fn over_rate(&self, raw: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
        self.metrics.rate_limited.increment(1);
        let msg = sip::parse(raw).ok()?;
        let mut out = Vec::with_capacity(256);
        sip::encode_response_from(
            Some(peer),
            &msg,
            503,
            "Service Unavailable",
            &sip::random_token(10),
            &[("Retry-After", "5")],
            None,
            b"",
            &mut out,
        );
        Some(out)
    }

    /// Handles one whole SIP message from `flow`. `local` is the address it arrived at.
    async fn handle(self: &Arc<Self>, raw: &[u8], flow: &Flow, local: SocketAddr) {
        let msg = match sip::parse(raw) {
            Ok(m) => m,
            Err(e) => {
                // Without a parsed Via there is nowhere to send a response.
                tracing::debug!(error = e.as_str(), peer = %flow.peer(), "sip message not parsed");
                self.metrics.sip_request("other", "4xx");
                return;
            }
        };
        let (method, uri) = match msg.start {
            StartLine::Response { code, .. } => {
                self.response(&msg, code);
                return;
            }
            StartLine::Request { method, uri } => (method, uri),
        };
        if method == "ACK" {
            return;
        }
        let now = Instant::now();
        let cache_key = match flow {
            Flow::Udp { .. } => msg
                .top_via_branch()
                .map(|b| format!("{b}\u{0}{method}\u{0}{}\u{0}{}", msg.call_id(), flow.peer())),
            Flow::Stream { .. } => None,
        };
        if let Some(k) = &cache_key {
            let cached = lock(&self.uas).get(k, now);
            if let Some(resp) = cached {
                flow.send(resp).await;
                return;
            }
        }
        let to_tag = sip::random_token(10);
        let mut out = Vec::with_capacity(512);
        let code = match method {
            "OPTIONS" => {
                sip::encode_response_from(
                    Some(flow.peer()),
                    &msg,
                    200,
                    "OK",
                    &to_tag,
                    &[("Allow", ALLOW), ("Accept", scaip::CONTENT_TYPE)],
                    None,
                    b"",
                    &mut out,
                );
                200
            }
            "MESSAGE" | "REGISTER" => match self.authenticate(&msg, method, uri) {
                Err(why) => {
                    let stale = match why {
                        Unauthenticated::Challenge => false,
                        Unauthenticated::Refused { reason, stale } => {
                            self.metrics.auth_failure(reason);
                            tracing::info!(peer = %flow.peer(), reason, "sip authentication refused");
                            stale
                        }
                    };
                    let nonce = sip::make_nonce(
                        &self.nonce_secret,
                        jiff::Timestamp::now().as_second(),
                        self.nonce_serial.fetch_add(1, Ordering::Relaxed),
                    );
                    let challenge = sip::challenge(&self.opts.realm, &nonce, stale);
                    sip::encode_response_from(
                        Some(flow.peer()),
                        &msg,
                        401,
                        "Unauthorized",
                        &to_tag,
                        &[("WWW-Authenticate", &challenge)],
                        None,
                        b"",
                        &mut out,
                    );
                    401
                }
                Ok(user) if method == "REGISTER" => {
                    let expires = msg
                        .header("Expires")
                        .and_then(|e| e.trim().parse::<u32>().ok())
                        .unwrap_or(3600)
                        .min(3600)
                        .to_string();
                    let mut extra = vec![("Expires", expires.as_str())];
                    if let Some(c) = msg.header("Contact") {
                        extra.push(("Contact", c));
                    }
                    sip::encode_response_from(
                        Some(flow.peer()),
                        &msg,
                        200,
                        "OK",
                        &to_tag,
                        &extra,
                        None,
                        b"",
                        &mut out,
                    );
                    tracing::debug!(user = %user, "sip register accepted");
                    200
                }
                Ok(user) => {
                    let ct = msg.content_type().map(media_type).unwrap_or_default();
                    let encoded = msg
                        .header("Content-Encoding")
                        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
                    if ct != scaip::CONTENT_TYPE || encoded {
                        sip::encode_response_from(
                            Some(flow.peer()),
                            &msg,
                            415,
                            "Unsupported Media Type",
                            &to_tag,
                            &[
                                ("Accept", scaip::CONTENT_TYPE),
                                ("Accept-Encoding", "identity"),
                            ],
                            None,
                            b"",
                            &mut out,
                        );
                        415
                    } else {
                        sip::encode_response_from(
                            Some(flow.peer()),
                            &msg,
                            200,
                            "OK",
                            &to_tag,
                            &[],
                            None,
                            b"",
                            &mut out,
                        );
                        self.spawn_answer(&msg, uri, user, flow, local);
                        200
                    }
                }
            },
            _ => {
                sip::encode_response_from(
                    Some(flow.peer()),
                    &msg,
                    405,
                    "Method Not Allowed",
                    &to_tag,
                    &[("Allow", ALLOW)],
                    None,
                    b"",
                    &mut out,
                );
                405
            }
        };
        self.metrics
            .sip_request(method_label(method), answer_class(code));
        if let Some(k) = cache_key {
            lock(&self.uas).put(k, out.clone(), now);
        }
        flow.send(out).await;
    }

    /// A response to one of vakt's own MESSAGEs.
    fn response(&self, msg: &Message<'_>, code: u16) {
        if code < 200 {
            return;
        }
        let Some(branch) = msg.top_via_branch() else {
            return;
        };
        if let Some(tx) = lock(&self.pending).remove(branch) {
            let _ = tx.send(code);
        }
    }

    /// Answers the SCAIP body in a task: the `<mrs>` goes out once [`Scaip::answer`] has it.
    fn spawn_answer(
        self: &Arc<Self>,
        msg: &Message<'_>,
        uri: &str,
        user: String,
        flow: &Flow,
        local: SocketAddr,
    ) {
        let started = Instant::now();
        let body = msg.body.to_vec();
        // vakt's sent-by: the address the request reached, or the host it was sent to when
        // the socket listens on every address.
        let via_host = if local.ip().is_unspecified() {
            uri_host(uri).map_or_else(|| local.to_string(), str::to_owned)
        } else {
            local.to_string()
        };
        let target = OutTarget::for_request(msg, &user, flow);
        let flow = flow.clone();
        let ep = self.clone();
        let permit = self.in_flight.clone().try_acquire_owned().ok();
        let span = tracing::debug_span!("scaip", peer = %flow.peer(), user = %user);
        self.tracker.spawn(
            async move {
                let transport = flow.transport();
                let a = match permit {
                    Some(_) => {
                        ep.scaip
                            .answer(Request {
                                user: &user,
                                body: &body,
                                transport,
                                peer: flow.peer(),
                                now: jiff::Timestamp::now(),
                            })
                            .await
                    }
                    None => {
                        ep.metrics.busy("in_flight");
                        crate::ingest::scaip::Answer {
                            mrs: Mrs {
                                reference: scaip::sniff_ref(&body),
                                snu: snu::BUSY,
                                ..Mrs::default()
                            },
                            result: "busy",
                        }
                    }
                };
                drop(permit);
                ep.metrics.message(transport, a.result);
                let mut xml = Vec::with_capacity(128);
                scaip::encode_mrs(&a.mrs, &mut xml);
                ep.metrics
                    .answer_seconds
                    .record(started.elapsed().as_secs_f64());
                let outcome = ep.send_mrs(&flow, &target, &via_host, &xml).await;
                ep.metrics.answer(outcome);
                tracing::debug!(snu = a.mrs.snu, outcome, "scaip answer sent");
            }
            .instrument(span),
        );
    }

    /// Sends vakt's MESSAGE with the `<mrs>` and waits for its final response; a final
    /// answer other than 2xx is logged and counted.
    async fn send_mrs(
        &self,
        flow: &Flow,
        t: &OutTarget,
        via_host: &str,
        xml: &[u8],
    ) -> &'static str {
        let branch = format!("z9hG4bK{}", sip::random_token(16));
        let peer = flow.peer();
        let via_transport = match flow {
            Flow::Udp { .. } => "UDP",
            Flow::Stream { tls: false, .. } => "TCP",
            Flow::Stream { tls: true, .. } => "TLS",
        };
        let from = format!("<{}>", self.opts.arc_uri);
        let mut out = Vec::with_capacity(512 + xml.len());
        sip::encode_request(
            &sip::OutRequest {
                method: "MESSAGE",
                uri: &t.request_uri,
                via_transport,
                via_host,
                branch: &branch,
                from: &from,
                from_tag: &t.from_tag,
                to: &t.to,
                call_id: &t.call_id,
                cseq: self.cseq.fetch_add(1, Ordering::Relaxed),
                content_type: Some(scaip::CONTENT_TYPE),
                body: xml,
            },
            &mut out,
        );
        let (tx, mut rx) = oneshot::channel();
        lock(&self.pending).insert(branch.clone(), tx);
        let deadline = tokio::time::Instant::now() + TRANSACTION;
        let outcome = 'wait: {
            if !flow.send(out.clone()).await {
                break 'wait "send_failed";
            }
            let mut interval = T1;
            loop {
                // Over UDP, retransmit until a final response (timer E); streams are reliable.
                let next = match flow {
                    Flow::Udp { .. } => (tokio::time::Instant::now() + interval).min(deadline),
                    Flow::Stream { .. } => deadline,
                };
                tokio::select! {
                    r = &mut rx => break 'wait match r {
                        Ok(200..=299) => "delivered",
                        Ok(code) => {
                            // The device's SIP stack refused it (a 481 is a stack that saw a
                            // dialog where there is none): the device never saw its answer.
                            self.metrics.answer_rejected(code);
                            tracing::warn!(
                                status = code,
                                user = %t.user,
                                %peer,
                                call_id = %t.call_id,
                                "the device refused vakt's <mrs> MESSAGE; it did not get its SCAIP answer"
                            );
                            "rejected"
                        }
                        Err(_) => "send_failed",
                    },
                    () = tokio::time::sleep_until(next) => {}
                    // The listeners are closed: a response could no longer be read.
                    () = self.shutdown.cancelled() => break 'wait "timeout",
                }
                if tokio::time::Instant::now() >= deadline {
                    break 'wait "timeout";
                }
                if !flow.send(out.clone()).await {
                    break 'wait "send_failed";
                }
                interval = (interval * 2).min(T2);
            }
        };
        lock(&self.pending).remove(&branch);
        outcome
    }
}

/// Where vakt's `<mrs>` MESSAGE goes and how it is addressed: a new request outside any
/// dialog (RFC 3261 §8.1.1; a MESSAGE creates none, RFC 3428 §4), with a Call-ID and a From
/// tag of its own and no To tag. The device matches it to its `<mrq>` by `ref`.
struct OutTarget {
    /// The device's Contact, else its address of record (its From URI).
    request_uri: String,
    /// `<address of record>`, no tag.
    to: String,
    call_id: String,
    from_tag: String,
    /// The SIP user the device authenticated as (for the log).
    user: String,
}

impl OutTarget {
    /// The `<mrs>` request answering `msg`, authenticated as `user`, from `flow`.
    fn for_request(msg: &Message<'_>, user: &str, flow: &Flow) -> OutTarget {
        let is_sip = |u: &&str| {
            u.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("sip:"))
                || u.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
        };
        let aor = msg.from_uri().filter(is_sip).map_or_else(
            || {
                // A From without a SIP URI: the device's user at the address it came from.
                let scheme = match flow {
                    Flow::Stream { tls: true, .. } => "sips",
                    _ => "sip",
                };
                format!("{scheme}:{user}@{}", flow.peer())
            },
            str::to_owned,
        );
        // It goes over the flow the request came on either way; the Request-URI names the
        // device as it asked to be reached.
        let request_uri = msg
            .contact_uri()
            .filter(is_sip)
            .map_or_else(|| aor.clone(), str::to_owned);
        OutTarget {
            request_uri,
            to: format!("<{aor}>"),
            call_id: sip::random_token(24),
            from_tag: sip::random_token(10),
            user: user.to_owned(),
        }
    }
}

/// `host[:port]` of a SIP URI (`sip:user@host:port;params`).
fn uri_host(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':')?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = rest.split([';', '?']).next()?;
    (!host.is_empty()).then_some(host)
}

/// Receives SIP datagrams until `shutdown`.
pub async fn serve_udp(socket: UdpSocket, ep: Arc<Endpoint>, shutdown: CancellationToken) {
    let socket = Arc::new(socket);
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut buf = vec![0u8; sip::MAX_MESSAGE_BYTES + 1];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "sip udp receive failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let dgram = &buf[..n];
        // NAT keep-alives (CRLF) and datagrams over the bound are dropped.
        if n > sip::MAX_MESSAGE_BYTES || dgram.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue;
        }
        let is_response = dgram.starts_with(b"SIP/2.0 ");
        if !is_response && !ep.allow_udp(peer, Instant::now()) {
            if let Some(out) = ep.over_rate(dgram, peer) {
                let _ = socket.send_to(&out, peer).await;
            }
            continue;
        }
        let flow = Flow::Udp {
            socket: socket.clone(),
            peer,
        };
        ep.handle(dgram, &flow, local).await;
    }
}

/// Accepts SIP connections (plain TCP, or TLS with `tls`) until `shutdown`; a connection
/// beyond its source's share of `sources` is reset at once.
pub async fn serve_stream(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ep: Arc<Endpoint>,
    sources: super::limit::PerSource,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(ep.opts.max_connections));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = shutdown.cancelled() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "sip accept failed");
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        backoff = Duration::from_millis(10);
        let Some(source) = sources.admit(peer.ip()) else {
            let _ = stream.set_zero_linger();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let ep = ep.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        let kind = if tls.is_some() { "tls" } else { "tcp" };
        let span = tracing::debug_span!("sip_conn", transport = kind, %peer);
        tracker.spawn(
            async move {
                ep.metrics.connections.increment(1.0);
                match tls {
                    None => connection(stream, peer, local, false, &ep, &shutdown).await,
                    Some(acceptor) => {
                        let accepted =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                                .await;
                        match accepted {
                            Ok(Ok(s)) => connection(s, peer, local, true, &ep, &shutdown).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "tls handshake failed"),
                            Err(_) => tracing::debug!("tls handshake timed out"),
                        }
                    }
                }
                ep.metrics.connections.decrement(1.0);
                drop(source);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// One TCP or TLS connection: a reader that frames messages by Content-Length and a writer
/// that sends responses and vakt's MESSAGEs in order.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
    ep: &Arc<Endpoint>,
    shutdown: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let flow = Flow::Stream { tx, peer, tls };
    let mut bucket = Bucket::new(ep.opts.rate_burst, Instant::now());
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    'conn: loop {
        // Every whole message in the buffer first.
        loop {
            match sip::scan(&buf) {
                sip::Scan::Message { len } => {
                    let is_response = buf.starts_with(b"SIP/2.0 ");
                    if !is_response
                        && !bucket.take(ep.opts.rate_per_source, ep.opts.rate_burst, Instant::now())
                    {
                        if let Some(out) = ep.over_rate(&buf[..len], peer) {
                            flow.send(out).await;
                        }
                    } else {
                        ep.handle(&buf[..len], &flow, local).await;
                    }
                    buf.drain(..len);
                }
                sip::Scan::KeepAlive { n, ping } => {
                    buf.drain(..n);
                    if ping {
                        flow.send(b"\r\n".to_vec()).await;
                    }
                }
                sip::Scan::Incomplete => break,
                sip::Scan::Invalid(e) => {
                    tracing::debug!(error = e.as_str(), "sip stream broken; closing");
                    break 'conn;
                }
            }
        }
        let mut chunk = [0u8; READ_CHUNK];
        let n = tokio::select! {
            r = tokio::time::timeout(ep.opts.idle_timeout, rd.read(&mut chunk)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    tracing::debug!("sip connection idle; closing");
                    break;
                }
            },
            () = shutdown.cancelled() => break,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
    // Answers still being made hold the sender; the writer ends when they are sent.
    drop(flow);
    let _ = writer.await;
}

/// A TLS acceptor for SIPS from a PEM chain and key (TLS 1.2 and 1.3, the ring provider).
pub fn tls_acceptor(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, super::quic::QuicError> {
    let id = super::quic::load_identity(cert_file, key_file)?;
    let cfg = rustls::ServerConfig::builder_with_provider(super::quic::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(id.certs, id.key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, t0);
        assert!(b.take(1, 3, t0) && b.take(1, 3, t0) && b.take(1, 3, t0));
        assert!(!b.take(1, 3, t0));
        assert!(b.take(1, 3, t0 + Duration::from_millis(1001)));
        assert!(!b.take(1, 3, t0 + Duration::from_millis(1002)));
    }

    #[test]
    fn uas_cache_expires_and_is_bounded() {
        let t0 = Instant::now();
        let mut c = UasCache::default();
        c.put("a".into(), b"r".to_vec(), t0);
        assert_eq!(
            c.get("a", t0 + Duration::from_secs(31)),
            Some(b"r".to_vec())
        );
        assert_eq!(c.get("a", t0 + Duration::from_secs(33)), None);
        for i in 0..UAS_CACHE + 10 {
            c.put(i.to_string(), Vec::new(), t0);
        }
        assert!(c.map.len() <= UAS_CACHE && c.order.len() <= UAS_CACHE);
    }

    #[test]
    fn the_mrs_is_addressed_outside_any_dialog() {
        let (tx, _rx) = mpsc::channel(1);
        let flow = Flow::Stream {
            tx,
            peer: "192.0.2.7:41000".parse().unwrap(),
            tls: true,
        };
        let with_contact = b"MESSAGE sip:arc@vakt SIP/2.0\r\nVia: SIP/2.0/TLS 10.0.0.5;branch=z9hG4bKa\r\nFrom: \"Anna\" <sip:678@vakt.example>;tag=dev1\r\nTo: <sip:arc@vakt>\r\nCall-ID: dev-call\r\nCSeq: 1 MESSAGE\r\nContact: <sips:678@10.0.0.5:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n";
        let m = sip::parse(with_contact).unwrap();
        let a = OutTarget::for_request(&m, "luc678", &flow);
        let b = OutTarget::for_request(&m, "luc678", &flow);
        assert_eq!(a.request_uri, "sips:678@10.0.0.5:5061;transport=tls");
        assert_eq!(a.to, "<sip:678@vakt.example>");
        assert!(!a.to.contains("tag"));
        assert_ne!(a.call_id, "dev-call");
        assert!(a.call_id != b.call_id && a.from_tag != b.from_tag && a.from_tag != "dev1");
        // Without Contact: the address of record; without a SIP From: the user at the source.
        let plain = String::from_utf8_lossy(with_contact)
            .replace("Contact: <sips:678@10.0.0.5:5061;transport=tls>\r\n", "");
        let m = sip::parse(plain.as_bytes()).unwrap();
        assert_eq!(
            OutTarget::for_request(&m, "luc678", &flow).request_uri,
            "sip:678@vakt.example"
        );
        let tel = plain.replace("\"Anna\" <sip:678@vakt.example>", "<tel:+4670>");
        let m = sip::parse(tel.as_bytes()).unwrap();
        let t = OutTarget::for_request(&m, "luc678", &flow);
        assert_eq!(
            (t.request_uri.as_str(), t.to.as_str()),
            (
                "sips:luc678@192.0.2.7:41000",
                "<sips:luc678@192.0.2.7:41000>"
            )
        );
    }

    #[test]
    fn uri_host_of_request_uris() {
        assert_eq!(uri_host("sip:arc@192.0.2.1:5060"), Some("192.0.2.1:5060"));
        assert_eq!(uri_host("sip:192.0.2.1;transport=tcp"), Some("192.0.2.1"));
        assert_eq!(uri_host("sips:a@[::1]:5061"), Some("[::1]:5061"));
        assert_eq!(uri_host("nonsense"), None);
    }
}
