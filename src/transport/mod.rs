//! Listeners: accept loops, permits, framing, answers. The transports know how bytes arrive
//! and leave; what a frame means, and when it is durable, is the business of the layer above
//! (ingest, the console), which hands each listener its handler:
//! [`tcp::FrameHandler`] and [`udp::DatagramHandler`] for DC-09 frames,
//! [`sip::ScaipHandler`] for SCAIP's device credentials and messages, a router for HTTP.
//!
//! This layer imports nothing of the server above it: only `vakt_proto`, [`crate::model`]
//! and [`crate::telemetry`].

pub mod accept;
pub mod http;
pub mod limit;
pub mod quic;
pub mod sip;

pub mod tcp;
pub mod udp;

/// Where and when a frame arrived. The transports read the clocks; the rules above take
/// the time as a parameter.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// The sender's address.
    pub peer: std::net::SocketAddr,
    /// Receive time (UTC).
    pub now: jiff::Timestamp,
    /// Receive instant (for the frame-to-answer latency).
    pub started: std::time::Instant,
}

impl Arrival {
    /// A frame from `peer`, now.
    pub fn now(peer: std::net::SocketAddr) -> Arrival {
        Arrival {
            peer,
            started: std::time::Instant::now(),
            now: jiff::Timestamp::now(),
        }
    }
}
