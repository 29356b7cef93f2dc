//! The relay between a unit's RTP and the operator's side, through the public API
//! (`vakt::voice::media`), with real UDP sockets on 127.0.0.1: a socket plays the unit, a
//! plain-RTP operator side (`peers::UdpOperator`) and a socket behind it play the operator.
//! Audio is checked by frequency (Goertzel, `voice::tone`), not by packet counts alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "voice_media/peers.rs"]
mod peers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use peers::{Peer, Received, Stream, UdpOperator, dominant, pcm};
use tokio_util::sync::CancellationToken;
use vakt::telemetry::RecordingMetrics;
use vakt::voice::media::{
    DtmfError, EarlyMedia, Media, MediaOptions, Relay, RelayEnd, RelayStats, SipLeg,
};
use vakt::voice::record::{Recorder, RecordingId, RecordingOptions};
use vakt::voice::tone::{self, HOLD_HZ};
use vakt_proto::g711::Law;
use vakt_proto::rtp::TelephoneEvent;
use vakt_proto::sdp::{self, Direction, LocalSession};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The media of one test: its own 100 ports from `first`.
fn media(first: u16, inactivity_secs: u32) -> Media {
    Media::new(MediaOptions {
        bind_addr: LOCALHOST,
        port_min: first,
        port_max: first + 99,
        inactivity_secs,
        relatch_after_ms: 300,
        ..MediaOptions::default()
    })
    .unwrap()
}

/// A unit's offer: its RTP at `at`, A-law first (or μ-law only), telephone-event or not.
fn offer(at: SocketAddr, ulaw: bool, dtmf: bool) -> sdp::Session {
    let formats = match (ulaw, dtmf) {
        (false, true) => "8 0 101",
        (false, false) => "8 0",
        (true, true) => "0 101",
        (true, false) => "0",
    };
    let mut text = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n",
        ip = at.ip(),
        port = at.port()
    );
    if dtmf {
        text.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n");
    }
    sdp::parse(text.as_bytes()).unwrap()
}

/// The unit's leg as the voice core makes it: a port first, the answer with it, the leg.
fn leg(media: &Media, sdp_addr: SocketAddr, ulaw: bool, dtmf: bool) -> SipLeg {
    let port = media.bind().unwrap();
    let local = port.local_media(LOCALHOST);
    assert_eq!(local.port, port.port());
    let mut session = LocalSession::new(local, 7, 1);
    let answer = session
        .answer(&offer(sdp_addr, ulaw, dtmf), Direction::SendRecv)
        .unwrap();
    let answer_text = String::from_utf8(answer.sdp.clone()).unwrap();
    assert!(answer_text.contains(&format!("m=audio {} RTP/AVP", port.port())));
    SipLeg::new(port, answer.negotiated).unwrap()
}

/// A call: the unit's socket, the relay, and an operator side whose far end is a peer.
struct Call {
    media: Media,
    unit: Peer,
    relay: Relay<UdpOperator>,
    operator: Peer,
    /// The operator side's socket (where the operator peer sends).
    op_side: SocketAddr,
    op_ended: Arc<AtomicBool>,
    op_ender: CancellationToken,
}

impl Call {
    /// The unit at its SDP address, A-law with telephone-event, the operator side in
    /// `op_law` attached at once.
    async fn new(first_port: u16, op_law: Law) -> Call {
        let media = media(first_port, 30);
        let unit = Peer::new(10_000).await;
        let relay =
            Relay::start(leg(&media, unit.addr(), false, true), EarlyMedia::Silence).unwrap();
        let operator = Peer::new(10_000).await;
        let side = UdpOperator::new(op_law, operator.addr()).await;
        let (op_side, op_ended, op_ender) = (side.local_addr(), side.ended(), side.ender());
        relay.attach(side).unwrap();
        Call {
            media,
            unit,
            relay,
            operator,
            op_side,
            op_ended,
            op_ender,
        }
    }

    fn relay_addr(&self) -> SocketAddr {
        self.relay.local_addr()
    }
}

/// Waits until `f` holds (checking every 10 ms, at most `limit`).
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(ms(10)).await;
    }
    f()
}

async fn stats_until(relay: &Relay<UdpOperator>, f: impl Fn(&RelayStats) -> bool) -> RelayStats {
    let start = Instant::now();
    loop {
        let s = relay.stats().await;
        if f(&s) || start.elapsed() > Duration::from_secs(5) {
            return s;
        }
        tokio::time::sleep(ms(10)).await;
    }
}

#[tokio::test]
async fn a_440_hz_tone_from_the_unit_reaches_the_operator_and_1000_hz_goes_back() {
    for (first, op_law) in [(48_000, Law::Alaw), (48_100, Law::Ulaw)] {
        let call = Call::new(first, op_law).await;
        let start = Instant::now();
        let unit = call
            .unit
            .play(call.relay_addr(), Stream::pcma(440.0, 0x1111), 60);
        let operator = call.operator.play(
            call.op_side,
            Stream {
                law: op_law,
                pt: op_law.payload_type(),
                ..Stream::pcma(1_000.0, 0x2222)
            },
            60,
        );
        assert_eq!(unit.done().await, 60);
        assert_eq!(operator.done().await, 60);
        assert!(until(ms(1_000), || call.operator.count() >= 60).await);
        // The operator heard 440 Hz in their own law; the unit heard 1,000 Hz in A-law.
        let heard = call.operator.received();
        let to_op = pcm(
            &heard,
            op_law.payload_type(),
            op_law,
            start,
            ms(200)..ms(1_200),
        );
        assert!(to_op.len() >= 8 * 600, "{}", to_op.len());
        assert_eq!(dominant(&to_op), Some(440.0), "{op_law:?}");
        let got = call.unit.received();
        let to_unit = pcm(&got, 8, Law::Alaw, start, ms(200)..ms(1_200));
        assert!(to_unit.len() >= 8 * 600, "{}", to_unit.len());
        assert_eq!(dominant(&to_unit), Some(1_000.0), "{op_law:?}");
        // Every packet of the unit reached the operator, and the figures say so.
        let stats = call.relay.stats().await;
        assert_eq!(stats.unit.packets_in, 60);
        assert_eq!(stats.to_operator, 60);
        assert_eq!(stats.from_operator, 60);
        assert_eq!(stats.unit.latched, Some(call.unit.addr()));
        assert_eq!(stats.unit.lost, 0);
        assert_eq!(stats.latency_to_operator.count, 60);
        assert!(stats.latency_to_operator.p99 >= stats.latency_to_operator.p50);
        assert!(stats.latency_to_unit.count >= 55, "{stats:?}");
        call.relay.end();
        assert_eq!(call.relay.ended().await, RelayEnd::Ended);
        // The operator's side is ended with the relay, and the port pair given back.
        assert!(call.op_ended.load(Ordering::Acquire));
        assert!(until(ms(500), || call.media.legs() == 0).await);
    }
}

#[tokio::test]
async fn the_relay_sends_where_the_unit_sends_from_not_to_its_sdp_address() {
    let media = media(48_200, 30);
    // The SDP names one address (a private one behind NAT); the unit sends from another.
    let sdp_side = Peer::new(10_000).await;
    let unit = Peer::new(10_000).await;
    let relay: Relay<UdpOperator> = Relay::start(
        leg(&media, sdp_side.addr(), false, true),
        EarlyMedia::Silence,
    )
    .unwrap();
    // Before the unit's first packet, the early media goes to the SDP's address.
    assert!(until(ms(1_000), || sdp_side.count() >= 5).await);
    assert_eq!(unit.count(), 0);
    let player = unit.play(relay.local_addr(), Stream::pcma(440.0, 5), 40);
    assert!(until(ms(1_000), || unit.count() >= 5).await);
    // Once latched, nothing more to the SDP address (what was in flight has landed).
    tokio::time::sleep(ms(60)).await;
    let before = sdp_side.count();
    tokio::time::sleep(ms(300)).await;
    assert_eq!(sdp_side.count(), before);
    assert!(unit.received().iter().all(|r| r.from == relay.local_addr()));
    player.done().await;
    let stats = relay.stats().await;
    assert_eq!(stats.unit.latched, Some(unit.addr()));
    assert_eq!(stats.unit.relatches, 0);
    assert_eq!(stats.unit.dropped.stranger, 0);
}

#[tokio::test]
async fn a_strangers_packets_never_reach_the_operator() {
    let call = Call::new(48_300, Law::Alaw).await;
    let stranger = Peer::new(10).await;
    let start = Instant::now();
    let unit = call
        .unit
        .play(call.relay_addr(), Stream::pcma(440.0, 0x1111), 75);
    // The unit's first packet latches; then a stranger talks over it with valid RTP of the
    // negotiated payload type, its own SSRC, at the same pace.
    assert!(until(ms(1_000), || call.operator.count() >= 1).await);
    let intruder = stranger.play(call.relay_addr(), Stream::pcma(1_000.0, 0x6666), 60);
    let sent_by_stranger = intruder.done().await;
    unit.done().await;
    let stats = stats_until(&call.relay, |s| {
        s.unit.dropped.stranger + s.unit.packets_in >= sent_by_stranger + 75
    })
    .await;
    assert_eq!(stats.unit.dropped.stranger, sent_by_stranger);
    assert_eq!(stats.unit.packets_in, 75);
    assert!(until(ms(1_000), || call.operator.count() >= 75).await);
    tokio::time::sleep(ms(100)).await;
    // The operator got the unit's 75 frames and nothing else; all of them 440 Hz.
    let heard = call.operator.received();
    assert_eq!(heard.len(), 75);
    let all = pcm(&heard, 8, Law::Alaw, start, ms(0)..ms(10_000));
    let levels = tone::analyse(&all, 8_000, &[440.0, 1_000.0]);
    assert_eq!(levels.dominant(), Some(440.0));
    assert!(
        levels.levels[1].1 < levels.levels[0].1 / 100.0,
        "{levels:?}"
    );
    // And the relay never sent the stranger anything.
    assert_eq!(stranger.count(), 0);
}

#[tokio::test]
async fn a_new_source_takes_over_only_after_the_unit_fell_silent() {
    let call = Call::new(48_400, Law::Alaw).await;
    let rebound = Peer::new(10_000).await;
    let first = call
        .unit
        .play(call.relay_addr(), Stream::pcma(440.0, 0x1111), 25);
    first.done().await;
    let silent_since = Instant::now();
    // The unit's NAT rebinds: the same unit, a new port and a new SSRC, at once.
    let start = Instant::now();
    let second = rebound.play(call.relay_addr(), Stream::pcma(1_000.0, 0x7777), 50);
    second.done().await;
    let stats = stats_until(&call.relay, |s| {
        s.unit.packets_in + s.unit.dropped.stranger >= 75
    })
    .await;
    assert_eq!(stats.unit.relatches, 1);
    assert_eq!(stats.unit.latched, Some(rebound.addr()));
    // Its packets in the first 300 ms of the unit's silence were dropped, the rest taken.
    let dropped = stats.unit.dropped.stranger;
    assert!((10..=17).contains(&dropped), "{dropped}");
    assert_eq!(stats.unit.packets_in, 25 + 50 - dropped);
    assert!(silent_since.elapsed() >= ms(300));
    // The relay now sends to the new source, and the operator hears it.
    assert!(until(ms(1_000), || rebound.count() >= 10).await);
    let heard = call.operator.received();
    let after = pcm(&heard, 8, Law::Alaw, start, ms(450)..ms(1_000));
    assert_eq!(dominant(&after), Some(1_000.0));
}

#[tokio::test]
async fn the_unit_may_change_its_ssrc_and_sequence() {
    let call = Call::new(48_500, Law::Alaw).await;
    let start = Instant::now();
    call.unit
        .play(call.relay_addr(), Stream::pcma(440.0, 0x1111), 25)
        .done()
        .await;
    // The unit restarts its stream: a new SSRC, sequence and timestamp, from the same port.
    let restarted = Stream {
        seq0: 40_000,
        ts0: 9,
        ..Stream::pcma(1_000.0, 0x9999)
    };
    call.unit
        .play(call.relay_addr(), restarted, 25)
        .done()
        .await;
    let stats = stats_until(&call.relay, |s| s.unit.packets_in == 50).await;
    assert_eq!(stats.unit.packets_in, 50);
    assert_eq!(stats.unit.ssrc_changes, 1);
    assert_eq!(stats.unit.relatches, 0);
    assert_eq!(stats.unit.lost, 0);
    assert!(until(ms(1_000), || call.operator.count() >= 50).await);
    let heard = call.operator.received();
    assert_eq!(
        dominant(&pcm(&heard, 8, Law::Alaw, start, ms(700)..ms(2_000))),
        Some(1_000.0)
    );
}

/// The unit's capture sorted by sequence, audio and events.
fn by_seq(mut got: Vec<Received>) -> Vec<Received> {
    got.sort_by_key(|r| r.at);
    got
}

#[tokio::test]
async fn the_stream_to_the_unit_runs_on_across_operator_hold_and_operator() {
    let call = Call::new(48_600, Law::Alaw).await;
    // The unit talks all along; the operator too.
    let start = Instant::now();
    let unit = call
        .unit
        .play(call.relay_addr(), Stream::pcma(440.0, 0x1111), 120);
    let operator = call
        .operator
        .play(call.op_side, Stream::pcma(1_000.0, 0x2222), 120);
    tokio::time::sleep(ms(700)).await;
    call.relay.set_held(true).unwrap();
    let held_at = start.elapsed();
    tokio::time::sleep(ms(700)).await;
    call.relay.set_held(false).unwrap();
    let back_at = start.elapsed();
    unit.done().await;
    operator.done().await;
    tokio::time::sleep(ms(100)).await;
    let got = by_seq(call.unit.received());
    assert!(got.len() >= 110, "{}", got.len());
    // One SSRC, sequence numbers one after the other, timestamps in 160s that follow the
    // clock: across operator → hold tone → operator.
    let first = &got[0];
    assert!(got.iter().all(|r| r.header.ssrc == first.header.ssrc));
    for pair in got.windows(2) {
        let (a, b) = (&pair[0].header, &pair[1].header);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1), "{a:?} {b:?}");
        // 160 a frame; more (with the marker) when the operator's frames were late enough
        // for silence to fill in, by the time that passed.
        let step = b.timestamp.wrapping_sub(a.timestamp);
        assert!((160..8_000).contains(&step), "{a:?} {b:?}");
        assert!(step == 160 || b.marker, "{a:?} {b:?}");
    }
    for r in &got {
        let by_ts = r.header.timestamp.wrapping_sub(first.header.timestamp) / 8;
        let by_clock = r.at.duration_since(first.at).as_millis() as u32;
        assert!(
            by_ts.abs_diff(by_clock) <= 80,
            "{by_ts} ms vs {by_clock} ms"
        );
    }
    // What the unit heard: 1,000 Hz, the hold tone (its first half second is on), 1,000 Hz.
    let at = |from: Duration, to: Duration| pcm(&got, 8, Law::Alaw, start, from..to);
    assert_eq!(dominant(&at(ms(200), held_at)), Some(1_000.0));
    assert_eq!(
        dominant(&at(held_at + ms(60), held_at + ms(460))),
        Some(HOLD_HZ)
    );
    assert_eq!(
        dominant(&at(back_at + ms(100), back_at + ms(600))),
        Some(1_000.0)
    );
    // The operator heard nothing from the person while they were on hold.
    let heard = call.operator.received();
    let on_hold = heard
        .iter()
        .filter(|r| {
            let t = r.at.duration_since(start);
            t > held_at + ms(40) && t < back_at
        })
        .count();
    assert_eq!(on_hold, 0);
    let stats = call.relay.stats().await;
    assert!(stats.generated >= 30, "{stats:?}");
    assert!(stats.from_operator_unsent >= 30, "{stats:?}");
    assert!(!stats.held);
}

#[tokio::test]
async fn dtmf_goes_out_as_rfc_4733_events_with_the_voice_paused() {
    let call = Call::new(48_700, Law::Alaw).await;
    let operator = call
        .operator
        .play(call.op_side, Stream::pcma(1_000.0, 0x2222), 50);
    tokio::time::sleep(ms(300)).await;
    call.relay.dtmf('0', 100).unwrap();
    operator.done().await;
    tokio::time::sleep(ms(100)).await;
    let got = by_seq(call.unit.received());
    for pair in got.windows(2) {
        assert_eq!(
            pair[1].header.sequence,
            pair[0].header.sequence.wrapping_add(1)
        );
    }
    let events: Vec<(usize, &Received)> = got
        .iter()
        .enumerate()
        .filter(|(_, r)| r.header.payload_type == 101)
        .collect();
    assert_eq!(events.len(), 7, "5 ticks of 20 ms and the end twice more");
    let (i0, e0) = events[0];
    // Contiguous in the stream: no voice between the event's packets.
    assert!(events.iter().enumerate().all(|(k, (i, _))| *i == i0 + k));
    let want = [
        (true, 160, false),
        (false, 320, false),
        (false, 480, false),
        (false, 640, false),
        (false, 800, true),
        (false, 800, true),
        (false, 800, true),
    ];
    for ((_, r), (marker, duration, end)) in events.iter().zip(want) {
        let e = TelephoneEvent::parse(&r.payload).unwrap();
        assert_eq!(r.header.marker, marker);
        assert_eq!(r.header.timestamp, e0.header.timestamp);
        assert_eq!(r.header.ssrc, got[0].header.ssrc);
        assert_eq!(
            (e.event, e.duration, e.end, e.volume),
            (0, duration, end, 10)
        );
    }
    // Before: voice, right up to the event's start; after: voice again, at least the
    // event's 800 samples later, marked as a new talkspurt.
    let before = &got[i0 - 1];
    assert_eq!(before.header.payload_type, 8);
    assert_eq!(
        e0.header.timestamp,
        before.header.timestamp.wrapping_add(160)
    );
    let after = &got[i0 + 7];
    assert_eq!(after.header.payload_type, 8);
    assert!(after.header.marker);
    assert!(after.header.timestamp.wrapping_sub(e0.header.timestamp) >= 800);
    // The packets are 20 ms apart, as RFC 4733 ticks are.
    let span = events[6].1.at.duration_since(e0.at);
    assert!(span >= ms(100), "{span:?}");
    let stats = call.relay.stats().await;
    assert_eq!((stats.dtmf_sent, stats.unit.events_out), (1, 7));
}

#[tokio::test]
async fn a_unit_without_telephone_event_gets_no_events_and_the_core_is_told() {
    let media = media(48_800, 30);
    let unit = Peer::new(1_000).await;
    let relay: Relay<UdpOperator> =
        Relay::start(leg(&media, unit.addr(), true, false), EarlyMedia::Silence).unwrap();
    assert!(!relay.takes_events());
    assert_eq!(relay.dtmf('0', 100), Err(DtmfError::NoTelephoneEvent));
    assert_eq!(relay.dtmf('0', 50), Err(DtmfError::BadDuration));
    tokio::time::sleep(ms(200)).await;
    let got = unit.received();
    assert!(!got.is_empty());
    // μ-law, PT 0, and no event.
    assert!(got.iter().all(|r| r.header.payload_type == 0));
}

#[tokio::test]
async fn a_silent_unit_ends_the_relay_and_the_operators_side_with_it() {
    let media = media(48_900, 1);
    let unit = Peer::new(1_000).await;
    let relay = Relay::start(leg(&media, unit.addr(), false, true), EarlyMedia::Silence).unwrap();
    let operator = Peer::new(10).await;
    let side = UdpOperator::new(Law::Alaw, operator.addr()).await;
    let ended = side.ended();
    relay.attach(side).unwrap();
    unit.play(relay.local_addr(), Stream::pcma(440.0, 1), 10)
        .done()
        .await;
    let silent = Instant::now();
    let end = tokio::time::timeout(ms(5_000), relay.ended()).await;
    assert_eq!(end, Ok(RelayEnd::Inactive));
    let took = silent.elapsed();
    assert!((ms(900)..ms(1_500)).contains(&took), "{took:?}");
    assert!(ended.load(Ordering::Acquire));
    assert!(until(ms(500), || media.legs() == 0).await);
    let stats = relay.stats().await;
    assert_eq!(stats.unit.packets_in, 10);
}

#[tokio::test]
async fn the_operators_side_ending_ends_the_relay() {
    let call = Call::new(49_000, Law::Alaw).await;
    call.op_ender.cancel();
    let end = tokio::time::timeout(ms(5_000), call.relay.ended()).await;
    assert_eq!(end, Ok(RelayEnd::OperatorEnded));
    assert!(until(ms(500), || call.media.legs() == 0).await);
}

#[tokio::test]
async fn the_recording_of_a_relayed_call_holds_the_person_on_1_and_the_operator_on_2() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RecordingOptions::in_data_dir(tmp.path());
    let call = Call::new(49_100, Law::Alaw).await;
    let answered = Instant::now();
    let id = RecordingId::new(42, 1, Timestamp::from_second(1_800_000_000).unwrap());
    let rec = Recorder::start(&opts, id, answered, &RecordingMetrics::new())
        .await
        .unwrap();
    call.relay.record(rec.tap()).unwrap();
    let unit = call
        .unit
        .play(call.relay_addr(), Stream::pcma(440.0, 0x1111), 75);
    let operator = call
        .operator
        .play(call.op_side, Stream::pcma(1_000.0, 0x2222), 75);
    unit.done().await;
    operator.done().await;
    tokio::time::sleep(ms(100)).await;
    call.relay.end();
    call.relay.ended().await;
    let finished = rec.finish(Instant::now()).await.unwrap();
    let path = opts.dir.join(&finished.file_name);
    let window = Some(ms(300)..ms(1_300));
    let candidates = [440.0, 1_000.0];
    assert_eq!(
        tone::dominant_in_wav(&path, 0, window.clone(), &candidates).unwrap(),
        Some(440.0)
    );
    assert_eq!(
        tone::dominant_in_wav(&path, 1, window, &candidates).unwrap(),
        Some(1_000.0)
    );
    assert_eq!(finished.frames_dropped, 0);
}

#[tokio::test]
async fn mute_sends_silence_in_the_operators_place_and_unmute_their_voice() {
    let call = Call::new(49_200, Law::Alaw).await;
    let start = Instant::now();
    let operator = call
        .operator
        .play(call.op_side, Stream::pcma(1_000.0, 0x2222), 90);
    tokio::time::sleep(ms(600)).await;
    call.relay.set_muted(true).unwrap();
    let muted_at = start.elapsed();
    tokio::time::sleep(ms(600)).await;
    call.relay.set_muted(false).unwrap();
    let unmuted_at = start.elapsed();
    operator.done().await;
    tokio::time::sleep(ms(100)).await;
    let got = call.unit.received();
    let at = |from: Duration, to: Duration| pcm(&got, 8, Law::Alaw, start, from..to);
    assert_eq!(dominant(&at(ms(200), muted_at)), Some(1_000.0));
    let quiet = at(muted_at + ms(60), unmuted_at);
    assert!(
        quiet.len() >= 8 * 400,
        "the stream goes on: {}",
        quiet.len()
    );
    assert!(
        tone::rms(&quiet) < tone::SILENCE_RMS,
        "{}",
        tone::rms(&quiet)
    );
    assert_eq!(
        dominant(&at(unmuted_at + ms(60), unmuted_at + ms(500))),
        Some(1_000.0)
    );
    let stats = call.relay.stats().await;
    assert!(!stats.muted);
    assert_eq!(stats.from_operator_unsent, 0);
}

#[tokio::test]
async fn before_the_operator_the_unit_hears_ringing_or_silence() {
    let media = media(49_300, 30);
    let ringing = Peer::new(10_000).await;
    let quiet = Peer::new(10_000).await;
    let start = Instant::now();
    let _a: Relay<UdpOperator> = Relay::start(
        leg(&media, ringing.addr(), false, true),
        EarlyMedia::Ringback,
    )
    .unwrap();
    let _b: Relay<UdpOperator> =
        Relay::start(leg(&media, quiet.addr(), false, true), EarlyMedia::Silence).unwrap();
    tokio::time::sleep(ms(1_500)).await;
    // Ringing: 425 Hz for its first second, then silence.
    let got = ringing.received();
    let tone_part = pcm(&got, 8, Law::Alaw, start, ms(100)..ms(900));
    assert_eq!(
        tone::analyse(&tone_part, 8_000, &[HOLD_HZ]).dominant(),
        Some(HOLD_HZ)
    );
    let pause = pcm(&got, 8, Law::Alaw, start, ms(1_100)..ms(1_400));
    assert!(tone::rms(&pause) < tone::SILENCE_RMS);
    // A stream of 20 ms frames all along.
    assert!((60..=80).contains(&got.len()), "{}", got.len());
    let got = quiet.received();
    assert!((60..=80).contains(&got.len()), "{}", got.len());
    assert!(tone::rms(&pcm(&got, 8, Law::Alaw, start, ms(0)..ms(2_000))) < tone::SILENCE_RMS);
    assert!(got[0].header.marker);
}

#[tokio::test]
async fn garbage_from_anyone_is_counted_and_the_call_goes_on() {
    let call = Call::new(49_400, Law::Alaw).await;
    let unit = call
        .unit
        .play(call.relay_addr(), Stream::pcma(440.0, 0x1111), 50);
    assert!(until(ms(1_000), || call.operator.count() >= 1).await);
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut sent = 0;
    for n in 0..400usize {
        // xorshift: datagrams of every length from 0 to 1,995 bytes.
        let mut d = Vec::with_capacity(n * 5 % 2_000);
        for _ in 0..(n * 5 % 2_000) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            d.push(seed as u8);
        }
        // From the unit's own address too: nothing it sends that is not RTP is taken.
        let from = if n % 2 == 0 {
            &junk
        } else {
            &*call.unit.socket
        };
        if from.send_to(&d, call.relay_addr()).await.is_ok() {
            sent += 1;
        }
        if n % 20 == 0 {
            // Paced, so the socket's buffer never overflows and every one is counted.
            tokio::time::sleep(ms(2)).await;
        }
    }
    unit.done().await;
    let stats = stats_until(&call.relay, |s| {
        s.unit.dropped.total() + s.unit.packets_in >= sent + 50
    })
    .await;
    // Every datagram counted once: dropped by reason, or (for none of these) taken.
    assert_eq!(
        stats.unit.dropped.total() + stats.unit.packets_in,
        sent + 50
    );
    assert_eq!(stats.unit.packets_in, 50, "{stats:?}");
    assert!(stats.unit.dropped.malformed > 0 && stats.unit.dropped.stranger > 0);
    assert_eq!(call.relay.end_reason(), None);
    assert!(until(ms(1_000), || call.operator.count() >= 50).await);
}
