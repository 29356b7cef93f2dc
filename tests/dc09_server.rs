//! The receiving core end to end: a real server on 127.0.0.1:0, real TCP and UDP bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use vakt_proto::dc09;

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

#[tokio::test]
async fn plain_alarm_gets_the_exact_ack_and_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    // protocols.md §1.10: CID 101 personal emergency and its expected ACK, byte for byte.
    let reply = tcp_roundtrip(
        tcp,
        b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r",
    )
    .await;
    assert_eq!(reply, b"\n1BC10012\"ACK\"0001L0#1234[]\r");
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 1);
    let s = &sigs[0];
    assert_eq!(s["account"], "1234");
    assert_eq!(s["protocol"], "ADM-CID");
    assert_eq!(s["seq"], "0001");
    assert_eq!(s["subscriber"], "anna");
    assert_eq!(s["flags"], serde_json::json!([]));
    assert_eq!(s["events"][0]["code"], "CID 101");
    assert_eq!(s["events"][0]["qualifier"], "new");
    assert_eq!(s["events"][0]["zone"], 1);
    assert_eq!(s["events"][0]["group"], 1);
    assert_eq!(
        s["raw"],
        "\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r"
    );
    assert_eq!(s["transport"], "tcp");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn sia_dcs_and_restore_decode() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    let reply = tcp_roundtrip(
        tcp,
        b"\n685C003A\"SIA-DCS\"0003L0#1234[#1234|Nri1/MA001]_10:15:00,03-01-2025\r",
    )
    .await;
    assert_eq!(reply, b"\nD1600012\"ACK\"0003L0#1234[]\r");
    let reply = tcp_roundtrip(
        tcp,
        b"\n21EF0027\"ADM-CID\"0002L0#1234[#1234|3101 01 001]\r",
    )
    .await;
    assert_eq!(reply, b"\n14310012\"ACK\"0002L0#1234[]\r");
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0]["events"][0]["code"], "SIA MA");
    assert_eq!(sigs[0]["events"][0]["zone"], 1);
    assert_eq!(sigs[0]["transmitted_at"], "2025-03-01T10:15:00Z");
    assert_eq!(sigs[1]["events"][0]["qualifier"], "restore");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn many_frames_split_and_pipelined_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let mut s = TcpStream::connect(srv.dc09_tcp.unwrap()).await.unwrap();
    // 40 distinct alarms with noise and NULs between them, written in odd-sized pieces.
    let mut stream = Vec::new();
    for i in 0..40u16 {
        stream.extend(plain(
            "ADM-CID",
            100 + i,
            "1234",
            &format!("#1234|1101 01 {:03}", i + 1),
        ));
        if i % 3 == 0 {
            stream.extend_from_slice(b"\0\0garbage ");
        }
    }
    for chunk in stream.chunks(7) {
        s.write_all(chunk).await.unwrap();
    }
    for i in 0..40u16 {
        let r = read_reply(&mut s).await;
        let f = dc09::parse(&r).unwrap();
        assert_eq!(f.id, "ACK");
        assert_eq!(f.seq, format!("{:04}", 100 + i), "answers come in order");
    }
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 40);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn retransmission_is_acked_but_journaled_once_even_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let frame = plain("SIA-DCS", 7, "1234", "#1234|Nri1/FA002");
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    let a = tcp_roundtrip(tcp, &frame).await;
    let b = tcp_roundtrip(tcp, &frame).await;
    assert_eq!(token_of(&a), "ACK");
    assert_eq!(a, b);
    // The same payload with another sequence number is a new event.
    assert_eq!(
        token_of(&tcp_roundtrip(tcp, &plain("SIA-DCS", 8, "1234", "#1234|Nri1/FA002")).await),
        "ACK"
    );
    assert_eq!(signals(srv.http.unwrap()).await.len(), 2);
    srv.stop().await.unwrap();

    // The dedup window survives a restart.
    let srv = start_with(test_config(dir.path())).await;
    let c = tcp_roundtrip(srv.dc09_tcp.unwrap(), &frame).await;
    assert_eq!(token_of(&c), "ACK");
    assert_eq!(signals(srv.http.unwrap()).await.len(), 2);
    let (_, metrics) = http_get(srv.http.unwrap(), "/metrics").await;
    assert!(metrics.contains("vakt_duplicates_total"), "{metrics}");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn bad_crc_gets_nak_and_the_connection_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let mut s = TcpStream::connect(srv.dc09_tcp.unwrap()).await.unwrap();
    s.write_all(b"\n21180027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r")
        .await
        .unwrap();
    let r = read_reply(&mut s).await;
    let text = String::from_utf8_lossy(&r);
    assert!(text.contains("\"NAK\"0000R0L0A0[]_"), "{text}");
    dc09::parse(&r).expect("the NAK is itself a valid frame");
    // Bad length too.
    s.write_all(b"\n21170028\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r")
        .await
        .unwrap();
    assert_eq!(token_of(&read_reply(&mut s).await), "NAK");
    // Same connection, valid frame.
    s.write_all(b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r")
        .await
        .unwrap();
    assert_eq!(
        read_reply(&mut s).await,
        b"\n1BC10012\"ACK\"0001L0#1234[]\r"
    );
    assert_eq!(
        signals(srv.http.unwrap()).await.len(),
        1,
        "NAKed frames are not journaled"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn encrypted_aes128_192_256_get_star_ack_and_are_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    for (acct, key, data) in [
        ("5678", key128(), "#5678|1101 01 001"),
        ("1929", key192(), "#1929|1100 01 002"),
        ("9ABC", key256(), "#9ABC|Nri1/FA003"),
    ] {
        let id = if data.contains("|N") {
            "SIA-DCS"
        } else {
            "ADM-CID"
        };
        let reply = tcp_roundtrip(tcp, &encrypted(id, 11, acct, data, &key, now())).await;
        let f = dc09::parse(&reply).unwrap();
        assert!(f.encrypted, "{}", String::from_utf8_lossy(&reply));
        assert_eq!(f.id, "ACK");
        assert_eq!(f.account, Some(acct));
        assert_eq!(f.seq, "0011");
        let c = f.decrypt(&key).expect("*ACK decrypts with the device key");
        assert!(c.data.is_empty());
        let ts = c.timestamp.expect("*ACK carries the receiver's time");
        assert!(dc09::within_window(ts, now(), 60, 60));
    }
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 3);
    assert!(
        sigs.iter()
            .all(|s| s["encrypted"] == true && s["flags"] == serde_json::json!([]))
    );
    assert_eq!(sigs[0]["events"][0]["code"], "CID 101");
    assert_eq!(sigs[2]["events"][0]["code"], "SIA FA");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn encrypted_outside_the_window_gets_nak_and_is_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    let stale = now() - jiff::SignedDuration::from_secs(41 + 5);
    let early = now() + jiff::SignedDuration::from_secs(21 + 5);
    for ts in [stale, early] {
        let reply = tcp_roundtrip(
            tcp,
            &encrypted("ADM-CID", 12, "5678", "#5678|1101 01 001", &key128(), ts),
        )
        .await;
        let f = dc09::parse(&reply).unwrap();
        assert_eq!(f.id, "NAK");
        assert!(!f.encrypted, "NAK is never encrypted");
        assert_eq!(f.account, None, "the A0 form");
    }
    assert!(signals(srv.http.unwrap()).await.is_empty());
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_account_is_acked_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    let reply = tcp_roundtrip(
        tcp,
        b"\n7449003F\"ADM-CID\"0078R1L0#AAAA[#00AAAA|3407 01 001]_01:59:16,09-21-2023\r",
    )
    .await;
    assert_eq!(reply, b"\n1CA50014\"ACK\"0078R1L0#AAAA[]\r");
    // Account 4321 is registered on line 1 only: on line 0 it is unknown.
    let reply = tcp_roundtrip(tcp, &plain("ADM-CID", 5, "4321", "#4321|1101 01 001")).await;
    assert_eq!(token_of(&reply), "ACK");
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 2);
    for s in &sigs {
        assert_eq!(s["flags"], serde_json::json!(["unknown_device"]), "{s}");
    }
    assert_eq!(sigs[0]["receiver"], "1");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn undecryptable_is_journaled_raw_and_answered_duh() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    // 1234 has no key; 5678 has another key than the one used.
    let no_key = encrypted("ADM-CID", 20, "1234", "#1234|1101 01 001", &key128(), now());
    let wrong_key = encrypted("ADM-CID", 21, "5678", "#5678|1101 01 001", &key256(), now());
    for f in [&no_key, &wrong_key] {
        let reply = tcp_roundtrip(tcp, f).await;
        let p = dc09::parse(&reply).unwrap();
        assert_eq!(
            (p.id, p.encrypted),
            ("DUH", false),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0]["flags"], serde_json::json!(["undecryptable"]));
    assert_eq!(sigs[0]["raw"], String::from_utf8(no_key).unwrap());
    assert_eq!(sigs[1]["flags"], serde_json::json!(["undecryptable"]));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn null_link_test_is_acked_at_once_and_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    assert_eq!(
        tcp_roundtrip(tcp, b"\nCBB30013\"NULL\"0004L0#1234[]\r").await,
        b"\n0BD10012\"ACK\"0004L0#1234[]\r"
    );
    let reply = tcp_roundtrip(tcp, &encrypted("NULL", 5, "5678", "", &key128(), now())).await;
    assert_eq!(token_of(&reply), "*ACK");
    // A NULL with data, as seen in the field.
    let reply = tcp_roundtrip(
        tcp,
        b"\nCA2F0038\"NULL\"0000L0#7890[#0000|0000 00 000]_22:13:29,12-29-2022\r",
    )
    .await;
    assert_eq!(token_of(&reply), "ACK");
    assert!(signals(srv.http.unwrap()).await.is_empty());
    let (_, m) = http_get(srv.http.unwrap(), "/metrics").await;
    assert!(m.contains("vakt_heartbeats_total"), "{m}");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn unsupported_id_gets_duh_and_control_tokens_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let reply = tcp_roundtrip(
        srv.dc09_tcp.unwrap(),
        &plain("SIA-PUL", 3, "1234", "#1234|1234"),
    )
    .await;
    let f = dc09::parse(&reply).unwrap();
    assert_eq!(f.id, "DUH");
    assert_eq!(f.seq, "0003");
    assert_eq!(f.account, Some("1234"));
    // A control token gets no answer at all: the next answer on the connection is the
    // NULL's.
    let mut s = TcpStream::connect(srv.dc09_tcp.unwrap()).await.unwrap();
    s.write_all(b"\n1BC10012\"ACK\"0001L0#1234[]\r\nCBB30013\"NULL\"0004L0#1234[]\r")
        .await
        .unwrap();
    assert_eq!(
        read_reply(&mut s).await,
        b"\n0BD10012\"ACK\"0004L0#1234[]\r"
    );
    assert!(signals(srv.http.unwrap()).await.is_empty());
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn quirks_decimal_length_and_lowercase_and_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    // Eldes: decimal length with a valid CRC (protocols.md §1.9).
    let reply = tcp_roundtrip(
        tcp,
        b"\n57150047\"ADM-CID\"0247R4F39L4F39#4F39[#4F39|3401 01 057]\r",
    )
    .await;
    assert_eq!(token_of(&reply), "ACK");
    // No L field (RS's example form): the answer echoes none.
    let mut f = Vec::new();
    dc09::encode_frame(
        &dc09::FrameSpec {
            id: "SIA-DCS",
            seq: 9,
            receiver: None,
            line: None,
            account: "1234",
            data: b"#1234|Nri1/MA001",
            xdata: &[],
            timestamp: None,
        },
        &mut f,
    );
    let reply = tcp_roundtrip(tcp, &f).await;
    let p = dc09::parse(&reply).unwrap();
    assert_eq!((p.id, p.line), ("ACK", None));
    // Lowercase CRC and length.
    let lower = b"\n685c003a\"SIA-DCS\"0003L0#1234[#1234|Nri1/MA001]_10:15:00,03-01-2025\r";
    assert_eq!(token_of(&tcp_roundtrip(tcp, lower).await), "ACK");
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 3);
    assert_eq!(
        sigs[0]["flags"],
        serde_json::json!(["unknown_device", "length_decimal"])
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn udp_frames_are_answered_to_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let udp = srv.dc09_udp.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 4096];
    let mut ask = async |frame: &[u8]| {
        sock.send_to(frame, udp).await.unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
            .await
            .expect("udp answer within 10 s")
            .unwrap();
        assert_eq!(from, udp);
        buf[..n].to_vec()
    };
    assert_eq!(
        ask(b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r").await,
        b"\n1BC10012\"ACK\"0001L0#1234[]\r"
    );
    // Retransmission over UDP (trailing NULs, as some devices send).
    assert_eq!(
        ask(b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r\0\0\0").await,
        b"\n1BC10012\"ACK\"0001L0#1234[]\r"
    );
    let r = ask(&encrypted(
        "ADM-CID",
        30,
        "9ABC",
        "#9ABC|1111 01 004",
        &key256(),
        now(),
    ))
    .await;
    assert_eq!(token_of(&r), "*ACK");
    assert_eq!(
        token_of(&ask(b"\nCBB30013\"NULL\"0004L0#1234[]\r").await),
        "ACK"
    );
    assert_eq!(
        token_of(&ask(b"\n21180027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r").await),
        "NAK"
    );
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0]["transport"], "udp");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_frame_is_refused_without_harming_others() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    let mut bad = TcpStream::connect(tcp).await.unwrap();
    let mut junk = vec![b'\n'];
    junk.extend(std::iter::repeat_n(b'A', 10_000));
    bad.write_all(&junk).await.unwrap();
    // Another device is served meanwhile.
    assert_eq!(
        tcp_roundtrip(
            tcp,
            b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r"
        )
        .await,
        b"\n1BC10012\"ACK\"0001L0#1234[]\r"
    );
    assert_eq!(token_of(&read_reply(&mut bad).await), "NAK");
    // And the misbehaving connection can still send a good frame.
    bad.write_all(b"\r\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r")
        .await
        .unwrap();
    assert_eq!(token_of(&read_reply(&mut bad).await), "ACK");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.dc09.idle_timeout_secs = 1;
    let srv = start_with(cfg).await;
    let mut s = TcpStream::connect(srv.dc09_tcp.unwrap()).await.unwrap();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
        .await
        .expect("closed within 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn connection_limit_holds_new_devices_until_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.dc09.max_connections = 1;
    let srv = start_with(cfg).await;
    let tcp = srv.dc09_tcp.unwrap();
    let first = TcpStream::connect(tcp).await.unwrap();
    // Let the server take the only permit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = TcpStream::connect(tcp).await.unwrap(); // waits in the backlog
    second
        .write_all(b"\nCBB30013\"NULL\"0004L0#1234[]\r")
        .await
        .unwrap();
    let mut b = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut b)).await;
    assert!(early.is_err(), "not served while the only slot is taken");
    drop(first);
    assert_eq!(
        read_reply(&mut second).await,
        b"\n0BD10012\"ACK\"0004L0#1234[]\r"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn health_metrics_and_api() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let http = srv.http.unwrap();
    assert_eq!(http_get(http, "/live").await.0, 200);
    assert_eq!(http_get(http, "/ready").await.0, 200);
    tcp_roundtrip(
        srv.dc09_tcp.unwrap(),
        b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r",
    )
    .await;
    tcp_roundtrip(
        srv.dc09_tcp.unwrap(),
        b"\n21EF0027\"ADM-CID\"0002L0#1234[#1234|3101 01 001]\r",
    )
    .await;
    let (status, m) = http_get(http, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "vakt_frames_total",
        "vakt_signals_journaled_total",
        "vakt_journal_batch_frames",
        "vakt_journal_commit_seconds",
        "vakt_frame_ack_seconds",
        "vakt_tcp_connections_open",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(http_get(http, "/api/signals?after=1&limit=10").await.0, 401);
    let mut c = Client::login(http, ADMIN.0, ADMIN.1).await;
    let a = c.get("/api/signals?after=1&limit=10").await;
    assert_eq!(a.status, 200);
    let v: Vec<serde_json::Value> = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["id"], 2);
    assert_eq!(c.get("/api/signals?limit=0").await.status, 400);
    assert_eq!(c.get("/api/signals?after=x").await.status, 400);
    assert_eq!(c.get("/api/signals?bogus=1").await.status, 400);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_answers_in_flight_frames_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    let mut s = TcpStream::connect(tcp).await.unwrap();
    s.write_all(b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r")
        .await
        .unwrap();
    assert_eq!(token_of(&read_reply(&mut s).await), "ACK");
    let started = std::time::Instant::now();
    srv.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown within its deadline"
    );
    // The open connection was closed, and nobody listens any more.
    let mut b = [0u8; 8];
    assert_eq!(s.read(&mut b).await.unwrap_or(0), 0);
    assert!(TcpStream::connect(tcp).await.is_err());
    // Everything ACKed is on disk.
    let mut out = Vec::new();
    vakt::cli::export_journal(common::store_at(dir.path()), 0, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
}

/// The device page's supervision fields of `account`: (last heard, next deadline).
async fn supervision_of(
    http: std::net::SocketAddr,
    account: &str,
) -> (serde_json::Value, serde_json::Value) {
    let mut c = Client::login(http, ADMIN.0, ADMIN.1).await;
    let a = c.get(&format!("/api/devices/{account}")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["supervised"], true, "{v}");
    (v["last_heard"].clone(), v["next_deadline"].clone())
}

#[tokio::test]
async fn unreadable_payload_is_journaled_flagged_and_answered_duh() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    // CRC-valid frames whose data is no Contact ID: the device must not be told "processed",
    // or it never tries its backup path. DUH, never encrypted, after the flush.
    let bad_plain = plain("ADM-CID", 30, "1234", "#1234|not contact id");
    let bad_encrypted = encrypted("SIA-DCS", 31, "5678", "#5678|??", &key128(), now());
    for (f, seq) in [(&bad_plain, "0030"), (&bad_encrypted, "0031")] {
        let reply = tcp_roundtrip(tcp, f).await;
        let p = dc09::parse(&reply).unwrap();
        assert_eq!(
            (p.id, p.encrypted, p.seq),
            ("DUH", false, seq),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
    // A retransmission gets DUH again and is journaled once.
    assert_eq!(token_of(&tcp_roundtrip(tcp, &bad_plain).await), "DUH");
    let sigs = signals(srv.http.unwrap()).await;
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    for (s, sub) in sigs.iter().zip(["anna", "bertil"]) {
        assert_eq!(s["flags"], serde_json::json!(["bad_payload"]), "{s}");
        assert_eq!(s["subscriber"], sub, "{s}");
    }
    // The device proved itself (its key, or a device without one): it was heard.
    let (heard, _) = supervision_of(srv.http.unwrap(), "5678").await;
    assert!(heard.is_string(), "{heard}");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn plain_frames_for_a_keyed_device_are_refused_as_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    let http = srv.http.unwrap();
    let before = supervision_of(http, "5678").await;
    assert!(before.0.is_null(), "never heard yet: {before:?}");

    // A spoofed plain NULL for 5678, which has an AES key: DUH, and its supervision stays.
    let reply = tcp_roundtrip(tcp, &plain("NULL", 40, "5678", "")).await;
    assert_eq!(reply, {
        let mut d = Vec::new();
        dc09::encode_duh(
            &dc09::parse(&plain("NULL", 40, "5678", "")).unwrap(),
            &mut d,
        );
        d
    });
    // Over UDP too.
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(&plain("NULL", 41, "5678", ""), srv.dc09_udp.unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), udp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token_of(&buf[..n]), "DUH");
    assert_eq!(supervision_of(http, "5678").await, before);
    assert!(signals(http).await.is_empty(), "a NULL is not journaled");

    // A plain alarm naming 5678: journaled for an operator, flagged, not as bertil's, DUH.
    let reply = tcp_roundtrip(tcp, &plain("ADM-CID", 42, "5678", "#5678|1101 01 001")).await;
    let p = dc09::parse(&reply).unwrap();
    assert_eq!((p.id, p.seq, p.account), ("DUH", "0042", Some("5678")));
    let sigs = signals(http).await;
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(sigs[0]["flags"], serde_json::json!(["unauthenticated"]));
    assert!(sigs[0]["subscriber"].is_null(), "{}", sigs[0]);
    assert_eq!(sigs[0]["events"][0]["code"], "CID 101");
    assert_eq!(supervision_of(http, "5678").await, before);
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let calls = admin.get("/api/calls?state=open").await.json();
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0]["subscriber"].is_null(), "{}", calls[0]);
    assert_eq!(calls[0]["kind"], "Personal alarm (unauthenticated device)");

    // The device itself, encrypted: *ACK, bertil's, and heard.
    let reply = tcp_roundtrip(tcp, &encrypted("NULL", 43, "5678", "", &key128(), now())).await;
    assert_eq!(token_of(&reply), "*ACK");
    let after = supervision_of(http, "5678").await;
    assert!(after.0.is_string(), "{after:?}");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_scaip_device_cannot_be_spoofed_over_dc09() {
    let dir = tempfile::tempdir().unwrap();
    let csv = format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,luc678,s3cret-678\n1234,,,,,bertil,90,Telia,Norr,carephone,,\n",
        vakt::registers::devices::CSV_HEADER
    );
    vakt::cli::import_devices(common::store_at(dir.path()), csv.as_bytes()).unwrap();
    add_user(dir.path(), ADMIN.0, vakt::model::Role::Admin, ADMIN.1);
    let srv = start_with(test_config(dir.path())).await;
    let tcp = srv.dc09_tcp.unwrap();
    let http = srv.http.unwrap();
    let before = supervision_of(http, "678").await;

    // cid 678 is valid DC-09 hex, but the device speaks SCAIP with Digest: a DC-09 frame
    // naming it is not that device.
    assert_eq!(
        token_of(&tcp_roundtrip(tcp, &plain("NULL", 50, "678", "")).await),
        "DUH"
    );
    assert_eq!(supervision_of(http, "678").await, before);
    let reply = tcp_roundtrip(tcp, &plain("ADM-CID", 51, "678", "#678|1101 01 001")).await;
    assert_eq!(token_of(&reply), "DUH");
    let sigs = signals(http).await;
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(
        sigs[0]["flags"],
        serde_json::json!(["unknown_device", "unauthenticated"])
    );
    assert!(sigs[0]["subscriber"].is_null(), "{}", sigs[0]);
    assert_eq!(supervision_of(http, "678").await, before);
    // The DC-09 device still is itself.
    assert_eq!(
        token_of(&tcp_roundtrip(tcp, &plain("NULL", 52, "1234", "")).await),
        "ACK"
    );
    assert!(supervision_of(http, "1234").await.0.is_string());
    srv.stop().await.unwrap();
}

/// A flood of NULLs from accounts nobody registered: each is ACKed, but only the registered
/// devices' last-heard times reach the store, the unknown ones are kept in a small bounded
/// list for the console, and a restart loads (and keeps) only registered devices.
#[tokio::test]
async fn unknown_accounts_stay_bounded_and_are_never_persisted() {
    let dir = tempfile::tempdir().unwrap();
    // What an older vakt left behind: last-heard times of accounts nobody registered.
    {
        let store = common::open_store(dir.path()).unwrap();
        let junk: Vec<(String, i64)> = (0..1000)
            .map(|i| (format!("DEAD{i:04}"), 1_700_000_000_000))
            .collect();
        store.save_last_heard(&junk).unwrap();
    }
    let srv = start(dir.path()).await;
    let tcp = srv.dc09_tcp.unwrap();
    let mut s = TcpStream::connect(tcp).await.unwrap();
    const FLOOD: usize = 5_000;
    let mut sent = 0;
    for chunk in 0..FLOOD / 500 {
        let mut out = Vec::new();
        for i in 0..500 {
            let n = chunk * 500 + i;
            // A registered device now and then, the rest from accounts nobody knows.
            let account = if n % 100 == 0 {
                "1234".to_string()
            } else {
                format!("{:X}", 0x10_0000_0000u64 + rand::random::<u32>() as u64)
            };
            out.extend(plain("NULL", (n % 10_000) as u16, &account, ""));
            sent += 1;
        }
        s.write_all(&out).await.unwrap();
    }
    let mut acks = 0;
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(Duration::from_secs(60), async {
        while acks < sent {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {acks} answers");
            acks += buf[..n].iter().filter(|b| **b == b'\r').count();
        }
    })
    .await
    .expect("every NULL answered within 60 s");
    // The console shows the most recent unknown accounts, never more than the bound.
    let mut c = Client::login(srv.http.unwrap(), ADMIN.0, ADMIN.1).await;
    let a = c.get("/api/supervision/unknown").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let list = a.json();
    let list = list.as_array().expect("a list");
    assert!(
        !list.is_empty() && list.len() <= vakt::supervision::UNKNOWN_KEPT,
        "{} unknown accounts listed",
        list.len()
    );
    assert!(
        list.iter().all(|u| u["account"] != "1234"),
        "1234 is registered"
    );
    srv.stop().await.unwrap();
    let registered = ["1234", "5678", "9ABC", "1929", "4321"];
    let stored = common::open_store(dir.path())
        .unwrap()
        .last_heard()
        .unwrap();
    let accounts: Vec<&str> = stored.iter().map(|(a, _)| a.as_str()).collect();
    assert!(
        accounts.iter().all(|a| registered.contains(a)),
        "{} last-heard entries stored, e.g. {:?}",
        accounts.len(),
        accounts.iter().take(5).collect::<Vec<_>>()
    );
    assert!(accounts.contains(&"1234"), "{accounts:?}");
    // A restart loads only registered devices and keeps their times.
    let srv = start_with(test_config(dir.path())).await;
    srv.stop().await.unwrap();
    let again = common::open_store(dir.path())
        .unwrap()
        .last_heard()
        .unwrap();
    assert_eq!(again, stored);
}

/// Garbage over UDP is answered sparingly: nothing at all for a datagram that holds no
/// DC-09 frame, and NAKs rate-limited per source, so vakt cannot be used to reflect traffic
/// at a forged address. Devices' frames are answered as always, and another source still
/// gets its NAK.
#[tokio::test]
async fn udp_garbage_is_answered_sparingly() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let udp = srv.dc09_udp.unwrap();
    let bad_crc = b"\n21180027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r";
    // Sends `dgrams` then a NULL from 1234; returns the tokens answered before its ACK (the
    // server answers one socket's datagrams in order).
    async fn answers_before_ack(
        sock: &UdpSocket,
        to: std::net::SocketAddr,
        dgrams: &[&[u8]],
    ) -> Vec<String> {
        for d in dgrams {
            sock.send_to(d, to).await.unwrap();
        }
        sock.send_to(b"\nCBB30013\"NULL\"0004L0#1234[]\r", to)
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
                .await
                .expect("answer within 10 s")
                .unwrap();
            let t = token_of(&buf[..n]);
            if t == "ACK" {
                return seen;
            }
            seen.push(t);
        }
    }
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Not even a frame start: no answer at all.
    assert_eq!(
        answers_before_ack(&a, udp, &[b"X", b"\0", b"\r\r\r", b"hello"]).await,
        Vec::<String>::new()
    );
    // Broken frames: a few NAKs, then silence for this source.
    let burst: Vec<&[u8]> = vec![bad_crc; 30];
    let naks = answers_before_ack(&a, udp, &burst).await;
    assert!(naks.iter().all(|t| t == "NAK"), "{naks:?}");
    assert!(
        (1..=vakt::transport::limit::ANSWER_BURST as usize + 1).contains(&naks.len()),
        "{} NAKs for 30 broken frames",
        naks.len()
    );
    // Another host still gets its NAK, and the NULLs were ACKed all along.
    let b = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    assert_eq!(answers_before_ack(&b, udp, &[bad_crc]).await, vec!["NAK"]);
    srv.stop().await.unwrap();
}

/// Connects to `to` from the local address `from` (Linux loopback takes all of 127/8, so a
/// test can play a second host).
async fn connect_from(from: &str, to: std::net::SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// True when the server closes (or resets) `s` within 10 s without answering.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// One host at its cap is refused more connections; another host, and the console, are
/// served meanwhile; a slot freed is the host's again.
#[tokio::test]
async fn one_source_over_its_cap_is_refused_while_another_connects() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.dc09.max_connections_per_source = 3;
    let srv = start_with(cfg).await;
    let tcp = srv.dc09_tcp.unwrap();
    let null = b"\nCBB30013\"NULL\"0004L0#1234[]\r";
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", tcp).await;
        s.write_all(null).await.unwrap();
        assert_eq!(token_of(&read_reply(&mut s).await), "ACK");
        held.push(s);
    }
    let mut over = connect_from("127.0.0.1", tcp).await;
    let _ = over.write_all(null).await;
    assert!(
        closed_by_server(&mut over).await,
        "the 4th from one host is refused"
    );
    // Another host connects, and the console answers.
    let mut other = connect_from("127.0.0.2", tcp).await;
    other.write_all(null).await.unwrap();
    assert_eq!(token_of(&read_reply(&mut other).await), "ACK");
    assert_eq!(http_get(srv.http.unwrap(), "/live").await.0, 200);
    let (_, m) = http_get(srv.http.unwrap(), "/metrics").await;
    assert!(
        m.contains("vakt_connections_refused_total{listener=\"dc09_tcp\",reason=\"per_source\"} 1"),
        "{}",
        m.lines()
            .filter(|l| l.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A slot freed is the host's again (the server sees the close first).
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut s = connect_from("127.0.0.1", tcp).await;
        if s.write_all(null).await.is_ok() {
            let mut b = [0u8; 64];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
                if n > 0 {
                    again = Some(token_of(&b[..n]));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again.as_deref(), Some("ACK"));
    srv.stop().await.unwrap();
}

/// A frame begun and not finished (a byte at a time, slower than a device ever sends) is cut
/// at its deadline; bytes that are not a frame do not keep a connection open past its idle
/// time; a device's frames are served as always.
#[tokio::test]
async fn a_slow_frame_is_cut_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.dc09.frame_timeout_secs = 1;
    cfg.dc09.idle_timeout_secs = 2;
    let srv = start_with(cfg).await;
    let tcp = srv.dc09_tcp.unwrap();
    let frame = b"\n21170027\"ADM-CID\"0001L0#1234[#1234|1101 01 001]\r";
    // Slowloris: the frame a byte every 300 ms (it would take 15 s), never its CR.
    let mut slow = TcpStream::connect(tcp).await.unwrap();
    let started = std::time::Instant::now();
    let mut cut = false;
    for b in &frame[..frame.len() - 1] {
        if slow.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        let mut r = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut r)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => panic!("an answer to half a frame"),
            Err(_) => {}
        }
    }
    assert!(cut, "the slow frame was never cut");
    assert!(started.elapsed() < Duration::from_secs(12));
    // Garbage a byte at a time: no frame, so the idle deadline is not moved.
    let mut noise = TcpStream::connect(tcp).await.unwrap();
    let mut cut = false;
    for _ in 0..40 {
        if noise.write_all(b"x").await.is_err() {
            cut = true;
            break;
        }
        let mut r = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(250), noise.read(&mut r)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            _ => {}
        }
    }
    assert!(cut, "noise kept the connection open past its idle time");
    // A device sending whole frames is served, also after a pause shorter than idle.
    let mut dev = TcpStream::connect(tcp).await.unwrap();
    for seq in 1..=3u16 {
        dev.write_all(&plain("NULL", seq, "1234", ""))
            .await
            .unwrap();
        assert_eq!(token_of(&read_reply(&mut dev).await), "ACK");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let (_, m) = http_get(srv.http.unwrap(), "/metrics").await;
    assert!(
        m.contains("reason=\"frame_timeout\""),
        "frame_timeout counted"
    );
    srv.stop().await.unwrap();
}
