//! The SIP leg's RTP: the unit's side of a call. Its sockets (RTP on an even port of the
//! range, RTCP on the next one, read and ignored), what comes in ([`super::inbound`]:
//! symmetric latching, the receiver's figures, inactivity) and what goes out
//! ([`super::outbound`]: one stream, RFC 4733 events). A [`super::Relay`] drives it; it has
//! no task of its own.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use vakt_proto::g711::Law;
use vakt_proto::rtp::{self, Header};
use vakt_proto::sdp::{Codec, Negotiated};

use super::MediaError;
use super::inbound::{DropCounts, Inbound, Verdict};
use super::outbound::OutStream;
use super::ports::{PortLease, RtpPort};
use crate::telemetry::MediaMetrics;

/// The law of a negotiated codec.
pub(crate) fn law_of(codec: Codec) -> Law {
    match codec {
        Codec::Pcma => Law::Alaw,
        Codec::Pcmu => Law::Ulaw,
    }
}

/// The SIP leg's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SipLegStats {
    /// The source the leg is latched on (where vakt sends), once the unit has sent.
    pub latched: Option<SocketAddr>,
    /// Audio packets taken from the unit.
    pub packets_in: u64,
    /// RFC 4733 event packets taken from the unit (counted, not relayed).
    pub events_in: u64,
    /// Audio packets vakt's stream to the unit numbered (those that could not leave are
    /// also in `send_failures`).
    pub packets_out: u64,
    /// RFC 4733 event packets in vakt's stream to the unit.
    pub events_out: u64,
    /// Datagrams dropped on the RTP port, by reason.
    pub dropped: DropCounts,
    /// Datagrams read on the RTCP port (ignored).
    pub rtcp_port: u64,
    /// Packets that could not be sent (no address yet, the socket's buffer full, an error).
    pub send_failures: u64,
    /// Times a new source took the leg over after the latched one fell silent.
    pub relatches: u64,
    /// Times the latched source changed its SSRC.
    pub ssrc_changes: u64,
    /// Packets from the unit lost (RFC 3550 A.3, over every SSRC of the leg).
    pub lost: i64,
    /// Packets the current SSRC was expected to send.
    pub expected: u32,
    /// The unit's interarrival jitter (RFC 3550 A.8, the current SSRC).
    pub jitter: Duration,
    /// The SSRC of vakt's stream to the unit.
    pub ssrc_out: u32,
}

/// The unit's side of one call. Made from an [`RtpPort`] (bound before the answer) and what
/// the answer agreed; [`super::Relay::start`] takes it over.
#[derive(Debug)]
pub struct SipLeg {
    pub(super) rtp: UdpSocket,
    /// The RTCP port's socket; dropped when RTCP shares the RTP port.
    pub(super) rtcp: Option<UdpSocket>,
    _lease: PortLease,
    local: SocketAddr,
    negotiated: Negotiated,
    pub(super) inbound: Inbound,
    pub(super) out: OutStream,
    out_buf: Vec<u8>,
    pub(super) rtcp_port: u64,
    pub(super) send_failures: u64,
    pub(super) metrics: MediaMetrics,
}

impl Drop for SipLeg {
    fn drop(&mut self) {
        self.metrics.leg_closed();
    }
}

impl SipLeg {
    /// The leg on `port` as `negotiated` (the answer to the unit's offer, or the unit's
    /// answer to vakt's). Must be called within a tokio runtime.
    pub fn new(port: RtpPort, negotiated: Negotiated) -> Result<SipLeg, MediaError> {
        let _runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| MediaError::Internal("no tokio runtime".to_string()))?;
        let RtpPort {
            rtp,
            rtcp,
            lease,
            local,
            metrics,
            options,
            ..
        } = port;
        let to_tokio = |s: std::net::UdpSocket| -> Result<UdpSocket, MediaError> {
            s.set_nonblocking(true).map_err(MediaError::Bind)?;
            UdpSocket::from_std(s).map_err(MediaError::Bind)
        };
        let rtp = to_tokio(rtp)?;
        let rtcp = if negotiated.rtcp_mux {
            None
        } else {
            Some(to_tokio(rtcp)?)
        };
        let now = tokio::time::Instant::now().into_std();
        let inbound = Inbound::new(
            &negotiated,
            Duration::from_millis(u64::from(options.relatch_after_ms)),
            Duration::from_secs(u64::from(options.inactivity_secs)),
            now,
        );
        let out = OutStream::new(
            rand::random(),
            rand::random(),
            rand::random(),
            negotiated.payload_type,
            negotiated.dtmf_payload_type,
        );
        metrics.leg_started();
        Ok(SipLeg {
            rtp,
            rtcp,
            _lease: lease,
            local,
            negotiated,
            inbound,
            out,
            out_buf: Vec::with_capacity(rtp::MAX_PACKET_BYTES),
            rtcp_port: 0,
            send_failures: 0,
            metrics,
        })
    }

    /// The bound RTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What the last offer/answer agreed.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The law of the unit's audio.
    pub fn law(&self) -> Law {
        law_of(self.negotiated.codec)
    }

    /// Whether the unit takes RFC 4733 events (else DTMF goes by SIP INFO).
    pub fn takes_events(&self) -> bool {
        self.negotiated.dtmf_payload_type.is_some()
    }

    /// The leg's figures now.
    pub fn stats(&self) -> SipLegStats {
        let (lost, expected) = self.inbound.loss();
        SipLegStats {
            latched: self.inbound.latched(),
            packets_in: self.inbound.audio,
            events_in: self.inbound.events,
            packets_out: self.out.packets,
            events_out: self.out.event_packets,
            dropped: self.inbound.dropped,
            rtcp_port: self.rtcp_port,
            send_failures: self.send_failures,
            relatches: self.inbound.relatches,
            ssrc_changes: self.inbound.ssrc_changes,
            lost,
            expected,
            jitter: self.inbound.jitter(),
            ssrc_out: self.out.ssrc(),
        }
    }

    /// A re-INVITE's new agreement.
    pub(super) fn update(&mut self, negotiated: Negotiated, now: Instant) {
        self.inbound.negotiate(&negotiated, now);
        self.out
            .set_payload_types(negotiated.payload_type, negotiated.dtmf_payload_type);
        if negotiated.rtcp_mux {
            self.rtcp = None;
        }
        self.negotiated = negotiated;
    }

    /// Whether vakt may send to the unit now: the session lets it, and there is an address.
    pub(super) fn can_send(&self) -> bool {
        self.negotiated.direction.sends() && self.inbound.destination().is_some()
    }

    /// Samples in a generated frame: the unit's `ptime` (10 to 60 ms).
    pub(super) fn frame_samples(&self) -> usize {
        (self.negotiated.ptime_ms.clamp(10, 60) * 8) as usize
    }

    /// One datagram from the RTP socket.
    pub(super) fn receive<'a>(
        &mut self,
        from: SocketAddr,
        bytes: &'a [u8],
        now: Instant,
    ) -> Verdict<'a> {
        self.inbound.datagram(from, bytes, now)
    }

    /// Sends one of the operator's frames (its own timestamp `src_ts`); the header sent, or
    /// `None` when nothing was (a frame going back in time, or no way to send).
    pub(super) fn send_relayed(
        &mut self,
        src_ts: u64,
        payload: &[u8],
        now: Instant,
    ) -> Option<Header> {
        let mut buf = std::mem::take(&mut self.out_buf);
        let header = match self.out.relayed(src_ts, payload, now, &mut buf) {
            Ok(Some(h)) => self.transmit(&buf).then_some(h),
            Ok(None) => None,
            Err(_) => {
                self.send_failures += 1;
                None
            }
        };
        self.out_buf = buf;
        header
    }

    /// Sends a generated frame; the header sent.
    pub(super) fn send_generated(&mut self, payload: &[u8], now: Instant) -> Option<Header> {
        let mut buf = std::mem::take(&mut self.out_buf);
        let header = match self.out.generated(payload, now, &mut buf) {
            Ok(h) => self.transmit(&buf).then_some(h),
            Err(_) => {
                self.send_failures += 1;
                None
            }
        };
        self.out_buf = buf;
        header
    }

    /// Sends the current event's packet for this tick; `false` once the event is over.
    pub(super) fn send_event_tick(&mut self) -> bool {
        let mut buf = std::mem::take(&mut self.out_buf);
        let more = match self.out.event_tick(&mut buf) {
            Ok(Some(_)) => {
                self.transmit(&buf);
                true
            }
            Ok(None) => false,
            Err(_) => {
                self.send_failures += 1;
                true
            }
        };
        self.out_buf = buf;
        more
    }

    /// Writes a packet to the unit without waiting: a full socket buffer or an error drops
    /// it (counted).
    fn transmit(&mut self, packet: &[u8]) -> bool {
        let Some(to) = self.inbound.destination() else {
            self.send_failures += 1;
            return false;
        };
        match self.rtp.try_send_to(packet, to) {
            Ok(_) => true,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::debug!(error = %e, "RTP to the unit not sent");
                }
                self.send_failures += 1;
                false
            }
        }
    }
}
