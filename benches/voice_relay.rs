//! How many relayed and recorded calls this machine carries: N calls at once, each a unit
//! socket and an operator socket on 127.0.0.1 sending 50 packets a second each way through a
//! `voice::media::Relay` (the operator's side a plain-RTP `UdpOperator`), every call
//! recorded. N rises step by step until the loss reaches 1 % either way or the CPU is
//! saturated. Reported per step: loss each way, the relay's added latency (packet in to
//! packet out, p50 and p99 of the calls' HDR histograms), the peers' end-to-end latency, and
//! CPU (the relays' runtime and the recordings' writers, apart from the peers' runtime).
//!
//! ```text
//! cargo bench --bench voice_relay
//! VAKT_RELAY_CALLS=50,100,200 VAKT_RELAY_SECS=5 cargo bench --bench voice_relay
//! ```
//!
//! Each step lasts 1 s of warm-up and `VAKT_RELAY_SECS` (5) of measure; the recordings go to
//! a temporary folder that is deleted after each step.
//!
//! Measured on a quiet 2-core x86-64 machine (the peers in the same process, on the same
//! cores), the recordings' writers draining their queues on a 100 ms tick:
//! `VAKT_RELAY_CALLS=100,300,500,700 cargo bench --bench voice_relay`:
//!
//! | calls | loss each way | relay p50 | relay p99 (median / worst call) | CPU per call (relay + recording) | whole process |
//! |---|---|---|---|---|---|
//! | 100 | 0 % | 5 µs | 24 / 59 µs | 0.19 % of a core | 33 % |
//! | 300 | 0 % | 5 µs | 29 / 112 µs | 0.18 % | 88 % |
//! | 500 | 0 % | 4 µs | 29 / 311 µs | 0.15 % | 120 % |
//! | 700 | 0 % | 3 µs | 25 / 711 µs | 0.12 % | 132 % |
//!
//! No recording frame was dropped at any step. Before the writers drained on a tick (one
//! wake-up per frame) the same machine stopped at 500-600 calls, with 0.24-0.33 % of a core
//! per call and a relay p50 of 9-12 µs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

#[path = "common/cpu.rs"]
mod cpu;
#[path = "../tests/voice_media/peers.rs"]
mod peers;

use cpu::cpu_by;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use jiff::Timestamp;
use peers::UdpOperator;
use tokio::net::UdpSocket;
use vakt::telemetry::RecordingMetrics;
use vakt::voice::media::{EarlyMedia, Media, MediaOptions, Relay, RelayStats, SipLeg};
use vakt::voice::record::{Recorder, RecordingId, RecordingOptions};
use vakt::voice::tone::ToneGen;
use vakt_proto::g711::Law;
use vakt_proto::rtp::{self, Header};
use vakt_proto::sdp::{Codec, Direction, Negotiated};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The group of a thread of this process, by the first word of its name.
fn group(name: &str) -> &'static str {
    match name {
        n if n.starts_with("relay") => "relay",
        n if n.starts_with("vakt-rec") => "recording",
        n if n.starts_with("peers") => "peers",
        _ => "other",
    }
}

/// Nanoseconds since `epoch`, written in a payload's first 8 bytes by the sender.
fn stamp(payload: &mut [u8], epoch: Instant) {
    let ns = epoch.elapsed().as_nanos() as u64;
    payload[..8].copy_from_slice(&ns.to_be_bytes());
}

fn read_stamp(payload: &[u8], epoch: Instant) -> Option<Duration> {
    let ns = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    epoch.elapsed().checked_sub(Duration::from_nanos(ns))
}

/// What the peers saw.
#[derive(Default)]
struct Counts {
    unit_sent: AtomicU64,
    unit_received: AtomicU64,
    operator_sent: AtomicU64,
    operator_received: AtomicU64,
}

struct CallSetup {
    relay: Relay<UdpOperator>,
    recorder: Recorder,
    op_side: SocketAddr,
}

struct Step {
    calls: usize,
    loss_to_operator: f64,
    loss_to_unit: f64,
    relay_p50: Duration,
    relay_p99: Duration,
    relay_p99_max: Duration,
    e2e: [(Duration, Duration); 2],
    cpu_relay: f64,
    cpu_recording: f64,
    cpu_peers: f64,
    cpu_total: f64,
    secs: f64,
    /// Packets a second each way per call the peers managed to send.
    rate: f64,
    /// Frames the recordings dropped (their writers behind), of both channels, whole run.
    rec_frames_dropped: u64,
    rec_failures: u64,
}

fn percentile(mut v: Vec<Duration>, q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn run_step(calls: usize, secs: u64, first_port: u16) -> Step {
    let relay_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("relay")
        .enable_all()
        .build()
        .unwrap();
    let peers_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("peers")
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rec_opts = RecordingOptions::in_data_dir(tmp.path());
    let media = Media::new(MediaOptions {
        bind_addr: LOCALHOST,
        port_min: first_port,
        port_max: first_port + (calls as u16) * 2 + 199,
        ..MediaOptions::default()
    })
    .unwrap();
    let metrics = RecordingMetrics::new();
    let epoch = Instant::now();

    // Set up every call on the relays' runtime: ports, legs, relays, operator sides,
    // recordings.
    let (setups, sockets): (Vec<CallSetup>, Vec<_>) = relay_rt.block_on(async {
        let mut out = Vec::with_capacity(calls);
        for k in 0..calls {
            let unit = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
            let operator = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
            let port = media.bind().unwrap();
            let negotiated = Negotiated {
                codec: Codec::Pcma,
                payload_type: 8,
                dtmf_payload_type: Some(101),
                remote: Some(unit.local_addr().unwrap()),
                direction: Direction::SendRecv,
                ptime_ms: 20,
                rtcp_mux: false,
                media_index: 0,
            };
            let leg = SipLeg::new(port, negotiated).unwrap();
            let relay = Relay::start(leg, EarlyMedia::Silence).unwrap();
            let side = UdpOperator::new(Law::Alaw, operator.local_addr().unwrap()).await;
            let op_side = side.local_addr();
            relay.attach(side).unwrap();
            let id = RecordingId::new(
                k as u64 + 1,
                1,
                Timestamp::from_second(1_800_000_000).unwrap(),
            );
            let recorder = Recorder::start(&rec_opts, id, Instant::now(), &metrics)
                .await
                .unwrap();
            relay.record(recorder.tap()).unwrap();
            out.push((
                CallSetup {
                    relay,
                    recorder,
                    op_side,
                },
                (unit, operator),
            ));
        }
        out.into_iter().unzip()
    });

    // The peers: one sender for all, every 20 ms a packet from each unit and each operator;
    // a receiver per socket counting, and timing the stamped payloads.
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stop_recv = Arc::new(AtomicBool::new(false));
    let hist = |_: ()| {
        Arc::new(std::sync::Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 10_000_000, 2).unwrap(),
        ))
    };
    let e2e_to_op = hist(());
    let e2e_to_unit = hist(());
    let measuring = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let pairs: Vec<(Arc<UdpSocket>, SocketAddr, Arc<UdpSocket>, SocketAddr)> =
        peers_rt.block_on(async {
            setups
                .iter()
                .zip(sockets)
                .map(|(c, (u, o))| {
                    u.set_nonblocking(true).unwrap();
                    o.set_nonblocking(true).unwrap();
                    (
                        Arc::new(UdpSocket::from_std(u).unwrap()),
                        c.relay.local_addr(),
                        Arc::new(UdpSocket::from_std(o).unwrap()),
                        c.op_side,
                    )
                })
                .collect()
        });
    for (unit, _, operator, _) in &pairs {
        for (socket, to_unit) in [(unit.clone(), true), (operator.clone(), false)] {
            let (counts, stop, measuring) = (counts.clone(), stop_recv.clone(), measuring.clone());
            let hist = if to_unit {
                e2e_to_unit.clone()
            } else {
                e2e_to_op.clone()
            };
            handles.push(peers_rt.spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut local = Vec::with_capacity(64);
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf))
                            .await
                    else {
                        continue;
                    };
                    let Ok(p) = rtp::parse(&buf[..n]) else {
                        continue;
                    };
                    if p.header.payload_type != 8 {
                        continue;
                    }
                    let c = if to_unit {
                        &counts.unit_received
                    } else {
                        &counts.operator_received
                    };
                    if let Some(d) = read_stamp(p.payload, epoch) {
                        // Only the stamped frames the peers sent (not the relay's own
                        // silence) count.
                        if d < Duration::from_secs(10) {
                            c.fetch_add(1, Ordering::Relaxed);
                            if measuring.load(Ordering::Relaxed) {
                                local.push(d);
                                if local.len() == local.capacity() {
                                    let mut h = hist.lock().unwrap();
                                    for d in local.drain(..) {
                                        h.saturating_record(d.as_micros().max(1) as u64);
                                    }
                                }
                            }
                        }
                    }
                }
                let mut h = hist.lock().unwrap();
                for d in local.drain(..) {
                    h.saturating_record(d.as_micros().max(1) as u64);
                }
            }));
        }
    }
    let frame = ToneGen::new(440.0, -10.0).frame(Law::Alaw);
    let sender = {
        let (counts, stop) = (counts.clone(), stop.clone());
        let pairs = pairs.clone();
        peers_rt.spawn(async move {
            // Every millisecond a twentieth of the calls send, so each sends every 20 ms
            // and the packets are spread as independent units' would be.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut out = Vec::with_capacity(200);
            let mut payload = frame.clone();
            let mut j: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let k = j / 20;
                for (i, (unit, relay, operator, op_side)) in pairs.iter().enumerate() {
                    if i % 20 != (j % 20) as usize {
                        continue;
                    }
                    for (socket, to, ssrc, c) in [
                        (unit, relay, i as u32 * 2 + 1, &counts.unit_sent),
                        (operator, op_side, i as u32 * 2 + 2, &counts.operator_sent),
                    ] {
                        stamp(&mut payload, epoch);
                        out.clear();
                        Header {
                            marker: k == 0,
                            payload_type: 8,
                            sequence: k as u16,
                            timestamp: k.wrapping_mul(160),
                            ssrc,
                        }
                        .write(&payload, &mut out)
                        .unwrap();
                        if socket.try_send_to(&out, *to).is_ok() {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                j = j.wrapping_add(1);
            }
        })
    };

    // Warm up, then measure.
    std::thread::sleep(Duration::from_secs(1));
    let c0 = cpu_by(group);
    let sent0 = (
        counts.unit_sent.load(Ordering::Relaxed),
        counts.operator_sent.load(Ordering::Relaxed),
    );
    let recv0 = (
        counts.unit_received.load(Ordering::Relaxed),
        counts.operator_received.load(Ordering::Relaxed),
    );
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let c1 = cpu_by(group);
    let elapsed = t0.elapsed().as_secs_f64();
    // Stop sending, let what is in flight land, then count.
    stop.store(true, Ordering::Relaxed);
    peers_rt.block_on(async {
        let _ = sender.await;
    });
    std::thread::sleep(Duration::from_millis(300));
    stop_recv.store(true, Ordering::Relaxed);
    peers_rt.block_on(async {
        for h in handles {
            let _ = h.await;
        }
    });
    let sent = (
        counts.unit_sent.load(Ordering::Relaxed) - sent0.0,
        counts.operator_sent.load(Ordering::Relaxed) - sent0.1,
    );
    let received = (
        counts.operator_received.load(Ordering::Relaxed) - recv0.1,
        counts.unit_received.load(Ordering::Relaxed) - recv0.0,
    );
    let loss = |sent: u64, got: u64| {
        if sent == 0 {
            0.0
        } else {
            (sent.saturating_sub(got)) as f64 / sent as f64 * 100.0
        }
    };
    let stats: Vec<RelayStats> = relay_rt.block_on(async {
        let mut v = Vec::new();
        for c in &setups {
            v.push(c.relay.stats().await);
        }
        v
    });
    let p50s: Vec<Duration> = stats
        .iter()
        .flat_map(|s| [s.latency_to_operator.p50, s.latency_to_unit.p50])
        .collect();
    let p99s: Vec<Duration> = stats
        .iter()
        .flat_map(|s| [s.latency_to_operator.p99, s.latency_to_unit.p99])
        .collect();
    let e2e = |h: &Arc<std::sync::Mutex<Histogram<u64>>>| {
        let h = h.lock().unwrap();
        (
            Duration::from_micros(h.value_at_quantile(0.5)),
            Duration::from_micros(h.value_at_quantile(0.99)),
        )
    };
    let used = |g: &str| (c1.get(g).unwrap_or(&0.0) - c0.get(g).unwrap_or(&0.0)) / elapsed;
    let step = Step {
        calls,
        loss_to_operator: loss(sent.0, received.0),
        loss_to_unit: loss(sent.1, received.1),
        relay_p50: percentile(p50s, 0.5),
        relay_p99: percentile(p99s.clone(), 0.5),
        relay_p99_max: percentile(p99s, 1.0),
        e2e: [e2e(&e2e_to_op), e2e(&e2e_to_unit)],
        cpu_relay: used("relay"),
        cpu_recording: used("recording"),
        cpu_peers: used("peers"),
        cpu_total: ["relay", "recording", "peers", "other"]
            .iter()
            .map(|g| used(g))
            .sum(),
        secs: elapsed,
        rate: (sent.0 + sent.1) as f64 / 2.0 / calls as f64 / elapsed,
        rec_frames_dropped: 0,
        rec_failures: 0,
    };

    // Hang up: relays end, recordings finish, the folder goes.
    let (rec_frames_dropped, rec_failures) = relay_rt.block_on(async {
        let (mut dropped, mut failures) = (0, 0);
        for c in setups {
            c.relay.end();
            c.relay.ended().await;
            if let Ok(f) = c.recorder.finish(Instant::now()).await {
                dropped += f.frames_dropped;
                failures += f.failures;
            }
        }
        (dropped, failures)
    });
    drop(pairs);
    peers_rt.shutdown_timeout(Duration::from_secs(1));
    relay_rt.shutdown_timeout(Duration::from_secs(1));
    drop(tmp);
    Step {
        rec_frames_dropped,
        rec_failures,
        ..step
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it with nothing: then one
    // short step proves it works.
    let benching = std::env::args().any(|a| a == "--bench");
    let steps: Vec<usize> = std::env::var("VAKT_RELAY_CALLS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if benching {
                vec![50, 100, 200, 400, 600, 800, 1_000, 1_250, 1_500]
            } else {
                vec![5]
            }
        });
    let secs = env_or("VAKT_RELAY_SECS", if benching { 5 } else { 1 });
    println!(
        "calls | pps/call | loss unit→op % | loss op→unit % | relay p50 µs | relay p99 µs (median, max of calls) | e2e unit→op p50/p99 ms | e2e op→unit p50/p99 ms | CPU relays % | CPU recordings % | CPU per call % | CPU peers % | CPU all % | rec. frames dropped (failures)"
    );
    for (i, &calls) in steps.iter().enumerate() {
        // Below Linux's ephemeral ports (32768..), where the peers' sockets are.
        let first_port = 20_000 + (i as u16 % 2) * 6_000;
        let s = run_step(calls, secs, first_port);
        let per_call = (s.cpu_relay + s.cpu_recording) / s.calls as f64 * 100.0;
        println!(
            "{:5} | {:8.1} | {:14.3} | {:14.3} | {:12} | {:>10} / {:<10} | {:>6.2} / {:<6.2} | {:>6.2} / {:<6.2} | {:12.1} | {:16.1} | {:14.3} | {:11.1} | {:9.1} | {} ({})   ({:.1} s)",
            s.calls,
            s.rate,
            s.loss_to_operator,
            s.loss_to_unit,
            s.relay_p50.as_micros(),
            s.relay_p99.as_micros(),
            s.relay_p99_max.as_micros(),
            s.e2e[0].0.as_secs_f64() * 1e3,
            s.e2e[0].1.as_secs_f64() * 1e3,
            s.e2e[1].0.as_secs_f64() * 1e3,
            s.e2e[1].1.as_secs_f64() * 1e3,
            s.cpu_relay * 100.0,
            s.cpu_recording * 100.0,
            per_call,
            s.cpu_peers * 100.0,
            s.cpu_total * 100.0,
            s.rec_frames_dropped,
            s.rec_failures,
            s.secs,
        );
        if s.loss_to_operator >= 1.0 || s.loss_to_unit >= 1.0 {
            println!("loss reached 1 % at {calls} calls");
            break;
        }
        // Both channels, 50 frames a second each, for the whole run (about secs + 1.5 s).
        let recorded = calls as f64 * 100.0 * (s.secs + 1.5);
        if s.rec_frames_dropped as f64 >= recorded / 100.0 {
            println!("the recordings dropped 1 % of their frames at {calls} calls");
            break;
        }
        if s.rate < 49.0 {
            println!("the peers could not send 50 packets a second per call at {calls} calls");
            break;
        }
        if s.cpu_total >= 1.9 {
            println!("the CPU is saturated at {calls} calls");
            break;
        }
    }
}
