//! The `idle` scenario: what an idle device connection costs the server.
//!
//! N devices connect, each sends one NULL link test and reads its ACK (so the server has
//! served the connection once, as between two heartbeats), then the connections stay open
//! and silent for `--hold-secs`. With `--server-pid`, the server's resident memory is read
//! from `/proc/PID/status` before the connections are opened and again once all are idle;
//! the difference divided by N is the memory per idle connection (user space and kernel
//! socket buffers that the kernel charges elsewhere are not in it).
//!
//! With `--source` every connection comes from that local address (one host), and with
//! `--probe-from` another address checks, while they are held, that DC-09 still answers a
//! NULL and (with `--probe-http`) that the console still answers `GET /live`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use vakt_proto::dc09::{self, FrameSpec};

use crate::device::{Mode, generated_account};
use crate::net::connect_from;

/// Options of the `idle` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Server address, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Idle connections to open (each is a file in this process and in the server: keep
    /// it under the open-file limit, 20,000 per process on the development machine).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to hold the connections open and silent once all are idle.
    #[arg(long, default_value_t = 5.0)]
    pub hold_secs: f64,
    /// The server's process id, to measure its resident memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Open every connection from this local address (one host), e.g. 127.0.0.1.
    #[arg(long)]
    pub source: Option<std::net::IpAddr>,
    /// While the connections are held, check from this other local address (e.g.
    /// 127.0.0.2) that DC-09 still ACKs a NULL.
    #[arg(long)]
    pub probe_from: Option<std::net::IpAddr>,
    /// With --probe-from: also check that the console at HOST:PORT answers GET /live.
    #[arg(long)]
    pub probe_http: Option<String>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Resident memory of `pid` in KiB (`VmRSS` of /proc/PID/status).
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// One device: connect, one NULL, its ACK; the stream is returned to be held open.
async fn open_one(
    target: SocketAddr,
    from: Option<std::net::IpAddr>,
    i: u32,
    deadline: Instant,
) -> Option<tokio::net::TcpStream> {
    let mut s = connect_from(target, from, deadline).await?;
    let account = generated_account(Mode::Plain, i);
    let mut frame = Vec::with_capacity(48);
    dc09::encode_frame(
        &FrameSpec {
            id: "NULL",
            seq: 1,
            receiver: None,
            line: Some("0"),
            account: &account,
            data: b"",
            xdata: &[],
            timestamp: None,
        },
        &mut frame,
    );
    s.write_all(&frame).await.ok()?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while !buf[..got].contains(&b'\r') {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf[got..]))
            .await
            .ok()?
            .ok()?;
        if n == 0 || got + n >= buf.len() {
            return None;
        }
        got += n;
    }
    let reply = dc09::parse(&buf[..got]).ok()?;
    (reply.id == "ACK").then_some(s)
}

/// Runs the scenario.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let target: SocketAddr = tokio::net::lookup_host(&o.target)
        .await?
        .next()
        .context("target does not resolve")?;
    let before = o.server_pid.map(rss_kib).transpose()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Open in waves so the server's accept backlog is not the thing measured.
    let mut held = Vec::with_capacity(o.connections);
    let mut failed = 0usize;
    let n = u32::try_from(o.connections).context("too many connections")?;
    for wave in (0..n).collect::<Vec<_>>().chunks(500) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|&i| tokio::spawn(open_one(target, o.source, i, deadline)))
            .collect();
        for t in tasks {
            match t.await {
                Ok(Some(s)) => held.push(s),
                _ => failed += 1,
            }
        }
    }
    // Let the server settle (tasks parked, buffers returned).
    tokio::time::sleep(Duration::from_secs_f64(o.hold_secs.max(0.0))).await;
    let after = o.server_pid.map(rss_kib).transpose()?;
    // Is the server still there for everyone else?
    let probe_deadline = || Instant::now() + Duration::from_secs(5);
    let probe_dc09 = match o.probe_from {
        None => None,
        Some(ip) => Some(
            open_one(target, Some(ip), 0, probe_deadline())
                .await
                .is_some(),
        ),
    };
    let probe_http = match (o.probe_from, &o.probe_http) {
        (Some(ip), Some(http)) => {
            let addr: SocketAddr = tokio::net::lookup_host(http)
                .await?
                .next()
                .context("--probe-http does not resolve")?;
            Some(http_live(addr, ip, probe_deadline()).await)
        }
        _ => None,
    };
    let per_conn = match (before, after) {
        (Some(b), Some(a)) if !held.is_empty() => {
            Some((a.saturating_sub(b)) as f64 * 1024.0 / held.len() as f64)
        }
        _ => None,
    };
    let line = format!(
        "idle connections={} failed={} rss_before_kib={} rss_after_kib={} bytes_per_conn={}",
        held.len(),
        failed,
        before.map_or("-".into(), |v| v.to_string()),
        after.map_or("-".into(), |v| v.to_string()),
        per_conn.map_or("-".into(), |v| format!("{v:.0}")),
    );
    let probe = |p: Option<bool>| p.map_or("-", |ok| if ok { "ok" } else { "failed" });
    let line = format!(
        "{line} probe_dc09={} probe_http={}",
        probe(probe_dc09),
        probe(probe_http)
    );
    if let Some(path) = &o.json {
        let v = serde_json::json!({
            "scenario": "idle",
            "connections": held.len(),
            "failed": failed,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "bytes_per_connection": per_conn,
            "probe_dc09_ok": probe_dc09,
            "probe_http_ok": probe_http,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)?;
    }
    println!("{line}");
    drop(held);
    Ok(())
}

/// `GET /live` from `from`: true on a 200 before `deadline`.
pub(crate) async fn http_live(addr: SocketAddr, from: std::net::IpAddr, deadline: Instant) -> bool {
    let Some(mut s) = connect_from(addr, Some(from), deadline).await else {
        return false;
    };
    let req = format!("GET /live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        match tokio::time::timeout_at(deadline, s.read(&mut buf[got..])).await {
            Ok(Ok(n)) if n > 0 => got += n,
            _ => return false,
        }
    }
    buf.starts_with(b"HTTP/1.1 200")
}
