//! The SIP legs' RTP ports: an even port for RTP and the odd one above it for RTCP, both
//! bound for each leg, from the configured range, which is the cap on legs.
//!
//! A pair is leased while its leg lives and given back when the lease is dropped (the leg
//! ended, or its call was refused after the port was taken). Pairs another program holds are
//! skipped; the next search starts after the last pair handed out, so a pair just given back
//! is not reused at once: a unit still sending to the old call's port (its BYE lost, its
//! NAT slow) meets no new call there for as long as the range takes to come round.
//!
//! Written here rather than shared with `voice::webrtc`'s pool: that one hands out single
//! ports and is private to the browsers' legs; RTP's customs (even ports, RTCP on the next
//! one) make this one a pair pool.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use vakt_proto::sdp::LocalMedia;

use super::MediaError;
use crate::telemetry::MediaMetrics;

/// The range's pairs and which of them are leased.
#[derive(Debug)]
pub(super) struct PortPool {
    /// The first pair's RTP port (even).
    first: u16,
    /// How many pairs the range holds.
    pairs: u16,
    /// The range as configured, for the error.
    range: (u16, u16),
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Leased pairs, by index.
    leased: BTreeSet<u16>,
    /// The index where the next search starts.
    next: u16,
}

/// A pair of the pool, given back when dropped.
#[derive(Debug)]
pub(super) struct PortLease {
    pool: Arc<PortPool>,
    index: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        state.leased.remove(&self.index);
    }
}

/// The pairs of `min..=max`: the first even port at or above `min` and each even port after
/// it whose odd neighbour is still in the range. `None` when there is none.
pub(super) fn pairs(min: u16, max: u16) -> Option<(u16, u16)> {
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
    /// The pool of `min..=max` (checked by the options: [`pairs`] is `Some`).
    pub(super) fn new(min: u16, max: u16) -> Result<Arc<PortPool>, MediaError> {
        let (first, pairs) = pairs(min, max).ok_or_else(|| {
            MediaError::Options(format!(
                "the RTP port range {min}..={max} holds no even port with its odd neighbour"
            ))
        })?;
        Ok(Arc::new(PortPool {
            first,
            pairs,
            range: (min, max),
            state: Mutex::new(State {
                leased: BTreeSet::new(),
                next: 0,
            }),
        }))
    }

    /// How many pairs (legs at once) the range holds.
    pub(super) fn size(&self) -> usize {
        usize::from(self.pairs)
    }

    /// How many pairs are leased now.
    pub(super) fn leased(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.leased.len()
    }

    fn rtp_port(&self, index: u16) -> u16 {
        // index < pairs, so this stays within the range (checked in `pairs`).
        self.first + 2 * index
    }

    /// Binds the RTP socket (even port) and the RTCP socket (the odd one above) on `ip`, at
    /// the first free pair after the last one handed out: [`MediaError::PortsExhausted`] when
    /// every pair is leased or held by another program, the bind error when the address
    /// cannot be bound at all.
    pub(super) fn bind(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<(UdpSocket, UdpSocket, PortLease), MediaError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.leased.len() >= self.size() {
            return Err(self.exhausted());
        }
        let mut index = state.next;
        for _ in 0..self.pairs {
            let candidate = index;
            index = if index + 1 >= self.pairs {
                0
            } else {
                index + 1
            };
            if state.leased.contains(&candidate) {
                continue;
            }
            let port = self.rtp_port(candidate);
            let rtp = match UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(MediaError::Bind(e)),
            };
            let rtcp = match UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(MediaError::Bind(e)),
            };
            state.leased.insert(candidate);
            state.next = index;
            let lease = PortLease {
                pool: Arc::clone(self),
                index: candidate,
            };
            return Ok((rtp, rtcp, lease));
        }
        Err(self.exhausted())
    }

    fn exhausted(&self) -> MediaError {
        MediaError::PortsExhausted {
            first: self.range.0,
            last: self.range.1,
        }
    }
}

/// A leg's RTP port, bound before vakt answers the call so its number goes into the SDP
/// answer ([`RtpPort::local_media`]); then [`super::SipLeg::new`] with what was agreed.
/// Dropped unused (the call refused after all), its pair goes back to the range.
#[derive(Debug)]
pub struct RtpPort {
    pub(super) rtp: UdpSocket,
    pub(super) rtcp: UdpSocket,
    pub(super) lease: PortLease,
    /// The address for the SDP when vakt knows it (`public_addr`, or a concrete
    /// `bind_addr`).
    pub(super) advertised: Option<IpAddr>,
    pub(super) local: SocketAddr,
    pub(super) metrics: MediaMetrics,
    pub(super) options: super::MediaOptions,
}

impl RtpPort {
    /// The RTP port (even; RTCP is read on the next one).
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// The bound RTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// vakt's media endpoint for `vakt_proto::sdp::LocalSession`: the configured
    /// `public_addr`, else a concrete `bind_addr`, else `reached` (the local address the
    /// call's INVITE came in on), with this port; RTCP on the RTP port (`a=rtcp-mux`) is
    /// accepted when the unit offers it, and read on the next port when it does not.
    pub fn local_media(&self, reached: IpAddr) -> LocalMedia {
        LocalMedia {
            address: self.advertised.unwrap_or(reached),
            port: self.port(),
            rtcp_mux: true,
        }
    }
}

#[cfg(test)]
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
    }

    #[test]
    fn the_range_is_the_cap_and_a_lease_gives_its_pair_back() {
        let (first, last) = free_range(6);
        let pool = PortPool::new(first, last).unwrap();
        assert_eq!(pool.size(), 3);
        let a = pool.bind(LOCALHOST).unwrap();
        let b = pool.bind(LOCALHOST).unwrap();
        let c = pool.bind(LOCALHOST).unwrap();
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
        assert!(matches!(
            pool.bind(LOCALHOST),
            Err(MediaError::PortsExhausted { .. })
        ));
        let freed = b.0.local_addr().unwrap().port();
        drop(b);
        assert_eq!(pool.leased(), 2);
        let (again, _, _lease) = pool.bind(LOCALHOST).unwrap();
        assert_eq!(again.local_addr().unwrap().port(), freed);
    }

    #[test]
    fn a_pair_another_program_holds_half_of_is_skipped() {
        let (first, last) = free_range(4);
        // Someone holds the first pair's RTCP port.
        let _other = UdpSocket::bind((LOCALHOST, first + 1)).unwrap();
        let pool = PortPool::new(first, last).unwrap();
        let (rtp, _, _lease) = pool.bind(LOCALHOST).unwrap();
        assert_eq!(rtp.local_addr().unwrap().port(), first + 2);
        assert!(matches!(
            pool.bind(LOCALHOST),
            Err(MediaError::PortsExhausted { .. })
        ));
        // The skipped pair's RTP port was not kept bound.
        assert!(UdpSocket::bind((LOCALHOST, first)).is_ok());
    }

    #[test]
    fn the_next_search_starts_after_the_last_pair_handed_out() {
        let (first, last) = free_range(6);
        let pool = PortPool::new(first, last).unwrap();
        let a = pool.bind(LOCALHOST).unwrap();
        let port_a = a.0.local_addr().unwrap().port();
        drop(a);
        let b = pool.bind(LOCALHOST).unwrap();
        assert_ne!(b.0.local_addr().unwrap().port(), port_a);
        let c = pool.bind(LOCALHOST).unwrap();
        drop((b, c));
        // Round the range: back to the first.
        let (d, _, _) = pool.bind(LOCALHOST).unwrap();
        assert_eq!(d.local_addr().unwrap().port(), port_a);
    }

    #[test]
    fn an_address_not_on_this_host_is_a_bind_error() {
        let pool = PortPool::new(40_000, 40_003).unwrap();
        // TEST-NET-1 (RFC 5737) is never a local address.
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert!(matches!(pool.bind(ip), Err(MediaError::Bind(_))));
        assert_eq!(pool.leased(), 0);
        assert!(matches!(
            PortPool::new(40_001, 40_002),
            Err(MediaError::Options(_))
        ));
    }
}
