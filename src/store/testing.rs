//! The store's tests on both backends: sled in a temp dir, and PostgreSQL, one database per
//! test on one server per test binary (tests/common/postgres.rs, the fixture the integration
//! tests use).
//!
//! [`on_each_backend!`] turns a test body into two tests, `<name>::sled` and
//! `<name>::postgres`, each given a [`Backend`] whose [`Backend::open`] opens a store on it:
//! called again it is a restart on sled (after the first was dropped) and another node
//! starting on the same database on PostgreSQL. Without PostgreSQL the `postgres` half says
//! so and passes, unless `VAKT_REQUIRE_POSTGRES` is set (as in CI), where it fails.
//!
//! The server and the databases are the fixture's (`postgres::shared`, `Shared::database`).

use std::sync::{Condvar, Mutex};

use super::Store;

#[allow(dead_code)] // the fixture serves the integration tests too; not all of it is used here
#[path = "../../tests/common/postgres.rs"]
mod postgres;

pub(crate) use postgres::connect;

/// At most this many tests use the server at once: each store holds up to six connections
/// (four workers and the journal's two), a test opens a few, and the server allows 200.
const AT_ONCE: usize = 6;

/// Tests using the server now, and the signal that one ended.
static IN_USE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// Where a test's store lives.
pub(crate) enum Backend {
    /// A sled data directory.
    Sled(tempfile::TempDir),
    /// A database of its own on the shared server.
    Postgres(postgres::Database),
}

impl Backend {
    /// sled in a new temp dir.
    pub(crate) fn sled() -> Backend {
        Backend::Sled(tempfile::tempdir().unwrap())
    }

    /// A new database on the shared PostgreSQL; `None` without PostgreSQL (outside CI).
    pub(crate) fn postgres() -> Option<Backend> {
        let server = postgres::shared()?;
        {
            let (count, freed) = &IN_USE;
            let mut n = count.lock().unwrap_or_else(|p| p.into_inner());
            while *n >= AT_ONCE {
                n = freed.wait(n).unwrap_or_else(|p| p.into_inner());
            }
            *n += 1;
        }
        Some(Backend::Postgres(server.database()))
    }

    /// A store on it: the first, or a restart (sled: drop the one before) or another node
    /// on the same database (PostgreSQL).
    pub(crate) fn open(&self) -> Store {
        match self {
            Backend::Sled(dir) => Store::open(dir.path()).unwrap(),
            Backend::Postgres(db) => Store::open_postgres(&db.url).unwrap(),
        }
    }

    /// A second handle on the same data while `first` is open: on sled a clone of it (sled
    /// allows one opener), on PostgreSQL another node's store on the same database.
    pub(crate) fn second(&self, first: &Store) -> Store {
        match self {
            Backend::Sled(_) => first.clone(),
            Backend::Postgres(db) => Store::open_postgres(&db.url).unwrap(),
        }
    }

    /// The database's URL, on PostgreSQL.
    pub(crate) fn url(&self) -> Option<&str> {
        match self {
            Backend::Sled(_) => None,
            Backend::Postgres(db) => Some(&db.url),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Postgres(_) = self {
            // The database is dropped with the variant's value, after this.
            let (count, freed) = &IN_USE;
            let mut n = count.lock().unwrap_or_else(|p| p.into_inner());
            *n -= 1;
            freed.notify_one();
        }
    }
}

/// A runtime for the test's own PostgreSQL connections (the lease, reading back).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `fn name(b) { body }`: two tests, `name::sled` and `name::postgres`, each running `body`
/// with `b` the test's [`Backend`] (the `postgres` one passes with a note, and fails in CI,
/// without PostgreSQL).
macro_rules! on_each_backend {
    ($(#[$meta:meta])* fn $name:ident($b:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($b: &$crate::store::testing::Backend) $body

            #[test]
            fn sled() {
                run(&$crate::store::testing::Backend::sled());
            }

            #[test]
            fn postgres() {
                if let Some(b) = $crate::store::testing::Backend::postgres() {
                    run(&b);
                }
            }
        }
    };
}

pub(crate) use on_each_backend;
