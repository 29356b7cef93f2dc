//! `vakt-loadtest dc09`: C simulated devices, one task and one connection (or UDP socket)
//! each, sending DC-09 frames and checking every answer.
//!
//! Phases: every device connects (bounded retry; at most 60 s for all); then the clock
//! starts: `--warmup-secs` of traffic that is not counted, then `--duration-secs` measured;
//! then sending stops and the answers still in flight are awaited (at most the per-frame
//! timeout). A frame counts when it was sent inside the measured window and its good ACK
//! arrived before the window closed. Errors are counted over the whole run, warmup and
//! drain included (an error is never hidden).
//!
//! TCP: `--window W` frames in flight per connection (1 = request/response, as a real
//! device). Answers are read with a streaming LF..CR framer ([`dc09::scan`] via
//! [`net::drain_frames`]), matched in order (vakt answers a connection's frames in order).
//! A timeout or a closed connection fails every frame in flight and the device reconnects.
//!
//! UDP (`--udp`): one datagram per frame, answers matched by sequence number, per-frame
//! timeout.
//!
//! [`dc09::scan`]: vakt_proto::dc09::scan

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::device::{self, FrameGen, Identity, Kind, Mode};
use crate::net::{self, Pacer};
use crate::stats::{self, ErrorKind, Live, Sink, Stats, round3};

/// Longest time all devices together may take to connect before the clock starts.
const CONNECT_PHASE: Duration = Duration::from_secs(60);
/// Most frames in flight per connection.
pub const MAX_WINDOW: usize = 4096;

/// Options of the `dc09` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Server address, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Simulated devices, one connection (or UDP socket) each.
    #[arg(long, default_value_t = 10)]
    pub connections: usize,
    /// Measured seconds (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// plain, aes128, aes256; or auto (rows as they are; the default with --accounts-file).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// What the devices send.
    #[arg(long, value_enum, default_value_t = Kind::Heartbeat)]
    pub kind: Kind,
    /// UDP: one datagram per frame, answers matched by sequence number.
    #[arg(long)]
    pub udp: bool,
    /// Frames in flight per connection (1 = request/response, as a real device).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Total frames/s cap, split evenly over the connections (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Devices CSV (registry format) to take accounts, lines, receivers and keys from.
    #[arg(long)]
    pub accounts_file: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seconds of traffic before the measured window (not counted).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// Per-frame answer timeout in seconds (counted as an error).
    #[arg(long, default_value_t = 5.0)]
    pub timeout_secs: f64,
}

/// When the phases of a run begin and end.
#[derive(Clone, Copy, Debug)]
struct Timing {
    t0: Instant,
    measure_from: Instant,
    end: Instant,
}

/// What every device task shares.
struct Shared {
    target: SocketAddr,
    kind: Kind,
    window: usize,
    rate_per_conn: f64,
    connections: usize,
    timeout: Duration,
    live: Live,
    /// The run's latency histogram.
    sink: Sink,
    /// Devices done with their first connect attempt (connected or given up).
    settled: AtomicUsize,
    settled_notify: Notify,
}

/// Resolves `HOST:PORT` to its first address.
///
/// # Errors
/// When it does not resolve.
pub async fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(target)
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve {target}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{target} resolves to no address"))
}

fn secs(x: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        x.is_finite() && (0.0..=86_400.0).contains(&x),
        "{what} must be 0..=86400 seconds"
    );
    Ok(Duration::from_secs_f64(x))
}

/// Runs the scenario and prints the summary line.
///
/// # Errors
/// Bad options, an unreadable accounts file, or an unwritable JSON file.
pub async fn run(o: Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(
        (1..=MAX_WINDOW).contains(&o.window),
        "--window must be 1..={MAX_WINDOW}"
    );
    #[allow(clippy::cast_precision_loss)]
    let per_conn = o.rate / o.connections as f64;
    anyhow::ensure!(
        o.rate == 0.0 || (per_conn.is_finite() && per_conn >= 0.001),
        "--rate must be 0 (no cap) or at least 0.001 frames/s per connection"
    );
    let duration = secs(o.duration_secs, "--duration-secs")?;
    anyhow::ensure!(!duration.is_zero(), "--duration-secs must be > 0");
    let warmup = secs(o.warmup_secs, "--warmup-secs")?;
    let timeout = secs(o.timeout_secs, "--timeout-secs")?;
    anyhow::ensure!(!timeout.is_zero(), "--timeout-secs must be > 0");
    stats::check_fd_budget(o.connections as u64)?;
    let target = resolve(&o.target).await?;
    let ids = device::identities(o.connections, o.mode, o.accounts_file.as_deref())?;
    let mode = o.mode.unwrap_or(if o.accounts_file.is_some() {
        Mode::Auto
    } else {
        Mode::Plain
    });

    let shared = Arc::new(Shared {
        target,
        kind: o.kind,
        window: o.window,
        rate_per_conn: per_conn,
        connections: o.connections,
        timeout,
        live: Live::default(),
        sink: stats::sink(),
        settled: AtomicUsize::new(0),
        settled_notify: Notify::new(),
    });
    let (start_tx, start_rx) = watch::channel(None::<Timing>);
    let mut tasks = JoinSet::new();
    for (idx, id) in ids.into_iter().enumerate() {
        let shared = shared.clone();
        let start = start_rx.clone();
        if o.udp {
            tasks.spawn(udp_device(shared, id, idx, start));
        } else {
            tasks.spawn(tcp_device(shared, id, idx, start));
        }
    }

    // Connect phase.
    let total = warmup + duration;
    let pb = stats::progress_bar(u64::try_from(total.as_millis()).unwrap_or(u64::MAX));
    let connect_deadline = Instant::now() + CONNECT_PHASE;
    while shared.settled.load(Ordering::Relaxed) < o.connections
        && Instant::now() < connect_deadline
    {
        pb.set_message(format!(
            "connecting {}/{}",
            Live::get(&shared.live.connected),
            o.connections
        ));
        let _ = tokio::time::timeout(Duration::from_millis(200), shared.settled_notify.notified())
            .await;
    }
    let t0 = Instant::now();
    let timing = Timing {
        t0,
        measure_from: t0 + warmup,
        end: t0 + total,
    };
    let _ = start_tx.send(Some(timing));

    // Traffic.
    let mut merged = Stats::new(&shared.sink);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(s)) => merged.merge(&s),
                Some(Err(e)) => anyhow::bail!("a device task failed: {e}"),
                None => break,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                pb.set_position(u64::try_from(now.duration_since(t0).as_millis()).unwrap_or(0));
                let measured = now.saturating_duration_since(timing.measure_from).min(duration).as_secs_f64();
                #[allow(clippy::cast_precision_loss)]
                let rate = if measured > 0.0 { Live::get(&shared.live.frames) as f64 / measured } else { 0.0 };
                let phase = if now < timing.measure_from { "warmup " } else if now < timing.end { "" } else { "draining " };
                pb.set_message(format!(
                    "{phase}{rate:.0} frames/s, errors {}",
                    Live::get(&shared.live.errors)
                ));
            }
        }
    }
    pb.finish_and_clear();
    let lat = merged.latency();

    #[allow(clippy::cast_precision_loss)]
    let fps = merged.frames as f64 / duration.as_secs_f64();
    let line = format!(
        "frames/s={fps:.0} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} errors={}",
        lat.quantile_ms(0.50),
        lat.quantile_ms(0.99),
        lat.quantile_ms(0.999),
        merged.total_errors()
    );
    if let Some(path) = &o.json {
        let report = serde_json::json!({
            "scenario": "dc09",
            "target": target.to_string(),
            "transport": if o.udp { "udp" } else { "tcp" },
            "connections": o.connections,
            "mode": mode.as_str(),
            "kind": o.kind.as_str(),
            "window": o.window,
            "rate": if o.rate > 0.0 { serde_json::json!(o.rate) } else { serde_json::Value::Null },
            "duration_secs": duration.as_secs_f64(),
            "warmup_secs": warmup.as_secs_f64(),
            "timeout_secs": timeout.as_secs_f64(),
            "frames": merged.frames,
            "frames_per_s": round3(fps),
            "p50_ms": round3(lat.quantile_ms(0.50)),
            "p99_ms": round3(lat.quantile_ms(0.99)),
            "p999_ms": round3(lat.quantile_ms(0.999)),
            "latency": lat.json(),
            "errors": merged.total_errors(),
            "errors_by_kind": merged.errors_json(),
            "summary": line,
        });
        stats::write_json(path, &report)?;
    }
    println!("{line}");
    Ok(())
}

/// Tells the main task this device is done with its first connect.
fn settle(shared: &Shared) {
    shared.settled.fetch_add(1, Ordering::Relaxed);
    shared.settled_notify.notify_one();
}

/// Waits for the clock to start.
async fn start_signal(mut start: watch::Receiver<Option<Timing>>) -> Option<Timing> {
    start.wait_for(Option::is_some).await.ok().and_then(|t| *t)
}

/// Device `idx`'s pacer (`None` without a rate cap); the devices' first slots are spread
/// over one interval so they do not send in lockstep.
fn pacer_for(shared: &Shared, idx: usize, t0: Instant) -> Option<Pacer> {
    if shared.rate_per_conn <= 0.0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let offset = idx as f64 / (shared.connections as f64 * shared.rate_per_conn);
    Pacer::new(
        shared.rate_per_conn,
        t0 + Duration::from_secs_f64(offset.clamp(0.0, 3600.0)),
    )
}

/// Fills the window: appends frames to `out` (recording them in `inflight`) while the window
/// has room and the pacer allows.
fn fill(
    shared: &Shared,
    fgen: &mut FrameGen,
    pacer: &mut Option<Pacer>,
    inflight: &mut VecDeque<(u16, Instant)>,
    now: Instant,
    out: &mut Vec<u8>,
) {
    while inflight.len() < shared.window && pacer.as_mut().is_none_or(|p| p.take(now)) {
        let content = fgen.pick(shared.kind);
        let seq = fgen.next(content, out);
        inflight.push_back((seq, now));
    }
}

/// When to wake up: the oldest frame's timeout, or earlier when the pacer allows another send.
fn wake_at(
    shared: &Shared,
    pacer: Option<&Pacer>,
    inflight: &VecDeque<(u16, Instant)>,
    sending: bool,
    oldest: Instant,
) -> Instant {
    let mut wake = oldest + shared.timeout;
    if sending && inflight.len() < shared.window {
        if let Some(p) = pacer {
            wake = wake.min(p.next_slot());
        }
    }
    wake
}

fn fail_all(
    shared: &Shared,
    stats: &mut Stats,
    inflight: &mut VecDeque<(u16, Instant)>,
    kind: ErrorKind,
) {
    if inflight.is_empty() {
        shared.live.error(stats, kind);
    }
    for _ in inflight.drain(..) {
        shared.live.error(stats, kind);
    }
}

/// Checks one answer to the frame `(seq, sent)` received at `now`; records it.
fn judge(
    shared: &Shared,
    stats: &mut Stats,
    timing: &Timing,
    id: &Identity,
    raw: &[u8],
    (seq, sent): (u16, Instant),
    now: Instant,
) {
    match device::check_reply(raw, seq, id) {
        Ok(()) => {
            if sent >= timing.measure_from && now <= timing.end {
                stats.record(now.duration_since(sent));
                shared.live.frame();
            }
        }
        Err(kind) => shared.live.error(stats, kind),
    }
}

async fn tcp_device(
    shared: Arc<Shared>,
    id: Identity,
    idx: usize,
    start: watch::Receiver<Option<Timing>>,
) -> Stats {
    let mut stats = Stats::new(&shared.sink);
    let first = net::connect(shared.target, Instant::now() + CONNECT_PHASE).await;
    if first.is_some() {
        shared.live.connected.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.live.error(&mut stats, ErrorKind::Connect);
    }
    settle(&shared);
    let (Some(mut stream), Some(timing)) = (first, start_signal(start).await) else {
        return stats;
    };
    let mut fgen = FrameGen::new(id);
    let mut pacer = pacer_for(&shared, idx, timing.t0);
    let mut inflight: VecDeque<(u16, Instant)> = VecDeque::with_capacity(shared.window);
    let mut out = Vec::with_capacity(256 * shared.window.min(64));
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let now = Instant::now();
        let sending = now < timing.end;
        out.clear();
        if sending {
            fill(&shared, &mut fgen, &mut pacer, &mut inflight, now, &mut out);
        }
        if !out.is_empty()
            && !matches!(
                tokio::time::timeout(shared.timeout, stream.write_all(&out)).await,
                Ok(Ok(()))
            )
        {
            fail_all(&shared, &mut stats, &mut inflight, ErrorKind::Closed);
            match reconnect(&shared, &mut stats, &timing).await {
                Some(s) => {
                    stream = s;
                    buf.clear();
                    continue;
                }
                None => break,
            }
        }
        let Some(&(_, oldest)) = inflight.front() else {
            if !sending {
                break;
            }
            // Nothing in flight while sending: only when the pacer holds the next send back.
            let wake = pacer
                .as_ref()
                .map_or(now + Duration::from_millis(1), Pacer::next_slot);
            tokio::time::sleep_until(wake.min(timing.end)).await;
            continue;
        };
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let wake = wake_at(&shared, pacer.as_ref(), &inflight, sending, oldest);
        let failure = match tokio::time::timeout_at(wake, stream.read_buf(&mut buf)).await {
            Err(_) if Instant::now() < oldest + shared.timeout => None, // time to send more
            Err(_) => Some(ErrorKind::Timeout),
            Ok(Err(_) | Ok(0)) => Some(ErrorKind::Closed),
            Ok(Ok(_)) => {
                let now = Instant::now();
                let ident = fgen.identity();
                net::drain_frames(&mut buf, |raw| match inflight.pop_front() {
                    None => shared.live.error(&mut stats, ErrorKind::Unmatched),
                    Some(f) => judge(&shared, &mut stats, &timing, ident, raw, f, now),
                });
                None
            }
        };
        if let Some(kind) = failure {
            fail_all(&shared, &mut stats, &mut inflight, kind);
            match reconnect(&shared, &mut stats, &timing).await {
                Some(s) => {
                    stream = s;
                    buf.clear();
                }
                None => break,
            }
        }
    }
    stats
}

/// A new connection after a failure, while the run is still sending.
async fn reconnect(shared: &Shared, stats: &mut Stats, timing: &Timing) -> Option<TcpStream> {
    if Instant::now() >= timing.end {
        return None;
    }
    let s = net::connect(shared.target, timing.end).await;
    if s.is_none() && Instant::now() < timing.end {
        shared.live.error(stats, ErrorKind::Connect);
    }
    s
}

async fn udp_device(
    shared: Arc<Shared>,
    id: Identity,
    idx: usize,
    start: watch::Receiver<Option<Timing>>,
) -> Stats {
    let mut stats = Stats::new(&shared.sink);
    let local: SocketAddr = if shared.target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = match UdpSocket::bind(local).await {
        Ok(s) if s.connect(shared.target).await.is_ok() => Some(s),
        _ => None,
    };
    if sock.is_some() {
        shared.live.connected.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.live.error(&mut stats, ErrorKind::Connect);
    }
    settle(&shared);
    let (Some(sock), Some(timing)) = (sock, start_signal(start).await) else {
        return stats;
    };
    let mut fgen = FrameGen::new(id);
    let mut pacer = pacer_for(&shared, idx, timing.t0);
    let mut inflight: VecDeque<(u16, Instant)> = VecDeque::with_capacity(shared.window);
    let mut out = Vec::with_capacity(256);
    let mut rbuf = vec![0u8; 8192];
    loop {
        let now = Instant::now();
        let sending = now < timing.end;
        while sending
            && inflight.len() < shared.window
            && pacer.as_mut().is_none_or(|p| p.take(now))
        {
            out.clear();
            let content = fgen.pick(shared.kind);
            let seq = fgen.next(content, &mut out);
            match sock.send(&out).await {
                Ok(_) => inflight.push_back((seq, now)),
                Err(_) => {
                    shared.live.error(&mut stats, ErrorKind::Io);
                    break;
                }
            }
        }
        let Some(&(_, oldest)) = inflight.front() else {
            if !sending {
                break;
            }
            // Pacer holding back, or a send failed: wait a little.
            let wake = pacer
                .as_ref()
                .map_or(now + Duration::from_millis(10), Pacer::next_slot);
            tokio::time::sleep_until(wake.min(timing.end)).await;
            continue;
        };
        let wake = wake_at(&shared, pacer.as_ref(), &inflight, sending, oldest);
        match tokio::time::timeout_at(wake, sock.recv(&mut rbuf)).await {
            Err(_) => {
                let now = Instant::now();
                while inflight
                    .front()
                    .is_some_and(|&(_, sent)| sent + shared.timeout <= now)
                {
                    inflight.pop_front();
                    shared.live.error(&mut stats, ErrorKind::Timeout);
                }
            }
            // E.g. ICMP port unreachable reported on a connected socket: the frame in
            // flight times out and is counted then.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(1)).await,
            Ok(Ok(n)) => {
                let now = Instant::now();
                let dgram = rbuf.get(..n).unwrap_or_default();
                let Some(raw) = net::first_frame(dgram) else {
                    shared.live.error(&mut stats, ErrorKind::ReplyMalformed);
                    continue;
                };
                // A NAK or an unparseable answer carries no usable seq: it is charged to the
                // oldest frame in flight.
                let pos = match device::reply_seq(raw) {
                    Some(seq) => inflight.iter().position(|&(s, _)| s == seq),
                    None => Some(0),
                };
                match pos.and_then(|p| inflight.remove(p)) {
                    Some(f) => judge(&shared, &mut stats, &timing, fgen.identity(), raw, f, now),
                    None => shared.live.error(&mut stats, ErrorKind::Unmatched),
                }
            }
        }
    }
    stats
}
