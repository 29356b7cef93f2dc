//! Voice: the conversation between the operator and the person after an alarm
//! (protocols.md §3.7; `proto/voice.md`).
//!
//! A social-alarm unit calls vakt with SIP INVITE after a SCAIP `snu 0`/`mre 1` (or a GSM
//! unit through the telecom operator's SIP trunk); the call joins the subscriber's Call and
//! rings in the console's queue; the operator answers in the browser, whose WebRTC peer
//! connection vakt terminates itself; vakt relays G.711 between the two legs without
//! transcoding and records both directions in one two-channel WAV file per conversation.
//!
//! The SIP dialogs are the transport's (`crate::transport::sip`); the codecs (SDP, RTP,
//! RFC 4733 events, G.711) are `vakt_proto`'s. This module holds the rest, on the floor of
//! dispatch and supervision: below the console, which answers and controls calls through it,
//! and above the Calls, which a conversation joins.

pub mod dial;
pub mod media;
pub mod outbound;
pub mod ports;
pub mod record;
pub mod retention;
pub mod switchboard;
pub mod tone;
pub mod wav;
pub mod webrtc;
