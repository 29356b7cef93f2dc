//! The players around a relay, on 127.0.0.1, for `tests/voice_media.rs` and
//! `benches/voice_relay.rs`: a unit or an operator at the far end of a socket ([`Peer`]:
//! sends a tone as 20 ms RTP frames, captures what it receives), and an operator's side over
//! plain RTP on a UDP socket ([`UdpOperator`]: what a browser leg is to the relay, without
//! WebRTC).

#![allow(dead_code)] // each user takes what it needs

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vakt::voice::media::{OperatorFrame, OperatorLeg, OperatorSendError};
use vakt::voice::tone::{self, ToneGen};
use vakt_proto::g711::Law;
use vakt_proto::rtp::{self, Header};

/// One packet a peer received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its header.
    pub header: Header,
    /// Its payload.
    pub payload: Vec<u8>,
    /// When it was read.
    pub at: Instant,
    /// From where.
    pub from: SocketAddr,
}

/// A socket on 127.0.0.1 that plays a unit or an operator: sends, captures.
pub struct Peer {
    pub socket: Arc<UdpSocket>,
    pub captured: Arc<Mutex<Vec<Received>>>,
    /// Datagrams that did not parse as RTP.
    pub garbage: Arc<AtomicU64>,
    stop: CancellationToken,
    receiver: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.receiver.abort();
    }
}

impl Peer {
    /// A peer on a fresh port, capturing what it receives (at most `keep` packets).
    pub async fn new(keep: usize) -> Peer {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let captured = Arc::new(Mutex::new(Vec::new()));
        let garbage = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let receiver = tokio::spawn({
            let (socket, captured, garbage, stop) = (
                socket.clone(),
                captured.clone(),
                garbage.clone(),
                stop.clone(),
            );
            async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    let (n, from) = tokio::select! {
                        () = stop.cancelled() => return,
                        r = socket.recv_from(&mut buf) => match r {
                            Ok(r) => r,
                            Err(_) => continue,
                        },
                    };
                    let at = Instant::now();
                    match rtp::parse(&buf[..n]) {
                        Ok(p) => {
                            let mut c = captured.lock().unwrap();
                            if c.len() < keep {
                                c.push(Received {
                                    header: p.header,
                                    payload: p.payload.to_vec(),
                                    at,
                                    from,
                                });
                            }
                        }
                        Err(_) => {
                            garbage.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        Peer {
            socket,
            captured,
            garbage,
            stop,
            receiver,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// What it has received so far.
    pub fn received(&self) -> Vec<Received> {
        self.captured.lock().unwrap().clone()
    }

    /// How many packets it has received.
    pub fn count(&self) -> usize {
        self.captured.lock().unwrap().len()
    }

    /// Forgets what it received.
    pub fn clear(&self) {
        self.captured.lock().unwrap().clear();
    }

    /// Sends `hz` to `to` as `frames` 20 ms frames of `law` with payload type `pt`, one every
    /// 20 ms from now (a task; it returns how many it sent). `stop` ends it early.
    pub fn play(&self, to: SocketAddr, stream: Stream, frames: u64) -> Player {
        let socket = self.socket.clone();
        let stop = CancellationToken::new();
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, sent) = (stop.clone(), sent.clone());
            async move {
                let mut tone = ToneGen::new(stream.hz, -10.0);
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut out = Vec::new();
                for k in 0..frames {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let payload = tone.frame(stream.law);
                    out.clear();
                    Header {
                        marker: k == 0,
                        payload_type: stream.pt,
                        sequence: stream.seq0.wrapping_add(k as u16),
                        timestamp: stream.ts0.wrapping_add((k * 160) as u32),
                        ssrc: stream.ssrc,
                    }
                    .write(&payload, &mut out)
                    .unwrap();
                    if socket.send_to(&out, to).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Player { stop, sent, task }
    }
}

/// What a peer sends.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub hz: f64,
    pub law: Law,
    pub pt: u8,
    pub ssrc: u32,
    pub seq0: u16,
    pub ts0: u32,
}

impl Stream {
    /// A tone in A-law, PT 8.
    pub fn pcma(hz: f64, ssrc: u32) -> Stream {
        Stream {
            hz,
            law: Law::Alaw,
            pt: 8,
            ssrc,
            seq0: 1_000,
            ts0: 50_000,
        }
    }

    /// A tone in μ-law, PT 0.
    pub fn pcmu(hz: f64, ssrc: u32) -> Stream {
        Stream {
            law: Law::Ulaw,
            pt: 0,
            ..Stream::pcma(hz, ssrc)
        }
    }
}

/// A running sender.
pub struct Player {
    stop: CancellationToken,
    pub sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Player {
    /// Stops it and says how many it sent.
    pub async fn stop(self) -> u64 {
        self.stop.cancel();
        let _ = self.task.await;
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until it has sent all it was asked to.
    pub async fn done(self) -> u64 {
        let _ = self.task.await;
        self.sent.load(Ordering::Relaxed)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// The audio packets (payload type `pt`) of `packets` received within `window` after
/// `start`, decoded in sequence order.
pub fn pcm(
    packets: &[Received],
    pt: u8,
    law: Law,
    start: Instant,
    window: std::ops::Range<Duration>,
) -> Vec<i16> {
    let mut chosen: Vec<&Received> = packets
        .iter()
        .filter(|r| r.header.payload_type == pt)
        .filter(|r| window.contains(&r.at.saturating_duration_since(start)))
        .collect();
    chosen.sort_by_key(|r| r.at);
    let mut out = Vec::new();
    for r in chosen {
        law.decode_into(&r.payload, &mut out);
    }
    out
}

/// Which of 440 Hz, 1,000 Hz and the hold tone's 425 Hz dominates `samples`.
pub fn dominant(samples: &[i16]) -> Option<f64> {
    tone::analyse(samples, 8_000, &[425.0, 440.0, 1_000.0]).dominant()
}

/// An operator's side over plain RTP on a UDP socket on 127.0.0.1: frames from `peer` (the
/// operator playing), frames to it. Ended by vakt through [`OperatorLeg::end`], or by the
/// test through [`UdpOperator::ender`].
pub struct UdpOperator {
    socket: UdpSocket,
    peer: SocketAddr,
    law: Law,
    ssrc: u32,
    seq: u16,
    ts: u32,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// The last timestamp from the peer and the wraps counted.
    last_ts: Option<u32>,
    wraps: u64,
    stop: CancellationToken,
    ended: Arc<AtomicBool>,
}

impl UdpOperator {
    /// A side in `law` talking to `peer`.
    pub async fn new(law: Law, peer: SocketAddr) -> UdpOperator {
        UdpOperator {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            peer,
            law,
            ssrc: 0x0BE2_A70E,
            seq: 0,
            ts: 0,
            out: Vec::with_capacity(1500),
            buf: vec![0; 2048],
            last_ts: None,
            wraps: 0,
            stop: CancellationToken::new(),
            ended: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Cancelling it ends the side (its `recv` says `None`).
    pub fn ender(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Set once vakt has ended the side.
    pub fn ended(&self) -> Arc<AtomicBool> {
        self.ended.clone()
    }
}

impl OperatorLeg for UdpOperator {
    fn law(&self) -> Law {
        self.law
    }

    async fn recv(&mut self) -> Option<OperatorFrame> {
        loop {
            let (n, from) = tokio::select! {
                () = self.stop.cancelled() => return None,
                r = self.socket.recv_from(&mut self.buf) => r.ok()?,
            };
            if from != self.peer {
                continue;
            }
            let received = Instant::now();
            let Ok(p) = rtp::parse(&self.buf[..n]) else {
                continue;
            };
            let ts = p.header.timestamp;
            if self
                .last_ts
                .is_some_and(|last| ts < last && last - ts > 1 << 31)
            {
                self.wraps += 1;
            }
            self.last_ts = Some(ts);
            return Some(OperatorFrame {
                payload: Arc::from(p.payload),
                timestamp: (self.wraps << 32) | u64::from(ts),
                received,
            });
        }
    }

    fn send(&mut self, payload: &[u8]) -> Result<(), OperatorSendError> {
        if self.stop.is_cancelled() {
            return Err(OperatorSendError::Ended);
        }
        self.out.clear();
        Header {
            marker: false,
            payload_type: self.law.payload_type(),
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
        }
        .write(payload, &mut self.out)
        .map_err(|_| OperatorSendError::BadLength)?;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(payload.len() as u32);
        match self.socket.try_send_to(&self.out, self.peer) {
            Ok(_) => Ok(()),
            Err(_) => Err(OperatorSendError::Full),
        }
    }

    fn end(&mut self) {
        self.ended.store(true, Ordering::Release);
        self.stop.cancel();
    }
}
