//! Every registered device's heartbeat deadline ([`Supervisor`]): its supervision interval
//! plus a grace after it was last heard, in sharded timer wheels; `heard` is O(1), `poll`
//! reports each silence once and the silent devices heard again. See the module doc of
//! [`super`] for the design and the memory per device.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use jiff::Timestamp;

use crate::model::Device;
use crate::telemetry::SupervisionMetrics;

use super::wheel::{self, Wheel};
use super::{
    DeviceStatus, GroupCount, LastHeard, Poll, Population, Silence, SupervisionOptions, SyncReport,
};

/// Shards of the supervisor (each a lock, a wheel and an index).
const SUP_SHARDS: usize = 64;
/// Most changes (silences plus restorations) one [`Supervisor::poll`] reports.
pub const POLL_MAX: usize = 16_384;
const POLL_MAX_PER_SHARD: usize = POLL_MAX / SUP_SHARDS;
/// Most wheel entries (silences and re-armed deadlines) one poll takes from a shard.
const POLL_WORK_PER_SHARD: usize = 4 * POLL_MAX_PER_SHARD;

// Record flags.
const LIVE: u8 = 1;
const HEARD: u8 = 2;
const SILENT: u8 = 4;
const RESTORED: u8 = 8;
const OTHER: u8 = 16;
const SEEN: u8 = 32;
const HAS_SUB: u8 = 64;

/// One supervised device (32 bytes).
#[derive(Clone, Copy, Debug, Default)]
struct Rec {
    /// The packed account ([`pack`]); with `OTHER`: `len << 32 | offset` in the text arena.
    key: u64,
    /// Last heard (with `HEARD`), else when registered: seconds since the epoch.
    anchor: u32,
    interval: u32,
    /// With `SILENT`: the deadline missed.
    silent_since: u32,
    sub_off: u32,
    sub_len: u16,
    op: u16,
    area: u16,
    flags: u8,
}

/// An account as the index keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Acct<'a> {
    /// Up to 15 hex digits, packed.
    Hex(u64),
    /// Anything else (16 digits, or not hex).
    Other(&'a str),
}

/// Interned names (telecom operators or areas): id 0 is "none".
#[derive(Debug, Default)]
struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u16>,
}

impl Interner {
    fn intern(&mut self, name: Option<&str>) -> u16 {
        let Some(n) = name else { return 0 };
        if let Some(id) = self.ids.get(n) {
            return *id;
        }
        // Names come from the registry; past 65535 distinct ones the rest count as none.
        let Ok(id) = u16::try_from(self.names.len() + 1) else {
            return 0;
        };
        self.names.push(n.to_owned());
        self.ids.insert(n.to_owned(), id);
        id
    }

    fn name(&self, id: u16) -> Option<&str> {
        let i = usize::from(id).checked_sub(1)?;
        self.names.get(i).map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct Names {
    operators: Interner,
    areas: Interner,
}

/// `BuildHasher` for packed accounts: a seeded 64-bit mix (SipHash costs more than the rest
/// of a heartbeat; the seed keeps the spread unpredictable).
#[derive(Clone, Copy, Debug)]
struct Seeded(u64);

#[derive(Debug)]
struct SeededHasher {
    seed: u64,
    h: u64,
}

impl BuildHasher for Seeded {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher { seed: self.0, h: 0 }
    }
}

impl Hasher for SeededHasher {
    fn finish(&self) -> u64 {
        self.h
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.h = mix(self.h ^ u64::from(*b) ^ self.seed);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.h = mix(x ^ self.seed);
    }
}

/// The splitmix64 finaliser.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Packs an account of 1 to 15 hex digits (either case) as `len << 60 | value`.
fn pack(account: &str) -> Option<u64> {
    let b = account.as_bytes();
    if b.is_empty() || b.len() > 15 {
        return None;
    }
    let mut v: u64 = 0;
    for c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v << 4 | u64::from(d);
    }
    Some((b.len() as u64) << 60 | v)
}

/// The account text of a packed key (upper case, leading zeros kept).
fn unpack(key: u64) -> String {
    let len = (key >> 60) as usize;
    format!("{:0len$X}", key & ((1 << 60) - 1))
}

fn secs(t: Timestamp) -> u32 {
    u32::try_from(t.as_second().max(0)).unwrap_or(u32::MAX)
}

fn ts(s: u64) -> Timestamp {
    // Any u32 second plus two 25 h spans is a valid Timestamp; MAX is unreachable.
    Timestamp::from_second(i64::try_from(s).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

struct Shard {
    hex: HashMap<u64, u32, Seeded>,
    other: HashMap<Box<str>, u32>,
    recs: Vec<Rec>,
    free: Vec<u32>,
    wheel: Wheel,
    /// Slots heard while silent, to report in the next poll (flag `RESTORED` set).
    restored: Vec<u32>,
    /// Subscriber ids (and `OTHER` accounts) of the live records; rebuilt at each sync.
    text: String,
    /// Per operator id: [supervised, silent].
    ops: Vec<[u32; 2]>,
    /// Per area id: [supervised, silent].
    areas: Vec<[u32; 2]>,
    supervised: u32,
    silent: u32,
}

/// A device wanted by a sync.
struct Want<'a> {
    d: &'a Device,
    acct: Acct<'a>,
    interval: u32,
    op: u16,
    area: u16,
}

/// Deadlines of every registered device; see the module doc. Shared (`&self`) by the
/// connection tasks (`heard`), the supervision ticker (`poll`) and imports (`sync`).
pub struct Supervisor {
    opts: SupervisionOptions,
    shard_seed: u64,
    shards: Box<[Mutex<Shard>]>,
    names: RwLock<Names>,
    metrics: SupervisionMetrics,
    /// Kept to the registry by every sync.
    last_heard: Option<std::sync::Arc<LastHeard>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// No devices yet; [`Supervisor::sync`] registers them.
    pub fn new(opts: SupervisionOptions) -> Supervisor {
        let r = RandomState::new();
        let shard_seed = r.hash_one(0x5eed_u64);
        let map_seed = r.hash_one(0xbeef_u64);
        let shards = (0..SUP_SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    hex: HashMap::with_hasher(Seeded(map_seed)),
                    other: HashMap::new(),
                    recs: Vec::new(),
                    free: Vec::new(),
                    wheel: Wheel::new(0),
                    restored: Vec::new(),
                    text: String::new(),
                    ops: Vec::new(),
                    areas: Vec::new(),
                    supervised: 0,
                    silent: 0,
                })
            })
            .collect();
        Supervisor {
            opts,
            shard_seed,
            shards,
            names: RwLock::new(Names::default()),
            metrics: SupervisionMetrics::new(),
            last_heard: None,
        }
    }

    /// Also keeps `last_heard`'s registered accounts to the devices of every
    /// [`Supervisor::sync`] (the registry at start and after each import).
    pub fn with_last_heard(mut self, last_heard: std::sync::Arc<LastHeard>) -> Supervisor {
        self.last_heard = Some(last_heard);
        self
    }

    /// The last-heard table kept to the registry, if any.
    pub fn last_heard(&self) -> Option<&std::sync::Arc<LastHeard>> {
        self.last_heard.as_ref()
    }

    /// The options in use.
    pub fn options(&self) -> &SupervisionOptions {
        &self.opts
    }

    /// The supervision interval of `device` (registry, profile, default; 20 s..=25 h).
    pub fn interval_of(&self, device: &Device) -> u32 {
        self.opts
            .interval_for(device.supervision_secs, device.device_type.as_deref())
    }

    fn locate<'a>(&self, account: &'a str) -> (usize, Acct<'a>) {
        let (h, acct) = match pack(account) {
            Some(k) => (mix(k ^ self.shard_seed), Acct::Hex(k)),
            None => {
                let mut h = self.shard_seed;
                for b in account.bytes() {
                    h = mix(h ^ u64::from(b));
                }
                (h, Acct::Other(account))
            }
        };
        ((h >> 58) as usize % SUP_SHARDS, acct)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // Shard code does not panic while holding the lock; recover the state anyway.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn names(&self) -> std::sync::RwLockReadGuard<'_, Names> {
        self.names.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers, updates and drops devices to match `devices` (the whole registry). A new
    /// device's deadline counts from `last_heard(account)`, or from `now` if never heard; a
    /// kept device keeps its last-heard time and silence, and gets its new interval at once.
    /// A device given twice (by line or receiver) is supervised once, at its shortest
    /// interval. `last_heard` is called for new devices only, with a shard lock held: it must
    /// not call back into the supervisor.
    pub fn sync(
        &self,
        devices: &[Device],
        last_heard: impl Fn(&str) -> Option<Timestamp>,
        now: Timestamp,
    ) -> SyncReport {
        if let Some(lh) = &self.last_heard {
            lh.sync(devices.iter().map(|d| d.account.as_str()));
        }
        let t = secs(now);
        let mut per_shard: Vec<Vec<Want<'_>>> = (0..SUP_SHARDS).map(|_| Vec::new()).collect();
        {
            let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
            for d in devices {
                let (i, acct) = self.locate(&d.account);
                per_shard[i].push(Want {
                    d,
                    acct,
                    interval: self.interval_of(d),
                    op: names.operators.intern(d.telecom_operator.as_deref()),
                    area: names.areas.intern(d.area.as_deref()),
                });
            }
        }
        let mut report = SyncReport::default();
        for (i, wants) in per_shard.iter_mut().enumerate() {
            wants.sort_unstable_by(|a, b| a.acct.cmp(&b.acct).then(a.interval.cmp(&b.interval)));
            wants.dedup_by(|later, earlier| later.acct == earlier.acct);
            let mut sh = self.lock(i);
            sh.sync(wants, &last_heard, t, &self.opts, &mut report);
        }
        report
    }

    /// Records a frame from `account` at `now`: its deadline moves to now + interval + grace;
    /// a silent device is restored (reported by the next poll). An earlier `now` than the
    /// last-heard time changes nothing. Returns false when the account is not supervised.
    /// O(1): the index, the record, and the wheel only when the device was silent.
    pub fn heard(&self, account: &str, now: Timestamp) -> bool {
        let (i, acct) = self.locate(account);
        let t = secs(now);
        let mut sh = self.lock(i);
        let Some(slot) = sh.find(acct) else {
            return false;
        };
        let rec = &mut sh.recs[slot as usize];
        // The anchor never moves back (the wheel may hold the deadline from it): an older
        // frame than the last one changes nothing; a first frame stamped before the device
        // was registered counts from the registration.
        if rec.flags & HEARD != 0 && t < rec.anchor {
            return true;
        }
        rec.anchor = rec.anchor.max(t);
        rec.flags |= HEARD;
        if rec.flags & SILENT == 0 {
            // Still in the wheel at an earlier deadline: re-armed by the poll that finds it
            // due (lazy rescheduling; the heartbeat does not touch the wheel).
            return true;
        }
        rec.flags &= !SILENT;
        let rec = *rec;
        sh.count_silent(rec.op, rec.area, false);
        if rec.flags & RESTORED == 0 {
            sh.recs[slot as usize].flags |= RESTORED;
            sh.restored.push(slot);
        }
        sh.schedule(slot, deadline_of(&rec, &self.opts), t);
        true
    }

    /// Reports the devices whose deadline is at or before `now` (each once, until heard
    /// again) and the silent devices heard since the last poll. Bounded: at most
    /// [`POLL_MAX`] changes, with [`Poll::more`] set when there are more. Also sets the
    /// supervision gauges.
    pub fn poll(&self, now: Timestamp) -> Poll {
        let t = secs(now);
        let names = self.names();
        let mut out = Poll::default();
        let mut slots = Vec::new();
        let (mut supervised, mut silent) = (0u64, 0u64);
        for i in 0..SUP_SHARDS {
            let mut sh = self.lock(i);
            let mut budget = POLL_MAX_PER_SHARD;
            while budget > 0 {
                let Some(slot) = sh.restored.pop() else { break };
                budget -= 1;
                let rec = &mut sh.recs[slot as usize];
                if rec.flags & (LIVE | RESTORED) == LIVE | RESTORED {
                    rec.flags &= !RESTORED;
                    let rec = *rec;
                    out.restored
                        .push(sh.silence(&rec, &names, u64::from(rec.anchor)));
                }
            }
            out.more |= !sh.restored.is_empty();
            out.more |= !sh.expire(
                u64::from(t),
                &self.opts,
                &names,
                &mut slots,
                &mut out.silent,
            );
            supervised += u64::from(sh.supervised);
            silent += u64::from(sh.silent);
        }
        self.metrics.supervised.set(supervised as f64);
        self.metrics.silent.set(silent as f64);
        self.metrics.silences.increment(out.silent.len() as u64);
        self.metrics
            .restorations
            .increment(out.restored.len() as u64);
        out
    }

    /// Devices supervised.
    pub fn supervised(&self) -> usize {
        (0..SUP_SHARDS)
            .map(|i| self.lock(i).supervised as usize)
            .sum()
    }

    /// Devices silent now (reported by a poll, not heard since).
    pub fn silent(&self) -> usize {
        (0..SUP_SHARDS).map(|i| self.lock(i).silent as usize).sum()
    }

    /// Devices supervised and silent per telecom operator and per area.
    pub fn population(&self) -> Population {
        let names = self.names();
        let mut ops = vec![[0u32; 2]; names.operators.names.len() + 1];
        let mut areas = vec![[0u32; 2]; names.areas.names.len() + 1];
        for i in 0..SUP_SHARDS {
            let sh = self.lock(i);
            for (sum, c) in ops.iter_mut().zip(&sh.ops) {
                sum[0] += c[0];
                sum[1] += c[1];
            }
            for (sum, c) in areas.iter_mut().zip(&sh.areas) {
                sum[0] += c[0];
                sum[1] += c[1];
            }
        }
        let collect = |counts: &[[u32; 2]], interner: &Interner| -> BTreeMap<String, GroupCount> {
            counts
                .iter()
                .enumerate()
                .filter(|(_, c)| c[0] > 0)
                .filter_map(|(id, c)| {
                    let name = interner.name(u16::try_from(id).ok()?)?;
                    Some((
                        name.to_owned(),
                        GroupCount {
                            supervised: c[0],
                            silent: c[1],
                        },
                    ))
                })
                .collect()
        };
        Population {
            operators: collect(&ops, &names.operators),
            areas: collect(&areas, &names.areas),
        }
    }

    /// The supervision state of `account`, if supervised.
    pub fn device(&self, account: &str) -> Option<DeviceStatus> {
        let names = self.names();
        let (i, acct) = self.locate(account);
        let sh = self.lock(i);
        let slot = sh.find(acct)?;
        let rec = sh.recs[slot as usize];
        let silent = rec.flags & SILENT != 0;
        Some(DeviceStatus {
            account: sh.account_of(&rec),
            subscriber: sh.subscriber_of(&rec),
            telecom_operator: names.operators.name(rec.op).map(str::to_owned),
            area: names.areas.name(rec.area).map(str::to_owned),
            interval_secs: rec.interval,
            grace_secs: self.opts.grace_for(rec.interval),
            last_heard: (rec.flags & HEARD != 0).then(|| ts(u64::from(rec.anchor))),
            next_deadline: (!silent).then(|| ts(deadline_of(&rec, &self.opts))),
            silent_since: silent.then(|| ts(u64::from(rec.silent_since))),
        })
    }
}

/// When the device must have been heard by (the wheel holds this or an earlier time).
fn deadline_of(rec: &Rec, opts: &SupervisionOptions) -> u64 {
    u64::from(rec.anchor) + u64::from(rec.interval) + u64::from(opts.grace_for(rec.interval))
}

impl Shard {
    /// Takes the wheel's entries due at `now`: a device heard since its entry was set is
    /// re-armed at its real deadline; the others are silent from now on. False when a bound
    /// stopped it (at most [`POLL_MAX_PER_SHARD`] silences, [`POLL_WORK_PER_SHARD`] entries).
    fn expire(
        &mut self,
        now: u64,
        opts: &SupervisionOptions,
        names: &Names,
        slots: &mut Vec<u32>,
        out: &mut Vec<Silence>,
    ) -> bool {
        let (mut reported, mut work) = (0, 0);
        loop {
            let room = POLL_MAX_PER_SHARD - reported;
            if room == 0 || work >= POLL_WORK_PER_SHARD {
                return false;
            }
            slots.clear();
            let done = self.wheel.expire_max(now, room, slots);
            work += slots.len();
            for &slot in slots.iter() {
                let rec = self.recs[slot as usize];
                let deadline = deadline_of(&rec, opts);
                if deadline > now {
                    self.wheel.set(slot, deadline);
                    continue;
                }
                reported += 1;
                let r = &mut self.recs[slot as usize];
                r.flags |= SILENT;
                r.silent_since = u32::try_from(deadline).unwrap_or(u32::MAX);
                self.count_silent(rec.op, rec.area, true);
                out.push(self.silence(&rec, names, deadline));
            }
            if done {
                return true;
            }
        }
    }

    fn find(&self, acct: Acct<'_>) -> Option<u32> {
        match acct {
            Acct::Hex(k) => self.hex.get(&k).copied(),
            Acct::Other(a) => self.other.get(a).copied(),
        }
    }

    fn schedule(&mut self, slot: u32, deadline: u64, now: u32) {
        // An empty wheel's cursor may be far behind (no device yet, or all silent).
        self.wheel.reset(u64::from(now));
        self.wheel.set(slot, deadline);
    }

    fn text_at(&self, off: u32, len: usize) -> &str {
        let off = off as usize;
        self.text.get(off..off + len).unwrap_or("")
    }

    fn account_of(&self, rec: &Rec) -> String {
        if rec.flags & OTHER != 0 {
            self.text_at(rec.key as u32, (rec.key >> 32) as usize)
                .to_owned()
        } else {
            unpack(rec.key)
        }
    }

    fn subscriber_of(&self, rec: &Rec) -> Option<String> {
        (rec.flags & HAS_SUB != 0).then(|| {
            self.text_at(rec.sub_off, usize::from(rec.sub_len))
                .to_owned()
        })
    }

    fn silence(&self, rec: &Rec, names: &Names, at: u64) -> Silence {
        Silence {
            account: self.account_of(rec),
            subscriber: self.subscriber_of(rec),
            telecom_operator: names.operators.name(rec.op).map(str::to_owned),
            area: names.areas.name(rec.area).map(str::to_owned),
            last_heard: (rec.flags & HEARD != 0).then(|| ts(u64::from(rec.anchor))),
            at: ts(at),
        }
    }

    fn count_silent(&mut self, op: u16, area: u16, silent: bool) {
        let f = |c: &mut u32| {
            if silent {
                *c += 1
            } else {
                *c = c.saturating_sub(1)
            }
        };
        f(&mut self.silent);
        if let Some(c) = self.ops.get_mut(usize::from(op)) {
            f(&mut c[1]);
        }
        if let Some(c) = self.areas.get_mut(usize::from(area)) {
            f(&mut c[1]);
        }
    }

    /// Adds (`add`) or removes a record in the counts.
    fn count(&mut self, rec: &Rec, add: bool) {
        let s = u32::from(rec.flags & SILENT != 0);
        let apply = |c: &mut [u32; 2]| {
            if add {
                c[0] += 1;
                c[1] += s;
            } else {
                c[0] = c[0].saturating_sub(1);
                c[1] = c[1].saturating_sub(s);
            }
        };
        let (o, a) = (usize::from(rec.op), usize::from(rec.area));
        if self.ops.len() <= o {
            self.ops.resize(o + 1, [0; 2]);
        }
        if self.areas.len() <= a {
            self.areas.resize(a + 1, [0; 2]);
        }
        apply(&mut self.ops[o]);
        apply(&mut self.areas[a]);
        let mut total = [self.supervised, self.silent];
        apply(&mut total);
        [self.supervised, self.silent] = total;
    }

    /// Appends `s` to `text` (truncated at 65535 bytes, on a character boundary).
    fn push_text(text: &mut String, s: &str) -> (u32, u16) {
        let mut end = s.len().min(usize::from(u16::MAX));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let off = u32::try_from(text.len()).unwrap_or(u32::MAX);
        text.push_str(&s[..end]);
        (off, end as u16)
    }

    fn sync(
        &mut self,
        wants: &[Want<'_>],
        last_heard: &impl Fn(&str) -> Option<Timestamp>,
        now: u32,
        opts: &SupervisionOptions,
        report: &mut SyncReport,
    ) {
        for r in &mut self.recs {
            r.flags &= !SEEN;
        }
        let live = self.hex.len() + self.other.len();
        let grow = wants.len().saturating_sub(live);
        self.hex.reserve(grow);
        let spare = self.free.len() + self.recs.capacity() - self.recs.len();
        self.recs.reserve_exact(grow.saturating_sub(spare));
        self.wheel.reserve(self.recs.capacity());
        let mut text = String::with_capacity(self.text.len().max(64));
        for w in wants {
            let (sub_off, sub_len) = match &w.d.subscriber {
                Some(s) => Self::push_text(&mut text, s),
                None => (0, 0),
            };
            let key = match w.acct {
                Acct::Hex(k) => k,
                Acct::Other(a) => {
                    let (off, len) = Self::push_text(&mut text, a);
                    u64::from(len) << 32 | u64::from(off)
                }
            };
            let mut flags = LIVE | SEEN;
            if matches!(w.acct, Acct::Other(_)) {
                flags |= OTHER;
            }
            if w.d.subscriber.is_some() {
                flags |= HAS_SUB;
            }
            match self.find(w.acct) {
                Some(slot) => {
                    report.kept += 1;
                    let old = self.recs[slot as usize];
                    self.count(&old, false);
                    let rec = Rec {
                        key,
                        interval: w.interval,
                        sub_off,
                        sub_len,
                        op: w.op,
                        area: w.area,
                        flags: flags | (old.flags & (HEARD | SILENT | RESTORED)),
                        ..old
                    };
                    self.count(&rec, true);
                    self.recs[slot as usize] = rec;
                    // A longer interval is picked up lazily when the old deadline comes due.
                    let deadline = deadline_of(&rec, opts);
                    if rec.flags & SILENT == 0
                        && self.wheel.deadline(slot).is_none_or(|d| d > deadline)
                    {
                        self.schedule(slot, deadline, now);
                    }
                }
                None => {
                    report.added += 1;
                    let (anchor, heard) = match last_heard(&w.d.account) {
                        Some(t) => (secs(t), HEARD),
                        None => (now, 0),
                    };
                    let rec = Rec {
                        key,
                        anchor,
                        interval: w.interval,
                        silent_since: 0,
                        sub_off,
                        sub_len,
                        op: w.op,
                        area: w.area,
                        flags: flags | heard,
                    };
                    let slot = match self.free.pop() {
                        Some(s) => s,
                        None => {
                            self.recs.push(Rec::default());
                            u32::try_from(self.recs.len() - 1).unwrap_or(wheel::MAX_SLOT)
                        }
                    };
                    self.recs[slot as usize] = rec;
                    match w.acct {
                        Acct::Hex(k) => self.hex.insert(k, slot),
                        Acct::Other(a) => self.other.insert(a.into(), slot),
                    };
                    self.count(&rec, true);
                    self.schedule(slot, deadline_of(&rec, opts), now);
                }
            }
        }
        // Drop the devices no longer registered.
        let recs = &self.recs;
        self.other
            .retain(|_, s| recs[*s as usize].flags & SEEN != 0);
        for slot in 0..self.recs.len() {
            let rec = self.recs[slot];
            if rec.flags & LIVE == 0 || rec.flags & SEEN != 0 {
                continue;
            }
            report.removed += 1;
            self.count(&rec, false);
            if rec.flags & OTHER == 0 {
                self.hex.remove(&rec.key);
            }
            let slot = slot as u32;
            self.wheel.cancel(slot);
            self.recs[slot as usize] = Rec::default();
            self.free.push(slot);
        }
        text.shrink_to_fit();
        self.text = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_keeps_last_heard_to_the_registry() {
        let lh = std::sync::Arc::new(LastHeard::new());
        let s = Supervisor::new(SupervisionOptions::default()).with_last_heard(lh.clone());
        assert!(!lh.heard("1234", 1));
        s.sync(&[dev("1234", Some(30), "", "")], never, at(0));
        assert!(lh.heard("1234", 2));
        s.sync(&[dev("5678", Some(30), "", "")], never, at(0));
        assert!(!lh.heard("1234", 3));
        assert!(lh.heard("5678", 3));
    }

    const T0: i64 = 1_800_000_000;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(T0 + s).unwrap()
    }

    pub(crate) fn dev(account: &str, secs: Option<u32>, op: &str, area: &str) -> Device {
        Device {
            account: account.into(),
            line: None,
            receiver: None,
            key: None,
            key_format: None,
            subscriber: Some(format!("S-{account}")),
            supervision_secs: secs,
            telecom_operator: (!op.is_empty()).then(|| op.into()),
            area: (!area.is_empty()).then(|| area.into()),
            device_type: None,
            sip_user: None,
            sip_password: None,
            phone: None,
        }
    }

    fn never(_: &str) -> Option<Timestamp> {
        None
    }

    fn accounts(v: &[Silence]) -> Vec<&str> {
        let mut a: Vec<&str> = v.iter().map(|s| s.account.as_str()).collect();
        a.sort_unstable();
        a
    }

    #[test]
    fn record_is_small() {
        assert!(std::mem::size_of::<Rec>() <= 32);
    }

    #[test]
    fn pack_round_trips() {
        for a in [
            "123",
            "0001",
            "ABCDEF",
            "000000000000001",
            "FFFFFFFFFFFFFFF",
        ] {
            assert_eq!(unpack(pack(a).unwrap()), a);
        }
        assert_eq!(pack("abc"), pack("ABC"));
        assert_ne!(pack("0123"), pack("123"));
        assert_eq!(pack("1234567890ABCDEF"), None, "16 digits do not pack");
        assert_eq!(pack("12G4"), None);
        assert_eq!(pack(""), None);
    }

    #[test]
    fn options_defaults_profiles_and_clamp() {
        let mut o = SupervisionOptions::default();
        assert_eq!(o.interval_for(None, None), 90_000);
        assert_eq!(o.grace_for(90_000), 9_000);
        assert_eq!(o.grace_for(30), 60);
        o.profiles.insert("pendant".into(), 300);
        assert_eq!(o.interval_for(None, Some("pendant")), 300);
        assert_eq!(o.interval_for(Some(120), Some("pendant")), 120);
        assert_eq!(o.interval_for(Some(5), None), 20);
        assert_eq!(o.interval_for(Some(1_000_000), None), 90_000);
        assert!(o.validate().is_ok());
        o.profiles.insert("toaster".into(), 10);
        let e = o.validate().unwrap_err();
        assert!(
            e.contains("toaster") && e.contains("profiles.toaster"),
            "{e}"
        );
        let parsed: SupervisionOptions =
            toml::from_str("grace_secs = 30\n[profiles]\npendant = 600\n").unwrap();
        assert_eq!(parsed.grace_secs, 30);
        assert_eq!(parsed.profiles["pendant"], 600);
        assert_eq!(parsed.default_interval_secs, 90_000);
        assert!(toml::from_str::<SupervisionOptions>("grace = 3").is_err());
    }

    #[test]
    fn single_silent_device_after_interval_and_grace() {
        let s = Supervisor::new(SupervisionOptions::default());
        let r = s.sync(&[dev("1234", Some(30), "Telia", "Norr")], never, at(0));
        assert_eq!(
            r,
            SyncReport {
                added: 1,
                kept: 0,
                removed: 0
            }
        );
        assert_eq!(s.supervised(), 1);
        // Never heard: the deadline counts from registration, 30 + 60 s.
        assert_eq!(s.poll(at(89)), Poll::default());
        let p = s.poll(at(90));
        assert_eq!(p.silent.len(), 1);
        let x = &p.silent[0];
        assert_eq!(x.account, "1234");
        assert_eq!(x.subscriber.as_deref(), Some("S-1234"));
        assert_eq!(x.telecom_operator.as_deref(), Some("Telia"));
        assert_eq!(x.area.as_deref(), Some("Norr"));
        assert_eq!(x.last_heard, None);
        assert_eq!(x.at, at(90));
        assert_eq!(s.silent(), 1);
        // Reported once.
        assert!(s.poll(at(500)).silent.is_empty());
        let st = s.device("1234").unwrap();
        assert_eq!(st.silent_since, Some(at(90)));
        assert_eq!(st.next_deadline, None);
        assert_eq!((st.interval_secs, st.grace_secs), (30, 60));
    }

    #[test]
    fn any_frame_resets_and_restored_is_reported_once() {
        let s = Supervisor::new(SupervisionOptions::default());
        s.sync(&[dev("1234", Some(30), "Telia", "Norr")], never, at(0));
        assert!(s.heard("1234", at(80)));
        assert!(!s.heard("9999", at(80)), "not supervised");
        assert!(s.poll(at(169)).silent.is_empty());
        assert_eq!(s.device("1234").unwrap().next_deadline, Some(at(170)));
        assert_eq!(s.device("1234").unwrap().last_heard, Some(at(80)));
        // An older frame does not move the deadline back.
        s.heard("1234", at(10));
        assert_eq!(s.device("1234").unwrap().next_deadline, Some(at(170)));
        assert_eq!(s.poll(at(170)).silent.len(), 1);
        assert!(s.heard("1234", at(400)));
        assert_eq!(s.silent(), 0);
        let p = s.poll(at(401));
        assert!(p.silent.is_empty());
        assert_eq!(accounts(&p.restored), ["1234"]);
        assert_eq!(p.restored[0].at, at(400));
        assert_eq!(p.restored[0].last_heard, Some(at(400)));
        // Heard again while not silent: nothing to report.
        s.heard("1234", at(402));
        assert_eq!(s.poll(at(403)), Poll::default());
    }

    #[test]
    fn lower_case_frames_find_the_device() {
        let s = Supervisor::new(SupervisionOptions::default());
        s.sync(&[dev("00AB", Some(30), "", "")], never, at(0));
        assert!(s.heard("00ab", at(50)));
        assert_eq!(s.device("00ab").unwrap().account, "00AB");
    }

    #[test]
    fn restored_then_silent_again_before_the_poll() {
        let s = Supervisor::new(SupervisionOptions::default());
        s.sync(&[dev("1234", Some(30), "", "")], never, at(0));
        assert_eq!(s.poll(at(90)).silent.len(), 1);
        s.heard("1234", at(100));
        let p = s.poll(at(190));
        assert_eq!(accounts(&p.restored), ["1234"]);
        assert_eq!(accounts(&p.silent), ["1234"]);
        assert_eq!(p.silent[0].at, at(190));
    }

    #[test]
    fn last_heard_is_used_for_new_devices() {
        let s = Supervisor::new(SupervisionOptions::default());
        let lh = |a: &str| (a == "1111").then(|| at(-1000));
        s.sync(
            &[dev("1111", Some(30), "", ""), dev("2222", Some(30), "", "")],
            lh,
            at(0),
        );
        // 1111's deadline passed long ago: silent at the first poll.
        let p = s.poll(at(0));
        assert_eq!(accounts(&p.silent), ["1111"]);
        assert_eq!(p.silent[0].at, at(-910));
        assert_eq!(p.silent[0].last_heard, Some(at(-1000)));
        assert_eq!(accounts(&s.poll(at(90)).silent), ["2222"]);
    }

    #[test]
    fn sync_changes_interval_keeps_state_and_drops_devices() {
        let s = Supervisor::new(SupervisionOptions::default());
        let devs = vec![
            dev("1111", Some(30), "Telia", "Norr"),
            dev("2222", Some(30), "Telia", "Syd"),
            dev("3333", Some(30), "Tele2", "Syd"),
        ];
        s.sync(&devs, never, at(0));
        s.heard("1111", at(10));
        s.heard("2222", at(10));
        assert_eq!(accounts(&s.poll(at(90)).silent), ["3333"]);
        // 1111 gets a 1 h interval: grace max(60, 360) = 360.
        let devs2 = vec![
            dev("1111", Some(3600), "Telia", "Norr"),
            dev("2222", Some(30), "Telia", "Syd"),
            dev("3333", Some(30), "Tele3", "Syd"),
        ];
        let r = s.sync(&devs2, |_| panic!("only new devices are looked up"), at(95));
        assert_eq!(
            r,
            SyncReport {
                added: 0,
                kept: 3,
                removed: 0
            }
        );
        let st = s.device("1111").unwrap();
        assert_eq!(st.next_deadline, Some(at(10 + 3600 + 360)));
        assert_eq!(st.last_heard, Some(at(10)));
        // 3333 stays silent (not reported again), now counted under Tele3.
        assert_eq!(s.device("3333").unwrap().silent_since, Some(at(90)));
        let pop = s.population();
        assert_eq!(
            pop.operators["Tele3"],
            GroupCount {
                supervised: 1,
                silent: 1
            }
        );
        assert!(!pop.operators.contains_key("Tele2"));
        assert_eq!(
            pop.operators["Telia"],
            GroupCount {
                supervised: 2,
                silent: 0
            }
        );
        assert_eq!(
            pop.areas["Syd"],
            GroupCount {
                supervised: 2,
                silent: 1
            }
        );
        assert_eq!(accounts(&s.poll(at(100)).silent), ["2222"]);
        // Drop 2222 and 3333; a new device takes a free slot.
        let devs3 = vec![
            dev("1111", Some(3600), "Telia", "Norr"),
            dev("4444", None, "", ""),
        ];
        let r = s.sync(&devs3, never, at(200));
        assert_eq!(
            r,
            SyncReport {
                added: 1,
                kept: 1,
                removed: 2
            }
        );
        assert_eq!((s.supervised(), s.silent()), (2, 0));
        assert!(s.device("2222").is_none());
        assert!(!s.heard("3333", at(201)));
        let st = s.device("4444").unwrap();
        assert_eq!(st.interval_secs, 90_000);
        assert_eq!(st.next_deadline, Some(at(200 + 90_000 + 9_000)));
        assert_eq!(st.subscriber.as_deref(), Some("S-4444"));
        let pop = s.population();
        assert_eq!(pop.operators.len(), 1);
        assert_eq!(pop.areas.len(), 1);
    }

    #[test]
    fn a_device_given_twice_takes_the_shortest_interval() {
        let s = Supervisor::new(SupervisionOptions::default());
        let mut a = dev("1234", Some(600), "", "");
        a.line = Some("1".into());
        let b = dev("1234", Some(60), "", "");
        s.sync(&[a, b], never, at(0));
        assert_eq!(s.supervised(), 1);
        assert_eq!(s.device("1234").unwrap().interval_secs, 60);
    }

    #[test]
    fn long_and_odd_accounts() {
        let s = Supervisor::new(SupervisionOptions::default());
        let devs = vec![
            dev("1234567890ABCDEF", Some(30), "", ""),
            dev("ACCT-X", Some(30), "", ""),
            dev("0001", Some(30), "", ""),
        ];
        s.sync(&devs, never, at(0));
        assert!(s.heard("1234567890ABCDEF", at(50)));
        assert!(s.heard("ACCT-X", at(50)));
        assert!(!s.heard("1", at(50)), "0001 is not 1");
        assert_eq!(accounts(&s.poll(at(90)).silent), ["0001"]);
        assert_eq!(
            accounts(&s.poll(at(140)).silent),
            ["1234567890ABCDEF", "ACCT-X"]
        );
        assert_eq!(
            s.device("ACCT-X").unwrap().subscriber.as_deref(),
            Some("S-ACCT-X")
        );
        // Resync keeps them; dropping works for string-keyed accounts too.
        let r = s.sync(&devs[..1], never, at(150));
        assert_eq!(
            r,
            SyncReport {
                added: 0,
                kept: 1,
                removed: 2
            }
        );
        assert_eq!(
            s.device("1234567890ABCDEF").unwrap().account,
            "1234567890ABCDEF"
        );
        assert!(s.device("ACCT-X").is_none());
    }

    #[test]
    fn poll_is_bounded() {
        let s = Supervisor::new(SupervisionOptions::default());
        let n = POLL_MAX * 2 + 100;
        let devs: Vec<Device> = (0..n)
            .map(|i| dev(&format!("{i:06X}"), Some(30), "", ""))
            .collect();
        s.sync(&devs, never, at(0));
        let mut seen = std::collections::HashSet::new();
        let mut polls = 0;
        loop {
            let p = s.poll(at(100));
            polls += 1;
            assert!(p.silent.len() <= POLL_MAX);
            for x in p.silent {
                assert!(seen.insert(x.account), "reported twice");
            }
            if !p.more {
                break;
            }
            assert!(polls < 100);
        }
        assert_eq!(seen.len(), n);
        assert!(polls >= 3);
        assert_eq!(s.silent(), n);
    }

    #[test]
    fn heartbeats_are_rearmed_lazily_and_boundedly() {
        let s = Supervisor::new(SupervisionOptions::default());
        let n = POLL_WORK_PER_SHARD * SUP_SHARDS + 5000;
        let devs: Vec<Device> = (0..n)
            .map(|i| dev(&format!("{i:06X}"), Some(30), "", ""))
            .collect();
        s.sync(&devs, never, at(0));
        for d in &devs {
            assert!(s.heard(&d.account, at(50)));
        }
        // Every wheel entry (90) comes due; each device was heard since: re-armed, not silent.
        let mut polls = 0;
        loop {
            let p = s.poll(at(100));
            polls += 1;
            assert!(p.silent.is_empty());
            if !p.more {
                break;
            }
        }
        assert!(polls >= 2, "the work per poll is bounded");
        assert_eq!(s.device("000001").unwrap().next_deadline, Some(at(140)));
        let mut silent = 0;
        loop {
            let p = s.poll(at(140));
            silent += p.silent.len();
            if !p.more {
                break;
            }
        }
        assert_eq!(silent, n);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Heard(usize, i64),
        Poll(i64),
        Intervals(Vec<u32>),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        prop_oneof![4 => 0i64..10, 3 => 0i64..200, 2 => 0i64..10_000, 1 => 0i64..300_000]
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let interval = prop::sample::select(vec![20u32, 30, 60, 3600, 90_000]);
        prop_oneof![
            6 => (0usize..6, step()).prop_map(|(d, t)| Op::Heard(d, t)),
            3 => step().prop_map(Op::Poll),
            1 => prop::collection::vec(interval, 6).prop_map(Op::Intervals),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Heartbeats, polls and interval changes give exactly the silences and restorations
        /// of a direct model (deadline = last heard + interval + grace), lazy wheel or not.
        #[test]
        fn matches_a_direct_model(first in proptest::collection::vec(
            proptest::sample::select(vec![20u32, 30, 60, 3600, 90_000]), 6),
            ops in proptest::collection::vec(op(), 1..120)) {
            let o = SupervisionOptions::default();
            let s = Supervisor::new(o.clone());
            let devs = |iv: &[u32]| -> Vec<Device> {
                iv.iter().enumerate().map(|(i, v)| dev(&format!("{i:04}"), Some(*v), "", "")).collect()
            };
            s.sync(&devs(&first), never, at(0));
            // Model per device: interval, anchor, silent, restored pending.
            let mut m: Vec<(u32, i64, bool, bool)> = first.iter().map(|v| (*v, 0, false, false)).collect();
            let mut clock = 0i64;
            for op in ops {
                match op {
                    Op::Heard(d, dt) => {
                        clock += dt;
                        s.heard(&format!("{d:04}"), at(clock));
                        let e = &mut m[d];
                        e.1 = clock;
                        if e.2 {
                            e.2 = false;
                            e.3 = true;
                        }
                    }
                    Op::Intervals(iv) => {
                        s.sync(&devs(&iv), never, at(clock));
                        for (e, v) in m.iter_mut().zip(&iv) {
                            e.0 = *v;
                        }
                    }
                    Op::Poll(dt) => {
                        clock += dt;
                        let p = s.poll(at(clock));
                        proptest::prop_assert!(!p.more);
                        let mut want_r = Vec::new();
                        let mut want_s = Vec::new();
                        for (i, e) in m.iter_mut().enumerate() {
                            if std::mem::take(&mut e.3) {
                                want_r.push((format!("{i:04}"), at(e.1)));
                            }
                            let deadline = e.1 + i64::from(e.0) + i64::from(o.grace_for(e.0));
                            if !e.2 && deadline <= clock {
                                e.2 = true;
                                want_s.push((format!("{i:04}"), at(deadline)));
                            }
                        }
                        let mut got_r: Vec<_> = p.restored.iter().map(|x| (x.account.clone(), x.at)).collect();
                        let mut got_s: Vec<_> = p.silent.iter().map(|x| (x.account.clone(), x.at)).collect();
                        got_r.sort();
                        got_s.sort();
                        proptest::prop_assert_eq!(got_r, want_r);
                        proptest::prop_assert_eq!(got_s, want_s);
                    }
                }
                for (i, e) in m.iter().enumerate() {
                    let st = s.device(&format!("{i:04}")).unwrap();
                    let deadline = e.1 + i64::from(e.0) + i64::from(o.grace_for(e.0));
                    proptest::prop_assert_eq!(st.next_deadline, (!e.2).then(|| at(deadline)));
                }
                proptest::prop_assert_eq!(s.silent(), m.iter().filter(|e| e.2).count());
            }
        }
    }

    #[test]
    fn heard_from_many_threads() {
        let s = std::sync::Arc::new(Supervisor::new(SupervisionOptions::default()));
        let devs: Vec<Device> = (0..1000)
            .map(|i| dev(&format!("{i:04X}"), Some(30), "", ""))
            .collect();
        s.sync(&devs, never, at(0));
        let hs: Vec<_> = (0..4)
            .map(|k| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in (k..1000).step_by(4) {
                        assert!(s.heard(&format!("{i:04X}"), at(60)));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(s.poll(at(149)).silent.is_empty());
        assert_eq!(s.poll(at(150)).silent.len(), 1000);
    }
}
