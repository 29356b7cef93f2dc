//! A SIP leg's RTP port pair, leased from the shared pool of `crate::voice::ports` (an even
//! port for RTP, the odd one above for RTCP).

use std::net::{IpAddr, SocketAddr, UdpSocket};

use vakt_proto::sdp::LocalMedia;

use crate::telemetry::MediaMetrics;
pub(super) use crate::voice::ports::PortLease;

/// A leg's RTP port, bound before vakt answers the call so its number goes into the SDP
/// answer ([`RtpPort::local_media`]); then [`super::SipLeg::new`] with what was agreed.
/// Dropped unused (the call refused after all), its pair goes back to the range.
#[derive(Debug)]
pub struct RtpPort {
    pub(super) rtp: UdpSocket,
    pub(super) rtcp: UdpSocket,
    pub(super) lease: PortLease,
    /// The address for the SDP when vakt knows it (`public_addr`, or a concrete
    /// `bind_addr`).
    pub(super) advertised: Option<IpAddr>,
    pub(super) local: SocketAddr,
    pub(super) metrics: MediaMetrics,
    pub(super) options: super::MediaOptions,
}

impl RtpPort {
    /// The RTP port (even; RTCP is read on the next one).
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// The bound RTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// vakt's media endpoint for `vakt_proto::sdp::LocalSession`: the configured
    /// `public_addr`, else a concrete `bind_addr`, else `reached` (the local address the
    /// call's INVITE came in on), with this port; RTCP on the RTP port (`a=rtcp-mux`) is
    /// accepted when the unit offers it, and read on the next port when it does not.
    pub fn local_media(&self, reached: IpAddr) -> LocalMedia {
        LocalMedia {
            address: self.advertised.unwrap_or(reached),
            port: self.port(),
            rtcp_mux: true,
        }
    }
}
