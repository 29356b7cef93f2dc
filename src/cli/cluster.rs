//! `vakt cluster status`: the redundant set-up as the database sees it. The leader lease
//! (holder, epoch, time left), the schema's version against this binary's, whether the server
//! that answered is the primary (`pg_is_in_recovery()`), and the standbys streaming from it
//! (`pg_stat_replication`: name, address, state, sync state, replay lag), with the settings
//! that make commits wait for them. Text for a person, `--json` for a script. It only reads:
//! it runs beside live nodes, and on a database vakt has not started on yet.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use tokio_postgres::NoTls;

use super::EX_USAGE;
use crate::config::{Config, DatabaseUrl, StoreBackend};
use crate::store::pg::migrate::MIGRATIONS;
use crate::store::pg::{PgError, lease};

/// `vakt cluster ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCmd {
    /// Show the leader lease (holder, epoch, time left), the schema's version, whether the
    /// database answering is the primary, and the standbys replicating from it (name,
    /// state, sync state, replay lag). Exit 1 when the database cannot be reached.
    Status {
        /// Configuration file with `[store] backend = "postgres"` and its `url`.
        #[arg(long, short)]
        config: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// How long connecting and the queries may take in all.
const BOUND: Duration = Duration::from_secs(30);
/// Per host, when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn run(cmd: ClusterCmd) -> ExitCode {
    match cmd {
        ClusterCmd::Status { config, json } => status(&config, json),
    }
}

fn status(file: &Path, json: bool) -> ExitCode {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(EX_USAGE);
        }
    };
    let url = match (&config.store.backend, &config.store.url) {
        (StoreBackend::Postgres, Some(url)) => url,
        _ => {
            eprintln!(
                "{}: the store is sled (one node, no cluster); a cluster has [store] backend = \"postgres\"",
                file.display()
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let read = rt.block_on(async { tokio::time::timeout(BOUND, read(url)).await });
    let status = match read {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            eprintln!("cannot read the cluster's state at {}: {e}", url.redacted());
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!(
                "no answer from {} within {} s",
                url.redacted(),
                BOUND.as_secs()
            );
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cannot write JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", text(&status));
    }
    ExitCode::SUCCESS
}

/// What `vakt cluster status` shows.
#[derive(Debug, Serialize)]
struct Status {
    database: Database,
    schema: Schema,
    /// `None` before the schema is applied.
    lease: Option<LeaseStatus>,
    /// Streaming from the server that answered.
    standbys: Vec<Standby>,
}

#[derive(Debug, Serialize)]
struct Database {
    /// `host:port` of the server that answered, as it sees itself.
    address: Option<String>,
    /// Not in recovery: the primary, taking writes.
    primary: bool,
    server_version: String,
    synchronous_standby_names: String,
    synchronous_commit: String,
}

#[derive(Debug, Serialize)]
struct Schema {
    /// The newest migration applied; `None` before vakt ran on the database.
    version: Option<i32>,
    /// The newest this vakt carries.
    known: i32,
}

#[derive(Debug, Serialize)]
struct LeaseStatus {
    holder: Option<String>,
    epoch: i64,
    /// Time left by the database's clock; `None` when expired or released.
    remaining_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Standby {
    application_name: Option<String>,
    client_addr: Option<String>,
    state: Option<String>,
    sync_state: Option<String>,
    replay_lag_ms: Option<f64>,
}

const SERVER: &str = "SELECT pg_is_in_recovery(), host(inet_server_addr()), inet_server_port(),
    current_setting('server_version'), current_setting('synchronous_standby_names'),
    current_setting('synchronous_commit'),
    to_regclass('schema_migrations') IS NOT NULL, to_regclass('leader_lease') IS NOT NULL";

const REPLICATION: &str = "SELECT application_name, host(client_addr), state, sync_state,
    (extract(epoch FROM replay_lag) * 1000)::float8
    FROM pg_stat_replication ORDER BY application_name, client_addr";

async fn read(url: &DatabaseUrl) -> Result<Status, PgError> {
    let mut config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("vakt cluster status");
    let (client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let row = client.query_one(SERVER, &[]).await?;
    let in_recovery: bool = row.try_get(0)?;
    let host: Option<String> = row.try_get(1)?;
    let port: Option<i32> = row.try_get(2)?;
    let has_schema: bool = row.try_get(6)?;
    let has_lease: bool = row.try_get(7)?;
    let database = Database {
        address: host.map(|h| match port {
            Some(p) if h.contains(':') => format!("[{h}]:{p}"),
            Some(p) => format!("{h}:{p}"),
            None => h,
        }),
        primary: !in_recovery,
        server_version: row.try_get(3)?,
        synchronous_standby_names: row.try_get(4)?,
        synchronous_commit: row.try_get(5)?,
    };
    let version = if has_schema {
        client
            .query_one("SELECT max(version) FROM schema_migrations", &[])
            .await?
            .try_get(0)?
    } else {
        None
    };
    let lease = if has_lease {
        let s = lease::state(&client).await?;
        Some(LeaseStatus {
            holder: s.holder,
            epoch: s.epoch,
            remaining_ms: s
                .remaining
                .map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
        })
    } else {
        None
    };
    let mut standbys = Vec::new();
    for r in client.query(REPLICATION, &[]).await? {
        standbys.push(Standby {
            application_name: r.try_get(0)?,
            client_addr: r.try_get(1)?,
            state: r.try_get(2)?,
            sync_state: r.try_get(3)?,
            replay_lag_ms: r.try_get(4)?,
        });
    }
    drop(client);
    let _ = driver.await;
    Ok(Status {
        database,
        schema: Schema {
            version,
            known: MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0),
        },
        lease,
        standbys,
    })
}

/// The status for a person.
fn text(s: &Status) -> String {
    let d = &s.database;
    let mut out = format!(
        "database  {}, {} (PostgreSQL {})\n",
        d.address.as_deref().unwrap_or("(local socket)"),
        if d.primary {
            "the primary"
        } else {
            "a standby in recovery, not the primary"
        },
        d.server_version
    );
    let known = s.schema.known;
    out.push_str(&match s.schema.version {
        None => "schema    none: vakt has not run on this database\n".to_owned(),
        Some(v) if v > known => {
            format!("schema    version {v}, newer than this vakt knows ({known})\n")
        }
        Some(v) => format!("schema    version {v} (this vakt knows {known})\n"),
    });
    out.push_str(&match &s.lease {
        None => "lease     none (no schema)\n".to_owned(),
        Some(l) => match (&l.holder, l.remaining_ms) {
            (None, _) => format!("lease     never taken (epoch {})\n", l.epoch),
            (Some(h), Some(ms)) => format!(
                "lease     held by {h}, epoch {}, {:.1} s left\n",
                l.epoch,
                ms as f64 / 1000.0
            ),
            (Some(h), None) => format!(
                "lease     free (expired or released); last held by {h}, epoch {}\n",
                l.epoch
            ),
        },
    });
    out.push_str(&format!(
        "standbys  {} (synchronous_standby_names = '{}', synchronous_commit = {})\n",
        match s.standbys.len() {
            0 if d.primary => "none: a commit is on this server alone".to_owned(),
            0 => "none streaming from this server".to_owned(),
            n => n.to_string(),
        },
        d.synchronous_standby_names,
        d.synchronous_commit
    ));
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".to_owned());
    for sb in &s.standbys {
        out.push_str(&format!(
            "  {}  {}  {}  {}  replay lag {}\n",
            dash(&sb.application_name),
            dash(&sb.client_addr),
            dash(&sb.state),
            dash(&sb.sync_state),
            sb.replay_lag_ms
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_else(|| "-".to_owned())
        ));
    }
    out
}
