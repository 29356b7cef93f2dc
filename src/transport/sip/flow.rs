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
