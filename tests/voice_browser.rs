//! A voice call answered in the real console, with real audio both ways, through the whole
//! server: headless Chromium with a fake microphone playing a 1,000 Hz tone (a WAV the test
//! writes) runs the console; the alarm unit is played here in Rust (vakt's own SIP endpoint as
//! the user agent, Digest with the registry's credentials, an RTP socket sending 440 Hz as
//! G.711 every 20 ms and keeping every frame it receives).
//!
//! The operator logs in, opens the ringing Call and presses the console's own Answer button,
//! so the page's answering code runs (getUserMedia, RTCPeerConnection, POST
//! /api/voice/{id}/answer). Asserted by frequency (Goertzel, `vakt::voice::tone`), not by
//! packet counts: the unit hears 1,000 Hz; the browser hears 440 Hz (an AnalyserNode on the
//! page's own remote audio, with getStats' audio level and codec); the recording, fetched
//! by a supervisor through the API, holds 440 Hz on the person's channel and 1,000 Hz on the
//! operator's. Then the operator hangs up with the key X: the BYE reaches the unit and the
//! conversation's line appears on the Call's timeline in the page.
//!
//! Needs Debian's `chromium` and `chromium-driver`: without chromedriver the test says so and
//! passes, unless `VAKT_REQUIRE_BROWSER` is set. Screenshots go to `VAKT_ARTIFACTS`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::{Duration, Instant};

use common::chromium::{launch, run_js, screenshot};
use common::unit::Unit;
use common::wait_for;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client as Browser, Locator};
use vakt::model::Role;
use vakt::transport::sip::End;

const OPERATOR: (&str, &str) = ("olle", "olle-password-1");
/// The unit's registry entry: account 678, SIP user and password.
const UNIT: (&str, &str) = ("luc678", "pw-678");
/// The person's tone (sent by the unit) and the operator's (the fake microphone).
const PERSON_HZ: f64 = 440.0;
const OPERATOR_HZ: f64 = 1_000.0;
/// The longest any one wait may take: generous, for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A mono 16-bit WAV of `secs` seconds of `hz` at `rate` Hz, at half of full scale.
fn tone_wav(rate: u32, hz: f64, secs: u32) -> Vec<u8> {
    let n = rate * secs;
    let data = n * 2;
    let mut w = Vec::with_capacity(44 + data as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let s = (16_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

/// True once the element `css` is on the page and shown.
async fn shown(c: &Browser, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(el) => el.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Logs in through the form and waits for the live feed.
async fn login(c: &Browser, (name, password): (&str, &str)) {
    let user = c
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#login-username"))
        .await
        .expect("login form");
    user.send_keys(name).await.unwrap();
    let pw = c.find(Locator::Css("#login-password")).await.unwrap();
    pw.send_keys(password).await.unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the live feed", PATIENCE, || async {
        let el = c.find(Locator::Css("#connection-status")).await.ok()?;
        (el.attr("data-state").await.ok()?? == "open").then_some(())
    })
    .await;
}

/// What the page hears: the loudest frequency of its own remote audio (an AnalyserNode on
/// the `<audio>` element the console plays the call in) and its peer connection's figures.
const LISTEN_JS: &str = r#"
    const audio = document.getElementById('voice-audio');
    if (!audio || !audio.srcObject || !S.phone) return { ready: false };
    if (!window.probe || window.probe.stream !== audio.srcObject) {
      const ctx = new AudioContext();
      await ctx.resume();
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 8192;
      analyser.smoothingTimeConstant = 0;
      ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
      window.probe = { ctx, analyser, stream: audio.srcObject };
      await new Promise((r) => setTimeout(r, 500));
    }
    const { ctx, analyser } = window.probe;
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    let peak = 1;
    for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
    const hz = (f) => bins[Math.round(f * analyser.fftSize / ctx.sampleRate)];
    const out = {
      ready: true, context: ctx.state, peak_hz: peak * ctx.sampleRate / analyser.fftSize,
      peak_db: bins[peak], db_440: hz(440), db_1000: hz(1000),
      state: S.phone.pc.connectionState, playing: !audio.paused,
    };
    const stats = await S.phone.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.packets = s.packetsReceived; out.level = s.audioLevel;
        out.energy = s.totalAudioEnergy;
        out.mime = stats.get(s.codecId) ? stats.get(s.codecId).mimeType : null;
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') out.sent = s.packetsSent;
      if (s.type === 'media-source' && s.kind === 'audio') out.mic_level = s.audioLevel;
    });
    return out;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_answers_in_the_console_and_both_hear_each_other() {
    let files = tempfile::tempdir().unwrap();
    let mic = files.path().join("operator-1000hz.wav");
    std::fs::write(&mic, tone_wav(48_000, OPERATOR_HZ, 4)).unwrap();
    let args = [
        "--use-fake-ui-for-media-stream".to_owned(),
        "--use-fake-device-for-media-stream".to_owned(),
        format!("--use-file-for-fake-audio-capture={}", mic.display()),
        // vakt's WebRTC host candidate is 127.0.0.1 here.
        "--allow-loopback-in-peer-connection".to_owned(),
        "--lang=sv-SE".to_owned(),
    ];
    let Some((_driver, c)) = launch(&args).await else {
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let csv = format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,{},{}\n",
        vakt::registers::devices::CSV_HEADER,
        UNIT.0,
        UNIT.1
    );
    vakt::cli::import_devices(common::store_at(dir.path()), csv.as_bytes()).unwrap();
    common::add_user(dir.path(), common::ADMIN.0, Role::Admin, common::ADMIN.1);
    common::add_user(dir.path(), OPERATOR.0, Role::Operator, OPERATOR.1);
    let mut cfg = common::test_config(dir.path());
    cfg.voice.webrtc = common::webrtc::options(8);
    let srv = common::start_with(cfg).await;
    let http = srv.http.unwrap();
    let mut admin = common::Client::login(http, common::ADMIN.0, common::ADMIN.1).await;

    c.goto(&format!("http://{http}/")).await.unwrap();
    login(&c, OPERATOR).await;

    // The unit calls: the Call rings in the queue.
    let mut unit = Unit::call(srv.scaip_udp.unwrap(), UNIT.0, UNIT.1, PERSON_HZ).await;
    let (conv, call) = wait_for("the ringing call in the API", PATIENCE, || {
        let mut admin = admin.clone();
        async move {
            let v = admin.get("/api/voice").await.json();
            let c = v.as_array()?.iter().find(|c| !c["call"].is_null())?.clone();
            Some((c["id"].as_u64()?, c["call"].as_u64()?))
        }
    })
    .await;
    let row = format!("#queue-body tr.call-row[data-call-id=\"{call}\"]");
    wait_for("the ringing mark in the queue", PATIENCE, || async {
        shown(&c, &format!("{row} .tag-voice-ringing"))
            .await
            .then_some(())
    })
    .await;
    c.find(Locator::Css(&row))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The console's own Answer button.
    let answer = format!("#call-voice [data-conversation=\"{conv}\"] .voice-answer");
    wait_for("the Answer button", PATIENCE, || async {
        shown(&c, &answer).await.then_some(())
    })
    .await;
    c.find(Locator::Css(&answer))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    unit.answered(PATIENCE).await;
    let answered = Instant::now();
    let law = unit.law().expect("vakt's answer names a G.711 law");

    // The browser hears the person's 440 Hz.
    let heard = wait_for("440 Hz in the browser", PATIENCE, || async {
        let v = run_js(&c, LISTEN_JS, serde_json::Value::Null).await;
        let peak = v["peak_hz"].as_f64()?;
        ((peak - PERSON_HZ).abs() < 15.0 && v["state"] == "connected").then_some(v)
    })
    .await;
    eprintln!("the browser hears: {heard}");
    assert_eq!(heard["mime"], "audio/PCMA", "G.711 passed through: {heard}");
    assert!(heard["level"].as_f64().unwrap_or(0.0) > 0.01, "{heard}");
    assert!(
        heard["db_440"].as_f64().unwrap() > heard["db_1000"].as_f64().unwrap() + 20.0,
        "440 Hz well above 1,000 Hz at the browser: {heard}"
    );

    // The unit hears the operator's 1,000 Hz: four seconds of it from the moment the page's
    // peer connection carried audio.
    let connected = Instant::now();
    wait_for("four seconds of audio at the unit", PATIENCE, || async {
        let n = unit.samples_since(connected, law).len();
        (n >= 4 * 8_000).then_some(())
    })
    .await;
    let at_unit = unit.samples_since(connected, law);
    let (hit, wrong, sound) = common::tone_blocks(&at_unit, OPERATOR_HZ, PERSON_HZ);
    eprintln!("at the unit: {hit} of {sound} half-seconds 1,000 Hz, {wrong} 440 Hz");
    assert!(
        hit >= 6 && hit == sound && wrong == 0,
        "the unit hears 1,000 Hz: {hit} of {sound} blocks, {wrong} of the person's own tone"
    );
    screenshot(&c, "console-voice-call.png").await;

    // Hang up from the browser (the key X in the Call view): the BYE reaches the unit.
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: 'x' })
        .then(KeyAction::Up { value: 'x' });
    c.perform_actions(keys).await.unwrap();
    let end = unit.ended(PATIENCE).await;
    assert_eq!(end, End::RemoteHangUp, "vakt's BYE at the unit");
    let talked = answered.elapsed();

    // The conversation's line on the Call's timeline, in the page and in the API.
    let text = wait_for(
        "the conversation on the page's timeline",
        PATIENCE,
        || async {
            let el = c
                .find(Locator::Css("#timeline li[data-type=\"conversation\"]"))
                .await
                .ok()?;
            let t = el.text().await.ok()?;
            t.contains("answered").then_some(t)
        },
    )
    .await;
    assert!(text.contains(&format!("by {}", OPERATOR.0)), "{text}");
    assert!(!shown(&c, "#call-voice .voice-line").await, "no call left");
    screenshot(&c, "console-voice-timeline.png").await;
    // The hang-up went through the API (audited as the operator's), and the page shows no
    // error about it.
    let audit = wait_for("the hang-up in the audit log", PATIENCE, || {
        let mut admin = admin.clone();
        async move {
            let a = admin.get("/api/audit").await.json();
            let hit = a.as_array()?.iter().find(|e| {
                e.to_string().contains("call.voice_hangup")
                    && e.to_string().contains(&format!("conversation {conv}"))
            })?;
            Some(hit.clone())
        }
    })
    .await;
    assert!(audit.to_string().contains(OPERATOR.0), "{audit}");
    let error = run_js(
        &c,
        "const m = document.getElementById('message');
         return m.hidden || !m.classList.contains('error') ? null : m.textContent;",
        serde_json::Value::Null,
    )
    .await;
    assert!(error.is_null(), "the page reports: {error}");
    let full = admin.get(&format!("/api/calls/{call}")).await.json();
    let line = full["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "conversation")
        .cloned()
        .unwrap_or_else(|| panic!("a conversation line: {full}"));
    assert_eq!(full["owner"], OPERATOR.0, "answering took the Call: {full}");
    assert_eq!(line["operator"], OPERATOR.0, "{line}");
    assert_eq!(line["ended_by"], "operator", "{line}");
    let talk = line["talk_secs"].as_u64().expect("talk time");
    assert!(
        talk + 2 >= talked.as_secs() && talk <= talked.as_secs() + 2,
        "{line}"
    );

    // The recording, as a supervisor plays it: the person's 440 Hz on channel 1, the
    // operator's 1,000 Hz on channel 2.
    let wav = wait_for("the recording", PATIENCE, || {
        let mut admin = admin.clone();
        async move {
            let a = admin
                .get(&format!("/api/calls/{call}/recordings/{conv}"))
                .await;
            (a.status == 200).then_some(a.bytes)
        }
    })
    .await;
    let rec = vakt::voice::wav::parse(&wav).expect("a WAV");
    assert_eq!((rec.sample_rate, rec.channels), (8_000, 2));
    let secs = rec.duration().as_secs_f64();
    assert!(
        (secs - talked.as_secs_f64()).abs() < 2.0,
        "{secs} s recorded of {talked:?} talked"
    );
    // Every half second that is not silence is the one tone of its channel.
    let (p_hit, p_wrong, p_sound) = common::tone_blocks(&rec.channel(0), PERSON_HZ, OPERATOR_HZ);
    let (o_hit, o_wrong, o_sound) = common::tone_blocks(&rec.channel(1), OPERATOR_HZ, PERSON_HZ);
    eprintln!(
        "recording {secs:.1} s: person {p_hit}/{p_sound} blocks 440 Hz ({p_wrong} 1,000 Hz), \
         operator {o_hit}/{o_sound} blocks 1,000 Hz ({o_wrong} 440 Hz)"
    );
    assert!(
        p_hit >= 8 && p_hit == p_sound && p_wrong == 0,
        "the person's channel is 440 Hz"
    );
    assert!(
        o_hit >= 6 && o_hit == o_sound && o_wrong == 0,
        "the operator's channel is 1,000 Hz"
    );

    c.close().await.unwrap();
    srv.stop().await.unwrap();
}
