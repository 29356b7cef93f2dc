//! SIP calls on vakt's SIP endpoint (`transport::sip`, INVITE dialogs), end to end over real
//! UDP and TCP on 127.0.0.1 with a test call handler in place of the voice core:
//!
//! - raw SIP from the test: a unit challenged (401), admitted with Digest, rung, answered
//!   (the 200 retransmitted until the ACK), hung up by vakt (BYE seen by the unit); a CANCEL
//!   before the answer; a BYE for no dialog (481); a retransmitted INVITE (the last response
//!   again); the cap on dialogs (503); a trunk's caller by P-Asserted-Identity; calls out to
//!   an address and over a unit's own TCP connection; SCAIP MESSAGE unchanged beside calls;
//!   malformed bytes; a flood (the per-source rate, a trunk exempt).
//! - SIPp (Debian's `sipp`, package `sip-tester`) playing the scenarios under `tests/sipp/`:
//!   the alarm unit calling with Digest (hung up by the unit, and by vakt), an INVITE with
//!   only G.729 (488 + ACK), a CANCEL before the answer; and SIPp as the callee of vakt's
//!   call out (with and without a Digest challenge). Without `sipp` on PATH these say so and
//!   pass, unless `VAKT_REQUIRE_SIPP` is set. With `VAKT_ARTIFACTS` set, SIPp's traces are
//!   kept in its `sipp/` folder.
//! - the whole server: a unit's call opening its person's Call, a call ringing at a stop, the
//!   console refusing a call; a trunk with Digest (challenge, wrong credentials, its
//!   credentials from another address) naming its caller by number; the registers learning
//!   a unit's number (from its call, from its SCAIP `crd`) and naming its trunk calls by it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::sipp::{Sipp, sipp_binary};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use vakt::model::SipPassword;
use vakt::telemetry::ScaipMetrics;
use vakt::transport::accept::Scope;
use vakt::transport::sip::{
    self, Admission, CallEvent, CallHandle, CallHandler, CallId, Decision, Dial, DialVia, End,
    Endpoint, IncomingCall, InviteOptions, Origin, Request, ScaipHandler, SipOptions,
};
use vakt_proto::sip::{self as wire, Message};

const USER: &str = "luc678";
const PASSWORD: &str = "pw-678";
const REALM: &str = "vakt";
const SECRET: &[u8] = b"test nonce secret";
const OFFER: &str = "v=0\r\no=luc 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
const ANSWER: &str = "v=0\r\no=vakt 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
/// Each wait for a message or an event ends within this.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The handlers
// ---------------------------------------------------------------------------------------

/// Digest as ingest does it, in small: stateless nonces, the uri checked.
fn digest(msg: &Message<'_>, method: &str, uri: &str) -> Result<String, String> {
    let now = jiff::Timestamp::now().as_second();
    let challenge = || wire::challenge(REALM, &wire::make_nonce(SECRET, now, 1), false);
    let Some(value) = msg.header("Authorization") else {
        return Err(challenge());
    };
    let Ok(c) = wire::parse_authorization(value) else {
        return Err(challenge());
    };
    let fresh = wire::check_nonce(SECRET, &c.nonce, now, 300) == wire::NonceCheck::Fresh;
    let ok = fresh
        && c.username == USER
        && c.realm == REALM
        && wire::uri_matches(&c.uri, uri)
        && wire::verify(&c, method, &wire::ha1(USER, REALM, PASSWORD));
    if ok {
        Ok(USER.to_owned())
    } else {
        Err(challenge())
    }
}

struct Scaip;

impl ScaipHandler for Scaip {
    fn authenticate(
        &self,
        msg: &Message<'_>,
        method: &str,
        uri: &str,
        _peer: SocketAddr,
    ) -> Result<String, String> {
        digest(msg, method, uri)
    }

    async fn message(&self, req: Request<'_>) -> Vec<u8> {
        let reference = vakt_proto::scaip::sniff_ref(req.body).unwrap_or_default();
        format!("<mrs><ref>{reference}</ref><snu>0</snu></mrs>").into_bytes()
    }
}

/// What the test handler does with a new call.
#[derive(Clone, Debug)]
enum Policy {
    Ring,
    Answer,
    Reject(u16),
}

struct Calls {
    policy: Mutex<Policy>,
    trunk: Mutex<Option<SocketAddr>>,
    incoming: UnboundedSender<(IncomingCall, CallHandle)>,
    events: UnboundedSender<(CallId, CallEvent)>,
}

impl CallHandler for Calls {
    fn admit(&self, invite: &Message<'_>, uri: &str, peer: SocketAddr) -> Admission {
        if *self.trunk.lock().unwrap() == Some(peer) {
            return Admission::Trunk { name: "sbc".into() };
        }
        if invite.from_uri().and_then(wire::uri_user) == Some("stranger") {
            return Admission::Forbidden;
        }
        match digest(invite, "INVITE", uri) {
            Ok(user) => Admission::Device { user },
            Err(c) => Admission::Challenge(c),
        }
    }

    fn incoming(&self, call: IncomingCall, handle: CallHandle) -> Decision {
        let offer = String::from_utf8_lossy(&call.offer).into_owned();
        let g711 = offer
            .lines()
            .filter(|l| l.starts_with("m=audio"))
            .any(|l| l.split(' ').skip(3).any(|pt| pt == "0" || pt == "8"));
        let decision = if !offer.is_empty() && !g711 {
            Decision::Reject(488)
        } else {
            match self.policy.lock().unwrap().clone() {
                Policy::Ring => Decision::Ring,
                Policy::Answer => Decision::Answer(ANSWER.as_bytes().to_vec()),
                Policy::Reject(code) => Decision::Reject(code),
            }
        };
        let _ = self.incoming.send((call, handle));
        decision
    }

    fn reoffer(&self, _id: CallId, offer: &[u8]) -> Result<Vec<u8>, u16> {
        if offer.windows(8).any(|w| w == b"sendonly") {
            Ok(ANSWER.replace("t=0 0", "t=0 0\r\na=recvonly").into_bytes())
        } else {
            Ok(ANSWER.as_bytes().to_vec())
        }
    }

    fn event(&self, id: CallId, event: CallEvent) {
        let _ = self.events.send((id, event));
    }

    fn unlimited_source(&self, peer: SocketAddr) -> bool {
        *self.trunk.lock().unwrap() == Some(peer)
    }
}

/// The endpoint on 127.0.0.1 (UDP and TCP) with the test handlers.
struct Rig {
    ep: Arc<Endpoint<Scaip>>,
    udp: SocketAddr,
    tcp: SocketAddr,
    calls: Arc<Calls>,
    incoming: UnboundedReceiver<(IncomingCall, CallHandle)>,
    events: UnboundedReceiver<(CallId, CallEvent)>,
    stop: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn rig_with(opts: InviteOptions, rate: u32) -> Rig {
    let (itx, incoming) = unbounded_channel();
    let (etx, events) = unbounded_channel();
    let calls = Arc::new(Calls {
        policy: Mutex::new(Policy::Ring),
        trunk: Mutex::new(None),
        incoming: itx,
        events: etx,
    });
    let stop = CancellationToken::new();
    let ep = Arc::new(
        Endpoint::new(
            Arc::new(Scaip),
            SipOptions {
                arc_uri: "sip:arc@127.0.0.1".into(),
                rate_per_source: rate,
                rate_burst: rate,
                max_connections: 64,
                max_per_source: 64,
                idle_timeout: Duration::from_secs(60),
            },
            ScaipMetrics::new(),
            Scope::new(stop.clone()),
        )
        .with_calls(calls.clone(), opts),
    );
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    tokio::spawn(sip::serve_udp(udp, ep.clone()));
    tokio::spawn(sip::serve_stream(tcp, None, ep.clone()));
    // Both listeners answer before the test begins (calls out need the UDP loop running).
    for mut p in [Peer::udp(udp_addr).await, Peer::tcp(tcp_addr).await] {
        let uri = format!("sip:arc@{udp_addr}");
        p.send(&request(
            &p, "OPTIONS", &uri, "ready", 1, "ready", None, "", "",
        ))
        .await;
        assert_eq!(status(&p.recv().await), Some(200));
    }
    Rig {
        ep,
        udp: udp_addr,
        tcp: tcp_addr,
        calls,
        incoming,
        events,
        stop,
    }
}

async fn rig() -> Rig {
    rig_with(InviteOptions::default(), 200).await
}

impl Rig {
    async fn call(&mut self) -> (IncomingCall, CallHandle) {
        tokio::time::timeout(WAIT, self.incoming.recv())
            .await
            .expect("a call reaches the handler")
            .unwrap()
    }

    /// The next event (of any call).
    async fn event(&mut self) -> (CallId, CallEvent) {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event reaches the handler")
            .unwrap()
    }

    /// No event for a while.
    async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(e)) = tokio::time::timeout(d, self.events.recv()).await {
            panic!("unexpected event {e:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// A SIP peer in the test
// ---------------------------------------------------------------------------------------

/// A SIP user agent over UDP or TCP, written by hand.
enum Peer {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
}

impl Peer {
    async fn udp(to: SocketAddr) -> Peer {
        Peer::Udp(UdpSocket::bind("127.0.0.1:0").await.unwrap(), to)
    }

    async fn tcp(to: SocketAddr) -> Peer {
        Peer::Tcp(TcpStream::connect(to).await.unwrap(), Vec::new())
    }

    fn local(&self) -> SocketAddr {
        match self {
            Peer::Udp(s, _) => s.local_addr().unwrap(),
            Peer::Tcp(s, _) => s.local_addr().unwrap(),
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Peer::Udp(..) => "UDP",
            Peer::Tcp(..) => "TCP",
        }
    }

    async fn send(&mut self, m: &str) {
        match self {
            Peer::Udp(s, to) => {
                s.send_to(m.as_bytes(), *to).await.unwrap();
            }
            Peer::Tcp(s, _) => s.write_all(m.as_bytes()).await.unwrap(),
        }
    }

    /// The next message, within `WAIT`.
    async fn recv(&mut self) -> String {
        self.recv_within(WAIT)
            .await
            .expect("a SIP message from vakt")
    }

    async fn recv_within(&mut self, d: Duration) -> Option<String> {
        tokio::time::timeout(d, async {
            match self {
                Peer::Udp(s, _) => {
                    let mut buf = vec![0u8; 65536];
                    let (n, _) = s.recv_from(&mut buf).await.unwrap();
                    String::from_utf8(buf[..n].to_vec()).unwrap()
                }
                Peer::Tcp(s, buf) => loop {
                    if let wire::Scan::Message { len } = wire::scan(buf) {
                        let m: Vec<u8> = buf.drain(..len).collect();
                        return String::from_utf8(m).unwrap();
                    }
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "vakt closed the connection");
                    buf.extend_from_slice(&chunk[..n]);
                },
            }
        })
        .await
        .ok()
    }

    /// The next message that is not `100 Trying`.
    async fn recv_final_or_request(&mut self) -> String {
        loop {
            let m = self.recv().await;
            if status(&m) != Some(100) {
                return m;
            }
        }
    }
}

fn status(m: &str) -> Option<u16> {
    m.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn header<'a>(m: &'a str, name: &str) -> Option<&'a str> {
    m.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn to_tag(m: &str) -> Option<String> {
    let to = header(m, "To")?;
    Some(to.split(";tag=").nth(1)?.split(';').next()?.to_owned())
}

/// An INVITE (or another request) of the unit's.
#[allow(clippy::too_many_arguments)]
fn request(
    p: &Peer,
    method: &str,
    uri: &str,
    call_id: &str,
    cseq: u32,
    branch: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
    let local = p.local();
    let to = match to_tag {
        Some(t) => format!("<sip:arc@127.0.0.1>;tag={t}"),
        None => "<sip:arc@127.0.0.1>".into(),
    };
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{} {local};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{USER}@127.0.0.1>;tag=unit\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:{USER}@{local}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        p.transport(),
        body.len()
    )
}

/// The Authorization answering the challenge in `resp` for `method` `uri`.
fn authorize(resp: &str, method: &str, uri: &str) -> String {
    let ch = wire::parse_challenge(header(resp, "WWW-Authenticate").unwrap()).unwrap();
    format!(
        "Authorization: {}\r\n",
        wire::authorization(USER, PASSWORD, &ch, method, uri, "c0ffee", 1)
    )
}

/// A response of the test peer to `req` (its Via, From, To with `tag`, Call-ID, CSeq).
fn reply(req: &str, code: u16, tag: &str, extra: &str, body: &str) -> String {
    let m = wire::parse(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let extra: Vec<(&str, &str)> = extra.lines().filter_map(|l| l.split_once(": ")).collect();
    wire::encode_response(
        &m,
        code,
        "X",
        tag,
        &extra,
        Some("application/sdp"),
        body.as_bytes(),
        &mut out,
    );
    String::from_utf8(out).unwrap()
}

/// The unit calls: INVITE, 401, ACK, INVITE with Digest; returns the second INVITE.
async fn call_in(p: &mut Peer, uri: &str, call_id: &str, offer: &str) -> String {
    let inv = request(p, "INVITE", uri, call_id, 1, "i1", None, "", offer);
    p.send(&inv).await;
    let challenge = p.recv().await;
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    assert!(
        header(&challenge, "WWW-Authenticate")
            .unwrap()
            .starts_with("Digest ")
    );
    let ack = request(
        p,
        "ACK",
        uri,
        call_id,
        1,
        "i1",
        to_tag(&challenge).as_deref(),
        "",
        "",
    );
    let ack = ack.replace("Content-Length", "X-Ack: 1\r\nContent-Length");
    p.send(&ack).await;
    let auth = authorize(&challenge, "INVITE", uri);
    let inv = request(p, "INVITE", uri, call_id, 2, "i2", None, &auth, offer);
    p.send(&inv).await;
    inv
}

// ---------------------------------------------------------------------------------------
// Raw SIP
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_is_challenged_admitted_rung_answered_and_hung_up_by_vakt() {
    let mut rig = rig().await;
    let mut p = Peer::udp(rig.udp).await;
    let uri = format!("sip:arc@{}", rig.udp);
    let inv = call_in(&mut p, &uri, "c1", OFFER).await;
    let trying = p.recv().await;
    assert_eq!(status(&trying), Some(100), "{trying}");
    let ringing = p.recv().await;
    assert_eq!(status(&ringing), Some(180), "{ringing}");
    let tag = to_tag(&ringing).expect("180 has vakt's tag");

    let (call, handle) = rig.call().await;
    assert_eq!(call.caller.origin, Origin::Device { user: USER.into() });
    assert_eq!(call.caller.number.as_deref(), Some(USER));
    assert_eq!(call.offer, OFFER.as_bytes());
    assert_eq!(call.peer, p.local());

    // A retransmitted INVITE gets the last response again, not a new call.
    p.send(&inv).await;
    let again = p.recv().await;
    assert_eq!(again, ringing);

    handle.answer(ANSWER.as_bytes().to_vec()).unwrap();
    let ok = p.recv().await;
    assert_eq!(status(&ok), Some(200), "{ok}");
    assert_eq!(body(&ok), ANSWER);
    assert_eq!(to_tag(&ok).as_deref(), Some(tag.as_str()));
    // Not acknowledged: sent again (T1 = 500 ms).
    let resent = p
        .recv_within(Duration::from_secs(3))
        .await
        .expect("200 again");
    assert_eq!(resent, ok);
    let ack = request(&p, "ACK", &uri, "c1", 2, "a2", Some(&tag), "", "");
    p.send(&ack).await;
    assert_eq!(rig.event().await, (call.id, CallEvent::Confirmed));

    handle.hang_up().unwrap();
    let bye = p.recv_final_or_request().await;
    assert!(
        bye.starts_with(&format!("BYE sip:{USER}@{} SIP/2.0", p.local())),
        "{bye}"
    );
    assert_eq!(rig.event().await, (call.id, CallEvent::Ended(End::HungUp)));
    p.send(&reply(&bye, 200, "unit", "", "")).await;
    // Once the BYE is answered the dialog is gone, and so are its actions.
    let gone = Instant::now() + WAIT;
    while handle.hang_up() != Err(sip::ActionError::Ended) {
        assert!(Instant::now() < gone, "the dialog outlived its BYE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.quiet(Duration::from_millis(300)).await;
    // Only the ACK'd 200: no more retransmissions after the ACK.
    assert_eq!(p.recv_within(Duration::from_millis(1200)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_the_answer_over_tcp_is_an_abandoned_call() {
    let mut rig = rig().await;
    let mut p = Peer::tcp(rig.tcp).await;
    let uri = format!("sip:arc@{}", rig.tcp);
    let inv = call_in(&mut p, &uri, "c2", OFFER).await;
    let ringing = p.recv_final_or_request().await;
    assert_eq!(status(&ringing), Some(180), "{ringing}");
    let (call, _handle) = rig.call().await;
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 2 INVITE", "CSeq: 2 CANCEL");
    let cancel = format!(
        "{}\r\n\r\n",
        cancel.split("\r\n\r\n").next().unwrap().replace(
            &format!("Content-Length: {}", OFFER.len()),
            "Content-Length: 0"
        )
    );
    p.send(&cancel).await;
    let a = p.recv().await;
    let b = p.recv().await;
    let (ok, terminated) = if header(&a, "CSeq") == Some("2 CANCEL") {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(status(&ok), Some(200), "{ok}");
    assert_eq!(status(&terminated), Some(487), "{terminated}");
    assert_eq!(
        rig.event().await,
        (call.id, CallEvent::Ended(End::Cancelled))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_no_dialog_get_481_and_garbage_changes_nothing() {
    let mut rig = rig().await;
    let mut p = Peer::udp(rig.udp).await;
    let uri = format!("sip:arc@{}", rig.udp);
    for method in ["BYE", "INFO", "UPDATE", "CANCEL"] {
        let m = request(&p, method, &uri, "nobody", 5, method, Some("nope"), "", "");
        p.send(&m).await;
        let r = p.recv().await;
        assert_eq!(status(&r), Some(481), "{method}: {r}");
    }
    // A stranger: 403, nothing else.
    let stranger = request(&p, "INVITE", &uri, "s1", 1, "s1", None, "", OFFER).replace(
        &format!("<sip:{USER}@127.0.0.1>"),
        "<sip:stranger@127.0.0.1>",
    );
    p.send(&stranger).await;
    assert_eq!(status(&p.recv().await), Some(403));
    // BYE without a To tag: outside any dialog.
    p.send(&request(&p, "BYE", &uri, "nobody", 6, "b6", None, "", ""))
        .await;
    assert_eq!(status(&p.recv().await), Some(481));
    // An ACK for nothing is dropped.
    p.send(&request(
        &p,
        "ACK",
        &uri,
        "nobody",
        7,
        "a7",
        Some("x"),
        "",
        "",
    ))
    .await;
    assert_eq!(p.recv_within(Duration::from_millis(300)).await, None);
    // Bytes that are no SIP, and broken INVITEs: nothing, and the endpoint still answers.
    let broken = [
        "INVITE sip:arc@x SIP/2.0\r\n\r\n".to_owned(),
        "INVITE sip:arc@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: q\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "\u{0}\u{1}garbage\r\n\r\n".to_owned(),
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKzz\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: q\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".to_owned(),
    ];
    for b in &broken {
        p.send(b).await;
    }
    p.send(&request(&p, "OPTIONS", &uri, "o1", 1, "o1", None, "", ""))
        .await;
    let r = p.recv().await;
    assert_eq!(status(&r), Some(200), "{r}");
    assert!(header(&r, "Allow").unwrap().contains("INVITE"));
    rig.quiet(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_dialogs_an_invite_gets_503_and_a_call_out_is_refused() {
    let mut rig = rig_with(
        InviteOptions {
            max_dialogs: 1,
            ..InviteOptions::default()
        },
        200,
    )
    .await;
    let mut p = Peer::udp(rig.udp).await;
    let uri = format!("sip:arc@{}", rig.udp);
    call_in(&mut p, &uri, "c3", OFFER).await;
    assert_eq!(status(&p.recv_final_or_request().await), Some(180));
    let _first = rig.call().await;
    let mut q = Peer::udp(rig.udp).await;
    call_in(&mut q, &uri, "c4", OFFER).await;
    let busy = q.recv().await;
    assert_eq!(status(&busy), Some(503), "{busy}");
    assert!(header(&busy, "Retry-After").is_some());
    let out = rig
        .ep
        .dial(Dial {
            uri: "sip:x@127.0.0.1:9".into(),
            from: "sip:arc@127.0.0.1".into(),
            via: DialVia::Udp("127.0.0.1:9".parse().unwrap()),
            offer: ANSWER.as_bytes().to_vec(),
            credentials: None,
            headers: Vec::new(),
        })
        .await;
    assert!(matches!(out, Err(sip::DialError::Full)), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_call_names_its_caller_and_is_refused_busy() {
    let mut rig = rig().await;
    let mut p = Peer::udp(rig.udp).await;
    *rig.calls.trunk.lock().unwrap() = Some(p.local());
    *rig.calls.policy.lock().unwrap() = Policy::Reject(486);
    let uri = format!("sip:+46101234567@{}", rig.udp);
    let inv = request(
        &p,
        "INVITE",
        &uri,
        "t1",
        1,
        "t1",
        None,
        "P-Asserted-Identity: <tel:+4670111222>\r\n",
        OFFER,
    )
    .replace(
        &format!("<sip:{USER}@127.0.0.1>"),
        "<sip:anonymous@sbc.example>",
    );
    p.send(&inv).await;
    let r = p.recv_final_or_request().await;
    assert_eq!(status(&r), Some(486), "{r}");
    let (call, _) = rig.call().await;
    assert_eq!(call.caller.origin, Origin::Trunk { name: "sbc".into() });
    assert_eq!(call.caller.number.as_deref(), Some("+4670111222"));
    assert_eq!(call.dialled, uri);
    assert_eq!(
        rig.event().await,
        (call.id, CallEvent::Ended(End::Rejected(486)))
    );
    // The 486 is sent again until its ACK.
    assert_eq!(
        p.recv_within(Duration::from_secs(2))
            .await
            .as_deref()
            .and_then(status),
        Some(486)
    );
    p.send(&request(
        &p,
        "ACK",
        &uri,
        "t1",
        1,
        "t1",
        to_tag(&r).as_deref(),
        "",
        "",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_is_not_held_to_the_per_source_rate() {
    let rig = rig_with(InviteOptions::default(), 5).await;
    let mut trunk = Peer::udp(rig.udp).await;
    *rig.calls.trunk.lock().unwrap() = Some(trunk.local());
    let mut unit = Peer::udp(rig.udp).await;
    let uri = format!("sip:arc@{}", rig.udp);
    let code = |m: Option<String>| m.as_deref().and_then(status).unwrap_or(0);
    let (mut from_trunk, mut from_unit) = (Vec::new(), Vec::new());
    for i in 0..30 {
        let o = |p: &Peer| {
            request(
                p,
                "OPTIONS",
                &uri,
                &format!("o{i}"),
                1,
                &format!("o{i}"),
                None,
                "",
                "",
            )
        };
        trunk.send(&o(&trunk)).await;
        from_trunk.push(code(trunk.recv_within(WAIT).await));
        unit.send(&o(&unit)).await;
        from_unit.push(code(unit.recv_within(WAIT).await));
    }
    assert!(from_trunk.iter().all(|c| *c == 200), "{from_trunk:?}");
    assert!(
        from_unit.iter().filter(|c| **c == 503).count() >= 20,
        "{from_unit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invites_from_one_source_meets_the_rate() {
    let rig = rig_with(InviteOptions::default(), 5).await;
    let p = Peer::udp(rig.udp).await;
    let Peer::Udp(sock, to) = &p else {
        unreachable!()
    };
    let uri = format!("sip:arc@{}", rig.udp);
    for i in 0..50 {
        let m = request(
            &p,
            "INVITE",
            &uri,
            &format!("f{i}"),
            1,
            &format!("f{i}"),
            None,
            "",
            OFFER,
        );
        sock.send_to(m.as_bytes(), to).await.unwrap();
    }
    let mut codes = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
    {
        codes.push(status(&String::from_utf8_lossy(&buf[..n])).unwrap());
    }
    let limited = codes.iter().filter(|c| **c == 503).count();
    let challenged = codes.iter().filter(|c| **c == 401).count();
    assert_eq!(codes.len(), 50, "{codes:?}");
    assert!(challenged <= 6 && limited >= 44, "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_out_over_udp_rings_is_answered_and_hung_up() {
    let mut rig = rig().await;
    let mut callee = Peer::udp(rig.udp).await;
    let at = callee.local();
    let handle = rig
        .ep
        .dial(Dial {
            uri: format!("sip:{USER}@{at}"),
            from: "sip:arc@127.0.0.1".into(),
            via: DialVia::Udp(at),
            offer: ANSWER.as_bytes().to_vec(),
            credentials: Some(("vakt".into(), SipPassword::new("trunk-secret"))),
            headers: Vec::new(),
        })
        .await
        .unwrap();
    let inv = callee.recv().await;
    assert!(
        inv.starts_with(&format!("INVITE sip:{USER}@{at} SIP/2.0")),
        "{inv}"
    );
    assert_eq!(body(&inv), ANSWER);
    assert!(
        header(&inv, "Via").unwrap().contains(&rig.udp.to_string()),
        "{inv}"
    );
    // A challenge: answered with Digest.
    callee
        .send(&reply(
            &inv,
            401,
            "cal1",
            "WWW-Authenticate: Digest realm=\"unit\", nonce=\"n1\"",
            "",
        ))
        .await;
    let ack = callee.recv().await;
    assert!(ack.starts_with("ACK "), "{ack}");
    let inv2 = callee.recv().await;
    let m = wire::parse(inv2.as_bytes()).unwrap();
    let creds = wire::parse_authorization(m.header("Authorization").unwrap()).unwrap();
    assert!(wire::verify(
        &creds,
        "INVITE",
        &wire::ha1("vakt", "unit", "trunk-secret")
    ));
    callee.send(&reply(&inv2, 180, "cal1", "", "")).await;
    assert_eq!(
        rig.event().await,
        (
            handle.id(),
            CallEvent::Progress {
                code: 180,
                sdp: Vec::new()
            }
        )
    );
    callee
        .send(&reply(
            &inv2,
            200,
            "cal1",
            &format!("Contact: <sip:{USER}@{at}>"),
            OFFER,
        ))
        .await;
    assert_eq!(
        rig.event().await,
        (
            handle.id(),
            CallEvent::Answered {
                sdp: OFFER.as_bytes().to_vec()
            }
        )
    );
    let ack = callee.recv().await;
    assert!(
        ack.starts_with(&format!("ACK sip:{USER}@{at} SIP/2.0")),
        "{ack}"
    );
    // The callee hangs up.
    let bye = format!(
        "BYE sip:arc@{} SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bKbye;rport\r\nFrom: <sip:{USER}@{at}>;tag=cal1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        rig.udp,
        header(&inv2, "From").unwrap(),
        header(&inv2, "Call-ID").unwrap()
    );
    callee.send(&bye).await;
    let ok = callee.recv().await;
    assert_eq!(status(&ok), Some(200), "{ok}");
    assert_eq!(
        rig.event().await,
        (handle.id(), CallEvent::Ended(End::RemoteHangUp))
    );
    // Its retransmission gets the same 200 again (the endpoint's transaction cache).
    callee.send(&bye).await;
    assert_eq!(callee.recv().await, ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_back_goes_over_the_units_own_tcp_connection() {
    let mut rig = rig().await;
    let mut unit = Peer::tcp(rig.tcp).await;
    let uri = format!("sip:arc@{}", rig.tcp);
    // Unknown before it has sent anything.
    let none = rig
        .ep
        .dial(Dial {
            uri: format!("sip:{USER}@127.0.0.1"),
            from: "sip:arc@127.0.0.1".into(),
            via: DialVia::Device(USER.into()),
            offer: ANSWER.as_bytes().to_vec(),
            credentials: None,
            headers: Vec::new(),
        })
        .await;
    assert!(matches!(none, Err(sip::DialError::NoFlow)), "{none:?}");
    // A SCAIP alarm (MESSAGE with Digest): 200 and the <mrs>, as without calls.
    let xml = "<mrq><ref>77</ref><cid>678</cid><dty>3</dty></mrq>";
    let msg = request(&unit, "MESSAGE", &uri, "m1", 1, "m1", None, "", "").replace(
        "Content-Length: 0",
        &format!(
            "Content-Type: application/scaip+xml\r\nContent-Length: {}",
            xml.len()
        ),
    ) + xml;
    unit.send(&msg).await;
    let challenge = unit.recv().await;
    assert_eq!(status(&challenge), Some(401));
    let auth = authorize(&challenge, "MESSAGE", &uri);
    let msg = msg
        .replace("CSeq: 1 MESSAGE", "CSeq: 2 MESSAGE")
        .replace("branch=z9hG4bKm1", "branch=z9hG4bKm2")
        .replace(
            "Content-Type: application/scaip",
            &format!("{auth}Content-Type: application/scaip"),
        );
    unit.send(&msg).await;
    assert_eq!(status(&unit.recv().await), Some(200));
    let mrs = unit.recv().await;
    assert!(
        mrs.starts_with("MESSAGE ") && body(&mrs).contains("<ref>77</ref>"),
        "{mrs}"
    );
    unit.send(&reply(&mrs, 200, "u", "", "")).await;

    // Call it back: the INVITE arrives on the same connection.
    let handle = rig
        .ep
        .dial(Dial {
            uri: format!("sip:{USER}@127.0.0.1"),
            from: "sip:arc@127.0.0.1".into(),
            via: DialVia::Device(USER.into()),
            offer: ANSWER.as_bytes().to_vec(),
            credentials: None,
            headers: Vec::new(),
        })
        .await
        .unwrap();
    let inv = unit.recv().await;
    assert!(inv.starts_with("INVITE "), "{inv}");
    assert!(
        header(&inv, "Via").unwrap().starts_with("SIP/2.0/TCP"),
        "{inv}"
    );
    unit.send(&reply(&inv, 486, "u2", "", "")).await;
    let ack = unit.recv().await;
    assert!(ack.starts_with("ACK "), "{ack}");
    assert_eq!(
        rig.event().await,
        (handle.id(), CallEvent::Ended(End::Failed(486)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_from_the_unit_is_answered_by_the_handler() {
    let mut rig = rig().await;
    *rig.calls.policy.lock().unwrap() = Policy::Answer;
    let mut p = Peer::udp(rig.udp).await;
    let uri = format!("sip:arc@{}", rig.udp);
    call_in(&mut p, &uri, "h1", OFFER).await;
    let ok = p.recv_final_or_request().await;
    assert_eq!(status(&ok), Some(200), "{ok}");
    let tag = to_tag(&ok).unwrap();
    p.send(&request(&p, "ACK", &uri, "h1", 2, "a2", Some(&tag), "", ""))
        .await;
    let (call, _handle) = rig.call().await;
    assert_eq!(rig.event().await, (call.id, CallEvent::Confirmed));
    let hold = OFFER.replace("t=0 0", "t=0 0\r\na=sendonly");
    p.send(&request(
        &p,
        "INVITE",
        &uri,
        "h1",
        3,
        "r3",
        Some(&tag),
        "",
        &hold,
    ))
    .await;
    let ok = p.recv_final_or_request().await;
    assert_eq!(status(&ok), Some(200), "{ok}");
    assert!(body(&ok).contains("a=recvonly"), "{ok}");
    p.send(&request(&p, "ACK", &uri, "h1", 3, "a3", Some(&tag), "", ""))
        .await;
    // A lower CSeq now: 500.
    p.send(&request(
        &p,
        "INFO",
        &uri,
        "h1",
        2,
        "i2",
        Some(&tag),
        "",
        "",
    ))
    .await;
    assert_eq!(status(&p.recv().await), Some(500));
    p.send(&request(&p, "BYE", &uri, "h1", 4, "b4", Some(&tag), "", ""))
        .await;
    assert_eq!(status(&p.recv().await), Some(200));
    assert_eq!(
        rig.event().await,
        (call.id, CallEvent::Ended(End::RemoteHangUp))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hangs_up_the_calls() {
    let mut rig = rig().await;
    *rig.calls.policy.lock().unwrap() = Policy::Answer;
    let mut p = Peer::udp(rig.udp).await;
    let uri = format!("sip:arc@{}", rig.udp);
    call_in(&mut p, &uri, "s1", OFFER).await;
    let ok = p.recv_final_or_request().await;
    let tag = to_tag(&ok).unwrap();
    p.send(&request(&p, "ACK", &uri, "s1", 2, "a2", Some(&tag), "", ""))
        .await;
    let (call, _) = rig.call().await;
    assert_eq!(rig.event().await, (call.id, CallEvent::Confirmed));
    rig.stop.cancel();
    let bye = p.recv_final_or_request().await;
    assert!(bye.starts_with("BYE "), "{bye}");
    assert_eq!(
        rig.event().await,
        (call.id, CallEvent::Ended(End::Shutdown))
    );
}

// ---------------------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------------------

/// `sipp` on PATH, or `None` (the caller skips) unless `VAKT_REQUIRE_SIPP` is set.
/// SIPp as the unit calling vakt's UDP listener.
fn unit_args(rig: &Rig) -> Vec<String> {
    ["-s", "arc", "-au", USER, "-ap", PASSWORD, "-p", "0"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([rig.udp.to_string()])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_unit_calls_with_digest_and_hangs_up() {
    let Some(sipp) = sipp_binary() else { return };
    let mut rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    let unit = Sipp::start(&sipp, dir.path(), "unit_call", &unit_args(&rig));
    let (call, handle) = rig.call().await;
    assert_eq!(call.caller.origin, Origin::Device { user: USER.into() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.answer(ANSWER.as_bytes().to_vec()).unwrap();
    assert_eq!(rig.event().await, (call.id, CallEvent::Confirmed));
    assert_eq!(
        rig.event().await,
        (call.id, CallEvent::Ended(End::RemoteHangUp))
    );
    unit.succeeds().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_unit_call_is_hung_up_by_vakt() {
    let Some(sipp) = sipp_binary() else { return };
    let mut rig = rig().await;
    *rig.calls.policy.lock().unwrap() = Policy::Answer;
    let dir = tempfile::tempdir().unwrap();
    let unit = Sipp::start(&sipp, dir.path(), "unit_call_vakt_bye", &unit_args(&rig));
    let (call, handle) = rig.call().await;
    assert_eq!(rig.event().await, (call.id, CallEvent::Confirmed));
    handle.hang_up().unwrap();
    assert_eq!(rig.event().await, (call.id, CallEvent::Ended(End::HungUp)));
    unit.succeeds().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_unit_offering_only_g729_gets_488() {
    let Some(sipp) = sipp_binary() else { return };
    let mut rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    let unit = Sipp::start(&sipp, dir.path(), "unit_call_g729", &unit_args(&rig));
    let (call, _) = rig.call().await;
    assert_eq!(
        rig.event().await,
        (call.id, CallEvent::Ended(End::Rejected(488)))
    );
    unit.succeeds().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_unit_cancels_before_the_answer() {
    let Some(sipp) = sipp_binary() else { return };
    let mut rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    let unit = Sipp::start(&sipp, dir.path(), "unit_cancel", &unit_args(&rig));
    let (call, _handle) = rig.call().await;
    assert_eq!(
        rig.event().await,
        (call.id, CallEvent::Ended(End::Cancelled))
    );
    unit.succeeds().await;
}

/// SIPp as the callee of vakt's call out, listening on a port of its own.
async fn sipp_callee(scenario: &str, credentials: Option<(String, SipPassword)>) {
    let Some(sipp) = sipp_binary() else { return };
    let mut rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    // A free UDP port for SIPp (taken back from the kernel just before SIPp binds it).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let callee = Sipp::start(
        &sipp,
        dir.path(),
        scenario,
        &["-p".to_owned(), port.to_string()],
    );
    let at: SocketAddr = ([127, 0, 0, 1], port).into();
    // SIPp listens once it has started; the INVITE is retransmitted anyway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let handle = rig
        .ep
        .dial(Dial {
            uri: format!("sip:{USER}@{at}"),
            from: "sip:arc@127.0.0.1".into(),
            via: DialVia::Udp(at),
            offer: ANSWER.as_bytes().to_vec(),
            credentials,
            headers: Vec::new(),
        })
        .await
        .unwrap();
    let answered = loop {
        match rig.event().await {
            (id, CallEvent::Progress { .. }) if id == handle.id() => {}
            (id, e) => {
                assert_eq!(id, handle.id());
                break e;
            }
        }
    };
    assert!(
        matches!(answered, CallEvent::Answered { ref sdp } if !sdp.is_empty()),
        "{answered:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.hang_up().unwrap();
    assert_eq!(
        rig.event().await,
        (handle.id(), CallEvent::Ended(End::HungUp))
    );
    callee.succeeds().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_callee_answers_vakts_call_and_sees_its_bye() {
    sipp_callee("callee", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_callee_challenges_vakts_call_with_digest() {
    sipp_callee(
        "callee_digest",
        Some(("vakt".to_owned(), SipPassword::new("trunk-secret"))),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Through the whole server: the switchboard
// ---------------------------------------------------------------------------------------

/// The real server on `dir` with unit 678 (Anna's, SIP user [`USER`]) and the test
/// administrator.
async fn voice_server(dir: &std::path::Path) -> vakt::server::Running {
    let csv = format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,{USER},{PASSWORD}\n",
        vakt::registers::devices::CSV_HEADER
    );
    vakt::cli::import_devices(common::store_at(dir), csv.as_bytes()).unwrap();
    common::add_user(
        dir,
        common::ADMIN.0,
        vakt::model::Role::Admin,
        common::ADMIN.1,
    );
    common::start_with(common::test_config(dir)).await
}

/// A unit that calls and gives up before anyone answers: the call is journaled, opens the
/// person's Call as a voice call, rings there, and its line on the timeline says it was
/// abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_units_call_opens_its_persons_call_and_an_abandoned_call_stays_on_it() {
    let Some(sipp) = sipp_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = voice_server(dir.path()).await;
    let http = srv.http.unwrap();
    let mut op = common::Client::login(http, common::ADMIN.0, common::ADMIN.1).await;
    let traces = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["-s", "arc", "-au", USER, "-ap", PASSWORD, "-p", "0"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([srv.scaip_udp.unwrap().to_string()])
        .collect();
    let unit = Sipp::start(&sipp, traces.path(), "unit_cancel", &args);
    unit.succeeds().await;

    // Anna's Call, opened by the call alone, with the abandoned call on its timeline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (call, line) = loop {
        let open = op.get("/api/calls?state=open").await;
        assert_eq!(open.status, 200, "{}", open.body);
        let calls: Vec<serde_json::Value> = serde_json::from_value(open.json()).unwrap();
        let found = calls.iter().find(|c| c["subscriber"] == "anna").cloned();
        if let Some(c) = found {
            let id = c["id"].as_u64().unwrap();
            let full = op.get(&format!("/api/calls/{id}")).await;
            assert_eq!(full.status, 200, "{}", full.body);
            let full = full.json();
            let line = full["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["type"] == "conversation")
                .cloned();
            if let Some(line) = line {
                break (full, line);
            }
        }
        assert!(Instant::now() < deadline, "no call with its conversation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(call["kind"], "Voice call", "{call}");
    assert_eq!(call["priority"], 1, "{call}");
    assert_eq!(call["state"], "queued", "{call}");
    assert_eq!(line["direction"], "inbound", "{line}");
    assert_eq!(line["party"], "unit 678", "{line}");
    assert_eq!(line["ended_by"], "caller", "{line}");
    assert!(line.get("talk_secs").is_none(), "{line}");
    // The Signal that opened it is the voice call's.
    let signal = &call["timeline"][0];
    assert_eq!(signal["code"], "VAKT voice_call", "{signal}");
    // The figures count it abandoned, and nothing is left ringing.
    assert!(common::metric(http, "vakt_voice_calls_abandoned_total").await >= 1.0);
    assert!(
        common::metric(
            http,
            "vakt_voice_calls_ended_total{direction=\"inbound\",by=\"caller\"}"
        )
        .await
            >= 1.0
    );
    srv.stop().await.unwrap();
}

/// A call ringing when vakt stops: after the restart its Call is there with the call's line,
/// ended by the stop, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ringing_at_a_stop_is_ended_on_its_call_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let srv = voice_server(dir.path()).await;
    let udp = srv.scaip_udp.unwrap();
    let mut p = Peer::udp(udp).await;
    let uri = format!("sip:arc@{udp}");
    call_in(&mut p, &uri, "ring-at-stop", OFFER).await;
    let ringing = p.recv_final_or_request().await;
    assert_eq!(status(&ringing), Some(180), "{ringing}");
    // Ringing on Anna's Call before the stop.
    let mut op = common::Client::login(srv.http.unwrap(), common::ADMIN.0, common::ADMIN.1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let open = op.get("/api/calls?state=open").await;
        let calls: Vec<serde_json::Value> = serde_json::from_value(open.json()).unwrap();
        if let Some(c) = calls.iter().find(|c| c["subscriber"] == "anna") {
            break c["id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no call");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    srv.stop().await.unwrap();

    let srv = common::start_with(common::test_config(dir.path())).await;
    let mut op = common::Client::login(srv.http.unwrap(), common::ADMIN.0, common::ADMIN.1).await;
    let call = op.get(&format!("/api/calls/{id}")).await;
    assert_eq!(call.status, 200, "{}", call.body);
    let call = call.json();
    let lines: Vec<&serde_json::Value> = call["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "conversation")
        .collect();
    assert_eq!(lines.len(), 1, "{call}");
    assert_eq!(lines[0]["ended_by"], "restart", "{call}");
    assert!(lines[0].get("talk_secs").is_none(), "{call}");
    assert_eq!(call["state"], "queued", "{call}");
    srv.stop().await.unwrap();
}

/// The console sees a call ringing on its Call, and an operator may refuse it: the unit
/// hears 480, the Call keeps the call's line (refused by the operator) and the audit log
/// the operator's act.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sees_a_ringing_call_and_an_operator_may_refuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let srv = voice_server(dir.path()).await;
    let udp = srv.scaip_udp.unwrap();
    let mut p = Peer::udp(udp).await;
    let uri = format!("sip:arc@{udp}");
    call_in(&mut p, &uri, "refused", OFFER).await;
    let ringing = p.recv_final_or_request().await;
    assert_eq!(status(&ringing), Some(180), "{ringing}");
    let mut op = common::Client::login(srv.http.unwrap(), common::ADMIN.0, common::ADMIN.1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let conv = loop {
        let v = op.get("/api/voice").await;
        assert_eq!(v.status, 200, "{}", v.body);
        let v = v.json();
        if let Some(c) = v.as_array().unwrap().iter().find(|c| !c["call"].is_null()) {
            break c.clone();
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(conv["state"], "ringing", "{conv}");
    assert_eq!(conv["direction"], "inbound", "{conv}");
    assert_eq!(conv["subscriber"], "anna", "{conv}");
    let (id, call) = (conv["id"].as_u64().unwrap(), conv["call"].as_u64().unwrap());

    let r = op
        .send("POST", &format!("/api/voice/{id}/hangup"), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let refused = p.recv_final_or_request().await;
    assert_eq!(status(&refused), Some(480), "{refused}");
    // No longer going on; a second hang-up finds nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let c = op.get(&format!("/api/calls/{call}")).await.json();
        if let Some(l) = c["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "conversation")
        {
            break l.clone();
        }
        assert!(Instant::now() < deadline, "{c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["ended_by"], "operator", "{line}");
    assert_eq!(line["id"].as_u64(), Some(id), "{line}");
    let again = op
        .send("POST", &format!("/api/voice/{id}/hangup"), None)
        .await;
    assert_eq!(again.status, 404, "{}", again.body);
    assert!(
        op.get("/api/voice")
            .await
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
    let audit = op.get("/api/audit").await.json().to_string();
    assert!(audit.contains("call.voice_hangup"), "{audit}");
    srv.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Trunks through the whole server
// ---------------------------------------------------------------------------------------

/// The trunk's address in these tests (another loopback address than the units').
const TRUNK_IP: &str = "127.0.0.2";
const TRUNK_USER: &str = "sbc-trunk";
const TRUNK_PASSWORD: &str = "trunk-secret-41";

/// The server of [`voice_server`] with a trunk at [`TRUNK_IP`] (with Digest when `digest`),
/// and Anna in the subscriber register with `phone`.
async fn trunk_server(dir: &std::path::Path, digest: bool, phone: &str) -> vakt::server::Running {
    let csv = format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,{USER},{PASSWORD}\n",
        vakt::registers::devices::CSV_HEADER
    );
    vakt::cli::import_devices(common::store_at(dir), csv.as_bytes()).unwrap();
    let subs = format!(
        "{}\nanna,Anna Berg,19400312-1234,Storgatan 1,903 26,Umeå,Norr,{phone},Hemtjänst Norr,1,,,,,,,,,,,,,,,,sv,\n",
        vakt::registers::subscribers::CSV_HEADER
    );
    vakt::cli::import_subscribers(
        common::store_at(dir),
        subs.as_bytes(),
        jiff::Timestamp::now(),
    )
    .unwrap();
    common::add_user(
        dir,
        common::ADMIN.0,
        vakt::model::Role::Admin,
        common::ADMIN.1,
    );
    let mut cfg = common::test_config(dir);
    cfg.voice.trunks = vec![vakt::config::TrunkConfig {
        name: "sbc".into(),
        sources: vec![TRUNK_IP.parse().unwrap()],
        sip_user: digest.then(|| TRUNK_USER.to_owned()),
        sip_password: digest.then(|| SipPassword::new(TRUNK_PASSWORD)),
        outbound: None,
        transport: vakt::voice::dial::TrunkTransport::Udp,
        from_number: String::new(),
        outbound_user: None,
        outbound_password: None,
    }];
    common::start_with(cfg).await
}

/// A UDP peer at `ip` (a loopback address) towards `to`.
async fn peer_at(ip: &str, to: SocketAddr) -> Peer {
    Peer::Udp(UdpSocket::bind((ip, 0)).await.unwrap(), to)
}

/// A trunk's INVITE for `number` at `p`: From `from`, with `extra` headers.
fn trunk_invite(p: &Peer, uri: &str, call_id: &str, cseq: u32, from: &str, extra: &str) -> String {
    request(
        p,
        "INVITE",
        uri,
        call_id,
        cseq,
        &format!("{call_id}{cseq}"),
        None,
        extra,
        OFFER,
    )
    .replace(&format!("<sip:{USER}@127.0.0.1>"), from)
}

/// The ACK of a final response `r` to the INVITE `call_id`/`cseq`.
async fn ack(p: &mut Peer, uri: &str, call_id: &str, cseq: u32, r: &str) {
    let a = request(
        p,
        "ACK",
        uri,
        call_id,
        cseq,
        &format!("{call_id}{cseq}"),
        to_tag(r).as_deref(),
        "",
        "",
    );
    p.send(&a).await;
}

/// The first live conversation on `op`'s console that satisfies `f`.
async fn live_conversation(
    op: &mut common::Client,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = op.get("/api/voice").await;
        assert_eq!(v.status, 200, "{}", v.body);
        let v = v.json();
        if let Some(c) = v.as_array().unwrap().iter().find(|c| f(c)) {
            return c.clone();
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A trunk with credentials is challenged and must answer with them; its caller is named by
/// the asserted number (a `tel:` URI with separators, read as `+46...`) and matched to the
/// subscriber with that phone. Wrong credentials get 403 after the challenge, and the
/// trunk's credentials from another address get 403 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_with_digest_is_challenged_and_its_caller_named_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let srv = trunk_server(dir.path(), true, "070-111 22 33").await;
    let udp = srv.scaip_udp.unwrap();
    let uri = format!("sip:+46101234567@{udp}");
    let from = "<sip:anonymous@sbc.example>";
    let pai = "P-Asserted-Identity: <tel:+46-70-111-22-33>\r\n";

    // Challenged, then admitted with the trunk's credentials.
    let mut trunk = peer_at(TRUNK_IP, udp).await;
    trunk
        .send(&trunk_invite(&trunk, &uri, "tr1", 1, from, pai))
        .await;
    let challenge = trunk.recv_final_or_request().await;
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    ack(&mut trunk, &uri, "tr1", 1, &challenge).await;
    let ch = wire::parse_challenge(header(&challenge, "WWW-Authenticate").unwrap()).unwrap();
    let auth = format!(
        "{pai}Authorization: {}\r\n",
        wire::authorization(TRUNK_USER, TRUNK_PASSWORD, &ch, "INVITE", &uri, "c0ffee", 1)
    );
    trunk
        .send(&trunk_invite(&trunk, &uri, "tr1", 2, from, &auth))
        .await;
    let ringing = trunk.recv_final_or_request().await;
    assert_eq!(status(&ringing), Some(180), "{ringing}");
    let mut op = common::Client::login(srv.http.unwrap(), common::ADMIN.0, common::ADMIN.1).await;
    let conv = live_conversation(&mut op, |c| c["subscriber"] == "anna").await;
    assert_eq!(conv["party"], "Anna Berg (+46701112233)", "{conv}");

    // The same trunk with a wrong password: 403 after the challenge, nothing rings.
    let mut wrong = peer_at(TRUNK_IP, udp).await;
    wrong
        .send(&trunk_invite(&wrong, &uri, "tr2", 1, from, pai))
        .await;
    let challenge = wrong.recv_final_or_request().await;
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    ack(&mut wrong, &uri, "tr2", 1, &challenge).await;
    let ch = wire::parse_challenge(header(&challenge, "WWW-Authenticate").unwrap()).unwrap();
    let bad = format!(
        "Authorization: {}\r\n",
        wire::authorization(
            TRUNK_USER,
            "not-the-password",
            &ch,
            "INVITE",
            &uri,
            "c0ffee",
            1
        )
    );
    wrong
        .send(&trunk_invite(&wrong, &uri, "tr2", 2, from, &bad))
        .await;
    let refused = wrong.recv_final_or_request().await;
    assert_eq!(status(&refused), Some(403), "{refused}");
    ack(&mut wrong, &uri, "tr2", 2, &refused).await;

    // The right credentials from an address that is not the trunk's: 403.
    let mut elsewhere = peer_at("127.0.0.3", udp).await;
    elsewhere
        .send(&trunk_invite(&elsewhere, &uri, "tr3", 1, from, pai))
        .await;
    let challenge = elsewhere.recv_final_or_request().await;
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    ack(&mut elsewhere, &uri, "tr3", 1, &challenge).await;
    let ch = wire::parse_challenge(header(&challenge, "WWW-Authenticate").unwrap()).unwrap();
    let auth = format!(
        "Authorization: {}\r\n",
        wire::authorization(TRUNK_USER, TRUNK_PASSWORD, &ch, "INVITE", &uri, "c0ffee", 1)
    );
    elsewhere
        .send(&trunk_invite(&elsewhere, &uri, "tr3", 2, from, &auth))
        .await;
    let refused = elsewhere.recv_final_or_request().await;
    assert_eq!(status(&refused), Some(403), "{refused}");
    ack(&mut elsewhere, &uri, "tr3", 2, &refused).await;

    // Only the admitted call rings.
    let live = op.get("/api/voice").await.json();
    assert_eq!(live.as_array().unwrap().len(), 1, "{live}");
    // The password is nowhere in what vakt wrote.
    srv.stop().await.unwrap();
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes
                .windows(TRUNK_PASSWORD.len())
                .any(|w| w == TRUNK_PASSWORD.as_bytes()),
            "the trunk's password is in {}",
            entry.display()
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A unit's call asserting its number teaches the registry the unit's number (the subscriber
/// keeps the phone someone entered); a trunk call from that number, which is no subscriber's
/// phone, is then the unit's, on its person's Call. Both learnings are vakt's in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_units_number_is_learned_and_names_its_trunk_calls() {
    let dir = tempfile::tempdir().unwrap();
    let srv = trunk_server(dir.path(), false, "08-123 456 78").await;
    let udp = srv.scaip_udp.unwrap();
    let mut op = common::Client::login(srv.http.unwrap(), common::ADMIN.0, common::ADMIN.1).await;

    // The unit calls (Digest) asserting its GSM number, then gives up.
    let mut unit = Peer::udp(udp).await;
    let uri = format!("sip:arc@{udp}");
    let inv = request(&unit, "INVITE", &uri, "u1", 1, "u1", None, "", OFFER);
    unit.send(&inv).await;
    let challenge = unit.recv().await;
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    ack(&mut unit, &uri, "u1", 1, &challenge).await;
    let auth = format!(
        "P-Asserted-Identity: <tel:+46-70-555-66-77>\r\n{}",
        authorize(&challenge, "INVITE", &uri)
    );
    unit.send(&request(
        &unit, "INVITE", &uri, "u1", 2, "u2", None, &auth, OFFER,
    ))
    .await;
    let ringing = unit.recv_final_or_request().await;
    assert_eq!(status(&ringing), Some(180), "{ringing}");
    let first = live_conversation(&mut op, |c| c["party"] == "unit 678").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let audit = loop {
        let a = op.get("/api/audit").await.json();
        if a.to_string().contains("device.phone_learned") {
            break a;
        }
        assert!(Instant::now() < deadline, "{a}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let learned = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "device.phone_learned")
        .unwrap();
    assert_eq!(learned["user"], "vakt", "{learned}");
    assert_eq!(learned["subscriber"], "anna", "{learned}");
    assert!(
        learned["detail"].as_str().unwrap().contains("+46705556677"),
        "{learned}"
    );
    assert!(
        !audit.to_string().contains("subscriber.phone_learned"),
        "{audit}"
    );
    let hung = op
        .send("POST", &format!("/api/voice/{}/hangup", first["id"]), None)
        .await;
    assert_eq!(hung.status, 204, "{}", hung.body);
    let refused = unit.recv_final_or_request().await;
    assert_eq!(status(&refused), Some(480), "{refused}");
    ack(&mut unit, &uri, "u1", 2, &refused).await;

    // The subscriber kept the phone someone entered.
    let anna = op.get("/api/subscribers/anna").await;
    assert_eq!(anna.status, 200, "{}", anna.body);
    assert_eq!(anna.json()["phone"], "08-123 456 78", "{}", anna.body);

    // The trunk brings a call from the unit's number (in a sip: URI): the unit's.
    let mut trunk = peer_at(TRUNK_IP, udp).await;
    let turi = format!("sip:+46101234567@{udp}");
    trunk
        .send(&trunk_invite(
            &trunk,
            &turi,
            "t1",
            1,
            "<sip:+46705556677@sbc.example;user=phone>",
            "",
        ))
        .await;
    let ringing = trunk.recv_final_or_request().await;
    assert_eq!(status(&ringing), Some(180), "{ringing}");
    let conv = live_conversation(&mut op, |c| c["party"] == "unit 678 (+46705556677)").await;
    assert_eq!(conv["subscriber"], "anna", "{conv}");
    srv.stop().await.unwrap();
}

/// A SCAIP unit's message naming a GSM voice path (`crd`) teaches the registry the unit's
/// number and, where the person's phone is empty, the subscriber register too; both are
/// vakt's changes in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaip_units_voice_path_teaches_the_registers_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let srv = trunk_server(dir.path(), false, "").await;
    let udp = srv.scaip_udp.unwrap();
    let mut op = common::Client::login(srv.http.unwrap(), common::ADMIN.0, common::ADMIN.1).await;
    let mut live = common::Live::connect(&op).await;
    let mut unit = Peer::udp(udp).await;
    let uri = format!("sip:arc@{udp}");
    let body = "<mrq><ref>C1</ref><cid>678</cid><dty>1</dty><crd>sip:</crd><crd>gsm:+46-70-555-66-77</crd></mrq>";
    let message = |p: &Peer, cseq: u32, auth: &str| {
        request(
            p,
            "MESSAGE",
            &uri,
            "m1",
            cseq,
            &format!("m{cseq}"),
            None,
            auth,
            body,
        )
        .replace("application/sdp", "application/scaip+xml")
    };
    unit.send(&message(&unit, 1, "")).await;
    let challenge = unit.recv().await;
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    let auth = authorize(&challenge, "MESSAGE", &uri);
    unit.send(&message(&unit, 2, &auth)).await;
    let ok = unit.recv().await;
    assert_eq!(status(&ok), Some(200), "{ok}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let audit = loop {
        let a = op.get("/api/audit").await.json();
        let s = a.to_string();
        if s.contains("device.phone_learned") && s.contains("subscriber.phone_learned") {
            break a;
        }
        assert!(Instant::now() < deadline, "{a}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for e in audit.as_array().unwrap() {
        if e["action"].as_str().unwrap().ends_with("phone_learned") {
            assert_eq!(e["user"], "vakt", "{e}");
            assert!(
                e["detail"].as_str().unwrap().contains("+46705556677"),
                "{e}"
            );
        }
    }
    let anna = op.get("/api/subscribers/anna").await;
    assert_eq!(anna.json()["phone"], "+46705556677", "{}", anna.body);
    // The consoles showing her card are told to load it again.
    assert_eq!(
        live.next_of("subscriber").await,
        serde_json::json!({"type": "subscriber", "id": "anna"})
    );
    srv.stop().await.unwrap();
}
