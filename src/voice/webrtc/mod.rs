//! The operator's leg: the browser's WebRTC peer connection, terminated by vakt itself.
//!
//! The console answers a voice call in the browser. The browser makes an SDP offer for one
//! audio track (its microphone, the operator's headset) and the console's signalling hands it
//! to [`WebRtc::answer`], which answers as an ICE-lite peer with host candidates, DTLS-SRTP,
//! and one G.711 law, and returns the answer with a [`BrowserLeg`]: G.711 frames from the
//! browser, a sender for frames to it, mute, stats and the leg's end. The voice core relays
//! the frames between this leg and the caller's RTP leg as they are: no transcoding.
//!
//! # Calling it (for the signalling and the voice core)
//!
//! ```text
//! browser                          console signalling                 voice core
//! pc = new RTCPeerConnection()
//! pc.addTrack(mic track)
//! offer = await pc.createOffer()
//! await pc.setLocalDescription(offer)
//! send offer.sdp ───────────────▶ webrtc.answer(&sdp, law of the caller's leg)
//!                                   Err(NoG711 | BadOffer)  → 4xx to the browser, nothing kept
//!                                   Err(PortsExhausted | Bind | Internal) → 503 / 500
//!                                   Ok(Answered { sdp, leg }) ──────────▶ relay with `leg`
//! pc.setRemoteDescription(
//!   {type: "answer", sdp}) ◀────── sdp
//! ICE checks, DTLS, SRTP ◀──────────────────────────────────────────▶ the leg's UDP port
//! ```
//!
//! - The offer need not wait for the browser's ICE candidates (no trickle either way): vakt
//!   is ICE-lite, the browser checks vakt's candidates (all in the answer) and vakt learns the
//!   browser's address from those checks. [`WebRtcOptions::connect_timeout_secs`] bounds how
//!   long vakt waits for them.
//! - The answer holds exactly one codec: the law of the caller's leg ([`G711`], `prefer`)
//!   when the browser offers it, else the other law (the leg says which: [`BrowserLeg::codec`];
//!   the voice core then converts, A-law and μ-law map byte to byte), else the offer is
//!   refused with [`WebRtcError::NoG711`]. Chrome and Firefox offer both (with opus, G.722,
//!   telephone-event), so in practice frames pass through unchanged.
//! - From the browser: [`BrowserLeg::recv`] yields [`BrowserFrame`]s (the G.711 payload as
//!   the browser sent it, its RTP timestamp and sequence number extended to 64 bits, the
//!   arrival instant) until the leg ends (`None`). They come as they arrive, in order: a gap
//!   is not waited for (the timestamps say where the next frame belongs), and a frame that
//!   arrives after a later one is dropped and stays counted lost. At most
//!   [`FRAMES_BUFFERED`] wait; beyond that a frame is dropped and counted, so a slow consumer
//!   never holds up the leg.
//! - To the browser: [`LegHandle::send`] takes one frame of G.711 payload (20 ms = 160 bytes;
//!   at most [`MAX_FRAME_BYTES`]) and never waits: before the browser is connected, or beyond
//!   [`FRAMES_BUFFERED`] waiting, the frame is dropped and counted. The leg numbers and stamps
//!   the frames itself (the timestamp advances by the payload's length, 8 kHz).
//! - Mute: [`LegHandle::set_muted`]. While muted, the operator's audio is not passed on: each
//!   frame from the browser is delivered as G.711 silence of the same length (flagged
//!   [`BrowserFrame::muted`]), so the caller's leg and the recording keep their timing.
//! - The end: [`LegHandle::end`] (or dropping the [`BrowserLeg`]) closes the connection
//!   (DTLS close_notify, so the browser sees it at once) and frees the port. The browser's
//!   side ends it by closing the peer connection, or by going silent: nothing heard for
//!   [`WebRtcOptions::idle_timeout_secs`] (ICE consent checks come every few seconds even
//!   when the microphone is muted). [`LegHandle::ended`] waits for it and says why
//!   ([`LegEnd`]). The port is given back when the leg's task has ended.
//! - Stats: [`LegHandle::stats`] ([`LegStats`]: packets, loss and jitter each way, frames
//!   dropped, datagrams refused); the same go to `vakt_webrtc_*` metrics without per-leg
//!   labels.
//!
//! # How it is built
//!
//! [str0m](https://github.com/algesten/str0m) is the WebRTC stack: sans-IO like vakt's codecs,
//! one `Rtc` per leg driven by a tokio task that owns the leg's UDP socket. The task follows
//! str0m's contract: one input (a datagram, a timeout, a frame to send) and then a complete
//! drain of `poll_output` to the next timeout. A datagram is taken only when it parses as
//! STUN, DTLS, RTP or RTCP and str0m's `accepts` says it is the negotiated peer's (the
//! nominated address, or a STUN message with this leg's ICE credentials); anything else is
//! dropped and counted before str0m's state is touched, so a flood of garbage costs a parse
//! each. SRTP keys come from the DTLS handshake with the fingerprint the browser's offer
//! announced, so only that browser can send audio into the leg.
//!
//! Crypto: a str0m crypto provider of vakt's own ([`crypto_provider`], `crypto.rs`) made of
//! RustCrypto primitives (the family DC-09's AES and HMAC come from), dimpl's DTLS on its
//! RustCrypto provider, and certificates from `rcgen` on `ring` (vakt's TLS provider), set
//! explicitly on every `Rtc` rather than as a process default. Not str0m's `aws-lc-rs`
//! (its default) or `openssl`, which bring a second C crypto library; and not its
//! `rust-crypto` feature as is, which in str0m 0.23 / dimpl 0.7 compiles AWS-LC all the same
//! and then runs the DTLS handshake on it (`crypto.rs` has the details). The provider is
//! glue only: the SRTP and STUN protocol logic is str0m's, the primitives RustCrypto's.

mod crypto;
mod leg;
mod negotiate;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use str0m::crypto::CryptoProvider;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::telemetry::WebRtcMetrics;

pub use negotiate::MAX_OFFER_BYTES;

/// Frames waiting in each direction (1 s of 20 ms frames); beyond, frames are dropped.
pub const FRAMES_BUFFERED: usize = 50;

/// The longest frame taken for the browser (60 ms of G.711).
pub const MAX_FRAME_BYTES: usize = 480;

/// The G.711 law of a leg (ITU-T G.711; RTP/AVP static payload types, RFC 3551).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum G711 {
    /// μ-law, PCMU, payload type 0.
    Pcmu,
    /// A-law, PCMA, payload type 8.
    Pcma,
}

impl G711 {
    /// The static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    /// The other law.
    pub fn other(self) -> G711 {
        match self {
            G711::Pcmu => G711::Pcma,
            G711::Pcma => G711::Pcmu,
        }
    }

    /// The code of silence (zero amplitude) in this law: μ-law 0xFF, A-law 0xD5.
    pub fn silence(self) -> u8 {
        match self {
            G711::Pcmu => 0xFF,
            G711::Pcma => 0xD5,
        }
    }

    /// The SDP encoding name.
    pub fn as_str(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }
}

/// Where and how the browsers' legs listen (to be the `[voice]` section's WebRTC keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcOptions {
    /// The address the legs' UDP sockets bind to. A concrete address is also a host candidate
    /// in every answer; the unspecified address (`0.0.0.0`, `::`) needs `public_addr`. The
    /// default, 127.0.0.1, serves a browser on the same machine only: set the address the
    /// operators' browsers reach.
    pub bind_addr: IpAddr,
    /// The first UDP port of the legs' range.
    pub port_min: u16,
    /// The last UDP port of the range (inclusive). The range is the cap on legs at once.
    pub port_max: u16,
    /// An address the browsers reach vakt at when it is not `bind_addr` (a 1:1 NAT, a load
    /// balancer passing UDP through), announced as another host candidate with the same port.
    pub public_addr: Option<IpAddr>,
    /// How long, in seconds, the browser has from the answer to connect (ICE and DTLS done).
    pub connect_timeout_secs: u32,
    /// A connected leg whose browser sends nothing (no audio, no ICE consent check, no RTCP)
    /// for this many seconds has ended.
    pub idle_timeout_secs: u32,
}

impl Default for WebRtcOptions {
    fn default() -> Self {
        WebRtcOptions {
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 18_384,
            port_max: 18_583,
            public_addr: None,
            connect_timeout_secs: 20,
            idle_timeout_secs: 15,
        }
    }
}

impl WebRtcOptions {
    /// Checks the options: a non-empty range of non-zero ports, an address for the host
    /// candidate, non-zero timeouts.
    pub fn validate(&self) -> Result<(), WebRtcError> {
        let bad = |why: &str| Err(WebRtcError::Options(why.to_string()));
        if self.port_min == 0 || self.port_min > self.port_max {
            return bad("port_min must be at least 1 and at most port_max");
        }
        if self.bind_addr.is_unspecified() && self.public_addr.is_none() {
            return bad("an unspecified bind_addr needs public_addr for the host candidate");
        }
        if self.public_addr.is_some_and(|a| a.is_unspecified()) {
            return bad("public_addr must be an address browsers can reach");
        }
        if self.connect_timeout_secs == 0 || self.idle_timeout_secs == 0 {
            return bad("connect_timeout_secs and idle_timeout_secs must be at least 1");
        }
        Ok(())
    }
}

/// Why a browser's offer got no leg, or the legs cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// The offer has no G.711 (PCMU or PCMA) audio: the browser's fault, refused.
    #[error("the offer has no G.711 audio (PCMU or PCMA)")]
    NoG711,
    /// The offer is not a usable WebRTC offer (not SDP, no fingerprint, too long ...): the
    /// browser's fault, refused.
    #[error("unusable offer: {0}")]
    BadOffer(String),
    /// Every port of the range is taken: vakt is at its cap of legs.
    #[error("every UDP port of {first}..={last} is taken")]
    PortsExhausted {
        /// The range's first port.
        first: u16,
        /// The range's last port.
        last: u16,
    },
    /// The leg's socket cannot be bound (`bind_addr` is not this host's): vakt's.
    #[error("cannot bind the leg's UDP socket: {0}")]
    Bind(std::io::Error),
    /// The options are inconsistent: vakt's configuration.
    #[error("webrtc options: {0}")]
    Options(String),
    /// Something of vakt's own failed (no runtime, no certificate): vakt's.
    #[error("internal: {0}")]
    Internal(String),
}

impl WebRtcError {
    /// A stable name, for the `result` label of `vakt_webrtc_offers_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WebRtcError::NoG711 => "no_g711",
            WebRtcError::BadOffer(_) => "bad_offer",
            WebRtcError::PortsExhausted { .. } => "ports_exhausted",
            WebRtcError::Bind(_) | WebRtcError::Options(_) | WebRtcError::Internal(_) => "failed",
        }
    }
}

/// Why a leg ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegEnd {
    /// The browser closed the connection (DTLS close_notify).
    Closed,
    /// The browser did not connect (ICE and DTLS) within the connect timeout.
    ConnectTimeout,
    /// Nothing came from the connected browser for the idle timeout.
    Idle,
    /// ICE lost the browser (no consent check for 15 s).
    IceDisconnected,
    /// DTLS or SRTP failed (a wrong fingerprint, a broken handshake).
    Failed,
    /// vakt ended it ([`LegHandle::end`], or the [`BrowserLeg`] was dropped).
    Ended,
    /// The leg's socket failed, or its task stopped unexpectedly.
    Internal,
}

impl LegEnd {
    /// A stable name, for the `reason` label of `vakt_webrtc_legs_ended_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            LegEnd::Closed => "closed",
            LegEnd::ConnectTimeout => "connect_timeout",
            LegEnd::Idle => "idle",
            LegEnd::IceDisconnected => "ice_disconnected",
            LegEnd::Failed => "failed",
            LegEnd::Ended => "ended",
            LegEnd::Internal => "internal",
        }
    }
}

/// One frame of the operator's audio, as the browser sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserFrame {
    /// The G.711 payload in the leg's law ([`BrowserLeg::codec`]); silence while muted.
    pub payload: Arc<[u8]>,
    /// The RTP timestamp (8 kHz), extended to 64 bits across wraps.
    pub timestamp: u64,
    /// The RTP sequence number, extended to 64 bits across wraps.
    pub seq: u64,
    /// When the datagram was read from the socket.
    pub received: Instant,
    /// The leg was muted: `payload` is silence, not what the browser sent.
    pub muted: bool,
}

/// A leg's counters and RTP statistics, as str0m reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegStats {
    /// ICE and DTLS are done: audio can flow.
    pub connected: bool,
    /// RTP packets (frames) received from the browser.
    pub packets_in: u64,
    /// RTP packets sent to the browser.
    pub packets_out: u64,
    /// Packets from the browser that never came (gaps in its sequence numbers).
    pub lost_in: u64,
    /// Packets to the browser it says it lost (its RTCP receiver reports).
    pub lost_out: u64,
    /// Interarrival jitter of the browser's packets (RFC 3550), as of the last report.
    pub jitter_in: Duration,
    /// The jitter the browser reports for vakt's packets.
    pub jitter_out: Duration,
    /// Frames from the browser dropped because the consumer had [`FRAMES_BUFFERED`] waiting.
    pub dropped_in: u64,
    /// Frames for the browser dropped: not connected yet, or [`FRAMES_BUFFERED`] waiting.
    pub dropped_out: u64,
    /// Datagrams that are not STUN, DTLS, RTP or RTCP.
    pub garbage: u64,
    /// Datagrams that are, but not from the negotiated peer.
    pub foreign: u64,
}

/// Why a frame was not taken for the browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The payload is empty or longer than [`MAX_FRAME_BYTES`].
    #[error("a frame is 1 to {MAX_FRAME_BYTES} bytes")]
    BadLength,
    /// [`FRAMES_BUFFERED`] frames wait already: this one is dropped (and counted).
    #[error("the leg is behind; frame dropped")]
    Full,
    /// The leg has ended.
    #[error("the leg has ended")]
    Ended,
}

/// What the leg's task and its handles share.
struct Shared {
    codec: G711,
    muted: AtomicBool,
    stats: Mutex<LegStats>,
    end: watch::Sender<Option<LegEnd>>,
    metrics: WebRtcMetrics,
}

impl Shared {
    fn stats_mut(&self) -> std::sync::MutexGuard<'_, LegStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The browsers' legs: options, the port range, the crypto provider. One per server, shared
/// by the console's signalling.
pub struct WebRtc {
    opts: WebRtcOptions,
    ports: Arc<crate::voice::ports::PortPool>,
    crypto: Arc<CryptoProvider>,
    metrics: WebRtcMetrics,
}

impl std::fmt::Debug for WebRtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtc")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// The crypto provider of every leg (see the module doc); also for a str0m peer in tests.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(crypto::provider())))
}

/// A leg, answered: the SDP answer for the browser and the leg.
#[derive(Debug)]
pub struct Answered {
    /// The SDP answer (`pc.setRemoteDescription({type: "answer", sdp})`).
    pub sdp: String,
    /// The leg.
    pub leg: BrowserLeg,
}

impl WebRtc {
    /// Checks the options and sets up the port range.
    pub fn new(opts: WebRtcOptions) -> Result<WebRtc, WebRtcError> {
        opts.validate()?;
        Ok(WebRtc {
            ports: crate::voice::ports::PortPool::singles(opts.port_min, opts.port_max)
                .ok_or_else(|| {
                    WebRtcError::Options(format!(
                        "the port range {}..={} is empty",
                        opts.port_min, opts.port_max
                    ))
                })?,
            opts,
            crypto: crypto_provider(),
            metrics: WebRtcMetrics::new(),
        })
    }

    /// How many legs hold a port now.
    pub fn legs(&self) -> usize {
        self.ports.leased()
    }

    /// Answers a browser's SDP `offer` with one G.711 law, `prefer` (the caller's leg's)
    /// when offered, and starts the leg on a port of the range. Must be called within a
    /// tokio runtime (the leg's task is spawned on it).
    pub fn answer(&self, offer: &str, prefer: G711) -> Result<Answered, WebRtcError> {
        let result = self.try_answer(offer, prefer);
        match &result {
            Ok(_) => self.metrics.offer("answered"),
            Err(e) => {
                self.metrics.offer(e.as_str());
                tracing::debug!(error = %e, "browser offer not answered");
            }
        }
        result
    }

    fn try_answer(&self, offer: &str, prefer: G711) -> Result<Answered, WebRtcError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| WebRtcError::Internal("no tokio runtime".to_string()))?;
        let (socket, lease) = self
            .ports
            .bind_one(self.opts.bind_addr)
            .map_err(|e| match e {
                crate::voice::ports::PortError::Exhausted { first, last } => {
                    WebRtcError::PortsExhausted { first, last }
                }
                crate::voice::ports::PortError::Bind(e) => WebRtcError::Bind(e),
            })?;
        let port = socket.local_addr().map_err(WebRtcError::Bind)?.port();
        let mut candidates = Vec::with_capacity(2);
        if !self.opts.bind_addr.is_unspecified() {
            candidates.push(SocketAddr::new(self.opts.bind_addr, port));
        }
        if let Some(public) = self.opts.public_addr.filter(|p| *p != self.opts.bind_addr) {
            candidates.push(SocketAddr::new(public, port));
        }
        // Where str0m is told the datagrams arrive: the bound address, or with an
        // unspecified bind the public one (validate() makes sure there is one).
        let Some(&destination) = candidates.first() else {
            return Err(WebRtcError::Options("no candidate address".to_string()));
        };
        let cert = self
            .crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| WebRtcError::Internal("no DTLS certificate".to_string()))?;
        let now = Instant::now();
        let negotiated =
            negotiate::negotiate(offer, prefer, &candidates, &self.crypto, &cert, now)?;
        socket.set_nonblocking(true).map_err(WebRtcError::Bind)?;
        let socket = {
            let _entered = runtime.enter();
            tokio::net::UdpSocket::from_std(socket).map_err(WebRtcError::Bind)?
        };

        let (frames_tx, frames_rx) = mpsc::channel(FRAMES_BUFFERED);
        let (out_tx, out_rx) = mpsc::channel(FRAMES_BUFFERED);
        let stop = CancellationToken::new();
        let (end, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            codec: negotiated.codec,
            muted: AtomicBool::new(false),
            stats: Mutex::new(LegStats::default()),
            end,
            metrics: self.metrics.clone(),
        });
        let answer = negotiated.answer.clone();
        let codec = negotiated.codec;
        let task = leg::Task {
            negotiated,
            socket,
            lease,
            destination,
            connect_timeout: Duration::from_secs(u64::from(self.opts.connect_timeout_secs)),
            idle_timeout: Duration::from_secs(u64::from(self.opts.idle_timeout_secs)),
            frames: frames_tx,
            out: out_rx,
            stop: stop.clone(),
            shared: Arc::clone(&shared),
            started: now,
        };
        runtime.spawn(task.run());
        let handle = LegHandle {
            out: out_tx,
            stop: stop.clone(),
            shared,
        };
        Ok(Answered {
            sdp: answer,
            leg: BrowserLeg {
                codec,
                local: SocketAddr::new(self.opts.bind_addr, port),
                frames: frames_rx,
                handle,
                _guard: stop.drop_guard(),
            },
        })
    }
}

/// A browser's leg: its frames, and (through [`BrowserLeg::handle`]) sending, mute, stats and
/// the end. Dropping it ends the leg.
pub struct BrowserLeg {
    codec: G711,
    local: SocketAddr,
    frames: mpsc::Receiver<BrowserFrame>,
    handle: LegHandle,
    _guard: DropGuard,
}

impl std::fmt::Debug for BrowserLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserLeg")
            .field("codec", &self.codec)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl BrowserLeg {
    /// The G.711 law of the leg, both ways.
    pub fn codec(&self) -> G711 {
        self.codec
    }

    /// The leg's UDP socket address (the bound address and port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next frame from the browser; `None` once the leg has ended.
    pub async fn recv(&mut self) -> Option<BrowserFrame> {
        self.frames.recv().await
    }

    /// A handle for sending, mute, stats and the end; clones freely (it does not keep the leg
    /// alive).
    pub fn handle(&self) -> LegHandle {
        self.handle.clone()
    }
}

/// Sends to the browser and controls the leg.
#[derive(Clone)]
pub struct LegHandle {
    out: mpsc::Sender<Arc<[u8]>>,
    stop: CancellationToken,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LegHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegHandle")
            .field("codec", &self.shared.codec)
            .finish_non_exhaustive()
    }
}

impl LegHandle {
    /// Queues one frame of G.711 payload (in the leg's law) for the browser; never waits.
    pub fn send(&self, payload: impl Into<Arc<[u8]>>) -> Result<(), SendError> {
        let payload = payload.into();
        if payload.is_empty() || payload.len() > MAX_FRAME_BYTES {
            return Err(SendError::BadLength);
        }
        if self.stop.is_cancelled() || self.end_reason().is_some() {
            return Err(SendError::Ended);
        }
        match self.out.try_send(payload) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.stats_mut().dropped_out += 1;
                self.shared.metrics.frame_dropped_out();
                Err(SendError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Ended),
        }
    }

    /// Mutes (or unmutes) the operator: while muted, frames from the browser are delivered as
    /// silence.
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Whether the operator is muted.
    pub fn is_muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    /// Ends the leg: the browser is told (DTLS close_notify) and the port is freed.
    pub fn end(&self) {
        self.stop.cancel();
    }

    /// The leg's counters and RTP statistics now.
    pub fn stats(&self) -> LegStats {
        self.shared.stats_mut().clone()
    }

    /// Why the leg ended, once it has.
    pub fn end_reason(&self) -> Option<LegEnd> {
        *self.shared.end.borrow()
    }

    /// Waits for the leg to end and says why.
    pub async fn ended(&self) -> LegEnd {
        let mut rx = self.shared.end.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(end) => end.unwrap_or(LegEnd::Internal),
            // The sender lives in `shared`, which this handle holds: not reached.
            Err(_) => LegEnd::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_options_are_valid_and_the_bad_ones_are_not() {
        WebRtcOptions::default().validate().unwrap();
        let bad = [
            WebRtcOptions {
                port_min: 0,
                ..WebRtcOptions::default()
            },
            WebRtcOptions {
                port_min: 41_001,
                port_max: 41_000,
                ..WebRtcOptions::default()
            },
            WebRtcOptions {
                bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                ..WebRtcOptions::default()
            },
            WebRtcOptions {
                public_addr: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                ..WebRtcOptions::default()
            },
            WebRtcOptions {
                idle_timeout_secs: 0,
                ..WebRtcOptions::default()
            },
        ];
        for opts in bad {
            assert!(
                matches!(opts.validate(), Err(WebRtcError::Options(_))),
                "{opts:?}"
            );
        }
        let behind_nat = WebRtcOptions {
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            public_addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
            ..WebRtcOptions::default()
        };
        behind_nat.validate().unwrap();
    }

    #[test]
    fn the_options_read_from_toml_and_refuse_unknown_keys() {
        let opts: WebRtcOptions = toml::from_str(
            "bind_addr = \"192.0.2.5\"\nport_min = 50000\nport_max = 50009\npublic_addr = \"198.51.100.7\"\n",
        )
        .unwrap();
        assert_eq!(opts.port_max, 50_009);
        assert_eq!(
            opts.idle_timeout_secs,
            WebRtcOptions::default().idle_timeout_secs
        );
        assert!(toml::from_str::<WebRtcOptions>("port_mni = 1\n").is_err());
    }

    #[test]
    fn the_laws_have_their_payload_types_and_silences() {
        assert_eq!(G711::Pcmu.payload_type(), 0);
        assert_eq!(G711::Pcma.payload_type(), 8);
        assert_eq!(G711::Pcmu.other(), G711::Pcma);
        // Silence is the code of zero amplitude: μ-law 0xFF is +0; A-law 0xD5 is +1 of 4096
        // (0x55 with the sign bit, the smallest positive step; A-law has no exact zero).
        assert_eq!(G711::Pcmu.silence(), 0xFF);
        assert_eq!(G711::Pcma.silence(), 0xD5);
    }
}
