//! How many voice calls the whole server carries, both legs real: N alarm units call vakt
//! at once over SIP (INVITE with Digest, on the SCAIP endpoint), an operator answers each
//! from a WebRTC peer through the console's API (`POST /api/voice/{id}/answer`, which takes
//! the Call), and audio flows both ways at 50 packets a second, relayed and recorded by
//! vakt. N rises step by step (a fresh server each step) until the loss passes 1 % either
//! way. Reported per step: loss each way, the latency added on the way through vakt
//! (unit→browser and browser→unit, p50/p99), the server's CPU per call, and the players'.
//!
//! ```text
//! nice cargo bench --bench voice_calls
//! VAKT_CALLS=50,100,200 VAKT_CALLS_SECS=10 nice cargo bench --bench voice_calls
//! ```
//!
//! - **The server** is the real one (`vakt::server::start`), in this process on its own
//!   tokio runtime (threads named `vakt`, as `vakt serve` names them), with its journal,
//!   triage and recording threads (`vakt-*`): its CPU is those threads' scheduler time
//!   (`/proc/self/task/*/schedstat`). Voice is on, with `voice.max_calls`, the RTP and WebRTC
//!   port ranges sized to the step, and the SCAIP endpoint's per-source rate raised in this
//!   configuration only: every unit's SIP comes from one socket of this process.
//! - **The units** are `vakt::transport::sip::Endpoint::dial` (UAC, answering vakt's 401 with
//!   the unit's registry credentials; one device and one subscriber per call, so each call
//!   opens its own Call) and a UDP socket per call sending A-law RTP every 20 ms.
//! - **The operator** is one console session answering every call; each answer is a str0m
//!   peer offering PCMA (vakt passes the unit's frames through), full ICE and DTLS-SRTP.
//! - **The players** (both ends, `benches/voice_calls/players.rs`) run on their own runtime
//!   (threads `players`) on the same two cores. Each frame names its call, its number, its
//!   send time and whether it was sent in the measured window; the other end counts it
//!   against its call (a frame at the wrong call, or changed on the way, is counted apart)
//!   and times it from the send to the datagram's read. The latency is thus vakt's part
//!   plus the loopback and the players' own scheduling: an upper bound of what vakt adds.
//! - Each step: set-up (dial, ring, answer, connect), 2 s warm-up, `VAKT_CALLS_SECS` (10)
//!   measured, then the units hang up and every conversation must end with its recording on
//!   disk; the data directory is deleted after the step.
//!
//! Without `--bench` (`cargo test --benches`) one step of 3 calls for 2 s proves it works.
//! The table's columns: packets a second per call each way the players managed, loss each
//! way, latency p50/p99, the server's CPU (its recordings' writers apart) in all and per
//! call, the players' CPU, the recordings on disk, frames at the wrong call or changed and
//! out of order, what vakt itself counted dropped or lost in the window ([`DROP_COUNTERS`]),
//! the set-up time, the load average when the window closed.
//!
//! Measured on a quiet 2-core x86-64 machine (load average under 2.6), the players on the
//! same two cores: `VAKT_CALLS=50,100,200,300,400,500,600 VAKT_CALLS_SECS=10 cargo bench
//! --bench voice_calls`:
//!
//! | calls | players' packets/s per call | loss each way | unit→browser p50 / p99 | browser→unit p50 / p99 | server CPU per call (recording) | server | players |
//! |---|---|---|---|---|---|---|---|
//! | 50 | 50.0 | 0 % | 0.13 / 0.45 ms | 0.14 / 0.46 ms | 0.42 % of a core (0.06 %) | 21 % | 18 % |
//! | 100 | 50.0 | 0 % | 0.16 / 0.69 ms | 0.17 / 0.71 ms | 0.31 % (0.05 %) | 31 % | 25 % |
//! | 200 | 50.0 | 0 % | 0.36 / 1.38 ms | 0.36 / 1.41 ms | 0.28 % (0.04 %) | 56 % | 41 % |
//! | 300 | 50.1 | 0 % | 0.63 / 3.39 ms | 0.64 / 3.29 ms | 0.27 % (0.04 %) | 81 % | 59 % |
//! | 400 | 50.1 | 0 % | 1.47 / 14.3 ms | 1.46 / 13.8 ms | 0.26 % (0.04 %) | 104 % | 77 % |
//! | 500 | 48.5 | 0 % | 11.5 / 44.5 ms | 11.0 / 44.0 ms | 0.23 % (0.04 %) | 114 % | 81 % |
//! | 600 | 34.6 | 0 % | 45 / 144 ms | 45 / 144 ms | 0.19 % | 116 % | 79 % |
//!
//! - No frame was lost either way at any step, none reached another call or changed, vakt
//!   counted no drop, and every conversation left its recording.
//! - The loss never reached 1 %: the machine's two cores ran out first, shared by the server
//!   and the players (which take about 0.2-0.35 % of a core per call themselves). From 500
//!   calls the players could no longer send 50 packets a second (48.5, then 34.6 at 600,
//!   where the run stops), and the latency is threads waiting for a core.
//! - So this machine carries 400 calls with both legs relayed and recorded, with no loss
//!   and a p99 of 14 ms through the whole path, and 500 with no loss and a p99 of 45 ms.
//! - The server's CPU per call is 0.26-0.31 % of a core from 100 to 400 calls, and 0.42 %
//!   at 50, where its fixed costs show. The relay and recording alone (`voice_relay`) take
//!   0.15-0.19 %; the rest is the browser leg's SRTP and the calls' bookkeeping.
//! - The latency is the whole path's: loopback, vakt and the players' own scheduling. It is
//!   an upper bound of what vakt adds; `voice_relay` times the relay alone (p50 3-5 µs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/cpu.rs"]
mod cpu;
#[path = "voice_calls/players.rs"]
mod players;

use cpu::cpu_by;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use players::{Browser, Shared};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vakt::model::SipPassword;
use vakt::telemetry::ScaipMetrics;
use vakt::transport::accept::Scope;
use vakt::transport::sip::{
    self, Admission, CallEvent, CallHandle, CallHandler, CallId, Decision, Dial, DialVia, Endpoint,
    IncomingCall, InviteOptions, Request, ScaipHandler, SipOptions,
};
use vakt::voice::webrtc::WebRtcOptions;
use vakt_proto::sip::Message;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The longest any one wait of the set-up or the hang-up takes before the step fails.
const PATIENCE: Duration = Duration::from_secs(60);
/// Calls set up at once (dial, answer).
const SETUP_AT_ONCE: usize = 16;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The group of a thread of this process: the server's (`vakt*`, its recording writers
/// apart), the players', the rest.
fn group(name: &str) -> &'static str {
    if name.starts_with("vakt-rec") {
        "recording"
    } else if name.starts_with("vakt") {
        "server"
    } else if name.starts_with("players") {
        "players"
    } else {
        "other"
    }
}

/// The machine's load averages, as `uptime` gives them.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The server's own counts of what it dropped or found lost, summed over their labels (the
/// process's Prometheus registry, as `/metrics` renders it): RTP and relay frames dropped,
/// browser frames and datagrams dropped, recording failures (a frame the writer dropped
/// among them), and the loss vakt's receivers counted on the units' and the browsers' legs.
const DROP_COUNTERS: [&str; 7] = [
    "vakt_rtp_packets_dropped_total",
    "vakt_relay_frames_dropped_total",
    "vakt_webrtc_frames_dropped_total",
    "vakt_webrtc_datagrams_dropped_total",
    "vakt_recording_failures_total",
    "vakt_rtp_packets_lost_total",
    "vakt_webrtc_packets_lost_total",
];

fn drop_counts() -> [f64; 7] {
    let text = vakt::telemetry::prometheus().render();
    let mut out = [0.0; 7];
    for line in text.lines() {
        for (i, name) in DROP_COUNTERS.iter().enumerate() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if rest.starts_with([' ', '{']) {
                if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                    out[i] += v;
                }
            }
        }
    }
    out
}

/// The units' SIP endpoint: it only calls out, so it refuses whatever comes in.
struct Units {
    events: Mutex<HashMap<CallId, Vec<CallEvent>>>,
}

impl Units {
    /// The SDP of the `200 OK` of call `id`, once it has come; an error once it ended.
    fn answered(&self, id: CallId) -> Option<Result<Vec<u8>, String>> {
        let g = self.events.lock().unwrap();
        for e in g.get(&id)? {
            match e {
                CallEvent::Answered { sdp } => return Some(Ok(sdp.clone())),
                CallEvent::Ended(end) => return Some(Err(format!("the call ended: {end:?}"))),
                _ => {}
            }
        }
        None
    }

    /// Calls that have ended.
    fn ended(&self) -> usize {
        let g = self.events.lock().unwrap();
        g.values()
            .filter(|v| v.iter().any(|e| matches!(e, CallEvent::Ended(_))))
            .count()
    }
}

impl CallHandler for Units {
    fn admit(&self, _: &Message<'_>, _: &str, _: SocketAddr) -> Admission {
        Admission::Forbidden
    }
    fn incoming(&self, _: IncomingCall, _: CallHandle) -> Decision {
        Decision::Reject(403)
    }
    fn reoffer(&self, _: CallId, _: &[u8]) -> Result<Vec<u8>, u16> {
        Err(488)
    }
    fn event(&self, id: CallId, event: CallEvent) {
        self.events
            .lock()
            .unwrap()
            .entry(id)
            .or_default()
            .push(event);
    }
}

/// No SCAIP messages come to the units.
struct NoScaip;

impl ScaipHandler for NoScaip {
    fn authenticate(
        &self,
        _: &Message<'_>,
        _: &str,
        _: &str,
        _: SocketAddr,
    ) -> Result<String, String> {
        Err(String::from("Digest realm=\"units\", nonce=\"0\""))
    }
    async fn message(&self, _: Request<'_>) -> Vec<u8> {
        Vec::new()
    }
}

/// The address and port of the audio in an SDP (`c=` and `m=audio`).
fn media_addr(sdp: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(sdp).ok()?;
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .and_then(|a| a.trim().parse::<IpAddr>().ok())?;
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())?;
    Some(SocketAddr::new(ip, port))
}

/// Waits until `f` gives something, polling, or fails after [`PATIENCE`].
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Step {
    calls: usize,
    setup_secs: f64,
    secs: f64,
    /// Packets a second per call each way the players managed (unit, browser).
    rate: (f64, f64),
    loss_to_browser: f64,
    loss_to_unit: f64,
    to_browser: Histogram<u64>,
    to_unit: Histogram<u64>,
    /// Frames at the wrong call or changed, out of order, both ways.
    crossed_or_changed: u64,
    out_of_order: u64,
    cpu_server: f64,
    cpu_recording: f64,
    cpu_players: f64,
    cpu_other: f64,
    recordings: usize,
    recording_bytes: u64,
    /// Browsers whose connection ended before the hang-up (vakt closed it, or ICE lost it).
    closed_early: u64,
    /// [`DROP_COUNTERS`] over the measured window and the 0.5 s after it.
    drops: [f64; 7],
    load: String,
}

fn percent_lost(sent: u64, got: u64) -> f64 {
    if sent == 0 {
        100.0
    } else {
        sent.saturating_sub(got) as f64 / sent as f64 * 100.0
    }
}

fn run_step(calls: usize, secs: u64) -> Step {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = format!("{}\n", vakt::registers::devices::CSV_HEADER);
    for k in 0..calls {
        csv.push_str(&format!(
            "{},,,,,p{k},3600,Telia,Norr,pendant,unit{k},pw-unit-{k}\n",
            10_000 + k
        ));
    }
    vakt::cli::import_devices(dir.path(), csv.as_bytes()).unwrap();
    common::add_user(
        dir.path(),
        common::ADMIN.0,
        vakt::model::Role::Admin,
        common::ADMIN.1,
    );
    let mut cfg = common::test_config(dir.path());
    cfg.voice.max_calls = calls + 32;
    // Room for every call's ports, below Linux's ephemeral ports (where the players' are).
    cfg.voice.rtp.port_min = 16_384;
    cfg.voice.rtp.port_max = cfg.voice.rtp.port_max.max(16_384 + 2 * (calls as u16 + 64));
    cfg.voice.webrtc = WebRtcOptions {
        bind_addr: LOCALHOST,
        port_min: 24_000,
        port_max: 24_000 + calls as u16 + 63,
        ..WebRtcOptions::default()
    };
    // Every unit's SIP comes from the one socket of the units' endpoint.
    cfg.scaip.rate_per_source = 10_000;
    cfg.scaip.rate_burst = 100_000;

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vakt")
        .build()
        .unwrap();
    let players_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("players")
        .build()
        .unwrap();
    let srv = server_rt.block_on(common::start_with(cfg));
    let (http, scaip) = (srv.http.unwrap(), srv.scaip_udp.unwrap());
    let shared = Arc::new(Shared::new());
    let stop = CancellationToken::new();
    let setup_start = Instant::now();

    let units = Arc::new(Units {
        events: Mutex::new(HashMap::new()),
    });
    let (endpoint, handles, media) = players_rt.block_on(async {
        let ep = Arc::new(
            Endpoint::new(
                Arc::new(NoScaip),
                SipOptions {
                    arc_uri: "sip:units@127.0.0.1".into(),
                    rate_per_source: 10_000,
                    rate_burst: 100_000,
                    max_connections: 16,
                    max_per_source: 16,
                    idle_timeout: Duration::from_secs(60),
                },
                ScaipMetrics::new(),
                Scope::new(stop.clone()),
            )
            .with_calls(
                units.clone(),
                InviteOptions {
                    max_dialogs: calls + 32,
                    ..InviteOptions::default()
                },
            ),
        );
        let sock = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let local = sock.local_addr().unwrap();
        tokio::spawn(sip::serve_udp(sock, ep.clone()));
        tokio::task::yield_now().await;

        // Every unit calls: its RTP socket first (its port is in the offer).
        let mut handles = Vec::with_capacity(calls);
        let mut media = Vec::with_capacity(calls);
        for k in 0..calls {
            let rtp = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
            let port = rtp.local_addr().unwrap().port();
            let offer = format!(
                "v=0\r\no=unit{k} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
            );
            let dial = Dial {
                uri: format!("sip:arc@{scaip}"),
                from: format!("sip:unit{k}@{local}"),
                via: DialVia::Udp(scaip),
                offer: offer.into_bytes(),
                credentials: Some((format!("unit{k}"), SipPassword::new(format!("pw-unit-{k}")))),
                headers: Vec::new(),
            };
            let h = loop {
                match ep.dial(dial.clone()).await {
                    Ok(h) => break h,
                    Err(sip::DialError::NoUdp) => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => panic!("unit {k} cannot call: {e}"),
                }
            };
            handles.push(h);
            media.push(rtp);
            // Not all at once: a burst of INVITEs is the flood the endpoint bounds.
            if k % SETUP_AT_ONCE == SETUP_AT_ONCE - 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (ep, handles, media)
    });

    // Every call rings on its own Call; the operator answers each from a browser.
    let (unit_tasks, browser_tasks) = players_rt.block_on(async {
        let mut op = common::Client::login(http, common::ADMIN.0, common::ADMIN.1).await;
        let mut ringing: HashMap<String, u64> = HashMap::new();
        let start = Instant::now();
        while ringing.len() < calls {
            let v = op.get("/api/voice").await.json();
            for c in v.as_array().unwrap() {
                if let (Some(s), Some(_)) = (c["subscriber"].as_str(), c["call"].as_u64()) {
                    ringing.insert(s.to_owned(), c["id"].as_u64().unwrap());
                }
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{} of {calls} calls ringing on their Calls",
                ringing.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut browsers = JoinSet::new();
        let mut unit_tasks = Vec::with_capacity(calls);
        let mut browser_tasks = Vec::with_capacity(calls);
        let run = |(k, browser, answer): (usize, Browser, String)| {
            browser
                .run(&answer, k as u32, shared.clone(), stop.clone())
                .unwrap()
        };
        for k in 0..calls {
            let conv = ringing[&format!("p{k}")];
            let mut op = op.clone();
            browsers.spawn(async move {
                let (browser, offer) = Browser::offer().await.unwrap();
                let r = op
                    .post(
                        &format!("/api/voice/{conv}/answer"),
                        serde_json::json!({ "sdp": offer }),
                    )
                    .await;
                assert_eq!(r.status, 200, "answering call {k}: {}", r.body);
                let answer = r.json()["sdp"].as_str().unwrap().to_owned();
                (k, browser, answer)
            });
            while browsers.len() >= SETUP_AT_ONCE {
                browser_tasks.push(run(browsers.join_next().await.unwrap().unwrap()));
            }
        }
        while let Some(b) = browsers.join_next().await {
            browser_tasks.push(run(b.unwrap()));
        }
        // Each unit got its 200 OK: its media starts.
        for (k, (h, socket)) in handles.iter().zip(media).enumerate() {
            let id = h.id();
            let sdp = until("the unit's 200 OK", || units.answered(id))
                .await
                .unwrap_or_else(|e| panic!("call {k}: {e}"));
            let to = media_addr(&sdp).expect("vakt's RTP address in its answer");
            unit_tasks.push(players::unit(
                socket,
                to,
                k as u32,
                shared.clone(),
                stop.clone(),
            ));
        }
        until("every browser to connect", || {
            (shared.connected.load(Ordering::Relaxed) as usize >= calls).then_some(())
        })
        .await;
        (unit_tasks, browser_tasks)
    });
    let setup_secs = setup_start.elapsed().as_secs_f64();

    // Warm up, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let sent0 = (
        shared.to_browser.sent_all.load(Ordering::Relaxed),
        shared.to_unit.sent_all.load(Ordering::Relaxed),
    );
    let c0 = cpu_by(group);
    let drops0 = drop_counts();
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(secs));
    shared.measuring.store(false, Ordering::Relaxed);
    let c1 = cpu_by(group);
    let elapsed = t0.elapsed().as_secs_f64();
    let sent1 = (
        shared.to_browser.sent_all.load(Ordering::Relaxed),
        shared.to_unit.sent_all.load(Ordering::Relaxed),
    );
    let load_now = load();
    // What was sent in the window lands.
    std::thread::sleep(Duration::from_millis(500));
    let drops1 = drop_counts();
    let drops: [f64; 7] = std::array::from_fn(|i| drops1[i] - drops0[i]);
    let closed_early = shared.closed.load(Ordering::Relaxed);

    // The units hang up; every conversation ends, with its recording.
    players_rt.block_on(async {
        for h in &handles {
            let _ = h.hang_up();
        }
        until("every call to end", || {
            (units.ended() >= calls).then_some(())
        })
        .await;
        let mut op = common::Client::login(http, common::ADMIN.0, common::ADMIN.1).await;
        let start = Instant::now();
        loop {
            let v = op.get("/api/voice").await.json();
            if v.as_array().unwrap().is_empty() {
                break;
            }
            assert!(start.elapsed() < PATIENCE, "conversations still on: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    stop.cancel();
    let (to_browser, to_unit) = players_rt.block_on(async {
        let mut to_browser = players::histogram();
        let mut to_unit = players::histogram();
        for t in browser_tasks {
            to_browser.add(t.await.unwrap()).unwrap();
        }
        for t in unit_tasks {
            to_unit.add(t.await.unwrap()).unwrap();
        }
        (to_browser, to_unit)
    });
    drop(endpoint);
    server_rt.block_on(srv.stop()).unwrap();
    let (mut recordings, mut recording_bytes) = (0, 0);
    for f in std::fs::read_dir(dir.path().join("recordings"))
        .unwrap()
        .flatten()
    {
        if f.path().extension().is_some_and(|e| e == "wav") {
            recordings += 1;
            recording_bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    players_rt.shutdown_timeout(Duration::from_secs(2));
    server_rt.shutdown_timeout(Duration::from_secs(2));
    assert_eq!(
        closed_early, 0,
        "browsers lost their connection during the step"
    );

    let l = |leg: &players::Leg| {
        (
            leg.sent.load(Ordering::Relaxed),
            leg.received.load(Ordering::Relaxed),
            leg.crossed.load(Ordering::Relaxed) + leg.changed.load(Ordering::Relaxed),
            leg.out_of_order.load(Ordering::Relaxed),
        )
    };
    let (b, u) = (l(&shared.to_browser), l(&shared.to_unit));
    let used = |g: &str| (c1.get(g).unwrap_or(&0.0) - c0.get(g).unwrap_or(&0.0)) / elapsed;
    Step {
        calls,
        setup_secs,
        secs: elapsed,
        rate: (
            (sent1.0 - sent0.0) as f64 / calls as f64 / elapsed,
            (sent1.1 - sent0.1) as f64 / calls as f64 / elapsed,
        ),
        loss_to_browser: percent_lost(b.0, b.1),
        loss_to_unit: percent_lost(u.0, u.1),
        to_browser,
        to_unit,
        crossed_or_changed: b.2 + u.2,
        out_of_order: b.3 + u.3,
        cpu_server: used("server"),
        cpu_recording: used("recording"),
        cpu_players: used("players"),
        cpu_other: used("other"),
        recordings,
        recording_bytes,
        closed_early,
        drops,
        load: load_now,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it with nothing: then one
    // short step proves it works.
    let benching = std::env::args().any(|a| a == "--bench");
    let steps: Vec<usize> = std::env::var("VAKT_CALLS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if benching {
                vec![50, 100, 150, 200, 250, 300, 400, 500]
            } else {
                vec![3]
            }
        });
    let secs = env_or("VAKT_CALLS_SECS", if benching { 10 } else { 2 });
    println!(
        "calls | pps/call unit,browser | loss unit→browser % | loss browser→unit % | unit→browser p50/p99 ms | browser→unit p50/p99 ms | server CPU % (of which recording) | server CPU per call % | players CPU % | other % | recordings (MB) | wrong/changed, out of order | vakt dropped rtp,relay,webrtc frames,datagrams,rec; lost rtp,webrtc | set-up s | load 1/5/15"
    );
    for &calls in &steps {
        let s = run_step(calls, secs);
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let server = s.cpu_server + s.cpu_recording;
        println!(
            "{:5} | {:5.1},{:5.1} | {:19.3} | {:19.3} | {:>6.2} / {:<6.2} | {:>6.2} / {:<6.2} | {:>6.1} ({:5.1}) | {:21.3} | {:13.1} | {:7.1} | {:4} ({:6.1}) | {}, {} | {} | {:8.1} | {}   ({:.1} s)",
            s.calls,
            s.rate.0,
            s.rate.1,
            s.loss_to_browser,
            s.loss_to_unit,
            ms(&s.to_browser, 0.5),
            ms(&s.to_browser, 0.99),
            ms(&s.to_unit, 0.5),
            ms(&s.to_unit, 0.99),
            server * 100.0,
            s.cpu_recording * 100.0,
            server / s.calls as f64 * 100.0,
            s.cpu_players * 100.0,
            s.cpu_other * 100.0,
            s.recordings,
            s.recording_bytes as f64 / 1e6,
            s.crossed_or_changed,
            s.out_of_order,
            s.drops.map(|d| d.to_string()).join(","),
            s.setup_secs,
            s.load,
            s.secs,
        );
        assert_eq!(
            s.crossed_or_changed, 0,
            "a frame reached the wrong call or changed"
        );
        assert_eq!(s.recordings, s.calls, "one recording per conversation");
        if s.closed_early > 0 {
            println!(
                "{} browsers lost their connection at {calls} calls",
                s.closed_early
            );
            break;
        }
        if s.loss_to_browser >= 1.0 || s.loss_to_unit >= 1.0 {
            println!("loss reached 1 % at {calls} calls");
            break;
        }
        // Below 45 packets a second the players no longer offer the load (the cores are
        // full, or taken by other work on the machine): a further step measures nothing more.
        if s.rate.0 < 45.0 || s.rate.1 < 45.0 {
            println!("the players could not send 45 packets a second per call at {calls} calls");
            break;
        }
    }
}
