//! The legs' UDP ports: one socket per leg, from the configured range, which is the cap.
//!
//! A port is leased while its leg lives and given back when the lease is dropped (the leg's
//! task ends, or its answer was refused). Ports another program holds are skipped; the next
//! search starts after the last port handed out, so a port just given back is not reused at
//! once (a late datagram of the old leg meets no new leg).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use super::WebRtcError;

/// The range and which ports of it are leased.
#[derive(Debug)]
pub(super) struct PortPool {
    first: u16,
    last: u16,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    leased: BTreeSet<u16>,
    /// Where the next search starts.
    next: u16,
}

/// A port of the pool, given back when dropped.
#[derive(Debug)]
pub(super) struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        state.leased.remove(&self.port);
    }
}

impl PortPool {
    /// A pool of `first..=last` (checked by the options: `1 <= first <= last`).
    pub(super) fn new(first: u16, last: u16) -> Arc<PortPool> {
        Arc::new(PortPool {
            first,
            last,
            state: Mutex::new(State {
                leased: BTreeSet::new(),
                next: first,
            }),
        })
    }

    /// How many ports the range holds.
    pub(super) fn size(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// How many ports are leased now.
    pub(super) fn leased(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.leased.len()
    }

    /// Binds a UDP socket on `ip` at the first free port of the range after the last one
    /// handed out: [`WebRtcError::PortsExhausted`] when every port is leased or held by
    /// another program, the bind error when the address cannot be bound at all.
    pub(super) fn bind(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<(UdpSocket, PortLease), WebRtcError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.leased.len() >= self.size() {
            return Err(self.exhausted());
        }
        let mut port = state.next;
        for _ in 0..self.size() {
            let candidate = port;
            port = if port >= self.last {
                self.first
            } else {
                port + 1
            };
            if state.leased.contains(&candidate) {
                continue;
            }
            match UdpSocket::bind(SocketAddr::new(ip, candidate)) {
                Ok(socket) => {
                    state.leased.insert(candidate);
                    state.next = port;
                    let lease = PortLease {
                        pool: Arc::clone(self),
                        port: candidate,
                    };
                    return Ok((socket, lease));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(WebRtcError::Bind(e)),
            }
        }
        Err(self.exhausted())
    }

    fn exhausted(&self) -> WebRtcError {
        WebRtcError::PortsExhausted {
            first: self.first,
            last: self.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A free range of `n` ports on 127.0.0.1 (probed; other tests may race for it, so the
    /// tests below tolerate a port taken by someone else only where they say so).
    fn free_range(n: u16) -> (u16, u16) {
        for _ in 0..50 {
            let probe = UdpSocket::bind((LOCALHOST, 0)).unwrap();
            let first = probe.local_addr().unwrap().port();
            drop(probe);
            let Some(last) = first.checked_add(n - 1) else {
                continue;
            };
            let held: Vec<_> = (first..=last)
                .map_while(|p| UdpSocket::bind((LOCALHOST, p)).ok())
                .collect();
            if held.len() == usize::from(n) {
                return (first, last);
            }
        }
        panic!("no free range of {n} ports");
    }

    #[test]
    fn the_range_is_the_cap_and_a_lease_gives_its_port_back() {
        let (first, last) = free_range(3);
        let pool = PortPool::new(first, last);
        let a = pool.bind(LOCALHOST).unwrap();
        let b = pool.bind(LOCALHOST).unwrap();
        let c = pool.bind(LOCALHOST).unwrap();
        let ports: BTreeSet<u16> = [&a, &b, &c]
            .iter()
            .map(|(s, _)| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports, (first..=last).collect());
        assert_eq!(pool.leased(), 3);
        match pool.bind(LOCALHOST) {
            Err(WebRtcError::PortsExhausted { first: f, last: l }) => {
                assert_eq!((f, l), (first, last));
            }
            other => panic!("expected PortsExhausted, got {other:?}"),
        }
        let freed = b.0.local_addr().unwrap().port();
        drop(b);
        assert_eq!(pool.leased(), 2);
        let (again, _lease) = pool.bind(LOCALHOST).unwrap();
        assert_eq!(again.local_addr().unwrap().port(), freed);
    }

    #[test]
    fn a_port_another_program_holds_is_skipped() {
        let (first, last) = free_range(2);
        let _other = UdpSocket::bind((LOCALHOST, first)).unwrap();
        let pool = PortPool::new(first, last);
        let (socket, _lease) = pool.bind(LOCALHOST).unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), last);
        assert!(matches!(
            pool.bind(LOCALHOST),
            Err(WebRtcError::PortsExhausted { .. })
        ));
    }

    #[test]
    fn the_next_search_starts_after_the_last_port_handed_out() {
        let (first, last) = free_range(3);
        let pool = PortPool::new(first, last);
        let (a, lease_a) = pool.bind(LOCALHOST).unwrap();
        let port_a = a.local_addr().unwrap().port();
        drop((a, lease_a));
        let (b, _lease_b) = pool.bind(LOCALHOST).unwrap();
        assert_ne!(b.local_addr().unwrap().port(), port_a);
    }

    #[test]
    fn an_address_not_on_this_host_is_a_bind_error() {
        let pool = PortPool::new(40_000, 40_001);
        // TEST-NET-1 (RFC 5737) is never a local address.
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert!(matches!(pool.bind(ip), Err(WebRtcError::Bind(_))));
        assert_eq!(pool.leased(), 0);
    }
}
