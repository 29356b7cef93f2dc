//! The voice legs' UDP ports, from a configured range that is the cap on legs: the units'
//! RTP takes pairs (an even port for RTP, the odd one above for RTCP: [`PortPool::pairs`]),
//! the browsers' WebRTC legs single ports ([`PortPool::singles`]).
//!
//! A slot (a pair or a port) is leased while its leg lives and given back when the
//! [`PortLease`] is dropped (the leg ended, or its call was refused after the port was
//! taken). Ports another program holds are skipped; the next search starts after the last
//! slot handed out, so one just given back is not reused at once: a peer still sending to
//! the old leg's port (its BYE lost, its NAT slow) meets no new leg there for as long as the
//! range takes to come round.
//!
//! Written here: binding is the whole job (a port-allocator crate would still leave the
//! binding and the skipping of ports held by others to do).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// Why no port was bound.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every slot of the range is leased or held by another program: vakt's cap.
    #[error("every port of {first}..={last} is in use")]
    Exhausted {
        /// The range's first port, as configured.
        first: u16,
        /// Its last port.
        last: u16,
    },
    /// The address cannot be bound at all (not on this host): vakt's configuration.
    #[error("binding a voice port: {0}")]
    Bind(#[source] std::io::Error),
}

/// The range's slots and which of them are leased.
#[derive(Debug)]
pub struct PortPool {
    /// The first slot's first port.
    first: u16,
    /// Ports per slot: 2 (RTP and RTCP) or 1.
    width: u16,
    /// How many slots the range holds.
    slots: u16,
    /// The range as configured, for the error.
    range: (u16, u16),
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Leased slots, by index.
    leased: BTreeSet<u16>,
    /// The index where the next search starts.
    next: u16,
}

/// A slot of the pool, given back when dropped.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PortPool>,
    index: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        state.leased.remove(&self.index);
    }
}

/// The RTP pairs of `min..=max`: the first even port at or above `min`, and how many even
/// ports from it have their odd neighbour still in the range. `None` when there is none.
pub fn pairs(min: u16, max: u16) -> Option<(u16, u16)> {
    if min == 0 {
        return None;
    }
    let first = min.checked_add(min % 2)?;
    let span = max.checked_sub(first)?;
    if span == 0 {
        return None;
    }
    // The pairs k = 0.. with first + 2k + 1 <= max.
    Some((first, (span - 1) / 2 + 1))
}

impl PortPool {
    /// The RTP pairs of `min..=max` ([`pairs`]); `None` when it holds none.
    pub fn pairs(min: u16, max: u16) -> Option<Arc<PortPool>> {
        let (first, slots) = pairs(min, max)?;
        Some(Self::with(first, 2, slots, (min, max)))
    }

    /// The single ports of `first..=last`; `None` unless `1 <= first <= last`.
    pub fn singles(first: u16, last: u16) -> Option<Arc<PortPool>> {
        if first == 0 || last < first {
            return None;
        }
        // At most 65,535 ports: 65,535 - 1 + 1 fits.
        Some(Self::with(first, 1, last - first + 1, (first, last)))
    }

    fn with(first: u16, width: u16, slots: u16, range: (u16, u16)) -> Arc<PortPool> {
        Arc::new(PortPool {
            first,
            width,
            slots,
            range,
            state: Mutex::new(State {
                leased: BTreeSet::new(),
                next: 0,
            }),
        })
    }

    /// How many slots (legs at once) the range holds.
    pub fn size(&self) -> usize {
        usize::from(self.slots)
    }

    /// How many slots are leased now.
    pub fn leased(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.leased.len()
    }

    /// Binds one socket on `ip` at the first free port after the last one handed out.
    pub fn bind_one(self: &Arc<Self>, ip: IpAddr) -> Result<(UdpSocket, PortLease), PortError> {
        let (mut sockets, lease) = self.bind(ip)?;
        match sockets.pop() {
            Some(s) => Ok((s, lease)),
            None => Err(self.exhausted()),
        }
    }

    /// Binds the RTP socket (even port) and the RTCP socket (the odd one above) on `ip`, at
    /// the first free pair after the last one handed out.
    pub fn bind_pair(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<(UdpSocket, UdpSocket, PortLease), PortError> {
        let (sockets, lease) = self.bind(ip)?;
        let mut it = sockets.into_iter();
        match (it.next(), it.next()) {
            (Some(rtp), Some(rtcp)) => Ok((rtp, rtcp, lease)),
            _ => Err(self.exhausted()),
        }
    }

    /// Binds every port of the first free slot: [`PortError::Exhausted`] when every slot is
    /// leased or held (in part) by another program, the bind error when the address cannot
    /// be bound at all.
    fn bind(self: &Arc<Self>, ip: IpAddr) -> Result<(Vec<UdpSocket>, PortLease), PortError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.leased.len() >= self.size() {
            return Err(self.exhausted());
        }
        let mut index = state.next;
        'slots: for _ in 0..self.slots {
            let candidate = index;
            index = if index + 1 >= self.slots {
                0
            } else {
                index + 1
            };
            if state.leased.contains(&candidate) {
                continue;
            }
            // candidate < slots, so every port stays within the range.
            let port = self.first + self.width * candidate;
            let mut sockets = Vec::with_capacity(usize::from(self.width));
            for p in port..port + self.width {
                match UdpSocket::bind(SocketAddr::new(ip, p)) {
                    Ok(s) => sockets.push(s),
                    // Held by another program: the slot is skipped (what was bound of it
                    // closes here).
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue 'slots,
                    Err(e) => return Err(PortError::Bind(e)),
                }
            }
            state.leased.insert(candidate);
            state.next = index;
            let lease = PortLease {
                pool: Arc::clone(self),
                index: candidate,
            };
            return Ok((sockets, lease));
        }
        Err(self.exhausted())
    }

    fn exhausted(&self) -> PortError {
        PortError::Exhausted {
            first: self.range.0,
            last: self.range.1,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A free range of `n` ports starting at an even port on 127.0.0.1 (probed; other tests
    /// may race for it).
    fn free_range(n: u16) -> (u16, u16) {
        for _ in 0..100 {
            let probe = UdpSocket::bind((LOCALHOST, 0)).unwrap();
            let port = probe.local_addr().unwrap().port();
            drop(probe);
            let first = port + port % 2;
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
    fn the_pairs_of_a_range_start_even_and_keep_their_odd_neighbour() {
        assert_eq!(pairs(40_000, 40_999), Some((40_000, 500)));
        assert_eq!(pairs(40_001, 40_999), Some((40_002, 499)));
        assert_eq!(pairs(40_000, 40_000), None);
        assert_eq!(pairs(40_000, 40_001), Some((40_000, 1)));
        assert_eq!(pairs(40_000, 40_002), Some((40_000, 1)));
        assert_eq!(pairs(40_001, 40_002), None);
        assert_eq!(pairs(0, 10), None);
        assert_eq!(pairs(65_535, 65_535), None);
        assert_eq!(pairs(65_534, 65_535), Some((65_534, 1)));
        assert_eq!(pairs(10, 5), None);
        // Every pair stays within the range.
        for min in 1..40u16 {
            for max in min..45u16 {
                if let Some((first, n)) = pairs(min, max) {
                    assert_eq!(first % 2, 0);
                    assert!(first >= min);
                    assert!(first + 2 * (n - 1) < max, "{min}..={max}");
                    // And no further pair would fit.
                    assert!(first + 2 * n + 1 > max, "{min}..={max}");
                }
            }
        }
        assert!(PortPool::singles(0, 10).is_none());
        assert!(PortPool::singles(10, 9).is_none());
        assert_eq!(PortPool::singles(65_535, 65_535).unwrap().size(), 1);
        assert_eq!(PortPool::singles(1, 65_535).unwrap().size(), 65_535);
    }

    #[test]
    fn the_range_is_the_cap_and_a_lease_gives_its_pair_back() {
        let (first, last) = free_range(6);
        let pool = PortPool::pairs(first, last).unwrap();
        assert_eq!(pool.size(), 3);
        let a = pool.bind_pair(LOCALHOST).unwrap();
        let b = pool.bind_pair(LOCALHOST).unwrap();
        let c = pool.bind_pair(LOCALHOST).unwrap();
        for (rtp, rtcp, _) in [&a, &b, &c] {
            let p = rtp.local_addr().unwrap().port();
            assert_eq!(p % 2, 0);
            assert_eq!(rtcp.local_addr().unwrap().port(), p + 1);
        }
        let ports: BTreeSet<u16> = [&a, &b, &c]
            .iter()
            .map(|(s, _, _)| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports, [first, first + 2, first + 4].into());
        assert_eq!(pool.leased(), 3);
        match pool.bind_pair(LOCALHOST) {
            Err(PortError::Exhausted { first: f, last: l }) => assert_eq!((f, l), (first, last)),
            other => panic!("expected Exhausted, got {other:?}"),
        }
        let freed = b.0.local_addr().unwrap().port();
        drop(b);
        assert_eq!(pool.leased(), 2);
        let (again, _, _lease) = pool.bind_pair(LOCALHOST).unwrap();
        assert_eq!(again.local_addr().unwrap().port(), freed);
    }

    #[test]
    fn the_range_is_the_cap_and_a_lease_gives_its_port_back() {
        let (first, last) = free_range(3);
        let pool = PortPool::singles(first, last).unwrap();
        let a = pool.bind_one(LOCALHOST).unwrap();
        let b = pool.bind_one(LOCALHOST).unwrap();
        let c = pool.bind_one(LOCALHOST).unwrap();
        let ports: BTreeSet<u16> = [&a, &b, &c]
            .iter()
            .map(|(s, _)| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports, (first..=last).collect());
        assert_eq!(pool.leased(), 3);
        match pool.bind_one(LOCALHOST) {
            Err(PortError::Exhausted { first: f, last: l }) => assert_eq!((f, l), (first, last)),
            other => panic!("expected Exhausted, got {other:?}"),
        }
        let freed = b.0.local_addr().unwrap().port();
        drop(b);
        assert_eq!(pool.leased(), 2);
        let (again, _lease) = pool.bind_one(LOCALHOST).unwrap();
        assert_eq!(again.local_addr().unwrap().port(), freed);
    }

    #[test]
    fn a_pair_another_program_holds_half_of_is_skipped() {
        let (first, last) = free_range(4);
        // Someone holds the first pair's RTCP port.
        let _other = UdpSocket::bind((LOCALHOST, first + 1)).unwrap();
        let pool = PortPool::pairs(first, last).unwrap();
        let (rtp, _, _lease) = pool.bind_pair(LOCALHOST).unwrap();
        assert_eq!(rtp.local_addr().unwrap().port(), first + 2);
        assert!(matches!(
            pool.bind_pair(LOCALHOST),
            Err(PortError::Exhausted { .. })
        ));
        // The skipped pair's RTP port was not kept bound.
        assert!(UdpSocket::bind((LOCALHOST, first)).is_ok());
    }

    #[test]
    fn a_port_another_program_holds_is_skipped() {
        let (first, last) = free_range(2);
        let _other = UdpSocket::bind((LOCALHOST, first)).unwrap();
        let pool = PortPool::singles(first, last).unwrap();
        let (socket, _lease) = pool.bind_one(LOCALHOST).unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), last);
        assert!(matches!(
            pool.bind_one(LOCALHOST),
            Err(PortError::Exhausted { .. })
        ));
    }

    #[test]
    fn the_next_search_starts_after_the_last_slot_handed_out() {
        let (first, last) = free_range(6);
        let pool = PortPool::pairs(first, last).unwrap();
        let a = pool.bind_pair(LOCALHOST).unwrap();
        let port_a = a.0.local_addr().unwrap().port();
        drop(a);
        let b = pool.bind_pair(LOCALHOST).unwrap();
        assert_ne!(b.0.local_addr().unwrap().port(), port_a);
        let c = pool.bind_pair(LOCALHOST).unwrap();
        drop((b, c));
        // Round the range: back to the first.
        let (d, _, _) = pool.bind_pair(LOCALHOST).unwrap();
        assert_eq!(d.local_addr().unwrap().port(), port_a);

        let (first, last) = free_range(3);
        let pool = PortPool::singles(first, last).unwrap();
        let (a, lease_a) = pool.bind_one(LOCALHOST).unwrap();
        let port_a = a.local_addr().unwrap().port();
        drop((a, lease_a));
        let (b, _lease_b) = pool.bind_one(LOCALHOST).unwrap();
        assert_ne!(b.local_addr().unwrap().port(), port_a);
    }

    #[test]
    fn an_address_not_on_this_host_is_a_bind_error() {
        // TEST-NET-1 (RFC 5737) is never a local address.
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let pool = PortPool::pairs(40_000, 40_003).unwrap();
        assert!(matches!(pool.bind_pair(ip), Err(PortError::Bind(_))));
        assert_eq!(pool.leased(), 0);
        let pool = PortPool::singles(40_000, 40_001).unwrap();
        assert!(matches!(pool.bind_one(ip), Err(PortError::Bind(_))));
        assert_eq!(pool.leased(), 0);
        assert!(PortPool::pairs(40_001, 40_002).is_none());
    }
}
