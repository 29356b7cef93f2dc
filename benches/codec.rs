//! DC-09 codec hot path: decode a plain and an AES-256 ADM-CID frame, encode ACK and *ACK.
//!
//! Run: `cargo bench --bench codec` (quick check: `cargo bench --bench codec -- --quick`).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use vakt::codec::crypto::Key;
use vakt::codec::dc09::{
    FrameSpec, Pad, Scan, encode_ack, encode_ack_encrypted, encode_frame_encrypted, parse, scan,
};
use vakt::codec::event::decode_payload;

/// protocols.md §1.10 #1 (PIMA, CID 407 restore).
const PLAIN: &[u8] =
    b"\n7449003F\"ADM-CID\"0078R1L0#AAAA[#00AAAA|3407 01 001]_01:59:16,09-21-2023\r";

/// scan + parse + content/decrypt + payload decode of one frame at the start of `buf`;
/// returns the number of events.
fn decode(buf: &[u8], key: Option<&Key>) -> usize {
    let Scan::Frame { start, end } = scan(buf) else {
        return 0;
    };
    let Ok(frame) = parse(&buf[start..end]) else {
        return 0;
    };
    let content = match key {
        Some(k) => frame.decrypt(k),
        None => frame.content(),
    };
    let Ok(content) = content else { return 0 };
    decode_payload(frame.token, &content.data).map_or(0, |p| p.events.len())
}

fn bench(c: &mut Criterion) {
    let key = Key::from_hex("603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4")
        .expect("valid key");
    let now: jiff::Timestamp = "2025-03-01T10:15:00Z".parse().expect("valid timestamp");
    let mut encrypted = Vec::new();
    encode_frame_encrypted(
        &FrameSpec {
            id: "ADM-CID",
            seq: 78,
            receiver: Some("1"),
            line: Some("0"),
            account: "AAAA",
            data: b"#00AAAA|3407 01 001",
            xdata: &[],
            timestamp: Some(now),
        },
        &key,
        Pad::Fixed(b'P'),
        &mut encrypted,
    );
    assert_eq!(decode(PLAIN, None), 1);
    assert_eq!(decode(&encrypted, Some(&key)), 1);

    let mut g = c.benchmark_group("dc09");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_plain_adm_cid", |b| {
        b.iter(|| decode(black_box(PLAIN), None));
    });
    g.bench_function("decode_aes256_adm_cid", |b| {
        b.iter(|| decode(black_box(&encrypted), Some(&key)));
    });

    let plain_frame = parse(PLAIN).expect("plain frame parses");
    let enc_frame = parse(&encrypted).expect("encrypted frame parses");
    let mut out = Vec::with_capacity(256);
    g.bench_function("encode_ack", |b| {
        b.iter(|| {
            out.clear();
            encode_ack(black_box(&plain_frame), &mut out);
            out.len()
        });
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    g.bench_function("encode_ack_encrypted_aes256", |b| {
        b.iter(|| {
            out.clear();
            encode_ack_encrypted(black_box(&enc_frame), &key, now, &mut rng, &mut out);
            out.len()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
