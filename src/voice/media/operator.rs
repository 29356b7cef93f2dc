//! The operator's side of a relay: a small trait ([`OperatorLeg`]) for whatever carries the
//! operator's audio (the browser's WebRTC leg in vakt; a plain socket in tests and the
//! benchmark), its implementation for [`BrowserLeg`], and G.711 law conversion when the two
//! sides do not share one.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use vakt_proto::g711::Law;

use crate::voice::webrtc::{BrowserLeg, G711, SendError};

/// One frame of the operator's audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorFrame {
    /// The G.711 payload in the operator leg's law ([`OperatorLeg::law`]), one byte a sample.
    pub payload: Arc<[u8]>,
    /// Its RTP timestamp at 8 kHz, extended to 64 bits (it only grows; a gap is frames
    /// lost).
    pub timestamp: u64,
    /// When its datagram was read (the start of the relay's latency to the unit).
    pub received: Instant,
}

/// Why a frame for the operator was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OperatorSendError {
    /// The operator's side is behind: the frame is dropped (and counted).
    #[error("the operator's side is behind")]
    Full,
    /// The frame is empty or longer than the side takes.
    #[error("a frame the operator's side does not take")]
    BadLength,
    /// The operator's side has ended.
    #[error("the operator's side has ended")]
    Ended,
}

/// The operator's side as the relay sees it: frames from the operator, frames to them,
/// and an end. One relay task owns it and calls nothing else.
pub trait OperatorLeg: Send + 'static {
    /// The G.711 law of the frames both ways.
    fn law(&self) -> Law;

    /// The next frame from the operator, `None` once their side has ended. Must be
    /// cancel-safe: the relay waits on it beside its socket and its timers, and drops the
    /// future when something else comes first.
    fn recv(&mut self) -> impl Future<Output = Option<OperatorFrame>> + Send;

    /// Hands the operator one frame of the person's audio in [`OperatorLeg::law`]; never
    /// waits.
    fn send(&mut self, payload: &[u8]) -> Result<(), OperatorSendError>;

    /// The relay has ended (the call is over): end the operator's side too.
    fn end(&mut self);
}

/// The law of a browser leg's codec.
pub fn law_of(codec: G711) -> Law {
    match codec {
        G711::Pcma => Law::Alaw,
        G711::Pcmu => Law::Ulaw,
    }
}

/// The browser's leg (`voice::webrtc`): frames from its `recv`, to its handle's `send`
/// (one `Arc` per frame, which the leg's task takes), and `end` closes the peer connection.
impl OperatorLeg for BrowserLeg {
    fn law(&self) -> Law {
        law_of(self.codec())
    }

    async fn recv(&mut self) -> Option<OperatorFrame> {
        BrowserLeg::recv(self).await.map(|f| OperatorFrame {
            payload: f.payload,
            timestamp: f.timestamp,
            received: f.received,
        })
    }

    fn send(&mut self, payload: &[u8]) -> Result<(), OperatorSendError> {
        self.handle()
            .send(Arc::<[u8]>::from(payload))
            .map_err(|e| match e {
                SendError::BadLength => OperatorSendError::BadLength,
                SendError::Full => OperatorSendError::Full,
                SendError::Ended => OperatorSendError::Ended,
            })
    }

    fn end(&mut self) {
        self.handle().end();
    }
}

/// Byte-to-byte conversion between the two laws (through 16-bit linear, as G.711 §A.3
/// does), or none when both sides share one.
#[derive(Clone)]
pub(crate) struct Transcode {
    table: Option<Box<[u8; 256]>>,
}

impl std::fmt::Debug for Transcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcode")
            .field("converts", &self.table.is_some())
            .finish()
    }
}

impl Transcode {
    /// From `from` to `to`.
    pub(crate) fn new(from: Law, to: Law) -> Transcode {
        let table = (from != to).then(|| {
            let mut t = Box::new([0u8; 256]);
            for (code, slot) in t.iter_mut().enumerate() {
                *slot = to.encode(from.decode(code as u8));
            }
            t
        });
        Transcode { table }
    }

    /// `payload` as it goes out: itself, or converted into `buf`.
    pub(crate) fn apply<'a>(&self, payload: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
        match &self.table {
            None => payload,
            Some(t) => {
                buf.clear();
                buf.extend(payload.iter().map(|&b| t[usize::from(b)]));
                buf
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::tone::{self, ToneGen};

    #[test]
    fn the_same_law_passes_through_and_the_other_is_converted_keeping_the_tone() {
        let mut buf = Vec::new();
        let same = Transcode::new(Law::Alaw, Law::Alaw);
        let frame = ToneGen::new(440.0, -10.0).frame(Law::Alaw);
        assert_eq!(same.apply(&frame, &mut buf), &frame[..]);
        assert!(buf.is_empty());
        for (from, to) in [(Law::Alaw, Law::Ulaw), (Law::Ulaw, Law::Alaw)] {
            let t = Transcode::new(from, to);
            let mut tone = ToneGen::new(1_000.0, -10.0);
            let mut pcm = Vec::new();
            for _ in 0..50 {
                let frame = tone.frame(from);
                let out = t.apply(&frame, &mut buf).to_vec();
                assert_eq!(out.len(), frame.len());
                to.decode_into(&out, &mut pcm);
            }
            let levels = tone::analyse(&pcm, 8_000, &[440.0, 1_000.0]);
            assert_eq!(levels.dominant(), Some(1_000.0), "{from:?} -> {to:?}");
            // Silence stays silence (A-law has no exact zero: its silence is +8 of 32768).
            let quiet = to.decode(t.apply(&[from.silence()], &mut buf)[0]);
            assert!(quiet.abs() <= 8, "{from:?} -> {to:?}: {quiet}");
        }
        // Every code maps to the code of the nearest value (within a quantisation step).
        let t = Transcode::new(Law::Ulaw, Law::Alaw);
        for code in 0..=255u8 {
            let a = Law::Ulaw.decode(code);
            let b = Law::Alaw.decode(t.apply(&[code], &mut buf)[0]);
            let step = (i32::from(a).abs() / 16).max(16);
            assert!(
                (i32::from(a) - i32::from(b)).abs() <= step,
                "{code}: {a} vs {b}"
            );
        }
    }
}
