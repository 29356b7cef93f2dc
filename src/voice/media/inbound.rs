//! What comes in on a SIP leg's RTP port, sans-IO: which datagrams are the unit's audio
//! (symmetric latching), the receiver's figures, and the leg's inactivity. Time is a
//! parameter (`now`), so the rules are tested with made-up instants.
//!
//! # Latching
//!
//! - Before any packet, vakt sends to the SDP's address. The first valid RTP packet (it
//!   parses, and carries the negotiated audio payload type) latches the leg on its source
//!   address, whatever it is: a unit behind mobile NAT sends from a public address its SDP
//!   cannot know. From then on vakt sends there.
//! - Once latched, packets from any other address are dropped and counted (`stranger`):
//!   they never reach the operator or the recording.
//! - The latched source may change its SSRC (a unit restarting its stream): its packets are
//!   taken and the receiver's figures restart.
//! - Re-latch (a unit's NAT rebinding to a new port): only to a new source sending valid
//!   audio RTP while the latched one has been silent for [`Inbound::relatch_after`] (2 s by
//!   default); a new SSRC is allowed. A stranger talking over a live unit is never taken.
//! - A re-INVITE that moves the unit's SDP address un-latches the leg (the unit says where
//!   its media now is; the next valid packet latches again). A hold's `c=0.0.0.0` does not.
//!
//! # Inactivity
//!
//! The unit's valid RTP (any payload type, from the latched source; or the packet that
//! latches) keeps the leg alive; after [`Inbound::inactivity`] without any, the leg is dead.
//! While the session is not `sendrecv` (the unit holds the call, vakt holds it with a
//! re-INVITE, or the unit's address is `0.0.0.0`) the unit need not send, and there is no
//! inactivity. Every re-negotiation starts the clock again. RTCP does not count: a unit whose
//! audio stopped is not alive to the person it should carry.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vakt_proto::rtp::{self, Packet, ReceiverStats, Recorded, RtpError, TelephoneEvent};
use vakt_proto::sdp::{Direction, Negotiated};

/// Why a datagram on the RTP port was not taken (the `reason` label of
/// `vakt_rtp_packets_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// Not an RTP packet (too short, not version 2, bad padding, too large).
    Malformed,
    /// RTCP on the RTP port (RFC 5761): read and ignored.
    Rtcp,
    /// Valid RTP from an address other than the latched source.
    Stranger,
    /// RTP whose payload type is not the negotiated audio or telephone-event (comfort
    /// noise, another codec), or an event before the leg latched on audio.
    PayloadType,
}

impl Dropped {
    /// Every reason, in the order of [`DropCounts`].
    pub const ALL: [Dropped; 4] = [
        Dropped::Malformed,
        Dropped::Rtcp,
        Dropped::Stranger,
        Dropped::PayloadType,
    ];

    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::Rtcp => "rtcp",
            Dropped::Stranger => "stranger",
            Dropped::PayloadType => "payload_type",
        }
    }
}

/// Datagrams dropped on the RTP port, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Not RTP.
    pub malformed: u64,
    /// RTCP on the RTP port (those on the RTCP port are counted apart).
    pub rtcp: u64,
    /// From another source than the latched one.
    pub stranger: u64,
    /// Not a negotiated payload type.
    pub payload_type: u64,
}

impl DropCounts {
    fn count(&mut self, why: Dropped) {
        let n = match why {
            Dropped::Malformed => &mut self.malformed,
            Dropped::Rtcp => &mut self.rtcp,
            Dropped::Stranger => &mut self.stranger,
            Dropped::PayloadType => &mut self.payload_type,
        };
        *n += 1;
    }

    /// The count of one reason.
    pub fn get(&self, why: Dropped) -> u64 {
        match why {
            Dropped::Malformed => self.malformed,
            Dropped::Rtcp => self.rtcp,
            Dropped::Stranger => self.stranger,
            Dropped::PayloadType => self.payload_type,
        }
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.malformed + self.rtcp + self.stranger + self.payload_type
    }
}

/// What a datagram was.
#[derive(Debug)]
pub(crate) enum Verdict<'a> {
    /// The unit's audio, in the negotiated payload type.
    Audio(Packet<'a>),
    /// An RFC 4733 event from the unit.
    Event(TelephoneEvent),
    /// Not taken.
    Dropped(Dropped),
}

/// The source the leg is latched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latched {
    addr: SocketAddr,
    ssrc: u32,
    /// When it last sent valid RTP.
    last: Instant,
}

/// The receiving side of a SIP leg.
#[derive(Debug, Clone)]
pub(crate) struct Inbound {
    audio_pt: u8,
    dtmf_pt: Option<u8>,
    sdp_remote: Option<SocketAddr>,
    latched: Option<Latched>,
    /// A new source may take over after the latched one was silent this long.
    pub(crate) relatch_after: Duration,
    /// The leg is dead after this long without valid RTP (while the session is sendrecv).
    pub(crate) inactivity: Duration,
    /// When the unit was last heard (or the leg started, or was re-negotiated).
    heard: Instant,
    /// The unit need not send now (hold, inactive, no address).
    quiet_allowed: bool,
    /// The fixed point of the arrival times given to the statistics.
    epoch: Instant,
    stats: ReceiverStats,
    /// Loss of the sources before the current one.
    lost_prior: i64,
    /// Audio packets taken.
    pub(crate) audio: u64,
    /// Events taken.
    pub(crate) events: u64,
    /// Dropped, by reason.
    pub(crate) dropped: DropCounts,
    /// Times a new source took over.
    pub(crate) relatches: u64,
    /// Times the latched source changed its SSRC.
    pub(crate) ssrc_changes: u64,
}

impl Inbound {
    /// The receiving side of a leg negotiated as `n`, starting at `now`.
    pub(crate) fn new(
        n: &Negotiated,
        relatch_after: Duration,
        inactivity: Duration,
        now: Instant,
    ) -> Inbound {
        let mut inbound = Inbound {
            audio_pt: n.payload_type,
            dtmf_pt: n.dtmf_payload_type,
            sdp_remote: n.remote,
            latched: None,
            relatch_after,
            inactivity,
            heard: now,
            quiet_allowed: false,
            epoch: now,
            stats: ReceiverStats::new(n.codec.clock_rate()),
            lost_prior: 0,
            audio: 0,
            events: 0,
            dropped: DropCounts::default(),
            relatches: 0,
            ssrc_changes: 0,
        };
        inbound.negotiate(n, now);
        inbound
    }

    /// A new offer/answer exchange (a re-INVITE): payload types, the SDP address, whether
    /// the unit must send; the inactivity clock starts again.
    pub(crate) fn negotiate(&mut self, n: &Negotiated, now: Instant) {
        self.audio_pt = n.payload_type;
        self.dtmf_pt = n.dtmf_payload_type.filter(|&pt| pt != n.payload_type);
        if let Some(new) = n.remote {
            if self.sdp_remote.is_some_and(|old| old != new) {
                self.latched = None;
            }
            self.sdp_remote = Some(new);
        }
        self.quiet_allowed = n.direction != Direction::SendRecv || n.remote.is_none();
        self.heard = now;
    }

    /// Where vakt sends: the latched source, else the SDP's address.
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        self.latched.map(|l| l.addr).or(self.sdp_remote)
    }

    /// The latched source.
    pub(crate) fn latched(&self) -> Option<SocketAddr> {
        self.latched.map(|l| l.addr)
    }

    /// One datagram from `from`, read at `now`. Never panics; bounded by the packet.
    pub(crate) fn datagram<'a>(
        &mut self,
        from: SocketAddr,
        bytes: &'a [u8],
        now: Instant,
    ) -> Verdict<'a> {
        let packet = match rtp::parse(bytes) {
            Ok(p) => p,
            Err(RtpError::Rtcp) => return self.drop(Dropped::Rtcp),
            Err(_) => return self.drop(Dropped::Malformed),
        };
        let pt = packet.header.payload_type;
        let audio = pt == self.audio_pt;
        let event = !audio && Some(pt) == self.dtmf_pt;
        let ssrc = packet.header.ssrc;
        match self.latched.as_mut() {
            Some(l) if l.addr == from => {
                l.last = now;
                self.heard = now;
                if (audio || event) && ssrc != l.ssrc {
                    l.ssrc = ssrc;
                    self.ssrc_changes += 1;
                }
            }
            Some(l) => {
                if !(audio && now.saturating_duration_since(l.last) >= self.relatch_after) {
                    return self.drop(Dropped::Stranger);
                }
                *l = Latched {
                    addr: from,
                    ssrc,
                    last: now,
                };
                self.relatches += 1;
                self.heard = now;
            }
            None => {
                if !audio {
                    return self.drop(Dropped::PayloadType);
                }
                self.latched = Some(Latched {
                    addr: from,
                    ssrc,
                    last: now,
                });
                self.heard = now;
            }
        }
        if audio {
            self.record(&packet, now);
            self.audio += 1;
            Verdict::Audio(packet)
        } else if event {
            match TelephoneEvent::parse(packet.payload) {
                Ok(e) => {
                    self.record(&packet, now);
                    self.events += 1;
                    Verdict::Event(e)
                }
                Err(_) => self.drop(Dropped::Malformed),
            }
        } else {
            self.drop(Dropped::PayloadType)
        }
    }

    fn record(&mut self, packet: &Packet<'_>, now: Instant) {
        let before = self.stats.report();
        let r = self
            .stats
            .record(&packet.header, now.saturating_duration_since(self.epoch));
        if r == Recorded::NewSource {
            if let Some(b) = before {
                self.lost_prior += b.lost.max(0);
            }
        }
    }

    fn drop(&mut self, why: Dropped) -> Verdict<'static> {
        self.dropped.count(why);
        Verdict::Dropped(why)
    }

    /// When the leg dies of inactivity, unless the unit sends first (`None`: it need not).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (!self.quiet_allowed).then(|| self.heard + self.inactivity)
    }

    /// Whether the leg is dead of inactivity at `now`.
    pub(crate) fn timed_out(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// Packets lost (RFC 3550 A.3) over every source of the leg, and the current source's
    /// expected count.
    pub(crate) fn loss(&self) -> (i64, u32) {
        match self.stats.report() {
            Some(r) => (self.lost_prior + r.lost.max(0), r.expected),
            None => (self.lost_prior, 0),
        }
    }

    /// The current source's interarrival jitter.
    pub(crate) fn jitter(&self) -> Duration {
        let units = self.stats.report().map_or(0, |r| r.jitter);
        Duration::from_micros(u64::from(units) * 1_000_000 / 8_000)
    }

    /// The current source's SSRC.
    #[cfg(test)]
    pub(crate) fn ssrc(&self) -> Option<u32> {
        self.stats.ssrc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vakt_proto::rtp::Header;
    use vakt_proto::sdp::Codec;

    fn negotiated(remote: Option<SocketAddr>) -> Negotiated {
        Negotiated {
            codec: Codec::Pcma,
            payload_type: 8,
            dtmf_payload_type: Some(101),
            remote,
            direction: Direction::SendRecv,
            ptime_ms: 20,
            rtcp_mux: false,
            media_index: 0,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn packet(pt: u8, ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
        }
        .write(payload, &mut out)
        .unwrap();
        out
    }

    fn audio(ssrc: u32, seq: u16) -> Vec<u8> {
        packet(8, ssrc, seq, &[0xD5; 160])
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn taken(v: &Verdict<'_>) -> bool {
        matches!(v, Verdict::Audio(_))
    }

    const SDP: &str = "10.0.0.7:4000";
    const NAT: &str = "198.51.100.9:61000";
    const OTHER: &str = "203.0.113.66:5004";

    fn leg(t0: Instant) -> Inbound {
        Inbound::new(&negotiated(Some(addr(SDP))), ms(2_000), ms(30_000), t0)
    }

    #[test]
    fn before_a_packet_vakt_sends_to_the_sdp_address_then_to_the_first_source() {
        let t0 = Instant::now();
        let mut leg = leg(t0);
        assert_eq!(leg.destination(), Some(addr(SDP)));
        assert_eq!(leg.latched(), None);
        // An event or another PT does not latch.
        assert!(matches!(
            leg.datagram(addr(OTHER), &packet(101, 1, 1, &[0, 10, 0, 160]), t0),
            Verdict::Dropped(Dropped::PayloadType)
        ));
        assert!(matches!(
            leg.datagram(addr(OTHER), &packet(13, 1, 1, &[40]), t0),
            Verdict::Dropped(Dropped::PayloadType)
        ));
        assert_eq!(leg.latched(), None);
        // The unit behind NAT: its first audio packet latches.
        assert!(taken(&leg.datagram(addr(NAT), &audio(7, 100), t0 + ms(20))));
        assert_eq!(leg.latched(), Some(addr(NAT)));
        assert_eq!(leg.destination(), Some(addr(NAT)));
        // Now the unit's events are taken.
        assert!(matches!(
            leg.datagram(
                addr(NAT),
                &packet(101, 7, 101, &[0, 10, 0, 160]),
                t0 + ms(40)
            ),
            Verdict::Event(TelephoneEvent { event: 0, .. })
        ));
        assert_eq!((leg.audio, leg.events), (1, 1));
    }

    #[test]
    fn a_stranger_is_dropped_while_the_unit_talks_and_takes_over_only_after_its_silence() {
        let t0 = Instant::now();
        let mut leg = leg(t0);
        let mut seq = 0;
        let mut t = t0;
        for _ in 0..50 {
            assert!(taken(&leg.datagram(addr(NAT), &audio(7, seq), t)));
            // A stranger with a valid packet between each of the unit's.
            assert!(matches!(
                leg.datagram(addr(OTHER), &audio(99, seq), t + ms(10)),
                Verdict::Dropped(Dropped::Stranger)
            ));
            seq += 1;
            t += ms(20);
        }
        assert_eq!(leg.dropped.stranger, 50);
        // The unit falls silent; the stranger keeps on: dropped until 2 s have passed since
        // the unit's last packet.
        let last = t - ms(20);
        for k in 1..100u64 {
            let at = last + ms(20 * k);
            let p = audio(99, 500);
            let v = leg.datagram(addr(OTHER), &p, at);
            assert!(matches!(v, Verdict::Dropped(Dropped::Stranger)), "{k}");
        }
        // Same port, another IP, same for an event or comfort noise after the silence: no.
        let late = last + ms(2_000);
        assert!(matches!(
            leg.datagram(addr(OTHER), &packet(101, 99, 1, &[0, 10, 0, 160]), late),
            Verdict::Dropped(Dropped::Stranger)
        ));
        assert!(matches!(
            leg.datagram(addr(OTHER), &packet(13, 99, 1, &[40]), late),
            Verdict::Dropped(Dropped::Stranger)
        ));
        // Audio 2 s after the unit's last packet: the new source (a new SSRC) takes over.
        assert!(taken(&leg.datagram(addr(OTHER), &audio(99, 501), late)));
        assert_eq!(leg.latched(), Some(addr(OTHER)));
        assert_eq!(leg.relatches, 1);
        // And now the old source is the stranger.
        assert!(matches!(
            leg.datagram(addr(NAT), &audio(7, seq), late + ms(20)),
            Verdict::Dropped(Dropped::Stranger)
        ));
    }

    #[test]
    fn the_latched_source_may_change_its_ssrc() {
        let t0 = Instant::now();
        let mut leg = leg(t0);
        for s in 0..10u16 {
            assert!(taken(&leg.datagram(
                addr(NAT),
                &audio(7, s),
                t0 + ms(20 * u64::from(s))
            )));
        }
        assert_eq!(leg.ssrc(), Some(7));
        // Five lost, then the unit restarts its stream with another SSRC.
        for s in 15..20u16 {
            leg.datagram(addr(NAT), &audio(7, s), t0 + ms(20 * u64::from(s)));
        }
        assert_eq!(leg.loss().0, 5);
        for s in 0..10u16 {
            let p = audio(8, 30_000 + s);
            let v = leg.datagram(addr(NAT), &p, t0 + ms(400 + 20 * u64::from(s)));
            assert!(taken(&v));
        }
        assert_eq!(leg.ssrc(), Some(8));
        assert_eq!(leg.ssrc_changes, 1);
        // The loss of the first source is kept.
        assert_eq!(leg.loss().0, 5);
        assert_eq!(leg.relatches, 0);
    }

    #[test]
    fn inactivity_counts_from_the_last_valid_packet_and_not_while_the_unit_holds() {
        let t0 = Instant::now();
        let mut leg = leg(t0);
        assert_eq!(leg.deadline(), Some(t0 + ms(30_000)));
        assert!(!leg.timed_out(t0 + ms(29_999)));
        assert!(leg.timed_out(t0 + ms(30_000)));
        leg.datagram(addr(NAT), &audio(7, 1), t0 + ms(10_000));
        assert_eq!(leg.deadline(), Some(t0 + ms(40_000)));
        // Garbage, RTCP and strangers (while the unit has not been silent 2 s) do not keep
        // the leg alive.
        leg.datagram(addr(NAT), b"garbage", t0 + ms(11_000));
        leg.datagram(addr(NAT), &[0x80, 201, 0, 1, 0, 0, 0, 9], t0 + ms(11_000));
        leg.datagram(addr(OTHER), &audio(9, 1), t0 + ms(11_000));
        assert_eq!(leg.latched(), Some(addr(NAT)));
        assert_eq!(leg.deadline(), Some(t0 + ms(40_000)));
        // Comfort noise from the latched unit does.
        leg.datagram(addr(NAT), &packet(13, 7, 2, &[40]), t0 + ms(25_000));
        assert_eq!(leg.deadline(), Some(t0 + ms(55_000)));
        // The unit holds (sendonly: vakt is recvonly): no inactivity at all.
        let mut held = negotiated(Some(addr(SDP)));
        held.direction = Direction::RecvOnly;
        leg.negotiate(&held, t0 + ms(26_000));
        assert_eq!(leg.deadline(), None);
        assert!(!leg.timed_out(t0 + ms(3_600_000)));
        // RFC 2543 hold (no address) and inactive too; the latch stays.
        let mut zero = negotiated(None);
        leg.negotiate(&zero, t0 + ms(27_000));
        assert_eq!(leg.deadline(), None);
        assert_eq!(leg.latched(), Some(addr(NAT)));
        zero.remote = Some(addr(SDP));
        zero.direction = Direction::Inactive;
        leg.negotiate(&zero, t0 + ms(27_000));
        assert_eq!(leg.deadline(), None);
        // Resumed: the clock starts at the resume.
        leg.negotiate(&negotiated(Some(addr(SDP))), t0 + ms(100_000));
        assert_eq!(leg.deadline(), Some(t0 + ms(130_000)));
        assert_eq!(leg.latched(), Some(addr(NAT)));
    }

    #[test]
    fn a_reinvite_that_moves_the_unit_unlatches_the_leg() {
        let t0 = Instant::now();
        let mut leg = leg(t0);
        leg.datagram(addr(NAT), &audio(7, 1), t0);
        assert_eq!(leg.latched(), Some(addr(NAT)));
        let moved = negotiated(Some(addr("10.0.0.7:4010")));
        leg.negotiate(&moved, t0 + ms(100));
        assert_eq!(leg.latched(), None);
        assert_eq!(leg.destination(), Some(addr("10.0.0.7:4010")));
        assert!(taken(&leg.datagram(
            addr(OTHER),
            &audio(8, 1),
            t0 + ms(120)
        )));
        assert_eq!(leg.latched(), Some(addr(OTHER)));
    }

    #[test]
    fn bad_datagrams_are_counted_by_reason() {
        let t0 = Instant::now();
        let mut leg = leg(t0);
        leg.datagram(addr(NAT), &audio(7, 1), t0);
        for bytes in [&b""[..], b"\x80", b"not rtp at all", &[0x40; 20]] {
            assert!(matches!(
                leg.datagram(addr(NAT), bytes, t0),
                Verdict::Dropped(Dropped::Malformed)
            ));
        }
        // An event whose payload is too short.
        assert!(matches!(
            leg.datagram(addr(NAT), &packet(101, 7, 2, &[1, 2]), t0),
            Verdict::Dropped(Dropped::Malformed)
        ));
        assert!(matches!(
            leg.datagram(addr(NAT), &[0x80, 200, 0, 6, 0, 0, 0, 1], t0),
            Verdict::Dropped(Dropped::Rtcp)
        ));
        assert_eq!(
            leg.dropped,
            DropCounts {
                malformed: 5,
                rtcp: 1,
                stranger: 0,
                payload_type: 0
            }
        );
        assert_eq!(leg.dropped.total(), 6);
    }

    proptest! {
        /// Whatever arrives from whoever, at whatever time: no panic, and audio is taken only
        /// from the latched source, which changes only after its silence.
        #[test]
        fn no_datagram_panics_and_only_the_latched_source_is_heard(
            datagrams in proptest::collection::vec(
                (0u8..3, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200), 0u64..3_000),
                1..200,
            )
        ) {
            let sources = [addr(NAT), addr(OTHER), addr("192.0.2.1:9")];
            let t0 = Instant::now();
            let mut leg = leg(t0);
            let mut t = t0;
            let mut last_heard: Option<(SocketAddr, Instant)> = None;
            for (who, valid, bytes, step) in datagrams {
                t += ms(step);
                let from = sources[usize::from(who)];
                let bytes = if valid {
                    let mut p = audio(u32::from(who), 1);
                    p.truncate(12);
                    p.extend(&bytes);
                    p
                } else {
                    bytes
                };
                let before = leg.latched();
                let v = leg.datagram(from, &bytes, t);
                if taken(&v) {
                    // Taken: from the latched source, or a take-over after its silence.
                    if let Some(b) = before {
                        if b != from {
                            let (_, at) = last_heard.unwrap();
                            prop_assert!(t.duration_since(at) >= ms(2_000));
                        }
                    }
                    prop_assert_eq!(leg.latched(), Some(from));
                }
                if leg.latched() == Some(from) && !matches!(v, Verdict::Dropped(Dropped::Malformed | Dropped::Rtcp)) {
                    last_heard = Some((from, t));
                }
            }
        }
    }
}
