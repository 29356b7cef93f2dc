//! Connection limits of the listeners besides DC-09 (which `dc09_server.rs` covers): one host
//! over its share of the SCAIP, patrol or HTTP listener is refused while another host, and the
//! console, are served; a slow HTTP header is cut, and an idle kept-alive connection closed.
//! A second host is played by binding the client to 127.0.0.2 (Linux loopback takes 127/8).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to `to` from the local address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// True when the server closes (or resets) `s` within 10 s without answering.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// `GET /live` over `s` (kept alive); the status.
async fn live_on(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET /live HTTP/1.1\r\nHost: vakt\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "closed before the answer");
            buf.extend_from_slice(&b[..n]);
        }
    })
    .await
    .expect("an answer within 10 s");
    String::from_utf8_lossy(&buf[9..12]).parse().unwrap()
}

async fn refused_metric(http: SocketAddr, listener: &str) -> String {
    let (_, m) = http_get(http, "/metrics").await;
    let want =
        format!("vakt_connections_refused_total{{listener=\"{listener}\",reason=\"per_source\"}}");
    m.lines()
        .find(|l| l.starts_with(&want))
        .map(str::to_owned)
        .unwrap_or_default()
}

#[tokio::test]
async fn http_source_over_its_cap_is_refused_while_the_console_serves_others() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    add_user(dir.path(), ADMIN.0, vakt::model::Role::Admin, ADMIN.1);
    let mut cfg = test_config(dir.path());
    cfg.http.max_connections_per_source = 4;
    let srv = start_with(cfg).await;
    let http = srv.http.unwrap();
    // One host (127.0.0.2) holds its four kept-alive connections.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.2", http).await;
        assert_eq!(live_on(&mut s).await, 200);
        held.push(s);
    }
    let mut over = connect_from("127.0.0.2", http).await;
    let _ = over
        .write_all(b"GET /live HTTP/1.1\r\nHost: vakt\r\n\r\n")
        .await;
    assert!(
        closed_by_server(&mut over).await,
        "the 5th from one host is refused"
    );
    // The console serves everyone else, and the held connections still work.
    assert_eq!(http_get(http, "/live").await.0, 200);
    let mut c = Client::login(http, ADMIN.0, ADMIN.1).await;
    assert_eq!(c.get("/api/supervision").await.status, 200);
    assert_eq!(live_on(&mut held[0]).await, 200);
    assert!(refused_metric(http, "http").await.ends_with(" 1"));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_http_header_is_cut_and_an_idle_kept_alive_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    add_user(dir.path(), ADMIN.0, vakt::model::Role::Admin, ADMIN.1);
    let mut cfg = test_config(dir.path());
    cfg.http.header_read_timeout_secs = 1;
    let srv = start_with(cfg).await;
    let http = srv.http.unwrap();
    // Slowloris: a header a byte at a time, never finished.
    let mut slow = TcpStream::connect(http).await.unwrap();
    let started = std::time::Instant::now();
    let mut cut = false;
    for b in b"GET /live HTTP/1.1\r\nHost: vakt\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        let mut r = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut r)).await {
            // hyper may answer 408 before it closes: either way the slot is free.
            Ok(Ok(_)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut, "the slow header was never cut");
    assert!(started.elapsed() < Duration::from_secs(15));
    // A kept-alive connection that sends no new request is closed.
    let mut idle = TcpStream::connect(http).await.unwrap();
    assert_eq!(live_on(&mut idle).await, 200);
    assert!(
        closed_by_server(&mut idle).await,
        "idle kept-alive connection left open"
    );
    // A console working normally is not disturbed.
    let mut c = Client::login(http, ADMIN.0, ADMIN.1).await;
    assert_eq!(c.get("/api/supervision").await.status, 200);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn scaip_tcp_source_over_its_cap_is_refused_while_another_connects() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.scaip.max_connections_per_source = 2;
    let srv = start_with(cfg).await;
    let sip = srv.scaip_tcp.unwrap();
    // A SIP keep-alive ping (RFC 5626: CRLF CRLF) is answered CRLF on a served connection.
    async fn pong(s: &mut TcpStream) -> bool {
        if s.write_all(b"\r\n\r\n").await.is_err() {
            return false;
        }
        let mut b = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await,
            Ok(Ok(n)) if n > 0
        )
    }
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.1", sip).await;
        assert!(pong(&mut s).await);
        held.push(s);
    }
    let mut over = connect_from("127.0.0.1", sip).await;
    assert!(!pong(&mut over).await, "the 3rd from one host is refused");
    let mut other = connect_from("127.0.0.2", sip).await;
    assert!(pong(&mut other).await, "another host is served");
    assert!(
        refused_metric(srv.http.unwrap(), "scaip_tcp")
            .await
            .ends_with(" 1")
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn patrol_source_over_its_cap_is_refused_at_incoming_while_another_connects() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.patrol.max_sessions_per_source = 2;
    let srv = start_with(cfg).await;
    let addr = srv.patrol_quic.unwrap();
    let fp = vakt::transport::quic::parse_fingerprint(srv.patrol_fingerprint.as_deref().unwrap())
        .unwrap();
    let client =
        vakt::transport::quic::client_config(&vakt::transport::quic::Trust::Pinned(fp)).unwrap();
    let connect = async |from: &str| {
        let mut ep = quinn::Endpoint::client(format!("{from}:0").parse().unwrap()).unwrap();
        ep.set_default_client_config(client.clone());
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            ep.connect(addr, "localhost").unwrap(),
        )
        .await
        .expect("an answer within 10 s");
        (ep, r)
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let (ep, r) = connect("127.0.0.1").await;
        held.push((ep, r.expect("a session of the host's share")));
    }
    let (_ep, r) = connect("127.0.0.1").await;
    assert!(
        matches!(r, Err(quinn::ConnectionError::ConnectionClosed(_))),
        "the 3rd from one host is refused: {r:?}"
    );
    let (_ep2, r) = connect("127.0.0.2").await;
    assert!(r.is_ok(), "another host connects: {r:?}");
    assert!(
        refused_metric(srv.http.unwrap(), "patrol_quic")
            .await
            .ends_with(" 1")
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn http_connections_close_at_shutdown_within_the_grace_deadline() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.http.header_read_timeout_secs = 600;
    cfg.shutdown_grace_secs = 2;
    let srv = start_with(cfg).await;
    let http = srv.http.unwrap();
    // A kept-alive connection between requests, and one in the middle of its header.
    let mut idle = TcpStream::connect(http).await.unwrap();
    assert_eq!(live_on(&mut idle).await, 200);
    let mut half = TcpStream::connect(http).await.unwrap();
    half.write_all(b"GET /live HTTP/1.1\r\nHost: va")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    srv.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stopped after {:?}",
        started.elapsed()
    );
    assert!(closed_by_server(&mut idle).await);
    assert!(closed_by_server(&mut half).await);
    assert!(
        TcpStream::connect(http).await.is_err(),
        "nobody listens any more"
    );
}

#[tokio::test]
async fn a_patrol_session_ends_within_the_grace_deadline() {
    let dir = tempfile::tempdir().unwrap();
    vakt::cli::import_devices(common::store_at(dir.path()), devices_csv().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.shutdown_grace_secs = 1;
    let srv = start_with(cfg).await;
    let addr = srv.patrol_quic.unwrap();
    let fp = vakt::transport::quic::parse_fingerprint(srv.patrol_fingerprint.as_deref().unwrap())
        .unwrap();
    let client =
        vakt::transport::quic::client_config(&vakt::transport::quic::Trust::Pinned(fp)).unwrap();
    // A path that carries the patrol's first datagram and nothing after (a phone that lost
    // its network mid-handshake): vakt holds a session waiting for the handshake.
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(client);
    let connecting = ep
        .connect(relay.local_addr().unwrap(), "localhost")
        .unwrap();
    let handshake =
        tokio::spawn(
            async move { tokio::time::timeout(Duration::from_secs(30), connecting).await },
        );
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    relay.send_to(&buf[..n], addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    srv.stop().await.unwrap();
    // The session is dropped at the 1 s deadline, not waited for on a clock of its own.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stopped after {:?}",
        started.elapsed()
    );
    handshake.abort();
}
