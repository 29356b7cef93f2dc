//! Recordings through the public API, on real files in a temporary folder: the WAV vakt
//! writes read by an independent reader (hound), both channels by frequency analysis, a
//! crash's file repaired by `recover`, and playback that refuses anything outside the
//! recordings' folder.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use vakt::telemetry::RecordingMetrics;
use vakt::voice::record::{
    self, Channel, Packet, RecordError, Recorder, RecordingId, RecordingOptions, Tap,
};
use vakt::voice::tone::{self, ToneGen};
use vakt::voice::wav;
use vakt_proto::g711::Law;

const FREQS: [f64; 2] = [440.0, 1_000.0];

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn window(from_ms: u64, to_ms: u64) -> Option<std::ops::Range<Duration>> {
    Some(ms(from_ms)..ms(to_ms))
}

/// Sends `frames` 20 ms frames of `tone` on `channel`, the first at `from` (arrival and
/// timestamp advancing together).
#[allow(clippy::too_many_arguments)]
fn send(
    tap: &Tap,
    channel: Channel,
    law: Law,
    ssrc: u32,
    ts0: u32,
    tone: &mut ToneGen,
    from: Instant,
    frames: u32,
) {
    for k in 0..frames {
        let payload = tone.frame(law);
        let p = Packet {
            law,
            ssrc,
            timestamp: ts0.wrapping_add(k * 160),
            payload: &payload,
            arrival: from + ms(u64::from(k) * 20),
        };
        assert!(tap.frame(channel, &p));
    }
}

#[tokio::test]
async fn a_conversation_is_one_two_channel_8khz_wav_with_each_side_on_its_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RecordingOptions::in_data_dir(tmp.path());
    assert_eq!(opts.dir, tmp.path().join("recordings"));
    assert_eq!(opts.retention_days, 183);
    let metrics = RecordingMetrics::new();
    let id = RecordingId::new(42, 1, ts("2026-12-06T21:03:01Z"));
    // Answered ten seconds from now: nothing is due before the hang-up, however slow the
    // machine, so the test is exact.
    let answered = Instant::now() + Duration::from_secs(10);
    let rec = Recorder::start(&opts, id, answered, &metrics)
        .await
        .unwrap();
    assert!(opts.dir.join(id.part_name()).is_file());
    // The person: 440 Hz in A-law for two seconds. The operator: 1,000 Hz in μ-law from
    // 0.5 s to 1.5 s, with timestamps that wrap around, through the operator leg's tap.
    let operator_leg = rec.tap();
    send(
        &rec.tap(),
        Channel::Person,
        Law::Alaw,
        0x1111,
        12_345,
        &mut ToneGen::new(440.0, -10.0),
        answered,
        100,
    );
    send(
        &operator_leg,
        Channel::Operator,
        Law::Ulaw,
        0x2222,
        0xFFFF_FF00,
        &mut ToneGen::new(1_000.0, -10.0),
        answered + ms(500),
        50,
    );
    // The leg still holds its tap: the hang-up ends the recording all the same, and the tap
    // takes nothing more.
    let done = tokio::time::timeout(Duration::from_secs(10), rec.finish(answered + ms(2_000)))
        .await
        .expect("the hang-up ends the recording though a tap is held")
        .unwrap();
    let late = Packet {
        law: Law::Ulaw,
        ssrc: 0x2222,
        timestamp: 0,
        payload: &[0x80; 160],
        arrival: answered + ms(2_000),
    };
    assert!(!operator_leg.frame(Channel::Operator, &late));
    assert_eq!(done.id, id);
    assert_eq!(done.file_name, "call-42_conv-1_20261206T210301Z.wav");
    assert_eq!(done.duration, Duration::from_secs(2));
    assert_eq!(done.bytes, 64_000);
    assert_eq!(
        (
            done.failures,
            done.frames_dropped,
            done.late_packets,
            done.jumps
        ),
        (0, 0, 0, 0)
    );

    let path = opts.dir.join(&done.file_name);
    assert!(!opts.dir.join(id.part_name()).exists());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64_044);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&opts.dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // An independent reader agrees on the format and every sample.
    let mut reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (
            spec.channels,
            spec.sample_rate,
            spec.bits_per_sample,
            spec.sample_format
        ),
        (2, 8_000, 16, hound::SampleFormat::Int)
    );
    assert_eq!(reader.duration(), 16_000);
    let theirs: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let ours = wav::read(&path).unwrap();
    assert_eq!(theirs, ours.samples);

    // Each side on its channel, in its window.
    let dominant = |ch, w| tone::dominant_in_wav(&path, ch, w, &FREQS).unwrap();
    assert_eq!(dominant(0, None), Some(440.0));
    assert_eq!(dominant(0, window(600, 1_400)), Some(440.0));
    assert_eq!(dominant(1, window(550, 1_450)), Some(1_000.0));
    assert_eq!(dominant(1, window(0, 480)), None);
    assert_eq!(dominant(1, window(1_520, 2_000)), None);
    let levels = tone::analyse_wav(&path, 1, window(550, 1_450), &FREQS).unwrap();
    assert!(
        levels.levels[0].1 < levels.levels[1].1 / 100.0,
        "{levels:?}"
    );
    // The operator's channel is silent, sample for sample, outside its second.
    let o = ours.channel(1);
    assert!(o[..4_000].iter().chain(&o[12_000..]).all(|&s| s == 0));
}

#[tokio::test]
async fn a_crash_leaves_a_playable_file_that_recover_repairs_with_what_was_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RecordingOptions::in_data_dir(&tmp.path().join("live"));
    let metrics = RecordingMetrics::new();
    let id = RecordingId::new(7, 2, ts("2026-12-06T21:10:00Z"));
    let answered = Instant::now();
    let rec = Recorder::start(&opts, id, answered, &metrics)
        .await
        .unwrap();
    // A call in real time: the person at 440 Hz, the operator at 1,000 Hz.
    let mut person = ToneGen::new(440.0, -10.0);
    let mut operator = ToneGen::new(1_000.0, -10.0);
    let part = opts.dir.join(id.part_name());
    let mut snapshot = None;
    for k in 0..150u32 {
        let at = answered + ms(u64::from(k) * 20);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        for (channel, law, ssrc, tone) in [
            (Channel::Person, Law::Alaw, 1, &mut person),
            (Channel::Operator, Law::Alaw, 2, &mut operator),
        ] {
            let payload = tone.frame(law);
            let p = Packet {
                law,
                ssrc,
                timestamp: k * 160,
                payload: &payload,
                arrival: Instant::now(),
            };
            rec.frame(channel, &p);
        }
        // Once a second is durable, the file is what a kill -9 (or a power cut) would leave.
        let status = rec.status();
        if snapshot.is_none() && status.bytes_durable >= 32_000 {
            let bytes = std::fs::read(&part).unwrap();
            snapshot = Some((bytes, status.bytes_durable));
        }
    }
    let done = rec.finish(Instant::now()).await.unwrap();
    assert!(done.bytes >= 32_000 * 2, "{done:?}");
    let (bytes, durable) = snapshot.expect("a second became durable during three seconds");

    // Already playable as it is: the header covers what was synced.
    let left = wav::parse(&bytes).unwrap();
    assert!(left.samples.len() as u64 * 2 >= durable);

    // The crash, with the last frame half written.
    let crashed = tmp.path().join("crashed");
    std::fs::create_dir(&crashed).unwrap();
    let cut = bytes.len() - 2;
    std::fs::write(crashed.join(id.part_name()), &bytes[..cut]).unwrap();
    std::fs::write(crashed.join("notes.txt"), b"not a recording").unwrap();
    let recovered = record::recover(&crashed).unwrap();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let r = &recovered[0];
    assert_eq!(r.id, id);
    assert!(r.repaired);
    let kept = (cut as u64 - 44) / 4 * 4;
    assert_eq!(r.bytes, kept);
    // All that was durable, but for the frame the cut went into.
    assert!(r.bytes + 4 >= durable);
    assert!(!crashed.join(id.part_name()).exists());
    let path = crashed.join(&r.file_name);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + kept);
    // A valid file, to hound as well, with both sides in their channels up to the crash.
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(u64::from(reader.duration()) * 4, kept);
    let upto = kept / 32 - 100; // the flushed milliseconds, less a margin
    assert_eq!(
        tone::dominant_in_wav(&path, 0, window(100, upto), &FREQS).unwrap(),
        Some(440.0)
    );
    assert_eq!(
        tone::dominant_in_wav(&path, 1, window(100, upto), &FREQS).unwrap(),
        Some(1_000.0)
    );
    // Nothing is left to recover; the other file is untouched.
    assert!(record::recover(&crashed).unwrap().is_empty());
    assert_eq!(
        std::fs::read(crashed.join("notes.txt")).unwrap(),
        b"not a recording"
    );
}

#[test]
fn recover_repairs_every_kind_of_torn_file_and_leaves_finished_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let id = |call| RecordingId::new(call, 1, ts("2026-12-06T08:00:00Z"));
    let samples: Vec<u8> = (0..4_000u32)
        .flat_map(|i| (i as i16).to_le_bytes())
        .collect();
    // 1: the header with zero sizes (never synced), then 8,000 bytes of samples.
    let mut f1 = wav::header(0).to_vec();
    f1.extend_from_slice(&samples);
    std::fs::write(dir.join(id(1).part_name()), &f1).unwrap();
    // 2: a torn header (created, never synced).
    std::fs::write(dir.join(id(2).part_name()), &wav::header(0)[..20]).unwrap();
    // 3: a garbled header before good samples.
    let mut f3 = vec![0xEEu8; 44];
    f3.extend_from_slice(&samples[..4_002]);
    std::fs::write(dir.join(id(3).part_name()), &f3).unwrap();
    // 4: a recording being written whose header is up to date: renamed, not changed.
    let mut f4 = wav::header(400).to_vec();
    f4.extend_from_slice(&samples[..400]);
    std::fs::write(dir.join(id(4).part_name()), &f4).unwrap();
    // 5: a finished recording, whatever its header says, is not touched.
    std::fs::write(dir.join(id(5).file_name()), &f1).unwrap();

    let recovered = record::recover(dir).unwrap();
    let got: Vec<(u64, u64, bool)> = recovered
        .iter()
        .map(|r| (r.id.call(), r.bytes, r.repaired))
        .collect();
    assert_eq!(
        got,
        [
            (1, 8_000, true),
            (2, 0, true),
            (3, 4_000, true),
            (4, 400, false)
        ]
    );
    for r in &recovered {
        let path = dir.join(&r.file_name);
        let wav = wav::read(&path).unwrap();
        assert_eq!(wav.samples.len() as u64 * 2, r.bytes);
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(u64::from(reader.duration()) * 4, r.bytes);
    }
    assert_eq!(
        wav::read(&dir.join(id(1).file_name())).unwrap().channel(0)[..3],
        [0, 2, 4]
    );
    assert_eq!(std::fs::read(dir.join(id(5).file_name())).unwrap(), f1);
    assert!(record::recover(&dir.join("missing")).unwrap().is_empty());
}

fn write_recording(dir: &Path, id: RecordingId, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut f = wav::header(data.len() as u64).to_vec();
    f.extend_from_slice(data);
    std::fs::write(dir.join(id.file_name()), f).unwrap();
}

#[test]
fn playback_opens_a_call_s_recordings_and_nothing_outside_their_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("recordings");
    let first = RecordingId::new(9, 1, ts("2026-12-06T08:00:00Z"));
    let second = RecordingId::new(9, 2, ts("2026-12-06T08:05:00Z"));
    let other = RecordingId::new(90, 1, ts("2026-12-06T08:00:00Z"));
    write_recording(&dir, first, &[1; 32_000]);
    write_recording(&dir, second, &[2; 64_000]);
    write_recording(&dir, other, &[3; 400]);
    let live = RecordingId::new(9, 3, ts("2026-12-06T08:10:00Z"));
    std::fs::write(dir.join(live.part_name()), wav::header(0)).unwrap();

    let list = record::list(&dir, 9).unwrap();
    let seen: Vec<(u64, u64, Duration, bool)> = list
        .iter()
        .map(|r| (r.id.conversation(), r.len, r.duration, r.in_progress))
        .collect();
    assert_eq!(
        seen,
        [
            (1, 32_044, Duration::from_secs(1), false),
            (2, 64_044, Duration::from_secs(2), false),
            (3, 44, Duration::ZERO, true),
        ]
    );
    assert!(record::list(&dir, 8).unwrap().is_empty());

    let p = record::open(&dir, 9, 2).unwrap();
    assert_eq!((p.id, p.len, p.in_progress), (second, 64_044, false));
    let mut head = [0u8; 4];
    std::io::Read::read_exact(&mut &p.file, &mut head).unwrap();
    assert_eq!(&head, b"RIFF");
    assert_eq!(
        record::open_name(&dir, &first.file_name()).unwrap().len,
        32_044
    );
    assert!(record::open(&dir, 9, 3).unwrap().in_progress);
    assert!(matches!(
        record::open(&dir, 9, 4),
        Err(RecordError::NotFound {
            call: 9,
            conversation: 4
        })
    ));
    assert!(matches!(
        record::open_name(
            &dir,
            &RecordingId::new(9, 9, ts("2026-12-06T08:00:00Z")).file_name()
        ),
        Err(RecordError::NotFound { .. })
    ));

    // Names that are not recordings', or lead out of the folder.
    std::fs::write(tmp.path().join("secret.wav"), b"RIFF....").unwrap();
    for name in [
        "../secret.wav",
        "/etc/passwd",
        "secret.wav",
        "call-9_conv-1_20261206T080000Z.wav/../../secret.wav",
        "call-9_conv-1_20261206T080000Z.wav\0",
        "",
    ] {
        assert!(
            matches!(
                record::open_name(&dir, name),
                Err(RecordError::NotARecording)
            ),
            "{name}"
        );
    }
    // A symlink or a folder with a recording's name is refused too.
    let link = RecordingId::new(9, 5, ts("2026-12-06T09:00:00Z"));
    std::os::unix::fs::symlink(tmp.path().join("secret.wav"), dir.join(link.file_name())).unwrap();
    assert!(matches!(
        record::open(&dir, 9, 5),
        Err(RecordError::NotARecording)
    ));
    let folder = RecordingId::new(9, 6, ts("2026-12-06T09:00:00Z"));
    std::fs::create_dir(dir.join(folder.file_name())).unwrap();
    assert!(matches!(
        record::open(&dir, 9, 6),
        Err(RecordError::NotARecording)
    ));
    assert_eq!(record::list(&dir, 9).unwrap().len(), 3);
}
