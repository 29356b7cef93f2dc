//! `vakt patrol`: the terminal reference client of the patrol protocol (`proto/patrol.md`).
//!
//! [`Session`] is one connection (hello, welcome, open assignments, events with their
//! answers, pushes), usable from tests. [`run`] is the terminal program: it prints
//! assignments and warnings, reads commands from stdin, keeps an outbox of unanswered events
//! and reconnects with backoff. The door code is printed for the patrol, never logged.
//! It prints times of day in the machine's time zone (`17:44`) and names assignments by
//! their number (the dispatch id, which the commands take), never by the protocol's `seq`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rand::Rng;
use tokio::sync::mpsc;

use crate::dispatch::wire::{
    self, AssignmentMsg, CLOSE_NORMAL, ClientInfo, Decoded, ErrorCode, FromPatrol, HEADER_BYTES,
    MAX_MESSAGE_BYTES, RECONNECT_MAX_SECS, RECONNECT_MIN_SECS, Secret, ToPatrol, VisitOutcome,
};
use crate::model::{ArrivalMethod, DispatchState};
use crate::transport::quic::{self, Trust};

/// How long to wait for the handshake, `welcome` and the open assignments, or an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// What can go wrong in the patrol client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS or QUIC set-up failed.
    #[error("{0}")]
    Quic(#[from] quic::QuicError),
    /// Socket or name resolution failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The connection could not be made.
    #[error("connect: {0}")]
    Connect(String),
    /// The connection was lost.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The server refused the session (`bad_token`, `unknown_patrol`, `replaced`, ...).
    #[error("refused by the server: {} {message}", code.as_str())]
    Refused {
        /// The error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server sent something this client cannot read (the stream is given up).
    #[error("protocol: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// The client must not reconnect by itself (§9): bad token, unknown patrol, replaced.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ClientError::Refused {
                code: ErrorCode::BadToken | ErrorCode::UnknownPatrol | ErrorCode::Replaced,
                ..
            }
        )
    }
}

/// What `welcome` said.
#[derive(Clone, Debug, PartialEq)]
pub struct Welcome {
    /// The server's clock.
    pub server_time: jiff::Timestamp,
    /// Send a `ping` this often.
    pub ping_secs: u32,
    /// Nothing for this long: reconnect.
    pub idle_timeout_secs: u32,
    /// Every open dispatch of the patrol.
    pub open: Vec<u64>,
}

/// One connection to vakt, logged in.
pub struct Session {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Vec<u8>,
    /// Server messages read while waiting for something else.
    pending: VecDeque<ToPatrol>,
    next_seq: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("remote", &self.conn.remote_address())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects to `addr` (the certificate name checked with [`Trust::Ca`] is the IP
    /// address), logs in, and returns the `welcome` and the open assignments (acknowledged).
    pub async fn connect(
        addr: SocketAddr,
        trust: &Trust,
        patrol: &str,
        token: &str,
    ) -> Result<(Session, Welcome, Vec<AssignmentMsg>), ClientError> {
        Session::open(addr, &addr.ip().to_string(), trust, patrol, token, 1).await
    }

    /// As [`Session::connect`], with the TLS server name and the first `seq` to use.
    pub async fn open(
        addr: SocketAddr,
        server_name: &str,
        trust: &Trust,
        patrol: &str,
        token: &str,
        first_seq: u64,
    ) -> Result<(Session, Welcome, Vec<AssignmentMsg>), ClientError> {
        let bind: SocketAddr = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(quic::client_config(trust)?);
        let connecting = endpoint
            .connect(addr, server_name)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let conn = tokio::time::timeout(ANSWER_TIMEOUT, connecting)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Lost(e.to_string()))?;
        let mut s = Session {
            endpoint,
            conn,
            send,
            recv,
            buf: Vec::new(),
            pending: VecDeque::new(),
            next_seq: first_seq,
        };
        let hello_seq = s.next_seq();
        s.write(&FromPatrol::Hello {
            seq: hello_seq,
            patrol: patrol.to_string(),
            token: Secret::new(token),
            client: ClientInfo {
                name: "vakt-patrol".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        })
        .await?;
        let welcome = match s.read_timeout(ANSWER_TIMEOUT).await? {
            Some(ToPatrol::Welcome {
                server_time,
                ping_secs,
                idle_timeout_secs,
                open,
                ..
            }) => Welcome {
                server_time,
                ping_secs,
                idle_timeout_secs,
                open,
            },
            Some(ToPatrol::Error { code, message, .. }) => {
                s.conn.close(CLOSE_NORMAL.into(), b"refused");
                return Err(ClientError::Refused { code, message });
            }
            Some(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected welcome, got {}",
                    other.kind()
                )));
            }
            None => return Err(ClientError::Timeout),
        };
        let mut assignments: Vec<AssignmentMsg> = Vec::new();
        while welcome
            .open
            .iter()
            .any(|d| !assignments.iter().any(|a| a.dispatch == *d))
        {
            match s.read_timeout(ANSWER_TIMEOUT).await? {
                Some(ToPatrol::Assignment(a)) => {
                    s.ack(a.seq).await?;
                    assignments.retain(|x| x.dispatch != a.dispatch);
                    assignments.push(*a);
                }
                Some(other) => s.queue(other).await?,
                None => return Err(ClientError::Timeout),
            }
        }
        Ok((s, welcome, assignments))
    }

    /// The next `seq` of this client's own counter.
    pub fn next_seq(&mut self) -> u64 {
        let n = self.next_seq;
        self.next_seq += 1;
        n
    }

    /// Sends a dispatch event and waits for its answer (`ack` or `error`); server messages
    /// that arrive meanwhile are acknowledged and kept for [`Session::next_push`].
    pub async fn send_event(&mut self, ev: &FromPatrol) -> Result<ToPatrol, ClientError> {
        let seq = ev.seq();
        self.write(ev).await?;
        loop {
            match self.read_timeout(ANSWER_TIMEOUT).await? {
                Some(m @ (ToPatrol::Ack { .. } | ToPatrol::Error { .. }))
                    if m.seq() == Some(seq) =>
                {
                    return Ok(m);
                }
                Some(ToPatrol::Error {
                    code,
                    message,
                    fatal: true,
                    ..
                }) => return Err(ClientError::Refused { code, message }),
                Some(other) => self.queue(other).await?,
                None => return Err(ClientError::Timeout),
            }
        }
    }

    /// Sends a `ping` (the `pong` is taken in by [`Session::next_push`]).
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        let seq = self.next_seq();
        self.write(&FromPatrol::Ping { seq }).await
    }

    /// The next server message other than `pong`/`ack` (an `assignment`, `sla_warning`,
    /// `cancelled` (acknowledged), or an `error`), or `None` if none came within `timeout`.
    pub async fn next_push(&mut self, timeout: Duration) -> Result<Option<ToPatrol>, ClientError> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_timeout(left).await? {
                None => return Ok(None),
                Some(ToPatrol::Pong { .. } | ToPatrol::Ack { .. }) => {}
                Some(m) => {
                    if let Some(seq) = m.seq().filter(|_| m.needs_ack()) {
                        self.ack(seq).await?;
                    }
                    return Ok(Some(m));
                }
            }
        }
    }

    /// Logs out (close code 0).
    pub async fn close(mut self) {
        let _ = self.send.finish();
        self.conn.close(CLOSE_NORMAL.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Keeps `m` for `next_push`, acknowledging it if it needs it.
    async fn queue(&mut self, m: ToPatrol) -> Result<(), ClientError> {
        match m {
            ToPatrol::Pong { .. } | ToPatrol::Ack { .. } => Ok(()),
            m => {
                if let Some(seq) = m.seq().filter(|_| m.needs_ack()) {
                    self.ack(seq).await?;
                }
                self.pending.push_back(m);
                Ok(())
            }
        }
    }

    async fn ack(&mut self, seq: u64) -> Result<(), ClientError> {
        self.write(&FromPatrol::Ack { seq }).await
    }

    async fn write(&mut self, msg: &FromPatrol) -> Result<(), ClientError> {
        let mut out = Vec::new();
        wire::encode(msg, &mut out).map_err(|e| ClientError::Protocol(e.to_string()))?;
        match self.send.write_all(&out).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(e.to_string())),
        }
    }

    /// The connection is gone: why, with the server's close code and reason if it closed it
    /// (`proto/patrol.md` §1).
    fn lost(&self, detail: String) -> ClientError {
        match self.conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(c)) => ClientError::Lost(format!(
                "closed by the server: code {} ({})",
                c.error_code,
                String::from_utf8_lossy(&c.reason)
            )),
            _ => ClientError::Lost(detail),
        }
    }

    /// The next server message, or `None` after `timeout`. Frames it cannot read are
    /// acknowledged if they have a `seq` and skipped.
    async fn read_timeout(&mut self, timeout: Duration) -> Result<Option<ToPatrol>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match wire::decode::<ToPatrol>(&self.buf) {
                Ok(Decoded::Message(m, used)) => {
                    self.buf.drain(..used);
                    return Ok(Some(m));
                }
                Ok(Decoded::Incomplete) => {}
                Err(e) => match e.consumed() {
                    Some(used) => {
                        self.buf.drain(..used.min(self.buf.len()));
                        if let Some(seq) = e.seq() {
                            self.ack(seq).await?;
                        }
                        continue;
                    }
                    None => {
                        self.conn
                            .close(wire::CLOSE_PROTOCOL.into(), b"frame too big");
                        return Err(ClientError::Protocol(e.to_string()));
                    }
                },
            }
            let mut chunk = [0u8; 4096];
            let room =
                (HEADER_BYTES + MAX_MESSAGE_BYTES + chunk.len()).saturating_sub(self.buf.len());
            let want = room.min(chunk.len());
            match tokio::time::timeout_at(deadline, self.recv.read(&mut chunk[..want])).await {
                Err(_) => return Ok(None),
                Ok(Ok(Some(n))) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Ok(None)) => {
                    return Err(self.lost("the server ended the stream".into()));
                }
                Ok(Err(e)) => return Err(self.lost(e.to_string())),
            }
        }
    }
}

/// Options of `vakt patrol`.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `HOST:PORT` of the server's `[patrol] listen_quic`.
    pub server: String,
    /// The patrol id.
    pub patrol: String,
    /// The patrol's token.
    pub token: Secret,
    /// How the server's certificate is checked (a CA file, or the pinned fingerprint of the
    /// development certificate; there is no accept-anything mode).
    pub trust: Trust,
}

/// A command typed by the patrol.
#[derive(Clone, Debug, PartialEq)]
enum Command {
    Event(FromPatrol),
    Quit,
}

/// Parses one stdin line into a command (with `seq` 0, set when sent).
fn parse_command(line: &str, now: jiff::Timestamp) -> Result<Option<Command>, String> {
    let line = line.trim();
    let mut words = line.splitn(2, char::is_whitespace);
    let Some(cmd) = words.next().filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    if cmd == "q" {
        return Ok(Some(Command::Quit));
    }
    let rest = words.next().unwrap_or("").trim();
    let mut parts = rest.splitn(2, char::is_whitespace);
    let dispatch: u64 = parts
        .next()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| "give the dispatch id: e.g. `r 41`".to_string())?;
    let tail = parts.next().unwrap_or("").trim().to_string();
    let at = now;
    let seq = 0;
    let ev = match cmd {
        "r" => FromPatrol::Received { seq, dispatch, at },
        "a" => FromPatrol::Accepted { seq, dispatch, at },
        "d" => FromPatrol::Declined {
            seq,
            dispatch,
            at,
            reason: tail,
        },
        "h" => FromPatrol::Arrived {
            seq,
            dispatch,
            at,
            method: ArrivalMethod::App,
            code: None,
        },
        "c" => {
            let mut t = tail.splitn(2, char::is_whitespace);
            let outcome = match t.next().unwrap_or("") {
                "helped" => VisitOutcome::Helped,
                "no_action" => VisitOutcome::NoAction,
                "ambulance_called" => VisitOutcome::AmbulanceCalled,
                "not_home" => VisitOutcome::NotHome,
                "no_access" => VisitOutcome::NoAccess,
                "other" => VisitOutcome::Other,
                _ => {
                    return Err("outcome: helped, no_action, ambulance_called, not_home, \
                                no_access or other"
                        .to_string());
                }
            };
            FromPatrol::Completed {
                seq,
                dispatch,
                at,
                outcome,
                note: t.next().unwrap_or("").trim().to_string(),
            }
        }
        _ => return Err(format!("unknown command `{cmd}`; {HELP}")),
    };
    Ok(Some(Command::Event(ev)))
}

const HELP: &str = "commands: r ID (received), a ID (accept), d ID REASON (decline), \
                    h ID (arrived), c ID OUTCOME NOTE (complete), q (quit)";

fn with_seq(ev: FromPatrol, n: u64) -> FromPatrol {
    match ev {
        FromPatrol::Received { dispatch, at, .. } => FromPatrol::Received {
            seq: n,
            dispatch,
            at,
        },
        FromPatrol::Accepted { dispatch, at, .. } => FromPatrol::Accepted {
            seq: n,
            dispatch,
            at,
        },
        FromPatrol::Declined {
            dispatch,
            at,
            reason,
            ..
        } => FromPatrol::Declined {
            seq: n,
            dispatch,
            at,
            reason,
        },
        FromPatrol::Arrived {
            dispatch,
            at,
            method,
            code,
            ..
        } => FromPatrol::Arrived {
            seq: n,
            dispatch,
            at,
            method,
            code,
        },
        FromPatrol::Completed {
            dispatch,
            at,
            outcome,
            note,
            ..
        } => FromPatrol::Completed {
            seq: n,
            dispatch,
            at,
            outcome,
            note,
        },
        other => other,
    }
}

/// A moment as the patrol reads it: the local time of day in `tz` (`17:44`).
pub fn local_time(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%H:%M").to_string()
}

/// What a server message says, for the terminal: times of day in `tz` (the machine's zone
/// in `vakt patrol`), assignments by their number (`assignment 41`, the dispatch id: the
/// number the operator and the commands use), never the protocol's `seq`. An assignment is
/// shown whole: the person, the operator's instruction, the health notes (or that the person
/// withheld them), and the access block with the door code (printed for the patrol on its
/// own terminal; never logged).
pub fn describe(m: &ToPatrol, tz: &TimeZone) -> String {
    match m {
        ToPatrol::Assignment(a) => describe_assignment(a, tz),
        ToPatrol::SlaWarning {
            dispatch,
            minutes_left,
            deadline,
            ..
        } => format!(
            "WARNING assignment {dispatch}: {minutes_left} min left, arrive before {}",
            local_time(*deadline, tz)
        ),
        ToPatrol::Cancelled {
            dispatch, reason, ..
        } => format!("CANCELLED assignment {dispatch}: {reason} (no longer yours)"),
        ToPatrol::Ack { .. } => "ok".to_string(),
        ToPatrol::Error { code, message, .. } => {
            format!("refused ({}): {message}", code.as_str())
        }
        ToPatrol::Welcome { open, .. } => connected(open),
        ToPatrol::Pong { .. } => "pong".to_string(),
    }
}

/// The line on (re)connecting: the patrol's open assignments by number.
fn connected(open: &[u64]) -> String {
    if open.is_empty() {
        "connected; no open assignment".to_string()
    } else {
        let list: Vec<String> = open.iter().map(u64::to_string).collect();
        format!("connected; open assignments {}", list.join(", "))
    }
}

/// What the server answered to one of the patrol's events, by the assignment it concerns.
pub fn answered(ev: &FromPatrol, answer: &ToPatrol, tz: &TimeZone) -> String {
    let what = match ev.dispatch() {
        Some(d) => format!("assignment {d}: {}", ev.kind()),
        None => ev.kind().to_string(),
    };
    format!("{what}: {}", describe(answer, tz))
}

fn describe_assignment(a: &AssignmentMsg, tz: &TimeZone) -> String {
    let state = match a.state {
        DispatchState::Offered => "new",
        DispatchState::Received => "received",
        DispatchState::Accepted => "accepted",
        DispatchState::Arrived => "arrived",
        _ => "ended",
    };
    let mut lines = vec![format!(
        "ASSIGNMENT {} ({state}): {}, priority {}; alarm call {}",
        a.dispatch, a.reason, a.priority.0, a.call
    )];
    let clock = match (a.receipt_deadline, a.deadline) {
        (_, Some(d)) => format!(
            "arrive before {} ({} min from receipt at {})",
            local_time(d, tz),
            a.limit_mins,
            a.received_at
                .map_or_else(|| "?".into(), |r| local_time(r, tz)),
        ),
        (Some(r), None) => format!(
            "confirm receipt before {} (`r {}`); then {} min to arrive",
            local_time(r, tz),
            a.dispatch,
            a.limit_mins
        ),
        (None, None) => format!(
            "sent at {}; {} min to arrive from receipt",
            local_time(a.offered_at, tz),
            a.limit_mins
        ),
    };
    lines.push(format!("  {clock}"));
    let p = &a.subscriber;
    let place = [p.address.as_str(), &format!("{} {}", p.postcode, p.city)]
        .iter()
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(format!(
        "  {}, {}, phone {}",
        p.name,
        or_none(&place),
        or_none(&p.phone)
    ));
    lines.push(format!("  instruction: {}", or_none(&a.instruction)));
    let health = if a.health_notes_withheld {
        "withheld (the person has not consented; ask the alarm centre if the visit needs them)"
    } else {
        or_none(a.health_notes.expose())
    };
    lines.push(format!("  health notes: {health}"));
    let x = &a.access;
    let keys = if x.keys == 0 {
        "no keys".to_string()
    } else {
        format!(
            "{} key{} at {}",
            x.keys,
            if x.keys == 1 { "" } else { "s" },
            or_none(&x.key_location)
        )
    };
    lines.push(format!(
        "  access: {keys}; digital lock {}; door code {}",
        or_none(&x.digital_lock_id),
        or_none(x.door_code.expose()),
    ));
    lines.push(format!("  entry: {}", or_none(&x.entry_notes)));
    if !a.provider_keys.is_empty() {
        lines.push(format!("  your provider has: {}", a.provider_keys));
    }
    lines.join("\n")
}

fn or_none(s: &str) -> &str {
    if s.trim().is_empty() { "none" } else { s }
}

/// Reads stdin lines on a thread (the runtime has no async stdin) into a channel.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::BufRead::read_line(&mut stdin.lock(), &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.blocking_send(line.clone()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// The terminal client: runs until `q`, end of input, or a refusal it must not retry.
pub async fn run(opts: ClientOptions) -> Result<(), ClientError> {
    let addr = tokio::net::lookup_host(&opts.server)
        .await?
        .next()
        .ok_or_else(|| ClientError::Connect(format!("{}: no address", opts.server)))?;
    let host = opts
        .server
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(&opts.server)
        .to_string();
    let mut lines = stdin_lines();
    let mut next_seq = 1u64;
    let mut outbox: Vec<FromPatrol> = Vec::new();
    let mut backoff = RECONNECT_MIN_SECS;
    let tz = TimeZone::system();
    println!("{HELP}");
    loop {
        let attempt = Session::open(
            addr,
            &host,
            &opts.trust,
            &opts.patrol,
            opts.token.expose(),
            next_seq,
        )
        .await;
        let (mut s, welcome, assignments) = match attempt {
            Ok(x) => x,
            Err(e) if e.is_final() => return Err(e),
            Err(e) => {
                let extra = rand::rng().random_range(0..=backoff * 200);
                let delay = Duration::from_millis(u64::from(backoff) * 1000 + u64::from(extra));
                println!(
                    "not connected ({e}); retrying in {:.1} s",
                    delay.as_secs_f32()
                );
                tokio::time::sleep(delay).await;
                backoff = (backoff * 2).min(RECONNECT_MAX_SECS);
                continue;
            }
        };
        backoff = RECONNECT_MIN_SECS;
        println!("{}", connected(&welcome.open));
        for a in &assignments {
            println!("{}", describe_assignment(a, &tz));
        }
        match session_loop(&mut s, &mut lines, &mut outbox, &tz).await {
            Ok(true) => {
                s.close().await;
                return Ok(());
            }
            Ok(false) => {}
            Err(e) if e.is_final() => return Err(e),
            Err(e) => println!("connection lost ({e}); reconnecting"),
        }
        next_seq = s.next_seq;
    }
}

/// One session of [`run`]: resends the outbox, then serves commands, pings and pushes.
/// Returns `Ok(true)` on quit.
async fn session_loop(
    s: &mut Session,
    lines: &mut mpsc::Receiver<String>,
    outbox: &mut Vec<FromPatrol>,
    tz: &TimeZone,
) -> Result<bool, ClientError> {
    for ev in outbox.clone() {
        let answer = s.send_event(&ev).await?;
        println!("{}", answered(&ev, &answer, tz));
        outbox.retain(|e| e.seq() != ev.seq());
    }
    let mut ping = tokio::time::interval(Duration::from_secs(u64::from(wire::PING_INTERVAL_SECS)));
    ping.tick().await;
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { return Ok(true) };
                match parse_command(&line, jiff::Timestamp::now()) {
                    Ok(None) => {}
                    Ok(Some(Command::Quit)) => return Ok(true),
                    Ok(Some(Command::Event(ev))) => {
                        let ev = with_seq(ev, s.next_seq());
                        outbox.push(ev.clone());
                        let answer = s.send_event(&ev).await?;
                        println!("{}", answered(&ev, &answer, tz));
                        outbox.retain(|e| e.seq() != ev.seq());
                    }
                    Err(e) => println!("{e}"),
                }
            }
            _ = ping.tick() => s.ping().await?,
            m = s.next_push(Duration::from_secs(u64::from(wire::IDLE_TIMEOUT_SECS))) => {
                match m? {
                    Some(ToPatrol::Error { code, message, fatal: true, .. }) => {
                        return Err(ClientError::Refused { code, message });
                    }
                    Some(m) => println!("{}", describe(&m, tz)),
                    None => {
                        s.conn.close(wire::CLOSE_IDLE.into(), b"idle");
                        return Ok(false);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        assert_eq!(parse_command("  ", now), Ok(None));
        assert_eq!(parse_command("q", now), Ok(Some(Command::Quit)));
        assert!(parse_command("r", now).is_err());
        assert!(parse_command("x 1", now).is_err());
        assert!(parse_command("c 4 maybe", now).is_err());
        let Ok(Some(Command::Event(ev))) = parse_command("d 41 car broke down", now) else {
            panic!("declined")
        };
        assert_eq!(
            ev,
            FromPatrol::Declined {
                seq: 0,
                dispatch: 41,
                at: now,
                reason: "car broke down".into()
            }
        );
        let Ok(Some(Command::Event(ev))) = parse_command("c 41 helped up from the floor", now)
        else {
            panic!("completed")
        };
        let ev = with_seq(ev, 9);
        assert_eq!(ev.seq(), 9);
        assert!(matches!(
            ev,
            FromPatrol::Completed { outcome: VisitOutcome::Helped, ref note, .. } if note == "up from the floor"
        ));
    }

    fn example(name: &str) -> ToPatrol {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("proto/patrol/to_patrol")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_terminal_shows_local_times_assignment_numbers_and_what_the_patrol_needs() {
        let stockholm = TimeZone::get("Europe/Stockholm").unwrap();
        // Received at 17:42:13Z, deadline 18:12:13Z: 18:42 and 19:12 in Stockholm in November.
        let got = describe(&example("assignment-received.json"), &stockholm);
        assert_eq!(
            got,
            "ASSIGNMENT 41 (received): Fall, priority 1; alarm call 1187\n  \
             arrive before 19:12 (30 min from receipt at 18:42)\n  \
             Åsa Öberg, Storgatan 14 lgh 1102, 991 31 Vaktby, phone 0980-319 200\n  \
             instruction: Dottern Karin väntar i porten. Ta med blodsockermätaren.\n  \
             health notes: Diabetes typ 2 (insulin). Tar Waran: blöder lätt.\n  \
             access: 2 keys at Nyckelskåp Hemtjänst Centrum, krok 13; digital lock PL-3301; door code 1402#\n  \
             entry: Hiss till 4 tr. Ring på, hör dåligt.\n  \
             your provider has: 2 door keys; the lock"
        );
        assert!(!got.contains("seq") && !got.contains('Z'), "{got}");
        // Another zone, another clock; the offered one asks for receipt first.
        let new_york = TimeZone::get("America/New_York").unwrap();
        let got = describe(&example("assignment.json"), &new_york);
        assert!(
            got.contains("confirm receipt before 12:44 (`r 41`); then 30 min to arrive"),
            "{got}"
        );
        assert!(got.starts_with("ASSIGNMENT 41 (new): "), "{got}");
        // Withheld health notes and no access data say so.
        let got = describe(&example("assignment-no_access_data.json"), &stockholm);
        assert!(got.contains("instruction: none"), "{got}");
        assert!(
            got.contains("health notes: withheld (the person has not consented"),
            "{got}"
        );
        assert!(
            got.contains("access: no keys; digital lock none; door code none"),
            "{got}"
        );
        assert!(
            got.ends_with("your provider has: no key and no lock access"),
            "{got}"
        );
        // Warnings and cancellations by assignment number, in local time.
        assert_eq!(
            describe(&example("sla_warning.json"), &stockholm),
            "WARNING assignment 41: 10 min left, arrive before 19:12"
        );
        let got = describe(&example("cancelled.json"), &stockholm);
        assert!(got.starts_with("CANCELLED assignment 42: "), "{got}");
        // An event's answer names the assignment, not the protocol numbers of either message.
        let ev = FromPatrol::Received {
            seq: 3,
            dispatch: 17,
            at: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            answered(&ev, &ToPatrol::Ack { seq: 3 }, &stockholm),
            "assignment 17: received: ok"
        );
        let refused = example("error-closed.json");
        let got = answered(&ev, &refused, &stockholm);
        assert!(
            got.starts_with("assignment 17: received: refused (closed): "),
            "{got}"
        );
        assert_eq!(connected(&[41, 42]), "connected; open assignments 41, 42");
        assert_eq!(connected(&[]), "connected; no open assignment");
    }
}
