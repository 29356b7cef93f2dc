//! Per-source rates of SIP requests: a token bucket per UDP source address and port (in a
//! bounded table) or per TCP/TLS connection (held by the connection).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// UDP sources whose rate is tracked at once.
const RATE_SOURCES: usize = 100_000;

/// A token bucket.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn new(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    pub(super) fn take(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * f64::from(rate)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The buckets of UDP sources.
#[derive(Debug)]
pub(super) struct UdpRates {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<SocketAddr, Bucket>>,
}

impl UdpRates {
    pub(super) fn new(rate: u32, burst: u32) -> UdpRates {
        UdpRates {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// True when `peer` may send one more request now.
    pub(super) fn allow(&self, peer: SocketAddr, now: Instant) -> bool {
        let mut rates = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if rates.len() >= RATE_SOURCES && !rates.contains_key(&peer) {
            // Forget sources quiet for a minute; a flood of new sources starts afresh.
            rates.retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(60));
            if rates.len() >= RATE_SOURCES {
                rates.clear();
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        rates
            .entry(peer)
            .or_insert_with(|| Bucket::new(burst, now))
            .take(rate, burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, t0);
        assert!(b.take(1, 3, t0) && b.take(1, 3, t0) && b.take(1, 3, t0));
        assert!(!b.take(1, 3, t0));
        assert!(b.take(1, 3, t0 + Duration::from_millis(1001)));
        assert!(!b.take(1, 3, t0 + Duration::from_millis(1002)));
    }
}
