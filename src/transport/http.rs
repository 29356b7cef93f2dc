//! The HTTP listener: the console's router (`console::router`) served by hyper, bounded like
//! the device listeners.
//!
//! - At most `max_connections` at once: a permit is taken before accept, so beyond it new
//!   clients wait in the kernel's backlog.
//! - At most `max_per_source` from one source ([`super::limit::PerSource`]); a connection beyond is reset.
//! - A request's header must arrive within `header_read_timeout`, counted from the
//!   connection's start or, on a kept-alive connection, from the end of the previous answer:
//!   a slow header is cut, and a kept-alive connection idle that long is closed (hyper's
//!   `header_read_timeout`, which runs while it waits for a request head).
//! - HTTP/1.1 with upgrades (the live feed's WebSocket); the peer address reaches the
//!   handlers as `ConnectInfo<SocketAddr>`.
//! - At shutdown the accept loop stops, each connection finishes the request it is in and
//!   closes; those still open at the server's grace deadline are dropped ([`Scope`]).
//!
//! `axum::serve` has no connection cap and no header or idle timeout, hence this listener
//! (on the one accept loop, [`super::accept`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::accept::{self, AcceptOptions, Scope};

/// Limits of the HTTP listener (`[http]`).
#[derive(Clone, Copy, Debug)]
pub struct HttpOptions {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one source.
    pub max_per_source: usize,
    /// A request's header must arrive within this.
    pub header_read_timeout: Duration,
}

/// Serves `router` on `listener` until `scope.shutdown`; then each connection finishes the
/// request it is in and closes (the server waits for `scope` until its grace deadline).
pub async fn serve(listener: TcpListener, router: axum::Router, opts: HttpOptions, scope: Scope) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true);
    let accept = AcceptOptions {
        name: "http",
        max_connections: opts.max_connections,
        max_per_source: opts.max_per_source,
    };
    let errors = crate::telemetry::accept_errors(accept.name);
    let shutdown = scope.shutdown.clone();
    accept::serve(listener, accept, errors, scope, move |stream, peer| {
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
        async move {
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    // Finish the request in progress, then close (at the deadline the scope
                    // drops it).
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "http connection ended");
            }
        }
    })
    .await;
}
