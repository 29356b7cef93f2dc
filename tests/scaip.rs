//! SCAIP end to end: the real server on 127.0.0.1:0, a device written here that speaks SIP
//! over UDP, TCP and TLS with Digest, and the operator's API. SIPp plays the device in
//! `tests/scaip_sipp.rs`; this file covers what SIPp cannot (TLS, restarts, resets, limits).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::{ADMIN, Client, add_user, signals, start_with, test_config};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use vakt::codec::scaip::{self, Mrs};
use vakt::codec::sip::{self, StartLine};
use vakt::model::Role;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");

/// cid 678 is user luc678's pendant (Anna's); cid 679 is user luc679's smoke detector.
fn devices_csv() -> String {
    format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,luc678,s3cret-678\n679,,,,,bertil,,Telia,Norr,smoke_detector,luc679,s3cret-679\n1234,,,,,cecilia,90,Telia,Norr,carephone,,\n",
        vakt::registry::CSV_HEADER
    )
}

fn prepare(dir: &Path) {
    vakt::cli::import_devices(dir, devices_csv().as_bytes()).expect("import devices");
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

enum Link {
    Udp(UdpSocket, SocketAddr),
    Stream(Pin<Box<dyn Stream>>, Vec<u8>, &'static str),
}

/// A SCAIP device: sends `<mrq>`s in SIP MESSAGEs, answers vakt's MESSAGEs 200.
struct Luc {
    link: Link,
    user: String,
    password: String,
    cseq: u32,
    from_tag: String,
    call_id: String,
    /// The last challenge: (realm, nonce).
    challenge: Option<(String, String)>,
}

/// A final answer to one request, and the `<mrs>` that followed a 200.
#[derive(Debug)]
struct Exchange {
    code: u16,
    mrs: Option<Mrs>,
}

fn param(h: &str, name: &str) -> Option<String> {
    let i = h.find(&format!("{name}="))?;
    let v = &h[i + name.len() + 1..];
    Some(match v.strip_prefix('"') {
        Some(q) => q.split('"').next()?.to_owned(),
        None => v.split([',', ' ']).next()?.to_owned(),
    })
}

impl Luc {
    async fn udp(server: SocketAddr, user: &str, password: &str) -> Luc {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Luc::new(Link::Udp(s, server), user, password)
    }

    async fn tcp(server: SocketAddr, user: &str, password: &str) -> Luc {
        let s = TcpStream::connect(server).await.unwrap();
        Luc::new(Link::Stream(Box::pin(s), Vec::new(), "TCP"), user, password)
    }

    fn new(link: Link, user: &str, password: &str) -> Luc {
        Luc {
            link,
            user: user.into(),
            password: password.into(),
            cseq: 1,
            from_tag: sip::random_token(8),
            call_id: sip::random_token(12),
            challenge: None,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(s, to) => {
                s.send_to(bytes, *to).await.unwrap();
            }
            Link::Stream(s, _, _) => s.write_all(bytes).await.unwrap(),
        }
    }

    /// The next SIP message from vakt (10 s at most).
    async fn recv(&mut self) -> Vec<u8> {
        let fut = async {
            match &mut self.link {
                Link::Udp(s, _) => {
                    let mut buf = vec![0u8; 65536];
                    let (n, _) = s.recv_from(&mut buf).await.unwrap();
                    buf.truncate(n);
                    buf
                }
                Link::Stream(s, buf, _) => loop {
                    match sip::scan(buf) {
                        sip::Scan::Message { len } => {
                            let m = buf[..len].to_vec();
                            buf.drain(..len);
                            return m;
                        }
                        sip::Scan::KeepAlive { n, .. } => {
                            buf.drain(..n);
                        }
                        sip::Scan::Incomplete => {
                            let mut chunk = [0u8; 4096];
                            let n = s.read(&mut chunk).await.unwrap();
                            assert!(n > 0, "vakt closed the connection");
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        sip::Scan::Invalid(e) => panic!("bad stream from vakt: {e:?}"),
                    }
                },
            }
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("vakt answers within 10 s")
    }

    fn transport(&self) -> &'static str {
        match &self.link {
            Link::Udp(..) => "UDP",
            Link::Stream(_, _, t) => t,
        }
    }

    fn message(&mut self, method: &str, body: &[u8], auth: Option<String>) -> Vec<u8> {
        let uri = "sip:arc@127.0.0.1";
        let mut out = Vec::new();
        let transport = self.transport();
        let mut req = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{}@127.0.0.1>;tag={}\r\nTo: <{uri}>\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n",
            sip::random_token(12),
            self.user,
            self.from_tag,
            self.call_id,
            self.cseq,
        );
        self.cseq += 1;
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Type: {}\r\n", scaip::CONTENT_TYPE));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        out.extend_from_slice(req.as_bytes());
        out.extend_from_slice(body);
        out
    }

    fn authorization(&self, method: &str) -> Option<String> {
        let (realm, nonce) = self.challenge.clone()?;
        let uri = "sip:arc@127.0.0.1";
        let ha1 = sip::ha1(&self.user, &realm, &self.password);
        let cnonce = sip::random_token(8);
        let response = sip::digest_response(
            &ha1,
            &nonce,
            Some("00000001"),
            Some(&cnonce),
            Some("auth"),
            method,
            uri,
        );
        Some(format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\"",
            self.user
        ))
    }

    /// Sends `body` in a MESSAGE (answering a challenge once), and returns vakt's final
    /// answer and, after a 200, the `<mrs>` of vakt's MESSAGE (answered 200).
    async fn mrq(&mut self, body: &str) -> Exchange {
        for _ in 0..2 {
            let auth = self.authorization("MESSAGE");
            let had_auth = auth.is_some();
            let req = self.message("MESSAGE", body.as_bytes(), auth);
            self.send(&req).await;
            let resp = self.recv().await;
            let msg = sip::parse(&resp).unwrap();
            let StartLine::Response { code, .. } = msg.start else {
                panic!("expected a response: {}", String::from_utf8_lossy(&resp));
            };
            if code == 401 {
                let h = msg
                    .header("WWW-Authenticate")
                    .expect("challenge")
                    .to_owned();
                assert!(h.starts_with("Digest "), "{h}");
                assert!(h.contains("algorithm=MD5"), "{h}");
                self.challenge = Some((param(&h, "realm").unwrap(), param(&h, "nonce").unwrap()));
                if had_auth {
                    return Exchange { code, mrs: None };
                }
                continue;
            }
            if code != 200 {
                return Exchange { code, mrs: None };
            }
            let mrs = self.await_mrs().await;
            return Exchange {
                code,
                mrs: Some(mrs),
            };
        }
        unreachable!()
    }

    /// vakt's MESSAGE with the `<mrs>`, answered 200.
    async fn await_mrs(&mut self) -> Mrs {
        loop {
            let raw = self.recv().await;
            let msg = sip::parse(&raw).unwrap();
            let StartLine::Request { method, .. } = msg.start else {
                continue;
            };
            assert_eq!(method, "MESSAGE");
            assert_eq!(
                msg.call_id(),
                self.call_id,
                "the mrs carries the request's Call-ID"
            );
            assert_eq!(msg.content_type(), Some(scaip::CONTENT_TYPE));
            assert!(msg.header("To").unwrap().contains(&self.from_tag));
            let mut ok = Vec::new();
            sip::encode_response(&msg, 200, "OK", "luc", &[], None, b"", &mut ok);
            let mrs = scaip::parse_mrs(msg.body).unwrap();
            self.send(&ok).await;
            return mrs;
        }
    }
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
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678").await;

    // First request: challenged, then authenticated; the alarm is held.
    let x = luc.mrq(&alarm("1243", "678", 3)).await;
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
        let mrs = luc.mrq(&alarm("1243", "678", 3)).await.mrs.unwrap();
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
    let mrs = luc.mrq(&alarm("1243", "678", 3)).await.mrs.unwrap();
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
    let mut luc = Luc::tcp(srv.scaip_tcp.unwrap(), "luc678", "s3cret-678").await;

    // A heartbeat from a device that takes intervals: 3600 s in the registry = 60 min.
    let mrs = luc
        .mrq("<mrq><ref>H1</ref><mty>PI</mty><cid>678</cid><dty>2</dty><hbo>001</hbo></mrq>")
        .await
        .mrs
        .unwrap();
    assert_eq!((mrs.snu, mrs.hbi), (0, Some(60)));
    // Without hbo, no hbi.
    let mrs = luc
        .mrq("<mrq><ref>H2</ref><mty>PI</mty><cid>678</cid><dty>2</dty></mrq>")
        .await
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
        let mrs = luc.mrq(body).await.mrs.unwrap();
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
    let mrs = luc.mrq(&long).await.mrs.unwrap();
    assert_eq!((mrs.snu, mrs.reference.as_deref()), (1, Some("E4")));

    // OPTIONS keep-alives are answered; other methods are not allowed.
    let req = luc.message("OPTIONS", b"", None);
    luc.send(&req).await;
    let r = luc.recv().await;
    assert!(
        r.starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let req = luc.message("INVITE", b"", None);
    luc.send(&req).await;
    let r = luc.recv().await;
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
    luc.send(&req).await;
    let r = luc.recv().await;
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

    let mut wrong = Luc::udp(udp, "luc678", "not-the-password").await;
    assert_eq!(wrong.mrq(&alarm("W1", "678", 3)).await.code, 401);
    let mut nobody = Luc::udp(udp, "nobody", "whatever").await;
    assert_eq!(nobody.mrq(&alarm("W2", "678", 3)).await.code, 401);
    // Basic is refused.
    let mut basic = Luc::udp(udp, "luc678", "s3cret-678").await;
    let req = basic.message(
        "MESSAGE",
        alarm("W3", "678", 3).as_bytes(),
        Some("Basic bHVjNjc4OnMzY3JldC02Nzg=".into()),
    );
    basic.send(&req).await;
    let r = basic.recv().await;
    assert!(
        r.starts_with(b"SIP/2.0 401"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // A nonce vakt never gave.
    let mut forged = Luc::udp(udp, "luc678", "s3cret-678").await;
    forged.challenge = Some(("vakt".into(), "0123456789abcdef".into()));
    let req = forged.message(
        "MESSAGE",
        alarm("W4", "678", 3).as_bytes(),
        forged.authorization("MESSAGE"),
    );
    forged.send(&req).await;
    let r = forged.recv().await;
    assert!(
        r.starts_with(b"SIP/2.0 401"),
        "{}",
        String::from_utf8_lossy(&r)
    );

    // An authenticated device sending for a cid registered to another user: journaled (a
    // person must see it) but as an unknown device.
    let mut other = Luc::udp(udp, "luc679", "s3cret-679").await;
    let mrs = other.mrq(&alarm("X1", "678", 3)).await.mrs.unwrap();
    assert_eq!(mrs.snu, 4);

    let all = signals(http).await;
    let sc = scaip_signals(&all);
    assert_eq!(sc.len(), 1, "only the authenticated request: {sc:?}");
    assert_eq!(sc[0]["seq"], "X1");
    assert_eq!(sc[0]["flags"][0], "unknown_device");
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
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc679", "s3cret-679").await;

    // A smoke detector: held (level 0 "Fire").
    let mrs = luc.mrq(&alarm("F1", "679", 23)).await.mrs.unwrap();
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
        .mrs
        .unwrap();
    assert_eq!(mrs.snu, 4);

    // vakt restarts; the device polls on: the same Call, still held.
    srv.stop().await.unwrap();
    let srv = start_with(test_config(dir.path())).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc679", "s3cret-679").await;
    let mrs = luc.mrq(&alarm("F1", "679", 23)).await.mrs.unwrap();
    assert_eq!(mrs.snu, 4);
    let calls = open_calls(&mut op).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["id"].as_u64(), Some(id));

    // The device gives up (reset): acknowledged, on the Call's timeline, the Call stays.
    let mrs = luc
        .mrq("<mrq><ref>F1</ref><mty>RE</mty><cid>679</cid><dty>23</dty></mrq>")
        .await
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
    let mut luc = Luc::new(
        Link::Stream(Box::pin(stream), Vec::new(), "TLS"),
        "luc678",
        "s3cret-678",
    );
    // The spec's example: a bogus-caller switch with a low battery; no voice needed.
    let mrs = luc
        .mrq("<mrq><ref>1242</ref><cid>678</cid><dty>27</dty><stc>16</stc></mrq>")
        .await
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
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678").await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let req = luc.message("OPTIONS", b"", None);
        luc.send(&req).await;
        let r = luc.recv().await;
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
