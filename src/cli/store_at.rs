//! Where the offline sub-commands (imports, users, tokens, exports, the SLA report) find the
//! store: a data directory (sled), or the PostgreSQL database a configuration names
//! (`--config FILE` with `[store] backend = "postgres"`).
//!
//! On sled the directory's lock keeps a command from writing beside a running server. On
//! PostgreSQL the leader lease does the same: a command that writes first takes the lease
//! itself (holder `vakt-cli`, under a new epoch that fences its writes), so it refuses while a
//! node leads, and no node takes over while it writes; it releases the lease when done, and a
//! standby takes it at once. A command that only reads (exports, lists, the report) takes no
//! lease and may run beside the cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::offline::CliError;
use crate::config::{Config, DatabaseUrl, StoreBackend};
use crate::store::pg::PgError;
use crate::store::pg::lease::{self, Lease};
use crate::store::{Store, StoreError};

/// The holder name of the lease a writing command takes.
pub const CLI_HOLDER: &str = "vakt-cli";

/// How long a command's lease lasts if the command dies without releasing it: long enough for
/// a large import, short enough that a cluster left without a leader by a killed command
/// recovers by itself.
const CLI_LEASE: Duration = Duration::from_secs(300);

/// Where a command's store is.
#[derive(Clone, Debug)]
pub enum StoreAt {
    /// sled in this data directory.
    Dir(PathBuf),
    /// PostgreSQL (from a configuration's `[store]`).
    Postgres(DatabaseUrl),
}

impl From<&Path> for StoreAt {
    fn from(dir: &Path) -> StoreAt {
        StoreAt::Dir(dir.to_owned())
    }
}

impl From<&PathBuf> for StoreAt {
    fn from(dir: &PathBuf) -> StoreAt {
        StoreAt::Dir(dir.clone())
    }
}

impl From<&StoreAt> for StoreAt {
    fn from(at: &StoreAt) -> StoreAt {
        at.clone()
    }
}

impl std::fmt::Display for StoreAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreAt::Dir(d) => write!(f, "{}", d.display()),
            // The URL's Debug hides the password.
            StoreAt::Postgres(url) => write!(f, "the database {url:?}"),
        }
    }
}

impl StoreAt {
    /// The store of `--data-dir` or, given a configuration whose store is PostgreSQL, its
    /// database (a configuration on sled gives its `data_dir` unless `data_dir` is given).
    pub fn from_args(data_dir: Option<&Path>, config: Option<&Path>) -> Result<StoreAt, String> {
        let cfg = match config {
            Some(path) => Some(Config::load(path).map_err(|e| format!("{}: {e}", path.display()))?),
            None => None,
        };
        Ok(match (cfg, data_dir) {
            (Some(cfg), _) if cfg.store.backend == StoreBackend::Postgres => match cfg.store.url {
                Some(url) => StoreAt::Postgres(url),
                None => return Err("[store] backend = \"postgres\" needs a url".into()),
            },
            (_, Some(dir)) => StoreAt::Dir(dir.to_owned()),
            (Some(cfg), None) => StoreAt::Dir(cfg.data_dir),
            (None, None) => StoreAt::Dir(PathBuf::from("vakt-data")),
        })
    }

    /// Whether there is a store there to read (a directory that exists; a database is asked
    /// when opened).
    pub fn exists(&self) -> bool {
        match self {
            StoreAt::Dir(d) => d.is_dir(),
            StoreAt::Postgres(_) => true,
        }
    }

    /// Opens the store to read.
    pub fn open(&self) -> Result<Store, CliError> {
        Ok(match self {
            StoreAt::Dir(d) => Store::open(d)?,
            StoreAt::Postgres(url) => Store::open_postgres(url.expose())?,
        })
    }

    /// Opens the store to write: a data directory is created (0700) if missing; on
    /// PostgreSQL the lease is taken first ([`Writing`] releases it), and refused while a
    /// node leads.
    pub fn open_writing(&self) -> Result<Writing, CliError> {
        match self {
            StoreAt::Dir(d) => {
                crate::store::create_private_dir(d)?;
                Ok(Writing {
                    store: Store::open(d)?,
                    _lease: None,
                })
            }
            StoreAt::Postgres(url) => {
                // The schema first: the lease's table is one of its tables.
                let store = Store::open_postgres(url.expose())?;
                let lease = CliLease::take(url)?;
                store.set_epoch(Some(lease.lease.epoch));
                Ok(Writing {
                    store,
                    _lease: Some(lease),
                })
            }
        }
    }
}

/// A store open for writing, with the lease a command holds on PostgreSQL (released on drop).
pub struct Writing {
    /// The store.
    pub store: Store,
    _lease: Option<CliLease>,
}

impl std::ops::Deref for Writing {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// The leader lease held by a command.
struct CliLease {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    lease: Lease,
}

impl CliLease {
    fn take(url: &DatabaseUrl) -> Result<CliLease, CliError> {
        let config = url.parse().map_err(PgError::Db).map_err(StoreError::from)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (client, lease) = rt.block_on(async {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(PgError::Db)?;
            tokio::spawn(connection);
            match lease::acquire(&client, CLI_HOLDER, CLI_LEASE).await? {
                Some(lease) => Ok((client, lease)),
                None => {
                    let state = lease::state(&client).await?;
                    Err(CliError::Leading(
                        state.holder.unwrap_or_else(|| "another node".into()),
                    ))
                }
            }
        })?;
        Ok(CliLease { rt, client, lease })
    }
}

impl From<PgError> for CliError {
    fn from(e: PgError) -> CliError {
        CliError::Store(e.into())
    }
}

impl Drop for CliLease {
    fn drop(&mut self) {
        let (client, lease) = (&self.client, &self.lease);
        if let Err(e) = self.rt.block_on(lease::release(client, lease)) {
            tracing::warn!(error = %e, "the command's lease could not be released; it expires by itself");
        }
    }
}
