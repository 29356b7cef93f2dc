//! Per-source limits shared by the listeners, and the open-file budget they live in.
//!
//! - [`PerSource`]: live connections per source of one listener (DC-09 TCP, SCAIP TCP and
//!   TLS, HTTP, the patrols' QUIC link). A connection beyond its source's cap is refused at
//!   once (closed, or for QUIC refused at `Incoming`), so one host can never hold the
//!   listener's whole cap, or every file of the process. The table holds only sources with a
//!   live connection, each of which holds one of the listener's permits: it is bounded by the
//!   listener's connection cap.
//! - [`AnswerRate`]: how often one source may be answered garbage over UDP (a NAK to a frame
//!   that cannot be read): a token bucket per source in a bounded table, and one for all
//!   sources, so vakt cannot be made to reflect traffic at a forged address.
//!
//! A source is an IPv4 address, or an IPv6 /64 (what one subscriber line gets; an IPv4
//! address mapped into IPv6 counts as the IPv4 address). Written by hand: the crates that
//! limit per key (`governor`) do rates, not counts of live connections that must be given
//! back when a connection ends, and the rate table here is a few lines over that.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The source of a peer address: the IPv4 address, or the IPv6 /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A refusal is logged at most this often per listener (every refusal is counted).
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Inner {
    listener: &'static str,
    max_per_source: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
    last_warn: Mutex<Option<Instant>>,
    refused: metrics::Counter,
}

/// Live connections per source of one listener; see the module doc.
#[derive(Clone, Debug)]
pub struct PerSource(Arc<Inner>);

/// A connection's place in its source's count, given back when dropped.
#[derive(Debug)]
pub struct SourceGuard {
    inner: Arc<Inner>,
    source: IpAddr,
}

impl PerSource {
    /// At most `max_per_source` live connections per source on `listener` (a metric label:
    /// `dc09_tcp`, `scaip_tcp`, `scaip_tls`, `http`, `patrol_quic`).
    pub fn new(listener: &'static str, max_per_source: usize) -> PerSource {
        PerSource(Arc::new(Inner {
            listener,
            max_per_source: u32::try_from(max_per_source.max(1)).unwrap_or(u32::MAX),
            counts: Mutex::new(HashMap::new()),
            last_warn: Mutex::new(None),
            refused: crate::telemetry::connections_refused(listener, "per_source"),
        }))
    }

    /// Counts a new connection from `peer`; `None` (counted, and logged at most once a
    /// minute) when its source already has its maximum.
    pub fn admit(&self, peer: IpAddr) -> Option<SourceGuard> {
        let source = source_of(peer);
        {
            let mut m = self.0.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let n = m.entry(source).or_insert(0);
            if *n < self.0.max_per_source {
                *n += 1;
                return Some(SourceGuard {
                    inner: self.0.clone(),
                    source,
                });
            }
        }
        self.0.refused.increment(1);
        let now = Instant::now();
        let mut last = self
            .0
            .last_warn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            *last = Some(now);
            tracing::warn!(
                listener = self.0.listener,
                %source,
                max = self.0.max_per_source,
                "a source has its maximum of connections; its new ones are refused (counted in vakt_connections_refused_total, logged once a minute)"
            );
        }
        None
    }

    /// Sources with a live connection now.
    pub fn sources(&self) -> usize {
        self.0
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Live connections of `peer`'s source.
    pub fn count(&self, peer: IpAddr) -> u32 {
        let m = self.0.counts.lock().unwrap_or_else(PoisonError::into_inner);
        m.get(&source_of(peer)).copied().unwrap_or(0)
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut m = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.source);
            }
        }
    }
}

// ---- answers to garbage (UDP) ----

/// Answers to garbage one source may get per second...
pub const ANSWER_PER_SEC: f64 = 1.0;
/// ... and at once above that.
pub const ANSWER_BURST: u32 = 5;
/// Answers to garbage per second to all sources together (and at once: twice that).
pub const ANSWER_TOTAL_PER_SEC: f64 = 200.0;
/// Sources whose answers are counted at once.
pub const ANSWER_SOURCES: usize = 4096;

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How often sources may be answered garbage; see the module doc. Used by one task (the
/// UDP loop), so it takes `&mut self`.
#[derive(Debug)]
pub struct AnswerRate {
    sources: HashMap<IpAddr, Bucket>,
    total: Bucket,
}

impl Default for AnswerRate {
    fn default() -> Self {
        AnswerRate::new(Instant::now())
    }
}

impl AnswerRate {
    /// Every bucket full at `now`.
    pub fn new(now: Instant) -> AnswerRate {
        AnswerRate {
            sources: HashMap::new(),
            total: Bucket::full(ANSWER_TOTAL_PER_SEC * 2.0, now),
        }
    }

    /// True when `peer` may be answered now (the answer is counted). When the table is
    /// full, sources whose bucket has refilled are forgotten; if none has, a new source is
    /// not answered.
    pub fn allow(&mut self, peer: IpAddr, now: Instant) -> bool {
        let burst = f64::from(ANSWER_BURST);
        let source = source_of(peer);
        if !self.sources.contains_key(&source) && self.sources.len() >= ANSWER_SOURCES {
            self.sources.retain(|_, b| {
                b.refill(ANSWER_PER_SEC, burst, now);
                b.tokens < burst
            });
            if self.sources.len() >= ANSWER_SOURCES {
                return false;
            }
        }
        let b = self
            .sources
            .entry(source)
            .or_insert_with(|| Bucket::full(burst, now));
        // The source's token first: a source over its rate does not use up the others'.
        if !b.take(ANSWER_PER_SEC, burst, now) {
            return false;
        }
        if !self
            .total
            .take(ANSWER_TOTAL_PER_SEC, ANSWER_TOTAL_PER_SEC * 2.0, now)
        {
            b.tokens += 1.0;
            return false;
        }
        true
    }

    /// Sources in the table.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(source_of(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:3::1")),
            source_of(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn a_source_over_its_cap_is_refused_and_others_are_not() {
        let p = PerSource::new("dc09_tcp", 3);
        let a: Vec<_> = (0..3).map(|_| p.admit(ip("127.0.0.1")).unwrap()).collect();
        assert!(p.admit(ip("127.0.0.1")).is_none());
        assert!(
            p.admit(ip("::ffff:127.0.0.1")).is_none(),
            "the same host over IPv6"
        );
        let b = p.admit(ip("127.0.0.2")).expect("another source");
        assert_eq!((p.count(ip("127.0.0.1")), p.sources()), (3, 2));
        drop(a);
        assert_eq!(p.sources(), 1, "a source with no connection is forgotten");
        assert!(p.admit(ip("127.0.0.1")).is_some());
        drop(b);
    }

    #[test]
    fn the_table_never_outgrows_the_live_connections() {
        let p = PerSource::new("http", 2);
        let mut live = Vec::new();
        for i in 0..10_000u32 {
            let peer = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            live.push(p.admit(peer).unwrap());
            if live.len() > 100 {
                live.remove(0);
            }
            assert!(p.sources() <= 101);
        }
        live.clear();
        assert_eq!(p.sources(), 0);
    }

    #[test]
    fn garbage_answers_are_rate_limited_per_source_and_in_all() {
        let t0 = Instant::now();
        let mut r = AnswerRate::new(t0);
        let a = ip("192.0.2.1");
        let n = (0..100).filter(|_| r.allow(a, t0)).count();
        assert_eq!(n, ANSWER_BURST as usize);
        assert!(
            r.allow(ip("192.0.2.2"), t0),
            "another source has its own budget"
        );
        assert!(!r.allow(a, t0 + Duration::from_millis(500)));
        assert!(r.allow(a, t0 + Duration::from_millis(1001)), "one a second");
        // All sources together: at most twice the total rate at once.
        let mut r = AnswerRate::new(t0);
        let all = (0..2_000u32)
            .filter(|i| r.allow(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), t0))
            .count();
        assert_eq!(all as f64, ANSWER_TOTAL_PER_SEC * 2.0);
        // The table is bounded; idle sources make room, busy ones do not.
        let mut r = AnswerRate::new(t0);
        for i in 0..(ANSWER_SOURCES as u32 + 1000) {
            let t = t0 + Duration::from_millis(u64::from(i));
            r.allow(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)), t);
            assert!(r.sources() <= ANSWER_SOURCES);
        }
    }
}
