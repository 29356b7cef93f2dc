//! Supervision: when each device was last heard, and which devices have fallen silent.
//!
//! Any frame from a device (a NULL link test, a test, an alarm) proves it can reach vakt. The
//! last-heard time is kept in memory (heartbeats are the bulk of all traffic and are not
//! journaled one by one) and written to the store periodically and at shutdown
//! ([`LastHeard`]).
//!
//! [`Supervisor`] keeps every registered device's deadline: its supervision interval plus a
//! grace after it was last heard. Any frame moves the deadline ([`Supervisor::heard`], O(1):
//! a hashed lookup and the record's last-heard time). The [`wheel::Wheel`] holds, for each
//! device that is not silent, its deadline or an earlier one (lazy rescheduling): when the
//! entry comes due, [`Supervisor::poll`] re-arms it at the real deadline if the device was
//! heard since, and reports it silent otherwise. A device heartbeating every 30 s (deadline
//! 90 s) is thus moved in the wheel about once a minute by the ticker, not at every
//! heartbeat by the connection tasks, which only touch the index and the record.
//! [`Supervisor::poll`] reports the devices whose deadline passed (each silence once) and
//! the silent devices that were heard again. [`detector::Detector`] decides whether silences are lone faults
//! (individual technical Calls) or one telecom incident.
//!
//! Pure: every function takes `now`; nothing here reads a clock.
//!
//! Memory: devices live in 64 shards, each with its own lock, wheel and account index, so
//! connection tasks calling `heard` rarely meet. Per device: a 32-byte record, a 16-byte wheel
//! node, a 16-byte index entry for accounts of up to 15 hex digits (the account packed in a
//! `u64`; longer or non-hex accounts use a string map), and the subscriber id in a per-shard
//! text arena rebuilt at each [`Supervisor::sync`]. Telecom operators and areas are interned
//! to `u16` ids, so the counts per operator and area are arrays.

pub mod detector;
pub mod incidents;
pub mod round;
pub mod wheel;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::Device;
use crate::registers::devices::{DEVICE_TYPES, SUPERVISION_SECS};
use crate::telemetry::SupervisionMetrics;

use self::wheel::Wheel;

// ---- last heard ----

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

// ---- options ----

/// `[supervision]`: how long a device may stay silent before it counts as lost.
///
/// A device's interval is its registry `supervision_secs`, else the profile of its
/// `device_type`, else `default_interval_secs`, clamped to 20 s..=25 h. Its deadline is the
/// interval plus a grace of `max(grace_secs, interval * grace_pct / 100)` after it was last
/// heard (or after it was registered, if never heard).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionOptions {
    /// Interval for devices with neither `supervision_secs` nor a profile (25 h: the longest
    /// allowed, the usual daily test call of a carephone plus an hour).
    pub default_interval_secs: u32,
    /// Interval by device type (`carephone`, `pendant`, ... as in the registry's
    /// `device_type` column), used when the device has no `supervision_secs`.
    pub profiles: BTreeMap<String, u32>,
    /// Least grace after the interval, in seconds (a heartbeat delayed by a retry).
    pub grace_secs: u32,
    /// Grace as a percentage of the interval, when that is more than `grace_secs`.
    pub grace_pct: u32,
}

impl Default for SupervisionOptions {
    fn default() -> Self {
        SupervisionOptions {
            default_interval_secs: 90_000,
            profiles: BTreeMap::new(),
            grace_secs: 60,
            grace_pct: 10,
        }
    }
}

impl SupervisionOptions {
    /// Checks the values; the error lists every problem, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        let range = format!("{}..={}", SUPERVISION_SECS.start(), SUPERVISION_SECS.end());
        if !SUPERVISION_SECS.contains(&self.default_interval_secs) {
            errs.push(format!(
                "supervision.default_interval_secs must be {range} (20 s to 25 h)"
            ));
        }
        for (t, v) in &self.profiles {
            if !DEVICE_TYPES.contains(&t.as_str()) {
                errs.push(format!(
                    "supervision.profiles: unknown device type {t:?} (known: {})",
                    DEVICE_TYPES.join(", ")
                ));
            }
            if !SUPERVISION_SECS.contains(v) {
                errs.push(format!(
                    "supervision.profiles.{t} must be {range} (20 s to 25 h)"
                ));
            }
        }
        if self.grace_secs > 86_400 {
            errs.push("supervision.grace_secs must be at most 86400".into());
        }
        if self.grace_pct > 100 {
            errs.push("supervision.grace_pct must be 0..=100".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }

    /// The interval for a device with these registry fields, clamped to 20 s..=25 h.
    pub fn interval_for(&self, supervision_secs: Option<u32>, device_type: Option<&str>) -> u32 {
        let v = supervision_secs
            .or_else(|| device_type.and_then(|t| self.profiles.get(t).copied()))
            .unwrap_or(self.default_interval_secs);
        v.clamp(*SUPERVISION_SECS.start(), *SUPERVISION_SECS.end())
    }

    /// The grace after `interval_secs`: `max(grace_secs, interval * grace_pct / 100)`.
    pub fn grace_for(&self, interval_secs: u32) -> u32 {
        let pct = u64::from(interval_secs) * u64::from(self.grace_pct) / 100;
        self.grace_secs.max(u32::try_from(pct).unwrap_or(u32::MAX))
    }
}

// ---- what the supervisor reports ----

/// A device that fell silent (or, in [`Poll::restored`], that was heard again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Silence {
    /// Device account.
    pub account: String,
    /// The subscriber the device belongs to.
    pub subscriber: Option<String>,
    /// The device's telecom operator.
    pub telecom_operator: Option<String>,
    /// The device's area.
    pub area: Option<String>,
    /// When the device was last heard (`None`: never since it was registered). For a
    /// restoration: the frame that restored it.
    #[schema(value_type = Option<String>)]
    pub last_heard: Option<Timestamp>,
    /// A silence: the deadline the device missed. A restoration: when it was heard again.
    #[schema(value_type = String)]
    pub at: Timestamp,
}

/// What one [`Supervisor::poll`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Devices whose deadline passed, each reported once until it is heard again.
    pub silent: Vec<Silence>,
    /// Silent devices heard again since the last poll, each once. A device can be in both
    /// lists (heard, then silent again before this poll): apply `restored` first.
    pub restored: Vec<Silence>,
    /// True when a bound was reached (more than [`POLL_MAX`] changes): poll again soon.
    pub more: bool,
}

/// Devices supervised and silent in one group (a telecom operator or an area).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupCount {
    /// Devices supervised.
    pub supervised: u32,
    /// Of those, silent now (reported by a poll and not heard since).
    pub silent: u32,
}

impl GroupCount {
    /// Devices supervised and reporting (not silent).
    pub fn reporting(&self) -> u32 {
        self.supervised.saturating_sub(self.silent)
    }
}

/// Counts per telecom operator and per area (groups with no device left are omitted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Population {
    /// By telecom operator.
    pub operators: BTreeMap<String, GroupCount>,
    /// By area.
    pub areas: BTreeMap<String, GroupCount>,
}

/// One device's supervision state, for the device page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeviceStatus {
    /// Device account.
    pub account: String,
    /// The subscriber the device belongs to.
    pub subscriber: Option<String>,
    /// The device's telecom operator.
    pub telecom_operator: Option<String>,
    /// The device's area.
    pub area: Option<String>,
    /// Supervision interval in effect.
    pub interval_secs: u32,
    /// Grace after the interval.
    pub grace_secs: u32,
    /// When last heard (`None`: not since it was registered).
    #[schema(value_type = Option<String>)]
    pub last_heard: Option<Timestamp>,
    /// When it must be heard by; `None` while it is silent.
    #[schema(value_type = Option<String>)]
    pub next_deadline: Option<Timestamp>,
    /// The deadline it missed, while it is silent.
    #[schema(value_type = Option<String>)]
    pub silent_since: Option<Timestamp>,
}

/// What a [`Supervisor::sync`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Devices newly supervised.
    pub added: usize,
    /// Devices already supervised (their interval, operator, area, subscriber refreshed).
    pub kept: usize,
    /// Devices no longer in the registry.
    pub removed: usize,
}

// ---- the supervisor ----

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
