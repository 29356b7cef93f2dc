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

use super::error::CliError;
use crate::config::{Config, DatabaseUrl, StoreBackend};
use crate::store::pg::PgError;
use crate::store::pg::lease;
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
                store.set_epoch(Some(lease.epoch));
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

/// The leader lease held by a command: a thread of its own (with its runtime and connection,
/// so that a command may be run from anywhere, an async task included) holds it until the
/// value is dropped, then releases it.
struct CliLease {
    epoch: i64,
    /// Dropped to release.
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl CliLease {
    fn take(url: &DatabaseUrl) -> Result<CliLease, CliError> {
        let config = url.parse().map_err(PgError::Db).map_err(StoreError::from)?;
        let (taken_tx, taken_rx) = std::sync::mpsc::channel::<Result<i64, CliError>>();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::Builder::new()
            .name("vakt-cli-lease".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = taken_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let taken = async {
                        let client = crate::store::pg::connect(&config, "command's lease").await?;
                        match lease::acquire(&client, CLI_HOLDER, CLI_LEASE).await? {
                            Some(lease) => Ok((client, lease)),
                            None => {
                                let state = lease::state(&client).await?;
                                Err(CliError::Leading(
                                    state.holder.unwrap_or_else(|| "another node".into()),
                                ))
                            }
                        }
                    }
                    .await;
                    let (client, lease) = match taken {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = taken_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = taken_tx.send(Ok(lease.epoch));
                    // Until the command is done (the sender dropped).
                    let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
                    if let Err(e) = lease::release(&client, &lease).await {
                        tracing::warn!(error = %e, "the command's lease could not be released; it expires by itself");
                    }
                });
            })?;
        let epoch = taken_rx
            .recv()
            .map_err(|_| CliError::Store(PgError::Closed.into()))??;
        Ok(CliLease {
            epoch,
            release: Some(release),
            holder: Some(holder),
        })
    }
}

impl From<PgError> for CliError {
    fn from(e: PgError) -> CliError {
        CliError::Store(e.into())
    }
}

impl Drop for CliLease {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(h) = self.holder.take() {
            let _ = h.join();
        }
    }
}
