//! How a SIP message came in, and how to send on that flow: to the UDP source address, or
//! on the same TCP/TLS connection (its writer task).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::model::Transport;

/// A message's flow.
#[derive(Clone, Debug)]
pub(super) enum Flow {
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    Stream {
        tx: mpsc::Sender<Vec<u8>>,
        peer: SocketAddr,
        tls: bool,
    },
}

impl Flow {
    pub(super) fn peer(&self) -> SocketAddr {
        match self {
            Flow::Udp { peer, .. } | Flow::Stream { peer, .. } => *peer,
        }
    }

    pub(super) fn transport(&self) -> Transport {
        match self {
            Flow::Udp { .. } => Transport::Udp,
            Flow::Stream { tls: false, .. } => Transport::Tcp,
            Flow::Stream { tls: true, .. } => Transport::Tls,
        }
    }

    /// The transport in a Via header.
    pub(super) fn via_transport(&self) -> &'static str {
        match self {
            Flow::Udp { .. } => "UDP",
            Flow::Stream { tls: false, .. } => "TCP",
            Flow::Stream { tls: true, .. } => "TLS",
        }
    }

    pub(super) fn is_udp(&self) -> bool {
        matches!(self, Flow::Udp { .. })
    }

    /// Someone besides the connection holds this stream's sender (a call, an answer being
    /// made): the connection is in use even when nothing arrives on it.
    pub(super) fn in_use(&self) -> bool {
        match self {
            Flow::Udp { .. } => false,
            Flow::Stream { tx, .. } => tx.strong_count() > 1,
        }
    }

    /// A reference that does not keep a connection open.
    pub(super) fn downgrade(&self) -> FlowRef {
        match self {
            Flow::Udp { socket, peer } => FlowRef::Udp {
                socket: socket.clone(),
                peer: *peer,
            },
            Flow::Stream { tx, peer, tls } => FlowRef::Stream {
                tx: tx.downgrade(),
                peer: *peer,
                tls: *tls,
            },
        }
    }

    pub(super) async fn send(&self, bytes: Vec<u8>) -> bool {
        match self {
            Flow::Udp { socket, peer } => match socket.send_to(&bytes, peer).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "sip udp send failed");
                    false
                }
            },
            Flow::Stream { tx, .. } => tx.send(bytes).await.is_ok(),
        }
    }
}

/// A flow remembered without keeping its connection open.
#[derive(Clone, Debug)]
pub(super) enum FlowRef {
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    Stream {
        tx: mpsc::WeakSender<Vec<u8>>,
        peer: SocketAddr,
        tls: bool,
    },
}

impl FlowRef {
    /// The flow, unless its connection has closed.
    pub(super) fn upgrade(&self) -> Option<Flow> {
        match self {
            FlowRef::Udp { socket, peer } => Some(Flow::Udp {
                socket: socket.clone(),
                peer: *peer,
            }),
            FlowRef::Stream { tx, peer, tls } => Some(Flow::Stream {
                tx: tx.upgrade()?,
                peer: *peer,
                tls: *tls,
            }),
        }
    }
}
