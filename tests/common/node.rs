//! `vakt serve` nodes of a cluster as child processes (a configuration each, on one
//! PostgreSQL), the `vakt` command, and an alarm sent to a node: what tests/cluster.rs,
//! tests/cluster_ops.rs and tests/cluster_chaos.rs share.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{plain, token_of};

pub const BIN: &str = env!("CARGO_BIN_EXE_vakt");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A vakt node as a child process, with what it printed.
pub struct VaktNode {
    /// The process.
    pub child: Child,
    /// Its DC-09 TCP address.
    pub dc09: SocketAddr,
    /// Its HTTP address.
    pub http: SocketAddr,
    out: Arc<Mutex<String>>,
}

/// Runs a `vakt` sub-command with `input` on its standard input; (exit code, stderr, stdout).
pub fn vakt(args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses early may not read its input.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub const ADMIN: (&str, &str) = ("cluster-admin", "cluster-admin-password");

impl VaktNode {
    /// The configuration file of node `name` (written once; its ports kept in it).
    pub fn config(dir: &Path, url: &str, name: &str) -> std::path::PathBuf {
        let cfg = dir.join(format!("{name}.toml"));
        if cfg.exists() {
            return cfg;
        }
        let (dc09, http) = (free_port(), free_port());
        let data = dir.join(name);
        std::fs::write(
            &cfg,
            format!(
                "data_dir = {data:?}\n\
                 [dc09]\nlisten_tcp = \"127.0.0.1:{dc09}\"\nlisten_udp = \"127.0.0.1:0\"\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\n[patrol]\nlisten_quic = \"127.0.0.1:0\"\n\
                 [scaip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = \"127.0.0.1:0\"\n\
                 [store]\nbackend = \"postgres\"\nurl = \"{url}\"\nnode = \"{name}\"\n"
            ),
        )
        .unwrap();
        cfg
    }

    /// Gives node `name` a fixed QUIC port and the cluster's patrol certificate (the nodes
    /// of a cluster share it, so a patrol pins one fingerprint); returns the port.
    pub fn patrol_link(dir: &Path, url: &str, name: &str, cert: &Path, key: &Path) -> u16 {
        let cfg = VaktNode::config(dir, url, name);
        let port = free_port();
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "[patrol]\nlisten_quic = \"127.0.0.1:0\"\n",
            &format!(
                "[patrol]\nlisten_quic = \"127.0.0.1:{port}\"\ncert_file = {cert:?}\nkey_file = {key:?}\n"
            ),
        );
        std::fs::write(&cfg, text).unwrap();
        port
    }

    /// The DC-09 TCP and the HTTP address of the node configured in `cfg`.
    pub fn addresses(cfg: &Path) -> (SocketAddr, SocketAddr) {
        let text = std::fs::read_to_string(cfg).unwrap();
        let addr_of = |section: &str, key: &str| -> SocketAddr {
            let at = text.find(section).unwrap();
            let line = text[at..].lines().find(|l| l.starts_with(key)).unwrap();
            line.split('"').nth(1).unwrap().parse().unwrap()
        };
        (addr_of("[dc09]", "listen_tcp"), addr_of("[http]", "listen"))
    }

    pub fn start(dir: &Path, url: &str, name: &str) -> VaktNode {
        let cfg = VaktNode::config(dir, url, name);
        let (dc09, http) = VaktNode::addresses(&cfg);
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let seen = out.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        VaktNode {
            child,
            dc09,
            http,
            out,
        }
    }

    pub fn printed(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits (bounded) until it printed `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.printed().contains(what) {
            assert!(
                start.elapsed() < timeout,
                "no {what:?} within {timeout:?}:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for VaktNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one alarm and returns the answer's token (`ACK` when it was made durable).
pub async fn alarm(addr: SocketAddr, seq: u16, account: &str) -> std::io::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    s.write_all(&plain(
        "SIA-DCS",
        seq,
        account,
        &format!("#{account}|Nri1/FA002"),
    ))
    .await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), super::read_reply(&mut s))
        .await
        .map_err(|_| std::io::Error::other("no answer"))?;
    Ok(token_of(&reply))
}
