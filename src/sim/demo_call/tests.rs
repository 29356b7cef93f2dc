use super::*;

/// The embedded phrase is what its README says: 8 kHz mono, a few seconds, small, and
/// speech from start to end (loud in its middle, not clipped).
#[test]
fn the_phrase_is_a_few_seconds_of_8_khz_speech() {
    assert!(PHRASE_WAV.len() < 100 * 1024, "{} bytes", PHRASE_WAV.len());
    let w = wav::parse(PHRASE_WAV).unwrap();
    assert_eq!((w.sample_rate, w.channels), (8000, 1));
    let p = phrase();
    assert_eq!(p.len(), 37_095);
    assert_eq!(p, w.samples.as_slice());
    let peak = p.iter().map(|s| s.unsigned_abs()).max().unwrap();
    // Scaled to -6 dBFS.
    assert!((16_000..=16_500).contains(&peak), "peak {peak}");
    let rms = crate::voice::tone::rms(p);
    assert!(rms > 1500.0, "rms {rms}");
}

/// The speaker says nothing for `speak_after`, then the phrase sample for sample in the
/// call's law, then `pause` of silence, then the phrase again.
#[test]
fn the_speaker_waits_speaks_pauses_and_speaks_again() {
    let samples: Vec<i16> = (0..400).map(|k| (k * 37 % 2000 - 1000) as i16).collect();
    let samples: &'static [i16] = samples.leak();
    let opts = UnitCallOptions {
        speak_after: Duration::from_millis(40),
        pause: Duration::from_millis(20),
        ..UnitCallOptions::default()
    };
    for law in [Law::Alaw, Law::Ulaw] {
        let mut s = Speaker::new(law, samples, &opts);
        let mut out = Vec::new();
        let mut all = Vec::new();
        for _ in 0..12 {
            s.frame(&mut out);
            assert_eq!(out.len(), 160);
            all.extend_from_slice(&out);
        }
        let silence = law.encode(0);
        // 40 ms of silence, the 400 samples, 20 ms (160 samples) of silence, again.
        let mut want = vec![silence; 320];
        for _ in 0..3 {
            want.extend(samples.iter().map(|&x| law.encode(x)));
            want.extend(std::iter::repeat_n(silence, 160));
        }
        assert_eq!(all[..], want[..all.len()], "{law:?}");
        // 12 frames = 1920 samples: 320 lead, then cycles of 560 begin at 320, 880, 1440.
        assert_eq!(s.phrases(), 3);
    }
}

#[test]
fn a_speaker_without_a_phrase_is_silent_and_never_speaks() {
    let mut s = Speaker::new(Law::Alaw, &[], &UnitCallOptions::default());
    let mut out = Vec::new();
    for _ in 0..100 {
        s.frame(&mut out);
        assert!(out.iter().all(|&b| b == g711::ALAW_SILENCE));
    }
    assert_eq!(s.phrases(), 0);
}

#[test]
fn sip_info_dtmf_bodies() {
    assert_eq!(info_key(b"Signal=0\r\nDuration=200\r\n"), Some('0'));
    assert_eq!(info_key(b"signal = 4\r\n"), Some('4'));
    assert_eq!(info_key(b"Duration=200\r\n"), None);
    assert_eq!(info_key(&[0xff, 0xfe]), None);
}
