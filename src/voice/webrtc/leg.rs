//! The leg's task: drives one `Rtc` with its UDP socket, the frames both ways and the clock.
//!
//! Each turn of the loop gives str0m one input (a datagram, a frame to send, a timeout) and
//! then drains `poll_output` to its next timeout, sending what it transmits and handling its
//! events, as str0m's contract asks. The task ends on the browser's close, a timeout, a DTLS
//! failure, or vakt's end; its socket and port lease go with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::{Frequency, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::negotiate::Negotiated;
use super::{BrowserFrame, G711, LegEnd, Shared};
use crate::voice::ports::PortLease;

/// The largest datagram read (str0m's own limit is 2000 bytes).
const MAX_DATAGRAM: usize = 2048;

/// Most outputs handled in one drain before the loop yields to the others (str0m drains to
/// a timeout in a few; this only bounds a runaway).
const MAX_DRAIN: usize = 1024;

/// How many timeouts already due are given to str0m in a row before the task yields.
const MAX_DUE_IN_A_ROW: u32 = 16;

/// The longest the task sleeps without looking at its own deadlines.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How long closing may take to send its last datagrams (close_notify, RTCP BYE).
const CLOSE_DRAIN: usize = 64;

/// What one datagram is to the leg.
#[allow(clippy::large_enum_variant)] // handed on at once; boxing would allocate per datagram
pub(super) enum Admit<'a> {
    /// Not STUN, DTLS, RTP or RTCP.
    Garbage,
    /// Not from the negotiated peer (str0m's `accepts`: the nominated address, a viable
    /// candidate, or STUN with this leg's credentials).
    Foreign,
    /// The peer's: give it to str0m.
    Peer(Input<'a>),
}

/// Sorts a datagram from `source` that arrived at `destination`, without touching the
/// `Rtc`'s state.
pub(super) fn admit<'a>(
    rtc: &Rtc,
    now: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    bytes: &'a [u8],
) -> Admit<'a> {
    let Ok(receive) = Receive::new(Protocol::Udp, source, destination, bytes) else {
        return Admit::Garbage;
    };
    let input = Input::Receive(now, receive);
    if rtc.accepts(&input) {
        Admit::Peer(input)
    } else {
        Admit::Foreign
    }
}

/// The leg's task, with everything it owns.
pub(super) struct Task {
    pub negotiated: Negotiated,
    pub socket: UdpSocket,
    pub lease: PortLease,
    pub destination: SocketAddr,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub frames: mpsc::Sender<BrowserFrame>,
    pub out: mpsc::Receiver<Arc<[u8]>>,
    pub stop: CancellationToken,
    pub shared: Arc<Shared>,
    pub started: Instant,
}

/// Sets the end reason and counts the leg's end once, when the task says so or, if it
/// stops without saying (a panic in str0m), as [`LegEnd::Internal`] when it is dropped.
struct EndGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl EndGuard {
    fn finish(&mut self, reason: LegEnd) {
        if !self.done {
            self.done = true;
            self.shared.end.send_replace(Some(reason));
            self.shared.metrics.leg_ended(reason.as_str());
        }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.finish(LegEnd::Internal);
    }
}

/// What the drain found.
enum Drained {
    /// Wait for this instant (or an input).
    Until(Instant),
    /// The leg is over.
    End(LegEnd),
}

/// Where the loop is: the Rtc and the leg's own bookkeeping.
struct Leg {
    rtc: Rtc,
    mid: str0m::media::Mid,
    pt: str0m::media::Pt,
    codec: G711,
    socket: UdpSocket,
    destination: SocketAddr,
    frames: mpsc::Sender<BrowserFrame>,
    shared: Arc<Shared>,
    connected: bool,
    closed_by_peer: bool,
    /// The last accepted datagram from the browser.
    last_heard: Instant,
    /// The RTP time of the next frame to the browser (8 kHz).
    out_time: u64,
    /// The browser's first and highest extended sequence numbers, and how many came.
    first_seq: Option<u64>,
    highest_seq: u64,
    received: u64,
    /// The browser's cumulative loss as last reported (to count only increments).
    reported_lost_out: u64,
}

impl Task {
    /// Runs the leg to its end.
    pub(super) async fn run(self) {
        let port = self.destination.port();
        let span = tracing::debug_span!("webrtc_leg", port);
        self.run_inner().instrument(span).await;
    }

    async fn run_inner(self) {
        let Task {
            negotiated,
            socket,
            lease,
            destination,
            connect_timeout,
            idle_timeout,
            frames,
            mut out,
            stop,
            shared,
            started,
        } = self;
        shared.metrics.leg_started();
        let mut guard = EndGuard {
            shared: Arc::clone(&shared),
            done: false,
        };
        let Negotiated {
            rtc,
            mid,
            pt,
            codec,
            transmits,
            ..
        } = negotiated;
        let mut leg = Leg {
            rtc,
            mid,
            pt,
            codec,
            socket,
            destination,
            frames,
            shared,
            connected: false,
            closed_by_peer: false,
            last_heard: started,
            out_time: u64::from(rand::random::<u16>()),
            first_seq: None,
            highest_seq: 0,
            received: 0,
            reported_lost_out: 0,
        };
        for t in transmits {
            let _ = leg.socket.send_to(&t.contents, t.destination).await;
        }
        let reason = leg
            .run(&mut out, &stop, started, connect_timeout, idle_timeout)
            .await;
        if reason == LegEnd::Ended {
            leg.close().await;
        }
        tracing::debug!(reason = reason.as_str(), "leg ended");
        // The reason is set before the frames' channel closes, so a consumer whose `recv`
        // says `None` finds it; the socket closes before the port goes back to the pool.
        guard.finish(reason);
        drop(leg);
        drop(lease);
    }
}

impl Leg {
    async fn run(
        &mut self,
        out: &mut mpsc::Receiver<Arc<[u8]>>,
        stop: &CancellationToken,
        started: Instant,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> LegEnd {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out_open = true;
        // str0m wants a first timeout to start its clocks.
        if self.rtc.handle_input(Input::Timeout(started)).is_err() {
            return LegEnd::Internal;
        }
        let mut due_in_a_row = 0;
        loop {
            let next = match self.drain().await {
                Drained::Until(t) => t,
                Drained::End(reason) => return reason,
            };
            let now = Instant::now();
            // str0m asks for a timeout now after most inputs (a written frame is packetized
            // on the next one): give it at once rather than through the timer, whose 1 ms
            // granularity would delay every frame; now and then let the others run.
            if next <= now && due_in_a_row < MAX_DUE_IN_A_ROW {
                due_in_a_row += 1;
                if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                    return LegEnd::Failed;
                }
                continue;
            }
            if due_in_a_row >= MAX_DUE_IN_A_ROW {
                tokio::task::yield_now().await;
            }
            due_in_a_row = 0;
            let deadline = if self.connected {
                self.last_heard + idle_timeout
            } else {
                started + connect_timeout
            };
            if now >= deadline {
                return if self.connected {
                    LegEnd::Idle
                } else {
                    LegEnd::ConnectTimeout
                };
            }
            let wake = next.min(deadline).min(now + MAX_SLEEP);
            tokio::select! {
                () = stop.cancelled() => return LegEnd::Ended,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => {
                        let now = Instant::now();
                        let Some(bytes) = buf.get(..n) else { continue };
                        if let Err(reason) = self.datagram(now, source, bytes) {
                            return reason;
                        }
                    }
                    Err(e) if transient(&e) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "leg socket failed");
                        return LegEnd::Internal;
                    }
                },
                frame = out.recv(), if out_open => match frame {
                    Some(payload) => {
                        if let Err(reason) = self.write(payload) {
                            return reason;
                        }
                    }
                    None => out_open = false,
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    if self.rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                        return LegEnd::Failed;
                    }
                }
            }
        }
    }

    /// One datagram: dropped and counted unless it is the peer's.
    fn datagram(&mut self, now: Instant, source: SocketAddr, bytes: &[u8]) -> Result<(), LegEnd> {
        match admit(&self.rtc, now, source, self.destination, bytes) {
            Admit::Garbage => {
                self.shared.stats_mut().garbage += 1;
                self.shared.metrics.datagram_dropped("garbage");
                Ok(())
            }
            Admit::Foreign => {
                self.shared.stats_mut().foreign += 1;
                self.shared.metrics.datagram_dropped("foreign");
                Ok(())
            }
            Admit::Peer(input) => {
                self.last_heard = now;
                self.rtc.handle_input(input).map_err(|e| {
                    tracing::debug!(error = %e, "browser's datagram failed the leg");
                    LegEnd::Failed
                })
            }
        }
    }

    /// One frame to the browser.
    fn write(&mut self, payload: Arc<[u8]>) -> Result<(), LegEnd> {
        let dropped = |leg: &mut Leg| {
            leg.shared.stats_mut().dropped_out += 1;
            leg.shared.metrics.frame_dropped_out();
        };
        if !self.connected {
            dropped(self);
            return Ok(());
        }
        let len = payload.len() as u64;
        let time = MediaTime::new(self.out_time, Frequency::EIGHT_KHZ);
        let pt = self.pt;
        let Some(writer) = self.rtc.writer(self.mid) else {
            dropped(self);
            return Ok(());
        };
        match writer.write(pt, Instant::now(), time, payload) {
            Ok(()) => {
                self.out_time = self.out_time.wrapping_add(len);
                self.shared.stats_mut().packets_out += 1;
                self.shared.metrics.packet_out();
            }
            Err(e) => {
                tracing::debug!(error = %e, "frame for the browser not written");
                dropped(self);
            }
        }
        Ok(())
    }

    /// Drains str0m's output to its next timeout.
    async fn drain(&mut self) -> Drained {
        for _ in 0..MAX_DRAIN {
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "leg failed");
                    return Drained::End(LegEnd::Failed);
                }
            };
            match output {
                Output::Timeout(t) => {
                    if self.closed_by_peer || !self.rtc.is_alive() {
                        return Drained::End(if self.closed_by_peer {
                            LegEnd::Closed
                        } else {
                            LegEnd::Failed
                        });
                    }
                    return Drained::Until(t);
                }
                Output::Transmit(t) => {
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                        if !transient(&e) {
                            tracing::warn!(error = %e, "leg socket failed");
                            return Drained::End(LegEnd::Internal);
                        }
                    }
                }
                Output::Event(e) => {
                    if let Some(reason) = self.event(e) {
                        return Drained::End(reason);
                    }
                }
            }
        }
        // A runaway drain: come back after the other inputs had their turn.
        Drained::Until(Instant::now())
    }

    /// One event of str0m's; `Some` when the leg is over.
    fn event(&mut self, event: Event) -> Option<LegEnd> {
        match event {
            Event::Connected => {
                self.connected = true;
                self.shared.stats_mut().connected = true;
                tracing::debug!("browser connected");
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Some(LegEnd::IceDisconnected);
            }
            Event::Closed => {
                self.closed_by_peer = true;
            }
            Event::MediaData(data) if data.mid == self.mid => {
                let seq = **data.seq_range.end();
                if !self.count_in(**data.seq_range.start(), seq) {
                    return None;
                }
                let muted = self.shared.muted.load(std::sync::atomic::Ordering::Relaxed);
                let payload = if muted {
                    vec![self.codec.silence(); data.data.len()].into()
                } else {
                    data.data
                };
                let frame = BrowserFrame {
                    payload,
                    timestamp: rebase_8k(data.time),
                    seq,
                    received: data.network_time,
                    muted,
                };
                if self.frames.try_send(frame).is_err() {
                    self.shared.stats_mut().dropped_in += 1;
                    self.shared.metrics.frame_dropped_in();
                }
            }
            Event::MediaIngressStats(s) if s.mid == self.mid => {
                let jitter = Duration::from_secs_f64(f64::from(s.jitter) / 8000.0);
                self.shared.stats_mut().jitter_in = jitter;
                self.shared.metrics.jitter_in(jitter);
            }
            Event::MediaEgressStats(s) if s.mid == self.mid => {
                if let Some(remote) = s.remote {
                    let jitter = Duration::from_secs_f64(f64::from(remote.jitter) / 8000.0);
                    let lost = remote.packets_lost;
                    let new = lost.saturating_sub(self.reported_lost_out);
                    self.reported_lost_out = self.reported_lost_out.max(lost);
                    let mut stats = self.shared.stats_mut();
                    stats.jitter_out = jitter;
                    stats.lost_out = self.reported_lost_out;
                    drop(stats);
                    self.shared.metrics.jitter_out(jitter);
                    self.shared.metrics.lost_out(new);
                }
            }
            _ => {}
        }
        None
    }

    /// Counts a frame of sequence numbers `first..=last` from the browser, and the gaps
    /// before it as lost; false for a frame that comes after a later one (too late to relay:
    /// it is dropped, and stays counted lost) or again.
    fn count_in(&mut self, first: u64, last: u64) -> bool {
        if self.first_seq.is_some() && first <= self.highest_seq {
            return false;
        }
        let packets = last.saturating_sub(first) + 1;
        self.received += packets;
        let start = *self.first_seq.get_or_insert(first);
        self.highest_seq = last;
        let expected = last.saturating_sub(start) + 1;
        let lost = expected.saturating_sub(self.received);
        let mut stats = self.shared.stats_mut();
        let new_lost = lost.saturating_sub(stats.lost_in);
        stats.packets_in += packets;
        stats.lost_in = lost;
        drop(stats);
        self.shared.metrics.packets_in(packets);
        self.shared.metrics.lost_in(new_lost);
        true
    }

    /// Closes the connection (DTLS close_notify, RTCP BYE) and sends what that produces.
    async fn close(&mut self) {
        if self.rtc.close().is_err() {
            return;
        }
        for _ in 0..CLOSE_DRAIN {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
    }
}

/// A media time in 8 kHz units (G.711's clock; str0m keeps audio at its codec's rate).
fn rebase_8k(t: MediaTime) -> u64 {
    if t.frequency() == Frequency::EIGHT_KHZ {
        t.numer()
    } else {
        let denom = u128::from(t.denom().max(1));
        let scaled = u128::from(t.numer()) * 8000 / denom;
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }
}

/// Socket errors that concern one datagram only (an ICMP error from an earlier send, a
/// signal), not the socket.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | Interrupted
            | WouldBlock
            | HostUnreachable
            | NetworkUnreachable
    )
}

#[cfg(test)]
mod tests {
    //! The leg's datagram path (`admit`, then str0m) against a str0m browser connected in
    //! memory: datagrams passed by hand, time passed in.

    use super::*;
    use crate::voice::webrtc::negotiate::negotiate;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};
    use str0m::change::SdpAnswer;
    use str0m::media::{Direction, MediaKind};
    use str0m::net::Transmit;
    use str0m::{Candidate, RtcConfig};

    const LEG: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 41_000);
    const BROWSER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 50_000);
    const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), 50_000);

    /// Both ends of a leg, in memory.
    struct Pair {
        leg: Rtc,
        browser: Rtc,
        browser_mid: str0m::media::Mid,
        now: Instant,
        /// Frames the leg got (payloads).
        got: Vec<Vec<u8>>,
    }

    /// Drains `rtc`: its transmits and, for the leg, the payloads of its media.
    fn drain(rtc: &mut Rtc, got: Option<&mut Vec<Vec<u8>>>) -> Result<Vec<Transmit>, ()> {
        let mut out = Vec::new();
        let mut got = got;
        for _ in 0..MAX_DRAIN {
            match rtc.poll_output().map_err(|_| ())? {
                Output::Timeout(_) => return Ok(out),
                Output::Transmit(t) => out.push(t),
                Output::Event(Event::MediaData(d)) => {
                    if let Some(g) = got.as_deref_mut() {
                        g.push(d.data.to_vec());
                    }
                }
                Output::Event(_) => {}
            }
        }
        Ok(out)
    }

    impl Pair {
        /// Offers, answers, and passes datagrams until both ends are connected.
        fn connected() -> Pair {
            let now = Instant::now();
            let crypto = crate::voice::webrtc::crypto_provider();
            let mut browser = RtcConfig::new()
                .set_crypto_provider(crypto.clone())
                .clear_codecs()
                .enable_opus(true)
                .enable_pcmu(true)
                .build(now);
            browser.add_local_candidate(Candidate::host(BROWSER, "udp").unwrap());
            let mut api = browser.sdp_api();
            let browser_mid =
                api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            let (offer, pending) = api.apply().unwrap();
            let cert = crypto.dtls_provider.generate_certificate().unwrap();
            let n = negotiate(
                &offer.to_sdp_string(),
                G711::Pcmu,
                &[LEG],
                &crypto,
                &cert,
                now,
            )
            .unwrap();
            browser
                .sdp_api()
                .accept_answer(pending, SdpAnswer::from_sdp_string(&n.answer).unwrap())
                .unwrap();
            let mut pair = Pair {
                leg: n.rtc,
                browser,
                browser_mid,
                now,
                got: Vec::new(),
            };
            for _ in 0..400 {
                pair.step(Duration::from_millis(5));
                if pair.leg.is_connected() && pair.browser.is_connected() {
                    return pair;
                }
            }
            panic!("no connection in memory");
        }

        /// Passes what each end transmits to the other, then lets `dt` pass.
        fn step(&mut self, dt: Duration) {
            for t in drain(&mut self.browser, None).unwrap() {
                if let Admit::Peer(input) =
                    admit(&self.leg, self.now, t.source, t.destination, &t.contents)
                {
                    self.leg.handle_input(input).unwrap();
                }
            }
            for t in drain(&mut self.leg, Some(&mut self.got)).unwrap() {
                let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
                self.browser
                    .handle_input(Input::Receive(self.now, r))
                    .unwrap();
            }
            self.now += dt;
            self.browser.handle_input(Input::Timeout(self.now)).unwrap();
            self.leg.handle_input(Input::Timeout(self.now)).unwrap();
        }

        /// The browser sends `payload`; true when the leg got it.
        fn frame_gets_through(&mut self, payload: &[u8], time: u64) -> bool {
            let pt = {
                let w = self.browser.writer(self.browser_mid).unwrap();
                *w.payload_params().next().unwrap().pt()
            };
            let w = self.browser.writer(self.browser_mid).unwrap();
            w.write(
                pt.into(),
                self.now,
                MediaTime::new(time, Frequency::EIGHT_KHZ),
                payload.to_vec(),
            )
            .unwrap();
            self.got.clear();
            for _ in 0..20 {
                self.step(Duration::from_millis(1));
            }
            self.got.iter().any(|g| g == payload)
        }
    }

    #[test]
    fn a_datagram_from_a_stranger_is_never_the_peers() {
        let mut pair = Pair::connected();
        assert!(pair.frame_gets_through(&[0x11; 160], 0));
        // The browser's real packets, replayed from another address, are not taken.
        let w = pair.browser.writer(pair.browser_mid).unwrap();
        let pt = *w.payload_params().next().unwrap().pt();
        w.write(
            pt.into(),
            pair.now,
            MediaTime::new(160, Frequency::EIGHT_KHZ),
            vec![0x22; 160],
        )
        .unwrap();
        // str0m packetizes a written frame at its next timeout.
        let mut sent = drain(&mut pair.browser, None).unwrap();
        pair.now += Duration::from_millis(1);
        pair.browser.handle_input(Input::Timeout(pair.now)).unwrap();
        sent.extend(drain(&mut pair.browser, None).unwrap());
        assert!(!sent.is_empty());
        for t in &sent {
            assert!(matches!(
                admit(&pair.leg, pair.now, STRANGER, LEG, &t.contents),
                Admit::Foreign
            ));
            assert!(matches!(
                admit(&pair.leg, pair.now, BROWSER, LEG, &t.contents),
                Admit::Peer(_)
            ));
        }
        assert!(matches!(
            admit(&pair.leg, pair.now, BROWSER, LEG, b"hello"),
            Admit::Garbage
        ));
        assert!(matches!(
            admit(&pair.leg, pair.now, BROWSER, LEG, &[]),
            Admit::Garbage
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any datagrams, from a stranger or spoofing the browser's own address: none
        /// panics the leg, a stranger's are never taken, and the browser's audio still gets
        /// through unless the leg ended with an error str0m reported (a typed end).
        #[test]
        fn any_datagram_is_dropped_or_handled_never_a_panic(
            datagrams in proptest::collection::vec(
                (any::<bool>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..1300)),
                1..40,
            ),
        ) {
            let mut pair = Pair::connected();
            let mut failed = false;
            for (spoofed, first, mut bytes) in datagrams {
                // Steer the first byte into each of the kinds a leg sorts.
                if let Some(b) = bytes.first_mut() {
                    *b = [first, 0x00, 0x01, 22, 23, 0x80, 0x81, 0x90][usize::from(first % 8)];
                }
                let source = if spoofed { BROWSER } else { STRANGER };
                match admit(&pair.leg, pair.now, source, LEG, &bytes) {
                    Admit::Peer(input) => {
                        prop_assert!(spoofed, "a stranger's datagram was taken");
                        if pair.leg.handle_input(input).is_err() {
                            failed = true;
                            break;
                        }
                        if drain(&mut pair.leg, Some(&mut pair.got)).is_err() {
                            failed = true;
                            break;
                        }
                    }
                    Admit::Garbage | Admit::Foreign => {}
                }
            }
            if !failed {
                prop_assert!(pair.frame_gets_through(&[0x33; 160], 320));
            }
        }
    }
}
