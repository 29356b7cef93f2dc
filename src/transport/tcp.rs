//! DC-09 over TCP: one task per connection (accepted by [`super::accept`]), a streaming
//! LF..CR framer, pipelined frames answered in order, idle and frame deadlines.
//!
//! The frames of one read are handed to the [`FrameHandler`] (ingest's conductor), which
//! decides each, journals those that must be, and gives back their answers in order once
//! they may be sent: the frames of one read share a group commit. When it says a frame must
//! go unanswered, the answers before it are written and the connection is closed, so the
//! device retries or fails over.
//!
//! Deadlines: a connection that completes no frame for `idle_timeout` is closed (bytes that
//! are not a frame do not keep it open), and a frame that has begun (its LF received) must be
//! complete within `frame_timeout` (a byte a minute would otherwise hold the slot forever).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant as Deadline;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::Arrival;
use super::accept::{self, AcceptOptions, Scope};
use crate::telemetry::Metrics;
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

/// A frame that must go unanswered: the connection is closed after the answers before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// Its commit failed (storage): the device must retry or fail over.
    Failed,
    /// The journal has shut down: the frames before are answered, the rest are not read.
    Closed,
}

/// What the layer above does with DC-09 frames over a stream.
pub trait FrameHandler: Send + Sync + 'static {
    /// The frames of one read, decided, in order.
    type Batch: Default + Send;

    /// Decides one complete LF..CR frame (synchronous: the read buffer is never held across
    /// an await).
    fn frame(&self, raw: &[u8], at: Arrival, batch: &mut Self::Batch);

    /// A run of bytes too long to be a frame.
    fn oversized(&self, at: Arrival, batch: &mut Self::Batch);

    /// Appends the batch's answers to `out` in order, each once it may be sent (after the
    /// flush that holds its frame, for a journaled one); an error when a frame must go
    /// unanswered (`out` then holds the answers before it).
    fn answers(
        &self,
        batch: Self::Batch,
        out: &mut Vec<u8>,
    ) -> impl Future<Output = Result<(), Unanswered>> + Send;
}

/// Accepts DC-09 connections until `scope.shutdown`; each connection's frames go to
/// `handler`.
pub async fn serve<H: FrameHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    opts: TcpOptions,
    metrics: Metrics,
    scope: Scope,
) {
    let accept = AcceptOptions {
        name: "dc09_tcp",
        max_connections: opts.max_connections,
        max_per_source: opts.max_per_source,
    };
    let errors = crate::telemetry::accept_errors(accept.name);
    let shutdown = scope.shutdown.clone();
    accept::serve(listener, accept, errors, scope, move |stream, peer| {
        let _ = stream.set_nodelay(true);
        metrics.tcp_accepted.increment(1);
        metrics.tcp_open.increment(1.0);
        let handler = handler.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        async move {
            tracing::debug!("connected");
            let mut open = Open {
                metrics: &metrics,
                reason: "shutdown",
            };
            open.reason = connection(stream, peer, &*handler, &metrics, &opts, &shutdown).await;
            tracing::debug!(reason = open.reason, "closed");
        }
    })
    .await;
}

/// An open connection in the metrics: counted closed (with its reason) when dropped, also
/// when its task is dropped at the grace deadline (reason `shutdown`).
struct Open<'a> {
    metrics: &'a Metrics,
    reason: &'static str,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.metrics.tcp_closed(self.reason);
        self.metrics.tcp_open.decrement(1.0);
    }
}

/// Frames every complete frame in `data` and hands it to `handler`; returns how many bytes
/// were consumed and how many complete frames they held. Synchronous, so the read buffer it
/// borrows is never held across an await.
fn frame_all<H: FrameHandler>(
    data: &[u8],
    peer: SocketAddr,
    handler: &H,
    metrics: &Metrics,
    batch: &mut H::Batch,
) -> (usize, usize) {
    let mut off = 0;
    let mut frames = 0;
    while off < data.len() {
        match dc09::scan(&data[off..]) {
            Scan::Incomplete => break,
            Scan::Skip(k) => {
                metrics.garbage_bytes.increment(k as u64);
                off += k;
            }
            Scan::Oversized(k) => {
                metrics.garbage_bytes.increment(k as u64);
                off += k;
                handler.oversized(Arrival::now(peer), batch);
            }
            Scan::Frame { start, end } => {
                handler.frame(&data[off + start..off + end], Arrival::now(peer), batch);
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
async fn connection<H: FrameHandler>(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &H,
    metrics: &Metrics,
    opts: &TcpOptions,
    shutdown: &CancellationToken,
) -> &'static str {
    let idle = opts.idle_timeout;
    // A partial frame carried over to the next read (empty, and unallocated, between frames).
    let mut partial: Vec<u8> = Vec::new();
    // Moved by complete frames only.
    let mut idle_until = Deadline::now() + idle;
    // While a frame has begun and is not complete.
    let mut frame_until: Option<Deadline> = None;
    loop {
        // Per read; dropped at the end of it, so nothing stays allocated while idle.
        let mut batch = H::Batch::default();
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
                let (used, frames) = frame_all(got, peer, handler, metrics, &mut batch);
                partial.extend_from_slice(&got[used..]);
                frames
            } else {
                partial.extend_from_slice(got);
                let (used, frames) = frame_all(&partial, peer, handler, metrics, &mut batch);
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
        // Answer in order. A frame that must go unanswered gets no ACK, and neither does any
        // later frame on this connection: close it so the device retries or fails over.
        match handler.answers(batch, &mut out).await {
            Ok(()) => {}
            Err(Unanswered::Failed) => {
                let _ = write(&mut stream, &out, idle).await;
                return "journal";
            }
            Err(Unanswered::Closed) => {
                if !out.is_empty() {
                    if let Err(reason) = write(&mut stream, &out, idle).await {
                        return reason;
                    }
                }
                return "journal";
            }
        }
        if !out.is_empty() {
            if let Err(reason) = write(&mut stream, &out, idle).await {
                return reason;
            }
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
