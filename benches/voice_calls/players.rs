//! The two ends of a call, played for the benchmark: the alarm unit's RTP (one task per
//! call, a plain UDP socket sending a frame every 20 ms to vakt's RTP port and reading what
//! the relay sends back) and the operator's browser (one task per call, a str0m peer that
//! offers PCMA only, so vakt passes the unit's A-law frames through untouched, and sends a
//! frame every 20 ms once connected).
//!
//! Every frame says which call and which frame it is, whether it was sent inside the
//! measured window, and when it was sent ([`Frame`]); the receiving end counts it against
//! its own call, times it (HDR histogram, µs) and notices a frame of another call, a frame
//! out of order, or one changed on the way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vakt::voice::webrtc::crypto_provider;
use vakt_proto::rtp::{self, Header};

/// 20 ms of G.711.
pub const FRAME_BYTES: usize = 160;
/// The first bytes of every frame the players send.
const MAGIC: &[u8; 4] = b"VKTB";

/// What one frame carries in its first 21 bytes; the rest is a fixed pattern checked at the
/// other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The call (its index in the step).
    pub call: u32,
    /// The frame's number on its leg.
    pub seq: u32,
    /// Sent inside the measured window.
    pub measured: bool,
    /// Sent at this many nanoseconds after the step's epoch.
    pub sent_ns: u64,
}

impl Frame {
    /// The 160 bytes of the frame.
    pub fn write(&self, out: &mut [u8; FRAME_BYTES]) {
        out[..4].copy_from_slice(MAGIC);
        out[4..8].copy_from_slice(&self.call.to_be_bytes());
        out[8..12].copy_from_slice(&self.seq.to_be_bytes());
        out[12] = u8::from(self.measured);
        out[13..21].copy_from_slice(&self.sent_ns.to_be_bytes());
        for (i, b) in out[21..].iter_mut().enumerate() {
            *b = filler(i);
        }
    }

    /// The frame in `payload`: `None` for what the players did not send (vakt's ringback or
    /// silence); `Some(Err(()))` for a frame of theirs that was changed on the way.
    pub fn read(payload: &[u8]) -> Option<Result<Frame, ()>> {
        if payload.get(..4)? != MAGIC {
            return None;
        }
        let intact = payload.len() == FRAME_BYTES
            && payload[21..]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == filler(i));
        if !intact {
            return Some(Err(()));
        }
        let u32_at = |i: usize| {
            u32::from_be_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]])
        };
        let mut ns = [0u8; 8];
        ns.copy_from_slice(&payload[13..21]);
        Some(Ok(Frame {
            call: u32_at(4),
            seq: u32_at(8),
            measured: payload[12] == 1,
            sent_ns: u64::from_be_bytes(ns),
        }))
    }
}

fn filler(i: usize) -> u8 {
    (i as u8).wrapping_mul(37) ^ 0x55
}

/// One direction's counts, over all calls.
#[derive(Default)]
pub struct Leg {
    /// Frames sent inside the measured window.
    pub sent: AtomicU64,
    /// Of those, received at their own call's other end.
    pub received: AtomicU64,
    /// Frames (of any time) that arrived at another call: never expected.
    pub crossed: AtomicU64,
    /// Frames whose bytes were changed on the way: never expected.
    pub changed: AtomicU64,
    /// Frames that came after a later one (or twice).
    pub out_of_order: AtomicU64,
    /// Frames sent in all (for the rate the players managed).
    pub sent_all: AtomicU64,
}

/// What all players share: the clock, the window, the counts each way.
pub struct Shared {
    /// The step's epoch: frames carry their send time relative to it.
    pub epoch: Instant,
    /// Frames sent now are inside the measured window.
    pub measuring: AtomicBool,
    /// The unit to the browser.
    pub to_browser: Leg,
    /// The browser to the unit.
    pub to_unit: Leg,
    /// Browsers connected (ICE and DTLS done).
    pub connected: AtomicU64,
    /// Browsers whose connection vakt closed or ICE lost.
    pub closed: AtomicU64,
}

impl Shared {
    /// A fresh set of counts.
    pub fn new() -> Shared {
        Shared {
            epoch: Instant::now(),
            measuring: AtomicBool::new(false),
            to_browser: Leg::default(),
            to_unit: Leg::default(),
            connected: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    fn frame(&self, call: u32, seq: u32) -> Frame {
        Frame {
            call,
            seq,
            measured: self.measuring.load(Ordering::Relaxed),
            sent_ns: self.epoch.elapsed().as_nanos() as u64,
        }
    }

    fn sent(&self, leg: &Leg, f: &Frame) {
        leg.sent_all.fetch_add(1, Ordering::Relaxed);
        if f.measured {
            leg.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a payload received at call `call`'s end of `leg` at `at`; a measured frame's
    /// latency goes into `hist` (µs).
    fn received(
        &self,
        leg: &Leg,
        call: u32,
        payload: &[u8],
        at: Instant,
        last: &mut Option<u32>,
        hist: &mut Histogram<u64>,
    ) {
        let f = match Frame::read(payload) {
            None => return,
            Some(Err(())) => {
                leg.changed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(Ok(f)) => f,
        };
        if f.call != call {
            leg.crossed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if last.is_some_and(|l| f.seq <= l) {
            leg.out_of_order.fetch_add(1, Ordering::Relaxed);
        } else {
            *last = Some(f.seq);
        }
        if f.measured {
            leg.received.fetch_add(1, Ordering::Relaxed);
            let sent = self.epoch + Duration::from_nanos(f.sent_ns);
            let us = at.saturating_duration_since(sent).as_micros().max(1) as u64;
            hist.saturating_record(us);
        }
    }
}

/// A histogram of latencies in µs, 1 µs to 10 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000, 2).expect("valid bounds")
}

/// Every 20 ms, starting at a point of the period that depends on `call`, so the calls'
/// packets are spread over it as independent units' would be.
fn ticker(call: u32) -> tokio::time::Interval {
    let period = Duration::from_millis(20);
    let offset =
        Duration::from_micros(u64::from(call % 20) * 1_000 + u64::from(call / 20 % 10) * 97);
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

/// The alarm unit's media for call `call`: sends to `vakt` (its RTP port, from the `200 OK`)
/// from `socket` until `stop`; returns the latencies of the browser's frames it received.
pub fn unit(
    socket: UdpSocket,
    vakt: SocketAddr,
    call: u32,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> JoinHandle<Histogram<u64>> {
    tokio::spawn(async move {
        let mut hist = histogram();
        let mut tick = ticker(call);
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(200);
        let mut payload = [0u8; FRAME_BYTES];
        let mut last = None;
        let ssrc = 0x5500_0000 | call;
        let mut seq: u32 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let f = shared.frame(call, seq);
                    f.write(&mut payload);
                    out.clear();
                    let header = Header {
                        marker: seq == 0,
                        payload_type: 8,
                        sequence: seq as u16,
                        timestamp: seq.wrapping_mul(FRAME_BYTES as u32),
                        ssrc,
                    };
                    if header.write(&payload, &mut out).is_ok()
                        && socket.try_send_to(&out, vakt).is_ok()
                    {
                        shared.sent(&shared.to_browser, &f);
                    }
                    seq += 1;
                }
                r = socket.recv_from(&mut buf) => {
                    let at = Instant::now();
                    let Ok((n, _)) = r else { continue };
                    let Ok(p) = rtp::parse(&buf[..n]) else { continue };
                    if p.header.payload_type == 8 {
                        shared.received(&shared.to_unit, call, p.payload, at, &mut last, &mut hist);
                    }
                }
                () = stop.cancelled() => return hist,
            }
        }
    })
}

/// The operator's browser, offering: a str0m peer (full ICE, the offerer) on 127.0.0.1.
pub struct Browser {
    rtc: Rtc,
    socket: UdpSocket,
    pending: SdpPendingOffer,
    mid: Mid,
}

impl Browser {
    /// A browser offering PCMA audio, and its SDP offer.
    pub async fn offer() -> std::io::Result<(Browser, String)> {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
        let local = socket.local_addr()?;
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crypto_provider())
            .clear_codecs()
            .enable_pcma(true)
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(std::io::Error::other)?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| std::io::Error::other("no offer"))?;
        let sdp = offer.to_sdp_string();
        Ok((
            Browser {
                rtc,
                socket,
                pending,
                mid,
            },
            sdp,
        ))
    }

    /// Takes vakt's answer and runs the browser for call `call` until `stop`: once
    /// connected it sends a frame every 20 ms; returns the latencies of the unit's frames it
    /// received.
    pub fn run(
        mut self,
        answer: &str,
        call: u32,
        shared: Arc<Shared>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<Histogram<u64>>, String> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| e.to_string())?;
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, answer)
            .map_err(|e| e.to_string())?;
        Ok(tokio::spawn(drive(
            self.rtc,
            self.socket,
            self.mid,
            call,
            shared,
            stop,
        )))
    }
}

/// The browser's loop: str0m's contract (feed one input, then drain its output to the next
/// timeout), a frame every 20 ms once connected.
async fn drive(
    mut rtc: Rtc,
    socket: UdpSocket,
    mid: Mid,
    call: u32,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Histogram<u64> {
    let mut hist = histogram();
    let Ok(local) = socket.local_addr() else {
        return hist;
    };
    let mut buf = vec![0u8; 2048];
    let mut tick = ticker(call);
    let mut payload = [0u8; FRAME_BYTES];
    let mut last = None;
    let mut pt = None;
    let mut seq: u32 = 0;
    let mut closed = false;
    loop {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        pt = rtc
                            .writer(mid)
                            .and_then(|w| w.payload_params().next().map(|p| p.pt()));
                        shared.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::MediaData(d) => {
                        shared.received(
                            &shared.to_browser,
                            call,
                            &d.data,
                            d.network_time,
                            &mut last,
                            &mut hist,
                        );
                    }
                    Event::Closed
                    | Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                        if !closed =>
                    {
                        closed = true;
                        shared.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                },
                Err(_) => {
                    shared
                        .closed
                        .fetch_add(u64::from(!closed), Ordering::Relaxed);
                    return hist;
                }
            }
        };
        if !rtc.is_alive() {
            return hist;
        }
        let now = Instant::now();
        if timeout <= now {
            let _ = rtc.handle_input(Input::Timeout(now));
            continue;
        }
        let wake = tokio::time::Instant::from_std(timeout.min(now + Duration::from_millis(100)));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                let now = Instant::now();
                if let Ok(receive) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    let _ = rtc.handle_input(Input::Receive(now, receive));
                }
            }
            _ = tick.tick() => {
                let Some(p) = pt else { continue };
                let Some(writer) = rtc.writer(mid) else { continue };
                let f = shared.frame(call, seq);
                f.write(&mut payload);
                let at = MediaTime::new(u64::from(seq) * FRAME_BYTES as u64, Frequency::EIGHT_KHZ);
                if writer.write(p, Instant::now(), at, payload.to_vec()).is_ok() {
                    shared.sent(&shared.to_unit, &f);
                }
                seq += 1;
            }
            () = tokio::time::sleep_until(wake) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
            () = stop.cancelled() => return hist,
        }
    }
}
