//! Sub-commands that work on a stopped server's data directory: device, subscriber and
//! directory import, users, patrol and integration tokens, journal and audit export, the
//! monthly SLA report, on a data directory or on a cluster's database ([`StoreAt`]). (sled
//! locks the directory, and on PostgreSQL a writing command takes the leader lease, so they
//! refuse to write beside a live server.) Also what `vakt patrol` reads before it connects: its token file and the
//! development certificate it pins.

use std::io::Write;
use std::path::Path;

use jiff::Timestamp;

pub use super::error::CliError;
use super::store_at::StoreAt;
use crate::console::auth::{self, Password};
use crate::dispatch::report::{self, SlaReport};
use crate::dispatch::wire::Secret;
use crate::model::{AuditEntry, Role};
use crate::registers::devices::{self};
use crate::registers::directory;
use crate::registers::subscribers;
use crate::store::UserChanged;
use crate::transport::quic::{self};

/// The user name audit entries written by these sub-commands carry.
pub const CLI_USER: &str = "vakt";

/// Summary of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// Devices (or subscribers) in the file.
    pub total: usize,
    /// Of them, new to the registry (the rest replaced existing entries).
    pub new: usize,
}

/// Imports a devices CSV into the registry of `data_dir`. All or nothing.
pub fn import_devices(
    data_dir: impl Into<StoreAt>,
    csv: impl std::io::Read,
) -> Result<ImportSummary, CliError> {
    let devices = devices::parse_csv(csv)?;
    let store = data_dir.into().open_writing()?;
    let new = store.upsert_devices(&devices)?;
    Ok(ImportSummary {
        total: devices.len(),
        new,
    })
}

/// Writes the journal (Signals with id > `after`) as JSON lines.
pub fn export_journal(
    data_dir: impl Into<StoreAt>,
    after: u64,
    mut out: impl Write,
) -> Result<u64, CliError> {
    let store = data_dir.into().open()?;
    let mut next = after;
    let mut n = 0;
    loop {
        let batch = store.journal_after(next, 1000)?;
        let Some(last) = batch.last() else { break };
        next = last.signal.id;
        for r in &batch {
            serde_json::to_writer(&mut out, &r.signal).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

/// Imports a subscribers CSV (see [`subscribers::CSV_HEADER`]) into `data_dir`. All or
/// nothing. Writes a `subscriber.import` audit entry at `now`.
pub fn import_subscribers(
    data_dir: impl Into<StoreAt>,
    csv: impl std::io::Read,
    now: Timestamp,
) -> Result<ImportSummary, CliError> {
    import_subscribers_warning(data_dir, csv, now).map(|(s, _)| s)
}

/// Most warnings [`import_subscribers_warning`] returns (the rest are counted).
pub const MAX_IMPORT_WARNINGS: usize = 100;

/// [`import_subscribers`], and the warnings of the file's rows: each subscriber whose care
/// provider or area is not in the directory of `data_dir`, or whose area lies in another
/// municipality (imported all the same; see
/// [`crate::registers::directory::import_warnings`]). The centre's own municipality is not
/// known here, so a card naming none is not compared with its area's.
pub fn import_subscribers_warning(
    data_dir: impl Into<StoreAt>,
    csv: impl std::io::Read,
    now: Timestamp,
) -> Result<(ImportSummary, Vec<String>), CliError> {
    let subs = subscribers::parse_csv(csv)?;
    let store = data_dir.into().open_writing()?;
    // The rows and their audit entry, durable with one sync.
    let new = store.together(|s| {
        let new = s.upsert_subscribers(&subs)?;
        s.audit(AuditEntry {
            seq: 0,
            at: now,
            user: CLI_USER.to_string(),
            action: "subscriber.import".to_string(),
            call: None,
            subscriber: None,
            detail: format!("command line: {} subscribers ({new} new)", subs.len()),
        })?;
        Ok(new)
    })?;
    let warnings = crate::registers::directory::import_warnings(
        &store.directory()?,
        &subs,
        MAX_IMPORT_WARNINGS,
        "",
    );
    Ok((
        ImportSummary {
            total: subs.len(),
            new,
        },
        warnings,
    ))
}

/// What [`add_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    /// A new user.
    Added,
    /// An existing user got a new password and role (and lost its sessions).
    Replaced {
        /// The role before.
        previous_role: Role,
    },
}

/// Adds a console user to `data_dir`, or replaces an existing user's password and role.
/// The name must be `[a-z0-9_.-]{1,64}`, the password at least
/// [`auth::MIN_PASSWORD_CHARS`] characters; it is stored as an argon2id hash. Writes a
/// `user.add` or `user.update` audit entry at `now`.
pub fn add_user(
    data_dir: impl Into<StoreAt>,
    name: &str,
    role: Role,
    password: &Password,
    now: Timestamp,
) -> Result<UserChange, CliError> {
    add_user_in(data_dir, name, role, None, password, now)
}

/// The tenant a user of `role` is given (trimmed), or why it does not go with the role: a
/// `provider` user needs the directory's provider id, a `municipality` user the
/// municipality's name, and the centre's roles take none.
pub fn tenant_for(role: Role, tenant: Option<&str>) -> Result<Option<&str>, CliError> {
    let tenant = tenant.map(str::trim).filter(|t| !t.is_empty());
    match (role.is_tenant(), tenant) {
        (true, None) => Err(CliError::Usage(format!(
            "a {} user needs --tenant (the {})",
            role.as_str(),
            if role == Role::Provider {
                "directory's provider id"
            } else {
                "municipality's name"
            }
        ))),
        (false, Some(_)) => Err(CliError::Usage(format!(
            "a {} user sees the whole centre: no --tenant",
            role.as_str()
        ))),
        (_, Some(t)) if t.chars().count() > 100 => {
            Err(CliError::Usage("a tenant of at most 100 characters".into()))
        }
        (_, t) => Ok(t),
    }
}

/// [`add_user`] with the user's tenant: a `provider` user needs the directory's provider
/// id, a `municipality` user the municipality's name; the other roles take none.
pub fn add_user_in(
    data_dir: impl Into<StoreAt>,
    name: &str,
    role: Role,
    tenant: Option<&str>,
    password: &Password,
    now: Timestamp,
) -> Result<UserChange, CliError> {
    let tenant = tenant_for(role, tenant)?;
    auth::validate_username(name)?;
    auth::validate_new_password(password.expose())?;
    let phc = auth::hash_password(password.expose())?;
    let store = data_dir.into().open_writing()?;
    let previous = store.together(|s| {
        let previous = s.set_user_in(name, role, tenant, &phc, now)?;
        s.audit(AuditEntry {
            seq: 0,
            at: now,
            user: CLI_USER.to_string(),
            action: if previous.is_some() {
                "user.update"
            } else {
                "user.add"
            }
            .to_string(),
            call: None,
            subscriber: None,
            detail: match tenant {
                Some(t) => format!("command line: user {name}, role {} of {t}", role.as_str()),
                None => format!("command line: user {name}, role {}", role.as_str()),
            },
        })?;
        Ok(previous)
    })?;
    Ok(match previous {
        None => UserChange::Added,
        Some(previous_role) => UserChange::Replaced { previous_role },
    })
}

/// Disables, enables or removes the console user `name` of `data_dir` (see
/// [`Store::change_user`]: its sessions end; the last enabled administrator stays). Writes a
/// `user.disable`, `user.enable` or `user.remove` audit entry at `now`.
pub fn change_user(
    data_dir: impl Into<StoreAt>,
    name: &str,
    change: crate::store::UserChange,
    now: Timestamp,
) -> Result<(), CliError> {
    let store = data_dir.into().open_writing()?;
    // The change and its audit entry, durable with one sync.
    store
        .together(|s| {
            let before = match s.change_user(name, change)? {
                UserChanged::Done { before, .. } => before,
                other => return Ok(other),
            };
            s.audit(change_entry(name, change, &before, now))?;
            Ok(UserChanged::Done {
                before,
                after: None,
            })
        })
        .map_err(CliError::from)
        .and_then(|changed| match changed {
            UserChanged::Done { .. } => Ok(()),
            UserChanged::NoSuchUser => Err(CliError::UnknownUser(name.to_string())),
            UserChanged::LastAdmin => Err(CliError::LastAdmin(name.to_string())),
        })
}

/// The audit entry of a user change made on the command line.
fn change_entry(
    name: &str,
    change: crate::store::UserChange,
    before: &crate::store::UserRecord,
    now: Timestamp,
) -> AuditEntry {
    let (action, detail) = match change {
        crate::store::UserChange::Disable => ("user.disable", format!("command line: user {name}")),
        crate::store::UserChange::Enable => ("user.enable", format!("command line: user {name}")),
        crate::store::UserChange::Role(r) => (
            "user.role",
            format!(
                "command line: user {name}, role {} -> {}",
                before.role.as_str(),
                r.as_str()
            ),
        ),
        crate::store::UserChange::Remove => (
            "user.remove",
            format!("command line: user {name}, role {}", before.role.as_str()),
        ),
    };
    AuditEntry {
        seq: 0,
        at: now,
        user: CLI_USER.to_string(),
        action: action.to_string(),
        call: None,
        subscriber: None,
        detail,
    }
}

/// Writes the users of `data_dir`, one a line: name, role, creation time and `disabled`
/// for a disabled user (never the password hash). Returns how many.
pub fn list_users(data_dir: impl Into<StoreAt>, mut out: impl Write) -> Result<usize, CliError> {
    let store = data_dir.into().open()?;
    let users = store.users()?;
    for u in &users {
        writeln!(
            out,
            "{:<24} {:<12} {}{}{}",
            u.name,
            u.role.as_str(),
            u.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            if u.disabled { "  disabled" } else { "" },
            u.tenant
                .as_deref()
                .map(|t| format!("  of {t}"))
                .unwrap_or_default()
        )?;
    }
    out.flush()?;
    Ok(users.len())
}

/// Writes the audit log (entries with a sequence number greater than `after`) as JSON lines.
/// Returns how many.
pub fn export_audit(
    data_dir: impl Into<StoreAt>,
    after: u64,
    mut out: impl Write,
) -> Result<u64, CliError> {
    let store = data_dir.into().open()?;
    let mut next = after;
    let mut n = 0;
    loop {
        let batch = store.audit_after(next, 1000)?;
        let Some(last) = batch.last() else { break };
        next = last.seq;
        for e in &batch {
            serde_json::to_writer(&mut out, e).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

/// What [`import_directory`] imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectorySummary {
    /// Care providers.
    pub providers: usize,
    /// Areas.
    pub areas: usize,
    /// Patrols.
    pub patrols: usize,
    /// Routing rules.
    pub routes: usize,
    /// Patrol tokens removed because their patrol is no longer in the directory.
    pub tokens_removed: usize,
}

/// Replaces the directory of `data_dir` with the four files (see [`crate::registers::directory`]). All
/// or nothing: every file is checked first, and with any problem nothing changes (not even
/// a data directory is made). Writes a `directory.import` audit entry at `now`.
pub fn import_directory(
    data_dir: impl Into<StoreAt>,
    providers: impl std::io::Read,
    areas: impl std::io::Read,
    patrols: impl std::io::Read,
    routes: impl std::io::Read,
    now: Timestamp,
) -> Result<DirectorySummary, CliError> {
    let dir = directory::parse_all(providers, areas, patrols, routes)?;
    let store = data_dir.into().open_writing()?;
    let summary = store.together(|s| {
        let tokens_removed = s.save_directory(&dir)?;
        let summary = DirectorySummary {
            providers: dir.providers.len(),
            areas: dir.areas.len(),
            patrols: dir.patrols.len(),
            routes: dir.routes.len(),
            tokens_removed,
        };
        s.audit(AuditEntry {
            seq: 0,
            at: now,
            user: CLI_USER.to_string(),
            action: "directory.import".to_string(),
            call: None,
            subscriber: None,
            detail: format!(
                "command line: {} providers, {} areas, {} patrols, {} routing rules; {} \
                 patrol tokens removed",
                summary.providers, summary.areas, summary.patrols, summary.routes, tokens_removed
            ),
        })?;
        Ok(summary)
    })?;
    Ok(summary)
}

/// Replaces the staff list of `data_dir` with the file (see [`crate::registers::staff`]); all
/// rows or none. Writes a `directory.import` audit entry at `now`. Returns how many people
/// the list holds.
pub fn import_staff(
    data_dir: impl Into<StoreAt>,
    csv: impl std::io::Read,
    now: Timestamp,
) -> Result<usize, CliError> {
    let staff = crate::registers::staff::parse_staff(csv)?;
    let store = data_dir.into().open_writing()?;
    store.together(|s| {
        s.save_staff(&staff)?;
        s.audit(AuditEntry {
            seq: 0,
            at: now,
            user: CLI_USER.to_string(),
            action: "directory.import".to_string(),
            call: None,
            subscriber: None,
            detail: format!("command line: {} people in the staff list", staff.len()),
        })
    })?;
    Ok(staff.len())
}

/// Issues a new token for the patrol `patrol_id` of `data_dir`'s directory, replacing any
/// earlier one, and returns it: the caller shows it once. Only its SHA-256 is stored. Writes
/// a `patrol.token` audit entry at `now` (without the token).
pub fn issue_patrol_token(
    data_dir: impl Into<StoreAt>,
    patrol_id: &str,
    now: Timestamp,
) -> Result<String, CliError> {
    let store = data_dir.into().open_writing()?;
    if store.patrol(patrol_id)?.is_none() {
        return Err(CliError::UnknownPatrol(patrol_id.to_string()));
    }
    let (token, hash) = crate::store::new_token();
    store.together(|s| {
        s.set_patrol_token(patrol_id, &hash)?;
        s.audit(AuditEntry {
            seq: 0,
            at: now,
            user: CLI_USER.to_string(),
            action: "patrol.token".to_string(),
            call: None,
            subscriber: None,
            detail: format!("command line: new token for patrol {patrol_id}"),
        })
    })?;
    Ok(token)
}

/// Checks an integration name: 1 to 64 of `a-z`, `0-9`, `_`, `.`, `-` (e.g. `phoniro`,
/// `assa-abloy.hemtjanst`).
pub fn validate_integration_name(name: &str) -> Result<(), CliError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else if name.chars().count() <= 64 {
        Err(CliError::BadIntegrationName(format!("{name:?}")))
    } else {
        Err(CliError::BadIntegrationName(format!(
            "of {} characters",
            name.chars().count()
        )))
    }
}

/// Issues a new bearer token for the integration `name` (a lock system posting to
/// `POST /api/locks/events`), replacing any earlier one, and returns it: the caller shows it
/// once. Only its SHA-256 is stored. Writes an `integration.token` audit entry at `now`
/// (without the token).
pub fn issue_integration_token(
    data_dir: impl Into<StoreAt>,
    name: &str,
    now: Timestamp,
) -> Result<String, CliError> {
    validate_integration_name(name)?;
    let store = data_dir.into().open_writing()?;
    let (token, hash) = crate::store::new_token();
    store.together(|s| {
        s.set_integration_token(name, &hash)?;
        s.audit(AuditEntry {
            seq: 0,
            at: now,
            user: CLI_USER.to_string(),
            action: "integration.token".to_string(),
            call: None,
            subscriber: None,
            detail: format!("command line: new token for integration {name}"),
        })
    })?;
    Ok(token)
}

/// Writes the names of the integrations with a token, one a line. Returns how many.
pub fn list_integrations(
    data_dir: impl Into<StoreAt>,
    mut out: impl Write,
) -> Result<usize, CliError> {
    let store = data_dir.into().open()?;
    let names = store.integrations()?;
    for n in &names {
        writeln!(out, "{n}")?;
    }
    out.flush()?;
    Ok(names.len())
}

/// Removes the integration `name` and its token. Writes an `integration.revoke` audit entry
/// at `now`.
pub fn revoke_integration(
    data_dir: impl Into<StoreAt>,
    name: &str,
    now: Timestamp,
) -> Result<(), CliError> {
    let store = data_dir.into().open_writing()?;
    let revoked = store.together(|s| {
        if !s.revoke_integration(name)? {
            return Ok(false);
        }
        s.audit(AuditEntry {
            seq: 0,
            at: now,
            user: CLI_USER.to_string(),
            action: "integration.revoke".to_string(),
            call: None,
            subscriber: None,
            detail: format!("command line: revoked integration {name}"),
        })?;
        Ok(true)
    })?;
    if !revoked {
        return Err(CliError::UnknownIntegration(name.to_string()));
    }
    Ok(())
}

/// The SLA report of `month` (`YYYY-MM`, in `tz`) for `scope` from `data_dir`, judged at
/// `now` (`home`: the centre's own municipality). The month is checked before the store is
/// opened.
pub fn sla_report(
    data_dir: impl Into<StoreAt>,
    month: &str,
    tz: &jiff::tz::TimeZone,
    now: Timestamp,
    scope: &crate::model::Scope,
    home: &str,
) -> Result<SlaReport, CliError> {
    report::month_bounds(month, tz)?;
    let store = data_dir.into().open()?;
    Ok(report::sla_report_of(&store, month, tz, now, scope, home)?)
}

/// The alarm visits of `month` (`YYYY-MM`, in `tz`) from `data_dir`, of one provider or
/// all. The month is checked before the store is opened.
pub fn visits_report(
    data_dir: impl Into<StoreAt>,
    month: &str,
    tz: &jiff::tz::TimeZone,
    provider: Option<&str>,
) -> Result<crate::dispatch::visits::VisitsReport, CliError> {
    report::month_bounds(month, tz)?;
    let store = data_dir.into().open()?;
    Ok(crate::dispatch::visits::visits_report(
        &store, month, tz, provider,
    )?)
}

/// The billing rows of `month` (`YYYY-MM`) from `data_dir`; `home` is the centre's
/// municipality. The month is checked before the store is opened.
pub fn billing_report(
    data_dir: impl Into<StoreAt>,
    month: &str,
    home: &str,
) -> Result<Vec<crate::care::billing::Row>, CliError> {
    let bad = || CliError::Report(report::ReportError::BadMonth(month.to_owned()));
    let m: crate::model::order::Month = month.parse().map_err(|_| bad())?;
    let store = data_dir.into().open()?;
    crate::care::billing_of(&store, m, home).map_err(|e| match e {
        crate::care::CareError::Store(e) => CliError::Store(e),
        _ => bad(),
    })
}

/// Retention at `now` on the store at `at`: with `dry_run` only the survey (the store
/// opened to read), otherwise the sweep (opened to write).
pub fn retention_run(
    at: &StoreAt,
    opts: crate::retention::RetentionOptions,
    dry_run: bool,
    now: jiff::Timestamp,
) -> Result<crate::retention::Report, CliError> {
    if dry_run {
        let store = at.open()?;
        let retention = crate::retention::Retention::new(store, None, opts);
        return Ok(crate::retention::Report {
            survey: retention.survey(now)?,
            calls: retention.survey_calls(now)?,
            ..Default::default()
        });
    }
    let writing = at.open_writing()?;
    let r = crate::retention::Retention::new(writing.store.clone(), None, opts).sweep(now)?;
    Ok(r)
}

/// Largest token file read (a token file holds one token, or a line per patrol).
const MAX_TOKEN_FILE_BYTES: u64 = 256 * 1024;

/// The token of `patrol` from its file. Blank lines and `#` comments are skipped. The file
/// holds either the token alone (its first line; anything after it is not read), or lines
/// `PATROL TOKEN`, one per patrol, as `demo-patrols.txt` of `vakt serve --demo` does: then
/// the line of `patrol` is taken (the last one if it is there twice).
pub fn read_token_file(path: &Path, patrol: &str) -> Result<Secret, CliError> {
    use std::io::Read;
    let err = |reason: String| CliError::TokenFile {
        path: path.display().to_string(),
        reason,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(err("larger than 256 KiB".into()));
    }
    token_for(&text, patrol).map_err(err)
}

/// [`read_token_file`] on the file's text; the error never quotes a token.
fn token_for(text: &str, patrol: &str) -> Result<Secret, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .peekable();
    let Some((_, first)) = lines.peek().copied() else {
        return Err(
            "no token in it (it must hold the token from `vakt patrols token`, or \
             `PATROL TOKEN` lines)"
                .into(),
        );
    };
    if first.split_whitespace().count() == 1 {
        return Ok(Secret::new(first));
    }
    let mut found = None;
    let mut count = 0usize;
    for (n, line) in lines {
        let mut words = line.split_whitespace();
        let (Some(p), Some(token), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "line {n}: expected `PATROL TOKEN` (a file with a line per patrol)"
            ));
        };
        count += 1;
        if p == patrol {
            found = Some(Secret::new(token));
        }
    }
    // The other lines are not named: a mistyped line could be a token.
    found.ok_or_else(|| {
        format!("none of its {count} `PATROL TOKEN` lines is for patrol {patrol} (--patrol)")
    })
}

/// Whether others than the owner may read the file (a token file should be private).
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// The SHA-256 fingerprint of the development certificate in `data_dir` (as the server
/// made it on its first start, [`quic::DEV_CERT_FILE`]), and the file. Never makes one.
pub fn dev_fingerprint(data_dir: &Path) -> Result<([u8; 32], std::path::PathBuf), CliError> {
    let path = data_dir.join(quic::DEV_CERT_FILE);
    if !path.is_file() {
        return Err(CliError::NoDevCertificate {
            path: path.display().to_string(),
        });
    }
    match quic::load_ca(&path)? {
        quic::Trust::Ca(certs) => match certs.first() {
            Some(cert) => Ok((quic::fingerprint(cert), path)),
            None => Err(CliError::NoDevCertificate {
                path: path.display().to_string(),
            }),
        },
        quic::Trust::Pinned(fp) => Ok((fp, path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_names() {
        for ok in ["phoniro", "assa-abloy.hemtjanst", "a", "lock_2"] {
            assert!(validate_integration_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "Phoniro", "lås", "a b", "a/b", long.as_str()] {
            assert!(validate_integration_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_files_give_their_first_token_trimmed_and_never_show_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "  abc123  \nsecond line\n").unwrap();
        assert_eq!(read_token_file(&f, "p1").unwrap().expose(), "abc123");
        std::fs::write(&f, "# my token\n\n abc123\n").unwrap();
        assert_eq!(read_token_file(&f, "p1").unwrap().expose(), "abc123");
        std::fs::write(&f, "\n  \n# nothing\n").unwrap();
        let e = read_token_file(&f, "p1").unwrap_err().to_string();
        assert!(e.contains("no token in it"), "{e}");
        std::fs::write(&f, "").unwrap();
        assert!(read_token_file(&f, "p1").is_err());
        let e = read_token_file(&dir.path().join("none"), "p1").unwrap_err();
        assert!(e.to_string().contains("token file"), "{e}");
    }

    #[test]
    fn a_file_of_patrol_token_lines_gives_the_patrols_own() {
        let dir = tempfile::tempdir().unwrap();
        // As `vakt serve --demo` writes it.
        let logins = [
            crate::sim::PatrolLogin {
                patrol: "norr-dag".into(),
                token: Secret::new("aaa111"),
            },
            crate::sim::PatrolLogin {
                patrol: "natt-2".into(),
                token: Secret::new("bbb222"),
            },
        ];
        let f = crate::sim::save_patrol_logins(dir.path(), &logins).unwrap();
        assert_eq!(read_token_file(&f, "natt-2").unwrap().expose(), "bbb222");
        assert_eq!(read_token_file(&f, "norr-dag").unwrap().expose(), "aaa111");
        let e = read_token_file(&f, "norr-kvall").unwrap_err().to_string();
        assert!(
            e.contains("none of its 2 `PATROL TOKEN` lines is for patrol norr-kvall"),
            "{e}"
        );
        assert!(!e.contains("aaa111") && !e.contains("bbb222"), "{e}");
        // A malformed line is named by its number, never shown.
        std::fs::write(&f, "p1 t1\np2 t2 secret-extra\n").unwrap();
        let e = read_token_file(&f, "p1").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("secret-extra"), "{e}");
    }

    #[test]
    fn the_dev_fingerprint_is_read_never_made() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            dev_fingerprint(dir.path()),
            Err(CliError::NoDevCertificate { .. })
        ));
        assert!(!dir.path().join(quic::DEV_CERT_FILE).exists());
        let (id, made) = quic::dev_identity(dir.path(), &[]).unwrap();
        assert!(made);
        let (fp, path) = dev_fingerprint(dir.path()).unwrap();
        assert_eq!(fp, id.fingerprint);
        assert_eq!(path, dir.path().join(quic::DEV_CERT_FILE));
    }
}
