//! The `idle` scenario: what an idle device connection costs the server.
//!
//! N devices connect, each sends one NULL link test and reads its ACK (so the server has
//! served the connection once, as between two heartbeats), then the connections stay open
//! and silent for `--hold-secs`. With `--server-pid`, the server's resident memory is read
//! from `/proc/PID/status` before the connections are opened and again once all are idle;
//! the difference divided by N is the memory per idle connection (user space and kernel
//! socket buffers that the kernel charges elsewhere are not in it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use vakt::codec::dc09::{self, FrameSpec};

use crate::device::{Mode, generated_account};
use crate::net::connect;

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
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Resident memory of `pid` in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// One device: connect, one NULL, its ACK; the stream is returned to be held open.
async fn open_one(target: SocketAddr, i: u32, deadline: Instant) -> Option<tokio::net::TcpStream> {
    let mut s = connect(target, deadline).await?;
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
            .map(|&i| tokio::spawn(open_one(target, i, deadline)))
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
    if let Some(path) = &o.json {
        let v = serde_json::json!({
            "scenario": "idle",
            "connections": held.len(),
            "failed": failed,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "bytes_per_connection": per_conn,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)?;
    }
    println!("{line}");
    drop(held);
    Ok(())
}
