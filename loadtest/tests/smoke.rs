//! Smoke test of the `vakt-loadtest` binary: a `ceiling` server on 127.0.0.1:0, short `dc09`,
//! `storm` and `idle` runs against it (no errors, frames answered), a `fleet` file that vakt's
//! import parser accepts, and a short `console` run against a real vakt started in the test's
//! process. A few seconds in all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vakt-loadtest");

/// A running `ceiling`; killed when dropped.
struct Ceiling {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ceiling(aes: &str) -> Ceiling {
    let mut child = Command::new(BIN)
        .args(["ceiling", "--listen", "127.0.0.1:0", "--aes", aes])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ceiling");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the ceiling's first line");
    let addr = line
        .strip_prefix("ceiling listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Ceiling { child, addr }
}

/// Runs the binary; returns its last stdout line and the JSON report.
fn run(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let out = Command::new(BIN)
        .args(args)
        .arg("--json")
        .arg(&json)
        .stderr(Stdio::inherit())
        .output()
        .expect("run vakt-loadtest");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let last = stdout.lines().last().unwrap_or_default().to_string();
    let report = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid json");
    (last, report)
}

/// The value of `key=` in a summary line.
fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn dc09(c: &Ceiling, extra: &[&str]) {
    let target = c.addr.to_string();
    let mut args = vec![
        "dc09",
        "--target",
        &target,
        "--connections",
        "2",
        "--duration-secs",
        "1",
        "--warmup-secs",
        "0.2",
    ];
    args.extend_from_slice(extra);
    let (line, report) = run(&args);
    assert!(line.starts_with("frames/s="), "{line}");
    assert_eq!(field(&line, "errors"), 0.0, "{extra:?}: {line}\n{report:#}");
    assert!(field(&line, "frames/s") > 0.0, "{line}");
    assert!(field(&line, "p99_ms") > 0.0, "{line}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert!(
        report["frames"].as_u64().is_some_and(|n| n > 0),
        "{report:#}"
    );
    assert_eq!(report["connections"], 2);
}

#[test]
fn dc09_against_the_ceiling_has_no_errors() {
    let c = ceiling("aes128");
    dc09(&c, &["--kind", "heartbeat"]);
    dc09(&c, &["--kind", "alarm"]);
    dc09(
        &c,
        &["--kind", "mixed", "--mode", "aes128", "--window", "4"],
    );
    dc09(&c, &["--kind", "alarm", "--udp"]);
}

#[test]
fn storm_against_the_ceiling_drains_every_backlog() {
    let c = ceiling("aes128");
    let target = c.addr.to_string();
    let (line, report) = run(&[
        "storm",
        "--target",
        &target,
        "--devices",
        "20",
        "--backlog",
        "3",
        "--heartbeat-secs",
        "0.5",
        "--duration-secs",
        "1.5",
    ]);
    assert!(line.starts_with("storm devices=20 "), "{line}");
    assert_eq!(field(&line, "errors"), 0.0, "{line}\n{report:#}");
    assert_eq!(report["backlog_complete_devices"], 20, "{report:#}");
    assert_eq!(report["backlog_frames_acked"], 60, "{report:#}");
    assert!(
        report["heartbeats_acked"].as_u64().is_some_and(|n| n > 0),
        "{report:#}"
    );
}

#[test]
fn fleet_writes_an_importable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleet.csv");
    let status = Command::new(BIN)
        .args([
            "fleet",
            "--devices",
            "50",
            "--aes-share",
            "0.4",
            "--seed",
            "3",
            "--out",
        ])
        .arg(&path)
        .stderr(Stdio::null())
        .status()
        .expect("run fleet");
    assert!(status.success());
    let text = std::fs::read_to_string(&path).expect("fleet written");
    assert_eq!(
        text.lines().next(),
        Some(vakt::registers::devices::CSV_HEADER_V1)
    );
    let devices = vakt::registers::devices::parse_csv(text.as_bytes()).expect("imports");
    assert_eq!(devices.len(), 50);
    assert_eq!(devices.iter().filter(|d| d.key.is_some()).count(), 20);
}

#[test]
fn idle_holds_connections_and_measures_the_server() {
    let c = ceiling("aes128");
    let target = c.addr.to_string();
    let pid = c.child.id().to_string();
    let (line, report) = run(&[
        "idle",
        "--target",
        &target,
        "--connections",
        "50",
        "--hold-secs",
        "0.2",
        "--server-pid",
        &pid,
    ]);
    assert!(line.starts_with("idle connections=50 failed=0 "), "{line}");
    assert_eq!(report["connections"], 50, "{report:#}");
    assert!(
        report["rss_after_kib"].as_u64().is_some_and(|k| k > 0),
        "{report:#}"
    );
    assert!(report["bytes_per_connection"].is_number(), "{report:#}");
}

/// A real vakt (in this process, on 127.0.0.1:0, fresh data directory) with an admin;
/// `console-setup` imports 5 alarm devices through the API, then `console` sends their 5 alarms
/// under a light heartbeat load and sees every Call on the WebSocket.
#[test]
fn console_sees_every_alarm_as_a_call() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (user, password) = ("lt-admin", "lt-admin-password");
    {
        let store = vakt::store::Store::open(dir.path()).expect("store opens");
        store
            .put_user(&vakt::store::UserRecord {
                name: user.into(),
                role: vakt::model::Role::Admin,
                password_hash: vakt::console::auth::hash_password(password).expect("hash"),
                created_at: jiff::Timestamp::now(),
                disabled: false,
                language: None,
                tenant: None,
            })
            .expect("user stored");
    }
    let mut cfg = vakt::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..vakt::config::Config::default()
    };
    cfg.dc09.listen_tcp = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.dc09.listen_udp = None;
    cfg.http.listen = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.patrol.listen_quic = None;
    cfg.scaip.listen_udp = None;
    cfg.scaip.listen_tcp = None;
    cfg.shutdown_grace_secs = 5;
    let server = rt
        .block_on(vakt::server::start(cfg))
        .expect("server starts");
    let tcp = server.dc09_tcp.expect("tcp").to_string();
    let http = server.http.expect("http").to_string();

    let setup = Command::new(BIN)
        .args([
            "console-setup",
            "--http",
            &http,
            "--admin-user",
            user,
            "--admin-password",
            password,
            "--alarm-devices",
            "5",
            "--heartbeat-devices",
            "2",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run console-setup");
    assert!(
        setup.status.success(),
        "console-setup failed: {}",
        String::from_utf8_lossy(&setup.stdout)
    );
    let (line, report) = run(&[
        "console",
        "--tcp",
        &tcp,
        "--http",
        &http,
        "--user",
        user,
        "--password",
        password,
        "--alarms",
        "5",
        "--alarm-rate",
        "20",
        "--heartbeat-rate",
        "100",
        "--heartbeat-conns",
        "2",
        "--warmup-secs",
        "0.2",
    ]);
    assert!(
        line.starts_with("console alarms=5 acked=5 calls=5 missing=0 "),
        "{line}"
    );
    assert_eq!(field(&line, "errors"), 0.0, "{line}\n{report:#}");
    assert_eq!(report["calls_seen"], 5, "{report:#}");
    assert_eq!(report["merged"], 0, "{report:#}");
    assert_eq!(report["without_subscriber"], 0, "{report:#}");
    assert!(
        report["heartbeat"]["frames_per_s"]
            .as_f64()
            .is_some_and(|f| f > 0.0),
        "{report:#}"
    );
    rt.block_on(server.stop()).expect("server stops");
}
