//! Authentication pieces without HTTP: password hashing (argon2id), session tokens and the
//! login rate limiter.
//!
//! Passwords are stored only as argon2id PHC strings. A session token is 32 random bytes
//! (64 hex digits) handed to the browser in a cookie; the store keeps only its SHA-256, so a
//! copy of the database holds no usable session. Nothing here logs, and no type here shows a
//! password in its `Debug` output.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Shortest password accepted for a new user, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Longest password accepted, in bytes (a bound on the work a login can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Longest user name, in bytes.
pub const MAX_USERNAME_BYTES: usize = 64;

/// What can go wrong in authentication.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Hashing failed (argon2 refused its input or parameters).
    #[error("hashing the password failed: {0}")]
    Hash(String),
    /// A new password is too short.
    #[error("the password must be at least {min} characters long")]
    PasswordTooShort {
        /// The minimum, in characters.
        min: usize,
    },
    /// A password is too long.
    #[error("the password must be at most {max} bytes long")]
    PasswordTooLong {
        /// The maximum, in bytes.
        max: usize,
    },
    /// A user name is not `[a-z0-9_.-]{1,64}`.
    #[error("user name {0} must be 1 to 64 characters of a-z (lower case), 0-9, '_', '.' or '-'")]
    BadUsername(String),
}

/// A password as received (e.g. in the login body). Its `Debug` output is redacted, so it
/// cannot leak into a log by accident; [`Password::expose`] gives the text.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(pw: impl Into<String>) -> Password {
        Password(pw.into())
    }

    /// The password itself (to hash or verify; never to log).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Checks a user name: 1 to 64 characters of `a-z 0-9 _ . -`.
pub fn validate_username(name: &str) -> Result<(), AuthError> {
    let ok = (1..=MAX_USERNAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else if name.chars().count() <= 64 {
        Err(AuthError::BadUsername(format!("{name:?}")))
    } else {
        Err(AuthError::BadUsername(format!(
            "of {} characters",
            name.chars().count()
        )))
    }
}

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes.
pub fn validate_new_password(pw: &str) -> Result<(), AuthError> {
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::PasswordTooShort {
            min: MIN_PASSWORD_CHARS,
        });
    }
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::PasswordTooLong {
            max: MAX_PASSWORD_BYTES,
        });
    }
    Ok(())
}

/// Hashes a password with argon2id (default parameters: 19 MiB, 2 passes, 1 lane) and a
/// random 16-byte salt. Returns the PHC string (`$argon2id$v=19$...`).
pub fn hash_password(pw: &str) -> Result<String, AuthError> {
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::PasswordTooLong {
            max: MAX_PASSWORD_BYTES,
        });
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `pw` matches the PHC string `phc`. A malformed PHC string or an over-long
/// password never matches.
pub fn verify_password(pw: &str, phc: &str) -> bool {
    if pw.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// For a login: checks `pw` against the user's hash, or, when there is no such user
/// (`phc == None`), against a dummy hash and answers false, so that an unknown user name
/// takes as long as a wrong password and the answer time does not tell which names exist.
pub fn verify_login(pw: &str, phc: Option<&str>) -> bool {
    match phc {
        Some(phc) => verify_password(pw, phc),
        None => {
            static DUMMY: OnceLock<Option<String>> = OnceLock::new();
            if let Some(dummy) = DUMMY.get_or_init(|| hash_password("vakt dummy password").ok()) {
                let _ = verify_password(pw, dummy);
            }
            false
        }
    }
}

/// A new session token: the text for the cookie (32 random bytes as 64 lower-case hex
/// digits) and its SHA-256, the key the session is stored under.
pub fn new_token() -> (String, [u8; 32]) {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let hash = token_hash(&token);
    (token, hash)
}

/// The SHA-256 of a token as given in a cookie (the key its session is stored under).
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A login refused by the rate limiter: try again after this many seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; try again in {secs} s")]
pub struct RetryAfter {
    /// Seconds until a login may be tried again (at least 1).
    pub secs: u64,
}

/// Settings of a [`LoginLimiter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures of one user name, each within `window` of the one before, after which it
    /// is locked out.
    pub max_failures_per_user: u32,
    /// The same for one client address (an IPv6 address counts by its /64). Higher than
    /// per user: a care centre's operators often share one address, and locking them all
    /// out would stop alarm handling.
    pub max_failures_per_ip: u32,
    /// A key's count starts over once it has had no failure for this long.
    pub window: SignedDuration,
    /// The first lockout; each further failure doubles it ...
    pub first_lockout: SignedDuration,
    /// ... up to this.
    pub max_lockout: SignedDuration,
    /// Most user names and addresses tracked in all (a bound on memory).
    pub max_tracked: usize,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            max_failures_per_user: 5,
            max_failures_per_ip: 20,
            window: SignedDuration::from_mins(15),
            first_lockout: SignedDuration::from_mins(1),
            max_lockout: SignedDuration::from_mins(15),
            max_tracked: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    /// Milliseconds since the epoch.
    last_failure: i64,
    /// Milliseconds since the epoch; refused before this.
    locked_until: i64,
}

#[derive(Default)]
struct Tracked {
    users: HashMap<String, Entry>,
    ips: HashMap<IpAddr, Entry>,
}

/// Counts failed logins per user name and per client address, and refuses further tries
/// for a growing lockout once there are too many (see [`LoginLimits`]; by default 5 per
/// user name, 20 per address, lockouts from 1 to 15 minutes). Memory is bounded: at most
/// `max_tracked` keys, the stalest forgotten first. Time is always a parameter.
pub struct LoginLimiter {
    limits: LoginLimits,
    tracked: Mutex<Tracked>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.lock();
        f.debug_struct("LoginLimiter")
            .field("limits", &self.limits)
            .field("users", &t.users.len())
            .field("ips", &t.ips.len())
            .finish()
    }
}

impl Default for LoginLimiter {
    fn default() -> LoginLimiter {
        LoginLimiter::new(LoginLimits::default())
    }
}

/// The key a user name is counted under: lower case, at most 64 bytes.
fn user_key(user: &str) -> String {
    let mut k = user.to_lowercase();
    if k.len() > MAX_USERNAME_BYTES {
        let mut end = MAX_USERNAME_BYTES;
        while !k.is_char_boundary(end) {
            end -= 1;
        }
        k.truncate(end);
    }
    k
}

/// The key an address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64 (one subscriber line usually has a whole /64).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

impl LoginLimiter {
    /// A limiter with these settings.
    pub fn new(limits: LoginLimits) -> LoginLimiter {
        LoginLimiter {
            limits,
            tracked: Mutex::new(Tracked::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a login of `user` from `ip` may be tried at `now`. Call before checking the
    /// password; on `Err`, answer 429 without checking it.
    pub fn check(&self, user: &str, ip: IpAddr, now: Timestamp) -> Result<(), RetryAfter> {
        let now = now.as_millisecond();
        let t = self.lock();
        let until = [
            t.users.get(&user_key(user)).map(|e| e.locked_until),
            t.ips.get(&ip_key(ip)).map(|e| e.locked_until),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(i64::MIN);
        if until > now {
            let ms = u64::try_from(until - now).unwrap_or(u64::MAX);
            Err(RetryAfter {
                secs: ms.div_ceil(1000).max(1),
            })
        } else {
            Ok(())
        }
    }

    /// Records a failed login (wrong password or unknown user) of `user` from `ip` at `now`.
    pub fn failed(&self, user: &str, ip: IpAddr, now: Timestamp) {
        let now = now.as_millisecond();
        let limits = self.limits;
        let per_map = (limits.max_tracked / 2).max(1);
        let mut t = self.lock();
        let e = entry(&mut t.users, user_key(user), now, per_map, &limits);
        fail(e, now, limits.max_failures_per_user, &limits);
        let e = entry(&mut t.ips, ip_key(ip), now, per_map, &limits);
        fail(e, now, limits.max_failures_per_ip, &limits);
    }

    /// Records a successful login: the user name's count starts over (the address's does
    /// not).
    pub fn succeeded(&self, user: &str, _ip: IpAddr, _now: Timestamp) {
        self.lock().users.remove(&user_key(user));
    }

    /// Number of user names and addresses tracked.
    pub fn tracked(&self) -> usize {
        let t = self.lock();
        t.users.len() + t.ips.len()
    }
}

/// The entry of `key`, made room for if the map is full: first every stale entry goes (no
/// failure within the window and not locked), then, if that is not enough, the one with
/// the oldest failure.
fn entry<'a, K: std::hash::Hash + Eq + Clone>(
    map: &'a mut HashMap<K, Entry>,
    key: K,
    now: i64,
    max: usize,
    limits: &LoginLimits,
) -> &'a mut Entry {
    if !map.contains_key(&key) && map.len() >= max {
        let window = limits.window.as_millis() as i64;
        map.retain(|_, e| now.saturating_sub(e.last_failure) <= window || e.locked_until > now);
        if map.len() >= max {
            let oldest = map
                .iter()
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
    }
    map.entry(key).or_insert(Entry {
        failures: 0,
        last_failure: now,
        locked_until: i64::MIN,
    })
}

fn fail(e: &mut Entry, now: i64, threshold: u32, limits: &LoginLimits) {
    if now.saturating_sub(e.last_failure) > limits.window.as_millis() as i64 {
        e.failures = 0;
    }
    e.failures = e.failures.saturating_add(1);
    e.last_failure = now;
    if e.failures >= threshold {
        let doublings = (e.failures - threshold).min(20);
        let first = limits.first_lockout.as_millis() as i64;
        let lockout = first
            .saturating_mul(1i64 << doublings)
            .min(limits.max_lockout.as_millis() as i64);
        e.locked_until = e.locked_until.max(now.saturating_add(lockout));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("korrekt häst batteri").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(verify_password("korrekt häst batteri", &phc));
        assert!(!verify_password("korrekt hast batteri", &phc));
        assert!(!verify_password("x", "not a phc string"));
        assert_ne!(
            phc,
            hash_password("korrekt häst batteri").unwrap(),
            "salted"
        );
        assert!(verify_login("korrekt häst batteri", Some(&phc)));
        assert!(!verify_login("korrekt häst batteri", None));
        assert!(!verify_password(&"a".repeat(MAX_PASSWORD_BYTES + 1), &phc));
    }

    #[test]
    fn password_rules_and_debug() {
        assert!(matches!(
            validate_new_password("short"),
            Err(AuthError::PasswordTooShort { min: 10 })
        ));
        // Ten characters, some of them two bytes: long enough.
        assert!(validate_new_password("åäöåäöåäöå").is_ok());
        assert!(validate_new_password(&"a".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        let p: Password = serde_json::from_str("\"hemligt lösen\"").unwrap();
        assert_eq!(p.expose(), "hemligt lösen");
        assert!(!format!("{p:?}").contains("hemligt"));
        let err = validate_new_password("hemligt").unwrap_err().to_string();
        assert!(!err.contains("hemligt"), "{err}");
    }

    #[test]
    fn usernames() {
        for ok in ["anna", "b.ek", "op_1", "x-y", &"a".repeat(64)] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Anna", "åsa", "a b", &"a".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        let (t1, h1) = new_token();
        let (t2, _) = new_token();
        assert_eq!(t1.len(), 64);
        assert!(t1.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t1, t2);
        assert_eq!(token_hash(&t1), h1);
        assert_ne!(token_hash(&t2), h1);
    }

    #[test]
    fn five_failures_lock_the_user_with_a_growing_lockout() {
        let l = LoginLimiter::default();
        let a = ip("192.0.2.1");
        for i in 0..4 {
            assert!(l.check("anna", a, at(i)).is_ok());
            l.failed("anna", a, at(i));
        }
        assert!(l.check("anna", a, at(4)).is_ok());
        l.failed("anna", a, at(4));
        // Fifth failure: one minute.
        assert_eq!(l.check("anna", a, at(5)), Err(RetryAfter { secs: 59 }));
        assert_eq!(
            l.check("ANNA", ip("192.0.2.9"), at(5)).map_err(|r| r.secs),
            Err(59)
        );
        assert!(
            l.check("bertil", a, at(5)).is_ok(),
            "the address is not locked"
        );
        assert!(l.check("anna", a, at(64)).is_ok());
        // Sixth: two minutes, seventh: four, ... at most fifteen.
        l.failed("anna", a, at(64));
        assert_eq!(l.check("anna", a, at(64)), Err(RetryAfter { secs: 120 }));
        l.failed("anna", a, at(200));
        assert_eq!(l.check("anna", a, at(200)), Err(RetryAfter { secs: 240 }));
        l.failed("anna", a, at(500));
        l.failed("anna", a, at(1000));
        l.failed("anna", a, at(1900));
        assert_eq!(l.check("anna", a, at(1900)), Err(RetryAfter { secs: 900 }));
        // Success clears the user name.
        l.succeeded("anna", a, at(2800));
        assert!(l.check("anna", a, at(2800)).is_ok());
        l.failed("anna", a, at(2801));
        assert!(l.check("anna", a, at(2801)).is_ok());
    }

    #[test]
    fn failures_spread_out_do_not_lock() {
        let l = LoginLimiter::default();
        let a = ip("192.0.2.1");
        for i in 0..10 {
            l.failed("anna", a, at(i * 16 * 60));
            assert!(l.check("anna", a, at(i * 16 * 60)).is_ok());
        }
    }

    #[test]
    fn an_address_is_locked_after_twenty_failures_of_any_names() {
        let l = LoginLimiter::default();
        let a = ip("2001:db8::1");
        for i in 0..20 {
            assert!(l.check(&format!("u{i}"), a, at(i)).is_ok());
            l.failed(&format!("u{i}"), a, at(i));
        }
        // Same /64, another address: locked too; another /64: not.
        assert!(l.check("new", ip("2001:db8::ffff"), at(20)).is_err());
        assert!(l.check("new", ip("2001:db8:0:1::1"), at(20)).is_ok());
        assert!(l.check("new", ip("::ffff:192.0.2.1"), at(20)).is_ok());
        // Success of one user does not clear the address.
        l.succeeded("u1", a, at(20));
        assert!(l.check("u1", a, at(20)).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let l = LoginLimiter::new(LoginLimits {
            max_tracked: 100,
            ..LoginLimits::default()
        });
        for i in 0..1000u32 {
            l.failed(
                &format!("user{i}"),
                IpAddr::from(i.to_be_bytes()),
                at(i64::from(i)),
            );
        }
        assert!(l.tracked() <= 100, "{}", l.tracked());
        // The newest are still counted.
        for _ in 0..4 {
            l.failed("user999", ip("198.51.100.1"), at(1000));
        }
        assert!(l.check("user999", ip("198.51.100.2"), at(1000)).is_err());
        // Long user names are bounded too.
        l.failed(&"å".repeat(10_000), ip("198.51.100.3"), at(1000));
        assert!(format!("{l:?}").contains("LoginLimiter"));
    }
}
