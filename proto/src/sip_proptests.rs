//! Property tests for SIP and SCAIP: no decoder panics on any bytes, framing makes
//! progress, and encode → parse round-trips.

use proptest::collection::vec;
use proptest::prelude::*;

use super::scaip::{Mrs, encode_mrs, parse_mrq, parse_mrs, sniff_ref};
use super::sip::{
    MAX_LIST_ITEMS, MAX_MESSAGE_BYTES, OutRequest, Scan, StartLine, authorization, check_nonce,
    encode_request, encode_request_with, encode_response, encode_response_from, ha1, header_uri,
    parse, parse_authorization, parse_challenge, parse_session_expires, scan, stamp_via,
    uri_matches, uri_number, verify,
};

/// Valid SIP messages to mutate.
const SIP_SEEDS: &[&[u8]] = &[
    b"MESSAGE sip:user2@domain.com SIP/2.0\r\nVia: SIP/2.0/UDP user1pc.domain.com;branch=z9hG4bK776sgdkse\r\nMax-Forwards: 70\r\nFrom: sip:user1@domain.com;tag=49583\r\nTo: sip:user2@domain.com\r\nCall-ID: asd88asd77a@1.2.3.4\r\nCSeq: 1 MESSAGE\r\nContent-Type: application/scaip+xml\r\nContent-Length: 72\r\n\r\n<mrq><ref>1234</ref><cid>123456</cid><dty>0001</dty><stc>001</stc></mrq>",
    b"MESSAGE sip:arc@vakt SIP/2.0\r\nv: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKa, SIP/2.0/UDP x;branch=z9hG4bKb\r\nf: \"A, B\" <sip:678@arc>;tag=1\r\nt: <sip:arc@vakt>\r\ni: abc\r\nCSeq: 5\r\n\tMESSAGE\r\nAuthorization: Digest username=\"678\", realm=\"vakt\", nonce=\"n\", uri=\"sip:arc@vakt\", response=\"0123456789abcdef0123456789abcdef\", qop=auth, nc=00000001, cnonce=\"c\"\r\nl: 0\r\n\r\n",
    b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:arc@vakt>;tag=2\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nWWW-Authenticate: Digest realm=\"vakt\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"\r\nContent-Length: 0\r\n\r\n",
    b"\r\n\r\n",
    b"INVITE sip:+46101234567@vakt SIP/2.0\r\nVia: SIP/2.0/UDP sbc:5060;branch=z9hG4bKs1;rport\r\nRecord-Route: <sip:sbc;lr>, \"a,b\" <sip:c;lr>\r\nFrom: <sip:+4670111@sbc;user=phone>;tag=a1\r\nTo: <sip:+46101234567@vakt>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:sbc:5060>\r\nP-Asserted-Identity: <tel:+4670333;cpc=x>\r\nSupported: timer, 100rel\r\nRequire: timer\r\nSession-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
    b"SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:arc@vakt>;tag=1\r\nTo: <sip:+4670@sbc>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nProxy-Authenticate: Digest realm=\"sbc\", nonce=\"abc\", opaque=\"o\", qop=\"auth,auth-int\", stale=FALSE\r\nContent-Length: 0\r\n\r\n",
];

/// Valid SCAIP bodies to mutate.
const XML_SEEDS: &[&[u8]] = &[
    b"<mrq><ref>1242</ref><cid>678</cid><dty>27</dty><stc>16</stc></mrq>",
    b"<?xml version=\"1.0\"?><s:mrq xmlns:s=\"http://www.hi.se/2012/XScaipXML\"><s:ref>1</s:ref><s:cid>678</s:cid><s:dty>3</s:dty><s:lge><s:geo>1,2</s:geo></s:lge></s:mrq>",
    b"<mrq><ref>&#49;</ref><cid><![CDATA[678]]></cid><dty>3</dty><x><y/></x><crd>sip:</crd><crd>gsm:</crd></mrq>",
    b"<mrs><ref>1243</ref><snu>0</snu><mre>1</mre></mrs>",
];

const AUTH_SEEDS: &[&str] = &[
    "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    "Digest username=\"a\\\"b\",realm=\"r\",uri=\"sip:a@b\",nonce=\"n\",response=\"00\",algorithm=MD5",
];

/// A seed with a few bytes replaced, inserted or removed.
fn mutated(seeds: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    (
        0..seeds.len(),
        vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
    )
        .prop_map(move |(i, edits)| {
            let mut v = seeds[i].to_vec();
            for (at, byte, op) in edits {
                if v.is_empty() {
                    v.push(byte);
                    continue;
                }
                let at = at.index(v.len());
                match op {
                    0 => v[at] = byte,
                    1 => v.insert(at, byte),
                    _ => {
                        v.remove(at);
                    }
                }
            }
            v
        })
}

/// Runs every SIP decoder over `input` as a stream buffer; checks the framing invariants.
fn exercise_sip(input: &[u8]) {
    let mut buf = input;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps <= input.len() + 1, "scan does not make progress");
        match scan(buf) {
            Scan::Message { len } => {
                assert!(len > 0 && len <= buf.len() && len <= MAX_MESSAGE_BYTES);
                exercise_message(&buf[..len]);
                buf = &buf[len..];
            }
            Scan::KeepAlive { n, ping } => {
                assert!(n > 0 && n <= buf.len());
                assert!(!ping || n == 4);
                buf = &buf[n..];
            }
            Scan::Incomplete | Scan::Invalid(_) => break,
        }
    }
    exercise_message(input);
}

fn exercise_message(raw: &[u8]) {
    let Ok(m) = parse(raw) else { return };
    let _ = (
        m.method(),
        m.call_id(),
        m.cseq(),
        m.from_tag(),
        m.to_tag(),
        m.top_via_branch(),
        m.from_uri().and_then(super::sip::uri_user),
        m.content_type(),
    );
    if let Some(a) = m.header("Authorization")
        && let Ok(c) = parse_authorization(a)
    {
        let _ = verify(&c, "MESSAGE", "0123456789abcdef0123456789abcdef");
    }
    if m.is_request() {
        let mut out = Vec::new();
        encode_response(&m, 200, "OK", "tag1", &[], None, b"", &mut out);
        let r = parse(&out).expect("our response to a parsed request parses");
        assert_eq!(r.call_id(), m.call_id());
        assert_eq!(r.cseq(), m.cseq());
        assert_eq!(
            r.headers_named("Via").count(),
            m.headers_named("Via").count()
        );
        // Stamped with the source (received / rport): still parses, same transaction.
        let mut out = Vec::new();
        let src = "192.0.2.7:41000".parse().expect("address");
        encode_response_from(Some(src), &m, 200, "OK", "tag1", &[], None, b"", &mut out);
        let r = parse(&out).expect("our stamped response to a parsed request parses");
        assert_eq!(r.call_id(), m.call_id());
        assert_eq!(
            r.headers_named("Via").count(),
            m.headers_named("Via").count()
        );
        let _ = m.contact_uri();
    }
    for name in ["Record-Route", "Supported", "Require", "Allow", "Via"] {
        let items = m.list(name);
        assert!(items.len() <= MAX_LIST_ITEMS);
        assert!(items.iter().all(|i| !i.is_empty()));
        for i in items {
            let _ = header_uri(i);
        }
    }
    let _ = (
        m.to_uri(),
        m.asserted_identity().and_then(uri_number),
        m.from_uri().and_then(uri_number),
        m.seconds("Min-SE"),
        m.lists("Supported", "timer"),
    );
    if let Some(se) = m.session_expires() {
        assert!(se.secs > 0 && se.secs < 1 << 31);
    }
    for h in ["WWW-Authenticate", "Proxy-Authenticate"] {
        if let Some(v) = m.header(h)
            && let Ok(c) = parse_challenge(v)
        {
            let a = authorization("u", "p", &c, "INVITE", "sip:a@b", "cn", 1);
            let creds = parse_authorization(&a).expect("our answer parses");
            assert!(verify(&creds, "INVITE", &ha1("u", &c.realm, "p")));
        }
    }
    let _ = parse_mrq(m.body);
    let _ = sniff_ref(m.body);
}

fn exercise_xml(input: &[u8]) {
    if let Ok(m) = parse_mrq(input) {
        assert!(!m.reference.is_empty() && m.reference.len() <= 16);
        assert!(!m.cid.is_empty() && m.cid.bytes().all(|b| b.is_ascii_digit()));
    }
    if let Some(r) = sniff_ref(input) {
        assert!(!r.is_empty() && r.len() <= 16 && r.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    if let Ok(m) = parse_mrs(input) {
        let mut out = Vec::new();
        encode_mrs(&m, &mut out);
        assert_eq!(parse_mrs(&out), Ok(m), "re-encoded mrs");
    }
}

/// `s` as the inside of a quoted-string.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,16}"
}

prop_compose! {
    fn out_request()(
        method in "[A-Z]{3,9}",
        user in "[a-z0-9]{1,10}",
        host in "[a-z0-9.]{1,20}",
        transport in prop::sample::select(vec!["UDP", "TCP", "TLS"]),
        branch in token(),
        from_tag in token(),
        call_id in "[A-Za-z0-9@.-]{1,32}",
        cseq in 0u32..(1 << 31),
        body in vec(any::<u8>(), 0..512),
        ct in prop::option::of(Just("application/scaip+xml")),
    ) -> (String, String, String, &'static str, String, String, String, u32, Vec<u8>, Option<&'static str>) {
        (method, format!("sip:{user}@{host}"), host, transport, format!("z9hG4bK{branch}"),
         from_tag, call_id, cseq, body, ct)
    }
}

fn mrs_strategy() -> impl Strategy<Value = Mrs> {
    let opt_text = |re: &'static str| prop::option::of(re);
    (
        prop::option::of(token()),
        any::<u8>(),
        opt_text("[!-~]([ -~]{0,126}[!-~])?"),
        opt_text("[0-9]{1,2}\\.[0-9]{1,2}"),
        prop::option::of(0u8..=9),
        opt_text("[0-9]{1,2}"),
        opt_text("(gsm|sip):[!-~]{0,40}"),
        prop::option::of(1u16..=1440),
    )
        .prop_map(|(reference, snu, ste, cve, mre, cre, tnu, hbi)| Mrs {
            reference,
            snu,
            ste,
            cve,
            mre,
            cre,
            tnu,
            hbi,
        })
}

proptest! {
    #[test]
    fn sip_never_panics_on_bytes(input in vec(any::<u8>(), 0..2048)) {
        exercise_sip(&input);
    }

    #[test]
    fn sip_never_panics_on_mutated_seeds(input in mutated(SIP_SEEDS)) {
        exercise_sip(&input);
    }

    #[test]
    fn xml_never_panics_on_bytes(input in vec(any::<u8>(), 0..1024)) {
        exercise_xml(&input);
    }

    #[test]
    fn xml_never_panics_on_mutated_seeds(input in mutated(XML_SEEDS)) {
        exercise_xml(&input);
    }

    #[test]
    fn authorization_never_panics(s in ".{0,300}", i in 0..AUTH_SEEDS.len(), cut in any::<prop::sample::Index>(), c in any::<char>()) {
        let _ = parse_authorization(&s);
        let seed = AUTH_SEEDS[i];
        let mut chars: Vec<char> = seed.chars().collect();
        let at = cut.index(chars.len());
        chars[at] = c;
        let m: String = chars.iter().collect();
        if let Ok(creds) = parse_authorization(&m) {
            let _ = verify(&creds, "MESSAGE", "00");
        }
        let _ = parse_authorization(&seed[..seed.char_indices().nth(at).map_or(0, |(b, _)| b)]);
        let _ = check_nonce(b"k", &s, 0, 300);
    }

    #[test]
    fn via_stamping_never_panics(s in ".{0,200}", port in any::<u16>(), v6 in any::<bool>()) {
        let src: std::net::SocketAddr = if v6 {
            (std::net::Ipv6Addr::LOCALHOST, port).into()
        } else {
            ([192, 0, 2, 7], port).into()
        };
        let _ = stamp_via(&s, src);
    }

    #[test]
    fn uri_comparison_is_total_reflexive_and_symmetric(
        a in "(sips?|SIP|tel)?:?([a-zA-Z0-9%:.@\\[\\];=?-]{0,40})",
        b in "(sips?|SIP|tel)?:?([a-zA-Z0-9%:.@\\[\\];=?-]{0,40})",
        raw in ".{0,80}",
    ) {
        prop_assert!(uri_matches(&a, &a));
        prop_assert!(uri_matches(&raw, &raw));
        prop_assert_eq!(uri_matches(&a, &b), uri_matches(&b, &a));
        prop_assert_eq!(uri_matches(&raw, &a), uri_matches(&a, &raw));
    }

    #[test]
    fn encode_request_round_trips(r in out_request()) {
        let (method, uri, host, transport, branch, from_tag, call_id, cseq, body, ct) = &r;
        let req = OutRequest {
            method, uri, via_transport: transport, via_host: host, branch,
            from: "<sip:arc@vakt>", from_tag, to: uri, call_id, cseq: *cseq,
            content_type: *ct, body,
        };
        let mut out = Vec::new();
        encode_request(&req, &mut out);
        prop_assert_eq!(scan(&out), Scan::Message { len: out.len() });
        let m = parse(&out).expect("parse");
        prop_assert_eq!(m.start, StartLine::Request { method, uri });
        prop_assert_eq!(m.call_id(), call_id.as_str());
        prop_assert_eq!(m.cseq(), (*cseq, method.as_str()));
        prop_assert_eq!(m.from_tag(), Some(from_tag.as_str()));
        prop_assert_eq!(m.top_via_branch(), Some(branch.as_str()));
        prop_assert_eq!(m.body, body.as_slice());
        prop_assert_eq!(m.content_type(), if body.is_empty() { None } else { *ct });
    }

    #[test]
    fn invite_headers_never_panic(s in ".{0,300}") {
        let _ = parse_challenge(&s);
        let _ = parse_session_expires(&s);
        let _ = uri_number(&s);
        let _ = header_uri(&s);
    }

    #[test]
    fn client_digest_round_trips(
        user in "[ -~]{1,20}",
        password in "[ -~]{0,20}",
        realm in "[ -~]{1,20}",
        nonce in "[ -~]{1,40}",
        opaque in prop::option::of("[ -~]{0,20}"),
        qop in any::<bool>(),
        nc in 1u32..,
        method in "[A-Z]{3,9}",
    ) {
        // vakt's client answer to a challenge (quoted values escaped) is what a server checks.
        let mut ch = format!("Digest realm=\"{}\", nonce=\"{}\"", esc(&realm), esc(&nonce));
        if let Some(o) = &opaque {
            ch.push_str(&format!(", opaque=\"{}\"", esc(o)));
        }
        if qop {
            ch.push_str(", qop=\"auth\"");
        }
        let c = parse_challenge(&ch).expect("challenge parses");
        prop_assert_eq!(c.realm.as_ref(), realm.as_str());
        prop_assert_eq!(c.nonce.as_ref(), nonce.as_str());
        let a = authorization(&user, &password, &c, &method, "sip:arc@vakt", "cn0", nc);
        let creds = parse_authorization(&a).expect("answer parses");
        prop_assert_eq!(creds.username.as_ref(), user.as_str());
        prop_assert_eq!(creds.opaque.as_deref(), opaque.as_deref());
        prop_assert!(verify(&creds, &method, &ha1(&user, &realm, &password)));
    }

    #[test]
    fn encode_request_with_round_trips(r in out_request(), route in "[a-z0-9.]{1,20}") {
        let (method, uri, host, transport, branch, from_tag, call_id, cseq, body, ct) = &r;
        let req = OutRequest {
            method, uri, via_transport: transport, via_host: host, branch,
            from: "<sip:arc@vakt>", from_tag, to: uri, call_id, cseq: *cseq,
            content_type: *ct, body,
        };
        let r1 = format!("<sip:{route};lr>");
        let mut out = Vec::new();
        encode_request_with(&req, &[("Route", &r1), ("Route", "<sip:p2;lr>"), ("Supported", "timer")], &mut out);
        prop_assert_eq!(scan(&out), Scan::Message { len: out.len() });
        let m = parse(&out).expect("parse");
        prop_assert_eq!(m.list("Route"), vec![r1.as_str(), "<sip:p2;lr>"]);
        prop_assert!(m.lists("Supported", "timer"));
        prop_assert_eq!(m.body, body.as_slice());
    }

    #[test]
    fn encode_mrs_round_trips(m in mrs_strategy()) {
        let mut out = Vec::new();
        encode_mrs(&m, &mut out);
        prop_assert_eq!(parse_mrs(&out), Ok(m.clone()));
        prop_assert_eq!(sniff_ref(&out), m.reference.clone());
    }

    #[test]
    fn stream_split_arbitrarily_scans_back(
        picks in vec((0..3usize, prop::bool::ANY), 1..8),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        // N messages (some preceded by a keep-alive ping), then cut into pieces.
        let mut stream = Vec::new();
        let mut expect = Vec::new();
        for (i, ping) in &picks {
            if *ping {
                stream.extend_from_slice(b"\r\n\r\n");
            }
            stream.extend_from_slice(SIP_SEEDS[*i]);
            expect.push(SIP_SEEDS[*i].to_vec());
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut pings = 0;
        let mut fed = 0;
        for p in points {
            buf.extend_from_slice(&stream[fed..p]);
            fed = p;
            loop {
                match scan(&buf) {
                    Scan::Message { len } => {
                        got.push(buf.drain(..len).collect::<Vec<u8>>());
                    }
                    Scan::KeepAlive { n, ping } => {
                        pings += usize::from(ping);
                        buf.drain(..n);
                    }
                    Scan::Incomplete => break,
                    Scan::Invalid(e) => panic!("invalid: {e:?}"),
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, expect);
        prop_assert_eq!(pings, picks.iter().filter(|(_, p)| *p).count());
    }
}
