//! A replicated PostgreSQL as an alarm centre runs it: three "machines" on 127.0.0.1, each
//! with an etcd member (Debian's `etcd-server`), a Patroni (Debian's `patroni`) and the
//! PostgreSQL that Patroni runs, in a temp dir, on free ports.
//!
//! Replication is synchronous in strict mode (`synchronous_mode` and
//! `synchronous_mode_strict`): a commit returns only once a standby has it, and with no
//! standby left the primary takes no writes rather than go on alone. Patroni's asynchronous
//! default could lose committed (and so acknowledged) alarms in a failover. The times are
//! shortened for a test: `ttl` 10 s, `loop_wait` 2 s, `retry_timeout` 4 s (Patroni needs
//! `loop_wait + 2 × retry_timeout ≤ ttl`). Patroni 3.0 (Debian 12) takes a `ttl` of 10 s;
//! newer versions have a floor of 20 s and use their default where a value is below it, which
//! only makes a failover slower. Clients get [`Patroni::url`]: all three hosts and
//! `target_session_attrs=read-write`, so a new connection finds whichever node is primary.
//!
//! **A machine dies** ([`Patroni::kill_machine`]): its etcd member, its Patroni and its
//! PostgreSQL (the postmaster and every process of it) are killed with SIGKILL at once, as
//! when the power goes; the machine is not started again. etcd keeps its quorum with two
//! members, the leader key of the dead Patroni expires after `ttl`, and the synchronous
//! standby is promoted, with the third node as its synchronous standby.
//!
//! PostgreSQL refuses to run as root: as root, Patroni (and so PostgreSQL) runs under
//! `runuser` as the unprivileged user of [`super::postgres`]; etcd runs as the current user.
//! Without `etcd`, `patroni` or PostgreSQL's binaries a test says so and passes, unless
//! `VAKT_REQUIRE_PATRONI` is set (as `.ci/run` does, which installs them).
//!
//! Every etcd and Patroni is a process group of its own; PostgreSQL is a session of its own
//! (Patroni starts the postmaster detached) and is found through its `postmaster.pid`. Dropping
//! a [`Patroni`] kills every Patroni first (so none starts its PostgreSQL again), stops each
//! PostgreSQL at once (SIGQUIT, then SIGKILL), removes the shared memory a killed one left,
//! kills etcd, and removes the temp dir.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use super::postgres::{USER, children_of, newest_bin_dir, server_user, user_ids};

/// How long the cluster may take to elect a primary with a synchronous standby.
const READY: Duration = Duration::from_secs(120);
/// Patroni's cluster name (`scope`).
const SCOPE: &str = "vakt";

/// Three machines of a Patroni cluster; see the module's doc.
pub struct Patroni {
    /// The machines, `pg0`, `pg1`, `pg2`; a dead one stays in the list.
    pub machines: Vec<Machine>,
    env: Env,
    _dir: tempfile::TempDir,
}

/// One machine: an etcd member, a Patroni and its PostgreSQL.
pub struct Machine {
    /// `pg0`, `pg1`, `pg2`: Patroni's member name.
    pub name: String,
    /// PostgreSQL's port on 127.0.0.1.
    pub pg_port: u16,
    /// Patroni's REST API on 127.0.0.1.
    pub api_port: u16,
    data: PathBuf,
    logs: PathBuf,
    etcd: Option<Child>,
    patroni: Option<Child>,
}

/// Where the programs are and whom Patroni runs as.
#[derive(Clone)]
struct Env {
    etcd: PathBuf,
    patroni: PathBuf,
    pg_bin: PathBuf,
    /// `Some` when running as root: the user for `runuser`.
    user: Option<String>,
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

impl Env {
    fn find() -> Option<Env> {
        let pg_bin = match std::env::var_os("VAKT_POSTGRES_BIN") {
            Some(b) => Some(PathBuf::from(b)),
            None => newest_bin_dir(),
        }
        .filter(|b| b.join("postgres").is_file() && b.join("pg_rewind").is_file());
        match (on_path("etcd"), on_path("patroni"), pg_bin) {
            (Some(etcd), Some(patroni), Some(pg_bin)) => Some(Env {
                etcd,
                patroni,
                pg_bin,
                user: rustix::process::getuid().is_root().then(server_user),
            }),
            _ => {
                assert!(
                    std::env::var_os("VAKT_REQUIRE_PATRONI").is_none(),
                    "etcd, patroni or PostgreSQL not found (install Debian's etcd-server, patroni and postgresql)"
                );
                eprintln!(
                    "SKIPPED: etcd, patroni or PostgreSQL not found; install Debian's etcd-server, patroni and postgresql"
                );
                None
            }
        }
    }

    /// One value from `sql` on the PostgreSQL at `port`, `None` when it fails or does not
    /// answer within 5 s.
    fn query(&self, port: u16, sql: &str) -> Option<String> {
        let mut child = Command::new(self.pg_bin.join("psql"))
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
            .env("PGCONNECT_TIMEOUT", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let mut out = String::new();
                    child.stdout.take()?.read_to_string(&mut out).ok()?;
                    return status.success().then(|| out.trim().to_owned());
                }
                Ok(None) if start.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }
}

/// `n` distinct free ports on 127.0.0.1 (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A plain HTTP GET on 127.0.0.1 (2 s bounds); the status, or `None` without an answer.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Patroni {
    /// Starts the three machines and waits until one is primary with a synchronous standby;
    /// `None` (the test is skipped) without the programs, outside CI.
    pub fn start() -> Option<Patroni> {
        let env = Env::find()?;
        // Patroni's user must reach it: under /tmp, not a `TMPDIR` of root's. Short, too:
        // PostgreSQL's socket path must fit in 107 bytes.
        let mut builder = tempfile::Builder::new();
        builder.prefix("vakt-patroni");
        let dir = match env.user {
            Some(_) => builder.tempdir_in("/tmp"),
            None => builder.tempdir(),
        }
        .unwrap();
        let owner = env.user.as_deref().map(|u| user_ids(u).unwrap());
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let ports = free_ports(12);
        let (etcd_client, rest) = ports.split_at(3);
        let (etcd_peer, rest) = rest.split_at(3);
        let (api, pg) = rest.split_at(3);
        let initial_cluster = (0..3)
            .map(|i| format!("etcd{i}=http://127.0.0.1:{}", etcd_peer[i]))
            .collect::<Vec<_>>()
            .join(",");
        let etcd_hosts = etcd_client
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");

        let mut machines = Vec::new();
        for i in 0..3 {
            let logs = dir.path().join(format!("pg{i}-logs"));
            std::fs::create_dir(&logs).unwrap();
            let etcd_log = std::fs::File::create(logs.join("etcd.log")).unwrap();
            let client_url = format!("http://127.0.0.1:{}", etcd_client[i]);
            let peer_url = format!("http://127.0.0.1:{}", etcd_peer[i]);
            let etcd = Command::new(&env.etcd)
                .process_group(0)
                .arg("--name")
                .arg(format!("etcd{i}"))
                .arg("--data-dir")
                .arg(dir.path().join(format!("etcd{i}")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "vakt-test"])
                .stdin(Stdio::null())
                .stdout(etcd_log.try_clone().unwrap())
                .stderr(etcd_log)
                .spawn()
                .expect("etcd starts");
            machines.push(Machine {
                name: format!("pg{i}"),
                pg_port: pg[i],
                api_port: api[i],
                data: dir.path().join(format!("pg{i}")),
                logs,
                etcd: Some(etcd),
                patroni: None,
            });
        }
        let mut cluster = Patroni {
            machines,
            env,
            _dir: dir,
        };
        let start = Instant::now();
        for &port in etcd_client {
            while http_status(port, "/health") != Some(200) {
                assert!(
                    start.elapsed() < READY,
                    "etcd not healthy:\n{}",
                    cluster.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        for i in 0..3 {
            let m = &cluster.machines[i];
            let config = m.logs.join("patroni.yml");
            std::fs::write(
                &config,
                patroni_yaml(
                    &m.name,
                    m.api_port,
                    m.pg_port,
                    &etcd_hosts,
                    &m.data,
                    &cluster.env.pg_bin,
                    cluster._dir.path(),
                ),
            )
            .unwrap();
            if let Some((uid, gid)) = owner {
                for p in [&m.logs, &config] {
                    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
                }
            }
            let log = std::fs::File::create(m.logs.join("patroni.log")).unwrap();
            let mut c = match &cluster.env.user {
                Some(user) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", user, "--"]).arg(&cluster.env.patroni);
                    c
                }
                None => Command::new(&cluster.env.patroni),
            };
            let child = c
                .arg(&config)
                .current_dir("/")
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("patroni starts");
            cluster.machines[i].patroni = Some(child);
        }
        cluster.wait_writable(READY);
        Some(cluster)
    }

    /// A URL naming every node, for a client that must find the primary by itself.
    pub fn url(&self) -> String {
        let hosts = self
            .machines
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.pg_port))
            .collect::<Vec<_>>()
            .join(",");
        format!("postgresql://{USER}@{hosts}/postgres?target_session_attrs=read-write")
    }

    /// The machine whose PostgreSQL is primary (not in recovery) now, if one is.
    pub fn primary(&self) -> Option<usize> {
        self.machines.iter().position(|m| {
            m.alive()
                && self
                    .env
                    .query(m.pg_port, "SELECT pg_is_in_recovery()")
                    .as_deref()
                    == Some("f")
        })
    }

    /// Waits until a primary has a synchronous standby streaming from it (so it commits);
    /// returns the primary's machine.
    pub fn wait_writable(&self, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            if let Some(p) = self.primary() {
                let sync = self.env.query(
                    self.machines[p].pg_port,
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming'",
                );
                if sync.as_deref() == Some("1") {
                    return p;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "no primary with a synchronous standby within {timeout:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One value from `sql` on machine `i`'s PostgreSQL, `None` when it fails.
    pub fn query(&self, i: usize, sql: &str) -> Option<String> {
        self.env.query(self.machines[i].pg_port, sql)
    }

    /// Machine `i` dies: see the module's doc.
    pub fn kill_machine(&mut self, i: usize) {
        let m = &mut self.machines[i];
        // The postmaster first held still, so it forks no more while its children are found.
        let postmaster = m.postmaster();
        if let Some(pm) = postmaster {
            let _ = kill_process(pm, Signal::STOP);
        }
        let children = postmaster.map(children_of).unwrap_or_default();
        kill_group(&mut m.patroni);
        if let Some(pm) = postmaster {
            let _ = kill_process(pm, Signal::KILL);
        }
        for c in children {
            let _ = kill_process(c, Signal::KILL);
        }
        kill_group(&mut m.etcd);
        if let Some(pm) = postmaster {
            wait_gone(pm, Duration::from_secs(10));
        }
        m.remove_shared_memory();
    }

    /// Every machine's Patroni and etcd logs (their last lines), for a failure's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.machines {
            for f in ["patroni.log", "etcd.log"] {
                let text = std::fs::read_to_string(m.logs.join(f)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {} {f}\n", m.name));
                for l in &lines[lines.len().saturating_sub(15)..] {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Patroni's configuration of one member.
fn patroni_yaml(
    name: &str,
    api: u16,
    pg: u16,
    etcd_hosts: &str,
    data: &Path,
    bin: &Path,
    dir: &Path,
) -> String {
    let (data, bin, dir) = (data.display(), bin.display(), dir.display());
    format!(
        "# tests/common/patroni.rs
scope: {SCOPE}
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  hosts: {etcd_hosts}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        fsync: 'on'
        synchronous_commit: 'on'
        wal_log_hints: 'on'
        max_connections: 80
        shared_buffers: 32MB
        dynamic_shared_memory_type: mmap
  initdb:
    - encoding: UTF8
    - auth: trust
  pg_hba:
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {dir}/{name}.pgpass
  authentication:
    superuser:
      username: {USER}
    replication:
      username: {USER}
    rewind:
      username: {USER}
  parameters:
    unix_socket_directories: '{dir}'
"
    )
}

/// SIGKILL to a child's process group, then reaps the child.
fn kill_group(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = kill_process_group(Pid::from_child(&c), Signal::KILL);
        let _ = c.wait();
    }
}

/// Waits (bounded) until `pid` is gone or a zombie (not our child: it cannot be reaped here);
/// whether it went.
fn wait_gone(pid: Pid, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()));
        let gone = match stat {
            Err(_) => true,
            Ok(s) => s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        };
        if gone {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Machine {
    /// Whether its Patroni is still running (it was not killed).
    pub fn alive(&self) -> bool {
        self.patroni.is_some()
    }

    /// The postmaster's pid, from its `postmaster.pid` while it runs.
    fn postmaster(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        Pid::from_raw(text.lines().next()?.trim().parse().ok()?)
    }

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

impl Drop for Machine {
    fn drop(&mut self) {
        if !self.alive() && self.etcd.is_none() {
            return;
        }
        // Patroni first, so it does not start its PostgreSQL again.
        kill_group(&mut self.patroni);
        if let Some(pm) = self.postmaster() {
            let _ = kill_process(pm, Signal::QUIT);
            if !wait_gone(pm, Duration::from_secs(10)) {
                // Still there: killed, children too.
                let _ = kill_process(pm, Signal::STOP);
                for c in children_of(pm) {
                    let _ = kill_process(c, Signal::KILL);
                }
                let _ = kill_process(pm, Signal::KILL);
                wait_gone(pm, Duration::from_secs(5));
            }
        }
        self.remove_shared_memory();
        kill_group(&mut self.etcd);
    }
}
