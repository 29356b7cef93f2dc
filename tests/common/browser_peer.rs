//! A browser for the voice tests: a str0m peer (full ICE, the offerer, on 127.0.0.1) that
//! makes a WebRTC offer like the console's page, takes vakt's answer, connects over real UDP
//! (ICE, DTLS-SRTP) and sends and receives G.711 frames. Included by the tests that need it
//! (`#[path = "common/browser_peer.rs"] mod browser_peer;`), so the others do not build it.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use vakt::voice::webrtc::crypto_provider;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The most any wait in these tests takes before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// What the browser is told to do.
pub enum Ctl {
    /// Close the peer connection (DTLS close_notify), then stop.
    Close,
    /// Stop at once and drop the socket: a browser that vanished.
    Vanish,
}

/// A browser: a str0m peer making the offer and, once answered, running on its own task.
pub struct Browser {
    rtc: Rtc,
    socket: UdpSocket,
    pending: SdpPendingOffer,
    mid: Mid,
}

/// A running browser: frames to send, frames received (with the instant each datagram was
/// read), control, and what it has seen.
pub struct Running {
    pub send: mpsc::UnboundedSender<Vec<u8>>,
    pub frames: mpsc::UnboundedReceiver<(Vec<u8>, Instant)>,
    pub ctl: mpsc::UnboundedSender<Ctl>,
    pub connected: watch::Receiver<bool>,
    /// The leg closed the connection (close_notify) or ICE lost it.
    pub closed: watch::Receiver<bool>,
    /// The negotiated payload type, once connected.
    pub pt: watch::Receiver<Option<u8>>,
}

impl Browser {
    /// A browser offering `codecs` ("opus", "pcmu", "pcma", "g722"), in that order.
    pub async fn offer(codecs: &[&str]) -> (Browser, String) {
        let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut config = RtcConfig::new()
            .set_crypto_provider(crypto_provider())
            .clear_codecs();
        for c in codecs {
            config = match *c {
                "opus" => config.enable_opus(true),
                "pcmu" => config.enable_pcmu(true),
                "pcma" => config.enable_pcma(true),
                "g722" => config.enable_g722(true),
                other => panic!("no codec {other}"),
            };
        }
        let mut rtc = config.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let sdp = offer.to_sdp_string();
        (
            Browser {
                rtc,
                socket,
                pending,
                mid,
            },
            sdp,
        )
    }

    /// Takes the leg's answer and starts the browser's task.
    pub fn accept(mut self, answer: &str) -> Running {
        let answer = SdpAnswer::from_sdp_string(answer).unwrap();
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, answer)
            .unwrap();
        let (send, send_rx) = mpsc::unbounded_channel();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(false);
        let (closed_tx, closed) = watch::channel(false);
        let (pt_tx, pt) = watch::channel(None);
        tokio::spawn(drive(
            self.rtc,
            self.socket,
            self.mid,
            send_rx,
            frames_tx,
            ctl_rx,
            connected_tx,
            closed_tx,
            pt_tx,
        ));
        Running {
            send,
            frames,
            ctl,
            connected,
            closed,
            pt,
        }
    }
}

/// The browser's loop: the same contract as the leg's (one input, then drain to a timeout).
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut rtc: Rtc,
    socket: UdpSocket,
    mid: Mid,
    mut send: mpsc::UnboundedReceiver<Vec<u8>>,
    frames: mpsc::UnboundedSender<(Vec<u8>, Instant)>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    connected: watch::Sender<bool>,
    closed: watch::Sender<bool>,
    pt: watch::Sender<Option<u8>>,
) {
    let local = socket.local_addr().unwrap();
    let mut buf = vec![0u8; 2048];
    let mut time: u64 = 1000;
    let mut closing = false;
    loop {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        let p = rtc
                            .writer(mid)
                            .and_then(|w| w.payload_params().next().map(|p| *p.pt()));
                        pt.send_replace(p);
                        connected.send_replace(true);
                    }
                    Event::MediaData(d) => {
                        let _ = frames.send((d.data.to_vec(), d.network_time));
                    }
                    Event::Closed
                    | Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        closed.send_replace(true);
                    }
                    _ => {}
                },
                Err(_) => {
                    closed.send_replace(true);
                    return;
                }
            }
        };
        if closing || !rtc.is_alive() {
            return;
        }
        if timeout <= Instant::now() {
            let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            tokio::task::yield_now().await;
            continue;
        }
        let wake = timeout.min(Instant::now() + Duration::from_millis(100));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                let now = Instant::now();
                if let Ok(receive) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    let _ = rtc.handle_input(Input::Receive(now, receive));
                }
            }
            Some(payload) = send.recv() => {
                let Some(p) = *pt.borrow() else { continue };
                let Some(writer) = rtc.writer(mid) else { continue };
                let len = payload.len() as u64;
                let at = MediaTime::new(time, Frequency::EIGHT_KHZ);
                writer.write(p.into(), Instant::now(), at, payload).unwrap();
                time += len;
            }
            c = ctl.recv() => match c {
                Some(Ctl::Close) => {
                    rtc.close().unwrap();
                    closing = true;
                }
                Some(Ctl::Vanish) | None => return,
            },
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

/// Waits until `f` holds, polling, or fails the test after [`PATIENCE`].
pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
