//! Listeners: accept loops, permits, framing, answers. The transports know how bytes arrive
//! and leave; what a frame means, and when it is durable, is [`crate::ingest`]'s business.

pub mod http;
pub mod limit;
pub mod quic;
pub mod sip;

pub mod tcp;
pub mod udp;
