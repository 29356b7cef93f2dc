//! Tones: sine tones made into G.711 frames (the hold tone the person hears; test signals),
//! and their detection by frequency, with the Goertzel algorithm (the power of one frequency
//! in a block of samples, as DTMF receivers measure it), so tests assert "440 Hz on the
//! person's channel" rather than counting packets.
//!
//! Written by hand: a sine and a Goertzel filter are a few lines each, and the signal
//! processing crates bring FFTs and resamplers this needs none of.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use vakt_proto::g711::{Law, SAMPLE_RATE};

use super::wav::{self, WavError};

/// Samples of one 20 ms frame at 8 kHz (the packet size of vakt's G.711 streams).
pub const FRAME_SAMPLES: usize = 160;

/// The amplitude of a sine at 0 dBm0 in 16-bit linear PCM: G.711's largest value is
/// +3.14 dBm0 (ITU-T G.711 Table 5, A-law; μ-law's is +3.17), so 0 dBm0 is 3.14 dB below
/// full scale.
pub const ZERO_DBM0: f64 = 32_768.0 * 0.696_4;

/// The hold tone's frequency: 425 Hz, the European comfort tones' (ITU-T E.180).
pub const HOLD_HZ: f64 = 425.0;

/// A sine tone generator, optionally in a cadence (on, off), continuing from frame to frame
/// without a click.
#[derive(Debug, Clone)]
pub struct ToneGen {
    /// Radians per sample.
    step: f64,
    /// Peak amplitude in linear PCM.
    amplitude: f64,
    /// Samples made so far.
    n: u64,
    /// (samples on, samples of a whole period), if the tone comes and goes.
    cadence: Option<(u64, u64)>,
}

impl ToneGen {
    /// A continuous tone of `hz` at `level_dbm0` (at most +3 dBm0, full scale).
    pub fn new(hz: f64, level_dbm0: f64) -> ToneGen {
        let amplitude = (ZERO_DBM0 * 10f64.powf(level_dbm0.min(3.0) / 20.0)).min(32_767.0);
        ToneGen {
            step: 2.0 * std::f64::consts::PI * hz / f64::from(SAMPLE_RATE),
            amplitude,
            n: 0,
            cadence: None,
        }
    }

    /// The same tone, `on` then silent for `off`, again and again (from the start of an
    /// "on").
    pub fn with_cadence(mut self, on: Duration, off: Duration) -> ToneGen {
        let samples = |d: Duration| (d.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as u64;
        let (on, off) = (samples(on), samples(off));
        self.cadence = (off > 0).then_some((on, on + off));
        self
    }

    /// The hold tone the person hears while the operator has them on hold: 425 Hz at
    /// −20 dBm0, half a second every three seconds (the line is alive; no music).
    pub fn hold() -> ToneGen {
        ToneGen::new(HOLD_HZ, -20.0)
            .with_cadence(Duration::from_millis(500), Duration::from_millis(2_500))
    }

    /// The peak amplitude in linear PCM.
    pub fn amplitude(&self) -> f64 {
        self.amplitude
    }

    /// Fills `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            let on = match self.cadence {
                Some((on, period)) => self.n % period < on,
                None => true,
            };
            *s = if on {
                // The phase from the sample count, so a long tone does not drift.
                let phase = (self.n as f64 * self.step) % (2.0 * std::f64::consts::PI);
                (self.amplitude * phase.sin()).round() as i16
            } else {
                0
            };
            self.n += 1;
        }
    }

    /// The next `samples` samples encoded in `law`, appended to `out`.
    pub fn encode_into(&mut self, law: Law, samples: usize, out: &mut Vec<u8>) {
        let mut pcm = vec![0i16; samples];
        self.fill(&mut pcm);
        law.encode_into(&pcm, out);
    }

    /// The next 20 ms frame ([`FRAME_SAMPLES`] bytes) in `law`.
    pub fn frame(&mut self, law: Law) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_SAMPLES);
        self.encode_into(law, FRAME_SAMPLES, &mut out);
        out
    }
}

/// The amplitude of the frequency `hz` in `samples` (taken `rate` times a second), by the
/// Goertzel algorithm: for a sine of amplitude A at `hz` over whole periods it is A; a
/// frequency that is not there gives near 0. Any block length (the frequency need not fall
/// on a DFT bin).
pub fn goertzel(samples: &[i16], rate: u32, hz: f64) -> f64 {
    if samples.is_empty() || rate == 0 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    2.0 * power.sqrt() / samples.len() as f64
}

/// The root mean square of `samples`.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Below this RMS (about −60 dBFS) a block is silence and no tone dominates it.
pub const SILENCE_RMS: f64 = 32.0;

/// The tones found in a block: its RMS and each candidate frequency's amplitude.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneLevels {
    /// The block's RMS.
    pub rms: f64,
    /// (frequency in Hz, amplitude) for each candidate, in the order asked.
    pub levels: Vec<(f64, f64)>,
}

impl ToneLevels {
    /// The candidate that dominates the block: the strongest, if it holds at least two
    /// thirds of the block's power (a sine of amplitude A has power A²/2) and the block is
    /// not silence.
    pub fn dominant(&self) -> Option<f64> {
        if self.rms < SILENCE_RMS {
            return None;
        }
        let (hz, amplitude) = self
            .levels
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let share = amplitude * amplitude / 2.0 / (self.rms * self.rms);
        (share >= 2.0 / 3.0).then_some(hz)
    }
}

/// The levels of `candidates` (Hz) in `samples` taken `rate` times a second.
pub fn analyse(samples: &[i16], rate: u32, candidates: &[f64]) -> ToneLevels {
    ToneLevels {
        rms: rms(samples),
        levels: candidates
            .iter()
            .map(|&hz| (hz, goertzel(samples, rate, hz)))
            .collect(),
    }
}

/// The levels of `candidates` in channel `channel` (from 0: 0 is the person, 1 the
/// operator in a recording) of the WAV file at `path`, within `window` (from the start of
/// the file; `None`: all of it).
pub fn analyse_wav(
    path: &Path,
    channel: usize,
    window: Option<Range<Duration>>,
    candidates: &[f64],
) -> Result<ToneLevels, WavError> {
    let wav = wav::read(path)?;
    let samples = wav.channel(channel);
    let at =
        |d: Duration| ((d.as_secs_f64() * f64::from(wav.sample_rate)) as usize).min(samples.len());
    let block = match window {
        Some(w) => &samples[at(w.start)..at(w.end).max(at(w.start))],
        None => &samples[..],
    };
    Ok(analyse(block, wav.sample_rate, candidates))
}

/// Which of `candidates` (Hz) dominates channel `channel` of the WAV file at `path` within
/// `window` ([`ToneLevels::dominant`]); `None` for silence or a mixture.
pub fn dominant_in_wav(
    path: &Path,
    channel: usize,
    window: Option<Range<Duration>>,
    candidates: &[f64],
) -> Result<Option<f64>, WavError> {
    Ok(analyse_wav(path, channel, window, candidates)?.dominant())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pcm(tone: &mut ToneGen, n: usize) -> Vec<i16> {
        let mut v = vec![0; n];
        tone.fill(&mut v);
        v
    }

    #[test]
    fn goertzel_measures_the_amplitude_of_its_frequency_only() {
        let mut t = ToneGen::new(440.0, -10.0);
        let a = t.amplitude();
        // 0.5 s: 220 whole periods.
        let s = pcm(&mut t, 4_000);
        let at = goertzel(&s, 8_000, 440.0);
        assert!((at - a).abs() / a < 0.01, "{at} vs {a}");
        assert!(goertzel(&s, 8_000, 1_000.0) < a * 0.01);
        assert!(goertzel(&s, 8_000, 425.0) < a * 0.1);
        // Not on a bin, an odd length: still close.
        let s = pcm(&mut ToneGen::new(1_000.0, -6.0), 1_234);
        let a = ToneGen::new(1_000.0, -6.0).amplitude();
        assert!((goertzel(&s, 8_000, 1_000.0) - a).abs() / a < 0.02);
        assert_eq!(goertzel(&[], 8_000, 440.0), 0.0);
        assert_eq!(goertzel(&[0; 800], 8_000, 440.0), 0.0);
    }

    #[test]
    fn levels_follow_dbm0() {
        let a0 = ToneGen::new(1_000.0, 0.0).amplitude();
        let a10 = ToneGen::new(1_000.0, -10.0).amplitude();
        assert!((a0 - 22_820.0).abs() < 10.0, "{a0}");
        assert!((20.0 * (a0 / a10).log10() - 10.0).abs() < 0.01);
        assert!(ToneGen::new(1_000.0, 20.0).amplitude() <= 32_767.0);
    }

    #[test]
    fn a_tone_survives_g711_and_dominates() {
        for law in [Law::Alaw, Law::Ulaw] {
            let mut t = ToneGen::new(1_000.0, -10.0);
            let mut bytes = Vec::new();
            for _ in 0..50 {
                bytes.extend(t.frame(law));
            }
            assert_eq!(bytes.len(), 50 * FRAME_SAMPLES);
            let mut s = Vec::new();
            law.decode_into(&bytes, &mut s);
            let levels = analyse(&s, 8_000, &[440.0, 1_000.0]);
            assert_eq!(levels.dominant(), Some(1_000.0), "{law:?} {levels:?}");
            assert!(levels.levels[0].1 < levels.levels[1].1 / 100.0);
        }
    }

    #[test]
    fn silence_and_mixtures_have_no_dominant() {
        assert_eq!(analyse(&[0; 800], 8_000, &[440.0]).dominant(), None);
        assert_eq!(analyse(&[], 8_000, &[440.0]).dominant(), None);
        let mut a = pcm(&mut ToneGen::new(440.0, -10.0), 8_000);
        let b = pcm(&mut ToneGen::new(1_000.0, -10.0), 8_000);
        for (x, y) in a.iter_mut().zip(&b) {
            *x = x.saturating_add(*y);
        }
        let l = analyse(&a, 8_000, &[440.0, 1_000.0]);
        assert_eq!(l.dominant(), None, "{l:?}");
        // A tone at a frequency not asked about is not mistaken for one that is.
        let other = pcm(&mut ToneGen::new(2_000.0, -10.0), 8_000);
        assert_eq!(analyse(&other, 8_000, &[440.0, 1_000.0]).dominant(), None);
    }

    #[test]
    fn the_hold_tone_comes_and_goes_in_its_cadence() {
        let mut hold = ToneGen::hold();
        let s = pcm(&mut hold, 3 * 8_000 * 2);
        for period in 0..2 {
            let base = period * 24_000;
            let on = &s[base..base + 4_000];
            let off = &s[base + 4_000..base + 24_000];
            assert_eq!(analyse(on, 8_000, &[HOLD_HZ]).dominant(), Some(HOLD_HZ));
            assert!(off.iter().all(|&x| x == 0));
        }
        // −20 dBm0.
        let a = ToneGen::new(HOLD_HZ, 0.0).amplitude() / 10.0;
        assert!((hold.amplitude() - a).abs() < 1.0);
        // Frames continue the phase: two half-blocks equal one block.
        let mut x = ToneGen::new(440.0, -3.0);
        let mut y = ToneGen::new(440.0, -3.0);
        let mut joined = pcm(&mut x, 80);
        joined.extend(pcm(&mut x, 80));
        assert_eq!(joined, pcm(&mut y, 160));
    }
}
