//! DC-09 over UDP: one frame per datagram, answered to the source address. Frames waiting for
//! the journal are bounded; beyond the bound a datagram is dropped unanswered (and counted),
//! so the device retries or fails over to its backup receiver.
//!
//! The source address of a datagram can be forged, so garbage is answered sparingly: a
//! datagram that holds no LF..CR frame gets no answer at all, and a frame that cannot be
//! used (NAK, DUH) is answered within [`AnswerRate`]'s budget per source and in all; beyond,
//! it is counted (`vakt_frames_ignored_total{reason="rate_limited"}`) and not answered.
//! Frames of devices (ACK) are always answered.
//!
//! What a frame gets is the [`DatagramHandler`]'s business (ingest's conductor); it asks the
//! listener's [`Gate`] for the two bounds above.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::Arrival;
use super::accept::Scope;
use super::limit::AnswerRate;
use crate::model::Transport;
use crate::telemetry::{Metrics, ProtoLabel, ResultLabel};
use vakt_proto::dc09::{self, MAX_FRAME_BYTES, Scan};

/// A place among the frames waiting for the journal, given back when dropped.
#[derive(Debug)]
pub struct Place {
    _permit: OwnedSemaphorePermit,
}

/// The listener's bounds, as one datagram's handler may use them.
#[derive(Debug)]
pub struct Gate<'a> {
    rate: &'a mut AnswerRate,
    in_flight: &'a Arc<Semaphore>,
    peer: IpAddr,
    now: Instant,
}

impl Gate<'_> {
    /// True when a frame that cannot be used (NAK, DUH) may be answered to this source now
    /// (the answer is counted against its budget).
    pub fn answer_garbage(&mut self) -> bool {
        self.rate.allow(self.peer, self.now)
    }

    /// A place among the frames waiting for the journal; `None` beyond the bound.
    pub fn wait(&mut self) -> Option<Place> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| Place { _permit: p })
    }
}

/// What a datagram's frame gets.
#[derive(Debug)]
pub enum Reply<W> {
    /// These bytes now (nothing when empty).
    Now(Vec<u8>),
    /// No answer.
    None,
    /// An answer once `waiting` settles ([`DatagramHandler::settle`]); the place is held
    /// until it is sent.
    Later {
        /// What waits (for the journal).
        waiting: W,
        /// Its place among the frames waiting.
        place: Place,
    },
}

/// What the layer above does with DC-09 frames over UDP.
pub trait DatagramHandler: Send + Sync + 'static {
    /// A frame waiting for its answer.
    type Waiting: Send + 'static;

    /// Decides one frame.
    fn frame(&self, raw: &[u8], at: Arrival, gate: &mut Gate<'_>) -> Reply<Self::Waiting>;

    /// The answer of a waiting frame once it may be sent; `None`: no answer.
    fn settle(&self, waiting: Self::Waiting) -> impl Future<Output = Option<Vec<u8>>> + Send;
}

/// Receives datagrams until `scope.shutdown`; frames waiting for their answer (at most
/// `max_in_flight`) run on `scope`.
pub async fn serve<H: DatagramHandler>(
    socket: UdpSocket,
    handler: Arc<H>,
    max_in_flight: usize,
    metrics: Metrics,
    scope: Scope,
) {
    let socket = Arc::new(socket);
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    // Larger than any frame, so an oversized datagram is seen as such rather than cut.
    let mut buf = vec![0u8; MAX_FRAME_BYTES + 1024];
    let m = metrics;
    let mut garbage_answers = AnswerRate::new(Instant::now());
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP port unreachable from an earlier send and the like: not fatal.
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
            () = scope.shutdown.cancelled() => return,
        };
        let at = Arrival::now(peer);
        let dgram = &buf[..n];
        let Some(frame) = first_frame(dgram) else {
            // Not even a frame: an answer would only serve to reflect traffic.
            m.garbage_bytes.increment(n as u64);
            m.ignored("not_a_frame");
            m.frame(Transport::Udp, ProtoLabel::Invalid, ResultLabel::Dropped);
            continue;
        };
        let mut gate = Gate {
            rate: &mut garbage_answers,
            in_flight: &in_flight,
            peer: peer.ip(),
            now: at.started,
        };
        match handler.frame(frame, at, &mut gate) {
            Reply::None => {}
            Reply::Now(reply) => {
                if reply.is_empty() {
                    continue;
                }
                if let Err(e) = socket.send_to(&reply, peer).await {
                    tracing::debug!(error = %e, %peer, "udp send failed");
                }
            }
            Reply::Later { waiting, place } => {
                let socket = socket.clone();
                let handler = handler.clone();
                let span = tracing::debug_span!("dgram", transport = "udp", %peer);
                scope.spawn(
                    async move {
                        if let Some(reply) = handler.settle(waiting).await {
                            if let Err(e) = socket.send_to(&reply, peer).await {
                                tracing::debug!(error = %e, "udp send failed");
                            }
                        }
                        drop(place);
                    }
                    .instrument(span),
                );
            }
        }
    }
}

/// The frame in a datagram (a datagram carries one; stray bytes around it, such as trailing
/// NULs, are ignored).
fn first_frame(dgram: &[u8]) -> Option<&[u8]> {
    let mut off = 0;
    while off < dgram.len() {
        match dc09::scan(&dgram[off..]) {
            Scan::Frame { start, end } => return Some(&dgram[off + start..off + end]),
            Scan::Skip(k) | Scan::Oversized(k) => off += k,
            Scan::Incomplete => return None,
        }
    }
    None
}
