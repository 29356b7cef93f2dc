//! Property tests for the voice codecs (SDP and RTP): no decoder panics on any bytes, every
//! result stays within its bounds, encode → parse round-trips, and offer/answer between any
//! offer and vakt holds RFC 3264's shape.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;

use super::rtp::{
    self, DtmfSender, Extension, Header, MAX_PACKET_BYTES, Packet, ReceiverStats, Recorded,
    RtpError, TelephoneEvent,
};
use super::sdp::{
    self, AddrType, Attribute, Connection, Direction, Fmtp, Host, LocalMedia, LocalSession,
    MAX_FORMATS, MAX_MEDIA, Media, NegotiateError, Origin, Proto, RtpMap, Session,
};

/// The offers of proto/voice, to mutate.
const SDP_SEEDS: &[&str] = &[
    include_str!("../voice/pjsua-default.sdp"),
    include_str!("../voice/alarm-unit.sdp"),
    include_str!("../voice/g729-only.sdp"),
    include_str!("../voice/chrome-audio.sdp"),
    include_str!("../voice/hold-sendonly.sdp"),
    include_str!("../voice/hold-rfc2543.sdp"),
    include_str!("../voice/linphone-ipv6.sdp"),
    include_str!("../voice/trunk-pcma-ptime30.sdp"),
];

/// A seed with a few bytes replaced, inserted or removed, or whole lines dropped or repeated.
fn mutated_sdp() -> impl Strategy<Value = Vec<u8>> {
    (
        0..SDP_SEEDS.len(),
        vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..5), 0..8),
    )
        .prop_map(|(i, edits)| {
            let mut v = SDP_SEEDS[i].as_bytes().to_vec();
            for (at, byte, op) in edits {
                if v.is_empty() {
                    v.push(byte);
                    continue;
                }
                let at = at.index(v.len());
                match op {
                    0 => v[at] = byte,
                    1 => v.insert(at, byte),
                    2 => {
                        v.remove(at);
                    }
                    3 => {
                        // Drop the line holding `at`.
                        let start = v[..at]
                            .iter()
                            .rposition(|&b| b == b'\n')
                            .map_or(0, |p| p + 1);
                        let end = v[at..]
                            .iter()
                            .position(|&b| b == b'\n')
                            .map_or(v.len(), |p| at + p + 1);
                        v.drain(start..end);
                    }
                    _ => {
                        // Repeat the line holding `at`.
                        let start = v[..at]
                            .iter()
                            .rposition(|&b| b == b'\n')
                            .map_or(0, |p| p + 1);
                        let end = v[at..]
                            .iter()
                            .position(|&b| b == b'\n')
                            .map_or(v.len(), |p| at + p + 1);
                        let line = v[start..end].to_vec();
                        v.splice(end..end, line);
                    }
                }
            }
            v
        })
}

/// Lines of SDP-like grammar in any order.
fn sdp_lines() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("v=0".to_owned()),
        Just("o=- 1 1 IN IP4 192.0.2.1".to_owned()),
        Just("c=IN IP4 192.0.2.1".to_owned()),
        Just("c=IN IP6 ::".to_owned()),
        Just("t=0 0".to_owned()),
        "m=(audio|video) [0-9]{1,5} (RTP/AVP|RTP/SAVP|x) [0-9 ]{0,12}",
        "a=(rtpmap|fmtp|ptime|maxptime|sendonly|inactive|rtcp-mux|x):[ -~]{0,20}",
        "a=rtpmap:[0-9]{1,3} (PCMA|PCMU|telephone-event|G729)/[0-9]{1,5}",
        "[a-z]=[ -~]{0,20}",
    ];
    vec(line, 0..24).prop_map(|lines| {
        let mut body = "v=0\r\n".to_owned();
        for l in lines {
            body.push_str(&l);
            body.push_str("\r\n");
        }
        body.into_bytes()
    })
}

fn vakt() -> LocalMedia {
    LocalMedia {
        address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        port: 40000,
        rtcp_mux: true,
    }
}

/// Everything about a parsed session that must hold, and what vakt does with it.
fn exercise_sdp(raw: &[u8]) {
    let Ok(s) = sdp::parse(raw) else { return };
    assert!(s.media.len() <= MAX_MEDIA);
    for m in &s.media {
        assert!(!m.formats.is_empty() && m.formats.len() <= MAX_FORMATS);
        assert!(m.payload_types().all(|pt| pt <= 127));
        assert!(m.port == 0 || s.connection_of(m).is_some());
    }
    let again = sdp::parse(&s.encode()).expect("an encoded session parses");
    assert_eq!(again, s);
    let _ = s.is_hold();
    let mut ls = LocalSession::new(vakt(), 1, 1);
    match ls.answer(&s, Direction::SendRecv) {
        Ok(a) => {
            let back = sdp::parse(&a.sdp).expect("vakt's answer parses");
            // RFC 3264 §6: as many m= lines, in order, of the same kind; one taken.
            assert_eq!(back.media.len(), s.media.len());
            for (o, b) in s.media.iter().zip(&back.media) {
                assert_eq!(o.kind, b.kind);
            }
            let taken: Vec<&Media> = back.media.iter().filter(|m| m.port != 0).collect();
            assert_eq!(taken.len(), 1);
            let n = a.negotiated;
            let m = &s.media[n.media_index];
            assert!(m.is_audio() && m.proto.is_plain_rtp());
            assert_eq!(m.codec(n.payload_type), Some(n.codec));
            assert_eq!(taken[0].codec(n.payload_type), Some(n.codec));
            assert_eq!(
                n.direction,
                Direction::answer(s.direction_of(m), Direction::SendRecv)
            );
            if let Some(d) = n.dtmf_payload_type {
                assert_eq!(taken[0].dtmf_pt(), Some(d));
            }
            assert_eq!(n.remote, s.rtp_address(m));
        }
        Err(e) => {
            assert!(matches!(
                e,
                NegotiateError::NoAudio | NegotiateError::Transport | NegotiateError::NoCodec
            ));
            assert!(e.warning().is_some());
        }
    }
    // vakt's own offer, answered by whatever this session says.
    let _ = ls.offer(Direction::SendRecv);
    let _ = ls.take_answer(&s);
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._/+-]{0,11}"
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    ]
}

fn connection() -> impl Strategy<Value = Connection> {
    prop_oneof![
        ip().prop_map(Connection::ip),
        ("[a-z]{1,8}\\.example", any::<bool>()).prop_map(|(n, v6)| Connection {
            addr_type: if v6 { AddrType::Ip6 } else { AddrType::Ip4 },
            host: Host::Name(n),
        }),
    ]
}

fn direction() -> impl Strategy<Value = Option<Direction>> {
    prop::option::of(prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive),
    ])
}

fn attribute() -> impl Strategy<Value = Attribute> {
    (
        "x-[a-z]{1,8}",
        prop::option::of("[ -~]{0,16}".prop_map(|v| v.trim_end().to_owned())),
    )
        .prop_map(|(name, value)| Attribute { name, value })
}

fn media() -> impl Strategy<Value = Media> {
    (
        prop_oneof![Just("audio".to_owned()), Just("video".to_owned()), token()],
        any::<u16>(),
        prop::option::of(1u16..8),
        prop_oneof![
            Just(Proto::RtpAvp),
            Just(Proto::RtpAvpf),
            Just(Proto::RtpSavp),
            Just(Proto::UdpTlsRtpSavpf),
        ],
        vec(0u8..128, 1..8),
        prop::option::of(connection()),
        vec(
            (
                0u8..128,
                "[A-Za-z][A-Za-z0-9-]{0,10}",
                1u32..100_000,
                prop::option::of(1u16..3),
            ),
            0..4,
        ),
        vec((0u8..128, "[!-~][ -~]{0,10}"), 0..3),
        (
            prop::option::of(1u32..=1000),
            prop::option::of(1u32..=1000),
            direction(),
            any::<bool>(),
            vec(attribute(), 0..3),
        ),
    )
        .prop_map(
            |(kind, port, port_count, proto, pts, connection, maps, fmtps, rest)| {
                let (ptime, maxptime, direction, rtcp_mux, other) = rest;
                let mut rtpmaps: Vec<RtpMap> = Vec::new();
                for (pt, encoding, clock_rate, channels) in maps {
                    if rtpmaps.iter().all(|r| r.payload_type != pt) {
                        rtpmaps.push(RtpMap {
                            payload_type: pt,
                            encoding,
                            clock_rate,
                            channels,
                        });
                    }
                }
                let mut f: Vec<Fmtp> = Vec::new();
                for (pt, params) in fmtps {
                    if f.iter().all(|x| x.format != pt.to_string()) {
                        f.push(Fmtp {
                            format: pt.to_string(),
                            params: params.trim_end().to_owned(),
                        });
                    }
                }
                Media {
                    kind,
                    port,
                    port_count,
                    proto,
                    formats: pts.iter().map(u8::to_string).collect(),
                    connection,
                    rtpmaps,
                    fmtps: f,
                    ptime,
                    maxptime,
                    direction,
                    rtcp_mux,
                    other,
                }
            },
        )
}

fn session() -> impl Strategy<Value = Session> {
    (
        (token(), "[0-9]{1,20}", "[0-9]{1,20}", ip()),
        "[ -~]{0,16}",
        connection(),
        (any::<u32>(), any::<u32>()),
        direction(),
        vec(attribute(), 0..3),
        vec(media(), 0..4),
    )
        .prop_map(
            |((user, id, ver, oip), name, c, t, direction, other, media)| Session {
                origin: Origin {
                    username: user,
                    session_id: id,
                    session_version: ver,
                    addr_type: if oip.is_ipv4() {
                        AddrType::Ip4
                    } else {
                        AddrType::Ip6
                    },
                    address: oip.to_string(),
                },
                name: name.trim().to_owned(),
                connection: Some(c),
                timing: (u64::from(t.0), u64::from(t.1)),
                direction,
                other,
                media,
            },
        )
}

/// A header, CSRC bytes, an extension (profile, data), a payload and a padding count.
type PacketParts = (Header, Vec<u8>, Option<(u16, Vec<u8>)>, Vec<u8>, u8);

fn packet_parts() -> impl Strategy<Value = PacketParts> {
    (
        (
            any::<bool>(),
            0u8..128,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_filter("not read as RTCP", |(m, pt, ..)| {
                !((72..=76).contains(pt) || (*m && (64..=95).contains(pt)))
            })
            .prop_map(|(marker, payload_type, sequence, timestamp, ssrc)| Header {
                marker,
                payload_type,
                sequence,
                timestamp,
                ssrc,
            }),
        (0usize..=15).prop_flat_map(|n| vec(any::<u8>(), n * 4)),
        prop::option::of((
            any::<u16>(),
            (0usize..8).prop_flat_map(|n| vec(any::<u8>(), n * 4)),
        )),
        vec(any::<u8>(), 0..400),
        any::<u8>(),
    )
}

proptest! {
    // 512 cases by default; PROPTEST_CASES=n runs more (e.g. in a nightly job).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn sdp_never_panics_on_any_bytes(raw in vec(any::<u8>(), 0..2048)) {
        exercise_sdp(&raw);
    }

    #[test]
    fn sdp_never_panics_on_mutated_offers(raw in mutated_sdp()) {
        exercise_sdp(&raw);
    }

    #[test]
    fn sdp_never_panics_on_sdp_like_lines(raw in sdp_lines()) {
        exercise_sdp(&raw);
    }

    #[test]
    fn sdp_encode_parse_round_trips(s in session()) {
        let raw = s.encode();
        prop_assert_eq!(sdp::parse(&raw), Ok(s));
    }

    #[test]
    fn offer_answer_between_vakts_agrees(
        a_ip in ip().prop_filter("specified", |i| !i.is_unspecified()),
        b_ip in ip().prop_filter("specified", |i| !i.is_unspecified()), a_port in 1u16.., b_port in 1u16..,
        a_mux in any::<bool>(), b_mux in any::<bool>(), hold in any::<bool>(),
        ids in (any::<u64>(), 0u64..1_000_000),
    ) {
        let la = LocalMedia { address: a_ip, port: a_port, rtcp_mux: a_mux };
        let lb = LocalMedia { address: b_ip, port: b_port, rtcp_mux: b_mux };
        let mut a = LocalSession::new(la, ids.0, ids.1);
        let mut b = LocalSession::new(lb, ids.1, ids.0);
        let offer = sdp::parse(&a.offer(Direction::SendRecv)).expect("offer parses");
        let answer = b.answer(&offer, Direction::SendRecv).expect("vakt takes its own offer");
        let n = a.take_answer(&sdp::parse(&answer.sdp).expect("answer parses")).expect("agreed");
        prop_assert_eq!(n.codec, answer.negotiated.codec);
        prop_assert_eq!(n.dtmf_payload_type, Some(sdp::DEFAULT_DTMF_PT));
        prop_assert_eq!(n.rtcp_mux, a_mux && b_mux);
        prop_assert_eq!(n.remote.map(|r| r.port()), Some(b_port));
        prop_assert_eq!(answer.negotiated.remote.map(|r| r.port()), Some(a_port));
        if hold {
            let v = a.version();
            let re = sdp::parse(&a.hold()).expect("re-offer parses");
            prop_assert_eq!(a.version(), v.saturating_add(1));
            prop_assert_eq!(&re.origin.session_id, &ids.0.to_string());
            prop_assert!(re.is_hold());
            let answer = b.answer(&re, Direction::SendRecv).expect("hold answered");
            prop_assert_eq!(answer.negotiated.direction, Direction::RecvOnly);
            let n = a.take_answer(&sdp::parse(&answer.sdp).expect("parses")).expect("agreed");
            prop_assert_eq!(n.direction, Direction::SendOnly);
        }
    }

    #[test]
    fn rtp_never_panics_on_any_bytes(raw in vec(any::<u8>(), 0..1600)) {
        let is_rtcp = rtp::is_rtcp(&raw);
        match rtp::parse(&raw) {
            Ok(p) => {
                prop_assert!(!is_rtcp);
                prop_assert!(p.header.payload_type <= 127);
                prop_assert!(p.csrc.len() % 4 == 0 && p.csrcs().count() <= 15);
                prop_assert!(raw.len() <= MAX_PACKET_BYTES);
                let mut out = Vec::new();
                p.write(&mut out).expect("a parsed packet writes");
                prop_assert_eq!(out.len(), raw.len());
                prop_assert_eq!(rtp::parse(&out), Ok(p));
                let _ = TelephoneEvent::parse(p.payload);
            }
            Err(e) => {
                prop_assert!(!e.as_str().is_empty());
                if is_rtcp && raw.len() <= MAX_PACKET_BYTES {
                    prop_assert_eq!(e, RtpError::Rtcp);
                }
            }
        }
    }

    #[test]
    fn rtp_write_parse_round_trips((header, csrc, ext, payload, padding) in packet_parts()) {
        let p = Packet {
            header,
            csrc: &csrc,
            extension: ext.as_ref().map(|(profile, data)| Extension { profile: *profile, data }),
            payload: &payload,
            padding,
        };
        let mut out = Vec::new();
        p.write(&mut out).expect("writes");
        prop_assert_eq!(rtp::parse(&out), Ok(p));
    }

    #[test]
    fn telephone_event_round_trips(event in any::<u8>(), end in any::<bool>(), volume in 0u8..64, duration in any::<u16>()) {
        let e = TelephoneEvent { event, end, volume, duration };
        prop_assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Ok(e));
    }

    #[test]
    fn dtmf_sender_keeps_rfc4733_shape(event in 0u8..16, ms in rtp::TONE_MS, ts in any::<u32>()) {
        let s = DtmfSender::new(event, ms, ts).expect("in range");
        let ticks = ms.div_ceil(rtp::TICK_MS) as usize;
        let packets: Vec<_> = s.clone().collect();
        prop_assert_eq!(packets.len(), ticks + 2);
        prop_assert_eq!(s.samples() as usize, ticks * 160);
        prop_assert!(packets[0].marker);
        prop_assert!(packets[1..].iter().all(|p| !p.marker));
        prop_assert!(packets.iter().all(|p| p.timestamp == ts && p.event.event == event));
        prop_assert!(packets.windows(2).all(|w| w[0].event.duration <= w[1].event.duration));
        let ends: Vec<_> = packets.iter().filter(|p| p.event.end).collect();
        prop_assert_eq!(ends.len(), 3);
        prop_assert!(ends.iter().all(|p| u32::from(p.event.duration) == s.samples()));
        prop_assert!(packets[packets.len() - 3..].iter().all(|p| p.event.end));
    }

    #[test]
    fn receiver_stats_count_what_was_lost(
        first in any::<u16>(), ssrc in any::<u32>(), n in 3usize..600,
        drops in vec(any::<prop::sample::Index>(), 0..40),
    ) {
        // In order from `first` (through the wrap), some dropped; the first two always
        // arrive (A.1's probation) and so does the last.
        let mut lost = std::collections::BTreeSet::new();
        for d in drops {
            let i = d.index(n);
            if i >= 2 && i + 1 < n {
                lost.insert(i);
            }
        }
        let mut st = ReceiverStats::new(8000);
        for i in (0..n).filter(|i| !lost.contains(i)) {
            let h = Header {
                marker: false,
                payload_type: 0,
                sequence: first.wrapping_add(i as u16),
                timestamp: (i as u32).wrapping_mul(160),
                ssrc,
            };
            let r = st.record(&h, Duration::from_millis(20 * i as u64));
            prop_assert_eq!(r, if i == 0 { Recorded::NewSource } else { Recorded::Counted });
        }
        let r = st.report().expect("a source");
        prop_assert_eq!(r.expected as usize, n - 1);
        prop_assert_eq!(r.lost, lost.len() as i64);
        // Counting starts at the second packet: A.1's init_seq clears the cycles there.
        prop_assert_eq!(r.extended_highest, u32::from(first.wrapping_add(1)) + n as u32 - 2);
        prop_assert_eq!(r.jitter, 0);
    }

    #[test]
    fn receiver_stats_never_panic(packets in vec((0u32..3, any::<u16>(), any::<u32>(), any::<u32>()), 0..200)) {
        let mut st = ReceiverStats::new(8000);
        for (ssrc, seq, ts, ms) in packets {
            let h = Header { marker: false, payload_type: 0, sequence: seq, timestamp: ts, ssrc };
            let _ = st.record(&h, Duration::from_millis(u64::from(ms)));
            let _ = st.fraction_lost();
            if let Some(r) = st.report() {
                prop_assert_eq!(r.lost, i64::from(r.expected) - i64::from(r.received));
            }
        }
    }
}
