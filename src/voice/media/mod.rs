//! The media of a call on the unit's side, and the relay between the unit and the operator.
//!
//! A call's SIP leg (the alarm unit, or a GSM unit through the trunk) speaks G.711 over plain
//! RTP to a UDP port of vakt's own ([`SipLeg`]); the operator's side is the browser's WebRTC
//! leg (`super::webrtc::BrowserLeg`) or anything else that implements [`OperatorLeg`]. One
//! task per call, the [`Relay`], joins the two: the person's frames to the operator, the
//! operator's to the person, each direction to the recording's [`Tap`](super::record::Tap),
//! silence or ringing before the answer, the hold tone, mute, and the SCAIP DTMF commands as
//! RFC 4733 events (protocols.md §3.7; `proto/voice.md` §3–4).
//!
//! # Calling it (for the voice core)
//!
//! ```text
//! at start      media = Media::new(options)?            the port range, the metrics
//! INVITE in     port = media.bind()?                    an even RTP port (+1 for RTCP)
//!                 Err(PortsExhausted) → 503; Err(Bind | Internal) → 500
//!               local = port.local_media(reached_ip)    into LocalSession::new(local, ..)
//!               answer = session.answer(&offer, SendRecv)?   (488 on NegotiateError)
//!               leg = SipLeg::new(port, answer.negotiated)?
//!               relay = Relay::<BrowserLeg>::start(leg, EarlyMedia::Ringback)?
//!               → 183 with answer.sdp (early media), or keep it for the 200
//! answered      relay.attach(browser_leg)?               WebRtc::answer(offer, law) gave it;
//!                                                        ask for the unit's law (relay's law)
//!               relay.record(recorder.tap())?           from the answer on
//! controls      relay.set_muted(bool)?, relay.set_held(bool)?
//!               relay.dtmf(ScaipDtmf::ClearDown.key(), 200)
//!                 Err(NoTelephoneEvent) → send SIP INFO (application/dtmf-relay) instead
//! re-INVITE     relay.update(session.answer(&offer, ..)?.negotiated)?
//! figures       relay.stats().await                     packets, drops, loss, jitter, latency
//! the end       BYE either way → relay.end(); relay.ended().await says why it ended:
//!               Ended (vakt), Inactive (no RTP: hang up, the call is dead),
//!               OperatorEnded (the browser went: hang up or re-attach), Socket
//! ```
//!
//! [`Relay`] is a handle that clones; dropping the last one ends the relay. Port,
//! socket and task go when it ends; the operator's side is ended with it.
//!
//! # Decisions
//!
//! - **Symmetric RTP with latching** (`inbound.rs` has the rules): vakt sends where the
//!   unit's packets come from, latches on the first valid audio packet, drops and counts
//!   packets from anyone else, and lets a new source take over only after the latched one
//!   has been silent [`MediaOptions::relatch_after_ms`] (a unit's NAT rebinding). The port
//!   range is walked round before a port is used again, so a unit still sending to a port of
//!   a call that ended meets no new call there.
//! - **One outgoing stream** (`outbound.rs`): its own SSRC, sequence and timestamp, which
//!   run on across every source (the operator, silence, ringing, the hold tone, events); the
//!   operator's frames keep their own timing within a run; the marker only after a gap.
//! - **No jitter buffer, no repacketising.** The relay passes each packet on as it comes
//!   (the operator's browser and the unit each have a jitter buffer of their own); a frame
//!   keeps its length (20 ms from a browser, the trunk's ptime the other way). Generated
//!   frames follow the unit's `ptime` (10–60 ms).
//! - **A continuous stream to the unit**: when the operator's frames are [`FILL_AFTER`]
//!   late (the browser not yet connected, a stall), silence fills in, so a unit that watches
//!   its own RTP for inactivity, and its NAT binding, stay alive.
//! - **Hold: the person hears the hold tone, the operator hears nothing of the person.**
//!   Hold is the telephone hold operators know: the person is parked while the operator
//!   speaks to a patrol or a relative on another call, in the same headset, where the
//!   person's voice would be heard over the other call and could be heard by it. The person
//!   is not lost meanwhile: every frame from the unit still goes to the recording (channel 1),
//!   and the tone they hear to channel 2.
//! - **Mute** replaces the operator's frames by silence of the same length and timing (the
//!   unit's stream and the recording keep their clock).
//! - **The law**: the console asks the browser for the unit's law, so frames pass through;
//!   when the browser only offers the other, each byte is converted through 16-bit linear
//!   (a 256-byte table per direction).
//! - **DTMF** as RFC 4733 events on the session's telephone-event payload type, 100–500 ms a
//!   tone, the voice paused meanwhile; one tone at a time, up to [`MAX_DTMF_QUEUED`] waiting.
//!   A session without telephone-event says so ([`DtmfError::NoTelephoneEvent`]): the core
//!   sends SIP INFO.
//! - **RTCP** is read and ignored (on the RTP port with `rtcp-mux`, else on the next port,
//!   bound so a unit's reports meet no ICMP error); vakt sends none. Inactivity counts RTP
//!   only.
//!
//! # Bounds
//!
//! Legs at once: the pairs of the port range (each holds two UDP sockets). Per relay:
//! commands waiting ([`RelayError::Busy`] beyond), DTMF tones waiting, datagrams read per
//! turn, scratch buffers allocated once, latency histograms of fixed size; frames to the
//! operator and the recording go through their own bounded queues and are dropped (counted)
//! when those are full. A datagram is parsed once (`vakt_proto::rtp::parse`, which never
//! panics) and dropped unless it is the latched unit's.
//!
//! Written here (not a crate): the RTP stacks of webrtc-rs and others bring their own tasks,
//! SRTP and session machinery around the socket; what a relay needs on top of
//! `vakt_proto::rtp` is the latching rules, one stream's clock and a select loop.

mod inbound;
mod operator;
mod outbound;
mod ports;
mod relay;
mod sip_leg;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use serde::Deserialize;

use crate::telemetry::MediaMetrics;
use crate::voice::ports::PortError;

pub use inbound::{DropCounts, Dropped};
pub use operator::{OperatorFrame, OperatorLeg, OperatorSendError, law_of};
pub use ports::RtpPort;
pub use relay::{
    DTMF_MS, DtmfError, EarlyMedia, FILL_AFTER, Latency, MAX_DTMF_QUEUED, Relay, RelayEnd,
    RelayError, RelayStats, ringback,
};
pub use sip_leg::{SipLeg, SipLegStats};

/// Where and how the SIP legs' RTP listens (to be the `[voice]` section's RTP keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaOptions {
    /// The address the RTP sockets bind to. The default, `0.0.0.0`, takes the units' RTP on
    /// every interface.
    pub bind_addr: IpAddr,
    /// The address written in vakt's SDP when it is not `bind_addr` (vakt behind a 1:1 NAT).
    /// Without it, a concrete `bind_addr`, else the address the call's INVITE reached.
    pub public_addr: Option<IpAddr>,
    /// The first port of the range (RTP on its even ports, RTCP on the odd ones above them).
    /// The default range, 16384–18383, lies below Linux's ephemeral ports (32768–60999),
    /// where the system's own outgoing sockets would take ports of it.
    pub port_min: u16,
    /// The last port of the range (inclusive). Its pairs are the cap on calls with media
    /// (the default's 1,000 match the SIP endpoint's `max_dialogs`).
    pub port_max: u16,
    /// A call whose unit sends no RTP for this many seconds (while the session is
    /// `sendrecv`) has ended: its relay ends with [`RelayEnd::Inactive`].
    pub inactivity_secs: u32,
    /// A new source takes a leg over only after the latched one has been silent for this
    /// many milliseconds.
    pub relatch_after_ms: u32,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            public_addr: None,
            port_min: 16_384,
            port_max: 18_383,
            inactivity_secs: 30,
            relatch_after_ms: 2_000,
        }
    }
}

impl MediaOptions {
    /// Checks the options: a range with at least one even port and its odd neighbour, a
    /// public address that is one, non-zero times.
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |why: &str| Err(MediaError::Options(why.to_string()));
        if crate::voice::ports::pairs(self.port_min, self.port_max).is_none() {
            return bad(
                "port_min..=port_max must hold an even port and the odd one above it (port_min at least 1)",
            );
        }
        if self.public_addr.is_some_and(|a| a.is_unspecified()) {
            return bad("public_addr must be an address units can reach");
        }
        if self.inactivity_secs == 0 || self.relatch_after_ms == 0 {
            return bad("inactivity_secs and relatch_after_ms must be at least 1");
        }
        Ok(())
    }
}

/// Why a SIP leg's media could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Every pair of the range is taken: vakt is at its cap of calls with media (503).
    #[error("every RTP port pair of {first}..={last} is taken")]
    PortsExhausted {
        /// The range's first port.
        first: u16,
        /// The range's last port.
        last: u16,
    },
    /// Internal: the socket cannot be bound or set up (`bind_addr` is not this host's).
    #[error("cannot bind the RTP socket: {0}")]
    Bind(std::io::Error),
    /// vakt's configuration: the options are inconsistent.
    #[error("rtp options: {0}")]
    Options(String),
    /// Internal: no tokio runtime to run the relay on.
    #[error("internal: {0}")]
    Internal(String),
}

/// The SIP legs' media: the options, the port range, the metrics. One per server.
#[derive(Debug)]
pub struct Media {
    options: MediaOptions,
    pool: Arc<crate::voice::ports::PortPool>,
    metrics: MediaMetrics,
}

impl Media {
    /// Checks the options and sets up the port range.
    pub fn new(options: MediaOptions) -> Result<Media, MediaError> {
        options.validate()?;
        Ok(Media {
            pool: crate::voice::ports::PortPool::pairs(options.port_min, options.port_max)
                .ok_or_else(|| {
                    MediaError::Options(format!(
                        "the RTP port range {}..={} holds no even port with its odd neighbour",
                        options.port_min, options.port_max
                    ))
                })?,
            options,
            metrics: MediaMetrics::new(),
        })
    }

    /// The options.
    pub fn options(&self) -> &MediaOptions {
        &self.options
    }

    /// How many calls may have media at once (the pairs of the range).
    pub fn capacity(&self) -> usize {
        self.pool.size()
    }

    /// How many legs hold a port pair now.
    pub fn legs(&self) -> usize {
        self.pool.leased()
    }

    /// Binds a leg's RTP and RTCP sockets on a free pair of the range, before the answer.
    pub fn bind(&self) -> Result<RtpPort, MediaError> {
        let (rtp, rtcp, lease) =
            self.pool
                .bind_pair(self.options.bind_addr)
                .map_err(|e| match e {
                    PortError::Exhausted { first, last } => {
                        MediaError::PortsExhausted { first, last }
                    }
                    PortError::Bind(e) => MediaError::Bind(e),
                })?;
        let local = rtp.local_addr().map_err(MediaError::Bind)?;
        let advertised = self.options.public_addr.or_else(|| {
            (!self.options.bind_addr.is_unspecified()).then_some(self.options.bind_addr)
        });
        Ok(RtpPort {
            rtp,
            rtcp,
            lease,
            advertised,
            local,
            metrics: self.metrics.clone(),
            options: self.options.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_options_are_valid_and_the_bad_ones_are_not() {
        MediaOptions::default().validate().unwrap();
        let bad = [
            MediaOptions {
                port_min: 0,
                ..MediaOptions::default()
            },
            MediaOptions {
                port_min: 40_001,
                port_max: 40_002,
                ..MediaOptions::default()
            },
            MediaOptions {
                port_min: 40_010,
                port_max: 40_000,
                ..MediaOptions::default()
            },
            MediaOptions {
                public_addr: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                ..MediaOptions::default()
            },
            MediaOptions {
                inactivity_secs: 0,
                ..MediaOptions::default()
            },
            MediaOptions {
                relatch_after_ms: 0,
                ..MediaOptions::default()
            },
        ];
        for opts in bad {
            assert!(
                matches!(opts.validate(), Err(MediaError::Options(_))),
                "{opts:?}"
            );
            assert!(Media::new(opts).is_err());
        }
    }

    #[test]
    fn the_options_read_from_toml_and_refuse_unknown_keys() {
        let opts: MediaOptions = toml::from_str(
            "bind_addr = \"192.0.2.5\"\nport_min = 50000\nport_max = 50099\npublic_addr = \"198.51.100.7\"\n",
        )
        .unwrap();
        assert_eq!(opts.port_max, 50_099);
        assert_eq!(opts.inactivity_secs, 30);
        assert_eq!(opts.relatch_after_ms, 2_000);
        assert!(toml::from_str::<MediaOptions>("inactivity_sec = 1\n").is_err());
    }

    #[test]
    fn the_sdp_address_is_the_public_one_else_the_bound_one_else_where_the_invite_came() {
        let reached: IpAddr = "192.0.2.80".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let range = |min| MediaOptions {
            bind_addr: local,
            port_min: min,
            port_max: min + 199,
            ..MediaOptions::default()
        };
        let media = Media::new(range(47_000)).unwrap();
        assert_eq!(media.capacity(), 100);
        let port = media.bind().unwrap();
        assert_eq!(port.port() % 2, 0);
        let lm = port.local_media(reached);
        assert_eq!(
            (lm.address, lm.port, lm.rtcp_mux),
            (local, port.port(), true)
        );
        assert_eq!(media.legs(), 1);
        drop(port);
        assert_eq!(media.legs(), 0);
        let public: IpAddr = "198.51.100.7".parse().unwrap();
        let media = Media::new(MediaOptions {
            public_addr: Some(public),
            ..range(47_200)
        })
        .unwrap();
        assert_eq!(media.bind().unwrap().local_media(reached).address, public);
        let media = Media::new(MediaOptions {
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ..range(47_400)
        })
        .unwrap();
        assert_eq!(media.bind().unwrap().local_media(reached).address, reached);
    }
}
