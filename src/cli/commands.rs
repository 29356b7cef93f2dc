//! The bodies of the sub-commands other than `serve`: each checks its input, calls
//! [`super::offline`] (or the patrol client), prints the outcome and returns the exit code
//! ([`EX_USAGE`] for a bad command line, [`EX_DATAERR`] for bad input data, 1 for other
//! failures).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::args::{IntegrationsCmd, ReportFormat};
use super::store_at::StoreAt;
use super::{CliError, EX_DATAERR, EX_USAGE, ImportSummary};
use crate::config::Config;
use crate::store::StoreError;

/// `vakt check-config FILE`: `FILE: ok`, or what is wrong and exit 64.
pub(super) fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(EX_USAGE)
        }
    }
}

/// `vakt journal export` and `vakt audit export`: JSON lines on standard output; exit 64
/// without the data directory.
pub(super) fn export(
    data_dir: &StoreAt,
    write: impl FnOnce(std::io::BufWriter<std::io::StdoutLock<'static>>) -> Result<(), CliError>,
) -> ExitCode {
    if !data_dir.exists() {
        eprintln!("{}: no such data directory", data_dir);
        return ExitCode::from(EX_USAGE);
    }
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    report(write(out).map_err(Into::into))
}

/// `vakt users list`: one user a line; `no users in DIR` on standard error for none.
pub(super) fn list_users(data_dir: &StoreAt) -> ExitCode {
    if !data_dir.exists() {
        eprintln!("{}: no such data directory", data_dir);
        return ExitCode::from(EX_USAGE);
    }
    match super::list_users(data_dir, std::io::stdout().lock()) {
        Ok(0) => {
            eprintln!("no users in {}", data_dir);
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => report(Err(e.into())),
    }
}

/// Which monthly report.
pub(super) enum MonthReport {
    /// `vakt report sla`, of the whole centre, a municipality or a care provider.
    Sla {
        /// Whose.
        scope: crate::model::Scope,
    },
    /// `vakt report visits`, of one provider or all.
    Visits {
        /// The provider.
        provider: Option<String>,
    },
    /// `vakt report billing`.
    Billing,
}

/// The configuration (`--config`, else the embedded one) and the store it or `--data-dir`
/// names; exit 64, with the reason on stderr, when either is wrong.
fn config_and_store(
    config: Option<&std::path::Path>,
    data_dir: Option<&std::path::Path>,
) -> Result<(Config, StoreAt), ExitCode> {
    let cfg = match config {
        Some(path) => Config::load(path).map_err(|e| {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(EX_USAGE)
        })?,
        None => Config::embedded(),
    };
    let at = StoreAt::from_args(data_dir, config).map_err(|e| {
        eprintln!("vakt: {e}");
        ExitCode::from(EX_USAGE)
    })?;
    Ok((cfg, at))
}

/// `vakt report sla` and `vakt report visits`: exit 64 for a bad month, time zone,
/// configuration or data directory.
pub(super) fn report_month(
    which: MonthReport,
    month: &str,
    format: ReportFormat,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    time_zone: Option<String>,
) -> ExitCode {
    let (cfg, data_dir) = match config_and_store(config.as_deref(), data_dir.as_deref()) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let zone = time_zone.unwrap_or(cfg.http.time_zone);
    let tz = match jiff::tz::TimeZone::get(&zone) {
        Ok(tz) => tz,
        Err(_) => {
            eprintln!("vakt: unknown time zone {zone:?} (an IANA name, e.g. Europe/Stockholm)");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = crate::dispatch::report::month_bounds(month, &tz) {
        eprintln!("vakt: {e}");
        return ExitCode::from(EX_USAGE);
    }
    if !data_dir.exists() {
        eprintln!("{}: no such data directory", data_dir);
        return ExitCode::from(EX_USAGE);
    }
    let (made, path) = match &which {
        MonthReport::Sla { scope } => (
            super::sla_report(
                &data_dir,
                month,
                &tz,
                jiff::Timestamp::now(),
                scope,
                &cfg.care.municipality,
            )
            .map(|r| {
                (
                    crate::dispatch::report::to_text(&r),
                    crate::dispatch::report::to_csv(&r),
                    serde_json::to_string_pretty(&r),
                )
            }),
            "sla",
        ),
        MonthReport::Visits { provider } => (
            super::visits_report(&data_dir, month, &tz, provider.as_deref()).map(|r| {
                (
                    crate::dispatch::visits::to_text(&r, &tz),
                    crate::dispatch::visits::to_csv(&r, &tz),
                    serde_json::to_string_pretty(&r),
                )
            }),
            "visits",
        ),
        MonthReport::Billing => (
            super::billing_report(&data_dir, month, &cfg.care.municipality).map(|r| {
                (
                    crate::care::billing::to_text(&r),
                    crate::care::billing::to_csv(&r),
                    serde_json::to_string_pretty(&r),
                )
            }),
            "billing",
        ),
    };
    let (text, csv, json) = match made {
        Ok(r) => r,
        Err(e @ CliError::Store(StoreError::Open { .. })) => {
            eprintln!(
                "vakt: {e}\nvakt: while the server runs, the report is in the console \
                 (GET /api/reports/{path}?month={month})"
            );
            return ExitCode::FAILURE;
        }
        Err(e) => return report(Err(e.into())),
    };
    let text = match format {
        ReportFormat::Text => text,
        ReportFormat::Csv => csv,
        ReportFormat::Json => match json {
            Ok(mut j) => {
                j.push('\n');
                j
            }
            Err(e) => return report(Err(e.into())),
        },
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    report(
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("writing the report"),
    )
}

/// `vakt retention run [--dry-run]`: who is due and who is held, subscribers and closed
/// Calls by age (and, without `--dry-run`, what was done); exit 64 for a bad configuration
/// or data directory, 1 when a subscriber's retention or the sweep of closed Calls failed
/// (the rest is done).
pub(super) fn retention_run(
    dry_run: bool,
    json: bool,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> ExitCode {
    let (cfg, at) = match config_and_store(config.as_deref(), data_dir.as_deref()) {
        Ok(both) => both,
        Err(code) => return code,
    };
    if !at.exists() {
        eprintln!("{at}: no such data directory");
        return ExitCode::from(EX_USAGE);
    }
    let dir = data_dir.unwrap_or_else(|| cfg.data_dir.clone());
    let opts = cfg.retention_options(&dir);
    let ran = super::retention_run(&at, opts, dry_run, jiff::Timestamp::now());
    let r = match ran {
        Ok(r) => r,
        Err(e @ CliError::Store(StoreError::Open { .. })) => {
            eprintln!("vakt: {e}\nvakt: the server runs retention hourly by itself");
            return ExitCode::FAILURE;
        }
        Err(e) => return report(Err(e.into())),
    };
    let text = if json {
        match serde_json::to_string_pretty(&r) {
            Ok(mut j) => {
                j.push('\n');
                j
            }
            Err(e) => return report(Err(e.into())),
        }
    } else {
        crate::retention::to_text(&r, dry_run)
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the report");
    if written.is_ok() && (!r.failed.is_empty() || r.calls_failed.is_some()) {
        return ExitCode::FAILURE;
    }
    report(written)
}

/// `vakt integrations token|list|revoke`: exit 64 for a bad name or data directory, 65 to
/// revoke an unknown integration.
pub(super) fn integrations(cmd: IntegrationsCmd) -> ExitCode {
    let data_dir = match &cmd {
        IntegrationsCmd::Token { data_dir, .. }
        | IntegrationsCmd::List { data_dir }
        | IntegrationsCmd::Revoke { data_dir, .. } => match data_dir.at() {
            Ok(at) => at,
            Err(e) => {
                eprintln!("vakt: {e}");
                return ExitCode::from(EX_USAGE);
            }
        },
    };
    if let IntegrationsCmd::Token { name, .. } = &cmd {
        if let Err(e) = super::validate_integration_name(name) {
            eprintln!("vakt: {e}");
            return ExitCode::from(EX_USAGE);
        }
    }
    if !data_dir.exists() {
        eprintln!("{}: no such data directory", data_dir);
        return ExitCode::from(EX_USAGE);
    }
    let now = jiff::Timestamp::now();
    match cmd {
        IntegrationsCmd::Token { name, .. } => {
            match super::issue_integration_token(&data_dir, &name, now) {
                Ok(token) => {
                    println!("{token}");
                    eprintln!(
                        "vakt: new token for integration {name} (shown only this once; any \
                         earlier token no longer works). It sends lock events with the header \
                         `Authorization: Bearer TOKEN` to POST /api/locks/events"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => report(Err(e.into())),
            }
        }
        IntegrationsCmd::List { .. } => {
            match super::list_integrations(&data_dir, std::io::stdout().lock()) {
                Ok(0) => {
                    eprintln!("no integrations in {}", data_dir);
                    ExitCode::SUCCESS
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => report(Err(e.into())),
            }
        }
        IntegrationsCmd::Revoke { name, .. } => {
            match super::revoke_integration(&data_dir, &name, now) {
                Ok(()) => {
                    println!("revoked integration {name}: its token no longer works");
                    ExitCode::SUCCESS
                }
                Err(e @ CliError::UnknownIntegration(_)) => {
                    eprintln!("vakt: {e}");
                    ExitCode::from(EX_DATAERR)
                }
                Err(e) => report(Err(e.into())),
            }
        }
    }
}

/// The command line of `vakt patrol`.
pub(super) struct PatrolArgs {
    pub(super) server: String,
    pub(super) patrol: String,
    pub(super) token_file: PathBuf,
    pub(super) ca: Option<PathBuf>,
    pub(super) insecure_dev: bool,
    pub(super) fingerprint: Option<String>,
    pub(super) data_dir: PathBuf,
}

/// `vakt patrol`: exit 64 without a way to trust the server (or a bad fingerprint or CA
/// file), 65 for an unusable token file, 1 when the server refuses the patrol.
pub(super) fn patrol_client(a: PatrolArgs) -> ExitCode {
    use crate::transport::quic::{self, Trust};
    let trust = match (&a.ca, a.insecure_dev) {
        (Some(ca), _) => match quic::load_ca(ca) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("vakt: --ca: {e}");
                return ExitCode::from(EX_USAGE);
            }
        },
        (None, true) => match &a.fingerprint {
            Some(hex) => match quic::parse_fingerprint(hex) {
                Some(fp) => {
                    eprintln!(
                        "vakt: --insecure-dev: trusting only the server certificate with \
                         SHA-256 fingerprint {}",
                        quic::fingerprint_hex(&fp)
                    );
                    Trust::Pinned(fp)
                }
                None => {
                    eprintln!(
                        "vakt: --fingerprint {hex:?} is not a SHA-256 fingerprint (64 hex \
                         digits, colons optional, as the server prints it at start)"
                    );
                    return ExitCode::from(EX_USAGE);
                }
            },
            None => match super::dev_fingerprint(&a.data_dir) {
                Ok((fp, path)) => {
                    eprintln!(
                        "vakt: --insecure-dev: trusting only the development certificate {} \
                         (SHA-256 fingerprint {})",
                        path.display(),
                        quic::fingerprint_hex(&fp)
                    );
                    Trust::Pinned(fp)
                }
                Err(e) => {
                    eprintln!("vakt: --insecure-dev: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            },
        },
        (None, false) => {
            eprintln!(
                "vakt: say how to trust the server's certificate: --ca FILE (a PEM file with \
                 the CA certificates that signed the server's certificate, for a production \
                 server), or --insecure-dev (development only: pins the server's self-signed \
                 development certificate, by --fingerprint HEX as the server printed it at \
                 start, or read from the server's --data-dir)"
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    let token = match super::read_token_file(&a.token_file, &a.patrol) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vakt: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    };
    if super::readable_by_others(&a.token_file) {
        eprintln!(
            "vakt: warning: {} can be read by other users (chmod 600 it)",
            a.token_file.display()
        );
    }
    let opts = crate::sim::patrol_client::ClientOptions {
        server: a.server,
        patrol: a.patrol,
        token,
        trust,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(Err(anyhow::Error::from(e).context("starting the runtime"))),
    };
    match rt.block_on(crate::sim::patrol_client::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vakt: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `vakt directory import`: the four files (providers, areas, patrols, routes), all or
/// nothing; exit 65 with every problem (by file and line) for bad files.
pub(super) fn import_directory(data_dir: &StoreAt, files: [&PathBuf; 4]) -> ExitCode {
    use crate::registers::directory::{ImportError, Table};
    let path_of = |t: Table| match t {
        Table::Providers => files[0],
        Table::Areas => files[1],
        Table::Patrols => files[2],
        Table::Routes => files[3],
    };
    // Every file that cannot be opened is named.
    let open = |f: &PathBuf| {
        std::fs::File::open(f)
            .map(std::io::BufReader::new)
            .map_err(|e| eprintln!("{}: {e}", f.display()))
    };
    let (Ok(p), Ok(a), Ok(t), Ok(r)) = (
        open(files[0]),
        open(files[1]),
        open(files[2]),
        open(files[3]),
    ) else {
        return ExitCode::from(EX_DATAERR);
    };
    match super::import_directory(data_dir, p, a, t, r, jiff::Timestamp::now()) {
        Ok(s) => {
            println!(
                "imported the directory into {}: {} providers, {} areas, {} patrols, {} \
                 routing rules",
                data_dir, s.providers, s.areas, s.patrols, s.routes
            );
            if s.tokens_removed > 0 {
                println!(
                    "removed the tokens of {} patrols that are no longer in the directory",
                    s.tokens_removed
                );
            }
            ExitCode::SUCCESS
        }
        Err(CliError::Directory(ImportError::Invalid(problems))) => {
            eprintln!(
                "vakt: {} problem(s) in the directory files, nothing imported:",
                problems.len()
            );
            for p in &problems {
                let file = path_of(p.table).display();
                if p.line == 0 {
                    eprintln!("{file}: {}", p.message);
                } else {
                    eprintln!("{file}: line {}: {}", p.line, p.message);
                }
            }
            ExitCode::from(EX_DATAERR)
        }
        Err(CliError::Directory(ImportError::Io { table, source })) => {
            eprintln!("{}: {source}", path_of(table).display());
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

/// `vakt patrols token ID`: prints a new token once on stdout; exit 65 for an unknown patrol.
pub(super) fn patrol_token(id: &str, data_dir: &StoreAt) -> ExitCode {
    if !data_dir.exists() {
        eprintln!("{}: no such data directory", data_dir);
        return ExitCode::from(EX_USAGE);
    }
    match super::issue_patrol_token(data_dir, id, jiff::Timestamp::now()) {
        Ok(token) => {
            println!("{token}");
            eprintln!(
                "vakt: new token for patrol {id} (shown only this once; any earlier token no \
                 longer works)"
            );
            ExitCode::SUCCESS
        }
        Err(e @ CliError::UnknownPatrol(_)) => {
            eprintln!("vakt: {e}");
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

/// `vakt users add`: checks the name, reads the password, stores the user.
pub(super) fn add_user(
    name: &str,
    role: &str,
    tenant: Option<&str>,
    data_dir: &StoreAt,
) -> ExitCode {
    use crate::console::auth::{self, AuthError};
    let role: crate::model::Role = match role.parse() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vakt: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = auth::validate_username(name) {
        eprintln!("vakt: {e}");
        return ExitCode::from(EX_USAGE);
    }
    if let Err(e) = super::offline::tenant_for(role, tenant) {
        eprintln!("vakt: {e}");
        return ExitCode::from(EX_USAGE);
    }
    let password = match super::term::read_password(name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vakt: reading the password: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    };
    let now = jiff::Timestamp::now();
    match super::add_user_in(data_dir, name, role, tenant, &password, now) {
        Ok(super::UserChange::Added) => {
            println!("added user {name} ({}) to {}", role.as_str(), data_dir);
            ExitCode::SUCCESS
        }
        Ok(super::UserChange::Replaced { previous_role }) => {
            println!(
                "user {name} already existed: replaced its password and role ({} -> {}) and \
                 ended its sessions",
                previous_role.as_str(),
                role.as_str()
            );
            ExitCode::SUCCESS
        }
        Err(CliError::Auth(e @ AuthError::BadUsername(_))) => {
            eprintln!("vakt: {e}");
            ExitCode::from(EX_USAGE)
        }
        Err(CliError::Auth(
            e @ (AuthError::PasswordTooShort { .. }
            | AuthError::PasswordTooLong { .. }
            | AuthError::PasswordRepetitive { .. }),
        )) => {
            eprintln!("vakt: {e}; nothing changed");
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

/// `vakt users disable|enable|remove NAME`.
pub(super) fn change_user(
    name: &str,
    change: crate::store::UserChange,
    data_dir: &StoreAt,
) -> ExitCode {
    if !data_dir.exists() {
        eprintln!("{}: no such data directory", data_dir);
        return ExitCode::from(EX_USAGE);
    }
    match super::change_user(data_dir, name, change, jiff::Timestamp::now()) {
        Ok(()) => {
            let done = match change {
                crate::store::UserChange::Disable => "disabled",
                crate::store::UserChange::Enable => "enabled",
                crate::store::UserChange::Role(_) => "changed",
                crate::store::UserChange::Remove => "removed",
            };
            println!("{done} user {name}");
            ExitCode::SUCCESS
        }
        Err(e @ (CliError::UnknownUser(_) | CliError::LastAdmin(_))) => {
            eprintln!("vakt: {e}; nothing changed");
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

/// Exit 0 for `Ok`; else the error with its causes on standard error, and exit 1.
pub(super) fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vakt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `vakt directory staff FILE`: the staff list, all or nothing; exit 65 with every problem
/// (by line) for a bad file.
pub(super) fn import_staff(data_dir: &StoreAt, file: &Path) -> ExitCode {
    let f = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(EX_DATAERR);
        }
    };
    match super::import_staff(data_dir, f, jiff::Timestamp::now()) {
        Ok(n) => {
            println!("imported the staff list into {data_dir}: {n} people");
            ExitCode::SUCCESS
        }
        Err(e @ CliError::Staff(_)) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

/// Runs an all-or-nothing CSV import and reports it: exit 65 for a file that cannot be read
/// or has bad rows (their reasons, by line number, on stderr).
pub(super) fn import(
    file: &Path,
    data_dir: &StoreAt,
    what: &str,
    run: impl FnOnce(std::io::BufReader<std::fs::File>) -> Result<ImportSummary, CliError>,
) -> ExitCode {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(EX_DATAERR);
        }
    };
    match run(std::io::BufReader::new(f)) {
        Ok(s) => {
            println!(
                "imported {} {what} ({} new, {} updated) into {}",
                s.total,
                s.new,
                s.total - s.new,
                data_dir
            );
            ExitCode::SUCCESS
        }
        Err(e @ (CliError::Import(_) | CliError::Subscribers(_))) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}
