//! Calls out, end to end (issue 15 item 4): the real server on 127.0.0.1:0, SIPp as the
//! callee (`tests/sipp/callee*.xml`), a str0m peer as the operator's browser
//! (`common/webrtc.rs`), and the console's API.
//!
//! - `a_unit_that_asked_for_a_call_back_is_called_over_its_own_flow`: a SCAIP unit (vakt's
//!   own `sim::luc`) sends an alarm asking to be called back (`cha=1`); once the operator has
//!   the Call vakt answers it `cre` with the window; "Call back" then goes to the address the
//!   unit sent from (where SIPp now listens), the unit answers, the conversation is recorded
//!   and ends as an outbound line on the Call's timeline.
//! - `a_relative_is_called_through_the_trunk_with_digest`: the trunk challenges vakt (401),
//!   vakt answers with the configured credentials, the relative answers.
//! - `a_busy_phone_ends_as_busy_and_only_the_holder_may_call`: 486 is "busy" on the timeline;
//!   an operator who does not hold the Call, or a Call nobody holds, is refused 409; without
//!   a trunk only the unit is offered and a number is refused.
//!
//! - `a_gsm_unit_is_called_back_by_its_number_through_the_trunk`: a unit with a phone number
//!   and no SIP account (its alarm came over DC-09) is called back at its number via the trunk.
//!
//! Without `sipp` on PATH the tests say so and pass, unless `VAKT_REQUIRE_SIPP` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::webrtc::{Browser, PATIENCE, until};
use common::{ADMIN, Client, add_user, start_with, test_config};
use serde_json::{Value, json};
use vakt::model::Role;
use vakt::sim::luc::Luc;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
const OTHER: (&str, &str) = ("pia", "pia-password-1");

/// cid 678 is unit luc678, Anna's pendant.
fn prepare(dir: &Path) {
    let devices = format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,luc678,s3cret-678\n\
         679,,,,,anna,3600,Telia,Norr,fall_detector,,,+46 70-999 88 77\n",
        vakt::registers::devices::CSV_HEADER
    );
    vakt::cli::import_devices(common::store_at(dir), devices.as_bytes()).unwrap();
    let subscribers = format!(
        "{}\nanna,Anna Berg,19400101-1234,Storgatan 1,12345,Vaktby,Norr,+46 70-111 22 33,Hemtjänst Norr,1,Key cabinet,,,,,,Karin Berg,daughter,070-444 55 66,,,,,,,sv,false\n",
        vakt::registers::subscribers::CSV_HEADER
    );
    vakt::cli::import_subscribers(
        common::store_at(dir),
        subscribers.as_bytes(),
        jiff::Timestamp::now(),
    )
    .unwrap();
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    add_user(dir, OTHER.0, Role::Operator, OTHER.1);
}

/// A free UDP port on 127.0.0.1 now (SIPp takes it next).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn alarm(reference: &str, extra: &str) -> String {
    format!("<mrq><ref>{reference}</ref><cid>678</cid><dty>0003</dty>{extra}</mrq>")
}

/// Anna's alarm from the unit (held), its Call taken by the operator: the Call's id.
async fn taken_call(luc: &mut Luc, op: &mut Client, extra: &str) -> u64 {
    let mrs = luc.mrq(&alarm("501", extra)).await.unwrap().mrs.unwrap();
    assert_eq!(mrs.snu, 4);
    let id = common::first_open_call(op, PATIENCE).await;
    let a = op
        .send("POST", &format!("/api/calls/{id}/claim"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    id
}

/// The conversation `conv` as `/api/voice` shows it, once `pred` holds.
async fn live_until(op: &mut Client, conv: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = op.get("/api/voice").await.json();
        if let Some(c) = v
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"].as_u64() == Some(conv))
            && pred(c)
        {
            return c.clone();
        }
        assert!(Instant::now() < deadline, "conversation {conv}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The line of conversation `conv` on Call `call`'s timeline, once it is there.
async fn line_of(op: &mut Client, call: u64, conv: u64) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let c = op.get(&format!("/api/calls/{call}")).await.json();
        if let Some(l) = c["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "conversation" && e["id"].as_u64() == Some(conv))
        {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no line for {conv}: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sipp_args(port: u16, target: &str) -> Vec<String> {
    vec![
        "-p".into(),
        port.to_string(),
        "-mi".into(),
        "127.0.0.1".into(),
        target.into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_asked_for_a_call_back_is_called_over_its_own_flow() {
    let Some(sipp) = common::sipp::sipp_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let mut cfg = test_config(dir.path());
    cfg.voice.callback_window_mins = 7;
    let srv = start_with(cfg).await;
    let mut op = Client::login(srv.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let scaip = srv.scaip_udp.unwrap();
    let mut luc = Luc::udp(scaip, "luc678", "s3cret-678").await.unwrap();

    // The unit asks to be called back; once the operator has the Call, it is told to
    // auto-answer for 7 minutes (cre=07) instead of calling.
    let call = taken_call(&mut luc, &mut op, "<cha>1</cha>").await;
    let mrs = luc
        .mrq(&alarm("501", "<cha>1</cha>"))
        .await
        .unwrap()
        .mrs
        .unwrap();
    assert_eq!(
        (mrs.snu, mrs.mre, mrs.cre.as_deref(), mrs.tnu.as_deref()),
        (0, Some(1), Some("07"), None)
    );
    let targets = op.get(&format!("/api/calls/{call}/dial")).await;
    assert_eq!(targets.status, 200, "{}", targets.body);
    let t = targets.json();
    assert_eq!(t["trunk"], false);
    // Without a trunk only the unit is offered, in its window.
    assert_eq!(t["targets"].as_array().unwrap().len(), 1, "{t}");
    assert_eq!(t["targets"][0]["target"], "unit");
    assert!(t["targets"][0]["auto_answer_until"].is_string(), "{t}");

    // The unit now listens where it sent from (SIPp, answering).
    let port = luc.local_addr().unwrap().port();
    drop(luc);
    let traces = tempfile::tempdir().unwrap();
    let unit = common::sipp::Sipp::start(
        &sipp,
        traces.path(),
        "callee",
        &sipp_args(port, &scaip.to_string()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (browser, offer) = Browser::offer(&["opus", "pcmu", "pcma"]).await;
    let r = op
        .post(
            "/api/voice/dial",
            json!({ "call": call, "target": "unit", "offer": offer }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(d["party"], "unit 678");
    assert!(d["auto_answer_until"].is_string(), "{d}");
    let conv = d["conversation"].as_u64().unwrap();
    let running = browser.accept(d["sdp"].as_str().unwrap());
    let connected = running.connected.clone();
    until("the browser to connect", || *connected.borrow()).await;

    // The unit answers: the conversation is answered, outbound, the operator on it.
    let v = live_until(&mut op, conv, |c| c["state"] == "answered").await;
    assert_eq!(v["direction"], "outbound");
    assert_eq!(v["operator"], OPERATOR.0);
    assert_eq!(v["call"].as_u64(), Some(call));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h = op
        .send("POST", &format!("/api/voice/{conv}/hangup"), None)
        .await;
    assert_eq!(h.status, 204, "{}", h.body);
    unit.succeeds().await;

    let line = line_of(&mut op, call, conv).await;
    assert_eq!(line["direction"], "outbound");
    assert_eq!(line["party"], "unit 678");
    assert_eq!(line["operator"], OPERATOR.0);
    assert_eq!(line["ended_by"], "operator");
    assert!(line["talk_secs"].is_u64(), "{line}");
    let file = line["recording"].as_str().unwrap().to_owned();
    assert!(
        dir.path().join("recordings").join(&file).is_file(),
        "{file}"
    );
    // The dial is in the audit log, with the Call.
    let mut admin = Client::login(srv.http.unwrap(), ADMIN.0, ADMIN.1).await;
    let audit = admin.get("/api/audit?limit=100").await.json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "call.voice_dial"
                && e["call"].as_u64() == Some(call)
                && e["user"] == OPERATOR.0),
        "{audit}"
    );
    srv.stop().await.unwrap();
}

fn trunk(port: u16, credentials: bool) -> vakt::config::TrunkConfig {
    let mut t: vakt::config::TrunkConfig = toml::from_str(&format!(
        "name = \"sbc\"\nsources = [\"192.0.2.10\"]\noutbound = \"127.0.0.1:{port}\"\nfrom_number = \"+46 31 123 456\"\n"
    ))
    .unwrap();
    if credentials {
        t.outbound_user = Some("vakt".into());
        t.outbound_password = Some(vakt::model::SipPassword::new("trunk-secret"));
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_is_called_through_the_trunk_with_digest() {
    let Some(sipp) = common::sipp::sipp_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let port = free_port();
    let mut cfg = test_config(dir.path());
    cfg.voice.trunks = vec![trunk(port, true)];
    let srv = start_with(cfg).await;
    let mut op = Client::login(srv.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678")
        .await
        .unwrap();
    let call = taken_call(&mut luc, &mut op, "").await;

    // With a trunk: the unit, Anna's own phone and her daughter's.
    let t = op.get(&format!("/api/calls/{call}/dial")).await.json();
    assert_eq!(t["trunk"], true);
    let targets = t["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3, "{t}");
    assert_eq!(targets[1]["target"], "person");
    assert_eq!(targets[1]["number"], "+46701112233");
    assert_eq!(targets[2]["target"], json!({ "contact": 0 }));
    assert_eq!(targets[2]["number"], "0704445566");
    // A unit that never asked for a call back has no window.
    assert!(targets[0]["auto_answer_until"].is_null(), "{t}");

    let traces = tempfile::tempdir().unwrap();
    let relative = common::sipp::Sipp::start(
        &sipp,
        traces.path(),
        "callee_digest",
        &sipp_args(port, &srv.scaip_udp.unwrap().to_string()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (browser, offer) = Browser::offer(&["pcmu", "pcma"]).await;
    let r = op
        .post(
            "/api/voice/dial",
            json!({ "call": call, "target": { "contact": 0 }, "offer": offer }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(d["party"], "Karin Berg (daughter) 0704445566");
    assert!(d["auto_answer_until"].is_null());
    let conv = d["conversation"].as_u64().unwrap();
    let running = browser.accept(d["sdp"].as_str().unwrap());
    let connected = running.connected.clone();
    until("the browser to connect", || *connected.borrow()).await;
    live_until(&mut op, conv, |c| c["state"] == "answered").await;
    let h = op
        .send("POST", &format!("/api/voice/{conv}/hangup"), None)
        .await;
    assert_eq!(h.status, 204, "{}", h.body);
    relative.succeeds().await;
    let line = line_of(&mut op, call, conv).await;
    assert_eq!(line["direction"], "outbound");
    assert_eq!(line["party"], "Karin Berg (daughter) 0704445566");
    assert_eq!(line["ended_by"], "operator");
    assert!(line["talk_secs"].is_u64(), "{line}");
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_phone_ends_as_busy_and_only_the_holder_may_call() {
    let Some(sipp) = common::sipp::sipp_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let port = free_port();
    let mut cfg = test_config(dir.path());
    cfg.voice.trunks = vec![trunk(port, false)];
    let srv = start_with(cfg).await;
    let http = srv.http.unwrap();
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    let mut other = Client::login(http, OTHER.0, OTHER.1).await;
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678")
        .await
        .unwrap();
    let (_, offer) = Browser::offer(&["pcma"]).await;

    // Nobody holds the Call yet: nobody may call from it.
    let mrs = luc.mrq(&alarm("501", "")).await.unwrap().mrs.unwrap();
    assert_eq!(mrs.snu, 4);
    let call = common::first_open_call(&op, PATIENCE).await;
    let body = json!({ "call": call, "target": "person", "offer": offer });
    let r = other.post("/api/voice/dial", body.clone()).await;
    assert_eq!(r.status, 409, "{}", r.body);
    // Another operator's Call: refused, and nothing rings.
    let a = op
        .send("POST", &format!("/api/calls/{call}/claim"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = other.post("/api/voice/dial", body.clone()).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains(OPERATOR.0), "{}", r.body);
    assert_eq!(
        other.get(&format!("/api/calls/{call}/dial")).await.status,
        409
    );
    assert_eq!(op.get("/api/voice").await.json(), json!([]));

    // The holder calls Anna's phone: busy.
    let traces = tempfile::tempdir().unwrap();
    let phone = common::sipp::Sipp::start(
        &sipp,
        traces.path(),
        "callee_busy",
        &sipp_args(port, &srv.scaip_udp.unwrap().to_string()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (browser, offer) = Browser::offer(&["pcma"]).await;
    let r = op
        .post(
            "/api/voice/dial",
            json!({ "call": call, "target": "person", "offer": offer }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(d["party"], "Anna Berg (own phone) +46701112233");
    let conv = d["conversation"].as_u64().unwrap();
    let _running = browser.accept(d["sdp"].as_str().unwrap());
    phone.succeeds().await;
    let line = line_of(&mut op, call, conv).await;
    assert_eq!(line["direction"], "outbound");
    assert_eq!(line["ended_by"], "busy");
    assert!(line["talk_secs"].is_null(), "{line}");
    assert!(line["recording"].is_null(), "{line}");
    assert_eq!(op.get("/api/voice").await.json(), json!([]));

    // A contact that is not there: refused, nothing dialled.
    let (_, offer) = Browser::offer(&["pcma"]).await;
    let r = op
        .post(
            "/api/voice/dial",
            json!({ "call": call, "target": { "contact": 5 }, "offer": offer }),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    srv.stop().await.unwrap();
}

/// The value of header `name` in SIP message `msg`.
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(h, _)| h.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// A response `code` to request `req` from the unit, tagged.
fn response(req: &str, code: u16, reason: &str) -> String {
    let to = header(req, "To");
    let to = if to.contains("tag=") {
        to.to_owned()
    } else {
        format!("{to};tag=unit1")
    };
    format!(
        "SIP/2.0 {code} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(req, "Via"),
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
    )
}

/// The next request `method` the unit receives (vakt's other requests are answered 200).
async fn next_request(luc: &mut Luc, method: &str) -> String {
    loop {
        let raw = tokio::time::timeout(PATIENCE, luc.recv())
            .await
            .unwrap_or_else(|_| panic!("no {method} at the unit"))
            .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        if text.starts_with(&format!("{method} ")) {
            return text;
        }
        if !text.starts_with("SIP/2.0") && !text.starts_with("ACK ") {
            luc.send(response(&text, 200, "OK").as_bytes())
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trunk_a_number_is_refused_and_a_ringing_unit_is_heard_ringing() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let srv = start_with(test_config(dir.path())).await;
    let mut op = Client::login(srv.http.unwrap(), OPERATOR.0, OPERATOR.1).await;
    let mut luc = Luc::udp(srv.scaip_udp.unwrap(), "luc678", "s3cret-678")
        .await
        .unwrap();
    let call = taken_call(&mut luc, &mut op, "").await;
    let (_, offer) = Browser::offer(&["pcma"]).await;
    let r = op
        .post(
            "/api/voice/dial",
            json!({ "call": call, "target": "person", "offer": offer }),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("no trunk"), "{}", r.body);
    assert_eq!(op.get("/api/voice").await.json(), json!([]));

    // Call back a unit that never asked for it: no window, it rings (180) and nobody
    // answers; the browser hears vakt's ringing tone meanwhile.
    let (browser, offer) = Browser::offer(&["pcma"]).await;
    let r = op
        .post(
            "/api/voice/dial",
            json!({ "call": call, "target": "unit", "offer": offer }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert!(d["auto_answer_until"].is_null(), "{d}");
    let conv = d["conversation"].as_u64().unwrap();
    let mut running = browser.accept(d["sdp"].as_str().unwrap());
    let invite = next_request(&mut luc, "INVITE").await;
    assert!(invite.starts_with("INVITE sip:luc678@"), "{invite}");
    assert!(invite.contains("m=audio "), "{invite}");
    luc.send(response(&invite, 180, "Ringing").as_bytes())
        .await
        .unwrap();
    let v = live_until(&mut op, conv, |c| c["state"] == "ringing").await;
    assert_eq!(v["direction"], "outbound");
    // The tone's first second (1 s on, 4 s off), by frequency.
    let mut heard = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while heard.len() < 8 * 400 {
        let (frame, _) = tokio::time::timeout_at(deadline, running.frames.recv())
            .await
            .expect("ringback frames")
            .unwrap();
        let mut pcm = Vec::new();
        vakt_proto::g711::Law::Alaw.decode_into(&frame, &mut pcm);
        if vakt::voice::tone::rms(&pcm) > 100.0 {
            heard.extend(pcm);
        }
    }
    let levels = vakt::voice::tone::analyse(&heard, 8000, &[425.0, 440.0, 1000.0]);
    assert_eq!(levels.dominant(), Some(425.0), "{levels:?}");

    // The operator gives up: CANCEL to the unit, and the line says who ended it.
    let h = op
        .send("POST", &format!("/api/voice/{conv}/hangup"), None)
        .await;
    assert_eq!(h.status, 204, "{}", h.body);
    let cancel = next_request(&mut luc, "CANCEL").await;
    luc.send(response(&cancel, 200, "OK").as_bytes())
        .await
        .unwrap();
    luc.send(response(&invite, 487, "Request Terminated").as_bytes())
        .await
        .unwrap();
    let line = line_of(&mut op, call, conv).await;
    assert_eq!(line["direction"], "outbound");
    assert_eq!(line["party"], "unit 678");
    assert_eq!(line["ended_by"], "operator");
    assert!(line["talk_secs"].is_null(), "{line}");
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gsm_unit_is_called_back_by_its_number_through_the_trunk() {
    let Some(sipp) = common::sipp::sipp_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let port = free_port();
    let mut cfg = test_config(dir.path());
    cfg.voice.trunks = vec![trunk(port, false)];
    let srv = start_with(cfg).await;
    let mut op = Client::login(srv.http.unwrap(), OPERATOR.0, OPERATOR.1).await;

    // Anna's fall detector (679) has no SIP account, only its number: its alarm comes over
    // DC-09.
    let frame = common::plain("SIA-DCS", 1, "679", "#679|Nri1/FA002");
    let ack = common::tcp_roundtrip(srv.dc09_tcp.unwrap(), &frame).await;
    assert!(String::from_utf8_lossy(&ack).contains("ACK"), "{ack:?}");
    let call = common::first_open_call(&op, PATIENCE).await;
    let a = op
        .send("POST", &format!("/api/calls/{call}/claim"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // "Call back" is offered, at the unit's number.
    let t = op.get(&format!("/api/calls/{call}/dial")).await.json();
    let unit = &t["targets"].as_array().unwrap()[0];
    assert_eq!(unit["target"], "unit", "{t}");
    assert_eq!(unit["number"], "+46709998877", "{t}");

    let traces = tempfile::tempdir().unwrap();
    let callee = common::sipp::Sipp::start(
        &sipp,
        traces.path(),
        "callee",
        &sipp_args(port, &srv.scaip_udp.unwrap().to_string()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (browser, offer) = Browser::offer(&["pcma"]).await;
    let r = op
        .post(
            "/api/voice/dial",
            json!({ "call": call, "target": "unit", "offer": offer }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(d["party"], "unit 679 +46709998877");
    let conv = d["conversation"].as_u64().unwrap();
    let running = browser.accept(d["sdp"].as_str().unwrap());
    let connected = running.connected.clone();
    until("the browser to connect", || *connected.borrow()).await;
    live_until(&mut op, conv, |c| c["state"] == "answered").await;
    let h = op
        .send("POST", &format!("/api/voice/{conv}/hangup"), None)
        .await;
    assert_eq!(h.status, 204, "{}", h.body);
    callee.succeeds().await;
    let line = line_of(&mut op, call, conv).await;
    assert_eq!(line["direction"], "outbound");
    assert_eq!(line["party"], "unit 679 +46709998877");
    srv.stop().await.unwrap();
}
