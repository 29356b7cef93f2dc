//! `vakt serve` and the data directory as a newcomer meets them: moving a listener off a port
//! that is taken, the message when one is, the data directory's permissions, and what
//! `RUST_LOG=trace` may print.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vakt");

/// Sends SIGTERM to a child of this test, as an operator stopping the server would.
fn sigterm(child: &std::process::Child) {
    use rustix::process::{Pid, Signal, kill_process};
    kill_process(Pid::from_child(child), Signal::TERM).unwrap();
}

/// A configuration with every listener on a free loopback port.
fn config(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("vakt.toml");
    std::fs::write(
        &cfg,
        "[dc09]\nlisten_tcp = \"127.0.0.1:0\"\nlisten_udp = \"127.0.0.1:0\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[patrol]\nlisten_quic = \"127.0.0.1:0\"\n\
         [scaip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    cfg
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `vakt serve`, waits until it is ready, returns what it printed up to then, and
/// stops it with SIGTERM.
fn serve_until_ready(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("vakt ended before it was ready:\n{seen}"))
            .unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("vakt ready") {
            break;
        }
    }
    // The addresses are printed right after.
    for _ in 0..4 {
        match lines.next() {
            Some(Ok(l)) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            _ => break,
        }
    }
    std::thread::spawn(move || for _ in lines {});
    // vakt installs its SIGTERM handler once it has printed its addresses.
    std::thread::sleep(std::time::Duration::from_millis(500));
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    seen
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_port_in_use_is_named_once_and_each_listener_can_be_moved() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cfg = cfg.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // Something else has the port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, err) = run(
        &[
            "serve",
            "--config",
            cfg,
            "--data-dir",
            data,
            "--dc09-port",
            &port,
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.matches("in use").count(),
        1,
        "the port in use named once:\n{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("--dc09-port"),
        "{err}"
    );
    // The same by environment variable, for the console.
    let (code, err) = run(
        &["serve", "--config", cfg, "--data-dir", data],
        &[("VAKT_HTTP_PORT", &port)],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("VAKT_HTTP_PORT"), "{err}");
    drop(taken);
    // Free ports: each listener where it was told.
    let (http, dc09) = (free_port(), free_port());
    let out = serve_until_ready(
        &[
            "serve",
            "--config",
            cfg,
            "--data-dir",
            data,
            "--dc09-port",
            &dc09.to_string(),
            "--scaip-port",
            "0",
            "--patrol-port",
            "0",
        ],
        &[("VAKT_HTTP_PORT", &http.to_string())],
    );
    assert!(
        out.contains(&format!("DC-09 TCP on 127.0.0.1:{dc09}")),
        "{out}"
    );
    assert!(out.contains(&format!("http://127.0.0.1:{http}/")), "{out}");
    // A port for a listener the configuration turned off is a mistake, said so.
    std::fs::write(dir.path().join("off.toml"), "[http]\nlisten = \"\"\n").unwrap();
    let off = dir.path().join("off.toml");
    let (code, err) = run(
        &[
            "serve",
            "--config",
            off.to_str().unwrap(),
            "--data-dir",
            data,
            "--http-port",
            "1",
        ],
        &[],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--http-port") && err.contains("off"), "{err}");
}

/// Every file and directory under `dir` (with `dir`).
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_data_directory_is_private_and_sled_logs_nothing_it_stores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new").join("data");
    let csv = dir.path().join("devices.csv");
    std::fs::write(
        &csv,
        format!(
            "{}\n1234,,,,,S-GUNNEL,90,,\n",
            vakt::registers::devices::CSV_HEADER_V1
        ),
    )
    .unwrap();
    // RUST_LOG=trace, as someone chasing a problem would set it.
    let out = Command::new(BIN)
        .args(["devices", "import", "--data-dir"])
        .arg(&data)
        .arg(&csv)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let sled: Vec<&str> = err.lines().filter(|l| l.contains("sled")).collect();
    assert!(
        sled.iter()
            .all(|l| !l.contains("TRACE") && !l.contains("DEBUG")),
        "sled's own debug and trace lines (they show what is stored):\n{}",
        sled.iter().take(5).copied().collect::<Vec<_>>().join("\n")
    );
    // And a server's data directory, made by `vakt serve`.
    let served = dir.path().join("served");
    let cfg = config(dir.path());
    serve_until_ready(
        &[
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            served.to_str().unwrap(),
        ],
        &[],
    );
    for root in [&data, &served] {
        let mut all = Vec::new();
        walk(root, &mut all);
        assert!(all.len() > 3, "{all:?}");
        for p in all {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            if p.is_dir() {
                assert_eq!(mode, 0o700, "{} is {mode:o}", p.display());
            } else {
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
            }
        }
    }
}

#[test]
fn an_unknown_time_zone_or_language_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for (key, bad) in [("time_zone", "Europe/Gothenburg"), ("language", "fi")] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(
            &cfg,
            format!("[http]\nlisten = \"127.0.0.1:0\"\n{key} = \"{bad}\"\n"),
        )
        .unwrap();
        let (code, err) = run(
            &[
                "serve",
                "--config",
                cfg.to_str().unwrap(),
                "--data-dir",
                data,
            ],
            &[],
        );
        assert_ne!(code, 0, "{key} = {bad:?} started:\n{err}");
        assert!(err.contains(key) && err.contains(bad), "{err}");
    }
}
