//! The demo municipality of Vaktby: [`seed`] fills an empty data directory with its
//! subscribers, devices, directory, patrol tokens and three console users; the demo patrols'
//! logins kept in the data directory ([`PATROL_LOGINS_FILE`]); and the demo people's names
//! and pronouns, with which the simulators tell what happens.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::dispatch::wire::Secret;
use crate::model::{Device, Role};
use crate::registers::devices;
use crate::store::{Store, StoreError, UserRecord};

/// The demo subscribers: 36 fictional people of the municipality of Vaktby.
pub const SUBSCRIBERS_CSV: &str = include_str!("../../config/demo-subscribers.csv");

/// Name of the seeded operator user.
pub const OPERATOR_USER: &str = "operator";

/// Name of the seeded supervisor user.
pub const SUPERVISOR_USER: &str = "supervisor";

/// Name of the seeded municipality user: Vaktby's own staff, who follow its people.
pub const MUNICIPALITY_USER: &str = "kommun";

/// The demo's municipality, as the embedded configuration's `[care] municipality` names it
/// (the demo subscribers name none, so they are its).
pub const DEMO_MUNICIPALITY: &str = "Vaktby kommun";

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
    /// The `kommun` user (role municipality, of [`DEMO_MUNICIPALITY`]): the municipality's
    /// view of its people, their open alarms, work orders, statistics and reports.
    pub municipality: (String, String),
    /// A login for every patrol of the demo directory (also [`super::OFFLINE_PATROL`], so that
    /// `vakt patrol` can play it by hand), in patrol id order.
    pub patrols: Vec<PatrolLogin>,
}

impl fmt::Debug for DemoUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Passwords and tokens are secrets: never in Debug output.
        f.debug_struct("DemoUsers")
            .field("operator", &self.operator.0)
            .field("supervisor", &self.supervisor.0)
            .field("municipality", &self.municipality.0)
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
    /// The embedded demo staff list does not import (a bug in the demo data).
    #[error("demo staff: {0}")]
    Staff(#[from] crate::registers::staff::ImportError),
    /// Reading or writing the store failed.
    #[error("seeding the demo: {0}")]
    Store(#[from] StoreError),
    /// A demo password could not be hashed.
    #[error("demo user: {0}")]
    Password(#[from] crate::console::auth::AuthError),
}

/// Seeds the demo municipality into an empty data directory: the subscribers of
/// [`SUBSCRIBERS_CSV`], the devices of [`crate::registers::devices::DEMO_CSV`], the demo directory
/// (`config/demo-directory/`, its staff list too) with a new token for each of its patrols, and the users
/// [`OPERATOR_USER`], [`SUPERVISOR_USER`] and [`MUNICIPALITY_USER`] with random passwords
/// (`now` is their creation
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
    let staff =
        crate::registers::staff::parse_staff(crate::registers::staff::DEMO_STAFF.as_bytes())?;
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
        municipality: (MUNICIPALITY_USER.to_owned(), password(&mut rng)),
        patrols,
    };
    let records = [
        (&users.operator, Role::Operator, None),
        (&users.supervisor, Role::Supervisor, None),
        (
            &users.municipality,
            Role::Municipality,
            Some(DEMO_MUNICIPALITY.to_owned()),
        ),
    ]
    .into_iter()
    .map(|((name, pw), role, tenant)| {
        Ok(UserRecord {
            name: name.clone(),
            role,
            password_hash: crate::console::auth::hash_password(pw)?,
            created_at: now,
            disabled: false,
            language: None,
            tenant,
        })
    })
    .collect::<Result<Vec<_>, DemoError>>()?;
    store.upsert_subscribers(&subscribers)?;
    store.upsert_devices(&devices)?;
    store.save_directory(&directory)?;
    store.save_staff(&staff)?;
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
// The demo people, as the simulators name them
// ---------------------------------------------------------------------------------------

/// The embedded demo devices (none, logged, if they do not parse: a bug in the demo data).
pub(super) fn demo_devices() -> Vec<Device> {
    match devices::parse_csv(devices::DEMO_CSV.as_bytes()) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "demo: the demo devices do not parse");
            Vec::new()
        }
    }
}

/// The demo subscribers' names and pronouns, by subscriber id.
pub(super) fn demo_people() -> HashMap<String, (String, &'static str)> {
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
pub(super) fn owner(
    d: &Device,
    people: &HashMap<String, (String, &'static str)>,
) -> (String, &'static str) {
    d.subscriber
        .as_ref()
        .and_then(|s| people.get(s).cloned())
        .unwrap_or_else(|| (format!("account {}", d.account), "their"))
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

#[cfg(test)]
mod tests;
