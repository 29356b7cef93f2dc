//! SCAIP end to end: the real server on 127.0.0.1:0, a device written here that speaks SIP
//! over UDP, TCP and TLS with Digest, and the operator's API. SIPp plays the device in
//! `tests/scaip_sipp.rs`; this file covers what SIPp cannot (TLS, restarts, resets, limits).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{ADMIN, Client, add_user, signals, start_with, test_config};
use serde_json::Value;
use tokio::net::TcpStream;
use vakt::model::Role;
use vakt::sim::luc::Luc;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");

/// cid 678 is user luc678's pendant (Anna's); cid 679 is user luc679's smoke detector.
fn devices_csv() -> String {
    format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,luc678,s3cret-678\n679,,,,,bertil,,Telia,Norr,smoke_detector,luc679,s3cret-679\n1234,,,,,cecilia,90,Telia,Norr,carephone,,\n",
        vakt::registers::devices::CSV_HEADER
    )
}

fn prepare(dir: &Path) {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes())
        .expect("import devices");
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
}

fn alarm(reference: &str, cid: &str, dty: u16) -> String {
    format!("<mrq><ref>{reference}</ref><cid>{cid}</cid><dty>{dty:04}</dty></mrq>")
}

async fn open_calls(op: &mut Client) -> Vec<Value> {
    let a = op.get("/api/calls?state=open").await;
    assert_eq!(a.status, 200, "{}", a.body);
    serde_json::from_value(a.json()).unwrap()
}

async fn wait_calls(op: &mut Client, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let calls = open_calls(op).await;
        if pred(&calls) {
            return calls;
        }
        assert!(tokio::time::Instant::now() < deadline, "calls: {calls:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one metric line (name with labels) of `/metrics`, 0 when absent. Metrics are
/// shared by every server of this test binary, so tests check what only they cause.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn scaip_signals(all: &[Value]) -> Vec<&Value> {
    all.iter().filter(|s| s["protocol"] == "SCAIP").collect()
}

#[tokio::test]
async fn udp_alarm_holds_until_an_operator_takes_it_then_voice() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678")
        .await
        .unwrap();

    // First request: challenged, then authenticated; the alarm is held.
    let x = luc.mrq(&alarm("1243", "678", 3)).await.unwrap();
    assert_eq!(x.code, 200);
    let mrs = x.mrs.unwrap();
    assert_eq!(
        (mrs.reference.as_deref(), mrs.snu, mrs.mre),
        (Some("1243"), 4, None)
    );
    let calls = wait_calls(&mut op, |c| c.len() == 1).await;
    assert_eq!(calls[0]["kind"], "Personal alarm");
    assert_eq!(calls[0]["subscriber"], "anna");
    let id = calls[0]["id"].as_u64().unwrap();

    // The device polls with the same request: held again, never a second Call or Signal.
    for _ in 0..3 {
        let mrs = luc
            .mrq(&alarm("1243", "678", 3))
            .await
            .unwrap()
            .mrs
            .unwrap();
        assert_eq!(mrs.snu, 4);
    }
    assert_eq!(open_calls(&mut op).await.len(), 1);
    let all = signals(http).await;
    let sc = scaip_signals(&all);
    assert_eq!(sc.len(), 1, "{sc:?}");
    assert_eq!(sc[0]["account"], "678");
    assert_eq!(sc[0]["seq"], "1243");
    assert_eq!(sc[0]["transport"], "udp");
    assert_eq!(sc[0]["events"][0]["code"], "SCAIP 0003");
    assert_eq!(sc[0]["scaip"]["sip_user"], "luc678");

    // An operator takes the Call: the next poll gets OK with voice.
    let a = op
        .send("POST", &format!("/api/calls/{id}/claim"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mrs = luc
        .mrq(&alarm("1243", "678", 3))
        .await
        .unwrap()
        .mrs
        .unwrap();
    assert_eq!((mrs.snu, mrs.mre), (0, Some(1)));
    let metrics = common::http_get(http, "/metrics").await.1;
    assert!(
        metric(
            &metrics,
            "vakt_scaip_messages_total{transport=\"udp\",result=\"voice\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "vakt_scaip_messages_total{transport=\"udp\",result=\"hold\"}"
        ) >= 4.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "vakt_scaip_answers_total{outcome=\"delivered\"}") >= 5.0,
        "{metrics}"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn tcp_heartbeats_and_bad_requests_are_answered_without_journaling() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let mut cfg = test_config(dir.path());
    cfg.scaip.max_body_bytes = 300;
    let srv = start_with(cfg).await;
    let http = srv.http.unwrap();
    let mut luc = Luc::tcp(srv.scaip_tcp.unwrap(), "luc678", "s3cret-678")
        .await
        .unwrap();

    // A heartbeat from a device that takes intervals: 3600 s in the registry = 60 min.
    let mrs = luc
        .mrq("<mrq><ref>H1</ref><mty>PI</mty><cid>678</cid><dty>2</dty><hbo>001</hbo></mrq>")
        .await
        .unwrap()
        .mrs
        .unwrap();
    assert_eq!((mrs.snu, mrs.hbi), (0, Some(60)));
    // Without hbo, no hbi.
    let mrs = luc
        .mrq("<mrq><ref>H2</ref><mty>PI</mty><cid>678</cid><dty>2</dty></mrq>")
        .await
        .unwrap()
        .mrs
        .unwrap();
    assert_eq!((mrs.snu, mrs.hbi), (0, None));

    for (body, snu, reference) in [
        ("this is not xml <", 2, None),
        ("<mrq><ref>E1</ref><dty>3</dty></mrq>", 7, Some("E1")),
        ("<mrq><ref>E2</ref><cid>678</cid></mrq>", 7, Some("E2")),
        ("<mrq><cid>678</cid><dty>3</dty></mrq>", 10, None),
        (
            "<mrq><ref>E3</ref><cid>67a</cid><dty>3</dty></mrq>",
            3,
            Some("E3"),
        ),
    ] {
        let mrs = luc.mrq(body).await.unwrap().mrs.unwrap();
        assert_eq!(
            (mrs.snu, mrs.reference.as_deref()),
            (snu, reference),
            "{body}"
        );
    }
    let long = format!(
        "<mrq><ref>E4</ref><cid>678</cid><dty>3</dty><ite>{}</ite></mrq>",
        "x".repeat(400)
    );
    let mrs = luc.mrq(&long).await.unwrap().mrs.unwrap();
    assert_eq!((mrs.snu, mrs.reference.as_deref()), (1, Some("E4")));

    // OPTIONS keep-alives are answered; methods vakt does not take are not allowed (INVITE
    // is a voice call: tests/voice_sip.rs).
    let req = luc.message("OPTIONS", b"", None);
    luc.send(&req).await.unwrap();
    let r = luc.recv().await.unwrap();
    assert!(
        r.starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let req = luc.message("SUBSCRIBE", b"", None);
    luc.send(&req).await.unwrap();
    let r = luc.recv().await.unwrap();
    assert!(
        r.starts_with(b"SIP/2.0 405"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // Another content type is refused.
    let auth = luc.authorization("MESSAGE");
    let mut req = luc.message("MESSAGE", b"<scaip/>", auth);
    let at = req
        .windows(21)
        .position(|w| w == b"application/scaip+xml")
        .unwrap();
    req.splice(at..at + 21, b"application/xml      ".iter().copied());
    luc.send(&req).await.unwrap();
    let r = luc.recv().await.unwrap();
    assert!(
        r.starts_with(b"SIP/2.0 415"),
        "{}",
        String::from_utf8_lossy(&r)
    );

    assert!(scaip_signals(&signals(http).await).is_empty());
    let metrics = common::http_get(http, "/metrics").await.1;
    for result in [
        "heartbeat",
        "invalid_format",
        "mandatory_missing",
        "ref_missing",
        "wrong_data",
        "too_long",
    ] {
        assert!(
            metrics.contains(&format!(
                "vakt_scaip_messages_total{{transport=\"tcp\",result=\"{result}\"}}"
            )),
            "{result}: {metrics}"
        );
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn unauthenticated_requests_are_challenged_and_never_journaled() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let udp = srv.scaip_udp.unwrap();

    let mut wrong = Luc::udp(udp, "luc678", "not-the-password").await.unwrap();
    assert_eq!(wrong.mrq(&alarm("W1", "678", 3)).await.unwrap().code, 401);
    let mut nobody = Luc::udp(udp, "nobody", "whatever").await.unwrap();
    assert_eq!(nobody.mrq(&alarm("W2", "678", 3)).await.unwrap().code, 401);
    // Basic is refused.
    let mut basic = Luc::udp(udp, "luc678", "s3cret-678").await.unwrap();
    let req = basic.message(
        "MESSAGE",
        alarm("W3", "678", 3).as_bytes(),
        Some("Basic bHVjNjc4OnMzY3JldC02Nzg=".into()),
    );
    basic.send(&req).await.unwrap();
    let r = basic.recv().await.unwrap();
    assert!(
        r.starts_with(b"SIP/2.0 401"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // A nonce vakt never gave.
    let mut forged = Luc::udp(udp, "luc678", "s3cret-678").await.unwrap();
    forged.challenge = Some(("vakt".into(), "0123456789abcdef".into()));
    let auth = forged.authorization("MESSAGE");
    let req = forged.message("MESSAGE", alarm("W4", "678", 3).as_bytes(), auth);
    forged.send(&req).await.unwrap();
    let r = forged.recv().await.unwrap();
    assert!(
        r.starts_with(b"SIP/2.0 401"),
        "{}",
        String::from_utf8_lossy(&r)
    );

    // An authenticated device sending for a cid registered to another user: journaled (a
    // person must see it) but as an unknown device.
    let mut other = Luc::udp(udp, "luc679", "s3cret-679").await.unwrap();
    let mrs = other
        .mrq(&alarm("X1", "678", 3))
        .await
        .unwrap()
        .mrs
        .unwrap();
    assert_eq!(mrs.snu, 4);

    let all = signals(http).await;
    let sc = scaip_signals(&all);
    assert_eq!(sc.len(), 1, "only the authenticated request: {sc:?}");
    assert_eq!(sc[0]["seq"], "X1");
    assert_eq!(
        sc[0]["flags"],
        serde_json::json!(["unknown_device", "unauthenticated"])
    );
    assert!(sc[0]["subscriber"].is_null());
    let metrics = common::http_get(http, "/metrics").await.1;
    for reason in ["bad_response", "unknown_user", "basic", "bad_nonce"] {
        assert!(
            metric(
                &metrics,
                &format!("vakt_scaip_auth_failures_total{{reason=\"{reason}\"}}")
            ) >= 1.0,
            "{reason}: {metrics}"
        );
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_reset_releases_the_hold_and_a_restart_keeps_the_same_call() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc679", "s3cret-679")
        .await
        .unwrap();

    // A smoke detector: held (level 0 "Fire").
    let mrs = luc.mrq(&alarm("F1", "679", 23)).await.unwrap().mrs.unwrap();
    assert_eq!(mrs.snu, 4);
    let calls = wait_calls(&mut op, |c| c.len() == 1).await;
    assert_eq!(
        (calls[0]["kind"].as_str(), calls[0]["priority"].as_u64()),
        (Some("Fire"), Some(0))
    );
    let id = calls[0]["id"].as_u64().unwrap();
    // An update on the same alarm gets its state.
    let mrs = luc
        .mrq("<mrq><ref>F1</ref><mty>IN</mty><cid>679</cid><dty>23</dty><lte>Kitchen</lte></mrq>")
        .await
        .unwrap()
        .mrs
        .unwrap();
    assert_eq!(mrs.snu, 4);

    // vakt restarts; the device polls on: the same Call, still held.
    srv.stop().await.unwrap();
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc679", "s3cret-679")
        .await
        .unwrap();
    let mrs = luc.mrq(&alarm("F1", "679", 23)).await.unwrap().mrs.unwrap();
    assert_eq!(mrs.snu, 4);
    let calls = open_calls(&mut op).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["id"].as_u64(), Some(id));

    // The device gives up (reset): acknowledged, on the Call's timeline, the Call stays.
    let mrs = luc
        .mrq("<mrq><ref>F1</ref><mty>RE</mty><cid>679</cid><dty>23</dty></mrq>")
        .await
        .unwrap()
        .mrs
        .unwrap();
    assert_eq!(mrs.snu, 0);
    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let call = admin.get(&format!("/api/calls/{id}")).await.json();
        let lines = call["timeline"].as_array().cloned().unwrap_or_default();
        if lines.iter().any(|l| l["code"] == "SCAIP RESET") {
            assert_eq!(call["state"], "queued", "a reset does not close the Call");
            // The update's location is on the operator's timeline.
            assert!(
                lines.iter().any(|l| l["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("at Kitchen"))),
                "{call}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{call}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sc: Vec<Value> = scaip_signals(&signals(http).await)
        .into_iter()
        .cloned()
        .collect();
    let kinds: Vec<&str> = sc
        .iter()
        .filter_map(|s| s["scaip"]["mty"].as_str())
        .collect();
    assert_eq!(kinds, ["ME", "IN", "RE"], "{sc:?}");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn tls_battery_low_is_answered_once_durable_and_makes_a_work_order() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("sip-cert.pem");
    let key = dir.path().join("sip-key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.scaip.listen_tls = Some("127.0.0.1:0".parse().unwrap());
    cfg.scaip.cert_file = Some(cert);
    cfg.scaip.key_file = Some(key);
    let srv = start_with(cfg).await;
    let http = srv.http.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(srv.scaip_tls.unwrap()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut luc = Luc::stream(stream, "TLS", "luc678", "s3cret-678");
    // The spec's example: a bogus-caller switch with a low battery; no voice needed.
    let mrs = luc
        .mrq("<mrq><ref>1242</ref><cid>678</cid><dty>27</dty><stc>16</stc></mrq>")
        .await
        .unwrap()
        .mrs
        .unwrap();
    assert_eq!(
        (mrs.reference.as_deref(), mrs.snu, mrs.mre),
        (Some("1242"), 0, None)
    );
    let sc: Vec<Value> = scaip_signals(&signals(http).await)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(sc.len(), 1);
    assert_eq!(sc[0]["transport"], "tls");
    assert_eq!(sc[0]["events"][0]["code"], "SCAIP 0027/0016");

    let mut admin = Client::login(http, ADMIN.0, ADMIN.1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let orders = admin.get("/api/work_orders?account=678").await;
        assert_eq!(orders.status, 200, "{}", orders.body);
        if orders.body.contains("\"678\"") && orders.body.contains("low_battery") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", orders.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_source_over_its_rate_is_told_to_retry_later() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let mut cfg = test_config(dir.path());
    cfg.scaip.rate_per_source = 1;
    cfg.scaip.rate_burst = 3;
    let srv = start_with(cfg).await;
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678")
        .await
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let req = luc.message("OPTIONS", b"", None);
        luc.send(&req).await.unwrap();
        let r = luc.recv().await.unwrap();
        codes.push(String::from_utf8_lossy(&r[8..11]).into_owned());
    }
    assert_eq!(codes, ["200", "200", "200", "503", "503"]);
    let metrics = common::http_get(srv.http.unwrap(), "/metrics").await.1;
    assert!(
        metric(&metrics, "vakt_scaip_rate_limited_total") >= 2.0,
        "{metrics}"
    );
    srv.stop().await.unwrap();
}

/// The status code and `WWW-Authenticate` of the next response (confirming any MESSAGE of
/// vakt's that comes first).
async fn next_response(luc: &mut Luc) -> (u16, Option<String>) {
    loop {
        let raw = luc.recv().await.unwrap();
        let m = vakt_proto::sip::parse(&raw).unwrap();
        match m.start {
            vakt_proto::sip::StartLine::Response { code, .. } => {
                return (code, m.header("WWW-Authenticate").map(str::to_owned));
            }
            vakt_proto::sip::StartLine::Request { .. } => {
                let mut ok = Vec::new();
                vakt_proto::sip::encode_response(&m, 200, "OK", "t", &[], None, b"", &mut ok);
                luc.send(&ok).await.unwrap();
            }
        }
    }
}

/// Digest credentials for `uri` on the device's last challenge, with or without qop.
fn credentials(luc: &Luc, user: &str, password: &str, uri: &str, qop: bool) -> String {
    use vakt_proto::sip;
    let (realm, nonce) = luc.challenge.clone().expect("challenged");
    let ha1 = sip::ha1(user, &realm, password);
    if qop {
        let r = sip::digest_response(
            &ha1,
            &nonce,
            Some("00000001"),
            Some("c0ffee"),
            Some("auth"),
            "MESSAGE",
            uri,
        );
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
        )
    } else {
        let r = sip::digest_response(&ha1, &nonce, None, None, None, "MESSAGE", uri);
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5"
        )
    }
}

#[tokio::test]
async fn a_replayed_authorization_is_refused_and_never_journaled() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let (user, pw) = ("luc678", "s3cret-678");

    // TCP: a captured request sent again byte for byte (no UDP retransmission cache there).
    let mut luc = Luc::tcp(srv.scaip_tcp.unwrap(), user, pw).await.unwrap();
    let x = luc.mrq(&alarm("R1", "678", 3)).await.unwrap();
    assert_eq!(x.code, 200);
    let auth = credentials(&luc, user, pw, "sip:arc@vakt", true);
    let first = luc.message(
        "MESSAGE",
        alarm("R2", "678", 3).as_bytes(),
        Some(auth.clone()),
    );
    luc.send(&first).await.unwrap();
    assert_eq!(next_response(&mut luc).await.0, 200);
    luc.send(&first).await.unwrap();
    let (code, challenge) = next_response(&mut luc).await;
    assert_eq!(code, 401, "the same request again");
    let challenge = challenge.unwrap();
    assert!(challenge.contains("stale=true"), "{challenge}");
    // The same header on another request (an injected alarm): refused too.
    let injected = luc.message("MESSAGE", alarm("R3", "678", 3).as_bytes(), Some(auth));
    luc.send(&injected).await.unwrap();
    assert_eq!(next_response(&mut luc).await.0, 401);

    // UDP: each copy is a new request (a new branch) with the captured header.
    let mut udp = Luc::udp(srv.scaip_udp.unwrap(), user, pw).await.unwrap();
    assert_eq!(udp.mrq(&alarm("U1", "678", 3)).await.unwrap().code, 200);
    let auth = credentials(&udp, user, pw, "sip:arc@vakt", true);
    for (reference, code) in [("U2", 200), ("U3", 401), ("U4", 401)] {
        let req = udp.message(
            "MESSAGE",
            alarm(reference, "678", 3).as_bytes(),
            Some(auth.clone()),
        );
        udp.send(&req).await.unwrap();
        let (c, h) = next_response(&mut udp).await;
        assert_eq!(c, code, "{reference} {h:?}");
    }
    // Without qop (RFC 2069, no nonce count): a nonce is good for one request.
    assert_eq!(udp.mrq(&alarm("N0", "678", 3)).await.unwrap().code, 200);
    let auth = credentials(&udp, user, pw, "sip:arc@vakt", false);
    for (reference, code) in [("N1", 200), ("N2", 401)] {
        let req = udp.message(
            "MESSAGE",
            alarm(reference, "678", 3).as_bytes(),
            Some(auth.clone()),
        );
        udp.send(&req).await.unwrap();
        let (c, h) = next_response(&mut udp).await;
        assert_eq!(c, code, "{reference} {h:?}");
    }
    // Credentials for another URI than the request's are refused.
    assert_eq!(udp.mrq(&alarm("W0", "678", 3)).await.unwrap().code, 200);
    let elsewhere = credentials(&udp, user, pw, "sip:arc@elsewhere.example", true);
    let req = udp.message("MESSAGE", alarm("W1", "678", 3).as_bytes(), Some(elsewhere));
    udp.send(&req).await.unwrap();
    assert_eq!(next_response(&mut udp).await.0, 401);
    // The honest device re-authenticates and goes on.
    assert_eq!(udp.mrq(&alarm("W2", "678", 3)).await.unwrap().code, 200);

    let refs: Vec<String> = scaip_signals(&signals(http).await)
        .iter()
        .map(|s| s["seq"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(refs, ["R1", "R2", "U1", "U2", "N0", "N1", "W0", "W2"]);
    let metrics = common::http_get(http, "/metrics").await.1;
    for reason in ["replay", "uri"] {
        assert!(
            metric(
                &metrics,
                &format!("vakt_scaip_auth_failures_total{{reason=\"{reason}\"}}")
            ) >= 1.0,
            "{reason}: {metrics}"
        );
    }
    srv.stop().await.unwrap();
}

/// Log lines written while the tests of this file run (WARN and above, every server).
fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Mutex, OnceLock};
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || W(b.clone()))
            .try_init();
        buf
    })
    .clone()
}

#[tokio::test]
async fn the_mrs_is_a_request_outside_any_dialog_and_a_refusal_is_counted_and_logged() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678")
        .await
        .unwrap();
    let local = luc.local_addr().unwrap();
    let body = alarm("M1", "678", 3);

    // The device asks for rport (its Via names 127.0.0.1:5999, not its real port): every
    // response carries the source port and address.
    let req = luc.message("MESSAGE", body.as_bytes(), None);
    luc.send(&req).await.unwrap();
    let raw = luc.recv().await.unwrap();
    let r = vakt_proto::sip::parse(&raw).unwrap();
    let want = format!(";received=127.0.0.1;rport={}", local.port());
    assert!(
        r.header("Via").unwrap().contains(&want),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let h = r.header("WWW-Authenticate").unwrap();
    let nonce = h
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    luc.challenge = Some(("vakt".into(), nonce.into()));
    let auth = luc.authorization("MESSAGE");
    let req = luc.message("MESSAGE", body.as_bytes(), auth);
    luc.send(&req).await.unwrap();
    let raw = luc.recv().await.unwrap();
    let ok = vakt_proto::sip::parse(&raw).unwrap();
    assert!(
        raw.starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(ok.header("Via").unwrap().contains(&want));

    // vakt's <mrs>: a new request outside any dialog (RFC 3261 §8.1.1, RFC 3428 §4).
    let raw = luc.recv().await.unwrap();
    let m = vakt_proto::sip::parse(&raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert_eq!(m.method(), Some("MESSAGE"), "{text}");
    assert_eq!(m.to_tag(), None, "no To tag: {text}");
    assert_eq!(
        m.header("To"),
        Some("<sip:luc678@vakt>"),
        "the device's AOR: {text}"
    );
    assert_ne!(m.call_id(), luc.call_id(), "a Call-ID of its own: {text}");
    assert!(m.call_id().len() >= 16, "{text}");
    let from_tag = m.from_tag().expect("vakt's own From tag");
    assert_ne!(
        Some(from_tag),
        ok.to_tag(),
        "not the tag of the 200: {text}"
    );
    assert!(
        matches!(
            m.start,
            vakt_proto::sip::StartLine::Request {
                uri: "sip:luc678@vakt",
                ..
            }
        ),
        "{text}"
    );
    let mrs = vakt_proto::scaip::parse_mrs(m.body).unwrap();
    assert_eq!((mrs.reference.as_deref(), mrs.snu), (Some("M1"), 4));

    // A strict SIP stack (PJSIP) would answer 481: vakt counts it and says so in its log.
    let mut refusal = Vec::new();
    vakt_proto::sip::encode_response(
        &m,
        481,
        "Call/Transaction Does Not Exist",
        "luc",
        &[],
        None,
        b"",
        &mut refusal,
    );
    luc.send(&refusal).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = common::http_get(http, "/metrics").await.1;
        let rejected = metric(
            &metrics,
            "vakt_scaip_answer_rejections_total{status=\"481\"}",
        );
        let log = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        if rejected >= 1.0 && log.contains("481") && log.contains("luc678") {
            assert!(
                metric(&metrics, "vakt_scaip_answers_total{outcome=\"rejected\"}") >= 1.0,
                "{metrics}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "481 counted and logged: {metrics}\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_device_that_keeps_its_nonce_is_renewed_and_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let mut cfg = test_config(dir.path());
    cfg.scaip.rate_per_source = 1000;
    cfg.scaip.rate_burst = 1000;
    let srv = start_with(cfg).await;
    // Far more requests on one nonce than vakt keeps counts for per user (each with a fresh
    // cnonce, as SIPp and vakt's luc send): vakt gives the old nonce up (stale=true) and the
    // device goes on with a new one, every request answered.
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678")
        .await
        .unwrap();
    for i in 0..3 * vakt_proto::sip::NONCE_USES_PER_USER {
        let body = format!("<mrq><ref>P{i}</ref><mty>PI</mty><cid>678</cid><dty>2</dty></mrq>");
        let x = luc.mrq(&body).await.unwrap();
        assert_eq!(x.code, 200, "request {i}");
        assert_eq!(x.mrs.unwrap().snu, 0, "request {i}");
    }
    srv.stop().await.unwrap();
}
