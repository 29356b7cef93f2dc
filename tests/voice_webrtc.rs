//! The operator's leg (`vakt::voice::webrtc`) against a browser played by a str0m peer (full
//! ICE, the offerer, on 127.0.0.1) over real UDP: offer and answer, ICE, DTLS-SRTP, G.711
//! frames both ways compared byte for byte, mute, the three ways a leg ends, the port range
//! as the cap, a flood of garbage on the leg's port, and an offer without G.711.
//!
//! `latency_through_the_leg_is_measured` prints the leg's added latency (run it with
//! `-- --nocapture`); it asserts only that every frame came through intact.
//!
//! `chromium_talks_through_the_leg` is the same leg with a real browser: headless Chromium
//! (over chromedriver) offers its audio, a 1,000 Hz tone from WebAudio, takes the answer and
//! connects; the leg hears the tone (Goertzel on the decoded A-law), Chromium receives and
//! decodes the leg's 440 Hz (`getStats`), and closing the peer connection ends the leg.
//! Without chromedriver it says so and passes, unless `VAKT_REQUIRE_BROWSER` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::chromium::run_js;
use common::webrtc::{Browser, Ctl, LOCALHOST, PATIENCE, Running, options, until};
use std::net::{IpAddr, Ipv4Addr};
use tokio::net::UdpSocket;
use vakt::voice::webrtc::{
    BrowserLeg, G711, LegEnd, LegHandle, SendError, WebRtc, WebRtcError, WebRtcOptions,
};

/// Frame `i` of a test: 160 bytes (20 ms of G.711) that say which frame they are.
fn frame(i: u32) -> Vec<u8> {
    let mut f: Vec<u8> = (0..160u32).map(|k| (k * 7 + i * 13) as u8).collect();
    f[..4].copy_from_slice(&i.to_be_bytes());
    f
}

/// Which test frame a payload is, if it is one, intact.
fn which(payload: &[u8]) -> Option<u32> {
    let i = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
    (payload == frame(i).as_slice()).then_some(i)
}

/// A browser offering `codecs`, answered by `webrtc` preferring `prefer`, both connected.
async fn connect(webrtc: &WebRtc, codecs: &[&str], prefer: G711) -> (BrowserLeg, Running) {
    let (browser, offer) = Browser::offer(codecs).await;
    let answered = webrtc.answer(&offer, prefer).unwrap();
    let running = browser.accept(&answered.sdp);
    let leg = answered.leg;
    let handle = leg.handle();
    until("the leg to connect", || handle.stats().connected).await;
    let connected = running.connected.clone();
    until("the browser to connect", || *connected.borrow()).await;
    (leg, running)
}

/// The next `n` frames from the leg, or fewer if the leg ends or [`PATIENCE`] runs out.
async fn leg_frames(leg: &mut BrowserLeg, n: usize) -> Vec<vakt::voice::webrtc::BrowserFrame> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, leg.recv()).await {
            Ok(Some(f)) => got.push(f),
            Ok(None) | Err(_) => break,
        }
    }
    got
}

/// The next `n` frames at the browser, or fewer if [`PATIENCE`] runs out.
async fn browser_frames(b: &mut Running, n: usize) -> Vec<(Vec<u8>, Instant)> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, b.frames.recv()).await {
            Ok(Some(f)) => got.push(f),
            Ok(None) | Err(_) => break,
        }
    }
    got
}

/// Sends frames `range` from the browser, one every `every`.
async fn browser_sends(b: &Running, range: std::ops::Range<u32>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    for i in range {
        tick.tick().await;
        b.send.send(frame(i)).unwrap();
    }
}

#[tokio::test]
async fn frames_flow_both_ways_intact_in_the_other_legs_law() {
    let webrtc = WebRtc::new(options(20)).unwrap();
    let (mut leg, mut browser) = connect(&webrtc, &["opus", "pcmu", "pcma"], G711::Pcma).await;
    assert_eq!(leg.codec(), G711::Pcma);
    assert_eq!(*browser.pt.borrow(), Some(8), "the browser sends PCMA");
    let handle = leg.handle();

    const N: u32 = 250;
    let sender = browser.send.clone();
    let up = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(4));
        for i in 0..N {
            tick.tick().await;
            sender.send(frame(i)).unwrap();
        }
    });
    let down_handle = handle.clone();
    let down = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(4));
        for i in 0..N {
            tick.tick().await;
            down_handle.send(frame(1_000_000 + i)).unwrap();
        }
    });
    let from_browser = leg_frames(&mut leg, N as usize).await;
    let at_browser = browser_frames(&mut browser, N as usize).await;
    up.await.unwrap();
    down.await.unwrap();

    assert_eq!(from_browser.len(), N as usize);
    for (i, f) in from_browser.iter().enumerate() {
        assert_eq!(
            which(&f.payload),
            Some(i as u32),
            "frame {i} from the browser"
        );
        assert!(!f.muted);
    }
    for pair in from_browser.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].timestamp, pair[0].timestamp + 160);
    }
    assert_eq!(at_browser.len(), N as usize);
    for (i, (payload, _)) in at_browser.iter().enumerate() {
        assert_eq!(
            which(payload),
            Some(1_000_000 + i as u32),
            "frame {i} to the browser"
        );
    }
    let stats = handle.stats();
    assert_eq!(stats.packets_in, u64::from(N));
    assert_eq!(stats.packets_out, u64::from(N));
    assert_eq!(stats.lost_in, 0);
    assert_eq!((stats.garbage, stats.foreign, stats.dropped_in), (0, 0, 0));
    assert_eq!(handle.end_reason(), None);
}

#[tokio::test]
async fn muted_the_operator_is_silence_with_the_same_timing() {
    let webrtc = WebRtc::new(options(20)).unwrap();
    let (mut leg, browser) = connect(&webrtc, &["pcmu", "pcma"], G711::Pcmu).await;
    let handle = leg.handle();
    handle.set_muted(true);
    browser_sends(&browser, 0..20, Duration::from_millis(2)).await;
    let muted = leg_frames(&mut leg, 20).await;
    handle.set_muted(false);
    browser_sends(&browser, 20..40, Duration::from_millis(2)).await;
    let spoken = leg_frames(&mut leg, 20).await;

    assert_eq!(muted.len(), 20);
    for f in &muted {
        assert!(f.muted);
        assert_eq!(f.payload.len(), 160);
        assert!(f.payload.iter().all(|&b| b == G711::Pcmu.silence()));
    }
    assert_eq!(muted[19].timestamp, muted[0].timestamp + 19 * 160);
    assert_eq!(spoken.len(), 20);
    for (k, f) in spoken.iter().enumerate() {
        assert!(!f.muted);
        assert_eq!(which(&f.payload), Some(20 + k as u32));
    }
    assert_eq!(spoken[0].seq, muted[19].seq + 1);
}

#[tokio::test]
async fn the_browser_closing_ends_the_leg_and_the_range_is_the_cap() {
    let webrtc = WebRtc::new(options(1)).unwrap();
    let (mut leg, browser) = connect(&webrtc, &["opus", "pcmu", "pcma"], G711::Pcmu).await;
    let port = leg.local_addr().port();
    let handle = leg.handle();

    // The one port is taken: another browser is refused, typed, and holds nothing.
    let (_, offer) = Browser::offer(&["pcmu"]).await;
    match webrtc.answer(&offer, G711::Pcmu) {
        Err(WebRtcError::PortsExhausted { first, last }) => assert_eq!((first, last), (port, port)),
        other => panic!("expected PortsExhausted, got {other:?}"),
    }

    browser.ctl.send(Ctl::Close).unwrap();
    let end = tokio::time::timeout(PATIENCE, handle.ended())
        .await
        .unwrap();
    assert_eq!(end, LegEnd::Closed);
    assert!(
        tokio::time::timeout(PATIENCE, leg.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(handle.send(frame(0)), Err(SendError::Ended));
    until("the port to come back", || webrtc.legs() == 0).await;

    // The port is free again: the next browser gets it.
    let (again, _b) = connect(&webrtc, &["pcma"], G711::Pcmu).await;
    assert_eq!(again.local_addr().port(), port);
    assert_eq!(again.codec(), G711::Pcma);
}

#[tokio::test]
async fn a_browser_gone_silent_ends_the_leg() {
    let webrtc = WebRtc::new(WebRtcOptions {
        idle_timeout_secs: 1,
        ..options(20)
    })
    .unwrap();
    let (leg, browser) = connect(&webrtc, &["pcmu"], G711::Pcmu).await;
    let handle = leg.handle();
    browser.ctl.send(Ctl::Vanish).unwrap();
    let end = tokio::time::timeout(PATIENCE, handle.ended())
        .await
        .unwrap();
    assert_eq!(end, LegEnd::Idle);
    until("the port to come back", || webrtc.legs() == 0).await;
}

#[tokio::test]
async fn vakt_ending_the_leg_tells_the_browser() {
    let webrtc = WebRtc::new(options(20)).unwrap();
    let (leg, browser) = connect(&webrtc, &["pcmu"], G711::Pcmu).await;
    let handle = leg.handle();
    handle.end();
    let end = tokio::time::timeout(PATIENCE, handle.ended())
        .await
        .unwrap();
    assert_eq!(end, LegEnd::Ended);
    let closed = browser.closed.clone();
    until("the browser to see the close", || *closed.borrow()).await;
    until("the port to come back", || webrtc.legs() == 0).await;

    // Dropping a leg ends it the same way.
    let (leg, browser) = connect(&webrtc, &["pcmu"], G711::Pcmu).await;
    let handle = leg.handle();
    drop(leg);
    let end = tokio::time::timeout(PATIENCE, handle.ended())
        .await
        .unwrap();
    assert_eq!(end, LegEnd::Ended);
    let closed = browser.closed.clone();
    until("the browser to see the close", || *closed.borrow()).await;
}

#[tokio::test]
async fn the_public_address_is_a_candidate_and_serves_behind_an_unspecified_bind() {
    // Bound to 127.0.0.1 with a public address: both are candidates.
    let webrtc = WebRtc::new(WebRtcOptions {
        public_addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
        ..options(20)
    })
    .unwrap();
    let (_b, offer) = Browser::offer(&["pcmu"]).await;
    let answered = webrtc.answer(&offer, G711::Pcmu).unwrap();
    let port = answered.leg.local_addr().port();
    let candidates: Vec<&str> = answered
        .sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert_eq!(candidates.len(), 2, "{}", answered.sdp);
    assert!(
        candidates
            .iter()
            .any(|c| c.contains(&format!("127.0.0.1 {port} typ host")))
    );
    assert!(
        candidates
            .iter()
            .any(|c| c.contains(&format!("192.0.2.10 {port} typ host")))
    );
    drop(answered);

    // Bound to every address (0.0.0.0) behind the public one (here 127.0.0.1, which the
    // browser reaches): the public address is the one candidate, and the browser connects.
    let webrtc = WebRtc::new(WebRtcOptions {
        bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        public_addr: Some(LOCALHOST),
        ..options(20)
    })
    .unwrap();
    let (browser, offer) = Browser::offer(&["pcmu"]).await;
    let answered = webrtc.answer(&offer, G711::Pcmu).unwrap();
    let candidates = answered
        .sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .count();
    assert_eq!(candidates, 1, "{}", answered.sdp);
    assert!(!answered.sdp.contains("0.0.0.0 "), "{}", answered.sdp);
    let running = browser.accept(&answered.sdp);
    let mut leg = answered.leg;
    let handle = leg.handle();
    until("the leg to connect", || handle.stats().connected).await;
    let connected = running.connected.clone();
    until("the browser to connect", || *connected.borrow()).await;
    let (_, got) = tokio::join!(
        browser_sends(&running, 0..10, Duration::from_millis(5)),
        leg_frames(&mut leg, 10)
    );
    let indices: Vec<u32> = got.iter().map(|f| which(&f.payload).unwrap()).collect();
    assert_eq!(indices, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_browser_that_never_connects_times_out() {
    let webrtc = WebRtc::new(WebRtcOptions {
        connect_timeout_secs: 1,
        ..options(20)
    })
    .unwrap();
    let (_browser, offer) = Browser::offer(&["pcmu"]).await;
    let answered = webrtc.answer(&offer, G711::Pcmu).unwrap();
    let handle = answered.leg.handle();
    let end = tokio::time::timeout(PATIENCE, handle.ended())
        .await
        .unwrap();
    assert_eq!(end, LegEnd::ConnectTimeout);
    until("the port to come back", || webrtc.legs() == 0).await;
}

#[tokio::test]
async fn an_offer_without_g711_is_refused_and_holds_no_port() {
    let webrtc = WebRtc::new(options(20)).unwrap();
    let (_browser, offer) = Browser::offer(&["opus", "g722"]).await;
    assert!(matches!(
        webrtc.answer(&offer, G711::Pcmu),
        Err(WebRtcError::NoG711)
    ));
    assert!(matches!(
        webrtc.answer("not sdp", G711::Pcmu),
        Err(WebRtcError::BadOffer(_))
    ));
    assert_eq!(webrtc.legs(), 0);
}

/// Datagram `k` of the flood: garbage of every shape the leg sorts (not a known kind, STUN
/// with no valid integrity, DTLS records, RTP and RTCP with G.711 payload types), none from
/// the browser's address.
fn junk(k: u32) -> Vec<u8> {
    let mut d = vec![0x5A; 20 + (k % 200) as usize];
    match k % 6 {
        0 => d[0] = 0x02 + (k % 17) as u8, // nothing
        1 => {
            // A STUN binding request header with a cookie and no valid integrity.
            let body = (d.len() - 20) as u8 & !3;
            d[..4].copy_from_slice(&[0x00, 0x01, 0x00, body]);
            d[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        }
        2 => d[0] = 22, // a DTLS handshake record
        3 => {
            d[0] = 0x80; // RTP, PCMU
            d[1] = 0x00;
        }
        4 => {
            d[0] = 0x80; // RTP, PCMA, marker
            d[1] = 0x88;
        }
        _ => {
            d[0] = 0x81; // RTCP receiver report
            d[1] = 201;
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_on_the_port_does_not_disturb_the_leg() {
    let webrtc = WebRtc::new(options(20)).unwrap();
    let (mut leg, browser) = connect(&webrtc, &["opus", "pcmu", "pcma"], G711::Pcmu).await;
    let handle = leg.handle();
    let target = leg.local_addr();

    const FLOOD: u32 = 20_000;
    let flood = tokio::spawn(async move {
        let s = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        for k in 0..FLOOD {
            s.send_to(&junk(k), target).await.unwrap();
            if k % 500 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    // Frames during the flood may be lost in the socket's buffer; none may be changed.
    let during = tokio::spawn({
        let sender = browser.send.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            for i in 0..500 {
                tick.tick().await;
                sender.send(frame(i)).unwrap();
            }
        }
    });
    let mut seen = Vec::new();
    let reader = async {
        while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(500), leg.recv()).await {
            seen.push(f);
        }
    };
    let (_, f, d) = tokio::join!(reader, flood, during);
    f.unwrap();
    d.unwrap();
    for f in &seen {
        assert!(
            which(&f.payload).is_some_and(|i| i < 500),
            "a frame not sent: {f:?}"
        );
    }

    // After the flood every frame comes through.
    let (_, after) = tokio::join!(
        browser_sends(&browser, 500..600, Duration::from_millis(2)),
        leg_frames(&mut leg, 100)
    );
    let indices: Vec<u32> = after.iter().map(|f| which(&f.payload).unwrap()).collect();
    assert_eq!(indices, (500..600).collect::<Vec<_>>());

    let stats = handle.stats();
    assert!(stats.connected);
    assert_eq!(handle.end_reason(), None);
    assert!(stats.garbage > 0 && stats.foreign > 0, "{stats:?}");
    assert!(
        stats.garbage + stats.foreign <= u64::from(FLOOD),
        "{stats:?}"
    );
    println!(
        "flood of {FLOOD}: {} garbage, {} foreign counted; {} of 500 frames during it delivered",
        stats.garbage,
        stats.foreign,
        seen.len()
    );
}

/// The `q` quantile of `v` (sorted here).
fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_through_the_leg_is_measured() {
    let webrtc = WebRtc::new(options(20)).unwrap();
    let (mut leg, mut browser) = connect(&webrtc, &["opus", "pcmu", "pcma"], G711::Pcma).await;
    let handle: LegHandle = leg.handle();

    const N: u32 = 3000;
    // The voice core's part, played here: each frame from the browser is sent back at once.
    let sent_at: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    let echo = tokio::spawn({
        let sent_at = Arc::clone(&sent_at);
        async move {
            let mut ingress = Vec::with_capacity(N as usize);
            while let Ok(Some(f)) = tokio::time::timeout(PATIENCE, leg.recv()).await {
                let now = Instant::now();
                ingress.push(now - f.received);
                let i = which(&f.payload).expect("an intact frame");
                sent_at.lock().unwrap().insert(i, Instant::now());
                // A leg behind (a loaded machine) refuses rather than queue: try again.
                while let Err(e) = handle.send(f.payload.clone()) {
                    assert_eq!(e, SendError::Full);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if i + 1 == N {
                    break;
                }
            }
            (ingress, leg)
        }
    });
    browser_sends(&browser, 0..N, Duration::from_millis(1)).await;
    let back = browser_frames(&mut browser, N as usize).await;
    let (mut ingress, _leg) = echo.await.unwrap();

    assert_eq!(back.len(), N as usize, "every frame came back");
    let sent_at = sent_at.lock().unwrap();
    let mut egress = Vec::with_capacity(N as usize);
    for (k, (payload, read_at)) in back.iter().enumerate() {
        let i = which(payload).expect("an intact frame");
        assert_eq!(i, k as u32, "in order");
        egress.push(*read_at - sent_at[&i]);
    }
    assert_eq!(ingress.len(), N as usize);
    let (i50, i99, imax) = (
        quantile(&mut ingress, 0.5),
        quantile(&mut ingress, 0.99),
        quantile(&mut ingress, 1.0),
    );
    let (e50, e99, emax) = (
        quantile(&mut egress, 0.5),
        quantile(&mut egress, 0.99),
        quantile(&mut egress, 1.0),
    );
    println!(
        "leg latency over {N} frames (1 ms apart), debug build unless --release:\n\
         in  (datagram read -> frame to the voice core): p50 {i50:?} p99 {i99:?} max {imax:?}\n\
         out (send() -> datagram read by the browser):   p50 {e50:?} p99 {e99:?} max {emax:?}"
    );
}

// ---- A real browser ----

/// G.711 A-law to linear (ITU-T G.711), for the test's own ears.
fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i16::from(a & 0x0F);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    if a & 0x80 != 0 { magnitude } else { -magnitude }
}

/// Linear to G.711 A-law, for the tone the test sends.
fn linear_to_alaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, sample as i32)
    } else {
        (0x00u8, -(sample as i32) - 1)
    };
    let magnitude = magnitude.min(0x7FFF) >> 3;
    let (exponent, mantissa) = if magnitude < 32 {
        (0u8, (magnitude >> 1) as u8)
    } else {
        let e = (31 - (magnitude as u32).leading_zeros()) as u8 - 4;
        (e, ((magnitude >> e) & 0x0F) as u8)
    };
    (sign | (exponent << 4) | mantissa) ^ 0x55
}

/// The power of `freq` in `samples` (8 kHz), by Goertzel's algorithm.
fn goertzel(samples: &[f64], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Frame `i` (20 ms) of a 440 Hz tone in A-law.
fn tone_440(i: u32) -> Vec<u8> {
    (0..160u32)
        .map(|k| {
            let t = f64::from(i * 160 + k) / 8000.0;
            linear_to_alaw((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16)
        })
        .collect()
}

#[test]
fn the_tests_a_law_codec_round_trips() {
    for s in [-32768i16, -1000, -33, -1, 0, 1, 33, 1000, 32767] {
        let back = alaw_to_linear(linear_to_alaw(s));
        let step = (i32::from(s).abs() / 16).max(16);
        assert!(
            (i32::from(back) - i32::from(s)).abs() <= step,
            "{s} -> {back}"
        );
    }
    for a in 0..=255u8 {
        assert_eq!(linear_to_alaw(alaw_to_linear(a)), a, "{a:#04x}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_talks_through_the_leg() {
    let args = [
        "--autoplay-policy=no-user-gesture-required",
        // The leg listens on 127.0.0.1 in this test.
        "--allow-loopback-in-peer-connection",
    ]
    .map(String::from);
    let Some((_driver, c)) = common::chromium::launch(&args).await else {
        return;
    };
    let webrtc = WebRtc::new(options(20)).unwrap();
    let offer = run_js(
        &c,
        "const ctx = new AudioContext(); await ctx.resume();
         const osc = ctx.createOscillator(); osc.frequency.value = 1000;
         const dest = ctx.createMediaStreamDestination(); osc.connect(dest); osc.start();
         const pc = new RTCPeerConnection(); window.pc = pc; window.ctx = ctx;
         pc.addTrack(dest.stream.getAudioTracks()[0], dest.stream);
         // What the leg sends: played (Chromium decodes remote audio only for a sink) and
         // analysed.
         pc.ontrack = e => {
           const stream = new MediaStream([e.track]);
           const audio = new Audio(); audio.srcObject = stream; audio.play();
           const analyser = ctx.createAnalyser(); analyser.fftSize = 8192;
           ctx.createMediaStreamSource(stream).connect(analyser);
           window.remote = {audio, analyser};
         };
         const offer = await pc.createOffer(); await pc.setLocalDescription(offer);
         return offer.sdp;",
        serde_json::Value::Null,
    )
    .await;
    let offer = offer.as_str().expect("an SDP offer").to_string();
    assert!(offer.contains("opus") && offer.contains("PCMA"), "{offer}");

    let answered = webrtc.answer(&offer, G711::Pcma).unwrap();
    let mut leg = answered.leg;
    let handle = leg.handle();
    assert_eq!(leg.codec(), G711::Pcma);
    run_js(
        &c,
        "await pc.setRemoteDescription({type: 'answer', sdp: arg}); return 'ok';",
        serde_json::json!(answered.sdp),
    )
    .await;
    until("the leg to connect", || handle.stats().connected).await;

    // The operator's 1,000 Hz, as the leg hears it.
    let heard = leg_frames(&mut leg, 100).await;
    assert_eq!(heard.len(), 100, "two seconds of the browser's audio");
    assert!(heard.iter().all(|f| f.payload.len() == 160));
    let samples: Vec<f64> = heard[50..]
        .iter()
        .flat_map(|f| f.payload.iter().map(|&a| f64::from(alaw_to_linear(a))))
        .collect();
    let tone = goertzel(&samples, 1000.0);
    for other in [440.0, 697.0, 1500.0, 2000.0] {
        assert!(
            tone > 100.0 * goertzel(&samples, other),
            "1,000 Hz against {other} Hz"
        );
    }

    // The person's 440 Hz, as Chromium receives, decodes and hears it.
    let sender = handle.clone();
    let person = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..150 {
            tick.tick().await;
            sender.send(tone_440(i)).unwrap();
        }
    });
    let stats = run_js(
        &c,
        "await new Promise(r => setTimeout(r, 2000));
         const out = {};
         const bins = new Float32Array(remote.analyser.frequencyBinCount);
         remote.analyser.getFloatFrequencyData(bins);
         let peak = 0;
         for (let i = 1; i < bins.length; i++) { if (bins[i] > bins[peak]) peak = i; }
         out.peak_hz = peak * ctx.sampleRate / remote.analyser.fftSize;
         (await pc.getStats()).forEach(s => {
           if (s.type === 'inbound-rtp' && s.kind === 'audio') {
             out.packets = s.packetsReceived; out.energy = s.totalAudioEnergy; out.codec = s.codecId;
           }
         });
         const stats = await pc.getStats();
         out.mime = out.codec && stats.get(out.codec) ? stats.get(out.codec).mimeType : null;
         out.state = pc.connectionState;
         return out;",
        serde_json::Value::Null,
    )
    .await;
    person.await.unwrap();
    assert_eq!(stats["state"], "connected", "{stats}");
    let peak = stats["peak_hz"].as_f64().unwrap_or(0.0);
    assert!(
        (peak - 440.0).abs() < 15.0,
        "the browser's loudest frequency: {stats}"
    );
    assert_eq!(stats["mime"], "audio/PCMA", "{stats}");
    assert!(stats["packets"].as_u64().unwrap_or(0) >= 90, "{stats}");
    assert!(stats["energy"].as_f64().unwrap_or(0.0) > 0.0, "{stats}");

    // Hanging up in the browser ends the leg.
    run_js(&c, "pc.close(); return 'ok';", serde_json::Value::Null).await;
    let end = tokio::time::timeout(PATIENCE, handle.ended())
        .await
        .unwrap();
    println!(
        "chromium: {stats}; the leg ended: {end:?}; {:?}",
        handle.stats()
    );
    assert_eq!(end, LegEnd::Closed);
    c.close().await.unwrap();
}

/// The whole path of a call answered in the browser, through the real server: SIPp is the
/// alarm unit (Digest, ringing, the answer, ACK, its BYE), a str0m peer is the operator's
/// browser answering through the API; the Call is taken by the operator, the unit got the
/// `200 OK`, the conversation's line names the operator, its talk time and its recording,
/// and the recording holds the browser's audio on the operator's channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_answers_a_units_call_from_the_browser_and_it_is_recorded() {
    let Some(sipp) = common::sipp::sipp_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let csv = format!(
        "{}\n678,,,,,anna,3600,Telia,Norr,pendant,luc678,pw-678\n",
        vakt::registers::devices::CSV_HEADER
    );
    vakt::cli::import_devices(common::store_at(dir.path()), csv.as_bytes()).unwrap();
    common::add_user(
        dir.path(),
        common::ADMIN.0,
        vakt::model::Role::Admin,
        common::ADMIN.1,
    );
    common::add_user(
        dir.path(),
        "olle",
        vakt::model::Role::Operator,
        "olle-password-1",
    );
    let mut cfg = common::test_config(dir.path());
    cfg.voice.webrtc = options(8);
    let srv = common::start_with(cfg).await;
    let mut op = common::Client::login(srv.http.unwrap(), common::ADMIN.0, common::ADMIN.1).await;
    let traces = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["-s", "arc", "-au", "luc678", "-ap", "pw-678", "-p", "0"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([srv.scaip_udp.unwrap().to_string()])
        .collect();
    let unit = common::sipp::Sipp::start(&sipp, traces.path(), "unit_call", &args);

    // Ringing on Anna's Call.
    let deadline = Instant::now() + PATIENCE;
    let (conv, call) = loop {
        let v = op.get("/api/voice").await.json();
        if let Some(c) = v.as_array().unwrap().iter().find(|c| !c["call"].is_null()) {
            break (c["id"].as_u64().unwrap(), c["call"].as_u64().unwrap());
        }
        assert!(Instant::now() < deadline, "no ringing call: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The operator answers from the browser.
    let running = common::webrtc::answer(&mut op, conv, &["opus", "pcmu", "pcma"]).await;
    let connected = running.connected.clone();
    until("the browser to connect", || *connected.borrow()).await;
    let talking = tokio::spawn({
        let send = running.send.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for i in 0..20 {
                tick.tick().await;
                if send.send(frame(i)).is_err() {
                    break;
                }
            }
        }
    });
    // The unit got its 200 OK, talked, and hung up.
    unit.succeeds().await;
    talking.await.unwrap();

    let deadline = Instant::now() + PATIENCE;
    let (full, line) = loop {
        let c = op.get(&format!("/api/calls/{call}")).await.json();
        if let Some(l) = c["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "conversation")
            .cloned()
        {
            break (c, l);
        }
        assert!(Instant::now() < deadline, "no line: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(full["owner"], common::ADMIN.0, "{full}");
    assert_eq!(line["operator"], common::ADMIN.0, "{line}");
    assert_eq!(line["ended_by"], "caller", "{line}");
    assert!(line["talk_secs"].is_u64(), "{line}");
    let http = srv.http.unwrap();
    assert!(
        common::metric(
            http,
            "vakt_voice_calls_answered_total{direction=\"inbound\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        common::metric(http, "vakt_voice_ring_seconds_count{direction=\"inbound\"}").await >= 1.0
    );
    let name = line["recording"].as_str().expect("a recording").to_owned();
    let wav = std::fs::read(dir.path().join("recordings").join(&name)).unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert!(wav.len() > 44, "an empty recording");
    // A supervisor plays it (audited); an operator may not.
    let got = op
        .get(&format!("/api/calls/{call}/recordings/{conv}"))
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let audit = op.get("/api/audit").await.json().to_string();
    assert!(audit.contains("recording.play"), "{audit}");
    assert!(audit.contains("call.voice_answer"), "{audit}");
    let mut olle = common::Client::login(srv.http.unwrap(), "olle", "olle-password-1").await;
    let refused = olle
        .get(&format!("/api/calls/{call}/recordings/{conv}?download=1"))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    srv.stop().await.unwrap();
}
