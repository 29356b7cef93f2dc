//! DC-09 over TCP: a permit before accept, a cap per source, one task per connection, a
//! streaming LF..CR framer, pipelined frames answered in order, idle and frame deadlines.
//!
//! Deadlines: a connection that completes no frame for `idle_timeout` is closed (bytes that
//! are not a frame do not keep it open), and a frame that has begun (its LF received) must be
//! complete within `frame_timeout` (a byte a minute would otherwise hold the slot forever).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::Instant as Deadline;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::limit::PerSource;
use crate::ingest::Ingress;
use crate::ingest::dc09::{Decision, FrameCtx};
use crate::journal::Commit;
use crate::model::Transport;
use crate::telemetry::{ProtoLabel, ResultLabel};
use vakt_proto::dc09::{self, Scan};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;

/// TCP limits.
#[derive(Clone, Copy, Debug)]
pub struct TcpOptions {
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections at once from one source.
    pub max_per_source: usize,
    /// A connection that completes no frame for this long is closed.
    pub idle_timeout: Duration,
    /// A frame begun must be complete within this.
    pub frame_timeout: Duration,
}

/// Accepts connections until `shutdown`; each connection task is tracked by `tracker`.
pub async fn serve(
    listener: TcpListener,
    ingress: Arc<Ingress>,
    opts: TcpOptions,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let sources = PerSource::new("dc09_tcp", opts.max_per_source);
    let mut backoff = Duration::from_millis(10);
    loop {
        // The permit is taken before accept: at the limit, new devices wait in the backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = shutdown.cancelled() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    ingress.receiver.metrics().tcp_accept_errors.increment(1);
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        backoff = Duration::from_millis(10);
        let Some(source) = sources.admit(peer.ip()) else {
            // Reset, not closed: nothing of this connection lingers here.
            let _ = stream.set_zero_linger();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let m = ingress.receiver.metrics();
        m.tcp_accepted.increment(1);
        m.tcp_open.increment(1.0);
        let span = tracing::info_span!("conn", transport = "tcp", %peer);
        let ingress = ingress.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(
            async move {
                tracing::debug!("connected");
                let reason = connection(stream, peer, &ingress, &opts, &shutdown).await;
                tracing::debug!(reason, "closed");
                let m = ingress.receiver.metrics();
                m.tcp_closed(reason);
                m.tcp_open.decrement(1.0);
                drop(source);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

enum Pending {
    Ready(Vec<u8>),
    Wait {
        rx: oneshot::Receiver<Commit>,
        reply: Vec<u8>,
        proto: ProtoLabel,
        result: ResultLabel,
        started: Instant,
    },
}

/// Decides every complete frame in `data` (appending each decision and when its frame was
/// complete to `steps`); returns how many bytes were consumed and how many complete frames
/// they held. Synchronous, so the read buffer it borrows is never held across an await.
fn decide_all(
    data: &[u8],
    peer: SocketAddr,
    ingress: &Ingress,
    steps: &mut Vec<(Decision, Instant)>,
) -> (usize, usize) {
    let rx = &ingress.receiver;
    let m = rx.metrics();
    let mut off = 0;
    let mut frames = 0;
    while off < data.len() {
        match dc09::scan(&data[off..]) {
            Scan::Incomplete => break,
            Scan::Skip(k) => {
                m.garbage_bytes.increment(k as u64);
                off += k;
            }
            Scan::Oversized(k) => {
                m.garbage_bytes.increment(k as u64);
                off += k;
                let mut reply = Vec::new();
                dc09::encode_nak(jiff::Timestamp::now(), &mut reply);
                m.nak("too_long");
                let nak = Decision::Answer {
                    reply,
                    proto: ProtoLabel::Invalid,
                    result: ResultLabel::Nak,
                };
                steps.push((nak, Instant::now()));
            }
            Scan::Frame { start, end } => {
                let started = Instant::now();
                let ctx = FrameCtx {
                    transport: Transport::Tcp,
                    peer,
                    now: jiff::Timestamp::now(),
                };
                steps.push((rx.decide(&data[off + start..off + end], &ctx), started));
                off += end;
                frames += 1;
            }
        }
    }
    (off, frames)
}

/// Serves one connection; returns why it closed.
///
/// Memory: bytes are read into a buffer on the poll's stack, and only a partial frame left
/// at the end of a read is kept on the heap, so an idle connection (the normal state of a
/// device between heartbeats) holds no read buffer at all.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    ingress: &Ingress,
    opts: &TcpOptions,
    shutdown: &CancellationToken,
) -> &'static str {
    let rx = &ingress.receiver;
    let m = rx.metrics();
    let idle = opts.idle_timeout;
    // A partial frame carried over to the next read (empty, and unallocated, between frames).
    let mut partial: Vec<u8> = Vec::new();
    // Moved by complete frames only.
    let mut idle_until = Deadline::now() + idle;
    // While a frame has begun and is not complete.
    let mut frame_until: Option<Deadline> = None;
    loop {
        // Per read; dropped at the end of it, so nothing stays allocated while idle.
        let mut steps: Vec<(Decision, Instant)> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut out: Vec<u8> = Vec::new();
        let until = frame_until.map_or(idle_until, |f| f.min(idle_until));
        let ready = tokio::select! {
            biased;
            () = shutdown.cancelled() => return "shutdown",
            r = tokio::time::timeout_at(until, stream.readable()) => r,
        };
        match ready {
            Err(_) if frame_until.is_some_and(|f| f <= idle_until) => return "frame_timeout",
            Err(_) => return "idle",
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "read failed");
                return "error";
            }
            Ok(Ok(())) => {}
        }
        {
            let mut chunk = [0u8; READ_CHUNK];
            let n = match stream.try_read(&mut chunk) {
                Ok(0) => return "eof",
                Ok(n) => n,
                // A spurious wake-up: readiness is edge-triggered.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "read failed");
                    return "error";
                }
            };
            let got = &chunk[..n];
            let frames = if partial.is_empty() {
                let (used, frames) = decide_all(got, peer, ingress, &mut steps);
                partial.extend_from_slice(&got[used..]);
                frames
            } else {
                partial.extend_from_slice(got);
                let (used, frames) = decide_all(&partial, peer, ingress, &mut steps);
                partial.drain(..used);
                frames
            };
            let now = Deadline::now();
            if frames > 0 {
                idle_until = now + idle;
            }
            if partial.is_empty() {
                partial = Vec::new();
                frame_until = None;
            } else if frames > 0 || frame_until.is_none() {
                // A new frame has begun (a frame cut short by another LF is the same one).
                frame_until = Some(now + opts.frame_timeout);
            }
        }
        // Journal submissions of one read share a group commit.
        // If the journal is closed (shutting down), the frames before stay answered and the
        // connection closes after them.
        let mut journal_closed = false;
        for (decision, started) in steps {
            if journal_closed {
                break;
            }
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
                } => match ingress.journal.submit(*signal, dedup).await {
                    Ok(crx) => pending.push(Pending::Wait {
                        rx: crx,
                        reply,
                        proto,
                        result,
                        started,
                    }),
                    Err(_) => {
                        m.frame(Transport::Tcp, proto, ResultLabel::Dropped);
                        journal_closed = true;
                    }
                },
            }
        }
        // Answer in order. A frame whose commit failed gets no ACK, and neither does any
        // later frame on this connection: close it so the device retries or fails over.
        for p in pending.drain(..) {
            match p {
                Pending::Ready(r) => out.extend_from_slice(&r),
                Pending::Wait {
                    rx: crx,
                    reply,
                    proto,
                    result,
                    started,
                } => {
                    let commit = crx.await.unwrap_or(Commit::Failed);
                    if rx.committed(Transport::Tcp, proto, result, commit) {
                        m.ack_latency(Transport::Tcp, started.elapsed().as_secs_f64());
                        out.extend_from_slice(&reply);
                    } else {
                        let _ = write(&mut stream, &out, idle).await;
                        return "journal";
                    }
                }
            }
        }
        if !out.is_empty() {
            if let Err(reason) = write(&mut stream, &out, idle).await {
                return reason;
            }
        }
        if journal_closed {
            return "journal";
        }
    }
}

async fn write(stream: &mut TcpStream, out: &[u8], timeout: Duration) -> Result<(), &'static str> {
    match tokio::time::timeout(timeout, stream.write_all(out)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "write failed");
            Err("error")
        }
        Err(_) => Err("idle"),
    }
}
