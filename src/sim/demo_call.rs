//! The demo's alarm unit on the phone (protocols.md §3.7): once vakt has answered an alarm
//! `snu 0` with `mre 1` ("call us now"), the SCAIP home places its voice call to vakt, as a
//! real unit does, and the person speaks when an operator answers.
//!
//! - **The call.** An INVITE to vakt's SIP endpoint (its SCAIP UDP port) from a UDP socket
//!   of the call's own, answering vakt's Digest challenge with the unit's registry
//!   credentials (the same as its SCAIP messages). The offer is vakt_proto's
//!   [`LocalSession`]: G.711 A-law first (as Swedish units send), μ-law, and
//!   telephone-event; RTP from a socket on the same address as the SIP one (loopback in the
//!   demo).
//! - **Ringing** until an operator answers in the console, at most
//!   [`UnitCallOptions::ring_for`]; then the unit gives up with CANCEL.
//! - **The person.** From the answer: [`UnitCallOptions::speak_after`] of silence, then the
//!   phrase ([`phrase`], `demo_call/phrase-sv.wav`, made once with eSpeak NG: see the README
//!   there), [`UnitCallOptions::pause`] of silence, and the phrase again, in 20 ms RTP
//!   packets of the agreed law. What the operator says is counted and dropped. The SCAIP
//!   DTMF commands (RFC 4733 events, or SIP INFO) are noted; `0`, clear down ("call received
//!   correctly"), makes the unit hang up.
//! - **The end.** vakt's BYE is answered `200` and ends the call; the unit hangs up itself
//!   (BYE) after [`UnitCallOptions::max_call`], on clear down, and when the demo stops.
//!
//! Written on vakt_proto's sans-IO SIP, SDP, RTP and G.711 rather than with
//! [`crate::transport::sip::Endpoint::dial`]: that is vakt's own endpoint, the centre's side
//! of a call, built over its listeners, its SCAIP and call handlers and its `vakt_scaip_*`
//! metrics, where a unit's traffic must not be counted. A unit is a plain UAC with one
//! dialog. Bounds: one dialog and two sockets per call; every wait ends (RFC 3261's
//! retransmissions over UDP, T1 doubling to T2, at most 64·T1; the ring and call limits);
//! at most [`MAX_DTMF`] DTMF keys are kept.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::voice::wav;
use vakt_proto::g711::{self, Law};
use vakt_proto::rtp::{self, Header, TelephoneEvent};
use vakt_proto::sdp::{self, Codec, Direction, LocalMedia, LocalSession, Negotiated};
use vakt_proto::sip::{self, Message, OutRequest, StartLine};

/// The phrase the person says: 8 kHz mono 16-bit PCM (see `demo_call/README.md`).
const PHRASE_WAV: &[u8] = include_bytes!("demo_call/phrase-sv.wav");
/// RFC 3261 T1.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2.
const T2: Duration = Duration::from_secs(4);
/// How long a transaction waits for its final response (64·T1).
const TRANSACTION: Duration = Duration::from_secs(32);
/// How long the unit's BYE waits when the demo stops.
const BYE_AT_SHUTDOWN: Duration = Duration::from_secs(2);
/// Samples in one 20 ms packet.
const FRAME_SAMPLES: usize = rtp::SAMPLES_PER_TICK as usize;
/// DTMF keys a call keeps (the first ones).
pub const MAX_DTMF: usize = 32;
/// What the unit allows in its dialog.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, INFO, OPTIONS, UPDATE";

/// How the demo's units behave on the phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitCallOptions {
    /// How long the unit lets its call ring before it gives up (CANCEL). Default 2 min.
    pub ring_for: Duration,
    /// The longest call: the unit hangs up (BYE) after this. Default 10 min.
    pub max_call: Duration,
    /// Silence from the answer to the person's first word. Default 1 s.
    pub speak_after: Duration,
    /// Silence between two repeats of the phrase. Default 4 s.
    pub pause: Duration,
}

impl Default for UnitCallOptions {
    fn default() -> Self {
        UnitCallOptions {
            ring_for: Duration::from_secs(120),
            max_call: Duration::from_secs(600),
            speak_after: Duration::from_secs(1),
            pause: Duration::from_secs(4),
        }
    }
}

/// The unit that calls: where vakt's SIP endpoint is, and the unit's credentials.
#[derive(Clone)]
pub struct Unit {
    /// vakt's SIP endpoint (its SCAIP UDP listener, reached over loopback in the demo).
    pub server: SocketAddr,
    /// The unit's `cid` (the user part of its From).
    pub cid: String,
    /// The registry's `sip_user`.
    pub user: String,
    /// The registry's `sip_password`.
    pub password: String,
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is left out.
        f.debug_struct("Unit")
            .field("server", &self.server)
            .field("cid", &self.cid)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// vakt hung up (BYE).
    ArcHungUp,
    /// The operator sent clear down (DTMF `0`) and the unit hung up.
    ClearDown,
    /// The unit hung up after [`UnitCallOptions::max_call`].
    MaxDuration,
    /// Nobody answered within [`UnitCallOptions::ring_for`]: the unit cancelled.
    NotAnswered,
    /// vakt refused the call with this final status (`480` after its own ring limit, `403`,
    /// `488`, `503` ...).
    Refused(u16),
    /// The demo stopped.
    Shutdown,
}

/// What happened on one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallReport {
    /// How it ended.
    pub end: CallEnd,
    /// The law agreed, once answered.
    pub law: Option<Law>,
    /// From the answer to the end.
    pub talk: Duration,
    /// Audio packets the unit sent.
    pub frames_sent: u64,
    /// Audio packets the unit received from vakt after the answer (the operator).
    pub frames_heard: u64,
    /// How many times the person began the phrase.
    pub phrases: u64,
    /// The DTMF keys the operator sent (the first [`MAX_DTMF`]).
    pub dtmf: Vec<char>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// vakt did not answer a request of the unit's.
    #[error("no answer to the {0}")]
    NoResponse(&'static str),
    /// vakt's answer cannot be used (an SDP answer that agrees nothing, a challenge that
    /// cannot be answered).
    #[error("vakt's answer: {0}")]
    Protocol(String),
}

/// The person's phrase, 8 kHz mono samples (empty, said once, if the embedded file does not
/// read: the unit then stays silent).
pub fn phrase() -> &'static [i16] {
    static PHRASE: OnceLock<Vec<i16>> = OnceLock::new();
    PHRASE.get_or_init(|| match wav::parse(PHRASE_WAV) {
        Ok(w) if w.sample_rate == g711::SAMPLE_RATE && w.channels == 1 => w.samples,
        Ok(w) => {
            tracing::warn!(
                rate = w.sample_rate,
                channels = w.channels,
                "demo: the phrase is not 8 kHz mono; the units stay silent"
            );
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "demo: the phrase does not read; the units stay silent");
            Vec::new()
        }
    })
}

/// The person's side of the audio: silence, the phrase, a pause, the phrase again.
struct Speaker {
    law: Law,
    samples: &'static [i16],
    /// Samples of silence before the first word.
    lead: u64,
    /// Samples of one phrase and its pause.
    cycle: u64,
    /// Samples played so far.
    at: u64,
    buf: Vec<i16>,
}

impl Speaker {
    fn new(law: Law, samples: &'static [i16], opts: &UnitCallOptions) -> Speaker {
        let n = |d: Duration| {
            u64::try_from(d.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_mul(u64::from(g711::SAMPLE_RATE))
                / 1000
        };
        let len = samples.len() as u64;
        Speaker {
            law,
            samples,
            lead: n(opts.speak_after),
            cycle: len.saturating_add(n(opts.pause)).max(FRAME_SAMPLES as u64),
            at: 0,
            buf: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// The next 20 ms, encoded into `out`.
    fn frame(&mut self, out: &mut Vec<u8>) {
        self.buf.clear();
        for k in 0..FRAME_SAMPLES as u64 {
            let t = self.at + k;
            let s = t
                .checked_sub(self.lead)
                .map(|u| u % self.cycle)
                .and_then(|u| usize::try_from(u).ok())
                .and_then(|u| self.samples.get(u).copied())
                .unwrap_or(0);
            self.buf.push(s);
        }
        self.at += FRAME_SAMPLES as u64;
        out.clear();
        self.law.encode_into(&self.buf, out);
    }

    /// How many times the phrase has begun.
    fn phrases(&self) -> u64 {
        if self.samples.is_empty() {
            return 0;
        }
        self.at
            .checked_sub(self.lead)
            .map_or(0, |u| u.saturating_sub(1) / self.cycle + 1)
    }
}

/// Places one call from `unit` and runs it to its end (see the module doc); returns at once
/// when `shutdown` is cancelled (after a BYE bounded by 2 s when the call was answered).
///
/// # Errors
/// [`CallError`] when a socket fails or vakt stops answering.
pub async fn call(
    unit: &Unit,
    opts: &UnitCallOptions,
    shutdown: &CancellationToken,
) -> Result<CallReport, CallError> {
    let ip = unit.server.ip();
    let socket = UdpSocket::bind((ip, 0)).await?;
    let media = UdpSocket::bind((ip, 0)).await?;
    let local = socket.local_addr()?;
    let mut session = LocalSession::new(
        LocalMedia {
            address: ip,
            port: media.local_addr()?.port(),
            rtcp_mux: false,
        },
        rand::random::<u32>().into(),
        1,
    );
    let offer = session.offer(Direction::SendRecv);
    let mut d = Dialog::new(unit, socket, local, session);
    let answered = match d.invite(&offer, opts, shutdown).await? {
        Invited::Answered(sdp) => sdp,
        Invited::Ended(end) => {
            return Ok(CallReport {
                end,
                law: None,
                talk: Duration::ZERO,
                frames_sent: 0,
                frames_heard: 0,
                phrases: 0,
                dtmf: Vec::new(),
            });
        }
    };
    let negotiated = sdp::parse(&answered)
        .map_err(|e| CallError::Protocol(format!("SDP: {}", e.as_str())))
        .and_then(|s| {
            d.session
                .take_answer(&s)
                .map_err(|e| CallError::Protocol(format!("SDP answer: {}", e.as_str())))
        });
    let negotiated = match negotiated {
        Ok(n) => n,
        Err(e) => {
            let _ = d.hang_up(BYE_AT_SHUTDOWN).await;
            return Err(e);
        }
    };
    Ok(talk(&mut d, media, negotiated, opts, shutdown).await)
}

/// The answered call: the person speaks until someone hangs up.
async fn talk(
    d: &mut Dialog,
    media: UdpSocket,
    n: Negotiated,
    opts: &UnitCallOptions,
    shutdown: &CancellationToken,
) -> CallReport {
    let law = match n.codec {
        Codec::Pcma => Law::Alaw,
        Codec::Pcmu => Law::Ulaw,
    };
    let started = Instant::now();
    let deadline = started + opts.max_call;
    let mut report = CallReport {
        end: CallEnd::ArcHungUp,
        law: Some(law),
        talk: Duration::ZERO,
        frames_sent: 0,
        frames_heard: 0,
        phrases: 0,
        dtmf: Vec::new(),
    };
    // What vakt played before the answer (ringing) is not the operator.
    let mut buf = vec![0u8; rtp::MAX_PACKET_BYTES];
    while media.try_recv_from(&mut buf).is_ok() {}
    let mut remote = n.remote.filter(|a| !a.ip().is_unspecified());
    let mut speaker = Speaker::new(law, phrase(), opts);
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut ts: u32 = rand::random();
    let mut payload = Vec::with_capacity(FRAME_SAMPLES);
    let mut packet = Vec::with_capacity(rtp::HEADER_BYTES + FRAME_SAMPLES);
    let mut events_seen: Vec<u32> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(rtp::TICK_MS)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut sip_buf = vec![0u8; sip::MAX_MESSAGE_BYTES + 1];
    let end = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break CallEnd::Shutdown,
            () = tokio::time::sleep_until(deadline) => break CallEnd::MaxDuration,
            r = d.socket.recv_from(&mut sip_buf) => {
                let Ok((len, from)) = r else { continue };
                if d.incoming(&sip_buf[..len], from).await == Heard::Bye {
                    break CallEnd::ArcHungUp;
                }
                if d.clear_down {
                    break CallEnd::ClearDown;
                }
            }
            r = media.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                let Ok(p) = rtp::parse(&buf[..len]) else { continue };
                if remote.is_none() {
                    remote = Some(from);
                }
                if p.header.payload_type == n.payload_type {
                    report.frames_heard += 1;
                } else if Some(p.header.payload_type) == n.dtmf_payload_type
                    && let Ok(ev) = TelephoneEvent::parse(p.payload)
                    && ev.end
                    && !events_seen.contains(&p.header.timestamp)
                {
                    if events_seen.len() >= MAX_DTMF {
                        events_seen.remove(0);
                    }
                    events_seen.push(p.header.timestamp);
                    if let Some(key) = rtp::dtmf_key(ev.event) {
                        d.dtmf(key);
                    }
                    if d.clear_down {
                        break CallEnd::ClearDown;
                    }
                }
            }
            _ = tick.tick() => {
                let Some(to) = remote else { continue };
                speaker.frame(&mut payload);
                let header = Header {
                    marker: report.frames_sent == 0,
                    payload_type: n.payload_type,
                    sequence: seq,
                    timestamp: ts,
                    ssrc,
                };
                packet.clear();
                if header.write(&payload, &mut packet).is_ok()
                    && media.send_to(&packet, to).await.is_ok()
                {
                    report.frames_sent += 1;
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(rtp::SAMPLES_PER_TICK);
            }
        }
    };
    report.talk = started.elapsed();
    report.phrases = speaker.phrases();
    report.dtmf = std::mem::take(&mut d.dtmf);
    report.end = end;
    if end != CallEnd::ArcHungUp {
        let patience = if end == CallEnd::Shutdown {
            BYE_AT_SHUTDOWN
        } else {
            TRANSACTION
        };
        if let Err(e) = d.hang_up(patience).await {
            tracing::debug!(cid = %d.cid, error = %e, "demo: the unit's BYE was not answered");
        }
    }
    report
}

/// What the INVITE came to.
enum Invited {
    /// vakt answered (the ACK is sent): its SDP.
    Answered(Vec<u8>),
    /// The call ended before an answer.
    Ended(CallEnd),
}

/// What an incoming message was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heard {
    /// vakt hung up.
    Bye,
    /// Anything else (answered as it needs).
    Other,
}

/// The unit's one dialog with vakt.
struct Dialog {
    socket: UdpSocket,
    server: SocketAddr,
    cid: String,
    user: String,
    password: String,
    /// `host:port` of the unit's SIP socket (Via, Contact).
    local: String,
    /// vakt's URI: the Request-URI of the INVITE.
    uri: String,
    from: String,
    from_tag: String,
    call_id: String,
    cseq: u32,
    /// To with vakt's tag, once it answered.
    to: String,
    /// Where requests in the dialog go (vakt's Contact).
    target: String,
    /// The ACK of vakt's `2xx`, sent again for each retransmission of it.
    ack: Option<Vec<u8>>,
    session: LocalSession,
    /// The operator sent clear down.
    clear_down: bool,
    dtmf: Vec<char>,
}

impl Dialog {
    fn new(unit: &Unit, socket: UdpSocket, local: SocketAddr, session: LocalSession) -> Dialog {
        let uri = format!("sip:arc@{}", unit.server);
        Dialog {
            socket,
            server: unit.server,
            cid: unit.cid.clone(),
            user: unit.user.clone(),
            password: unit.password.clone(),
            local: local.to_string(),
            from: format!("<sip:{}@{}>", unit.cid, host_of(unit.server.ip())),
            to: format!("<{uri}>"),
            target: uri.clone(),
            uri,
            from_tag: sip::random_token(10),
            call_id: sip::random_token(16),
            cseq: 0,
            ack: None,
            session,
            clear_down: false,
            dtmf: Vec::new(),
        }
    }

    fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    /// A request of the unit's.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &str,
        uri: &str,
        to: &str,
        cseq: u32,
        branch: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        sip::encode_request_with(
            &OutRequest {
                method,
                uri,
                via_transport: "UDP",
                via_host: &self.local,
                branch,
                from: &self.from,
                from_tag: &self.from_tag,
                to,
                call_id: &self.call_id,
                cseq,
                content_type: (!body.is_empty()).then_some(sdp::CONTENT_TYPE),
                body,
            },
            extra,
            &mut out,
        );
        out
    }

    async fn send(&self, bytes: &[u8]) {
        if let Err(e) = self.socket.send_to(bytes, self.server).await {
            tracing::debug!(cid = %self.cid, error = %e, "demo: the unit's SIP could not be sent");
        }
    }

    /// Whether `msg` is a response to this dialog's `cseq` `method`.
    fn answers(&self, msg: &Message<'_>, cseq: u32, method: &str) -> bool {
        msg.call_id() == self.call_id && msg.cseq() == (cseq, method)
    }

    /// The INVITE, until vakt answers, refuses, or the ring limit or the demo's stop.
    async fn invite(
        &mut self,
        offer: &[u8],
        opts: &UnitCallOptions,
        shutdown: &CancellationToken,
    ) -> Result<Invited, CallError> {
        let contact = format!("<sip:{}@{}>", self.user, self.local);
        let ring_until = Instant::now() + opts.ring_for;
        let mut auth: Option<String> = None;
        let mut challenged = false;
        let mut buf = vec![0u8; sip::MAX_MESSAGE_BYTES + 1];
        loop {
            let cseq = self.next_cseq();
            let branch = format!("z9hG4bK{}", sip::random_token(12));
            let mut extra = vec![
                ("Contact", contact.as_str()),
                ("Allow", ALLOW),
                ("Supported", "replaces"),
            ];
            if let Some(a) = &auth {
                extra.push(("Authorization", a.as_str()));
            }
            let req = self.request("INVITE", &self.uri, &self.to, cseq, &branch, &extra, offer);
            self.send(&req).await;
            let sent = Instant::now();
            let mut resend_in = T1;
            let mut resend_at = sent + T1;
            let mut provisional = false;
            let retry = loop {
                let wake = if provisional {
                    ring_until
                } else {
                    resend_at.min(ring_until)
                };
                let got = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {
                        return Ok(Invited::Ended(self.cancel(cseq, &branch, provisional, BYE_AT_SHUTDOWN, CallEnd::Shutdown).await));
                    }
                    () = tokio::time::sleep_until(wake) => None,
                    r = self.socket.recv_from(&mut buf) => r.ok(),
                };
                let now = Instant::now();
                let Some((len, _)) = got else {
                    if now >= ring_until {
                        return Ok(Invited::Ended(
                            self.cancel(
                                cseq,
                                &branch,
                                provisional,
                                TRANSACTION,
                                CallEnd::NotAnswered,
                            )
                            .await,
                        ));
                    }
                    if now >= sent + TRANSACTION {
                        return Err(CallError::NoResponse("INVITE"));
                    }
                    self.send(&req).await;
                    resend_in = (resend_in * 2).min(T2);
                    resend_at = now + resend_in;
                    continue;
                };
                let Ok(msg) = sip::parse(&buf[..len]) else {
                    continue;
                };
                let StartLine::Response { code, .. } = msg.start else {
                    // Nothing comes from vakt before the dialog but this; answered anyway.
                    continue;
                };
                if !self.answers(&msg, cseq, "INVITE") {
                    continue;
                }
                match code {
                    100..=199 => {
                        if !provisional && code != 100 {
                            tracing::debug!(cid = %self.cid, code, "demo: the unit's call rings");
                        }
                        provisional = true;
                    }
                    200..=299 => {
                        self.confirm(&msg);
                        if let Some(ack) = &self.ack {
                            self.send(ack).await;
                        }
                        return Ok(Invited::Answered(msg.body.to_vec()));
                    }
                    401 | 407 if !challenged => {
                        self.ack_failure(&msg, cseq, &branch).await;
                        let (have, give) = if code == 407 {
                            ("Proxy-Authenticate", "Proxy-Authorization")
                        } else {
                            ("WWW-Authenticate", "Authorization")
                        };
                        let value = msg
                            .header(have)
                            .and_then(|h| sip::parse_challenge(h).ok())
                            .map(|ch| {
                                sip::authorization(
                                    &self.user,
                                    &self.password,
                                    &ch,
                                    "INVITE",
                                    &self.uri,
                                    &sip::random_token(12),
                                    1,
                                )
                            })
                            .ok_or_else(|| {
                                CallError::Protocol(format!("{code} without a usable challenge"))
                            })?;
                        if give == "Proxy-Authorization" {
                            return Err(CallError::Protocol("a proxy challenge".into()));
                        }
                        challenged = true;
                        break value;
                    }
                    _ => {
                        self.ack_failure(&msg, cseq, &branch).await;
                        return Ok(Invited::Ended(CallEnd::Refused(code)));
                    }
                }
            };
            auth = Some(retry);
        }
    }

    /// Takes vakt's `2xx`: its tag and Contact, and the ACK to send for it.
    fn confirm(&mut self, msg: &Message<'_>) {
        if let Some(to) = msg.header("To") {
            self.to = to.to_owned();
        }
        if let Some(c) = msg.contact_uri() {
            self.target = c.to_owned();
        }
        let branch = format!("z9hG4bK{}", sip::random_token(12));
        let (cseq, _) = msg.cseq();
        self.ack = Some(self.request("ACK", &self.target, &self.to, cseq, &branch, &[], b""));
    }

    /// The ACK of a final refusal (the INVITE's transaction: its branch and Request-URI).
    async fn ack_failure(&self, msg: &Message<'_>, cseq: u32, branch: &str) {
        let to = msg.header("To").unwrap_or(&self.to);
        let ack = self.request("ACK", &self.uri, to, cseq, branch, &[], b"");
        self.send(&ack).await;
    }

    /// Gives up a call not yet answered (CANCEL once something came back, else only stop
    /// sending), and takes the INVITE's final answer: an answer that crossed the CANCEL is
    /// acknowledged and hung up.
    async fn cancel(
        &mut self,
        cseq: u32,
        branch: &str,
        provisional: bool,
        patience: Duration,
        end: CallEnd,
    ) -> CallEnd {
        if !provisional {
            return end;
        }
        let cancel = self.request("CANCEL", &self.uri, &self.to, cseq, branch, &[], b"");
        let until = Instant::now() + patience;
        let mut buf = vec![0u8; sip::MAX_MESSAGE_BYTES + 1];
        let mut cancelled = false;
        let mut resend_in = T1;
        while Instant::now() < until {
            if !cancelled {
                self.send(&cancel).await;
            }
            let got = tokio::time::timeout(resend_in, self.socket.recv_from(&mut buf)).await;
            resend_in = (resend_in * 2).min(T2);
            let Ok(Ok((len, _))) = got else { continue };
            let Ok(msg) = sip::parse(&buf[..len]) else {
                continue;
            };
            let StartLine::Response { code, .. } = msg.start else {
                continue;
            };
            if self.answers(&msg, cseq, "CANCEL") {
                cancelled = true;
            } else if self.answers(&msg, cseq, "INVITE") {
                match code {
                    200..=299 => {
                        self.confirm(&msg);
                        if let Some(ack) = &self.ack {
                            self.send(ack).await;
                        }
                        let _ = self.hang_up(patience).await;
                        return end;
                    }
                    300.. => {
                        self.ack_failure(&msg, cseq, branch).await;
                        return end;
                    }
                    _ => {}
                }
            }
        }
        end
    }

    /// The unit hangs up: BYE, retransmitted until vakt answers it (within `patience`).
    async fn hang_up(&mut self, patience: Duration) -> Result<(), CallError> {
        let cseq = self.next_cseq();
        let branch = format!("z9hG4bK{}", sip::random_token(12));
        let bye = self.request("BYE", &self.target, &self.to, cseq, &branch, &[], b"");
        let until = Instant::now() + patience.min(TRANSACTION);
        let mut resend_in = T1;
        let mut buf = vec![0u8; sip::MAX_MESSAGE_BYTES + 1];
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            if now >= until {
                return Err(CallError::NoResponse("BYE"));
            }
            if now >= next {
                self.send(&bye).await;
                next = now + resend_in;
                resend_in = (resend_in * 2).min(T2);
            }
            let got =
                tokio::time::timeout_at(next.min(until), self.socket.recv_from(&mut buf)).await;
            let Ok(Ok((len, from))) = got else { continue };
            let done = match sip::parse(&buf[..len]) {
                Ok(msg) => {
                    matches!(msg.start, StartLine::Response { code, .. } if code >= 200)
                        && self.answers(&msg, cseq, "BYE")
                }
                Err(_) => false,
            };
            if done {
                return Ok(());
            }
            // vakt's own BYE crossed the unit's: answered, and the call is over too.
            if self.incoming(&buf[..len], from).await == Heard::Bye {
                return Ok(());
            }
        }
    }

    /// A message from vakt in the answered call: requests answered, a `2xx` retransmitted
    /// acknowledged again.
    async fn incoming(&mut self, raw: &[u8], from: SocketAddr) -> Heard {
        let Ok(msg) = sip::parse(raw) else {
            return Heard::Other;
        };
        let method = match msg.start {
            StartLine::Response { code, .. } => {
                if (200..300).contains(&code)
                    && msg.cseq().1 == "INVITE"
                    && msg.call_id() == self.call_id
                {
                    if let Some(ack) = &self.ack {
                        self.send(ack).await;
                    }
                }
                return Heard::Other;
            }
            StartLine::Request { method, .. } => method,
        };
        if method == "ACK" {
            return Heard::Other;
        }
        let mut out = Vec::with_capacity(512);
        let mut respond = |code: u16, reason: &str, extra: &[(&str, &str)], body: &[u8]| {
            sip::encode_response_from(
                Some(from),
                &msg,
                code,
                reason,
                &self.from_tag,
                extra,
                (!body.is_empty()).then_some(sdp::CONTENT_TYPE),
                body,
                &mut out,
            );
        };
        let mut heard = Heard::Other;
        if msg.call_id() != self.call_id {
            respond(481, "Call/Transaction Does Not Exist", &[], b"");
        } else {
            match method {
                "BYE" => {
                    respond(200, "OK", &[], b"");
                    heard = Heard::Bye;
                }
                "INFO" => {
                    respond(200, "OK", &[], b"");
                    if let Some(key) = info_key(msg.body) {
                        self.dtmf(key);
                    }
                }
                "INVITE" | "UPDATE" => {
                    let answer = sdp::parse(msg.body)
                        .ok()
                        .and_then(|o| self.session.answer(&o, Direction::SendRecv).ok());
                    match answer {
                        Some(a) => respond(200, "OK", &[("Allow", ALLOW)], &a.sdp),
                        None => respond(488, "Not Acceptable Here", &[], b""),
                    }
                }
                "OPTIONS" => respond(200, "OK", &[("Allow", ALLOW)], b""),
                _ => respond(405, "Method Not Allowed", &[("Allow", ALLOW)], b""),
            }
        }
        if let Err(e) = self.socket.send_to(&out, from).await {
            tracing::debug!(cid = %self.cid, error = %e, "demo: the unit's answer could not be sent");
        }
        heard
    }

    /// The operator sent DTMF `key`.
    fn dtmf(&mut self, key: char) {
        if self.dtmf.len() < MAX_DTMF {
            self.dtmf.push(key);
        }
        if let Some(cmd) = rtp::ScaipDtmf::from_key(key) {
            tracing::debug!(cid = %self.cid, command = cmd.as_str(), "demo: the unit heard a DTMF command");
        }
        if key == '0' {
            self.clear_down = true;
        }
    }
}

/// The key of a SIP INFO `application/dtmf-relay` body (`Signal=0`).
fn info_key(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("signal")
            .then(|| v.trim().chars().next())
            .flatten()
    })
}

/// An IP as the host part of a URI (`[::1]` for IPv6).
fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests;
