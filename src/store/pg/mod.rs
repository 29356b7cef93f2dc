//! PostgreSQL, the replicated store: the ground it stands on.
//!
//! - [`migrate`]: the schema, versioned SQL files embedded in the binary and applied at start,
//!   each once, under an advisory lock (several nodes may start at once); a database whose
//!   schema is newer than the binary is refused.
//! - [`journal`]: the journal's records, behind [`crate::store::JournalStore`].
//! - [`kv`]: every other record of the store, the trees of [`crate::store::kv`] as rows of one
//!   table, written on worker threads of its own, fenced like the journal.
//! - [`lease`]: the leader lease row with its fencing epoch, and [`lease::fenced`], the
//!   transaction that commits only while the epoch it was given is still the lease's.
//!
//! The database's clock decides every question of time here (`now()` in the statements), so
//! nodes whose clocks disagree still agree on who holds the lease.
//!
//! Connections are `tokio-postgres` clients; plain TCP for now (a TLS connector comes with
//! the configuration of the backend).

pub mod journal;
pub mod kv;
pub mod leader;
pub mod lease;
pub mod migrate;

/// What can go wrong on PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A statement, a connection or a commit failed.
    #[error("postgres: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A commit was sent but its answer never came (the connection broke): the transaction
    /// may or may not be committed. What it wrote must not be acknowledged to anyone.
    #[error("postgres: the outcome of a commit is unknown: {}", describe(.0))]
    CommitUnknown(tokio_postgres::Error),
    /// The database's schema is newer than this binary knows: an older binary must not write
    /// to it.
    #[error(
        "the database's schema is at version {database}, newer than this vakt knows ({known}); run a newer vakt"
    )]
    SchemaNewer {
        /// The newest version recorded in the database.
        database: i32,
        /// The newest version this binary carries.
        known: i32,
    },
    /// A migration recorded in the database differs from the one of the same version in this
    /// binary (edited after it was applied, or another program's).
    #[error("migration {version} in the database ({recorded}) differs from this vakt's ({ours})")]
    MigrationChanged {
        /// The version.
        version: i32,
        /// Name and checksum recorded in the database.
        recorded: String,
        /// Name and checksum in this binary.
        ours: String,
    },
    /// The lease is held by a later epoch than ours: this node is no longer the leader, and
    /// nothing was written.
    #[error("fenced: the lease is at epoch {current}, ours was {ours}")]
    Fenced {
        /// The epoch this node held.
        ours: i64,
        /// The lease's epoch now.
        current: i64,
    },
    /// The journal's own runtime (which drives its connections) could not be built.
    #[error("cannot start the runtime of the database's connections: {0}")]
    Runtime(std::io::Error),
    /// The journal's connections were shut down.
    #[error("postgres: the journal's connections are closed")]
    Closed,
    /// A renewal found the lease expired or taken: this node is no longer the leader.
    #[error("the lease of epoch {epoch} is lost (expired or taken)")]
    LeaseLost {
        /// The epoch that was held.
        epoch: i64,
    },
}

/// Opens a connection and runs its driver as a task on the current runtime; when the driver
/// ends with an error it is logged at debug level with `what` (the caller sees the broken
/// connection on its next statement, `Client::is_closed`).
pub async fn connect(
    config: &tokio_postgres::Config,
    what: &'static str,
) -> Result<tokio_postgres::Client, PgError> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %PgError::Db(e), what, "database connection ended");
        }
    });
    Ok(client)
}

/// tokio-postgres displays a server's error as "db error" and keeps the message in the
/// source; the server's words (severity, SQLSTATE, message) are what an operator needs.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}
