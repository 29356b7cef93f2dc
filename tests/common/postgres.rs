//! A real PostgreSQL for the tests: Debian's server binaries, a data directory in a temp dir,
//! listening on 127.0.0.1 on a free port, `fsync` on; one node, or a primary with a
//! synchronous standby (streaming replication) for the tests of durability and failover.
//!
//! PostgreSQL refuses to run as root: as root every server program runs under `runuser` as
//! an unprivileged system user (`VAKT_POSTGRES_USER`, else Debian's `postgres`, else a
//! `vakt-pg` user created for it); otherwise as the current user. The binaries are those of
//! `VAKT_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/*/bin`. Without them a test says
//! so and passes, unless `VAKT_REQUIRE_POSTGRES` is set (as `.ci/run` does).
//!
//! Each node runs in a process group of its own; dropping it stops the server at once
//! (`SIGQUIT`, PostgreSQL's immediate shutdown) and then kills the group, so no server outlives
//! its test, and the temp dir goes with the [`Postgres`].

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database superuser the tests connect as (trusted on 127.0.0.1).
pub const USER: &str = "vakt";
/// The standby's `application_name`, the one `synchronous_standby_names` waits for.
pub const STANDBY_NAME: &str = "standby";
/// How long a server may take to accept connections, or a standby to catch up.
const READY: Duration = Duration::from_secs(60);

/// One cluster: a primary and, with [`Postgres::pair`], its synchronous standby. The nodes
/// are stopped before the temp dir is removed (fields drop in order).
pub struct Postgres {
    /// The primary (the only node without a standby).
    pub primary: Node,
    /// The synchronous standby, for [`Postgres::pair`].
    pub standby: Option<Node>,
    env: Env,
    _dir: tempfile::TempDir,
}

/// One PostgreSQL server.
pub struct Node {
    name: &'static str,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
    env: Env,
}

/// Where the binaries are and whom the servers run as.
#[derive(Clone)]
struct Env {
    bin: PathBuf,
    /// `Some` when running as root: the user for `runuser`.
    user: Option<String>,
}

impl Env {
    fn find() -> Option<Env> {
        let bin = match std::env::var_os("VAKT_POSTGRES_BIN") {
            Some(b) => Some(PathBuf::from(b)),
            None => newest_bin_dir(),
        }
        .filter(|b| b.join("postgres").is_file() && b.join("initdb").is_file());
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("VAKT_REQUIRE_POSTGRES").is_none(),
                "PostgreSQL not found (install Debian's postgresql)"
            );
            eprintln!("SKIPPED: PostgreSQL not found; install Debian's postgresql");
            return None;
        };
        let user = (rustix::process::getuid().is_root()).then(server_user);
        Some(Env { bin, user })
    }

    /// `program` of the server's binaries, run as the server's user (in `/`, a directory it
    /// can enter wherever the tests run).
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut c = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        c.current_dir("/");
        c
    }

    /// Runs `program` to its end; panics with its output when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program} starts: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One value from `sql` on the server at `port` (psql, as the test's superuser).
    fn query(&self, port: u16, sql: &str) -> Option<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                USER,
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn newest_bin_dir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, p)| p)
}

/// The unprivileged user the servers run as when the tests run as root.
pub fn server_user() -> String {
    if let Some(u) = std::env::var_os("VAKT_POSTGRES_USER") {
        return u.to_string_lossy().into_owned();
    }
    if user_ids("postgres").is_some() {
        return "postgres".to_owned();
    }
    if user_ids("vakt-pg").is_none() {
        // Tests starting at once may race here; whoever loses finds the user made.
        let _ = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", "vakt-pg"])
            .status();
    }
    assert!(user_ids("vakt-pg").is_some(), "cannot create user vakt-pg");
    "vakt-pg".to_owned()
}

/// The uid and gid of `user`.
pub fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(user).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// One node; `None` (the test is skipped) without PostgreSQL, outside CI.
    pub fn single() -> Option<Postgres> {
        Postgres::start(None)
    }

    /// A primary and a synchronous standby: the primary's commits wait for the standby
    /// (`synchronous_standby_names`) at `synchronous_commit` (`on`: flushed there;
    /// `remote_apply`: visible there), the cluster's default that a session may change.
    pub fn pair(synchronous_commit: &str) -> Option<Postgres> {
        Postgres::start(Some(synchronous_commit))
    }

    fn start(synchronous: Option<&str>) -> Option<Postgres> {
        let env = Env::find()?;
        // The server's user must reach it: under /tmp, not a `TMPDIR` of root's.
        let mut builder = tempfile::Builder::new();
        builder.prefix("vakt-pg");
        let dir = match env.user {
            Some(_) => builder.tempdir_in("/tmp"),
            None => builder.tempdir(),
        }
        .unwrap();
        if let Some(user) = &env.user {
            let (uid, gid) = user_ids(user).unwrap();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("primary");
        let data_s = data.to_str().unwrap();
        env.run(
            "initdb",
            &["-D", data_s, "-U", USER, "--auth=trust", "-E", "UTF8"],
        );
        let mut conf = String::from(
            "\n# tests/common/postgres.rs\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\n\
             fsync = on\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n\
             dynamic_shared_memory_type = mmap\n\
             wal_level = replica\n\
             max_wal_senders = 4\n\
             hot_standby = on\n",
        );
        if let Some(mode) = synchronous {
            conf.push_str(&format!(
                "synchronous_standby_names = '{STANDBY_NAME}'\nsynchronous_commit = {mode}\n"
            ));
        }
        append(&data.join("postgresql.conf"), &conf);
        let primary = Node::start(&env, "primary", data);
        let standby = synchronous.map(|_| {
            let data = dir.path().join(STANDBY_NAME);
            let port = primary.port.to_string();
            env.run(
                "pg_basebackup",
                &[
                    "-h", "127.0.0.1", "-p", &port, "-U", USER, "-D",
                    data.to_str().unwrap(), "-X", "stream", "-c", "fast", "--no-sync",
                ],
            );
            // Promoted, the standby must not wait for a standby of its own.
            append(
                &data.join("postgresql.conf"),
                &format!(
                    "synchronous_standby_names = ''\n\
                     primary_conninfo = 'host=127.0.0.1 port={port} user={USER} application_name={STANDBY_NAME}'\n"
                ),
            );
            append(&data.join("standby.signal"), "");
            if let Some(user) = &env.user {
                let (uid, gid) = user_ids(user).unwrap();
                for f in ["postgresql.conf", "standby.signal"] {
                    std::os::unix::fs::chown(data.join(f), Some(uid), Some(gid)).unwrap();
                }
            }
            let standby = Node::start(&env, STANDBY_NAME, data);
            let sql = format!(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'"
            );
            let start = Instant::now();
            while env.query(primary.port, &sql).as_deref() != Some("sync") {
                assert!(start.elapsed() < READY, "the standby never became synchronous");
                std::thread::sleep(Duration::from_millis(50));
            }
            standby
        });
        Some(Postgres {
            primary,
            standby,
            env,
            _dir: dir,
        })
    }

    /// The standby of a [`Postgres::pair`].
    pub fn standby(&mut self) -> &mut Node {
        self.standby.as_mut().expect("a pair has a standby")
    }

    /// One value from `sql` on `node` through psql, `None` when it fails.
    pub fn query(&self, node: &Node, sql: &str) -> Option<String> {
        self.env.query(node.port, sql)
    }
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Node {
    /// Starts the server on `data` on a free port (another port when one was taken in
    /// between) and waits until it accepts connections.
    fn start(env: &Env, name: &'static str, data: PathBuf) -> Node {
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(data.with_extension("log")).unwrap();
            let child = env
                .command("postgres")
                .process_group(0)
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("postgres starts");
            let mut node = Node {
                name,
                data: data.clone(),
                port,
                child: Some(child),
                env: env.clone(),
            };
            let start = Instant::now();
            loop {
                if node.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                    node.child = None;
                    break;
                }
                let ready = Command::new(env.bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-U", USER, "-d", "postgres"])
                    .arg("-p")
                    .arg(port.to_string())
                    .status()
                    .unwrap();
                if ready.success() {
                    return node;
                }
                assert!(start.elapsed() < READY, "{name} not ready: {}", node.log());
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = node.log();
            assert!(
                log.contains("could not bind"),
                "{name} did not start: {log}"
            );
        }
        panic!("{name}: no free port");
    }

    /// The server's log (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for tokio-postgres.
    pub fn url(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Kills the server and every process of it with SIGKILL, as when its machine dies, and
    /// waits for the postmaster. Its children (backends, WAL sender and writer) are each a
    /// process group of their own (PostgreSQL calls `setsid` in every child), so they are
    /// found by their parent while the stopped postmaster forks no more.
    pub fn kill9(&mut self) {
        use rustix::process::{Signal, kill_process, kill_process_group};
        let Some(mut child) = self.child.take() else {
            return;
        };
        let postmaster = self.postmaster();
        if let Some(pm) = postmaster {
            let _ = kill_process(pm, Signal::STOP);
        }
        let children = postmaster.map(children_of).unwrap_or_default();
        if let Some(pm) = postmaster {
            let _ = kill_process(pm, Signal::KILL);
        }
        for c in children {
            let _ = kill_process(c, Signal::KILL);
        }
        let _ = kill_process_group(rustix::process::Pid::from_child(&child), Signal::KILL);
        let _ = child.wait();
    }

    /// Promotes a standby to primary (`pg_ctl promote`) and waits until it takes writes.
    pub fn promote(&self) {
        self.env.run(
            "pg_ctl",
            &[
                "promote",
                "-w",
                "-t",
                "60",
                "-D",
                self.data.to_str().unwrap(),
            ],
        );
        let start = Instant::now();
        while self
            .env
            .query(self.port, "SELECT pg_is_in_recovery()")
            .as_deref()
            != Some("f")
        {
            assert!(start.elapsed() < READY, "{} not promoted", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The postmaster's pid, from its `postmaster.pid` while it runs.
    fn postmaster(&self) -> Option<rustix::process::Pid> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        rustix::process::Pid::from_raw(text.lines().next()?.trim().parse().ok()?)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Immediate shutdown: the postmaster ends its children and frees its shared memory.
        let postmaster = self.postmaster();
        if let (Some(pid), Some(child)) = (postmaster, self.child.as_mut()) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if !matches!(child.try_wait(), Ok(None)) {
                    self.child = None;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Still there (or never asked): killed, children too.
        self.kill9();
        self.remove_shared_memory();
    }
}

impl Node {
    /// A killed postmaster leaves its System V segment behind; its id is on the seventh line
    /// of the `postmaster.pid` it left.
    fn remove_shared_memory(&self) {
        let Ok(text) = std::fs::read_to_string(self.data.join("postmaster.pid")) else {
            return;
        };
        if let Some(id) = text
            .lines()
            .nth(6)
            .and_then(|l| l.split_whitespace().nth(1))
        {
            let _ = Command::new("ipcrm")
                .args(["-m", id])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The processes whose parent is `parent` (from `/proc`).
pub fn children_of(parent: rustix::process::Pid) -> Vec<rustix::process::Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid: i32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent.as_raw_nonzero().get()).then(|| rustix::process::Pid::from_raw(pid))?
    })
    .collect()
}

/// A client on `url`, its connection driven by a task of its own.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// One server shared by the tests of a test binary ([`shared`]), each with a database of its
/// own ([`Shared::database`]).
///
/// The server lives as long as the test binary: the tests share it through a `OnceLock`, so
/// nothing drops it, and a small shell process started with it (in a process group of its
/// own, so a Ctrl-C does not end it first) waits for the end of a pipe the binary holds open,
/// which comes however the binary ends; then it stops the server (`SIGQUIT`, PostgreSQL's
/// immediate shutdown) and removes its temp dir.
pub struct Shared {
    /// The server.
    pub pg: Postgres,
    _reaper: (Child, std::process::ChildStdin),
}

static SHARED: std::sync::OnceLock<Option<Shared>> = std::sync::OnceLock::new();
static DATABASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The test binary's shared server; `None` without PostgreSQL (outside CI).
pub fn shared() -> Option<&'static Shared> {
    SHARED
        .get_or_init(|| {
            let pg = Postgres::single()?;
            let data = pg.query(&pg.primary, "SHOW data_directory").unwrap();
            let dir = Path::new(&data).parent().unwrap();
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
            Some(Shared {
                pg,
                _reaper: (child, stdin),
            })
        })
        .as_ref()
}

/// A database of its own on the shared server, dropped (forced) with this value.
pub struct Database {
    server: &'static Shared,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl Shared {
    /// A new, empty database.
    pub fn database(&'static self) -> Database {
        let name = format!(
            "t{}",
            DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let created = self
            .pg
            .query(&self.pg.primary, &format!("CREATE DATABASE {name}"));
        assert!(created.is_some(), "CREATE DATABASE {name} failed");
        let url = format!(
            "postgresql://{USER}@127.0.0.1:{}/{name}",
            self.pg.primary.port()
        );
        Database {
            server: self,
            name,
            url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // The stores of the test may still be closing their connections: forced.
        let _ = self.server.pg.query(
            &self.server.pg.primary,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
