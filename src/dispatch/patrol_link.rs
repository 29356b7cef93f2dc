//! The server side of the patrol link (`proto/patrol.md`): QUIC sessions of home-care
//! patrols, independent of where dispatches are kept (a [`PatrolHub`]).
//!
//! One task per connection (on the server's one accept loop: a permit before each accept, at
//! most `max_sessions`, a share per source), one
//! bidirectional stream per connection, `hello` within [`HELLO_TIMEOUT_SECS`], frames read
//! into a buffer bounded by one frame, a bounded queue of pushes per session. A second login
//! of the same patrol replaces the first (`error replaced`, close code 3).
//!
//! The server's own `seq` (on `assignment`, `sla_warning`, `cancelled`) comes from one
//! counter per patrol, kept by the [`Link`] across connections and drawn from blocks of
//! [`SEQ_BLOCK`] numbers that the hub reserves durably ([`PatrolHub::reserve_seqs`]) before
//! they are used: it never goes back, across reconnects and restarts (it may skip the rest of
//! a block after a restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::transport::{
    self,
    accept::{AcceptOptions, Scope},
};

use crate::dispatch::wire::{
    self, AssignmentMsg, CLOSE_AUTH, CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_REPLACED, CLOSE_SHUTDOWN,
    Decoded, ErrorCode, FromPatrol, HEADER_BYTES, HELLO_TIMEOUT_SECS, IDLE_TIMEOUT_SECS,
    MAX_MESSAGE_BYTES, PING_INTERVAL_SECS, ToPatrol,
};

/// Pushes waiting to be written to one session; beyond this `push` refuses.
pub const SEND_QUEUE: usize = 64;

/// Server messages kept per session while unacknowledged; the oldest are forgotten beyond
/// this (a reconnect re-sends every open assignment anyway).
const MAX_UNACKED: usize = 256;

/// How long a closing session waits for its last frames to be acknowledged.
const LINGER: Duration = Duration::from_secs(2);

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 4096;

/// Numbers of the server's `seq` reserved at a time for one patrol.
pub const SEQ_BLOCK: u64 = 1024;

/// Why a patrol's login or event was not accepted, tagged by origin: the patrol's (refused,
/// with a code that tells it why) or vakt's (storage failed: never blamed on the patrol).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventError {
    /// Refused for good: answered with an `error` of this code and message (the patrol does
    /// not send it again; a refused login is fatal).
    Refused(ErrorCode, String),
    /// It could not be checked or made durable (storage failed): no answer; the connection
    /// is closed (code 4, "internal error") so the patrol sends it again after reconnecting.
    Unavailable,
}

impl From<ErrorCode> for EventError {
    fn from(code: ErrorCode) -> EventError {
        EventError::Refused(code, refusal(code).to_string())
    }
}

/// Where dispatches live, as the patrol link sees them.
pub trait PatrolHub: Send + Sync + 'static {
    /// Checks the login: `Ok` if the token is this patrol's (constant time; the hub hashes
    /// it), else refused with [`ErrorCode::UnknownPatrol`] (no such patrol) or
    /// [`ErrorCode::BadToken`], or [`EventError::Unavailable`] when the tokens cannot be read.
    fn authenticate(&self, patrol: &str, token: &str) -> Result<(), EventError>;
    /// The patrol's open assignments, as they are now (sent after `welcome`, and again on
    /// every reconnect).
    fn open_assignments(&self, patrol: &str) -> Vec<AssignmentMsg>;
    /// Applies a patrol event (received/accepted/declined/arrived/completed), durably,
    /// before it is acked.
    fn event(&self, patrol: &str, ev: &FromPatrol) -> Result<(), EventError>;
    /// Reserves `count` numbers of the server's own `seq` towards `patrol`, durably, all
    /// above every number reserved for it before (also before a restart); returns the
    /// first. `None` if that cannot be stored.
    fn reserve_seqs(&self, patrol: &str, count: u64) -> Option<u64>;
}

struct SessionHandle {
    id: u64,
    tx: mpsc::Sender<ToPatrol>,
    replaced: CancellationToken,
}

#[derive(Default)]
struct LinkInner {
    sessions: Mutex<HashMap<String, SessionHandle>>,
    next_id: AtomicU64,
    /// Per patrol: the next `seq` and the end (exclusive) of the reserved block.
    seqs: Mutex<HashMap<String, (u64, u64)>>,
}

/// A handle on the connected sessions: push messages to a patrol, ask who is connected.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Link {
    inner: Arc<LinkInner>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("sessions", &self.sessions())
            .finish()
    }
}

impl Link {
    /// A link with no sessions.
    pub fn new() -> Link {
        Link::default()
    }

    /// Queues `msg` (`assignment`, `sla_warning`, `cancelled`) for the patrol's connected
    /// session; its `seq` is replaced by the session's own counter. False if the patrol is
    /// not connected or its queue is full (it gets every open assignment on reconnect).
    pub fn push(&self, patrol: &str, msg: ToPatrol) -> bool {
        let map = self.lock();
        match map.get(patrol) {
            Some(h) => h.tx.try_send(msg).is_ok(),
            None => false,
        }
    }

    /// True if the patrol has a logged-in session.
    pub fn connected(&self, patrol: &str) -> bool {
        self.lock().contains_key(patrol)
    }

    /// The patrols with a logged-in session, sorted.
    pub fn sessions(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionHandle>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new session of `patrol`, replacing (and signalling) an older one.
    fn register(&self, patrol: &str) -> (u64, mpsc::Receiver<ToPatrol>, CancellationToken) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let replaced = CancellationToken::new();
        let old = self.lock().insert(
            patrol.to_string(),
            SessionHandle {
                id,
                tx,
                replaced: replaced.clone(),
            },
        );
        if let Some(old) = old {
            old.replaced.cancel();
        }
        self.count();
        (id, rx, replaced)
    }

    /// Removes the session `id` of `patrol` if it is still the registered one.
    fn unregister(&self, patrol: &str, id: u64) {
        {
            let mut map = self.lock();
            if map.get(patrol).is_some_and(|h| h.id == id) {
                map.remove(patrol);
            }
        }
        self.count();
    }

    /// The next `seq` towards `patrol` from its reserved block; `None` when the block is
    /// used up (or none is reserved yet in this process).
    fn take_seq(&self, patrol: &str) -> Option<u64> {
        let mut seqs = self
            .inner
            .seqs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (next, end) = seqs.get_mut(patrol)?;
        (*next < *end).then(|| {
            let n = *next;
            *next += 1;
            n
        })
    }

    /// Takes a newly reserved block `[first, first + count)` for `patrol` (a block older
    /// than the one in use, reserved by a session that lost a race, is ignored).
    fn add_seqs(&self, patrol: &str, first: u64, count: u64) {
        let mut seqs = self
            .inner
            .seqs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let end = first.saturating_add(count);
        match seqs.get_mut(patrol) {
            Some((next, old_end)) if *old_end <= first => {
                *next = first;
                *old_end = end;
            }
            Some(_) => {}
            None => {
                seqs.insert(patrol.to_string(), (first, end));
            }
        }
    }

    /// The next `seq` towards `patrol`, reserving a new block through `hub` when needed.
    /// `None` when no block can be reserved (storage failed).
    async fn next_seq(&self, hub: &Arc<dyn PatrolHub>, patrol: &str) -> Option<u64> {
        // Another session of the patrol may take the new block's numbers first: try again.
        for _ in 0..4 {
            if let Some(n) = self.take_seq(patrol) {
                return Some(n);
            }
            let first = {
                let hub = hub.clone();
                let p = patrol.to_string();
                blocking(move || hub.reserve_seqs(&p, SEQ_BLOCK))
                    .await
                    .flatten()?
            };
            self.add_seqs(patrol, first, SEQ_BLOCK);
        }
        self.take_seq(patrol)
    }

    /// Sets the gauge of connected patrols.
    fn count(&self) {
        let n = self.lock().len();
        crate::telemetry::patrol_sessions_open().set(n as f64);
    }
}

/// Accepts patrol connections on `endpoint` until `shutdown`, at most `max_sessions` at once
/// (and as many from one source); returns when every session has ended, and closes the
/// endpoint.
pub async fn serve(
    endpoint: quinn::Endpoint,
    hub: Arc<dyn PatrolHub>,
    link: Link,
    max_sessions: usize,
    shutdown: CancellationToken,
) {
    let scope = Scope::new(shutdown);
    let opts = LinkOptions {
        max_sessions,
        max_sessions_per_source: max_sessions,
    };
    accept(endpoint.clone(), hub, link, opts, scope.clone()).await;
    scope.tracker.close();
    scope.tracker.wait().await;
    endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
}

/// The bounds of the link (`[patrol]`).
#[derive(Clone, Copy, Debug)]
pub struct LinkOptions {
    /// Sessions at once.
    pub max_sessions: usize,
    /// Sessions at once from one source; a connection beyond is refused at `Incoming`,
    /// before any handshake.
    pub max_sessions_per_source: usize,
}

/// Accepts patrol connections on `endpoint` (the one accept loop,
/// [`crate::transport::accept`]) until `scope.shutdown`; each session runs on `scope`, so
/// the server's grace deadline bounds it. The endpoint is the caller's to close once the
/// sessions have ended.
pub async fn accept(
    endpoint: quinn::Endpoint,
    hub: Arc<dyn PatrolHub>,
    link: Link,
    opts: LinkOptions,
    scope: Scope,
) {
    let accept = AcceptOptions {
        name: "patrol_quic",
        max_connections: opts.max_sessions,
        max_per_source: opts.max_sessions_per_source,
    };
    // QUIC's accept does not fail (it ends when the endpoint closes): never counted.
    let errors = crate::telemetry::accept_errors(accept.name);
    let shutdown = scope.shutdown.clone();
    transport::accept::serve(endpoint, accept, errors, scope, move |incoming, _peer| {
        let hub = hub.clone();
        let link = link.clone();
        let shutdown = shutdown.clone();
        let span = tracing::info_span!("patrol", patrol = tracing::field::Empty);
        async move {
            let reason = connection(incoming, &hub, &link, &shutdown).await;
            tracing::debug!(reason, "closed");
        }
        .instrument(span)
    })
    .await;
}

/// Runs a blocking hub call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// The two halves of the session's stream and its receive buffer.
struct Stream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Vec<u8>,
}

enum Read {
    Msg(FromPatrol),
    /// A frame that is not a readable message (skipped).
    Bad(Option<u64>),
    TooBig,
    Eof,
}

impl Stream {
    async fn write(&mut self, msg: &ToPatrol) -> Result<(), ()> {
        let mut out = Vec::new();
        if let Err(e) = wire::encode(msg, &mut out) {
            tracing::warn!(error = %e, kind = msg.kind(), "cannot encode");
            return Ok(());
        }
        self.send.write_all(&out).await.map_err(|e| {
            tracing::debug!(error = %e, "write failed");
        })
    }

    /// The next frame from the buffer, if whole.
    fn take(&mut self) -> Option<Read> {
        match wire::decode::<FromPatrol>(&self.buf) {
            Ok(Decoded::Message(m, used)) => {
                self.buf.drain(..used);
                Some(Read::Msg(m))
            }
            Ok(Decoded::Incomplete) => None,
            Err(e) => match e.consumed() {
                Some(used) => {
                    tracing::debug!(error = %e, "bad message");
                    self.buf.drain(..used.min(self.buf.len()));
                    Some(Read::Bad(e.seq()))
                }
                None => Some(Read::TooBig),
            },
        }
    }

    /// Reads until one frame is whole. Cancel-safe: bytes are kept in `buf`.
    async fn read(&mut self) -> Read {
        loop {
            if let Some(r) = self.take() {
                return r;
            }
            let mut chunk = [0u8; READ_CHUNK];
            // The buffer never holds more than one frame and one chunk.
            let room =
                (HEADER_BYTES + MAX_MESSAGE_BYTES + READ_CHUNK).saturating_sub(self.buf.len());
            let want = room.min(READ_CHUNK);
            match self.recv.read(&mut chunk[..want]).await {
                Ok(Some(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(None) => return Read::Eof,
                Err(e) => {
                    tracing::debug!(error = %e, "read failed");
                    return Read::Eof;
                }
            }
        }
    }

    /// Sends a fatal `error`, waits a little for it to arrive, and closes with `close`.
    async fn fatal(
        &mut self,
        conn: &quinn::Connection,
        seq: Option<u64>,
        code: ErrorCode,
        message: &str,
        close: u32,
    ) {
        let msg = ToPatrol::Error {
            seq,
            code,
            message: message.to_string(),
            fatal: true,
        };
        let _ = self.write(&msg).await;
        end(&mut self.send, conn, close, code.as_str()).await;
    }
}

/// Finishes the stream, waits (briefly) until the patrol has it all, and closes.
async fn end(send: &mut quinn::SendStream, conn: &quinn::Connection, close: u32, why: &str) {
    let _ = send.finish();
    let _ = tokio::time::timeout(LINGER, send.stopped()).await;
    conn.close(close.into(), why.as_bytes());
}

fn error(seq: Option<u64>, code: ErrorCode, message: &str) -> ToPatrol {
    ToPatrol::Error {
        seq,
        code,
        message: message.to_string(),
        fatal: false,
    }
}

/// Serves one connection; returns why it ended.
async fn connection(
    incoming: quinn::Incoming,
    hub: &Arc<dyn PatrolHub>,
    link: &Link,
    shutdown: &CancellationToken,
) -> &'static str {
    let hello_deadline = Instant::now() + Duration::from_secs(u64::from(HELLO_TIMEOUT_SECS));
    let conn = match tokio::time::timeout_at(hello_deadline, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "handshake failed");
            return "handshake";
        }
        Err(_) => return "handshake_timeout",
    };
    let (send, recv) = tokio::select! {
        r = tokio::time::timeout_at(hello_deadline, conn.accept_bi()) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return "closed",
            Err(_) => {
                conn.close(CLOSE_PROTOCOL.into(), b"no stream");
                return "hello_timeout";
            }
        },
        () = shutdown.cancelled() => {
            conn.close(CLOSE_SHUTDOWN.into(), b"shutdown");
            return "shutdown";
        }
    };
    let mut st = Stream {
        send,
        recv,
        buf: Vec::new(),
    };
    let first = tokio::select! {
        r = tokio::time::timeout_at(hello_deadline, st.read()) => r,
        () = shutdown.cancelled() => {
            conn.close(CLOSE_SHUTDOWN.into(), b"shutdown");
            return "shutdown";
        }
    };
    let (hello_seq, patrol_id, token) = match first {
        Ok(Read::Msg(FromPatrol::Hello {
            seq, patrol, token, ..
        })) => (seq, patrol, token),
        Ok(Read::TooBig) => {
            st.fatal(
                &conn,
                None,
                ErrorCode::TooBig,
                "frame over 64 KiB",
                CLOSE_PROTOCOL,
            )
            .await;
            return "too_big";
        }
        Ok(Read::Eof) => return "eof",
        Ok(Read::Msg(m)) => {
            let seq = Some(m.seq());
            st.fatal(
                &conn,
                seq,
                ErrorCode::BadMessage,
                "hello must come first",
                CLOSE_PROTOCOL,
            )
            .await;
            return "no_hello";
        }
        Ok(Read::Bad(seq)) => {
            st.fatal(
                &conn,
                seq,
                ErrorCode::BadMessage,
                "hello must come first",
                CLOSE_PROTOCOL,
            )
            .await;
            return "no_hello";
        }
        Err(_) => {
            st.fatal(
                &conn,
                None,
                ErrorCode::BadMessage,
                "no hello within 10 s",
                CLOSE_PROTOCOL,
            )
            .await;
            return "hello_timeout";
        }
    };
    let login = {
        let hub = hub.clone();
        let p = patrol_id.clone();
        blocking(move || hub.authenticate(&p, token.expose())).await
    };
    match login {
        Some(Ok(())) => {}
        Some(Err(EventError::Refused(code, message))) => {
            tracing::info!(patrol = %patrol_id, code = code.as_str(), "refused login");
            st.fatal(&conn, Some(hello_seq), code, &message, CLOSE_AUTH)
                .await;
            return code.as_str();
        }
        // The tokens could not be read, or the hub panicked: not the patrol's fault; it
        // reconnects with backoff.
        Some(Err(EventError::Unavailable)) | None => {
            conn.close(CLOSE_SHUTDOWN.into(), INTERNAL_ERROR);
            return "hub_failed";
        }
    }
    tracing::Span::current().record("patrol", patrol_id.as_str());
    let (id, rx, replaced) = link.register(&patrol_id);
    tracing::info!("logged in");
    let reason = session(
        &conn, &mut st, hub, link, &patrol_id, hello_seq, rx, &replaced, shutdown,
    )
    .await;
    link.unregister(&patrol_id, id);
    reason
}

/// The reason phrase of a close after a failure inside vakt (the patrol reconnects and
/// resends what was not answered).
const INTERNAL_ERROR: &[u8] = b"internal error";

/// Per-session state: what the patrol has not acked.
struct Outgoing {
    unacked: BTreeMap<u64, ToPatrol>,
}

impl Outgoing {
    /// Gives `msg` its `seq` (the patrol's next, [`Link::next_seq`]) and remembers it until
    /// acked.
    fn number(&mut self, mut msg: ToPatrol, seq: u64) -> ToPatrol {
        match &mut msg {
            ToPatrol::Assignment(a) => a.seq = seq,
            ToPatrol::SlaWarning { seq: s, .. } | ToPatrol::Cancelled { seq: s, .. } => *s = seq,
            _ => return msg,
        }
        self.unacked.insert(seq, msg.clone());
        while self.unacked.len() > MAX_UNACKED {
            self.unacked.pop_first();
        }
        msg
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    conn: &quinn::Connection,
    st: &mut Stream,
    hub: &Arc<dyn PatrolHub>,
    link: &Link,
    patrol_id: &str,
    hello_seq: u64,
    mut rx: mpsc::Receiver<ToPatrol>,
    replaced: &CancellationToken,
    shutdown: &CancellationToken,
) -> &'static str {
    let open = {
        let hub = hub.clone();
        let p = patrol_id.to_string();
        blocking(move || hub.open_assignments(&p))
            .await
            .unwrap_or_default()
    };
    let welcome = ToPatrol::Welcome {
        seq: hello_seq,
        server_time: jiff::Timestamp::now(),
        ping_secs: PING_INTERVAL_SECS,
        idle_timeout_secs: IDLE_TIMEOUT_SECS,
        open: open.iter().map(|a| a.dispatch).collect(),
    };
    if st.write(&welcome).await.is_err() {
        return "write";
    }
    let mut out = Outgoing {
        unacked: BTreeMap::new(),
    };
    for a in open {
        let Some(seq) = link.next_seq(hub, patrol_id).await else {
            conn.close(CLOSE_SHUTDOWN.into(), INTERNAL_ERROR);
            return "seq_failed";
        };
        let msg = out.number(ToPatrol::Assignment(Box::new(a)), seq);
        if st.write(&msg).await.is_err() {
            return "write";
        }
    }
    let idle = Duration::from_secs(u64::from(IDLE_TIMEOUT_SECS));
    let mut idle_at = Instant::now() + idle;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                end(&mut st.send, conn, CLOSE_SHUTDOWN, "shutdown").await;
                return "shutdown";
            }
            () = replaced.cancelled() => {
                tracing::info!("replaced by a newer connection");
                st.fatal(conn, None, ErrorCode::Replaced, "another connection logged in as this patrol", CLOSE_REPLACED).await;
                return "replaced";
            }
            () = tokio::time::sleep_until(idle_at) => {
                conn.close(wire::CLOSE_IDLE.into(), b"idle");
                return "idle";
            }
            s = conn.accept_bi() => {
                if s.is_ok() {
                    st.fatal(conn, None, ErrorCode::BadMessage, "one stream per connection", CLOSE_PROTOCOL).await;
                    return "second_stream";
                }
                return "closed";
            }
            m = rx.recv() => {
                let Some(m) = m else { return "closed" };
                let Some(seq) = link.next_seq(hub, patrol_id).await else {
                    conn.close(CLOSE_SHUTDOWN.into(), INTERNAL_ERROR);
                    return "seq_failed";
                };
                let msg = out.number(m, seq);
                tracing::debug!(kind = msg.kind(), seq = msg.seq(), dispatch = msg.dispatch(), "push");
                if st.write(&msg).await.is_err() {
                    return "write";
                }
            }
            r = st.read() => {
                idle_at = Instant::now() + idle;
                let answer = match r {
                    Read::Eof => {
                        end(&mut st.send, conn, CLOSE_NORMAL, "bye").await;
                        return "eof";
                    }
                    Read::TooBig => {
                        st.fatal(conn, None, ErrorCode::TooBig, "frame over 64 KiB", CLOSE_PROTOCOL).await;
                        return "too_big";
                    }
                    Read::Bad(seq) => Some(error(seq, ErrorCode::BadMessage, "not a valid message")),
                    Read::Msg(FromPatrol::Ping { seq }) => Some(ToPatrol::Pong { seq }),
                    Read::Msg(FromPatrol::Ack { seq }) => {
                        out.unacked.remove(&seq);
                        None
                    }
                    Read::Msg(FromPatrol::Hello { seq, .. }) => {
                        Some(error(Some(seq), ErrorCode::BadMessage, "already logged in"))
                    }
                    Read::Msg(ev) => {
                        let seq = ev.seq();
                        tracing::debug!(kind = ev.kind(), seq, dispatch = ev.dispatch(), "event");
                        let hub = hub.clone();
                        let p = patrol_id.to_string();
                        let res = blocking(move || hub.event(&p, &ev)).await;
                        Some(match res {
                            Some(Ok(())) => ToPatrol::Ack { seq },
                            Some(Err(EventError::Refused(code, message))) => {
                                error(Some(seq), code, &message)
                            }
                            // Not stored, or the hub panicked: no answer, the patrol resends
                            // after a reconnect.
                            Some(Err(EventError::Unavailable)) | None => {
                                conn.close(CLOSE_SHUTDOWN.into(), INTERNAL_ERROR);
                                return "hub_failed";
                            }
                        })
                    }
                };
                if let Some(a) = answer
                    && st.write(&a).await.is_err()
                {
                    return "write";
                }
            }
        }
    }
}

fn refusal(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UnknownPatrol => "no patrol with this id",
        ErrorCode::BadToken => "the token does not match the patrol",
        ErrorCode::NotYours => "the dispatch is not assigned to this patrol",
        ErrorCode::Closed => "the dispatch is no longer open",
        ErrorCode::BadMessage => "the event is not allowed now",
        _ => "refused",
    }
}
