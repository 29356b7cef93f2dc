//! The WAV format of recordings: RIFF/WAVE, PCM, 16-bit little-endian, 8 kHz, two channels,
//! in the canonical 44-byte layout (`RIFF` size `WAVE`, a 16-byte `fmt ` chunk, `data` size,
//! then the interleaved samples), so the two sizes sit at fixed offsets
//! ([`RIFF_SIZE_AT`], [`DATA_SIZE_AT`]) and a recording in progress can be made playable by
//! rewriting eight bytes.
//!
//! Written by hand rather than with a WAV crate: the recorder writes the samples at explicit
//! offsets, rewrites the sizes and `fdatasync`s on its own schedule, and repairs files a crash
//! left (sizes from the file length); a writer that owns the file and its header hides exactly
//! what that needs. The format is one fixed header. [`read`] is a small general reader (any
//! chunk order, unknown chunks skipped, PCM 16-bit of any rate and channel count) for the
//! tests and the tone analysis; the tests also read vakt's files with `hound`, an independent
//! reader.

use std::path::Path;

/// Samples per second.
pub const SAMPLE_RATE: u32 = 8_000;
/// Channels: 1 the person (the far end), 2 the operator.
pub const CHANNELS: u16 = 2;
/// Bits per sample.
pub const BITS_PER_SAMPLE: u16 = 16;
/// Bytes of one sample frame (both channels).
pub const BLOCK_ALIGN: u16 = CHANNELS * BITS_PER_SAMPLE / 8;
/// Bytes of audio per second.
pub const BYTES_PER_SECOND: u32 = SAMPLE_RATE * BLOCK_ALIGN as u32;
/// Length of the header; the samples start here.
pub const HEADER_BYTES: u64 = 44;
/// Offset of the RIFF chunk's size (the file's length minus 8).
pub const RIFF_SIZE_AT: u64 = 4;
/// Offset of the data chunk's size (the samples' length).
pub const DATA_SIZE_AT: u64 = 40;
/// The most audio one file holds: the RIFF size is 32 bits (about 37 hours at 32 kB/s).
pub const MAX_DATA_BYTES: u64 = (u32::MAX as u64 - 36) / BLOCK_ALIGN as u64 * BLOCK_ALIGN as u64;
/// The largest file [`read`] reads.
pub const MAX_READ_BYTES: u64 = 256 * 1024 * 1024;

/// The header of a recording holding `data_bytes` of samples (clamped to
/// [`MAX_DATA_BYTES`]).
pub fn header(data_bytes: u64) -> [u8; HEADER_BYTES as usize] {
    let data = size32(data_bytes);
    let mut h = [0u8; HEADER_BYTES as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(data + 36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // WAVE_FORMAT_PCM
    h[22..24].copy_from_slice(&CHANNELS.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&BYTES_PER_SECOND.to_le_bytes());
    h[32..34].copy_from_slice(&BLOCK_ALIGN.to_le_bytes());
    h[34..36].copy_from_slice(&BITS_PER_SAMPLE.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// The two size fields for `data_bytes` of samples: the RIFF size (at [`RIFF_SIZE_AT`]) and
/// the data size (at [`DATA_SIZE_AT`]), little-endian.
pub fn sizes(data_bytes: u64) -> ([u8; 4], [u8; 4]) {
    let data = size32(data_bytes);
    ((data + 36).to_le_bytes(), data.to_le_bytes())
}

fn size32(data_bytes: u64) -> u32 {
    // MAX_DATA_BYTES + 36 fits in 32 bits.
    u32::try_from(data_bytes.min(MAX_DATA_BYTES)).unwrap_or(0)
}

/// Whether `h` is vakt's header, whatever its two sizes say.
pub fn is_recording_header(h: &[u8]) -> bool {
    let Some(h) = h.get(..HEADER_BYTES as usize) else {
        return false;
    };
    let ours = header(0);
    h[0..4] == ours[0..4] && h[8..40] == ours[8..40]
}

/// Why a WAV file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Reading failed.
    #[error("reading the WAV file: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a WAV file this reader reads.
    #[error("not a 16-bit PCM WAV file: {0}")]
    Format(&'static str),
}

/// A WAV file's audio: interleaved 16-bit samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// The samples, interleaved (`[c1, c2, c1, c2, ..]` for two channels).
    pub samples: Vec<i16>,
}

impl Wav {
    /// Sample frames (one sample of every channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// The length of the audio.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.frames() as f64 / f64::from(self.sample_rate))
    }

    /// The samples of channel `index` (from 0); empty if there is no such channel.
    pub fn channel(&self, index: usize) -> Vec<i16> {
        let n = usize::from(self.channels);
        if index >= n {
            return Vec::new();
        }
        self.samples
            .iter()
            .skip(index)
            .step_by(n)
            .copied()
            .collect()
    }
}

/// Reads the WAV file at `path` (at most [`MAX_READ_BYTES`]).
pub fn read(path: &Path) -> Result<Wav, WavError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES).read_to_end(&mut bytes)?;
    parse(&bytes)
}

/// Parses the bytes of a WAV file. A data chunk whose size runs past the end (a file cut
/// short) yields the whole sample frames that are there.
pub fn parse(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::Format("no RIFF/WAVE header"));
    }
    let mut at = 12usize;
    let mut format: Option<(u32, u16)> = None;
    while let Some(chunk) = at.checked_add(8).and_then(|end| bytes.get(at..end)) {
        let id = &chunk[0..4];
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize;
        let body_at = at + 8;
        let body = &bytes[body_at..bytes.len().min(body_at.saturating_add(size))];
        match id {
            b"fmt " => {
                if body.len() < 16 {
                    return Err(WavError::Format("short fmt chunk"));
                }
                let tag = u16::from_le_bytes([body[0], body[1]]);
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                // 1 = PCM; 0xFFFE = extensible, whose sub-format this reader takes on trust.
                if tag != 1 && tag != 0xFFFE {
                    return Err(WavError::Format("not PCM"));
                }
                if bits != 16 {
                    return Err(WavError::Format("not 16-bit"));
                }
                if channels == 0 || rate == 0 {
                    return Err(WavError::Format("no channels or no rate"));
                }
                format = Some((rate, channels));
            }
            b"data" => {
                let Some((sample_rate, channels)) = format else {
                    return Err(WavError::Format("data before fmt"));
                };
                let frame = usize::from(channels) * 2;
                let whole = body.len() / frame * frame;
                let samples = body[..whole]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Ok(Wav {
                    sample_rate,
                    channels,
                    samples,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body_at.saturating_add(size).saturating_add(size & 1);
    }
    Err(WavError::Format("no data chunk"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_canonical_44_bytes() {
        let h = header(32_000);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 32_036);
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(h[16..20].try_into().unwrap()), 16);
        assert_eq!(u16::from_le_bytes(h[20..22].try_into().unwrap()), 1);
        assert_eq!(u16::from_le_bytes(h[22..24].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 8_000);
        assert_eq!(u32::from_le_bytes(h[28..32].try_into().unwrap()), 32_000);
        assert_eq!(u16::from_le_bytes(h[32..34].try_into().unwrap()), 4);
        assert_eq!(u16::from_le_bytes(h[34..36].try_into().unwrap()), 16);
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), 32_000);
        let (riff, data) = sizes(32_000);
        assert_eq!(riff, h[4..8]);
        assert_eq!(data, h[40..44]);
        assert!(is_recording_header(&h));
        assert!(is_recording_header(&header(0)));
        let mut other = h;
        other[24] = 0x44; // another rate
        assert!(!is_recording_header(&other));
        assert!(!is_recording_header(&h[..40]));
        // The largest size still fits the RIFF field.
        let (riff, _) = sizes(u64::MAX);
        assert_eq!(u64::from(u32::from_le_bytes(riff)), MAX_DATA_BYTES + 36);
        assert_eq!(MAX_DATA_BYTES % 4, 0);
    }

    #[test]
    fn reads_what_it_writes_and_a_file_cut_short() {
        let mut bytes = header(12).to_vec();
        for s in [1i16, -1, 300, -300, i16::MAX, i16::MIN] {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let wav = parse(&bytes).unwrap();
        assert_eq!((wav.sample_rate, wav.channels, wav.frames()), (8_000, 2, 3));
        assert_eq!(wav.channel(0), [1, 300, i16::MAX]);
        assert_eq!(wav.channel(1), [-1, -300, i16::MIN]);
        assert!(wav.channel(2).is_empty());
        // Cut mid-frame: the whole frames are read.
        let wav = parse(&bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(wav.channel(0), [1, 300]);
        // An unknown chunk before the data (odd-sized, padded) is skipped.
        let mut with_list = bytes[..36].to_vec();
        with_list.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00");
        with_list.extend_from_slice(&bytes[36..]);
        assert_eq!(parse(&with_list).unwrap(), parse(&bytes).unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_read_without_panicking() {
        assert!(parse(b"").is_err());
        assert!(parse(b"RIFF\x00\x00\x00\x00WAVE").is_err());
        let mut eight_bit = header(4).to_vec();
        eight_bit[34] = 8;
        eight_bit.extend_from_slice(&[0; 4]);
        assert!(matches!(
            parse(&eight_bit),
            Err(WavError::Format("not 16-bit"))
        ));
        let mut huge = header(0).to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
        // Every prefix of a valid file either parses or is refused.
        let mut bytes = header(8).to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        for n in 0..bytes.len() {
            let _ = parse(&bytes[..n]);
        }
    }
}
