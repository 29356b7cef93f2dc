//! The command line: clap's types for every sub-command, their flags and their help texts
//! (the `///` comments here are what `vakt --help` prints).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The `vakt` command line.
#[derive(Parser, Debug)]
#[command(
    name = "vakt",
    version,
    about = "Alarm receiving centre server for social alarms"
)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
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
    /// Retention of subscribers' personal data after their alarm has ended (the server runs
    /// it hourly by itself).
    Retention {
        #[command(subcommand)]
        cmd: RetentionCmd,
    },
    /// The redundant set-up on PostgreSQL: the leader lease, the schema, the replication.
    Cluster {
        #[command(subcommand)]
        cmd: super::cluster::ClusterCmd,
    },
    /// The store: moving a single node's data directory to PostgreSQL.
    Store {
        #[command(subcommand)]
        cmd: super::store_migrate::StoreCmd,
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
pub(crate) enum ReportCmd {
    /// The monthly arrival SLA report: per care provider and area the dispatches, median and
    /// 90th percentile time from receipt to arrival, breaches (with Call ids), receipt
    /// timeouts, declined, cancelled and open; and the month's answer-time figures. A
    /// dispatch counts in the month it was offered, in local time. With the server stopped
    /// (while it runs, use the console or GET /api/reports/sla?month=YYYY-MM).
    Sla {
        /// The month, YYYY-MM (e.g. 2026-11).
        #[arg(long)]
        month: String,
        /// Only this municipality's people: the dispatches to them and their Calls.
        #[arg(long, conflicts_with = "provider")]
        municipality: Option<String>,
        /// Only this care provider (its directory id): the dispatches to its patrols and its
        /// people's Calls.
        #[arg(long)]
        provider: Option<String>,
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
    /// The month's alarm visits, for the care providers' time reports and compensation:
    /// every dispatch the patrol completed after arriving, with its arrival and departure
    /// (local time), minutes on site (rounded up), how the arrival was confirmed, the
    /// patrol and the person visited; per provider the visits and minutes. A visit counts
    /// in the month the patrol arrived. With the server stopped (while it runs, use GET
    /// /api/reports/visits?month=YYYY-MM&provider=ID).
    Visits {
        /// The month, YYYY-MM (e.g. 2026-11).
        #[arg(long)]
        month: String,
        /// Only this care provider's visits (its directory id).
        #[arg(long)]
        provider: Option<String>,
        /// Output: `text` (the default), `csv` (a line per visit) or `json`.
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
    /// The month's billing (seed 001 1.2.10, 4.8): one row per subscriber billed, from the
    /// month of installation to the month of ending inclusive, with the paying municipality
    /// (`[care] municipality`, or the placing one), the provider of the month's last day
    /// billed, the subscriber, installed_on and ended_on. With the server stopped (while it
    /// runs, use GET /api/reports/billing?month=YYYY-MM).
    Billing {
        /// The month, YYYY-MM (e.g. 2026-11).
        #[arg(long)]
        month: String,
        /// Output: `text` (the default), `csv` (`;`-separated with a UTF-8 BOM, for a
        /// spreadsheet) or `json`.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Configuration file: its `data_dir` and `[care] municipality` are used unless given
        /// below.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory [default: the configuration's, vakt-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// IANA time zone [default: the configuration's, Europe/Stockholm].
        #[arg(long)]
        time_zone: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RetentionCmd {
    /// Delete the cards and anonymise the Calls, lives, orders and receipts of the
    /// subscribers whose alarm ended more than `[retention] subscriber_days_after_end` days
    /// ago and about whom nothing is still open, and (if `[retention] closed_call_days` is
    /// set) delete the Calls closed longer ago than that, archived first if configured, each
    /// step audit-logged; list the subscribers and Calls due and those held, with why. With
    /// the server stopped.
    Run {
        /// Only list who is due and who is held; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Configuration file: its `data_dir` (or PostgreSQL), `[retention]` and time zone.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory [default: the configuration's, vakt-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// How `vakt report sla` and `vakt report visits` print.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReportFormat {
    Text,
    Csv,
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum IntegrationsCmd {
    /// Issue a new bearer token for an integration (with the server stopped), creating the
    /// integration. The token is printed once on standard output and stored only as a
    /// hash; an earlier token of the integration stops working.
    Token {
        /// The integration's name: 1 to 64 of a-z, 0-9, '_', '.', '-' (e.g. phoniro).
        name: String,
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
    /// List the integrations that have a token (with the server stopped).
    List {
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
    /// Remove an integration; its token stops working (with the server stopped).
    Revoke {
        /// The integration's name.
        name: String,
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum DirectoryCmd {
    /// Replace the directory with four CSV files (UTF-8; with the server stopped). All four
    /// are checked first, together; with any problem nothing is imported. Headers:
    /// providers `id,name,phone`; areas `id,name,arrival_limit_mins[,municipality]`; patrols
    /// `id,name,provider,areas,shifts,phone` (areas `a;b`, shifts `day 07:00-15:30;night
    /// 21:30-07:00`); routes `provider,area,patrols` (`*` = any; patrols `p1;p2` in fallback
    /// order).
    Import {
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
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
    /// Replace the centre's staff list: whom a supervisor calls in when too few operators are
    /// on duty or Calls wait too long (with the server stopped; the console's directory
    /// import takes it too). UTF-8 CSV with the header `name,phone,role,note`, the first to
    /// call first; all rows or none.
    Staff {
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
        /// The staff file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PatrolsCmd {
    /// Issue a new login token for a patrol of the directory (with the server stopped). The
    /// token is printed once on standard output and stored only as a hash; an earlier token
    /// of the patrol stops working.
    Token {
        /// The patrol id.
        id: String,
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum DevicesCmd {
    /// Import devices from CSV (with the server stopped). All rows are checked first; a file
    /// with any bad row imports nothing. Header:
    /// account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area,device_type,sip_user,sip_password,phone
    /// (files without the last one, the last three or the last four columns are accepted too).
    Import {
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum JournalCmd {
    /// Print the journal as JSON lines (with the server stopped).
    Export {
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
        /// Only Signals with an id greater than this.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum UsersCmd {
    /// Add a user, or give an existing one a new password and role (with the server
    /// stopped). The password is read from standard input (the first line; asked for twice,
    /// without echo, on a terminal) and must be at least 10 characters (not counting spaces
    /// before and after) of at least 5 different ones.
    Add {
        /// User name: 1 to 64 of a-z (lower case), 0-9, '_', '.', '-'.
        name: String,
        /// What the user may do: the centre's staff (operator, supervisor, admin) see every
        /// subscriber; a care provider's staff (provider) or a municipality's (municipality)
        /// read only their own people's, named by --tenant.
        #[arg(long, value_parser = ["operator", "supervisor", "admin", "provider", "municipality"])]
        role: String,
        /// The provider's id (the directory's) or the municipality's name, for the provider
        /// and municipality roles.
        #[arg(long)]
        tenant: Option<String>,
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
    /// List the users: name, role, created, disabled (with the server stopped).
    List {
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
    /// Disable a user: it can no longer log in and its sessions end (with the server
    /// stopped; while it runs, an administrator does it in the console).
    Disable {
        /// User name.
        name: String,
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
    /// Enable a disabled user again (with the server stopped).
    Enable {
        /// User name.
        name: String,
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
    /// Remove a user; its sessions end (with the server stopped). The audit log keeps it.
    Remove {
        /// User name.
        name: String,
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum SubscribersCmd {
    /// Import subscribers from CSV (UTF-8; with the server stopped). All rows are checked
    /// first; a file with any bad row imports nothing. Header:
    /// id,name,personal_number,address,postcode,city,area,phone,care_provider,keys,key_location,digital_lock_id,door_code,entry_notes,health_notes,care_plan_notes,contact1_name,contact1_relation,contact1_phone,contact2_name,contact2_relation,contact2_phone,contact3_name,contact3_relation,contact3_phone,language,needs_extra_visits,health_to_patrol,municipality
    /// (needs_extra_visits and health_to_patrol are yes or no, empty meaning no; municipality
    /// is the person's municipality, empty meaning the centre's; files without the last
    /// one, two or three columns are accepted too).
    Import {
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCmd {
    /// Print the audit log as JSON lines (with the server stopped).
    Export {
        /// The store: a data directory, or the database of a configuration.
        #[command(flatten)]
        data_dir: StoreArgs,
        /// Only entries with a sequence number greater than this.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

/// Where an offline command's store is: `--data-dir DIR` (sled), or `--config FILE` whose
/// `[store]` is PostgreSQL (a configuration on sled gives its `data_dir`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct StoreArgs {
    /// Data directory [default: the configuration's, or vakt-data].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Configuration file: with `[store] backend = "postgres"` the command works on that
    /// database (a command that writes takes the leader lease, so it refuses while a node
    /// leads).
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
}

impl StoreArgs {
    /// The store these arguments name.
    pub(crate) fn at(&self) -> Result<super::store_at::StoreAt, String> {
        super::store_at::StoreAt::from_args(self.data_dir.as_deref(), self.config.as_deref())
    }
}
