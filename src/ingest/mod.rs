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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;
    use crate::registers::devices::{CSV_HEADER, Devices, Registry, parse_csv};
    use crate::store::Store;
    use crate::supervision::LastHeard;
    use crate::telemetry::Metrics;
    use vakt_proto::dc09::{self as codec, FrameSpec};

    fn ingress(dir: &std::path::Path) -> (Arc<Ingress>, Store) {
        let csv = format!(
            "{CSV_HEADER}\n1234,,,,,anna,90,,,,,\n678,,,,,cecilia,90,,,pendant,luc678,pw\n"
        );
        let devices = parse_csv(csv.as_bytes()).unwrap();
        let store = Store::open(dir).unwrap();
        let metrics = Metrics::new();
        let journal = Journal::start(
            store.clone(),
            JournalOptions {
                max_batch: 64,
                queue_capacity: 64,
                dedup_window_secs: 600,
                dedup_max_entries: 1000,
            },
            metrics.clone(),
            jiff::Timestamp::now(),
            None,
        )
        .unwrap();
        let receiver = Receiver::new(
            Devices::new(Registry::new(devices)),
            Arc::new(LastHeard::new()),
            metrics,
            dc09::ReceiverOptions {
                timestamp_past_secs: 40,
                timestamp_future_secs: 20,
            },
        );
        (Arc::new(Ingress::new(receiver, Arc::new(journal))), store)
    }

    fn frame(id: &str, seq: u16, data: &str) -> Vec<u8> {
        let mut out = Vec::new();
        codec::encode_frame(
            &FrameSpec {
                id,
                seq,
                receiver: None,
                line: Some("0"),
                account: "1234",
                data: data.as_bytes(),
                xdata: &[],
                timestamp: None,
            },
            &mut out,
        );
        out
    }

    fn ack(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let f = &raw[raw.iter().position(|&b| b == b'\n').unwrap()..];
        codec::encode_ack(&codec::parse(f).unwrap(), &mut out);
        out
    }

    fn peer() -> std::net::SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    /// The frames of one read: their answers in order, each journaled frame's after the
    /// flush that holds it; once the journal is closed, the frames before it are answered
    /// and the rest are not.
    #[tokio::test]
    async fn a_reads_frames_are_answered_in_order_after_the_flush_and_none_after_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let (ing, store) = ingress(dir.path());
        let null = frame("NULL", 1, "");
        let a = frame("ADM-CID", 2, "#1234|1131 01 015");
        let b = frame("ADM-CID", 3, "#1234|1130 01 016");
        let mut batch = FrameBatch::default();
        for f in [&null, &a, &b] {
            FrameHandler::frame(&*ing, f, Arrival::now(peer()), &mut batch);
        }
        let mut out = Vec::new();
        ing.answers(batch, &mut out).await.unwrap();
        assert_eq!(out, [ack(&null), ack(&a), ack(&b)].concat());
        assert_eq!(store.journal_after(0, 10).unwrap().len(), 2, "both durable");

        ing.journal.close().await;
        let c = frame("ADM-CID", 4, "#1234|1131 01 017");
        let mut batch = FrameBatch::default();
        for f in [&null, &c, &null] {
            FrameHandler::frame(&*ing, f, Arrival::now(peer()), &mut batch);
        }
        let mut out = Vec::new();
        assert_eq!(ing.answers(batch, &mut out).await, Err(Unanswered::Closed));
        assert_eq!(out, ack(&null), "only the frame before the refusal");
        assert_eq!(store.journal_after(0, 10).unwrap().len(), 2);
    }

    /// A journal that cannot take a SCAIP alarm is vakt's fault: busy (snu 6), never a
    /// format error, and nothing is "received".
    #[tokio::test]
    async fn a_scaip_request_the_journal_cannot_take_is_answered_busy() {
        use crate::triage::{NullSink, Triage, TriageOptions};
        use vakt_proto::scaip::{Mrs, parse_mrs, snu};
        let dir = tempfile::tempdir().unwrap();
        let (ing, store) = ingress(dir.path());
        ing.journal.close().await;
        let triage = Arc::new(Triage::new(
            TriageOptions::default(),
            Arc::new(NullSink),
            crate::telemetry::CallMetrics::new(),
            1,
        ));
        let scaip = scaip::Scaip::new(
            ing,
            triage,
            Arc::new(scaip::Tracker::new(0)),
            scaip::ScaipOptions {
                max_body_bytes: 1300,
                max_holds: 10,
                session: jiff::SignedDuration::from_secs(3600),
                voice_mre: 1,
                voice_uri: None,
                realm: "vakt".into(),
                nonce_secs: 300,
                max_in_flight: 10,
            },
            crate::telemetry::ScaipMetrics::new(),
        );
        let body = b"<mrq><ref>R1</ref><cid>678</cid><dty>0003</dty></mrq>";
        let xml = crate::transport::sip::ScaipHandler::message(
            &scaip,
            crate::transport::sip::Request {
                user: "luc678",
                body,
                transport: Transport::Udp,
                peer: peer(),
                now: jiff::Timestamp::now(),
            },
        )
        .await;
        let mrs: Mrs = parse_mrs(&xml).unwrap();
        assert_eq!(mrs.snu, snu::BUSY);
        assert_eq!(mrs.reference.as_deref(), Some("R1"));
        assert!(store.journal_after(0, 10).unwrap().is_empty());
    }
}
