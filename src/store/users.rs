//! Console users and their sessions.
//!
//! `users`: user name -> JSON [`UserRecord`]. `sessions`: SHA-256 of the session token (32
//! bytes) -> JSON [`SessionRecord`]. The token itself is never stored, so a copy of the
//! database does not hand out live sessions.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::model::{ConsoleLanguage, Role};

/// A console user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// User name (`[a-z0-9_.-]{1,64}`).
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// argon2id hash of the password, as a PHC string.
    pub password_hash: String,
    /// When the user was created.
    pub created_at: Timestamp,
    /// A disabled user cannot log in and has no sessions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// The language the user reads the console in; `None`: the centre's (`[http] language`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<ConsoleLanguage>,
    /// The tenant of a `provider` or `municipality` user: the provider's id or the
    /// municipality's name, whose people they see ([`crate::model::Scope`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password hash is deliberately left out: secrets never reach logs.
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("disabled", &self.disabled)
            .field("language", &self.language)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A logged-in session, stored under the SHA-256 of its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The user name.
    pub user: String,
    /// The user's role when the session was made.
    pub role: Role,
    /// When the session was made (the login).
    pub created_at: Timestamp,
    /// When it stops being valid.
    pub expires_at: Timestamp,
}

/// A change of a user by [`Store::change_user`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserChange {
    /// It can no longer log in; its sessions end.
    Disable,
    /// It can log in again.
    Enable,
    /// Another role; its sessions end.
    Role(Role),
    /// It is gone; its sessions end.
    Remove,
}

/// What came of a [`UserChange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserChanged {
    /// Done (or there was nothing to do).
    Done {
        /// The user before.
        before: UserRecord,
        /// The user after (`None`: removed).
        after: Option<UserRecord>,
    },
    /// There is no such user.
    NoSuchUser,
    /// Refused: the user is the last enabled administrator.
    LastAdmin,
}

fn corrupt(tree: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree,
        detail: e.to_string(),
    }
}

impl Store {
    /// Inserts or replaces a user, durably.
    pub fn put_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        let v = serde_json::to_vec(u).map_err(|e| corrupt("users", e))?;
        self.users.insert(u.name.as_bytes(), v)?;
        self.sync()
    }

    /// The user called `name`, if any.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.users
            .get(name.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt("users", e)))
            .transpose()
    }

    /// Creates the user `name` (created at `now`), or gives an existing one this password
    /// hash and role (keeping its creation time and whether it is disabled) and ends its
    /// sessions, which carry the old role, durably (one sync). Returns the previous role, or `None`
    /// for a new user.
    pub fn set_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Role>, StoreError> {
        self.set_user_in(name, role, None, password_hash, now)
    }

    /// [`Store::set_user`] with the user's tenant (a `provider` or `municipality` user's).
    pub fn set_user_in(
        &self,
        name: &str,
        role: Role,
        tenant: Option<&str>,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Role>, StoreError> {
        let old = self.user(name)?;
        let u = UserRecord {
            name: name.to_string(),
            role,
            password_hash: password_hash.to_string(),
            created_at: old.as_ref().map_or(now, |o| o.created_at),
            disabled: old.as_ref().is_some_and(|o| o.disabled),
            language: old.as_ref().and_then(|o| o.language),
            tenant: tenant.map(str::to_owned),
        };
        self.together(|s| {
            if old.is_some() {
                s.delete_sessions_of(name)?;
            }
            s.put_user(&u)
        })?;
        Ok(old.map(|o| o.role))
    }

    /// Disables, enables, removes a user or gives it another role (see [`UserChange`]).
    /// Every change but enabling ends the user's sessions (a new role too: sessions carry
    /// the role they were made with). Refused when it would leave no enabled
    /// administrator. Durable when it returns.
    pub fn change_user(&self, name: &str, change: UserChange) -> Result<UserChanged, StoreError> {
        // One change at a time, so two cannot each leave the other's administrator last.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Compare-and-swap against the record read, so a change of the user's language made
        // at the same moment (`set_user_language`, which does not take the lock) is not lost.
        let (old, new) = loop {
            let Some(raw) = self.users.get(name.as_bytes())? else {
                return Ok(UserChanged::NoSuchUser);
            };
            let old: UserRecord = serde_json::from_slice(&raw).map_err(|e| corrupt("users", e))?;
            let mut new = old.clone();
            match change {
                UserChange::Disable => new.disabled = true,
                UserChange::Enable => new.disabled = false,
                UserChange::Role(r) => {
                    new.role = r;
                    // The centre's roles see everyone: a tenant no longer applies.
                    if !r.is_tenant() {
                        new.tenant = None;
                    }
                }
                UserChange::Remove => {}
            }
            let active_admin = |u: &UserRecord| u.role == Role::Admin && !u.disabled;
            let stays_admin = change != UserChange::Remove && active_admin(&new);
            if active_admin(&old) && !stays_admin {
                let others = self
                    .users()?
                    .iter()
                    .filter(|u| u.name != old.name && active_admin(u))
                    .count();
                if others == 0 {
                    return Ok(UserChanged::LastAdmin);
                }
            }
            let swapped = if change == UserChange::Remove {
                self.users
                    .compare_and_swap(name.as_bytes(), Some(raw), None::<&[u8]>)?
                    .is_ok()
            } else if new != old {
                let v = serde_json::to_vec(&new).map_err(|e| corrupt("users", e))?;
                self.users
                    .compare_and_swap(name.as_bytes(), Some(raw), Some(v))?
                    .is_ok()
            } else {
                true
            };
            if swapped {
                break (old, new);
            }
        };
        if (change != UserChange::Enable && new != old) || change == UserChange::Remove {
            self.remove_sessions_where(|s| s.user == name)?;
        }
        self.sync()?;
        Ok(UserChanged::Done {
            before: old,
            after: (change != UserChange::Remove).then_some(new),
        })
    }

    /// Sets the language `name` reads the console in (`None`: the centre's), keeping
    /// everything else of the user and its sessions. Compare-and-swap, so a change of role
    /// or of the password at the same moment is not lost. Durable when it returns. Returns the language
    /// before (`Some(None)`: the centre's), or `None` when there is no such user.
    pub fn set_user_language(
        &self,
        name: &str,
        language: Option<ConsoleLanguage>,
    ) -> Result<Option<Option<ConsoleLanguage>>, StoreError> {
        loop {
            let Some(raw) = self.users.get(name.as_bytes())? else {
                return Ok(None);
            };
            let mut u: UserRecord =
                serde_json::from_slice(&raw).map_err(|e| corrupt("users", e))?;
            let before = u.language;
            if before == language {
                return Ok(Some(before));
            }
            u.language = language;
            let v = serde_json::to_vec(&u).map_err(|e| corrupt("users", e))?;
            if self
                .users
                .compare_and_swap(name.as_bytes(), Some(raw), Some(v))?
                .is_ok()
            {
                self.sync()?;
                return Ok(Some(before));
            }
        }
    }

    /// Every user, sorted by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users
            .iter()
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(|e| corrupt("users", e))
            })
            .collect()
    }

    /// Number of users.
    pub fn user_count(&self) -> Result<usize, StoreError> {
        self.users.len()
    }

    /// Stores a session under the hash of its token, durably.
    pub fn put_session(&self, token_hash: &[u8; 32], s: &SessionRecord) -> Result<(), StoreError> {
        let v = serde_json::to_vec(s).map_err(|e| corrupt("sessions", e))?;
        self.sessions.insert(token_hash, v)?;
        self.sync()
    }

    /// The session stored under `token_hash`, if any (expired or not: the caller compares
    /// `expires_at` with its `now`).
    pub fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions
            .get(token_hash)?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt("sessions", e)))
            .transpose()
    }

    /// Removes a session (logout), durably. Removing one that does not exist is not an
    /// error.
    pub fn delete_session(&self, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.sessions.remove(token_hash)?;
        self.sync()
    }

    /// Removes every session of `user` (after a password or role change), durably. Returns
    /// how many.
    pub fn delete_sessions_of(&self, user: &str) -> Result<usize, StoreError> {
        let n = self.remove_sessions_where(|s| s.user == user)?;
        self.sync()?;
        Ok(n)
    }

    /// The users with a session valid at `now` (`expires_at > now`), each with how many
    /// such sessions they have.
    pub fn session_users(
        &self,
        now: Timestamp,
    ) -> Result<std::collections::BTreeMap<String, usize>, StoreError> {
        let mut users = std::collections::BTreeMap::new();
        for item in self.sessions.iter() {
            let (_, v) = item?;
            if let Ok(s) = serde_json::from_slice::<SessionRecord>(&v)
                && s.expires_at > now
            {
                *users.entry(s.user).or_insert(0) += 1;
            }
        }
        Ok(users)
    }

    /// Removes every session that has expired at `now` (`expires_at <= now`), and any that
    /// cannot be decoded, durably. Returns how many were removed.
    pub fn purge_sessions(&self, now: Timestamp) -> Result<usize, StoreError> {
        let n = self.remove_sessions_where(|s| s.expires_at <= now)?;
        if n > 0 {
            self.sync()?;
        }
        Ok(n)
    }

    /// Removes the sessions `doomed` names; not synced (the callers sync).
    fn remove_sessions_where(
        &self,
        doomed: impl Fn(&SessionRecord) -> bool,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let remove = match serde_json::from_slice::<SessionRecord>(&v) {
                Ok(s) => doomed(&s),
                // An undecodable session can never be used: drop it.
                Err(_) => true,
            };
            if remove {
                self.sessions.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_each_backend;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn user(name: &str, role: Role) -> UserRecord {
        UserRecord {
            name: name.into(),
            role,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
            created_at: ts(1_700_000_000),
            disabled: false,
            language: None,
            tenant: None,
        }
    }

    fn session(user: &str, expires: i64) -> SessionRecord {
        SessionRecord {
            user: user.into(),
            role: Role::Operator,
            created_at: ts(1_700_000_000),
            expires_at: ts(expires),
        }
    }

    on_each_backend! {
    /// An administrator's changes and the user's own choice of language at the same moments:
    /// neither is lost.
    fn a_change_of_role_does_not_lose_a_language_chosen_meanwhile(b) {
        let store = b.open();
        store.put_user(&user("admin", Role::Admin)).unwrap();
        store.put_user(&user("anna", Role::Operator)).unwrap();
        // Each round both change at once; after it, both changes must be there.
        const ROUNDS: usize = 200;
        let start = std::sync::Barrier::new(3);
        let end = std::sync::Barrier::new(3);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..ROUNDS {
                    let role = [Role::Supervisor, Role::Operator][i % 2];
                    start.wait();
                    store.change_user("anna", UserChange::Role(role)).unwrap();
                    end.wait();
                }
            });
            scope.spawn(|| {
                for i in 0..ROUNDS {
                    let l = [ConsoleLanguage::Sv, ConsoleLanguage::Nb][i % 2];
                    start.wait();
                    store.set_user_language("anna", Some(l)).unwrap();
                    end.wait();
                }
            });
            let mut lost = Vec::new();
            for i in 0..ROUNDS {
                start.wait();
                end.wait();
                let anna = store.user("anna").unwrap().unwrap();
                let want = (
                    [Role::Supervisor, Role::Operator][i % 2],
                    Some([ConsoleLanguage::Sv, ConsoleLanguage::Nb][i % 2]),
                );
                if (anna.role, anna.language) != want {
                    lost.push(format!("round {i}: {:?}", (anna.role, anna.language)));
                }
            }
            assert!(lost.is_empty(), "changes lost: {lost:?}");
        });
    }
    }

    on_each_backend! {
    fn users_round_trip_and_replace(b) {
        let store = b.open();
        assert_eq!(store.user_count().unwrap(), 0);
        assert_eq!(store.user("anna").unwrap(), None);
        store.put_user(&user("anna", Role::Operator)).unwrap();
        store.put_user(&user("bertil", Role::Admin)).unwrap();
        assert_eq!(
            store.user("anna").unwrap(),
            Some(user("anna", Role::Operator))
        );
        store.put_user(&user("anna", Role::Supervisor)).unwrap();
        assert_eq!(store.user_count().unwrap(), 2);
        let all = store.users().unwrap();
        assert_eq!(
            all.iter()
                .map(|u| (u.name.as_str(), u.role))
                .collect::<Vec<_>>(),
            [("anna", Role::Supervisor), ("bertil", Role::Admin)]
        );
        drop(store);
        let store = b.open();
        assert_eq!(store.user_count().unwrap(), 2, "users are durable");
    }
    }

    on_each_backend! {
    fn set_user_creates_then_replaces_and_ends_sessions(b) {
        let store = b.open();
        assert_eq!(
            store
                .set_user("anna", Role::Operator, "h1", ts(10))
                .unwrap(),
            None
        );
        store
            .put_session(&[7u8; 32], &session("anna", 9_999))
            .unwrap();
        assert_eq!(
            store.set_user("anna", Role::Admin, "h2", ts(20)).unwrap(),
            Some(Role::Operator)
        );
        let u = store.user("anna").unwrap().unwrap();
        assert_eq!((u.role, u.password_hash.as_str()), (Role::Admin, "h2"));
        assert_eq!(u.created_at, ts(10), "creation time kept");
        assert_eq!(
            store.session(&[7u8; 32]).unwrap(),
            None,
            "old role's session ended"
        );
    }
    }

    on_each_backend! {
    fn users_are_disabled_enabled_given_a_role_and_removed_keeping_an_admin(b) {
        let store = b.open();
        store.put_user(&user("anna", Role::Admin)).unwrap();
        store.put_user(&user("bertil", Role::Operator)).unwrap();
        let sessions = |store: &Store| {
            store
                .put_session(&[1u8; 32], &session("bertil", 9_999))
                .unwrap();
            store
                .put_session(&[2u8; 32], &session("anna", 9_999))
                .unwrap();
        };
        let alive = |store: &Store, k: u8| store.session(&[k; 32]).unwrap().is_some();
        sessions(&store);
        let r = store.change_user("bertil", UserChange::Disable).unwrap();
        assert!(
            matches!(&r, UserChanged::Done { after: Some(u), .. } if u.disabled),
            "{r:?}"
        );
        assert!(store.user("bertil").unwrap().unwrap().disabled);
        assert!(!alive(&store, 1), "a disabled user's sessions end");
        assert!(alive(&store, 2), "the others' do not");
        // Replacing the password keeps it disabled.
        store
            .set_user("bertil", Role::Operator, "h", ts(5))
            .unwrap();
        assert!(store.user("bertil").unwrap().unwrap().disabled);
        store.change_user("bertil", UserChange::Enable).unwrap();
        assert!(!store.user("bertil").unwrap().unwrap().disabled);

        sessions(&store);
        store
            .change_user("bertil", UserChange::Role(Role::Supervisor))
            .unwrap();
        assert_eq!(
            store.user("bertil").unwrap().unwrap().role,
            Role::Supervisor
        );
        assert!(!alive(&store, 1), "sessions carry the old role");
        // The last enabled administrator stays one.
        for change in [
            UserChange::Disable,
            UserChange::Remove,
            UserChange::Role(Role::Operator),
        ] {
            assert_eq!(
                store.change_user("anna", change).unwrap(),
                UserChanged::LastAdmin
            );
        }
        assert!(alive(&store, 2));
        store
            .change_user("bertil", UserChange::Role(Role::Admin))
            .unwrap();
        store.change_user("anna", UserChange::Disable).unwrap();
        assert_eq!(
            store.change_user("bertil", UserChange::Remove).unwrap(),
            UserChanged::LastAdmin,
            "a disabled administrator does not count"
        );
        store.change_user("anna", UserChange::Enable).unwrap();
        let r = store.change_user("bertil", UserChange::Remove).unwrap();
        assert!(matches!(r, UserChanged::Done { after: None, .. }));
        assert_eq!(store.user("bertil").unwrap(), None);
        assert_eq!(
            store.change_user("bertil", UserChange::Enable).unwrap(),
            UserChanged::NoSuchUser
        );
        drop(store);
        let store = b.open();
        assert_eq!(store.user_count().unwrap(), 1, "durable");
    }
    }

    on_each_backend! {
    fn a_users_language_is_set_keeping_the_user_and_its_sessions(b) {
        let store = b.open();
        let u = user("ann", Role::Operator);
        store.put_user(&u).unwrap();
        store
            .put_session(&[7; 32], &session("ann", 1_800_000_000))
            .unwrap();
        assert_eq!(
            store
                .set_user_language("ann", Some(ConsoleLanguage::Nb))
                .unwrap(),
            Some(None)
        );
        let after = store.user("ann").unwrap().unwrap();
        assert_eq!(after.language, Some(ConsoleLanguage::Nb));
        assert_eq!(
            (after.role, &after.password_hash),
            (u.role, &u.password_hash)
        );
        assert!(
            store.session(&[7; 32]).unwrap().is_some(),
            "the session stays"
        );
        // A new password keeps the language.
        store
            .set_user("ann", Role::Operator, "$argon2id$other", ts(1_800_000_000))
            .unwrap();
        assert_eq!(
            store.user("ann").unwrap().unwrap().language,
            Some(ConsoleLanguage::Nb)
        );
        assert_eq!(
            store.set_user_language("ann", None).unwrap(),
            Some(Some(ConsoleLanguage::Nb))
        );
        assert_eq!(store.user("ann").unwrap().unwrap().language, None);
        assert_eq!(store.set_user_language("nobody", None).unwrap(), None);
    }
    }

    #[test]
    fn user_debug_hides_the_hash() {
        let u = user("anna", Role::Operator);
        let d = format!("{u:?}");
        assert!(d.contains("anna"), "{d}");
        assert!(!d.contains("argon2"), "{d}");
    }

    on_each_backend! {
    fn sessions_put_get_delete_and_purge(b) {
        let store = b.open();
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        store.put_session(&a, &session("anna", 1_000)).unwrap();
        store.put_session(&b, &session("anna", 2_000)).unwrap();
        store.put_session(&c, &session("bertil", 3_000)).unwrap();
        assert_eq!(store.session(&a).unwrap(), Some(session("anna", 1_000)));
        assert_eq!(store.session(&[9u8; 32]).unwrap(), None);

        store.delete_session(&a).unwrap();
        store.delete_session(&a).unwrap();
        assert_eq!(store.session(&a).unwrap(), None);

        store.put_session(&a, &session("anna", 1_000)).unwrap();
        let online = store.session_users(ts(999)).unwrap();
        assert_eq!(
            online.into_iter().collect::<Vec<_>>(),
            [("anna".to_owned(), 2), ("bertil".to_owned(), 1)]
        );
        let online = store.session_users(ts(1_000)).unwrap();
        assert_eq!(
            online.get("anna"),
            Some(&1),
            "expires_at <= now: not counted"
        );
        assert_eq!(store.purge_sessions(ts(999)).unwrap(), 0);
        assert_eq!(
            store.purge_sessions(ts(2_000)).unwrap(),
            2,
            "expires_at <= now"
        );
        assert_eq!(store.session(&c).unwrap(), Some(session("bertil", 3_000)));

        store.put_session(&a, &session("anna", 9_000)).unwrap();
        assert_eq!(store.delete_sessions_of("anna").unwrap(), 1);
        assert_eq!(store.session(&a).unwrap(), None);
        assert!(store.session(&c).unwrap().is_some());
    }
    }

    on_each_backend! {
    /// Changes of one user from two handles (two nodes on PostgreSQL) at once: each
    /// compare-and-swap that loses reads again, so after every round both changes are there.
    fn changes_of_one_user_from_two_handles_lose_nothing(b) {
        let store = b.open();
        let other = b.second(&store);
        store.put_user(&user("admin", Role::Admin)).unwrap();
        store.put_user(&user("anna", Role::Operator)).unwrap();
        const ROUNDS: usize = 100;
        let start = std::sync::Barrier::new(3);
        let end = std::sync::Barrier::new(3);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..ROUNDS {
                    let change = [UserChange::Disable, UserChange::Enable][i % 2];
                    start.wait();
                    let r = store.change_user("anna", change).unwrap();
                    assert!(matches!(r, UserChanged::Done { .. }), "{r:?}");
                    end.wait();
                }
            });
            scope.spawn(|| {
                for i in 0..ROUNDS {
                    let l = [ConsoleLanguage::Nb, ConsoleLanguage::Sv][i % 2];
                    start.wait();
                    assert!(other.set_user_language("anna", Some(l)).unwrap().is_some());
                    end.wait();
                }
            });
            let mut lost = Vec::new();
            for i in 0..ROUNDS {
                start.wait();
                end.wait();
                let anna = other.user("anna").unwrap().unwrap();
                let want = (
                    i % 2 == 0,
                    Some([ConsoleLanguage::Nb, ConsoleLanguage::Sv][i % 2]),
                    Role::Operator,
                );
                if (anna.disabled, anna.language, anna.role) != want {
                    lost.push(format!("round {i}: {anna:?}"));
                }
            }
            assert!(lost.is_empty(), "changes lost: {lost:?}");
        });
    }
    }
}
