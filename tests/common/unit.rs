//! An alarm unit played in the test so its audio can be analysed: vakt's own SIP endpoint as
//! the user agent (a UAC calling vakt with the unit's Digest credentials, answering vakt's
//! BYE), with an RTP socket on 127.0.0.1 that sends a tone as G.711 every 20 ms from the
//! moment vakt's SDP names its media address, and keeps every packet it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use vakt::model::SipPassword;
use vakt::telemetry::ScaipMetrics;
use vakt::transport::accept::Scope;
use vakt::transport::sip::{
    self, Admission, CallEvent, CallHandle, CallHandler, CallId, Decision, Dial, DialVia, Endpoint,
    IncomingCall, InviteOptions, Request, ScaipHandler, SipOptions,
};
use vakt::voice::tone::ToneGen;
use vakt_proto::g711::Law;
use vakt_proto::sip::Message;

/// The unit sends nothing but its call: SCAIP messages to it are not expected.
struct NoScaip;

impl ScaipHandler for NoScaip {
    fn authenticate(
        &self,
        _msg: &Message<'_>,
        _method: &str,
        _uri: &str,
        _peer: SocketAddr,
    ) -> Result<String, String> {
        Err("Digest realm=\"unit\", nonce=\"none\"".to_owned())
    }

    async fn message(&self, _req: Request<'_>) -> Vec<u8> {
        Vec::new()
    }
}

/// The unit's side of its one call: every event goes to the test.
struct Events(UnboundedSender<CallEvent>);

impl CallHandler for Events {
    fn admit(&self, _invite: &Message<'_>, _uri: &str, _peer: SocketAddr) -> Admission {
        Admission::Forbidden
    }

    fn incoming(&self, _call: IncomingCall, _handle: CallHandle) -> Decision {
        Decision::Reject(486)
    }

    fn reoffer(&self, _id: CallId, _offer: &[u8]) -> Result<Vec<u8>, u16> {
        Err(488)
    }

    fn event(&self, _id: CallId, event: CallEvent) {
        let _ = self.0.send(event);
    }
}

/// One RTP packet the unit received.
#[derive(Clone, Debug)]
pub struct Received {
    /// When it was read.
    pub at: Instant,
    /// Its payload type.
    pub payload_type: u8,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// An alarm unit with a call to vakt under way.
pub struct Unit {
    /// Kept so the endpoint lives as long as the call.
    _endpoint: Arc<Endpoint<NoScaip>>,
    handle: CallHandle,
    events: UnboundedReceiver<CallEvent>,
    /// Every event seen so far, in order.
    pub seen: Vec<CallEvent>,
    /// Every RTP packet received, in order.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// RTP packets sent.
    pub sent: Arc<Mutex<u64>>,
    /// Where vakt's media is (from its SDP), once known; the sender starts then.
    media: Arc<Mutex<Option<(SocketAddr, u8)>>>,
    stop: CancellationToken,
}

impl Drop for Unit {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The media address and first payload type of an SDP (`c=` and `m=audio` lines).
pub fn media_of(sdp: &[u8]) -> Option<(SocketAddr, u8)> {
    let text = std::str::from_utf8(sdp).ok()?;
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .parse()
        .ok()?;
    let m = text.lines().find_map(|l| l.strip_prefix("m=audio "))?;
    let mut words = m.split_whitespace();
    let port = words.next()?.parse().ok()?;
    let pt = words.nth(1)?.parse().ok()?;
    Some((SocketAddr::new(ip, port), pt))
}

impl Unit {
    /// Calls vakt's SIP UDP address `vakt` as SIP user `user` (Digest with `password`),
    /// offering A-law, μ-law and telephone-events; from vakt's SDP on, sends a `hz` tone
    /// (−10 dBm0) in the law vakt chose, every 20 ms.
    pub async fn call(vakt: SocketAddr, user: &str, password: &str, hz: f64) -> Unit {
        let stop = CancellationToken::new();
        let (tx, events) = unbounded_channel();
        let endpoint = Arc::new(
            Endpoint::new(
                Arc::new(NoScaip),
                SipOptions {
                    arc_uri: format!("sip:{user}@127.0.0.1"),
                    rate_per_source: 100,
                    rate_burst: 100,
                    max_connections: 4,
                    max_per_source: 4,
                    idle_timeout: Duration::from_secs(60),
                },
                ScaipMetrics::new(),
                Scope::new(stop.clone()),
            )
            .with_calls(Arc::new(Events(tx)), InviteOptions::default()),
        );
        let sip_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sip_addr = sip_socket.local_addr().unwrap();
        tokio::spawn(sip::serve_udp(sip_socket, endpoint.clone()));
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let rtp_port = rtp.local_addr().unwrap().port();
        let offer = format!(
            "v=0\r\no=unit 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
        );
        // The UDP loop must be serving before a call out can use its socket.
        let deadline = Instant::now() + Duration::from_secs(10);
        let handle = loop {
            match endpoint
                .dial(Dial {
                    uri: format!("sip:arc@{vakt}"),
                    from: format!("sip:{user}@{sip_addr}"),
                    via: DialVia::Udp(vakt),
                    offer: offer.clone().into_bytes(),
                    credentials: Some((user.to_owned(), SipPassword::new(password))),
                    headers: Vec::new(),
                })
                .await
            {
                Ok(h) => break h,
                Err(e) => {
                    assert!(Instant::now() < deadline, "the unit cannot dial: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let received = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(0));
        let media = Arc::new(Mutex::new(None));
        tokio::spawn(rtp_loop(
            rtp,
            hz,
            media.clone(),
            received.clone(),
            sent.clone(),
            stop.clone(),
        ));
        Unit {
            _endpoint: endpoint,
            handle,
            events,
            seen: Vec::new(),
            received,
            sent,
            media,
            stop,
        }
    }

    /// Waits (at most `patience`) for an event `f` picks, taking vakt's media address from
    /// any SDP on the way; returns what `f` returned.
    pub async fn until<T>(
        &mut self,
        what: &str,
        patience: Duration,
        mut f: impl FnMut(&CallEvent) -> Option<T>,
    ) -> T {
        if let Some(t) = self.seen.iter().find_map(&mut f) {
            return t;
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let e = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => e,
                Ok(None) => panic!("the unit's endpoint stopped waiting for {what}"),
                Err(_) => panic!(
                    "waited {patience:?} for {what}; the unit saw {:?}",
                    self.seen
                ),
            };
            let sdp = match &e {
                CallEvent::Progress { sdp, .. } | CallEvent::Answered { sdp } => Some(sdp),
                _ => None,
            };
            if let Some(m) = sdp.and_then(|s| media_of(s)) {
                *self.media.lock().unwrap() = Some(m);
            }
            let got = f(&e);
            self.seen.push(e);
            if let Some(t) = got {
                return t;
            }
        }
    }

    /// Waits for vakt's `200 OK` (the operator answered).
    pub async fn answered(&mut self, patience: Duration) {
        self.until("the 200 OK", patience, |e| {
            matches!(e, CallEvent::Answered { .. }).then_some(())
        })
        .await;
    }

    /// Waits for the call's end and returns how it ended.
    pub async fn ended(&mut self, patience: Duration) -> sip::End {
        self.until("the call's end", patience, |e| match e {
            CallEvent::Ended(end) => Some(*end),
            _ => None,
        })
        .await
    }

    /// Hangs up (BYE).
    pub fn hang_up(&self) {
        self.handle.hang_up().unwrap();
    }

    /// Stops sending and receiving at once, without a BYE (a unit whose far end vanished).
    pub fn silence(&self) {
        self.stop.cancel();
    }

    /// The G.711 payloads of the packets received after `since`, decoded in `law`, as one
    /// block of samples (RFC 4733 events left out).
    pub fn samples_since(&self, since: Instant, law: Law) -> Vec<i16> {
        let mut out = Vec::new();
        for r in self.received.lock().unwrap().iter() {
            if r.at >= since && Law::from_payload_type(r.payload_type) == Some(law) {
                law.decode_into(&r.payload, &mut out);
            }
        }
        out
    }

    /// The law vakt chose (its answer's first payload type), once known.
    pub fn law(&self) -> Option<Law> {
        self.media
            .lock()
            .unwrap()
            .and_then(|(_, pt)| Law::from_payload_type(pt))
    }
}

/// The unit's RTP: once vakt's address is known, a frame of the tone every 20 ms to it (one
/// SSRC, sequence and timestamp running on); every packet received is kept.
async fn rtp_loop(
    socket: Arc<UdpSocket>,
    hz: f64,
    media: Arc<Mutex<Option<(SocketAddr, u8)>>>,
    received: Arc<Mutex<Vec<Received>>>,
    sent: Arc<Mutex<u64>>,
    stop: CancellationToken,
) {
    let mut tone = ToneGen::new(hz, -10.0);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut seq, mut ts) = (1u16, 160u32);
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(200);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                let Some((to, pt)) = *media.lock().unwrap() else { continue };
                let law = Law::from_payload_type(pt).unwrap_or(Law::Alaw);
                let header = vakt_proto::rtp::Header {
                    marker: seq == 1,
                    payload_type: pt,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 0x5EED_0678,
                };
                out.clear();
                header.write(&tone.frame(law), &mut out).unwrap();
                if socket.send_to(&out, to).await.is_ok() {
                    *sent.lock().unwrap() += 1;
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, _)) = r else { continue };
                let at = Instant::now();
                if let Ok(p) = vakt_proto::rtp::parse(&buf[..n]) {
                    received.lock().unwrap().push(Received {
                        at,
                        payload_type: p.header.payload_type,
                        payload: p.payload.to_vec(),
                    });
                }
            }
        }
    }
}
