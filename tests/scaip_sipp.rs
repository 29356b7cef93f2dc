//! SCAIP (SS 91100) end to end with SIPp as the social-alarm device: a real server on
//! 127.0.0.1:0, Debian's `sipp` (package `sip-tester`) playing the scenarios under
//! `proto/scaip/` against vakt's SIP endpoint over UDP and TCP.
//!
//! - An alarm is challenged (Digest), accepted, journaled once and held (`snu 4`) however often
//!   the device polls; once an operator claims its Call the next poll gets `snu 0` with `mre 1`.
//! - A heartbeat with `hbo=001` gets `snu 0` and `hbi` (the registry's interval in minutes) and
//!   journals nothing.
//! - A technical event (battery low) gets `snu 0` and is journaled once; over UDP vakt
//!   retransmits its `<mrs>` MESSAGE until the device answers it, then stops.
//! - A malformed body gets `snu 2`, an `<mrq>` without `cid` gets `snu 7`.
//! - A wrong password is challenged again and journals nothing.
//!
//! vakt's `<mrs>` is a request of its own outside any dialog (its own Call-ID, no To tag), which
//! SIPp hands to the out-of-call scenario (`-oocsf proto/scaip/mrs.xml`); the device scenario
//! reads it from there, checks it has no To tag and its own Call-ID, and matches it by `ref`.
//!
//! The scenarios check the `<mrs>` themselves and fail SIPp (exit status not 0) otherwise; on a
//! failure the assertion message carries SIPp's error log, its `<log>` lines and the end of its
//! message trace. With `VAKT_ARTIFACTS` set, SIPp's traces are kept in its `sipp/` folder.
//! Without `sipp` on PATH the tests say so and pass, unless `VAKT_REQUIRE_SIPP` is set (as
//! `.ci/run` does), when they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::sipp::{Sipp, sipp_binary};
use common::*;
use serde_json::Value;
use vakt::model::Role;

/// The device: SCAIP controller id (the registry's account), SIP Digest user and password.
const CID: &str = "678";
const SIP_USER: &str = "luc678";
const SIP_PASSWORD: &str = "s3cret-678";
const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
/// Each SIPp run ends within this (its own `-timeout` is shorter).
const SIPP_BOUND: Duration = Duration::from_secs(75);

/// One SCAIP pendant of subscriber anna, supervised hourly (so `hbi` is 60 minutes).
fn devices_csv() -> String {
    format!(
        "{}\n{CID},,,,,anna,3600,,,pendant,{SIP_USER},{SIP_PASSWORD}\n",
        vakt::registers::devices::CSV_HEADER
    )
}

/// A server with the SCAIP device, the test administrator and an operator.
async fn server(dir: &Path) -> vakt::server::Running {
    vakt::cli::import_devices(common::store_at(dir), devices_csv().as_bytes())
        .expect("import devices");
    add_user(dir, ADMIN.0, Role::Admin, ADMIN.1);
    add_user(dir, OPERATOR.0, Role::Operator, OPERATOR.1);
    start_with(test_config(dir)).await
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }

    fn target(self, srv: &vakt::server::Running) -> SocketAddr {
        match self {
            Transport::Udp => srv.scaip_udp.expect("SCAIP over UDP listens"),
            Transport::Tcp => srv.scaip_tcp.expect("SCAIP over TCP listens"),
        }
    }
}

/// Starts the device: `proto/scaip/{scenario}.xml` against `target`, one call, traces in
/// `dir`; vakt's `<mrs>` MESSAGEs, which belong to no call of the device (a Call-ID of their
/// own), go to the out-of-call scenario `proto/scaip/{ooc}.xml`.
#[allow(clippy::too_many_arguments)]
fn start_device(
    sipp: &Path,
    dir: &Path,
    scenario: &str,
    ooc: &str,
    transport: Transport,
    target: SocketAddr,
    keys: &[(&str, &str)],
    extra: &[&str],
) -> Sipp {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/scaip");
    let mut args: Vec<String> = vec![
        "-oocsf".into(),
        folder.join(format!("{ooc}.xml")).display().to_string(),
        "-t".into(),
        transport.sipp_mode().into(),
    ];
    for a in [
        "-s",
        CID,
        "-au",
        SIP_USER,
        "-ap",
        SIP_PASSWORD,
        "-timeout",
        "60s",
    ] {
        args.push(a.into());
    }
    for (k, v) in keys {
        args.extend(["-key".into(), (*k).to_owned(), (*v).to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.push(target.to_string());
    Sipp::start_file(
        sipp,
        dir,
        &format!("{scenario}-{}", transport.sipp_mode()),
        &folder.join(format!("{scenario}.xml")),
        &args,
        SIPP_BOUND,
    )
}

/// How many `<mrs>` with `snu 4` the device has had so far.
fn holds(device: &Sipp) -> usize {
    device
        .log()
        .lines()
        .filter(|l| l.starts_with("mrs ") && l.contains(" snu=4 "))
        .count()
}

/// The journaled Signals of the test device whose raw `<mrq>` carries `ref`.
async fn signals_of(http: SocketAddr, reference: &str) -> Vec<Value> {
    let tag = format!("<ref>{reference}</ref>");
    signals(http)
        .await
        .into_iter()
        .filter(|s| s["account"] == CID && s["raw"].as_str().is_some_and(|r| r.contains(&tag)))
        .collect()
}

/// The open Calls of the test device.
async fn open_calls(c: &mut Client) -> Vec<Value> {
    let a = c.get("/api/calls?state=open").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let calls: Vec<Value> = serde_json::from_value(a.json()).unwrap();
    calls.into_iter().filter(|c| c["account"] == CID).collect()
}

/// The alarm flow: challenged, accepted, journaled once, held while the device polls, then
/// `snu 0` with `mre 1` once an operator claims the Call.
async fn alarm_hold_then_voice(transport: Transport) {
    let Some(sipp) = sipp_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    let reference = "1243";
    let mut device = start_device(
        &sipp,
        dir.path(),
        "alarm_hold_voice",
        "mrs",
        transport,
        transport.target(&srv),
        &[("ref", reference), ("poll_ms", "1000")],
        &[],
    );
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;

    // The alarm becomes a Call while the device is held; wait for a few polls so that
    // "journaled once" covers repeated mrqs with the same ref.
    let deadline = Instant::now() + Duration::from_secs(30);
    let call = loop {
        if let Some(status) = device.exited() {
            panic!(
                "the device ended before its Call was claimed\n{}",
                device.report(Some(status))
            );
        }
        let calls = open_calls(&mut op).await;
        if holds(&device) >= 3 && !calls.is_empty() {
            assert_eq!(calls.len(), 1, "one alarm, one Call: {calls:?}");
            break calls[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no Call with 3 holds within 30 s: calls {calls:?}\n{}",
            device.report(None)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sigs = signals_of(http, reference).await;
    assert_eq!(
        sigs.len(),
        1,
        "exactly one Signal for cid {CID} ref {reference} after {} polls: {sigs:?}\n{}",
        holds(&device),
        device.report(None)
    );
    assert_eq!(sigs[0]["subscriber"], "anna", "{:?}", sigs[0]);
    assert_eq!(call["state"], "queued", "{call:?}");

    // An operator takes it; the next poll is answered snu 0, mre 1 and the device is done.
    let id = call["id"].as_u64().expect("call id");
    let a = op
        .send("POST", &format!("/api/calls/{id}/claim"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let holds = holds(&device);
    let log = device.succeeds().await;
    let last = log
        .lines()
        .rfind(|l| l.starts_with("mrs "))
        .expect("the device logged its mrs");
    assert!(last.contains(" snu=0 mre=1 "), "{log}");
    assert!(holds >= 3, "{log}");

    // Still one Signal and one Call, now claimed.
    assert_eq!(signals_of(http, reference).await.len(), 1);
    let calls = open_calls(&mut op).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["id"], id);
    assert_eq!(calls[0]["owner"], OPERATOR.0);
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_is_held_until_claimed_then_voice_over_udp() {
    alarm_hold_then_voice(Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_is_held_until_claimed_then_voice_over_tcp() {
    alarm_hold_then_voice(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_gets_snu_0_and_hbi_and_journals_nothing() {
    let Some(sipp) = sipp_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let device = start_device(
        &sipp,
        dir.path(),
        "heartbeat",
        "mrs",
        Transport::Udp,
        Transport::Udp.target(&srv),
        &[("ref", "H1"), ("hbi", "60")],
        &[],
    );
    let log = device.succeeds().await;
    assert!(log.contains("mrs snu=0 hbi=60 "), "{log}");
    let sigs = signals(srv.http.unwrap()).await;
    assert!(sigs.is_empty(), "a heartbeat is not journaled: {sigs:?}");
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn battery_low_gets_snu_0_and_is_retransmitted_over_udp_until_answered() {
    let Some(sipp) = sipp_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    // -nr: SIPp hands vakt's retransmission to the scenario instead of swallowing it.
    let device = start_device(
        &sipp,
        dir.path(),
        "battery_low_udp_retransmit",
        "mrs_retransmit",
        Transport::Udp,
        Transport::Udp.target(&srv),
        &[("ref", "1242")],
        &["-nr"],
    );
    let log = device.succeeds().await;
    assert!(log.contains("mrs copy=2 snu=0 "), "{log}");
    let sigs = signals_of(srv.http.unwrap(), "1242").await;
    assert_eq!(sigs.len(), 1, "journaled once: {sigs:?}");
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_body_gets_snu_2() {
    let Some(sipp) = sipp_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let device = start_device(
        &sipp,
        dir.path(),
        "malformed",
        "mrs",
        Transport::Tcp,
        Transport::Tcp.target(&srv),
        &[("ref", "1249")],
        &[],
    );
    let log = device.succeeds().await;
    assert_eq!(log.matches("mrs snu=2 ").count(), 2, "{log}");
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mrq_without_cid_gets_snu_7() {
    let Some(sipp) = sipp_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let device = start_device(
        &sipp,
        dir.path(),
        "missing_cid",
        "mrs",
        Transport::Udp,
        Transport::Udp.target(&srv),
        &[("ref", "1250")],
        &[],
    );
    let log = device.succeeds().await;
    assert!(log.contains("mrs snu=7 "), "{log}");
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_challenged_again_and_journals_nothing() {
    let Some(sipp) = sipp_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let http = srv.http.unwrap();
    for transport in [Transport::Udp, Transport::Tcp] {
        let device = start_device(
            &sipp,
            dir.path(),
            "wrong_password",
            "mrs",
            transport,
            transport.target(&srv),
            &[("ref", "1260")],
            &[],
        );
        let log = device.succeeds().await;
        assert!(log.contains("done: refused twice"), "{log}");
    }
    let sigs = signals(http).await;
    assert!(sigs.is_empty(), "nothing journaled: {sigs:?}");
    let mut op = Client::login(http, OPERATOR.0, OPERATOR.1).await;
    assert!(open_calls(&mut op).await.is_empty());
    srv.stop().await.unwrap();
}
