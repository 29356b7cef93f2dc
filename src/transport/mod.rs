//! Listeners: accept loops, permits, framing, answers. The transports know how bytes arrive
//! and leave; what a frame means is the [`Receiver`]'s business, and durability the
//! [`Journal`]'s.

use crate::journal::Journal;
use crate::receiver::Receiver;

pub mod http;
pub mod limit;
pub mod quic;
pub mod sip;

pub mod tcp;
pub mod udp;

/// What every transport hands frames to.
#[derive(Debug)]
pub struct Ingress {
    /// The frame rules.
    pub receiver: Receiver,
    /// The journal.
    pub journal: Journal,
}
