//! SDP (RFC 8866, which replaced RFC 4566) for vakt's voice calls, and the offer/answer model
//! (RFC 3264) on the SIP leg: a bounded parser into a typed [`Session`], a writer
//! ([`Session::encode`]), and [`LocalSession`], vakt's side of one call's offer/answer
//! exchanges, as the answerer (a unit or a trunk calls in) and as the offerer (vakt calls out,
//! puts a call on hold and takes it back).
//!
//! What vakt speaks on the SIP leg is G.711 over plain RTP (RTP/AVP, or RTP/AVPF from units
//! that add feedback): A-law (PT 8, or `PCMA/8000` on a dynamic PT) and μ-law (PT 0, or
//! `PCMU/8000`), with RFC 4733 `telephone-event/8000` for the SCAIP DTMF commands. An answer
//! takes the first of the offer's formats vakt supports (the offerer's preference), keeps the
//! offer's telephone-event PT, answers the direction (sendonly → recvonly ...) and rejects every
//! other media line with port 0 (RFC 3264 §6). What was agreed comes back typed as
//! [`Negotiated`]; an offer with nothing vakt can take is a [`NegotiateError`] (the SIP layer
//! answers 488 with [`NegotiateError::warning`]). [`Session::is_hold`] tells whether a
//! re-INVITE's offer puts the call on hold (sendonly, inactive, or `c=0.0.0.0`).
//!
//! Bounded by [`MAX_SDP_BYTES`], [`MAX_LINES`], [`MAX_MEDIA`] and [`MAX_FORMATS`]; never panics
//! on any input: every refusal is a typed [`SdpError`] with a stable `as_str()` label. Sans-IO:
//! the caller passes in vakt's address, port and session id. `proto/voice.md` documents the
//! subset, the decisions and examples; `proto/voice/` holds offers of real devices and browsers.
//!
//! Written here rather than taken from a crate: Mozilla's `webrtc-sdp` is shaped for
//! WebRTC's JSEP (it expects and checks ICE/DTLS attributes, and is MPL-licensed), webrtc-rs'
//! `sdp` has no bounds on lines or sections; neither does RFC 3264 offer/answer, which is
//! most of this module. The browser leg's SDP is str0m's (in `vakt::voice`), not this one.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Largest SDP body parsed (the SIP message that carries it is at most 16 KiB too).
pub const MAX_SDP_BYTES: usize = 16 * 1024;
/// Most non-empty lines in a body.
pub const MAX_LINES: usize = 512;
/// Most media sections (`m=` lines).
pub const MAX_MEDIA: usize = 16;
/// Most formats on one `m=` line (a browser's video line lists ~40).
pub const MAX_FORMATS: usize = 64;
/// Largest `a=ptime` / `a=maxptime` accepted, in milliseconds.
pub const MAX_PTIME_MS: u32 = 1000;
/// Content-Type of SDP bodies.
pub const CONTENT_TYPE: &str = "application/sdp";
/// Packet time vakt sends and asks for, and assumes when the remote gives none (RFC 3551 §4.5).
pub const DEFAULT_PTIME_MS: u32 = 20;
/// The telephone-event PT vakt offers (dynamic; RFC 4733 names none).
pub const DEFAULT_DTMF_PT: u8 = 101;
/// The events vakt lists in `a=fmtp` for telephone-event: the 16 DTMF keys (RFC 4733 §3.2).
pub const DTMF_EVENTS: &str = "0-15";

/// Why an SDP body was refused. The SIP layer answers an offer it cannot parse with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Over [`MAX_SDP_BYTES`].
    #[error("SDP body too large")]
    TooLarge,
    /// Over [`MAX_LINES`] lines.
    #[error("too many SDP lines")]
    TooManyLines,
    /// Over [`MAX_MEDIA`] media sections.
    #[error("too many media sections")]
    TooManyMedia,
    /// Over [`MAX_FORMATS`] formats on an `m=` line.
    #[error("too many formats on an m= line")]
    TooManyFormats,
    /// The body is not UTF-8.
    #[error("SDP not UTF-8")]
    NotUtf8,
    /// A line is not `<letter>=<value>`, holds a control character, or has an unknown type.
    #[error("bad SDP line")]
    BadLine,
    /// The body does not start with `v=0`, or repeats `v=`.
    #[error("bad or missing v=0")]
    BadVersion,
    /// No `o=` line.
    #[error("missing o= line")]
    MissingOrigin,
    /// The `o=` line is malformed, repeated, or inside a media section.
    #[error("bad o= line")]
    BadOrigin,
    /// A `c=` line is malformed or repeated within a section.
    #[error("bad c= line")]
    BadConnection,
    /// A media section with a port has no `c=` line, nor has the session (RFC 8866 §5.7).
    #[error("media without c= line")]
    MissingConnection,
    /// The `t=` line is malformed.
    #[error("bad t= line")]
    BadTiming,
    /// An `m=` line is malformed (port, proto, no format, a non-numeric RTP format).
    #[error("bad m= line")]
    BadMedia,
    /// A known attribute is malformed, or repeated with a different value.
    #[error("bad attribute {0}")]
    BadAttribute(&'static str),
    /// A line that may appear once per session appears twice.
    #[error("duplicate {0} line")]
    Duplicate(&'static str),
}

impl SdpError {
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            SdpError::TooLarge => "too_large",
            SdpError::TooManyLines => "too_many_lines",
            SdpError::TooManyMedia => "too_many_media",
            SdpError::TooManyFormats => "too_many_formats",
            SdpError::NotUtf8 => "not_utf8",
            SdpError::BadLine => "bad_line",
            SdpError::BadVersion => "bad_version",
            SdpError::MissingOrigin => "missing_origin",
            SdpError::BadOrigin => "bad_origin",
            SdpError::BadConnection => "bad_connection",
            SdpError::MissingConnection => "missing_connection",
            SdpError::BadTiming => "bad_timing",
            SdpError::BadMedia => "bad_media",
            SdpError::BadAttribute(_) => "bad_attribute",
            SdpError::Duplicate(_) => "duplicate",
        }
    }
}

/// Why an offer or an answer gives no call vakt can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    /// The offer has no audio stream (none, or every one disabled with port 0).
    #[error("no audio stream offered")]
    NoAudio,
    /// Audio is offered only over a profile vakt does not speak on the SIP leg (SRTP, DTLS).
    #[error("audio only over an unsupported transport")]
    Transport,
    /// Audio over RTP, but neither PCMA nor PCMU (e.g. G.729 only).
    #[error("no usable codec")]
    NoCodec,
    /// The answer to vakt's offer rejected the audio stream (port 0).
    #[error("audio rejected by the answer")]
    Rejected,
    /// The answer does not match vakt's offer (number or kind of media sections, profile).
    #[error("answer does not match the offer")]
    Mismatch,
    /// An answer arrived but vakt has no offer outstanding.
    #[error("no offer outstanding")]
    NoOffer,
}

impl NegotiateError {
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            NegotiateError::NoAudio => "no_audio",
            NegotiateError::Transport => "transport",
            NegotiateError::NoCodec => "no_codec",
            NegotiateError::Rejected => "rejected",
            NegotiateError::Mismatch => "mismatch",
            NegotiateError::NoOffer => "no_offer",
        }
    }

    /// For an offer vakt cannot take (answered `488 Not Acceptable Here`, RFC 3261 §21.4.26):
    /// the `Warning` code and text that say why (RFC 3261 §20.43). `None` for the errors of
    /// an answer to vakt's own offer, which no response carries.
    #[must_use]
    pub fn warning(&self) -> Option<(u16, &'static str)> {
        match self {
            NegotiateError::NoAudio => Some((304, "Media type not available")),
            NegotiateError::Transport => Some((302, "Incompatible transport protocol")),
            NegotiateError::NoCodec => Some((305, "Incompatible media format")),
            NegotiateError::Rejected | NegotiateError::Mismatch | NegotiateError::NoOffer => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The typed session
// ---------------------------------------------------------------------------------------

/// Address family of a `c=` or `o=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
}

impl AddrType {
    /// The wire token: `IP4` or `IP6`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
        }
    }

    fn parse(s: &str) -> Option<AddrType> {
        if s.eq_ignore_ascii_case("IP4") {
            Some(AddrType::Ip4)
        } else if s.eq_ignore_ascii_case("IP6") {
            Some(AddrType::Ip6)
        } else {
            None
        }
    }

    fn of(ip: IpAddr) -> AddrType {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }
}

/// The `o=` line: who made the description, and its version (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `<username>`, `-` when the maker has none.
    pub username: String,
    /// `<sess-id>`: the same for every description of one session.
    pub session_id: String,
    /// `<sess-version>`: grows by one when the description changes (RFC 3264 §8).
    pub session_version: String,
    /// `<addrtype>`.
    pub addr_type: AddrType,
    /// `<unicast-address>`, as written (informational; media go to `c=`).
    pub address: String,
}

/// The host of a `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal; `0.0.0.0` (RFC 2543 hold) and `::` are kept as unspecified addresses.
    Ip(IpAddr),
    /// A domain name (RFC 8866 allows one; vakt resolves nothing and learns the address from
    /// the peer's packets instead).
    Name(String),
}

/// A `c=` line (RFC 8866 §5.7); a multicast `/ttl/count` suffix is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `<addrtype>`; for an IP host it matches the literal's family.
    pub addr_type: AddrType,
    /// `<connection-address>`.
    pub host: Host,
}

impl Connection {
    /// `IN IP4|IP6 <ip>`.
    #[must_use]
    pub fn ip(ip: IpAddr) -> Connection {
        Connection {
            addr_type: AddrType::of(ip),
            host: Host::Ip(ip),
        }
    }

    /// The IP address, when it is a literal and not unspecified (`0.0.0.0`, `::`).
    #[must_use]
    pub fn specified_ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::Ip(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        }
    }

    /// `c=0.0.0.0` (or `::`): the pre-RFC 3264 way to put a call on hold.
    #[must_use]
    pub fn is_unspecified(&self) -> bool {
        matches!(self.host, Host::Ip(ip) if ip.is_unspecified())
    }
}

/// Media direction attributes (RFC 8866 §6.7, RFC 3264 §5.1), from the point of view of
/// whoever wrote the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default when none is given).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| s.eq_ignore_ascii_case(d.as_str()))
    }

    /// Whether this side sends media.
    #[must_use]
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this side receives media.
    #[must_use]
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction with these two abilities.
    #[must_use]
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The same stream seen from the other side: sendonly ↔ recvonly.
    #[must_use]
    pub fn reverse(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// The direction an answerer writes (RFC 3264 §6.1) to an offer of `offered`, when it
    /// itself wants `local`: it sends only what the offerer will receive and receives only
    /// what the offerer sends. Offer sendonly → recvonly, recvonly → sendonly, inactive →
    /// inactive, sendrecv → `local`.
    #[must_use]
    pub fn answer(offered: Direction, local: Direction) -> Direction {
        Direction::from_flags(
            offered.receives() && local.sends(),
            offered.sends() && local.receives(),
        )
    }
}

/// The transport profile of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proto {
    /// `RTP/AVP` (RFC 3551): plain RTP, what SIP phones and alarm units send.
    RtpAvp,
    /// `RTP/AVPF` (RFC 4585): plain RTP with feedback.
    RtpAvpf,
    /// `RTP/SAVP` (RFC 3711): SRTP, keys in `a=crypto`.
    RtpSavp,
    /// `RTP/SAVPF`: SRTP with feedback.
    RtpSavpf,
    /// `UDP/TLS/RTP/SAVP` (RFC 5764): DTLS-SRTP.
    UdpTlsRtpSavp,
    /// `UDP/TLS/RTP/SAVPF`: DTLS-SRTP with feedback, what browsers offer.
    UdpTlsRtpSavpf,
    /// Anything else (e.g. `UDP/DTLS/SCTP`, `udptl`), as written.
    Other(String),
}

impl Proto {
    const KNOWN: [(&'static str, Proto); 6] = [
        ("RTP/AVP", Proto::RtpAvp),
        ("RTP/AVPF", Proto::RtpAvpf),
        ("RTP/SAVP", Proto::RtpSavp),
        ("RTP/SAVPF", Proto::RtpSavpf),
        ("UDP/TLS/RTP/SAVP", Proto::UdpTlsRtpSavp),
        ("UDP/TLS/RTP/SAVPF", Proto::UdpTlsRtpSavpf),
    ];

    /// The wire token.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Proto::Other(s) => s,
            known => Proto::KNOWN
                .iter()
                .find(|(_, p)| p == known)
                .map_or("", |(s, _)| *s),
        }
    }

    fn parse(s: &str) -> Proto {
        Proto::KNOWN
            .iter()
            .find(|(t, _)| s.eq_ignore_ascii_case(t))
            .map_or_else(|| Proto::Other(s.to_owned()), |(_, p)| p.clone())
    }

    /// An RTP profile: its formats are payload type numbers.
    #[must_use]
    pub fn is_rtp(&self) -> bool {
        !matches!(self, Proto::Other(_))
    }

    /// Plain (unencrypted) RTP: the profiles vakt answers on the SIP leg.
    #[must_use]
    pub fn is_plain_rtp(&self) -> bool {
        matches!(self, Proto::RtpAvp | Proto::RtpAvpf)
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]` (RFC 8866 §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// RTP payload type, 0..=127.
    pub payload_type: u8,
    /// Encoding name as written (compared case-insensitively, RFC 4855 §3).
    pub encoding: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels (audio), when given.
    pub channels: Option<u16>,
}

/// `a=fmtp:<format> <parameters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    /// The format (a payload type on RTP lines).
    pub format: String,
    /// The parameters, as written (e.g. `0-15` for telephone-event).
    pub params: String,
}

/// An attribute vakt does not interpret, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Everything before the first `:`.
    pub name: String,
    /// Everything after it, `None` for a flag attribute.
    pub value: Option<String>,
}

/// One media section: the `m=` line and what follows it up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application` ...
    pub kind: String,
    /// Transport port; 0 is a disabled or rejected stream.
    pub port: u16,
    /// `<port>/<number of ports>`, when given.
    pub port_count: Option<u16>,
    /// Transport profile.
    pub proto: Proto,
    /// Formats in order of preference (payload types on RTP lines, validated 0..=127).
    pub formats: Vec<String>,
    /// Media-level `c=`, overriding the session's.
    pub connection: Option<Connection>,
    /// `a=rtpmap` lines, one per payload type.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` lines, one per format.
    pub fmtps: Vec<Fmtp>,
    /// `a=ptime` in ms (a fraction is rounded), the packet time this side wants to receive.
    pub ptime: Option<u32>,
    /// `a=maxptime` in ms.
    pub maxptime: Option<u32>,
    /// Media-level direction attribute, overriding the session's.
    pub direction: Option<Direction>,
    /// `a=rtcp-mux` (RFC 5761): RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// Every other attribute, in order.
    pub other: Vec<Attribute>,
}

/// Audio codecs vakt carries on the SIP leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 A-law (`PCMA/8000`, static PT 8).
    Pcma,
    /// G.711 μ-law (`PCMU/8000`, static PT 0).
    Pcmu,
}

impl Codec {
    /// The encoding name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Pcma => "PCMA",
            Codec::Pcmu => "PCMU",
        }
    }

    /// The static payload type (RFC 3551 Table 4).
    #[must_use]
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcma => 8,
            Codec::Pcmu => 0,
        }
    }

    /// The other G.711 law.
    #[must_use]
    pub fn other(self) -> Codec {
        match self {
            Codec::Pcma => Codec::Pcmu,
            Codec::Pcmu => Codec::Pcma,
        }
    }

    /// The clock rate (8000 Hz for both).
    #[must_use]
    pub fn clock_rate(self) -> u32 {
        8000
    }

    fn from_encoding(name: &str, rate: u32, channels: Option<u16>) -> Option<Codec> {
        if rate != 8000 || channels.is_some_and(|c| c != 1) {
            return None;
        }
        [Codec::Pcma, Codec::Pcmu]
            .into_iter()
            .find(|c| name.eq_ignore_ascii_case(c.as_str()))
    }
}

/// Static payload types of RFC 3551 Table 4 (audio), as `(pt, encoding, clock rate)`.
const STATIC_PTS: &[(u8, &str, u32)] = &[
    (0, "PCMU", 8000),
    (3, "GSM", 8000),
    (4, "G723", 8000),
    (5, "DVI4", 8000),
    (6, "DVI4", 16000),
    (7, "LPC", 8000),
    (8, "PCMA", 8000),
    (9, "G722", 8000),
    (10, "L16", 44100),
    (11, "L16", 44100),
    (12, "QCELP", 8000),
    (13, "CN", 8000),
    (14, "MPA", 90000),
    (15, "G728", 8000),
    (16, "DVI4", 11025),
    (17, "DVI4", 22050),
    (18, "G729", 8000),
];

/// What a payload type means on an `m=` line: its rtpmap, else RFC 3551's static table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding<'a> {
    /// Encoding name (as written in the rtpmap, upper case from the static table).
    pub name: &'a str,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels, when given.
    pub channels: Option<u16>,
}

impl Media {
    /// Whether this is an audio section.
    #[must_use]
    pub fn is_audio(&self) -> bool {
        self.kind.eq_ignore_ascii_case("audio")
    }

    /// The formats as payload types (empty for a non-RTP profile).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        let rtp = self.proto.is_rtp();
        self.formats
            .iter()
            .filter(move |_| rtp)
            .filter_map(|f| f.parse::<u8>().ok())
    }

    /// The `a=rtpmap` of a payload type.
    #[must_use]
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.payload_type == pt)
    }

    /// What payload type `pt` carries: its rtpmap, else the static assignment.
    #[must_use]
    pub fn encoding(&self, pt: u8) -> Option<Encoding<'_>> {
        if let Some(r) = self.rtpmap(pt) {
            return Some(Encoding {
                name: &r.encoding,
                clock_rate: r.clock_rate,
                channels: r.channels,
            });
        }
        STATIC_PTS
            .iter()
            .find(|(p, _, _)| *p == pt)
            .map(|&(_, name, clock_rate)| Encoding {
                name,
                clock_rate,
                channels: None,
            })
    }

    /// The vakt codec payload type `pt` carries, if any.
    #[must_use]
    pub fn codec(&self, pt: u8) -> Option<Codec> {
        self.encoding(pt)
            .and_then(|e| Codec::from_encoding(e.name, e.clock_rate, e.channels))
    }

    /// The first of this section's formats that vakt can use, in the section's order.
    #[must_use]
    pub fn first_codec(&self) -> Option<(Codec, u8)> {
        self.payload_types()
            .find_map(|pt| self.codec(pt).map(|c| (c, pt)))
    }

    /// The payload type of `telephone-event/8000` (RFC 4733 §7.1.1), if listed.
    #[must_use]
    pub fn dtmf_pt(&self) -> Option<u8> {
        self.payload_types().find(|&pt| {
            self.rtpmap(pt).is_some_and(|r| {
                r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == 8000
            })
        })
    }

    /// The `a=fmtp` parameters of a format.
    #[must_use]
    pub fn fmtp(&self, format: &str) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|f| f.format == format)
            .map(|f| f.params.as_str())
    }

    /// A rejected copy of this section for an answer: port 0, same kind, profile and
    /// formats (RFC 3264 §6: at least one format must be listed, and any will do).
    #[must_use]
    pub fn rejected(&self) -> Media {
        Media {
            kind: self.kind.clone(),
            port: 0,
            port_count: None,
            proto: self.proto.clone(),
            formats: self.formats.clone(),
            connection: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            ptime: None,
            maxptime: None,
            direction: None,
            rtcp_mux: false,
            other: Vec::new(),
        }
    }
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `o=`.
    pub origin: Origin,
    /// `s=` (`-` when absent).
    pub name: String,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// The first `t=` line as `(start, stop)`; `(0, 0)` when absent. An answer repeats the
    /// offer's (RFC 3264 §6).
    pub timing: (u64, u64),
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// Other session-level attributes, in order.
    pub other: Vec<Attribute>,
    /// Media sections, in order.
    pub media: Vec<Media>,
}

impl Session {
    /// The connection that applies to a media section (its own, else the session's).
    #[must_use]
    pub fn connection_of<'a>(&'a self, media: &'a Media) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// The direction that applies to a media section (its own, else the session's, else
    /// sendrecv).
    #[must_use]
    pub fn direction_of(&self, media: &Media) -> Direction {
        media
            .direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }

    /// Where to send RTP for a media section: its connection's IP and its port, `None` when
    /// the port is 0, the address unspecified (hold) or a name.
    #[must_use]
    pub fn rtp_address(&self, media: &Media) -> Option<SocketAddr> {
        if media.port == 0 {
            return None;
        }
        self.connection_of(media)
            .and_then(Connection::specified_ip)
            .map(|ip| SocketAddr::new(ip, media.port))
    }

    /// The audio stream vakt would use: the first audio section with a port over plain RTP.
    #[must_use]
    pub fn audio(&self) -> Option<(usize, &Media)> {
        self.media
            .iter()
            .enumerate()
            .find(|(_, m)| m.is_audio() && m.port != 0 && m.proto.is_plain_rtp())
    }

    /// Whether this offer (typically a re-INVITE's) puts vakt's audio stream on hold: the
    /// stream is `sendonly` or `inactive` (RFC 3264 §8.4), or its address is `0.0.0.0`
    /// (RFC 2543; `::` too). False when there is no such stream (a browser's DTLS offer with
    /// `c=IN IP4 0.0.0.0` is ICE, not hold).
    #[must_use]
    pub fn is_hold(&self) -> bool {
        let Some((_, m)) = self.audio() else {
            return false;
        };
        matches!(
            self.direction_of(m),
            Direction::SendOnly | Direction::Inactive
        ) || self
            .connection_of(m)
            .is_some_and(Connection::is_unspecified)
    }

    /// Writes the description with CRLF line ends: `v o s c t` and the session attributes,
    /// then each media section (`m c`, rtpmaps, fmtps, ptime, maxptime, direction,
    /// rtcp-mux, the other attributes). [`parse`] of the result gives back an equal
    /// `Session` for any `Session` that [`parse`] returned. Values must not hold line breaks
    /// (parsed ones never do).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        let o = &self.origin;
        let _ = write!(
            s,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.addr_type.as_str(),
            o.address,
            self.name
        );
        if let Some(c) = &self.connection {
            write_connection(&mut s, c);
        }
        let _ = write!(s, "t={} {}\r\n", self.timing.0, self.timing.1);
        if let Some(d) = self.direction {
            let _ = write!(s, "a={}\r\n", d.as_str());
        }
        for a in &self.other {
            write_attribute(&mut s, a);
        }
        for m in &self.media {
            let _ = write!(s, "m={} {}", m.kind, m.port);
            if let Some(n) = m.port_count {
                let _ = write!(s, "/{n}");
            }
            let _ = write!(s, " {}", m.proto.as_str());
            for f in &m.formats {
                let _ = write!(s, " {f}");
            }
            s.push_str("\r\n");
            if let Some(c) = &m.connection {
                write_connection(&mut s, c);
            }
            for r in &m.rtpmaps {
                let _ = write!(
                    s,
                    "a=rtpmap:{} {}/{}",
                    r.payload_type, r.encoding, r.clock_rate
                );
                if let Some(ch) = r.channels {
                    let _ = write!(s, "/{ch}");
                }
                s.push_str("\r\n");
            }
            for f in &m.fmtps {
                if f.params.is_empty() {
                    let _ = write!(s, "a=fmtp:{}\r\n", f.format);
                } else {
                    let _ = write!(s, "a=fmtp:{} {}\r\n", f.format, f.params);
                }
            }
            if let Some(p) = m.ptime {
                let _ = write!(s, "a=ptime:{p}\r\n");
            }
            if let Some(p) = m.maxptime {
                let _ = write!(s, "a=maxptime:{p}\r\n");
            }
            if let Some(d) = m.direction {
                let _ = write!(s, "a={}\r\n", d.as_str());
            }
            if m.rtcp_mux {
                s.push_str("a=rtcp-mux\r\n");
            }
            for a in &m.other {
                write_attribute(&mut s, a);
            }
        }
        s.into_bytes()
    }
}

fn write_connection(s: &mut String, c: &Connection) {
    let _ = match &c.host {
        Host::Ip(ip) => write!(s, "c=IN {} {ip}\r\n", c.addr_type.as_str()),
        Host::Name(n) => write!(s, "c=IN {} {n}\r\n", c.addr_type.as_str()),
    };
}

fn write_attribute(s: &mut String, a: &Attribute) {
    let _ = match &a.value {
        Some(v) => write!(s, "a={}:{v}\r\n", a.name),
        None => write!(s, "a={}\r\n", a.name),
    };
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// Parses an SDP body.
///
/// Tolerant where RFC 8866 §5 asks parsers to be: LF alone ends a line as well as CRLF,
/// trailing blanks and empty lines are skipped, names and tokens of known attributes, address
/// types and profiles compare case-insensitively, `i= u= e= p= b= r= z= k=` lines are read
/// and ignored, other attributes are kept as [`Attribute`]s. Strict where it matters: the
/// first line is `v=0`, there is exactly one `o=` and it is in the session part, every media
/// section with a port has a `c=` (its own or the session's), RTP formats are payload types
/// 0..=127, a line of unknown type or with a control character is refused (RFC 8866 §5 lets
/// a parser reject a type it does not understand), and `rtpmap`, `fmtp`, `ptime`,
/// `maxptime` and the direction attributes must parse and not contradict themselves.
///
/// Bounded work: at most [`MAX_SDP_BYTES`] and [`MAX_LINES`] lines (a repeated `rtpmap` or
/// `fmtp` is looked up among its section's), and never panics.
pub fn parse(body: &[u8]) -> Result<Session, SdpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut p = Parser::default();
    let mut lines = 0usize;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = line.trim_end_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if lines > MAX_LINES {
            return Err(SdpError::TooManyLines);
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(SdpError::BadLine);
        }
        let bytes = line.as_bytes();
        let (Some(&kind), Some(b'='), Some(value)) = (bytes.first(), bytes.get(1), line.get(2..))
        else {
            return Err(SdpError::BadLine);
        };
        p.line(kind, value)?;
    }
    p.finish()
}

/// A section being read: the session part, or the latest media section.
#[derive(Default)]
struct Parser {
    version: bool,
    origin: Option<Origin>,
    name: Option<String>,
    connection: Option<Connection>,
    timing: Option<(u64, u64)>,
    direction: Option<Direction>,
    other: Vec<Attribute>,
    media: Vec<Media>,
}

impl Parser {
    fn line(&mut self, kind: u8, value: &str) -> Result<(), SdpError> {
        if !self.version {
            if kind != b'v' || value.trim() != "0" {
                return Err(SdpError::BadVersion);
            }
            self.version = true;
            return Ok(());
        }
        let in_media = !self.media.is_empty();
        match kind {
            b'v' => Err(SdpError::BadVersion),
            b'o' => {
                if in_media || self.origin.is_some() {
                    return Err(SdpError::BadOrigin);
                }
                self.origin = Some(parse_origin(value)?);
                Ok(())
            }
            b's' => {
                if in_media {
                    return Err(SdpError::BadLine);
                }
                if self.name.is_some() {
                    return Err(SdpError::Duplicate("s"));
                }
                self.name = Some(value.to_owned());
                Ok(())
            }
            b'c' => {
                let c = parse_connection(value)?;
                let slot = match self.media.last_mut() {
                    Some(m) => &mut m.connection,
                    None => &mut self.connection,
                };
                if slot.is_some() {
                    return Err(SdpError::BadConnection);
                }
                *slot = Some(c);
                Ok(())
            }
            b't' => {
                if in_media {
                    return Err(SdpError::BadLine);
                }
                let t = parse_timing(value)?;
                if self.timing.is_none() {
                    self.timing = Some(t);
                }
                Ok(())
            }
            b'm' => {
                if self.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                self.media.push(parse_media_line(value)?);
                Ok(())
            }
            b'a' => self.attribute(value),
            b'i' | b'u' | b'e' | b'p' | b'b' | b'r' | b'z' | b'k' => Ok(()),
            _ => Err(SdpError::BadLine),
        }
    }

    fn attribute(&mut self, value: &str) -> Result<(), SdpError> {
        let (name, val) = match value.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (value, None),
        };
        if name.is_empty() {
            return Err(SdpError::BadAttribute("name"));
        }
        if let Some(d) = Direction::parse(name).filter(|_| val.is_none()) {
            let slot = match self.media.last_mut() {
                Some(m) => &mut m.direction,
                None => &mut self.direction,
            };
            return set_once(slot, d, "direction");
        }
        let Some(m) = self.media.last_mut() else {
            self.other.push(Attribute {
                name: name.to_owned(),
                value: val.map(str::to_owned),
            });
            return Ok(());
        };
        let lower = |n: &str| name.eq_ignore_ascii_case(n);
        match val {
            Some(v) if lower("rtpmap") => {
                let r = parse_rtpmap(v)?;
                match m.rtpmap(r.payload_type) {
                    Some(old) if *old == r => {}
                    Some(_) => return Err(SdpError::BadAttribute("rtpmap")),
                    None => m.rtpmaps.push(r),
                }
            }
            Some(v) if lower("fmtp") => {
                let f = parse_fmtp(v)?;
                match m.fmtps.iter().find(|o| o.format == f.format) {
                    Some(old) if *old == f => {}
                    Some(_) => return Err(SdpError::BadAttribute("fmtp")),
                    None => m.fmtps.push(f),
                }
            }
            Some(v) if lower("ptime") => {
                set_once(&mut m.ptime, parse_ptime(v, "ptime")?, "ptime")?;
            }
            Some(v) if lower("maxptime") => {
                set_once(&mut m.maxptime, parse_ptime(v, "maxptime")?, "maxptime")?;
            }
            None if lower("rtcp-mux") => m.rtcp_mux = true,
            _ => m.other.push(Attribute {
                name: name.to_owned(),
                value: val.map(str::to_owned),
            }),
        }
        Ok(())
    }

    fn finish(self) -> Result<Session, SdpError> {
        if !self.version {
            return Err(SdpError::BadVersion);
        }
        let origin = self.origin.ok_or(SdpError::MissingOrigin)?;
        if self.connection.is_none()
            && self
                .media
                .iter()
                .any(|m| m.port != 0 && m.connection.is_none())
        {
            return Err(SdpError::MissingConnection);
        }
        Ok(Session {
            origin,
            name: self.name.unwrap_or_else(|| "-".to_owned()),
            connection: self.connection,
            timing: self.timing.unwrap_or((0, 0)),
            direction: self.direction,
            other: self.other,
            media: self.media,
        })
    }
}

/// Sets `slot` to `v`; the same value again is fine, a different one is an error.
fn set_once<T: PartialEq>(slot: &mut Option<T>, v: T, what: &'static str) -> Result<(), SdpError> {
    match slot {
        Some(old) if *old != v => Err(SdpError::BadAttribute(what)),
        _ => {
            *slot = Some(v);
            Ok(())
        }
    }
}

/// A token: non-empty, no whitespace (the line has no control characters already).
fn token(s: &str) -> bool {
    !s.is_empty() && !s.contains([' ', '\t'])
}

fn parse_origin(value: &str) -> Result<Origin, SdpError> {
    let mut it = value.split_whitespace();
    let (Some(user), Some(id), Some(ver), Some(net), Some(at), Some(addr), None) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) else {
        return Err(SdpError::BadOrigin);
    };
    if !net.eq_ignore_ascii_case("IN") {
        return Err(SdpError::BadOrigin);
    }
    let addr_type = AddrType::parse(at).ok_or(SdpError::BadOrigin)?;
    Ok(Origin {
        username: user.to_owned(),
        session_id: id.to_owned(),
        session_version: ver.to_owned(),
        addr_type,
        address: addr.to_owned(),
    })
}

fn parse_connection(value: &str) -> Result<Connection, SdpError> {
    let mut it = value.split_whitespace();
    let (Some(net), Some(at), Some(addr), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(SdpError::BadConnection);
    };
    if !net.eq_ignore_ascii_case("IN") {
        return Err(SdpError::BadConnection);
    }
    let addr_type = AddrType::parse(at).ok_or(SdpError::BadConnection)?;
    let host = match addr.split_once('/') {
        Some((host, suffix)) => {
            let numbers = suffix
                .split('/')
                .all(|n| !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()));
            if !numbers {
                return Err(SdpError::BadConnection);
            }
            host
        }
        None => addr,
    };
    let host = match host.parse::<IpAddr>() {
        Ok(ip) if AddrType::of(ip) == addr_type => Host::Ip(ip),
        Ok(_) => return Err(SdpError::BadConnection),
        Err(_) => {
            let name_ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && host.bytes().any(|b| b.is_ascii_alphabetic());
            if !name_ok {
                return Err(SdpError::BadConnection);
            }
            Host::Name(host.to_owned())
        }
    };
    Ok(Connection { addr_type, host })
}

fn parse_timing(value: &str) -> Result<(u64, u64), SdpError> {
    let mut it = value.split_whitespace();
    let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
        return Err(SdpError::BadTiming);
    };
    let n = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u64>().ok())
            .flatten()
            .ok_or(SdpError::BadTiming)
    };
    Ok((n(a)?, n(b)?))
}

fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_media_line(value: &str) -> Result<Media, SdpError> {
    let mut it = value.split_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (it.next(), it.next(), it.next()) else {
        return Err(SdpError::BadMedia);
    };
    let (port, count) = match port.split_once('/') {
        Some((p, n)) => (p, Some(digits::<u16>(n).ok_or(SdpError::BadMedia)?)),
        None => (port, None),
    };
    let port = digits::<u16>(port).ok_or(SdpError::BadMedia)?;
    let proto = Proto::parse(proto);
    let mut formats = Vec::new();
    for f in it {
        if formats.len() >= MAX_FORMATS {
            return Err(SdpError::TooManyFormats);
        }
        if proto.is_rtp() && digits::<u8>(f).is_none_or(|pt| pt > 127) {
            return Err(SdpError::BadMedia);
        }
        formats.push(f.to_owned());
    }
    if formats.is_empty() {
        return Err(SdpError::BadMedia);
    }
    Ok(Media {
        kind: kind.to_owned(),
        port,
        port_count: count,
        proto,
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        maxptime: None,
        direction: None,
        rtcp_mux: false,
        other: Vec::new(),
    })
}

fn parse_rtpmap(value: &str) -> Result<RtpMap, SdpError> {
    const BAD: SdpError = SdpError::BadAttribute("rtpmap");
    let mut it = value.split_whitespace();
    let (Some(pt), Some(enc), None) = (it.next(), it.next(), it.next()) else {
        return Err(BAD);
    };
    let payload_type = digits::<u8>(pt).filter(|&pt| pt <= 127).ok_or(BAD)?;
    let mut parts = enc.split('/');
    let (Some(name), Some(rate)) = (parts.next(), parts.next()) else {
        return Err(BAD);
    };
    let channels = match parts.next() {
        Some(c) => Some(digits::<u16>(c).filter(|&c| c > 0).ok_or(BAD)?),
        None => None,
    };
    if parts.next().is_some() || name.is_empty() {
        return Err(BAD);
    }
    let clock_rate = digits::<u32>(rate).filter(|&r| r > 0).ok_or(BAD)?;
    Ok(RtpMap {
        payload_type,
        encoding: name.to_owned(),
        clock_rate,
        channels,
    })
}

fn parse_fmtp(value: &str) -> Result<Fmtp, SdpError> {
    let value = value.trim_start();
    let (format, params) = value
        .split_once([' ', '\t'])
        .map_or((value, ""), |(f, p)| (f, p.trim_start()));
    if !token(format) {
        return Err(SdpError::BadAttribute("fmtp"));
    }
    Ok(Fmtp {
        format: format.to_owned(),
        params: params.to_owned(),
    })
}

/// `a=ptime` / `a=maxptime`: milliseconds, integer or decimal (RFC 8866 §6.4); a fraction
/// is rounded half up. 1..=[`MAX_PTIME_MS`].
fn parse_ptime(value: &str, what: &'static str) -> Result<u32, SdpError> {
    let v = value.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) || int.len() > 4 {
        return Err(SdpError::BadAttribute(what));
    }
    let mut ms = digits::<u32>(int).ok_or(SdpError::BadAttribute(what))?;
    if frac.bytes().next().is_some_and(|d| d >= b'5') {
        ms += 1;
    }
    if (1..=MAX_PTIME_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(SdpError::BadAttribute(what))
    }
}

// ---------------------------------------------------------------------------------------
// Offer / answer
// ---------------------------------------------------------------------------------------

/// vakt's media endpoint for one call on the SIP leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address vakt's RTP socket is reached at (the configured public address when vakt
    /// is behind NAT); it goes into `o=` and `c=`.
    pub address: IpAddr,
    /// vakt's RTP port for this call.
    pub port: u16,
    /// Whether vakt takes RTCP on the RTP port (RFC 5761). When true, vakt offers
    /// `a=rtcp-mux` and accepts it when offered; the relay then sees RTCP on the RTP port
    /// (`rtp::parse` refuses it as `rtcp`).
    pub rtcp_mux: bool,
}

/// What one offer/answer exchange agreed, for the relay.
///
/// The payload types are the remote's numbering, the ones vakt sends with. When vakt
/// answered they are the offer's, which vakt receives with too; when vakt offered, RFC 3264
/// §6.1 asks the answerer to reuse vakt's numbers, so they are the same in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The audio codec.
    pub codec: Codec,
    /// Its payload type.
    pub payload_type: u8,
    /// The telephone-event/8000 payload type, when both sides have it (RFC 4733).
    pub dtmf_payload_type: Option<u8>,
    /// Where to send RTP: the remote's `c=` and port. `None` while the remote holds the call
    /// with `c=0.0.0.0`, or when it gave a name instead of an address; the relay learns the
    /// address from the remote's packets anyway (symmetric RTP).
    pub remote: Option<SocketAddr>,
    /// vakt's direction: `SendRecv` in a normal call, `RecvOnly` while the remote holds it
    /// (it offered sendonly), `SendOnly` while vakt holds it, `Inactive` when both do.
    pub direction: Direction,
    /// The packet time the remote asked to receive (`a=ptime`), else
    /// [`DEFAULT_PTIME_MS`].
    pub ptime_ms: u32,
    /// RTCP shares the RTP port (both sides said `a=rtcp-mux`).
    pub rtcp_mux: bool,
    /// Index of the audio section among the session's media sections.
    pub media_index: usize,
}

/// vakt's answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer's SDP body (Content-Type [`CONTENT_TYPE`]).
    pub sdp: Vec<u8>,
    /// What it agreed.
    pub negotiated: Negotiated,
}

/// vakt's offer waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    media_count: usize,
    audio_index: usize,
    direction: Direction,
    rtcp_mux: bool,
}

/// vakt's side of the offer/answer exchanges of one call (one SIP dialog): its `o=` line
/// (session id fixed, version +1 whenever what vakt sends changes, RFC 3264 §8), the last
/// description it sent (a re-offer keeps every media section of it, RFC 3264 §8), its
/// outstanding offer and what was agreed.
///
/// As the answerer: [`answer`](Self::answer) each offer (the INVITE's, then re-INVITEs').
/// As the offerer: [`offer`](Self::offer) (an INVITE out, or a 200 OK to an INVITE without
/// a body), [`hold`](Self::hold) and [`resume`](Self::resume), each followed by
/// [`take_answer`](Self::take_answer). The SIP layer keeps to RFC 3264 §4 (one exchange at a
/// time; 491 on glare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSession {
    local: LocalMedia,
    session_id: u64,
    version: u64,
    last: Option<Session>,
    pending: Option<Pending>,
    agreed: Option<Negotiated>,
}

impl LocalSession {
    /// A session with vakt's media endpoint, `o=` session id and first version (the caller
    /// picks them, e.g. from a random number or the clock: RFC 8866 §5.2 only asks that
    /// the id be unique).
    #[must_use]
    pub fn new(local: LocalMedia, session_id: u64, version: u64) -> LocalSession {
        LocalSession {
            local,
            session_id,
            version,
            last: None,
            pending: None,
            agreed: None,
        }
    }

    /// The `o=` session id.
    #[must_use]
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The `o=` version of the last description sent (or the first one's, before any).
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// What the last completed exchange agreed.
    #[must_use]
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.agreed.as_ref()
    }

    /// Answers an offer (RFC 3264 §6): takes the first audio section over plain RTP whose
    /// formats include PCMA or PCMU, the first of those in the offer's order, keeps the
    /// offer's telephone-event/8000 PT when offered, answers `Direction::answer(offered,
    /// want)` (`want` is `SendRecv` unless vakt itself holds the call), and rejects every
    /// other section with port 0. The offer's `t=` is repeated.
    ///
    /// Errors: [`NegotiateError::NoAudio`], [`NegotiateError::Transport`] (audio only over
    /// SRTP/DTLS), [`NegotiateError::NoCodec`]; the SIP layer answers 488 with
    /// [`NegotiateError::warning`], and nothing changes here.
    pub fn answer(&mut self, offer: &Session, want: Direction) -> Result<Answer, NegotiateError> {
        let mut saw_audio = false;
        let mut saw_plain = false;
        let mut chosen = None;
        for (i, m) in offer.media.iter().enumerate() {
            if !m.is_audio() || m.port == 0 {
                continue;
            }
            saw_audio = true;
            if !m.proto.is_plain_rtp() {
                continue;
            }
            saw_plain = true;
            if let Some((codec, pt)) = m.first_codec() {
                chosen = Some((i, m, codec, pt));
                break;
            }
        }
        let Some((index, m, codec, pt)) = chosen else {
            return Err(if !saw_audio {
                NegotiateError::NoAudio
            } else if !saw_plain {
                NegotiateError::Transport
            } else {
                NegotiateError::NoCodec
            });
        };
        let dtmf = m.dtmf_pt();
        let direction = Direction::answer(offer.direction_of(m), want);
        let rtcp_mux = self.local.rtcp_mux && m.rtcp_mux;
        let audio = self.audio_section(m.proto.clone(), codec, pt, None, dtmf, direction, rtcp_mux);
        let media = offer
            .media
            .iter()
            .enumerate()
            .map(|(i, o)| {
                if i == index {
                    audio.clone()
                } else {
                    o.rejected()
                }
            })
            .collect();
        let negotiated = Negotiated {
            codec,
            payload_type: pt,
            dtmf_payload_type: dtmf,
            remote: offer.rtp_address(m),
            direction,
            ptime_ms: m.ptime.unwrap_or(DEFAULT_PTIME_MS),
            rtcp_mux,
            media_index: index,
        };
        let sdp = self.send(media, offer.timing);
        self.pending = None;
        self.agreed = Some(negotiated);
        Ok(Answer { sdp, negotiated })
    }

    /// An offer (RFC 3264 §5) with vakt's audio in `direction`: the first offer lists PCMA
    /// (8), PCMU (0) and telephone-event/8000 (101); after an exchange the agreed codec and
    /// PTs come first and stay the same (RFC 3264 §8.3.2), and every other media section of
    /// the last description is repeated (rejected ones with port 0, RFC 3264 §8).
    pub fn offer(&mut self, direction: Direction) -> Vec<u8> {
        let (codec, pt, dtmf, index) = match &self.agreed {
            Some(a) => (a.codec, a.payload_type, a.dtmf_payload_type, a.media_index),
            None => (Codec::Pcma, Codec::Pcma.static_pt(), None, 0),
        };
        let other = codec.other();
        let other_pt = Some(other.static_pt()).filter(|&p| p != pt);
        let dtmf = dtmf.or_else(|| {
            (DEFAULT_DTMF_PT..=127)
                .chain(96..DEFAULT_DTMF_PT)
                .find(|&p| p != pt && Some(p) != other_pt)
        });
        let proto = self
            .last
            .as_ref()
            .and_then(|l| l.media.get(index))
            .map_or(Proto::RtpAvp, |m| m.proto.clone());
        let audio = self.audio_section(
            proto,
            codec,
            pt,
            other_pt.map(|p| (other, p)),
            dtmf,
            direction,
            self.local.rtcp_mux,
        );
        let mut media = match &self.last {
            Some(l) if index < l.media.len() => l.media.clone(),
            _ => vec![audio.clone()],
        };
        if let Some(slot) = media.get_mut(index) {
            *slot = audio;
        }
        let timing = self.last.as_ref().map_or((0, 0), |l| l.timing);
        self.pending = Some(Pending {
            media_count: media.len(),
            audio_index: index,
            direction,
            rtcp_mux: self.local.rtcp_mux,
        });
        self.send(media, timing)
    }

    /// A re-offer that puts the call on hold (RFC 3264 §8.4): `sendonly`, or `inactive` if
    /// vakt was only receiving.
    pub fn hold(&mut self) -> Vec<u8> {
        let now = self.agreed.map_or(Direction::SendRecv, |a| a.direction);
        let d = if now.sends() {
            Direction::SendOnly
        } else {
            Direction::Inactive
        };
        self.offer(d)
    }

    /// A re-offer that takes the call off hold: `sendrecv`.
    pub fn resume(&mut self) -> Vec<u8> {
        self.offer(Direction::SendRecv)
    }

    /// Takes the answer to vakt's outstanding offer: the same number of media sections,
    /// vakt's audio section not rejected and over plain RTP, its first format that is PCMA
    /// or PCMU (the answerer's choice), its telephone-event/8000 PT, and vakt's direction
    /// as the answer's reversed within what vakt offered. The offer is no longer
    /// outstanding afterwards, whatever the result.
    pub fn take_answer(&mut self, answer: &Session) -> Result<Negotiated, NegotiateError> {
        let pending = self.pending.take().ok_or(NegotiateError::NoOffer)?;
        if answer.media.len() != pending.media_count {
            return Err(NegotiateError::Mismatch);
        }
        let m = answer
            .media
            .get(pending.audio_index)
            .ok_or(NegotiateError::Mismatch)?;
        if !m.is_audio() {
            return Err(NegotiateError::Mismatch);
        }
        if m.port == 0 {
            return Err(NegotiateError::Rejected);
        }
        if !m.proto.is_plain_rtp() {
            return Err(NegotiateError::Mismatch);
        }
        let (codec, pt) = m.first_codec().ok_or(NegotiateError::NoCodec)?;
        let theirs = answer.direction_of(m);
        let direction = Direction::from_flags(
            pending.direction.sends() && theirs.receives(),
            pending.direction.receives() && theirs.sends(),
        );
        let negotiated = Negotiated {
            codec,
            payload_type: pt,
            dtmf_payload_type: m.dtmf_pt(),
            remote: answer.rtp_address(m),
            direction,
            ptime_ms: m.ptime.unwrap_or(DEFAULT_PTIME_MS),
            rtcp_mux: pending.rtcp_mux && m.rtcp_mux,
            media_index: pending.audio_index,
        };
        self.agreed = Some(negotiated);
        Ok(negotiated)
    }

    /// vakt's audio section.
    #[allow(clippy::too_many_arguments)]
    fn audio_section(
        &self,
        proto: Proto,
        codec: Codec,
        pt: u8,
        second: Option<(Codec, u8)>,
        dtmf: Option<u8>,
        direction: Direction,
        rtcp_mux: bool,
    ) -> Media {
        let mut formats = vec![pt.to_string()];
        let mut rtpmaps = vec![rtpmap(pt, codec.as_str(), codec.clock_rate())];
        if let Some((c, p)) = second {
            formats.push(p.to_string());
            rtpmaps.push(rtpmap(p, c.as_str(), c.clock_rate()));
        }
        let mut fmtps = Vec::new();
        if let Some(d) = dtmf {
            formats.push(d.to_string());
            rtpmaps.push(rtpmap(d, "telephone-event", 8000));
            fmtps.push(Fmtp {
                format: d.to_string(),
                params: DTMF_EVENTS.to_owned(),
            });
        }
        Media {
            kind: "audio".to_owned(),
            port: self.local.port,
            port_count: None,
            proto,
            formats,
            connection: None,
            rtpmaps,
            fmtps,
            ptime: Some(DEFAULT_PTIME_MS),
            maxptime: None,
            direction: Some(direction),
            rtcp_mux,
            other: Vec::new(),
        }
    }

    /// The description vakt sends with these media sections; the version grows by one when
    /// it differs from the last one sent.
    fn send(&mut self, media: Vec<Media>, timing: (u64, u64)) -> Vec<u8> {
        let ip = self.local.address;
        let mut s = Session {
            origin: Origin {
                username: "vakt".to_owned(),
                session_id: self.session_id.to_string(),
                session_version: self.version.to_string(),
                addr_type: AddrType::of(ip),
                address: ip.to_string(),
            },
            name: "vakt".to_owned(),
            connection: Some(Connection::ip(ip)),
            timing,
            direction: None,
            other: Vec::new(),
            media,
        };
        if let Some(last) = &self.last {
            let same =
                last.connection == s.connection && last.timing == s.timing && last.media == s.media;
            if !same {
                self.version = self.version.saturating_add(1);
                s.origin.session_version = self.version.to_string();
            }
        }
        let sdp = s.encode();
        self.last = Some(s);
        sdp
    }
}

fn rtpmap(pt: u8, name: &str, rate: u32) -> RtpMap {
    RtpMap {
        payload_type: pt,
        encoding: name.to_owned(),
        clock_rate: rate,
        channels: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaip::tests::records;

    const VECTORS: &str = include_str!("../voice/vectors.txt");

    fn lf_to_crlf(s: &str) -> String {
        s.replace("\r\n", "\n").replace('\n', "\r\n")
    }

    fn local(s: &str) -> LocalMedia {
        let (addr, mux) = match s.strip_suffix(" rtcp-mux") {
            Some(a) => (a, true),
            None => (s, false),
        };
        let addr: SocketAddr = addr.parse().expect("local address");
        LocalMedia {
            address: addr.ip(),
            port: addr.port(),
            rtcp_mux: mux,
        }
    }

    fn vakt() -> LocalMedia {
        local("203.0.113.5:40000")
    }

    fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
        v.map_or_else(|| "-".to_owned(), |v| v.to_string())
    }

    fn describe_media(m: &Media) -> String {
        format!(
            "{} {} {} {}",
            m.kind,
            m.port,
            m.proto.as_str(),
            m.formats.join(" ")
        )
    }

    #[test]
    fn vectors_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("voice");
        let mut named = Vec::new();
        for rec in records(VECTORS) {
            let get = |k: &str| rec.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let all = |k: &str| {
                rec.iter()
                    .filter(|(n, _)| *n == k)
                    .map(|(_, v)| *v)
                    .collect::<Vec<_>>()
            };
            let name = get("name").expect("name");
            named.push(format!("{name}.sdp"));
            let text = std::fs::read_to_string(dir.join(format!("{name}.sdp"))).expect(name);
            for body in [text.clone(), lf_to_crlf(&text)] {
                let s = parse(body.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                let media: Vec<String> = s.media.iter().map(describe_media).collect();
                assert_eq!(media, all("media"), "{name}");
                assert_eq!(s.is_hold(), get("hold") == Some("yes"), "{name}: hold");
                let g711 = s
                    .media
                    .iter()
                    .find(|m| m.is_audio())
                    .and_then(|m| {
                        m.first_codec()
                            .map(|(c, pt)| format!("{} {pt} dtmf {}", c.as_str(), opt(m.dtmf_pt())))
                    })
                    .unwrap_or_else(|| "-".to_owned());
                assert_eq!(Some(g711.as_str()), get("g711"), "{name}");
                // Written and read again: the same session.
                assert_eq!(parse(&s.encode()).as_ref(), Ok(&s), "{name}: round trip");

                let mut ls = LocalSession::new(local(get("local").expect("local")), 1, 1);
                let answer_file = dir.join(format!("{name}.answer.sdp"));
                match ls.answer(&s, Direction::SendRecv) {
                    Ok(a) => {
                        assert_eq!(get("answer"), Some("ok"), "{name}");
                        if body == text {
                            named.push(format!("{name}.answer.sdp"));
                        }
                        let want = std::fs::read_to_string(&answer_file).expect("answer file");
                        assert_eq!(
                            String::from_utf8(a.sdp.clone()).expect("utf8"),
                            lf_to_crlf(&want),
                            "{name}: answer"
                        );
                        let n = a.negotiated;
                        let got = [
                            ("codec", n.codec.as_str().to_owned()),
                            ("pt", n.payload_type.to_string()),
                            ("dtmf", opt(n.dtmf_payload_type)),
                            ("remote", opt(n.remote)),
                            ("direction", n.direction.as_str().to_owned()),
                            ("ptime", n.ptime_ms.to_string()),
                        ];
                        for (k, v) in got {
                            assert_eq!(Some(v.as_str()), get(k), "{name}: {k}");
                        }
                        // The answer is an answer: as many m= lines, one with a port.
                        let back = parse(&a.sdp).expect("answer parses");
                        assert_eq!(back.media.len(), s.media.len(), "{name}");
                        assert_eq!(back.media.iter().filter(|m| m.port != 0).count(), 1);
                    }
                    Err(e) => {
                        assert_eq!(Some(e.as_str()), get("answer"), "{name}");
                        assert!(!answer_file.exists(), "{name}: no answer expected");
                    }
                }
            }
        }
        assert!(named.len() >= 8, "{named:?}");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("proto/voice")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".sdp"))
            .collect();
        files.sort();
        named.sort();
        assert_eq!(files, named, "every .sdp file belongs to a record");
    }

    const PJSIP_LIKE: &str = "v=0\r\n\
o=- 3912043557 3912043557 IN IP4 10.64.12.7\r\n\
s=pjmedia\r\n\
t=0 0\r\n\
m=audio 4002 RTP/AVP 0 8 101\r\n\
c=IN IP4 10.64.12.7\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n";

    /// A minimal offer with one audio line and `extra` lines appended to it.
    fn offer(m_line: &str, extra: &str) -> Session {
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm={m_line}\r\n{extra}"
        );
        parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    #[test]
    fn parses_a_pjsip_like_offer() {
        let s = parse(PJSIP_LIKE.as_bytes()).unwrap();
        assert_eq!(
            s.origin,
            Origin {
                username: "-".into(),
                session_id: "3912043557".into(),
                session_version: "3912043557".into(),
                addr_type: AddrType::Ip4,
                address: "10.64.12.7".into(),
            }
        );
        assert_eq!(s.name, "pjmedia");
        assert_eq!(s.timing, (0, 0));
        assert_eq!(s.connection, None);
        let m = &s.media[0];
        assert_eq!(
            (m.kind.as_str(), m.port, &m.proto),
            ("audio", 4002, &Proto::RtpAvp)
        );
        assert_eq!(m.payload_types().collect::<Vec<_>>(), [0, 8, 101]);
        assert_eq!(
            m.connection,
            Some(Connection::ip("10.64.12.7".parse().unwrap()))
        );
        assert_eq!(m.direction, Some(Direction::SendRecv));
        assert_eq!(m.codec(0), Some(Codec::Pcmu));
        assert_eq!(m.codec(8), Some(Codec::Pcma));
        assert_eq!(m.codec(101), None);
        assert_eq!(m.dtmf_pt(), Some(101));
        assert_eq!(m.fmtp("101"), Some("0-16"));
        assert_eq!(s.rtp_address(m), Some("10.64.12.7:4002".parse().unwrap()));
        assert!(!s.is_hold());
    }

    #[test]
    fn answers_the_first_supported_codec_and_keeps_the_dtmf_pt() {
        let s = parse(PJSIP_LIKE.as_bytes()).unwrap();
        let mut ls = LocalSession::new(vakt(), 77, 5);
        let a = ls.answer(&s, Direction::SendRecv).unwrap();
        assert_eq!(
            String::from_utf8(a.sdp).unwrap(),
            "v=0\r\n\
o=vakt 77 5 IN IP4 203.0.113.5\r\n\
s=vakt\r\n\
c=IN IP4 203.0.113.5\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
        );
        assert_eq!(
            a.negotiated,
            Negotiated {
                codec: Codec::Pcmu,
                payload_type: 0,
                dtmf_payload_type: Some(101),
                remote: Some("10.64.12.7:4002".parse().unwrap()),
                direction: Direction::SendRecv,
                ptime_ms: 20,
                rtcp_mux: false,
                media_index: 0,
            }
        );
        assert_eq!(ls.negotiated(), Some(&a.negotiated));
        // Static PTs without rtpmap, PCMA first.
        let s = offer("audio 5000 RTP/AVP 8 0", "");
        let a = LocalSession::new(vakt(), 1, 1)
            .answer(&s, Direction::SendRecv)
            .unwrap();
        assert_eq!(
            (
                a.negotiated.codec,
                a.negotiated.payload_type,
                a.negotiated.dtmf_payload_type
            ),
            (Codec::Pcma, 8, None)
        );
        assert!(
            !String::from_utf8(a.sdp)
                .unwrap()
                .contains("telephone-event")
        );
    }

    #[test]
    fn takes_g711_on_a_dynamic_pt_by_its_rtpmap() {
        let s = offer(
            "audio 5000 RTP/AVP 96 97 98",
            "a=rtpmap:96 PCMA/16000\r\na=rtpmap:97 pcma/8000/1\r\na=rtpmap:98 PCMU/8000\r\n",
        );
        let a = LocalSession::new(vakt(), 1, 1)
            .answer(&s, Direction::SendRecv)
            .unwrap();
        assert_eq!(
            (a.negotiated.codec, a.negotiated.payload_type),
            (Codec::Pcma, 97)
        );
        assert!(
            String::from_utf8(a.sdp)
                .unwrap()
                .contains("a=rtpmap:97 PCMA/8000\r\n")
        );
        // Stereo G.711, or an rtpmap that re-maps PT 8, is not what vakt carries.
        let s = offer(
            "audio 5000 RTP/AVP 8 96",
            "a=rtpmap:8 G729/8000\r\na=rtpmap:96 PCMU/8000/2\r\n",
        );
        assert_eq!(
            LocalSession::new(vakt(), 1, 1).answer(&s, Direction::SendRecv),
            Err(NegotiateError::NoCodec)
        );
        // telephone-event at another clock rate is not kept.
        let s = offer(
            "audio 5000 RTP/AVP 0 110",
            "a=rtpmap:110 telephone-event/48000\r\n",
        );
        let a = LocalSession::new(vakt(), 1, 1)
            .answer(&s, Direction::SendRecv)
            .unwrap();
        assert_eq!(a.negotiated.dtmf_payload_type, None);
    }

    #[test]
    fn answers_the_direction() {
        let cases = [
            (None, None, Direction::SendRecv),
            (Some("sendonly"), None, Direction::RecvOnly),
            (Some("recvonly"), None, Direction::SendOnly),
            (Some("inactive"), None, Direction::Inactive),
            (Some("sendrecv"), None, Direction::SendRecv),
            // Session level applies when the media has none; media level overrides.
            (None, Some("sendonly"), Direction::RecvOnly),
            (Some("sendrecv"), Some("inactive"), Direction::SendRecv),
        ];
        for (media, session, want) in cases {
            let body = format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n{}m=audio 5000 RTP/AVP 0\r\n{}",
                session.map(|d| format!("a={d}\r\n")).unwrap_or_default(),
                media.map(|d| format!("a={d}\r\n")).unwrap_or_default(),
            );
            let s = parse(body.as_bytes()).unwrap();
            let a = LocalSession::new(vakt(), 1, 1)
                .answer(&s, Direction::SendRecv)
                .unwrap();
            assert_eq!(a.negotiated.direction, want, "{media:?} {session:?}");
            let back = parse(&a.sdp).unwrap();
            assert_eq!(back.media[0].direction, Some(want));
        }
        // vakt holding the call itself answers a sendrecv offer sendonly.
        let s = offer("audio 5000 RTP/AVP 0", "");
        let a = LocalSession::new(vakt(), 1, 1)
            .answer(&s, Direction::SendOnly)
            .unwrap();
        assert_eq!(a.negotiated.direction, Direction::SendOnly);
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert_eq!(d.reverse().reverse(), d);
            assert_eq!(Direction::answer(d, Direction::SendRecv), d.reverse());
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
    }

    #[test]
    fn rejects_the_other_media_with_port_0() {
        let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=video 6000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
m=audio 5000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n\
m=audio 5002 RTP/AVP 18\r\n\
m=audio 5004 RTP/AVP 8\r\n\
m=audio 5006 RTP/AVP 0\r\n\
m=application 7000 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        let s = parse(body.as_bytes()).unwrap();
        let a = LocalSession::new(vakt(), 1, 1)
            .answer(&s, Direction::SendRecv)
            .unwrap();
        assert_eq!(a.negotiated.media_index, 3);
        assert_eq!(a.negotiated.remote, Some("192.0.2.1:5004".parse().unwrap()));
        let back = parse(&a.sdp).unwrap();
        let lines: Vec<String> = back.media.iter().map(describe_media).collect();
        assert_eq!(
            lines,
            [
                "video 0 RTP/AVP 96",
                "audio 0 RTP/SAVP 0",
                "audio 0 RTP/AVP 18",
                "audio 40000 RTP/AVP 8",
                "audio 0 RTP/AVP 0",
                "application 0 UDP/DTLS/SCTP webrtc-datachannel",
            ]
        );
        // Rejected sections carry nothing but the m= line.
        assert!(
            back.media
                .iter()
                .filter(|m| m.port == 0)
                .all(|m| m.rtpmaps.is_empty() && m.direction.is_none() && m.connection.is_none())
        );
    }

    #[test]
    fn offers_vakt_cannot_take() {
        let mut ls = LocalSession::new(vakt(), 1, 1);
        let g729 = offer(
            "audio 5000 RTP/AVP 18 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        );
        assert_eq!(
            ls.answer(&g729, Direction::SendRecv),
            Err(NegotiateError::NoCodec)
        );
        let srtp = offer("audio 5000 RTP/SAVP 0 8", "");
        assert_eq!(
            ls.answer(&srtp, Direction::SendRecv),
            Err(NegotiateError::Transport)
        );
        let video = offer("video 5000 RTP/AVP 96", "");
        assert_eq!(
            ls.answer(&video, Direction::SendRecv),
            Err(NegotiateError::NoAudio)
        );
        let disabled = offer("audio 0 RTP/AVP 0", "");
        assert_eq!(
            ls.answer(&disabled, Direction::SendRecv),
            Err(NegotiateError::NoAudio)
        );
        assert_eq!(ls.negotiated(), None, "a refused offer changes nothing");
        assert_eq!(
            NegotiateError::NoCodec.warning(),
            Some((305, "Incompatible media format"))
        );
        assert_eq!(NegotiateError::Transport.warning().map(|w| w.0), Some(302));
        assert_eq!(NegotiateError::NoAudio.warning().map(|w| w.0), Some(304));
        assert_eq!(NegotiateError::Rejected.warning(), None);
        // A refusal does not bump the version: the first answer still has version 1.
        let ok = ls
            .answer(&offer("audio 5000 RTP/AVP 0", ""), Direction::SendRecv)
            .unwrap();
        assert!(
            String::from_utf8(ok.sdp)
                .unwrap()
                .contains("o=vakt 1 1 IN IP4")
        );
    }

    #[test]
    fn tells_hold() {
        let hold = [
            offer("audio 5000 RTP/AVP 0", "a=sendonly\r\n"),
            offer("audio 5000 RTP/AVP 0", "a=inactive\r\n"),
            offer("audio 5000 RTP/AVP 0", "c=IN IP4 0.0.0.0\r\n"),
            parse(b"v=0\r\no=- 1 2 IN IP4 x.example\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n").unwrap(),
            parse(b"v=0\r\no=- 1 2 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n").unwrap(),
            parse(b"v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\n").unwrap(),
        ];
        for s in &hold {
            assert!(s.is_hold(), "{s:?}");
        }
        let not_hold = [
            offer("audio 5000 RTP/AVP 0", ""),
            offer("audio 5000 RTP/AVP 0", "a=sendrecv\r\n"),
            offer("audio 5000 RTP/AVP 0", "a=recvonly\r\n"),
            // Session-level hold overridden by the media.
            parse(b"v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n").unwrap(),
            // The media's own address overrides c=0.0.0.0 at session level.
            parse(b"v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP4 192.0.2.9\r\n").unwrap(),
            // No audio over plain RTP.
            offer("audio 5000 RTP/SAVP 0", "a=sendonly\r\n"),
            offer("audio 0 RTP/AVP 0", "a=sendonly\r\n"),
        ];
        for s in &not_hold {
            assert!(!s.is_hold(), "{s:?}");
        }
        // Held with c=0.0.0.0: there is no address to send to.
        let a = LocalSession::new(vakt(), 1, 1)
            .answer(&hold[2], Direction::SendRecv)
            .unwrap();
        assert_eq!(a.negotiated.remote, None);
    }

    #[test]
    fn answers_re_offers_in_the_same_session() {
        let mut ls = LocalSession::new(vakt(), 4242, 1);
        let first = parse(PJSIP_LIKE.as_bytes()).unwrap();
        let a1 = ls.answer(&first, Direction::SendRecv).unwrap();
        // A session refresh with the same offer: the same answer, the same version.
        let a2 = ls.answer(&first, Direction::SendRecv).unwrap();
        assert_eq!(a1, a2);
        // The unit holds the call: version + 1, recvonly.
        let held = PJSIP_LIKE
            .replace("3912043557 3912043557", "3912043557 3912043558")
            .replace("a=sendrecv", "a=sendonly");
        let held = parse(held.as_bytes()).unwrap();
        assert!(held.is_hold());
        let a3 = ls.answer(&held, Direction::SendRecv).unwrap();
        let text = String::from_utf8(a3.sdp).unwrap();
        assert!(text.contains("o=vakt 4242 2 IN IP4"), "{text}");
        assert!(text.contains("a=recvonly\r\n"), "{text}");
        assert_eq!(a3.negotiated.direction, Direction::RecvOnly);
        // And takes it back.
        let a4 = ls.answer(&first, Direction::SendRecv).unwrap();
        assert!(
            String::from_utf8(a4.sdp)
                .unwrap()
                .contains("o=vakt 4242 3 IN IP4")
        );
        assert_eq!(ls.version(), 3);
        assert_eq!(ls.session_id(), 4242);
    }

    #[test]
    fn offers_and_takes_the_answer() {
        let mut ls = LocalSession::new(vakt(), 9, 100);
        let sdp = ls.offer(Direction::SendRecv);
        assert_eq!(
            String::from_utf8(sdp.clone()).unwrap(),
            "v=0\r\n\
o=vakt 9 100 IN IP4 203.0.113.5\r\n\
s=vakt\r\n\
c=IN IP4 203.0.113.5\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
        );
        // The unit answers with PCMU only and its own ptime.
        let answer = parse(
            b"v=0\r\no=- 5 5 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:40\r\n",
        )
        .unwrap();
        let n = ls.take_answer(&answer).unwrap();
        assert_eq!(
            n,
            Negotiated {
                codec: Codec::Pcmu,
                payload_type: 0,
                dtmf_payload_type: Some(101),
                remote: Some("10.1.1.1:4000".parse().unwrap()),
                direction: Direction::SendRecv,
                ptime_ms: 40,
                rtcp_mux: false,
                media_index: 0,
            }
        );
        assert_eq!(ls.take_answer(&answer), Err(NegotiateError::NoOffer));

        // Hold: version + 1, sendonly, the agreed codec first and the same PTs.
        let hold = String::from_utf8(ls.hold()).unwrap();
        assert!(hold.contains("o=vakt 9 101 IN IP4"), "{hold}");
        assert!(hold.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{hold}");
        assert!(hold.contains("a=sendonly\r\n"), "{hold}");
        let held = parse(
            b"v=0\r\no=- 5 6 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n",
        )
        .unwrap();
        assert_eq!(
            ls.take_answer(&held).unwrap().direction,
            Direction::SendOnly
        );
        // The same re-offer again (e.g. after a 491): the same version.
        let again = String::from_utf8(ls.hold()).unwrap();
        assert_eq!(again, hold);
        ls.take_answer(&held).unwrap();
        // Resume: version + 1, sendrecv.
        let resume = String::from_utf8(ls.resume()).unwrap();
        assert!(resume.contains("o=vakt 9 102 IN IP4"), "{resume}");
        assert!(resume.contains("a=sendrecv\r\n"), "{resume}");
        assert_eq!(
            ls.take_answer(&answer).unwrap().direction,
            Direction::SendRecv
        );
    }

    #[test]
    fn hold_of_a_receive_only_call_is_inactive() {
        // The unit put the call on hold first (vakt receives only); vakt's hold is inactive.
        let mut ls = LocalSession::new(vakt(), 1, 1);
        let held = offer("audio 5000 RTP/AVP 8", "a=sendonly\r\n");
        ls.answer(&held, Direction::SendRecv).unwrap();
        let text = String::from_utf8(ls.hold()).unwrap();
        assert!(text.contains("a=inactive\r\n"), "{text}");
        let answer = offer("audio 5000 RTP/AVP 8", "a=inactive\r\n");
        assert_eq!(
            ls.take_answer(&answer).unwrap().direction,
            Direction::Inactive
        );
    }

    #[test]
    fn a_re_offer_keeps_every_media_section() {
        let mut ls = LocalSession::new(vakt(), 1, 1);
        let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=video 6000 RTP/AVP 96\r\nm=audio 5000 RTP/AVPF 96 0\r\na=rtpmap:96 PCMA/8000\r\n";
        let a = ls
            .answer(&parse(body.as_bytes()).unwrap(), Direction::SendRecv)
            .unwrap();
        assert_eq!(
            (a.negotiated.codec, a.negotiated.payload_type),
            (Codec::Pcma, 96)
        );
        let re = parse(&ls.hold()).unwrap();
        let lines: Vec<String> = re.media.iter().map(describe_media).collect();
        assert_eq!(
            lines,
            ["video 0 RTP/AVP 96", "audio 40000 RTP/AVPF 96 0 101"]
        );
        assert_eq!(re.media[1].codec(96), Some(Codec::Pcma));
        assert_eq!(re.media[1].dtmf_pt(), Some(101));
        // An answer with one section only does not match.
        let short = offer("audio 5000 RTP/AVPF 96", "a=rtpmap:96 PCMA/8000\r\n");
        assert_eq!(ls.take_answer(&short), Err(NegotiateError::Mismatch));
    }

    #[test]
    fn answers_vakt_cannot_take() {
        let mut ls = LocalSession::new(vakt(), 1, 1);
        let cases = [
            (offer("audio 0 RTP/AVP 8", ""), NegotiateError::Rejected),
            (offer("audio 5000 RTP/AVP 18", ""), NegotiateError::NoCodec),
            (offer("video 5000 RTP/AVP 8", ""), NegotiateError::Mismatch),
            (offer("audio 5000 RTP/SAVP 8", ""), NegotiateError::Mismatch),
        ];
        for (answer, want) in cases {
            ls.offer(Direction::SendRecv);
            assert_eq!(ls.take_answer(&answer), Err(want));
        }
        assert_eq!(ls.negotiated(), None);
    }

    #[test]
    fn offer_and_answer_between_two_vakts_agree() {
        let a_local = vakt();
        let b_local = local("[2001:db8::9]:50000 rtcp-mux");
        let mut a = LocalSession::new(
            LocalMedia {
                rtcp_mux: true,
                ..a_local
            },
            1,
            1,
        );
        let mut b = LocalSession::new(b_local, 2, 1);
        let offer = parse(&a.offer(Direction::SendRecv)).unwrap();
        let answer = b.answer(&offer, Direction::SendRecv).unwrap();
        let n = a.take_answer(&parse(&answer.sdp).unwrap()).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.dtmf_payload_type),
            (Codec::Pcma, 8, Some(101))
        );
        assert_eq!(
            (answer.negotiated.codec, answer.negotiated.dtmf_payload_type),
            (n.codec, n.dtmf_payload_type)
        );
        assert_eq!(n.remote, Some("[2001:db8::9]:50000".parse().unwrap()));
        assert_eq!(
            answer.negotiated.remote,
            Some("203.0.113.5:40000".parse().unwrap())
        );
        assert!(n.rtcp_mux && answer.negotiated.rtcp_mux);
        // Held by a, seen by b.
        let hold = parse(&a.hold()).unwrap();
        assert!(hold.is_hold());
        let answer = b.answer(&hold, Direction::SendRecv).unwrap();
        assert_eq!(answer.negotiated.direction, Direction::RecvOnly);
        assert_eq!(
            a.take_answer(&parse(&answer.sdp).unwrap())
                .unwrap()
                .direction,
            Direction::SendOnly
        );
    }

    #[test]
    fn tolerates_what_rfc_8866_asks_parsers_to() {
        // LF only, trailing blanks, empty lines, ignored line types, case in tokens.
        let body = "v=0\n\no=- 1 1 in ip4 h.example \ns=\ni=info\nu=http://x\ne=a@b\np=+1\nb=AS:64\nt=0 0\nr=7d 1h 0 25h\nz=0 0\nk=clear:x\n\
m=audio 5000/2 rtp/avp 0\t\nc=IN IP4 192.0.2.1/127\nb=TIAS:64000\na=PTIME:20.4\na=maxptime:60.5\na=SendOnly\na=x-custom: spaced value\na=flag\n";
        let s = parse(body.as_bytes()).unwrap();
        assert_eq!(s.name, "");
        assert_eq!(s.origin.address, "h.example");
        let m = &s.media[0];
        assert_eq!(
            (m.port, m.port_count, &m.proto),
            (5000, Some(2), &Proto::RtpAvp)
        );
        assert_eq!((m.ptime, m.maxptime), (Some(20), Some(61)));
        assert_eq!(m.direction, Some(Direction::SendOnly));
        assert_eq!(
            m.connection,
            Some(Connection::ip("192.0.2.1".parse().unwrap()))
        );
        assert_eq!(
            m.other,
            [
                Attribute {
                    name: "x-custom".into(),
                    value: Some(" spaced value".into())
                },
                Attribute {
                    name: "flag".into(),
                    value: None
                }
            ]
        );
        assert_eq!(parse(&s.encode()), Ok(s.clone()));
        // No s= at all: "-".
        let s = parse(b"v=0\r\no=- 1 1 IN IP4 h\r\n").unwrap();
        assert_eq!((s.name.as_str(), s.timing, s.media.len()), ("-", (0, 0), 0));
        // A host name in c=: parsed, but there is no address to send to.
        let s = offer("audio 5000 RTP/AVP 0", "c=IN IP4 media.example.net\r\n");
        assert_eq!(
            s.media[0].connection.as_ref().map(|c| &c.host),
            Some(&Host::Name("media.example.net".into()))
        );
        assert_eq!(s.rtp_address(&s.media[0]), None);
    }

    fn err(body: &str) -> SdpError {
        parse(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn refusals_are_typed() {
        const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        let with = |rest: &str| format!("{HEAD}{rest}");
        let cases: &[(String, SdpError)] = &[
            (String::new(), SdpError::BadVersion),
            ("o=- 1 1 IN IP4 h\r\n".into(), SdpError::BadVersion),
            ("v=1\r\no=- 1 1 IN IP4 h\r\n".into(), SdpError::BadVersion),
            (with("v=0\r\n"), SdpError::BadVersion),
            ("v=0\r\ns=-\r\n".into(), SdpError::MissingOrigin),
            ("v=0\r\no=- 1 IN IP4 h\r\n".into(), SdpError::BadOrigin),
            ("v=0\r\no=- 1 1 XX IP4 h\r\n".into(), SdpError::BadOrigin),
            ("v=0\r\no=- 1 1 IN IP5 h\r\n".into(), SdpError::BadOrigin),
            (with("o=- 1 1 IN IP4 h\r\n"), SdpError::BadOrigin),
            (
                with("m=audio 1 RTP/AVP 0\r\no=- 1 1 IN IP4 h\r\n"),
                SdpError::BadOrigin,
            ),
            (with("s=again\r\n"), SdpError::Duplicate("s")),
            (with("m=audio 1 RTP/AVP 0\r\ns=x\r\n"), SdpError::BadLine),
            (with("m=audio 1 RTP/AVP 0\r\nt=0 0\r\n"), SdpError::BadLine),
            (with("x=unknown\r\n"), SdpError::BadLine),
            (with("A=0\r\n"), SdpError::BadLine),
            (with("no equals\r\n"), SdpError::BadLine),
            (with("a=x\rb\r\n"), SdpError::BadLine),
            (with("a=x\u{0}\r\n"), SdpError::BadLine),
            (with("c=IN IP4 192.0.2.2\r\n"), SdpError::BadConnection),
            (
                with("m=audio 1 RTP/AVP 0\r\nc=IN IP6 192.0.2.2\r\n"),
                SdpError::BadConnection,
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\nc=IN IP4 2001:db8::1\r\n"),
                SdpError::BadConnection,
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\nc=IN IP4 1.2.3.4.5\r\n"),
                SdpError::BadConnection,
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\nc=IN IP4 1.2.3.4/x\r\n"),
                SdpError::BadConnection,
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\nc=IN IP4 1.2.3.4/\r\n"),
                SdpError::BadConnection,
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127//\r\n"),
                SdpError::BadConnection,
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\nc=IN IP4\r\n"),
                SdpError::BadConnection,
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\nc=ATM NSAP 1\r\n"),
                SdpError::BadConnection,
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\n".into(),
                SdpError::MissingConnection,
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\nt=0\r\n".into(),
                SdpError::BadTiming,
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\nt=now 0\r\n".into(),
                SdpError::BadTiming,
            ),
            (with("m=audio 70000 RTP/AVP 0\r\n"), SdpError::BadMedia),
            (with("m=audio 1 RTP/AVP\r\n"), SdpError::BadMedia),
            (with("m=audio 1 RTP/AVP 128\r\n"), SdpError::BadMedia),
            (with("m=audio 1 RTP/AVP PCMA\r\n"), SdpError::BadMedia),
            (with("m=audio -1 RTP/AVP 0\r\n"), SdpError::BadMedia),
            (with("m=audio 1/x RTP/AVP 0\r\n"), SdpError::BadMedia),
            (
                with("m=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n"),
                SdpError::BadAttribute("rtpmap"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=rtpmap:200 X/8000\r\n"),
                SdpError::BadAttribute("rtpmap"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU/0\r\n"),
                SdpError::BadAttribute("rtpmap"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/1/2\r\n"),
                SdpError::BadAttribute("rtpmap"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:0 PCMA/8000\r\n"),
                SdpError::BadAttribute("rtpmap"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=fmtp:0 a\r\na=fmtp:0 b\r\n"),
                SdpError::BadAttribute("fmtp"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=fmtp:\r\n"),
                SdpError::BadAttribute("fmtp"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=ptime:0\r\n"),
                SdpError::BadAttribute("ptime"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=ptime:1001\r\n"),
                SdpError::BadAttribute("ptime"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=ptime:2e1\r\n"),
                SdpError::BadAttribute("ptime"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=ptime:-20\r\n"),
                SdpError::BadAttribute("ptime"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=ptime:20\r\na=ptime:30\r\n"),
                SdpError::BadAttribute("ptime"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=maxptime:x\r\n"),
                SdpError::BadAttribute("maxptime"),
            ),
            (
                with("m=audio 1 RTP/AVP 0\r\na=sendonly\r\na=recvonly\r\n"),
                SdpError::BadAttribute("direction"),
            ),
            (
                with("a=sendonly\r\na=inactive\r\n"),
                SdpError::BadAttribute("direction"),
            ),
            (with("a=\r\n"), SdpError::BadAttribute("name")),
            (with("a=:x\r\n"), SdpError::BadAttribute("name")),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes()), Err(*want), "{body:?}");
        }
        // The same value twice is fine.
        assert!(parse(with("m=audio 1 RTP/AVP 0\r\na=ptime:20\r\na=ptime:20\r\na=sendonly\r\na=sendonly\r\n").as_bytes()).is_ok());
        assert_eq!(parse(&[0xFF, 0xFE]), Err(SdpError::NotUtf8));
        // A repeated t= is a repeat time (RFC 8866 §5.9): the first one counts.
        let s = parse(with("t=1 2\r\n").as_bytes()).unwrap();
        assert_eq!(s.timing, (0, 0));
        // Labels are stable.
        assert_eq!(SdpError::BadAttribute("ptime").as_str(), "bad_attribute");
        assert_eq!(SdpError::MissingConnection.as_str(), "missing_connection");
    }

    #[test]
    fn bounds() {
        let head = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        // Size.
        let mut big = head.to_owned();
        while big.len() <= MAX_SDP_BYTES {
            big.push_str("a=x-padding-to-grow-the-body-beyond-its-bound\r\n");
        }
        assert_eq!(err(&big), SdpError::TooLarge);
        // Lines (empty ones do not count).
        let mut many = head.to_owned();
        for _ in 0..MAX_LINES - 5 {
            many.push_str("a=x\r\n\r\n");
        }
        assert!(parse(many.as_bytes()).is_ok());
        many.push_str("a=x\r\n");
        assert_eq!(err(&many), SdpError::TooManyLines);
        // Media sections.
        let mut media = head.to_owned();
        for _ in 0..MAX_MEDIA {
            media.push_str("m=audio 1 RTP/AVP 0\r\n");
        }
        assert_eq!(parse(media.as_bytes()).unwrap().media.len(), MAX_MEDIA);
        media.push_str("m=audio 1 RTP/AVP 0\r\n");
        assert_eq!(err(&media), SdpError::TooManyMedia);
        // Formats on one line.
        let fmts = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("{head}m=audio 1 RTP/AVP {}\r\n", list.join(" "))
        };
        assert!(parse(fmts(MAX_FORMATS).as_bytes()).is_ok());
        assert_eq!(err(&fmts(MAX_FORMATS + 1)), SdpError::TooManyFormats);
    }
}
