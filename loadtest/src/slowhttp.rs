//! The `slow-http` scenario: slow HTTP clients against the console's listener.
//!
//! `--clients` clients connect to the HTTP listener (in waves of 500), each from one of
//! `--sources` local addresses (`--first-source`, the next, ...: Linux loopback takes any
//! address of 127/8), start a request (`GET /live HTTP/1.1`, a Host header) and then send
//! one more byte of a header that never ends every `--byte-every-secs` (slowloris), for
//! `--hold-secs`. Meanwhile `--probe-from`, another address, asks `GET /live` once a second.
//!
//! Reported: how many clients connected, how many the server cut (closed or reset the
//! connection) and after how long, how many were still open at the end, how many could not
//! connect; and whether the console kept answering the probe (answers, failures, slowest).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::idle::http_live;
use crate::net::connect_from;

/// Options of the `slow-http` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The HTTP listener, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Slow clients (each a file in this process and in the server).
    #[arg(long, default_value_t = 5_000)]
    pub clients: usize,
    /// Local addresses the clients come from, round robin from --first-source.
    #[arg(long, default_value_t = 1)]
    pub sources: u32,
    /// The first of the clients' local addresses.
    #[arg(long, default_value = "127.0.0.1")]
    pub first_source: std::net::Ipv4Addr,
    /// Seconds between two bytes of a client's unfinished header.
    #[arg(long, default_value_t = 10.0)]
    pub byte_every_secs: f64,
    /// Seconds to keep the clients going once they are connected.
    #[arg(long, default_value_t = 60.0)]
    pub hold_secs: f64,
    /// Probe `GET /live` once a second from this other local address (e.g. 127.0.0.2).
    #[arg(long)]
    pub probe_from: Option<IpAddr>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// How one slow client ended.
enum End {
    /// Could not connect.
    NoConnect,
    /// The server closed or reset it after this long.
    Cut(Duration),
    /// Still open at the end of the hold.
    Open,
}

async fn slow_client(target: SocketAddr, from: IpAddr, every: Duration, end: Instant) -> End {
    let Some(mut s) =
        connect_from(target, Some(from), Instant::now() + Duration::from_secs(10)).await
    else {
        return End::NoConnect;
    };
    let t0 = Instant::now();
    let head = format!("GET /live HTTP/1.1\r\nHost: {target}\r\nX-Slow: ");
    if s.write_all(head.as_bytes()).await.is_err() {
        return End::Cut(t0.elapsed());
    }
    let mut b = [0u8; 256];
    loop {
        let next = (Instant::now() + every).min(end);
        tokio::select! {
            r = s.read(&mut b) => match r {
                // An answer (e.g. 408) or a close: either way the server let go.
                Ok(_) | Err(_) => return End::Cut(t0.elapsed()),
            },
            () = tokio::time::sleep_until(next) => {}
        }
        if Instant::now() >= end {
            return End::Open;
        }
        if s.write_all(b"a").await.is_err() {
            return End::Cut(t0.elapsed());
        }
    }
}

/// Runs the scenario.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let target: SocketAddr = tokio::net::lookup_host(&o.target)
        .await?
        .next()
        .context("target does not resolve")?;
    let every = Duration::from_secs_f64(o.byte_every_secs.max(0.01));
    let sources = o.sources.max(1);
    let first = u32::from(o.first_source);
    let t0 = Instant::now();
    // Connecting 5,000 takes a few seconds: the hold is counted from the start.
    let end = t0 + Duration::from_secs_f64(o.hold_secs.max(1.0));
    let mut tasks = Vec::with_capacity(o.clients);
    for wave in (0..o.clients).collect::<Vec<_>>().chunks(500) {
        for &i in wave {
            let from = IpAddr::V4(std::net::Ipv4Addr::from(first + (i as u32 % sources)));
            tasks.push(tokio::spawn(slow_client(target, from, every, end)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The probe: GET /live once a second from another address.
    let probe = o.probe_from.map(|ip| {
        tokio::spawn(async move {
            let (mut ok, mut failed, mut slowest) = (0u32, 0u32, Duration::ZERO);
            while Instant::now() + Duration::from_secs(1) < end {
                let t = Instant::now();
                if http_live(target, ip, t + Duration::from_secs(5)).await {
                    ok += 1;
                    slowest = slowest.max(t.elapsed());
                } else {
                    failed += 1;
                }
                tokio::time::sleep_until(t + Duration::from_secs(1)).await;
            }
            (ok, failed, slowest)
        })
    });
    let (mut no_connect, mut open) = (0usize, 0usize);
    let mut cut: Vec<f64> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(End::NoConnect) | Err(_) => no_connect += 1,
            Ok(End::Cut(d)) => cut.push(d.as_secs_f64()),
            Ok(End::Open) => open += 1,
        }
    }
    let probe = match probe {
        Some(p) => Some(p.await?),
        None => None,
    };
    cut.sort_by(f64::total_cmp);
    let pct = |q: f64| -> Option<f64> {
        (!cut.is_empty()).then(|| cut[((cut.len() - 1) as f64 * q).round() as usize])
    };
    let secs = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let line = format!(
        "slow-http clients={} connected={} cut={} still_open={} connect_failed={} cut_p50_s={} cut_max_s={} probe_ok={} probe_failed={} probe_slowest_ms={}",
        o.clients,
        o.clients - no_connect,
        cut.len(),
        open,
        no_connect,
        secs(pct(0.5)),
        secs(pct(1.0)),
        probe.map_or("-".into(), |p| p.0.to_string()),
        probe.map_or("-".into(), |p| p.1.to_string()),
        probe.map_or("-".into(), |p| p.2.as_millis().to_string()),
    );
    if let Some(path) = &o.json {
        let v = serde_json::json!({
            "scenario": "slow-http",
            "target": o.target,
            "clients": o.clients,
            "sources": sources,
            "byte_every_secs": o.byte_every_secs,
            "hold_secs": o.hold_secs,
            "connected": o.clients - no_connect,
            "cut": cut.len(),
            "still_open": open,
            "connect_failed": no_connect,
            "cut_p50_s": pct(0.5),
            "cut_max_s": pct(1.0),
            "probe_ok": probe.map(|p| p.0),
            "probe_failed": probe.map(|p| p.1),
            "probe_slowest_ms": probe.map(|p| p.2.as_millis() as u64),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)?;
    }
    println!("{line}");
    Ok(())
}
