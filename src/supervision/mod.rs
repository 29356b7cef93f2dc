//! Supervision: when each device was last heard.
//!
//! Any frame from a device (a NULL link test, a test, an alarm) proves it can reach vakt. The
//! last-heard time is kept in memory (heartbeats are the bulk of all traffic and are not
//! journaled one by one) and written to the store periodically and at shutdown. Deadlines and
//! silence detection build on this table.

use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 16;

/// Last-heard times by account, sharded so that connections rarely contend.
#[derive(Debug)]
pub struct LastHeard {
    shards: Vec<Mutex<HashMap<String, i64>>>,
}

impl Default for LastHeard {
    fn default() -> Self {
        LastHeard::new()
    }
}

fn shard_of(account: &str) -> usize {
    // FNV-1a: cheap and good enough to spread accounts over shards.
    let mut h: u32 = 0x811c_9dc5;
    for b in account.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

impl LastHeard {
    /// An empty table.
    pub fn new() -> LastHeard {
        LastHeard {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Records that `account` was heard at `now_ms` (ms since the epoch). Never moves back.
    pub fn heard(&self, account: &str, now_ms: i64) {
        let Ok(mut m) = self.shards[shard_of(account)].lock() else {
            return;
        };
        match m.get_mut(account) {
            Some(t) => {
                if now_ms > *t {
                    *t = now_ms;
                }
            }
            None => {
                m.insert(account.to_owned(), now_ms);
            }
        }
    }

    /// When `account` was last heard.
    pub fn get(&self, account: &str) -> Option<i64> {
        self.shards[shard_of(account)]
            .lock()
            .ok()?
            .get(account)
            .copied()
    }

    /// Every entry (for persisting).
    pub fn snapshot(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for s in &self.shards {
            if let Ok(m) = s.lock() {
                out.extend(m.iter().map(|(k, v)| (k.clone(), *v)));
            }
        }
        out
    }

    /// Number of devices heard.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    /// True when no device was heard.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads persisted entries.
    pub fn load(&self, entries: Vec<(String, i64)>) {
        for (a, t) in entries {
            self.heard(&a, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_moves_back() {
        let l = LastHeard::new();
        l.heard("1234", 10);
        l.heard("1234", 5);
        assert_eq!(l.get("1234"), Some(10));
        l.heard("1234", 20);
        assert_eq!(l.get("1234"), Some(20));
        assert_eq!(l.len(), 1);
        assert_eq!(l.snapshot(), vec![("1234".to_string(), 20)]);
    }
}
