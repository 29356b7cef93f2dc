//! The `vakt` command: its command line ([`Cli`]) and every sub-command's body, run by
//! [`run`], which returns the process's exit code. `src/main.rs` only parses, sets up
//! tracing and calls [`run`].
//!
//! - [`args`]: clap's types, the flags and the help texts.
//! - `serve`: `vakt serve`: the configuration and ports, the runtime, the server's start and
//!   its addresses, `--demo` (through [`crate::sim::serve_demo`]), SIGTERM and SIGINT.
//! - `commands`: the other sub-commands' bodies: what they print and their exit codes.
//! - [`offline`]: their work on a stopped server's data directory (imports, users, tokens,
//!   exports, the SLA report) and what `vakt patrol` reads before it connects, as functions
//!   that return a `Result` (the tests call them too). Re-exported here.
//! - `cluster`: `vakt cluster status`, the lease, schema and replication as the database has
//!   them.
//! - `store_migrate`: `vakt store migrate`, a single node's data directory moved to
//!   PostgreSQL, with its progress and summary.
//! - `term`: the console user's new password, read from the terminal without echo.
//!
//! Exit codes: 0 done; 1 failed (storage, a port in use, the server refused the patrol);
//! [`EX_USAGE`] (64) a bad configuration, port, month, time zone, name, data directory or
//! way to trust the server; [`EX_DATAERR`] (65) bad input data (an import file, a password,
//! a token file, an unknown patrol, user or integration to change). A command line clap
//! cannot parse exits 2 before [`run`].

pub mod args;
mod cluster;
mod commands;
mod error;
pub mod offline;
mod serve;
pub mod store_at;
mod store_migrate;
mod term;

use std::process::ExitCode;

pub use args::Cli;
pub use offline::{
    CLI_USER, CliError, DirectorySummary, ImportSummary, UserChange, add_user, add_user_in,
    billing_report, change_user, dev_fingerprint, export_audit, export_journal, import_devices,
    import_directory, import_staff, import_subscribers, issue_integration_token,
    issue_patrol_token, list_integrations, list_users, read_token_file, readable_by_others,
    retention_run, revoke_integration, sla_report, validate_integration_name, visits_report,
};

use args::{
    AuditCmd, Cmd, DevicesCmd, DirectoryCmd, JournalCmd, PatrolsCmd, ReportCmd, RetentionCmd,
    SubscribersCmd, UsersCmd,
};

/// Exit code for an invalid configuration or command line (EX_USAGE).
pub const EX_USAGE: u8 = 64;
/// Exit code for invalid input data, e.g. a bad import file (EX_DATAERR).
pub const EX_DATAERR: u8 = 65;

/// The store of a command's `--data-dir` / `--config`, or exit 64 saying what is wrong.
macro_rules! store_at {
    ($args:expr) => {
        match $args.at() {
            Ok(at) => at,
            Err(e) => {
                eprintln!("vakt: {e}");
                return ExitCode::from(EX_USAGE);
            }
        }
    };
}

/// Runs the sub-command of `cli` to its end; returns the exit code (see the module doc).
/// Messages go to standard error, results (exports, tokens, reports) to standard output.
pub fn run(cli: Cli) -> ExitCode {
    match cli.cmd {
        Cmd::CheckConfig { file } => commands::check_config(&file),
        Cmd::Serve {
            config,
            data_dir,
            demo,
            dc09_port,
            scaip_port,
            http_port,
            patrol_port,
        } => {
            let ports = crate::config::Ports {
                dc09: dc09_port,
                scaip: scaip_port,
                http: http_port,
                patrol: patrol_port,
            };
            serve::serve(config, data_dir, ports, demo)
        }
        Cmd::Devices {
            cmd: DevicesCmd::Import { data_dir, file },
        } => {
            let at = store_at!(data_dir);
            commands::import(&file, &at, "devices", |f| import_devices(&at, f))
        }

        Cmd::Journal {
            cmd: JournalCmd::Export { data_dir, after },
        } => {
            let at = store_at!(data_dir);
            commands::export(&at, |out| export_journal(&at, after, out).map(|_| ()))
        }

        Cmd::Users {
            cmd:
                UsersCmd::Add {
                    name,
                    role,
                    tenant,
                    data_dir,
                },
        } => {
            let at = store_at!(data_dir);
            commands::add_user(&name, &role, tenant.as_deref(), &at)
        }

        Cmd::Users {
            cmd: UsersCmd::List { data_dir },
        } => {
            let at = store_at!(data_dir);
            commands::list_users(&at)
        }

        Cmd::Users {
            cmd: UsersCmd::Disable { name, data_dir },
        } => {
            let at = store_at!(data_dir);
            commands::change_user(&name, crate::store::UserChange::Disable, &at)
        }

        Cmd::Users {
            cmd: UsersCmd::Enable { name, data_dir },
        } => {
            let at = store_at!(data_dir);
            commands::change_user(&name, crate::store::UserChange::Enable, &at)
        }

        Cmd::Users {
            cmd: UsersCmd::Remove { name, data_dir },
        } => {
            let at = store_at!(data_dir);
            commands::change_user(&name, crate::store::UserChange::Remove, &at)
        }

        Cmd::Subscribers {
            cmd: SubscribersCmd::Import { data_dir, file },
        } => {
            let at = store_at!(data_dir);
            commands::import(&file, &at, "subscribers", |f| {
                let (summary, warnings) =
                    offline::import_subscribers_warning(&at, f, jiff::Timestamp::now())?;
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                Ok(summary)
            })
        }

        Cmd::Audit {
            cmd: AuditCmd::Export { data_dir, after },
        } => {
            let at = store_at!(data_dir);
            commands::export(&at, |out| export_audit(&at, after, out).map(|_| ()))
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
        } => {
            let at = store_at!(data_dir);
            commands::import_directory(&at, [&providers, &areas, &patrols, &routes])
        }
        Cmd::Directory {
            cmd: DirectoryCmd::Staff { data_dir, file },
        } => {
            let at = store_at!(data_dir);
            commands::import_staff(&at, &file)
        }

        Cmd::Patrols {
            cmd: PatrolsCmd::Token { id, data_dir },
        } => {
            let at = store_at!(data_dir);
            commands::patrol_token(&id, &at)
        }
        Cmd::Report {
            cmd:
                ReportCmd::Sla {
                    month,
                    municipality,
                    provider,
                    format,
                    config,
                    data_dir,
                    time_zone,
                },
        } => commands::report_month(
            commands::MonthReport::Sla {
                scope: match (municipality, provider) {
                    (Some(m), _) => crate::model::Scope::Municipality(m),
                    (None, Some(p)) => crate::model::Scope::Provider(p),
                    (None, None) => crate::model::Scope::All,
                },
            },
            &month,
            format,
            config,
            data_dir,
            time_zone,
        ),
        Cmd::Report {
            cmd:
                ReportCmd::Visits {
                    month,
                    provider,
                    format,
                    config,
                    data_dir,
                    time_zone,
                },
        } => commands::report_month(
            commands::MonthReport::Visits { provider },
            &month,
            format,
            config,
            data_dir,
            time_zone,
        ),
        Cmd::Report {
            cmd:
                ReportCmd::Billing {
                    month,
                    format,
                    config,
                    data_dir,
                    time_zone,
                },
        } => commands::report_month(
            commands::MonthReport::Billing,
            &month,
            format,
            config,
            data_dir,
            time_zone,
        ),
        Cmd::Retention {
            cmd:
                RetentionCmd::Run {
                    dry_run,
                    json,
                    config,
                    data_dir,
                },
        } => commands::retention_run(dry_run, json, config, data_dir),
        Cmd::Integrations { cmd } => commands::integrations(cmd),
        Cmd::Cluster { cmd } => cluster::run(cmd),
        Cmd::Store { cmd } => store_migrate::run(cmd),
        Cmd::Patrol {
            server,
            patrol,
            token_file,
            ca,
            insecure_dev,
            fingerprint,
            data_dir,
        } => commands::patrol_client(commands::PatrolArgs {
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
