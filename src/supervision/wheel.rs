//! Deadlines of many devices: a hierarchical timing wheel with 1 s resolution.
//!
//! Every supervised device has one deadline (the moment by which it must have been heard).
//! A heartbeat moves it: [`Wheel::set`] unlinks the device's node from one list and links it
//! into another, O(1) whatever the number of devices. [`Wheel::expire`] hands out every
//! deadline at or before `now`, each once.
//!
//! Layout. Devices are dense `u32` slots; each has one 16-byte node (previous, next,
//! deadline) in one array, so the lists are intrusive and need no allocation per deadline.
//! Three levels of lists:
//!
//! - level 0: 1024 lists of one second each, for deadlines in the cursor's current
//!   1024-second block;
//! - level 1: 256 lists of one block each, for deadlines in the current 72.8-hour rotation;
//!   a block's list is moved down to level 0 when the cursor enters that block;
//! - far: one list for anything later, sorted out again each time the cursor enters a new
//!   rotation (intervals are 20 s to 25 h, so only a misconfigured grace lands here);
//! - due: deadlines set at or before the cursor (already past), handed out by the next
//!   [`Wheel::expire`] whose `now` has reached them.
//!
//! Catching up after a pause costs one step per occupied second plus one per occupied block
//! crossed: empty seconds are skipped with an occupancy bitmap, empty blocks with a second
//! bitmap, so hours of silence cost a few hundred steps, not one per second.
//!
//! Pure: `now` and deadlines are seconds given by the caller; nothing reads a clock.

/// Seconds per level-0 list is 1; this many lists (bits).
const L0_BITS: u32 = 10;
const L0: usize = 1 << L0_BITS;
const MASK0: u64 = L0 as u64 - 1;
/// Level-1 lists (bits); each covers one level-0 block of 1024 s.
const L1_BITS: u32 = 8;
const L1: usize = 1 << L1_BITS;
const MASK1: u64 = L1 as u64 - 1;
/// Seconds per rotation of level 1 (2^18 s, 72.8 h).
const ROT_BITS: u32 = L0_BITS + L1_BITS;
const ROT_MASK: u64 = (1 << ROT_BITS) - 1;

/// List ids: 0..L0 level 0, L0..L0+L1 level 1, then far and due.
const FAR: u32 = (L0 + L1) as u32;
const DUE: u32 = FAR + 1;
const LISTS: usize = L0 + L1 + 2;

/// No node (end of a list).
const NIL: u32 = u32::MAX;
/// In `prev`: the node is the first of list `prev & !HEAD`.
const HEAD: u32 = 1 << 31;
/// In `prev`: the node is in no list.
const UNLINKED: u32 = u32::MAX;

/// Largest usable slot number.
pub const MAX_SLOT: u32 = HEAD - 1;
/// Times and deadlines are clamped to this (far beyond any real clock; keeps `+ 1` safe).
pub const MAX_TIME: u64 = 1 << 62;

#[derive(Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    deadline: u64,
}

const FREE_NODE: Node = Node {
    prev: UNLINKED,
    next: NIL,
    deadline: 0,
};

/// Deadlines of `u32` slots. See the module doc.
pub struct Wheel {
    nodes: Vec<Node>,
    heads: Box<[u32]>,
    /// Bit per level-0 list: non-empty.
    occ0: [u64; L0 / 64],
    /// Bit per level-1 list: non-empty.
    occ1: [u64; L1 / 64],
    /// Every deadline before `cursor` has been handed out (or waits in the due list).
    cursor: u64,
    len: usize,
}

impl std::fmt::Debug for Wheel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wheel")
            .field("cursor", &self.cursor)
            .field("len", &self.len)
            .finish()
    }
}

impl Wheel {
    /// An empty wheel whose first [`Wheel::expire`] starts at `now_secs`.
    pub fn new(now_secs: u64) -> Wheel {
        Wheel {
            nodes: Vec::new(),
            heads: vec![NIL; LISTS].into_boxed_slice(),
            occ0: [0; L0 / 64],
            occ1: [0; L1 / 64],
            cursor: now_secs.min(MAX_TIME),
            len: 0,
        }
    }

    /// Room for slots `0..slots` without reallocating.
    pub fn reserve(&mut self, slots: usize) {
        self.nodes.reserve(slots.saturating_sub(self.nodes.len()));
    }

    /// Deadlines scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves the cursor of an empty wheel to `now_secs` (no effect when something is
    /// scheduled): a wheel idle for days does not walk those days on its next use.
    pub fn reset(&mut self, now_secs: u64) {
        if self.len == 0 {
            self.cursor = now_secs.min(MAX_TIME);
        }
    }

    /// The deadline of `slot`, if scheduled.
    pub fn deadline(&self, slot: u32) -> Option<u64> {
        let n = self.nodes.get(slot as usize)?;
        (n.prev != UNLINKED).then_some(n.deadline)
    }

    /// Schedules `slot` at `deadline_secs`, replacing its previous deadline. O(1). A deadline
    /// already past is handed out by the next [`Wheel::expire`] whose `now` reaches it.
    ///
    /// # Panics
    /// If `slot > MAX_SLOT` (a programming error: slots are dense indexes).
    pub fn set(&mut self, slot: u32, deadline_secs: u64) {
        assert!(slot <= MAX_SLOT, "wheel slot {slot} out of range");
        let i = slot as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, FREE_NODE);
        }
        if self.nodes[i].prev != UNLINKED {
            self.unlink(slot);
        } else {
            self.len += 1;
        }
        let d = deadline_secs.min(MAX_TIME);
        self.nodes[i].deadline = d;
        let list = self.list_for(d);
        self.link(list, slot);
    }

    /// Unschedules `slot`; true when it was scheduled. O(1).
    pub fn cancel(&mut self, slot: u32) -> bool {
        match self.nodes.get(slot as usize) {
            Some(n) if n.prev != UNLINKED => {
                self.unlink(slot);
                self.len -= 1;
                true
            }
            _ => false,
        }
    }

    /// Appends to `out` every slot whose deadline is at or before `now_secs` and unschedules
    /// it; returns how many.
    pub fn expire(&mut self, now_secs: u64, out: &mut Vec<u32>) -> usize {
        let before = out.len();
        self.expire_max(now_secs, usize::MAX, out);
        out.len() - before
    }

    /// [`Wheel::expire`], but hands out at most `max` slots; returns false when it stopped
    /// because of `max` (call again: the rest is handed out in deadline order, roughly).
    pub fn expire_max(&mut self, now_secs: u64, max: usize, out: &mut Vec<u32>) -> bool {
        let now = now_secs.min(MAX_TIME);
        let mut budget = max;
        if self.heads[DUE as usize] != NIL && !self.drain_due(now, &mut budget, out) {
            return false;
        }
        while self.cursor <= now {
            if self.nothing_ahead() {
                // Only past deadlines (or nothing): no block needs entering.
                self.cursor = now + 1;
                break;
            }
            let c = self.cursor;
            if c & MASK0 == 0 {
                self.enter_block(c);
            }
            let block = c & !MASK0;
            if self.occ0.iter().all(|w| *w == 0) {
                self.cursor = self.skip_empty(c, now);
                continue;
            }
            let last = if now >> L0_BITS == c >> L0_BITS {
                now & MASK0
            } else {
                MASK0
            };
            match next_bit(&self.occ0, (c & MASK0) as usize, last as usize) {
                None => self.cursor = block + last + 1,
                Some(i) => {
                    self.cursor = block + i as u64;
                    if !self.drain_list(i as u32, &mut budget, out) {
                        return false;
                    }
                    self.cursor += 1;
                }
            }
        }
        true
    }

    /// True when no deadline is at or after the cursor.
    fn nothing_ahead(&self) -> bool {
        self.heads[FAR as usize] == NIL
            && self.occ0.iter().all(|w| *w == 0)
            && self.occ1.iter().all(|w| *w == 0)
    }

    /// Where the cursor goes from `c` (level 0 empty, `c`'s block entered) when nothing can
    /// expire before the next occupied block: the next block with a level-1 list, or the next
    /// rotation when there is none, but never past `now + 1`.
    fn skip_empty(&self, c: u64, now: u64) -> u64 {
        let rotation = c & !ROT_MASK;
        let b = ((c >> L0_BITS) & MASK1) as usize;
        let target = match (b + 1 < L1)
            .then(|| next_bit(&self.occ1, b + 1, L1 - 1))
            .flatten()
        {
            Some(nb) => rotation + ((nb as u64) << L0_BITS),
            None => rotation + (1 << ROT_BITS),
        };
        // Landing on `now + 1` inside a block is safe: every block before `target` has an
        // empty level-1 list, and a rotation start is never jumped over (target <= it).
        target.min(now + 1)
    }

    /// The cursor has reached the first second of a block: at a rotation start, sort the far
    /// list again; move the block's level-1 list down to level 0. Idempotent.
    fn enter_block(&mut self, c: u64) {
        if c & ROT_MASK == 0 && self.heads[FAR as usize] != NIL {
            self.replace_list(FAR);
        }
        let b = (c >> L0_BITS) & MASK1;
        let list = L0 as u32 + b as u32;
        if self.heads[list as usize] != NIL {
            self.replace_list(list);
        }
    }

    /// Unlinks every node of `list` and links each where its deadline belongs now.
    fn replace_list(&mut self, list: u32) {
        let mut n = self.heads[list as usize];
        while n != NIL {
            let next = self.nodes[n as usize].next;
            self.unlink(n);
            let to = self.list_for(self.nodes[n as usize].deadline);
            self.link(to, n);
            n = next;
        }
    }

    /// Hands out the due list's entries at or before `now`; false when the budget ran out.
    fn drain_due(&mut self, now: u64, budget: &mut usize, out: &mut Vec<u32>) -> bool {
        let mut n = self.heads[DUE as usize];
        while n != NIL {
            let next = self.nodes[n as usize].next;
            if self.nodes[n as usize].deadline <= now {
                if *budget == 0 {
                    return false;
                }
                *budget -= 1;
                self.unlink(n);
                self.len -= 1;
                out.push(n);
            }
            n = next;
        }
        true
    }

    /// Hands out the whole level-0 `list`; false when the budget ran out first.
    fn drain_list(&mut self, list: u32, budget: &mut usize, out: &mut Vec<u32>) -> bool {
        loop {
            let n = self.heads[list as usize];
            if n == NIL {
                return true;
            }
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            self.unlink(n);
            self.len -= 1;
            out.push(n);
        }
    }

    fn list_for(&self, d: u64) -> u32 {
        let c = self.cursor;
        if d < c {
            DUE
        } else if d >> L0_BITS == c >> L0_BITS {
            (d & MASK0) as u32
        } else if d >> ROT_BITS == c >> ROT_BITS {
            L0 as u32 + ((d >> L0_BITS) & MASK1) as u32
        } else {
            FAR
        }
    }

    fn link(&mut self, list: u32, slot: u32) {
        let l = list as usize;
        let head = self.heads[l];
        if head != NIL {
            self.nodes[head as usize].prev = slot;
        } else {
            self.mark(list, true);
        }
        let node = &mut self.nodes[slot as usize];
        node.prev = HEAD | list;
        node.next = head;
        self.heads[l] = slot;
    }

    /// Takes `slot` out of its list (it must be in one); leaves it marked unlinked.
    fn unlink(&mut self, slot: u32) {
        let Node { prev, next, .. } = self.nodes[slot as usize];
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        if prev & HEAD != 0 {
            let list = prev & !HEAD;
            self.heads[list as usize] = next;
            if next == NIL {
                self.mark(list, false);
            }
        } else {
            self.nodes[prev as usize].next = next;
        }
        let node = &mut self.nodes[slot as usize];
        node.prev = UNLINKED;
        node.next = NIL;
    }

    fn mark(&mut self, list: u32, on: bool) {
        let l = list as usize;
        let (words, i) = if l < L0 {
            (&mut self.occ0[..], l)
        } else if l < L0 + L1 {
            (&mut self.occ1[..], l - L0)
        } else {
            return;
        };
        let bit = 1u64 << (i % 64);
        if on {
            words[i / 64] |= bit;
        } else {
            words[i / 64] &= !bit;
        }
    }
}

/// The first set bit in `words` at index `from..=to`.
fn next_bit(words: &[u64], from: usize, to: usize) -> Option<usize> {
    if from > to {
        return None;
    }
    let mut w = from / 64;
    let mut bits = words[w] & (u64::MAX << (from % 64));
    loop {
        if bits != 0 {
            let i = w * 64 + bits.trailing_zeros() as usize;
            return (i <= to).then_some(i);
        }
        w += 1;
        if w * 64 > to {
            return None;
        }
        bits = words[w];
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const T0: u64 = 1_800_000_000;

    fn expired(w: &mut Wheel, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        w.expire(now, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn set_move_cancel_expire() {
        let mut w = Wheel::new(T0);
        w.set(0, T0 + 90);
        w.set(1, T0 + 90);
        w.set(2, T0 + 5000);
        w.set(7, T0 + 30);
        assert_eq!(w.len(), 4);
        assert_eq!(w.deadline(3), None);
        assert_eq!(w.deadline(7), Some(T0 + 30));
        assert_eq!(expired(&mut w, T0 + 29), Vec::<u32>::new());
        assert_eq!(expired(&mut w, T0 + 30), [7]);
        w.set(1, T0 + 120); // a heartbeat moves it
        assert!(w.cancel(2));
        assert!(!w.cancel(2));
        assert_eq!(expired(&mut w, T0 + 100), [0]);
        assert_eq!(expired(&mut w, T0 + 100), Vec::<u32>::new(), "once");
        assert_eq!(expired(&mut w, T0 + 10_000), [1]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_wait_for_their_now() {
        let mut w = Wheel::new(T0);
        assert!(expired(&mut w, T0 + 100).is_empty());
        w.set(1, T0 + 50); // already past the cursor
        w.set(2, T0 + 10);
        // A clock that stepped back: only what is due at that now.
        assert_eq!(expired(&mut w, T0 + 20), [2]);
        assert_eq!(expired(&mut w, T0 + 100), [1]);
    }

    #[test]
    fn long_deadlines_cascade_from_far_and_level_one() {
        let mut w = Wheel::new(T0);
        let far = T0 + 200 * 3600; // beyond a 72.8 h rotation
        let day = T0 + 25 * 3600 + 9000;
        w.set(1, far);
        w.set(2, day);
        w.set(3, T0 + 1025);
        let mut now = T0;
        let mut got = Vec::new();
        // Poll every 10 s for 9 days.
        while now < T0 + 9 * 86_400 {
            now += 10;
            for s in expired(&mut w, now) {
                got.push((s, now));
            }
        }
        let due = |d: u64| d.div_ceil(10) * 10 + (T0 % 10);
        assert_eq!(got, [(3, due(T0 + 1025)), (2, due(day)), (1, due(far))]);
    }

    #[test]
    fn catch_up_after_years_is_quick_and_exact() {
        let mut w = Wheel::new(T0);
        for i in 0..1000u32 {
            w.set(i, T0 + u64::from(i) * 997 * 3600);
        }
        let mut out = Vec::new();
        let start = std::time::Instant::now();
        // One call after 10 years of nothing, then a call per year.
        w.expire(T0 + 10 * 365 * 86_400, &mut out);
        assert_eq!(out.len(), (10 * 365 * 24) / 997 + 1);
        w.expire(T0 + 200 * 365 * 86_400, &mut out);
        assert_eq!(out.len(), 1000);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(w.is_empty());
    }

    #[test]
    fn expire_max_resumes() {
        let mut w = Wheel::new(T0);
        for i in 0..100u32 {
            w.set(i, T0 + 5 + u64::from(i % 3));
        }
        w.set(100, T0 + 1);
        let mut out = Vec::new();
        assert!(!w.expire_max(T0 + 10, 30, &mut out));
        assert_eq!(out.len(), 30);
        assert_eq!(out[0], 100, "earliest first");
        assert!(!w.expire_max(T0 + 10, 30, &mut out));
        assert!(!w.expire_max(T0 + 10, 30, &mut out));
        assert!(w.expire_max(T0 + 10, 30, &mut out));
        out.sort_unstable();
        out.dedup();
        assert_eq!(out.len(), 101);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u32, i64),
        Cancel(u32),
        Expire(i64),
        ExpireMax(i64, usize),
    }

    fn delta() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => 0i64..120,
            3 => 0i64..3000,
            2 => 0i64..400_000,
            1 => 0i64..2_000_000,
            1 => -3000i64..0,
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u32..48, delta()).prop_map(|(s, d)| Op::Set(s, d)),
            1 => (0u32..48).prop_map(Op::Cancel),
            3 => delta().prop_map(Op::Expire),
            1 => (delta(), 0usize..6).prop_map(|(d, m)| Op::ExpireMax(d, m)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any sequence of set / cancel / expire hands out exactly what a sorted map says.
        #[test]
        fn matches_a_sorted_map(start in 0u64..1_000_000, ops in prop::collection::vec(op(), 1..300)) {
            let t0 = T0 + start;
            let mut w = Wheel::new(t0);
            let mut model: BTreeMap<u32, u64> = BTreeMap::new();
            // The clock mostly moves forward; negative steps model a clock stepped back.
            let mut clock = t0 as i64;
            for op in ops {
                match op {
                    Op::Set(s, d) => {
                        let dl = (clock + d) as u64;
                        w.set(s, dl);
                        model.insert(s, dl);
                    }
                    Op::Cancel(s) => {
                        prop_assert_eq!(w.cancel(s), model.remove(&s).is_some());
                    }
                    Op::Expire(d) => {
                        clock += d;
                        let now = clock as u64;
                        let got = expired(&mut w, now);
                        let want: Vec<u32> =
                            model.iter().filter(|(_, dl)| **dl <= now).map(|(s, _)| *s).collect();
                        for s in &want {
                            model.remove(s);
                        }
                        prop_assert_eq!(got, want);
                    }
                    Op::ExpireMax(d, max) => {
                        clock += d;
                        let now = clock as u64;
                        let mut got = Vec::new();
                        let done = w.expire_max(now, max, &mut got);
                        prop_assert!(got.len() <= max);
                        for s in &got {
                            let dl = model.remove(s);
                            prop_assert!(dl.is_some_and(|dl| dl <= now), "slot {} not due", s);
                        }
                        if done {
                            prop_assert!(model.values().all(|dl| *dl > now));
                        }
                    }
                }
                prop_assert_eq!(w.len(), model.len());
                for s in 0..48 {
                    prop_assert_eq!(w.deadline(s), model.get(&s).copied());
                }
            }
        }
    }
}
