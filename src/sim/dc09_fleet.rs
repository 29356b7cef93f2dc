//! The demo's DC-09 devices: each sends NULL heartbeats and periodic tests over its own TCP
//! connection to vakt, and a scheduler hands them alarm stories (presses, falls, fire, door,
//! low batteries, restores) at random intervals. Real frames (encrypted for devices with a
//! key), real ACKs.

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

use super::SimOptions;
use super::pace::{
    BACKOFF_MAX, BACKOFF_MIN, MAX_INTERVAL, MIN_INTERVAL, beat_within, exp_interval,
};
use super::seed::{demo_devices, demo_people, owner};
use crate::model::Device;
use vakt_proto::crypto::Key;
use vakt_proto::dc09::{self, FrameSpec, Pad, Scan, Token};

/// The default mean alarm interval: follow-up delays are given for it.
const REFERENCE_INTERVAL: Duration = Duration::from_secs(45);
/// Connect and write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the answer to a frame.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of an alarm frame before the simulator gives it up.
const ALARM_ATTEMPTS: u32 = 6;
/// Every this many heartbeats, a device sends a periodic test instead.
const TEST_EVERY: u64 = 20;
/// Most follow-ups waiting at once.
const MAX_PENDING: usize = 512;
/// Longest answer buffered before the connection is dropped.
const MAX_REPLY_BYTES: usize = 2 * dc09::MAX_FRAME_BYTES;

/// The DC-09 part of [`super::simulate`].
pub(super) async fn simulate_dc09(
    target: SocketAddr,
    opts: &SimOptions,
    shutdown: &CancellationToken,
) {
    let fleet = fleet(opts);
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
    sched.run(shutdown).await;
    // The scheduler returns only on shutdown, which every device task also watches.
    drop(senders);
    while tasks.join_next().await.is_some() {}
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
pub(super) struct SimDevice {
    pub(super) account: String,
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

/// The demo's DC-09 devices (those without a `sip_user`), with their subscribers' names.
pub(super) fn fleet(opts: &SimOptions) -> Vec<SimDevice> {
    let people = demo_people();
    demo_devices()
        .into_iter()
        .filter(|d| d.sip_user.is_none())
        .map(|d: Device| {
            let (name, pronoun) = owner(&d, &people);
            let heartbeat = beat_within(opts.heartbeat_interval, d.supervision_secs);
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

    fn exp_interval(&mut self) -> Duration {
        exp_interval(&mut self.rng, self.mean)
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
mod tests;
