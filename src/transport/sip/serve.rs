//! The SIP listeners: the UDP loop, and the TCP/TLS connections (accepted by
//! [`crate::transport::accept`]) with their Content-Length framing and writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::flow::Flow;
use super::rate::Bucket;
use super::{Endpoint, ScaipHandler};
use crate::transport::accept::{self, AcceptOptions};
use vakt_proto::sip;

/// Bytes asked of a stream per read.
const READ_CHUNK: usize = 4096;
/// Messages queued for one connection's writer.
const WRITE_QUEUE: usize = 64;
/// A TLS handshake must be done within this.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Receives SIP datagrams until the endpoint's shutdown.
pub async fn serve_udp<H: ScaipHandler>(socket: UdpSocket, ep: Arc<Endpoint<H>>) {
    let socket = Arc::new(socket);
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let shutdown = ep.scope.shutdown.clone();
    if let Some(calls) = &ep.calls {
        calls.set_udp(socket.clone(), local);
    }
    let mut buf = vec![0u8; sip::MAX_MESSAGE_BYTES + 1];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "sip udp receive failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let dgram = &buf[..n];
        // NAT keep-alives (CRLF) and datagrams over the bound are dropped.
        if n > sip::MAX_MESSAGE_BYTES || dgram.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue;
        }
        let is_response = dgram.starts_with(b"SIP/2.0 ");
        if !is_response && !ep.unlimited(peer) && !ep.rates.allow(peer, Instant::now()) {
            if let Some(out) = ep.over_rate(dgram, peer) {
                let _ = socket.send_to(&out, peer).await;
            }
            continue;
        }
        let flow = Flow::Udp {
            socket: socket.clone(),
            peer,
        };
        ep.handle(dgram, &flow, local).await;
    }
}

/// Accepts SIP connections (plain TCP, or TLS with `tls`) until the endpoint's shutdown,
/// each listener within the endpoint's caps (`scaip_tcp`, `scaip_tls`).
pub async fn serve_stream<H: ScaipHandler>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ep: Arc<Endpoint<H>>,
) {
    let opts = AcceptOptions {
        name: if tls.is_some() {
            "scaip_tls"
        } else {
            "scaip_tcp"
        },
        max_connections: ep.opts.max_connections,
        max_per_source: ep.opts.max_per_source,
    };
    let errors = crate::telemetry::accept_errors(opts.name);
    let scope = ep.scope.clone();
    accept::serve(listener, opts, errors, scope, move |stream, peer| {
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let ep = ep.clone();
        let tls = tls.clone();
        async move {
            let shutdown = ep.scope.shutdown.clone();
            ep.metrics.connections.increment(1.0);
            // Also when the task is dropped at the grace deadline.
            let _open = Open(&ep.metrics.connections);
            let (tx, rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
            match tls {
                None => connection(stream, peer, local, false, (tx, rx), &ep, &shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            connection(s, peer, local, true, (tx, rx), &ep, &shutdown).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!("tls handshake timed out"),
                    }
                }
            }
        }
    })
    .await;
}

/// Decrements `gauge` when dropped.
struct Open<'a>(&'a metrics::Gauge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Connects over TCP to `addr` for a call out; the connection is then read and written like
/// an accepted one (on the endpoint's scope, counted in its gauge). The flow and vakt's
/// address on it.
pub(super) async fn connect<H: ScaipHandler>(
    ep: &Arc<Endpoint<H>>,
    addr: SocketAddr,
) -> std::io::Result<(Flow, SocketAddr)> {
    let stream = tokio::time::timeout(HANDSHAKE, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr()?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let flow = Flow::Stream {
        tx: tx.clone(),
        peer: addr,
        tls: false,
    };
    let ep2 = ep.clone();
    let span = tracing::debug_span!("sip_tcp_out", peer = %addr);
    ep.scope.spawn(
        async move {
            let shutdown = ep2.scope.shutdown.clone();
            ep2.metrics.connections.increment(1.0);
            let _open = Open(&ep2.metrics.connections);
            connection(stream, addr, local, false, (tx, rx), &ep2, &shutdown).await;
        }
        .instrument(span),
    );
    Ok((flow, local))
}

/// One TCP or TLS connection: a reader that frames messages by Content-Length and a writer
/// that sends responses and vakt's requests in order (`channel`: the writer's queue). It is
/// closed when idle, unless a call holds it (its flow is in use).
async fn connection<S, H>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
    channel: (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>),
    ep: &Arc<Endpoint<H>>,
    shutdown: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
    H: ScaipHandler,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = channel;
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let flow = Flow::Stream { tx, peer, tls };
    let (rate, burst) = (ep.opts.rate_per_source, ep.opts.rate_burst);
    let mut bucket = Bucket::new(burst, Instant::now());
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    'conn: loop {
        // Every whole message in the buffer first.
        loop {
            match sip::scan(&buf) {
                sip::Scan::Message { len } => {
                    let is_response = buf.starts_with(b"SIP/2.0 ");
                    if !is_response
                        && !ep.unlimited(peer)
                        && !bucket.take(rate, burst, Instant::now())
                    {
                        if let Some(out) = ep.over_rate(&buf[..len], peer) {
                            flow.send(out).await;
                        }
                    } else {
                        ep.handle(&buf[..len], &flow, local).await;
                    }
                    buf.drain(..len);
                }
                sip::Scan::KeepAlive { n, ping } => {
                    buf.drain(..n);
                    if ping {
                        flow.send(b"\r\n".to_vec()).await;
                    }
                }
                sip::Scan::Incomplete => break,
                sip::Scan::Invalid(e) => {
                    tracing::debug!(error = e.as_str(), "sip stream broken; closing");
                    break 'conn;
                }
            }
        }
        let mut chunk = [0u8; READ_CHUNK];
        let n = loop {
            tokio::select! {
                r = tokio::time::timeout(ep.opts.idle_timeout, rd.read(&mut chunk)) => match r {
                    Ok(Ok(0)) | Ok(Err(_)) => break 'conn,
                    Ok(Ok(n)) => break n,
                    // A call on this connection may be silent for long: it stays open.
                    Err(_) if flow.in_use() => {}
                    Err(_) => {
                        tracing::debug!("sip connection idle; closing");
                        break 'conn;
                    }
                },
                () = shutdown.cancelled() => break 'conn,
            }
        };
        buf.extend_from_slice(&chunk[..n]);
    }
    // Answers still being made hold the sender; the writer ends when they are sent.
    drop(flow);
    let _ = writer.await;
}

/// A TLS acceptor for SIPS from a PEM chain and key (TLS 1.2 and 1.3, the ring provider).
pub fn tls_acceptor(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, crate::transport::quic::QuicError> {
    use crate::transport::quic;
    let id = quic::load_identity(cert_file, key_file)?;
    let cfg = rustls::ServerConfig::builder_with_provider(quic::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(id.certs, id.key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
