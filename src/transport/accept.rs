//! The one accept loop of every stream listener (DC-09 TCP, SIP over TCP and TLS, HTTP, the
//! patrols' QUIC link), and the scope its connections live in.
//!
//! - A permit is taken before accept: at the listener's cap, new clients wait in the kernel's
//!   backlog (QUIC: in the endpoint's queue) instead of being accepted and dropped.
//! - A connection beyond its source's share ([`PerSource`]) is refused at once (TCP: reset;
//!   QUIC: refused at `Incoming`, before any handshake).
//! - An accept error (e.g. out of file descriptors) is counted
//!   (`vakt_tcp_accept_errors_total{listener}`) and logged, and the loop backs off (10 ms
//!   doubling to 1 s) instead of spinning; shutdown cancels the backoff.
//! - Each connection runs in a task on the [`Scope`]'s tracker, inside a span naming the
//!   listener and the peer. At shutdown the loop stops, each connection is asked to finish
//!   (it sees `shutdown`), and the server waits for the tracker until its grace deadline;
//!   the connections still open then are dropped ([`Scope::close`]).
//!
//! Written by hand: the loop is a few lines over tokio's and quinn's accept, and a crate
//! made for it (e.g. `tokio-listener`) does neither permits before accept nor per-source caps.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::limit::PerSource;

/// First backoff after an accept error.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A listener the loop accepts from.
pub trait Listener: Send + 'static {
    /// An accepted connection (or, for QUIC, one not yet handshaken).
    type Conn: Send + 'static;
    /// The next connection and its peer; `Ok(None)` when the listener is closed for good.
    fn accept(
        &mut self,
    ) -> impl Future<Output = std::io::Result<Option<(Self::Conn, SocketAddr)>>> + Send;
    /// Refuses a connection at once (its source has its share).
    fn refuse(conn: Self::Conn);
}

impl Listener for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;

    async fn accept(&mut self) -> std::io::Result<Option<(Self::Conn, SocketAddr)>> {
        tokio::net::TcpListener::accept(self).await.map(Some)
    }

    fn refuse(conn: Self::Conn) {
        // Reset, not closed: nothing of this connection lingers here.
        let _ = conn.set_zero_linger();
    }
}

impl Listener for quinn::Endpoint {
    type Conn = quinn::Incoming;

    async fn accept(&mut self) -> std::io::Result<Option<(Self::Conn, SocketAddr)>> {
        Ok(quinn::Endpoint::accept(self).await.map(|i| {
            let peer = i.remote_address();
            (i, peer)
        }))
    }

    fn refuse(conn: Self::Conn) {
        conn.refuse();
    }
}

/// The bounds of one listener.
#[derive(Clone, Copy, Debug)]
pub struct AcceptOptions {
    /// The listener's name in metrics and spans: `dc09_tcp`, `scaip_tcp`, `scaip_tls`,
    /// `http`, `patrol_quic`.
    pub name: &'static str,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one source (an IPv4 address or an IPv6 /64).
    pub max_per_source: usize,
}

/// Where the connections of a part of the server live: `shutdown` stops the accept loops
/// and asks each connection to finish; the server waits for `tracker` until its grace
/// deadline ([`Scope::close`]), then cancels `deadline`, which drops what is still open.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Stops accepting; connections finish what they are doing and close.
    pub shutdown: CancellationToken,
    /// The connection tasks.
    pub tracker: TaskTracker,
    /// Cancelled at the grace deadline: the tasks still running are dropped.
    pub deadline: CancellationToken,
}

impl Scope {
    /// A scope that stops at `shutdown`.
    pub fn new(shutdown: CancellationToken) -> Scope {
        Scope {
            shutdown,
            tracker: TaskTracker::new(),
            deadline: CancellationToken::new(),
        }
    }

    /// Runs `task` on the tracker; it is dropped at the grace deadline if still running.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let deadline = self.deadline.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = task => {}
                () = deadline.cancelled() => {}
            }
        });
    }

    /// Waits for every task until `until`; then drops the tasks left (logged, naming
    /// `what`) and waits for them to be gone.
    pub async fn close(&self, until: tokio::time::Instant, what: &str) {
        self.tracker.close();
        if tokio::time::timeout_at(until, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.tracker.len(),
                "shutdown deadline reached; closing the remaining {what}"
            );
            self.deadline.cancel();
            self.tracker.wait().await;
        }
    }
}

/// Accepts connections on `listener` until `scope.shutdown` (or until the listener closes),
/// within `opts`; `handle` makes each connection's task, which runs on `scope`. Accept
/// errors are counted in `errors`.
pub async fn serve<L, F, Fut>(
    mut listener: L,
    opts: AcceptOptions,
    errors: metrics::Counter,
    scope: Scope,
    mut handle: F,
) where
    L: Listener,
    F: FnMut(L::Conn, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let sources = PerSource::new(opts.name, opts.max_per_source);
    let shutdown = &scope.shutdown;
    let mut backoff = BACKOFF_MIN;
    loop {
        // The permit is taken before accept: at the limit, new clients wait in the backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = shutdown.cancelled() => return,
        };
        let (conn, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(Some(x)) => x,
                Ok(None) => return,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    errors.increment(1);
                    tracing::warn!(listener = opts.name, error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        backoff = BACKOFF_MIN;
        let Some(source) = sources.admit(peer.ip()) else {
            L::refuse(conn);
            continue;
        };
        let span = tracing::info_span!("conn", listener = opts.name, %peer);
        let task = handle(conn, peer);
        scope.spawn(
            async move {
                task.await;
                drop(source);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A listener that fails as told, then waits forever.
    struct Failing {
        script: VecDeque<std::io::Result<Option<(u32, SocketAddr)>>>,
    }

    impl Listener for Failing {
        type Conn = u32;

        async fn accept(&mut self) -> std::io::Result<Option<(u32, SocketAddr)>> {
            match self.script.pop_front() {
                Some(r) => r,
                None => std::future::pending().await,
            }
        }

        fn refuse(_conn: u32) {}
    }

    fn peer(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 4000))
    }

    fn errors() -> metrics::Counter {
        crate::telemetry::accept_errors("test")
    }

    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off_and_shutdown_cancels_the_backoff() {
        let mut script: VecDeque<_> = (0..8)
            .map(|_| Err(std::io::Error::other("out of files")))
            .collect();
        script.push_back(Ok(Some((1, peer(1)))));
        let scope = Scope::new(CancellationToken::new());
        let served = Arc::new(AtomicUsize::new(0));
        let s = served.clone();
        let opts = AcceptOptions {
            name: "test",
            max_connections: 4,
            max_per_source: 4,
        };
        let started = tokio::time::Instant::now();
        let task = tokio::spawn(serve(
            Failing { script },
            opts,
            errors(),
            scope.clone(),
            move |_c, _p| {
                s.fetch_add(1, Ordering::SeqCst);
                async {}
            },
        ));
        // 10+20+40+80+160+320+640+1000 ms of backoff before the connection.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert_eq!(served.load(Ordering::SeqCst), 0, "still backing off");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(served.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() >= Duration::from_millis(2270));

        // A loop in its backoff stops at shutdown, not at the end of the sleep.
        let mut script: VecDeque<_> = VecDeque::new();
        script.push_back(Err(std::io::Error::other("out of files")));
        let scope2 = Scope::new(CancellationToken::new());
        let t2 = tokio::spawn(serve(
            Failing { script },
            opts,
            errors(),
            scope2.clone(),
            |_c, _p| async {},
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let before = tokio::time::Instant::now();
        scope2.shutdown.cancel();
        t2.await.unwrap();
        assert!(before.elapsed() < Duration::from_millis(5));
        scope.shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_over_its_share_is_refused_and_the_scope_drops_what_outlives_the_deadline() {
        static REFUSED: AtomicUsize = AtomicUsize::new(0);
        struct Three(VecDeque<(u32, SocketAddr)>);
        impl Listener for Three {
            type Conn = u32;
            async fn accept(&mut self) -> std::io::Result<Option<(u32, SocketAddr)>> {
                Ok(self.0.pop_front())
            }
            fn refuse(_conn: u32) {
                REFUSED.fetch_add(1, Ordering::SeqCst);
            }
        }
        let scope = Scope::new(CancellationToken::new());
        let conns = Three(VecDeque::from([(1, peer(1)), (2, peer(1)), (3, peer(2))]));
        let opts = AcceptOptions {
            name: "test",
            max_connections: 10,
            max_per_source: 1,
        };
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let d = dropped.clone();
        // The listener closes after three: the loop returns.
        serve(conns, opts, errors(), scope.clone(), move |_c, _p| {
            let guard = Count(d.clone());
            async move {
                // A connection that never finishes by itself.
                std::future::pending::<()>().await;
                drop(guard);
            }
        })
        .await;
        assert_eq!(REFUSED.load(Ordering::SeqCst), 1, "the 2nd from one source");
        assert_eq!(scope.tracker.len(), 2);
        scope.shutdown.cancel();
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        scope.close(until, "test connections").await;
        assert!(tokio::time::Instant::now() >= until);
        assert_eq!(dropped.load(Ordering::SeqCst), 2, "dropped at the deadline");
        assert!(scope.tracker.is_empty());
    }
}
