//! Codec hot paths: DC-09 (decode a plain and an AES-256 ADM-CID frame, encode ACK and
//! *ACK) and SCAIP (parse an authenticated SIP MESSAGE, verify its Digest, parse the `<mrq>`,
//! encode the `<mrs>`).
//!
//! Run: `cargo bench --bench codec` (quick check: `cargo bench --bench codec -- --quick`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use vakt_proto::crypto::Key;
use vakt_proto::dc09::{
    FrameSpec, Pad, Scan, encode_ack, encode_ack_encrypted, encode_frame_encrypted, parse, scan,
};
use vakt_proto::payload::decode_payload;
use vakt_proto::{scaip, sip};

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

/// A device's authenticated SIP MESSAGE with an alarm body.
fn scaip_message() -> Vec<u8> {
    let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><mrq xmlns=\"http://www.hi.se/2012/XScaipXML\"><ref>1243</ref><cid>678</cid><dty>0005</dty><dco>002</dco><lco>011</lco><lte>Badrum</lte><crd>gsm:+46701740600</crd></mrq>";
    let ha1 = sip::ha1("luc678", "vakt", "s3cret-678");
    let nonce = sip::make_nonce(b"bench-secret", 1_800_000_000, 42);
    let response = sip::digest_response(
        &ha1,
        &nonce,
        Some("00000001"),
        Some("0a4f113b"),
        Some("auth"),
        "MESSAGE",
        "sip:arc@vakt",
    );
    let mut m = format!(
        "MESSAGE sip:arc@vakt SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK776asdhds;rport\r\nMax-Forwards: 70\r\nFrom: <sip:678@vakt>;tag=49583\r\nTo: <sip:arc@vakt>\r\nCall-ID: a84b4c76e66710@10.1.2.3\r\nCSeq: 2 MESSAGE\r\nAuthorization: Digest username=\"luc678\", realm=\"vakt\", nonce=\"{nonce}\", uri=\"sip:arc@vakt\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"\r\nContent-Type: application/scaip+xml\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

fn bench_scaip(c: &mut Criterion) {
    let msg = scaip_message();
    let ha1 = sip::ha1("luc678", "vakt", "s3cret-678");
    let mut g = c.benchmark_group("scaip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sip_parse_message", |b| {
        b.iter(|| sip::parse(black_box(&msg)).map(|m| m.body.len()));
    });
    let parsed = sip::parse(&msg).expect("message parses");
    let auth = parsed.header("Authorization").expect("authorization");
    g.bench_function("digest_parse_and_verify", |b| {
        b.iter(|| {
            let creds = sip::parse_authorization(black_box(auth)).expect("credentials");
            sip::verify(&creds, "MESSAGE", &ha1)
        });
    });
    assert!(sip::verify(
        &sip::parse_authorization(auth).expect("credentials"),
        "MESSAGE",
        &ha1
    ));
    g.bench_function("mrq_parse", |b| {
        b.iter(|| scaip::parse_mrq(black_box(parsed.body)).map(|m| m.dty));
    });
    let mrs = scaip::Mrs {
        reference: Some("1243".into()),
        snu: 0,
        mre: Some(1),
        ..scaip::Mrs::default()
    };
    let mut out = Vec::with_capacity(128);
    g.bench_function("mrs_encode", |b| {
        b.iter(|| {
            out.clear();
            scaip::encode_mrs(black_box(&mrs), &mut out);
            out.len()
        });
    });
    g.finish();
}

criterion_group!(benches, bench, bench_scaip);
criterion_main!(benches);
