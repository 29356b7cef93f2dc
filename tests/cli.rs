//! The `vakt` command line, run as a user would: exit codes, messages, import and export.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use vakt_proto::crypto::Key;
use vakt_proto::dc09::{self, FrameSpec, Pad};

const BIN: &str = env!("CARGO_BIN_EXE_vakt");

/// Sends SIGTERM to a child of this test, as an operator stopping the server would.
fn sigterm(child: &std::process::Child) {
    use rustix::process::{Pid, Signal, kill_process};
    kill_process(Pid::from_child(child), Signal::TERM).unwrap();
}

fn vakt(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example_and_rejects_typos_with_64() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/vakt.toml");
    let (code, out, _) = vakt(&["check-config", example]);
    assert_eq!(code, 0);
    assert!(out.contains("ok"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[dc09]\nidle_timeout = 5\n").unwrap();
    let (code, _, err) = vakt(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 64);
    assert!(err.contains("idle_timeout"), "{err}");

    std::fs::write(&bad, "[dc09]\nmax_connections = 0\n").unwrap();
    let (code, _, err) = vakt(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 64);
    assert!(err.contains("max_connections"), "{err}");

    let (code, _, _) = vakt(&["check-config", "/nonexistent/vakt.toml"]);
    assert_eq!(code, 64);

    // serve with a bad config refuses to start, with the same code.
    let (code, _, _) = vakt(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 64);
}

#[test]
fn import_is_all_or_nothing_and_export_prints_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let csv = dir.path().join("devices.csv");
    let header = vakt::registers::devices::CSV_HEADER_V1;
    std::fs::write(
        &csv,
        format!("{header}\n1234,,,,,anna,90,,\n12G4,,,,,bad,,,\n"),
    )
    .unwrap();
    let (code, _, err) = vakt(&[
        "devices",
        "import",
        "--data-dir",
        data_s,
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("line 3"), "{err}");

    std::fs::write(
        &csv,
        format!("{header}\n1234,,,,,anna,90,,\n5678,,,,,bertil,,,\n"),
    )
    .unwrap();
    let (code, out, err) = vakt(&[
        "devices",
        "import",
        "--data-dir",
        data_s,
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("imported 2 devices (2 new, 0 updated)"),
        "{out}"
    );

    let (code, out, err) = vakt(&["journal", "export", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "empty journal");
    let (code, _, _) = vakt(&["journal", "export", "--data-dir", "/nonexistent/dir"]);
    assert_eq!(code, 64);
}

#[test]
fn serve_demo_runs_with_demo_devices_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("vakt.toml");
    std::fs::write(
        &cfg,
        "[dc09]\nlisten_tcp = \"127.0.0.1:0\"\nlisten_udp = \"\"\n[http]\nlisten = \"\"\n\
         [patrol]\nlisten_quic = \"127.0.0.1:0\"\n[scaip]\nlisten_udp = \"\"\nlisten_tcp = \"\"\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--demo",
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
        ])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("address printed").unwrap();
        if let Some(a) = line.strip_prefix("vakt: DC-09 TCP on ") {
            break a.trim().to_string();
        }
    };
    // The demo patrols connect to the patrol link with the logins seeded for them.
    loop {
        let line = lines.next().expect("demo patrols started").unwrap();
        assert!(!line.contains("no demo patrols"), "{line}");
        if line.starts_with("vakt: demo patrols log in to ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    {
        use std::os::unix::fs::PermissionsExt;
        let logins = std::fs::metadata(data.join("demo-patrols.txt")).unwrap();
        assert_eq!(logins.permissions().mode() & 0o777, 0o600);
    }

    // The demo's AES-128 device 5678 is known: its encrypted alarm gets *ACK.
    let key = Key::from_hex("000102030405060708090A0B0C0D0E0F").unwrap();
    let mut frame = Vec::new();
    dc09::encode_frame_encrypted(
        &FrameSpec {
            id: "ADM-CID",
            seq: 1,
            receiver: None,
            line: Some("0"),
            account: "5678",
            data: b"#5678|1101 01 001",
            xdata: &[],
            timestamp: Some(jiff::Timestamp::now()),
        },
        &key,
        Pad::Random(&mut rand::rng()),
        &mut frame,
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame).unwrap();
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap() == 1 {
        reply.push(b[0]);
        if b[0] == b'\r' {
            break;
        }
    }
    let p = dc09::parse(&reply).unwrap();
    assert!(
        p.encrypted && p.id == "ACK",
        "{}",
        String::from_utf8_lossy(&reply)
    );

    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    // Stopped: the journal can be exported and holds the alarm.
    let (code, out, err) = vakt(&["journal", "export", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["account"], "5678");
    assert_eq!(v["subscriber"], "S-1002");
    assert_eq!(v["events"][0]["code"], "CID 101");
}

#[test]
fn import_refuses_while_the_server_holds_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = vakt::store::Store::open(dir.path()).unwrap();
    let csv = format!(
        "{}\n1234,,,,,anna,90,,\n",
        vakt::registers::devices::CSV_HEADER_V1
    );
    let path = dir.path().join("d.csv");
    std::fs::write(&path, csv).unwrap();
    let (code, _, err) = vakt(&[
        "devices",
        "import",
        "--data-dir",
        dir.path().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("another vakt"), "{err}");
    drop(store);
}

/// Runs vakt with `input` on its standard input.
fn vakt_with_stdin(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn users_add_then_list_and_weak_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let add = |name: &str, role: &str, pw: &str| {
        vakt_with_stdin(
            &["users", "add", name, "--role", role, "--data-dir", data_s],
            pw,
        )
    };

    let (code, out, err) = add("anna", "admin", "korrekt häst batteri\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added user anna (admin)"), "{out}");
    let (code, _, err) = add("bertil", "operator", "ett långt lösenord");
    assert_eq!(code, 0, "no line end is fine: {err}");

    let (code, out, err) = vakt(&["users", "list", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("anna") && lines[0].contains("admin"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("bertil") && lines[1].contains("operator"),
        "{out}"
    );
    assert!(!out.contains("argon2") && !out.contains("batteri"), "{out}");

    // Adding again replaces the password and role, and says so.
    let (code, out, err) = add("anna", "supervisor", "ett annat lösenord\n");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("replaced") && out.contains("admin -> supervisor"),
        "{out}"
    );

    // Too short: refused with 65, nothing changed, the password not shown.
    let (code, _, err) = add("anna", "admin", "kort\n");
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("at least 10 characters"), "{err}");
    assert!(!err.contains("kort\n") && !err.contains(" kort"), "{err}");
    let (code, _, err) = add("cecilia", "operator", "");
    assert_eq!(code, 65, "empty input: {err}");
    // A bad name: 64, before any password is read.
    let (code, _, err) = add("Åsa", "operator", "korrekt häst batteri\n");
    assert_eq!(code, 64, "{err}");
    let (code, _, _) = add("anna", "root", "korrekt häst batteri\n");
    assert_ne!(code, 0);

    let (_, out, _) = vakt(&["users", "list", "--data-dir", data_s]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().next().unwrap().contains("supervisor"), "{out}");

    // The changes are in the audit log, without secrets.
    let (code, out, err) = vakt(&["audit", "export", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    let actions: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].to_string())
        .collect();
    assert_eq!(
        actions,
        ["\"user.add\"", "\"user.add\"", "\"user.update\""],
        "{out}"
    );
    assert!(
        !out.contains("argon2") && !out.contains("lösenord"),
        "{out}"
    );

    let (code, _, _) = vakt(&["users", "list", "--data-dir", "/nonexistent/dir"]);
    assert_eq!(code, 64);
}

#[test]
fn users_disable_enable_remove_and_blank_passwords_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let add = |name: &str, role: &str, pw: &str| {
        vakt_with_stdin(
            &["users", "add", name, "--role", role, "--data-dir", data_s],
            pw,
        )
    };
    let users = |args: &[&str]| {
        let mut a = vec!["users"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--data-dir", data_s]);
        vakt(&a)
    };
    assert_eq!(add("anna", "admin", "korrekt häst batteri\n").0, 0);
    assert_eq!(add("bertil", "operator", "ett långt lösenord\n").0, 0);
    // Ten spaces, or a short password padded with spaces, are not ten characters.
    for pw in [
        "          \n",
        "   kort  pw    \n",
        "\t\t\t\t\t\t\t\t\t\t\n",
    ] {
        let (code, _, err) = add("cecilia", "operator", pw);
        assert_eq!(code, 65, "{pw:?}: {err}");
        assert!(err.contains("at least 10 characters"), "{err}");
    }

    let (code, out, err) = users(&["disable", "bertil"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("disabled user bertil"), "{out}");
    let (_, out, _) = users(&["list"]);
    let line = out.lines().find(|l| l.starts_with("bertil")).unwrap();
    assert!(line.contains("disabled"), "{out}");
    let (code, _, err) = users(&["disable", "nobody"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("no user"), "{err}");
    let (code, out, err) = users(&["enable", "bertil"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("enabled user bertil"), "{out}");
    let (_, out, _) = users(&["list"]);
    assert!(!out.contains("disabled"), "{out}");
    // The last administrator stays.
    for cmd in ["disable", "remove"] {
        let (code, _, err) = users(&[cmd, "anna"]);
        assert_eq!(code, 65, "{cmd}: {err}");
        assert!(err.contains("administrator"), "{err}");
    }
    let (code, out, err) = users(&["remove", "bertil"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed user bertil"), "{out}");
    let (_, out, _) = users(&["list"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, _) = users(&["remove", "bertil"]);
    assert_eq!(code, 65);

    let (_, out, _) = vakt(&["audit", "export", "--data-dir", data_s]);
    let actions: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["detail"].as_str().unwrap_or("").contains("bertil"))
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["user.add", "user.disable", "user.enable", "user.remove"],
        "{out}"
    );
}

#[test]
fn subscribers_import_is_all_or_nothing_and_never_shows_door_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let csv = dir.path().join("subscribers.csv");
    let header = vakt::registers::subscribers::CSV_HEADER;
    let good = "S-1001,Åsa Öberg,19400312-1234,Storgatan 1,903 26,Umeå,Centrum,+46 90 12 34 56,Hemtjänst Norr,2,\"Key cabinet, hook 14\",,4711,,,,Björn Öberg,son,070-123 45 67,,,,,,,";
    std::fs::write(
        &csv,
        format!(
            "{header}\n{good}\nS-1002,,19400312-1234,,,,,,,,,,8080,,,,,,,,,,,,,\nS 3,Bo,19400312-1234,,,,,,,,,,8080,,,,,,,,,,,,,\n"
        ),
    )
    .unwrap();
    let (code, out, err) = vakt(&[
        "subscribers",
        "import",
        "--data-dir",
        data_s,
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 65, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("line 3: name is empty"), "{err}");
    assert!(err.contains("line 4: id \"S 3\""), "{err}");
    assert!(!err.contains("8080") && !err.contains("4711"), "{err}");
    assert!(
        !data.exists(),
        "nothing was imported, not even a data directory made"
    );

    std::fs::write(
        &csv,
        format!(
            "\u{feff}{header}\n{good}\nS-1002,Per Persson,12034512345,,,Oslo,,,,,,,,,,,,,,,,,,,,nb\n"
        ),
    )
    .unwrap();
    let (code, out, err) = vakt(&[
        "subscribers",
        "import",
        "--data-dir",
        data_s,
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("imported 2 subscribers (2 new, 0 updated)"),
        "{out}"
    );
    let store = vakt::store::Store::open(&data).unwrap();
    let s = store.subscriber("S-1001").unwrap().unwrap();
    assert_eq!(s.name, "Åsa Öberg");
    assert_eq!(s.access.door_code, "4711");
    assert_eq!(s.contacts[0].name, "Björn Öberg");
    assert_eq!(store.subscriber_count().unwrap(), 2);
    let log = store.audit_after(0, 10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, "subscriber.import");
    drop(store);

    let (code, _, _) = vakt(&[
        "subscribers",
        "import",
        "--data-dir",
        data_s,
        "/nonexistent/file.csv",
    ]);
    assert_eq!(code, 65);
}

#[test]
fn audit_export_of_an_empty_log_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_s = dir.path().to_str().unwrap();
    let (code, out, err) = vakt(&["audit", "export", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    let (code, out, err) = vakt(&["audit", "export", "--data-dir", data_s, "--after", "5"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, _, _) = vakt(&["audit", "export", "--data-dir", "/nonexistent/dir"]);
    assert_eq!(code, 64);
}

#[test]
fn users_add_refuses_while_the_server_holds_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = vakt::store::Store::open(dir.path()).unwrap();
    let (code, _, err) = vakt_with_stdin(
        &[
            "users",
            "add",
            "anna",
            "--role",
            "operator",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        "korrekt häst batteri\n",
    );
    assert_ne!(code, 0);
    assert!(err.contains("another vakt"), "{err}");
    assert_eq!(store.user_count().unwrap(), 0);
    drop(store);
}

/// The demo directory's files: providers, areas, patrols, routes.
fn demo_directory() -> [String; 4] {
    ["providers", "areas", "patrols", "routes"].map(|f| {
        format!(
            "{}/config/demo-directory/{f}.csv",
            env!("CARGO_MANIFEST_DIR")
        )
    })
}

fn directory_import(data: &str, files: &[String; 4]) -> (i32, String, String) {
    vakt(&[
        "directory",
        "import",
        "--data-dir",
        data,
        "--providers",
        &files[0],
        "--areas",
        &files[1],
        "--patrols",
        &files[2],
        "--routes",
        &files[3],
    ])
}

#[test]
fn directory_import_is_all_or_nothing_and_patrol_tokens_are_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let demo = demo_directory();

    // A patrol of an unknown provider and a routes file without its header: both reported,
    // by file and line, and nothing imported.
    let patrols = dir.path().join("patrols.csv");
    let routes = dir.path().join("routes.csv");
    let mut text = std::fs::read_to_string(&demo[2]).unwrap();
    text.push_str("ny,Ny patrull,okand,norr,night 21:30-07:00,\n");
    std::fs::write(&patrols, text).unwrap();
    std::fs::write(&routes, "provider,area\n*,norr\n").unwrap();
    let bad = [
        demo[0].clone(),
        demo[1].clone(),
        patrols.to_str().unwrap().to_string(),
        routes.to_str().unwrap().to_string(),
    ];
    let (code, out, err) = directory_import(data_s, &bad);
    assert_eq!(code, 65, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(
        err.contains(&format!(
            "{}: line 18: provider okand is not in the providers file",
            patrols.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}: line 1: the header must be exactly `provider,area,patrols`",
            routes.display()
        )),
        "{err}"
    );
    assert!(!data.exists(), "nothing imported, no data directory made");

    // A file that cannot be read.
    let mut missing = demo.clone();
    missing[1] = "/nonexistent/areas.csv".to_string();
    let (code, _, err) = directory_import(data_s, &missing);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("/nonexistent/areas.csv"), "{err}");

    // The demo directory imports.
    let (code, out, err) = directory_import(data_s, &demo);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("6 providers, 4 areas, 16 patrols, 9 routing rules"),
        "{out}"
    );

    // Tokens: only for patrols in the directory; printed once, stored as a hash.
    let (code, out, err) = vakt(&["patrols", "token", "ingen", "--data-dir", data_s]);
    assert_eq!(code, 65, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("no patrol \"ingen\""), "{err}");
    let (code, _, _) = vakt(&[
        "patrols",
        "token",
        "natt-1",
        "--data-dir",
        "/nonexistent/dir",
    ]);
    assert_eq!(code, 64);
    let token = |id: &str| {
        let (code, out, err) = vakt(&["patrols", "token", id, "--data-dir", data_s]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(err.contains("only this once"), "{err}");
        let t = out.trim().to_string();
        assert_eq!(t.len(), 64, "{t}");
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
        t
    };
    let first = token("natt-1");
    let second = token("natt-1");
    assert_ne!(first, second);
    token("norr-dag");
    {
        let store = vakt::store::Store::open(&data).unwrap();
        let hash = vakt::store::token_hash;
        assert!(!store.patrol_token_matches("natt-1", &hash(&first)).unwrap());
        assert!(
            store
                .patrol_token_matches("natt-1", &hash(&second))
                .unwrap()
        );
        assert!(
            !store
                .patrol_token_matches("natt-2", &hash(&second))
                .unwrap()
        );
        let d = store.directory().unwrap();
        assert_eq!(d.patrols.len(), 16);
        assert_eq!(
            d.provider_for("Hemtjänst Norr").unwrap().id,
            "hemtjanst-norr"
        );
    }

    // The audit log has the import and the tokens, never a token.
    let (code, out, err) = vakt(&["audit", "export", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("directory.import"), "{out}");
    assert_eq!(out.matches("patrol.token").count(), 3, "{out}");
    assert!(!out.contains(&first) && !out.contains(&second), "{out}");

    // Importing a directory without natt-1 removes its token.
    let mut text = std::fs::read_to_string(&demo[2]).unwrap();
    text = text
        .lines()
        .filter(|l| !l.starts_with("natt-1,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&patrols, text).unwrap();
    let text = std::fs::read_to_string(&demo[3])
        .unwrap()
        .replace("natt-1;", "")
        .replace(";natt-1", "");
    std::fs::write(&routes, text).unwrap();
    let fewer = [
        demo[0].clone(),
        demo[1].clone(),
        patrols.to_str().unwrap().to_string(),
        routes.to_str().unwrap().to_string(),
    ];
    let (code, out, err) = directory_import(data_s, &fewer);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("15 patrols"), "{out}");
    assert!(out.contains("removed the tokens of 1 patrols"), "{out}");
    let (code, _, err) = vakt(&["patrols", "token", "natt-1", "--data-dir", data_s]);
    assert_eq!(code, 65, "{err}");
}

#[test]
fn directory_import_refuses_while_the_server_holds_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = vakt::store::Store::open(dir.path()).unwrap();
    let (code, _, err) = directory_import(dir.path().to_str().unwrap(), &demo_directory());
    assert_ne!(code, 0);
    assert!(err.contains("another vakt"), "{err}");
    assert!(store.directory().unwrap().is_empty());
    let (code, out, err) = vakt(&[
        "patrols",
        "token",
        "natt-1",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert_eq!(out, "", "no token printed");
    assert!(err.contains("another vakt"), "{err}");
    drop(store);
}

#[test]
fn month_reports_of_an_empty_data_dir_have_zeros_and_bad_input_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data_s = data.to_str().unwrap();

    // A bad month, time zone or data directory: 64, and nothing is opened or made.
    for month in ["2026-13", "11-2026", "november"] {
        let (code, out, err) = vakt(&["report", "sla", "--month", month, "--data-dir", data_s]);
        assert_eq!(code, 64, "{month}: {err}");
        assert_eq!(out, "");
        assert!(err.contains("YYYY-MM"), "{err}");
    }
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    let (code, _, err) = vakt(&[
        "report",
        "sla",
        "--month",
        "2026-11",
        "--time-zone",
        "Europe/Vaktby",
        "--data-dir",
        data_s,
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("Europe/Vaktby"), "{err}");
    let (code, _, _) = vakt(&[
        "report",
        "sla",
        "--month",
        "2026-11",
        "--data-dir",
        "/nonexistent/dir",
    ]);
    assert_eq!(code, 64);

    // An empty data directory: a report of zeros, in each format.
    let (code, out, err) = vakt(&[
        "report",
        "sla",
        "--month",
        "2026-11",
        "--format",
        "csv",
        "--data-dir",
        data_s,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "{}\n2026-11,*,*,*,*,0,0,,,0,,,0,0,0,0\n",
            vakt::dispatch::report::CSV_HEADER
        )
    );
    let (code, out, err) = vakt(&["report", "sla", "--month", "2026-11", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Arrival SLA 2026-11 (Europe/Stockholm"),
        "{out}"
    );
    assert!(out.contains("0 opened, 0 answered"), "{out}");
    let (code, out, err) = vakt(&[
        "report",
        "sla",
        "--month",
        "2026-11",
        "--format",
        "json",
        "--data-dir",
        data_s,
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["month"], "2026-11");
    assert_eq!(v["from"], "2026-10-31T23:00:00Z");
    assert_eq!(v["totals"]["dispatches"], 0);
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["answer"]["calls"], 0);
    assert_eq!(v["answer"]["target_60s_pct"], 97.5);

    // The month's visits, the same way: none yet, in each format; a bad month is 64.
    let visits = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "visits",
            "--month",
            "2026-11",
            "--data-dir",
            data_s,
        ];
        args.extend_from_slice(extra);
        vakt(&args)
    };
    let (code, out, err) = visits(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Alarm visits 2026-11 (Europe/Stockholm)\n\nNo visits.\n"
    );
    let (code, out, err) = visits(&["--format", "csv", "--provider", "hemtjanst-norr"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{}\n", vakt::dispatch::visits::CSV_HEADER));
    let (code, out, err) = visits(&["--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["visits"], serde_json::json!([]));
    let (code, _, err) = vakt(&[
        "report",
        "visits",
        "--month",
        "2026-13",
        "--data-dir",
        data_s,
    ]);
    assert_eq!(code, 64, "{err}");
}

#[test]
fn report_sla_counts_dispatches_in_the_local_month_and_names_breached_calls() {
    use jiff::ToSpan;
    use vakt::model::{Dispatch, DispatchState};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let d = |id: u64, offered: &str, arrive_secs: i64| {
        let offered_at: jiff::Timestamp = offered.parse().unwrap();
        let received_at = offered_at + 30.seconds();
        let arrived_at = received_at + arrive_secs.seconds();
        Dispatch {
            id,
            call: 40 + id,
            patrol: "norr-kvall-1".into(),
            provider: "hemtjanst-norr".into(),
            area: "norr".into(),
            state: DispatchState::Completed,
            offered_at,
            received_at: Some(received_at),
            accepted_at: Some(received_at),
            arrived_at: Some(arrived_at),
            arrival_method: None,
            ended_at: Some(arrived_at),
            limit_mins: 30,
            warned_at_mins: Vec::new(),
            breached: arrive_secs >= 1800,
            note: String::new(),
            operator: "olle".into(),
            instruction: String::new(),
        }
    };
    {
        std::fs::create_dir(&data).unwrap();
        let store = vakt::store::Store::open(&data).unwrap();
        store
            .save_dispatches(&[
                d(1, "2026-11-10T08:00:00Z", 1200),
                d(2, "2026-11-12T08:00:00Z", 2400),
                // 00:30 on 1 December in Stockholm; still November in UTC.
                d(3, "2026-11-30T23:30:00Z", 2500),
            ])
            .unwrap();

        // While the data directory is held (as by a running server): a clear error.
        let (code, out, err) = vakt(&["report", "sla", "--month", "2026-11", "--data-dir", data_s]);
        assert_ne!(code, 0);
        assert_eq!(out, "");
        assert!(err.contains("another vakt"), "{err}");
        assert!(err.contains("/api/reports/sla?month=2026-11"), "{err}");
    }

    let csv = |args: &[&str]| {
        let mut all = vec!["report", "sla", "--month", "2026-11", "--format", "csv"];
        all.extend_from_slice(args);
        let (code, out, err) = vakt(&all);
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = csv(&["--data-dir", data_s]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1]
            .starts_with("2026-11,hemtjanst-norr,hemtjanst-norr,norr,norr,2,2,1200,2400,1,42,2,"),
        "{out}"
    );

    // The time zone from a configuration file, or from the command line.
    let cfg = dir.path().join("vakt.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = {data_s:?}\n[http]\ntime_zone = \"UTC\"\n"),
    )
    .unwrap();
    let out = csv(&["--config", cfg.to_str().unwrap()]);
    assert!(out.contains(",*,*,*,*,3,3,2400,2500,2,42;43,2;3,"), "{out}");
    let out = csv(&[
        "--config",
        cfg.to_str().unwrap(),
        "--time-zone",
        "Europe/Stockholm",
    ]);
    assert!(out.contains(",*,*,*,*,2,2,"), "{out}");

    // One care provider's, or one municipality's (the dispatches' Calls name nobody, so
    // none are a municipality's); not both at once.
    let out = csv(&["--data-dir", data_s, "--provider", "hemtjanst-norr"]);
    assert!(out.contains(",*,*,*,*,2,2,"), "{out}");
    let out = csv(&["--data-dir", data_s, "--provider", "hemtjanst-syd"]);
    assert!(out.contains(",*,*,*,*,0,0,"), "{out}");
    let (code, out, err) = vakt(&[
        "report",
        "sla",
        "--month",
        "2026-11",
        "--data-dir",
        data_s,
        "--municipality",
        "Nordby kommun",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("municipality Nordby kommun"), "{out}");
    let (code, _, err) = vakt(&[
        "report",
        "sla",
        "--month",
        "2026-11",
        "--data-dir",
        data_s,
        "--municipality",
        "Nordby kommun",
        "--provider",
        "hemtjanst-norr",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn integration_tokens_are_shown_once_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data_s = data.to_str().unwrap();

    let (code, out, err) = vakt(&["integrations", "list", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("no integrations"), "{err}");

    let token = |name: &str| {
        let (code, out, err) = vakt(&["integrations", "token", name, "--data-dir", data_s]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(err.contains("only this once"), "{err}");
        assert!(err.contains("/api/locks/events"), "{err}");
        let t = out.trim().to_string();
        assert_eq!(t.len(), 64, "{t}");
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
        t
    };
    let first = token("phoniro");
    let second = token("phoniro");
    assert_ne!(first, second);
    let other = token("carebee");
    let (code, out, err) = vakt(&["integrations", "list", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "carebee\nphoniro\n");
    {
        let store = vakt::store::Store::open(&data).unwrap();
        let hash = vakt::store::token_hash;
        assert_eq!(store.integration_for_token(&hash(&first)).unwrap(), None);
        assert_eq!(
            store.integration_for_token(&hash(&second)).unwrap(),
            Some("phoniro".to_string())
        );
        assert_eq!(
            store.integration_for_token(&hash(&other)).unwrap(),
            Some("carebee".to_string())
        );
    }

    let (code, out, err) = vakt(&["integrations", "revoke", "phoniro", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked integration phoniro"), "{out}");
    let (code, _, err) = vakt(&["integrations", "revoke", "phoniro", "--data-dir", data_s]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("no integration \"phoniro\""), "{err}");
    let (code, out, _) = vakt(&["integrations", "list", "--data-dir", data_s]);
    assert_eq!(code, 0);
    assert_eq!(out, "carebee\n");

    // Bad names and data directories are usage errors.
    for bad in ["Phoniro", "lås", "a b", ""] {
        let (code, out, err) = vakt(&["integrations", "token", bad, "--data-dir", data_s]);
        assert_eq!(code, 64, "{bad:?}: {err}");
        assert_eq!(out, "");
    }
    let (code, _, _) = vakt(&[
        "integrations",
        "token",
        "phoniro",
        "--data-dir",
        "/nonexistent/dir",
    ]);
    assert_eq!(code, 64);

    // The audit log has the tokens and the revocation, never a token.
    let (code, out, err) = vakt(&["audit", "export", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("integration.token").count(), 3, "{out}");
    assert_eq!(out.matches("integration.revoke").count(), 1, "{out}");
    for t in [&first, &second, &other] {
        assert!(!out.contains(t.as_str()), "{out}");
    }

    // Refused while the data directory is held, and no token is printed.
    let store = vakt::store::Store::open(&data).unwrap();
    let (code, out, err) = vakt(&["integrations", "token", "ny", "--data-dir", data_s]);
    assert_ne!(code, 0);
    assert_eq!(out, "");
    assert!(err.contains("another vakt"), "{err}");
    drop(store);
}

#[test]
fn patrol_client_needs_a_way_to_trust_the_server_and_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "hemlig-token-123\n").unwrap();
    let token_s = token.to_str().unwrap();
    let data_s = dir.path().to_str().unwrap();
    let base = [
        "patrol",
        "--server",
        "127.0.0.1:9",
        "--patrol",
        "natt-1",
        "--token-file",
        token_s,
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        vakt(&args)
    };

    // Neither --ca nor --insecure-dev: both are explained.
    let (code, out, err) = run(&[]);
    assert_eq!(code, 64, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("--ca FILE") && err.contains("--insecure-dev"),
        "{err}"
    );
    // --insecure-dev without a fingerprint or a development certificate: none is made.
    let (code, _, err) = run(&["--insecure-dev", "--data-dir", data_s]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("patrol-dev-cert.pem"), "{err}");
    assert!(err.contains("--fingerprint"), "{err}");
    assert!(!dir.path().join("patrol-dev-cert.pem").exists());
    // A fingerprint that is not one; a CA file that is not there; both trust flags.
    let (code, _, err) = run(&["--insecure-dev", "--fingerprint", "ab:cd"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("not a SHA-256 fingerprint"), "{err}");
    let (code, _, err) = run(&["--ca", "/nonexistent/ca.pem"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let (code, _, _) = run(&["--ca", "/nonexistent/ca.pem", "--insecure-dev"]);
    assert_eq!(code, 2, "clap refuses both");

    // The token file must hold the token, or a `PATROL TOKEN` line for --patrol.
    let fp = "AB".repeat(32);
    std::fs::write(&token, "\n").unwrap();
    let (code, _, err) = run(&["--insecure-dev", "--fingerprint", &fp]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("no token in it"), "{err}");
    std::fs::write(&token, "natt-2 hemlig-token-456\n").unwrap();
    let (code, _, err) = run(&["--insecure-dev", "--fingerprint", &fp]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("is for patrol natt-1"), "{err}");
    assert!(!err.contains("hemlig-token-456"), "{err}");
    let (code, _, err) = vakt(&[
        "patrol",
        "--server",
        "127.0.0.1:9",
        "--patrol",
        "natt-1",
        "--token-file",
        "/nonexistent/token",
        "--insecure-dev",
        "--fingerprint",
        &fp,
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("/nonexistent/token"), "{err}");

    // With trust and a token it starts (and tries to connect; nothing listens on
    // 127.0.0.1:9), says which certificate it trusts, and never prints the token.
    std::fs::write(&token, "hemlig-token-123\n").unwrap();
    let mut child = Command::new(BIN)
        .args(base)
        .args(["--insecure-dev", "--fingerprint", &fp])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("fingerprint {}", "AB:".repeat(31) + "AB")),
        "{stderr}"
    );
    assert!(stdout.contains("commands: r ID (received)"), "{stdout}");
    assert!(
        !stdout.contains("hemlig-token-123") && !stderr.contains("hemlig-token-123"),
        "{stdout}{stderr}"
    );
}

#[test]
fn patrol_client_pins_the_dev_certificate_logs_in_and_a_bad_token_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let (code, _, err) = directory_import(data_s, &demo_directory());
    assert_eq!(code, 0, "{err}");
    let (code, token, err) = vakt(&["patrols", "token", "natt-1", "--data-dir", data_s]);
    assert_eq!(code, 0, "{err}");
    let token_file = dir.path().join("natt-1.token");
    std::fs::write(&token_file, &token).unwrap();
    let bad_file = dir.path().join("bad.token");
    std::fs::write(&bad_file, "0".repeat(64)).unwrap();

    let cfg = dir.path().join("vakt.toml");
    std::fs::write(
        &cfg,
        "[dc09]\nlisten_tcp = \"127.0.0.1:0\"\nlisten_udp = \"\"\n[http]\nlisten = \"\"\n\
         [patrol]\nlisten_quic = \"127.0.0.1:0\"\n[scaip]\nlisten_udp = \"\"\nlisten_tcp = \"\"\n",
    )
    .unwrap();
    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            data_s,
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let (addr, fingerprint) = loop {
        let line = lines.next().expect("patrol link printed").unwrap();
        if let Some(rest) = line.strip_prefix("vakt: patrol link (QUIC) on ") {
            let (addr, rest) = rest.split_once(';').unwrap();
            let fp = rest.split_whitespace().nth(3).unwrap().to_string();
            break (addr.to_string(), fp);
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let patrol = |file: &std::path::Path, trust: &[&str]| {
        let mut args = vec![
            "patrol",
            "--server",
            &addr,
            "--patrol",
            "natt-1",
            "--token-file",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(trust);
        vakt_with_stdin(&args, "q\n")
    };
    // The development certificate read from the server's data directory (never made here).
    let (code, out, err) = patrol(&token_file, &["--insecure-dev", "--data-dir", data_s]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains(&fingerprint), "{err}");
    assert!(out.contains("connected; no open assignment"), "{out}");
    assert!(!out.contains(token.trim()) && !err.contains(token.trim()));
    // The fingerprint as the server printed it.
    let (code, out, err) = patrol(
        &token_file,
        &["--insecure-dev", "--fingerprint", &fingerprint],
    );
    assert_eq!(code, 0, "{out}{err}");
    // A file with a `PATROL TOKEN` line per patrol (as the demo's demo-patrols.txt): the
    // line of --patrol is used.
    let logins = dir.path().join("patrols.txt");
    std::fs::write(
        &logins,
        format!(
            "# PATROL TOKEN\nnatt-2 {}\nnatt-1 {}\n",
            "1".repeat(64),
            token.trim()
        ),
    )
    .unwrap();
    let (code, out, err) = patrol(&logins, &["--insecure-dev", "--fingerprint", &fingerprint]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("connected; no open assignment"), "{out}");
    // The development certificate file as the CA file: verified the normal way.
    let ca = data.join("patrol-dev-cert.pem");
    let (code, out, err) = patrol(&token_file, &["--ca", ca.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("connected; no open assignment"), "{out}");
    // A bad token is refused, and the client does not retry it.
    let (code, _, err) = patrol(
        &bad_file,
        &["--insecure-dev", "--fingerprint", &fingerprint],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad_token"), "{err}");
    // Another certificate pinned: no connection is trusted (it keeps retrying, so it is
    // stopped after a moment).
    let mut child = Command::new(BIN)
        .args([
            "patrol",
            "--server",
            &addr,
            "--patrol",
            "natt-1",
            "--token-file",
        ])
        .arg(&token_file)
        .args(["--insecure-dev", "--fingerprint", &"AB".repeat(32)])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("connected; open"), "{stdout}");
    assert!(stdout.contains("not connected"), "{stdout}");

    sigterm(&server);
    assert!(server.wait().unwrap().success());
}

#[test]
fn each_imports_help_shows_the_header_vakt_writes() {
    for (what, header) in [
        ("devices", vakt::registers::devices::CSV_HEADER),
        ("subscribers", vakt::registers::subscribers::CSV_HEADER),
    ] {
        let (code, out, err) = vakt(&[what, "import", "--help"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(header), "{what} import --help:\n{out}");
    }
}

#[test]
fn the_staff_list_imports_all_or_nothing_and_keeps_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/demo-directory/staff.csv"
    );
    let (code, out, err) = vakt(&["directory", "staff", "--data-dir", data_s, demo]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("5 people"), "{out}");

    // A bad row: exit 65, by line, and the list imported before stays.
    let bad = dir.path().join("staff.csv");
    std::fs::write(
        &bad,
        "name,phone,role,note\nPer Holm,070 12,,\nLena Ek,,,\n",
    )
    .unwrap();
    let (code, _, err) = vakt(&[
        "directory",
        "staff",
        "--data-dir",
        data_s,
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("line 3: phone is empty"), "{err}");
    let store = vakt::store::Store::open(&data).unwrap();
    let staff = store.staff().unwrap();
    assert_eq!(staff.len(), 5);
    assert_eq!(
        (staff[0].name.as_str(), staff[0].phone.as_str()),
        ("Karin Berg", "070-174 07 01")
    );
    let audit = store.audit_latest(10).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "directory.import" && e.detail.contains("5 people")),
        "{audit:?}"
    );
}
