//! The `vakt` command: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vakt::config::Config;

/// Exit code for an invalid configuration or command line (EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit code for invalid input data, e.g. a bad import file (EX_DATAERR).
const EX_DATAERR: u8 = 65;

#[derive(Parser, Debug)]
#[command(
    name = "vakt",
    version,
    about = "Alarm receiving centre server for social alarms"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server (with the embedded default configuration unless --config is given).
    Serve {
        /// Configuration file (TOML); see config/vakt.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory (overrides `data_dir` of the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// On an empty data directory, seed a demo municipality (subscribers, devices, an
        /// operator and a supervisor whose passwords are printed), and run a built-in device
        /// simulator that sends alarms to this vakt over DC-09.
        #[arg(long)]
        demo: bool,
        /// DC-09's port (TCP and UDP), on the configured address; 0 picks a free one.
        #[arg(long, env = "VAKT_DC09_PORT", value_name = "PORT")]
        dc09_port: Option<u16>,
        /// SCAIP's port (SIP over UDP and TCP), on the configured address; 0 picks a free one.
        #[arg(long, env = "VAKT_SCAIP_PORT", value_name = "PORT")]
        scaip_port: Option<u16>,
        /// The console's port (HTTP), on the configured address; 0 picks a free one.
        #[arg(long, env = "VAKT_HTTP_PORT", value_name = "PORT")]
        http_port: Option<u16>,
        /// The patrol link's port (QUIC), on the configured address; 0 picks a free one.
        #[arg(long, env = "VAKT_PATROL_PORT", value_name = "PORT")]
        patrol_port: Option<u16>,
    },
    /// Check a configuration file: print what is wrong and exit 64, or exit 0.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// The device registry.
    Devices {
        #[command(subcommand)]
        cmd: DevicesCmd,
    },
    /// The journal of received Signals.
    Journal {
        #[command(subcommand)]
        cmd: JournalCmd,
    },
    /// Console users.
    Users {
        #[command(subcommand)]
        cmd: UsersCmd,
    },
    /// The subscriber register.
    Subscribers {
        #[command(subcommand)]
        cmd: SubscribersCmd,
    },
    /// The audit log (who did what).
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// The directory: care providers, areas, patrols and routing rules.
    Directory {
        #[command(subcommand)]
        cmd: DirectoryCmd,
    },
    /// Home-care patrols.
    Patrols {
        #[command(subcommand)]
        cmd: PatrolsCmd,
    },
    /// Reports (with the server stopped; the console has them too).
    Report {
        #[command(subcommand)]
        cmd: ReportCmd,
    },
    /// Integrations (digital lock systems) and their tokens for `POST /api/locks/events`.
    Integrations {
        #[command(subcommand)]
        cmd: IntegrationsCmd,
    },
    /// The terminal patrol client (the reference client of proto/patrol.md): shows
    /// assignments and warnings as they arrive, and takes one command a line: `r ID`
    /// received, `a ID` accept, `d ID REASON` decline, `h ID` arrived, `c ID OUTCOME NOTE`
    /// complete, `q` quit. It reconnects by itself. The server's certificate is checked
    /// against --ca, or with --insecure-dev pinned to the development certificate.
    Patrol {
        /// The server's patrol link, HOST:PORT (its `[patrol] listen_quic`).
        #[arg(long)]
        server: String,
        /// This patrol's id in the directory.
        #[arg(long)]
        patrol: String,
        /// File with the patrol's token (from `vakt patrols token`) alone, or with lines
        /// `PATROL TOKEN` of which the one of --patrol is taken (as `demo-patrols.txt` of
        /// `vakt serve --demo`); keep it readable by you only.
        #[arg(long)]
        token_file: PathBuf,
        /// Trust server certificates signed by the CA certificates of this PEM file.
        #[arg(long, conflicts_with = "insecure_dev")]
        ca: Option<PathBuf>,
        /// Development only: trust exactly the server's self-signed development certificate,
        /// pinned by its SHA-256 fingerprint: --fingerprint, or else read from the
        /// certificate in --data-dir.
        #[arg(long)]
        insecure_dev: bool,
        /// With --insecure-dev: the fingerprint the server printed at start (hex, colons
        /// optional).
        #[arg(long, requires = "insecure_dev")]
        fingerprint: Option<String>,
        /// With --insecure-dev and no --fingerprint: the server's data directory, where its
        /// development certificate is (never made here).
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ReportCmd {
    /// The monthly arrival SLA report: per care provider and area the dispatches, median and
    /// 90th percentile time from receipt to arrival, breaches (with Call ids), receipt
    /// timeouts, declined, cancelled and open; and the month's answer-time figures. A
    /// dispatch counts in the month it was offered, in local time. With the server stopped
    /// (while it runs, use the console or GET /api/reports/sla?month=YYYY-MM).
    Sla {
        /// The month, YYYY-MM (e.g. 2026-11).
        #[arg(long)]
        month: String,
        /// Output: `text` (a table, the default), `csv` (the per-provider-and-area rows
        /// and a totals line, for a spreadsheet) or `json` (everything, as the API gives it).
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Configuration file: its `data_dir` and `[http] time_zone` are used unless given
        /// below.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory [default: the configuration's, vakt-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// IANA time zone the month is counted in [default: the configuration's,
        /// Europe/Stockholm].
        #[arg(long)]
        time_zone: Option<String>,
    },
}

/// How `vakt report sla` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ReportFormat {
    Text,
    Csv,
    Json,
}

#[derive(Subcommand, Debug)]
enum IntegrationsCmd {
    /// Issue a new bearer token for an integration (with the server stopped), creating the
    /// integration. The token is printed once on standard output and stored only as a
    /// hash; an earlier token of the integration stops working.
    Token {
        /// The integration's name: 1 to 64 of a-z, 0-9, '_', '.', '-' (e.g. phoniro).
        name: String,
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
    /// List the integrations that have a token (with the server stopped).
    List {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
    /// Remove an integration; its token stops working (with the server stopped).
    Revoke {
        /// The integration's name.
        name: String,
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum DirectoryCmd {
    /// Replace the directory with four CSV files (UTF-8; with the server stopped). All four
    /// are checked first, together; with any problem nothing is imported. Headers:
    /// providers `id,name,phone`; areas `id,name,arrival_limit_mins`; patrols
    /// `id,name,provider,areas,shifts,phone` (areas `a;b`, shifts `day 07:00-15:30;night
    /// 21:30-07:00`); routes `provider,area,patrols` (`*` = any; patrols `p1;p2` in fallback
    /// order).
    Import {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
        /// The care providers file.
        #[arg(long)]
        providers: PathBuf,
        /// The areas file.
        #[arg(long)]
        areas: PathBuf,
        /// The patrols file.
        #[arg(long)]
        patrols: PathBuf,
        /// The routing rules file.
        #[arg(long)]
        routes: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum PatrolsCmd {
    /// Issue a new login token for a patrol of the directory (with the server stopped). The
    /// token is printed once on standard output and stored only as a hash; an earlier token
    /// of the patrol stops working.
    Token {
        /// The patrol id.
        id: String,
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum DevicesCmd {
    /// Import devices from CSV (with the server stopped). All rows are checked first; a file
    /// with any bad row imports nothing. Header:
    /// account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area,device_type,sip_user,sip_password
    /// (files without the last two, or the last three, columns are accepted too).
    Import {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum JournalCmd {
    /// Print the journal as JSON lines (with the server stopped).
    Export {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
        /// Only Signals with an id greater than this.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

#[derive(Subcommand, Debug)]
enum UsersCmd {
    /// Add a user, or give an existing one a new password and role (with the server
    /// stopped). The password is read from standard input (the first line; asked for twice,
    /// without echo, on a terminal) and must be at least 10 characters (not counting spaces
    /// before and after) of at least 5 different ones.
    Add {
        /// User name: 1 to 64 of a-z (lower case), 0-9, '_', '.', '-'.
        name: String,
        /// What the user may do.
        #[arg(long, value_parser = ["operator", "supervisor", "admin"])]
        role: String,
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
    /// List the users: name, role, created, disabled (with the server stopped).
    List {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
    /// Disable a user: it can no longer log in and its sessions end (with the server
    /// stopped; while it runs, an administrator does it in the console).
    Disable {
        /// User name.
        name: String,
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
    /// Enable a disabled user again (with the server stopped).
    Enable {
        /// User name.
        name: String,
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
    /// Remove a user; its sessions end (with the server stopped). The audit log keeps it.
    Remove {
        /// User name.
        name: String,
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum SubscribersCmd {
    /// Import subscribers from CSV (UTF-8; with the server stopped). All rows are checked
    /// first; a file with any bad row imports nothing. Header:
    /// id,name,personal_number,address,postcode,city,area,phone,care_provider,keys,key_location,digital_lock_id,door_code,entry_notes,health_notes,care_plan_notes,contact1_name,contact1_relation,contact1_phone,contact2_name,contact2_relation,contact2_phone,contact3_name,contact3_relation,contact3_phone,language
    Import {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Print the audit log as JSON lines (with the server stopped).
    Export {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
        /// Only entries with a sequence number greater than this.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

fn main() -> ExitCode {
    // Everything vakt writes (the data directory, its database, certificates, the demo's
    // passwords) is for its own user only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    vakt::telemetry::init_tracing(cli.log_json);
    match cli.cmd {
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(EX_USAGE)
            }
        },
        Cmd::Serve {
            config,
            data_dir,
            demo,
            dc09_port,
            scaip_port,
            http_port,
            patrol_port,
        } => {
            let cfg = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        return ExitCode::from(EX_USAGE);
                    }
                },
                None => Config::embedded(),
            };
            let mut cfg = Config {
                data_dir: data_dir.unwrap_or(cfg.data_dir.clone()),
                ..cfg
            };
            let ports = vakt::config::Ports {
                dc09: dc09_port,
                scaip: scaip_port,
                http: http_port,
                patrol: patrol_port,
            };
            if let Err(e) = cfg.set_ports(ports) {
                eprintln!("vakt: --{}-port: {e}", e.protocol);
                return ExitCode::from(EX_USAGE);
            }
            let r = serve(cfg, demo);
            if let Err(e) = &r {
                let in_use = e
                    .downcast_ref::<vakt::server::ServerError>()
                    .and_then(vakt::server::ServerError::address_in_use);
                if let Some(what) = in_use {
                    eprintln!("vakt: {e:#}");
                    eprintln!("vakt: {}", port_hint(what));
                    return ExitCode::FAILURE;
                }
            }
            report(r)
        }
        Cmd::Devices {
            cmd: DevicesCmd::Import { data_dir, file },
        } => import(&file, &data_dir, "devices", |f| {
            vakt::cli::import_devices(&data_dir, f)
        }),
        Cmd::Journal {
            cmd: JournalCmd::Export { data_dir, after },
        } => {
            if !data_dir.is_dir() {
                eprintln!("{}: no such data directory", data_dir.display());
                return ExitCode::from(EX_USAGE);
            }
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            report(
                vakt::cli::export_journal(&data_dir, after, out)
                    .map(|_| ())
                    .map_err(Into::into),
            )
        }
        Cmd::Users {
            cmd:
                UsersCmd::Add {
                    name,
                    role,
                    data_dir,
                },
        } => add_user(&name, &role, &data_dir),
        Cmd::Users {
            cmd: UsersCmd::List { data_dir },
        } => {
            if !data_dir.is_dir() {
                eprintln!("{}: no such data directory", data_dir.display());
                return ExitCode::from(EX_USAGE);
            }
            match vakt::cli::list_users(&data_dir, std::io::stdout().lock()) {
                Ok(0) => {
                    eprintln!("no users in {}", data_dir.display());
                    ExitCode::SUCCESS
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => report(Err(e.into())),
            }
        }
        Cmd::Users {
            cmd: UsersCmd::Disable { name, data_dir },
        } => change_user(&name, vakt::store::UserChange::Disable, &data_dir),
        Cmd::Users {
            cmd: UsersCmd::Enable { name, data_dir },
        } => change_user(&name, vakt::store::UserChange::Enable, &data_dir),
        Cmd::Users {
            cmd: UsersCmd::Remove { name, data_dir },
        } => change_user(&name, vakt::store::UserChange::Remove, &data_dir),
        Cmd::Subscribers {
            cmd: SubscribersCmd::Import { data_dir, file },
        } => import(&file, &data_dir, "subscribers", |f| {
            vakt::cli::import_subscribers(&data_dir, f, jiff::Timestamp::now())
        }),
        Cmd::Audit {
            cmd: AuditCmd::Export { data_dir, after },
        } => {
            if !data_dir.is_dir() {
                eprintln!("{}: no such data directory", data_dir.display());
                return ExitCode::from(EX_USAGE);
            }
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            report(
                vakt::cli::export_audit(&data_dir, after, out)
                    .map(|_| ())
                    .map_err(Into::into),
            )
        }
        Cmd::Directory {
            cmd:
                DirectoryCmd::Import {
                    data_dir,
                    providers,
                    areas,
                    patrols,
                    routes,
                },
        } => import_directory(&data_dir, [&providers, &areas, &patrols, &routes]),
        Cmd::Patrols {
            cmd: PatrolsCmd::Token { id, data_dir },
        } => patrol_token(&id, &data_dir),
        Cmd::Report {
            cmd:
                ReportCmd::Sla {
                    month,
                    format,
                    config,
                    data_dir,
                    time_zone,
                },
        } => report_sla(&month, format, config, data_dir, time_zone),
        Cmd::Integrations { cmd } => integrations(cmd),
        Cmd::Patrol {
            server,
            patrol,
            token_file,
            ca,
            insecure_dev,
            fingerprint,
            data_dir,
        } => patrol_client(PatrolArgs {
            server,
            patrol,
            token_file,
            ca,
            insecure_dev,
            fingerprint,
            data_dir,
        }),
    }
}

/// `vakt report sla`: exit 64 for a bad month, time zone, configuration or data directory.
fn report_sla(
    month: &str,
    format: ReportFormat,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    time_zone: Option<String>,
) -> ExitCode {
    let cfg = match &config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(EX_USAGE);
            }
        },
        None => Config::embedded(),
    };
    let data_dir = data_dir.unwrap_or(cfg.data_dir);
    let zone = time_zone.unwrap_or(cfg.http.time_zone);
    let tz = match jiff::tz::TimeZone::get(&zone) {
        Ok(tz) => tz,
        Err(_) => {
            eprintln!("vakt: unknown time zone {zone:?} (an IANA name, e.g. Europe/Stockholm)");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = vakt::dispatch::report::month_bounds(month, &tz) {
        eprintln!("vakt: {e}");
        return ExitCode::from(EX_USAGE);
    }
    if !data_dir.is_dir() {
        eprintln!("{}: no such data directory", data_dir.display());
        return ExitCode::from(EX_USAGE);
    }
    let r = match vakt::cli::sla_report(&data_dir, month, &tz, jiff::Timestamp::now()) {
        Ok(r) => r,
        Err(e @ vakt::cli::CliError::Store(vakt::store::StoreError::Open { .. })) => {
            eprintln!(
                "vakt: {e}\nvakt: while the server runs, the report is in the console \
                 (GET /api/reports/sla?month={month})"
            );
            return ExitCode::FAILURE;
        }
        Err(e) => return report(Err(e.into())),
    };
    let text = match format {
        ReportFormat::Text => vakt::dispatch::report::to_text(&r),
        ReportFormat::Csv => vakt::dispatch::report::to_csv(&r),
        ReportFormat::Json => match serde_json::to_string_pretty(&r) {
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

/// `vakt integrations token|list|revoke`: exit 64 for a bad name or data directory, 65 to
/// revoke an unknown integration.
fn integrations(cmd: IntegrationsCmd) -> ExitCode {
    let data_dir = match &cmd {
        IntegrationsCmd::Token { data_dir, .. }
        | IntegrationsCmd::List { data_dir }
        | IntegrationsCmd::Revoke { data_dir, .. } => data_dir.clone(),
    };
    if let IntegrationsCmd::Token { name, .. } = &cmd {
        if let Err(e) = vakt::cli::validate_integration_name(name) {
            eprintln!("vakt: {e}");
            return ExitCode::from(EX_USAGE);
        }
    }
    if !data_dir.is_dir() {
        eprintln!("{}: no such data directory", data_dir.display());
        return ExitCode::from(EX_USAGE);
    }
    let now = jiff::Timestamp::now();
    match cmd {
        IntegrationsCmd::Token { name, .. } => {
            match vakt::cli::issue_integration_token(&data_dir, &name, now) {
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
            match vakt::cli::list_integrations(&data_dir, std::io::stdout().lock()) {
                Ok(0) => {
                    eprintln!("no integrations in {}", data_dir.display());
                    ExitCode::SUCCESS
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => report(Err(e.into())),
            }
        }
        IntegrationsCmd::Revoke { name, .. } => {
            match vakt::cli::revoke_integration(&data_dir, &name, now) {
                Ok(()) => {
                    println!("revoked integration {name}: its token no longer works");
                    ExitCode::SUCCESS
                }
                Err(e @ vakt::cli::CliError::UnknownIntegration(_)) => {
                    eprintln!("vakt: {e}");
                    ExitCode::from(EX_DATAERR)
                }
                Err(e) => report(Err(e.into())),
            }
        }
    }
}

/// The command line of `vakt patrol`.
struct PatrolArgs {
    server: String,
    patrol: String,
    token_file: PathBuf,
    ca: Option<PathBuf>,
    insecure_dev: bool,
    fingerprint: Option<String>,
    data_dir: PathBuf,
}

/// `vakt patrol`: exit 64 without a way to trust the server (or a bad fingerprint or CA
/// file), 65 for an unusable token file, 1 when the server refuses the patrol.
fn patrol_client(a: PatrolArgs) -> ExitCode {
    use vakt::transport::quic::{self, Trust};
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
            None => match vakt::cli::dev_fingerprint(&a.data_dir) {
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
    let token = match vakt::cli::read_token_file(&a.token_file, &a.patrol) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vakt: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    };
    if vakt::cli::readable_by_others(&a.token_file) {
        eprintln!(
            "vakt: warning: {} can be read by other users (chmod 600 it)",
            a.token_file.display()
        );
    }
    let opts = vakt::sim::patrol_client::ClientOptions {
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
    match rt.block_on(vakt::sim::patrol_client::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vakt: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `vakt directory import`: the four files (providers, areas, patrols, routes), all or
/// nothing; exit 65 with every problem (by file and line) for bad files.
fn import_directory(data_dir: &std::path::Path, files: [&PathBuf; 4]) -> ExitCode {
    use vakt::registers::directory::{ImportError, Table};
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
    match vakt::cli::import_directory(data_dir, p, a, t, r, jiff::Timestamp::now()) {
        Ok(s) => {
            println!(
                "imported the directory into {}: {} providers, {} areas, {} patrols, {} \
                 routing rules",
                data_dir.display(),
                s.providers,
                s.areas,
                s.patrols,
                s.routes
            );
            if s.tokens_removed > 0 {
                println!(
                    "removed the tokens of {} patrols that are no longer in the directory",
                    s.tokens_removed
                );
            }
            ExitCode::SUCCESS
        }
        Err(vakt::cli::CliError::Directory(ImportError::Invalid(problems))) => {
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
        Err(vakt::cli::CliError::Directory(ImportError::Io { table, source })) => {
            eprintln!("{}: {source}", path_of(table).display());
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

/// `vakt patrols token ID`: prints a new token once on stdout; exit 65 for an unknown patrol.
fn patrol_token(id: &str, data_dir: &std::path::Path) -> ExitCode {
    if !data_dir.is_dir() {
        eprintln!("{}: no such data directory", data_dir.display());
        return ExitCode::from(EX_USAGE);
    }
    match vakt::cli::issue_patrol_token(data_dir, id, jiff::Timestamp::now()) {
        Ok(token) => {
            println!("{token}");
            eprintln!(
                "vakt: new token for patrol {id} (shown only this once; any earlier token no \
                 longer works)"
            );
            ExitCode::SUCCESS
        }
        Err(e @ vakt::cli::CliError::UnknownPatrol(_)) => {
            eprintln!("vakt: {e}");
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

/// `vakt users add`: checks the name, reads the password, stores the user.
fn add_user(name: &str, role: &str, data_dir: &std::path::Path) -> ExitCode {
    use vakt::console::auth::{self, AuthError};
    let role: vakt::model::Role = match role.parse() {
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
    let password = match read_password(name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vakt: reading the password: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    };
    let now = jiff::Timestamp::now();
    match vakt::cli::add_user(data_dir, name, role, &password, now) {
        Ok(vakt::cli::UserChange::Added) => {
            println!(
                "added user {name} ({}) to {}",
                role.as_str(),
                data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(vakt::cli::UserChange::Replaced { previous_role }) => {
            println!(
                "user {name} already existed: replaced its password and role ({} -> {}) and \
                 ended its sessions",
                previous_role.as_str(),
                role.as_str()
            );
            ExitCode::SUCCESS
        }
        Err(vakt::cli::CliError::Auth(e @ AuthError::BadUsername(_))) => {
            eprintln!("vakt: {e}");
            ExitCode::from(EX_USAGE)
        }
        Err(vakt::cli::CliError::Auth(
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
fn change_user(
    name: &str,
    change: vakt::store::UserChange,
    data_dir: &std::path::Path,
) -> ExitCode {
    if !data_dir.is_dir() {
        eprintln!("{}: no such data directory", data_dir.display());
        return ExitCode::from(EX_USAGE);
    }
    match vakt::cli::change_user(data_dir, name, change, jiff::Timestamp::now()) {
        Ok(()) => {
            let done = match change {
                vakt::store::UserChange::Disable => "disabled",
                vakt::store::UserChange::Enable => "enabled",
                vakt::store::UserChange::Role(_) => "changed",
                vakt::store::UserChange::Remove => "removed",
            };
            println!("{done} user {name}");
            ExitCode::SUCCESS
        }
        Err(e @ (vakt::cli::CliError::UnknownUser(_) | vakt::cli::CliError::LastAdmin(_))) => {
            eprintln!("vakt: {e}; nothing changed");
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

/// The new password: on a terminal asked for twice without echo, otherwise the first line
/// of standard input (without its line end).
fn read_password(name: &str) -> std::io::Result<vakt::console::auth::Password> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = read_hidden(&format!("new password for {name}: "))?;
        let again = read_hidden("again: ")?;
        if first != again {
            return Err(std::io::Error::other("the two passwords differ"));
        }
        Ok(vakt::console::auth::Password::new(first))
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        Ok(vakt::console::auth::Password::new(strip_line_end(line)))
    }
}

fn strip_line_end(mut line: String) -> String {
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    line
}

/// Reads one line from the terminal on standard input with echo turned off.
fn read_hidden(prompt: &str) -> std::io::Result<String> {
    use std::io::BufRead;
    eprint!("{prompt}");
    // SAFETY: tcgetattr/tcsetattr only read and write the struct passed in; fd 0 is stdin.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(0, &mut t) == 0).then_some(t)
    };
    if let Some(t) = saved {
        let mut quiet = t;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: as above; restores the terminal as it was.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    }
    eprintln!();
    r?;
    Ok(strip_line_end(line))
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vakt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an all-or-nothing CSV import and reports it: exit 65 for a file that cannot be read
/// or has bad rows (their reasons, by line number, on stderr).
fn import(
    file: &std::path::Path,
    data_dir: &std::path::Path,
    what: &str,
    run: impl FnOnce(
        std::io::BufReader<std::fs::File>,
    ) -> Result<vakt::cli::ImportSummary, vakt::cli::CliError>,
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
                data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e @ (vakt::cli::CliError::Import(_) | vakt::cli::CliError::Subscribers(_))) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => report(Err(e.into())),
    }
}

fn serve(cfg: Config, demo: bool) -> anyhow::Result<()> {
    raise_fd_limit();
    let demo_users = if demo { Some(load_demo(&cfg)?) } else { None };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vakt")
        .build()
        .context("starting the runtime")?;
    let data_dir = cfg.data_dir.clone();
    rt.block_on(async move {
        let running = vakt::server::start(cfg).await?;
        if let Some(a) = running.dc09_tcp {
            eprintln!("vakt: DC-09 TCP on {a}");
        }
        if let Some(a) = running.dc09_udp {
            eprintln!("vakt: DC-09 UDP on {a}");
        }
        if let Some(a) = running.http {
            eprintln!("vakt: operator console on http://{a}/ (API: /api/openapi.json; /live /ready /metrics)");
        }
        if let Some(a) = running.patrol_quic {
            match &running.patrol_fingerprint {
                Some(fp) => eprintln!(
                    "vakt: patrol link (QUIC) on {a}; certificate SHA-256 fingerprint {fp} \
                     (for `vakt patrol --insecure-dev --fingerprint`)"
                ),
                None => eprintln!("vakt: patrol link (QUIC) on {a}"),
            }
        }
        if let Some(users) = &demo_users {
            eprintln!("{users}");
            // The simulator talks to vakt's own ports, over loopback.
            match running.dc09_tcp.map(vakt::sim::loopback) {
                Some(a) => eprintln!("vakt: demo devices send alarms to {a} every minute or so"),
                None => eprintln!("vakt: DC-09 TCP is off, so the demo devices cannot send"),
            }
            match running.scaip_udp.map(vakt::sim::loopback) {
                Some(a) => eprintln!(
                    "vakt: demo SCAIP homes send alarms to {a} (SIP over UDP) every few minutes"
                ),
                None => eprintln!("vakt: SCAIP UDP is off, so the demo's SCAIP homes stay silent"),
            }
            tokio::spawn(vakt::sim::simulate(
                running.dc09_tcp,
                running.scaip_udp,
                vakt::sim::SimOptions::default(),
                running.shutdown.clone(),
            ));
            let fp = running
                .patrol_fingerprint
                .as_deref()
                .and_then(vakt::transport::quic::parse_fingerprint);
            match (running.patrol_quic, fp) {
                (Some(addr), Some(fp)) => match vakt::sim::load_patrol_logins(&data_dir) {
                    Ok(logins) => {
                        eprintln!(
                            "vakt: demo patrols log in to {addr} and take the assignments \
                             you dispatch ({} stays offline; tokens in {})",
                            vakt::sim::OFFLINE_PATROL,
                            data_dir.join(vakt::sim::PATROL_LOGINS_FILE).display()
                        );
                        tokio::spawn(vakt::sim::simulate_patrols(
                            addr,
                            fp,
                            logins,
                            vakt::sim::PatrolSimOptions::default(),
                            running.shutdown.clone(),
                        ));
                    }
                    Err(e) => eprintln!(
                        "vakt: no demo patrols ({e}); they are seeded only into an empty data directory"
                    ),
                },
                _ => eprintln!("vakt: the patrol link is off, so the demo patrols cannot connect"),
            }
        }
        let token = running.shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        running.done.await.context("server task")??;
        anyhow::Ok(())
    })
}

/// What to do about a listener whose address another program has (`what` as in
/// `ServerError::Bind`).
fn port_hint(what: &str) -> String {
    let (flag, env) = match what {
        "DC-09 TCP" | "DC-09 UDP" => ("--dc09-port", "VAKT_DC09_PORT"),
        "SCAIP UDP" | "SCAIP TCP" => ("--scaip-port", "VAKT_SCAIP_PORT"),
        "HTTP" => ("--http-port", "VAKT_HTTP_PORT"),
        "the patrol link (QUIC)" => ("--patrol-port", "VAKT_PATROL_PORT"),
        _ => {
            return "another program (or another vakt) has it: choose another address in the \
                    configuration"
                .into();
        }
    };
    format!(
        "another program (or another vakt) has it: start with {flag} PORT (or {env}=PORT; 0 \
         picks a free port), or change the address in the configuration"
    )
}

/// Where `serve --demo` keeps the demo users' passwords, so a later `--demo` start can show
/// them again (demo data only: real users are made with `vakt users add`).
const DEMO_USERS_FILE: &str = "demo-users.txt";

/// Seeds the demo municipality into an empty data directory; returns the text that tells
/// the newcomer how to log in.
fn load_demo(cfg: &Config) -> anyhow::Result<String> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let file = cfg.data_dir.join(DEMO_USERS_FILE);
    let store = vakt::store::Store::open(&cfg.data_dir)?;
    match vakt::sim::seed(&store, jiff::Timestamp::now())? {
        Some(users) => {
            store.flush()?;
            vakt::sim::save_patrol_logins(&cfg.data_dir, &users.patrols).with_context(|| {
                format!(
                    "writing {}",
                    cfg.data_dir.join(vakt::sim::PATROL_LOGINS_FILE).display()
                )
            })?;
            let text = format!(
                "vakt: demo municipality loaded. Log in to the console as\n\
                 vakt:   {} / {}   (operator)\n\
                 vakt:   {} / {}   (supervisor)\n\
                 vakt: (also in {}; make an admin with `vakt users add NAME --role admin`)",
                users.operator.0,
                users.operator.1,
                users.supervisor.0,
                users.supervisor.1,
                file.display()
            );
            write_private(&file, &text).with_context(|| format!("writing {}", file.display()))?;
            Ok(text)
        }
        None => Ok(match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(_) => "vakt: the data directory is not empty, so no demo data was loaded; \
                 log in with your own users"
                .to_string(),
        }),
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM received"),
                _ = i.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Raises the soft open-file limit to the hard limit: every device connection is a file.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
