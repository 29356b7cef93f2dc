//! The HTTP listener: the console's router (`console::router`) served by hyper, bounded like
//! the device listeners.
//!
//! - At most `max_connections` at once: a permit is taken before accept, so beyond it new
//!   clients wait in the kernel's backlog.
//! - At most `max_per_source` from one source ([`PerSource`]); a connection beyond is reset.
//! - A request's header must arrive within `header_read_timeout`, counted from the
//!   connection's start or, on a kept-alive connection, from the end of the previous answer:
//!   a slow header is cut, and a kept-alive connection idle that long is closed (hyper's
//!   `header_read_timeout`, which runs while it waits for a request head).
//! - HTTP/1.1 with upgrades (the live feed's WebSocket); the peer address reaches the
//!   handlers as `ConnectInfo<SocketAddr>`.
//! - At shutdown the accept loop stops, each connection finishes the request it is in and
//!   closes, for at most `grace`.
//!
//! `axum::serve` has no connection cap and no header or idle timeout, hence this loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::limit::PerSource;

/// Limits of the HTTP listener (`[http]`).
#[derive(Clone, Copy, Debug)]
pub struct HttpOptions {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one source.
    pub max_per_source: usize,
    /// A request's header must arrive within this.
    pub header_read_timeout: Duration,
    /// How long the connections may take to finish at shutdown.
    pub grace: Duration,
}

/// Serves `router` on `listener` until `shutdown`, then lets the connections finish their
/// requests for at most `opts.grace`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    opts: HttpOptions,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let sources = PerSource::new("http", opts.max_per_source);
    let conns = TaskTracker::new();
    // Past the grace deadline: the connections still open are dropped.
    let hard = CancellationToken::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true);
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "http accept failed");
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        () = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        backoff = Duration::from_millis(10);
        let Some(source) = sources.admit(peer.ip()) else {
            let _ = stream.set_zero_linger();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            },
        );
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let shutdown = shutdown.clone();
        let hard = hard.clone();
        conns.spawn(async move {
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    // Finish the request in progress, then close; at the deadline, drop it.
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = conn.as_mut() => r,
                        () = hard.cancelled() => Ok(()),
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "http connection ended");
            }
            drop(source);
            drop(permit);
        });
    }
    conns.close();
    if tokio::time::timeout(opts.grace, conns.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = conns.len(),
            "shutdown deadline reached; closing the remaining HTTP connections"
        );
        hard.cancel();
        conns.wait().await;
    }
}
