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

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vakt::codec::dc09::{self, FrameSpec};

const BIN: &str = env!("CARGO_BIN_EXE_vakt");
const DEVICES: usize = 6;

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

fn start(config: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vakt starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("vakt printed its address before exiting")
            .expect("stderr readable");
        if let Some(a) = line.strip_prefix("vakt: DC-09 TCP on ") {
            break a.trim().parse().expect("address");
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
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

#[test]
fn every_acked_alarm_survives_sigkill_exactly_once() {
    sigkill_rounds(5);
}

/// The same with many more kills (run by `.ci/run` in its stress stage).
#[test]
#[ignore = "stress: about a minute"]
fn every_acked_alarm_survives_many_sigkills() {
    sigkill_rounds(40);
}

fn sigkill_rounds(kills: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join("vakt.toml"),
        format!(
            "data_dir = {:?}\n[dc09]\nlisten_tcp = \"127.0.0.1:0\"\nlisten_udp = \"\"\n[http]\nlisten = \"\"\n[patrol]\nlisten_quic = \"\"\n[scaip]\nlisten_udp = \"\"\nlisten_tcp = \"\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Lcg(seed);

    let acked = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let mut counters = [0u32; DEVICES];
    let mut waiting: Vec<Option<Vec<u8>>> = vec![None; DEVICES];
    for round in 0..=kills {
        let (mut child, addr) = start(&dir.path().join("vakt.toml"));
        let stop = Arc::new(AtomicBool::new(false));
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
        if round < kills {
            // Let traffic flow for a random 150..650 ms, then SIGKILL.
            std::thread::sleep(Duration::from_millis(150 + rng.next() % 500));
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
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
        if round == kills {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            let status = child.wait().unwrap();
            assert!(status.success(), "graceful shutdown exits 0: {status}");
            assert!(t.elapsed() < Duration::from_secs(15));
        }
        eprintln!(
            "round {round}: {} frames ACKed so far",
            acked.lock().unwrap().len()
        );
    }

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
    let store = vakt::store::Store::open(&data).expect("store opens after the server stopped");
    let calls = store.open_calls().unwrap();
    let mut counted: HashMap<String, u32> = HashMap::new();
    for c in &calls {
        *counted.entry(c.account.clone()).or_default() += c.alarm_count;
    }
    assert_eq!(
        counted, per_account,
        "alarms in Calls (by account) must equal the alarms journaled"
    );
    assert_eq!(calls.len(), DEVICES, "one open Call per device: {calls:?}");
    drop(store);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "journal ids are unique");
    eprintln!(
        "{} frames ACKed, {} journaled (the rest were journaled but their ACK was lost in a kill)",
        acked_set.len(),
        journaled.len()
    );
}
