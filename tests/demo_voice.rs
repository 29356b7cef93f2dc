//! The demo's SCAIP home on the phone, against the real server: the home's alarm is held
//! until an operator takes its Call, then (`snu 0`, `mre 1`) the home calls vakt with its
//! registry credentials; an operator answers from the browser (a str0m peer through the
//! API) and hears the person's phrase, and the home hears the operator; the operator hangs
//! up and the home sees the BYE and ends. A home nobody answers gives up (CANCEL) and the
//! Call keeps an abandoned call.
//!
//! "Hears the phrase" is checked on the audio, not the packets: the operator's side
//! decodes what came and finds speech (energy in 300-3400 Hz far above the silence before
//! it, spread over many frequencies that change as the voice does, not one tone) as long
//! and as loud as the embedded phrase, within bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::{Duration, Instant};

use common::webrtc::{PATIENCE, until};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vakt::sim::demo_call::{CallEnd, CallReport, Unit, UnitCallOptions, phrase};
use vakt::sim::{ScaipSimOptions, alarm_and_call};
use vakt::voice::tone::{ToneGen, goertzel, rms};
use vakt::voice::webrtc::WebRtcOptions;
use vakt_proto::g711::Law;

const SPEAK_AFTER: Duration = Duration::from_secs(1);
/// Samples in 20 ms.
const FRAME: usize = 160;
/// A 20 ms frame louder than this (RMS) is speech; the phrase's pauses and the silence
/// around it are far below.
const ACTIVE_RMS: f64 = 300.0;

/// A server with one SCAIP unit (cid 678, `luc678`) and the test administrator, and the
/// administrator logged in.
async fn server(dir: &std::path::Path) -> (vakt::server::Running, common::Client) {
    let csv = format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,luc678,pw-678\n",
        vakt::registers::devices::CSV_HEADER
    );
    vakt::cli::import_devices(common::store_at(dir), csv.as_bytes()).unwrap();
    common::add_user(
        dir,
        common::ADMIN.0,
        vakt::model::Role::Admin,
        common::ADMIN.1,
    );
    let mut cfg = common::test_config(dir);
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let first = probe.local_addr().unwrap().port().min(u16::MAX - 8);
    cfg.voice.webrtc = WebRtcOptions {
        bind_addr: std::net::Ipv4Addr::LOCALHOST.into(),
        port_min: first,
        port_max: first + 7,
        connect_timeout_secs: 5,
        idle_timeout_secs: 5,
        ..WebRtcOptions::default()
    };
    let srv = common::start_with(cfg).await;
    let op = common::Client::login(srv.http.unwrap(), common::ADMIN.0, common::ADMIN.1).await;
    (srv, op)
}

/// The demo home of unit 678 raises an alarm and, once answered, calls; its report.
fn home(
    srv: &vakt::server::Running,
    call: UnitCallOptions,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<Option<CallReport>> {
    let unit = Unit {
        server: srv.scaip_udp.unwrap(),
        cid: "678".into(),
        user: "luc678".into(),
        password: "pw-678".into(),
    };
    let ms = Duration::from_millis;
    let opts = ScaipSimOptions {
        poll_every: ms(200)..=ms(300),
        give_up_after: Duration::from_secs(60),
        presence_percent: 0,
        voice_call: Some(call),
        ..ScaipSimOptions::default()
    };
    let stop = stop.clone();
    tokio::spawn(async move { alarm_and_call(unit, opts, &stop).await })
}

/// Waits for the alarm's Call, takes it (vakt then answers the unit `snu 0`, `mre 1`), and
/// waits for the unit's call ringing on it: (Call, conversation).
async fn take_the_call_and_see_it_ring(op: &mut common::Client) -> (u64, u64) {
    let call = common::first_open_call(op, PATIENCE).await;
    let a = op
        .send("POST", &format!("/api/calls/{call}/claim"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let deadline = Instant::now() + PATIENCE;
    let conv = loop {
        let v = op.get("/api/voice").await.json();
        if let Some(c) = v
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call"].as_u64() == Some(call) && c["state"] == "ringing")
        {
            break c["id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "the unit's call never rang: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (call, conv)
}

/// The conversation's line on Call `call`, once it is there.
async fn line_on(op: &mut common::Client, call: u64) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let c = op.get(&format!("/api/calls/{call}")).await.json();
        if let Some(l) = c["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "conversation")
        {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no conversation line: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The 20 ms frames of `samples` that are speech.
fn active_frames(samples: &[i16]) -> Vec<&[i16]> {
    samples
        .chunks_exact(FRAME)
        .filter(|f| rms(f) > ACTIVE_RMS)
        .collect()
}

/// Energy in the telephone band (300-3400 Hz, every 100 Hz) of `samples`.
fn band_energy(samples: &[i16]) -> f64 {
    (3..=34)
        .map(|k| goertzel(samples, 8000, f64::from(k) * 100.0))
        .sum()
}

/// The frequency (every 100 Hz of the band) that is strongest in `samples`.
fn dominant(samples: &[i16]) -> u32 {
    (3..=34u32)
        .max_by(|a, b| {
            goertzel(samples, 8000, f64::from(*a) * 100.0).total_cmp(&goertzel(
                samples,
                8000,
                f64::from(*b) * 100.0,
            ))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_home_calls_back_and_the_operator_hears_the_person_speak() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, mut op) = server(dir.path()).await;
    let stop = CancellationToken::new();
    let unit = home(
        &srv,
        UnitCallOptions {
            ring_for: Duration::from_secs(30),
            max_call: Duration::from_secs(60),
            speak_after: SPEAK_AFTER,
            pause: Duration::from_secs(4),
        },
        &stop,
    );
    let (call, conv) = take_the_call_and_see_it_ring(&mut op).await;

    // The operator answers from the browser (which offers A-law, as the unit's call is).
    let mut browser = common::webrtc::answer(&mut op, conv, &["opus", "pcma", "pcmu"]).await;
    let connected = browser.connected.clone();
    until("the browser to connect", || *connected.borrow()).await;
    let law = match *browser.pt.borrow() {
        Some(8) => Law::Alaw,
        Some(0) => Law::Ulaw,
        other => panic!("the browser's codec: {other:?}"),
    };
    // The operator talks back: a 1,000 Hz tone, every 20 ms, while listening.
    let talking = tokio::spawn({
        let send = browser.send.clone();
        async move {
            let mut tone = ToneGen::new(1000.0, -10.0);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for _ in 0..400 {
                tick.tick().await;
                if send.send(tone.frame(law)).is_err() {
                    break;
                }
            }
        }
    });

    // Listen to the first phrase: the silence before it, its 4.64 s, and some of the pause.
    let mut heard: Vec<i16> = Vec::new();
    let listen_until = Instant::now() + SPEAK_AFTER + Duration::from_millis(6_500);
    while Instant::now() < listen_until {
        match tokio::time::timeout(Duration::from_millis(200), browser.frames.recv()).await {
            Ok(Some((payload, _))) => law.decode_into(&payload, &mut heard),
            Ok(None) => panic!("the browser stopped"),
            Err(_) => {}
        }
    }
    let file = phrase();
    let (got, want) = (active_frames(&heard), active_frames(file));
    // As long as the phrase: its speech frames, give or take 15 % (the start may be cut by
    // the connection's first moments).
    let (g, w) = (got.len() as f64, want.len() as f64);
    assert!(
        (g - w).abs() <= 0.15 * w,
        "{g} speech frames heard, the phrase has {w}"
    );
    // As loud as the phrase, within 3 dB.
    let level = |fs: &[&[i16]]| {
        let all: Vec<i16> = fs.iter().flat_map(|f| f.iter().copied()).collect();
        rms(&all)
    };
    let (lg, lw) = (level(&got), level(&want));
    assert!(
        lg > lw / 1.42 && lg < lw * 1.42,
        "heard at RMS {lg:.0}, the phrase is {lw:.0}"
    );
    // Speech is in the telephone band, far above the silence before it (40 dB).
    let first_word = heard
        .chunks_exact(FRAME)
        .position(|f| rms(f) > ACTIVE_RMS)
        .expect("speech heard");
    assert!(first_word >= 10, "speech came before the unit's silence");
    let silence = &heard[FRAME..(first_word - 2) * FRAME];
    let speech: Vec<i16> = got.iter().flat_map(|f| f.iter().copied()).collect();
    let per_sample = |e: f64, n: usize| e / n as f64;
    let (es, eq) = (
        per_sample(band_energy(&speech), speech.len()),
        per_sample(band_energy(silence), silence.len()).max(1e-9),
    );
    assert!(
        es > 1e4 * eq,
        "band energy {es:.3e} against silence {eq:.3e}"
    );
    // Not a tone: the strongest frequency moves with the voice (many of them over the phrase),
    // and no one of them holds most of the speech.
    let doms: Vec<u32> = speech.chunks_exact(2 * FRAME).map(dominant).collect();
    let mut distinct = doms.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 8, "dominant frequencies {distinct:?}");
    let most = distinct
        .iter()
        .map(|d| doms.iter().filter(|x| *x == d).count())
        .max()
        .unwrap();
    assert!(
        most * 2 < doms.len(),
        "{most} of {} windows at one frequency",
        doms.len()
    );

    // The operator hangs up; the unit sees the BYE and ends.
    let r = op
        .send("POST", &format!("/api/voice/{conv}/hangup"), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let report = tokio::time::timeout(PATIENCE, unit)
        .await
        .expect("the unit ends after vakt's BYE")
        .unwrap()
        .expect("the unit placed its call");
    talking.abort();
    assert_eq!(report.end, CallEnd::ArcHungUp, "{report:?}");
    assert_eq!(report.law, Some(Law::Alaw), "{report:?}");
    assert_eq!(report.phrases, 1, "{report:?}");
    // The unit heard the operator (the browser sent for ~7 s at 50 frames/s).
    assert!(report.frames_heard > 150, "{report:?}");
    assert!(report.frames_sent > 300, "{report:?}");
    let line = line_on(&mut op, call).await;
    assert_eq!(line["operator"], common::ADMIN.0, "{line}");
    assert_eq!(line["ended_by"], "operator", "{line}");
    assert!(line["recording"].is_string(), "{line}");
    stop.cancel();
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_home_nobody_answers_gives_up_and_its_call_is_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, mut op) = server(dir.path()).await;
    let stop = CancellationToken::new();
    let unit = home(
        &srv,
        UnitCallOptions {
            ring_for: Duration::from_secs(2),
            ..UnitCallOptions::default()
        },
        &stop,
    );
    let (call, _) = take_the_call_and_see_it_ring(&mut op).await;
    let report = tokio::time::timeout(PATIENCE, unit)
        .await
        .expect("the unit gives up")
        .unwrap()
        .expect("the unit placed its call");
    assert_eq!(report.end, CallEnd::NotAnswered, "{report:?}");
    assert_eq!((report.law, report.frames_sent), (None, 0), "{report:?}");
    let line = line_on(&mut op, call).await;
    assert_eq!(line["ended_by"], "caller", "{line}");
    assert!(line["operator"].is_null(), "{line}");
    stop.cancel();
    srv.stop().await.unwrap();
}
