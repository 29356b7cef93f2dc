//! `vakt-loadtest storm`: the recovery flood after a telecom outage.
//!
//! N devices connect over TCP as fast as they can (or `--connect-rate` per second in all),
//! each drains a backlog of K distinct ADM-CID alarms request/response (send, wait for the
//! ACK, send the next, as a real device drains its queue), then sends a NULL heartbeat
//! every H s on the same connection until `--duration-secs` after the start.
//!
//! A frame not ACKed (timeout, closed connection: the device reconnects; NAK, DUH or a bad
//! answer) is counted as an error and sent again, the same frame, at most
//! [`MAX_ATTEMPTS`] times; a device that gives up on a frame has an incomplete backlog.
//!
//! Reported: connections accepted per second over the connect phase (connected devices /
//! time until the last one connected), time until every backlog was ACKed (the last
//! complete device), p99 ACK latency of the backlog frames, errors. One TCP socket per
//! device: N is capped by this process's open-files limit (20,000 on the benchmark machine,
//! less [`FD_RESERVE`](crate::stats::FD_RESERVE)); the server on the same machine needs N
//! sockets under its own limit too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use vakt_proto::dc09::{self, Scan};

use crate::dc09::resolve;
use crate::device::{self, Content, FrameGen, Identity, Kind, Mode};
use crate::net;
use crate::stats::{self, ErrorKind, Live, Sink, Stats, round3};

/// Attempts per frame before a device gives up on it.
pub const MAX_ATTEMPTS: u32 = 3;

/// Options of the `storm` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Server address, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Devices (one TCP connection each; capped by the open-files limit).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Alarms queued per device.
    #[arg(long, default_value_t = 5)]
    pub backlog: u32,
    /// Connects per second in all (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Seconds between heartbeats after the backlog.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat_secs: f64,
    /// Total run time in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration_secs: f64,
    /// Devices CSV (registry format).
    #[arg(long)]
    pub accounts_file: Option<PathBuf>,
    /// plain, aes128, aes256; or auto (the default with --accounts-file).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Per-frame answer timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_secs: f64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

struct Shared {
    target: SocketAddr,
    t0: Instant,
    end: Instant,
    backlog: u32,
    connect_rate: f64,
    heartbeat: Duration,
    timeout: Duration,
    live: Live,
    /// Latencies of backlog frames.
    flood: Sink,
    /// Latencies of heartbeats.
    hb_sink: Sink,
}

/// What one device saw.
struct Outcome {
    /// Backlog frames.
    flood: Stats,
    /// Heartbeats.
    heartbeat: Stats,
    /// Since t0, when it first connected.
    connected_at: Option<Duration>,
    /// Since t0, when its last backlog frame was ACKed (all of them ACKed).
    backlog_done_at: Option<Duration>,
}

fn secs(x: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        x.is_finite() && x > 0.0 && x <= 86_400.0,
        "{what} must be > 0 and <= 86400"
    );
    Ok(Duration::from_secs_f64(x))
}

/// Runs the storm and prints the summary line.
///
/// # Errors
/// Bad options, an unreadable accounts file, or an unwritable JSON file.
pub async fn run(o: Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(o.backlog > 0, "--backlog must be at least 1");
    anyhow::ensure!(
        o.connect_rate == 0.0 || (o.connect_rate.is_finite() && o.connect_rate >= 0.01),
        "--connect-rate must be 0 (as fast as possible) or >= 0.01"
    );
    let duration = secs(o.duration_secs, "--duration-secs")?;
    let heartbeat = secs(o.heartbeat_secs, "--heartbeat-secs")?;
    let timeout = secs(o.timeout_secs, "--timeout-secs")?;
    stats::check_fd_budget(o.devices as u64)?;
    let target = resolve(&o.target).await?;
    let ids = device::identities(o.devices, o.mode, o.accounts_file.as_deref())?;
    let mode = o.mode.unwrap_or(if o.accounts_file.is_some() {
        Mode::Auto
    } else {
        Mode::Plain
    });
    if let Some(limit) = stats::open_files_limit() {
        eprintln!(
            "storm: {} devices, open-files limit {limit} per process (the server needs {} sockets under its own)",
            o.devices, o.devices
        );
    }

    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        target,
        t0,
        end: t0 + duration,
        backlog: o.backlog,
        connect_rate: o.connect_rate,
        heartbeat,
        timeout,
        live: Live::default(),
        flood: stats::sink(),
        hb_sink: stats::sink(),
    });
    let mut tasks = JoinSet::new();
    for (idx, id) in ids.into_iter().enumerate() {
        tasks.spawn(device_task(shared.clone(), id, idx));
    }

    let pb = stats::progress_bar(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    let mut flood = Stats::new(&shared.flood);
    let mut hb = Stats::new(&shared.hb_sink);
    let mut connected = 0u64;
    let mut last_connect = Duration::ZERO;
    let mut complete = 0u64;
    let mut backlog_done = Duration::ZERO;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(r)) => {
                    flood.merge(&r.flood);
                    hb.merge(&r.heartbeat);
                    if let Some(c) = r.connected_at {
                        connected += 1;
                        last_connect = last_connect.max(c);
                    }
                    if let Some(d) = r.backlog_done_at {
                        complete += 1;
                        backlog_done = backlog_done.max(d);
                    }
                }
                Some(Err(e)) => anyhow::bail!("a device task failed: {e}"),
                None => break,
            },
            _ = tick.tick() => {
                pb.set_position(u64::try_from(t0.elapsed().as_millis()).unwrap_or(0));
                pb.set_message(format!(
                    "connected {}/{n}, backlog done {}/{n}, errors {}",
                    Live::get(&shared.live.connected),
                    Live::get(&shared.live.done),
                    Live::get(&shared.live.errors),
                    n = o.devices,
                ));
            }
        }
    }
    pb.finish_and_clear();

    let errors = flood.total_errors() + hb.total_errors();
    let mut all_errors = Stats::new(&shared.flood);
    all_errors.merge(&flood);
    all_errors.merge(&hb);
    let flood_lat = flood.latency();
    let hb_lat = hb.latency();
    #[allow(clippy::cast_precision_loss)]
    let connect_per_s = if last_connect.is_zero() {
        connected as f64
    } else {
        connected as f64 / last_connect.as_secs_f64()
    };
    let line = format!(
        "storm devices={} connect_per_s={connect_per_s:.0} backlog_done_s={:.3} p99_ms={:.3} errors={errors}",
        o.devices,
        backlog_done.as_secs_f64(),
        flood_lat.quantile_ms(0.99),
    );
    if let Some(path) = &o.json {
        let report = serde_json::json!({
            "scenario": "storm",
            "target": target.to_string(),
            "devices": o.devices,
            "mode": mode.as_str(),
            "backlog": o.backlog,
            "connect_rate": if o.connect_rate > 0.0 { serde_json::json!(o.connect_rate) } else { serde_json::Value::Null },
            "heartbeat_secs": heartbeat.as_secs_f64(),
            "duration_secs": duration.as_secs_f64(),
            "timeout_secs": timeout.as_secs_f64(),
            "open_files_limit": stats::open_files_limit(),
            "connected": connected,
            "connect_phase_s": round3(last_connect.as_secs_f64()),
            "connect_per_s": round3(connect_per_s),
            "backlog_complete_devices": complete,
            "backlog_frames_acked": flood.frames,
            "backlog_done_s": round3(backlog_done.as_secs_f64()),
            "p99_ms": round3(flood_lat.quantile_ms(0.99)),
            "flood_latency": flood_lat.json(),
            "heartbeats_acked": hb.frames,
            "heartbeat_latency": hb_lat.json(),
            "errors": errors,
            "errors_by_kind": all_errors.errors_json(),
            "summary": line,
        });
        stats::write_json(path, &report)?;
    }
    println!("{line}");
    Ok(())
}

async fn device_task(shared: Arc<Shared>, id: Identity, idx: usize) -> Outcome {
    let mut r = Outcome {
        flood: Stats::new(&shared.flood),
        heartbeat: Stats::new(&shared.hb_sink),
        connected_at: None,
        backlog_done_at: None,
    };
    if shared.connect_rate > 0.0 {
        #[allow(clippy::cast_precision_loss)]
        let at =
            shared.t0 + Duration::from_secs_f64((idx as f64 / shared.connect_rate).min(86_400.0));
        tokio::time::sleep_until(at.min(shared.end)).await;
    }
    let Some(mut stream) = net::connect(shared.target, shared.end).await else {
        shared.live.error(&mut r.flood, ErrorKind::Connect);
        return r;
    };
    r.connected_at = Some(shared.t0.elapsed());
    shared.live.connected.fetch_add(1, Ordering::Relaxed);
    let mut fgen = FrameGen::new(id);
    let mut out: Vec<u8> = Vec::with_capacity(256);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);

    // The backlog: K distinct alarms, each sent until ACKed (at most MAX_ATTEMPTS times).
    let mut complete = true;
    for _ in 0..shared.backlog {
        let content = fgen.pick(Kind::Alarm);
        let mut acked = false;
        for _ in 0..MAX_ATTEMPTS {
            if Instant::now() >= shared.end {
                break;
            }
            out.clear();
            let seq = fgen.current(content, &mut out);
            match exchange(
                &shared,
                &mut stream,
                &out,
                &mut buf,
                seq,
                fgen.identity(),
                &mut r.flood,
            )
            .await
            {
                Exchange::Acked => {
                    acked = true;
                    break;
                }
                Exchange::Rejected => {}
                Exchange::Broken => match net::connect(shared.target, shared.end).await {
                    Some(s) => {
                        stream = s;
                        buf.clear();
                    }
                    None => return r,
                },
            }
        }
        fgen.advance();
        complete &= acked;
        if Instant::now() >= shared.end {
            return r;
        }
    }
    if complete {
        r.backlog_done_at = Some(shared.t0.elapsed());
        shared.live.done.fetch_add(1, Ordering::Relaxed);
    }

    // Heartbeats until the end.
    let mut next = Instant::now() + shared.heartbeat;
    while next < shared.end {
        tokio::time::sleep_until(next).await;
        next += shared.heartbeat;
        out.clear();
        let seq = fgen.next(Content::Null, &mut out);
        if let Exchange::Broken = exchange(
            &shared,
            &mut stream,
            &out,
            &mut buf,
            seq,
            fgen.identity(),
            &mut r.heartbeat,
        )
        .await
        {
            match net::connect(shared.target, shared.end).await {
                Some(s) => {
                    stream = s;
                    buf.clear();
                }
                None => return r,
            }
        }
    }
    // Stay connected until the end, as a fleet does.
    tokio::time::sleep_until(shared.end).await;
    r
}

enum Exchange {
    /// A good ACK (latency recorded).
    Acked,
    /// A bad answer (counted); the connection is fine.
    Rejected,
    /// Timeout or closed connection (counted); reconnect.
    Broken,
}

/// Sends `frame` and waits for one answer; records the latency or the error into `stats`.
async fn exchange(
    shared: &Shared,
    stream: &mut TcpStream,
    frame: &[u8],
    buf: &mut Vec<u8>,
    seq: u16,
    id: &Identity,
    stats: &mut Stats,
) -> Exchange {
    let sent = Instant::now();
    let deadline = sent + shared.timeout;
    if !matches!(
        tokio::time::timeout_at(deadline, stream.write_all(frame)).await,
        Ok(Ok(()))
    ) {
        shared.live.error(stats, ErrorKind::Closed);
        return Exchange::Broken;
    }
    loop {
        match dc09::scan(buf) {
            Scan::Frame { start, end } => {
                let now = Instant::now();
                let verdict = device::check_reply(buf.get(start..end).unwrap_or_default(), seq, id);
                buf.drain(..end.min(buf.len()));
                return match verdict {
                    Ok(()) => {
                        stats.record(now.duration_since(sent));
                        shared.live.frame();
                        Exchange::Acked
                    }
                    Err(kind) => {
                        shared.live.error(stats, kind);
                        Exchange::Rejected
                    }
                };
            }
            Scan::Skip(n) | Scan::Oversized(n) => {
                buf.drain(..n.min(buf.len()));
                continue;
            }
            Scan::Incomplete => {}
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(2048);
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => {
                shared.live.error(stats, ErrorKind::Timeout);
                return Exchange::Broken;
            }
            Ok(Err(_) | Ok(0)) => {
                shared.live.error(stats, ErrorKind::Closed);
                return Exchange::Broken;
            }
            Ok(Ok(_)) => {}
        }
    }
}
