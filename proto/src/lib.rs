//! vakt's device protocols, sans-IO: SIA DC-09 (framing, CRC, AES, answers, the ADM-CID and
//! SIA-DCS payloads), the SIP subset and SCAIP. Its own crate so that nothing here can reach a
//! socket, a clock or the store (it depends on none of them), and so that the load generator
//! and other tools build on the codecs without the server.
//!
//! Sans-IO: no sockets, no clock (the current time is passed in as a
//! [`jiff::Timestamp`]), no global state. Bounded: a frame is at most
//! [`dc09::MAX_FRAME_BYTES`], at most [`dc09::MAX_XDATA`] xdata blocks and
//! [`event::MAX_EVENTS`] events are decoded. Never panics on any input bytes: every
//! decoder returns a typed error with a stable `as_str()` label instead.
//!
//! Receive path: [`dc09::scan`] → [`dc09::parse`] → [`dc09::Frame::content`] or
//! [`dc09::Frame::decrypt`] → [`payload::decode_payload`]; reply with
//! [`dc09::encode_ack`], [`dc09::encode_ack_encrypted`], [`dc09::encode_duh`] or
//! [`dc09::encode_nak`]. The wire format as vakt implements it is in `dc09.md` (beside this crate);
//! the test vectors are in `dc09/vectors.txt`.
//!
//! SCAIP (SS 91100) arrives as SIP MESSAGE: [`sip`] frames and parses the SIP subset,
//! builds responses and requests and does Digest authentication; [`scaip`] parses the
//! `<mrq>` body and encodes the `<mrs>` answer. Both are described in `scaip.md`.
//!
//! Voice calls (the conversation after an alarm): [`sdp`] parses session descriptions and
//! does vakt's side of the offer/answer exchanges (G.711 with RFC 4733 telephone-events);
//! [`rtp`] parses and writes RTP packets, sends DTMF as RFC 4733 events and keeps a
//! receiver's loss and jitter figures. Described in `voice.md`, with offers of real devices
//! and browsers in `voice/`.
//! The audio itself is G.711: [`g711`] decodes and encodes A-law and μ-law samples.
//!
//! The patrol link's protocol (length-prefixed JSON over QUIC, `proto/patrol.md`) speaks vakt's
//! own vocabulary and lives with the dispatch code (`vakt::dispatch::wire`).

#![forbid(unsafe_code)]

pub mod contact_id;
pub mod crc;
pub mod crypto;
pub mod dc09;
pub mod event;
pub mod g711;
pub mod payload;
pub mod rtp;
pub mod scaip;
pub mod sdp;
pub mod sia_dcs;
pub mod sip;

#[cfg(test)]
mod media_proptests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod sip_proptests;
