//! G.711 (ITU-T G.711, 1988): the A-law and μ-law companding of telephone audio, the two
//! codecs of vakt's voice calls (RTP payload types 8 `PCMA` and 0 `PCMU`, RFC 3551 §4.5.14).
//!
//! One byte is one 8 kHz sample. Decoding goes through a 256-entry table per law, built at
//! compile time from the standard bit algorithm; encoding is that algorithm (the reference
//! `g711.c` of Sun Microsystems, placed in the public domain, which every G.711 implementation
//! follows): 16-bit linear PCM is reduced to 13 bits (A-law) or 14 bits (μ-law), its segment
//! (exponent) found, and the sign, segment and four mantissa bits combined; A-law inverts the
//! even bits (XOR 0x55), μ-law all bits.
//!
//! Written by hand: the whole codec is two short functions and two tables, and the crates that
//! offer it bring a resampler or a sound-card layer along. Sans-IO and total: every byte
//! decodes, every 16-bit sample encodes; no allocation except in the `*_into` helpers, which
//! only append.
//!
//! Every code decodes to the middle of its quantisation interval, so `encode(decode(b)) == b`
//! for every byte, with one exception the standard itself makes: μ-law has two codes for
//! zero (`0xFF` "+0" and `0x7F` "−0"); both decode to 0, which encodes as `0xFF`.

/// Samples per second of G.711.
pub const SAMPLE_RATE: u32 = 8_000;

/// RTP payload type of A-law (`PCMA/8000`).
pub const PT_PCMA: u8 = 8;
/// RTP payload type of μ-law (`PCMU/8000`).
pub const PT_PCMU: u8 = 0;

/// The code of silence in A-law (decodes to +8, the smallest positive step).
pub const ALAW_SILENCE: u8 = 0xD5;
/// The code of silence in μ-law (+0).
pub const ULAW_SILENCE: u8 = 0xFF;

/// One of the two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// A-law (Europe and most of the world; RTP `PCMA`, payload type 8).
    Alaw,
    /// μ-law (North America and Japan; RTP `PCMU`, payload type 0).
    Ulaw,
}

impl Law {
    /// The law of a static RTP payload type: 8 is A-law, 0 is μ-law, any other `None`.
    pub const fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            PT_PCMA => Some(Law::Alaw),
            PT_PCMU => Some(Law::Ulaw),
            _ => None,
        }
    }

    /// The static RTP payload type (8 for A-law, 0 for μ-law).
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Alaw => PT_PCMA,
            Law::Ulaw => PT_PCMU,
        }
    }

    /// The encoding name of SDP's `rtpmap` (`PCMA` or `PCMU`).
    pub const fn name(self) -> &'static str {
        match self {
            Law::Alaw => "PCMA",
            Law::Ulaw => "PCMU",
        }
    }

    /// The code of silence in this law.
    pub const fn silence(self) -> u8 {
        match self {
            Law::Alaw => ALAW_SILENCE,
            Law::Ulaw => ULAW_SILENCE,
        }
    }

    /// Decodes one byte to a 16-bit linear sample.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Alaw => alaw_decode(code),
            Law::Ulaw => ulaw_decode(code),
        }
    }

    /// Encodes one 16-bit linear sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Alaw => alaw_encode(sample),
            Law::Ulaw => ulaw_encode(sample),
        }
    }

    /// Appends the decoded samples of `payload` (one per byte) to `out`.
    pub fn decode_into(self, payload: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Law::Alaw => &ALAW_TABLE,
            Law::Ulaw => &ULAW_TABLE,
        };
        out.extend(payload.iter().map(|&b| table[usize::from(b)]));
    }

    /// Appends the encoded bytes of `samples` (one per sample) to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        out.extend(samples.iter().map(|&s| self.encode(s)));
    }
}

/// A-law to linear, by the table.
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

/// μ-law to linear, by the table.
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// Upper ends of the A-law segments, in 13-bit magnitude.
const ALAW_SEGMENT_ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
/// Upper ends of the μ-law segments, in biased 14-bit magnitude.
const ULAW_SEGMENT_ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// The bias μ-law adds before finding the segment (0x84 in 16-bit, 33 in 14-bit).
const ULAW_BIAS: i32 = 0x84;
/// The largest 14-bit magnitude μ-law represents; larger ones are clipped to it.
const ULAW_CLIP: i32 = 8_159;

/// The segment of `magnitude`: the first whose end is not below it (8 when above all).
fn segment(magnitude: i32, ends: &[i32; 8]) -> u8 {
    let mut seg = 0u8;
    for &end in ends {
        if magnitude <= end {
            return seg;
        }
        seg += 1;
    }
    seg
}

/// Linear to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3; // 13 bits
    let mask: u8 = if pcm >= 0 {
        0xD5 // sign bit set, even bits inverted
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = segment(pcm, &ALAW_SEGMENT_ENDS);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { u32::from(seg) };
    // Four mantissa bits; masked, so the cast cannot lose anything.
    let mantissa = ((pcm >> shift) & 0x0F) as u8;
    ((seg << 4) | mantissa) ^ mask
}

/// Linear to μ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 2; // 14 bits
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(pcm, &ULAW_SEGMENT_ENDS);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mantissa = ((pcm >> (u32::from(seg) + 1)) & 0x0F) as u8;
    ((seg << 4) | mantissa) ^ mask
}

/// A-law to linear by the bit algorithm (the table's source).
const fn alaw_decode_bits(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    // At most (0xF0 + 0x108) << 6 = 32,256: fits.
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

/// μ-law to linear by the bit algorithm (the table's source).
const fn ulaw_decode_bits(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= ((u & 0x70) >> 4) as i32;
    // At most (0x78 + 0x84) << 7 - 0x84 = 32,124: fits.
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

/// Every code of `law` decoded (by the bit algorithm, at compile time).
const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let code = i as u8;
        t[i] = if alaw {
            alaw_decode_bits(code)
        } else {
            ulaw_decode_bits(code)
        };
        i += 1;
    }
    t
}

/// Every A-law code decoded.
static ALAW_TABLE: [i16; 256] = table(true);
/// Every μ-law code decoded.
static ULAW_TABLE: [i16; 256] = table(false);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first entries of the decoding tables as published with the reference code (and in
    /// every implementation that copies them).
    #[test]
    fn known_decoded_values() {
        let alaw: Vec<i16> = (0u8..8).map(alaw_decode).collect();
        assert_eq!(
            alaw,
            [-5504, -5248, -6016, -5760, -4480, -4224, -4992, -4736]
        );
        let ulaw: Vec<i16> = (0u8..8).map(ulaw_decode).collect();
        assert_eq!(
            ulaw,
            [
                -32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956
            ]
        );
        // The extremes and the codes next to zero.
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xFE), 8);
    }

    #[test]
    fn known_encoded_values() {
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        // The bit algorithm and the table agree with each other on every code.
        for b in 0..=255u8 {
            assert_eq!(alaw_decode(b), alaw_decode_bits(b));
            assert_eq!(ulaw_decode(b), ulaw_decode_bits(b));
        }
    }

    /// G.711 Tables 5 and 6: the digital milliwatt, a 1 kHz sine at 0 dBm0 repeated every 8
    /// samples. Decoded, it is a sine of that period: odd-symmetric halves, a peak near the
    /// 0 dBm0 level (about 22,700 of 32,768), and re-encoded it gives back its bytes.
    #[test]
    fn the_digital_milliwatt() {
        let dmw = [
            (Law::Ulaw, [0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E]),
            (Law::Alaw, [0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4]),
        ];
        for (law, bytes) in dmw {
            let mut pcm = Vec::new();
            law.decode_into(&bytes, &mut pcm);
            for i in 0..4 {
                assert_eq!(pcm[i], -pcm[i + 4], "{law:?} {pcm:?}");
            }
            // sin(22.5°) / sin(67.5°) = 0.414.
            let ratio = f64::from(pcm[0]) / f64::from(pcm[1]);
            assert!((ratio - 0.4142).abs() < 0.02, "{law:?} {ratio}");
            let peak = f64::from(pcm[5]) / (67.5f64.to_radians().sin());
            assert!((21_500.0..24_000.0).contains(&peak), "{law:?} {peak}");
            let mut again = Vec::new();
            law.encode_into(&pcm, &mut again);
            assert_eq!(again, bytes);
        }
    }

    #[test]
    fn every_code_round_trips_except_mu_law_minus_zero() {
        for b in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#04x}");
            let expected = if b == 0x7F { ULAW_SILENCE } else { b };
            assert_eq!(ulaw_encode(ulaw_decode(b)), expected, "μ-law {b:#04x}");
        }
    }

    #[test]
    fn payload_types_and_names() {
        assert_eq!(Law::from_payload_type(8), Some(Law::Alaw));
        assert_eq!(Law::from_payload_type(0), Some(Law::Ulaw));
        assert_eq!(Law::from_payload_type(18), None);
        for law in [Law::Alaw, Law::Ulaw] {
            assert_eq!(Law::from_payload_type(law.payload_type()), Some(law));
            assert!(law.decode(law.silence()).abs() <= 8);
        }
        assert_eq!(Law::Alaw.name(), "PCMA");
        assert_eq!(Law::Ulaw.name(), "PCMU");
    }

    /// The error G.711 allows for `x`: half a quantisation step, at most 1/32 of the
    /// magnitude, plus what the reduction to 13 or 14 bits and the smallest steps add (8).
    fn allowed_error(x: i16) -> i32 {
        i32::from(x).abs() / 32 + 8
    }

    #[test]
    fn every_sample_round_trips_within_the_step() {
        for x in i16::MIN..=i16::MAX {
            for law in [Law::Alaw, Law::Ulaw] {
                let err = (i32::from(law.decode(law.encode(x))) - i32::from(x)).abs();
                assert!(err <= allowed_error(x), "{law:?}: {x} (error {err})");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn any_byte_decodes_and_reencodes(b in any::<u8>()) {
            let a = Law::Alaw.decode(b);
            prop_assert_eq!(Law::Alaw.encode(a), b);
            let u = Law::Ulaw.decode(b);
            prop_assert_eq!(Law::Ulaw.encode(u), if b == 0x7F { ULAW_SILENCE } else { b });
        }

        #[test]
        fn any_sample_round_trips_within_the_step(x in any::<i16>()) {
            for law in [Law::Alaw, Law::Ulaw] {
                let y = law.decode(law.encode(x));
                let err = (i32::from(y) - i32::from(x)).abs();
                prop_assert!(err <= allowed_error(x), "{:?}: {} -> {} (error {})", law, x, y, err);
                // The sign is kept (zero aside).
                prop_assert!(i32::from(x).signum() * i32::from(y).signum() >= 0 || x.unsigned_abs() < 16);
            }
        }

        #[test]
        fn encoding_is_monotonic(a in any::<i16>(), b in any::<i16>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            for law in [Law::Alaw, Law::Ulaw] {
                prop_assert!(law.decode(law.encode(lo)) <= law.decode(law.encode(hi)));
            }
        }

        #[test]
        fn slices_are_byte_for_byte(payload in proptest::collection::vec(any::<u8>(), 0..400)) {
            for law in [Law::Alaw, Law::Ulaw] {
                let mut pcm = vec![1i16; 3];
                law.decode_into(&payload, &mut pcm);
                prop_assert_eq!(pcm.len(), payload.len() + 3);
                for (i, &b) in payload.iter().enumerate() {
                    prop_assert_eq!(pcm[i + 3], law.decode(b));
                }
                let mut back = Vec::new();
                law.encode_into(&pcm[3..], &mut back);
                prop_assert_eq!(back.len(), payload.len());
            }
        }
    }
}
