//! Demo mode (`vakt serve --demo`): a small fictional municipality and a device simulator.
//!
//! [`seed`] fills an empty data directory with the people of Vaktby
//! (`config/demo-subscribers.csv`, [`SUBSCRIBERS_CSV`]), their devices
//! (`config/demo-devices.csv`, [`registry::DEMO_CSV`]) and two console users, `operator` and
//! `supervisor`, with random passwords shown once. It also saves the demo directory of care
//! providers, areas, patrols and routing rules (`config/demo-directory/`,
//! [`crate::registers::directory::DEMO_PATROLS`] ...) and issues a login token for every demo patrol
//! ([`DemoUsers::patrols`]); [`save_patrol_logins`] keeps those in the data directory
//! ([`PATROL_LOGINS_FILE`], `demo-patrols.txt`, readable only by its owner) so that every
//! later `--demo` start can run the patrols again ([`load_patrol_logins`]). A directory that
//! holds any device, subscriber or user is never touched. An admin is not seeded:
//! `vakt users add` makes one.
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
//!
//! Five homes also have a SCAIP alarm unit (SS 91100) next to their carephone: the devices of
//! the demo CSV with a `sip_user` (cid `7001xx`, SIP user `luc-7001xx`). Their SIP passwords
//! are fictional demo credentials, public with the rest of the demo data: never use them for
//! a real device. [`simulate`] plays each unit against vakt's own SCAIP UDP port as a real
//! SIP client ([`Luc`], Digest and all; see [`ScaipSimOptions`]): heartbeats (`mty=PI` with
//! `hbo=001`, following the `hbi` vakt answers) every few minutes and, at random
//! (exponential) intervals, a story: now and then a low battery in the pendant (status
//! 0016), else an alarm from the pendant (device type 0003) or the fall detector (0005). An
//! alarm sends the same `<mrq>` again every 5-10 s while vakt holds it (`snu 4`) and stops
//! when vakt answers `snu 0` (an operator took the Call: the unit would now place its voice
//! call, which vakt does not carry); unanswered for 30 minutes it gives up with a reset
//! (`mty=RE`). After an answered alarm the visiting patrol sometimes presses presence on the
//! unit (status 0088) a few minutes later and checks out (0111) after that; vakt marks the
//! patrol's dispatch, if one is open, arrived and completed from them.
//!
//! [`simulate_patrols`] plays the home-care patrols against vakt's own patrol QUIC port, each
//! a real patrol client ([`crate::sim::patrol_client::Session`]) logged in with its demo token:
//! an assignment is confirmed a few seconds after it arrives, accepted, arrived at a few
//! minutes later and completed. One patrol, [`OFFLINE_PATROL`] (`natt-2`, Nattpatrullen 2),
//! never connects, so the receipt timeout and the passing on of its dispatches can be seen.

pub mod luc;
pub mod patrol_client;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dispatch::wire::{
    AssignmentMsg, ErrorCode, FromPatrol, PING_INTERVAL_SECS, RECONNECT_MAX_SECS,
    RECONNECT_MIN_SECS, Secret, ToPatrol, VisitOutcome,
};
use crate::model::{ArrivalMethod, Device, DispatchState, Role, SipPassword};
use crate::registers::devices;
use crate::sim::luc::{Luc, LucError};
use crate::sim::patrol_client::{ClientError, Session};
use crate::store::{Store, StoreError, UserRecord};
use crate::transport::quic::Trust;
use vakt_proto::crypto::Key;
use vakt_proto::dc09::{self, FrameSpec, Pad, Scan, Token};
use vakt_proto::scaip::Mrs;

/// The demo subscribers: 36 fictional people of the municipality of Vaktby.
pub const SUBSCRIBERS_CSV: &str = include_str!("../../config/demo-subscribers.csv");

/// Name of the seeded operator user.
pub const OPERATOR_USER: &str = "operator";

/// Name of the seeded supervisor user.
pub const SUPERVISOR_USER: &str = "supervisor";

/// The console users [`seed`] made, each as (name, password), and the demo patrols' logins.
/// The passwords and tokens are random and stored only as hashes: show the passwords once
/// and keep the logins with [`save_patrol_logins`] (the `Debug` output leaves the secrets
/// out).
#[derive(Clone, PartialEq, Eq)]
pub struct DemoUsers {
    /// The `operator` user (role operator): takes and handles Calls.
    pub operator: (String, String),
    /// The `supervisor` user (role supervisor): also edits subscribers, reads the audit log.
    pub supervisor: (String, String),
    /// A login for every patrol of the demo directory (also [`OFFLINE_PATROL`], so that
    /// `vakt patrol` can play it by hand), in patrol id order.
    pub patrols: Vec<PatrolLogin>,
}

impl fmt::Debug for DemoUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Passwords and tokens are secrets: never in Debug output.
        f.debug_struct("DemoUsers")
            .field("operator", &self.operator.0)
            .field("supervisor", &self.supervisor.0)
            .field("patrols", &self.patrols.len())
            .finish_non_exhaustive()
    }
}

/// A patrol's id and login token (the token as `vakt patrols token` prints it). `Debug`
/// leaves the token out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatrolLogin {
    /// The patrol id (e.g. `norr-dag`).
    pub patrol: String,
    /// Its token. Never log it.
    pub token: Secret,
}

/// Why the demo could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded demo subscribers do not import (a bug in the demo data).
    #[error("demo subscribers: {0}")]
    Subscribers(#[from] crate::registers::subscribers::ImportError),
    /// The embedded demo devices do not import (a bug in the demo data).
    #[error("demo devices: {0}")]
    Devices(#[from] devices::ImportError),
    /// The embedded demo directory does not import (a bug in the demo data).
    #[error("demo directory: {0}")]
    Directory(#[from] crate::registers::directory::ImportError),
    /// Reading or writing the store failed.
    #[error("seeding the demo: {0}")]
    Store(#[from] StoreError),
    /// A demo password could not be hashed.
    #[error("demo user: {0}")]
    Password(#[from] crate::console::auth::AuthError),
}

/// Seeds the demo municipality into an empty data directory: the subscribers of
/// [`SUBSCRIBERS_CSV`], the devices of [`registry::DEMO_CSV`], the demo directory
/// (`config/demo-directory/`) with a new token for each of its patrols, and the users
/// [`OPERATOR_USER`] and [`SUPERVISOR_USER`] with random passwords (`now` is their creation
/// time). Returns the users with their passwords and the patrols' logins (keep those with
/// [`save_patrol_logins`]), or `None` (nothing written) when the directory already holds any
/// device, subscriber or user.
///
/// Everything is parsed and hashed before the first write; subscribers, devices, the
/// directory, the patrol tokens (their hashes) and users are then written in that order.
///
/// # Errors
/// [`DemoError`] when the store cannot be read or written (or, a bug, the demo data does
/// not import).
pub fn seed(store: &Store, now: jiff::Timestamp) -> Result<Option<DemoUsers>, DemoError> {
    if !store.devices()?.is_empty() || store.subscriber_count()? > 0 || store.user_count()? > 0 {
        return Ok(None);
    }
    let subscribers = crate::registers::subscribers::parse_csv(SUBSCRIBERS_CSV.as_bytes())?;
    let devices = devices::parse_csv(devices::DEMO_CSV.as_bytes())?;
    let directory = crate::registers::directory::parse_all(
        crate::registers::directory::DEMO_PROVIDERS.as_bytes(),
        crate::registers::directory::DEMO_AREAS.as_bytes(),
        crate::registers::directory::DEMO_PATROLS.as_bytes(),
        crate::registers::directory::DEMO_ROUTES.as_bytes(),
    )?;
    let mut hashes = Vec::with_capacity(directory.patrols.len());
    let mut patrols = Vec::with_capacity(directory.patrols.len());
    for p in &directory.patrols {
        let (token, hash) = crate::store::new_token();
        hashes.push((p.id.clone(), hash));
        patrols.push(PatrolLogin {
            patrol: p.id.clone(),
            token: Secret::new(token),
        });
    }
    let mut rng = rand::rng();
    let users = DemoUsers {
        operator: (OPERATOR_USER.to_owned(), password(&mut rng)),
        supervisor: (SUPERVISOR_USER.to_owned(), password(&mut rng)),
        patrols,
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
            disabled: false,
        })
    })
    .collect::<Result<Vec<_>, DemoError>>()?;
    store.upsert_subscribers(&subscribers)?;
    store.upsert_devices(&devices)?;
    store.save_directory(&directory)?;
    for (id, hash) in &hashes {
        store.set_patrol_token(id, hash)?;
    }
    for r in &records {
        store.put_user(r)?;
    }
    tracing::info!(
        subscribers = subscribers.len(),
        devices = devices.len(),
        patrols = directory.patrols.len(),
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
// The demo patrols' logins
// ---------------------------------------------------------------------------------------

/// The file in the data directory that keeps the demo patrols' logins (written by
/// [`save_patrol_logins`], mode 0600): a comment header, then one `PATROL TOKEN` line per
/// patrol, e.g. `norr-dag 3f9a...` (64 hex digits). Demo data only; `vakt patrols token ID`
/// issues real tokens. To drive a demo patrol by hand, give this file as it is to
/// `vakt patrol --patrol ID --token-file vakt-data/demo-patrols.txt`, which takes the line of
/// its patrol (the simulator stops playing that patrol when it is replaced).
pub const PATROL_LOGINS_FILE: &str = "demo-patrols.txt";

/// Largest logins file read (a bound; the demo's is about 1.5 KiB).
const MAX_LOGINS_FILE_BYTES: u64 = 256 * 1024;

/// Longest token accepted from the logins file.
const MAX_TOKEN_CHARS: usize = 256;

/// Writes the patrols' logins to [`PATROL_LOGINS_FILE`] in `data_dir`, readable and writable
/// only by the owner (mode 0600, also when the file existed), replacing what it held.
/// Returns the file's path.
///
/// # Errors
/// The file cannot be written.
pub fn save_patrol_logins(data_dir: &Path, logins: &[PatrolLogin]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = data_dir.join(PATROL_LOGINS_FILE);
    let mut text = String::from(
        "# vakt demo: login tokens of the demo patrols (PATROL TOKEN), used by the patrol\n\
         # simulator of `vakt serve --demo`. Demo data only: keep it private all the same.\n",
    );
    for l in logins {
        text.push_str(&l.patrol);
        text.push(' ');
        text.push_str(l.token.expose());
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    // `mode` applies only to a new file: tighten one that was already there.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(path)
}

/// Reads the logins [`save_patrol_logins`] wrote to `data_dir`.
///
/// # Errors
/// The file is missing (`NotFound`: the data directory was not seeded by this version's
/// `--demo`), cannot be read, is over 256 KiB, or has a line that is not `PATROL TOKEN`
/// (`InvalidData`, with the line number; the line itself is not repeated).
pub fn load_patrol_logins(data_dir: &Path) -> std::io::Result<Vec<PatrolLogin>> {
    use std::io::Read;
    let path = data_dir.join(PATROL_LOGINS_FILE);
    let f = std::fs::File::open(&path)?;
    let mut text = String::new();
    f.take(MAX_LOGINS_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    let invalid = |msg: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {msg}", path.display()),
        )
    };
    if text.len() as u64 > MAX_LOGINS_FILE_BYTES {
        return Err(invalid("larger than 256 KiB".to_owned()));
    }
    parse_logins(&text).map_err(invalid)
}

/// Parses the logins file's text (see [`PATROL_LOGINS_FILE`]): blank lines and `#` comments
/// are skipped; a patrol listed twice keeps its last token.
fn parse_logins(text: &str) -> Result<Vec<PatrolLogin>, String> {
    let mut out: Vec<PatrolLogin> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(patrol), Some(token), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {}: expected `PATROL TOKEN`", i + 1));
        };
        if !crate::registers::subscribers::valid_id(patrol) {
            return Err(format!("line {}: not a patrol id", i + 1));
        }
        if token.chars().count() > MAX_TOKEN_CHARS {
            return Err(format!("line {}: the token is too long", i + 1));
        }
        out.retain(|l| l.patrol != patrol);
        out.push(PatrolLogin {
            patrol: patrol.to_owned(),
            token: Secret::new(token),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The device simulator
// ---------------------------------------------------------------------------------------

/// How busy the simulated fleet is.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// How the SCAIP homes behave.
    pub scaip: ScaipSimOptions,
}

impl Default for SimOptions {
    /// An alarm every 45 s on average, heartbeats every 60 s, the default SCAIP homes, a
    /// random seed.
    fn default() -> Self {
        SimOptions {
            mean_alarm_interval: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(60),
            seed: rand::random(),
            scaip: ScaipSimOptions::default(),
        }
    }
}

/// How the simulated SCAIP homes behave. Every delay range is drawn from uniformly (a
/// reversed range is taken the right way round; at most a day); percentages over 100 count
/// as 100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaipSimOptions {
    /// Mean time between two stories (an alarm or a low battery) of all the SCAIP homes
    /// together (exponentially distributed; the first comes within 20 s). Default 4 min.
    pub mean_alarm_interval: Duration,
    /// Time between two heartbeats (`mty=PI`) of one home (shorter when the home's
    /// supervision interval or the `hbi` vakt answers asks for it: at most two thirds of the
    /// one, half of the other). Default 3 min.
    pub heartbeat_interval: Duration,
    /// How often a held alarm (`snu 4`) polls again (default 5-10 s).
    pub poll_every: RangeInclusive<Duration>,
    /// How long a held alarm polls before the unit gives up with a reset (`mty=RE`).
    /// Default 30 min.
    pub give_up_after: Duration,
    /// Share of stories that are a low battery in the pendant (default 15 %).
    pub battery_percent: u32,
    /// Share of alarms from the fall detector rather than the pendant (default 30 %).
    pub fall_percent: u32,
    /// Share of answered alarms after which the visiting patrol presses the presence
    /// button (default 50 %).
    pub presence_percent: u32,
    /// From the answer (`snu 0`) to the presence button (status 0088; default 3-8 min).
    pub presence_after: RangeInclusive<Duration>,
    /// From the presence button to the check-out (status 0111; default 1-4 min).
    pub check_out_after: RangeInclusive<Duration>,
}

impl Default for ScaipSimOptions {
    fn default() -> Self {
        ScaipSimOptions {
            mean_alarm_interval: Duration::from_secs(240),
            heartbeat_interval: Duration::from_secs(180),
            poll_every: Duration::from_secs(5)..=Duration::from_secs(10),
            give_up_after: Duration::from_secs(30 * 60),
            battery_percent: 15,
            fall_percent: 30,
            presence_percent: 50,
            presence_after: Duration::from_secs(180)..=Duration::from_secs(480),
            check_out_after: Duration::from_secs(60)..=Duration::from_secs(240),
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

/// Runs the demo fleet until `shutdown` is cancelled; returns promptly then. The DC-09
/// devices send to vakt's DC-09 TCP listener at `dc09`, the SCAIP homes (the devices with a
/// `sip_user`) to its SCAIP UDP listener at `scaip` (SIP MESSAGE with Digest, through
/// [`Luc`]); either part is left out when its address is `None`, and an unspecified address
/// such as `0.0.0.0:5060` is reached over loopback. Never panics; network errors are
/// retried with backoff and logged at debug. Each alarm is logged once at info
/// (`demo: Åsa Öberg pressed her alarm`); a SCAIP home that vakt refuses (SIP 401: the data
/// directory was seeded without it) is logged at warn and stops.
///
/// The fleet is the embedded demo data ([`registry::DEMO_CSV`], names from
/// [`SUBSCRIBERS_CSV`]), whatever the store holds: run it only where the demo is seeded.
pub async fn simulate(
    dc09: Option<SocketAddr>,
    scaip: Option<SocketAddr>,
    opts: SimOptions,
    shutdown: CancellationToken,
) {
    // Its own stream of random numbers, so the DC-09 story of a seed stays the same.
    let scaip_rng = SmallRng::seed_from_u64(opts.seed ^ SCAIP_SEED_SALT);
    let dc09_part = async {
        if let Some(target) = dc09 {
            simulate_dc09(loopback(target), &opts, &shutdown).await;
        }
    };
    let scaip_part = async {
        if let Some(server) = scaip {
            simulate_scaip(loopback(server), &opts, scaip_rng, &shutdown).await;
        }
    };
    tokio::join!(dc09_part, scaip_part);
    tracing::debug!("demo: simulator stopped");
}

/// The DC-09 part of [`simulate`].
async fn simulate_dc09(target: SocketAddr, opts: &SimOptions, shutdown: &CancellationToken) {
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

/// The embedded demo devices (none, logged, if they do not parse: a bug in the demo data).
fn demo_devices() -> Vec<Device> {
    match devices::parse_csv(devices::DEMO_CSV.as_bytes()) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "demo: the demo devices do not parse");
            Vec::new()
        }
    }
}

/// The demo subscribers' names and pronouns, by subscriber id.
fn demo_people() -> HashMap<String, (String, &'static str)> {
    match crate::registers::subscribers::parse_csv(SUBSCRIBERS_CSV.as_bytes()) {
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
    }
}

/// The name and pronoun of a device's subscriber (`account ...` and `their` when unknown).
fn owner(d: &Device, people: &HashMap<String, (String, &'static str)>) -> (String, &'static str) {
    d.subscriber
        .as_ref()
        .and_then(|s| people.get(s).cloned())
        .unwrap_or_else(|| (format!("account {}", d.account), "their"))
}

/// `interval` (clamped to a sane range), at most two thirds of a supervision interval.
fn beat_within(interval: Duration, supervision_secs: Option<u32>) -> Duration {
    let hb = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    match supervision_secs {
        Some(s) => hb
            .min(Duration::from_millis(u64::from(s) * 2000 / 3))
            .max(MIN_INTERVAL),
        None => hb,
    }
}

/// The demo's DC-09 devices (those without a `sip_user`), with their subscribers' names.
fn fleet(opts: &SimOptions) -> Vec<SimDevice> {
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

/// An exponentially distributed interval around `mean` (at most 10 means).
fn exp_interval(rng: &mut SmallRng, mean: Duration) -> Duration {
    let u: f64 = rng.random();
    let x = -(1.0 - u).ln();
    mean.mul_f64(x.clamp(0.0, 10.0)).max(MIN_INTERVAL)
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

// ---------------------------------------------------------------------------------------
// The SCAIP homes
// ---------------------------------------------------------------------------------------

/// Mixed into [`SimOptions::seed`] for the SCAIP homes' random numbers.
const SCAIP_SEED_SALT: u64 = 0x5CA1_9110_0D3E_0A11;
/// The first SCAIP story comes at most this long after the start.
const SCAIP_FIRST_WITHIN: Duration = Duration::from_secs(20);
/// Tries of a battery low, presence or check-out before the home gives it up.
const SCAIP_ATTEMPTS: u32 = 6;
/// Most presence and check-out presses one home keeps waiting.
const MAX_VISITS: usize = 8;
/// Most `<mrs>` of other requests skipped while waiting for the one of this request (a
/// retransmission of an earlier answer over UDP).
const MAX_STALE_MRS: usize = 3;
/// SCAIP device type of the alarm unit itself (local unit and controller).
const DTY_UNIT: u16 = 2;
/// SCAIP device type of the pendant (personal trigger).
const DTY_PENDANT: u16 = 3;
/// SCAIP device type of the fall detector.
const DTY_FALL: u16 = 5;
/// SCAIP status "battery low".
const STC_BATTERY_LOW: u16 = 16;

/// One simulated SCAIP home: its alarm unit's cid and SIP credentials.
#[derive(Clone)]
struct ScaipHome {
    cid: String,
    user: String,
    password: SipPassword,
    /// The subscriber's name (or the cid when unknown).
    name: String,
    /// `her`, `his` or `their`.
    pronoun: &'static str,
    heartbeat: Duration,
}

/// The demo's SCAIP homes: the devices with a `sip_user` (and a password).
fn scaip_homes(opts: &ScaipSimOptions) -> Vec<ScaipHome> {
    let people = demo_people();
    demo_devices()
        .into_iter()
        .filter_map(|d| {
            let (user, password) = (d.sip_user.clone()?, d.sip_password.clone()?);
            let (name, pronoun) = owner(&d, &people);
            Some(ScaipHome {
                heartbeat: beat_within(opts.heartbeat_interval, d.supervision_secs),
                cid: d.account,
                user,
                password,
                name,
                pronoun,
            })
        })
        .collect()
}

/// What the SCAIP scheduler asks a home to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HomeStory {
    /// The pendant, or the fall detector, raises an alarm.
    Alarm { fall: bool },
    /// The pendant's battery runs low.
    BatteryLow,
}

/// A button the visiting patrol presses on the alarm unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visit {
    /// Status 0088, presence: the patrol has arrived.
    Presence,
    /// Status 0111, check-out: the patrol leaves.
    CheckOut,
}

impl Visit {
    fn stc(self) -> u16 {
        match self {
            Visit::Presence => crate::ingest::scaip::STC_PRESENCE,
            Visit::CheckOut => crate::ingest::scaip::STC_CHECK_OUT,
        }
    }
}

/// Whether a home goes on after a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Go,
    /// Shutdown, or vakt refused the home's credentials.
    Stop,
}

/// Why a SCAIP request got no usable answer.
#[derive(Debug, thiserror::Error)]
enum HomeError {
    #[error("{0}")]
    Luc(#[from] LucError),
    /// vakt refused the credentials (401, or 403).
    #[error("credentials refused (SIP {0})")]
    Refused(u16),
    /// Another final answer than 200 (e.g. 503 over the rate).
    #[error("answered SIP {0}")]
    Status(u16),
    #[error("no <mrs> for this request")]
    NoMrs,
}

/// The SCAIP part of [`simulate`]: one task per home, and a scheduler that hands them
/// their stories.
async fn simulate_scaip(
    server: SocketAddr,
    opts: &SimOptions,
    mut rng: SmallRng,
    shutdown: &CancellationToken,
) {
    let homes = scaip_homes(&opts.scaip);
    if homes.is_empty() {
        tracing::debug!("demo: no SCAIP homes in the demo data");
        return;
    }
    tracing::info!(
        homes = homes.len(),
        %server,
        "demo: simulating the Vaktby SCAIP homes"
    );
    // References unique across restarts of the demo: the start time, then a counter.
    let prefix = u32::try_from(jiff::Timestamp::now().as_second().rem_euclid(1 << 32)).unwrap_or(0);
    let mut tasks = JoinSet::new();
    let mut senders = Vec::with_capacity(homes.len());
    for home in homes {
        // One story waiting at most: a home busy with a held alarm lets the others pass.
        let (tx, rx) = mpsc::channel(1);
        senders.push(tx);
        let sim = HomeSim {
            server,
            opts: opts.scaip.clone(),
            rng: SmallRng::seed_from_u64(rng.random::<u64>()),
            luc: None,
            ref_prefix: prefix,
            next_ref: 0,
            hbi: None,
            backoff: BACKOFF_MIN,
            not_before: None,
            visits: Vec::new(),
            home,
        };
        tasks.spawn(sim.run(rx, shutdown.clone()));
    }
    scaip_schedule(&senders, &opts.scaip, rng, shutdown).await;
    drop(senders);
    while tasks.join_next().await.is_some() {}
}

/// Hands a story to a random home at exponential intervals, until `shutdown`.
async fn scaip_schedule(
    senders: &[mpsc::Sender<HomeStory>],
    opts: &ScaipSimOptions,
    mut rng: SmallRng,
    shutdown: &CancellationToken,
) {
    if senders.is_empty() {
        return;
    }
    let mean = opts.mean_alarm_interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    let mut wait = exp_interval(&mut rng, mean).min(SCAIP_FIRST_WITHIN);
    loop {
        if pause(wait, shutdown).await {
            return;
        }
        let story = if percent(&mut rng, opts.battery_percent) {
            HomeStory::BatteryLow
        } else {
            HomeStory::Alarm {
                fall: percent(&mut rng, opts.fall_percent),
            }
        };
        let i = rng.random_range(0..senders.len());
        if let Some(tx) = senders.get(i) {
            if let Err(e) = tx.try_send(story) {
                tracing::debug!(error = %e, "demo: SCAIP home busy, story dropped");
            }
        }
        wait = exp_interval(&mut rng, mean);
    }
}

/// True `p` times out of 100.
fn percent(rng: &mut SmallRng, p: u32) -> bool {
    rng.random_range(0..100u32) < p
}

/// The `<mrq>` of a home: `mty` (omitted for an alarm or status message), `hbo=001` for a
/// heartbeat, `cid`, `dty` and `stc` (omitted: the alarm state), in SS 91100's order.
fn mrq_body(reference: &str, mty: Option<&str>, cid: &str, dty: u16, stc: Option<u16>) -> String {
    let mut b = format!("<mrq><ref>{reference}</ref>");
    if let Some(m) = mty {
        b.push_str(&format!("<mty>{m}</mty>"));
        if m == "PI" {
            b.push_str("<hbo>001</hbo>");
        }
    }
    b.push_str(&format!("<cid>{cid}</cid><dty>{dty:04}</dty>"));
    if let Some(s) = stc {
        b.push_str(&format!("<stc>{s:04}</stc>"));
    }
    b.push_str("</mrq>");
    b
}

/// One simulated SCAIP home: heartbeats on its own clock, the scheduler's stories, and the
/// patrol's presses after an answered alarm; one [`Luc`] on its own UDP socket, one request
/// at a time (each waits for its `<mrs>`).
struct HomeSim {
    home: ScaipHome,
    server: SocketAddr,
    opts: ScaipSimOptions,
    rng: SmallRng,
    /// The unit's SIP client, made on demand and dropped on any error (a fresh socket).
    luc: Option<Luc>,
    ref_prefix: u32,
    next_ref: u32,
    /// The heartbeat interval vakt last answered (`hbi`).
    hbi: Option<Duration>,
    backoff: Duration,
    not_before: Option<Instant>,
    /// Presses waiting: when, which.
    visits: Vec<(Instant, Visit)>,
}

/// What a home does next.
enum HomeJob {
    Beat,
    Story(HomeStory),
    Visit(Visit),
}

impl HomeSim {
    async fn run(mut self, mut rx: mpsc::Receiver<HomeStory>, shutdown: CancellationToken) {
        let first = self.home.heartbeat.min(Duration::from_secs(5));
        let first_ms = u64::try_from(first.as_millis()).unwrap_or(5000).max(1);
        let mut next_beat =
            Instant::now() + Duration::from_millis(self.rng.random_range(0..first_ms));
        let mut open = true;
        loop {
            let visit = self.visits.iter().map(|v| v.0).min();
            let wake = visit.map_or(next_beat, |v| v.min(next_beat));
            let job = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                s = rx.recv(), if open => match s {
                    Some(s) => HomeJob::Story(s),
                    None => { open = false; continue; }
                },
                () = tokio::time::sleep_until(wake) => match self.due_visit(Instant::now()) {
                    Some(v) => HomeJob::Visit(v),
                    None => HomeJob::Beat,
                },
            };
            let work = async {
                match job {
                    HomeJob::Beat => {
                        let f = self.beat().await;
                        let jitter = self.rng.random_range(0.9..1.1);
                        next_beat = Instant::now() + self.beat_interval().mul_f64(jitter);
                        f
                    }
                    HomeJob::Story(HomeStory::Alarm { fall }) => self.alarm(fall, &shutdown).await,
                    HomeJob::Story(HomeStory::BatteryLow) => self.battery_low().await,
                    HomeJob::Visit(v) => self.visit(v).await,
                }
            };
            let flow = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                f = work => f,
            };
            if flow == Flow::Stop {
                return;
            }
        }
    }

    /// Removes and returns the earliest press due at `now`.
    fn due_visit(&mut self, now: Instant) -> Option<Visit> {
        let (i, _) = self
            .visits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.0 <= now)
            .min_by_key(|(_, v)| v.0)?;
        Some(self.visits.swap_remove(i).1)
    }

    fn plan_visit(&mut self, after: &RangeInclusive<Duration>, v: Visit) {
        if self.visits.len() < MAX_VISITS {
            let d = draw(&mut self.rng, after);
            self.visits.push((Instant::now() + d, v));
        }
    }

    /// The heartbeat interval: the home's, at most half the `hbi` vakt answered.
    fn beat_interval(&self) -> Duration {
        let hb = self.home.heartbeat;
        self.hbi.map_or(hb, |h| hb.min(h / 2)).max(MIN_INTERVAL)
    }

    /// A new message reference (`[0-9A-F]{1,16}`).
    fn new_ref(&mut self) -> String {
        self.next_ref = self.next_ref.wrapping_add(1);
        format!("{:X}{:06X}", self.ref_prefix, self.next_ref & 0xFF_FFFF)
    }

    fn body(&self, reference: &str, mty: Option<&str>, dty: u16, stc: Option<u16>) -> String {
        mrq_body(reference, mty, &self.home.cid, dty, stc)
    }

    /// Sends `body` and returns vakt's `<mrs>` for `reference`. A transport error drops the
    /// client (the next request makes a new one, after a backoff of 1 s doubling to 30 s).
    async fn exchange(&mut self, body: &str, reference: &str) -> Result<Mrs, HomeError> {
        if self.luc.is_none() {
            if let Some(t) = self.not_before.take() {
                tokio::time::sleep_until(t).await;
            }
            let pw = self.home.password.expose();
            self.luc = Some(Luc::udp(self.server, &self.home.user, pw).await?);
        }
        let r = match self.luc.as_mut() {
            Some(luc) => talk(luc, body, reference).await,
            None => Err(HomeError::NoMrs),
        };
        match &r {
            Ok(_) => self.backoff = BACKOFF_MIN,
            Err(HomeError::Refused(_)) => {}
            Err(_) => {
                self.luc = None;
                self.not_before = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
        r
    }

    /// [`HomeSim::exchange`], tried up to [`SCAIP_ATTEMPTS`] times (the same reference).
    async fn send(&mut self, body: &str, reference: &str) -> Result<Mrs, HomeError> {
        let mut last = HomeError::NoMrs;
        for attempt in 0..SCAIP_ATTEMPTS {
            match self.exchange(body, reference).await {
                Ok(m) => return Ok(m),
                Err(e @ HomeError::Refused(_)) => return Err(e),
                Err(e) => {
                    tracing::debug!(cid = %self.home.cid, attempt, error = %e, "demo: SCAIP message not answered");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// vakt refused this home's credentials: said once, and the home stops.
    fn refused(&self, e: &HomeError) -> Flow {
        tracing::warn!(
            cid = %self.home.cid,
            user = %self.home.user,
            error = %e,
            "demo: vakt refused the SCAIP home of {} (is this data directory seeded by an \
             older demo, without the SCAIP homes?); it stays silent",
            self.home.name
        );
        Flow::Stop
    }

    /// A heartbeat (`mty=PI`, `hbo=001`): keeps the unit supervised, learns `hbi`.
    async fn beat(&mut self) -> Flow {
        let r = self.new_ref();
        let body = self.body(&r, Some("PI"), DTY_UNIT, None);
        match self.exchange(&body, &r).await {
            Ok(mrs) => {
                if let Some(m) = mrs.hbi {
                    self.hbi = Some(Duration::from_secs(u64::from(m) * 60));
                }
                tracing::debug!(cid = %self.home.cid, snu = mrs.snu, hbi = ?mrs.hbi, "demo: SCAIP heartbeat answered");
                Flow::Go
            }
            Err(e @ HomeError::Refused(_)) => self.refused(&e),
            Err(e) => {
                tracing::debug!(cid = %self.home.cid, error = %e, "demo: SCAIP heartbeat not answered");
                Flow::Go
            }
        }
    }

    /// An alarm: the same `<mrq>` every 5-10 s while vakt holds it (`snu 4`), done on
    /// `snu 0` (an operator took the Call: the unit would now place its voice call, which
    /// vakt does not carry), a reset (`mty=RE`) after [`ScaipSimOptions::give_up_after`].
    async fn alarm(&mut self, fall: bool, shutdown: &CancellationToken) -> Flow {
        let reference = self.new_ref();
        let dty = if fall { DTY_FALL } else { DTY_PENDANT };
        let body = self.body(&reference, None, dty, None);
        let (name, her) = (self.home.name.clone(), self.home.pronoun);
        let cid = self.home.cid.clone();
        let say = if fall {
            format!("demo: {name}'s fall detector went off (SCAIP, held until an operator answers)")
        } else {
            format!("demo: {name} pressed {her} alarm (SCAIP, held until an operator answers)")
        };
        let started = Instant::now();
        let give_up = started + self.opts.give_up_after.min(MAX_DELAY);
        let mut said = false;
        let mut polls: u32 = 0;
        loop {
            polls += 1;
            match self.exchange(&body, &reference).await {
                Ok(mrs) if mrs.snu == vakt_proto::scaip::snu::OK => {
                    if !said {
                        tracing::info!(cid = %cid, reference = %reference, "{say}");
                    }
                    let secs = started.elapsed().as_secs();
                    match mrs.mre.filter(|m| *m > 0) {
                        Some(mre) => tracing::info!(
                            cid = %cid,
                            reference = %reference,
                            mre,
                            "demo: an operator took {name}'s alarm after {secs} s; the alarm \
                             unit would now place its voice call"
                        ),
                        None => tracing::info!(
                            cid = %cid,
                            reference = %reference,
                            "demo: vakt finished {name}'s alarm after {secs} s (no voice call)"
                        ),
                    }
                    if percent(&mut self.rng, self.opts.presence_percent) {
                        let after = self.opts.presence_after.clone();
                        self.plan_visit(&after, Visit::Presence);
                    }
                    return Flow::Go;
                }
                Ok(mrs) if mrs.snu == vakt_proto::scaip::snu::HOLD => {
                    if !said {
                        tracing::info!(cid = %cid, reference = %reference, "{say}");
                        said = true;
                    }
                    tracing::debug!(cid = %cid, reference = %reference, polls, "demo: SCAIP alarm held");
                }
                // Busy (snu 6): a real unit would also try its next route; this one polls on.
                Ok(mrs) if mrs.snu == vakt_proto::scaip::snu::BUSY => {
                    tracing::debug!(cid = %cid, reference = %reference, "demo: SCAIP alarm answered busy");
                }
                Ok(mrs) => {
                    tracing::debug!(cid = %cid, reference = %reference, snu = mrs.snu, "demo: SCAIP alarm refused");
                    return Flow::Go;
                }
                Err(e @ HomeError::Refused(_)) => return self.refused(&e),
                Err(e) => {
                    tracing::debug!(cid = %cid, reference = %reference, error = %e, "demo: SCAIP alarm not answered");
                }
            }
            let wait = draw(&mut self.rng, &self.opts.poll_every).max(MIN_INTERVAL);
            if Instant::now() + wait >= give_up {
                break;
            }
            if pause(wait, shutdown).await {
                return Flow::Stop;
            }
        }
        // Nobody answered in time: the unit stops waiting (and would try its other route).
        let reset = self.body(&reference, Some("RE"), dty, None);
        match self.send(&reset, &reference).await {
            Ok(_) => {
                let mins = started.elapsed().as_secs() / 60;
                tracing::info!(
                    cid = %cid,
                    reference = %reference,
                    "demo: {name}'s alarm unit gave up waiting for an operator after {mins} min (reset)"
                );
                Flow::Go
            }
            Err(e @ HomeError::Refused(_)) => self.refused(&e),
            Err(e) => {
                tracing::debug!(cid = %cid, error = %e, "demo: SCAIP reset not answered");
                Flow::Go
            }
        }
    }

    /// The pendant's battery runs low (status 0016): answered `snu 0` once durable.
    async fn battery_low(&mut self) -> Flow {
        let r = self.new_ref();
        let body = self.body(&r, None, DTY_PENDANT, Some(STC_BATTERY_LOW));
        match self.send(&body, &r).await {
            Ok(_) => {
                tracing::info!(
                    cid = %self.home.cid,
                    "demo: low battery in {}'s alarm pendant (SCAIP)",
                    self.home.name
                );
                Flow::Go
            }
            Err(e @ HomeError::Refused(_)) => self.refused(&e),
            Err(e) => {
                tracing::debug!(cid = %self.home.cid, error = %e, "demo: SCAIP battery low given up");
                Flow::Go
            }
        }
    }

    /// The patrol presses presence (status 0088, then a check-out is planned) or checks
    /// out (0111) on the alarm unit; vakt marks the patrol's dispatch from them.
    async fn visit(&mut self, v: Visit) -> Flow {
        let r = self.new_ref();
        let body = self.body(&r, None, DTY_UNIT, Some(v.stc()));
        match self.send(&body, &r).await {
            Ok(_) => {
                let name = &self.home.name;
                match v {
                    Visit::Presence => tracing::info!(
                        cid = %self.home.cid,
                        "demo: the patrol pressed presence on {name}'s alarm unit (SCAIP)"
                    ),
                    Visit::CheckOut => tracing::info!(
                        cid = %self.home.cid,
                        "demo: the patrol checked out on {name}'s alarm unit (SCAIP)"
                    ),
                }
                if v == Visit::Presence {
                    let after = self.opts.check_out_after.clone();
                    self.plan_visit(&after, Visit::CheckOut);
                }
                Flow::Go
            }
            Err(e @ HomeError::Refused(_)) => self.refused(&e),
            Err(e) => {
                tracing::debug!(cid = %self.home.cid, error = %e, "demo: SCAIP presence given up");
                Flow::Go
            }
        }
    }
}

/// One request through `luc`: the final SIP answer, and the `<mrs>` for `reference`
/// (skipping at most [`MAX_STALE_MRS`] answers to earlier requests).
async fn talk(luc: &mut Luc, body: &str, reference: &str) -> Result<Mrs, HomeError> {
    let x = luc.mrq(body).await?;
    match x.code {
        200 => {}
        401 | 403 => return Err(HomeError::Refused(x.code)),
        c => return Err(HomeError::Status(c)),
    }
    let mut mrs = x.mrs.ok_or(HomeError::NoMrs)?;
    for _ in 0..MAX_STALE_MRS {
        if mrs.reference.as_deref() == Some(reference) {
            return Ok(mrs);
        }
        mrs = luc.await_mrs().await?;
    }
    if mrs.reference.as_deref() == Some(reference) {
        Ok(mrs)
    } else {
        Err(HomeError::NoMrs)
    }
}

// ---------------------------------------------------------------------------------------
// The patrol simulator
// ---------------------------------------------------------------------------------------

/// The demo patrol that never connects: `natt-2` (Nattpatrullen 2, the municipality's second
/// night patrol, whose phone is "switched off"). It is never the suggested patrol (each
/// provider's own patrol, or Nattpatrullen 1, comes first), so the usual dispatches work; to
/// see a receipt timeout pass a dispatch on, dispatch a Call to it: after the receipt timeout
/// (120 s by default) the dispatch passes to the next patrol of the route on shift that has
/// not been tried for the Call, also one earlier in the route (at night: the provider's own
/// night patrol, or Nattpatrullen 1). When nobody is left the operator is told who was tried
/// and why, and a Call already closed comes back to the queue. It has a token like the
/// others, so `vakt patrol` can play it by hand.
pub const OFFLINE_PATROL: &str = "natt-2";

/// How the simulated patrols behave. Every delay is drawn uniformly from its range (the
/// ranges are in order; a reversed one is taken the right way round, and at most a day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatrolSimOptions {
    /// From an assignment reaching the patrol to its `received` (default 3-15 s).
    pub receipt_after: RangeInclusive<Duration>,
    /// From `received` to `accepted` (default 2-10 s).
    pub accept_after: RangeInclusive<Duration>,
    /// From `accepted` to `arrived` (default 60-360 s: well within the 30-minute limit).
    pub arrive_after: RangeInclusive<Duration>,
    /// From `arrived` to `completed` (default 30-90 s).
    pub complete_after: RangeInclusive<Duration>,
    /// Patrols that never connect (default [`OFFLINE_PATROL`]).
    pub offline: Vec<String>,
    /// Seed of the random choices (delays, outcomes).
    pub seed: u64,
}

impl Default for PatrolSimOptions {
    fn default() -> Self {
        PatrolSimOptions {
            receipt_after: Duration::from_secs(3)..=Duration::from_secs(15),
            accept_after: Duration::from_secs(2)..=Duration::from_secs(10),
            arrive_after: Duration::from_secs(60)..=Duration::from_secs(360),
            complete_after: Duration::from_secs(30)..=Duration::from_secs(90),
            offline: vec![OFFLINE_PATROL.to_owned()],
            seed: rand::random(),
        }
    }
}

/// Most patrols simulated (a bound; the demo has 16).
const MAX_SIM_PATROLS: usize = 256;
/// Most assignments one simulated patrol keeps at once; more are left to the clocks.
const MAX_PLANS: usize = 32;
/// Longest delay drawn (a bound against overflowing the clock).
const MAX_DELAY: Duration = Duration::from_secs(86_400);
/// The first connections are spread over this long.
const CONNECT_SPREAD: Duration = Duration::from_millis(500);
/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Runs the demo patrols against vakt's patrol QUIC endpoint at `server` (an unspecified
/// address such as `0.0.0.0:7200` is reached over loopback), trusting exactly the
/// certificate with the SHA-256 `fingerprint`, until `shutdown` is cancelled; returns
/// promptly then. One task and one connection per patrol of `logins` (each patrol once),
/// except those of [`PatrolSimOptions::offline`].
///
/// Each patrol logs in with its token and gets its open assignments; for each assignment
/// it confirms receipt, accepts, arrives (method `lock` when the home has a digital lock,
/// else `app`) and completes (mostly `helped`, sometimes `no_action`, rarely
/// `ambulance_called`, with a note), each after a delay of [`PatrolSimOptions`], every event
/// acknowledged before the next. A cancelled assignment is dropped; a warning is logged. The
/// plan of an assignment survives a reconnect, and an assignment the server already moved on
/// (e.g. arrived by a lock event) continues from there. A lost connection is retried with
/// backoff (1 s doubling to 30 s, with jitter); a refusal the protocol says not to retry
/// (`bad_token`, `unknown_patrol`, `replaced`, e.g. by someone playing the patrol with
/// `vakt patrol`) ends that patrol's task. Steps are logged at info by patrol id, dispatch
/// and subscriber name; never a token or a door code. Never panics.
pub async fn simulate_patrols(
    server: SocketAddr,
    fingerprint: [u8; 32],
    logins: Vec<PatrolLogin>,
    opts: PatrolSimOptions,
    shutdown: CancellationToken,
) {
    let server = loopback(server);
    let trust = Trust::Pinned(fingerprint);
    let mut root = SmallRng::seed_from_u64(opts.seed);
    let mut tasks = JoinSet::new();
    let mut seen = HashSet::new();
    for login in logins {
        if opts.offline.contains(&login.patrol) {
            tracing::info!(patrol = %login.patrol, "demo: this patrol stays offline");
            continue;
        }
        if !seen.insert(login.patrol.clone()) {
            continue;
        }
        if seen.len() > MAX_SIM_PATROLS {
            tracing::warn!(
                max = MAX_SIM_PATROLS,
                "demo: too many patrols, the rest are not simulated"
            );
            break;
        }
        let sim = PatrolSim {
            id: login.patrol,
            token: login.token,
            opts: opts.clone(),
            rng: SmallRng::seed_from_u64(root.random::<u64>()),
            plans: BTreeMap::new(),
            next_seq: 1,
        };
        tasks.spawn(sim.run(server, trust.clone(), shutdown.clone()));
    }
    tracing::info!(
        patrols = tasks.len(),
        %server,
        "demo: simulating the Vaktby patrols"
    );
    while tasks.join_next().await.is_some() {}
    tracing::debug!("demo: patrol simulator stopped");
}

/// `addr`, with an unspecified IP replaced by the loopback address of its family (where
/// the demo's simulators reach vakt's own listeners).
pub fn loopback(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// What a simulated patrol does next for one assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Receive,
    Accept,
    Arrive,
    Complete,
}

impl Step {
    /// The step that follows an assignment in `state`, or `None` when it is over.
    fn after(state: DispatchState) -> Option<Step> {
        match state {
            DispatchState::Offered => Some(Step::Receive),
            DispatchState::Received => Some(Step::Accept),
            DispatchState::Accepted => Some(Step::Arrive),
            DispatchState::Arrived => Some(Step::Complete),
            DispatchState::Declined
            | DispatchState::ReceiptTimeout
            | DispatchState::Completed
            | DispatchState::Cancelled => None,
        }
    }

    fn next(self) -> Option<Step> {
        match self {
            Step::Receive => Some(Step::Accept),
            Step::Accept => Some(Step::Arrive),
            Step::Arrive => Some(Step::Complete),
            Step::Complete => None,
        }
    }
}

/// One assignment the patrol is working on.
#[derive(Clone, Debug)]
struct Plan {
    step: Step,
    due: Instant,
    call: u64,
    /// The subscriber's name (for the log).
    name: String,
    /// The home has a digital lock: arrival is by `lock`.
    lock: bool,
}

/// How a session ended.
enum Ended {
    Shutdown,
    Lost(ClientError),
}

/// One simulated patrol.
struct PatrolSim {
    id: String,
    token: Secret,
    opts: PatrolSimOptions,
    rng: SmallRng,
    /// By dispatch id; kept across reconnects.
    plans: BTreeMap<u64, Plan>,
    /// The next `seq` of this patrol's messages, continued across reconnects.
    next_seq: u64,
}

/// Sleeps `d`; true if `shutdown` came first.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// A delay drawn uniformly from `r` (see [`PatrolSimOptions`]).
fn draw(rng: &mut SmallRng, r: &RangeInclusive<Duration>) -> Duration {
    let ms = |d: Duration| u64::try_from(d.min(MAX_DELAY).as_millis()).unwrap_or(0);
    let (a, b) = (ms(*r.start()), ms(*r.end()));
    Duration::from_millis(rng.random_range(a.min(b)..=a.max(b)))
}

/// Outcomes of the demo visits with their notes (Swedish, as the patrols write them).
const VISITS: &[(u32, VisitOutcome, &str)] = &[
    (
        25,
        VisitOutcome::Helped,
        "Hjälpte upp efter fall, inga synliga skador.",
    ),
    (
        20,
        VisitOutcome::Helped,
        "Hjälp till toaletten, lugn när vi gick.",
    ),
    (
        15,
        VisitOutcome::Helped,
        "Orolig och ensam, samtal och kaffe, mår bra nu.",
    ),
    (10, VisitOutcome::Helped, "Bytte skydd och bäddade om."),
    (20, VisitOutcome::NoAction, "Larmade av misstag, allt väl."),
    (
        6,
        VisitOutcome::Other,
        "Larmet hade lossnat från armen, satte på det igen.",
    ),
    (
        4,
        VisitOutcome::AmbulanceCalled,
        "Bröstsmärta, ambulans larmad, anhörig underrättad.",
    ),
];

impl PatrolSim {
    async fn run(mut self, server: SocketAddr, trust: Trust, shutdown: CancellationToken) {
        let spread = draw(&mut self.rng, &(Duration::ZERO..=CONNECT_SPREAD));
        if pause(spread, &shutdown).await {
            return;
        }
        let min = Duration::from_secs(u64::from(RECONNECT_MIN_SECS));
        let max = Duration::from_secs(u64::from(RECONNECT_MAX_SECS));
        let mut backoff = min;
        let host = server.ip().to_string();
        loop {
            let attempt = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                r = Session::open(server, &host, &trust, &self.id, self.token.expose(), self.next_seq) => r,
            };
            let error = match attempt {
                Ok((s, welcome, assignments)) => {
                    tracing::debug!(patrol = %self.id, open = welcome.open.len(), "demo: patrol connected");
                    let started = Instant::now();
                    self.plans.retain(|id, _| welcome.open.contains(id));
                    for a in &assignments {
                        self.assigned(a);
                    }
                    match self.session(s, &shutdown).await {
                        Ended::Shutdown => return,
                        Ended::Lost(e) => {
                            if started.elapsed() >= STABLE_SESSION {
                                backoff = min;
                            }
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            if let ClientError::Refused {
                code: ErrorCode::Replaced,
                ..
            } = error
            {
                tracing::info!(
                    patrol = %self.id,
                    "demo: patrol {} is now played by another client; its simulator stops",
                    self.id
                );
                return;
            }
            if error.is_final() {
                tracing::warn!(
                    patrol = %self.id,
                    error = %error,
                    "demo: the server refused this patrol; its simulator stops"
                );
                return;
            }
            let jitter = draw(&mut self.rng, &(Duration::ZERO..=backoff / 5));
            tracing::debug!(
                patrol = %self.id,
                error = %error,
                retry_in_ms = u64::try_from((backoff + jitter).as_millis()).unwrap_or(u64::MAX),
                "demo: patrol not connected"
            );
            if pause(backoff + jitter, &shutdown).await {
                return;
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// Serves one logged-in session until it is lost or `shutdown`.
    async fn session(&mut self, mut s: Session, shutdown: &CancellationToken) -> Ended {
        let ended = self.serve(&mut s, shutdown).await;
        self.next_seq = s.next_seq();
        match ended {
            Ended::Shutdown => s.close().await,
            Ended::Lost(_) => drop(s),
        }
        ended
    }

    async fn serve(&mut self, s: &mut Session, shutdown: &CancellationToken) -> Ended {
        let ping_every = Duration::from_secs(u64::from(PING_INTERVAL_SECS));
        let mut next_ping = Instant::now() + ping_every;
        loop {
            // What is due, one event at a time, each answered before the next.
            while let Some((id, step)) = self.due(Instant::now()) {
                let ev = self.event(s, id, step);
                let answer = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Ended::Shutdown,
                    a = s.send_event(&ev) => a,
                };
                match answer {
                    Ok(a) => self.answered(id, step, &a),
                    Err(e) => return Ended::Lost(e),
                }
            }
            if next_ping <= Instant::now() {
                let r = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Ended::Shutdown,
                    r = s.ping() => r,
                };
                if let Err(e) = r {
                    return Ended::Lost(e);
                }
                next_ping = Instant::now() + ping_every;
            }
            let wake = self
                .plans
                .values()
                .map(|p| p.due)
                .min()
                .map_or(next_ping, |d| d.min(next_ping));
            let wait = wake.saturating_duration_since(Instant::now());
            // A session given up halfway through a read is dropped, never used again.
            let m = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ended::Shutdown,
                m = s.next_push(wait) => m,
            };
            match m {
                Ok(Some(m)) => {
                    if let Some(e) = self.pushed(m) {
                        return Ended::Lost(e);
                    }
                }
                Ok(None) => {}
                Err(e) => return Ended::Lost(e),
            }
        }
    }

    /// The earliest plan due at `now`.
    fn due(&self, now: Instant) -> Option<(u64, Step)> {
        self.plans
            .iter()
            .filter(|(_, p)| p.due <= now)
            .min_by_key(|(_, p)| p.due)
            .map(|(id, p)| (*id, p.step))
    }

    fn delay(&mut self, step: Step) -> Duration {
        let r = match step {
            Step::Receive => self.opts.receipt_after.clone(),
            Step::Accept => self.opts.accept_after.clone(),
            Step::Arrive => self.opts.arrive_after.clone(),
            Step::Complete => self.opts.complete_after.clone(),
        };
        draw(&mut self.rng, &r)
    }

    /// An assignment arrived (new, or again after a reconnect or a change).
    fn assigned(&mut self, a: &AssignmentMsg) {
        let Some(step) = Step::after(a.state) else {
            self.plans.remove(&a.dispatch);
            return;
        };
        if let Some(p) = self.plans.get(&a.dispatch) {
            if p.step >= step {
                // Already planned (or further along): keep its time.
                return;
            }
        } else if self.plans.len() >= MAX_PLANS {
            tracing::warn!(patrol = %self.id, dispatch = a.dispatch, "demo: patrol too busy, assignment left alone");
            return;
        } else {
            tracing::info!(
                patrol = %self.id,
                dispatch = a.dispatch,
                call = a.call,
                "demo: patrol {} got an assignment: {} at {}",
                self.id,
                a.reason,
                a.subscriber.name
            );
        }
        let due = Instant::now() + self.delay(step);
        self.plans.insert(
            a.dispatch,
            Plan {
                step,
                due,
                call: a.call,
                name: a.subscriber.name.clone(),
                lock: !a.access.digital_lock_id.is_empty(),
            },
        );
    }

    /// A pushed message; `Some` when the session must end.
    fn pushed(&mut self, m: ToPatrol) -> Option<ClientError> {
        match m {
            ToPatrol::Assignment(a) => self.assigned(&a),
            ToPatrol::SlaWarning {
                dispatch,
                minutes_left,
                ..
            } => tracing::info!(
                patrol = %self.id,
                dispatch,
                "demo: patrol {} warned: {minutes_left} min left",
                self.id
            ),
            ToPatrol::Cancelled {
                dispatch, reason, ..
            } => {
                self.plans.remove(&dispatch);
                tracing::info!(
                    patrol = %self.id,
                    dispatch,
                    "demo: patrol {} told to stand down ({reason})",
                    self.id
                );
            }
            ToPatrol::Error {
                code,
                message,
                fatal: true,
                ..
            } => return Some(ClientError::Refused { code, message }),
            ToPatrol::Error { code, .. } => {
                tracing::debug!(patrol = %self.id, code = code.as_str(), "demo: error from the server");
            }
            ToPatrol::Welcome { .. } | ToPatrol::Ack { .. } | ToPatrol::Pong { .. } => {}
        }
        None
    }

    /// The event of `step` for dispatch `id`, with the session's next `seq`.
    fn event(&mut self, s: &mut Session, id: u64, step: Step) -> FromPatrol {
        let seq = s.next_seq();
        let at = jiff::Timestamp::now();
        let lock = self.plans.get(&id).is_some_and(|p| p.lock);
        match step {
            Step::Receive => FromPatrol::Received {
                seq,
                dispatch: id,
                at,
            },
            Step::Accept => FromPatrol::Accepted {
                seq,
                dispatch: id,
                at,
            },
            Step::Arrive => FromPatrol::Arrived {
                seq,
                dispatch: id,
                at,
                method: if lock {
                    ArrivalMethod::Lock
                } else {
                    ArrivalMethod::App
                },
                code: None,
            },
            Step::Complete => {
                let total: u32 = VISITS.iter().map(|v| v.0).sum();
                let mut roll = self.rng.random_range(0..total.max(1));
                let mut pick = (VisitOutcome::Helped, "");
                for (w, outcome, note) in VISITS {
                    if roll < *w {
                        pick = (*outcome, note);
                        break;
                    }
                    roll -= w;
                }
                FromPatrol::Completed {
                    seq,
                    dispatch: id,
                    at,
                    outcome: pick.0,
                    note: pick.1.to_owned(),
                }
            }
        }
    }

    /// The server answered the event of `step` for dispatch `id`.
    fn answered(&mut self, id: u64, step: Step, answer: &ToPatrol) {
        let Some(plan) = self.plans.get(&id).cloned() else {
            return;
        };
        let ToPatrol::Ack { .. } = answer else {
            // Refused (closed, not ours): the dispatch has moved on without this patrol.
            if let ToPatrol::Error { code, .. } = answer {
                tracing::info!(
                    patrol = %self.id,
                    dispatch = id,
                    code = code.as_str(),
                    "demo: patrol {} dropped dispatch {id}: the server refused {step:?}",
                    self.id
                );
            }
            self.plans.remove(&id);
            return;
        };
        let (id_, name) = (&self.id, &plan.name);
        match step {
            Step::Receive => {
                tracing::info!(patrol = %id_, dispatch = id, call = plan.call, "demo: patrol {id_} confirmed receipt (going to {name})")
            }
            Step::Accept => {
                tracing::info!(patrol = %id_, dispatch = id, call = plan.call, "demo: patrol {id_} accepted and is on its way to {name}")
            }
            Step::Arrive => {
                tracing::info!(patrol = %id_, dispatch = id, call = plan.call, "demo: patrol {id_} arrived at {name}'s home")
            }
            Step::Complete => {
                tracing::info!(patrol = %id_, dispatch = id, call = plan.call, "demo: patrol {id_} completed the visit to {name}")
            }
        }
        match step.next() {
            Some(next) => {
                let due = Instant::now() + self.delay(next);
                if let Some(p) = self.plans.get_mut(&id) {
                    p.step = next;
                    p.due = due;
                }
            }
            None => {
                self.plans.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpListener;

    use super::*;

    fn subscribers() -> Vec<crate::model::Subscriber> {
        crate::registers::subscribers::parse_csv(SUBSCRIBERS_CSV.as_bytes()).unwrap()
    }

    fn devices() -> Vec<Device> {
        devices::parse_csv(devices::DEMO_CSV.as_bytes()).unwrap()
    }

    #[test]
    fn demo_files_parse_and_fit_together() {
        let subs = subscribers();
        assert!(subs.len() >= 30, "{}", subs.len());
        let ids: HashSet<&str> = subs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), subs.len(), "subscriber ids are unique");
        let devs = devices();
        let mut accounts = HashSet::new();
        let mut scaip_subscribers = HashSet::new();
        for d in &devs {
            match (&d.sip_user, &d.sip_password) {
                // A DC-09 device: 4 hex digits.
                (None, None) => assert_eq!(d.account.len(), 4, "{}", d.account),
                // A SCAIP home: cid 7001xx, its own SIP user luc-7001xx and a password.
                (Some(user), Some(pw)) => {
                    assert!(
                        d.account.len() == 6 && d.account.starts_with("7001"),
                        "{}",
                        d.account
                    );
                    assert_eq!(*user, format!("luc-{}", d.account));
                    assert!(pw.expose().len() >= 12, "{}", d.account);
                    assert!(d.key.is_none(), "{}", d.account);
                    let s = d.subscriber.clone().unwrap();
                    assert!(scaip_subscribers.insert(s), "one SCAIP home each");
                }
                _ => panic!("{}: sip_user without sip_password", d.account),
            }
            assert!(accounts.insert(d.account.clone()), "{} twice", d.account);
            let s = d.subscriber.as_deref().unwrap();
            assert!(
                ids.contains(s),
                "device {} belongs to unknown {s}",
                d.account
            );
            let t = d.device_type.as_deref().unwrap();
            assert!(devices::DEVICE_TYPES.contains(&t), "{t}");
            let sup = d.supervision_secs.unwrap();
            assert!((90..=3600).contains(&sup), "{sup}");
        }
        assert!(
            (4..=6).contains(&scaip_subscribers.len()),
            "{scaip_subscribers:?}"
        );
        // Every subscriber has a DC-09 carephone (the SCAIP homes a second alarm unit).
        for s in &subs {
            assert!(
                devs.iter()
                    .any(|d| d.subscriber.as_deref() == Some(s.id.as_str())
                        && d.device_type.as_deref() == Some("carephone")
                        && d.sip_user.is_none()),
                "{} has no carephone",
                s.id
            );
        }
        // The simulators split the fleet between them.
        let opts = SimOptions::default();
        assert_eq!(
            fleet(&opts).len() + scaip_homes(&opts.scaip).len(),
            devs.len()
        );
        assert!(fleet(&opts).iter().all(|d| !d.account.starts_with("7001")));
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
            patrols: vec![PatrolLogin {
                patrol: "norr-dag".into(),
                token: Secret::new("t0ps3cret"),
            }],
        };
        let debug = format!("{users:?}");
        assert!(!debug.contains(&a), "no password in Debug");
        assert!(!debug.contains("t0ps3cret"), "no token in Debug");
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
    fn seed_saves_the_directory_and_a_token_per_patrol_and_the_logins_survive() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let users = seed(&store, jiff::Timestamp::UNIX_EPOCH)
            .unwrap()
            .expect("seeded");
        let expected = crate::registers::directory::parse_all(
            crate::registers::directory::DEMO_PROVIDERS.as_bytes(),
            crate::registers::directory::DEMO_AREAS.as_bytes(),
            crate::registers::directory::DEMO_PATROLS.as_bytes(),
            crate::registers::directory::DEMO_ROUTES.as_bytes(),
        )
        .unwrap();
        assert_eq!(store.directory().unwrap(), expected);
        let ids: Vec<&str> = users.patrols.iter().map(|l| l.patrol.as_str()).collect();
        let want: Vec<&str> = expected.patrols.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, want, "a login for every patrol, in id order");
        assert!(ids.contains(&OFFLINE_PATROL));
        let tokens: HashSet<&str> = users.patrols.iter().map(|l| l.token.expose()).collect();
        assert_eq!(tokens.len(), users.patrols.len(), "tokens differ");
        for l in &users.patrols {
            let hash = crate::store::token_hash(l.token.expose());
            assert!(
                store.patrol_token_matches(&l.patrol, &hash).unwrap(),
                "{}",
                l.patrol
            );
        }
        assert!(!format!("{users:?}").contains(users.patrols[0].token.expose()));

        // Kept in the data directory, for the owner only, and read back the same.
        assert!(load_patrol_logins(dir.path()).is_err(), "nothing saved yet");
        let path = dir.path().join(PATROL_LOGINS_FILE);
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            save_patrol_logins(dir.path(), &users.patrols).unwrap(),
            path
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(load_patrol_logins(dir.path()).unwrap(), users.patrols);

        // A later start (the store reopened) still lets the patrols in.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(seed(&store, jiff::Timestamp::UNIX_EPOCH).unwrap().is_none());
        for l in load_patrol_logins(dir.path()).unwrap() {
            let hash = crate::store::token_hash(l.token.expose());
            assert!(
                store.patrol_token_matches(&l.patrol, &hash).unwrap(),
                "{}",
                l.patrol
            );
        }
    }

    #[test]
    fn the_logins_file_is_read_strictly_and_never_echoes_a_token() {
        let text = "# comment\n\n  norr-dag abc  \nsoder-dag def\nnorr-dag ghi\n";
        let got = parse_logins(text).unwrap();
        assert_eq!(
            got,
            vec![
                PatrolLogin {
                    patrol: "soder-dag".into(),
                    token: Secret::new("def")
                },
                PatrolLogin {
                    patrol: "norr-dag".into(),
                    token: Secret::new("ghi")
                },
            ],
            "the last token of a patrol counts"
        );
        let e = parse_logins("norr-dag\n").unwrap_err();
        assert_eq!(e, "line 1: expected `PATROL TOKEN`");
        let e = parse_logins("# x\nnorr-dag s3cr3t extra\n").unwrap_err();
        assert_eq!(e, "line 2: expected `PATROL TOKEN`");
        let e = parse_logins("n/a s3cr3t\n").unwrap_err();
        assert!(e.starts_with("line 1: not a patrol id"), "{e}");
        assert!(!e.contains("s3cr3t"));
        let long = format!("norr-dag {}\n", "x".repeat(MAX_TOKEN_CHARS + 1));
        assert!(parse_logins(&long).is_err());
        assert_eq!(parse_logins("").unwrap(), vec![]);
    }

    #[test]
    fn patrol_steps_and_delays() {
        assert_eq!(Step::after(DispatchState::Offered), Some(Step::Receive));
        assert_eq!(Step::after(DispatchState::Arrived), Some(Step::Complete));
        assert_eq!(Step::after(DispatchState::ReceiptTimeout), None);
        assert_eq!(Step::Arrive.next(), Some(Step::Complete));
        assert_eq!(Step::Complete.next(), None);
        let mut rng = SmallRng::seed_from_u64(1);
        let r = Duration::from_secs(60)..=Duration::from_secs(360);
        for _ in 0..100 {
            assert!(r.contains(&draw(&mut rng, &r)));
        }
        // Reversed and huge ranges stay sane.
        let rev = Duration::from_secs(9)..=Duration::from_secs(3);
        assert!((3..=9).contains(&draw(&mut rng, &rev).as_secs()));
        let huge = Duration::MAX..=Duration::MAX;
        assert_eq!(draw(&mut rng, &huge), MAX_DELAY);
        let opts = PatrolSimOptions::default();
        assert_eq!(opts.offline, [OFFLINE_PATROL]);
        assert_eq!(*opts.arrive_after.end(), Duration::from_secs(360));
        assert_eq!(
            loopback("0.0.0.0:7200".parse().unwrap()),
            "127.0.0.1:7200".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            loopback("[::]:7200".parse().unwrap()),
            "[::1]:7200".parse::<SocketAddr>().unwrap()
        );
        assert!(VISITS.iter().all(|v| !v.2.is_empty() && v.0 > 0));
    }

    #[test]
    fn seed_leaves_a_used_directory_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let one =
            devices::parse_csv(format!("{}\n4242,,,,,,,,,\n", devices::CSV_HEADER_V2).as_bytes())
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
            scaip: ScaipSimOptions::default(),
        };
        let sim = tokio::spawn(simulate(Some(addr), None, opts, shutdown.clone()));
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
        // The SCAIP homes never speak DC-09.
        assert!(s.frames.iter().all(|f| !f.0.starts_with("7001")));
        // Every event decodes as Contact ID.
        for f in s.frames.iter().filter(|f| f.2 == Token::AdmCid) {
            let p = vakt_proto::event::decode_payload(Token::AdmCid, &f.3).unwrap();
            assert_eq!(p.events.len(), 1);
        }
    }

    #[test]
    fn scaip_bodies_parse_as_the_standard_says() {
        use vakt_proto::scaip::{MessageType, parse_mrq};
        let m = parse_mrq(mrq_body("1A", Some("PI"), "700108", DTY_UNIT, None).as_bytes()).unwrap();
        assert_eq!(
            (m.mty, m.hbo, m.cid.as_str(), m.dty, m.stc),
            (MessageType::Heartbeat, true, "700108", 2, None)
        );
        let m = parse_mrq(mrq_body("1B", None, "700108", DTY_FALL, None).as_bytes()).unwrap();
        assert_eq!(
            (m.mty, m.hbo, m.dty, m.stc),
            (MessageType::Message, false, 5, None)
        );
        let body = mrq_body("1C", None, "700108", DTY_PENDANT, Some(STC_BATTERY_LOW));
        assert_eq!(
            body,
            "<mrq><ref>1C</ref><cid>700108</cid><dty>0003</dty><stc>0016</stc></mrq>"
        );
        let m = parse_mrq(mrq_body("1B", Some("RE"), "700108", 3, None).as_bytes()).unwrap();
        assert_eq!((m.mty, m.reference.as_str()), (MessageType::Reset, "1B"));
        assert_eq!(Visit::Presence.stc(), 88);
        assert_eq!(Visit::CheckOut.stc(), 111);
    }

    /// What the fake SCAIP ARC saw.
    #[derive(Default)]
    struct ArcSeen {
        /// (SIP user, request) of every authenticated MESSAGE, in order.
        mrqs: Vec<(String, vakt_proto::scaip::Mrq)>,
        /// Challenges sent (401).
        challenged: usize,
        errors: Vec<String>,
    }

    /// The fake ARC's answer to an authenticated request: heartbeats get `hbi 10`; an alarm
    /// of `never` is held for ever, any other alarm twice and then answered with voice.
    fn arc_answer(
        mrq: &vakt_proto::scaip::Mrq,
        never: &str,
        polls: &mut HashMap<(String, String), u32>,
    ) -> Mrs {
        use vakt_proto::scaip::MessageType;
        let mut mrs = Mrs {
            reference: Some(mrq.reference.clone()),
            ..Mrs::default()
        };
        match mrq.mty {
            MessageType::Heartbeat => mrs.hbi = Some(10),
            MessageType::Message if mrq.stc.is_none() => {
                let n = polls
                    .entry((mrq.cid.clone(), mrq.reference.clone()))
                    .or_default();
                *n += 1;
                if mrq.cid == never || *n < 3 {
                    mrs.snu = 4;
                } else {
                    mrs.mre = Some(1);
                }
            }
            _ => {}
        }
        mrs
    }

    /// The fake ARC's state between datagrams.
    struct FakeArc {
        passwords: HashMap<String, String>,
        never: String,
        local: String,
        polls: HashMap<(String, String), u32>,
        cseq: u32,
    }

    const ARC_NONCE: &str = "c0ffee0123456789";

    /// The fake ARC's datagrams in answer to one from a device.
    fn arc_handle(arc: &mut FakeArc, datagram: &[u8], seen: &mut ArcSeen) -> Vec<Vec<u8>> {
        use vakt_proto::{scaip, sip};
        let msg = match sip::parse(datagram) {
            Ok(m) => m,
            Err(e) => {
                seen.errors.push(format!("sip: {e}"));
                return Vec::new();
            }
        };
        // The device's 200 to the ARC's own MESSAGE.
        if !msg.is_request() {
            return Vec::new();
        }
        if msg.method() != Some("MESSAGE") {
            seen.errors.push(format!("{:?}", msg.method()));
            return Vec::new();
        }
        let user = msg
            .header("Authorization")
            .and_then(|a| sip::parse_authorization(a).ok())
            .filter(|c| c.nonce == ARC_NONCE && c.realm == "vakt")
            .and_then(|c| {
                let pw = arc.passwords.get(c.username.as_ref())?;
                let ha1 = sip::ha1(&c.username, "vakt", pw);
                sip::verify(&c, "MESSAGE", &ha1).then(|| c.username.to_string())
            });
        let mut out = Vec::new();
        let Some(user) = user else {
            seen.challenged += 1;
            let ch = sip::challenge("vakt", ARC_NONCE, false);
            let extra = [("WWW-Authenticate", ch.as_str())];
            sip::encode_response(
                &msg,
                401,
                "Unauthorized",
                "arc",
                &extra,
                None,
                b"",
                &mut out,
            );
            return vec![out];
        };
        sip::encode_response(&msg, 200, "OK", "arc", &[], None, b"", &mut out);
        let mrq = match scaip::parse_mrq(msg.body) {
            Ok(m) => m,
            Err(e) => {
                seen.errors.push(format!("mrq: {e}"));
                return vec![out];
            }
        };
        let mrs = arc_answer(&mrq, &arc.never, &mut arc.polls);
        seen.mrqs.push((user, mrq));
        let mut body = Vec::new();
        scaip::encode_mrs(&mrs, &mut body);
        arc.cseq += 1;
        let branch = format!("z9hG4bK{}", sip::random_token(10));
        let mut req = Vec::new();
        sip::encode_request(
            &sip::OutRequest {
                method: "MESSAGE",
                uri: "sip:luc@127.0.0.1",
                via_transport: "UDP",
                via_host: &arc.local,
                branch: &branch,
                from: "<sip:arc@vakt>",
                from_tag: "arc",
                // A request outside any dialog: the device's address, no tag, a new Call-ID.
                to: &format!("<{}>", msg.from_uri().unwrap_or("sip:luc@127.0.0.1")),
                call_id: &sip::random_token(16),
                cseq: arc.cseq,
                content_type: Some(scaip::CONTENT_TYPE),
                body: &body,
            },
            &mut req,
        );
        vec![out, req]
    }

    /// A minimal SCAIP ARC over UDP: Digest challenge and check, `200 OK`, then the `<mrs>`
    /// in a MESSAGE of its own (see [`arc_answer`]).
    async fn fake_arc(
        socket: tokio::net::UdpSocket,
        passwords: HashMap<String, String>,
        never: String,
        seen: Arc<Mutex<ArcSeen>>,
    ) {
        let mut arc = FakeArc {
            passwords,
            never,
            local: socket.local_addr().unwrap().to_string(),
            polls: HashMap::new(),
            cseq: 0,
        };
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let replies = arc_handle(&mut arc, &buf[..n], &mut seen.lock().unwrap());
            for r in replies {
                let _ = socket.send_to(&r, peer).await;
            }
        }
    }

    fn fast_scaip() -> ScaipSimOptions {
        let ms = Duration::from_millis;
        ScaipSimOptions {
            mean_alarm_interval: ms(15),
            heartbeat_interval: ms(40),
            poll_every: ms(5)..=ms(15),
            give_up_after: ms(300),
            battery_percent: 20,
            fall_percent: 40,
            presence_percent: 100,
            presence_after: ms(5)..=ms(20),
            check_out_after: ms(5)..=ms(20),
        }
    }

    /// The SCAIP homes against a fake ARC with real Digest over UDP: every home heartbeats as
    /// its own SIP user with `hbo`; a held alarm polls with the same request and stops once
    /// answered, or resets when never answered; low batteries; presence, then check-out,
    /// after an answered alarm; the simulator stops on shutdown.
    #[tokio::test]
    async fn scaip_homes_poll_while_held_reset_and_press_presence() {
        use vakt_proto::scaip::MessageType;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let homes = scaip_homes(&ScaipSimOptions::default());
        assert!((4..=6).contains(&homes.len()), "{}", homes.len());
        let passwords: HashMap<String, String> = homes
            .iter()
            .map(|h| (h.user.clone(), h.password.expose().to_owned()))
            .collect();
        let never = homes[0].cid.clone();
        let seen = Arc::new(Mutex::new(ArcSeen::default()));
        let arc = tokio::spawn(fake_arc(socket, passwords, never.clone(), seen.clone()));
        let shutdown = CancellationToken::new();
        let opts = SimOptions {
            seed: 3,
            scaip: fast_scaip(),
            ..SimOptions::default()
        };
        let sim = tokio::spawn(simulate(None, Some(addr), opts, shutdown.clone()));

        let alarm = |m: &vakt_proto::scaip::Mrq| {
            m.mty == MessageType::Message && m.stc.is_none() && matches!(m.dty, 3 | 5)
        };
        let done = |s: &ArcSeen| {
            let m: Vec<&vakt_proto::scaip::Mrq> = s.mrqs.iter().map(|x| &x.1).collect();
            let beats: HashSet<&str> = m
                .iter()
                .filter(|m| m.mty == MessageType::Heartbeat && m.hbo)
                .map(|m| m.cid.as_str())
                .collect();
            let reset = m.iter().any(|r| {
                r.mty == MessageType::Reset
                    && r.cid == never
                    && m.iter()
                        .filter(|a| alarm(a) && a.reference == r.reference)
                        .count()
                        >= 2
            });
            let answered = m.iter().any(|a| {
                a.cid != never
                    && alarm(a)
                    && m.iter()
                        .filter(|b| alarm(b) && b.reference == a.reference)
                        .count()
                        == 3
            });
            let stc = |c: u16| m.iter().filter(move |x| x.stc == Some(c));
            let visited = stc(88).any(|p| {
                let at = m.iter().position(|x| std::ptr::eq(*x, *p)).unwrap_or(0);
                m[at..].iter().any(|x| x.stc == Some(111) && x.cid == p.cid)
            });
            let dtys: HashSet<u16> = m.iter().filter(|x| alarm(x)).map(|x| x.dty).collect();
            beats.len() == homes.len()
                && reset
                && answered
                && visited
                && stc(16).next().is_some()
                && dtys.len() == 2
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&seen.lock().unwrap()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), sim)
            .await
            .expect("the simulator stops promptly")
            .unwrap();
        arc.abort();
        let s = seen.lock().unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert!(done(&s), "saw {} requests", s.mrqs.len());
        // Each home speaks as its own SIP user, challenged on first contact.
        for (user, m) in &s.mrqs {
            assert_eq!(*user, format!("luc-{}", m.cid));
        }
        assert!(s.challenged >= homes.len(), "{}", s.challenged);
        // An answered alarm is not polled again; a held one polls until its reset.
        let mut copies: HashMap<(&str, &str), usize> = HashMap::new();
        for (_, m) in s.mrqs.iter().filter(|(_, m)| alarm(m)) {
            *copies.entry((&m.cid, &m.reference)).or_default() += 1;
        }
        for ((cid, _), n) in copies {
            if cid != never {
                assert!(n <= 3, "{cid}: {n} copies");
            }
        }
    }

    /// The SCAIP homes of the demo data against the real server of a seeded data
    /// directory: their credentials are the registry's, so vakt journals their alarms, low
    /// batteries and resets for the right subscribers (nobody takes the alarms here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scaip_homes_reach_the_real_server_of_a_seeded_directory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            seed(&store, jiff::Timestamp::now()).unwrap().unwrap();
            store.flush().unwrap();
        }
        let mut cfg = crate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..crate::config::Config::default()
        };
        cfg.dc09.listen_tcp = None;
        cfg.dc09.listen_udp = None;
        cfg.http.listen = None;
        cfg.patrol.listen_quic = None;
        cfg.scaip.listen_tcp = None;
        cfg.scaip.listen_udp = Some("127.0.0.1:0".parse().unwrap());
        cfg.scaip.rate_per_source = 1000;
        cfg.scaip.rate_burst = 1000;
        cfg.shutdown_grace_secs = 1;
        let running = crate::server::start(cfg).await.unwrap();
        let ms = Duration::from_millis;
        let opts = SimOptions {
            seed: 9,
            scaip: ScaipSimOptions {
                mean_alarm_interval: ms(100),
                heartbeat_interval: ms(300),
                poll_every: ms(50)..=ms(100),
                give_up_after: ms(800),
                battery_percent: 25,
                ..ScaipSimOptions::default()
            },
            ..SimOptions::default()
        };
        let stop = CancellationToken::new();
        let sim = tokio::spawn(simulate(None, running.scaip_udp, opts, stop.clone()));
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), sim)
            .await
            .expect("the simulator stops promptly")
            .unwrap();
        running.stop().await.unwrap();

        let store = Store::open(dir.path()).unwrap();
        let homes: HashMap<String, String> = devices()
            .into_iter()
            .filter_map(|d| Some((d.account, d.subscriber?)))
            .filter(|(a, _)| a.starts_with("7001"))
            .collect();
        let signals: Vec<crate::model::Signal> = store
            .journal_after(0, 100_000)
            .unwrap()
            .into_iter()
            .map(|r| r.signal)
            .filter(|s| s.protocol == crate::ingest::scaip::PROTOCOL)
            .collect();
        let codes: HashSet<&str> = signals
            .iter()
            .flat_map(|s| s.events.iter().map(|e| e.code.as_str()))
            .collect();
        for s in &signals {
            assert!(!s.flags.unknown_device, "{s:?}");
            assert_eq!(s.subscriber.as_ref(), homes.get(&s.account), "{s:?}");
            let info = s.scaip.as_ref().unwrap();
            assert_eq!(info.sip_user, format!("luc-{}", s.account));
        }
        assert!(
            codes.contains("SCAIP 0003") || codes.contains("SCAIP 0005"),
            "{codes:?}"
        );
        assert!(codes.contains("SCAIP 0003/0016"), "{codes:?}");
        assert!(
            codes.contains(crate::triage::priority::SCAIP_RESET),
            "{codes:?}"
        );
    }

    fn demo_call(id: u64, subscriber: &str, account: &str) -> crate::model::Call {
        serde_json::from_value(serde_json::json!({
            "id": id, "priority": 1, "state": "claimed", "owner": "operator",
            "opened_at": "2026-11-23T10:00:00Z", "alarm_count": 1, "subscriber": subscriber,
            "account": account, "kind": "Fall", "restored": false,
            "answered_at": "2026-11-23T10:00:20Z", "closed_at": null, "outcome": null,
            "timeline": []
        }))
        .unwrap()
    }

    async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The demo patrols over real QUIC on 127.0.0.1 against the real dispatcher, hub and
    /// store: every patrol but the offline one logs in; a dispatch made before they connect
    /// (delivered on login) and one made while connected (pushed) both reach `completed`;
    /// a patrol played by hand is left alone; the simulator stops on shutdown; a refused
    /// patrol stops by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_patrols_take_dispatches_to_completed_over_quic() {
        tokio::time::timeout(Duration::from_secs(90), demo_patrols_scenario())
            .await
            .expect("the scenario finishes in time");
    }

    async fn demo_patrols_scenario() {
        use std::sync::Arc;

        use crate::dispatch::hub::Hub;
        use crate::dispatch::patrol_link;
        use crate::dispatch::service::{Dispatcher, Target};
        use crate::dispatch::sla::SlaOptions;
        use crate::transport::quic;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let users = seed(&store, jiff::Timestamp::now()).unwrap().unwrap();
        save_patrol_logins(dir.path(), &users.patrols).unwrap();
        let logins = load_patrol_logins(dir.path()).unwrap();
        store
            .save_calls(
                &[
                    demo_call(1, "S-1001", "1234"),
                    demo_call(2, "S-1002", "5678"),
                ],
                None,
            )
            .unwrap();
        let tz = jiff::tz::TimeZone::get("Europe/Stockholm").unwrap();
        let dispatcher =
            Arc::new(Dispatcher::start(store.clone(), tz, SlaOptions::default()).unwrap());
        let centrum = Target {
            call: 1,
            provider: "Hemtjänst Centrum".into(),
            area: "Centrum".into(),
        };
        let norr = Target {
            call: 2,
            provider: "Hemtjänst Norr".into(),
            area: "Norr".into(),
        };
        let d1 = dispatcher
            .dispatch(&centrum, "centrum-dag", "operator", jiff::Timestamp::now())
            .unwrap();

        let (id, _) = quic::dev_identity(dir.path(), &[]).unwrap();
        let endpoint = quinn::Endpoint::server(
            quic::server_config(&id).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let server_stop = CancellationToken::new();
        let hub = Arc::new(Hub::new(dispatcher.clone(), store.clone()));
        let link = patrol_link::Link::new();
        let server = tokio::spawn(patrol_link::serve(
            endpoint,
            hub.clone(),
            link.clone(),
            32,
            server_stop.clone(),
        ));

        let fast = Duration::from_millis(5)..=Duration::from_millis(40);
        let opts = PatrolSimOptions {
            receipt_after: fast.clone(),
            accept_after: fast.clone(),
            arrive_after: fast.clone(),
            complete_after: fast,
            offline: vec![OFFLINE_PATROL.to_owned()],
            seed: 11,
        };
        let sim_stop = CancellationToken::new();
        let sim = tokio::spawn(simulate_patrols(
            addr,
            id.fingerprint,
            logins.clone(),
            opts.clone(),
            sim_stop.clone(),
        ));

        wait_for("every patrol but the offline one", || {
            link.sessions().len() == logins.len() - 1
        })
        .await;
        assert!(!link.connected(OFFLINE_PATROL));

        // A dispatch while the patrol is connected, pushed as the server does.
        let d2 = dispatcher
            .dispatch(&norr, "norr-dag", "operator", jiff::Timestamp::now())
            .unwrap();
        assert!(link.push(
            "norr-dag",
            ToPatrol::Assignment(Box::new(hub.assignment(&d2)))
        ));

        let state = |id: u64| store.dispatch(id).unwrap().unwrap().state;
        wait_for("both dispatches completed", || {
            state(d1.id) == DispatchState::Completed && state(d2.id) == DispatchState::Completed
        })
        .await;
        for (d, method) in [(&d1, ArrivalMethod::Lock), (&d2, ArrivalMethod::App)] {
            let done = store.dispatch(d.id).unwrap().unwrap();
            assert!(done.received_at.is_some(), "{done:?}");
            assert!(done.accepted_at.is_some(), "{done:?}");
            assert!(done.arrived_at.is_some(), "{done:?}");
            assert!(done.received_at <= done.accepted_at && done.accepted_at <= done.arrived_at);
            assert_eq!(done.arrival_method, Some(method), "{done:?}");
            assert!(!done.note.is_empty(), "{done:?}");
            assert!(!done.breached);
        }
        assert!(dispatcher.live_for("centrum-dag").is_empty());
        assert!(dispatcher.live_for("norr-dag").is_empty());

        // Someone plays norr-dag by hand: the simulator lets go of it and does not take it
        // back (it would reconnect within about a second if it did).
        let token = &logins
            .iter()
            .find(|l| l.patrol == "norr-dag")
            .unwrap()
            .token;
        let trust = Trust::Pinned(id.fingerprint);
        let (mut by_hand, _, _) = Session::connect(addr, &trust, "norr-dag", token.expose())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        by_hand.ping().await.unwrap();
        let m = by_hand.next_push(Duration::from_millis(300)).await;
        assert!(matches!(m, Ok(None)), "still logged in: {m:?}");
        by_hand.close().await;

        // Shutdown: the simulator returns promptly and its patrols log out.
        sim_stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), sim)
            .await
            .expect("the simulator stops promptly")
            .unwrap();
        wait_for("the patrols logged out", || link.sessions().is_empty()).await;

        // A patrol the server refuses (a wrong token) is not retried: the simulator ends.
        let wrong = vec![PatrolLogin {
            patrol: OFFLINE_PATROL.to_owned(),
            token: Secret::new("0".repeat(64)),
        }];
        let opts = PatrolSimOptions {
            offline: Vec::new(),
            ..opts
        };
        tokio::time::timeout(
            Duration::from_secs(20),
            simulate_patrols(addr, id.fingerprint, wrong, opts, CancellationToken::new()),
        )
        .await
        .expect("a refused patrol stops by itself");

        server_stop.cancel();
        server.await.unwrap();
    }
}
