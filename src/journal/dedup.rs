//! The retransmission window: the keys of the Signals journaled within `dedup_window_secs`
//! (at most `dedup_max_entries`), each with its journal id, so a frame sent again is answered
//! with the id it already has instead of being journaled twice.
//!
//! Each key, its id and its time are kept once, in a ring in order of arrival (32 bytes an
//! entry; the front expires first, by time or by the bound), and the lookup table holds
//! only the ring position of each key's newest entry and 32 bits of its hash (8 bytes and
//! hashbrown's control byte a bucket; the hash there so the table is rehashed without
//! reading the ring). A `HashMap` from key to id and time beside a queue of keys and times,
//! as this was before, holds each key twice and takes about 120 MB for the default million
//! keys; this takes about 52 MB (33 MB of ring, 19 MB of table). `hashbrown::HashTable` is the crate's table for values that carry
//! their own key (here: found through the ring). The hash is keyed per process
//! (`RandomState`): a key is SHA-256 of what a peer sends, so unkeyed it could be aimed at
//! one bucket.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::DedupKey;

/// One journaled key.
#[derive(Clone, Copy)]
struct Slot {
    key: DedupKey,
    id: u64,
    at_ms: i64,
}

/// A key's place in the table: its newest entry's position in the ring (wrapping; the ring
/// holds far fewer than 2^32) and 32 bits of its hash, so that growing or tidying the table
/// rehashes without reading the ring (a million random reads, stalling the committer).
#[derive(Clone, Copy)]
struct Place {
    pos: u32,
    hash: u32,
}

impl Place {
    /// The table's hash: the 32 bits in both halves (hashbrown takes the bucket from the
    /// low bits and its tag from the top seven).
    fn hash(self) -> u64 {
        spread(self.hash)
    }
}

fn spread(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

/// The window of keys (see the module doc).
pub(super) struct Dedup {
    /// Entries in order of arrival; `ring[i]` has position `first + i` (wrapping).
    ring: VecDeque<Slot>,
    first: u32,
    /// Each key's newest entry in `ring`.
    table: HashTable<Place>,
    hasher: std::collections::hash_map::RandomState,
    window_ms: i64,
    max: usize,
}

impl Dedup {
    pub(super) fn new(window: jiff::SignedDuration, max: usize) -> Dedup {
        Dedup {
            ring: VecDeque::new(),
            first: 0,
            table: HashTable::new(),
            hasher: Default::default(),
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            // The ring holds at most twice this: far below 2^32 positions.
            max: max.clamp(1, 1 << 30),
        }
    }

    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// 32 bits of `k`'s keyed hash.
    fn hash32(&self, k: &DedupKey) -> u32 {
        // Truncated on purpose: the table keeps 32 bits.
        self.hasher.hash_one(k) as u32
    }

    fn slot(ring: &VecDeque<Slot>, first: u32, pos: u32) -> Option<&Slot> {
        ring.get(pos.wrapping_sub(first) as usize)
    }

    fn find(&self, k: &DedupKey) -> Option<&Slot> {
        let h = self.hash32(k);
        let (ring, first) = (&self.ring, self.first);
        let place = self.table.find(spread(h), |p| {
            p.hash == h && Self::slot(ring, first, p.pos).is_some_and(|s| s.key == *k)
        })?;
        Self::slot(ring, first, place.pos)
    }

    /// Whether `k` is held (expired or not).
    #[cfg(test)]
    pub(super) fn contains(&self, k: &DedupKey) -> bool {
        self.find(k).is_some()
    }

    /// The journal id of a retransmission of `k` received at `now`, if any.
    pub(super) fn get(&self, k: &DedupKey, now: jiff::Timestamp) -> Option<u64> {
        self.find(k)
            .filter(|s| now.as_millisecond().saturating_sub(s.at_ms) <= self.window_ms)
            .map(|s| s.id)
    }

    /// Forgets the entries of journal ids that were not committed after all. Rare (a failed
    /// commit), so a full scan is fine.
    pub(super) fn forget_ids(&mut self, ids: std::ops::Range<u64>) {
        let (ring, first) = (&self.ring, self.first);
        self.table
            .retain(|p| Self::slot(ring, first, p.pos).is_some_and(|s| !ids.contains(&s.id)));
    }

    /// Drops the oldest entry; whether it was its key's newest (the key is gone).
    fn pop_front(&mut self) -> bool {
        let Some(old) = self.ring.pop_front() else {
            return false;
        };
        let pos = self.first;
        self.first = self.first.wrapping_add(1);
        let h = self.hash32(&old.key);
        match self.table.find_entry(spread(h), |p| p.pos == pos) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Remembers `k`; returns how many keys were evicted early because the table was full.
    pub(super) fn insert(&mut self, k: DedupKey, id: u64, at: jiff::Timestamp) -> u64 {
        let at_ms = at.as_millisecond();
        // Expire by time.
        while let Some(front) = self.ring.front() {
            if at_ms.saturating_sub(front.at_ms) <= self.window_ms {
                break;
            }
            self.pop_front();
        }
        // Then by the bound (the ring also holds superseded entries of keys sent again after
        // the window: at most as many again).
        let mut evicted = 0;
        while !self.ring.is_empty()
            && (self.table.len() >= self.max || self.ring.len() >= self.max.saturating_mul(2))
        {
            if self.pop_front() {
                evicted += 1;
            }
        }
        // The ring is shorter than 2^31 (see `new`): the length fits.
        let pos = self.first.wrapping_add(self.ring.len() as u32);
        self.ring.push_back(Slot { key: k, id, at_ms });
        let h = self.hash32(&k);
        let place = Place { pos, hash: h };
        let (ring, first) = (&self.ring, self.first);
        let same =
            |p: &Place| p.hash == h && Self::slot(ring, first, p.pos).is_some_and(|s| s.key == k);
        match self.table.entry(spread(h), same, |p| p.hash()) {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = place,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(place);
            }
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn expires_by_time_and_bound() {
        let mut d = Dedup::new(jiff::SignedDuration::from_secs(10), 3);
        d.insert([1; 16], 1, ts(0));
        assert_eq!(d.get(&[1; 16], ts(10)), Some(1));
        assert_eq!(d.get(&[1; 16], ts(11)), None);
        d.insert([2; 16], 2, ts(11));
        assert!(!d.contains(&[1; 16]), "expired entry removed on insert");
        d.insert([3; 16], 3, ts(12));
        d.insert([4; 16], 4, ts(12));
        let ev = d.insert([5; 16], 5, ts(12));
        assert_eq!(ev, 1);
        assert_eq!(d.get(&[2; 16], ts(12)), None, "oldest evicted when full");
        assert_eq!(d.get(&[5; 16], ts(12)), Some(5));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn a_key_sent_again_after_the_window_is_held_with_its_new_id() {
        let mut d = Dedup::new(jiff::SignedDuration::from_secs(10), 100);
        d.insert([1; 16], 1, ts(0));
        d.insert([2; 16], 2, ts(5));
        assert_eq!(d.get(&[1; 16], ts(12)), None);
        d.insert([1; 16], 3, ts(12));
        assert_eq!(d.get(&[1; 16], ts(12)), Some(3));
        // The old entry of key 1 leaves the ring at 16 s; the key stays with its new id.
        d.insert([4; 16], 4, ts(16));
        assert_eq!(d.get(&[1; 16], ts(16)), Some(3));
        assert_eq!(d.get(&[2; 16], ts(16)), None);
        assert_eq!(d.len(), 2);
        d.forget_ids(3..4);
        assert_eq!(d.get(&[1; 16], ts(16)), None);
        assert_eq!(d.get(&[4; 16], ts(16)), Some(4));
    }

    /// What the window did before, a map and a queue (each entry with its arrival number,
    /// so an entry superseded at the same millisecond is told apart): the reference.
    struct Model {
        map: HashMap<DedupKey, (u64, i64, u64)>,
        order: VecDeque<(i64, DedupKey, u64)>,
        window: i64,
        max: usize,
        seq: u64,
    }

    impl Model {
        fn get(&self, k: &DedupKey, now: i64) -> Option<u64> {
            self.map
                .get(k)
                .filter(|(_, at, _)| now - *at <= self.window)
                .map(|(id, _, _)| *id)
        }

        fn insert(&mut self, k: DedupKey, id: u64, at: i64) -> u64 {
            while let Some((t, old, seq)) = self.order.front().copied() {
                if at - t <= self.window {
                    break;
                }
                self.order.pop_front();
                if self.map.get(&old).is_some_and(|e| e.2 == seq) {
                    self.map.remove(&old);
                }
            }
            let mut evicted = 0;
            while self.map.len() >= self.max || self.order.len() >= self.max * 2 {
                let Some((_, old, seq)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&old).is_some_and(|e| e.2 == seq) {
                    self.map.remove(&old);
                    evicted += 1;
                }
            }
            self.seq += 1;
            self.map.insert(k, (id, at, self.seq));
            self.order.push_back((at, k, self.seq));
            evicted
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert { key: u8, later_ms: i64 },
        Get { key: u8, later_ms: i64 },
        Forget { from_back: u64, len: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Times mostly forward, sometimes a little back (Signals of several connections
            // reach the committer in about, not exactly, the order of their times).
            6 => (0u8..24, -300i64..4_000).prop_map(|(key, later_ms)| Op::Insert { key, later_ms }),
            3 => (0u8..24, 0i64..4_000).prop_map(|(key, later_ms)| Op::Get { key, later_ms }),
            1 => (0u64..6, 1u64..4).prop_map(|(from_back, len)| Op::Forget { from_back, len }),
        ]
    }

    proptest! {
        /// The window answers as the map and queue did, for any arrivals (in about the
        /// order of their times), lookups and forgotten ids.
        #[test]
        fn answers_as_the_map_and_queue_did(
            max in 1usize..12,
            window_ms in 0i64..10_000,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut d = Dedup::new(jiff::SignedDuration::from_millis(window_ms), max);
            let mut m = Model {
                map: HashMap::new(),
                order: VecDeque::new(),
                window: window_ms,
                max,
                seq: 0,
            };
            let mut now = 1_700_000_000_000i64;
            let mut next_id = 1u64;
            for op in ops {
                match op {
                    Op::Insert { key, later_ms } => {
                        now += later_ms;
                        let k = [key; 16];
                        let at = jiff::Timestamp::from_millisecond(now).unwrap();
                        // As the committer does: only a key that is not a retransmission.
                        if d.get(&k, at).is_none() {
                            prop_assert_eq!(m.get(&k, now), None);
                            prop_assert_eq!(d.insert(k, next_id, at), m.insert(k, next_id, now));
                            next_id += 1;
                        }
                    }
                    Op::Get { key, later_ms } => {
                        let at = now + later_ms;
                        let k = [key; 16];
                        let t = jiff::Timestamp::from_millisecond(at).unwrap();
                        prop_assert_eq!(d.get(&k, t), m.get(&k, at));
                    }
                    Op::Forget { from_back, len } => {
                        let start = next_id.saturating_sub(from_back + len);
                        d.forget_ids(start..start + len);
                        m.map.retain(|_, (id, _, _)| !(start..start + len).contains(id));
                    }
                }
                prop_assert_eq!(d.len(), m.map.len());
            }
        }
    }
}
