//! Why an offline sub-command failed: [`CliError`], in a file of its own so that
//! [`super::offline`] and [`super::store_at`] both use it without using each other.

use crate::console::auth::AuthError;
use crate::dispatch::report::ReportError;
use crate::registers::devices::ImportError;
use crate::registers::{directory, subscribers};
use crate::store::StoreError;
use crate::transport::quic::QuicError;

/// Why a sub-command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The import file is invalid; nothing was imported.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The subscribers file is invalid; nothing was imported.
    #[error(transparent)]
    Subscribers(#[from] subscribers::ImportError),
    /// The directory files are invalid; nothing was imported.
    #[error(transparent)]
    Directory(#[from] directory::ImportError),
    /// No patrol with this id is in the directory.
    #[error("no patrol {0:?} in the directory (import it with `vakt directory import`)")]
    UnknownPatrol(String),
    /// A user's role and tenant do not go together.
    #[error("{0}")]
    Usage(String),
    /// No console user has this name.
    #[error("no user {0:?} (see `vakt users list`)")]
    UnknownUser(String),
    /// The change would leave no enabled administrator.
    #[error(
        "{0} is the last enabled administrator: add another one first (vakt users add NAME --role admin)"
    )]
    LastAdmin(String),
    /// No integration with this name has a token.
    #[error("no integration {0:?} (see `vakt integrations list`)")]
    UnknownIntegration(String),
    /// An integration name other than 1 to 64 of a-z, 0-9, '_', '.', '-'.
    #[error("bad integration name {0}: use 1 to 64 of a-z (lower case), 0-9, '_', '.', '-'")]
    BadIntegrationName(String),
    /// The report's month is bad (or the report failed in storage).
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The patrol's token file cannot be used.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why (never the token).
        reason: String,
    },
    /// `--insecure-dev` without a fingerprint, and no development certificate to read it from.
    #[error(
        "no development certificate {path} (the server makes it on its first start in its \
         data directory): give --data-dir of the server, or --fingerprint as the server \
         printed it"
    )]
    NoDevCertificate {
        /// Where it was looked for.
        path: String,
    },
    /// A certificate file could not be read.
    #[error(transparent)]
    Quic(#[from] QuicError),
    /// A user name or password was refused (or hashing failed).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A vakt node holds the leader lease of the database: a command that writes refuses,
    /// as it refuses beside a running server on a data directory.
    #[error(
        "a vakt node ({0}) leads on this database: stop every node first, or make the change in the console"
    )]
    Leading(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}
