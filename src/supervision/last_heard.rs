//! When each registered device was last heard ([`LastHeard`]): kept in memory (heartbeats are
//! the bulk of all traffic and are not journaled one by one), the changed times written to the
//! store periodically and at shutdown; unknown accounts only in a small bounded list, never
//! stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use serde::Serialize;

const SHARDS: usize = 16;

/// Unknown accounts [`LastHeard`] remembers (the most recently heard; older ones are
/// forgotten).
pub const UNKNOWN_KEPT: usize = 256;

/// "Never heard" in a [`LastHeard`] entry.
const NEVER: i64 = i64::MIN;

/// A registered device's last-heard time and the time last written to the store.
#[derive(Clone, Copy, Debug)]
struct Heard {
    at: i64,
    saved: i64,
}

/// An account heard that is not in the registry, as listed for the console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UnknownAccount {
    /// The account the frames named.
    pub account: String,
    /// When a frame from it was first heard since it entered the list.
    #[schema(value_type = String)]
    pub first_heard: Timestamp,
    /// When a frame from it was last heard.
    #[schema(value_type = String)]
    pub last_heard: Timestamp,
    /// Frames heard from it since it entered the list.
    pub frames: u64,
}

#[derive(Clone, Copy, Debug)]
struct Recent {
    /// Order of the last touch (the key of `Unknown::order`).
    seq: u64,
    first: i64,
    last: i64,
    frames: u64,
}

/// The most recently heard unknown accounts: at most [`UNKNOWN_KEPT`], the least recently
/// heard forgotten first.
#[derive(Debug, Default)]
struct Unknown {
    by_account: HashMap<Box<str>, Recent>,
    /// Touch order -> account: the first entry is the least recently heard.
    order: BTreeMap<u64, Box<str>>,
    seq: u64,
}

impl Unknown {
    fn note(&mut self, account: &str, ms: i64) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(r) = self.by_account.get_mut(account) {
            self.order.remove(&r.seq);
            r.seq = seq;
            r.last = r.last.max(ms);
            r.frames += 1;
            self.order.insert(seq, account.into());
            return;
        }
        if self.by_account.len() >= UNKNOWN_KEPT {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.by_account.remove(&oldest);
            }
        }
        self.by_account.insert(
            account.into(),
            Recent {
                seq,
                first: ms,
                last: ms,
                frames: 1,
            },
        );
        self.order.insert(seq, account.into());
    }
}

/// When each registered device was last heard, and the unknown accounts heard lately.
///
/// Only the accounts of the registry ([`LastHeard::sync`], called by [`Supervisor::sync`]
/// for the supervisor that holds it) have a last-heard time, which is persisted: the store
/// gets only the times that changed since the last write ([`LastHeard::changed`]). A frame
/// naming any other account (anyone who can reach a port can name any account) goes to a
/// small list of the most recent unknown accounts, for the console, bounded by
/// [`UNKNOWN_KEPT`] and never persisted. Their alarms are journaled and shown as always;
/// this is only about heartbeats' bookkeeping.
///
/// Registered accounts are sharded so that connections rarely contend; the unknown list is
/// one lock (a busy unknown account is an error to fix, not the normal load).
#[derive(Debug)]
pub struct LastHeard {
    shards: Vec<Mutex<HashMap<Box<str>, Heard>>>,
    unknown: Mutex<Unknown>,
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
    /// An empty table: no account registered yet.
    pub fn new() -> LastHeard {
        LastHeard {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            unknown: Mutex::new(Unknown::default()),
        }
    }

    fn shard(&self, account: &str) -> MutexGuard<'_, HashMap<Box<str>, Heard>> {
        // Nothing panics while holding the lock; recover the map anyway.
        self.shards[shard_of(account)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the registered accounts exactly `accounts` (the whole registry): new ones start
    /// never heard, kept ones keep their times, the others are dropped.
    pub fn sync<'a>(&self, accounts: impl IntoIterator<Item = &'a str>) {
        let mut per_shard: Vec<Vec<&str>> = vec![Vec::new(); SHARDS];
        for a in accounts {
            per_shard[shard_of(a)].push(a);
        }
        for (i, wanted) in per_shard.into_iter().enumerate() {
            let mut m = self.shards[i]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let keep: std::collections::HashSet<&str> = wanted.iter().copied().collect();
            m.retain(|a, _| keep.contains(&**a));
            for a in wanted {
                m.entry(a.into()).or_insert(Heard {
                    at: NEVER,
                    saved: NEVER,
                });
            }
        }
    }

    /// True when `account` is registered.
    pub fn is_registered(&self, account: &str) -> bool {
        self.shard(account).contains_key(account)
    }

    /// Records that `account` was heard at `now_ms` (ms since the epoch). A registered
    /// device's time never moves back; any other account goes to the bounded list of unknown
    /// accounts. Returns true for a registered device.
    pub fn heard(&self, account: &str, now_ms: i64) -> bool {
        if let Some(h) = self.shard(account).get_mut(account) {
            h.at = h.at.max(now_ms);
            return true;
        }
        self.unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(account, now_ms);
        false
    }

    /// When the registered device `account` was last heard.
    pub fn get(&self, account: &str) -> Option<i64> {
        self.shard(account)
            .get(account)
            .map(|h| h.at)
            .filter(|t| *t != NEVER)
    }

    /// The times that changed since they were last marked [`LastHeard::saved`] (to persist).
    pub fn changed(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for s in &self.shards {
            let m = s.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(
                m.iter()
                    .filter(|(_, h)| h.at > h.saved)
                    .map(|(a, h)| (a.to_string(), h.at)),
            );
        }
        out
    }

    /// Marks `entries` (from [`LastHeard::changed`]) as written to the store.
    pub fn saved(&self, entries: &[(String, i64)]) {
        for (a, t) in entries {
            if let Some(h) = self.shard(a).get_mut(a.as_str()) {
                h.saved = h.saved.max(*t);
            }
        }
    }

    /// Registered devices heard at least once.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let m = s.lock().unwrap_or_else(PoisonError::into_inner);
                m.values().filter(|h| h.at != NEVER).count()
            })
            .sum()
    }

    /// True when no registered device was heard.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a persisted time of `account` if it is registered (it counts as saved).
    /// Returns false for an account not registered, which the caller can forget.
    pub fn load(&self, account: &str, ms: i64) -> bool {
        match self.shard(account).get_mut(account) {
            Some(h) => {
                h.at = h.at.max(ms);
                h.saved = h.saved.max(ms);
                true
            }
            None => false,
        }
    }

    /// The unknown accounts heard lately, the most recent first (at most [`UNKNOWN_KEPT`]).
    pub fn unknown(&self) -> Vec<UnknownAccount> {
        let u = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
        let ts = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
        u.order
            .values()
            .rev()
            .filter_map(|a| {
                let r = u.by_account.get(a)?;
                Some(UnknownAccount {
                    account: a.to_string(),
                    first_heard: ts(r.first),
                    last_heard: ts(r.last),
                    frames: r.frames,
                })
            })
            .collect()
    }

    /// How many unknown accounts are listed now (at most [`UNKNOWN_KEPT`]).
    pub fn unknown_len(&self) -> usize {
        self.unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_account
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_moves_back() {
        let l = LastHeard::new();
        l.sync(["1234"]);
        assert!(l.heard("1234", 10));
        l.heard("1234", 5);
        assert_eq!(l.get("1234"), Some(10));
        l.heard("1234", 20);
        assert_eq!(l.get("1234"), Some(20));
        assert_eq!(l.len(), 1);
        assert_eq!(l.changed(), vec![("1234".to_string(), 20)]);
    }

    #[test]
    fn a_flood_of_unknown_accounts_stays_in_the_bound_and_is_never_persisted() {
        let l = LastHeard::new();
        l.sync(["1234", "5678"]);
        for i in 0..100_000i64 {
            assert!(!l.heard(&format!("{:X}", 0x1_0000_0000 + i), 1_000 + i));
            assert!(l.unknown_len() <= UNKNOWN_KEPT);
        }
        l.heard("1234", 500);
        assert_eq!(l.unknown_len(), UNKNOWN_KEPT);
        assert_eq!(
            l.len(),
            1,
            "only the registered device has a last-heard time"
        );
        assert_eq!(l.changed(), vec![("1234".to_string(), 500)]);
        // The most recent first, the older ones forgotten.
        let u = l.unknown();
        assert_eq!(u.len(), UNKNOWN_KEPT);
        assert_eq!(u[0].account, format!("{:X}", 0x1_0000_0000i64 + 99_999));
        assert_eq!(u[0].frames, 1);
        assert_eq!(u[0].last_heard.as_millisecond(), 1_000 + 99_999);
        // An unknown account heard again moves to the front and is counted.
        let back = u[UNKNOWN_KEPT - 1].account.clone();
        l.heard(&back, 200_000);
        let u = l.unknown();
        assert_eq!((u[0].account.as_str(), u[0].frames), (back.as_str(), 2));
        assert_eq!(u.len(), UNKNOWN_KEPT);
    }

    #[test]
    fn only_changes_are_persisted_and_only_registered_accounts_loaded() {
        let l = LastHeard::new();
        l.sync(["1234", "5678", "9ABC"]);
        // Loaded times count as saved; accounts no longer registered are refused.
        assert!(l.load("1234", 100));
        assert!(!l.load("DEAD", 100));
        assert!(!l.is_registered("DEAD"));
        assert_eq!(l.get("DEAD"), None);
        assert!(l.changed().is_empty());
        l.heard("5678", 200);
        l.heard("1234", 50);
        let c = l.changed();
        assert_eq!(c, vec![("5678".to_string(), 200)]);
        l.saved(&c);
        assert!(l.changed().is_empty());
        // A write that failed is not marked saved: the change is written next time.
        l.heard("9ABC", 300);
        assert_eq!(l.changed().len(), 1);
        assert_eq!(l.changed().len(), 1);
        // A device removed from the registry is forgotten, a new one starts never heard.
        l.sync(["1234", "ABCD"]);
        assert_eq!(l.get("5678"), None);
        assert_eq!(l.get("1234"), Some(100));
        assert_eq!(l.get("ABCD"), None);
        assert!(l.heard("ABCD", 400));
        assert_eq!(l.changed(), vec![("ABCD".to_string(), 400)]);
    }
}
