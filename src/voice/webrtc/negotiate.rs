//! Offer/answer for the browser's leg, sans-IO: the browser's SDP offer in, an `Rtc` (str0m's
//! peer connection) that answers as ICE-lite with vakt's host candidates, and the answer out.
//!
//! The answer carries exactly one audio codec, so the browser has no choice to make: the
//! G.711 law the other leg uses when the browser offers it, else the other law (relayed as it
//! is; the caller converts if it must), else the offer is refused ([`WebRtcError::NoG711`]).
//! str0m narrows a session's codecs to the ones its config enables, so the offer is tried
//! with one law enabled at a time; `SdpOffer` cannot be inspected or cloned, so each try
//! parses the text again (an offer is a few kilobytes, bounded by [`MAX_OFFER_BYTES`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::crypto::CryptoProvider;
use str0m::crypto::dtls::DtlsCert;
use str0m::media::{Mid, Pt};
use str0m::net::Transmit;
use str0m::{Candidate, Output, Rtc, RtcConfig, RtcError};

use super::{G711, WebRtcError};

/// The longest offer taken (a browser's audio offer is 3 to 6 KB).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

/// Most outputs drained after the answer before giving up (str0m produces a handful).
const MAX_DRAIN: usize = 256;

/// How often str0m reports its RTP statistics (packets, loss, jitter).
pub(super) const STATS_EVERY: Duration = Duration::from_secs(1);

/// A negotiated leg, before its socket is driven.
pub(super) struct Negotiated {
    /// The peer connection, answered.
    pub rtc: Rtc,
    /// The audio media the leg sends and receives on.
    pub mid: Mid,
    /// The payload type of [`Negotiated::codec`] in this session (0 or 8).
    pub pt: Pt,
    /// The one codec of the answer.
    pub codec: G711,
    /// The SDP answer for the browser.
    pub answer: String,
    /// Datagrams str0m wanted sent while answering (none in practice: nothing is sent before
    /// the browser's first ICE check); the leg sends them first.
    pub transmits: Vec<Transmit>,
}

impl std::fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Negotiated")
            .field("mid", &self.mid)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

/// Answers `offer` as ICE-lite with host candidates at `candidates` (the first is where the
/// leg's datagrams arrive), DTLS with `cert`, and one G.711 law, `prefer` first.
pub(super) fn negotiate(
    offer: &str,
    prefer: G711,
    candidates: &[SocketAddr],
    crypto: &Arc<CryptoProvider>,
    cert: &DtlsCert,
    now: Instant,
) -> Result<Negotiated, WebRtcError> {
    if offer.len() > MAX_OFFER_BYTES {
        return Err(WebRtcError::BadOffer(format!(
            "longer than {MAX_OFFER_BYTES} bytes"
        )));
    }
    let mut last = WebRtcError::NoG711;
    for codec in [prefer, prefer.other()] {
        match try_codec(offer, codec, candidates, crypto, cert, now) {
            Ok(n) => return Ok(n),
            Err(WebRtcError::NoG711) => continue,
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn try_codec(
    offer: &str,
    codec: G711,
    candidates: &[SocketAddr],
    crypto: &Arc<CryptoProvider>,
    cert: &DtlsCert,
    now: Instant,
) -> Result<Negotiated, WebRtcError> {
    let parsed = SdpOffer::from_sdp_string(offer)
        .map_err(|_| WebRtcError::BadOffer("not an SDP offer".to_string()))?;
    let config = RtcConfig::new()
        .set_crypto_provider(Arc::clone(crypto))
        .set_dtls_cert(cert.clone())
        .set_ice_lite(true)
        .set_stats_interval(Some(STATS_EVERY))
        // Frames go on as they come: the caller's device and the recording place them by
        // their timestamps, and waiting here for a late one would hold up the ones behind it.
        // The leg drops what comes after a later frame.
        .set_reordering_size_audio(0)
        .clear_codecs();
    let config = match codec {
        G711::Pcmu => config.enable_pcmu(true),
        G711::Pcma => config.enable_pcma(true),
    };
    let mut rtc = config.build(now);
    for addr in candidates {
        let candidate = Candidate::host(*addr, "udp")
            .map_err(|e| WebRtcError::Internal(format!("candidate {addr}: {e}")))?;
        rtc.add_local_candidate(candidate);
    }
    let answer = rtc.sdp_api().accept_offer(parsed).map_err(|e| match e {
        RtcError::RemoteSdp(reason) => WebRtcError::BadOffer(reason),
        RtcError::Sdp(_) => WebRtcError::BadOffer("not an SDP offer".to_string()),
        other => WebRtcError::Internal(other.to_string()),
    })?;
    let mut transmits = Vec::new();
    for _ in 0..MAX_DRAIN {
        match rtc.poll_output() {
            Ok(Output::Timeout(_)) => break,
            Ok(Output::Transmit(t)) => transmits.push(t),
            Ok(Output::Event(_)) => {}
            Err(e) => return Err(WebRtcError::Internal(e.to_string())),
        }
    }
    let pt = Pt::from(codec.payload_type());
    let answer = answer.to_sdp_string();
    let mid = audio_mids(&answer)
        .find(|mid| {
            rtc.media(*mid)
                .is_some_and(|m| m.remote_pts().contains(&pt))
        })
        .ok_or(WebRtcError::NoG711)?;
    Ok(Negotiated {
        rtc,
        mid,
        pt,
        codec,
        answer,
        transmits,
    })
}

/// The mids of the audio sections of an answer str0m wrote. (str0m tells a media's mid by
/// an event only once the peer is connected, and keeps the parsed SDP to itself; its own
/// answer's `m=audio` sections and their `a=mid` lines say it now.)
fn audio_mids(answer: &str) -> impl Iterator<Item = Mid> + '_ {
    let mut in_audio = false;
    answer.lines().filter_map(move |line| {
        if line.starts_with("m=") {
            in_audio = line.starts_with("m=audio ");
            None
        } else if in_audio {
            line.strip_prefix("a=mid:").map(|m| Mid::from(m.trim()))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};
    use str0m::media::{Direction, MediaKind};

    fn crypto() -> Arc<CryptoProvider> {
        super::super::crypto_provider()
    }

    fn cert() -> DtlsCert {
        crypto()
            .dtls_provider
            .generate_certificate()
            .expect("a certificate")
    }

    /// An offer as a browser makes it (opus first), made by a str0m peer; `None` for the
    /// payload types' order means opus, PCMU, PCMA.
    fn offer_with(codecs: &[&str]) -> String {
        let mut config = RtcConfig::new()
            .set_crypto_provider(crypto())
            .clear_codecs();
        for c in codecs {
            config = match *c {
                "opus" => config.enable_opus(true),
                "pcmu" => config.enable_pcmu(true),
                "pcma" => config.enable_pcma(true),
                "g722" => config.enable_g722(true),
                other => panic!("no codec {other}"),
            };
        }
        let mut rtc = config.build(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, _pending) = api.apply().expect("an offer");
        offer.to_sdp_string()
    }

    fn host(last: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), port)
    }

    fn answer_for(offer: &str, prefer: G711) -> Result<Negotiated, WebRtcError> {
        negotiate(
            offer,
            prefer,
            &[host(1, 41_000)],
            &crypto(),
            &cert(),
            Instant::now(),
        )
    }

    /// The payload types of the answer's audio line.
    fn audio_pts(answer: &str) -> Vec<String> {
        let line = answer
            .lines()
            .find(|l| l.starts_with("m=audio"))
            .expect("an audio line");
        line.split_whitespace()
            .skip(3)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_other_legs_law_is_chosen_when_the_browser_offers_both() {
        let offer = offer_with(&["opus", "pcmu", "pcma", "g722"]);
        let a = answer_for(&offer, G711::Pcma).unwrap();
        assert_eq!(a.codec, G711::Pcma);
        assert_eq!(a.pt, Pt::from(8));
        assert_eq!(audio_pts(&a.answer), ["8"]);
        let u = answer_for(&offer, G711::Pcmu).unwrap();
        assert_eq!(u.codec, G711::Pcmu);
        assert_eq!(audio_pts(&u.answer), ["0"]);
    }

    #[test]
    fn the_other_law_is_taken_when_the_preferred_one_is_not_offered() {
        let offer = offer_with(&["opus", "pcmu"]);
        let a = answer_for(&offer, G711::Pcma).unwrap();
        assert_eq!(a.codec, G711::Pcmu);
        assert_eq!(audio_pts(&a.answer), ["0"]);
    }

    #[test]
    fn an_offer_without_g711_is_refused() {
        let offer = offer_with(&["opus", "g722"]);
        assert!(matches!(
            answer_for(&offer, G711::Pcmu),
            Err(WebRtcError::NoG711)
        ));
    }

    #[test]
    fn the_answer_is_ice_lite_with_every_host_candidate() {
        let offer = offer_with(&["opus", "pcmu", "pcma"]);
        let n = negotiate(
            &offer,
            G711::Pcmu,
            &[host(1, 41_000), host(2, 41_000)],
            &crypto(),
            &cert(),
            Instant::now(),
        )
        .unwrap();
        assert!(n.answer.contains("a=ice-lite"), "{}", n.answer);
        assert!(n.answer.contains("a=fingerprint:sha-256"), "{}", n.answer);
        let candidates: Vec<&str> = n
            .answer
            .lines()
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        assert_eq!(candidates.len(), 2, "{}", n.answer);
        assert!(
            candidates
                .iter()
                .any(|c| c.contains("10.0.0.1 41000 typ host"))
        );
        assert!(
            candidates
                .iter()
                .any(|c| c.contains("10.0.0.2 41000 typ host"))
        );
    }

    #[test]
    fn what_is_not_an_offer_is_refused_with_a_reason() {
        for text in ["", "hello", "v=0\r\n", &"x".repeat(MAX_OFFER_BYTES + 1)] {
            match answer_for(text, G711::Pcmu) {
                Err(WebRtcError::BadOffer(_)) => {}
                other => panic!("{:?}: {other:?}", text.get(..20)),
            }
        }
    }

    #[test]
    fn an_offer_without_a_fingerprint_is_refused() {
        let offer = offer_with(&["pcmu"]);
        let stripped: String = offer
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert!(matches!(
            answer_for(&stripped, G711::Pcmu),
            Err(WebRtcError::BadOffer(_))
        ));
    }

    #[test]
    fn the_mids_of_audio_sections_only_are_read() {
        let sdp = "v=0\r\na=mid:session\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=sendrecv\r\na=mid:a1\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:d1\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=mid:a2\r\n";
        let mids: Vec<Mid> = audio_mids(sdp).collect();
        assert_eq!(mids, [Mid::from("a1"), Mid::from("a2")]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any text, and any mangling of a real offer, is answered or refused: never a panic.
        #[test]
        fn any_offer_is_answered_or_refused(
            junk in "\\PC{0,400}",
            cut in 0usize..4000,
            line in 0usize..40,
            insert in "[a-z=:0-9 /\\-]{0,40}",
        ) {
            let _ = answer_for(&junk, G711::Pcmu);
            let offer = offer_with(&["opus", "pcmu", "pcma"]);
            let end = offer.char_indices().map(|(i, _)| i).find(|&i| i >= cut).unwrap_or(offer.len());
            let _ = answer_for(&offer[..end], G711::Pcma);
            let mut lines: Vec<String> = offer.lines().map(str::to_string).collect();
            let at = line.min(lines.len());
            lines.insert(at, insert);
            let _ = answer_for(&(lines.join("\r\n") + "\r\n"), G711::Pcmu);
        }
    }
}
