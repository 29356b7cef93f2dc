//! Ingest: what a device's message gets, and the promise that it is durable before the
//! device is told so.
//!
//! [`Ingress`] is the one conductor of invariant 1 (no answer before durable): for DC-09
//! over TCP ([`crate::transport::tcp::FrameHandler`]) and UDP
//! ([`crate::transport::udp::DatagramHandler`]) and for SCAIP ([`scaip::Scaip`], through
//! [`Ingress::journal`]) it decides, journals, and lets an answer out only after the flush
//! that holds its message (`Commit::Stored`, or `Commit::Duplicate` of a flushed one). A
//! failed commit gets no answer (DC-09: the TCP connection is closed; SCAIP: `snu 6`, busy).
//! The transports frame, read and write; they never see the journal.
//!
//! - [`dc09`]: the DC-09 frame rules ([`dc09::Receiver::decide`]).
//! - [`scaip`]: the SCAIP exchange ([`scaip::Scaip::answer`]).
//! - [`digest`]: SIP Digest authentication of SCAIP devices against the registry.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::journal::{Commit, DedupKey, Journal, SubmitError};
use crate::model::{Signal, Transport};
use crate::telemetry::{ProtoLabel, ResultLabel};
use crate::transport::Arrival;
use crate::transport::tcp::{FrameHandler, Unanswered};
use crate::transport::udp::{DatagramHandler, Gate, Reply};
use dc09::{Decision, FrameCtx, Receiver};

pub mod dc09;
pub mod digest;
pub mod scaip;

/// The conductor: the DC-09 frame rules over the journal.
#[derive(Debug)]
pub struct Ingress {
    receiver: Receiver,
    journal: Arc<Journal>,
}

/// A message that was not made durable (it gets no "received" answer). Never the sender's
/// fault: the journal's queue is full (overload), or storage failed or shut down.
#[derive(Debug, thiserror::Error)]
pub enum NotDurable {
    /// The journal's queue is full.
    #[error("journal queue full")]
    Full,
    /// It could not be queued: the journal has shut down, or the Signal could not be encoded.
    #[error(transparent)]
    Unavailable(SubmitError),
    /// Its commit failed (storage).
    #[error("the journal's commit failed")]
    Failed,
}

/// A message made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Durable {
    /// Its journal id (for a retransmission: the first copy's).
    pub id: u64,
    /// False for a retransmission journaled before.
    pub fresh: bool,
}

/// The frames of one read on a DC-09 stream, decided, in order (with when each was complete).
#[derive(Debug, Default)]
pub struct FrameBatch {
    steps: Vec<(Decision, Instant)>,
}

/// A DC-09 frame waiting for its flush, and the answer it then gets.
#[derive(Debug)]
pub struct WaitingFrame {
    rx: oneshot::Receiver<Commit>,
    reply: Vec<u8>,
    proto: ProtoLabel,
    result: ResultLabel,
    started: Instant,
}

/// A journaled frame's place in a read's answers.
enum Pending {
    Ready(Vec<u8>),
    Wait(WaitingFrame),
}

impl Ingress {
    /// The rules over the journal.
    pub fn new(receiver: Receiver, journal: Arc<Journal>) -> Ingress {
        Ingress { receiver, journal }
    }

    /// The DC-09 frame rules (and the registry and last-heard table they read).
    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    /// Journals `signal` and waits for the flush that holds it. Never waits for room in the
    /// queue: a full queue is an answer of its own (SCAIP: busy).
    pub async fn journal(
        &self,
        signal: Signal,
        dedup: Option<DedupKey>,
    ) -> Result<Durable, NotDurable> {
        let rx = self
            .journal
            .try_submit(signal, dedup)
            .map_err(|e| match e {
                SubmitError::Full => NotDurable::Full,
                e => NotDurable::Unavailable(e),
            })?;
        match rx.await.unwrap_or(Commit::Failed) {
            Commit::Stored(id) => Ok(Durable { id, fresh: true }),
            Commit::Duplicate(id) => Ok(Durable { id, fresh: false }),
            Commit::Failed => Err(NotDurable::Failed),
        }
    }

    /// The answer of a waiting DC-09 frame: its reply once its commit is durable (counted),
    /// nothing when the commit failed.
    async fn settle_frame(&self, transport: Transport, w: WaitingFrame) -> Option<Vec<u8>> {
        let commit = w.rx.await.unwrap_or(Commit::Failed);
        if self
            .receiver
            .committed(transport, w.proto, w.result, commit)
        {
            self.receiver
                .metrics()
                .ack_latency(transport, w.started.elapsed().as_secs_f64());
            Some(w.reply)
        } else {
            None
        }
    }

    fn ctx(transport: Transport, at: Arrival) -> FrameCtx {
        FrameCtx {
            transport,
            peer: at.peer,
            now: at.now,
        }
    }
}

impl FrameHandler for Ingress {
    type Batch = FrameBatch;

    fn frame(&self, raw: &[u8], at: Arrival, batch: &mut FrameBatch) {
        let decision = self.receiver.decide(raw, &Self::ctx(Transport::Tcp, at));
        batch.steps.push((decision, at.started));
    }

    fn oversized(&self, at: Arrival, batch: &mut FrameBatch) {
        batch
            .steps
            .push((self.receiver.oversized(at.now), at.started));
    }

    async fn answers(&self, batch: FrameBatch, out: &mut Vec<u8>) -> Result<(), Unanswered> {
        let m = self.receiver.metrics();
        let mut pending: Vec<Pending> = Vec::new();
        // Journal submissions of one read share a group commit. If the journal is closed
        // (shutting down), the frames before stay answered and the connection closes after
        // them.
        let mut closed = false;
        for (decision, started) in batch.steps {
            match decision {
                Decision::Answer {
                    reply,
                    proto,
                    result,
                } => {
                    m.answered(Transport::Tcp, proto, result, started);
                    pending.push(Pending::Ready(reply));
                }
                Decision::Journal {
                    signal,
                    dedup,
                    reply,
                    proto,
                    result,
                } => match self.journal.submit(*signal, dedup).await {
                    Ok(rx) => pending.push(Pending::Wait(WaitingFrame {
                        rx,
                        reply,
                        proto,
                        result,
                        started,
                    })),
                    Err(_) => {
                        m.frame(Transport::Tcp, proto, ResultLabel::Dropped);
                        closed = true;
                        break;
                    }
                },
            }
        }
        // In order; a frame whose commit failed gets no answer, and neither does any later
        // frame.
        for p in pending {
            match p {
                Pending::Ready(r) => out.extend_from_slice(&r),
                Pending::Wait(w) => match self.settle_frame(Transport::Tcp, w).await {
                    Some(reply) => out.extend_from_slice(&reply),
                    None => return Err(Unanswered::Failed),
                },
            }
        }
        if closed {
            Err(Unanswered::Closed)
        } else {
            Ok(())
        }
    }
}

impl DatagramHandler for Ingress {
    type Waiting = WaitingFrame;

    fn frame(&self, raw: &[u8], at: Arrival, gate: &mut Gate<'_>) -> Reply<WaitingFrame> {
        let m = self.receiver.metrics();
        match self.receiver.decide(raw, &Self::ctx(Transport::Udp, at)) {
            Decision::Answer {
                reply,
                proto,
                result,
            } => {
                let garbage = matches!(result, ResultLabel::Nak | ResultLabel::Duh);
                if garbage && !gate.answer_garbage() {
                    m.ignored("rate_limited");
                    m.frame(Transport::Udp, proto, ResultLabel::Dropped);
                    return Reply::None;
                }
                m.answered(Transport::Udp, proto, result, at.started);
                Reply::Now(reply)
            }
            Decision::Journal {
                signal,
                dedup,
                reply,
                proto,
                result,
            } => {
                let Some(place) = gate.wait() else {
                    m.udp_dropped.increment(1);
                    m.frame(Transport::Udp, proto, ResultLabel::Dropped);
                    return Reply::None;
                };
                match self.journal.try_submit(*signal, dedup) {
                    Ok(rx) => Reply::Later {
                        waiting: WaitingFrame {
                            rx,
                            reply,
                            proto,
                            result,
                            started: at.started,
                        },
                        place,
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "udp frame not journaled");
                        m.udp_dropped.increment(1);
                        m.frame(Transport::Udp, proto, ResultLabel::Dropped);
                        Reply::None
                    }
                }
            }
        }
    }

    async fn settle(&self, waiting: WaitingFrame) -> Option<Vec<u8>> {
        self.settle_frame(Transport::Udp, waiting).await
    }
}
