//! The `unknown` scenario: NULL link tests from accounts nobody registered.
//!
//! Anyone who can reach the DC-09 port can name any account, and vakt ACKs a NULL from an
//! unknown account (an unregistered device must not be refused its link test). This sends
//! `--frames` NULLs, each from a new random account (10 hex digits starting with `F`, so
//! never one of the generated or fleet accounts), pipelined `--window` at a time over
//! `--connections` connections, and with `--server-pid` reads the server's resident memory
//! (`VmRSS`) before the flood, right after it, and `--settle-secs` later (after a
//! last-heard persistence period, 30 s by default). What the server keeps per unknown
//! account shows in the difference.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use vakt_proto::dc09::{self, FrameSpec};

use crate::idle::rss_kib;
use crate::net::{connect, drain_frames};

/// Options of the `unknown` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Server address, HOST:PORT (DC-09 TCP).
    #[arg(long)]
    pub target: String,
    /// NULLs to send, each from a new random account.
    #[arg(long, default_value_t = 1_000_000)]
    pub frames: u64,
    /// Connections to send them over.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Frames in flight per connection.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Seconds to wait after the flood before reading the server's memory again.
    #[arg(long, default_value_t = 35.0)]
    pub settle_secs: f64,
    /// The server's process id, to measure its resident memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Per-batch answer timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_secs: f64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What one connection did.
#[derive(Default)]
struct Count {
    sent: u64,
    acked: u64,
    other: u64,
    failed: bool,
}

fn null_from(account: &str, seq: u16, out: &mut Vec<u8>) {
    dc09::encode_frame(
        &FrameSpec {
            id: "NULL",
            seq,
            receiver: None,
            line: Some("0"),
            account,
            data: b"",
            xdata: &[],
            timestamp: None,
        },
        out,
    );
}

/// One connection: batches of `window` NULLs, each batch's answers read before the next.
async fn flood(target: SocketAddr, frames: u64, window: usize, timeout: Duration) -> Count {
    let mut c = Count::default();
    let Some(mut s) = connect(target, Instant::now() + Duration::from_secs(30)).await else {
        c.failed = true;
        return c;
    };
    let mut out = Vec::with_capacity(window * 48);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    while c.sent < frames {
        out.clear();
        let n = window.min(usize::try_from(frames - c.sent).unwrap_or(window));
        {
            let mut rng = rand::rng();
            for _ in 0..n {
                let account = format!("F{:09X}", rng.random::<u64>() & 0xF_FFFF_FFFF);
                null_from(&account, (c.sent % 10_000) as u16, &mut out);
                c.sent += 1;
            }
        }
        if s.write_all(&out).await.is_err() {
            c.failed = true;
            return c;
        }
        let mut answered = 0;
        while answered < n {
            let r = tokio::time::timeout(timeout, s.read(&mut chunk)).await;
            let got = match r {
                Ok(Ok(k)) if k > 0 => k,
                _ => {
                    c.failed = true;
                    return c;
                }
            };
            buf.extend_from_slice(&chunk[..got]);
            answered += drain_frames(&mut buf, |f| match dc09::parse(f) {
                Ok(p) if p.id == "ACK" => c.acked += 1,
                _ => c.other += 1,
            });
        }
    }
    c
}

/// Runs the scenario.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let target: SocketAddr = tokio::net::lookup_host(&o.target)
        .await?
        .next()
        .context("target does not resolve")?;
    let conns = o.connections.max(1);
    let before = o.server_pid.map(rss_kib).transpose()?;
    let t0 = Instant::now();
    let timeout = Duration::from_secs_f64(o.timeout_secs.max(0.1));
    let per = o.frames / conns as u64;
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            let n = if i == 0 {
                o.frames - per * (conns as u64 - 1)
            } else {
                per
            };
            tokio::spawn(flood(target, n, o.window.max(1), timeout))
        })
        .collect();
    let mut total = Count::default();
    let mut failed = 0;
    for t in tasks {
        let c = t.await.unwrap_or_else(|_| Count {
            failed: true,
            ..Count::default()
        });
        total.sent += c.sent;
        total.acked += c.acked;
        total.other += c.other;
        failed += usize::from(c.failed);
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = o.server_pid.map(rss_kib).transpose()?;
    tokio::time::sleep(Duration::from_secs_f64(o.settle_secs.max(0.0))).await;
    let settled = o.server_pid.map(rss_kib).transpose()?;
    let kib = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    let line = format!(
        "unknown frames={} acked={} other={} failed_connections={} secs={:.1} rss_before_kib={} rss_after_kib={} rss_settled_kib={}",
        total.sent,
        total.acked,
        total.other,
        failed,
        secs,
        kib(before),
        kib(after),
        kib(settled),
    );
    if let Some(path) = &o.json {
        let v = serde_json::json!({
            "scenario": "unknown",
            "target": o.target,
            "frames": total.sent,
            "acked": total.acked,
            "other_answers": total.other,
            "failed_connections": failed,
            "secs": secs,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_settled_kib": settled,
            "settle_secs": o.settle_secs,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)?;
    }
    println!("{line}");
    Ok(())
}
