//! Demo mode (`vakt serve --demo`): a small fictional municipality and a device simulator.
//!
//! [`seed`] fills an empty data directory with the people of Vaktby
//! (`config/demo-subscribers.csv`, [`SUBSCRIBERS_CSV`]), their devices
//! (`config/demo-devices.csv`, [`registry::DEMO_CSV`]) and two console users, `operator` and
//! `supervisor`, with random passwords shown once. A directory that holds any device,
//! subscriber or user is never touched. An admin is not seeded: `vakt users add` makes one.
//!
//! [`simulate`] then plays the demo fleet against vakt's own DC-09 TCP port, with real frames
//! and real ACKs: every device sends NULL heartbeats and now and then periodic tests (CID 602),
//! and at random (exponential) intervals one of them raises an alarm: mostly pendant presses
//! (CID 101), sometimes pressed again, medical alarms (CID 100), falls (CID 101 from a fall
//! detector), door sensor alarms (CID 150 from a door sensor), low batteries (CID 302 / 384)
//! and, rarely, a fire (CID 111 from a smoke detector). Many are restored (qualifier 3) a
//! few minutes later. Encrypted devices send encrypted frames with their demo keys. Everything
//! here is fictional: the names, addresses, phone numbers (from the Swedish regulator's ranges
//! for fiction) and personal numbers (birth numbers 980-999, a test series).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::crypto::Key;
use crate::codec::dc09::{self, FrameSpec, Pad, Scan, Token};
use crate::model::{Device, Role};
use crate::registry;
use crate::store::{Store, StoreError, UserRecord};

/// The demo subscribers: 36 fictional people of the municipality of Vaktby.
pub const SUBSCRIBERS_CSV: &str = include_str!("../config/demo-subscribers.csv");

/// Name of the seeded operator user.
pub const OPERATOR_USER: &str = "operator";

/// Name of the seeded supervisor user.
pub const SUPERVISOR_USER: &str = "supervisor";

/// The console users [`seed`] made, each as (name, password). The passwords are random and
/// stored only as hashes: show them once (the `Debug` output leaves them out).
#[derive(Clone, PartialEq, Eq)]
pub struct DemoUsers {
    /// The `operator` user (role operator): takes and handles Calls.
    pub operator: (String, String),
    /// The `supervisor` user (role supervisor): also edits subscribers, reads the audit log.
    pub supervisor: (String, String),
}

impl fmt::Debug for DemoUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Passwords are secrets: never in Debug output.
        f.debug_struct("DemoUsers")
            .field("operator", &self.operator.0)
            .field("supervisor", &self.supervisor.0)
            .finish_non_exhaustive()
    }
}

/// Why the demo could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded demo subscribers do not import (a bug in the demo data).
    #[error("demo subscribers: {0}")]
    Subscribers(#[from] crate::subscribers::ImportError),
    /// The embedded demo devices do not import (a bug in the demo data).
    #[error("demo devices: {0}")]
    Devices(#[from] registry::ImportError),
    /// Reading or writing the store failed.
    #[error("seeding the demo: {0}")]
    Store(#[from] StoreError),
    /// A demo password could not be hashed.
    #[error("demo user: {0}")]
    Password(#[from] crate::console::auth::AuthError),
}

/// Seeds the demo municipality into an empty data directory: the subscribers of
/// [`SUBSCRIBERS_CSV`], the devices of [`registry::DEMO_CSV`], and the users
/// [`OPERATOR_USER`] and [`SUPERVISOR_USER`] with random passwords (`now` is their creation
/// time). Returns the users with their passwords, or `None` (nothing written) when the
/// directory already holds any device, subscriber or user.
///
/// Everything is parsed and hashed before the first write; subscribers, devices and users
/// are then written in that order.
///
/// # Errors
/// [`DemoError`] when the store cannot be read or written (or, a bug, the demo data does
/// not import).
pub fn seed(store: &Store, now: jiff::Timestamp) -> Result<Option<DemoUsers>, DemoError> {
    if !store.devices()?.is_empty() || store.subscriber_count()? > 0 || store.user_count()? > 0 {
        return Ok(None);
    }
    let subscribers = crate::subscribers::parse_csv(SUBSCRIBERS_CSV.as_bytes())?;
    let devices = registry::parse_csv(registry::DEMO_CSV.as_bytes())?;
    let mut rng = rand::rng();
    let users = DemoUsers {
        operator: (OPERATOR_USER.to_owned(), password(&mut rng)),
        supervisor: (SUPERVISOR_USER.to_owned(), password(&mut rng)),
    };
    let records = [
        (&users.operator, Role::Operator),
        (&users.supervisor, Role::Supervisor),
    ]
    .into_iter()
    .map(|((name, pw), role)| {
        Ok(UserRecord {
            name: name.clone(),
            role,
            password_hash: crate::console::auth::hash_password(pw)?,
            created_at: now,
        })
    })
    .collect::<Result<Vec<_>, DemoError>>()?;
    store.upsert_subscribers(&subscribers)?;
    store.upsert_devices(&devices)?;
    for r in &records {
        store.put_user(r)?;
    }
    tracing::info!(
        subscribers = subscribers.len(),
        devices = devices.len(),
        "demo: seeded the municipality of Vaktby"
    );
    Ok(Some(users))
}

/// A random password: 16 letters and digits (no look-alikes such as `l`, `1`, `O`, `0`) in
/// four groups, e.g. `kT4m-Qx7a-Lr2p-Zc9w` (about 92 bits).
fn password(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut s = String::with_capacity(19);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        let c = ALPHABET
            .get(rng.random_range(0..ALPHABET.len()))
            .copied()
            .unwrap_or(b'x');
        s.push(char::from(c));
    }
    s
}

// ---------------------------------------------------------------------------------------
// The device simulator
// ---------------------------------------------------------------------------------------

/// How busy the simulated fleet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// Mean time between two alarms of the whole fleet (exponentially distributed).
    /// Follow-ups (a repeated press 20-40 s later, restores minutes later) are scaled down
    /// with it when it is shorter than the default 45 s.
    pub mean_alarm_interval: Duration,
    /// Time between two NULL heartbeats of one device (shorter when a device's supervision
    /// interval asks for it: at most two thirds of it). Every 20th is a periodic test
    /// (CID 602) instead.
    pub heartbeat_interval: Duration,
    /// Seed of the random choices (which device, what alarm, when); the same seed gives the
    /// same story, network timing aside.
    pub seed: u64,
}

impl Default for SimOptions {
    /// An alarm every 45 s on average, heartbeats every 60 s, a random seed.
    fn default() -> Self {
        SimOptions {
            mean_alarm_interval: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(60),
            seed: rand::random(),
        }
    }
}

/// The default mean alarm interval: follow-up delays are given for it.
const REFERENCE_INTERVAL: Duration = Duration::from_secs(45);
/// Shortest interval accepted (a bound against a busy loop).
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest interval accepted (a bound against overflowing the clock).
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// Connect and write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the answer to a frame.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait before reconnecting after an error.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Tries of an alarm frame before the simulator gives it up.
const ALARM_ATTEMPTS: u32 = 6;
/// Every this many heartbeats, a device sends a periodic test instead.
const TEST_EVERY: u64 = 20;
/// Most follow-ups waiting at once.
const MAX_PENDING: usize = 512;
/// Longest answer buffered before the connection is dropped.
const MAX_REPLY_BYTES: usize = 2 * dc09::MAX_FRAME_BYTES;

/// Runs the demo fleet against vakt's DC-09 TCP listener at `target` (use a loopback
/// address) until `shutdown` is cancelled; returns promptly then. Never panics; network
/// errors are retried with backoff and logged at debug. Each alarm is logged once at info
/// (`demo: Åsa Öberg pressed her alarm`).
///
/// The fleet is the embedded demo data ([`registry::DEMO_CSV`], names from
/// [`SUBSCRIBERS_CSV`]), whatever the store holds: run it only where the demo is seeded.
pub async fn simulate(target: SocketAddr, opts: SimOptions, shutdown: CancellationToken) {
    let fleet = fleet(&opts);
    if fleet.is_empty() {
        tracing::warn!("demo: no demo devices, the simulator does not run");
        return;
    }
    tracing::info!(
        devices = fleet.len(),
        %target,
        "demo: simulating the Vaktby device fleet"
    );
    let mut tasks = JoinSet::new();
    let mut senders = Vec::with_capacity(fleet.len());
    let mut root = SmallRng::seed_from_u64(opts.seed);
    let roles = Roles::of(&fleet);
    for (i, dev) in fleet.iter().cloned().enumerate() {
        let (tx, rx) = mpsc::channel(8);
        senders.push(tx);
        let rng = SmallRng::seed_from_u64(root.random::<u64>());
        let token = shutdown.clone();
        let phase = u64::try_from(i).unwrap_or(0) % TEST_EVERY;
        tasks.spawn(device_task(target, dev, rx, rng, phase, token));
    }
    let mut sched = Scheduler {
        fleet: &fleet,
        roles,
        senders: &senders,
        rng: root,
        pending: Vec::new(),
        mean: opts.mean_alarm_interval.clamp(MIN_INTERVAL, MAX_INTERVAL),
    };
    sched.run(&shutdown).await;
    // The scheduler returns only on shutdown, which every device task also watches.
    drop(senders);
    while tasks.join_next().await.is_some() {}
    tracing::debug!("demo: simulator stopped");
}

/// The first demo alarm comes at most this long after the start.
const FIRST_ALARM_WITHIN: Duration = Duration::from_secs(8);

/// What a simulated device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Carephone,
    FallDetector,
    SmokeDetector,
    DoorSensor,
    Other,
}

impl Kind {
    fn of(device_type: Option<&str>) -> Kind {
        match device_type {
            Some("carephone" | "pendant") | None => Kind::Carephone,
            Some("fall_detector") => Kind::FallDetector,
            Some("smoke_detector") => Kind::SmokeDetector,
            Some("door_sensor") => Kind::DoorSensor,
            Some(_) => Kind::Other,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Kind::Carephone => "alarm phone",
            Kind::FallDetector => "fall detector",
            Kind::SmokeDetector => "smoke detector",
            Kind::DoorSensor => "door sensor",
            Kind::Other => "alarm panel",
        }
    }

    /// The zone the device reports in (the carephone itself is zone 1).
    fn zone(self) -> u16 {
        match self {
            Kind::Carephone => 1,
            Kind::FallDetector => 2,
            Kind::SmokeDetector => 3,
            Kind::DoorSensor => 4,
            Kind::Other => 5,
        }
    }
}

/// One simulated device.
#[derive(Clone)]
struct SimDevice {
    account: String,
    line: String,
    receiver: Option<String>,
    key: Option<Key>,
    kind: Kind,
    /// The subscriber's name (or the account when unknown).
    name: String,
    /// `her`, `his` or `their`.
    pronoun: &'static str,
    heartbeat: Duration,
}

/// The demo devices, with their subscribers' names.
fn fleet(opts: &SimOptions) -> Vec<SimDevice> {
    let devices = match registry::parse_csv(registry::DEMO_CSV.as_bytes()) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "demo: the demo devices do not parse");
            return Vec::new();
        }
    };
    let people: HashMap<String, (String, &'static str)> =
        match crate::subscribers::parse_csv(SUBSCRIBERS_CSV.as_bytes()) {
            Ok(subs) => subs
                .into_iter()
                .map(|s| {
                    let p = pronoun(&s.personal_number);
                    (s.id, (s.name, p))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "demo: the demo subscribers do not parse");
                HashMap::new()
            }
        };
    let hb = opts.heartbeat_interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    devices
        .into_iter()
        .map(|d: Device| {
            let (name, pronoun) = d
                .subscriber
                .as_ref()
                .and_then(|s| people.get(s).cloned())
                .unwrap_or_else(|| (format!("account {}", d.account), "their"));
            let heartbeat = match d.supervision_secs {
                Some(s) => hb
                    .min(Duration::from_millis(u64::from(s) * 2000 / 3))
                    .max(MIN_INTERVAL),
                None => hb,
            };
            SimDevice {
                kind: Kind::of(d.device_type.as_deref()),
                line: d.line.clone().unwrap_or_else(|| "0".to_owned()),
                receiver: d.receiver.clone(),
                key: d.key.clone(),
                account: d.account,
                name,
                pronoun,
                heartbeat,
            }
        })
        .collect()
}

/// `her` or `his` from a Swedish personal number (the second-to-last digit is odd for men),
/// `their` when it cannot be told.
fn pronoun(personal_number: &str) -> &'static str {
    let digits: Vec<u32> = personal_number
        .chars()
        .filter_map(|c| c.to_digit(10))
        .collect();
    match digits.len().checked_sub(2).and_then(|i| digits.get(i)) {
        Some(d) if d % 2 == 1 => "his",
        Some(_) => "her",
        None => "their",
    }
}

/// Indexes of the fleet by kind, to pick a device for a scenario.
struct Roles {
    carephones: Vec<usize>,
    fall: Vec<usize>,
    smoke: Vec<usize>,
    door: Vec<usize>,
}

impl Roles {
    fn of(fleet: &[SimDevice]) -> Roles {
        let of = |k: Kind| -> Vec<usize> {
            fleet
                .iter()
                .enumerate()
                .filter(|(_, d)| d.kind == k)
                .map(|(i, _)| i)
                .collect()
        };
        Roles {
            carephones: of(Kind::Carephone),
            fall: of(Kind::FallDetector),
            smoke: of(Kind::SmokeDetector),
            door: of(Kind::DoorSensor),
        }
    }
}

/// A Contact ID event: qualifier (1 new, 3 restore), code, zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cid {
    qualifier: u8,
    code: u16,
    zone: u16,
}

/// What the scheduler asks a device to send.
#[derive(Clone, Debug)]
struct Action {
    cid: Cid,
    /// The info line to log once it is sent (`None`: debug only).
    say: Option<String>,
}

/// Plans the alarms of the fleet and hands them to the device tasks.
struct Scheduler<'a> {
    fleet: &'a [SimDevice],
    roles: Roles,
    senders: &'a [mpsc::Sender<Action>],
    rng: SmallRng,
    /// Follow-ups: when, which device, what.
    pending: Vec<(Instant, usize, Action)>,
    mean: Duration,
}

impl Scheduler<'_> {
    async fn run(&mut self, shutdown: &CancellationToken) {
        // The first alarm comes soon, so someone who just started the demo sees one.
        let mut next_alarm = Instant::now() + self.exp_interval().min(FIRST_ALARM_WITHIN);
        loop {
            let wake = self
                .pending
                .iter()
                .map(|p| p.0)
                .min()
                .map_or(next_alarm, |t| t.min(next_alarm));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            let mut i = 0;
            while i < self.pending.len() {
                if self.pending.get(i).is_some_and(|p| p.0 <= now) {
                    let (_, dev, action) = self.pending.swap_remove(i);
                    self.dispatch(dev, action);
                } else {
                    i += 1;
                }
            }
            if next_alarm <= now {
                self.scenario(now);
                next_alarm = now + self.exp_interval();
            }
        }
    }

    /// An exponentially distributed interval around the mean (at most 10 means).
    fn exp_interval(&mut self) -> Duration {
        let u: f64 = self.rng.random();
        let x = -(1.0 - u).ln();
        self.mean.mul_f64(x.clamp(0.0, 10.0)).max(MIN_INTERVAL)
    }

    /// A delay of `lo..hi` seconds, scaled down with a mean shorter than the default.
    fn later(&mut self, now: Instant, lo: u64, hi: u64) -> Instant {
        let scale = (self.mean.as_secs_f64() / REFERENCE_INTERVAL.as_secs_f64()).min(1.0);
        let secs = self.rng.random_range(lo as f64..hi as f64) * scale;
        now + Duration::from_secs_f64(secs).max(MIN_INTERVAL)
    }

    fn pick(&mut self, from: &[usize]) -> Option<usize> {
        if from.is_empty() {
            return None;
        }
        from.get(self.rng.random_range(0..from.len())).copied()
    }

    fn dispatch(&self, dev: usize, action: Action) {
        let Some(tx) = self.senders.get(dev) else {
            return;
        };
        if let Err(e) = tx.try_send(action) {
            tracing::debug!(error = %e, "demo: device busy, event dropped");
        }
    }

    fn follow_up(&mut self, at: Instant, dev: usize, action: Action) {
        if self.pending.len() < MAX_PENDING {
            self.pending.push((at, dev, action));
        }
    }

    /// Starts one alarm story now: its first event, and its follow-ups later.
    fn scenario(&mut self, now: Instant) {
        let roll = self.rng.random_range(0..100u32);
        let carephones = self.roles.carephones.clone();
        let (list, code, kind_of_story) = match roll {
            0..50 => (carephones, 101, Story::Press),
            50..60 => (carephones, 100, Story::Medical),
            60..74 => (self.roles.fall.clone(), 101, Story::Fall),
            74..78 => (self.roles.smoke.clone(), 111, Story::Fire),
            78..86 => (self.roles.door.clone(), 150, Story::Door),
            _ => ((0..self.fleet.len()).collect(), 302, Story::Battery),
        };
        let fallback = self.roles.carephones.clone();
        let Some(dev) = self.pick(&list).or_else(|| self.pick(&fallback)) else {
            return;
        };
        let Some(d) = self.fleet.get(dev) else {
            return;
        };
        // A story needs its kind of device; without one it becomes a pendant press.
        let (story, code) = if list.contains(&dev) {
            (kind_of_story, code)
        } else {
            (Story::Press, 101)
        };
        let zone = d.kind.zone();
        let (code, zone) = match (story, d.kind) {
            (Story::Battery, Kind::Carephone | Kind::Other) => (302, 0),
            (Story::Battery, _) => (384, zone),
            _ => (code, zone),
        };
        let (name, her) = (d.name.clone(), d.pronoun);
        let say = match story {
            Story::Press => format!("demo: {name} pressed {her} alarm"),
            Story::Medical => format!("demo: {name} pulled {her} alarm cord (medical alarm)"),
            Story::Fall => format!("demo: {name}'s fall detector went off"),
            Story::Fire => format!("demo: smoke detector alarm at {name}'s home"),
            Story::Door => format!("demo: {name}'s door sensor alarmed (front door opened)"),
            Story::Battery => format!("demo: low battery in {name}'s {}", d.kind.words()),
        };
        let new = Cid {
            qualifier: 1,
            code,
            zone,
        };
        let restore = Cid {
            qualifier: 3,
            ..new
        };
        self.dispatch(
            dev,
            Action {
                cid: new,
                say: Some(say),
            },
        );
        let mut last = now;
        let p_again = match story {
            Story::Press => 0.3,
            Story::Medical => 0.15,
            _ => 0.0,
        };
        if self.rng.random_bool(p_again) {
            last = self.later(now, 20, 40);
            let again = Action {
                cid: new,
                say: Some(format!("demo: {name} pressed {her} alarm again")),
            };
            self.follow_up(last, dev, again);
        }
        let (p_restore, lo, hi) = match story {
            Story::Press | Story::Medical => (0.5, 90, 300),
            Story::Fall => (0.6, 60, 240),
            Story::Fire => (1.0, 120, 240),
            Story::Door => (1.0, 60, 180),
            Story::Battery => (0.3, 300, 600),
        };
        if self.rng.random_bool(p_restore) {
            let at = self.later(last, lo, hi);
            self.follow_up(
                at,
                dev,
                Action {
                    cid: restore,
                    say: None,
                },
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Story {
    Press,
    Medical,
    Fall,
    Fire,
    Door,
    Battery,
}

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Content {
    Null,
    Cid(Cid),
}

/// One device: heartbeats on its own clock, events when the scheduler asks; one TCP
/// connection, one frame at a time (each waits for its answer).
async fn device_task(
    target: SocketAddr,
    dev: SimDevice,
    mut rx: mpsc::Receiver<Action>,
    mut rng: SmallRng,
    phase: u64,
    shutdown: CancellationToken,
) {
    let mut link = Link::new(target);
    let mut seq: u16 = rng.random_range(1..=9999);
    let first = dev.heartbeat.min(Duration::from_secs(5));
    let first_ms = u64::try_from(first.as_millis()).unwrap_or(5000).max(1);
    let mut next_beat = Instant::now() + Duration::from_millis(rng.random_range(0..first_ms));
    let mut beats: u64 = phase;
    let mut open = true;
    loop {
        let job = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            a = rx.recv(), if open => match a {
                Some(a) => Job::Event(a),
                None => { open = false; continue; }
            },
            () = tokio::time::sleep_until(next_beat) => Job::Beat,
        };
        let work = async {
            match job {
                Job::Beat => {
                    beats = beats.wrapping_add(1);
                    let content = if beats % TEST_EVERY == 0 {
                        Content::Cid(Cid {
                            qualifier: 1,
                            code: 602,
                            zone: 0,
                        })
                    } else {
                        Content::Null
                    };
                    let r = send(&mut link, &dev, &mut seq, &mut rng, content, 1).await;
                    if let Err(e) = r {
                        tracing::debug!(account = %dev.account, error = %e, "demo: heartbeat not answered");
                    }
                    let jitter = rng.random_range(0.9..1.1);
                    next_beat = Instant::now() + dev.heartbeat.mul_f64(jitter);
                }
                Job::Event(a) => {
                    let content = Content::Cid(a.cid);
                    match send(&mut link, &dev, &mut seq, &mut rng, content, ALARM_ATTEMPTS).await {
                        Ok(()) => match &a.say {
                            Some(line) => tracing::info!(account = %dev.account, "{line}"),
                            None => tracing::debug!(
                                account = %dev.account,
                                code = a.cid.code,
                                qualifier = a.cid.qualifier,
                                "demo: event sent"
                            ),
                        },
                        Err(e) => tracing::debug!(
                            account = %dev.account,
                            code = a.cid.code,
                            error = %e,
                            "demo: event given up"
                        ),
                    }
                }
            }
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = work => {}
        }
    }
}

enum Job {
    Beat,
    Event(Action),
}

/// Sends one frame (a new sequence number), trying up to `attempts` times; a retry is the
/// same frame again (same sequence number, fresh timestamp) after the link's backoff.
async fn send(
    link: &mut Link,
    dev: &SimDevice,
    seq: &mut u16,
    rng: &mut SmallRng,
    content: Content,
    attempts: u32,
) -> Result<(), SendError> {
    let this = *seq;
    *seq = if *seq >= 9999 { 1 } else { *seq + 1 };
    let mut frame = Vec::with_capacity(160);
    let mut last = SendError::Closed;
    for attempt in 0..attempts.max(1) {
        frame.clear();
        build(dev, this, content, rng, &mut frame);
        match link.exchange(&frame).await {
            Ok(()) => return Ok(()),
            // Received but not processable: sending it again would not help.
            Err(SendError::Duh) => return Err(SendError::Duh),
            Err(e) => {
                tracing::debug!(account = %dev.account, attempt, error = %e, "demo: frame not acknowledged");
                last = e;
            }
        }
    }
    Err(last)
}

/// Builds a device's frame: `NULL` or `ADM-CID` (`#ACCT|QEEE GG ZZZ`), with the current
/// time; encrypted with the device's key if it has one.
fn build(dev: &SimDevice, seq: u16, content: Content, rng: &mut SmallRng, out: &mut Vec<u8>) {
    let (id, data) = match content {
        Content::Null => ("NULL", String::new()),
        Content::Cid(c) => (
            "ADM-CID",
            format!(
                "#{}|{}{:03} 01 {:03}",
                dev.account,
                c.qualifier,
                c.code % 1000,
                c.zone % 1000
            ),
        ),
    };
    let spec = FrameSpec {
        id,
        seq,
        receiver: dev.receiver.as_deref(),
        line: Some(&dev.line),
        account: &dev.account,
        data: data.as_bytes(),
        xdata: &[],
        timestamp: Some(jiff::Timestamp::now()),
    };
    match &dev.key {
        Some(key) => dc09::encode_frame_encrypted(&spec, key, Pad::Random(rng), out),
        None => dc09::encode_frame(&spec, out),
    }
}

/// Why a frame was not acknowledged.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connection error: {0}")]
    Io(std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("connection closed")]
    Closed,
    #[error("answered NAK")]
    Nak,
    #[error("answered DUH")]
    Duh,
    #[error("unexpected answer")]
    BadReply,
}

/// A device's TCP connection to vakt, opened on demand, dropped on any error.
struct Link {
    target: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    backoff: Duration,
    not_before: Option<Instant>,
}

impl Link {
    fn new(target: SocketAddr) -> Link {
        Link {
            target,
            stream: None,
            buf: Vec::with_capacity(256),
            backoff: BACKOFF_MIN,
            not_before: None,
        }
    }

    /// Sends `frame` and waits for its answer.
    async fn exchange(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let r = self.try_exchange(frame).await;
        match &r {
            Ok(()) => self.backoff = BACKOFF_MIN,
            // A NAK or DUH is an answer: the connection is fine.
            Err(SendError::Nak | SendError::Duh) => {}
            Err(_) => {
                self.stream = None;
                self.buf.clear();
                self.not_before = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
        r
    }

    async fn try_exchange(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let stream = match self.stream.take() {
            Some(s) => self.stream.insert(s),
            None => {
                if let Some(t) = self.not_before.take() {
                    tokio::time::sleep_until(t).await;
                }
                let s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(self.target))
                    .await
                    .map_err(|_| SendError::Timeout)?
                    .map_err(SendError::Connect)?;
                // Small frames, one at a time: do not wait to coalesce.
                let _ = s.set_nodelay(true);
                self.buf.clear();
                self.stream.insert(s)
            }
        };
        tokio::time::timeout(IO_TIMEOUT, stream.write_all(frame))
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(SendError::Io)?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, read_reply(stream, &mut self.buf))
            .await
            .map_err(|_| SendError::Timeout)??;
        let parsed = dc09::parse(&reply).map_err(|_| SendError::BadReply)?;
        match parsed.token {
            Token::Ack => Ok(()),
            Token::Nak => Err(SendError::Nak),
            Token::Duh => Err(SendError::Duh),
            _ => Err(SendError::BadReply),
        }
    }
}

/// Reads until one whole LF..CR frame is in `buf`; returns it (and keeps what follows).
async fn read_reply(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, SendError> {
    let mut chunk = [0u8; 512];
    loop {
        match dc09::scan(buf) {
            Scan::Frame { start, end } => {
                let frame = buf.get(start..end).map(<[u8]>::to_vec).unwrap_or_default();
                buf.drain(..end.min(buf.len()));
                return Ok(frame);
            }
            Scan::Skip(n) | Scan::Oversized(n) => {
                buf.drain(..n.min(buf.len()));
                continue;
            }
            Scan::Incomplete => {}
        }
        if buf.len() > MAX_REPLY_BYTES {
            return Err(SendError::BadReply);
        }
        let n = stream.read(&mut chunk).await.map_err(SendError::Io)?;
        if n == 0 {
            return Err(SendError::Closed);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpListener;

    use super::*;

    fn subscribers() -> Vec<crate::model::Subscriber> {
        crate::subscribers::parse_csv(SUBSCRIBERS_CSV.as_bytes()).unwrap()
    }

    fn devices() -> Vec<Device> {
        registry::parse_csv(registry::DEMO_CSV.as_bytes()).unwrap()
    }

    #[test]
    fn demo_files_parse_and_fit_together() {
        let subs = subscribers();
        assert!(subs.len() >= 30, "{}", subs.len());
        let ids: HashSet<&str> = subs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), subs.len(), "subscriber ids are unique");
        let devs = devices();
        let mut accounts = HashSet::new();
        for d in &devs {
            assert_eq!(d.account.len(), 4, "{}", d.account);
            assert!(accounts.insert(d.account.clone()), "{} twice", d.account);
            let s = d.subscriber.as_deref().unwrap();
            assert!(
                ids.contains(s),
                "device {} belongs to unknown {s}",
                d.account
            );
            let t = d.device_type.as_deref().unwrap();
            assert!(registry::DEVICE_TYPES.contains(&t), "{t}");
            let sup = d.supervision_secs.unwrap();
            assert!((90..=3600).contains(&sup), "{sup}");
        }
        for s in &subs {
            assert!(
                devs.iter()
                    .any(|d| d.subscriber.as_deref() == Some(s.id.as_str())
                        && d.device_type.as_deref() == Some("carephone")),
                "{} has no carephone",
                s.id
            );
        }
        // The accounts the README, tests and tools use.
        let bits = |a: &str| {
            devs.iter()
                .find(|d| d.account == a)
                .map(|d| d.key.as_ref().map(Key::bits))
        };
        assert_eq!(bits("1234"), Some(None));
        assert_eq!(bits("5678"), Some(Some(128)));
        assert_eq!(bits("9ABC"), Some(Some(256)));
        assert_eq!(bits("AAAA"), Some(None));
        let k128 = devs.iter().find(|d| d.account == "5678").unwrap();
        assert_eq!(
            k128.key.as_ref().unwrap().as_bytes(),
            hex::decode("000102030405060708090A0B0C0D0E0F").unwrap()
        );
    }

    #[test]
    fn pronouns_come_from_the_personal_number() {
        assert_eq!(pronoun("19380412-9827"), "her");
        assert_eq!(pronoun("19310903-9812"), "his");
        assert_eq!(pronoun(""), "their");
        let subs = subscribers();
        let asa = subs.iter().find(|s| s.id == "S-1001").unwrap();
        assert_eq!(asa.name, "Åsa Öberg");
        assert_eq!(pronoun(&asa.personal_number), "her");
    }

    #[test]
    fn passwords_are_random_and_long_enough() {
        let mut rng = rand::rng();
        let a = password(&mut rng);
        let b = password(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.len(), 19);
        assert!(a.chars().count() >= crate::console::auth::MIN_PASSWORD_CHARS);
        let users = DemoUsers {
            operator: ("operator".into(), a.clone()),
            supervisor: ("supervisor".into(), b),
        };
        assert!(!format!("{users:?}").contains(&a), "no password in Debug");
    }

    #[test]
    fn seed_fills_an_empty_directory_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = jiff::Timestamp::from_second(1_790_000_000).unwrap();
        let users = seed(&store, now).unwrap().expect("seeded");
        assert_eq!(users.operator.0, "operator");
        assert_eq!(users.supervisor.0, "supervisor");
        assert_ne!(users.operator.1, users.supervisor.1);
        assert_eq!(store.subscriber_count().unwrap(), subscribers().len());
        assert_eq!(store.devices().unwrap().len(), devices().len());
        assert_eq!(store.user_count().unwrap(), 2);
        let op = store.user("operator").unwrap().unwrap();
        assert_eq!(op.role, Role::Operator);
        assert_eq!(op.created_at, now);
        assert!(crate::console::auth::verify_password(
            &users.operator.1,
            &op.password_hash
        ));
        let sup = store.user("supervisor").unwrap().unwrap();
        assert_eq!(sup.role, Role::Supervisor);
        assert!(
            seed(&store, now).unwrap().is_none(),
            "second seed does nothing"
        );
        assert_eq!(store.user_count().unwrap(), 2);
    }

    #[test]
    fn seed_leaves_a_used_directory_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let one =
            registry::parse_csv(format!("{}\n4242,,,,,,,,,\n", registry::CSV_HEADER).as_bytes())
                .unwrap();
        store.upsert_devices(&one).unwrap();
        assert!(seed(&store, jiff::Timestamp::UNIX_EPOCH).unwrap().is_none());
        assert_eq!(store.subscriber_count().unwrap(), 0);
        assert_eq!(store.user_count().unwrap(), 0);
    }

    /// What the fake receiver saw.
    #[derive(Default)]
    struct Seen {
        /// (account, encrypted, token, data)
        frames: Vec<(String, bool, Token, Vec<u8>)>,
        errors: Vec<String>,
    }

    /// A minimal DC-09 receiver: checks CRC (parse), decrypts with the demo keys, ACKs.
    async fn fake_receiver(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
        let keys: Arc<HashMap<String, Key>> = Arc::new(
            devices()
                .into_iter()
                .filter_map(|d| d.key.map(|k| (d.account, k)))
                .collect(),
        );
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (seen, keys) = (seen.clone(), keys.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    loop {
                        match dc09::scan(&buf) {
                            Scan::Frame { start, end } => {
                                let raw: Vec<u8> = buf.drain(..end).collect();
                                let reply = answer(&raw[start..], &keys, &seen);
                                if s.write_all(&reply).await.is_err() {
                                    return;
                                }
                            }
                            Scan::Skip(n) | Scan::Oversized(n) => {
                                buf.drain(..n);
                            }
                            Scan::Incomplete => break,
                        }
                    }
                }
            });
        }
    }

    fn answer(raw: &[u8], keys: &HashMap<String, Key>, seen: &Mutex<Seen>) -> Vec<u8> {
        let now = jiff::Timestamp::now();
        let mut out = Vec::new();
        let mut seen = seen.lock().unwrap();
        let f = match dc09::parse(raw) {
            Ok(f) => f,
            Err(e) => {
                seen.errors.push(format!("parse: {e}"));
                dc09::encode_nak(now, &mut out);
                return out;
            }
        };
        let account = f.account.unwrap_or_default().to_string();
        let content = if f.encrypted {
            match keys.get(&account) {
                Some(k) => f.decrypt(k),
                None => {
                    seen.errors
                        .push(format!("{account}: encrypted without key"));
                    return out;
                }
            }
        } else {
            if keys.contains_key(&account) {
                seen.errors.push(format!("{account}: plain but has a key"));
            }
            f.content()
        };
        match content {
            Ok(c) => {
                match c.timestamp {
                    Some(ts) if dc09::within_window(ts, now, 40, 20) => {}
                    other => seen.errors.push(format!("{account}: timestamp {other:?}")),
                }
                seen.frames
                    .push((account.clone(), f.encrypted, f.token, c.data.clone()));
            }
            Err(e) => seen.errors.push(format!("{account}: content {e}")),
        }
        match keys.get(&account) {
            Some(k) if f.encrypted => {
                dc09::encode_ack_encrypted(&f, k, now, &mut rand::rng(), &mut out)
            }
            _ => dc09::encode_ack(&f, &mut out),
        }
        out
    }

    #[tokio::test]
    async fn simulator_speaks_dc09_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let rx_task = tokio::spawn(fake_receiver(listener, seen.clone()));
        let shutdown = CancellationToken::new();
        let opts = SimOptions {
            mean_alarm_interval: Duration::from_millis(20),
            heartbeat_interval: Duration::from_millis(50),
            seed: 7,
        };
        let sim = tokio::spawn(simulate(addr, opts, shutdown.clone()));
        let keyed: HashSet<String> = devices()
            .into_iter()
            .filter(|d| d.key.is_some())
            .map(|d| d.account)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let done = |s: &Seen| {
            let nulls = s.frames.iter().filter(|f| f.2 == Token::Null).count();
            let alarms = s
                .frames
                .iter()
                .filter(|f| f.2 == Token::AdmCid && f.3.windows(2).any(|w| w == b"|1"))
                .filter(|f| !f.3.ends_with(b"602 01 000"))
                .count();
            let enc: HashSet<&String> = s.frames.iter().filter(|f| f.1).map(|f| &f.0).collect();
            nulls >= 1 && alarms >= 1 && enc.len() == keyed.len()
        };
        loop {
            if done(&seen.lock().unwrap()) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), sim)
            .await
            .expect("the simulator stops promptly")
            .unwrap();
        rx_task.abort();
        let s = seen.lock().unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert!(done(&s), "saw {} frames", s.frames.len());
        // Every event decodes as Contact ID.
        for f in s.frames.iter().filter(|f| f.2 == Token::AdmCid) {
            let p = crate::codec::event::decode_payload(Token::AdmCid, &f.3).unwrap();
            assert_eq!(p.events.len(), 1);
        }
    }
}
