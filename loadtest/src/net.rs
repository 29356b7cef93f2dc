//! Socket helpers shared by the scenarios: connect with bounded retry, a per-connection
//! pacer (the rate cap), and draining LF..CR answers from a receive buffer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use vakt_proto::dc09::{self, Scan};

/// Timeout of one connect attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect attempts before a device gives up.
pub const CONNECT_ATTEMPTS: u32 = 8;

/// Connects to `target` with up to [`CONNECT_ATTEMPTS`] attempts (backoff 50 ms doubling to
/// 1 s), never past `deadline`. Sets `TCP_NODELAY`. `None` when every attempt failed.
pub async fn connect(target: SocketAddr, deadline: Instant) -> Option<TcpStream> {
    let mut backoff = Duration::from_millis(50);
    for _ in 0..CONNECT_ATTEMPTS {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let limit = (now + CONNECT_TIMEOUT).min(deadline);
        if let Ok(Ok(stream)) = tokio::time::timeout_at(limit, TcpStream::connect(target)).await {
            let _ = stream.set_nodelay(true);
            return Some(stream);
        }
        let wake = (Instant::now() + backoff).min(deadline);
        tokio::time::sleep_until(wake).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    None
}

/// Like [`connect`], from the local address `from` (e.g. `127.0.0.2`: Linux loopback takes
/// any address of 127/8, so one machine can play several hosts); `None` lets the system
/// choose.
pub async fn connect_from(
    target: SocketAddr,
    from: Option<std::net::IpAddr>,
    deadline: Instant,
) -> Option<TcpStream> {
    let Some(ip) = from else {
        return connect(target, deadline).await;
    };
    let mut backoff = Duration::from_millis(50);
    for _ in 0..CONNECT_ATTEMPTS {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let limit = (now + CONNECT_TIMEOUT).min(deadline);
        let socket = if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        };
        if let Ok(socket) = socket {
            if socket.bind(SocketAddr::new(ip, 0)).is_ok() {
                if let Ok(Ok(stream)) = tokio::time::timeout_at(limit, socket.connect(target)).await
                {
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
            }
        }
        let wake = (Instant::now() + backoff).min(deadline);
        tokio::time::sleep_until(wake).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    None
}

/// Spaces one connection's sends `interval` apart (no catch-up bursts after a stall).
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Instant,
}

impl Pacer {
    /// A pacer for `per_sec` frames/s whose first slot is at `first`; `None` when unlimited.
    #[must_use]
    pub fn new(per_sec: f64, first: Instant) -> Option<Pacer> {
        (per_sec > 0.0 && per_sec.is_finite()).then(|| Pacer {
            interval: Duration::from_secs_f64(1.0 / per_sec),
            next: first,
        })
    }

    /// Takes a slot if one is due at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        // At most one interval of backlog is kept, so a stall does not cause a burst.
        let floor = now.checked_sub(self.interval).unwrap_or(now);
        self.next = self.next.max(floor) + self.interval;
        true
    }

    /// When the next slot is due.
    #[must_use]
    pub fn next_slot(&self) -> Instant {
        self.next
    }
}

/// Calls `each` with every complete LF..CR frame at the front of `buf`, then removes what
/// was consumed (frames, garbage, NUL padding). Returns how many frames were seen.
pub fn drain_frames(buf: &mut Vec<u8>, mut each: impl FnMut(&[u8])) -> usize {
    let mut pos = 0;
    let mut frames = 0;
    while let Some(rest) = buf.get(pos..) {
        match dc09::scan(rest) {
            Scan::Incomplete => break,
            Scan::Skip(n) | Scan::Oversized(n) => pos += n,
            Scan::Frame { start, end } => {
                if let Some(raw) = rest.get(start..end) {
                    each(raw);
                }
                frames += 1;
                pos += end;
            }
        }
    }
    buf.drain(..pos.min(buf.len()));
    frames
}

/// The first LF..CR frame of a datagram (leading garbage skipped).
#[must_use]
pub fn first_frame(dgram: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    loop {
        let rest = dgram.get(pos..)?;
        match dc09::scan(rest) {
            Scan::Frame { start, end } => return rest.get(start..end),
            Scan::Skip(n) | Scan::Oversized(n) => pos += n,
            Scan::Incomplete => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_coalesced_and_partial_frames() {
        let mut buf =
            b"\n1BC10012\"ACK\"0001L0#1234[]\r\0\0\n0BD10012\"ACK\"0004L0#1234[]\r\n0BD1".to_vec();
        let mut seen = Vec::new();
        assert_eq!(drain_frames(&mut buf, |f| seen.push(f.to_vec())), 2);
        assert_eq!(seen.len(), 2);
        assert_eq!(buf, b"\n0BD1");
    }

    #[tokio::test]
    async fn pacer_spaces_slots() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000.0, t0).unwrap();
        assert!(p.take(t0));
        assert!(!p.take(t0));
        assert!(p.take(t0 + Duration::from_millis(1)));
        assert!(Pacer::new(0.0, t0).is_none());
    }
}
