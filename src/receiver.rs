//! What each DC-09 frame gets: the rules between the codec and the journal.
//!
//! [`Receiver::decide`] is synchronous and never reads the clock (`now` is a parameter): it
//! parses the frame, looks up the device, decrypts, checks the timestamp window, builds the
//! [`Signal`] and says either "answer this now" or "journal this, and answer that once it is
//! durable". The transports do the I/O.
//!
//! | frame | journaled | answer |
//! |---|---|---|
//! | valid event (ADM-CID, SIA-DCS), known account | yes | ACK / *ACK after the flush |
//! | valid plain event, unknown account | yes, `unknown_device` | ACK after the flush |
//! | encrypted, no key for the account or does not decrypt | yes, `undecryptable` | DUH after the flush |
//! | encrypted, timestamp missing or outside the window | no | NAK with receiver time |
//! | NULL / XNM link test | no (last-heard updated) | ACK / *ACK at once |
//! | event whose payload cannot be decoded | yes, `bad_payload` | ACK after the flush |
//! | bad CRC, bad length, unparseable | no | NAK |
//! | other ID (e.g. SIA-PUL) | no | DUH |
//! | a control token (ACK, NAK, DUH, RSP) | no (counted) | none |
//! | retransmission within the dedup window | no (counted) | ACK / *ACK after the flush |

use std::net::SocketAddr;
use std::sync::Arc;

use crate::codec::dc09::{self, Frame, Token};
use crate::codec::event::decode_payload;
use crate::journal::{Commit, DedupKey, dedup_key};
use crate::model::{Device, Flags, Signal, SignalEvent, Transport, XDataItem};
use crate::registry::Devices;
use crate::supervision::LastHeard;
use crate::telemetry::{Metrics, ProtoLabel, ResultLabel};

/// Where and when a frame arrived.
#[derive(Clone, Copy, Debug)]
pub struct FrameCtx {
    /// TCP or UDP.
    pub transport: Transport,
    /// The device's address.
    pub peer: SocketAddr,
    /// Receive time (UTC).
    pub now: jiff::Timestamp,
}

/// What to do with one frame.
#[derive(Debug)]
pub enum Decision {
    /// Send `reply` now (nothing if it is empty); nothing is journaled.
    Answer {
        /// The answer bytes (ACK, *ACK, NAK or DUH), or empty for no answer.
        reply: Vec<u8>,
        /// For metrics.
        proto: ProtoLabel,
        /// For metrics.
        result: ResultLabel,
    },
    /// Journal `signal`; once the commit is durable send `reply` (ACK, *ACK or DUH); if the
    /// commit fails send nothing.
    Journal {
        /// The Signal to append (its id is assigned by the journal).
        signal: Box<Signal>,
        /// Retransmission key.
        dedup: Option<DedupKey>,
        /// The answer to send after the flush.
        reply: Vec<u8>,
        /// For metrics.
        proto: ProtoLabel,
        /// ACK, or DUH for undecryptable frames.
        result: ResultLabel,
    },
}

/// Receiver options from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ReceiverOptions {
    /// How far an encrypted frame's timestamp may lag.
    pub timestamp_past_secs: u64,
    /// How far it may lead.
    pub timestamp_future_secs: u64,
}

/// A frame's account, line and receiver, upper case.
struct Ids {
    account: String,
    line: Option<String>,
    receiver: Option<String>,
}

/// The DC-09 frame rules.
#[derive(Debug)]
pub struct Receiver {
    registry: Devices,
    last_heard: Arc<LastHeard>,
    supervisor: Option<Arc<crate::supervision::Supervisor>>,
    metrics: Metrics,
    opts: ReceiverOptions,
}

fn proto_label(t: Token) -> ProtoLabel {
    match t {
        Token::Null => ProtoLabel::Null,
        Token::AdmCid => ProtoLabel::AdmCid,
        Token::SiaDcs => ProtoLabel::SiaDcs,
        _ => ProtoLabel::Other,
    }
}

/// Parses a DC-09 time (`HH:MM:SS,MM-DD-YYYY`, UTC), as carried by the xdata `H` block.
pub fn parse_dc09_time(v: &[u8]) -> Option<jiff::Timestamp> {
    let s = std::str::from_utf8(v).ok()?;
    let dt = jiff::fmt::strtime::parse("%H:%M:%S,%m-%d-%Y", s.trim())
        .ok()?
        .to_datetime()
        .ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

impl Receiver {
    /// Builds the rules over a registry and a last-heard table.
    pub fn new(
        registry: Devices,
        last_heard: Arc<LastHeard>,
        metrics: Metrics,
        opts: ReceiverOptions,
    ) -> Receiver {
        Receiver {
            registry,
            last_heard,
            supervisor: None,
            metrics,
            opts,
        }
    }

    /// Also tells `supervisor` of every device heard (its heartbeat deadline moves).
    pub fn with_supervisor(mut self, supervisor: Arc<crate::supervision::Supervisor>) -> Receiver {
        self.supervisor = Some(supervisor);
        self
    }

    /// The device registry the rules read.
    pub fn registry(&self) -> &Devices {
        &self.registry
    }

    /// A frame (or any authenticated message) proves the device can reach vakt: its
    /// last-heard time and its deadline move.
    pub fn heard(&self, account: &str, now: jiff::Timestamp) {
        self.last_heard.heard(account, now.as_millisecond());
        if let Some(s) = &self.supervisor {
            s.heard(account, now);
        }
    }

    /// The metric handles.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Decides what one LF..CR frame gets.
    pub fn decide(&self, raw: &[u8], ctx: &FrameCtx) -> Decision {
        let frame = match dc09::parse(raw) {
            Ok(f) => f,
            Err(e) => return self.nak(ctx.now, ProtoLabel::Invalid, e.as_str()),
        };
        let mut proto = proto_label(frame.token);
        let is_null = match frame.token {
            Token::Null => true,
            Token::AdmCid | Token::SiaDcs => false,
            Token::Other if frame.id == "XNM" => {
                proto = ProtoLabel::Null;
                true
            }
            // A control token sent to a receiver: answering it could start two receivers
            // answering each other; ignore it (counted).
            Token::Ack | Token::Nak | Token::Duh | Token::Rsp => {
                self.metrics.ignored("control_token");
                return Decision::Answer {
                    reply: Vec::new(),
                    proto,
                    result: ResultLabel::Dropped,
                };
            }
            Token::Other => return self.duh(&frame, proto, "unsupported_id"),
        };
        let Some(account_raw) = frame.account else {
            return self.duh(&frame, proto, "no_account");
        };
        let account = account_raw.to_ascii_uppercase();
        let line = frame.line.map(str::to_ascii_uppercase);
        let receiver = frame.receiver.map(str::to_ascii_uppercase);
        let registry = self.registry.current();
        let device = registry.lookup(&account, line.as_deref(), receiver.as_deref());

        let key = device.and_then(|d| d.key.as_ref());
        let content = if frame.encrypted {
            let decrypted = match key {
                None => Err("no_key"),
                Some(k) => frame.decrypt(k).map_err(|e| e.as_str()),
            };
            match decrypted {
                // A timestamp is required to decrypt, so it is there.
                Ok(c) => match c.timestamp {
                    Some(ts)
                        if dc09::within_window(
                            ts,
                            ctx.now,
                            self.opts.timestamp_past_secs,
                            self.opts.timestamp_future_secs,
                        ) =>
                    {
                        c
                    }
                    _ => return self.nak(ctx.now, proto, "timestamp"),
                },
                // No key, or it does not decrypt (wrong key, garbage, no timestamp): keep
                // the raw frame for an operator and answer DUH so the device may try its
                // backup receiver.
                Err(reason) => {
                    let ids = Ids {
                        account,
                        line,
                        receiver,
                    };
                    return self.undecryptable(&frame, ctx, proto, reason, ids, device);
                }
            }
        } else {
            match frame.content() {
                Ok(c) => c,
                Err(e) => return self.nak(ctx.now, proto, e.as_str()),
            }
        };

        self.heard(&account, ctx.now);
        let mut reply = Vec::with_capacity(128);
        match key {
            // Decryption succeeded above, so an encrypted frame has its key here.
            Some(key) if frame.encrypted => {
                dc09::encode_ack_encrypted(&frame, key, ctx.now, &mut rand::rng(), &mut reply)
            }
            _ => dc09::encode_ack(&frame, &mut reply),
        }

        if is_null {
            self.metrics.heartbeat(ctx.transport);
            return Decision::Answer {
                reply,
                proto,
                result: ResultLabel::Ack,
            };
        }

        let mut flags = Flags {
            unknown_device: device.is_none(),
            length_decimal: frame.length_decimal,
            ..Flags::default()
        };
        let events = match decode_payload(frame.token, &content.data) {
            Ok(p) => p.events.iter().map(SignalEvent::from_codec).collect(),
            Err(e) => {
                tracing::debug!(account = %account, error = %e, "payload not decoded; journaled for an operator");
                flags.bad_payload = true;
                Vec::new()
            }
        };
        let mut key_parts: Vec<&[u8]> = Vec::with_capacity(6 + 2 * content.xdata.len());
        key_parts.extend([
            account.as_bytes(),
            line.as_deref().unwrap_or("").as_bytes(),
            receiver.as_deref().unwrap_or("").as_bytes(),
            frame.seq.as_bytes(),
            frame.id.as_bytes(),
            &content.data,
        ]);
        for x in &content.xdata {
            key_parts.push(std::slice::from_ref(&x.letter));
            key_parts.push(&x.value);
        }
        let dedup = dedup_key(&key_parts);
        let ids = Ids {
            account,
            line,
            receiver,
        };
        let mut signal = self.signal(&frame, ctx, ids, device, flags);
        signal.transmitted_at = content.timestamp;
        signal.event_time = content
            .xdata
            .iter()
            .find(|x| x.letter == b'H')
            .and_then(|x| parse_dc09_time(&x.value));
        signal.events = events;
        signal.xdata = content
            .xdata
            .iter()
            .map(|x| XDataItem {
                letter: char::from(x.letter),
                value: String::from_utf8_lossy(&x.value).into_owned(),
            })
            .collect();
        Decision::Journal {
            signal: Box::new(signal),
            dedup: Some(dedup),
            reply,
            proto,
            result: ResultLabel::Ack,
        }
    }

    /// Journals an encrypted frame that could not be read, flagged `undecryptable`; DUH
    /// after the flush.
    fn undecryptable(
        &self,
        frame: &Frame<'_>,
        ctx: &FrameCtx,
        proto: ProtoLabel,
        reason: &'static str,
        ids: Ids,
        device: Option<&Device>,
    ) -> Decision {
        self.metrics.duh(reason);
        self.heard(&ids.account, ctx.now);
        let mut reply = Vec::with_capacity(48);
        dc09::encode_duh(frame, &mut reply);
        // Retransmissions carry the same ciphertext, or a new pad and time: keyed on the
        // ciphertext, a re-encrypted copy is journaled again, which is the safe side.
        let dedup = dedup_key(&[
            ids.account.as_bytes(),
            ids.line.as_deref().unwrap_or("").as_bytes(),
            ids.receiver.as_deref().unwrap_or("").as_bytes(),
            frame.seq.as_bytes(),
            frame.id.as_bytes(),
            frame.body,
        ]);
        let flags = Flags {
            unknown_device: device.is_none(),
            undecryptable: true,
            length_decimal: frame.length_decimal,
            ..Flags::default()
        };
        let signal = self.signal(frame, ctx, ids, device, flags);
        Decision::Journal {
            signal: Box::new(signal),
            dedup: Some(dedup),
            reply,
            proto,
            result: ResultLabel::Duh,
        }
    }

    fn signal(
        &self,
        frame: &Frame<'_>,
        ctx: &FrameCtx,
        ids: Ids,
        device: Option<&Device>,
        flags: Flags,
    ) -> Signal {
        let Ids {
            account,
            line,
            receiver,
        } = ids;
        Signal {
            id: 0,
            received_at: ctx.now,
            transport: ctx.transport,
            peer: ctx.peer,
            protocol: frame.id.to_owned(),
            encrypted: frame.encrypted,
            account,
            line,
            receiver,
            seq: frame.seq.to_owned(),
            flags,
            subscriber: device.and_then(|d| d.subscriber.clone()),
            device_type: device.and_then(|d| d.device_type.clone()),
            transmitted_at: None,
            event_time: None,
            events: Vec::new(),
            xdata: Vec::new(),
            raw: frame.raw.to_vec(),
            scaip: None,
        }
    }

    fn nak(&self, now: jiff::Timestamp, proto: ProtoLabel, reason: &'static str) -> Decision {
        self.metrics.nak(reason);
        let mut reply = Vec::with_capacity(48);
        dc09::encode_nak(now, &mut reply);
        Decision::Answer {
            reply,
            proto,
            result: ResultLabel::Nak,
        }
    }

    fn duh(&self, frame: &Frame<'_>, proto: ProtoLabel, reason: &'static str) -> Decision {
        self.metrics.duh(reason);
        let mut reply = Vec::with_capacity(48);
        dc09::encode_duh(frame, &mut reply);
        Decision::Answer {
            reply,
            proto,
            result: ResultLabel::Duh,
        }
    }

    /// Counts a frame whose journal outcome is known. Returns whether its answer may be sent.
    pub fn committed(
        &self,
        transport: Transport,
        proto: ProtoLabel,
        result: ResultLabel,
        commit: Commit,
    ) -> bool {
        match commit {
            Commit::Stored(_) => {
                self.metrics.frame(transport, proto, result);
                true
            }
            Commit::Duplicate(_) => {
                self.metrics.duplicate(transport);
                self.metrics.frame(transport, proto, ResultLabel::Duplicate);
                true
            }
            Commit::Failed => {
                self.metrics.frame(transport, proto, ResultLabel::Dropped);
                false
            }
        }
    }
}
