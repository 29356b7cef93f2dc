//! Authentication pieces without HTTP: password hashing (argon2id), session tokens, the
//! login throttle, bearer tokens and how a failed login's user name is logged.
//!
//! Passwords are stored only as argon2id PHC strings. A session token is 32 random bytes
//! (64 hex digits) handed to the browser in a cookie; the store keeps only its SHA-256, so a
//! copy of the database holds no usable session. Nothing here logs, and no type here shows a
//! password in its `Debug` output.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use sha2::Sha256;

/// Shortest password accepted for a new user, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Fewest different characters in a new password.
pub const MIN_DISTINCT_CHARS: usize = 5;

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
    /// A new password is too short (whitespace before and after not counted).
    #[error(
        "the password must be at least {min} characters long, not counting spaces before and after"
    )]
    PasswordTooShort {
        /// The minimum, in characters.
        min: usize,
    },
    /// A new password repeats too few characters.
    #[error("the password must have at least {min} different characters")]
    PasswordRepetitive {
        /// The minimum number of different characters.
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

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters not counting
/// whitespace before and after (so ten spaces, or a short word padded with spaces, are
/// not enough), at least [`MIN_DISTINCT_CHARS`] different characters (not `aaaaaaaaaa`),
/// at most [`MAX_PASSWORD_BYTES`] bytes. The password is stored as given.
pub fn validate_new_password(pw: &str) -> Result<(), AuthError> {
    let content = pw.trim();
    if content.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::PasswordTooShort {
            min: MIN_PASSWORD_CHARS,
        });
    }
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::PasswordTooLong {
            max: MAX_PASSWORD_BYTES,
        });
    }
    let distinct: std::collections::BTreeSet<char> = content.chars().collect();
    if distinct.len() < MIN_DISTINCT_CHARS {
        return Err(AuthError::PasswordRepetitive {
            min: MIN_DISTINCT_CHARS,
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

/// Settings of a [`LoginThrottle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures of one user name, each within `window` of the one before, from which on
    /// its wrong attempts are throttled.
    pub user_failures: u32,
    /// The same for one client address (an IPv6 address counts by its /64). Higher than
    /// per user: a care centre's operators often share one address.
    pub client_failures: u32,
    /// A key's count starts over once it has had no failure for this long.
    pub window: SignedDuration,
    /// The first throttled wrong attempt's answer is held this long; each further one
    /// twice as long as the one before ...
    pub first_hold: SignedDuration,
    /// ... up to this.
    pub max_hold: SignedDuration,
    /// Most user names and addresses tracked in all (a bound on memory).
    pub max_tracked: usize,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            user_failures: 5,
            client_failures: 20,
            window: SignedDuration::from_mins(15),
            first_hold: SignedDuration::from_secs(1),
            max_hold: SignedDuration::from_secs(16),
            max_tracked: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    /// Milliseconds since the epoch.
    last_failure: i64,
}

#[derive(Default)]
struct Tracked {
    users: HashMap<String, Entry>,
    clients: HashMap<IpAddr, Entry>,
}

/// Slows down password guessing without ever refusing a correct password.
///
/// Failed logins are counted per user name and per client address. Once a key has too
/// many recent failures (see [`LoginLimits`]; by default 5 for a name, 20 for an address,
/// within 15 minutes of each other), it is *throttled*: the console still checks every
/// attempt's password, so the right password of an active user always logs in at once,
/// but a wrong one is answered only after a hold that doubles with each further failure
/// (1 s up to 16 s), and the throttled attempts' checks take turns in a lane of their own
/// (see `console::api::login`). A lockout would refuse the right password too: anyone who
/// can reach the login page could then lock an operator out by name, or, behind the proxy
/// every operator shares, lock out the whole centre.
///
/// Memory is bounded: at most `max_tracked` keys, the stalest forgotten first. Time is
/// always a parameter.
pub struct LoginThrottle {
    limits: LoginLimits,
    tracked: Mutex<Tracked>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.lock();
        f.debug_struct("LoginThrottle")
            .field("limits", &self.limits)
            .field("users", &t.users.len())
            .field("clients", &t.clients.len())
            .finish()
    }
}

impl Default for LoginThrottle {
    fn default() -> LoginThrottle {
        LoginThrottle::new(LoginLimits::default())
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
fn client_key(ip: IpAddr) -> IpAddr {
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

impl LoginThrottle {
    /// A throttle with these settings.
    pub fn new(limits: LoginLimits) -> LoginThrottle {
        LoginThrottle {
            limits,
            tracked: Mutex::new(Tracked::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a login of `user` from `client` at `now` is throttled: its name or its
    /// address has had too many recent failures. Its password is still checked, in the
    /// throttled lane.
    pub fn throttled(&self, user: &str, client: IpAddr, now: Timestamp) -> bool {
        let now = now.as_millisecond();
        let l = &self.limits;
        let t = self.lock();
        let over = |e: Option<&Entry>, threshold: u32| {
            e.is_some_and(|e| e.failures >= threshold && !stale(e, now, l))
        };
        over(t.users.get(&user_key(user)), l.user_failures)
            || over(t.clients.get(&client_key(client)), l.client_failures)
    }

    /// Records a failed login (wrong password, unknown or disabled user) of `user` from
    /// `client` at `now`. Returns how long to hold its answer when it is throttled (the
    /// longer of the name's and the address's holds), `None` when it is not.
    pub fn failed(&self, user: &str, client: IpAddr, now: Timestamp) -> Option<Duration> {
        let now = now.as_millisecond();
        let limits = self.limits;
        let per_map = (limits.max_tracked / 2).max(1);
        let mut t = self.lock();
        let e = entry(&mut t.users, user_key(user), now, per_map, &limits);
        let by_user = fail(e, now, limits.user_failures, &limits);
        let e = entry(&mut t.clients, client_key(client), now, per_map, &limits);
        let by_client = fail(e, now, limits.client_failures, &limits);
        by_user.max(by_client)
    }

    /// Records a successful login: the user name's count starts over (the address's does
    /// not: one operator's success says nothing of the others behind it).
    pub fn succeeded(&self, user: &str, _client: IpAddr, _now: Timestamp) {
        self.lock().users.remove(&user_key(user));
    }

    /// Number of user names and addresses tracked.
    pub fn tracked(&self) -> usize {
        let t = self.lock();
        t.users.len() + t.clients.len()
    }
}

/// No failure within the window: the count no longer matters.
fn stale(e: &Entry, now: i64, limits: &LoginLimits) -> bool {
    now.saturating_sub(e.last_failure) > limits.window.as_millis() as i64
}

/// The entry of `key`, made room for if the map is full: first every stale entry goes,
/// then, if that is not enough, the one with the oldest failure.
fn entry<'a, K: std::hash::Hash + Eq + Clone>(
    map: &'a mut HashMap<K, Entry>,
    key: K,
    now: i64,
    max: usize,
    limits: &LoginLimits,
) -> &'a mut Entry {
    if !map.contains_key(&key) && map.len() >= max {
        map.retain(|_, e| !stale(e, now, limits));
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
    })
}

/// Counts a failure; the hold of its answer once the count reaches `threshold`.
fn fail(e: &mut Entry, now: i64, threshold: u32, limits: &LoginLimits) -> Option<Duration> {
    if stale(e, now, limits) {
        e.failures = 0;
    }
    e.failures = e.failures.saturating_add(1);
    e.last_failure = now;
    if e.failures < threshold {
        return None;
    }
    let doublings = (e.failures - threshold).min(20);
    let first = limits.first_hold.as_millis() as u64;
    let ms = first
        .saturating_mul(1u64 << doublings)
        .min(limits.max_hold.as_millis() as u64);
    Some(Duration::from_millis(ms))
}

/// How a user name appears in logs and in the audit log of a failed login: whether a user
/// has that name, and a short keyed hash of it (`unknown name #1f2e3d4c`). The name itself
/// is never written: a failed login's name is often a password typed into the wrong field.
/// The hash is the first 8 hex digits of HMAC-SHA256 under `key` (random, made at start),
/// so the same name gives the same reference while the server runs (repeated tries show)
/// and cannot be guessed back from a log or an exported audit log.
pub fn name_ref(key: &[u8; 32], name: &str, known: bool) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; unreachable, but never fall back to the name.
        Err(_) => return format!("{} name", if known { "known" } else { "unknown" }),
    };
    mac.update(name.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!(
        "{} name #{}",
        if known { "known" } else { "unknown" },
        hex::encode(&digest[..4])
    )
}

/// The token of an `Authorization: Bearer TOKEN` header value. The scheme is matched in
/// any case (RFC 7235 §2.1: auth schemes are case-insensitive), separated from the token
/// by spaces; `None` for another scheme or no token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = rest.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
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
        assert!(validate_new_password("åäöüéåäöüé").is_ok());
        // Whitespace around does not count, and there must be something to count.
        for pw in [
            "          ",
            "  kort lösn  ",
            "\t\t\t\t\t\t\t\t\t\t\t\t",
            "\n hemligt1 \n",
        ] {
            assert!(
                matches!(
                    validate_new_password(pw),
                    Err(AuthError::PasswordTooShort { .. })
                ),
                "{pw:?}"
            );
        }
        assert!(validate_new_password("  korrekt häst  ").is_ok());
        for pw in ["aaaaaaaaaa", "abababababab", "1111222233"] {
            assert!(
                matches!(
                    validate_new_password(pw),
                    Err(AuthError::PasswordRepetitive { min: 5 })
                ),
                "{pw:?}"
            );
        }
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

    fn secs(d: Option<Duration>) -> Option<u64> {
        d.map(|d| d.as_secs())
    }

    #[test]
    fn a_user_name_is_throttled_from_its_fifth_failure_with_a_growing_hold() {
        let l = LoginThrottle::default();
        let a = ip("192.0.2.1");
        for i in 0..4 {
            assert!(!l.throttled("anna", a, at(i)));
            assert_eq!(l.failed("anna", a, at(i)), None);
        }
        assert!(!l.throttled("anna", a, at(4)));
        // Fifth failure: held one second; then two, four, ... at most sixteen.
        assert_eq!(secs(l.failed("anna", a, at(4))), Some(1));
        assert!(l.throttled("anna", a, at(5)));
        assert!(l.throttled("ANNA", ip("192.0.2.9"), at(5)), "by name");
        assert!(
            !l.throttled("bertil", a, at(5)),
            "the address is not throttled"
        );
        assert_eq!(secs(l.failed("anna", a, at(6))), Some(2));
        assert_eq!(secs(l.failed("anna", a, at(7))), Some(4));
        // From other addresses: the name's count, not the address's.
        for i in 8..20 {
            l.failed("anna", ip(&format!("198.51.100.{i}")), at(i));
        }
        assert_eq!(secs(l.failed("anna", a, at(20))), Some(16));
        // Success clears the user name.
        l.succeeded("anna", a, at(21));
        assert!(!l.throttled("anna", a, at(21)));
        assert_eq!(l.failed("anna", a, at(22)), None);
    }

    #[test]
    fn failures_spread_out_are_not_throttled() {
        let l = LoginThrottle::default();
        let a = ip("192.0.2.1");
        for i in 0..10 {
            assert_eq!(l.failed("anna", a, at(i * 16 * 60)), None);
            assert!(!l.throttled("anna", a, at(i * 16 * 60)));
        }
        // A throttled name is free again after a quiet window.
        for i in 0..5 {
            l.failed("bertil", a, at(20_000 + i));
        }
        assert!(l.throttled("bertil", a, at(20_005)));
        assert!(!l.throttled("bertil", a, at(20_005 + 15 * 60 + 1)));
    }

    #[test]
    fn an_address_is_throttled_after_twenty_failures_of_any_names() {
        let l = LoginThrottle::default();
        let a = ip("2001:db8::1");
        for i in 0..19 {
            assert!(!l.throttled(&format!("u{i}"), a, at(i)));
            assert_eq!(l.failed(&format!("u{i}"), a, at(i)), None);
        }
        assert_eq!(secs(l.failed("u19", a, at(19))), Some(1));
        // Same /64, another address: throttled too; another /64: not.
        assert!(l.throttled("new", ip("2001:db8::ffff"), at(20)));
        assert!(!l.throttled("new", ip("2001:db8:0:1::1"), at(20)));
        assert!(!l.throttled("new", ip("::ffff:192.0.2.1"), at(20)));
        // Success of one user does not clear the address.
        l.succeeded("u1", a, at(20));
        assert!(l.throttled("u1", a, at(20)));
        // The longer hold of name and address applies.
        for i in 0..6 {
            l.failed("cecilia", ip("198.51.100.1"), at(30 + i));
        }
        assert_eq!(secs(l.failed("cecilia", a, at(40))), Some(4));
    }

    #[test]
    fn memory_is_bounded() {
        let l = LoginThrottle::new(LoginLimits {
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
        assert!(l.throttled("user999", ip("198.51.100.2"), at(1000)));
        // Long user names are bounded too.
        l.failed(&"å".repeat(10_000), ip("198.51.100.3"), at(1000));
        assert!(format!("{l:?}").contains("LoginThrottle"));
    }

    #[test]
    fn name_refs_hide_the_name_and_stay_stable() {
        let key = [7u8; 32];
        let r = name_ref(&key, "hemligt-lösen", false);
        assert!(r.starts_with("unknown name #"), "{r}");
        assert_eq!(r.len(), "unknown name #".len() + 8);
        assert!(!r.contains("hemligt"));
        assert_eq!(r, name_ref(&key, "hemligt-lösen", false));
        assert_ne!(r, name_ref(&[8u8; 32], "hemligt-lösen", false), "keyed");
        assert!(name_ref(&key, "anna", true).starts_with("known name #"));
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        for ok in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR   abc",
            " Bearer abc ",
        ] {
            assert_eq!(bearer_token(ok), Some("abc"), "{ok:?}");
        }
        for bad in [
            "Bearer",
            "Bearer ",
            "Basic abc",
            "Bearerabc",
            "Bearer a b",
            "",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }
}
