//! Responses already sent to UDP requests, by (branch, method, Call-ID, source), for 32 s
//! (RFC 3261 timer J): a retransmitted request gets the same response again without being
//! handled twice. Bounded.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::TRANSACTION;
use super::flow::Flow;
use vakt_proto::sip::Message;

/// The cache key of a request that came over UDP (its Via branch, method, Call-ID and
/// source); `None` over TCP/TLS, or without a branch.
pub(super) fn key(msg: &Message<'_>, method: &str, flow: &Flow) -> Option<String> {
    match flow {
        Flow::Udp { .. } => msg
            .top_via_branch()
            .map(|b| format!("{b}\u{0}{method}\u{0}{}\u{0}{}", msg.call_id(), flow.peer())),
        Flow::Stream { .. } => None,
    }
}

/// Responses kept for retransmitted UDP requests.
const UAS_CACHE: usize = 50_000;

/// The cache.
#[derive(Debug, Default)]
pub(super) struct UasCache {
    map: HashMap<String, Vec<u8>>,
    order: VecDeque<(Instant, String)>,
}

impl UasCache {
    pub(super) fn get(&mut self, key: &str, now: Instant) -> Option<Vec<u8>> {
        self.expire(now);
        self.map.get(key).cloned()
    }

    pub(super) fn put(&mut self, key: String, response: Vec<u8>, now: Instant) {
        self.expire(now);
        while self.order.len() >= UAS_CACHE {
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
        if self.map.insert(key.clone(), response).is_none() {
            self.order.push_back((now, key));
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < TRANSACTION {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn uas_cache_expires_and_is_bounded() {
        let t0 = Instant::now();
        let mut c = UasCache::default();
        c.put("a".into(), b"r".to_vec(), t0);
        assert_eq!(
            c.get("a", t0 + Duration::from_secs(31)),
            Some(b"r".to_vec())
        );
        assert_eq!(c.get("a", t0 + Duration::from_secs(33)), None);
        for i in 0..UAS_CACHE + 10 {
            c.put(i.to_string(), Vec::new(), t0);
        }
        assert!(c.map.len() <= UAS_CACHE && c.order.len() <= UAS_CACHE);
    }
}
