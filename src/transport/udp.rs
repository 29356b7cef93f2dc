//! DC-09 over UDP: one frame per datagram, answered to the source address. Frames waiting for
//! the journal are bounded; beyond the bound a datagram is dropped unanswered (and counted),
//! so the device retries or fails over to its backup receiver.
//!
//! The source address of a datagram can be forged, so garbage is answered sparingly: a
//! datagram that holds no LF..CR frame gets no answer at all, and a frame that cannot be
//! used (NAK, DUH) is answered within [`AnswerRate`]'s budget per source and in all; beyond,
//! it is counted (`vakt_frames_ignored_total{reason="rate_limited"}`) and not answered.
//! Frames of devices (ACK) are always answered.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::limit::AnswerRate;
use crate::ingest::Ingress;
use crate::ingest::dc09::{Decision, FrameCtx};
use crate::journal::Commit;
use crate::model::Transport;
use crate::telemetry::{ProtoLabel, ResultLabel};
use vakt_proto::dc09::{self, MAX_FRAME_BYTES, Scan};

/// Receives datagrams until `shutdown`.
pub async fn serve(
    socket: UdpSocket,
    ingress: Arc<Ingress>,
    max_in_flight: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let socket = Arc::new(socket);
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    // Larger than any frame, so an oversized datagram is seen as such rather than cut.
    let mut buf = vec![0u8; MAX_FRAME_BYTES + 1024];
    let m = ingress.receiver.metrics().clone();
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
            () = shutdown.cancelled() => return,
        };
        let started = Instant::now();
        let dgram = &buf[..n];
        let Some(frame) = first_frame(dgram) else {
            // Not even a frame: an answer would only serve to reflect traffic.
            m.garbage_bytes.increment(n as u64);
            m.ignored("not_a_frame");
            m.frame(Transport::Udp, ProtoLabel::Invalid, ResultLabel::Dropped);
            continue;
        };
        let ctx = FrameCtx {
            transport: Transport::Udp,
            peer,
            now: jiff::Timestamp::now(),
        };
        match ingress.receiver.decide(frame, &ctx) {
            Decision::Answer {
                reply,
                proto,
                result,
            } => {
                let garbage = matches!(result, ResultLabel::Nak | ResultLabel::Duh);
                if garbage && !garbage_answers.allow(peer.ip(), started) {
                    m.ignored("rate_limited");
                    m.frame(Transport::Udp, proto, ResultLabel::Dropped);
                    continue;
                }
                m.answered(Transport::Udp, proto, result, started);
                if reply.is_empty() {
                    continue;
                }
                if let Err(e) = socket.send_to(&reply, peer).await {
                    tracing::debug!(error = %e, %peer, "udp send failed");
                }
            }
            Decision::Journal {
                signal,
                dedup,
                reply,
                proto,
                result,
            } => {
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    m.udp_dropped.increment(1);
                    m.frame(Transport::Udp, proto, ResultLabel::Dropped);
                    continue;
                };
                let crx = match ingress.journal.try_submit(*signal, dedup) {
                    Ok(crx) => crx,
                    Err(e) => {
                        tracing::debug!(error = %e, "udp frame not journaled");
                        m.udp_dropped.increment(1);
                        m.frame(Transport::Udp, proto, ResultLabel::Dropped);
                        continue;
                    }
                };
                let socket = socket.clone();
                let ingress = ingress.clone();
                let span = tracing::debug_span!("dgram", transport = "udp", %peer);
                tracker.spawn(
                    async move {
                        let commit = crx.await.unwrap_or(Commit::Failed);
                        let rx = &ingress.receiver;
                        if rx.committed(Transport::Udp, proto, result, commit) {
                            rx.metrics()
                                .ack_latency(Transport::Udp, started.elapsed().as_secs_f64());
                            if let Err(e) = socket.send_to(&reply, peer).await {
                                tracing::debug!(error = %e, "udp send failed");
                            }
                        }
                        drop(permit);
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
