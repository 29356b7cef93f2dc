//! The relay: one task per call that joins the unit's [`SipLeg`] with the operator's side
//! ([`OperatorLeg`]), feeds the recording, plays silence, ringing and the hold tone, sends
//! the DTMF commands, and ends with a reason. [`Relay`] is its handle.
//!
//! The task waits on its RTP socket, the operator's frames, its commands and one timer, and
//! does the work of each as it comes: a packet in is relayed before the next is read, so the
//! relay adds no buffering of its own (its latency is a socket read, a table look-up and a
//! send). The timer is the earliest of: the next generated frame or event packet, the
//! moment the operator's frames are late enough to fill with silence, the unit's
//! inactivity, and the once-a-second metrics.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vakt_proto::g711::Law;
use vakt_proto::rtp::{self, TICK_MS};
use vakt_proto::sdp::Negotiated;

use super::MediaError;
use super::inbound::{Dropped, Verdict};
use super::operator::{OperatorFrame, OperatorLeg, OperatorSendError, Transcode};
use super::sip_leg::{SipLeg, SipLegStats};
use crate::voice::record::{Channel, Packet, Tap};
use crate::voice::tone::{HOLD_HZ, ToneGen};

/// How late the operator's frames may be before the unit gets silence instead (three frame
/// times: the browser's jitter passes, a stalled or not yet connected browser does not
/// leave the unit without a stream).
pub const FILL_AFTER: Duration = Duration::from_millis(60);

/// The length of a DTMF tone, in milliseconds, that [`Relay::dtmf`] takes (protocols.md
/// §3.7: 100–500 ms per tone).
pub const DTMF_MS: std::ops::RangeInclusive<u32> = 100..=500;

/// DTMF tones that may wait to be sent.
pub const MAX_DTMF_QUEUED: usize = 8;

/// Commands that may wait for the relay's task.
const COMMANDS: usize = 32;

/// The largest datagram read (larger ones are cut and then refused as too large).
const MAX_DATAGRAM: usize = 2_048;

/// Datagrams read from the RTP socket in one turn before the task looks at the rest.
const MAX_BURST: usize = 32;

/// Longest frame taken from the operator for the unit (60 ms of G.711).
const MAX_OPERATOR_FRAME: usize = 480;

/// How often the relay's counts go to the metrics.
const UPKEEP: Duration = Duration::from_secs(1);

/// The latency histograms' range (1 µs to 1 s) and precision (two significant digits).
const LATENCY_MAX_US: u64 = 1_000_000;

/// What the unit hears before the operator's side is attached (the call rings or is in
/// early media).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyMedia {
    /// The ringing tone: 425 Hz, 1 s on, 4 s off (CEPT, ITU-T E.180), at −10 dBm0.
    Ringback,
    /// Silence (a stream of it, so the unit knows the line is alive).
    Silence,
}

/// The ringing tone of [`EarlyMedia::Ringback`].
pub fn ringback() -> ToneGen {
    ToneGen::new(HOLD_HZ, -10.0).with_cadence(Duration::from_secs(1), Duration::from_secs(4))
}

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayEnd {
    /// vakt ended it ([`Relay::end`], or every handle was dropped): the call was hung up.
    Ended,
    /// No RTP from the unit for [`super::MediaOptions::inactivity_secs`] while the session
    /// was `sendrecv`: the call is dead.
    Inactive,
    /// The operator's side ended (the browser closed or lost its connection).
    OperatorEnded,
    /// The RTP socket failed.
    Socket,
}

impl RelayEnd {
    /// Every reason (the `reason` label of `vakt_rtp_legs_ended_total`).
    pub const ALL: [RelayEnd; 4] = [
        RelayEnd::Ended,
        RelayEnd::Inactive,
        RelayEnd::OperatorEnded,
        RelayEnd::Socket,
    ];

    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayEnd::Ended => "ended",
            RelayEnd::Inactive => "inactive",
            RelayEnd::OperatorEnded => "operator_ended",
            RelayEnd::Socket => "socket",
        }
    }
}

/// The relay's added latency in one direction: from the packet's arrival (read from the
/// socket) to its departure (handed to the other side's socket or channel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Packets measured.
    pub count: u64,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The largest.
    pub max: Duration,
}

/// The relay's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayStats {
    /// The unit's leg: packets each way, drops, latching, loss and jitter.
    pub unit: SipLegStats,
    /// The person's frames handed to the operator.
    pub to_operator: u64,
    /// The person's frames the operator's side refused (behind, or a frame too long for it).
    pub to_operator_dropped: u64,
    /// Frames that came from the operator.
    pub from_operator: u64,
    /// The operator's frames not sent to the unit: on hold, during an event, while the
    /// session does not let vakt send, or out of time.
    pub from_operator_unsent: u64,
    /// Frames vakt made for the unit: silence (before the operator, or filling their gaps),
    /// ringing, the hold tone.
    pub generated: u64,
    /// DTMF tones sent whole.
    pub dtmf_sent: u64,
    /// Unit to operator.
    pub latency_to_operator: Latency,
    /// Operator to unit.
    pub latency_to_unit: Latency,
    /// An operator's side is attached.
    pub operator: bool,
    /// The operator is muted.
    pub muted: bool,
    /// The person is on hold.
    pub held: bool,
    /// A recording is fed.
    pub recording: bool,
}

/// Why a DTMF tone was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// The unit did not agree to RFC 4733 telephone-events: send it by SIP INFO.
    #[error("the call has no telephone-event; use SIP INFO")]
    NoTelephoneEvent,
    /// Not a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`).
    #[error("not a DTMF key")]
    BadKey,
    /// Not within [`DTMF_MS`].
    #[error("a DTMF tone lasts 100 to 500 ms")]
    BadDuration,
    /// [`MAX_DTMF_QUEUED`] tones wait already.
    #[error("too many DTMF tones waiting")]
    Busy,
    /// The relay has ended.
    #[error("the relay has ended")]
    Ended,
}

/// Why a command did not reach the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// Its commands queue is full (it is stuck or flooded); try again.
    #[error("the relay is busy")]
    Busy,
    /// The relay has ended.
    #[error("the relay has ended")]
    Ended,
}

enum Command<O> {
    Attach(O),
    Muted(bool),
    Held(bool),
    Dtmf { event: u8, ms: u32 },
    Update(Negotiated),
    Record(Tap),
    Stats(oneshot::Sender<RelayStats>),
}

/// What the task and the handles share.
struct Shared {
    end: watch::Sender<Option<RelayEnd>>,
    last_stats: Mutex<Option<RelayStats>>,
    takes_events: AtomicBool,
    dtmf_queued: AtomicUsize,
    local: SocketAddr,
}

/// The handle of one call's relay. Clones share it; when the last is dropped the relay
/// ends ([`RelayEnd::Ended`]).
pub struct Relay<O: OperatorLeg> {
    tx: mpsc::Sender<Command<O>>,
    stop: CancellationToken,
    shared: Arc<Shared>,
}

impl<O: OperatorLeg> Clone for Relay<O> {
    fn clone(&self) -> Self {
        Relay {
            tx: self.tx.clone(),
            stop: self.stop.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<O: OperatorLeg> std::fmt::Debug for Relay<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("local", &self.shared.local)
            .field("end", &*self.shared.end.borrow())
            .finish_non_exhaustive()
    }
}

impl<O: OperatorLeg> Relay<O> {
    /// Starts relaying `leg`: the unit hears `early` until an operator's side is attached.
    /// Must be called within a tokio runtime (the task is spawned on it).
    pub fn start(leg: SipLeg, early: EarlyMedia) -> Result<Relay<O>, MediaError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| MediaError::Internal("no tokio runtime".to_string()))?;
        let (tx, commands) = mpsc::channel(COMMANDS);
        let stop = CancellationToken::new();
        let (end, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            end,
            last_stats: Mutex::new(None),
            takes_events: AtomicBool::new(leg.takes_events()),
            dtmf_queued: AtomicUsize::new(0),
            local: leg.local_addr(),
        });
        let now = tokio::time::Instant::now().into_std();
        let law = leg.law();
        let span = tracing::debug_span!("rtp_relay", local = %leg.local_addr());
        let task = Task {
            leg,
            operator: None,
            to_operator: Transcode::new(law, law),
            to_unit: Transcode::new(law, law),
            commands,
            stop: stop.clone(),
            shared: Arc::clone(&shared),
            early,
            muted: false,
            held: false,
            tap: None,
            hold_tone: ToneGen::hold(),
            ringback: ringback(),
            pcm: Vec::with_capacity(480),
            frame: Vec::with_capacity(480),
            conv: Vec::with_capacity(MAX_DATAGRAM),
            dtmf: VecDeque::with_capacity(MAX_DTMF_QUEUED),
            tick: Some(now),
            last_operator: now,
            filling: false,
            next_upkeep: now + UPKEEP,
            counts: Counts::default(),
            reported: Reported::default(),
            latency_to_operator: histogram(),
            latency_to_unit: histogram(),
            end: None,
        };
        runtime.spawn(task.run().instrument(span));
        Ok(Relay { tx, stop, shared })
    }

    fn command(&self, c: Command<O>) -> Result<(), RelayError> {
        if self.end_reason().is_some() {
            return Err(RelayError::Ended);
        }
        self.tx.try_send(c).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RelayError::Busy,
            mpsc::error::TrySendError::Closed(_) => RelayError::Ended,
        })
    }

    /// The operator answered: their frames go to the unit and the person's to them (in
    /// their law: converted when it is not the unit's). Attaching another side ends the
    /// one attached before.
    pub fn attach(&self, operator: O) -> Result<(), RelayError> {
        self.command(Command::Attach(operator))
    }

    /// Mutes the operator (the unit gets silence in place of their frames, with the same
    /// timing; the recording too), or unmutes.
    pub fn set_muted(&self, muted: bool) -> Result<(), RelayError> {
        self.command(Command::Muted(muted))
    }

    /// Puts the person on hold (they hear the hold tone; the operator hears nothing from
    /// them, while the recording keeps both), or takes them back.
    pub fn set_held(&self, held: bool) -> Result<(), RelayError> {
        self.command(Command::Held(held))
    }

    /// Queues a DTMF tone for the unit (`key` for `duration_ms`, within [`DTMF_MS`]) as an
    /// RFC 4733 event; the voice pauses while it is sent. Without telephone-events in the
    /// session: [`DtmfError::NoTelephoneEvent`] (send SIP INFO instead).
    pub fn dtmf(&self, key: char, duration_ms: u32) -> Result<(), DtmfError> {
        let event = rtp::dtmf_event(key).ok_or(DtmfError::BadKey)?;
        if !DTMF_MS.contains(&duration_ms) {
            return Err(DtmfError::BadDuration);
        }
        if self.end_reason().is_some() {
            return Err(DtmfError::Ended);
        }
        if !self.takes_events() {
            return Err(DtmfError::NoTelephoneEvent);
        }
        if self.shared.dtmf_queued.fetch_add(1, Ordering::AcqRel) >= MAX_DTMF_QUEUED {
            self.shared.dtmf_queued.fetch_sub(1, Ordering::AcqRel);
            return Err(DtmfError::Busy);
        }
        let sent = self.command(Command::Dtmf {
            event,
            ms: duration_ms,
        });
        sent.map_err(|e| {
            self.shared.dtmf_queued.fetch_sub(1, Ordering::AcqRel);
            match e {
                RelayError::Busy => DtmfError::Busy,
                RelayError::Ended => DtmfError::Ended,
            }
        })
    }

    /// A re-INVITE's new agreement (hold or resume by the unit, new payload types, a new
    /// address).
    pub fn update(&self, negotiated: Negotiated) -> Result<(), RelayError> {
        let takes_events = negotiated.dtmf_payload_type.is_some();
        self.command(Command::Update(negotiated))?;
        self.shared
            .takes_events
            .store(takes_events, Ordering::Release);
        Ok(())
    }

    /// Feeds a recording from now on: channel 1 what comes from the unit, channel 2 what is
    /// sent to it.
    pub fn record(&self, tap: Tap) -> Result<(), RelayError> {
        self.command(Command::Record(tap))
    }

    /// Whether the session has RFC 4733 telephone-events (else DTMF goes by SIP INFO).
    pub fn takes_events(&self) -> bool {
        self.shared.takes_events.load(Ordering::Acquire)
    }

    /// The unit's RTP address on vakt's side.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The figures now (the last ones once the relay has ended).
    pub async fn stats(&self) -> RelayStats {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Stats(tx)).await.is_ok() {
            if let Ok(stats) = rx.await {
                return stats;
            }
        }
        let last = self
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        last.clone().unwrap_or_default()
    }

    /// Ends the relay (the call was hung up): the operator's side is ended, the port is
    /// given back.
    pub fn end(&self) {
        self.stop.cancel();
    }

    /// Why the relay ended, once it has.
    pub fn end_reason(&self) -> Option<RelayEnd> {
        *self.shared.end.borrow()
    }

    /// Waits for the relay to end and says why.
    pub async fn ended(&self) -> RelayEnd {
        let mut rx = self.shared.end.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(end) => end.unwrap_or(RelayEnd::Socket),
            // The sender lives in `shared`, which this handle holds: not reached.
            Err(_) => RelayEnd::Socket,
        }
    }
}

fn histogram() -> Option<Histogram<u32>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 2).ok()
}

fn latency(h: &Option<Histogram<u32>>) -> Latency {
    let Some(h) = h else {
        return Latency::default();
    };
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        count: h.len(),
        p50: Duration::from_micros(h.value_at_quantile(0.5)),
        p99: Duration::from_micros(h.value_at_quantile(0.99)),
        max: Duration::from_micros(h.max()),
    }
}

fn measure(h: &mut Option<Histogram<u32>>, from: Instant, to: Instant) {
    if let Some(h) = h {
        let us = u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX);
        h.saturating_record(us.clamp(1, LATENCY_MAX_US));
    }
}

/// The relay's own counts.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    to_operator: u64,
    to_operator_dropped: u64,
    from_operator: u64,
    from_operator_unsent: u64,
    generated: u64,
    dtmf_sent: u64,
}

/// What the metrics were last told.
#[derive(Debug, Clone, Default)]
struct Reported {
    unit: SipLegStats,
    to_operator_dropped: u64,
}

/// What feeds the unit's stream now, apart from events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Hold,
    Operator,
    Early,
}

struct Task<O: OperatorLeg> {
    leg: SipLeg,
    operator: Option<O>,
    to_operator: Transcode,
    to_unit: Transcode,
    commands: mpsc::Receiver<Command<O>>,
    stop: CancellationToken,
    shared: Arc<Shared>,
    early: EarlyMedia,
    muted: bool,
    held: bool,
    tap: Option<Tap>,
    hold_tone: ToneGen,
    ringback: ToneGen,
    /// Scratch: linear samples of a tone frame.
    pcm: Vec<i16>,
    /// Scratch: a generated or muted frame.
    frame: Vec<u8>,
    /// Scratch: a converted frame.
    conv: Vec<u8>,
    dtmf: VecDeque<(u8, u32)>,
    /// When the next generated frame or event packet is due (`None`: the operator's frames
    /// feed the stream).
    tick: Option<Instant>,
    /// The operator's last frame sent to the unit.
    last_operator: Instant,
    /// The operator's frames are late: silence goes out on the tick.
    filling: bool,
    next_upkeep: Instant,
    counts: Counts,
    reported: Reported,
    latency_to_operator: Option<Histogram<u32>>,
    latency_to_unit: Option<Histogram<u32>>,
    /// Set when something ended the relay in the middle of a turn.
    end: Option<RelayEnd>,
}

/// The operator's next frame; pending for ever without an operator.
async fn operator_recv<O: OperatorLeg>(operator: &mut Option<O>) -> Option<OperatorFrame> {
    match operator {
        Some(o) => o.recv().await,
        None => std::future::pending().await,
    }
}

/// A datagram on the RTCP port; pending for ever without one.
async fn rtcp_recv(socket: &Option<UdpSocket>, buf: &mut [u8]) -> io::Result<usize> {
    match socket {
        Some(s) => s.recv_from(buf).await.map(|(n, _)| n),
        None => std::future::pending().await,
    }
}

/// Errors of a UDP read that say nothing about the socket itself.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Hands what was sent to the unit to the recording's operator channel.
fn tap_operator(
    tap: &Option<Tap>,
    ssrc: u32,
    law: Law,
    timestamp: u32,
    payload: &[u8],
    now: Instant,
) {
    if let Some(tap) = tap {
        tap.frame(
            Channel::Operator,
            &Packet {
                law,
                ssrc,
                timestamp,
                payload,
                arrival: now,
            },
        );
    }
}

impl<O: OperatorLeg> Task<O> {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut rtcp_buf = vec![0u8; MAX_DATAGRAM];
        let sleep = tokio::time::sleep_until(self.deadline().into());
        tokio::pin!(sleep);
        let reason = loop {
            if let Some(end) = self.end {
                break end;
            }
            let deadline = tokio::time::Instant::from_std(self.deadline());
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break RelayEnd::Ended,
                () = &mut sleep => self.on_timer(now()),
                command = self.commands.recv() => match command {
                    Some(c) => self.command(c, now()),
                    None => break RelayEnd::Ended,
                },
                read = self.leg.rtp.recv_from(&mut buf) => match read {
                    Ok((n, from)) => {
                        self.datagram(from, &buf[..n.min(MAX_DATAGRAM)], now());
                        for _ in 1..MAX_BURST {
                            match self.leg.rtp.try_recv_from(&mut buf) {
                                Ok((n, from)) => self.datagram(from, &buf[..n], now()),
                                Err(e) if transient(&e) => break,
                                Err(e) => {
                                    tracing::warn!(error = %e, "RTP socket failed");
                                    self.end = Some(RelayEnd::Socket);
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) if transient(&e) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "RTP socket failed");
                        break RelayEnd::Socket;
                    }
                },
                frame = operator_recv(&mut self.operator) => match frame {
                    Some(f) => self.operator_frame(f, now()),
                    None => break RelayEnd::OperatorEnded,
                },
                read = rtcp_recv(&self.leg.rtcp, &mut rtcp_buf) => {
                    if read.is_ok() {
                        self.leg.rtcp_port += 1;
                    }
                }
            }
        };
        self.finish(reason);
    }

    /// The earliest thing the timer must wake the task for.
    fn deadline(&self) -> Instant {
        let mut d = self.next_upkeep;
        if let Some(dead) = self.leg.inbound.deadline() {
            d = d.min(dead);
        }
        if self.leg.can_send() {
            match self.tick {
                Some(t) => d = d.min(t),
                None => d = d.min(self.last_operator + FILL_AFTER),
            }
        }
        d
    }

    fn on_timer(&mut self, now: Instant) {
        if self.leg.inbound.timed_out(now) {
            self.end = Some(RelayEnd::Inactive);
            return;
        }
        if now >= self.next_upkeep {
            self.upkeep();
            self.next_upkeep = now + UPKEEP;
        }
        if !self.leg.can_send() {
            return;
        }
        match self.tick {
            Some(t) if now >= t => self.on_tick(t, now),
            Some(_) => {}
            None if now >= self.last_operator + FILL_AFTER => {
                // The operator's frames are late: silence until they come again.
                self.filling = true;
                self.on_tick(now, now);
            }
            None => {}
        }
    }

    /// The next tick after `due`, `step` later (or from `now` when the task fell behind).
    fn next_tick(due: Instant, step: Duration, now: Instant) -> Instant {
        let next = due + step;
        if next + step < now { now + step } else { next }
    }

    /// A tick that was due at `due`: an event's packet, or a generated frame.
    fn on_tick(&mut self, due: Instant, now: Instant) {
        let event_step = Duration::from_millis(u64::from(TICK_MS));
        if self.leg.out.in_event() {
            if self.leg.send_event_tick() {
                self.tick = Some(Self::next_tick(due, event_step, now));
                return;
            }
            // Over: this tick carries audio again, the next one starts a waiting event.
            self.counts.dtmf_sent += 1;
            self.leg.metrics.dtmf_sent();
            self.shared.dtmf_queued.fetch_sub(1, Ordering::AcqRel);
        } else if let Some((event, ms)) = self.dtmf.pop_front() {
            match self.leg.out.start_event(event, ms, now) {
                Ok(()) => {
                    self.leg.send_event_tick();
                    self.tick = Some(Self::next_tick(due, event_step, now));
                    return;
                }
                Err(_) => {
                    // The session lost its telephone-event meanwhile: dropped.
                    self.shared.dtmf_queued.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        let samples = self.leg.frame_samples();
        let step = Duration::from_micros(samples as u64 * 125);
        let law = self.leg.law();
        self.frame.clear();
        match self.feed() {
            Feed::Hold => self.tone(law, samples, true),
            Feed::Early if self.early == EarlyMedia::Ringback => self.tone(law, samples, false),
            Feed::Operator if !self.filling && self.dtmf.is_empty() => {
                // The operator's frames feed the stream again.
                self.tick = None;
                return;
            }
            Feed::Early | Feed::Operator => {
                self.frame.resize(samples, law.silence());
            }
        }
        let frame = std::mem::take(&mut self.frame);
        if let Some(h) = self.leg.send_generated(&frame, now) {
            self.counts.generated += 1;
            self.tap_operator(law, h.timestamp, &frame, now);
        }
        self.frame = frame;
        let step = if self.dtmf.is_empty() {
            step
        } else {
            event_step
        };
        self.tick = Some(Self::next_tick(due, step, now));
    }

    fn tone(&mut self, law: Law, samples: usize, hold: bool) {
        self.pcm.clear();
        self.pcm.resize(samples, 0);
        let tone = if hold {
            &mut self.hold_tone
        } else {
            &mut self.ringback
        };
        tone.fill(&mut self.pcm);
        law.encode_into(&self.pcm, &mut self.frame);
    }

    fn feed(&self) -> Feed {
        if self.held {
            Feed::Hold
        } else if self.operator.is_some() {
            Feed::Operator
        } else {
            Feed::Early
        }
    }

    /// Whether the operator's frames go to the unit now.
    fn operator_speaks(&self) -> bool {
        self.operator.is_some()
            && !self.held
            && !self.leg.out.in_event()
            && self.dtmf.is_empty()
            && self.leg.can_send()
    }

    /// A generated or relayed frame sent to the unit goes on the operator's channel.
    fn tap_operator(&self, law: Law, timestamp: u32, payload: &[u8], now: Instant) {
        tap_operator(&self.tap, self.leg.out.ssrc(), law, timestamp, payload, now);
    }

    fn datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let packet = match self.leg.receive(from, bytes, now) {
            Verdict::Audio(packet) => packet,
            Verdict::Event(e) => {
                tracing::trace!(
                    event = e.event,
                    end = e.end,
                    "telephone-event from the unit"
                );
                return;
            }
            Verdict::Dropped(why) => {
                tracing::trace!(reason = why.as_str(), %from, "datagram dropped");
                return;
            }
        };
        if let Some(tap) = &self.tap {
            tap.frame(
                Channel::Person,
                &Packet {
                    law: self.leg.law(),
                    ssrc: packet.header.ssrc,
                    timestamp: packet.header.timestamp,
                    payload: packet.payload,
                    arrival: now,
                },
            );
        }
        if self.held || packet.payload.is_empty() {
            return;
        }
        let Some(operator) = self.operator.as_mut() else {
            return;
        };
        let payload = self.to_operator.apply(packet.payload, &mut self.conv);
        match operator.send(payload) {
            Ok(()) => {
                self.counts.to_operator += 1;
                measure(&mut self.latency_to_operator, now, self::now());
            }
            Err(OperatorSendError::Full | OperatorSendError::BadLength) => {
                self.counts.to_operator_dropped += 1;
            }
            Err(OperatorSendError::Ended) => self.end = Some(RelayEnd::OperatorEnded),
        }
    }

    fn operator_frame(&mut self, f: OperatorFrame, now: Instant) {
        self.counts.from_operator += 1;
        if !self.operator_speaks() || f.payload.is_empty() || f.payload.len() > MAX_OPERATOR_FRAME {
            self.counts.from_operator_unsent += 1;
            return;
        }
        let law = self.leg.law();
        let mut frame = std::mem::take(&mut self.frame);
        let payload: &[u8] = if self.muted {
            frame.clear();
            frame.resize(f.payload.len(), law.silence());
            &frame
        } else {
            self.to_unit.apply(&f.payload, &mut self.conv)
        };
        match self.leg.send_relayed(f.timestamp, payload, now) {
            Some(h) => {
                self.filling = false;
                self.tick = None;
                self.last_operator = now;
                measure(&mut self.latency_to_unit, f.received, self::now());
                tap_operator(&self.tap, h.ssrc, law, h.timestamp, payload, now);
            }
            None => self.counts.from_operator_unsent += 1,
        }
        self.frame = frame;
    }

    /// The unit's stream changes source: a new run, and generated frames from now.
    fn switch(&mut self, now: Instant) {
        self.leg.out.break_run();
        self.tick = Some(now);
    }

    fn command(&mut self, c: Command<O>, now: Instant) {
        match c {
            Command::Attach(operator) => {
                if let Some(mut old) = self.operator.take() {
                    old.end();
                }
                let (unit, op) = (self.leg.law(), operator.law());
                self.to_operator = Transcode::new(unit, op);
                self.to_unit = Transcode::new(op, unit);
                self.operator = Some(operator);
                // Silence until the operator's first frame.
                self.filling = true;
                self.switch(now);
            }
            Command::Muted(muted) => self.muted = muted,
            Command::Held(held) => {
                if held != self.held {
                    self.held = held;
                    self.filling = true;
                    self.switch(now);
                }
            }
            Command::Dtmf { event, ms } => {
                self.dtmf.push_back((event, ms));
                if !self.leg.out.in_event() {
                    self.tick = Some(self.tick.map_or(now, |t| t.min(now)));
                }
            }
            Command::Update(n) => {
                let law_changed = n.codec != self.leg.negotiated().codec;
                self.leg.update(n, now);
                if law_changed {
                    let unit = self.leg.law();
                    let op = self.operator.as_ref().map_or(unit, |o| o.law());
                    self.to_operator = Transcode::new(unit, op);
                    self.to_unit = Transcode::new(op, unit);
                }
                self.filling = true;
                self.switch(now);
            }
            Command::Record(tap) => self.tap = Some(tap),
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn stats(&self) -> RelayStats {
        RelayStats {
            unit: self.leg.stats(),
            to_operator: self.counts.to_operator,
            to_operator_dropped: self.counts.to_operator_dropped,
            from_operator: self.counts.from_operator,
            from_operator_unsent: self.counts.from_operator_unsent,
            generated: self.counts.generated,
            dtmf_sent: self.counts.dtmf_sent,
            latency_to_operator: latency(&self.latency_to_operator),
            latency_to_unit: latency(&self.latency_to_unit),
            operator: self.operator.is_some(),
            muted: self.muted,
            held: self.held,
            recording: self.tap.is_some(),
        }
    }

    /// The counts since the last upkeep to the metrics.
    fn upkeep(&mut self) {
        let now = self.leg.stats();
        let was = &self.reported.unit;
        let m = &self.leg.metrics;
        m.packets(
            now.packets_in.saturating_sub(was.packets_in),
            (now.packets_out + now.events_out).saturating_sub(was.packets_out + was.events_out),
        );
        for why in Dropped::ALL {
            m.dropped(
                why.as_str(),
                now.dropped.get(why).saturating_sub(was.dropped.get(why)),
            );
        }
        m.dropped(
            "send_failed",
            now.send_failures.saturating_sub(was.send_failures),
        );
        m.lost(u64::try_from(now.lost - was.lost).unwrap_or(0));
        m.relatched(now.relatches.saturating_sub(was.relatches));
        if now.expected > 0 {
            m.jitter(now.jitter);
        }
        m.frames_dropped(
            self.counts
                .to_operator_dropped
                .saturating_sub(self.reported.to_operator_dropped),
        );
        self.reported = Reported {
            unit: now,
            to_operator_dropped: self.counts.to_operator_dropped,
        };
    }

    fn finish(mut self, reason: RelayEnd) {
        if let Some(mut operator) = self.operator.take() {
            operator.end();
        }
        self.upkeep();
        self.leg.metrics.relay_ended(reason.as_str());
        let stats = self.stats();
        tracing::debug!(
            reason = reason.as_str(),
            packets_in = stats.unit.packets_in,
            packets_out = stats.unit.packets_out,
            lost = stats.unit.lost,
            strangers = stats.unit.dropped.stranger,
            "relay ended"
        );
        *self
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(stats);
        self.shared.end.send_replace(Some(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::media::{Media, MediaOptions};
    use std::net::{IpAddr, Ipv4Addr};
    use vakt_proto::sdp::{Codec, Direction};

    /// An operator's side played through channels.
    struct ChannelOperator {
        law: Law,
        frames: mpsc::Receiver<OperatorFrame>,
        heard: mpsc::UnboundedSender<Vec<u8>>,
        ended: Arc<AtomicBool>,
    }

    impl OperatorLeg for ChannelOperator {
        fn law(&self) -> Law {
            self.law
        }

        async fn recv(&mut self) -> Option<OperatorFrame> {
            self.frames.recv().await
        }

        fn send(&mut self, payload: &[u8]) -> Result<(), OperatorSendError> {
            self.heard
                .send(payload.to_vec())
                .map_err(|_| OperatorSendError::Ended)
        }

        fn end(&mut self) {
            self.ended.store(true, Ordering::Release);
        }
    }

    fn media(first: u16) -> Media {
        Media::new(MediaOptions {
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: first,
            port_max: first + 99,
            ..MediaOptions::default()
        })
        .unwrap()
    }

    fn negotiated(to: SocketAddr, direction: Direction, dtmf: bool) -> Negotiated {
        Negotiated {
            codec: Codec::Pcma,
            payload_type: 8,
            dtmf_payload_type: dtmf.then_some(101),
            remote: Some(to),
            direction,
            ptime_ms: 20,
            rtcp_mux: false,
            media_index: 0,
        }
    }

    /// The relay's end, if it comes within `secs` (of paused time: a test that would wait for
    /// ever fails instead).
    async fn ended_within(relay: &Relay<ChannelOperator>, secs: u64) -> Option<RelayEnd> {
        tokio::time::timeout(Duration::from_secs(secs), relay.ended())
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn no_rtp_for_the_inactivity_time_ends_the_relay_unless_the_unit_holds() {
        let media = media(47_600);
        let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = sink.local_addr().unwrap();
        let t0 = tokio::time::Instant::now();
        let leg = SipLeg::new(
            media.bind().unwrap(),
            negotiated(to, Direction::SendRecv, true),
        )
        .unwrap();
        let relay: Relay<ChannelOperator> = Relay::start(leg, EarlyMedia::Silence).unwrap();
        assert_eq!(ended_within(&relay, 60).await, Some(RelayEnd::Inactive));
        let took = t0.elapsed();
        assert!(
            (Duration::from_secs(30)..Duration::from_millis(30_100)).contains(&took),
            "{took:?}"
        );
        // The port pair is given back once the task is gone.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(media.legs(), 0);
        // Meanwhile the unit's SDP address got the early silence, 20 ms apart.
        let mut buf = [0u8; 256];
        let (n, _) = sink.recv_from(&mut buf).await.unwrap();
        let p = rtp::parse(&buf[..n]).unwrap();
        assert_eq!(p.header.payload_type, 8);
        assert!(p.payload.iter().all(|&b| b == Law::Alaw.silence()));

        // The unit holds the call: no inactivity, however long.
        let (tx, frames) = mpsc::channel(8);
        let (heard, _heard_rx) = mpsc::unbounded_channel();
        let ended = Arc::new(AtomicBool::new(false));
        let leg = SipLeg::new(
            media.bind().unwrap(),
            negotiated(to, Direction::RecvOnly, true),
        )
        .unwrap();
        let relay: Relay<ChannelOperator> = Relay::start(leg, EarlyMedia::Silence).unwrap();
        relay
            .attach(ChannelOperator {
                law: Law::Alaw,
                frames,
                heard,
                ended: Arc::clone(&ended),
            })
            .unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(relay.end_reason(), None);
        // vakt may not send while the unit holds: nothing generated.
        let stats = relay.stats().await;
        assert_eq!(stats.generated, 0);
        assert_eq!(stats.unit.packets_out, 0);
        // Taken back: 30 s later it is dead, and the operator's side is ended with it.
        let resumed = tokio::time::Instant::now();
        relay
            .update(negotiated(to, Direction::SendRecv, true))
            .unwrap();
        assert_eq!(ended_within(&relay, 60).await, Some(RelayEnd::Inactive));
        assert!(resumed.elapsed() >= Duration::from_secs(30));
        assert!(ended.load(Ordering::Acquire));
        assert!(tx.is_closed());
        let last = relay.stats().await;
        assert!(last.generated > 1_000, "{last:?}");
        assert_eq!(relay.set_muted(true), Err(RelayError::Ended));
        assert_eq!(relay.dtmf('0', 100), Err(DtmfError::Ended));
    }

    #[tokio::test(start_paused = true)]
    async fn dtmf_is_refused_without_telephone_event_and_checked_with_it() {
        let media = media(47_800);
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let leg = SipLeg::new(
            media.bind().unwrap(),
            negotiated(to, Direction::SendRecv, false),
        )
        .unwrap();
        let relay: Relay<ChannelOperator> = Relay::start(leg, EarlyMedia::Silence).unwrap();
        assert!(!relay.takes_events());
        assert_eq!(relay.dtmf('0', 100), Err(DtmfError::NoTelephoneEvent));
        relay
            .update(negotiated(to, Direction::SendRecv, true))
            .unwrap();
        assert!(relay.takes_events());
        assert_eq!(relay.dtmf('x', 100), Err(DtmfError::BadKey));
        assert_eq!(relay.dtmf('0', 99), Err(DtmfError::BadDuration));
        assert_eq!(relay.dtmf('0', 501), Err(DtmfError::BadDuration));
        for _ in 0..MAX_DTMF_QUEUED {
            relay.dtmf('4', 100).unwrap();
        }
        assert_eq!(relay.dtmf('4', 100), Err(DtmfError::Busy));
        // Each tone is 5 ticks + 2 end repeats, then one tick of audio: they all go.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stats = relay.stats().await;
        assert_eq!(stats.dtmf_sent, MAX_DTMF_QUEUED as u64);
        assert_eq!(stats.unit.events_out, 7 * MAX_DTMF_QUEUED as u64);
        relay.dtmf('4', 100).unwrap();
        relay.end();
        assert_eq!(ended_within(&relay, 1).await, Some(RelayEnd::Ended));
    }
}
