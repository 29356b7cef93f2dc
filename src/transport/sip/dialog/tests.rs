//! The dialog state machine driven by hand: messages in, time passed in, what it sends and
//! tells checked.

use super::*;
use vakt_proto::sip::StartLine;

const PEER: &str = "192.0.2.7:5062";
const OFFER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0\r\n";
const CONTACT: &str = "Contact: <sip:luc678@192.0.2.7:5062>\r\n";
const ANSWER: &[u8] = b"v=0\r\no=vakt 9 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8\r\n";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn local(reliable: bool) -> Local {
    let t = if reliable { "TCP" } else { "UDP" };
    Local {
        via_transport: t,
        via_host: "127.0.0.1:5060".into(),
        contact: format!("<sip:vakt@127.0.0.1:5060;transport={}>", t.to_lowercase()),
        reliable,
    }
}

fn opts() -> InviteOptions {
    InviteOptions::default()
}

/// An INVITE from the unit with `extra` header lines and `body`.
fn invite(extra: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "INVITE sip:arc@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKinv1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:luc678@vakt>;tag=unit1\r\n\
To: <sip:arc@vakt>\r\n\
Call-ID: call-1@unit\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:luc678@192.0.2.7:5062>\r\n\
Record-Route: <sip:proxy.example;lr>\r\n\
{extra}Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

/// A request of the unit's in the dialog of `d`.
fn in_dialog(d: &Dialog, method: &str, cseq: u32, extra: &str, body: &[u8]) -> Vec<u8> {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    let mut m = format!(
        "{method} sip:vakt@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK{method}{cseq};rport\r\n\
From: <sip:luc678@vakt>;tag=unit1\r\n\
To: <sip:arc@vakt>;tag={}\r\n\
Call-ID: call-1@unit\r\n\
CSeq: {cseq} {method}\r\n\
{extra}{ct}Content-Length: {}\r\n\r\n",
        d.local_tag(),
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

/// Hands `raw` to the dialog as a request from the peer.
fn req(d: &mut Dialog, raw: &[u8], now: Instant) -> Vec<Out> {
    let m = sip::parse(raw).unwrap();
    d.on_request(&m, raw, peer(), now)
}

/// A request of the unit's in the dialog, handed in.
fn peer_req(
    d: &mut Dialog,
    method: &str,
    cseq: u32,
    extra: &str,
    body: &[u8],
    now: Instant,
) -> Vec<Out> {
    let raw = in_dialog(d, method, cseq, extra, body);
    req(d, &raw, now)
}

fn resp(d: &mut Dialog, raw: &[u8], now: Instant) -> Vec<Out> {
    let m = sip::parse(raw).unwrap();
    d.on_response(&m, now)
}

/// The bytes sent or replied.
fn wire(outs: &[Out]) -> Vec<Vec<u8>> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Send(b) | Out::Reply(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn events(outs: &[Out]) -> Vec<CallEvent> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Status code, or method, of a message.
fn what(b: &[u8]) -> String {
    match sip::parse(b).unwrap().start {
        StartLine::Response { code, .. } => code.to_string(),
        StartLine::Request { method, .. } => method.to_owned(),
    }
}

fn whats(outs: &[Out]) -> Vec<String> {
    wire(outs).iter().map(|b| what(b)).collect()
}

/// vakt's response to the peer's request `to`, as the peer (the callee of a call out).
fn answer_to(request: &[u8], code: u16, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let m = sip::parse(request).unwrap();
    let mut out = Vec::new();
    sip::encode_response(
        &m,
        code,
        reason(code),
        "callee1",
        extra,
        Some(SDP),
        body,
        &mut out,
    );
    out
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A call in, rung and answered over UDP; the 200 sent.
fn answered(extra: &str, t0: Instant) -> (Dialog, Vec<u8>) {
    let raw = invite(extra, OFFER);
    let m = sip::parse(&raw).unwrap();
    let (mut d, first) = Dialog::uas(&m, &raw, peer(), "vakt1".into(), local(false), &opts(), t0);
    assert_eq!(whats(&first), ["100"]);
    d.on_action(Action::Ring, t0);
    let out = d.on_action(Action::Answer(ANSWER.to_vec()), t0);
    let ok = wire(&out).remove(0);
    (d, ok)
}

#[test]
fn a_call_in_rings_is_answered_confirmed_and_hung_up_by_the_caller() {
    let t0 = Instant::now();
    let raw = invite("Allow: INVITE, ACK, BYE, CANCEL\r\n", OFFER);
    let m = sip::parse(&raw).unwrap();
    let (mut d, first) = Dialog::uas(&m, &raw, peer(), "vakt1".into(), local(false), &opts(), t0);
    // 100 Trying at once, without a To tag.
    let trying = sip::parse(&wire(&first)[0])
        .unwrap()
        .to_tag()
        .map(str::to_owned);
    assert_eq!(whats(&first), ["100"]);
    assert_eq!(trying, None);

    let out = d.on_action(Action::Ring, t0);
    let ringing = wire(&out).remove(0);
    let r = sip::parse(&ringing).unwrap();
    assert_eq!(what(&ringing), "180");
    assert_eq!(r.to_tag(), Some("vakt1"));
    assert_eq!(
        r.contact_uri(),
        Some("sip:vakt@127.0.0.1:5060;transport=udp")
    );
    assert_eq!(r.list("Record-Route"), ["<sip:proxy.example;lr>"]);
    // The received/rport of the caller's source.
    assert!(
        r.header("Via")
            .unwrap()
            .contains("received=192.0.2.7;rport=5062")
    );

    // A retransmitted INVITE gets the last response again.
    let again = req(&mut d, &raw, t0 + ms(300));
    assert_eq!(wire(&again), std::slice::from_ref(&ringing));

    let out = d.on_action(Action::Answer(ANSWER.to_vec()), t0 + ms(1000));
    let ok = wire(&out).remove(0);
    let o = sip::parse(&ok).unwrap();
    assert_eq!(what(&ok), "200");
    assert_eq!(o.body, ANSWER);
    assert_eq!(o.content_type(), Some(SDP));
    assert_eq!(o.to_tag(), Some("vakt1"));
    assert!(o.lists("Allow", "BYE") && o.contact_uri().is_some());
    // No session timer asked for: none given.
    assert!(o.header("Session-Expires").is_none());

    // Retransmitted from T1 doubling (0.5, 1, 2, 4, 4 s) until the ACK.
    let t1 = t0 + ms(1000);
    assert_eq!(d.deadline(), Some(t1 + ms(500)));
    assert!(d.on_timer(t1 + ms(499)).is_empty());
    assert_eq!(wire(&d.on_timer(t1 + ms(500))), std::slice::from_ref(&ok));
    assert_eq!(d.deadline(), Some(t1 + ms(1500)));
    assert_eq!(wire(&d.on_timer(t1 + ms(1500))), std::slice::from_ref(&ok));
    assert_eq!(d.deadline(), Some(t1 + ms(3500)));
    // A retransmitted INVITE meanwhile: the 200 again.
    assert_eq!(
        wire(&req(&mut d, &raw, t1 + ms(2000))),
        std::slice::from_ref(&ok)
    );

    let ack = in_dialog(&d, "ACK", 1, "", b"");
    let out = req(&mut d, &ack, t1 + ms(2000));
    assert_eq!(events(&out), [CallEvent::Confirmed]);
    // The INVITE once more, late: absorbed; another INVITE of the call: 482.
    assert!(req(&mut d, &raw, t1 + ms(2100)).is_empty());
    let other = String::from_utf8(raw.clone())
        .unwrap()
        .replace("z9hG4bKinv1", "z9hG4bKinv9");
    assert_eq!(
        whats(&req(&mut d, other.as_bytes(), t1 + ms(2100))),
        ["482"]
    );
    assert!(wire(&out).is_empty());
    // Nothing more is sent; only the bound on the call's length waits.
    assert_eq!(d.deadline(), Some(t1 + opts().max_call));
    assert!(wire(&d.on_timer(t1 + ms(10_000))).is_empty());

    let bye = in_dialog(&d, "BYE", 2, "", b"");
    let out = req(&mut d, &bye, t1 + ms(60_000));
    assert_eq!(whats(&out), ["200"]);
    assert!(matches!(out[0], Out::Reply(_)));
    assert_eq!(events(&out), [CallEvent::Ended(End::RemoteHangUp)]);
    assert!(d.is_done());
    // Nothing after the end.
    assert!(d.on_action(Action::HangUp, t1 + ms(60_001)).is_empty());
}

#[test]
fn a_2xx_never_acknowledged_ends_with_a_bye_at_timer_l() {
    let t0 = Instant::now();
    let (mut d, ok) = answered("", t0);
    let mut resent = 0;
    let mut t = t0;
    let mut last_gap = Duration::ZERO;
    while let Some(next) = d.deadline() {
        if next >= t0 + TRANSACTION {
            break;
        }
        assert!(next - t >= last_gap, "intervals do not shrink");
        last_gap = next - t;
        assert!(last_gap <= T2);
        t = next;
        let out = d.on_timer(t);
        assert_eq!(wire(&out), std::slice::from_ref(&ok));
        resent += 1;
    }
    // 0.5 1 2 4 4 4 4 4 4 4 s: the 32 s run out.
    assert_eq!(resent, 10);
    let out = d.on_timer(t0 + TRANSACTION);
    assert_eq!(whats(&out), ["BYE"]);
    assert_eq!(events(&out), [CallEvent::Ended(End::NoAck)]);
    let bye = wire(&out).remove(0);
    let b = sip::parse(&bye).unwrap();
    // The BYE goes to the caller's Contact, along the route set, in vakt's own CSeq space.
    assert!(bye.starts_with(b"BYE sip:luc678@192.0.2.7:5062 SIP/2.0\r\n"));
    assert_eq!(b.list("Route"), ["<sip:proxy.example;lr>"]);
    assert_eq!((b.from_tag(), b.to_tag()), (Some("vakt1"), Some("unit1")));
    assert_eq!(b.cseq(), (1, "BYE"));
    assert!(!d.is_done(), "the BYE's transaction runs");
    let out = resp(
        &mut d,
        &answer_to(&bye, 200, &[], b""),
        t0 + TRANSACTION + ms(10),
    );
    assert!(out.is_empty());
    assert!(d.is_done());
}

#[test]
fn a_cancel_before_the_answer_is_an_abandoned_call() {
    let t0 = Instant::now();
    let raw = invite("", OFFER);
    let m = sip::parse(&raw).unwrap();
    let (mut d, _) = Dialog::uas(&m, &raw, peer(), "vakt1".into(), local(false), &opts(), t0);
    d.on_action(Action::Ring, t0);
    let cancel = String::from_utf8(raw.clone())
        .unwrap()
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("\r\n\r\n").next().unwrap().replace(
        &format!("Content-Length: {}", OFFER.len()),
        "Content-Length: 0",
    ) + "\r\n\r\n";
    let out = req(&mut d, cancel.as_bytes(), t0 + ms(2000));
    assert_eq!(whats(&out), ["200", "487"]);
    assert!(matches!(out[0], Out::Reply(_)) && matches!(out[1], Out::Send(_)));
    // The 200 to the CANCEL carries the same To tag as the INVITE's responses.
    let w = wire(&out);
    let c = sip::parse(&w[0]).unwrap();
    assert_eq!((c.to_tag(), c.cseq()), (Some("vakt1"), (1, "CANCEL")));
    assert_eq!(events(&out), [CallEvent::Ended(End::Cancelled)]);
    let refused = wire(&out)[1].clone();
    // 487 retransmitted until its ACK (timer G), which is then absorbed for T4 (timer I).
    assert_eq!(
        wire(&d.on_timer(t0 + ms(2500))),
        std::slice::from_ref(&refused)
    );
    let ack = String::from_utf8(in_dialog(&d, "ACK", 1, "", b""))
        .unwrap()
        .replace("branch=z9hG4bKACK1", "branch=z9hG4bKinv1");
    assert!(req(&mut d, ack.as_bytes(), t0 + ms(2600)).is_empty());
    assert!(wire(&d.on_timer(t0 + ms(4000))).is_empty());
    assert!(!d.is_done());
    d.on_timer(t0 + ms(2600) + T4);
    assert!(d.is_done());
}

#[test]
fn the_handler_refuses_with_488_retransmitted_over_udp_and_not_over_tcp() {
    for reliable in [false, true] {
        let t0 = Instant::now();
        let raw = invite("", b"v=0\r\nm=audio 4000 RTP/AVP 18\r\n");
        let m = sip::parse(&raw).unwrap();
        let (mut d, _) = Dialog::uas(
            &m,
            &raw,
            peer(),
            "vakt1".into(),
            local(reliable),
            &opts(),
            t0,
        );
        let out = d.on_action(Action::Reject(488), t0);
        assert_eq!(whats(&out), ["488"]);
        assert_eq!(events(&out), [CallEvent::Ended(End::Rejected(488))]);
        let resent = d.on_timer(t0 + ms(500));
        assert_eq!(
            wire(&resent).len(),
            usize::from(!reliable),
            "reliable {reliable}"
        );
        // Timer H: given up without an ACK.
        d.on_timer(t0 + TRANSACTION);
        assert!(d.is_done());
        // A code that is no refusal is sent as 500.
        let (mut d, _) = Dialog::uas(
            &m,
            &raw,
            peer(),
            "vakt2".into(),
            local(reliable),
            &opts(),
            t0,
        );
        assert_eq!(whats(&d.on_action(Action::Reject(200), t0)), ["500"]);
    }
}

#[test]
fn requests_in_the_dialog_are_checked_for_tags_and_order() {
    let t0 = Instant::now();
    let (mut d, _) = answered("", t0);
    peer_req(&mut d, "ACK", 1, "", b"", t0);
    // INFO with DTMF: 200 and the event.
    let info = String::from_utf8(in_dialog(&d, "INFO", 5, "", b""))
        .unwrap()
        .replace(
            "Content-Length: 0",
            "Content-Type: application/dtmf-relay\r\nContent-Length: 24",
        )
        + "Signal=0\r\nDuration=160\r\n";
    let out = req(&mut d, info.as_bytes(), t0 + ms(10));
    assert_eq!(whats(&out), ["200"]);
    assert_eq!(
        events(&out),
        [CallEvent::Info {
            content_type: "application/dtmf-relay".into(),
            body: b"Signal=0\r\nDuration=160\r\n".to_vec()
        }]
    );
    // A lower CSeq: 500.
    assert_eq!(whats(&peer_req(&mut d, "INFO", 4, "", b"", t0)), ["500"]);
    // Someone else's tag: 481.
    let stranger = String::from_utf8(in_dialog(&d, "BYE", 9, "", b""))
        .unwrap()
        .replace("tag=unit1", "tag=other");
    let out = req(&mut d, stranger.as_bytes(), t0);
    assert_eq!(whats(&out), ["481"]);
    assert!(events(&out).is_empty());
    // A method vakt does not take in a dialog: 405.
    let out = peer_req(&mut d, "REFER", 10, "", b"", t0);
    assert_eq!(whats(&out), ["405"]);
    // OPTIONS: 200 with what vakt allows.
    let out = peer_req(&mut d, "OPTIONS", 11, "", b"", t0);
    assert!(sip::parse(&wire(&out)[0]).unwrap().lists("Allow", "UPDATE"));
}

#[test]
fn screening_refuses_what_vakt_cannot_do() {
    let o = opts();
    let code = |extra: &str, body: &[u8]| {
        let raw = invite(extra, body);
        screen(&sip::parse(&raw).unwrap(), &o).map_err(|r| (r.code, r.headers))
    };
    assert_eq!(code("", OFFER), Ok(()));
    assert_eq!(
        code("Supported: timer\r\nSession-Expires: 90\r\n", b""),
        Ok(())
    );
    assert_eq!(
        code("Require: 100rel, timer\r\n", OFFER),
        Err((420, vec![("Unsupported", "100rel".to_owned())]))
    );
    assert_eq!(
        code("Supported: timer\r\nSession-Expires: 60\r\n", OFFER),
        Err((422, vec![("Min-SE", "90".to_owned())]))
    );
    // Without timer support a short interval is raised, not refused.
    assert_eq!(code("Session-Expires: 60\r\n", OFFER), Ok(()));
    let text = String::from_utf8(invite("", OFFER))
        .unwrap()
        .replace("application/sdp", "text/plain");
    assert_eq!(
        screen(&sip::parse(text.as_bytes()).unwrap(), &o)
            .map(|_| ())
            .map_err(|r| r.code),
        Err(415)
    );
    let no_contact = String::from_utf8(invite("", OFFER))
        .unwrap()
        .replace("Contact: <sip:luc678@192.0.2.7:5062>\r\n", "");
    assert_eq!(
        screen(&sip::parse(no_contact.as_bytes()).unwrap(), &o).map_err(|r| r.code),
        Err(400)
    );
}

#[test]
fn a_session_the_caller_refreshes_ends_when_it_does_not() {
    let t0 = Instant::now();
    let (mut d, ok) = answered(
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\nMin-SE: 90\r\n",
        t0,
    );
    let o = sip::parse(&ok).unwrap();
    assert_eq!(o.header("Session-Expires"), Some("120;refresher=uac"));
    assert!(o.lists("Require", "timer"));
    peer_req(&mut d, "ACK", 1, "", b"", t0);
    // The caller refreshes with UPDATE at 60 s: 200 with the interval, the expiry moves.
    let update = in_dialog(
        &d,
        "UPDATE",
        2,
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
        b"",
    );
    let out = req(&mut d, &update, t0 + Duration::from_secs(60));
    assert_eq!(whats(&out), ["200"]);
    assert_eq!(
        sip::parse(&wire(&out)[0])
            .unwrap()
            .header("Session-Expires"),
        Some("120;refresher=uac")
    );
    // 120 - min(32, 40) = 88 s after the refresh.
    let expiry = t0 + Duration::from_secs(60 + 88);
    assert_eq!(d.deadline(), Some(expiry));
    assert!(events(&d.on_timer(expiry - ms(1))).is_empty());
    let out = d.on_timer(expiry);
    assert_eq!(whats(&out), ["BYE"]);
    assert_eq!(events(&out), [CallEvent::Ended(End::SessionExpired)]);
}

#[test]
fn vakt_refreshes_when_the_caller_cannot() {
    let t0 = Instant::now();
    // No timer support, but an interval (from a proxy): vakt is the refresher.
    let (mut d, ok) = answered(
        "Session-Expires: 60\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n",
        t0,
    );
    let o = sip::parse(&ok).unwrap();
    // Raised to Min-SE, refresher uas, no Require.
    assert_eq!(o.header("Session-Expires"), Some("90;refresher=uas"));
    assert!(o.header("Require").is_none());
    peer_req(&mut d, "ACK", 1, "", b"", t0);
    let out = d.on_timer(t0 + Duration::from_secs(45));
    assert_eq!(whats(&out), ["UPDATE"]);
    let u = wire(&out).remove(0);
    let um = sip::parse(&u).unwrap();
    assert_eq!(um.header("Session-Expires"), Some("90;refresher=uac"));
    assert!(um.lists("Supported", "timer") && um.contact_uri().is_some());
    // Its 200 keeps the session on.
    resp(
        &mut d,
        &answer_to(&u, 200, &[("Session-Expires", "90;refresher=uac")], b""),
        t0 + Duration::from_secs(46),
    );
    assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(46 + 45)));

    // A peer that does not allow UPDATE is refreshed with a re-INVITE of the last SDP.
    let (mut d, _) = answered("Session-Expires: 90\r\n", t0);
    peer_req(&mut d, "ACK", 1, "", b"", t0);
    let out = d.on_timer(t0 + Duration::from_secs(45));
    assert_eq!(whats(&out), ["INVITE"]);
    let inv = wire(&out).remove(0);
    assert_eq!(sip::parse(&inv).unwrap().body, ANSWER);
    let out = resp(
        &mut d,
        &answer_to(&inv, 200, &[("Session-Expires", "90;refresher=uac")], OFFER),
        t0 + Duration::from_secs(46),
    );
    assert_eq!(whats(&out), ["ACK"]);
    assert!(
        events(&out).is_empty(),
        "a refresh tells the handler nothing"
    );
}

#[test]
fn the_peer_puts_the_call_on_hold_and_back() {
    let t0 = Instant::now();
    let (mut d, _) = answered("", t0);
    peer_req(&mut d, "ACK", 1, "", b"", t0);
    let hold = in_dialog(
        &d,
        "INVITE",
        2,
        "Contact: <sip:luc678@192.0.2.7:6000>\r\n",
        b"v=0\r\na=sendonly\r\n",
    );
    let out = req(&mut d, &hold, t0 + ms(10));
    assert_eq!(out, [Out::Reoffer(b"v=0\r\na=sendonly\r\n".to_vec())]);
    let out = d.reanswer(Ok(b"v=0\r\na=recvonly\r\n".to_vec()), t0 + ms(10));
    let ok = wire(&out).remove(0);
    assert_eq!(what(&ok), "200");
    assert_eq!(sip::parse(&ok).unwrap().body, b"v=0\r\na=recvonly\r\n");
    // No new Confirmed for a re-INVITE's ACK.
    let out = peer_req(&mut d, "ACK", 2, "", b"", t0 + ms(20));
    assert!(out.is_empty());
    // The new Contact is the target now.
    let out = d.on_action(Action::HangUp, t0 + ms(30));
    assert!(wire(&out)[0].starts_with(b"BYE sip:luc678@192.0.2.7:6000 "));
    assert_eq!(events(&out), [CallEvent::Ended(End::HungUp)]);

    // An offerless re-INVITE: vakt offers its SDP, the ACK's answer goes up.
    let (mut d, _) = answered("", t0);
    peer_req(&mut d, "ACK", 1, "", b"", t0);
    // (A re-INVITE without Contact is refused 400.)
    let out = peer_req(&mut d, "INVITE", 2, "", b"", t0);
    assert_eq!(whats(&out), ["400"]);
    let out = peer_req(&mut d, "INVITE", 3, CONTACT, b"", t0);
    assert_eq!(sip::parse(&wire(&out)[0]).unwrap().body, ANSWER);
    let out = peer_req(&mut d, "ACK", 3, "", b"v=0\r\n", t0);
    assert_eq!(
        events(&out),
        [CallEvent::RemoteAnswer {
            sdp: b"v=0\r\n".to_vec()
        }]
    );

    // A refused re-offer: the refusal, and the call goes on.
    let out = peer_req(
        &mut d,
        "INVITE",
        4,
        CONTACT,
        b"v=0\r\nm=video 1 RTP/AVP 96\r\n",
        t0,
    );
    assert!(matches!(out[..], [Out::Reoffer(_)]));
    let out = d.reanswer(Err(488), t0);
    assert_eq!(whats(&out), ["488"]);
    assert!(events(&out).is_empty());
}

#[test]
fn vakt_hangs_up_before_the_ack_only_after_it() {
    let t0 = Instant::now();
    let (mut d, _) = answered("", t0);
    let out = d.on_action(Action::HangUp, t0 + ms(100));
    assert!(wire(&out).is_empty(), "no BYE before the ACK");
    assert_eq!(events(&out), [CallEvent::Ended(End::HungUp)]);
    let out = peer_req(&mut d, "ACK", 1, "", b"", t0 + ms(200));
    assert_eq!(whats(&out), ["BYE"]);
    assert!(events(&out).is_empty(), "one Ended only");
}

#[test]
fn a_call_in_that_rings_too_long_gets_480() {
    let t0 = Instant::now();
    let raw = invite("", OFFER);
    let m = sip::parse(&raw).unwrap();
    let (mut d, _) = Dialog::uas(&m, &raw, peer(), "vakt1".into(), local(true), &opts(), t0);
    let out = d.on_action(Action::Ring, t0);
    let ringing = wire(&out).remove(0);
    // The 180 is repeated each minute (RFC 3261 §13.3.1.1).
    assert_eq!(wire(&d.on_timer(t0 + Duration::from_secs(60))), [ringing]);
    let out = d.on_timer(t0 + opts().max_ring);
    assert_eq!(whats(&out), ["480"]);
    assert_eq!(events(&out), [CallEvent::Ended(End::RingTimeout)]);
}

#[test]
fn shutdown_ends_every_call_at_once() {
    let t0 = Instant::now();
    let (mut d, _) = answered("", t0);
    peer_req(&mut d, "ACK", 1, "", b"", t0);
    let out = d.shutdown(t0);
    assert_eq!(whats(&out), ["BYE"]);
    assert_eq!(events(&out), [CallEvent::Ended(End::Shutdown)]);
    // Ringing: 503.
    let raw = invite("", OFFER);
    let m = sip::parse(&raw).unwrap();
    let (mut d, _) = Dialog::uas(&m, &raw, peer(), "vakt1".into(), local(false), &opts(), t0);
    assert_eq!(whats(&d.shutdown(t0)), ["503"]);
}

fn outbound(credentials: bool) -> Outbound {
    Outbound {
        uri: "sip:+4670111222@sbc.example".into(),
        from_uri: "sip:+46101234567@vakt.example".into(),
        offer: ANSWER.to_vec(),
        credentials: credentials.then(|| ("vakt-trunk".to_owned(), SipPassword::new("trunk-pw"))),
        headers: vec![(
            "P-Asserted-Identity".into(),
            "<sip:+46101234567@vakt.example>".into(),
        )],
    }
}

#[test]
fn a_call_out_answers_a_digest_challenge_rings_and_is_answered() {
    let t0 = Instant::now();
    let (mut d, first) = Dialog::uac(
        outbound(true),
        "out-1".into(),
        "vakt9".into(),
        local(false),
        &opts(),
        t0,
    );
    let inv = wire(&first).remove(0);
    let i = sip::parse(&inv).unwrap();
    assert!(inv.starts_with(b"INVITE sip:+4670111222@sbc.example SIP/2.0\r\n"));
    assert_eq!(i.body, ANSWER);
    assert_eq!(i.from_tag(), Some("vakt9"));
    assert!(i.to_tag().is_none() && i.lists("Supported", "timer"));
    assert!(i.header("P-Asserted-Identity").is_some() && i.contact_uri().is_some());

    // 407: ACKed on the INVITE's branch, then the INVITE again with credentials.
    let challenge = "Digest realm=\"sbc\", nonce=\"n1\", qop=\"auth\"";
    let out = resp(
        &mut d,
        &answer_to(&inv, 407, &[("Proxy-Authenticate", challenge)], b""),
        t0 + ms(40),
    );
    assert_eq!(whats(&out), ["ACK", "INVITE"]);
    let w = wire(&out);
    let ack = sip::parse(&w[0]).unwrap();
    assert_eq!(ack.top_via_branch(), i.top_via_branch());
    assert_eq!(ack.to_tag(), Some("callee1"));
    let inv2 = wire(&out).remove(1);
    let i2 = sip::parse(&inv2).unwrap();
    assert_eq!(i2.cseq(), (2, "INVITE"));
    assert_ne!(i2.top_via_branch(), i.top_via_branch());
    let creds = sip::parse_authorization(i2.header("Proxy-Authorization").unwrap()).unwrap();
    assert!(sip::verify(
        &creds,
        "INVITE",
        &sip::ha1("vakt-trunk", "sbc", "trunk-pw")
    ));
    assert!(events(&out).is_empty());

    let out = resp(&mut d, &answer_to(&inv2, 180, &[], b""), t0 + ms(100));
    assert_eq!(
        events(&out),
        [CallEvent::Progress {
            code: 180,
            sdp: Vec::new()
        }]
    );
    // No retransmission once a provisional came, and no timer B.
    assert!(wire(&d.on_timer(t0 + Duration::from_secs(40))).is_empty());

    let ok = answer_to(
        &inv2,
        200,
        &[
            ("Contact", "<sip:callee@198.51.100.9:5080>"),
            ("Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>"),
            ("Session-Expires", "1800;refresher=uac"),
        ],
        OFFER,
    );
    let out = resp(&mut d, &ok, t0 + Duration::from_secs(41));
    assert_eq!(whats(&out), ["ACK"]);
    assert_eq!(
        events(&out),
        [CallEvent::Answered {
            sdp: OFFER.to_vec()
        }]
    );
    let ack = wire(&out).remove(0);
    let a = sip::parse(&ack).unwrap();
    // The 2xx's ACK: to the Contact, along the reversed Record-Route, a branch of its own.
    assert!(ack.starts_with(b"ACK sip:callee@198.51.100.9:5080 SIP/2.0"));
    assert_eq!(
        a.list("Route"),
        ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    );
    assert_ne!(a.top_via_branch(), i2.top_via_branch());
    assert_eq!(a.cseq(), (2, "ACK"));
    // A retransmitted 200: the same ACK.
    assert_eq!(
        wire(&resp(&mut d, &ok, t0 + Duration::from_secs(42))),
        std::slice::from_ref(&ack)
    );
    // vakt refreshes (refresher=uac) at half the interval; the peer allows no UPDATE.
    assert_eq!(
        d.deadline(),
        Some(t0 + Duration::from_secs(41 + 32)),
        "the ACK kept for 32 s"
    );

    let out = d.on_action(Action::HangUp, t0 + Duration::from_secs(100));
    let bye = wire(&out).remove(0);
    let b = sip::parse(&bye).unwrap();
    assert!(bye.starts_with(b"BYE sip:callee@198.51.100.9:5080 SIP/2.0"));
    assert_eq!(b.cseq(), (3, "BYE"));
    assert_eq!(b.to_tag(), Some("callee1"));
    assert_eq!(events(&out), [CallEvent::Ended(End::HungUp)]);
    // The BYE is retransmitted until answered, then the dialog is done.
    assert_eq!(
        wire(&d.on_timer(t0 + Duration::from_millis(100_500))),
        std::slice::from_ref(&bye)
    );
    resp(
        &mut d,
        &answer_to(&bye, 200, &[], b""),
        t0 + Duration::from_secs(101),
    );
    assert!(d.is_done());
}

#[test]
fn a_call_out_hung_up_before_any_answer_is_cancelled_once_it_rings() {
    let t0 = Instant::now();
    let (mut d, first) = Dialog::uac(
        outbound(false),
        "out-2".into(),
        "vakt9".into(),
        local(false),
        &opts(),
        t0,
    );
    let inv = wire(&first).remove(0);
    let out = d.on_action(Action::HangUp, t0 + ms(10));
    assert!(wire(&out).is_empty(), "no CANCEL before a provisional");
    assert_eq!(events(&out), [CallEvent::Ended(End::HungUp)]);
    let out = resp(&mut d, &answer_to(&inv, 180, &[], b""), t0 + ms(50));
    assert_eq!(whats(&out), ["CANCEL"]);
    assert!(events(&out).is_empty());
    let cancel = wire(&out).remove(0);
    let c = sip::parse(&cancel).unwrap();
    let i = sip::parse(&inv).unwrap();
    assert_eq!(c.top_via_branch(), i.top_via_branch());
    assert_eq!(c.cseq(), (1, "CANCEL"));
    assert!(c.to_tag().is_none());
    resp(&mut d, &answer_to(&cancel, 200, &[], b""), t0 + ms(60));
    let out = resp(&mut d, &answer_to(&inv, 487, &[], b""), t0 + ms(70));
    assert_eq!(whats(&out), ["ACK"]);
    assert!(events(&out).is_empty());
    // The ACK is repeated to a retransmitted 487 (timer D), then the dialog is done.
    assert_eq!(
        whats(&resp(&mut d, &answer_to(&inv, 487, &[], b""), t0 + ms(80))),
        ["ACK"]
    );
    d.on_timer(t0 + ms(70) + TRANSACTION);
    assert!(d.is_done());

    // A 200 crossing the CANCEL: ACK, then BYE.
    let (mut d, first) = Dialog::uac(
        outbound(false),
        "out-3".into(),
        "vakt9".into(),
        local(true),
        &opts(),
        t0,
    );
    let inv = wire(&first).remove(0);
    resp(&mut d, &answer_to(&inv, 100, &[], b""), t0);
    let out = d.on_action(Action::HangUp, t0);
    assert_eq!(whats(&out), ["CANCEL"]);
    let out = resp(
        &mut d,
        &answer_to(&inv, 200, &[("Contact", "<sip:c@198.51.100.9>")], OFFER),
        t0,
    );
    assert_eq!(whats(&out), ["ACK", "BYE"]);
    assert!(events(&out).is_empty());
}

#[test]
fn a_call_out_nobody_answers_fails_408_and_refusals_fail_with_their_code() {
    let t0 = Instant::now();
    let (mut d, first) = Dialog::uac(
        outbound(false),
        "out-4".into(),
        "vakt9".into(),
        local(false),
        &opts(),
        t0,
    );
    let inv = wire(&first).remove(0);
    // Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; timer B at 32 s.
    let mut sent = Vec::new();
    while let Some(t) = d.deadline() {
        let out = d.on_timer(t);
        if !events(&out).is_empty() {
            assert_eq!(events(&out), [CallEvent::Ended(End::Failed(408))]);
            assert_eq!(t, t0 + TRANSACTION);
            break;
        }
        assert_eq!(wire(&out), std::slice::from_ref(&inv));
        sent.push(t - t0);
    }
    assert_eq!(sent, [500, 1500, 3500, 7500, 15500, 31500].map(ms).to_vec());
    assert!(d.is_done());

    // Busy: ACK, the code, and a challenge without credentials is a failure too.
    for code in [486, 401] {
        let (mut d, first) = Dialog::uac(
            outbound(false),
            "out-5".into(),
            "vakt9".into(),
            local(true),
            &opts(),
            t0,
        );
        let inv = wire(&first).remove(0);
        let extra: &[(&str, &str)] = if code == 401 {
            &[("WWW-Authenticate", "Digest realm=\"x\", nonce=\"y\"")]
        } else {
            &[]
        };
        let out = resp(&mut d, &answer_to(&inv, code, extra, b""), t0);
        assert_eq!(whats(&out), ["ACK"]);
        assert_eq!(events(&out), [CallEvent::Ended(End::Failed(code))]);
    }
}

#[test]
fn a_refused_hold_is_reported_and_glare_is_retried() {
    let t0 = Instant::now();
    let (mut d, first) = Dialog::uac(
        outbound(false),
        "out-6".into(),
        "vakt9".into(),
        local(true),
        &opts(),
        t0,
    );
    let inv = wire(&first).remove(0);
    resp(
        &mut d,
        &answer_to(&inv, 200, &[("Contact", "<sip:c@198.51.100.9>")], OFFER),
        t0,
    );
    let out = d.on_action(Action::Reinvite(b"v=0\r\na=sendonly\r\n".to_vec()), t0);
    let hold = wire(&out).remove(0);
    assert_eq!(what(&hold), "INVITE");
    // 491: the same offer again after 2.1-4 s (vakt chose the Call-ID).
    let out = resp(&mut d, &answer_to(&hold, 491, &[], b""), t0);
    assert_eq!(whats(&out), ["ACK"]);
    assert!(events(&out).is_empty());
    let at = d.deadline().unwrap();
    assert!(at >= t0 + ms(2100) && at <= t0 + ms(4000), "{:?}", at - t0);
    let out = d.on_timer(at);
    let again = wire(&out).remove(0);
    let a = sip::parse(&again).unwrap();
    assert_eq!(a.body, b"v=0\r\na=sendonly\r\n");
    assert_eq!(a.cseq().1, "INVITE");
    assert!(a.cseq().0 > sip::parse(&hold).unwrap().cseq().0);
    let out = resp(&mut d, &answer_to(&again, 488, &[], b""), at);
    assert_eq!(events(&out), [CallEvent::ReinviteFailed { code: 488 }]);
    // A 200 with the answer.
    let out = d.on_action(Action::Reinvite(b"v=0\r\na=sendrecv\r\n".to_vec()), at);
    let inv = wire(&out).remove(0);
    let out = resp(&mut d, &answer_to(&inv, 200, &[], b"v=0\r\n"), at);
    assert_eq!(whats(&out), ["ACK"]);
    assert_eq!(
        events(&out),
        [CallEvent::RemoteAnswer {
            sdp: b"v=0\r\n".to_vec()
        }]
    );
    // 481 to a request of vakt's: the peer is gone.
    let out = d.on_action(
        Action::Info {
            content_type: "application/dtmf-relay".into(),
            body: b"Signal=0\r\n".to_vec(),
        },
        at,
    );
    let info = wire(&out).remove(0);
    assert_eq!(
        sip::parse(&info).unwrap().content_type(),
        Some("application/dtmf-relay")
    );
    let out = resp(&mut d, &answer_to(&info, 481, &[], b""), at);
    assert_eq!(events(&out), [CallEvent::Ended(End::Unreachable)]);
}

mod sequences {
    //! Any sequence of messages, actions and time: no panic, well-formed output, one
    //! `Ended` and nothing after it, and a deadline that always moves on (the driver never
    //! spins).

    use super::*;
    use proptest::prelude::*;

    const METHODS: &[&str] = &[
        "INVITE", "ACK", "BYE", "CANCEL", "INFO", "UPDATE", "OPTIONS", "PRACK",
    ];
    const CODES: &[u16] = &[
        100, 180, 183, 200, 202, 401, 407, 408, 481, 486, 487, 488, 491, 500, 603,
    ];

    #[derive(Clone, Debug)]
    enum Op {
        Request {
            method: usize,
            cseq: u32,
            our_tag: bool,
            their_tag: bool,
            body: bool,
            timer: Option<u32>,
        },
        Response {
            latest: bool,
            to: prop::sample::Index,
            code: usize,
            timer: Option<u32>,
            contact: bool,
        },
        Act(u8, u16),
        Advance(u64),
        Shutdown,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..METHODS.len(), 0u32..6, any::<bool>(), prop::bool::weighted(0.9), any::<bool>(), prop::option::of(1u32..4000))
                .prop_map(|(method, cseq, our_tag, their_tag, body, timer)| Op::Request { method, cseq, our_tag, their_tag, body, timer }),
            5 => (prop::bool::weighted(0.75), any::<prop::sample::Index>(), 0..CODES.len(), prop::option::of(1u32..4000), any::<bool>())
                .prop_map(|(latest, to, code, timer, contact)| Op::Response { latest, to, code, timer, contact }),
            3 => (0u8..7, 0u16..700).prop_map(|(a, c)| Op::Act(a, c)),
            3 => (0u64..70_000).prop_map(Op::Advance),
            1 => Just(Op::Shutdown),
        ]
    }

    struct Run {
        d: Dialog,
        now: Instant,
        sent: Vec<Vec<u8>>,
        ended: usize,
        reliable: bool,
    }

    impl Run {
        fn take(&mut self, outs: Vec<Out>) {
            let mut queue: std::collections::VecDeque<Out> = outs.into();
            while let Some(o) = queue.pop_front() {
                match o {
                    Out::Send(b) | Out::Reply(b) => {
                        let m = sip::parse(&b).expect("vakt's messages parse");
                        if m.is_request() && m.method() != Some("ACK") {
                            self.sent.push(b.clone());
                        }
                    }
                    Out::Event(e) => {
                        assert_eq!(self.ended, 0, "an event after Ended: {e:?}");
                        if matches!(e, CallEvent::Ended(_)) {
                            self.ended += 1;
                        }
                    }
                    Out::Reoffer(_) => {
                        let a = if self.now.elapsed().as_nanos() % 2 == 0 {
                            Ok(ANSWER.to_vec())
                        } else {
                            Err(488)
                        };
                        queue.extend(self.d.reanswer(a, self.now));
                    }
                }
            }
        }

        /// Runs every deadline up to `until`, checking each moves on.
        fn advance(&mut self, until: Instant) {
            let mut rounds = 0;
            while let Some(t) = self.d.deadline() {
                if t > until {
                    break;
                }
                rounds += 1;
                assert!(rounds < 10_000, "deadlines do not move on");
                self.now = self.now.max(t);
                let outs = self.d.on_timer(self.now);
                self.take(outs);
                let next = self.d.deadline();
                assert!(
                    next.is_none_or(|n| n > self.now),
                    "deadline {next:?} not after {:?}",
                    self.now
                );
            }
            self.now = self.now.max(until);
        }

        fn step(&mut self, op: Op) {
            match op {
                Op::Request {
                    method,
                    cseq,
                    our_tag,
                    their_tag,
                    body,
                    timer,
                } => {
                    let method = METHODS[method];
                    let mut extra = String::from(CONTACT);
                    if let Some(t) = timer {
                        extra.push_str(&format!("Supported: timer\r\nSession-Expires: {t}\r\n"));
                    }
                    let body: &[u8] = if body { OFFER } else { b"" };
                    let mut raw =
                        String::from_utf8(in_dialog(&self.d, method, cseq, &extra, body)).unwrap();
                    if !our_tag {
                        raw = raw.replace(&format!(";tag={}", self.d.local_tag()), "");
                    }
                    if !their_tag {
                        raw = raw.replace("tag=unit1", "tag=other");
                    }
                    if method == "CANCEL" || (method == "INVITE" && !our_tag) {
                        raw = raw.replace(
                            &format!("branch=z9hG4bK{method}{cseq}"),
                            "branch=z9hG4bKinv1",
                        );
                    }
                    let m = sip::parse(raw.as_bytes()).unwrap();
                    let outs = self.d.on_request(&m, raw.as_bytes(), peer(), self.now);
                    self.take(outs);
                }
                Op::Response {
                    latest,
                    to,
                    code,
                    timer,
                    contact,
                } => {
                    let Some(last) = self.sent.last() else {
                        return;
                    };
                    let req = if latest {
                        last.clone()
                    } else {
                        self.sent[to.index(self.sent.len())].clone()
                    };
                    let code = CODES[code];
                    let mut extra: Vec<(&str, String)> = Vec::new();
                    if let Some(t) = timer {
                        extra.push(("Session-Expires", format!("{t};refresher=uac")));
                    }
                    if contact {
                        extra.push(("Contact", "<sip:c@198.51.100.9>".into()));
                    }
                    if code == 401 {
                        extra.push((
                            "WWW-Authenticate",
                            "Digest realm=\"r\", nonce=\"n\", qop=\"auth\"".into(),
                        ));
                    }
                    if code == 407 {
                        extra.push((
                            "Proxy-Authenticate",
                            "Digest realm=\"r\", nonce=\"n\", stale=true".into(),
                        ));
                    }
                    let extra: Vec<(&str, &str)> =
                        extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    let body: &[u8] = if code == 200 { OFFER } else { b"" };
                    let raw = answer_to(&req, code, &extra, body);
                    let m = sip::parse(&raw).unwrap();
                    let outs = self.d.on_response(&m, self.now);
                    self.take(outs);
                }
                Op::Act(a, code) => {
                    let action = match a {
                        0 => Action::Ring,
                        1 => Action::EarlyMedia(ANSWER.to_vec()),
                        2 => Action::Answer(ANSWER.to_vec()),
                        3 => Action::Reject(code),
                        4 => Action::HangUp,
                        5 => Action::Info {
                            content_type: "application/dtmf-relay".into(),
                            body: b"Signal=1\r\n".to_vec(),
                        },
                        _ => Action::Reinvite(OFFER.to_vec()),
                    };
                    let outs = self.d.on_action(action, self.now);
                    self.take(outs);
                }
                Op::Advance(ms) => {
                    let until = self.now + Duration::from_millis(ms);
                    self.advance(until);
                }
                Op::Shutdown => {
                    let outs = self.d.shutdown(self.now);
                    self.take(outs);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn any_sequence_keeps_the_dialog_sound(
            uas in any::<bool>(),
            reliable in any::<bool>(),
            creds in any::<bool>(),
            invite_extra in prop::sample::select(vec!["", "Supported: timer\r\nSession-Expires: 200\r\n", "Session-Expires: 95\r\nAllow: UPDATE\r\n"]),
            answered in any::<bool>(),
            idx in any::<prop::sample::Index>(),
            ops in prop::collection::vec(op(), 0..40),
        ) {
            let t0 = Instant::now();
            let (d, first) = if uas {
                let raw = invite(invite_extra, OFFER);
                let m = sip::parse(&raw).unwrap();
                Dialog::uas(&m, &raw, peer(), "vakt1".into(), local(reliable), &opts(), t0)
            } else {
                Dialog::uac(outbound(creds), "out-p".into(), "vakt1".into(), local(reliable), &opts(), t0)
            };
            let mut run = Run { d, now: t0, sent: Vec::new(), ended: 0, reliable };
            run.take(first);
            if answered {
                // Half the runs start from an answered call.
                if uas {
                    run.step(Op::Act(2, 0));
                    run.step(Op::Request { method: 1, cseq: 1, our_tag: true, their_tag: true, body: false, timer: None });
                } else {
                    run.step(Op::Response { latest: true, to: idx, code: 3, timer: None, contact: true });
                }
            }
            for op in ops {
                if run.d.is_done() {
                    break;
                }
                run.step(op);
            }
            // Left alone, every dialog ends and finishes within its bounds.
            let _ = run.reliable;
            let bound = run.now + opts().max_call + opts().max_ring + Duration::from_secs(3600);
            run.advance(bound);
            if !run.d.is_done() {
                // A call in the middle of its session: hang up and let it finish.
                let outs = run.d.on_action(Action::HangUp, run.now);
                run.take(outs);
                let later = run.now + Duration::from_secs(120);
                run.advance(later);
            }
            prop_assert_eq!(run.ended, 1, "one Ended");
            prop_assert!(run.d.is_done());
        }
    }
}
