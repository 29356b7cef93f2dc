//! What vakt sends to the unit, sans-IO: one RTP stream with its own SSRC, sequence number
//! and timestamp, whatever feeds it (the operator's frames, silence, the hold tone,
//! ringing) and RFC 4733 events in it. Time is a parameter.
//!
//! # The stream's clock
//!
//! - The SSRC, the first sequence number and the first timestamp are random (RFC 3550 §5.1);
//!   the sequence number goes up by one with every packet, across every source and event.
//! - A **run** is a stretch of packets from one source without a pause. Within a run of the
//!   operator's frames, the timestamp follows the frames' own (the browser's RTP
//!   timestamps, moved by a fixed offset): a lost frame leaves its gap, jitter in their
//!   arrival adds none. A generated frame (silence, a tone) follows the previous packet.
//! - A new run (another source; the operator's frames after a fill or a tone; their own
//!   timestamps jumping by more than a second or going back) goes on from the previous
//!   packet by the time that passed: right after it when it came within one and a half frame
//!   times (then it is seamless), else at its last timestamp plus the samples of the time
//!   since it was sent. So the unit's jitter buffer sees one stream whose clock is the wall
//!   clock's.
//! - **Marker:** on the first packet, and on the first of a run that does not follow
//!   seamlessly (a gap: sending paused, an event ended), as RFC 3551 §4.1 marks a
//!   talkspurt. Not inside a run: a lost frame is not a talkspurt.
//! - **Events** (RFC 4733 §2.5 through `vakt_proto::rtp::DtmfSender`): they start where the
//!   next audio would, their packets carry the event's start timestamp, no audio is sent
//!   meanwhile, and afterwards the audio goes on at least the event's duration later, as a
//!   new run with the marker.

use std::time::{Duration, Instant};

use vakt_proto::rtp::{DtmfSender, Header, RtpError};

/// The operator's timestamps may step forward this far (1 s at 8 kHz) within one run.
const MAX_RUN_STEP: u64 = 8_000;

/// The previous packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    /// Its timestamp.
    ts: u32,
    /// The samples it covered.
    samples: u32,
    /// When it was sent (for an event: when it started).
    at: Instant,
    /// It was an event: what follows is always a new run with the marker.
    event: bool,
}

/// The current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// None: the next packet starts one.
    None,
    /// The operator's frames: out timestamp = offset + their timestamp.
    Relayed { offset: u32, last_src: u64 },
    /// Generated frames.
    Generated,
}

/// An event in progress.
#[derive(Debug, Clone)]
struct Event {
    sender: DtmfSender,
    started: Instant,
}

/// The stream to the unit.
#[derive(Debug, Clone)]
pub(crate) struct OutStream {
    ssrc: u32,
    seq: u16,
    first_ts: u32,
    pt: u8,
    dtmf_pt: Option<u8>,
    last: Option<Sent>,
    run: Run,
    event: Option<Event>,
    /// Audio packets written.
    pub(crate) packets: u64,
    /// Event packets written.
    pub(crate) event_packets: u64,
}

/// The samples of `d` at 8 kHz.
fn samples(d: Duration) -> u64 {
    (d.as_micros() * 8 / 1_000) as u64
}

impl OutStream {
    /// A stream with this SSRC, first sequence number and first timestamp (random in use),
    /// the audio payload type `pt` and the telephone-event payload type.
    pub(crate) fn new(
        ssrc: u32,
        seq: u16,
        first_ts: u32,
        pt: u8,
        dtmf_pt: Option<u8>,
    ) -> OutStream {
        OutStream {
            ssrc,
            seq,
            first_ts,
            pt,
            dtmf_pt,
            last: None,
            run: Run::None,
            event: None,
            packets: 0,
            event_packets: 0,
        }
    }

    /// New payload types (a re-INVITE may renumber them); the stream goes on.
    pub(crate) fn set_payload_types(&mut self, pt: u8, dtmf_pt: Option<u8>) {
        self.pt = pt;
        self.dtmf_pt = dtmf_pt;
    }

    /// The stream's SSRC.
    pub(crate) fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Ends the current run: the next packet starts a new one (a source switch).
    pub(crate) fn break_run(&mut self) {
        self.run = Run::None;
    }

    /// The timestamp of a packet starting a new run at `now`, and whether it follows the
    /// previous packet seamlessly.
    fn resume(&self, now: Instant) -> (u32, bool) {
        match self.last {
            None => (self.first_ts, false),
            Some(s) => {
                let elapsed = samples(now.saturating_duration_since(s.at));
                if s.event {
                    let step = elapsed.max(u64::from(s.samples));
                    (s.ts.wrapping_add(step as u32), false)
                } else if elapsed * 2 < u64::from(s.samples) * 3 {
                    (s.ts.wrapping_add(s.samples), true)
                } else {
                    (s.ts.wrapping_add(elapsed as u32), false)
                }
            }
        }
    }

    fn write(
        &mut self,
        header: Header,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Header, RtpError> {
        out.clear();
        header.write(payload, out)?;
        self.seq = self.seq.wrapping_add(1);
        Ok(header)
    }

    fn audio_header(&self, marker: bool, ts: u32) -> Header {
        Header {
            marker,
            payload_type: self.pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
    }

    /// One of the operator's frames, whose own RTP timestamp is `src_ts`, written to `out`
    /// at `now`. `Ok(None)` for a frame that goes back in the operator's time (a duplicate
    /// or one overtaken): nothing is written.
    pub(crate) fn relayed(
        &mut self,
        src_ts: u64,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Header>, RtpError> {
        let (ts, marker, offset) = match self.run {
            Run::Relayed { offset, last_src } if src_ts > last_src => {
                if src_ts - last_src <= MAX_RUN_STEP {
                    (offset.wrapping_add(src_ts as u32), false, offset)
                } else {
                    let (ts, seamless) = self.resume(now);
                    (ts, !seamless, ts.wrapping_sub(src_ts as u32))
                }
            }
            Run::Relayed { .. } => return Ok(None),
            Run::None | Run::Generated => {
                let (ts, seamless) = self.resume(now);
                (ts, !seamless, ts.wrapping_sub(src_ts as u32))
            }
        };
        let header = self.write(self.audio_header(marker, ts), payload, out)?;
        self.run = Run::Relayed {
            offset,
            last_src: src_ts,
        };
        self.sent_audio(ts, payload.len(), now);
        Ok(Some(header))
    }

    /// A generated frame (silence, a tone) written to `out` at `now`.
    pub(crate) fn generated(
        &mut self,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Header, RtpError> {
        let (ts, seamless) = self.resume(now);
        let header = self.write(self.audio_header(!seamless, ts), payload, out)?;
        self.run = Run::Generated;
        self.sent_audio(ts, payload.len(), now);
        Ok(header)
    }

    fn sent_audio(&mut self, ts: u32, len: usize, now: Instant) {
        self.last = Some(Sent {
            ts,
            samples: u32::try_from(len).unwrap_or(u32::MAX),
            at: now,
            event: false,
        });
        self.packets += 1;
    }

    /// Starts an RFC 4733 event (`event` for `duration_ms`) at `now`, where the next audio
    /// would go. Refused without a telephone-event payload type, or while one is sent.
    pub(crate) fn start_event(
        &mut self,
        event: u8,
        duration_ms: u32,
        now: Instant,
    ) -> Result<(), RtpError> {
        if self.dtmf_pt.is_none() || self.event.is_some() {
            return Err(RtpError::BadField("telephone-event"));
        }
        let (ts, _) = self.resume(now);
        let sender = DtmfSender::new(event, duration_ms, ts)?;
        self.event = Some(Event {
            sender,
            started: now,
        });
        self.run = Run::None;
        Ok(())
    }

    /// Whether an event is being sent.
    pub(crate) fn in_event(&self) -> bool {
        self.event.is_some()
    }

    /// The event's packet for this 20 ms tick, written to `out`; `Ok(None)` once it is over
    /// (the stream then goes on after it).
    pub(crate) fn event_tick(&mut self, out: &mut Vec<u8>) -> Result<Option<Header>, RtpError> {
        let Some(ev) = self.event.as_mut() else {
            return Ok(None);
        };
        let (Some(pt), Some(packet)) = (self.dtmf_pt, ev.sender.next()) else {
            // Over (or the payload type was taken away by a re-INVITE): the stream goes on
            // after the event, `last` says where.
            self.event = None;
            return Ok(None);
        };
        let (samples, started) = (ev.sender.samples(), ev.started);
        out.clear();
        packet.write(pt, self.seq, self.ssrc, out)?;
        let header = packet.header(pt, self.seq, self.ssrc);
        self.seq = self.seq.wrapping_add(1);
        self.last = Some(Sent {
            ts: packet.timestamp,
            samples,
            at: started,
            event: true,
        });
        self.event_packets += 1;
        Ok(Some(header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vakt_proto::rtp::{self, TelephoneEvent};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn stream() -> OutStream {
        OutStream::new(0xABCD, 65_530, 4_294_967_000, 8, Some(101))
    }

    /// (marker, pt, seq, ts) of what was written.
    fn read(out: &[u8]) -> (bool, u8, u16, u32) {
        let p = rtp::parse(out).unwrap();
        assert_eq!(p.header.ssrc, 0xABCD);
        (
            p.header.marker,
            p.header.payload_type,
            p.header.sequence,
            p.header.timestamp,
        )
    }

    #[test]
    fn the_operators_frames_keep_their_timing_within_a_run() {
        let t0 = Instant::now();
        let mut s = stream();
        let mut out = Vec::new();
        let frame = [0xD5; 160];
        // Browser timestamps from 1000; a frame lost (1320 missing); arrival jitter.
        let arrivals = [(1_000u64, 0u64), (1_160, 25), (1_480, 61), (1_640, 79)];
        let mut got = Vec::new();
        for (src, at) in arrivals {
            s.relayed(src, &frame, t0 + ms(at), &mut out)
                .unwrap()
                .unwrap();
            got.push(read(&out));
        }
        let base = 4_294_967_000u32;
        assert_eq!(
            got,
            [
                (true, 8, 65_530, base),
                (false, 8, 65_531, base.wrapping_add(160)),
                (false, 8, 65_532, base.wrapping_add(480)),
                (false, 8, 65_533, base.wrapping_add(640)),
            ]
        );
        // A duplicate or an overtaken frame is not sent.
        assert_eq!(s.relayed(1_480, &frame, t0 + ms(80), &mut out), Ok(None));
        assert_eq!(s.packets, 4);
    }

    #[test]
    fn sequence_and_timestamp_run_on_across_a_source_switch() {
        let t0 = Instant::now();
        let mut s = stream();
        let mut out = Vec::new();
        let frame = [0xD5; 160];
        let mut got = Vec::new();
        // The operator: 5 frames, 20 ms apart.
        for k in 0..5u64 {
            s.relayed(90_000 + 160 * k, &frame, t0 + ms(20 * k), &mut out)
                .unwrap();
            got.push(read(&out));
        }
        // Hold: the tone takes over on the next tick (seamless).
        s.break_run();
        for k in 5..10u64 {
            s.generated(&frame, t0 + ms(20 * k), &mut out).unwrap();
            got.push(read(&out));
        }
        // Back to the operator, whose timestamps went on meanwhile (arbitrary offset).
        s.break_run();
        for k in 10..15u64 {
            s.relayed(500 + 160 * k, &frame, t0 + ms(20 * k + 3), &mut out)
                .unwrap();
            got.push(read(&out));
        }
        let ts0 = got[0].3;
        for (k, (marker, _, seq, ts)) in got.iter().enumerate() {
            assert_eq!(*seq, 65_530u16.wrapping_add(k as u16), "packet {k}");
            assert_eq!(*ts, ts0.wrapping_add(160 * k as u32), "packet {k}");
            assert_eq!(*marker, k == 0, "packet {k}");
        }
    }

    #[test]
    fn a_pause_in_sending_moves_the_timestamp_by_the_time_and_sets_the_marker() {
        let t0 = Instant::now();
        let mut s = stream();
        let mut out = Vec::new();
        let frame = [0xD5; 160];
        s.generated(&frame, t0, &mut out).unwrap();
        let (_, _, _, ts0) = read(&out);
        // 25 ms later: within one and a half frames, seamless.
        s.generated(&frame, t0 + ms(25), &mut out).unwrap();
        assert_eq!(read(&out).3, ts0.wrapping_add(160));
        assert!(!read(&out).0);
        // 1 s without packets (the unit held the call): 8000 samples on, marker.
        s.generated(&frame, t0 + ms(1_025), &mut out).unwrap();
        let (marker, _, _, ts) = read(&out);
        assert!(marker);
        assert_eq!(ts, ts0.wrapping_add(160 + 8_000));
        // The operator's timestamps jump by more than a second: a new run too.
        s.relayed(0, &frame, t0 + ms(1_045), &mut out).unwrap();
        assert_eq!(read(&out).3, ts0.wrapping_add(160 + 8_000 + 160));
        s.relayed(80_000, &frame, t0 + ms(1_065), &mut out).unwrap();
        let (marker, _, _, ts) = read(&out);
        assert!(!marker, "seamless after 20 ms");
        assert_eq!(ts, ts0.wrapping_add(160 + 8_000 + 320));
        s.relayed(80_160, &frame, t0 + ms(1_085), &mut out).unwrap();
        assert_eq!(read(&out).3, ts0.wrapping_add(160 + 8_000 + 480));
    }

    #[test]
    fn an_event_pauses_the_audio_and_follows_rfc_4733() {
        let t0 = Instant::now();
        let mut s = stream();
        let mut out = Vec::new();
        let frame = [0xD5; 160];
        s.generated(&frame, t0, &mut out).unwrap();
        let (_, _, seq0, ts0) = read(&out);
        s.start_event(0, 100, t0 + ms(20)).unwrap();
        assert!(s.in_event());
        assert!(s.start_event(1, 100, t0 + ms(20)).is_err(), "one at a time");
        let mut events = Vec::new();
        let mut k = 1;
        while let Some(h) = s.event_tick(&mut out).unwrap() {
            let p = rtp::parse(&out).unwrap();
            assert_eq!(p.header, h);
            let e = TelephoneEvent::parse(p.payload).unwrap();
            events.push((
                h.marker,
                h.payload_type,
                h.sequence,
                h.timestamp,
                e.duration,
                e.end,
            ));
            k += 1;
        }
        assert!(!s.in_event());
        let ts = ts0.wrapping_add(160);
        let want: Vec<_> = [
            (true, 160, false),
            (false, 320, false),
            (false, 480, false),
            (false, 640, false),
            (false, 800, true),
            (false, 800, true),
            (false, 800, true),
        ]
        .iter()
        .enumerate()
        .map(|(i, &(m, d, e))| (m, 101, seq0.wrapping_add(1 + i as u16), ts, d, e))
        .collect();
        assert_eq!(events, want);
        assert_eq!(s.event_packets, 7);
        // The audio goes on after the event: a new run, marked, the event's time later
        // (7 ticks of 20 ms after its start: 1120 samples, more than its 800).
        s.generated(&frame, t0 + ms(20 + 140), &mut out).unwrap();
        let (marker, pt, seq, after) = read(&out);
        assert!(marker);
        assert_eq!(pt, 8);
        assert_eq!(seq, seq0.wrapping_add(k));
        assert_eq!(after, ts.wrapping_add(1_120));
        // Without telephone-event: refused.
        let mut plain = OutStream::new(1, 1, 1, 0, None);
        assert!(plain.start_event(0, 100, t0).is_err());
        assert_eq!(plain.event_tick(&mut out), Ok(None));
    }

    #[test]
    fn an_event_right_after_an_event_starts_later_than_the_first_one_ends() {
        let t0 = Instant::now();
        let mut s = stream();
        let mut out = Vec::new();
        s.start_event(1, 100, t0).unwrap();
        let mut first_ts = None;
        while s.event_tick(&mut out).unwrap().is_some() {
            first_ts = Some(read(&out).3);
        }
        s.start_event(3, 100, t0 + ms(140)).unwrap();
        s.event_tick(&mut out).unwrap().unwrap();
        let (marker, _, _, ts) = read(&out);
        assert!(marker);
        assert!(ts.wrapping_sub(first_ts.unwrap()) >= 800, "{ts}");
    }
}
