//! No ACK before durable, tested the hard way: the real `vakt` binary receives a stream of
//! distinct alarms from several connections and is killed with SIGKILL at random moments,
//! several times, restarting on the same data directory. Afterwards every frame that got an
//! ACK must be in the journal exactly once, and no frame may be there twice.
//!
//! After each restart every device first resends the frame it was waiting for when the
//! server died (as a real device does), so the dedup window across a crash is tested too.
//!
//! And every journaled alarm must have reached triage exactly once: each device's alarms
//! merge into its one open Call, whose alarm count must equal the device's journaled alarms
//! (no alarm lost between the ACK and triage, none counted twice by the replay at start).
//!
//! SCAIP devices (SIP over UDP and TCP, [`vakt::sim::luc::Luc`]) send alarms in the same rounds,
//! through the same kills: battery-low faults (answered `snu 0` once durable) and voice
//! alarms (held, `snu 4`, as no operator takes their Call). The same promise: no `<mrs>` with
//! `snu 0` or `4` for an alarm that is not in the journal, and every such alarm is there
//! exactly once (protocol SCAIP, account = `cid`, seq = `ref`), however often its `<mrq>` was
//! sent again: after an error or a restart, and as the polls of a held alarm.

//!
//! A kill -9 during an answered voice call
//! (`a_sigkill_during_an_answered_call_leaves_the_call_its_line_and_the_recording`): a unit
//! (played in the test, 440 Hz) calls, an operator answers through the API with a str0m peer
//! as the browser (1,000 Hz), audio flows for a few seconds, SIGKILL. After the restart on the
//! same data directory the Call is there, its timeline shows the conversation ended by the
//! restart, and the recording a supervisor plays holds the audio up to the kill (at most the
//! last second lost) with both tones on their channels.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vakt::sim::luc::{Exchange, Luc};
use vakt_proto::dc09::{self, FrameSpec};

const BIN: &str = env!("CARGO_BIN_EXE_vakt");
const DEVICES: usize = 6;
/// SCAIP devices: the even ones over UDP, the odd ones over TCP.
const SCAIP_DEVICES: usize = 4;

/// A small deterministic generator, seeded per run (printed, so a failure can be replayed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Where a started vakt listens.
#[derive(Clone, Copy, Debug)]
struct Addrs {
    dc09: SocketAddr,
    /// The console, when configured.
    http: Option<SocketAddr>,
    scaip_udp: SocketAddr,
    scaip_tcp: SocketAddr,
}

/// `line` without ANSI escape sequences (the log's colours).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters, then one final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address logged as `name=Some(address)` in the "vakt ready" line.
fn logged_addr(line: &str, name: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(&format!("{name}=Some("))? + name.len() + 6..];
    rest[..rest.find(')')?].parse().ok()
}

fn start(config: &Path) -> (Child, Addrs) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        // The "vakt ready" line (info, of vakt::server) has the SCAIP addresses.
        .env("RUST_LOG", "warn,vakt::server=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vakt starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut scaip = None;
    let mut http = None;
    let dc09 = loop {
        let line = lines
            .next()
            .expect("vakt printed its addresses before exiting")
            .expect("stderr readable");
        let line = strip_ansi(&line);
        if line.contains("vakt ready") {
            let udp = logged_addr(&line, "scaip_udp").expect("SCAIP UDP address");
            let tcp = logged_addr(&line, "scaip_tcp").expect("SCAIP TCP address");
            scaip = Some((udp, tcp));
            http = logged_addr(&line, "http");
        }
        if let Some(a) = line.strip_prefix("vakt: DC-09 TCP on ") {
            break a.trim().parse().expect("address");
        }
    };
    let (scaip_udp, scaip_tcp) = scaip.expect("\"vakt ready\" is logged before the DC-09 line");
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (
        child,
        Addrs {
            dc09,
            http,
            scaip_udp,
            scaip_tcp,
        },
    )
}

fn frame(device: usize, n: u32) -> Vec<u8> {
    // Distinct for every (device, n): account per device, n in seq (0..9999) and group.
    let account = format!("{:04X}", 0x1000 + device);
    let data = format!(
        "#{account}|1{:03} {:02} {:03}",
        [100, 101, 103, 111][n as usize % 4],
        n / 10_000 % 100,
        device + 1
    );
    let mut out = Vec::new();
    dc09::encode_frame(
        &FrameSpec {
            id: "ADM-CID",
            seq: (n % 10_000) as u16,
            receiver: None,
            line: Some("0"),
            account: &account,
            data: data.as_bytes(),
            xdata: &[],
            timestamp: None,
        },
        &mut out,
    );
    out
}

fn read_reply(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        out.push(b[0]);
        if b[0] == b'\r' {
            return Ok(out);
        }
    }
}

/// One device: sends frames one at a time, waiting for each ACK, until the server dies.
/// Returns the frame it was waiting for, if any.
fn device_run(
    addr: SocketAddr,
    device: usize,
    next: &mut u32,
    resend: Option<Vec<u8>>,
    acked: &Mutex<Vec<Vec<u8>>>,
    stop: &AtomicBool,
) -> Option<Vec<u8>> {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return resend;
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut current = resend;
    loop {
        let f = match current.take() {
            Some(f) => f,
            None => {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                *next += 1;
                frame(device, *next)
            }
        };
        if s.write_all(&f).is_err() {
            return Some(f);
        }
        match read_reply(&mut s) {
            Ok(r) => {
                let p = dc09::parse(&r).expect("valid answer");
                assert_eq!(p.id, "ACK", "answer {:?}", String::from_utf8_lossy(&r));
                let sent = dc09::parse(&f).unwrap();
                assert_eq!(p.seq, sent.seq, "ACK echoes the sequence number");
                acked.lock().unwrap().push(f);
            }
            Err(_) => return Some(f),
        }
    }
}

/// A SCAIP device's account (its `cid`, digits) and SIP credentials.
fn scaip_cid(device: usize) -> String {
    format!("{}", 700_001 + device)
}

fn scaip_user(device: usize) -> (String, String) {
    let cid = scaip_cid(device);
    (format!("luc{cid}"), format!("s3cret-{cid}"))
}

/// The devices CSV: every SCAIP device registered to a subscriber of its own, with its SIP
/// user (the DC-09 devices stay unregistered, as before).
fn scaip_devices_csv() -> String {
    let mut csv = format!("{}\n", vakt::registers::devices::CSV_HEADER);
    for d in 0..SCAIP_DEVICES {
        let (user, password) = scaip_user(d);
        csv.push_str(&format!(
            "{},,,,,crash-sub{d},,Telia,Norr,pendant,{user},{password}\n",
            scaip_cid(d)
        ));
    }
    csv
}

/// One SCAIP alarm (distinct `ref` per alarm), and how often the device polls it again once
/// held.
#[derive(Clone, Debug)]
struct ScaipAlarm {
    reference: String,
    body: String,
    /// A voice alarm (held, `snu 4`); else a battery-low fault (`snu 0` at once).
    voice: bool,
    polls: u8,
    /// The round it was first sent in.
    round: usize,
}

fn scaip_alarm(device: usize, n: u32, round: usize, rng: &mut Lcg) -> ScaipAlarm {
    let cid = scaip_cid(device);
    let reference = format!("D{device}A{n}");
    let voice = rng.next() % 3 == 0;
    let body = if voice {
        format!("<mrq><ref>{reference}</ref><cid>{cid}</cid><dty>3</dty></mrq>")
    } else {
        format!("<mrq><ref>{reference}</ref><cid>{cid}</cid><dty>3</dty><stc>16</stc></mrq>")
    };
    ScaipAlarm {
        reference,
        body,
        voice,
        polls: (rng.next() % 3) as u8,
        round,
    }
}

/// An `<mrs>` with `snu 0` or `4` a device received.
#[derive(Clone, Debug)]
struct ScaipAnswer {
    cid: String,
    reference: String,
    snu: u8,
    voice: bool,
    /// The rounds it was first sent in and answered in.
    sent: usize,
    round: usize,
}

/// What one SCAIP device carries from round to round.
struct ScaipDevice {
    device: usize,
    rng: Lcg,
    next: u32,
    /// What it sends next, oldest first: the alarm it waits for an answer to, then polls.
    queue: VecDeque<ScaipAlarm>,
    /// Its last held alarm: polled again after each restart, like a real device.
    held: Option<ScaipAlarm>,
    /// Requests sent again after an error, a timeout or a kill.
    resent: u32,
    /// Busy answers: snu 6, or a SIP code other than 200.
    busy: u32,
}

/// Waits until `flag` is set.
async fn until(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One SCAIP device for one round: sends its alarms one at a time, each until it gets an
/// `<mrs>` (a new socket or connection after any error, the same `ref` again), until `down`
/// (the server was killed) or, with nothing left to send, `stop`.
async fn scaip_device_run(
    mut dev: ScaipDevice,
    round: usize,
    addrs: Addrs,
    answered: Arc<Mutex<Vec<ScaipAnswer>>>,
    problems: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
) -> ScaipDevice {
    let d = dev.device;
    let cid = scaip_cid(d);
    let (user, password) = scaip_user(d);
    // After a restart, the held alarm is polled again (its first copy is durable).
    if let Some(h) = dev.held.clone() {
        if dev.queue.iter().all(|a| a.reference != h.reference) {
            dev.queue.push_back(ScaipAlarm { polls: 0, ..h });
        }
    }
    let mut luc: Option<Luc> = None;
    loop {
        if down.load(Ordering::Relaxed) {
            return dev;
        }
        if dev.queue.is_empty() {
            if stop.load(Ordering::Relaxed) {
                return dev;
            }
            dev.next += 1;
            let a = scaip_alarm(d, dev.next, round, &mut dev.rng);
            dev.queue.push_back(a);
        }
        let alarm = dev.queue.front().cloned().unwrap();
        if luc.is_none() {
            let made = if d % 2 == 0 {
                Luc::udp(addrs.scaip_udp, &user, &password).await
            } else {
                Luc::tcp(addrs.scaip_tcp, &user, &password).await
            };
            match made {
                Ok(l) => luc = Some(l),
                Err(_) => {
                    if stop.load(Ordering::Relaxed) {
                        return dev;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let l = luc.as_mut().unwrap();
        let r = tokio::select! {
            r = l.mrq(&alarm.body) => r,
            // The server was killed: this exchange is abandoned, the alarm stays first.
            () = until(&down) => {
                dev.resent += 1;
                return dev;
            }
        };
        match r {
            Ok(Exchange {
                code: 200,
                mrs: Some(mrs),
            }) => {
                if mrs.reference.as_deref() != Some(alarm.reference.as_str()) {
                    problems.lock().unwrap().push(format!(
                        "device {d}: sent ref {}, got an <mrs> for {:?}: {mrs:?}",
                        alarm.reference, mrs.reference
                    ));
                    luc = None;
                    continue;
                }
                match mrs.snu {
                    0 | 4 => {
                        answered.lock().unwrap().push(ScaipAnswer {
                            cid: cid.clone(),
                            reference: alarm.reference.clone(),
                            snu: mrs.snu,
                            voice: alarm.voice,
                            sent: alarm.round,
                            round,
                        });
                        dev.queue.pop_front();
                        if mrs.snu == 4 {
                            dev.held = Some(alarm.clone());
                            if alarm.polls > 0 {
                                // A held device polls with the same request.
                                dev.queue.push_back(ScaipAlarm {
                                    polls: alarm.polls - 1,
                                    ..alarm
                                });
                            }
                        }
                    }
                    // Busy: the same again a little later.
                    6 => {
                        dev.busy += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => {
                        problems.lock().unwrap().push(format!(
                            "device {d}: {} answered snu {other}: {mrs:?}",
                            alarm.body
                        ));
                        dev.queue.pop_front();
                    }
                }
            }
            Ok(x) => {
                // 503 (rate) or credentials refused: again, on a new socket.
                dev.busy += 1;
                if x.code == 401 {
                    problems
                        .lock()
                        .unwrap()
                        .push(format!("device {d}: credentials refused: {x:?}"));
                }
                luc = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                luc = None;
                dev.resent += 1;
                if stop.load(Ordering::Relaxed) {
                    return dev;
                }
            }
        }
    }
}

#[test]
fn every_acked_alarm_survives_sigkill_exactly_once() {
    sigkill_rounds(5, "sled");
}

/// The same with the journal in its own segment log (`[journal] engine = "log"`).
#[test]
fn every_acked_alarm_survives_sigkill_exactly_once_on_the_journals_log() {
    sigkill_rounds(5, "log");
}

/// The same with many more kills (run by `.ci/run` in its stress stage).
#[test]
#[ignore = "stress: about a minute"]
fn every_acked_alarm_survives_many_sigkills() {
    sigkill_rounds(40, "sled");
}

#[test]
#[ignore = "stress: about a minute"]
fn every_acked_alarm_survives_many_sigkills_on_the_journals_log() {
    sigkill_rounds(40, "log");
}

/// `kills` rounds of SIGKILL, the journal on `engine` (`[journal] engine`).
fn sigkill_rounds(kills: usize, engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join("vakt.toml"),
        format!(
            // SCAIP's per-source rate is raised: the devices here send back to back.
            "data_dir = {:?}\n[dc09]\nlisten_tcp = \"127.0.0.1:0\"\nlisten_udp = \"\"\n[http]\nlisten = \"\"\n[patrol]\nlisten_quic = \"\"\n[scaip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = \"127.0.0.1:0\"\nrate_per_source = 1000\nrate_burst = 1000\n[journal]\nengine = {engine:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    vakt::cli::import_devices(common::store_at(&data), scaip_devices_csv().as_bytes())
        .expect("import devices");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    // The SCAIP devices run as tasks here, beside the DC-09 device threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let acked = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let mut counters = [0u32; DEVICES];
    let mut waiting: Vec<Option<Vec<u8>>> = vec![None; DEVICES];
    let answered = Arc::new(Mutex::new(Vec::<ScaipAnswer>::new()));
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut scaip: Vec<ScaipDevice> = (0..SCAIP_DEVICES)
        .map(|d| ScaipDevice {
            device: d,
            rng: Lcg(seed ^ (d as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            next: 0,
            queue: VecDeque::new(),
            held: None,
            resent: 0,
            busy: 0,
        })
        .collect();
    let mut round_starts = Vec::new();
    for round in 0..=kills {
        let (mut child, addrs) = start(&dir.path().join("vakt.toml"));
        // Every Signal received before this was journaled by an earlier (killed) vakt.
        round_starts.push(jiff::Timestamp::now());
        let addr = addrs.dc09;
        let stop = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..DEVICES)
            .map(|d| {
                let acked = acked.clone();
                let stop = stop.clone();
                let mut next = counters[d];
                let resend = waiting[d].take();
                std::thread::spawn(move || {
                    let w = device_run(addr, d, &mut next, resend, &acked, &stop);
                    (next, w)
                })
            })
            .collect();
        let scaip_handles: Vec<_> = scaip
            .drain(..)
            .map(|dev| {
                rt.spawn(scaip_device_run(
                    dev,
                    round,
                    addrs,
                    answered.clone(),
                    problems.clone(),
                    stop.clone(),
                    down.clone(),
                ))
            })
            .collect();
        if round < kills {
            // Let traffic flow for a random 150..650 ms, then SIGKILL.
            std::thread::sleep(Duration::from_millis(150 + rng.next() % 500));
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
            down.store(true, Ordering::Relaxed);
        } else {
            // The last round ends cleanly: stop the devices, then SIGTERM.
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::Relaxed);
        }
        for (d, h) in handles.into_iter().enumerate() {
            let (next, w) = h.join().expect("device thread");
            counters[d] = next;
            waiting[d] = w;
        }
        for h in scaip_handles {
            scaip.push(rt.block_on(h).expect("SCAIP device task"));
        }
        if round == kills {
            rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            )
            .unwrap();
            let t = Instant::now();
            let status = child.wait().unwrap();
            assert!(status.success(), "graceful shutdown exits 0: {status}");
            assert!(t.elapsed() < Duration::from_secs(15));
        }
        eprintln!(
            "round {round}: {} frames ACKed, {} SCAIP answers (snu 0 or 4) so far",
            acked.lock().unwrap().len(),
            answered.lock().unwrap().len()
        );
    }
    drop(rt);
    assert_eq!(
        data.join("journal").is_dir(),
        engine == "log",
        "the journal is where [journal] engine = {engine:?} puts it"
    );

    let out = Command::new(BIN)
        .args(["journal", "export", "--data-dir"])
        .arg(&data)
        .output()
        .expect("export runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut journaled: HashMap<String, usize> = HashMap::new();
    let mut ids = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        ids.push(v["id"].as_u64().unwrap());
        // SCAIP Signals are checked below, from the store.
        if v["protocol"] == vakt::ingest::scaip::PROTOCOL {
            continue;
        }
        *journaled
            .entry(v["raw"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 50,
        "the test sent too little to mean anything: {}",
        acked.len()
    );
    let acked_set: HashSet<String> = acked
        .iter()
        .map(|f| String::from_utf8(f.clone()).unwrap())
        .collect();
    for f in &acked_set {
        assert_eq!(
            journaled.get(f).copied().unwrap_or(0),
            1,
            "ACKed frame {f:?} must be journaled exactly once"
        );
    }
    for (f, n) in &journaled {
        assert_eq!(*n, 1, "frame {f:?} journaled {n} times");
    }
    // Every journaled alarm is in its device's Call, exactly once.
    let mut per_account: HashMap<String, u32> = HashMap::new();
    for f in journaled.keys() {
        let p = dc09::parse(f.as_bytes()).unwrap();
        *per_account
            .entry(p.account.unwrap().to_owned())
            .or_default() += 1;
    }
    let store = common::open_store(&data).expect("store opens after the server stopped");
    let scaip_cids: HashSet<String> = (0..SCAIP_DEVICES).map(scaip_cid).collect();
    let (scaip_calls, calls): (Vec<_>, Vec<_>) = store
        .open_calls()
        .unwrap()
        .into_iter()
        .partition(|c| scaip_cids.contains(&c.account));
    let mut counted: HashMap<String, u32> = HashMap::new();
    for c in &calls {
        *counted.entry(c.account.clone()).or_default() += c.alarm_count;
    }
    assert_eq!(
        counted, per_account,
        "alarms in Calls (by account) must equal the alarms journaled"
    );
    assert_eq!(calls.len(), DEVICES, "one open Call per device: {calls:?}");

    // SCAIP: the journal's (cid, ref) pairs, with their ids, and per device its voice alarms
    // and its first Signal.
    let mut scaip_journaled: HashMap<(String, String), Vec<u64>> = HashMap::new();
    let mut received: HashMap<u64, jiff::Timestamp> = HashMap::new();
    let mut voice_journaled: HashMap<String, u32> = HashMap::new();
    let mut first_last: HashMap<String, (u64, bool, u64)> = HashMap::new();
    let mut after = 0;
    loop {
        let batch = store.journal_after(after, 1000).unwrap();
        let Some(last) = batch.last() else { break };
        after = last.signal.id;
        for r in batch {
            let s = r.signal;
            if s.protocol != vakt::ingest::scaip::PROTOCOL {
                continue;
            }
            // A battery-low fault says its status; a voice alarm does not.
            let voice = !String::from_utf8_lossy(&s.raw).contains("<stc>");
            *voice_journaled.entry(s.account.clone()).or_default() += u32::from(voice);
            first_last
                .entry(s.account.clone())
                .and_modify(|e| e.2 = s.id)
                .or_insert((s.id, voice, s.id));
            received.insert(s.id, s.received_at);
            scaip_journaled
                .entry((s.account, s.seq))
                .or_default()
                .push(s.id);
        }
    }
    drop(store);
    let problems = problems.lock().unwrap();
    assert!(problems.is_empty(), "SCAIP answers: {problems:#?}");
    let answered = answered.lock().unwrap();
    let answered_refs: HashMap<(String, String), &ScaipAnswer> = answered
        .iter()
        .map(|a| ((a.cid.clone(), a.reference.clone()), a))
        .collect();
    for (key, a) in &answered_refs {
        let ids = scaip_journaled.get(key).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(
            ids.len(),
            1,
            "SCAIP alarm {key:?} answered snu {} must be journaled exactly once: ids {ids:?}",
            a.snu
        );
    }
    for (key, ids) in &scaip_journaled {
        assert_eq!(ids.len(), 1, "SCAIP alarm {key:?} journaled at ids {ids:?}");
    }
    let held: HashSet<(&str, &str)> = answered
        .iter()
        .filter(|a| a.snu == 4)
        .map(|a| (a.cid.as_str(), a.reference.as_str()))
        .collect();
    let held = held.len();
    // Alarms first sent before a kill and first answered after it; and those of them whose
    // first copy the killed vakt had journaled (answered from the journal's dedup window).
    let mut first_answers: HashMap<(&str, &str), &ScaipAnswer> = HashMap::new();
    for a in answered.iter() {
        first_answers.entry((&a.cid, &a.reference)).or_insert(a);
    }
    let across: Vec<&&ScaipAnswer> = first_answers
        .values()
        .filter(|a| a.round > a.sent)
        .collect();
    let deduped = across
        .iter()
        .filter(|a| {
            let id = scaip_journaled[&(a.cid.clone(), a.reference.clone())][0];
            received[&id] < round_starts[a.round]
        })
        .count();
    assert!(
        answered_refs.len() > 20 && held > 0,
        "the SCAIP devices sent too little to mean anything: {} answered, {held} held",
        answered_refs.len()
    );
    // Nobody takes a Call here: a voice alarm is held (snu 4) every time it is sent, also
    // after a restart and past the timeline's cap on Signal lines; a battery-low fault is
    // answered snu 0.
    let unexpected: Vec<&ScaipAnswer> = answered
        .iter()
        .filter(|a| a.snu != if a.voice { 4 } else { 0 })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} SCAIP answers other than snu 4 for a voice alarm or snu 0 for a fault (no operator took any Call), the first: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    // Every SCAIP device's Signals went into its subscriber's one open Call, each exactly
    // once: the voice alarms count, and so does the Signal that opened the Call (a
    // battery-low fault also opens one); the Call has taken in the device's last Signal.
    assert_eq!(
        scaip_calls.len(),
        first_last.len(),
        "one open Call per SCAIP device that sent: {scaip_calls:?}"
    );
    for c in &scaip_calls {
        let (first, first_voice, last) = first_last[&c.account];
        let expected = voice_journaled[&c.account] + u32::from(!first_voice);
        assert_eq!(
            (c.alarm_count, c.last_signal_id),
            (expected, last),
            "Call {} of SCAIP device {}: alarms counted and last Signal (opened by Signal {first})",
            c.id,
            c.account
        );
    }

    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "journal ids are unique");
    eprintln!(
        "{} frames ACKed, {} journaled (the rest were journaled but their ACK was lost in a kill)",
        acked_set.len(),
        journaled.len()
    );
    let resent: u32 = scaip.iter().map(|d| d.resent).sum();
    let busy: u32 = scaip.iter().map(|d| d.busy).sum();
    eprintln!(
        "{} SCAIP alarms answered snu 0 or 4 ({held} of them held), {} journaled; {} answers counting polls of held alarms, {} of them unexpected; {} alarms answered only after a kill ({deduped} of them journaled before it); {resent} mrq sent again after an error or a kill, {busy} busy",
        answered_refs.len(),
        scaip_journaled.len(),
        answered.len(),
        unexpected.len(),
        across.len()
    );
}

/// The longest one wait of the voice crash test may take (a loaded 2-core machine).
const VOICE_PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_an_answered_call_leaves_the_call_its_line_and_the_recording() {
    use common::unit::Unit;
    use vakt_proto::g711::Law;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let webrtc = common::webrtc::options(8);
    std::fs::write(
        dir.path().join("vakt.toml"),
        format!(
            "data_dir = {:?}\n[dc09]\nlisten_tcp = \"127.0.0.1:0\"\nlisten_udp = \"\"\n[http]\nlisten = \"127.0.0.1:0\"\n[patrol]\nlisten_quic = \"\"\n[scaip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = \"127.0.0.1:0\"\n[voice.rtp]\nbind_addr = \"127.0.0.1\"\n[voice.webrtc]\nbind_addr = \"127.0.0.1\"\nport_min = {}\nport_max = {}\n",
            data.display().to_string(),
            webrtc.port_min,
            webrtc.port_max,
        ),
    )
    .unwrap();
    let csv = format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,luc678,pw-678\n",
        vakt::registers::devices::CSV_HEADER
    );
    vakt::cli::import_devices(common::store_at(&data), csv.as_bytes()).expect("import devices");
    common::add_user(
        &data,
        common::ADMIN.0,
        vakt::model::Role::Admin,
        common::ADMIN.1,
    );
    let config = dir.path().join("vakt.toml");
    let (mut child, addrs) = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || start(&config))
            .await
            .unwrap()
    };
    let http = addrs.http.expect("the console's address");
    let mut admin = common::Client::login(http, common::ADMIN.0, common::ADMIN.1).await;

    // The unit calls and the operator answers in "the browser".
    let mut unit = Unit::call(addrs.scaip_udp, "luc678", "pw-678", 440.0).await;
    let (conv, call) = common::wait_for("the ringing call", VOICE_PATIENCE, || {
        let mut admin = admin.clone();
        async move {
            let v = admin.get("/api/voice").await.json();
            let c = v.as_array()?.iter().find(|c| !c["call"].is_null())?.clone();
            Some((c["id"].as_u64()?, c["call"].as_u64()?))
        }
    })
    .await;
    let running = common::webrtc::answer(&mut admin, conv, &["opus", "pcmu", "pcma"]).await;
    unit.answered(VOICE_PATIENCE).await;
    let answered = Instant::now();
    let law = unit.law().expect("vakt's answer names a law");
    let mut pt = running.pt.clone();
    let pt = common::wait_for("the browser to connect", VOICE_PATIENCE, || {
        let pt = *pt.borrow_and_update();
        async move { pt }
    })
    .await;
    let browser_law = Law::from_payload_type(pt).expect("G.711 to the browser");
    let talking = tokio::spawn({
        let send = running.send.clone();
        async move {
            let mut tone = vakt::voice::tone::ToneGen::new(1_000.0, -10.0);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                if send.send(tone.frame(browser_law)).is_err() {
                    return;
                }
            }
        }
    });

    // Three seconds of the operator's voice at the unit, then SIGKILL.
    let talking_from = Instant::now();
    common::wait_for(
        "three seconds of the operator at the unit",
        VOICE_PATIENCE,
        || async { (unit.samples_since(talking_from, law).len() >= 3 * 8_000).then_some(()) },
    )
    .await;
    let at_unit = unit.samples_since(talking_from, law);
    let (hit, wrong, sound) = common::tone_blocks(&at_unit, 1_000.0, 440.0);
    assert!(
        hit >= 4 && hit == sound && wrong == 0,
        "the unit hears the operator before the kill: {hit} of {sound} blocks"
    );
    child.kill().expect("SIGKILL");
    let talked = answered.elapsed();
    child.wait().unwrap();
    unit.silence();
    talking.abort();
    drop(running);

    // The restart on the same data directory.
    let (mut child, addrs) = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    let http = addrs.http.expect("the console's address");
    let mut admin = common::Client::login(http, common::ADMIN.0, common::ADMIN.1).await;
    let got = admin.get(&format!("/api/calls/{call}")).await;
    assert_eq!(got.status, 200, "the Call is there: {}", got.body);
    let full = got.json();
    let lines: Vec<&serde_json::Value> = full["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "conversation")
        .collect();
    assert_eq!(lines.len(), 1, "one conversation line: {full}");
    let line = lines[0];
    assert_eq!(line["ended_by"], "restart", "{line}");
    assert_eq!(line["operator"], common::ADMIN.0, "{line}");
    assert!(line["recording"].is_string(), "{line}");
    let live = admin.get("/api/voice").await.json();
    assert_eq!(
        live,
        serde_json::json!([]),
        "no call going on after the restart"
    );

    // The recording, played by a supervisor: the talk up to the kill, at most the last
    // second lost, the person's 440 Hz and the operator's 1,000 Hz on their channels.
    let a = admin
        .get(&format!("/api/calls/{call}/recordings/{conv}"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let rec = vakt::voice::wav::parse(&a.bytes).expect("a playable WAV");
    assert_eq!((rec.sample_rate, rec.channels), (8_000, 2));
    let secs = rec.duration().as_secs_f64();
    let talk = talked.as_secs_f64();
    eprintln!("talked {talk:.2} s before the kill, {secs:.2} s recorded; the line: {line}");
    assert!(
        secs >= talk - 1.0 && secs <= talk + 1.0,
        "{secs:.2} s recorded of {talk:.2} s talked"
    );
    let talk_secs = line["talk_secs"].as_u64().expect("talk time on the line");
    assert!(
        (talk_secs as f64 - secs).abs() <= 1.0,
        "the line's talk time is the recording's: {line}"
    );
    let (p_hit, p_wrong, p_sound) = common::tone_blocks(&rec.channel(0), 440.0, 1_000.0);
    let (o_hit, o_wrong, o_sound) = common::tone_blocks(&rec.channel(1), 1_000.0, 440.0);
    eprintln!(
        "recording: person {p_hit}/{p_sound} blocks 440 Hz, operator {o_hit}/{o_sound} 1,000 Hz"
    );
    // Every half second that is not silence is the one tone of its channel.
    assert!(
        p_hit >= 5 && p_hit == p_sound && p_wrong == 0,
        "the person's channel"
    );
    assert!(
        o_hit >= 4 && o_hit == o_sound && o_wrong == 0,
        "the operator's channel"
    );
    let audit = admin.get("/api/audit").await.json().to_string();
    assert!(
        audit.contains("recording.play"),
        "playback audited: {audit}"
    );

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success(), "graceful shutdown exits 0");
}
