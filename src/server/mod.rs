//! Wiring: opens the store, builds the parts, spawns the listeners, and shuts down in order
//! with a deadline: stop accepting, finish the frames in flight, flush the journal.
//!
//! - this file: the public lifecycle: [`Listeners::bind`], [`start`] / [`start_with`] ->
//!   [`Running`] (bound addresses, a `CancellationToken`, a join handle), [`Running::stop`].
//! - `parts`: each part of the server built in order with its own options (built by
//!   [`crate::config`]), and the ordered list of their stops.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::StoreError;

pub mod node;
mod parts;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound (the reason is in the message, not chained, so it is
    /// printed once).
    #[error("cannot listen on {addr} for {what}: {}", bind_reason(.error))]
    Bind {
        /// Which listener: `DC-09 TCP`, `DC-09 UDP`, `HTTP`, `the patrol link (QUIC)`,
        /// `SCAIP UDP`, `SCAIP TCP`, `SCAIP TLS`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal could not start.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A blocking task of the server panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The Call service could not start.
    #[error(transparent)]
    Calls(#[from] crate::calls::CallsError),
    /// The console could not start.
    #[error("console: {0}")]
    Console(#[from] crate::console::auth::AuthError),
    /// The patrol link could not start (certificate, key, QUIC).
    #[error("patrol link: {0}")]
    Quic(#[from] crate::transport::quic::QuicError),
    /// The patrol link's socket could not be used.
    #[error("patrol link: {0}")]
    PatrolSocket(std::io::Error),
    /// The escalation outbox could not start.
    #[error("escalation outbox: {0}")]
    Outbox(#[from] crate::outbox::OutboxError),
    /// The voice switchboard could not end the conversations the last stop cut short.
    #[error("voice: {0}")]
    Voice(#[from] crate::voice::switchboard::SwitchboardError),
    /// The units' RTP could not be set up (its options).
    #[error("voice rtp: {0}")]
    Media(#[from] crate::voice::media::MediaError),
    /// The browsers' legs could not be set up (their options).
    #[error("voice webrtc: {0}")]
    WebRtc(#[from] crate::voice::webrtc::WebRtcError),
    /// The recordings a crash left could not be read.
    #[error("recordings: {0}")]
    Recordings(#[from] crate::voice::record::RecordError),
    /// Work orders could not be loaded.
    #[error("work orders: {0}")]
    WorkOrders(#[from] crate::work_orders::WorkOrderError),
    /// The care service (orders, lives) could not start.
    #[error("care: {0}")]
    Care(#[from] crate::care::CareError),
    /// Incidents could not be loaded.
    #[error("incidents: {0}")]
    Incidents(#[from] crate::supervision::incidents::IncidentError),
    /// `[store] backend = "postgres"` without a `url`.
    #[error("store: backend = \"postgres\" needs a url")]
    NoDatabase,
    /// The leader lease's times are wrong.
    #[error("store: {0}")]
    LeaseOptions(String),
    /// This node held the leader lease under `epoch` and lost it: it stopped serving.
    #[error(
        "the leader lease (epoch {epoch}) was lost: this node stopped serving so that another may lead"
    )]
    LeaseLost {
        /// The epoch held.
        epoch: i64,
    },
    /// The open-file limit is too low for the listeners.
    #[error(transparent)]
    OpenFiles(#[from] crate::config::TooFewFiles),
}

fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "the address is in use".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".into()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this machine has that address".into()
        }
        _ => e.to_string(),
    }
}

impl ServerError {
    /// For a listener whose address is taken: which listener (as in [`ServerError::Bind`]).
    pub fn address_in_use(&self) -> Option<&'static str> {
        match self {
            ServerError::Bind { what, error, .. }
                if error.kind() == std::io::ErrorKind::AddrInUse =>
            {
                Some(what)
            }
            _ => None,
        }
    }
}

/// The bound sockets (bind first, so tests can use port 0 and read the addresses).
#[derive(Debug)]
pub struct Listeners {
    /// DC-09 TCP.
    pub dc09_tcp: Option<TcpListener>,
    /// DC-09 UDP.
    pub dc09_udp: Option<UdpSocket>,
    /// HTTP.
    pub http: Option<TcpListener>,
    /// The patrols' QUIC link (a UDP socket; the endpoint is made once the certificate is
    /// known).
    pub patrol_quic: Option<std::net::UdpSocket>,
    /// SCAIP: SIP over UDP.
    pub scaip_udp: Option<UdpSocket>,
    /// SCAIP: SIP over TCP.
    pub scaip_tcp: Option<TcpListener>,
    /// SCAIP: SIP over TLS.
    pub scaip_tls: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener the configuration names.
    pub async fn bind(cfg: &Config) -> Result<Listeners, ServerError> {
        let bind_err = |what, addr| move |error| ServerError::Bind { what, addr, error };
        let dc09_tcp = match cfg.dc09.listen_tcp {
            Some(a) => {
                Some(bind_tcp(a, cfg.dc09.listen_backlog).map_err(bind_err("DC-09 TCP", a))?)
            }
            None => None,
        };
        let dc09_udp = match cfg.dc09.listen_udp {
            Some(a) => Some(UdpSocket::bind(a).await.map_err(bind_err("DC-09 UDP", a))?),
            None => None,
        };
        let http = match cfg.http.listen {
            // The same backlog as the devices': at the connection cap, new clients wait
            // there (a permit is taken before accept) instead of having their SYNs dropped.
            Some(a) => Some(bind_tcp(a, cfg.dc09.listen_backlog).map_err(bind_err("HTTP", a))?),
            None => None,
        };
        let patrol_quic = match cfg.patrol.listen_quic {
            Some(a) => {
                Some(std::net::UdpSocket::bind(a).map_err(bind_err("the patrol link (QUIC)", a))?)
            }
            None => None,
        };
        let sc = &cfg.scaip;
        let backlog = cfg.dc09.listen_backlog;
        let scaip_udp = match sc.listen_udp {
            Some(a) => Some(UdpSocket::bind(a).await.map_err(bind_err("SCAIP UDP", a))?),
            None => None,
        };
        let scaip_tcp = match sc.listen_tcp {
            Some(a) => Some(bind_tcp(a, backlog).map_err(bind_err("SCAIP TCP", a))?),
            None => None,
        };
        let scaip_tls = match sc.listen_tls {
            Some(a) => Some(bind_tcp(a, backlog).map_err(bind_err("SCAIP TLS", a))?),
            None => None,
        };
        Ok(Listeners {
            dc09_tcp,
            dc09_udp,
            http,
            patrol_quic,
            scaip_udp,
            scaip_tcp,
            scaip_tls,
        })
    }
}

/// Binds a TCP listener with an explicit accept backlog (tokio's `bind` uses 128).
fn bind_tcp(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// DC-09 TCP address, if listening.
    pub dc09_tcp: Option<SocketAddr>,
    /// DC-09 UDP address, if listening.
    pub dc09_udp: Option<SocketAddr>,
    /// HTTP address, if listening.
    pub http: Option<SocketAddr>,
    /// The patrols' QUIC address, if listening.
    pub patrol_quic: Option<SocketAddr>,
    /// SHA-256 fingerprint (hex) of the certificate the patrol link serves.
    pub patrol_fingerprint: Option<String>,
    /// SCAIP over UDP, if listening.
    pub scaip_udp: Option<SocketAddr>,
    /// SCAIP over TCP, if listening.
    pub scaip_tcp: Option<SocketAddr>,
    /// SCAIP over TLS, if listening.
    pub scaip_tls: Option<SocketAddr>,
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    /// Finishes when the server has shut down.
    pub done: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Shuts down and waits for it.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        match self.done.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "server task failed");
                Ok(())
            }
        }
    }
}

/// Opens the store, binds the listeners and starts serving on the current runtime.
pub async fn start(cfg: Config) -> Result<Running, ServerError> {
    let listeners = Listeners::bind(&cfg).await?;
    start_with(cfg, listeners).await
}

/// Starts serving on listeners that are already bound.
pub async fn start_with(cfg: Config, listeners: Listeners) -> Result<Running, ServerError> {
    start_inner(cfg, listeners, None).await
}

/// Starts serving as the leader of a cluster under the lease's epoch (in `leading`): the
/// store, on PostgreSQL, fences every write by it; `/ready` says what `leading` says
/// ([`node`]).
pub async fn start_leading(
    cfg: Config,
    listeners: Listeners,
    leading: tokio::sync::watch::Receiver<crate::console::ready::Leading>,
) -> Result<Running, ServerError> {
    start_inner(cfg, listeners, Some(leading)).await
}

async fn start_inner(
    mut cfg: Config,
    listeners: Listeners,
    leading: Option<tokio::sync::watch::Receiver<crate::console::ready::Leading>>,
) -> Result<Running, ServerError> {
    // Every connection is a file: the caps must fit the process's open-file limit.
    if let Some(limit) = crate::config::open_files_limit() {
        for line in crate::config::fit_open_files(&mut cfg, limit)? {
            tracing::warn!(
                open_files = limit,
                "{line}: the connection caps did not fit the open-file limit (raise it with `ulimit -n` or LimitNOFILE= to keep them)"
            );
        }
    }
    let shutdown = CancellationToken::new();
    let (parts, addrs) = parts::start(&cfg, listeners, shutdown.clone(), leading).await?;
    let grace = cfg.shutdown_grace();
    let token = shutdown.clone();
    let done = tokio::spawn(async move {
        token.cancelled().await;
        parts.stop(grace).await
    });
    Ok(Running {
        dc09_tcp: addrs.dc09_tcp,
        dc09_udp: addrs.dc09_udp,
        http: addrs.http,
        patrol_quic: addrs.patrol_quic,
        patrol_fingerprint: addrs.patrol_fingerprint,
        scaip_udp: addrs.scaip_udp,
        scaip_tcp: addrs.scaip_tcp,
        scaip_tls: addrs.scaip_tls,
        shutdown,
        done,
    })
}
