//! Ingest: what a device's message gets, and the promise that it is durable before the
//! device is told so.
//!
//! - [`dc09`]: the DC-09 frame rules ([`dc09::Receiver::decide`]).
//! - [`scaip`]: the SCAIP exchange ([`scaip::Scaip::answer`]).

use crate::journal::Journal;

pub mod dc09;
pub mod scaip;

/// What every transport hands frames to.
#[derive(Debug)]
pub struct Ingress {
    /// The frame rules.
    pub receiver: dc09::Receiver,
    /// The journal.
    pub journal: std::sync::Arc<Journal>,
}
