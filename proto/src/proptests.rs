//! Property tests: no decoder panics on any bytes, and encode → parse round-trips.

use proptest::collection::vec;
use proptest::prelude::*;

use super::contact_id;
use super::crc::crc16_arc;
use super::crypto::Key;
use super::dc09::{
    CrcFormat, FrameSpec, MAX_FRAME_BYTES, Pad, Scan, Token, XData, encode_ack,
    encode_ack_encrypted_with, encode_duh, encode_frame, encode_frame_encrypted_with, parse, scan,
};
use super::event::{EventCode, Qualifier};
use super::payload::decode_payload;
use super::sia_dcs;

/// Valid frames to mutate: protocols.md §1.10 and a Lupusec-style binary-CRC frame.
const SEEDS: &[&[u8]] = &[
    b"\n7449003F\"ADM-CID\"0078R1L0#AAAA[#00AAAA|3407 01 001]_01:59:16,09-21-2023\r",
    b"\n8C860043\"SIA-DCS\"9876R579BDFL789ABC#123456A[#123456A|NFA129][M1234567890AB]\r",
    b"\nF4D20029\"SIA-DCS\"0001RF3L77#1234[#1234|NRR|Atest]\r",
    b"\nE4410025\"NAK\"0000R0L0A0[]_16:20:01,09-24-2025\r",
    b"\n76D80055\"*NULL\"0000R0L0#AAAB[B4BC8B40D0E6D959D6BEA78E88CC0B2155741A3C44FBB96D476A3E557CAD64D9\r",
    b"\nE9F40076\"*ADM-CID\"0007L0#1234[22471E739E277F7113F059A13EA6E7CD60AA5D374C97364650F3DF39412FCD91ADE812EAF86EED10FEB38F24223B5D88\r",
    b"\n685C003A\"SIA-DCS\"0003L0#1234[#1234|Nri1/MA001]_10:15:00,03-01-2025\r",
    b"\n57150047\"ADM-CID\"0247R4F39L4F39#4F39[#4F39|3401 01 057]\r",
    b"\n\n\xeb0027\"ADM-CID\"2005L0#1234[#1234|1101 01 001]\r",
];

fn keys() -> [Key; 3] {
    [
        Key::from_ascii("AAAAAAAAAAAAAAAA").unwrap_or(Key::Aes128([0; 16])),
        Key::Aes192([0x42; 24]),
        Key::from_hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
            .unwrap_or(Key::Aes256([0; 32])),
    ]
}

/// Runs every decoder over `input` as a receive buffer; checks the framing invariants.
fn exercise(input: &[u8]) {
    let mut buf = input;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps <= input.len() + 1, "scan does not make progress");
        match scan(buf) {
            Scan::Frame { start, end } => {
                assert!(start < end && end <= buf.len() && end - start <= MAX_FRAME_BYTES);
                exercise_frame(&buf[start..end]);
                buf = &buf[end..];
            }
            Scan::Skip(n) | Scan::Oversized(n) => {
                assert!(n > 0 && n <= buf.len());
                buf = &buf[n..];
            }
            Scan::Incomplete => break,
        }
    }
    // parse must also cope with input that did not come from scan.
    exercise_frame(input);
}

fn exercise_frame(raw: &[u8]) {
    let Ok(f) = parse(raw) else { return };
    assert_eq!(f.raw, raw);
    let mut out = Vec::new();
    encode_ack(&f, &mut out);
    // A NAK's "A0" (no account) is echoed as is; only NAK frames may carry it.
    let replies_parse = f.account.is_some();
    assert_eq!(
        parse(&out).is_ok(),
        replies_parse,
        "our ACK of a parsed frame"
    );
    out.clear();
    encode_duh(&f, &mut out);
    assert_eq!(
        parse(&out).is_ok(),
        replies_parse,
        "our DUH of a parsed frame"
    );
    let data = if f.encrypted {
        let mut last = None;
        for key in keys() {
            if let Ok(c) = f.decrypt(&key) {
                assert!(c.timestamp.is_some());
                last = Some(c.data);
            }
            out.clear();
            encode_ack_encrypted_with(
                &f,
                &key,
                jiff::Timestamp::UNIX_EPOCH,
                Pad::Fixed(b'Q'),
                true,
                &mut out,
            );
            if f.account.is_some() {
                let back = parse(&out).map(|a| a.decrypt(&key).map(|c| c.data.is_empty()));
                assert_eq!(back, Ok(Ok(true)), "our *ACK round-trips");
            }
        }
        last
    } else {
        f.content().ok().map(|c| c.data)
    };
    if let Some(data) = data {
        for t in [f.token, Token::Null, Token::AdmCid, Token::SiaDcs] {
            let _ = decode_payload(t, &data);
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    if frame.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, b) => {
            let i = i % frame.len();
            frame[i] ^= b | 1;
        }
        Mutation::Truncate(i) => frame.truncate(i % frame.len()),
        Mutation::Insert(i, bytes) => {
            let i = i % (frame.len() + 1);
            frame.splice(i..i, bytes.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = i % frame.len();
            let end = (i + n).min(frame.len());
            frame.drain(i..end);
        }
    }
}

fn hex_string(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9A-Fa-f]{{{min},{max}}}"))
        .unwrap_or_else(|_| unreachable!("constant regex"))
}

/// Bytes allowed inside a data block or an xdata value: anything but `]`, CR and LF.
fn content_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    // Every byte value except LF (10), CR (13) and ']' (93).
    vec(
        prop_oneof![0u8..=9, 11u8..=12, 14u8..=92, 94u8..=255],
        0..max,
    )
}

fn timestamp() -> impl Strategy<Value = jiff::Timestamp> {
    // 0001-01-01 .. 9999-12-31, whole seconds.
    (-62_135_596_800i64..253_402_300_799)
        .prop_map(|s| jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

#[derive(Debug, Clone)]
struct OwnedSpec {
    id: String,
    seq: u16,
    receiver: Option<String>,
    line: Option<String>,
    account: String,
    data: Vec<u8>,
    xdata: Vec<XData>,
    timestamp: Option<jiff::Timestamp>,
}

impl OwnedSpec {
    fn spec(&self) -> FrameSpec<'_> {
        FrameSpec {
            id: &self.id,
            seq: self.seq,
            receiver: self.receiver.as_deref(),
            line: self.line.as_deref(),
            account: &self.account,
            data: &self.data,
            xdata: &self.xdata,
            timestamp: self.timestamp,
        }
    }
}

fn spec() -> impl Strategy<Value = OwnedSpec> {
    let id = prop_oneof![
        Just("NULL".to_string()),
        Just("ADM-CID".to_string()),
        Just("SIA-DCS".to_string()),
        proptest::string::string_regex("[A-Z][A-Z0-9-]{0,15}")
            .unwrap_or_else(|_| unreachable!("constant regex")),
    ];
    let xdata = vec(
        (
            proptest::char::ranges(vec!['A'..='Z', 'a'..='z'].into()),
            content_bytes(40),
        )
            .prop_map(|(c, value)| XData {
                letter: u8::try_from(c).unwrap_or(b'X'),
                value,
            }),
        0..4,
    );
    (
        id,
        0u16..10_000,
        proptest::option::of(hex_string(1, 6)),
        proptest::option::of(hex_string(1, 6)),
        hex_string(1, 16),
        content_bytes(300),
        xdata,
        proptest::option::of(timestamp()),
    )
        .prop_map(
            |(id, seq, receiver, line, account, data, xdata, timestamp)| OwnedSpec {
                id,
                seq,
                receiver,
                line,
                account,
                data,
                xdata,
                timestamp,
            },
        )
}

proptest! {
    // 512 cases by default; PROPTEST_CASES=n runs more (e.g. in a nightly job).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(input in vec(any::<u8>(), 0..600)) {
        exercise(&input);
    }

    #[test]
    fn random_frame_shaped_bytes_never_panic(
        body in vec(prop_oneof![
            Just(b'"'), Just(b'['), Just(b']'), Just(b'|'), Just(b'#'), Just(b'_'), Just(b'*'),
            Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'A'), Just(b'L'), Just(b'R'),
            any::<u8>(),
        ], 0..120),
        good_crc in any::<bool>(),
    ) {
        // Give random bodies a correct CRC and length so the deeper code is reached.
        let mut raw = b"\n".to_vec();
        let crc = if good_crc { crc16_arc(&body) } else { 0 };
        raw.extend_from_slice(format!("{crc:04X}{:04X}", body.len()).as_bytes());
        raw.extend_from_slice(&body);
        raw.push(b'\r');
        exercise(&raw);
    }

    #[test]
    fn mutated_frames_never_panic(
        seed in 0..SEEDS.len(),
        mutations in vec(mutation(), 1..4),
        split in any::<usize>(),
    ) {
        let mut frame = SEEDS[seed].to_vec();
        for m in &mutations {
            apply(&mut frame, m);
        }
        exercise(&frame);
        // Mutated frame between two good ones, fed to a streaming buffer in two pieces:
        // the good frames around it are still found.
        let mut stream = SEEDS[0].to_vec();
        stream.extend_from_slice(&frame);
        stream.extend_from_slice(SEEDS[2]);
        exercise(&stream);
        let cut = split % (stream.len() + 1);
        let mut buf = stream[..cut].to_vec();
        let mut found = Vec::new();
        for piece in [&stream[cut..], &[][..]] {
            loop {
                match scan(&buf) {
                    Scan::Frame { start, end } => {
                        found.push(buf[start..end].to_vec());
                        buf.drain(..end);
                    }
                    Scan::Skip(n) | Scan::Oversized(n) => { buf.drain(..n); }
                    Scan::Incomplete => break,
                }
            }
            buf.extend_from_slice(piece);
        }
        prop_assert_eq!(found.first().map(Vec::as_slice), Some(SEEDS[0]));
        prop_assert!(found.iter().any(|f| f == SEEDS[2]));
    }

    #[test]
    fn plain_round_trip(s in spec()) {
        let mut out = Vec::new();
        encode_frame(&s.spec(), &mut out);
        prop_assert_eq!(scan(&out), Scan::Frame { start: 0, end: out.len() });
        let f = parse(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!f.encrypted && !f.length_decimal);
        prop_assert_eq!(f.crc_format, CrcFormat::Hex);
        prop_assert_eq!(f.id, s.id.as_str());
        prop_assert_eq!(f.seq, format!("{:04}", s.seq));
        prop_assert_eq!(f.receiver, s.receiver.as_deref());
        prop_assert_eq!(f.line, s.line.as_deref());
        prop_assert_eq!(f.account, Some(s.account.as_str()));
        let c = f.content().map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Empty xdata values with no letter cannot occur (letter always present).
        prop_assert_eq!(&c.data, &s.data);
        prop_assert_eq!(&c.xdata, &s.xdata);
        prop_assert_eq!(c.timestamp, s.timestamp);
        let mut ack = Vec::new();
        encode_ack(&f, &mut ack);
        let a = parse(&ack).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((a.token, a.seq, a.receiver, a.line, a.account), (Token::Ack, f.seq, f.receiver, f.line, f.account));
    }

    #[test]
    fn encrypted_round_trip(s in spec(), k in 0usize..3, pad in any::<u64>(), ts in timestamp()) {
        let key = &keys()[k];
        let mut s = s;
        s.timestamp = Some(ts);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(pad);
        let mut out = Vec::new();
        encode_frame_encrypted_with(&s.spec(), key, Pad::Random(&mut rng), true, &mut out);
        prop_assert_eq!(scan(&out), Scan::Frame { start: 0, end: out.len() });
        let f = parse(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(f.encrypted);
        prop_assert_eq!(f.id, s.id.as_str());
        let c = f.decrypt(key).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&c.data, &s.data);
        prop_assert_eq!(&c.xdata, &s.xdata);
        prop_assert_eq!(c.timestamp, Some(ts));
        // Another key never yields content.
        let other = &keys()[(k + 1) % 3];
        prop_assert!(f.decrypt(other).is_err());
    }

    #[test]
    fn sia_dcs_alphabet_never_panics(
        data in vec(prop_oneof![
            Just(b'#'), Just(b'|'), Just(b'N'), Just(b'A'), Just(b'/'), Just(b'^'), Just(b' '),
            Just(b'r'), Just(b'i'), Just(b'd'), Just(b't'), Just(b':'), Just(b'M'), Just(b'H'),
            Just(b'0'), Just(b'1'), Just(b'9'), any::<u8>(),
        ], 0..200),
    ) {
        if let Ok(p) = sia_dcs::decode(&data) {
            prop_assert!(!p.events.is_empty() && p.events.len() <= super::event::MAX_EVENTS);
            for e in &p.events {
                prop_assert!(matches!(e.code, EventCode::Sia([a, b]) if a.is_ascii_uppercase() && b.is_ascii_uppercase()));
            }
        }
        let _ = contact_id::decode(&data);
    }

    #[test]
    fn adm_cid_round_trip(q in prop_oneof![Just(1u8), Just(3), Just(6)], code in 0u16..1000, group in 0u32..100, addr in 0u32..1000, acct in hex_string(1, 16)) {
        let data = format!("#{acct}|{q}{code:03} {group:02} {addr:03}");
        let p = contact_id::decode(data.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.account.as_deref(), Some(acct.as_str()));
        let e = &p.events[0];
        prop_assert_eq!(&e.code, &EventCode::Cid(code));
        let want_q = match q { 1 => Qualifier::New, 3 => Qualifier::Restore, _ => Qualifier::Status };
        prop_assert_eq!(e.qualifier, want_q);
        prop_assert_eq!(e.group, (group != 0).then_some(group));
        prop_assert_eq!(e.zone.or(e.user), (addr != 0).then_some(addr));
    }
}
