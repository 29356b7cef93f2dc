//! RTP for vakt's voice calls: packets (RFC 3550 §5.1) parsed and written, RFC 4733
//! telephone-events (the DTMF keys of the SCAIP commands, protocols.md §3.7) parsed, written and
//! sent as the event sequence RFC 4733 §2.5 asks for ([`DtmfSender`]), and a receiver's
//! statistics (RFC 3550 A.1, A.3, A.8: expected, lost, extended highest sequence number,
//! interarrival jitter) that reset when the source's SSRC changes ([`ReceiverStats`]).
//!
//! Sans-IO: no sockets and no clock. The DTMF sender is driven by packet ticks (one call per
//! 20 ms), the statistics take each packet's arrival time as a [`Duration`] since any fixed
//! point the caller chooses. Bounded by [`MAX_PACKET_BYTES`]; [`parse`] never panics on any
//! bytes and refuses RTCP that shares the port (RFC 5761) as [`RtpError::Rtcp`].
//! `proto/voice.md` documents the subset.
//!
//! Written here rather than taken from a crate: webrtc-rs' `rtp` depends on `webrtc-util`,
//! which brings tokio into this sans-IO crate; `rtp-rs` only reads headers. RFC 4733 and the
//! RFC 3550 appendix algorithms are not in either, and are short.

use std::time::Duration;

/// RTP version (RFC 3550 §5.1).
pub const VERSION: u8 = 2;
/// Bytes of the fixed header.
pub const HEADER_BYTES: usize = 12;
/// Largest packet parsed or written (an Ethernet MTU; 20 ms of G.711 is 172 bytes).
pub const MAX_PACKET_BYTES: usize = 1500;
/// Most CSRC identifiers (the 4-bit CC field).
pub const MAX_CSRC: usize = 15;

/// Why a packet was refused (or could not be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than its header, CSRC list, extension or event payload says.
    #[error("RTP packet too short")]
    TooShort,
    /// Over [`MAX_PACKET_BYTES`].
    #[error("RTP packet too large")]
    TooLarge,
    /// The version is not 2.
    #[error("RTP version not 2")]
    BadVersion,
    /// RTCP on the RTP port (RFC 5761 §4: second byte 192..=223), or one of the payload
    /// types 72..=76 that RFC 3551 §6 reserves so RTCP can be told apart.
    #[error("RTCP, not RTP")]
    Rtcp,
    /// The padding count is 0 or longer than the payload.
    #[error("bad RTP padding")]
    BadPadding,
    /// A field cannot be written as given (named).
    #[error("bad RTP field {0}")]
    BadField(&'static str),
}

impl RtpError {
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            RtpError::TooShort => "too_short",
            RtpError::TooLarge => "too_large",
            RtpError::BadVersion => "bad_version",
            RtpError::Rtcp => "rtcp",
            RtpError::BadPadding => "bad_padding",
            RtpError::BadField(_) => "bad_field",
        }
    }
}

/// The fixed header fields vakt reads and sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The marker bit: first packet of a talkspurt, or of an RFC 4733 event.
    pub marker: bool,
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp in the payload's clock (8000 Hz for G.711 and telephone-event/8000).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl Header {
    /// Writes this header and `payload` as one packet (no CSRC, extension or padding).
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RtpError> {
        Packet {
            header: *self,
            csrc: &[],
            extension: None,
            payload,
            padding: 0,
        }
        .write(out)
    }
}

/// A header extension (RFC 3550 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The profile-defined 16 bits (e.g. `0xBEDE` for RFC 8285 one-byte headers).
    pub profile: u16,
    /// The extension data, a multiple of 4 bytes.
    pub data: &'a [u8],
}

/// An RTP packet borrowing the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The CSRC list as bytes (4 per entry, at most [`MAX_CSRC`]).
    pub csrc: &'a [u8],
    /// The header extension, if the X bit is set.
    pub extension: Option<Extension<'a>>,
    /// The payload, without padding.
    pub payload: &'a [u8],
    /// Bytes of padding after the payload (0: the P bit is clear).
    pub padding: u8,
}

impl Packet<'_> {
    /// The CSRC identifiers.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Writes the packet; padding bytes are zeros ending in the count. Refuses what
    /// [`parse`] would: a payload type over 127 or one that reads as RTCP (72..=76, or
    /// 64..=95 with the marker bit), a CSRC list that is not whole
    /// entries or over 15, extension data that is not whole words, over
    /// [`MAX_PACKET_BYTES`].
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RtpError> {
        let h = &self.header;
        if h.payload_type > 127 || rtcp_conflict(h.marker, h.payload_type) {
            return Err(RtpError::BadField("payload_type"));
        }
        if self.csrc.len() % 4 != 0 || self.csrc.len() / 4 > MAX_CSRC {
            return Err(RtpError::BadField("csrc"));
        }
        let ext_len = match &self.extension {
            Some(e) if e.data.len() % 4 != 0 || e.data.len() / 4 > usize::from(u16::MAX) => {
                return Err(RtpError::BadField("extension"));
            }
            Some(e) => 4 + e.data.len(),
            None => 0,
        };
        let len = HEADER_BYTES
            + self.csrc.len()
            + ext_len
            + self.payload.len()
            + usize::from(self.padding);
        if len > MAX_PACKET_BYTES {
            return Err(RtpError::TooLarge);
        }
        out.reserve(len);
        let cc = (self.csrc.len() / 4) as u8;
        out.push(
            (VERSION << 6)
                | (u8::from(self.padding > 0) << 5)
                | (u8::from(self.extension.is_some()) << 4)
                | cc,
        );
        out.push((u8::from(h.marker) << 7) | h.payload_type);
        out.extend_from_slice(&h.sequence.to_be_bytes());
        out.extend_from_slice(&h.timestamp.to_be_bytes());
        out.extend_from_slice(&h.ssrc.to_be_bytes());
        out.extend_from_slice(self.csrc);
        if let Some(e) = &self.extension {
            out.extend_from_slice(&e.profile.to_be_bytes());
            let words = (e.data.len() / 4) as u16;
            out.extend_from_slice(&words.to_be_bytes());
            out.extend_from_slice(e.data);
        }
        out.extend_from_slice(self.payload);
        if self.padding > 0 {
            out.extend(std::iter::repeat_n(0, usize::from(self.padding) - 1));
            out.push(self.padding);
        }
        Ok(())
    }
}

/// Whether a marker bit and payload type would read as RTCP on a shared port: the second
/// byte in 192..=223 (the marker with PT 64..=95), or PT 72..=76 with or without the marker.
fn rtcp_conflict(marker: bool, payload_type: u8) -> bool {
    (marker && (64..=95).contains(&payload_type)) || (72..=76).contains(&payload_type)
}

/// Whether a datagram on an RTP port is RTCP multiplexed onto it (RFC 5761 §4): version 2
/// and a second byte in 192..=223 (SR 200, RR 201, SDES 202, BYE 203, APP 204, RTPFB 205,
/// PSFB 206, XR 207 ...).
#[must_use]
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf, [b0, b1, ..] if b0 >> 6 == VERSION && (192..=223).contains(b1))
}

/// Parses an RTP packet: version 2, the CSRC list, the header extension and the padding
/// (removed from the payload) checked against the length. RTCP sharing the port (of any
/// length), and the payload types 72..=76 reserved against it, are [`RtpError::Rtcp`] (see
/// [`is_rtcp`]).
///
/// O(1) apart from the bounds check; never panics.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, RtpError> {
    if buf.len() > MAX_PACKET_BYTES {
        return Err(RtpError::TooLarge);
    }
    if is_rtcp(buf) {
        return Err(RtpError::Rtcp);
    }
    let Some(fixed) = buf.first_chunk::<HEADER_BYTES>() else {
        return Err(RtpError::TooShort);
    };
    let [b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = *fixed;
    if b0 >> 6 != VERSION {
        return Err(RtpError::BadVersion);
    }
    let payload_type = b1 & 0x7f;
    if rtcp_conflict(b1 & 0x80 != 0, payload_type) {
        return Err(RtpError::Rtcp);
    }
    let has_padding = b0 & 0x20 != 0;
    let has_extension = b0 & 0x10 != 0;
    let cc = usize::from(b0 & 0x0f);
    let rest = &buf[HEADER_BYTES..];
    let (csrc, rest) = rest.split_at_checked(cc * 4).ok_or(RtpError::TooShort)?;
    let (extension, rest) = if has_extension {
        let Some((&[p0, p1, l0, l1], rest)) = rest.split_first_chunk::<4>() else {
            return Err(RtpError::TooShort);
        };
        let words = usize::from(u16::from_be_bytes([l0, l1]));
        let (data, rest) = rest.split_at_checked(words * 4).ok_or(RtpError::TooShort)?;
        (
            Some(Extension {
                profile: u16::from_be_bytes([p0, p1]),
                data,
            }),
            rest,
        )
    } else {
        (None, rest)
    };
    let (payload, padding) = if has_padding {
        let count = *rest.last().ok_or(RtpError::BadPadding)?;
        if count == 0 {
            return Err(RtpError::BadPadding);
        }
        let keep = rest
            .len()
            .checked_sub(usize::from(count))
            .ok_or(RtpError::BadPadding)?;
        (&rest[..keep], count)
    } else {
        (rest, 0)
    };
    Ok(Packet {
        header: Header {
            marker: b1 & 0x80 != 0,
            payload_type,
            sequence: u16::from_be_bytes([s0, s1]),
            timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
            ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
        },
        csrc,
        extension,
        payload,
        padding,
    })
}

// ---------------------------------------------------------------------------------------
// RFC 4733 telephone-events
// ---------------------------------------------------------------------------------------

/// Bytes of a telephone-event payload (RFC 4733 §2.3).
pub const EVENT_BYTES: usize = 4;
/// Samples per 20 ms packet tick at 8000 Hz.
pub const SAMPLES_PER_TICK: u32 = 160;
/// Milliseconds per packet tick of [`DtmfSender`].
pub const TICK_MS: u32 = 20;
/// How many times the final (end) packet of an event is sent (RFC 4733 §2.5.1.4).
pub const END_REPEATS: u32 = 3;
/// Shortest and longest tone [`DtmfSender`] sends, ms (one event segment: at most 65535
/// samples, RFC 4733 §2.5.1.3). SCAIP asks for 100–500 ms (protocols.md §3.7).
pub const TONE_MS: std::ops::RangeInclusive<u32> = 20..=8000;
/// The volume vakt sends events with: −10 dBm0, what SIP phones commonly use.
pub const DEFAULT_VOLUME: u8 = 10;

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: DTMF 0–9 are the digits, 10 `*`, 11 `#`, 12–15 A–D (RFC 4733 §3.2).
    pub event: u8,
    /// The E bit: the event has ended.
    pub end: bool,
    /// Power level as −dBm0, 0..=63 (larger is quieter).
    pub volume: u8,
    /// Duration so far in timestamp units (samples at 8000 Hz).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first [`EVENT_BYTES`] of a payload; the R bit is ignored (RFC 4733
    /// §2.3.4), bytes after the first event are ignored.
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, RtpError> {
        let Some(&[event, flags, d0, d1]) = payload.first_chunk::<EVENT_BYTES>() else {
            return Err(RtpError::TooShort);
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The payload bytes; a volume over 63 is written as 63.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; EVENT_BYTES] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | self.volume.min(63),
            d0,
            d1,
        ]
    }
}

/// The RFC 4733 §3.2 event code of a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`).
#[must_use]
pub fn dtmf_event(key: char) -> Option<u8> {
    match key.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        l @ 'A'..='D' => Some(l as u8 - b'A' + 12),
        _ => None,
    }
}

/// The DTMF key of an RFC 4733 event code, if it is one (0..=15).
#[must_use]
pub fn dtmf_key(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The commands an ARC sends a SCAIP unit as DTMF during the call (SS 91100 §7,
/// protocols.md §3.7), 100–500 ms per tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScaipDtmf {
    /// `0`: clear down, the call was received correctly; the unit hangs up.
    ClearDown,
    /// `1`: the unit's speaker volume down.
    VolumeDown,
    /// `3`: the unit's speaker volume up.
    VolumeUp,
    /// `4`: duplex (both ways).
    Duplex,
    /// `7`: simplex, microphone: the unit's microphone on and its speaker muted, the
    /// operator listens.
    ListenOnly,
    /// `8`: simplex, speaker: the unit's speaker on and its microphone muted, the operator
    /// speaks.
    SpeakOnly,
    /// `9`: output control (a unit-defined relay output, e.g. a door opener).
    OutputControl,
}

impl ScaipDtmf {
    /// Every command, in key order.
    pub const ALL: [ScaipDtmf; 7] = [
        ScaipDtmf::ClearDown,
        ScaipDtmf::VolumeDown,
        ScaipDtmf::VolumeUp,
        ScaipDtmf::Duplex,
        ScaipDtmf::ListenOnly,
        ScaipDtmf::SpeakOnly,
        ScaipDtmf::OutputControl,
    ];

    /// The DTMF key.
    #[must_use]
    pub fn key(self) -> char {
        match self {
            ScaipDtmf::ClearDown => '0',
            ScaipDtmf::VolumeDown => '1',
            ScaipDtmf::VolumeUp => '3',
            ScaipDtmf::Duplex => '4',
            ScaipDtmf::ListenOnly => '7',
            ScaipDtmf::SpeakOnly => '8',
            ScaipDtmf::OutputControl => '9',
        }
    }

    /// The RFC 4733 event code (the digit).
    #[must_use]
    pub fn event(self) -> u8 {
        // The keys are digits.
        self.key() as u8 - b'0'
    }

    /// Stable name (for the console's API and logs).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ScaipDtmf::ClearDown => "clear_down",
            ScaipDtmf::VolumeDown => "volume_down",
            ScaipDtmf::VolumeUp => "volume_up",
            ScaipDtmf::Duplex => "duplex",
            ScaipDtmf::ListenOnly => "listen_only",
            ScaipDtmf::SpeakOnly => "speak_only",
            ScaipDtmf::OutputControl => "output_control",
        }
    }

    /// The command of a stable name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<ScaipDtmf> {
        ScaipDtmf::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The command of a key.
    #[must_use]
    pub fn from_key(key: char) -> Option<ScaipDtmf> {
        ScaipDtmf::ALL.into_iter().find(|c| c.key() == key)
    }
}

/// One packet of an event from [`DtmfSender`]: the caller adds the stream's sequence number
/// and SSRC (the audio stream's: RFC 4733 events share its SSRC and sequence space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// Set on the first packet of the event only.
    pub marker: bool,
    /// The event's start, the same in every packet of the event.
    pub timestamp: u32,
    /// The payload.
    pub event: TelephoneEvent,
}

impl DtmfPacket {
    /// The RTP header with the stream's payload type, sequence number and SSRC.
    #[must_use]
    pub fn header(&self, payload_type: u8, sequence: u16, ssrc: u32) -> Header {
        Header {
            marker: self.marker,
            payload_type,
            sequence,
            timestamp: self.timestamp,
            ssrc,
        }
    }

    /// Writes the whole packet.
    pub fn write(
        &self,
        payload_type: u8,
        sequence: u16,
        ssrc: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), RtpError> {
        self.header(payload_type, sequence, ssrc)
            .write(&self.event.to_bytes(), out)
    }
}

/// Sends one DTMF event as RFC 4733 §2.5.1 asks, one packet per 20 ms tick: the first with
/// the marker bit, every one with the event's start timestamp, the duration growing by 160
/// samples a tick (rounded up to whole ticks), and the final packet, with the E bit and the
/// whole duration, three times. A tone of `n` ticks is `n + 2` packets. While it sends,
/// the relay sends no audio on the stream (RFC 4733 §2.5.1.1 lets the sender choose), and
/// afterwards resumes with timestamps at least [`DtmfSender::samples`] later.
///
/// ```
/// use vakt_proto::rtp::{DtmfSender, ScaipDtmf};
/// let mut s = DtmfSender::new(ScaipDtmf::ClearDown.event(), 100, 48_000).unwrap();
/// let durations: Vec<(bool, u16, bool)> =
///     s.by_ref().map(|p| (p.marker, p.event.duration, p.event.end)).collect();
/// assert_eq!(durations, [
///     (true, 160, false), (false, 320, false), (false, 480, false), (false, 640, false),
///     (false, 800, true), (false, 800, true), (false, 800, true),
/// ]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfSender {
    event: u8,
    volume: u8,
    timestamp: u32,
    ticks: u32,
    sent: u32,
}

impl DtmfSender {
    /// An event `duration_ms` long (within [`TONE_MS`], else `BadField("duration")`),
    /// starting at RTP `timestamp` (where the stream's next audio packet would be), at
    /// [`DEFAULT_VOLUME`].
    pub fn new(event: u8, duration_ms: u32, timestamp: u32) -> Result<DtmfSender, RtpError> {
        if !TONE_MS.contains(&duration_ms) {
            return Err(RtpError::BadField("duration"));
        }
        Ok(DtmfSender {
            event,
            volume: DEFAULT_VOLUME,
            timestamp,
            ticks: duration_ms.div_ceil(TICK_MS),
            sent: 0,
        })
    }

    /// The same with another volume (−dBm0, at most 63).
    #[must_use]
    pub fn with_volume(mut self, volume: u8) -> DtmfSender {
        self.volume = volume.min(63);
        self
    }

    /// The event's whole duration in samples: how far the stream's timestamp moves.
    #[must_use]
    pub fn samples(&self) -> u32 {
        self.ticks * SAMPLES_PER_TICK
    }

    /// Packets still to send.
    #[must_use]
    pub fn remaining(&self) -> u32 {
        (self.ticks + END_REPEATS - 1).saturating_sub(self.sent)
    }
}

impl Iterator for DtmfSender {
    type Item = DtmfPacket;

    /// The packet for this tick, `None` once the three end packets are out.
    fn next(&mut self) -> Option<DtmfPacket> {
        if self.remaining() == 0 {
            return None;
        }
        self.sent += 1;
        let tick = self.sent.min(self.ticks);
        // TONE_MS keeps ticks * 160 within u16 (8000 ms = 64000 samples).
        let duration = u16::try_from(tick * SAMPLES_PER_TICK).unwrap_or(u16::MAX);
        Some(DtmfPacket {
            marker: self.sent == 1,
            timestamp: self.timestamp,
            event: TelephoneEvent {
                event: self.event,
                end: self.sent >= self.ticks,
                volume: self.volume,
                duration,
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining() as usize;
        (n, Some(n))
    }
}

// ---------------------------------------------------------------------------------------
// Receiver statistics (RFC 3550 A.1, A.3, A.8)
// ---------------------------------------------------------------------------------------

/// A.1: a source is valid after this many packets in sequence.
const MIN_SEQUENTIAL: u32 = 2;
/// A.1: the largest forward jump still taken as loss.
const MAX_DROPOUT: u32 = 3000;
/// A.1: the largest backward step still taken as reordering.
const MAX_MISORDER: u32 = 100;
const SEQ_MOD: u32 = 1 << 16;

/// What [`ReceiverStats::record`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted: in sequence, a loss gap, reordered or a duplicate.
    Counted,
    /// A new SSRC (the first packet, or the source changed): the statistics restarted and
    /// the source is on probation.
    NewSource,
    /// The source is not yet validated (A.1: two packets in sequence); not counted.
    Probation,
    /// A sequence jump too large to be loss or reordering; not counted (a second packet
    /// continuing the jump restarts the sequence, A.1).
    Discarded,
}

/// The receiver's figures for the current source (RFC 3550 §6.4.1 as computed in A.3, A.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The source.
    pub ssrc: u32,
    /// Packets counted (duplicates included, as A.3 counts them).
    pub received: u32,
    /// Packets expected: extended highest − base + 1.
    pub expected: u32,
    /// Cumulative packets lost: expected − received (negative with duplicates).
    pub lost: i64,
    /// Extended highest sequence number: cycles × 65536 + highest.
    pub extended_highest: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// The transit time and timestamp of the last counted packet with a new timestamp (A.8).
    transit: Option<(u32, u32)>,
    /// Jitter × 16 (A.8's integer form).
    jitter: u32,
}

impl Source {
    fn new(ssrc: u32, seq: u16) -> Source {
        let mut s = Source {
            ssrc,
            max_seq: seq.wrapping_sub(1),
            cycles: 0,
            base_seq: 0,
            bad_seq: SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0,
        };
        s.init_seq(seq);
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    /// A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// A.1 `update_seq`: whether the packet counts.
    fn update_seq(&mut self, seq: u16) -> Recorded {
        let udelta = u32::from(seq.wrapping_sub(self.max_seq));
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return Recorded::Counted;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return Recorded::Probation;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= SEQ_MOD - MAX_MISORDER {
            if u32::from(seq) == self.bad_seq {
                // Two in a row: the source restarted without telling us.
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return Recorded::Discarded;
            }
        }
        // else: a duplicate or reordered packet.
        self.received = self.received.wrapping_add(1);
        Recorded::Counted
    }

    fn extended_highest(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u32 {
        self.extended_highest()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }
}

/// A receiver's statistics for one RTP stream (one leg's incoming audio): RFC 3550 A.1
/// sequence validation, A.3 expected/lost counts and A.8 interarrival jitter. A packet with
/// another SSRC restarts them (the unit rebooted, or a new source took over the port).
///
/// Jitter uses the arrival time the caller passes (a [`Duration`] since any fixed point,
/// e.g. the call's start) converted to timestamp units, and is updated only by counted
/// packets whose timestamp differs from the previous one's: RFC 4733 event updates repeat
/// their event's timestamp and would read as jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverStats {
    clock_rate: u32,
    source: Option<Source>,
}

impl ReceiverStats {
    /// Statistics for a stream with this RTP clock rate (8000 for G.711).
    #[must_use]
    pub fn new(clock_rate: u32) -> ReceiverStats {
        ReceiverStats {
            clock_rate: clock_rate.max(1),
            source: None,
        }
    }

    /// Records one packet's header, arrived at `arrival`.
    pub fn record(&mut self, header: &Header, arrival: Duration) -> Recorded {
        let new_source = self.source.as_ref().is_none_or(|s| s.ssrc != header.ssrc);
        if new_source {
            self.source = Some(Source::new(header.ssrc, header.sequence));
        }
        let Some(s) = self.source.as_mut() else {
            return Recorded::Discarded;
        };
        let r = s.update_seq(header.sequence);
        if r == Recorded::Counted {
            // A.8, with the arrival in timestamp units (wrapping like the timestamps).
            let units = (arrival.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
            let transit = units.wrapping_sub(header.timestamp);
            match s.transit {
                Some((_, last_ts)) if last_ts == header.timestamp => {}
                Some((last, _)) => {
                    let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
                    s.jitter = s
                        .jitter
                        .saturating_add(d)
                        .saturating_sub(s.jitter.saturating_add(8) >> 4);
                    s.transit = Some((transit, header.timestamp));
                }
                None => s.transit = Some((transit, header.timestamp)),
            }
        }
        if new_source { Recorded::NewSource } else { r }
    }

    /// The current source, if any packet was recorded.
    #[must_use]
    pub fn ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    /// The cumulative figures for the current source (`None` before any packet).
    #[must_use]
    pub fn report(&self) -> Option<Report> {
        let s = self.source.as_ref()?;
        let (expected, received) = if s.probation > 0 {
            (0, 0)
        } else {
            (s.expected(), s.received)
        };
        Some(Report {
            ssrc: s.ssrc,
            received,
            expected,
            lost: i64::from(expected) - i64::from(received),
            extended_highest: s.extended_highest(),
            jitter: s.jitter >> 4,
        })
    }

    /// A.3's fraction lost since the previous call, in 1/256 (0 when nothing was expected
    /// or duplicates outnumber losses), as an RTCP receiver report carries it.
    pub fn fraction_lost(&mut self) -> u8 {
        let Some(s) = self.source.as_mut().filter(|s| s.probation == 0) else {
            return 0;
        };
        let expected = s.expected();
        let expected_interval = expected.wrapping_sub(s.expected_prior);
        s.expected_prior = expected;
        let received_interval = s.received.wrapping_sub(s.received_prior);
        s.received_prior = s.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            u8::try_from((lost_interval << 8) / i64::from(expected_interval)).unwrap_or(u8::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 ms of PCMA: PT 8, seq 0x1234, ts 0xDEADBEEF, SSRC 0x01020304.
    fn pcma_packet() -> Vec<u8> {
        let mut v = vec![
            0x80, 0x08, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04,
        ];
        v.extend(std::iter::repeat_n(0xD5, 160));
        v
    }

    #[test]
    fn parses_a_g711_packet() {
        let raw = pcma_packet();
        let p = parse(&raw).unwrap();
        assert_eq!(
            p.header,
            Header {
                marker: false,
                payload_type: 8,
                sequence: 0x1234,
                timestamp: 0xDEAD_BEEF,
                ssrc: 0x0102_0304,
            }
        );
        assert_eq!(p.payload.len(), 160);
        assert!(p.csrc.is_empty() && p.extension.is_none() && p.padding == 0);
        let mut out = Vec::new();
        p.write(&mut out).unwrap();
        assert_eq!(out, raw);
        let mut out = Vec::new();
        p.header.write(p.payload, &mut out).unwrap();
        assert_eq!(out, raw);
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        // V=2 P=1 X=1 CC=2, M=1 PT=101.
        let mut raw = vec![0xB2, 0xE5, 0, 7, 0, 0, 0, 160, 0xAA, 0xBB, 0xCC, 0xDD];
        raw.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs 1, 2
        raw.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0x7F, 0, 0]); // one-word extension
        raw.extend_from_slice(&[5, 0x8A, 0x03, 0x20]); // event 5, end, volume 10, 800
        raw.extend_from_slice(&[0, 0, 0, 4]); // four bytes of padding
        let p = parse(&raw).unwrap();
        assert!(p.header.marker);
        assert_eq!(p.header.payload_type, 101);
        assert_eq!((p.header.sequence, p.header.timestamp), (7, 160));
        assert_eq!(p.csrcs().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            p.extension,
            Some(Extension {
                profile: 0xBEDE,
                data: &[0x10, 0x7F, 0, 0]
            })
        );
        assert_eq!(p.padding, 4);
        assert_eq!(
            TelephoneEvent::parse(p.payload).unwrap(),
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        let mut out = Vec::new();
        p.write(&mut out).unwrap();
        assert_eq!(out, raw);
    }

    #[test]
    fn refuses_what_is_not_rtp() {
        let good = pcma_packet();
        let with = |i: usize, b: u8| {
            let mut v = good.clone();
            v[i] = b;
            v
        };
        assert_eq!(parse(&good[..11]), Err(RtpError::TooShort));
        assert_eq!(parse(&[]), Err(RtpError::TooShort));
        assert_eq!(parse(&with(0, 0x40)), Err(RtpError::BadVersion));
        assert_eq!(parse(&with(0, 0xC0)), Err(RtpError::BadVersion));
        // CC = 15 but only 160 bytes follow the header: fits (60 bytes of CSRC)...
        assert!(parse(&with(0, 0x8F)).is_ok());
        // ...CC = 15 with 40 bytes after the header does not.
        assert_eq!(parse(&with(0, 0x8F)[..52]), Err(RtpError::TooShort));
        // X bit: profile + length 0xFFFF words, far beyond the packet.
        let mut ext = with(0, 0x90);
        ext[12..16].copy_from_slice(&[0xBE, 0xDE, 0xFF, 0xFF]);
        assert_eq!(parse(&ext), Err(RtpError::TooShort));
        assert_eq!(parse(&with(0, 0x90)[..14]), Err(RtpError::TooShort));
        // P bit: count 0, count beyond the payload.
        let mut pad = with(0, 0xA0);
        *pad.last_mut().unwrap() = 0;
        assert_eq!(parse(&pad), Err(RtpError::BadPadding));
        *pad.last_mut().unwrap() = 161;
        assert_eq!(parse(&pad), Err(RtpError::BadPadding));
        *pad.last_mut().unwrap() = 160;
        assert_eq!(parse(&pad).unwrap().payload.len(), 0);
        let mut big = good.clone();
        big.resize(MAX_PACKET_BYTES + 1, 0);
        assert_eq!(parse(&big), Err(RtpError::TooLarge));
        big.truncate(MAX_PACKET_BYTES);
        assert!(parse(&big).is_ok());
    }

    #[test]
    fn rtcp_on_the_rtp_port_is_told_apart() {
        // An RTCP receiver report with no blocks: V=2, PT=201, length 1, SSRC.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
        assert!(is_rtcp(&rr));
        assert_eq!(parse(&[&rr[..], &[0; 8]].concat()), Err(RtpError::Rtcp));
        for second in 192..=223u8 {
            let mut p = pcma_packet();
            p[1] = second;
            assert_eq!(parse(&p), Err(RtpError::Rtcp), "second byte {second}");
        }
        // PT 72..=76 without the marker are reserved too (RFC 3551 §6).
        for pt in 72..=76u8 {
            let mut p = pcma_packet();
            p[1] = pt;
            assert_eq!(parse(&p), Err(RtpError::Rtcp), "pt {pt}");
        }
        // Dynamic PTs with the marker are RTP (second byte 224..=255).
        // Even cut short, RTCP is RTCP.
        assert_eq!(parse(&rr[..2]), Err(RtpError::Rtcp));
        // PT 64..=95 without the marker are RTP (an unassigned range, but not RTCP).
        let mut p = pcma_packet();
        p[1] = 95;
        assert_eq!(parse(&p).unwrap().header.payload_type, 95);
        let mut p = pcma_packet();
        p[1] = 0x80 | 96;
        assert!(!is_rtcp(&p));
        assert_eq!(parse(&p).unwrap().header.payload_type, 96);
        assert!(!is_rtcp(&pcma_packet()));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn write_refuses_what_parse_would() {
        let h = Header {
            marker: false,
            payload_type: 0,
            sequence: 1,
            timestamp: 2,
            ssrc: 3,
        };
        let mut out = Vec::new();
        for (marker, pt) in [
            (false, 72),
            (false, 76),
            (true, 64),
            (true, 95),
            (false, 128),
        ] {
            let h = Header {
                marker,
                payload_type: pt,
                ..h
            };
            assert_eq!(
                h.write(&[], &mut out),
                Err(RtpError::BadField("payload_type"))
            );
        }
        let p = Packet {
            header: h,
            csrc: &[0; 5],
            extension: None,
            payload: &[],
            padding: 0,
        };
        assert_eq!(p.write(&mut out), Err(RtpError::BadField("csrc")));
        let p = Packet {
            csrc: &[0; 64],
            ..p
        };
        assert_eq!(p.write(&mut out), Err(RtpError::BadField("csrc")));
        let p = Packet {
            csrc: &[],
            extension: Some(Extension {
                profile: 1,
                data: &[0; 3],
            }),
            ..p
        };
        assert_eq!(p.write(&mut out), Err(RtpError::BadField("extension")));
        let big = vec![0; MAX_PACKET_BYTES - HEADER_BYTES + 1];
        assert_eq!(h.write(&big, &mut out), Err(RtpError::TooLarge));
        assert!(out.is_empty(), "nothing written on a refusal");
        h.write(&big[1..], &mut out).unwrap();
        assert_eq!(out.len(), MAX_PACKET_BYTES);
    }

    #[test]
    fn telephone_event_payload() {
        // RFC 4733 §2.3: event, E|R|volume, duration.
        let e = TelephoneEvent::parse(&[9, 0x0A, 0x01, 0x40]).unwrap();
        assert_eq!(
            e,
            TelephoneEvent {
                event: 9,
                end: false,
                volume: 10,
                duration: 320
            }
        );
        assert_eq!(e.to_bytes(), [9, 0x0A, 0x01, 0x40]);
        // The R bit is ignored; bytes after the first event too.
        let e = TelephoneEvent::parse(&[11, 0xC0 | 63, 0xFF, 0xFF, 1, 2, 3, 4]).unwrap();
        assert_eq!(
            (e.event, e.end, e.volume, e.duration),
            (11, true, 63, 0xFFFF)
        );
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(RtpError::TooShort));
        let loud = TelephoneEvent {
            event: 0,
            end: false,
            volume: 200,
            duration: 0,
        };
        assert_eq!(loud.to_bytes()[1], 63);
    }

    #[test]
    fn dtmf_keys_and_events() {
        let keys = "0123456789*#ABCD";
        for (code, key) in keys.chars().enumerate() {
            assert_eq!(dtmf_event(key), Some(code as u8), "{key}");
            assert_eq!(dtmf_key(code as u8), Some(key));
        }
        assert_eq!(dtmf_event('b'), Some(13));
        assert_eq!(dtmf_event('E'), None);
        assert_eq!(dtmf_event('x'), None);
        assert_eq!(dtmf_key(16), None);
    }

    #[test]
    fn scaip_commands_are_the_table_of_protocols_md() {
        // protocols.md §3.7: 0 clear down, 1 volume −, 3 volume +, 4 duplex,
        // 7 simplex microphone, 8 simplex speaker, 9 output control.
        let table = [
            ('0', ScaipDtmf::ClearDown),
            ('1', ScaipDtmf::VolumeDown),
            ('3', ScaipDtmf::VolumeUp),
            ('4', ScaipDtmf::Duplex),
            ('7', ScaipDtmf::ListenOnly),
            ('8', ScaipDtmf::SpeakOnly),
            ('9', ScaipDtmf::OutputControl),
        ];
        for (key, cmd) in table {
            assert_eq!(cmd.key(), key);
            assert_eq!(Some(cmd.event()), dtmf_event(key));
            assert_eq!(ScaipDtmf::from_key(key), Some(cmd));
            assert_eq!(ScaipDtmf::from_name(cmd.as_str()), Some(cmd));
        }
        assert_eq!(ScaipDtmf::ALL.len(), table.len());
        for key in ['2', '5', '6', '*', '#'] {
            assert_eq!(ScaipDtmf::from_key(key), None);
        }
        assert_eq!(ScaipDtmf::from_name("hangup"), None);
    }

    fn durations(s: DtmfSender) -> Vec<(bool, u16, bool)> {
        s.map(|p| (p.marker, p.event.duration, p.event.end))
            .collect()
    }

    #[test]
    fn dtmf_sender_follows_rfc4733_2_5() {
        let s = DtmfSender::new(4, 100, 7).unwrap();
        assert_eq!(s.samples(), 800);
        assert_eq!(s.remaining(), 7);
        assert_eq!(s.size_hint(), (7, Some(7)));
        let packets: Vec<DtmfPacket> = s.clone().collect();
        assert!(
            packets
                .iter()
                .all(|p| p.timestamp == 7 && p.event.event == 4)
        );
        assert!(packets.iter().all(|p| p.event.volume == DEFAULT_VOLUME));
        assert_eq!(
            durations(s),
            [
                (true, 160, false),
                (false, 320, false),
                (false, 480, false),
                (false, 640, false),
                (false, 800, true),
                (false, 800, true),
                (false, 800, true),
            ]
        );
        // Rounded up to whole ticks: 110 ms is six.
        let d = durations(DtmfSender::new(1, 110, 0).unwrap());
        assert_eq!(d.len(), 8);
        assert_eq!(d[5..], [(false, 960, true); 3]);
        // One tick: the first packet is also the first end packet.
        assert_eq!(
            durations(DtmfSender::new(0, 20, 0).unwrap()),
            [(true, 160, true), (false, 160, true), (false, 160, true)]
        );
        // The longest tone still fits the 16-bit duration.
        let long = durations(DtmfSender::new(0, 8000, 0).unwrap());
        assert_eq!(long.last(), Some(&(false, 64000, true)));
        for bad in [0, 19, 8001, u32::MAX] {
            assert_eq!(
                DtmfSender::new(0, bad, 0),
                Err(RtpError::BadField("duration")),
                "{bad} ms"
            );
        }
        let quiet = DtmfSender::new(0, 100, 0).unwrap().with_volume(99);
        assert!(quiet.into_iter().all(|p| p.event.volume == 63));
    }

    #[test]
    fn dtmf_packets_share_the_stream_and_parse_back() {
        let mut seq = 65534u16;
        let mut out = Vec::new();
        for p in DtmfSender::new(ScaipDtmf::VolumeUp.event(), 60, 0xFFFF_FF00).unwrap() {
            out.clear();
            p.write(101, seq, 0xCAFE, &mut out).unwrap();
            let back = parse(&out).unwrap();
            assert_eq!(back.header, p.header(101, seq, 0xCAFE));
            assert_eq!(back.header.timestamp, 0xFFFF_FF00);
            assert_eq!(TelephoneEvent::parse(back.payload).unwrap(), p.event);
            assert_eq!(p.event.event, 3);
            seq = seq.wrapping_add(1);
        }
        assert_eq!(seq, 65534u16.wrapping_add(5));
    }

    fn header(ssrc: u32, sequence: u16, timestamp: u32) -> Header {
        Header {
            marker: false,
            payload_type: 8,
            sequence,
            timestamp,
            ssrc,
        }
    }

    /// 20 ms apart, 160 samples apart.
    fn at(i: u64) -> Duration {
        Duration::from_millis(20 * i)
    }

    #[test]
    fn stats_count_through_the_sequence_wrap() {
        let mut st = ReceiverStats::new(8000);
        assert_eq!(st.report(), None);
        let first = 65500u16;
        for i in 0..100u16 {
            let r = st.record(
                &header(1, first.wrapping_add(i), u32::from(i) * 160),
                at(i.into()),
            );
            let want = match i {
                0 => Recorded::NewSource,
                _ => Recorded::Counted,
            };
            assert_eq!(r, want, "packet {i}");
        }
        let r = st.report().unwrap();
        // The first packet is the probation's (A.1): counting starts at the second.
        assert_eq!((r.received, r.expected, r.lost), (99, 99, 0));
        assert_eq!(
            r.extended_highest,
            65536 + u32::from(first.wrapping_add(99))
        );
        assert_eq!(r.jitter, 0);
        assert_eq!(st.fraction_lost(), 0);
    }

    #[test]
    fn stats_count_loss_duplicates_and_reordering() {
        let mut st = ReceiverStats::new(8000);
        for s in (1000..1100u16).filter(|s| !(1010..1015).contains(s)) {
            st.record(&header(7, s, u32::from(s) * 160), at(s.into()));
        }
        let r = st.report().unwrap();
        assert_eq!((r.received, r.expected, r.lost), (94, 99, 5));
        // 5 of 99, in 1/256: 12.
        assert_eq!(st.fraction_lost(), 12);
        // The next interval: one packet comes late (29 behind, within A.1's 100), one
        // twice; 1010..1015 stay lost.
        for s in (1100..1150u16).filter(|&s| s != 1120) {
            st.record(&header(7, s, u32::from(s) * 160), at(s.into()));
        }
        assert_eq!(
            st.record(&header(7, 1120, 1120 * 160), at(1150)),
            Recorded::Counted
        );
        assert_eq!(
            st.record(&header(7, 1149, 1149 * 160), at(1151)),
            Recorded::Counted
        );
        let r = st.report().unwrap();
        assert_eq!((r.received, r.expected, r.lost), (145, 149, 4));
        // 137 behind the highest is neither loss nor reordering (A.1): not counted.
        assert_eq!(
            st.record(&header(7, 1012, 1012 * 160), at(1152)),
            Recorded::Discarded
        );
        assert_eq!(st.report().unwrap().received, 145);
        assert_eq!(
            st.fraction_lost(),
            0,
            "more received than expected this interval"
        );
        assert_eq!(st.fraction_lost(), 0, "nothing expected since");
    }

    #[test]
    fn stats_restart_on_a_new_ssrc_and_on_a_confirmed_jump() {
        let mut st = ReceiverStats::new(8000);
        for s in 0..10u16 {
            st.record(&header(1, s, u32::from(s) * 160), at(s.into()));
        }
        assert_eq!(st.report().unwrap().received, 9);
        // The unit reboots: a new SSRC, a new sequence.
        assert_eq!(st.record(&header(2, 40000, 0), at(20)), Recorded::NewSource);
        assert_eq!(st.ssrc(), Some(2));
        let r = st.report().unwrap();
        assert_eq!((r.ssrc, r.received, r.expected, r.jitter), (2, 0, 0, 0));
        assert_eq!(st.record(&header(2, 40001, 160), at(21)), Recorded::Counted);
        assert_eq!(st.report().unwrap().received, 1);
        // A jump of 10 000 is discarded once, then taken as a restart of the sequence.
        assert_eq!(
            st.record(&header(2, 50001, 320), at(22)),
            Recorded::Discarded
        );
        assert_eq!(st.report().unwrap().received, 1);
        assert_eq!(st.record(&header(2, 50002, 480), at(23)), Recorded::Counted);
        let r = st.report().unwrap();
        assert_eq!((r.received, r.expected, r.extended_highest), (1, 1, 50002));
        // A lone wild packet does not disturb the count.
        assert_eq!(st.record(&header(2, 9, 640), at(24)), Recorded::Discarded);
        assert_eq!(st.record(&header(2, 50003, 640), at(24)), Recorded::Counted);
        assert_eq!(st.report().unwrap().lost, 0);
        // A broken start (not in sequence) stays on probation.
        let mut st = ReceiverStats::new(8000);
        st.record(&header(3, 10, 0), at(0));
        assert_eq!(st.record(&header(3, 20, 0), at(1)), Recorded::Probation);
        assert_eq!(st.report().unwrap().received, 0);
        assert_eq!(st.record(&header(3, 21, 160), at(2)), Recorded::Counted);
    }

    #[test]
    fn stats_jitter_follows_a8() {
        // Every other packet 5 ms late: the transit alternates 0 and 40 samples, so
        // |D| is 40 each time and J tends to 40.
        let mut st = ReceiverStats::new(8000);
        for i in 0..400u64 {
            let late = if i % 2 == 1 {
                Duration::from_millis(5)
            } else {
                Duration::ZERO
            };
            st.record(&header(9, i as u16, i as u32 * 160), at(i) + late);
        }
        let j = st.report().unwrap().jitter;
        assert!((36..=40).contains(&j), "jitter {j}");
        // Evenly spaced packets: it decays towards 0.
        for i in 400..800u64 {
            st.record(&header(9, i as u16, i as u32 * 160), at(i));
        }
        assert_eq!(st.report().unwrap().jitter, 0);
        // RFC 4733 updates repeat their timestamp while time goes on: no jitter from them.
        for i in 800..810u64 {
            st.record(&header(9, i as u16, 800 * 160), at(i));
        }
        assert_eq!(st.report().unwrap().jitter, 0);
        // Arrival times in another clock rate are converted (48 kHz: 960 per 20 ms).
        let mut st = ReceiverStats::new(48000);
        for i in 0..50u64 {
            st.record(&header(9, i as u16, i as u32 * 960), at(i));
        }
        assert_eq!(st.report().unwrap().jitter, 0);
    }
}
