//! The lock-free priority queue of waiting Calls, and claim by compare-and-swap.
//!
//! Each Call has a [`Slot`]: its value (the engine keeps the Call there) and one `AtomicU64`
//! state [`Word`] that packs the state (idle, queued, claimed, closed), the level and lane it
//! is queued in, the owner (a small number the engine gives each operator) and a generation.
//! Every change of a Call's place in the queue is one compare-and-swap on that word, so two
//! operators can never both own a Call: exactly one CAS from "queued" to "claimed" wins.
//!
//! Per level there are two lock-free FIFOs ([`crossbeam_queue::SegQueue`]): the *head lane*
//! for Calls that must go first in their level (escalated by repeated presses, or released
//! back by an operator, keeping their age) and the *FIFO lane* for the rest. [`Queue::pop`]
//! takes from the most urgent level, head lane before FIFO lane, oldest push first.
//!
//! The lanes hold entries `(slot, generation)`. Moving a Call (claiming it with "take this",
//! re-queuing it at another level, closing it) does not search the lanes: it only changes
//! the word, and every move into "queued" takes a new generation. An entry whose generation
//! or state no longer matches is stale and is dropped when it is popped.

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

use crossbeam_queue::SegQueue;

use crate::model::Priority;

/// Number of levels (and of lane pairs).
pub const LEVELS: usize = Priority::LEVELS;

/// The largest owner number a word can hold (owners are `1..=MAX_OWNER`; 0 is "none").
pub const MAX_OWNER: u32 = (1 << OWNER_BITS) - 1;

const STATE_MASK: u64 = 0b11;
const HEAD_SHIFT: u32 = 2;
const LEVEL_SHIFT: u32 = 3;
const LEVEL_MASK: u64 = 0b111;
const OWNER_SHIFT: u32 = 6;
const OWNER_BITS: u32 = 22;
const GEN_SHIFT: u32 = OWNER_SHIFT + OWNER_BITS;
const GEN_MASK: u64 = (1 << (64 - GEN_SHIFT)) - 1;

/// Where a slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not queued and not claimed (a new slot).
    Idle,
    /// Waiting in a lane.
    Queued,
    /// Owned by one operator.
    Claimed,
    /// Closed: no further change.
    Closed,
}

/// A snapshot of a slot's state word.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Word(u64);

impl Word {
    fn pack(state: State, head: bool, level: u8, owner: u32, generation: u64) -> Word {
        let s = match state {
            State::Idle => 0,
            State::Queued => 1,
            State::Claimed => 2,
            State::Closed => 3,
        };
        Word(
            s | (u64::from(head) << HEAD_SHIFT)
                | ((u64::from(level) & LEVEL_MASK) << LEVEL_SHIFT)
                | ((u64::from(owner) & u64::from(MAX_OWNER)) << OWNER_SHIFT)
                | ((generation & GEN_MASK) << GEN_SHIFT),
        )
    }

    /// The state.
    pub fn state(self) -> State {
        match self.0 & STATE_MASK {
            0 => State::Idle,
            1 => State::Queued,
            2 => State::Claimed,
            _ => State::Closed,
        }
    }

    /// Queued in the head lane of its level (meaningful while queued).
    pub fn head(self) -> bool {
        (self.0 >> HEAD_SHIFT) & 1 == 1
    }

    /// The level it is (or was last) queued at.
    pub fn level(self) -> Priority {
        // Three bits: at most 7.
        Priority(((self.0 >> LEVEL_SHIFT) & LEVEL_MASK) as u8)
    }

    /// The owner while claimed (and the last owner once closed).
    pub fn owner(self) -> Option<u32> {
        match ((self.0 >> OWNER_SHIFT) & u64::from(MAX_OWNER)) as u32 {
            0 => None,
            o => Some(o),
        }
    }

    /// The generation: it grows by one with every move into the queued state.
    pub fn generation(self) -> u64 {
        self.0 >> GEN_SHIFT
    }

    fn with_state(self, state: State, owner: u32) -> Word {
        Word::pack(state, self.head(), self.level().0, owner, self.generation())
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Word")
            .field("state", &self.state())
            .field("level", &self.level().0)
            .field("head", &self.head())
            .field("owner", &self.owner())
            .field("generation", &self.generation())
            .finish()
    }
}

/// One Call's place: the state word and the engine's value.
pub struct Slot<T> {
    word: AtomicU64,
    value: T,
}

impl<T> Slot<T> {
    /// A new, idle slot.
    pub fn new(value: T) -> Arc<Slot<T>> {
        Arc::new(Slot {
            word: AtomicU64::new(Word::pack(State::Idle, false, 0, 0, 0).0),
            value,
        })
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The current state word.
    pub fn word(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
        self.word
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }
}

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("word", &self.word()).finish()
    }
}

/// A successful [`Queue::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This claim took the slot.
    Won,
    /// The owner already had it (claiming twice is not an error).
    AlreadyOwner,
}

/// Why a claim failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// Another owner has it.
    Owned(u32),
    /// It is closed.
    Closed,
}

/// Why an owner-only change failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerError {
    /// The slot is not claimed by this owner.
    NotOwner,
    /// It is closed.
    Closed,
}

struct Entry<T> {
    slot: Arc<Slot<T>>,
    generation: u64,
}

struct Lane<T> {
    head: SegQueue<Entry<T>>,
    fifo: SegQueue<Entry<T>>,
    /// Slots queued at this level. Raised before the CAS that queues a slot and lowered
    /// after the CAS that takes it out, so it never goes below zero.
    depth: AtomicIsize,
}

/// The priority queue: per level a head lane and a FIFO lane, both lock-free.
pub struct Queue<T> {
    lanes: [Lane<T>; LEVELS],
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("depths", &self.depths())
            .finish()
    }
}

fn level_index(level: Priority) -> usize {
    usize::from(level.0).min(LEVELS - 1)
}

impl<T> Queue<T> {
    /// An empty queue.
    pub fn new() -> Queue<T> {
        Queue {
            lanes: std::array::from_fn(|_| Lane {
                head: SegQueue::new(),
                fifo: SegQueue::new(),
                depth: AtomicIsize::new(0),
            }),
        }
    }

    /// Slots queued at `level` (levels above the last count as the last).
    pub fn depth(&self, level: Priority) -> usize {
        let d = self.lanes[level_index(level)].depth.load(Ordering::Acquire);
        usize::try_from(d).unwrap_or(0)
    }

    /// Slots queued at each level.
    pub fn depths(&self) -> [usize; LEVELS] {
        std::array::from_fn(|l| self.depth(Priority(l as u8)))
    }

    /// Moves `slot` into the queued state at `level` (head or FIFO lane) if `allow` accepts
    /// its current word; returns the word it replaced, or the one `allow` refused.
    fn to_queued(
        &self,
        slot: &Arc<Slot<T>>,
        level: Priority,
        head: bool,
        allow: impl Fn(Word) -> bool,
    ) -> Result<Word, Word> {
        let li = level_index(level);
        let lane = &self.lanes[li];
        lane.depth.fetch_add(1, Ordering::AcqRel);
        let mut cur = slot.word();
        loop {
            if !allow(cur) {
                lane.depth.fetch_sub(1, Ordering::AcqRel);
                return Err(cur);
            }
            let generation = cur.generation().wrapping_add(1) & GEN_MASK;
            let new = Word::pack(State::Queued, head, li as u8, 0, generation);
            match slot.cas(cur, new) {
                Ok(()) => {
                    if cur.state() == State::Queued {
                        self.lanes[level_index(cur.level())]
                            .depth
                            .fetch_sub(1, Ordering::AcqRel);
                    }
                    let entry = Entry {
                        slot: slot.clone(),
                        generation,
                    };
                    if head {
                        lane.head.push(entry);
                    } else {
                        lane.fifo.push(entry);
                    }
                    return Ok(cur);
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Queues an idle slot at the back of the FIFO lane of `level`. False if it was not idle.
    pub fn enqueue(&self, slot: &Arc<Slot<T>>, level: Priority) -> bool {
        self.to_queued(slot, level, false, |w| w.state() == State::Idle)
            .is_ok()
    }

    /// Queues an idle slot at the back of the head lane of `level` (a Call that must go first
    /// in its level: reopened). False if it was not idle.
    pub fn enqueue_head(&self, slot: &Arc<Slot<T>>, level: Priority) -> bool {
        self.to_queued(slot, level, true, |w| w.state() == State::Idle)
            .is_ok()
    }

    /// Moves a queued slot to the back of the head lane of `level` (an escalation). False
    /// if it was not queued (claimed, closed): then nothing changes.
    pub fn requeue(&self, slot: &Arc<Slot<T>>, level: Priority) -> bool {
        self.to_queued(slot, level, true, |w| w.state() == State::Queued)
            .is_ok()
    }

    /// The owner puts a claimed slot back, at the back of the head lane of `level`.
    pub fn release(
        &self,
        slot: &Arc<Slot<T>>,
        owner: u32,
        level: Priority,
    ) -> Result<(), OwnerError> {
        self.to_queued(slot, level, true, |w| {
            w.state() == State::Claimed && w.owner() == Some(owner)
        })
        .map(|_| ())
        .map_err(|w| match w.state() {
            State::Closed => OwnerError::Closed,
            _ => OwnerError::NotOwner,
        })
    }

    /// Takes the next slot for `owner` ("take next"): the most urgent level, head lane
    /// before FIFO lane, oldest first. Stale entries are dropped on the way.
    pub fn pop(&self, owner: u32) -> Option<Arc<Slot<T>>> {
        for lane in &self.lanes {
            for fifo in [&lane.head, &lane.fifo] {
                while let Some(e) = fifo.pop() {
                    let cur = e.slot.word();
                    if cur.state() != State::Queued || cur.generation() != e.generation {
                        continue;
                    }
                    // A failed CAS means another claim or a re-queue won: the entry is stale.
                    if e.slot
                        .cas(cur, cur.with_state(State::Claimed, owner))
                        .is_ok()
                    {
                        lane.depth.fetch_sub(1, Ordering::AcqRel);
                        return Some(e.slot);
                    }
                }
            }
        }
        None
    }

    /// Claims a queued (or idle) slot for `owner` ("take this"). Its entry in a lane becomes
    /// stale. Claiming a slot one already owns succeeds with [`Claimed::AlreadyOwner`].
    pub fn claim(&self, slot: &Arc<Slot<T>>, owner: u32) -> Result<Claimed, ClaimError> {
        let mut cur = slot.word();
        loop {
            match cur.state() {
                State::Closed => return Err(ClaimError::Closed),
                State::Claimed if cur.owner() == Some(owner) => return Ok(Claimed::AlreadyOwner),
                State::Claimed => return Err(ClaimError::Owned(cur.owner().unwrap_or(0))),
                State::Idle | State::Queued => {
                    match slot.cas(cur, cur.with_state(State::Claimed, owner)) {
                        Ok(()) => {
                            if cur.state() == State::Queued {
                                self.lanes[level_index(cur.level())]
                                    .depth
                                    .fetch_sub(1, Ordering::AcqRel);
                            }
                            return Ok(Claimed::Won);
                        }
                        Err(actual) => cur = actual,
                    }
                }
            }
        }
    }

    /// Closes a slot nobody has claimed (queued or idle), taking it out of its lane: for a
    /// Call that needs no operator after all (a silent device taken into an incident). False
    /// if it was claimed or closed: then nothing changes.
    pub fn withdraw(&self, slot: &Arc<Slot<T>>) -> bool {
        let mut cur = slot.word();
        loop {
            match cur.state() {
                State::Claimed | State::Closed => return false,
                State::Idle | State::Queued => {
                    match slot.cas(cur, cur.with_state(State::Closed, 0)) {
                        Ok(()) => {
                            if cur.state() == State::Queued {
                                self.lanes[level_index(cur.level())]
                                    .depth
                                    .fetch_sub(1, Ordering::AcqRel);
                            }
                            return true;
                        }
                        Err(actual) => cur = actual,
                    }
                }
            }
        }
    }

    /// Gives a claimed slot to another owner, `to`: only from `from` when it is given (an
    /// owner handing over), from whoever owns it otherwise (a supervisor reassigning).
    /// Returns the owner before. The slot stays out of the lanes.
    pub fn transfer(
        &self,
        slot: &Arc<Slot<T>>,
        from: Option<u32>,
        to: u32,
    ) -> Result<u32, OwnerError> {
        let mut cur = slot.word();
        loop {
            match (cur.state(), cur.owner()) {
                (State::Closed, _) => return Err(OwnerError::Closed),
                (State::Claimed, Some(o)) if from.is_none_or(|f| f == o) => {
                    match slot.cas(cur, cur.with_state(State::Claimed, to)) {
                        Ok(()) => return Ok(o),
                        Err(actual) => cur = actual,
                    }
                }
                _ => return Err(OwnerError::NotOwner),
            }
        }
    }

    /// The owner closes a claimed slot; no change is possible after.
    pub fn close(&self, slot: &Arc<Slot<T>>, owner: u32) -> Result<(), OwnerError> {
        let cur = slot.word();
        match cur.state() {
            State::Closed => Err(OwnerError::Closed),
            State::Claimed if cur.owner() == Some(owner) => slot
                .cas(cur, cur.with_state(State::Closed, owner))
                // Only the owner moves a claimed slot, so a failure means it closed meanwhile.
                .map_err(|_| OwnerError::Closed),
            _ => Err(OwnerError::NotOwner),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn word_packs_and_unpacks() {
        let w = Word::pack(State::Claimed, true, 4, MAX_OWNER, GEN_MASK);
        assert_eq!(w.state(), State::Claimed);
        assert!(w.head());
        assert_eq!(w.level(), Priority(4));
        assert_eq!(w.owner(), Some(MAX_OWNER));
        assert_eq!(w.generation(), GEN_MASK);
        let w = Word::pack(State::Idle, false, 0, 0, 0);
        assert_eq!((w.state(), w.head(), w.owner()), (State::Idle, false, None));
    }

    #[test]
    fn order_levels_head_fifo() {
        let q = Queue::new();
        let s: Vec<_> = (0..6).map(Slot::new).collect();
        assert!(q.enqueue(&s[0], Priority(2)));
        assert!(q.enqueue(&s[1], Priority(1)));
        assert!(q.enqueue(&s[2], Priority(1)));
        assert!(q.enqueue(&s[3], Priority(2)));
        assert!(q.enqueue(&s[4], Priority(2)));
        assert!(!q.enqueue(&s[4], Priority(2)), "already queued");
        // s[4] escalated to the head of level 1; s[3] to the head of level 2.
        assert!(q.requeue(&s[4], Priority(1)));
        assert!(q.requeue(&s[3], Priority(2)));
        assert_eq!(q.depths(), [0, 3, 2, 0, 0]);
        let order: Vec<i32> = std::iter::from_fn(|| q.pop(1).map(|s| *s.value())).collect();
        assert_eq!(order, [4, 1, 2, 3, 0]);
        assert_eq!(q.depths(), [0; LEVELS]);
        assert!(q.pop(1).is_none());
        let _ = &s[5];
    }

    #[test]
    fn claim_release_close() {
        let q = Queue::new();
        let a = Slot::new("a");
        let b = Slot::new("b");
        q.enqueue(&a, Priority(1));
        q.enqueue(&b, Priority(1));
        assert_eq!(q.claim(&b, 7), Ok(Claimed::Won));
        assert_eq!(q.claim(&b, 7), Ok(Claimed::AlreadyOwner));
        assert_eq!(q.claim(&b, 8), Err(ClaimError::Owned(7)));
        assert_eq!(q.release(&b, 8, Priority(1)), Err(OwnerError::NotOwner));
        assert_eq!(q.close(&b, 8), Err(OwnerError::NotOwner));
        assert_eq!(q.depths()[1], 1);
        // Released: before `a`, which is in the FIFO lane.
        assert_eq!(q.release(&b, 7, Priority(1)), Ok(()));
        assert_eq!(q.release(&b, 7, Priority(1)), Err(OwnerError::NotOwner));
        let first = q.pop(9).unwrap();
        assert_eq!(*first.value(), "b");
        assert!(!q.requeue(&b, Priority(0)), "claimed, not queued");
        assert_eq!(q.close(&b, 9), Ok(()));
        assert_eq!(q.close(&b, 9), Err(OwnerError::Closed));
        assert_eq!(q.claim(&b, 9), Err(ClaimError::Closed));
        assert_eq!(q.release(&b, 9, Priority(1)), Err(OwnerError::Closed));
        assert!(!q.requeue(&b, Priority(1)));
        assert_eq!(*q.pop(9).unwrap().value(), "a");
        assert!(q.pop(9).is_none());
        assert_eq!(q.depths(), [0; LEVELS]);
    }

    #[test]
    fn transfer_moves_a_claim_between_owners_only() {
        let q: Queue<u32> = Queue::new();
        let s = Slot::new(1);
        assert_eq!(q.transfer(&s, None, 2), Err(OwnerError::NotOwner), "idle");
        q.enqueue(&s, Priority(1));
        assert_eq!(q.transfer(&s, None, 2), Err(OwnerError::NotOwner), "queued");
        q.claim(&s, 1).unwrap();
        assert_eq!(q.transfer(&s, Some(3), 2), Err(OwnerError::NotOwner));
        assert_eq!(q.transfer(&s, Some(1), 2), Ok(1));
        assert_eq!(
            (s.word().state(), s.word().owner()),
            (State::Claimed, Some(2))
        );
        assert_eq!(q.depth(Priority(1)), 0);
        // From whoever owns it.
        assert_eq!(q.transfer(&s, None, 4), Ok(2));
        assert_eq!(q.release(&s, 2, Priority(1)), Err(OwnerError::NotOwner));
        q.release(&s, 4, Priority(1)).unwrap();
        assert_eq!(q.pop(5).map(|p| Arc::ptr_eq(&p, &s)), Some(true));
        q.close(&s, 5).unwrap();
        assert_eq!(q.transfer(&s, None, 2), Err(OwnerError::Closed));
    }

    #[test]
    fn withdraw_takes_only_unclaimed_slots_out() {
        let q: Queue<u32> = Queue::new();
        let a = Slot::new(1);
        let b = Slot::new(2);
        assert!(q.enqueue(&a, Priority(3)));
        assert!(q.enqueue(&b, Priority(3)));
        assert_eq!(q.depth(Priority(3)), 2);
        assert!(q.withdraw(&a));
        assert_eq!(q.depth(Priority(3)), 1);
        assert!(!q.withdraw(&a), "already closed");
        assert_eq!(q.claim(&b, 7), Ok(Claimed::Won));
        assert!(!q.withdraw(&b), "claimed by an operator: left alone");
        assert!(q.pop(8).is_none(), "the withdrawn entry is stale");
        assert_eq!(q.depths(), [0; LEVELS]);
    }

    #[test]
    fn stale_entries_are_skipped() {
        let q = Queue::new();
        let a = Slot::new(1);
        let b = Slot::new(2);
        q.enqueue(&a, Priority(3));
        q.enqueue(&b, Priority(3));
        // Moved around several times: one live entry, several stale ones.
        q.requeue(&a, Priority(2));
        q.requeue(&a, Priority(3));
        q.claim(&a, 1).unwrap();
        q.release(&a, 1, Priority(3)).unwrap();
        assert_eq!(q.depths(), [0, 0, 0, 2, 0]);
        assert_eq!(*q.pop(2).unwrap().value(), 1);
        assert_eq!(*q.pop(2).unwrap().value(), 2);
        assert!(q.pop(2).is_none());
    }

    /// Each test Call: who holds it now (checks that two owners never overlap).
    #[derive(Default)]
    struct Held {
        by: AtomicUsize,
        wins: AtomicUsize,
        done: AtomicBool,
    }

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn stress_one_owner_per_claim_and_nothing_lost() {
        const CALLS: usize = 3000;
        const THREADS: usize = 8;
        const OPS: usize = 40_000;
        let q: Arc<Queue<Held>> = Arc::new(Queue::new());
        let slots: Arc<Vec<_>> = Arc::new((0..CALLS).map(|_| Slot::new(Held::default())).collect());
        for (i, s) in slots.iter().enumerate() {
            assert!(q.enqueue(s, Priority((i % LEVELS) as u8)));
        }
        let released = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (1..=THREADS)
            .map(|t| {
                let (q, slots) = (q.clone(), slots.clone());
                let (released, closed) = (released.clone(), closed.clone());
                std::thread::spawn(move || {
                    let owner = t as u32;
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((t as u64) << 32);
                    for _ in 0..OPS {
                        let r = xorshift(&mut rng);
                        let pick = &slots[(r >> 8) as usize % CALLS];
                        let won = match r % 8 {
                            0..=3 => q.pop(owner),
                            4..=6 => match q.claim(pick, owner) {
                                Ok(Claimed::Won) => Some(pick.clone()),
                                Ok(Claimed::AlreadyOwner) => panic!("held across ops"),
                                Err(ClaimError::Owned(o)) => {
                                    assert_ne!(o, owner);
                                    None
                                }
                                Err(ClaimError::Closed) => None,
                            },
                            // An escalation of whatever is queued.
                            _ => {
                                q.requeue(pick, Priority((r >> 40) as u8 % 4));
                                None
                            }
                        };
                        let Some(s) = won else { continue };
                        let held = s.value();
                        assert_eq!(held.by.swap(t, Ordering::AcqRel), 0, "two owners");
                        held.wins.fetch_add(1, Ordering::Relaxed);
                        assert!(!held.done.load(Ordering::Acquire));
                        std::hint::spin_loop();
                        assert_eq!(held.by.swap(0, Ordering::AcqRel), t);
                        if (r >> 20) % 3 == 0 {
                            released.fetch_add(1, Ordering::Relaxed);
                            let level = Priority((r >> 24) as u8 % LEVELS as u8);
                            assert_eq!(q.release(&s, owner, level), Ok(()));
                        } else {
                            held.done.store(true, Ordering::Release);
                            assert_eq!(q.close(&s, owner), Ok(()));
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // Nothing lost: every Call not closed is still found by "take next", once.
        let mut drained = 0;
        while let Some(s) = q.pop(99) {
            assert!(!s.value().done.swap(true, Ordering::AcqRel), "popped twice");
            s.value().wins.fetch_add(1, Ordering::Relaxed);
            q.close(&s, 99).unwrap();
            drained += 1;
        }
        assert_eq!(closed.load(Ordering::Relaxed) + drained, CALLS);
        assert!(slots.iter().all(|s| s.value().done.load(Ordering::Relaxed)));
        let wins: usize = slots
            .iter()
            .map(|s| s.value().wins.load(Ordering::Relaxed))
            .sum();
        // Every claim episode was won exactly once: one per release, one per close.
        assert_eq!(wins, released.load(Ordering::Relaxed) + CALLS);
        assert_eq!(q.depths(), [0; LEVELS]);
        assert!(released.load(Ordering::Relaxed) > 0 && closed.load(Ordering::Relaxed) > 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Enqueue(usize, u8),
        Requeue(usize, u8),
        Claim(usize, u32),
        Pop(u32),
        Release(usize, u32, u8),
        Close(usize, u32),
    }

    const IDS: usize = 6;

    fn op() -> impl Strategy<Value = Op> {
        let id = 0..IDS;
        let lvl = 0..LEVELS as u8;
        let owner = 1..4u32;
        prop_oneof![
            (id.clone(), lvl.clone()).prop_map(|(i, l)| Op::Enqueue(i, l)),
            (id.clone(), lvl.clone()).prop_map(|(i, l)| Op::Requeue(i, l)),
            (id.clone(), owner.clone()).prop_map(|(i, o)| Op::Claim(i, o)),
            owner.clone().prop_map(Op::Pop),
            (id.clone(), owner.clone(), lvl).prop_map(|(i, o, l)| Op::Release(i, o, l)),
            (id, owner).prop_map(|(i, o)| Op::Close(i, o)),
        ]
    }

    /// The model: the state of each id, and per level a head list and a FIFO list of the
    /// ids queued there, in order.
    #[derive(Default)]
    struct Model {
        state: [(Option<State>, u32); IDS],
        lanes: [[Vec<usize>; 2]; LEVELS],
    }

    impl Model {
        fn st(&self, i: usize) -> State {
            self.state[i].0.unwrap_or(State::Idle)
        }
        fn unqueue(&mut self, i: usize) {
            for l in &mut self.lanes {
                for lane in l {
                    lane.retain(|&x| x != i);
                }
            }
        }
        fn queue(&mut self, i: usize, level: u8, head: bool) {
            self.unqueue(i);
            self.state[i] = (Some(State::Queued), 0);
            self.lanes[usize::from(level)][usize::from(!head)].push(i);
        }
        fn claim(&mut self, i: usize, o: u32) {
            self.unqueue(i);
            self.state[i] = (Some(State::Claimed), o);
        }
        fn depths(&self) -> [usize; LEVELS] {
            std::array::from_fn(|l| self.lanes[l][0].len() + self.lanes[l][1].len())
        }
    }

    proptest! {
        #[test]
        fn queue_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
            let q: Queue<usize> = Queue::new();
            let slots: Vec<_> = (0..IDS).map(Slot::new).collect();
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Enqueue(i, l) => {
                        let ok = m.st(i) == State::Idle;
                        prop_assert_eq!(q.enqueue(&slots[i], Priority(l)), ok);
                        if ok { m.queue(i, l, false); }
                    }
                    Op::Requeue(i, l) => {
                        let ok = m.st(i) == State::Queued;
                        prop_assert_eq!(q.requeue(&slots[i], Priority(l)), ok);
                        if ok { m.queue(i, l, true); }
                    }
                    Op::Claim(i, o) => {
                        let want = match m.state[i] {
                            (Some(State::Closed), _) => Err(ClaimError::Closed),
                            (Some(State::Claimed), x) if x == o => Ok(Claimed::AlreadyOwner),
                            (Some(State::Claimed), x) => Err(ClaimError::Owned(x)),
                            _ => Ok(Claimed::Won),
                        };
                        prop_assert_eq!(q.claim(&slots[i], o), want);
                        if want == Ok(Claimed::Won) { m.claim(i, o); }
                    }
                    Op::Pop(o) => {
                        let want = m.lanes.iter().flatten().find_map(|l| l.first().copied());
                        let got = q.pop(o).map(|s| *s.value());
                        prop_assert_eq!(got, want);
                        if let Some(i) = want { m.claim(i, o); }
                    }
                    Op::Release(i, o, l) => {
                        let want = match m.state[i] {
                            (Some(State::Closed), _) => Err(OwnerError::Closed),
                            (Some(State::Claimed), x) if x == o => Ok(()),
                            _ => Err(OwnerError::NotOwner),
                        };
                        prop_assert_eq!(q.release(&slots[i], o, Priority(l)), want);
                        if want.is_ok() { m.queue(i, l, true); }
                    }
                    Op::Close(i, o) => {
                        let want = match m.state[i] {
                            (Some(State::Closed), _) => Err(OwnerError::Closed),
                            (Some(State::Claimed), x) if x == o => Ok(()),
                            _ => Err(OwnerError::NotOwner),
                        };
                        prop_assert_eq!(q.close(&slots[i], o), want);
                        if want.is_ok() { m.state[i] = (Some(State::Closed), o); }
                    }
                }
                prop_assert_eq!(q.depths(), m.depths());
                for (i, s) in slots.iter().enumerate() {
                    prop_assert_eq!(s.word().state(), m.st(i));
                }
            }
        }
    }
}
