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
//! The server lives as long as the test binary: the tests share it through a `OnceLock`, so
//! nothing drops it, and a small shell process started with it (in a process group of its
//! own, so a Ctrl-C does not end it first) waits for the end of a pipe the binary holds open,
//! which comes however the binary ends; then it stops the server (`SIGQUIT`, PostgreSQL's
//! immediate shutdown) and removes its temp dir.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

use super::Store;

#[allow(dead_code)] // the fixture serves the integration tests too; not all of it is used here
#[path = "../../tests/common/postgres.rs"]
mod postgres;

pub(crate) use postgres::{Postgres, connect};

/// At most this many tests use the server at once: each store holds up to five connections
/// (four workers and the journal's writer), and the fixture's server allows 40.
const AT_ONCE: usize = 3;

/// The shared server, and the pipe whose end stops it.
pub(crate) struct Server {
    pg: Postgres,
    _reaper: (Child, ChildStdin),
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(0);
static IN_USE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

fn server() -> Option<&'static Server> {
    SERVER
        .get_or_init(|| {
            let pg = Postgres::single()?;
            let data = pg.query(&pg.primary, "SHOW data_directory").unwrap();
            let dir = std::path::Path::new(&data).parent().unwrap();
            let script = format!(
                "cat >/dev/null
                pm=$(head -n 1 '{data}/postmaster.pid' 2>/dev/null) && kill -QUIT \"$pm\"
                i=0
                while [ -e '{data}/postmaster.pid' ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
                [ -n \"$pm\" ] && kill -KILL \"$pm\" 2>/dev/null
                rm -rf '{}'",
                dir.display()
            );
            let mut reaper = Command::new("sh");
            reaper
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            let mut child = reaper.spawn().unwrap();
            let stdin = child.stdin.take().unwrap();
            Some(Server {
                pg,
                _reaper: (child, stdin),
            })
        })
        .as_ref()
}

/// Where a test's store lives.
pub(crate) enum Backend {
    /// A sled data directory.
    Sled(tempfile::TempDir),
    /// A database of its own on the shared server.
    Postgres {
        /// The server.
        server: &'static Server,
        /// The database's name.
        name: String,
        /// Its URL.
        url: String,
    },
}

impl Backend {
    /// sled in a new temp dir.
    pub(crate) fn sled() -> Backend {
        Backend::Sled(tempfile::tempdir().unwrap())
    }

    /// A new database on the shared PostgreSQL; `None` without PostgreSQL (outside CI).
    pub(crate) fn postgres() -> Option<Backend> {
        let server = server()?;
        {
            let (count, freed) = &IN_USE;
            let mut n = count.lock().unwrap_or_else(|p| p.into_inner());
            while *n >= AT_ONCE {
                n = freed.wait(n).unwrap_or_else(|p| p.into_inner());
            }
            *n += 1;
        }
        let name = format!("t{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let created = server
            .pg
            .query(&server.pg.primary, &format!("CREATE DATABASE {name}"));
        assert!(created.is_some(), "CREATE DATABASE {name} failed");
        let url = format!(
            "postgresql://{}@127.0.0.1:{}/{name}",
            postgres::USER,
            server.pg.primary.port()
        );
        Some(Backend::Postgres { server, name, url })
    }

    /// A store on it: the first, or a restart (sled: drop the one before) or another node
    /// on the same database (PostgreSQL).
    pub(crate) fn open(&self) -> Store {
        match self {
            Backend::Sled(dir) => Store::open(dir.path()).unwrap(),
            Backend::Postgres { url, .. } => Store::open_postgres(url).unwrap(),
        }
    }

    /// A second handle on the same data while `first` is open: on sled a clone of it (sled
    /// allows one opener), on PostgreSQL another node's store on the same database.
    pub(crate) fn second(&self, first: &Store) -> Store {
        match self {
            Backend::Sled(_) => first.clone(),
            Backend::Postgres { url, .. } => Store::open_postgres(url).unwrap(),
        }
    }

    /// The database's URL, on PostgreSQL.
    pub(crate) fn url(&self) -> Option<&str> {
        match self {
            Backend::Sled(_) => None,
            Backend::Postgres { url, .. } => Some(url),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Postgres { server, name, .. } = self {
            // The stores of the test may still be closing their connections: forced.
            let _ = server.pg.query(
                &server.pg.primary,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
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
